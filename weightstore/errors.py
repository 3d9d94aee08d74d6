"""The errors weightstore raises.

Every failure a user can cause (a bad file, a bad option, a missing optional
package, data that exceeds a limit) raises a subclass of :class:`WeightstoreError`.
Messages name the file, the field, what was expected and what was found, so
that the command line can print the message alone, on one line.

Hierarchy::

    WeightstoreError
    ├── FormatError            the file is not a valid file of its format
    │   ├── UnsafeFileError    the file asks to run code (a pickle global we refuse)
    │   └── ChecksumError      stored data does not match its checksum
    ├── LimitError             the file claims more than the configured limits allow
    ├── UnknownFormatError     no codec matches the name, extension or content
    ├── UnsupportedError       the codec cannot hold this data (dtype, name, metadata)
    ├── OptionError            a codec option has a bad name or value
    ├── WeightsError           the tensors or metadata given to save are invalid
    ├── FileAccessError        the path is missing, a directory, or unreadable
    ├── DataError              reference data (weights, MNIST) missing or not verified
    ├── ModelError             weights do not fit the network they are evaluated with
    └── MissingDependencyError an optional package is not installed (names the extra)

    LossyWarning (a UserWarning, not an error): a write that changes values on purpose
    (a narrower dtype, quantization, rounded digits)
    SkippedEntriesWarning (a UserWarning): a file was read without entries weightstore does
    not hold (a complex or string array, an object it cannot make a tensor of)

Where a standard exception type fits, the classes also derive from it
(``ValueError``, ``TypeError``, ``OSError``, ``ImportError``), so code that
already catches those keeps working.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
from collections.abc import Iterator
from typing import Any

__all__ = [
    "WeightstoreError",
    "FormatError",
    "UnsafeFileError",
    "ChecksumError",
    "LimitError",
    "UnknownFormatError",
    "UnsupportedError",
    "OptionError",
    "WeightsError",
    "FileAccessError",
    "DataError",
    "ModelError",
    "MissingDependencyError",
    "LossyWarning",
    "SkippedEntriesWarning",
    "translating_faults",
    "printable",
]


def printable(text: str) -> str:
    """*text* safe to show on a terminal, on one line: every control or other
    non-printable character (escape sequences, line breaks, NUL, bidirectional
    overrides) as a Python escape (``\\x1b``, ``\\n``, ``\\u202e``). Printable text,
    non-ASCII letters included, is unchanged, so applying it twice changes nothing."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] if ord(c) < 0x100
                   else f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}"
                   for c in text)


def _shorten(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class WeightstoreError(Exception):
    """Base class of every error weightstore raises on purpose.

    Built either from a plain message or from its parts::

        FormatError(path="w.json", field="tensors[0].shape",
                    expected="a list of non-negative integers", found=[-1])

    gives ``w.json: tensors[0].shape: expected a list of non-negative integers, found [-1]``.
    The parts stay available as attributes for programs that handle the error.
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
        # One line, safe for a terminal: file names, fields and what was found come from
        # the file and may hold escape sequences or line breaks.
        text = printable(text)
        self.message = text
        super().__init__(text)


class FormatError(WeightstoreError, ValueError):
    """The file is not a valid file of its format: truncated, corrupted or malformed."""


class UnsafeFileError(FormatError):
    """The file asks to run code or to build objects a weight file never needs."""


class ChecksumError(FormatError):
    """Stored data does not match the checksum stored with it."""


class LimitError(WeightstoreError, ValueError):
    """The file claims a size, depth or expansion beyond the configured limits."""


class UnknownFormatError(WeightstoreError, ValueError):
    """No codec matches the given name, the file's extension, or its content."""


class UnsupportedError(WeightstoreError, TypeError):
    """The codec cannot hold this data (a dtype, a name, or metadata it has no place for)."""


class OptionError(WeightstoreError, ValueError):
    """A codec option has an unknown name or a value out of range."""


class WeightsError(WeightstoreError, ValueError):
    """The tensors or metadata handed to the library are not a valid set of weights."""


class FileAccessError(WeightstoreError, OSError):
    """The path does not exist, is a directory, or cannot be read or written."""


class DataError(WeightstoreError):
    """Reference data (the book's weights, the MNIST test set) is missing or fails verification."""


class ModelError(WeightstoreError, ValueError):
    """Weights do not fit the network they are evaluated with (missing tensor, wrong shape)."""


class MissingDependencyError(WeightstoreError, ImportError):
    """An optional package is not installed; the message names the extra that installs it."""

    def __init__(self, package: str, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the '{package}' package, which is not installed",
            hint=f"install it with: pip install 'weightstore[{extra}]'",
        )
        self.package = package
        self.extra = extra


class LossyWarning(UserWarning):
    """A write loses precision on purpose (a narrower dtype, quantization, rounded digits).

    Issued once per write. Silence it with ``warnings.simplefilter("ignore", LossyWarning)``.
    """


class SkippedEntriesWarning(UserWarning):
    """A file was read without some of its entries: ones weightstore does not hold (a
    complex, string or object array; a value that is neither a tensor nor a plain
    number or string). Issued once per file, listing every entry skipped and why.

    :attr:`path` is the file, :attr:`entries` the ``(name, what it is)`` pairs skipped.
    Loading with ``strict=True`` (``--strict`` on the command line) refuses such a file
    with :class:`UnsupportedError` instead.
    """

    def __init__(self, message: str, path: str = "",
                 entries: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.path = path
        self.entries = entries


# Exceptions a malformed file can provoke inside the libraries codecs use: a codec should
# translate them itself, and this is the net below it, so that a user never sees a raw
# traceback for a bad file.
_FILE_FAULTS = (ValueError, EOFError, KeyError, IndexError, TypeError, struct.error,
                OSError, OverflowError, UnicodeError, RecursionError)


def _file_faults() -> tuple[type[BaseException], ...]:
    """:data:`_FILE_FAULTS`, and ``zipfile.BadZipFile`` once something has imported zipfile
    (before that nothing can have raised it): importing zipfile here would cost every
    process 5-8 ms of start-up (issue 19)."""
    found = sys.modules.get("zipfile")
    return _FILE_FAULTS if found is None else (*_FILE_FAULTS, found.BadZipFile)


@contextlib.contextmanager
def translating_faults(path: str, codec_name: str) -> Iterator[None]:
    """Within the block, what a bad file provokes becomes :class:`FormatError` naming *path*,
    and a :class:`FormatError` or :class:`LimitError` raised without a path gets *path*."""
    try:
        yield
    except (FormatError, LimitError) as e:
        if e.path is None:  # raised deep inside a codec: say which file
            raise type(e)(e.message, path=path) from e
        raise
    except WeightstoreError:
        raise
    except _file_faults() as e:
        raise FormatError(f"not a valid {codec_name} file ({type(e).__name__}: {e})",
                          path=path) from e
