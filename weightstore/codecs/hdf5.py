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

:meth:`Hdf5Codec.open` walks the structure alone; a contiguous, unfiltered
dataset is then read straight from its offset in the file (``dset.id.get_offset()``)
or memory-mapped, any other dataset through h5py on access.
"""

from __future__ import annotations

import os
from typing import IO, Any

import numpy as np

from ..codec import DEFAULT_LIMITS, Codec, Limits, Option, TensorMeta, TensorSource, read_all
from ..errors import FormatError, UnsafeFileError, UnsupportedError, WeightstoreError
from ..model import Weights, dtype_name, little_endian
from ..rawio import RawFile
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
    streams_writes = True
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
                del array  # from a lazy source: one tensor in memory at a time

    def read(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS) -> Weights:
        source = self.open(fileobj, path=path, limits=limits)
        try:
            return read_all(source, path, limits)
        finally:
            source.close()

    def open(self, fileobj: IO[bytes], *, path: str,
             limits: Limits = DEFAULT_LIMITS) -> TensorSource:
        """The file's structure only; datasets are read (contiguous ones memory-mapped or
        read straight from their offset) on access."""
        h5py = _h5py()
        raw = RawFile(fileobj, path)
        # A local file is opened by name: HDF5's own driver reads the structure several
        # times faster than through a Python file object.
        target: Any = fileobj
        name = getattr(fileobj, "name", None)
        if raw.fd is not None and isinstance(name, str):
            try:
                same = os.path.samestat(os.fstat(raw.fd), os.stat(name))
            except OSError:
                same = False
            target = name if same else fileobj  # not if the name now points elsewhere
        try:
            f = h5py.File(target, "r")
        except OSError as e:
            raise FormatError(f"not a readable HDF5 file ({e})", path=path) from e
        try:
            return _Hdf5Source(h5py, f, raw, path, limits)
        except BaseException:
            f.close()
            raise


class _Hdf5Source(TensorSource):
    """An open HDF5 file: every dataset checked, the data left on disk."""

    lazy = True

    def __init__(self, h5py: Any, f: Any, raw: RawFile, path: str, limits: Limits) -> None:
        self._h5py, self._f, self._raw, self._path = h5py, f, raw, path
        #: dataset name -> file offset of its raw bytes, or -1 to read through h5py
        self._offsets: dict[str, int] = {}
        metas: list[TensorMeta] = []
        try:
            metadata = {k: _attr_text(v) for k, v in f.attrs.items()}
            self._walk(f, "", limits, metas, 0)
        except WeightstoreError:
            raise
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
            # h5py reports damaged metadata as any of these
            raise FormatError(f"damaged HDF5 structure ({e})", path=path) from e
        super().__init__(metas, metadata)
        self._metas = {m.name: m for m in metas}

    def _walk(self, group: Any, prefix: str, limits: Limits, out: list[TensorMeta],
              depth: int) -> None:
        h5py, path = self._h5py, self._path
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
                self._walk(obj, name, limits, out, depth + 1)
            elif isinstance(obj, h5py.Dataset):
                if len(out) >= limits.max_tensors:
                    raise FormatError(path=path, field="datasets",
                                      expected=f"at most {limits.max_tensors}")
                meta, offset = _check_dataset(h5py, obj, name, path, limits, self._raw.size)
                out.append(meta)
                self._offsets[name] = offset

    def read(self, name: str, *, mmap: bool = False) -> np.ndarray:
        meta, offset = self._metas[name], self._offsets[name]
        where = f"dataset {name!r}"
        if offset >= 0:
            if mmap and self._raw.can_mmap:
                return self._raw.map_array(offset, meta.dtype, meta.shape).view(np.ndarray)
            return self._raw.read_array(offset, meta.dtype, meta.shape, field=where)
        try:
            ds = self._f[name]
            out = np.empty(meta.shape, dtype=meta.dtype)
            if meta.count and meta.dtype.kind == "b":
                out[...] = ds[()]
            elif meta.count:
                ds.read_direct(out)
        except (OSError, ValueError, TypeError, KeyError, RuntimeError) as e:
            raise FormatError(f"cannot read data ({e})", path=self._path, field=where) from e
        return out

    def close(self) -> None:
        self._f.close()


def _attr_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    return str(value.tolist() if isinstance(value, np.ndarray | np.generic) else value)


def _check_dataset(h5py: Any, ds: Any, name: str, path: str, limits: Limits,
                   file_size: int) -> tuple[TensorMeta, int]:
    """The dataset's meta after the checks, and the offset of its raw bytes (-1 when it
    must be read through h5py: chunked, filtered, compact, big-endian or bool)."""
    where = f"dataset {name!r}"
    if ds.is_virtual:
        raise UnsafeFileError(path=path, field=where, expected="data stored in this file",
                              found="a virtual dataset")
    plist = ds.id.get_create_plist()
    if plist.get_external_count() > 0:
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
    meta = TensorMeta(name, little_endian(np.empty(0, dtype)).dtype, tuple(ds.shape))
    limits.check_tensor(path, name, meta.nbytes)
    stored = ds.id.get_storage_size()
    if meta.nbytes > limits.max_output(stored):
        raise FormatError(
            path=path, field=where,
            expected=f"at most {limits.max_output(stored):,} bytes from {stored:,} stored "
            "(Limits.max_expansion)",
            found=f"{meta.nbytes:,} bytes claimed",
        )
    offset = -1
    if (meta.count and dtype.kind != "b" and dtype.byteorder != ">" and ds.chunks is None
            and plist.get_nfilters() == 0 and stored == meta.nbytes):
        found = ds.id.get_offset()
        if found is not None and found + meta.nbytes <= file_size:
            offset = found
    return meta, offset
