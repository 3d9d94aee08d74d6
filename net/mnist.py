"""Reader for the MNIST files in IDX format, gzip-compressed or raw.

IDX layout (all integers big-endian unsigned 32-bit)::

    images: magic 2051 (0x00000803) | count | rows | cols | count*rows*cols pixel bytes
    labels: magic 2049 (0x00000801) | count | count label bytes

The magic's third byte is the element type (0x08: unsigned byte), the fourth the number of
dimensions. Reading validates in layers: header length -> magic -> dimensions -> payload
length, which must match the header exactly (a truncated file and a file with bytes after
the payload are both errors) -> label values. Gzip is detected by its magic bytes, not by
the file name. The header's count is checked against what the file can hold before any
buffer of that size is allocated.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from net.errors import FileAccessError, FormatError

from .data import resolve

__all__ = [
    "IMAGES_MAGIC",
    "LABELS_MAGIC",
    "IMAGE_ROWS",
    "IMAGE_COLS",
    "NUM_CLASSES",
    "TEST_IMAGES",
    "TEST_LABELS",
    "load_images",
    "load_labels",
    "load_test_set",
]

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
IMAGE_ROWS = 28
IMAGE_COLS = 28
NUM_CLASSES = 10

TEST_IMAGES = "mnist/t10k-images-idx3-ubyte.gz"
TEST_LABELS = "mnist/t10k-labels-idx1-ubyte.gz"

GZIP_MAGIC = b"\x1f\x8b"
# Deflate cannot compress better than about 1032:1 (258-byte matches in 1-2 bit codes), so a
# gzip file of M bytes never holds more than this many times M bytes; a header claiming more
# is refused before reading.
_MAX_DEFLATE_RATIO = 1032
_CHUNK = 1 << 20

_MAGIC_NAMES = {IMAGES_MAGIC: "an IDX image file", LABELS_MAGIC: "an IDX label file"}


def _read_up_to(stream: io.BufferedIOBase, n: int) -> bytes:
    """Read ``n`` bytes, or fewer only at end of file."""
    parts = []
    while n > 0:
        chunk = stream.read(min(n, _CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _read_idx(
    path: str | os.PathLike[str], magic: int, ndim: int, what: str
) -> tuple[tuple[int, ...], bytearray]:
    """Validate an IDX file of unsigned bytes and return its dimensions and payload."""
    path = Path(os.fspath(path))
    try:
        raw = path.open("rb")
    except OSError as e:
        raise FileAccessError(f"cannot read {what} file: {e.strerror or e}", path=path) from e
    with raw:
        file_size = os.fstat(raw.fileno()).st_size
        compressed = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        stream: io.BufferedIOBase = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        try:
            return _parse_idx(stream, path, file_size, compressed, magic, ndim, what)
        except (gzip.BadGzipFile, EOFError, zlib.error) as e:
            raise FormatError(
                f"corrupt or truncated gzip data ({e})", path=path, field="gzip stream"
            ) from e
        finally:
            if compressed:
                stream.close()


def _parse_idx(
    stream: io.BufferedIOBase,
    path: Path,
    file_size: int,
    compressed: bool,
    magic: int,
    ndim: int,
    what: str,
) -> tuple[tuple[int, ...], bytearray]:
    header_size = 4 + 4 * ndim
    header = _read_up_to(stream, header_size)
    if len(header) < 4:
        raise FormatError(
            path=path, field="header", expected=f"{header_size} bytes", found=f"{len(header)} bytes"
        )
    (found_magic,) = struct.unpack(">I", header[:4])
    if found_magic != magic:
        note = f" ({_MAGIC_NAMES[found_magic]})" if found_magic in _MAGIC_NAMES else ""
        raise FormatError(
            path=path,
            field="magic number",
            expected=f"{magic} (0x{magic:08x}, {_MAGIC_NAMES[magic]})",
            found=f"{found_magic} (0x{found_magic:08x}){note}",
        )
    if len(header) < header_size:
        raise FormatError(
            path=path, field="header", expected=f"{header_size} bytes", found=f"{len(header)} bytes"
        )
    dims = struct.unpack(f">{ndim}I", header[4:])
    if ndim == 3 and dims[1:] != (IMAGE_ROWS, IMAGE_COLS):
        raise FormatError(
            path=path,
            field="dimensions",
            expected=f"{IMAGE_ROWS} x {IMAGE_COLS} pixels",
            found=f"{dims[1]} x {dims[2]}",
        )
    expected = int(np.prod(dims, dtype=np.int64))
    count_text = f"{dims[0]} {what}"

    if not compressed:
        found = file_size - header_size
        if found != expected:
            raise FormatError(
                path=path,
                field="payload",
                expected=f"{expected} bytes for {count_text}",
                found=f"{found} bytes",
            )
        payload = bytearray(expected)
        got = stream.readinto(payload)
        if got != expected:  # the file changed while we read it
            raise FormatError(
                path=path, field="payload", expected=f"{expected} bytes", found=f"{got} bytes"
            )
        return dims, payload

    if expected > file_size * _MAX_DEFLATE_RATIO:
        raise FormatError(
            path=path,
            field="count",
            expected=f"at most {file_size * _MAX_DEFLATE_RATIO} bytes of {what} in a gzip "
            f"file of {file_size} bytes",
            found=f"a header claiming {count_text} ({expected} bytes)",
        )
    payload = bytearray()
    while len(payload) < expected:
        chunk = stream.read(min(_CHUNK, expected - len(payload)))
        if not chunk:
            break
        payload += chunk
    extra = 0
    if len(payload) == expected:
        while chunk := stream.read(_CHUNK):
            extra += len(chunk)
    if len(payload) != expected or extra:
        raise FormatError(
            path=path,
            field="payload",
            expected=f"{expected} bytes for {count_text}",
            found=f"{len(payload) + extra} bytes",
        )
    return dims, payload


def load_images(
    path: str | os.PathLike[str], normalize: bool = True, flatten: bool = True
) -> NDArray[Any]:
    """Read an IDX image file (magic 2051, 28x28 unsigned bytes), gzip-compressed or raw.

    Returns (N, 784) when ``flatten``, else (N, 1, 28, 28) as in the book. With ``normalize``
    the pixels are float32 ``x.astype(np.float32) / 255.0`` in [0, 1], else the uint8 values.

    Raises :class:`~net.errors.FormatError` naming the file, the field (magic number,
    dimensions, payload, gzip stream), expected and found; ``FileAccessError`` if unreadable.
    """
    dims, payload = _read_idx(path, IMAGES_MAGIC, 3, "images")
    x = np.frombuffer(payload, dtype=np.uint8)
    x = x.reshape(dims[0], IMAGE_ROWS * IMAGE_COLS) if flatten else x.reshape(dims[0], 1, *dims[1:])
    if normalize:
        return x.astype(np.float32) / 255.0
    return x


def load_labels(path: str | os.PathLike[str]) -> NDArray[np.uint8]:
    """Read an IDX label file (magic 2049), gzip-compressed or raw: uint8 array (N,) of 0-9.

    Raises :class:`~net.errors.FormatError` as :func:`load_images` does, and also
    for a label outside 0-9.
    """
    _, payload = _read_idx(path, LABELS_MAGIC, 1, "labels")
    t = np.frombuffer(payload, dtype=np.uint8)
    if t.size and int(t.max()) >= NUM_CLASSES:
        index = int(np.argmax(t >= NUM_CLASSES))
        raise FormatError(
            path=os.fspath(path),
            field=f"labels[{index}]",
            expected=f"a class 0-{NUM_CLASSES - 1}",
            found=int(t[index]),
        )
    return t


def load_test_set(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    normalize: bool = True,
    flatten: bool = True,
    download: bool = True,
) -> tuple[NDArray[Any], NDArray[np.uint8]]:
    """The 10,000 MNIST test images and labels, ``(x, t)``: x (10000, 784) float32, t (10000,).

    The files are found and verified by :func:`net.data.resolve` (``data_dir`` first).
    ``normalize`` and ``flatten`` are passed to :func:`load_images`.
    """
    images = resolve(TEST_IMAGES, data_dir, download=download)
    labels = resolve(TEST_LABELS, data_dir, download=download)
    x = load_images(images, normalize=normalize, flatten=flatten)
    t = load_labels(labels)
    if len(x) != len(t):
        raise FormatError(
            path=labels, field="count", expected=f"{len(x)} labels (one per image)", found=len(t)
        )
    return x, t
