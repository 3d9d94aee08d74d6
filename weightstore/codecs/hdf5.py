"""HDF5 through h5py: one dataset per tensor, groups for ``/``, metadata as attributes.

Files open in ``h5dump``, HDFView and any HDF5 library. Datasets and groups are
created with creation order tracked, so the weights' order comes back; files from
other tools (no creation order) are read in name order. Metadata entries are
string attributes of the root group. bool is stored as h5py's enum of int8.

Options: ``compression`` (``none``, ``gzip`` or ``lzf``), ``level`` (gzip 0-9)
and ``shuffle`` (byte shuffle before compressing); compression applies to
datasets with at least one element and one dimension (HDF5 cannot chunk others).

Integrity: files are written in the HDF5 1.8 format (``libver="v108"``), whose
superblock, object headers (names, shapes, dtypes, attributes), and group
indexes carry checksums the HDF5 library verifies on every read; each dataset
has an attribute ``weightstore.crc32`` (uint32) with the tensor checksum of
:mod:`weightstore.integrity`, and the root group ``weightstore.header_crc32``
with the header checksum. Those two are verified unless ``verify=False`` (the
HDF5 library's own cannot be switched off). Files from other tools, or from
weightstore 0.1, have no such attributes and load unverified.

Attributes: a scalar text attribute of the root group is a metadata entry, as
weightstore writes its metadata. Every other attribute (of a group or dataset, or of
the root group but not scalar text: Keras's ``layer_names``, ``weight_names``) is kept
too, never dropped: the attributes of the object at HDF5 path ``P`` (``/`` for the
root, ``/model_weights/dense`` for a group) become one metadata entry
``hdf5.attrs:P`` whose value is a JSON object, keys sorted, of each attribute's typed
value ``{"dtype": D, "shape": [...], "value": V}``: ``D`` a numpy dtype name for numbers
and bool (``V`` nested lists; NaN and infinities as JSON's ``NaN``/``Infinity``),
``"S<n>"`` for fixed-length byte strings and ``"str"`` for variable-length text (``V``
the text, bytes decoded as UTF-8 with surrogate escapes). Writing puts them back where
they were, with those types, creating the groups they name (a Keras layer without
weights is an empty group that Keras still looks up), so an HDF5 -> HDF5 copy keeps
what Keras needs to load the file; other formats carry the entries as metadata.
Attributes of another type (compound, reference) are reported with a warning and
kept as ``{"unsupported": "<dtype>"}``, which writing skips with a warning.

Reading refuses soft and external links, external storage and virtual datasets
(each would read other files), and datasets whose claimed size exceeds
:class:`~weightstore.codec.Limits` or their stored bytes by more than the allowed
expansion. Datasets of a dtype outside the core set (strings, complex, compound) are
skipped, with their attributes, and listed in one
:class:`~weightstore.errors.SkippedEntriesWarning` (``strict`` refuses the file instead).
"""

from __future__ import annotations

import io
import json
import math
import mmap
import os
import struct
import warnings
from typing import IO, Any

import h5py
import numpy as np
from h5py import h5, h5a, h5d, h5g, h5l, h5o, h5p, h5s

from ..codec import (
    DEFAULT_LIMITS,
    Budget,
    Codec,
    Limits,
    Option,
    Skipped,
    TensorSource,
    read_through_open,
    report_skipped,
    warn_if_regrouped,
)
from ..errors import (
    ChecksumError,
    FormatError,
    LimitError,
    UnsafeFileError,
    UnsupportedError,
    WeightstoreError,
)
from ..fileio import RawFile, crc32, regular_fd
from ..integrity import (
    HINT,
    header_crc32,
    header_entries,
    tensor_crc32,
    verify_tensor,
)
from ..model import TensorInfo, Weights, canonical_dtype, dtype_name, grouped_names, little_endian
from ..sniffing import HDF5_SIGNATURE

#: HDF5's format signature.
SIGNATURE = HDF5_SIGNATURE
#: Attribute of each dataset: the tensor checksum (uint32).
CRC_ATTR = "weightstore.crc32"
#: Attribute of the root group: the header checksum (uint32); not metadata.
HEADER_ATTR = "weightstore.header_crc32"
#: Metadata key prefix: the typed attributes of the HDF5 object at the path that follows.
ATTRS_PREFIX = "hdf5.attrs:"
#: The oldest and newest file format versions written: 1.8, the first with checksums.
LIBVER = ("v108", "v108")
#: A global heap collection starts with this: "GCOL", version 1, three reserved zero bytes.
_GCOL = b"GCOL\x01\x00\x00\x00"
_GCOL_HEADER = 16  # signature, version, reserved, 8-byte collection size
_GCOL_OBJECT_HEADER = 16  # index (2), reference count (2), reserved (4), size (8)


