"""The errors the book's networks, the MNIST reader and the data resolver raise.

``net`` stands alone (numpy and the standard library only), so it has its own hierarchy.
Messages have the same shape as weightstore's: they name the file, the field, what was
expected and what was found, e.g. ``t10k-images-idx3-ubyte: magic number: expected 2051,
found 2049``. ``weightstore.lab`` turns each of these into the weightstore error of the same
name at its boundary, so the command line still prints one line.

Hierarchy::

    NetError
    ├── ModelError        weights do not fit the network (missing tensor, wrong shape)
    ├── OptionError       an argument has a bad value (a model name, a batch size)
    ├── DataError         reference data (weights, MNIST) missing or not verified
    ├── FileAccessError   a file is missing, a directory, or unreadable
    └── FormatError       a data file is not a valid file of its format (MNIST IDX)

Where a standard exception type fits, the classes also derive from it (``ValueError``,
``OSError``), as weightstore's do.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "NetError",
    "ModelError",
    "OptionError",
    "DataError",
    "FileAccessError",
    "FormatError",
]


def _shorten(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class NetError(Exception):
    """Base class of every error ``net`` raises on purpose.

    Built from a plain message or from its parts::

        ModelError(field="W1", expected="shape (784, 50)", found="shape (30, 1, 5, 5)")

    gives ``W1: expected shape (784, 50), found shape (30, 1, 5, 5)``. The parts stay
    available as attributes (``path``, ``field``, ``expected``, ``found``, ``hint``) so a
    caller can rebuild the error in its own hierarchy.
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        field: str | None = None,
        expected: Any = None,
        found: Any = None,
        hint: str | None = None,
    ) -> None:
        self.path = os.fspath(path) if path is not None else None
        self.field = field
        self.expected = expected
        self.found = found
        self.hint = hint
        self.detail = message
        parts = []
        if self.path is not None:
            parts.append(self.path)
        if field is not None:
            parts.append(field)
        body = message or ""
        if expected is not None or found is not None:
            detail = []
            if expected is not None:
                detail.append(f"expected {expected}")
            if found is not None:
                detail.append(f"found {_shorten(found)}")
            body = f"{body} ({', '.join(detail)})" if body else ", ".join(detail)
        text = ": ".join([*parts, body]) if body else ": ".join(parts)
        if hint:
            text = f"{text}; {hint}"
        self.message = text
        super().__init__(text)


class ModelError(NetError, ValueError):
    """Weights do not fit the network they are evaluated with (missing tensor, wrong shape)."""


class OptionError(NetError, ValueError):
    """An argument has an unknown name or a value out of range."""


class DataError(NetError):
    """Reference data (the book's weights, the MNIST test set) is missing or fails verification."""


class FileAccessError(NetError, OSError):
    """The path does not exist, is a directory, or cannot be read."""


class FormatError(NetError, ValueError):
    """A data file is not a valid file of its format (an MNIST IDX file cut short or corrupted)."""
