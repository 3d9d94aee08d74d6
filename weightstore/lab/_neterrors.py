"""net's errors become weightstore's at the lab's boundary.

``net`` stands alone, so it raises :mod:`net.errors` classes; whatever the lab hands back
to a user raises :mod:`weightstore.errors` ones. :func:`net_errors` (a context manager and
a decorator) re-raises each :class:`net.errors.NetError` as the weightstore class of the
same name, with the same path, field, expected, found and hint, hence the same message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import net.errors as net_err

from .. import errors as ws_err

__all__ = ["net_errors", "translate"]

#: Each net error class and the weightstore class of the same name.
CLASSES: dict[type[net_err.NetError], type[ws_err.WeightstoreError]] = {
    net_err.ModelError: ws_err.ModelError,
    net_err.OptionError: ws_err.OptionError,
    net_err.DataError: ws_err.DataError,
    net_err.FileAccessError: ws_err.FileAccessError,
    net_err.FormatError: ws_err.FormatError,
}


def translate(error: net_err.NetError) -> ws_err.WeightstoreError:
    """The weightstore error for *error*: same class name, same parts, same message."""
    cls = next((CLASSES[c] for c in type(error).__mro__ if c in CLASSES),
               ws_err.WeightstoreError)
    return cls(error.detail, path=error.path, field=error.field, expected=error.expected,
               found=error.found, hint=error.hint)


@contextlib.contextmanager
def net_errors() -> Iterator[None]:
    """Re-raise a :class:`net.errors.NetError` raised inside as its weightstore twin.

    Usable as ``with net_errors(): ...`` or as the decorator ``@net_errors()``.
    """
    try:
        yield
    except net_err.NetError as e:
        raise translate(e) from e