class Hdf5Codec(Codec):
    """HDF5: datasets in groups, written and read with h5py."""

    name = "hdf5"
    extensions = (".h5", ".hdf5")
    description = "HDF5 (h5py): one dataset per tensor, groups for '/', optional gzip/lzf"
    needs_seekable_output = True
    groups_together = True
    checksums = True
    streams_writes = True
    options = (
        Option("compression", str, "none", "dataset filter", choices=("none", "gzip", "lzf")),
        Option("level", int, 4, "gzip level (0-9)", min=0, max=9),
        Option("shuffle", bool, True, "byte-shuffle before compressing (ignored when none)"),
    )
    compression: str
    level: int
    shuffle: bool

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return head.startswith(SIGNATURE)

    def write(self, weights: Weights, fileobj: IO[bytes], *, path: str) -> None:
        warn_if_regrouped(weights, path, self.name)
        compression = None if self.compression == "none" else self.compression
        if HEADER_ATTR in weights.metadata:
            raise UnsupportedError(path=path, field=f"metadata key {HEADER_ATTR!r}",
                                   expected="a key weightstore does not reserve in HDF5",
                                   found=HEADER_ATTR)
        plain, attrs, metadata = split_attrs(weights.metadata, path)
        with h5py.File(fileobj, "w", track_order=True, libver=LIBVER) as f:
            for key, value in plain.items():
                _write_text_attr(h5py, f, key, value, path)
            # In the order the file gives the tensors back; from a lazy mapping, without
            # reading them (header_entries asks it for dtypes and shapes alone).
            entries = {entry[0]: entry for entry in header_entries(weights)}
            f.attrs.create(HEADER_ATTR, np.uint32(header_crc32(
                [entries[k] for k in grouped_names(weights)], metadata)))
            for name, array in weights.items():
                if array.dtype.name == "bfloat16":
                    raise UnsupportedError(path=path, field=f"tensor {name!r}",
                                           expected="a dtype HDF5 tools understand",
                                           found="bfloat16")
                *groups, leaf = name.split("/")
                if "." in (*groups, leaf):
                    raise UnsupportedError(path=path, field=f"tensor {name!r}",
                                           expected="no part '.' (HDF5's name for the group "
                                           "itself)", found=name)
                group = f
                for g in groups:
                    group = group.require_group(g) if g in group else group.create_group(
                        g, track_order=True)
                kwargs: dict[str, Any] = {}
                if compression and array.ndim and array.size:
                    kwargs["compression"] = compression
                    if compression == "gzip":
                        kwargs["compression_opts"] = self.level
                    kwargs["shuffle"] = self.shuffle
                ds = group.create_dataset(leaf, data=little_endian(array), **kwargs)
                ds.attrs.create(CRC_ATTR, np.uint32(tensor_crc32(array)))
                del array, ds  # from a lazy source: one tensor in memory at a time
            _write_attrs(h5py, f, attrs, path)

    read = read_through_open

    def open(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS,
             verify: bool = True, budget: Budget | None = None) -> TensorSource:
        """The file's structure only (and its header checksum); datasets are read on
        access: contiguous ones straight from their offset (``dset.id.get_offset()``) or
        memory-mapped, others through h5py, each checked against its checksum."""
        raw = RawFile(fileobj, path)
        # Always through our one open handle, never by name: a file replaced on disk
        # while it is read must not mix two files' bytes. A regular file is opened again
        # through /proc/self/fd (Linux), the same file whatever has become of its name,
        # for the HDF5 library's own reads in C; h5py's file-object driver calls back into
        # Python for each read of the structure (the open costs 0.1-0.2 ms more).
        f = None
        fd = regular_fd(fileobj)
        if fd is not None and _PROC_FD:
            try:
                f = h5py.File(f"/proc/self/fd/{fd}", "r", locking=False)
            except (OSError, ValueError):  # damaged, not to be opened again, or an HDF5
                f = None                       # without the locking option: as a file object
        if f is None:
            try:
                f = h5py.File(fileobj, "r")
            except OSError as e:
                raise _damage(e, "not a readable HDF5 file", path) from e
        try:
            return _Hdf5Source(h5py, f, raw, path, limits, verify,
                               Budget.of(budget, limits, fileobj))
        except BaseException:
            f.close()
            raise


