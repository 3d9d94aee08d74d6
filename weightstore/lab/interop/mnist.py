"""One MNIST test image as a CSV of pixel values, for tools that read CSV (the SQL example).

The test set is found and verified by :func:`net.data.resolve` (``data_dir`` first,
then ``$WEIGHTSTORE_DATA``, ``../shared/data`` and the cache), as ``weightstore eval``
finds it; errors arrive as :mod:`weightstore.errors` classes.
"""

from __future__ import annotations

import os

import numpy as np

from net import mnist

from ...errors import OptionError
from ...fileio import atomic_write
from .._neterrors import net_errors

__all__ = ["write_image_csv", "IMAGE_CSV_HEADER"]

#: Header row of :func:`write_image_csv`'s file.
IMAGE_CSV_HEADER = ("index", "pixel")


def write_image_csv(
    index: int,
    path: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
) -> int:
    """Write MNIST test image *index* (0-9999) to *path* as CSV; return its label.

    Rows ``index,pixel``: the pixel's position in the flattened 28x28 image (0 to 783,
    row-major) and its raw value (0 to 255); the network's input is ``pixel / 255``.
    CRLF line ends, like the CSV codec; the write is atomic. Raises :class:`OptionError`
    for an index out of range, :class:`DataError` when the test set cannot be found.
    """
    with net_errors():
        images, labels = mnist.load_test_set(data_dir, normalize=False)
    if isinstance(index, bool) or not isinstance(index, int | np.integer) or not (
        0 <= index < len(images)
    ):
        raise OptionError(field="image index",
                          expected=f"an integer from 0 to {len(images) - 1}", found=index)
    pixels = images[index].reshape(-1).tolist()
    lines = [",".join(IMAGE_CSV_HEADER), *(f"{i},{v}" for i, v in enumerate(pixels))]
    with atomic_write(path) as f:
        f.write(("\r\n".join(lines) + "\r\n").encode("ascii"))
    return int(labels[index])
