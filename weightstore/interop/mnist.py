"""The MNIST test set (gzip IDX files) for the examples, and one image as CSV for SQL.

IDX layout (big-endian unsigned 32-bit integers)::

    images: magic 2051 | count | rows | cols | count*rows*cols pixel bytes
    labels: magic 2049 | count | count label bytes

Reading checks the magic, the dimensions and that the payload is exactly as long
as the header says. This small reader serves the interop examples and tests; the
network package has the full one.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError, FileAccessError, OptionError
from ..fileio import atomic_write

__all__ = ["TEST_IMAGES", "TEST_LABELS", "load_test_images", "load_test_labels",
           "write_image_csv", "IMAGE_CSV_HEADER"]

TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
#: Header row of :func:`write_image_csv`'s file.
IMAGE_CSV_HEADER = ("index", "pixel")
_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError as e:
        raise FileAccessError("no such file", path=path) from e
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"not a readable gzip file ({e})", path=path) from e
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise DataError(path=path, field="IDX header", expected=f"{head} bytes",
                        found=f"{len(raw)} bytes")
    found_magic, *dims = struct.unpack(f">{1 + ndim}I", raw[:head])
    if found_magic != magic:
        raise DataError(path=path, field="IDX magic", expected=magic, found=found_magic)
    count = int(np.prod(dims, dtype=np.int64))
    if len(raw) - head != count:
        raise DataError(path=path, field="IDX payload", expected=f"{count:,} bytes for {dims}",
                        found=f"{len(raw) - head:,} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=head).reshape(dims)


def load_test_images(mnist_dir: str | os.PathLike[str]) -> np.ndarray:
    """The 10,000 test images as uint8 ``[N, 28, 28]`` from *mnist_dir*."""
    return _read_idx(Path(mnist_dir) / TEST_IMAGES, _IMAGES_MAGIC, 3)


def load_test_labels(mnist_dir: str | os.PathLike[str]) -> np.ndarray:
    """The 10,000 test labels as uint8 ``[N]`` from *mnist_dir*."""
    labels = _read_idx(Path(mnist_dir) / TEST_LABELS, _LABELS_MAGIC, 1)
    if labels.size and labels.max() > 9:
        raise DataError(path=Path(mnist_dir) / TEST_LABELS, field="labels",
                        expected="digits 0 to 9", found=int(labels.max()))
    return labels


def write_image_csv(
    mnist_dir: str | os.PathLike[str], index: int, path: str | os.PathLike[str]
) -> int:
    """Write test image *index* to *path* as CSV and return its label.

    Rows ``index,pixel``: the pixel's position in the flattened image (0 to 783,
    row-major) and its raw value (0 to 255); the network's input is ``pixel / 255``.
    CRLF line ends, like the CSV codec. The write is atomic.
    """
    images = load_test_images(mnist_dir)
    if isinstance(index, bool) or not isinstance(index, int | np.integer) or not (
        0 <= index < len(images)
    ):
        raise OptionError(field="image index", expected=f"an integer from 0 to {len(images) - 1}",
                          found=index)
    label = int(load_test_labels(mnist_dir)[index])
    pixels = images[index].reshape(-1)
    lines = [",".join(IMAGE_CSV_HEADER)] + [f"{i},{v}" for i, v in enumerate(pixels.tolist())]
    with atomic_write(path) as f:
        f.write(("\r\n".join(lines) + "\r\n").encode("ascii"))
    return label
