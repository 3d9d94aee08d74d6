"""The reference files (the book's weights, the MNIST test set), found and verified.

A thin layer over :mod:`net.data` that raises :class:`~weightstore.errors.DataError`
(``data_dir`` first, then ``$WEIGHTSTORE_DATA``, ``../shared/data`` beside the checkout and
the user cache; see :func:`net.data.resolve`).
"""

from __future__ import annotations

import os
from pathlib import Path

import net.data

from ._neterrors import net_errors

__all__ = ["REFERENCE_WEIGHTS", "resolve"]

#: The book's three networks: ch. 3 (the MLP), ch. 7 (SimpleConvNet), ch. 8 (DeepConvNet).
REFERENCE_WEIGHTS = ("sample_weight.pkl", "simple_convnet_params.pkl",
                     "deep_convnet_params.pkl")


@net_errors()
def resolve(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The verified local path of reference file *name* (``sample_weight.pkl``,
    ``mnist/t10k-images-idx3-ubyte.gz``, ...), downloading it into the cache if needed."""
    return net.data.resolve(name, data_dir)