#: Whether this system names each open file descriptor under /proc/self/fd (Linux).
_PROC_FD = os.path.isdir("/proc/self/fd")
#: What h5py calls each kind of link that is not a hard link (in error messages).
_LINK_KINDS = {h5l.TYPE_SOFT: "SoftLink", h5l.TYPE_EXTERNAL: "ExternalLink"}
_CRC_KEY = CRC_ATTR.encode()


class _Hdf5Source(TensorSource):
    """An open HDF5 file: every link and dataset header checked, the data left on disk.

    The structure is walked with h5py's low-level API (one call per question, no
    high-level objects): opening a file of many tensors costs about as much as h5py's
    own ``File(p)[name]``. Attributes are read only where an object has some besides the
    tensor checksum; each tensor's checksum attribute is read with the tensor."""

    lazy = True

    def __init__(self, h5py: Any, f: Any, raw: RawFile, path: str, limits: Limits,
                 verify: bool, budget: Budget) -> None:
        self._h5py, self._f, self._raw, self._path = h5py, f, raw, path
        self._budget = budget
        self._verify = verify
        #: dataset name -> file offset of its raw bytes, or -1 to read through h5py
        self._offsets: dict[str, int] = {}
        #: dataset name -> its stored tensor checksum (None: it has none), once read
        self._crcs: dict[str, int | None] = {}
        #: datasets that carry a checksum attribute (read with the tensor)
        self._has_crc: set[str] = set()
        #: HDF5 types met so far and the dtype each reads as
        self._types: list[tuple[Any, np.dtype | None]] = []
        metas: list[TensorInfo] = []
        self._limits = limits
        self._heaps_checked = False
        #: datasets left out: of a dtype weightstore does not hold
        self._skipped: list[Skipped] = []
        #: HDF5 path -> its attributes as typed JSON values (see the module doc)
        self._attrs: dict[str, dict[str, Any]] = {}
        try:
            metadata = self._root_attrs(f)
            stored_header = _crc_attr(f, HEADER_ATTR, "root group", path)
            root = h5g.open(f.id, b"/")
            #: addresses of the objects walked: each is visited once (a graph, not a tree)
            self._seen = {h5o.get_info(root).addr}
            self._walk(root, "", limits, metas, 0)
            for where, values in self._attrs.items():
                metadata[ATTRS_PREFIX + where] = _canonical(values)
        except WeightstoreError:
            raise
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
            # h5py reports damaged metadata as any of these
            raise _damage(e, "damaged HDF5 structure", path) from e
        report_skipped(path, self._skipped, budget)
        super().__init__(metas, metadata)
        self._metas = {m.name: m for m in metas}
        if verify and stored_header is not None:
            actual = header_crc32([(m.name, dtype_name(m.dtype) or str(m.dtype), m.shape)
                                   for m in metas], metadata)
            if actual != stored_header:
                raise ChecksumError(path=path, field="header (names, dtypes, shapes, metadata)",
                                    expected=f"CRC-32 {stored_header:08x}",
                                    found=f"CRC-32 {actual:08x}", hint=HINT)

    def _attr_values(self, obj: Any, where: str, skip: tuple[str, ...]) -> dict[str, Any]:
        """The attributes of *obj* as typed values, each checked (and charged to the
        budget) before it is read."""
        h5py, out = self._h5py, {}
        _check_attribute_storage(h5py, obj, self._path)
        for key in obj.attrs:
            if key in skip:
                continue
            attr = obj.attrs.get_id(key)
            field = f"attribute {key!r} of {where}"
            if attr.shape is None:
                out[key] = {"dtype": "empty", "shape": None, "value": None}
                continue
            nbytes = math.prod(attr.shape) * attr.dtype.itemsize
            if nbytes > self._limits.max_header_bytes:
                raise LimitError(path=self._path, field=field,
                                 expected=f"at most {self._limits.max_header_bytes:,} bytes "
                                 "(Limits.max_header_bytes)", found=f"{nbytes:,} bytes")
            self._budget.take(nbytes + len(key) + 100, path=self._path, field=field)
            if _has_vlen(h5py, attr.dtype, numbers=True):  # h5py can crash reading these
                raise FormatError(path=self._path, field=f"{field} type",
                                  expected="numbers or text",
                                  found="variable-length sequences (damaged or foreign)")
            if _has_vlen(h5py, attr.dtype) and not self._heaps_checked:  # compound too
                _check_global_heaps(self._raw.fileobj, self._path)
                self._heaps_checked = True
            out[key] = _typed(h5py, obj.attrs[key], attr.dtype, self._path, field)
        return out

    def _root_attrs(self, f: Any) -> dict[str, str]:
        """Root scalar text attributes as metadata; the others into :attr:`_attrs`."""
        values = self._attr_values(f, "the root group", (HEADER_ATTR,))
        metadata, others = {}, {}
        for key, value in values.items():
            if value.get("shape") == [] and isinstance(value.get("value"), str):
                metadata[key] = value["value"]  # scalar text: weightstore's own metadata
            else:
                others[key] = value
        if others:
            self._attrs["/"] = others
        return metadata

    def _walk(self, group: Any, prefix: str, limits: Limits, out: list[TensorInfo],
              depth: int) -> None:
        """Check every link under *group* (a low-level GroupID) and every object it
        reaches, in creation order where the group tracks it (else name order)."""
        h5py, path = self._h5py, self._path
        if depth > limits.max_depth:
            raise FormatError(path=path, field=f"group {prefix!r}",
                              expected=f"nesting within {limits.max_depth} levels")
        tracked = group.get_create_plist().get_link_creation_order() & h5p.CRT_ORDER_TRACKED
        links: list[tuple[bytes, int]] = []
        group.links.iterate(lambda n, i: links.append((n, i.type)), info=True,
                            idx_type=h5.INDEX_CRT_ORDER if tracked else h5.INDEX_NAME)
        for raw_key, kind in links:
            try:
                key: Any = raw_key.decode("utf-8")
            except UnicodeDecodeError:  # as h5py gives such a name: its bytes
                key = raw_key
            name = f"{prefix}/{key}" if prefix else key
            if kind != h5l.TYPE_HARD:
                raise UnsafeFileError(path=path, field=f"link {name!r}",
                                      expected="a hard link inside the file",
                                      found=_LINK_KINDS.get(kind, "UserDefinedLink"))
            try:
                obj = h5o.open(group, raw_key)
            except (KeyError, OSError) as e:
                raise _damage(e, "cannot open object", path, f"object {name!r}") from e
            info = h5o.get_info(obj)
            if info.addr in self._seen:  # several links to one object: refused, not re-walked
                raise FormatError(path=path, field=f"link {name!r}",
                                  expected="one link to each group and dataset",
                                  found="a second link to an object already read")
            self._seen.add(info.addr)
            is_dataset = isinstance(obj, h5d.DatasetID)
            dtype = _read_dtype(h5py, obj, self._types) if is_dataset else None
            if is_dataset and dtype is None and (
                    found := _unheld(h5py, h5py.Dataset(obj))) is not None:
                self._skipped.append(Skipped(name, found))  # its attributes go with it
                continue
            has_crc = bool(is_dataset and info.num_attrs and h5a.exists(obj, _CRC_KEY))
            if info.num_attrs > has_crc:  # attributes besides the checksum: read them all
                wrapped = h5py.Dataset(obj) if is_dataset else (
                    h5py.Group(obj) if isinstance(obj, h5g.GroupID) else h5py.Datatype(obj))
                values = self._attr_values(wrapped, f"object {name!r}", (CRC_ATTR,))
                if values:
                    self._attrs["/" + name] = values
            if isinstance(obj, h5g.GroupID):
                self._walk(obj, name, limits, out, depth + 1)
            elif is_dataset:
                if len(out) >= limits.max_tensors:
                    raise FormatError(path=path, field="datasets",
                                      expected=f"at most {limits.max_tensors}")
                meta, offset, stored = _check_dataset(obj, dtype, name, path, limits,
                                                      self._raw.size)
                if offset < 0 and stored != meta.nbytes:  # filtered: the one allowance
                    self._budget.add_compressed(stored)
                    self._budget.expand(meta.nbytes, path=path, field=f"dataset {name!r}")
                out.append(meta)
                self._offsets[name] = offset
                if has_crc:
                    self._has_crc.add(name)

    def data_offset(self, name: str) -> int:
        """Where dataset *name*'s raw bytes start in the file (-1: not stored contiguously).
        Writers allocate data in the order they write it, so this tells that order."""
        return self._offsets[name]

    def _stored_crc(self, name: str) -> int | None:
        """Dataset *name*'s checksum attribute (checked), read once."""
        if name not in self._crcs:
            self._crcs[name] = _crc_attr(self._f[name], CRC_ATTR, f"dataset {name!r}",
                                         self._path) if name in self._has_crc else None
        return self._crcs[name]

    def read(self, name: str, *, mmap: bool = False) -> np.ndarray:
        meta, offset = self._metas[name], self._offsets[name]
        where = f"dataset {name!r}"
        if offset >= 0 and mmap and self._raw.can_mmap:  # not read here: nothing to check
            return self._raw.map_array(offset, meta.dtype, meta.shape).view(np.ndarray)
        try:
            stored = self._stored_crc(name)
        except (OSError, ValueError, TypeError, KeyError, RuntimeError) as e:
            raise _damage(e, "cannot read the checksum attribute", self._path, where) from e
        if offset >= 0:
            check = self._verify and stored is not None
            try:  # the checksum computed beside the reads, while the bytes are in cache
                return self._raw.read_array(offset, meta.dtype, meta.shape, field=where,
                                            crc=(0, stored) if check else None)
            except ChecksumError:  # read again for the error that names the tensor
                out = self._raw.read_array(offset, meta.dtype, meta.shape, field=where)
        else:
            try:
                ds = self._f[name]
                out = np.empty(meta.shape, dtype=meta.dtype)
                if meta.count and meta.dtype.kind == "b":
                    out[...] = ds[()]
                elif meta.count:
                    ds.read_direct(out)
            except (OSError, ValueError, TypeError, KeyError, RuntimeError) as e:
                raise _damage(e, "cannot read data", self._path, where) from e
        if self._verify and stored is not None:
            if out.dtype.kind != "b" and out.flags.c_contiguous and out.dtype.byteorder != ">":
                actual = crc32(out.reshape(-1).view(np.uint8)) & 0xFFFFFFFF  # its stored bytes
                if actual != stored:
                    verify_tensor(self._path, name, out, stored)  # raises, naming the tensor
            else:
                verify_tensor(self._path, name, out, stored)
        return out

    def close(self) -> None:
        self._f.close()


