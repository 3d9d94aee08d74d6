"""Checks every codec makes on what a file's header claims, in one place.

A header's shape is a list of at most :data:`~weightstore.model.MAX_NDIM` non-negative
integers (numpy's own limit), and nothing is allocated for it before it passes.
"""

from __future__ import annotations

from typing import Any

from ..errors import FormatError
from ..model import MAX_NDIM

__all__ = ["check_shape", "is_count"]


def is_count(value: Any) -> bool:
    """A non-negative integer that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_shape(shape: Any, *, path: str, field: str) -> tuple[int, ...]:
    """*shape* as a tuple, or :class:`FormatError`: it must be a list (or tuple) of at most
    :data:`MAX_NDIM` non-negative integers."""
    if (not isinstance(shape, list | tuple) or len(shape) > MAX_NDIM
            or not all(is_count(d) for d in shape)):
        raise FormatError(path=path, field=field,
                          expected=f"a list of at most {MAX_NDIM} non-negative integers",
                          found=shape)
    return tuple(shape)
