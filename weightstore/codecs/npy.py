"""npy: numpy's one-array file (``numpy.save``), read and written.

A ``.npy`` file holds one array and no name: reading names the tensor after the file's
stem (``fc1.weight.npy`` gives ``fc1.weight``; ``w.npy.gz`` gives ``w``), writing
takes exactly one tensor (a model of several is refused: ``npz`` holds several) and
warns that its name and any metadata are not stored. Reading is
``numpy.load(allow_pickle=False)``'s safety: the header is parsed as a Python literal
(no code runs), object dtypes are refused, the declared shape and dtype must account
for exactly the bytes that follow the header, and :class:`~weightstore.codec.Limits`
is checked before anything is allocated. :meth:`NpyCodec.open` reads the header
alone; the array is then read from its offset or memory-mapped. bfloat16, which
``numpy.load`` cannot read back, is refused on writing.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import IO, Any

import numpy as np

from ..codec import DEFAULT_LIMITS, Budget, Codec, Limits, TensorSource, read_through_open
from ..errors import FormatError, LossyWarning, UnsupportedError
from ..fileio import RawFile
from ..model import TensorInfo, dtype_name, little_endian
from ..sniffing import NPY_MAGIC
from .npz import _read_header

__all__ = ["NpyCodec", "tensor_name", "MAGIC"]

MAGIC = NPY_MAGIC
#: Layer extensions stripped before ``.npy`` when naming the tensor.
_LAYERS = (".gz", ".zst", ".zstd")
#: The name used when the file's stem gives none.
FALLBACK_NAME = "tensor"
#: Most header bytes read (numpy's own limit for version 2+ headers is 10,000 by default).
_MAX_HEADER = 1 << 16


def tensor_name(path: str) -> str:
    """The name a ``.npy`` file's array gets: the file's stem, after a compression
    layer's extension is taken off (``w.npy.gz`` -> ``w``, ``fc1.weight.npy`` ->
    ``fc1.weight``)."""
    base = os.fspath(path).replace("\\", "/").rsplit("/", 1)[-1]
    for ext in _LAYERS:
        if base.lower().endswith(ext):
            base = base[: -len(ext)]
            break
    if "." in base[1:]:
        base = base[: base.rindex(".")]
    return base if base and "\x00" not in base else FALLBACK_NAME


class NpySource(TensorSource):
    """An opened ``.npy``: its header read and checked, the array left on disk."""

    lazy = True

    def __init__(self, fileobj: IO[bytes], path: str, limits: Limits) -> None:
        self._raw = RawFile(fileobj, path)
        self._path = path
        head = io.BytesIO(self._raw.pread(0, min(self._raw.size, _MAX_HEADER)))
        shape, self._fortran, dtype = _read_header(head, path, "array")
        self._offset = head.tell()
        if dtype_name(dtype) is None:
            raise FormatError(path=path, field="header dtype",
                              expected="a numeric or bool dtype (object arrays need pickle, "
                              "which is never loaded)", found=str(dtype))
        meta = TensorInfo(tensor_name(path), dtype, tuple(shape))
        limits.check_tensor(path, meta.name, meta.nbytes)
        if self._offset + meta.nbytes != self._raw.size:
            raise FormatError(path=path, field="array data",
                              expected=f"{meta.nbytes:,} bytes for shape {meta.shape} "
                              f"{dtype} after the {self._offset}-byte header",
                              found=f"{self._raw.size - self._offset:,} bytes")
        super().__init__([meta], {})
        self._meta = meta

    def read(self, name: str, *, mmap: bool = False) -> np.ndarray:
        meta = self._meta
        if name != meta.name:
            raise KeyError(name)
        if mmap and self._raw.can_mmap:
            return self._raw.map_array(self._offset, meta.dtype, meta.shape,
                                       fortran=self._fortran).view(np.ndarray)
        return self._raw.read_array(self._offset, meta.dtype, meta.shape,
                                    fortran=self._fortran, field=f"tensor {name!r}")


def write_npy(weights: Any, fileobj: IO[bytes], path: str) -> None:
    """Write the one tensor of *weights* as ``numpy.save`` would (little-endian)."""
    names = list(weights)
    if len(names) != 1:
        raise UnsupportedError(path=path, field="tensors",
                               expected="exactly one (an .npy file holds one array; npz "
                               "holds several)", found=len(names))
    name = names[0]
    lost = []
    if name != tensor_name(path):
        lost.append(f"the name {name!r} (it reads back as {tensor_name(path)!r})")
    metadata = getattr(weights, "metadata", None) or {}
    if metadata:
        lost.append(f"metadata {sorted(metadata)[:5]}")
    if lost:
        warnings.warn(f"{path}: .npy stores one array only; not kept: {', '.join(lost)}",
                      LossyWarning, stacklevel=4)
    array = weights[name]
    if array.dtype.name == "bfloat16":
        raise UnsupportedError(path=path, field=f"tensor {name!r}",
                               expected="a dtype numpy.load can read back", found="bfloat16")
    np.lib.format.write_array(fileobj, little_endian(array), allow_pickle=False)


class NpyCodec(Codec):
    """numpy ``.npy``: one array, named after the file."""

    name = "npy"
    extensions = (".npy",)
    description = "numpy .npy (one array, named after the file); numpy.load reads it"
    supports_metadata = False
    #: One tensor per file, named after the file's stem.
    single_tensor = True
    streams_writes = True

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return head.startswith(MAGIC)

    def write(self, weights: Any, fileobj: IO[bytes], *, path: str) -> None:
        write_npy(weights, fileobj, path)

    def open(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS,
             verify: bool = True, budget: Budget | None = None) -> TensorSource:
        return NpySource(fileobj, path, limits)

    read = read_through_open