def _held_dtype(h5py: Any, dtype: np.dtype) -> np.dtype | None:
    """The dtype a dataset of HDF5 type *dtype* is read as (h5py's bool enum as bool), or
    None when weightstore does not hold it."""
    mapping = h5py.check_enum_dtype(dtype)
    if mapping is not None and dtype.itemsize == 1 and set(mapping) == {"FALSE", "TRUE"}:
        return np.dtype(bool)
    return dtype if dtype_name(dtype) is not None else None


def _unheld(h5py: Any, ds: Any) -> str | None:
    """What dataset *ds* is when weightstore does not hold it (``"a variable-length utf-8
    string dataset of shape ()"``), else None."""
    if ds.shape is None or _held_dtype(h5py, ds.dtype) is not None:
        return None
    text = h5py.check_string_dtype(ds.dtype)
    if text is not None:
        size = "variable-length" if text.length is None else f"{text.length}-byte"
        kind = f"{size} {text.encoding} string"
    elif ds.dtype.names is not None:
        kind = "compound"
    elif h5py.check_vlen_dtype(ds.dtype) is not None:
        kind = "variable-length sequence"
    else:
        kind = str(ds.dtype)
    return f"a {kind} dataset of shape {tuple(ds.shape)}"


def _check_dataset(ds: Any, dtype: np.dtype | None, name: str, path: str, limits: Limits,
                   file_size: int) -> tuple[TensorInfo, int, int]:
    """The dataset's meta after the checks, the offset of its raw bytes (-1 when it
    must be read through h5py: chunked, filtered, compact, big-endian or bool), and the
    bytes it takes in the file. *ds* is the low-level ``DatasetID``, *dtype* what its
    type reads as (:func:`_read_dtype`; None: a type weightstore does not hold).

    The library gives an offset (``H5Dget_offset``) only for contiguous data stored in
    this file, unfiltered (never for chunked, compact, virtual or external storage), so
    the creation properties are read only for a dataset without one."""
    found = ds.get_offset()
    contiguous = found is not None
    if not contiguous:
        plist = ds.get_create_plist()
        layout = plist.get_layout()
        if layout == h5d.VIRTUAL:
            raise UnsafeFileError(path=path, field=f"dataset {name!r}",
                                  expected="data stored in this file", found="a virtual dataset")
        if plist.get_external_count() > 0:
            raise UnsafeFileError(path=path, field=f"dataset {name!r}",
                                  expected="data stored in this file", found="external storage")
    space = ds.get_space()
    if space.get_simple_extent_type() == h5s.NULL:
        raise FormatError(path=path, field=f"dataset {name!r}", expected="an array",
                          found="an empty dataspace")
    shape = space.shape
    if dtype is None:  # the walk skips these before
        raise FormatError(path=path, field=f"dataset {name!r} dtype",
                          expected="bool, (u)int8-64 or float16/32/64", found=str(ds.dtype))
    meta = TensorInfo(name, dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype,
                      tuple(shape))  # exact sizes below (a float product would overflow)
    nbytes = meta.nbytes
    limits.check_tensor(path, name, nbytes)
    stored = ds.get_storage_size()
    if nbytes > limits.max_output(stored):
        raise FormatError(
            path=path, field=f"dataset {name!r}",
            expected=f"at most {limits.max_output(stored):,} bytes from {stored:,} stored "
            "(Limits.max_expansion)",
            found=f"{nbytes:,} bytes claimed",
        )
    offset = -1
    if (contiguous and nbytes and dtype.kind != "b" and dtype.byteorder != ">"
            and stored == nbytes and found + nbytes <= file_size):
        offset = found
    return meta, offset, stored


