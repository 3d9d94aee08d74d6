"""Checksums that formats store with the weights, and their verification.

Two CRC-32 checksums (zlib's, as zip and PNG use; ``zlib.crc32`` in Python,
``crc32`` in most languages' standard libraries), written as 8 lowercase hex digits:

- **tensor checksum**: the CRC-32 of the tensor's values as packed little-endian
  bytes in row-major (C) order, bool as one byte 0/1 (``numpy``:
  ``zlib.crc32(a.astype(a.dtype.newbyteorder("<")).tobytes())``). Empty tensors
  have CRC-32 ``00000000``.
- **header checksum**: the CRC-32 of the UTF-8 text made of netstrings
  (``<byte length>:<bytes>,``): first the number of tensors in decimal, then for
  each tensor in the file's order its name, its dtype name and its shape (the
  dimensions in decimal joined by ``x``; empty for a 0-d tensor), then for each
  metadata entry in order of its key (by code point) the key and the value.
  It covers everything that is not a value: a flipped letter in a name, a
  changed shape or metadata text.

A CRC detects accidental damage (every error of up to 32 consecutive bits, and
all but one in 4 billion others); it is no protection against someone who
changes a file on purpose and recomputes it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .errors import ChecksumError, FormatError
from .model import info_of, to_storage

__all__ = ["tensor_crc32", "header_crc32", "format_crc", "parse_crc", "verify_tensor",
           "verify_header", "header_entries"]

#: What a ChecksumError's hint says.
HINT = "the file is damaged; load(..., verify=False) reads it without checking"


def tensor_crc32(array: np.ndarray) -> int:
    """The CRC-32 of *array*'s values, little-endian, row-major."""
    data = to_storage(np.asarray(array))
    return zlib.crc32(data.reshape(-1).view(np.uint8)) & 0xFFFFFFFF


def _netstring(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogatepass")
    return str(len(raw)).encode() + b":" + raw + b","


def header_entries(weights: Mapping[str, np.ndarray]) -> list[tuple[str, str, tuple[int, ...]]]:
    """(name, dtype name, shape) of each tensor, for :func:`header_crc32` (from a lazy
    mapping's header, without reading its tensors)."""
    return [(k, info.dtype_name, info.shape) for k in weights for info in [info_of(weights, k)]]


def header_crc32(tensors: Iterable[tuple[str, str, tuple[int, ...]]],
                 metadata: Mapping[str, str]) -> int:
    """The header checksum of tensors given as (name, dtype name, shape), and metadata."""
    entries = list(tensors)
    crc = zlib.crc32(_netstring(str(len(entries))))
    for name, dtype, shape in entries:
        crc = zlib.crc32(_netstring(name) + _netstring(dtype)
                         + _netstring("x".join(str(int(d)) for d in shape)), crc)
    for key in sorted(metadata):
        crc = zlib.crc32(_netstring(key) + _netstring(metadata[key]), crc)
    return crc & 0xFFFFFFFF


def format_crc(value: int) -> str:
    """A CRC-32 as stored: 8 lowercase hex digits."""
    return f"{value & 0xFFFFFFFF:08x}"


def parse_crc(value: Any, path: str, field: str) -> int:
    """A stored CRC-32 (8 hex digits) as an int, or :class:`FormatError`."""
    if not isinstance(value, str) or len(value) != 8 or not all(
            c in "0123456789abcdefABCDEF" for c in value):
        raise FormatError(path=path, field=field, expected="a CRC-32 as 8 hex digits",
                          found=value)
    return int(value, 16)


def verify_tensor(path: str, name: str, array: np.ndarray, stored: int) -> None:
    """Raise :class:`ChecksumError` naming tensor *name* unless its CRC-32 is *stored*."""
    actual = tensor_crc32(array)
    if actual != stored:
        raise ChecksumError(path=path, field=f"tensor {name!r}",
                            expected=f"values with CRC-32 {format_crc(stored)}",
                            found=f"CRC-32 {format_crc(actual)}", hint=HINT)


def verify_header(path: str, stored: int, weights: Mapping[str, np.ndarray],
                  metadata: Mapping[str, str]) -> None:
    """Raise :class:`ChecksumError` unless the names, dtypes, shapes and metadata read
    have the header checksum *stored*."""
    actual = header_crc32(header_entries(weights), metadata)
    if actual != stored:
        raise ChecksumError(path=path, field="header (names, dtypes, shapes, metadata)",
                            expected=f"CRC-32 {format_crc(stored)}",
                            found=f"CRC-32 {format_crc(actual)}", hint=HINT)
