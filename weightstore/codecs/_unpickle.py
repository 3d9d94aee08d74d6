"""What the restricted unpicklers (pickle, pytorch) hand a pickle for a global it may name."""

from __future__ import annotations

from typing import Any

from ..errors import UnsafeFileError

__all__ = ["Frozen"]


class Frozen:
    """A global a pickle may name: calls *call*, and the file cannot change it.

    Pickle's BUILD opcode sets attributes on whatever object it is given (a
    function's ``__defaults__``, a class's methods); these tokens have no
    attributes to set, so one file cannot alter how the next one is read.
    """

    __slots__ = ("_call", "_name")

    def __init__(self, name: str, call: Any = None) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_call", call)

    def __call__(self, *args: Any) -> Any:
        if self._call is None:
            raise UnsafeFileError(field=f"global {self._name}",
                                  expected="use only as an argument", found="a call")
        return self._call(*args)

    def __setattr__(self, key: str, value: Any) -> None:
        raise UnsafeFileError(field=f"global {self._name}", expected="no state",
                              found=f"an attribute {key!r}")

    def __repr__(self) -> str:
        return self._name