def _read_dtype(h5py: Any, ds: Any, types: list[tuple[Any, np.dtype | None]]) -> np.dtype | None:
    """The dtype dataset *ds* reads as (h5py's enum of FALSE/TRUE: bool), None when it is
    not one weightstore holds; *types* remembers each HDF5 type's answer (``H5Tequal``)."""
    tid = ds.get_type()
    for seen, dtype in types:
        if seen == tid:
            return dtype
    found = _held_dtype(h5py, tid.dtype)
    types.append((tid, found))
    return found


#: Most root attributes (metadata entries) read from an object header (compact storage).
MAX_COMPACT_ATTRIBUTES = 1024


def _check_attribute_storage(h5py: Any, obj: Any, path: str) -> None:
    """Refuse more than :data:`MAX_COMPACT_ATTRIBUTES` attributes kept in an object header.

    The HDF5 library finds such an attribute by name with a scan of the header, so reading
    n of them costs n**2 (8,000 take seconds); files written by weightstore (HDF5 1.8
    format) keep more than 8 in indexed "dense" storage, which is not limited.
    """
    info = h5py.h5o.get_info(obj.id)
    if info.num_attrs > MAX_COMPACT_ATTRIBUTES and info.hdr.nmesgs >= info.num_attrs:
        raise LimitError(path=path, field="attributes",
                         expected=f"at most {MAX_COMPACT_ATTRIBUTES:,} kept in the object "
                         "header (read in quadratic time), or an indexed attribute table",
                         found=f"{info.num_attrs:,} in the header")


