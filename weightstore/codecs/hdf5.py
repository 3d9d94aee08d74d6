"""HDF5 through h5py: one dataset per tensor, groups for ``/``, metadata as attributes.

Files open in ``h5dump``, HDFView and any HDF5 library. Datasets and groups are
created with creation order tracked, so the weights' order comes back; files from
other tools (no creation order) are read in name order. Metadata entries are
string attributes of the root group. bool is stored as h5py's enum of int8.

Options: ``compression`` (``none``, ``gzip`` or ``lzf``), ``level`` (gzip 0-9)
and ``shuffle`` (byte shuffle before compressing); compression applies to
datasets with at least one element and one dimension (HDF5 cannot chunk others).

Reading refuses soft and external links, external storage and virtual datasets
(each would read other files), dtypes outside the core set, and datasets whose
claimed size exceeds :class:`~weightstore.codec.Limits` or their stored bytes by
more than the allowed expansion.
"""

from __future__ import annotations

from typing import IO, Any

import numpy as np

from ..codec import DEFAULT_LIMITS, Codec, Limits, Option
from ..errors import (
    FormatError,
    UnsafeFileError,
    UnsupportedError,
    WeightsError,
    WeightstoreError,
)
from ..model import Weights, dtype_name, little_endian
from ..registry import register

SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _h5py() -> Any:
    import h5py

    return h5py


@register
class Hdf5Codec(Codec):
    """HDF5: datasets in groups, written and read with h5py."""

    name = "hdf5"
    extensions = (".h5", ".hdf5")
    description = "HDF5 (h5py): one dataset per tensor, groups for '/', optional gzip/lzf"
    needs_seekable_output = True
    options = (
        Option("compression", str, "none", "dataset filter", choices=("none", "gzip", "lzf")),
        Option("level", int, 4, "gzip level (0-9)", min=0, max=9),
        Option("shuffle", bool, True, "byte-shuffle before compressing (ignored when none)"),
    )

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return head.startswith(SIGNATURE)

    def write(self, weights: Weights, fileobj: IO[bytes], *, path: str) -> None:
        h5py = _h5py()
        compression = None if self.compression == "none" else self.compression  # type: ignore[attr-defined]
        with h5py.File(fileobj, "w", track_order=True) as f:
            for key, value in weights.metadata.items():
                f.attrs[key] = value
            for name, array in weights.items():
                if array.dtype.name == "bfloat16":
                    raise UnsupportedError(path=path, field=f"tensor {name!r}",
                                           expected="a dtype HDF5 tools understand",
                                           found="bfloat16")
                *groups, leaf = name.split("/")
                group = f
                for g in groups:
                    group = group.require_group(g) if g in group else group.create_group(
                        g, track_order=True)
                kwargs: dict[str, Any] = {}
                if compression and array.ndim and array.size:
                    kwargs["compression"] = compression
                    if compression == "gzip":
                        kwargs["compression_opts"] = self.level  # type: ignore[attr-defined]
                    kwargs["shuffle"] = self.shuffle  # type: ignore[attr-defined]
                group.create_dataset(leaf, data=little_endian(array), **kwargs)

    def read(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS) -> Weights:
        h5py = _h5py()
        try:
            f = h5py.File(fileobj, "r")
        except OSError as e:
            raise FormatError(f"not a readable HDF5 file ({e})", path=path) from e
        tensors: list[tuple[str, np.ndarray]] = []
        with f:
            try:
                metadata = {k: _attr_text(v) for k, v in f.attrs.items()}
                self._walk(h5py, f, "", path, limits, tensors, 0)
            except WeightstoreError:
                raise
            except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
                # h5py reports damaged metadata as any of these
                raise FormatError(f"damaged HDF5 structure ({e})", path=path) from e
        try:
            return Weights(tensors, metadata=metadata)
        except WeightsError as e:
            raise FormatError(f"holds invalid weights: {e}", path=path) from e

    def _walk(self, h5py: Any, group: Any, prefix: str, path: str, limits: Limits,
              out: list[tuple[str, np.ndarray]], depth: int) -> None:
        if depth > limits.max_depth:
            raise FormatError(path=path, field=f"group {prefix!r}",
                              expected=f"nesting within {limits.max_depth} levels")
        for key in group:
            name = f"{prefix}/{key}" if prefix else key
            link = group.get(key, getlink=True)
            if not isinstance(link, h5py.HardLink):
                raise UnsafeFileError(path=path, field=f"link {name!r}",
                                      expected="a hard link inside the file",
                                      found=type(link).__name__)
            try:
                obj = group[key]
            except (KeyError, OSError) as e:
                raise FormatError(f"cannot open object ({e})", path=path,
                                  field=f"object {name!r}") from e
            if isinstance(obj, h5py.Group):
                self._walk(h5py, obj, name, path, limits, out, depth + 1)
            elif isinstance(obj, h5py.Dataset):
                total = sum(a.nbytes for _, a in out)
                if len(out) >= limits.max_tensors:
                    raise FormatError(path=path, field="datasets",
                                      expected=f"at most {limits.max_tensors}")
                out.append((name, _read_dataset(h5py, obj, name, path, limits, total)))


def _attr_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    return str(value.tolist() if isinstance(value, np.ndarray | np.generic) else value)


def _read_dataset(h5py: Any, ds: Any, name: str, path: str, limits: Limits,
                  total: int) -> np.ndarray:
    where = f"dataset {name!r}"
    if ds.is_virtual:
        raise UnsafeFileError(path=path, field=where, expected="data stored in this file",
                              found="a virtual dataset")
    if ds.id.get_create_plist().get_external_count() > 0:
        raise UnsafeFileError(path=path, field=where, expected="data stored in this file",
                              found="external storage")
    if ds.shape is None:
        raise FormatError(path=path, field=where, expected="an array", found="an empty dataspace")
    dtype = ds.dtype
    if h5py.check_enum_dtype(dtype) is not None and dtype.itemsize == 1:
        mapping = h5py.check_enum_dtype(dtype)
        if set(mapping) == {"FALSE", "TRUE"}:
            dtype = np.dtype(bool)
    if dtype_name(dtype) is None:
        raise FormatError(path=path, field=f"{where} dtype",
                          expected="bool, (u)int8-64 or float16/32/64", found=str(ds.dtype))
    count = int(np.prod(ds.shape, dtype=np.float64)) if ds.shape else 1
    nbytes = count * dtype.itemsize
    limits.check_tensor(path, name, nbytes, total)
    stored = ds.id.get_storage_size()
    if nbytes > limits.max_output(stored):
        raise FormatError(
            path=path, field=where,
            expected=f"at most {limits.max_output(stored):,} bytes from {stored:,} stored "
            "(Limits.max_expansion)",
            found=f"{nbytes:,} bytes claimed",
        )
    try:
        out = np.empty(ds.shape, dtype=little_endian(np.empty(0, dtype)).dtype)
        if count and dtype.kind == "b":
            out[...] = ds[()]
        elif count:
            ds.read_direct(out)
    except (OSError, ValueError, TypeError) as e:
        raise FormatError(f"cannot read data ({e})", path=path, field=where) from e
    return out