def _has_vlen(h5py: Any, dtype: np.dtype, numbers: bool = False) -> bool:
    """Whether *dtype* holds a variable-length type anywhere (in a compound's field or a
    sub-array too): reading it goes through the global heap. With *numbers*: only a
    variable-length sequence of numbers (not text), which no weight file's attribute
    holds and which the library can crash on when damaged."""
    vlen = h5py.check_vlen_dtype(dtype)
    if vlen is not None:
        return vlen not in (str, bytes) if numbers else True
    if dtype.kind == "O":
        return not numbers
    if dtype.fields:
        return any(_has_vlen(h5py, field[0], numbers) for field in dtype.fields.values())
    return dtype.subdtype is not None and _has_vlen(h5py, dtype.subdtype[0], numbers)


def _damage(e: Exception, what: str, path: str, field: str | None = None) -> FormatError:
    """The error for an exception from the HDF5 library: a ChecksumError when one of its
    metadata checksums failed."""
    if "checksum" in str(e).lower():
        return ChecksumError(f"HDF5 metadata does not match its checksum ({e})", path=path,
                             field=field, hint=HINT)
    return FormatError(f"{what} ({e})", path=path, field=field)


def _crc_attr(obj: Any, key: str, where: str, path: str) -> int | None:
    """The uint32 checksum attribute *key* of *obj* (an h5py object), or None when it has
    none. Read with the low-level calls: a third of the high-level ``attrs``' cost, which
    ``open`` pays for the header's on every open."""
    oid, name = obj.id, key.encode()
    if not h5a.exists(oid, name):
        return None
    attr = h5a.open(oid, name)
    if attr.dtype.kind != "u" or attr.shape != ():  # checked before reading: no vlen heap
        raise FormatError(path=path, field=f"{where} attribute {key!r}",
                          expected="a uint32 scalar", found=f"{attr.dtype} {attr.shape}")
    value = np.empty((), attr.dtype)
    attr.read(value)
    if int(value) > 0xFFFFFFFF:
        raise FormatError(path=path, field=f"{where} attribute {key!r}",
                          expected="a CRC-32", found=int(value))
    return int(value)


def _write_text_attr(h5py: Any, f: Any, key: str, value: str, path: str) -> None:
    """A metadata entry as a fixed-length UTF-8 string attribute of the root group.

    Fixed length keeps the text inside the (checksummed) object header instead of
    the global heap, whose parser in the HDF5 library loops forever on some damage.
    """
    if "\x00" in value or "\x00" in key or not key:
        raise UnsupportedError(path=path, field=f"metadata {key!r}",
                               expected="a non-empty key, and text without NUL characters "
                               "(HDF5 strings end at NUL)",
                               found="an empty key" if not key else "a NUL character")
    raw = value.encode("utf-8")
    size = max(1, len(raw))
    f.attrs.create(key, np.array(raw, dtype=f"S{size}"), dtype=h5py.string_dtype("utf-8", size))


def _check_global_heaps(fileobj: IO[bytes], path: str) -> None:
    """Refuse global heap collections whose objects overrun them or do not advance.

    Variable-length strings (other tools write text attributes that way) live in
    global heap collections. The HDF5 library walks a collection's objects by
    their stated sizes, and a size that wraps around makes it loop forever, so the
    collections are walked here first. Only bytes that start with the full
    8-byte collection signature are taken for one. Collections may not overlap, so the
    walk reads each byte at most once (linear in the file's size).
    """
    fileobj.seek(0)
    try:
        view: Any = mmap.mmap(fileobj.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError, io.UnsupportedOperation):
        view = fileobj.read()
    try:
        end = len(view)
        at = view.find(_GCOL)
        walked_to = 0
        while at >= 0:
            if at < walked_to:
                raise FormatError(path=path, field=f"global heap at byte {at}",
                                  expected="collections that do not overlap",
                                  found=f"one inside the collection ending at byte {walked_to}")
            (size,) = struct.unpack_from("<Q", view, at + 8) if at + 16 <= end else (0,)
            if size < _GCOL_HEADER or at + size > end:
                raise FormatError(path=path, field=f"global heap at byte {at}",
                                  expected=f"a collection size within the file's {end:,} bytes",
                                  found=size)
            p, stop = at + _GCOL_HEADER, at + size
            while p + _GCOL_OBJECT_HEADER <= stop:
                index, _refs, _reserved, osize = struct.unpack_from("<HHIQ", view, p)
                need = osize if index == 0 else _GCOL_OBJECT_HEADER + ((osize + 7) & ~7)
                if need <= 0 or p + need > stop:
                    raise FormatError(path=path, field=f"global heap at byte {at}, object "
                                      f"{index}", expected=f"at most {stop - p:,} bytes",
                                      found=f"{osize:,} bytes")
                p += need
            walked_to = stop
            at = view.find(_GCOL, at + 1)
    finally:
        if isinstance(view, mmap.mmap):
            view.close()
        fileobj.seek(0)


def _canonical(values: dict[str, Any]) -> str:
    """The JSON text of one object's typed attributes: keys sorted, so that reading a file
    gives back the very text its writer checksummed."""
    return json.dumps(values, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def _typed(h5py: Any, value: Any, dtype: np.dtype, path: str, field: str) -> dict[str, Any]:
    """An attribute value as ``{"dtype", "shape", "value"}`` (see the module doc)."""
    array = np.asarray(value)
    shape = list(array.shape)
    if h5py.check_vlen_dtype(dtype) is not None or array.dtype.kind in "OU":
        if h5py.check_vlen_dtype(dtype) not in (str, bytes) and array.dtype.kind == "O":
            return _unsupported(dtype, path, field)
        items = np.vectorize(_text, otypes=[object])(array) if array.size else array
        return {"dtype": "str", "shape": shape,
                "value": items.tolist() if shape else _text(array[()])}
    if array.dtype.kind == "S":
        items = [_text(b) for b in array.reshape(-1).tolist()]
        return {"dtype": f"S{array.dtype.itemsize}", "shape": shape,
                "value": np.array(items, dtype=object).reshape(shape).tolist() if shape
                else items[0]}
    if dtype_name(array.dtype) is None or array.dtype.name == "bfloat16":
        return _unsupported(dtype, path, field)
    return {"dtype": dtype_name(array.dtype), "shape": shape, "value": array.tolist()}


def _unsupported(dtype: np.dtype, path: str, field: str) -> dict[str, Any]:
    warnings.warn(f"{path}: {field}: kept as a note only, its type {dtype} has no "
                  "metadata form", UserWarning, stacklevel=6)
    return {"unsupported": str(dtype)}


def split_attrs(metadata: dict[str, str], path: str) -> tuple[dict[str, str],
                                                              dict[str, dict[str, Any]],
                                                              dict[str, str]]:
    """(plain metadata, typed attributes by HDF5 path, the metadata with those canonical
    as the written file gives it back)."""
    plain, attrs, canonical = {}, {}, {}
    for key, text in metadata.items():
        if not key.startswith(ATTRS_PREFIX):
            plain[key] = canonical[key] = text
            continue
        where = key[len(ATTRS_PREFIX):]
        try:
            values = json.loads(text)
        except ValueError as e:
            raise UnsupportedError(path=path, field=f"metadata {key!r}",
                                   expected="a JSON object of typed attributes", found=text) from e
        if not where.startswith("/") or not isinstance(values, dict) or not all(
                isinstance(v, dict) for v in values.values()):
            raise UnsupportedError(path=path, field=f"metadata {key!r}",
                                   expected="'hdf5.attrs:/PATH' and a JSON object of typed "
                                   "attributes", found=text)
        attrs[where] = values
        # the header checksum covers the metadata as it reads back: an attribute kept
        # only as a note ("unsupported") is not written (_write_attrs warns)
        written = {k: v for k, v in values.items() if "unsupported" not in v}
        if written:
            canonical[key] = _canonical(written)
    for key in attrs.get("/", {}):
        if key in plain or key in (HEADER_ATTR, CRC_ATTR):
            raise UnsupportedError(path=path, field=f"metadata {ATTRS_PREFIX}/ [{key!r}]",
                                   expected="a root attribute name not also plain metadata "
                                   "or reserved", found=key)
    return plain, attrs, canonical


def _write_attrs(h5py: Any, f: Any, attrs: dict[str, dict[str, Any]], path: str) -> None:
    """Put typed attributes back on their objects, creating missing groups (not for
    attributes that cannot be written: those are only warned about)."""
    for where, values in attrs.items():
        writable = {}
        for key, typed in values.items():
            if "unsupported" in typed:
                warnings.warn(f"{path}: metadata {ATTRS_PREFIX}{where} [{key!r}]: not written "
                              f"(an attribute of type {typed['unsupported']} the source held)",
                              UserWarning, stacklevel=5)
            elif key != CRC_ATTR:
                writable[key] = typed
        if not writable:
            continue
        obj = f
        for part in where.strip("/").split("/") if where != "/" else []:
            if part in obj:
                obj = obj[part]
            elif isinstance(obj, h5py.Group):
                obj = obj.create_group(part, track_order=True)
            else:
                raise UnsupportedError(path=path, field=f"metadata {ATTRS_PREFIX}{where}",
                                       expected="a path through groups", found=where)
        for key, typed in writable.items():
            _write_typed(h5py, obj, key, typed, path, f"metadata {ATTRS_PREFIX}{where} [{key!r}]")


def _write_typed(h5py: Any, obj: Any, key: str, typed: dict[str, Any], path: str,
                 field: str) -> None:
    try:
        dtype, shape, value = typed["dtype"], typed["shape"], typed["value"]
        if dtype == "empty":
            obj.attrs.create(key, h5py.Empty("f8"))
        elif dtype == "str":
            data = np.array(value, dtype=object).reshape(shape)
            obj.attrs.create(key, data, dtype=h5py.string_dtype("utf-8"))
        elif isinstance(dtype, str) and dtype.startswith("S"):
            raw = np.vectorize(lambda t: t.encode("utf-8", "surrogateescape"),
                               otypes=[object])(np.array(value, dtype=object))
            obj.attrs.create(key, np.array(raw.tolist() if shape else raw[()],
                                           dtype=dtype).reshape(shape))
        else:
            obj.attrs.create(key, np.array(value, dtype=canonical_dtype(dtype)).reshape(shape))
    except (KeyError, TypeError, ValueError, WeightstoreError) as e:
        raise UnsupportedError(f"cannot write the attribute ({e})", path=path,
                               field=field) from e
