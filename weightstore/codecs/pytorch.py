"""pytorch: checkpoints ``torch.save`` writes (``.pt``, ``.pth``, ``pytorch_model.bin``),
read and written without importing torch and without running code from the file.

Two layouts are read:

- the zip format (``torch.save`` since 1.6): a stored zip holding
  ``<archive>/data.pkl`` (a pickle of the object saved, whose tensors refer to their
  storages by key), ``<archive>/data/<key>`` (each storage's raw bytes),
  ``<archive>/byteorder`` (``little`` or ``big``; absent means little) and
  ``<archive>/version``;
- the legacy format (``_use_new_zipfile_serialization=False``): four pickles (the magic
  number ``0x1950a86a20f9469cfc6c``, the protocol version 1001, a ``sys_info`` dict
  saying the byte order, the object saved), a pickled list of storage keys, then for
  each key in that order an 8-byte element count and the storage's raw bytes.

The pickles are read by a restricted unpickler that accepts what
``torch.load(weights_only=True)`` accepts for tensors and plain containers: the
tensor rebuild functions (``torch._utils._rebuild_tensor``, ``_rebuild_tensor_v2``,
``_rebuild_tensor_v3``, ``_rebuild_parameter``, ``_rebuild_parameter_with_state``),
the storage types (``torch.FloatStorage`` ..., ``torch.storage.UntypedStorage``),
torch dtypes, ``torch.Size``, ``collections.OrderedDict``, ``_codecs.encode`` (bytes
in protocol 2) and ``builtins.set``/``complex``/``bytearray``. Any other global is
refused with :class:`~weightstore.errors.UnsafeFileError` naming it, before anything
from the file runs; torch's sparse, quantized and other special tensors are refused
with :class:`~weightstore.errors.UnsupportedError`. Each pickle is walked once by
:mod:`pickletools` before it is loaded, so that memo indices and byte counts it
claims are checked before the unpickler allocates for them.

What a checkpoint gives: tensors named by their path in the saved object, joined by
``/`` (``{"model": {"fc.weight": t}, "optimizer": {"state": {0: {...}}}}`` gives
``model/fc.weight`` and ``optimizer/state/0/exp_avg``; list items by index); plain
values (numbers, strings, booleans, ``None``, empty containers) become metadata under
the same path (``epoch`` -> ``"3"``); a top-level ``__metadata__`` dict of strings
(what weightstore writes) is the metadata itself; a tensor saved alone is named
``tensor``. Anything else (bytes, sets, complex numbers) is skipped and listed in one
:class:`~weightstore.errors.SkippedEntriesWarning`, never dropped silently (``strict``
refuses the file instead).

Tensors keep torch's dtype where numpy or ``ml_dtypes`` holds it as weightstore does:
bool, (u)int8-64, float16/32/64 and bfloat16. Tensors of other dtypes (float8, complex)
are skipped the same way; torch's quantized and sparse tensors are an
:class:`~weightstore.errors.UnsupportedError` naming the tensor. Storage offsets,
strides (non-contiguous views, several tensors sharing one storage), 0-d tensors and
big-endian archives are honoured; an offset or stride reaching past its storage, or a
storage whose declared size differs from its bytes, is a
:class:`~weightstore.errors.FormatError`. Storages are read with the raw reader:
memory-mapped when asked (``weightstore.open``) where the member is stored, as
``torch.save`` stores it. The zip CRC-32 of each storage is checked as it is read
(``verify=False`` skips it).

Writing gives the zip format as torch 2.x writes it (records aligned to 64 bytes, so
``torch.load(mmap=True)`` maps them): a dict of the tensors under their names in
order (``/`` kept in the names), plus ``"__metadata__"`` (a dict of strings) when
there is metadata. ``torch.load(path, weights_only=True)`` loads it. Tensors are
written one at a time.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
import struct
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import IO, Any

import numpy as np

from ..codec import (
    DEFAULT_LIMITS,
    Budget,
    Codec,
    Limits,
    Skipped,
    TensorSource,
    read_through_open,
    report_skipped,
)
from ..errors import (
    ChecksumError,
    FormatError,
    LimitError,
    UnknownFormatError,
    UnsafeFileError,
    UnsupportedError,
    WeightstoreError,
)
from ..fileio import CHUNK, RawFile, crc32
from ..model import MAX_NDIM, TensorInfo, canonical_dtype, dtype_name, info_of, to_storage
from ..sniffing import PYTORCH_LEGACY_HEAD, describe_zip, is_pytorch
from ._unpickle import Frozen

__all__ = ["PytorchCodec", "open_checkpoint", "write_checkpoint", "LEGACY_MAGIC",
           "LEGACY_HEAD"]

#: The number the legacy format pickles first.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
#: Its pickle (protocol 2, LONG1 of 10 bytes): how a legacy checkpoint starts.
LEGACY_HEAD = PYTORCH_LEGACY_HEAD
_LEGACY_PROTOCOL = 1001
#: The name a tensor saved alone (not in a container) gets.
SINGLE_NAME = "tensor"
#: The key weightstore stores its metadata under.
METADATA_KEY = "__metadata__"
#: Records are aligned to this many bytes, as torch writes them.
ALIGNMENT = 64

# torch's legacy storage classes: their element type and size. None: no numpy dtype.
_STORAGE_TYPES: dict[str, tuple[str | None, int]] = {
    "DoubleStorage": ("float64", 8), "FloatStorage": ("float32", 4),
    "HalfStorage": ("float16", 2), "BFloat16Storage": ("bfloat16", 2),
    "LongStorage": ("int64", 8), "IntStorage": ("int32", 4), "ShortStorage": ("int16", 2),
    "CharStorage": ("int8", 1), "ByteStorage": ("uint8", 1), "BoolStorage": ("bool", 1),
    "ComplexDoubleStorage": (None, 16), "ComplexFloatStorage": (None, 8),
    "QInt8Storage": (None, 1), "QInt32Storage": (None, 4), "QUInt8Storage": (None, 1),
    "QUInt4x2Storage": (None, 1), "QUInt2x4Storage": (None, 1),
}
# torch dtypes by their pickled name (torch.<name>): numpy dtype name, item size.
_TORCH_DTYPES: dict[str, tuple[str | None, int]] = {
    "float64": ("float64", 8), "float32": ("float32", 4), "float16": ("float16", 2),
    "bfloat16": ("bfloat16", 2), "int64": ("int64", 8), "int32": ("int32", 4),
    "int16": ("int16", 2), "int8": ("int8", 1), "uint8": ("uint8", 1), "bool": ("bool", 1),
    "uint16": ("uint16", 2), "uint32": ("uint32", 4), "uint64": ("uint64", 8),
    "complex128": (None, 16), "complex64": (None, 8), "complex32": (None, 4),
    "float8_e5m2": (None, 1), "float8_e4m3fn": (None, 1), "float8_e5m2fnuz": (None, 1),
    "float8_e4m3fnuz": (None, 1), "float8_e8m0fnu": (None, 1),
    "float4_e2m1fn_x2": (None, 1), "qint8": (None, 1), "qint32": (None, 4),
    "quint8": (None, 1), "quint4x2": (None, 1), "quint2x4": (None, 1),
    "bits8": (None, 1), "bits16": (None, 2), "bits1x8": (None, 1), "bits2x4": (None, 1),
    "bits4x2": (None, 1),
    **{f"uint{n}": (None, 1) for n in range(1, 8)},
    **{f"int{n}": (None, 1) for n in range(1, 8)},
}
# What we write: numpy dtype name -> the storage class torch pickles for it (None: the
# dtype has no legacy class; torch writes an UntypedStorage and the dtype beside it).
_WRITE_STORAGE: dict[str, str | None] = {
    "float64": "DoubleStorage", "float32": "FloatStorage", "float16": "HalfStorage",
    "bfloat16": "BFloat16Storage", "int64": "LongStorage", "int32": "IntStorage",
    "int16": "ShortStorage", "int8": "CharStorage", "uint8": "ByteStorage",
    "bool": "BoolStorage", "uint16": None, "uint32": None, "uint64": None,
}
# Rebuild functions torch allows with weights_only that make tensors we cannot hold.
_SPECIAL_TENSORS = {
    "_rebuild_qtensor": "a quantized tensor", "_rebuild_sparse_tensor": "a sparse tensor",
    "_rebuild_meta_tensor_no_storage": "a meta tensor (no data)",
    "_rebuild_nested_tensor": "a nested tensor",
    "_rebuild_wrapper_subclass": "a tensor subclass",
    "_rebuild_device_tensor_from_numpy": "a tensor pickled through numpy",
    "_rebuild_device_tensor_from_cpu_tensor": "a device tensor",
}


# --- what the pickle builds ---------------------------------------------------------------


class _StorageType(Frozen):
    """``torch.FloatStorage`` and the like: names an element type."""

    __slots__ = ("dtype", "itemsize")

    def __init__(self, name: str, dtype: str | None, itemsize: int) -> None:
        super().__init__(name)
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "itemsize", itemsize)


class _TorchDtype(_StorageType):
    """``torch.float32`` and the like."""

    __slots__ = ()


_UNTYPED = _StorageType("torch.storage.UntypedStorage", None, 1)


@dataclass
class _Storage:
    """A storage a pickle refers to: *nbytes* of raw data under *key*."""

    key: str
    kind: _StorageType  # the class pickled (UntypedStorage: bytes, dtype given per tensor)
    nbytes: int
    base: int = 0  # bytes into the root storage (a legacy storage view)
    root: _Storage | None = None

    @property
    def label(self) -> str:
        return repr(self.kind)


@dataclass
class _TensorRef:
    """A tensor as the pickle describes it: a view of a storage."""

    storage: _Storage
    offset: int  # in elements
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: str | None  # numpy dtype name; None when numpy cannot hold it
    torch_dtype: str  # for messages


def _check_ints(value: Any, what: str) -> tuple[int, ...]:
    if isinstance(value, list):
        value = tuple(value)
    if (not isinstance(value, tuple) or len(value) > MAX_NDIM
            or not all(type(v) is int and v >= 0 for v in value)):
        raise FormatError(field=what, expected=f"a tuple of at most {MAX_NDIM} "
                          "non-negative integers", found=value)
    return value


def _tensor(storage: Any, offset: Any, size: Any, stride: Any, dtype: _StorageType | None,
            where: str) -> _TensorRef:
    if not isinstance(storage, _Storage):
        raise FormatError(field=f"{where} storage", expected="a storage reference",
                          found=type(storage).__name__)
    if type(offset) is not int or offset < 0:
        raise FormatError(field=f"{where} storage offset", expected="a non-negative integer",
                          found=offset)
    shape = _check_ints(size, f"{where} size")
    strides = _check_ints(stride, f"{where} stride")
    if len(strides) != len(shape):
        raise FormatError(field=f"{where} stride", expected=f"{len(shape)} strides for size "
                          f"{shape}", found=strides)
    kind = dtype if dtype is not None else storage.kind
    if kind is _UNTYPED:
        raise FormatError(field=where, expected="a dtype for an untyped storage",
                          found="none")
    return _TensorRef(storage, offset, shape, strides, kind.dtype,
                      repr(kind).rsplit(".", 1)[-1])


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *rest: Any) -> _TensorRef:
    """``torch._utils._rebuild_tensor`` and ``_rebuild_tensor_v2``: a view of a storage
    (requires_grad, backward hooks and metadata are not kept)."""
    return _tensor(storage, offset, size, stride, None, "tensor")


def _rebuild_tensor_v3(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any,
                       hooks: Any, dtype: Any, *rest: Any) -> _TensorRef:
    """``torch._utils._rebuild_tensor_v3``: a view of an untyped storage with its dtype."""
    if not isinstance(dtype, _TorchDtype):
        raise FormatError(field="tensor dtype", expected="a torch dtype",
                          found=type(dtype).__name__)
    return _tensor(storage, offset, size, stride, dtype, "tensor")


def _rebuild_parameter(data: Any, *rest: Any) -> Any:
    """``torch._utils._rebuild_parameter(data, requires_grad, hooks[, state])``: the data."""
    if not isinstance(data, _TensorRef):
        raise FormatError(field="parameter", expected="a tensor", found=type(data).__name__)
    return data


def _size(*args: Any) -> tuple[int, ...]:
    """``torch.Size(sequence)``: a tuple of sizes."""
    if len(args) != 1:
        raise FormatError(field="torch.Size", expected="one sequence", found=args)
    return _check_ints(args[0], "torch.Size")


def _latin1_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding != "latin1":
        raise UnsafeFileError(field="global _codecs.encode", expected="encode(str, 'latin1')",
                              found=f"encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


def _plain(kind: type) -> Any:
    def build(*args: Any) -> Any:
        if len(args) > 1 or any(isinstance(a, Frozen | _TensorRef | _Storage) for a in args):
            raise FormatError(field=f"builtins.{kind.__name__}", expected="plain values",
                              found=args)
        return kind(*args)
    return build


def _special(name: str, what: str) -> Any:
    def refuse(*args: Any) -> Any:
        raise UnsupportedError(field=f"global torch._utils.{name}",
                               expected="dense tensors", found=what)
    return refuse


def _build_globals() -> dict[tuple[str, str], Any]:
    out: dict[tuple[str, str], Any] = {
        ("torch._utils", "_rebuild_tensor"): Frozen("torch._utils._rebuild_tensor",
                                                     _rebuild_tensor),
        ("torch._utils", "_rebuild_tensor_v2"): Frozen("torch._utils._rebuild_tensor_v2",
                                                        _rebuild_tensor),
        ("torch._utils", "_rebuild_tensor_v3"): Frozen("torch._utils._rebuild_tensor_v3",
                                                        _rebuild_tensor_v3),
        ("torch._utils", "_rebuild_parameter"): Frozen("torch._utils._rebuild_parameter",
                                                        _rebuild_parameter),
        ("torch._utils", "_rebuild_parameter_with_state"): Frozen(
            "torch._utils._rebuild_parameter_with_state", _rebuild_parameter),
        ("torch", "Size"): Frozen("torch.Size", _size),
        ("collections", "OrderedDict"): Frozen("collections.OrderedDict", _plain(OrderedDict)),
        ("_codecs", "encode"): Frozen("_codecs.encode", _latin1_encode),
        **{(module, kind.__name__): Frozen(f"builtins.{kind.__name__}", _plain(kind))
           for kind in (set, bytearray, complex)
           for module in ("builtins", "__builtin__")},  # protocol 2 says __builtin__
        ("torch.storage", "UntypedStorage"): _UNTYPED,
    }
    for name, (dtype, size) in _STORAGE_TYPES.items():
        out[("torch", name)] = _StorageType(f"torch.{name}", dtype, size)
    for name, (dtype, size) in _TORCH_DTYPES.items():
        out[("torch", name)] = _TorchDtype(f"torch.{name}", dtype, size)
    for name, what in _SPECIAL_TENSORS.items():
        out[("torch._utils", name)] = Frozen(f"torch._utils.{name}", _special(name, what))
    return out


_GLOBALS = _build_globals()


class _Unpickler(pickle.Unpickler):
    """Resolves only the globals above; storages through *storages* (key -> _Storage)."""

    def __init__(self, file: IO[bytes], path: str, storages: dict[str, _Storage] | None,
                 legacy: bool) -> None:
        super().__init__(file, encoding="utf-8")
        self._path, self._storages, self._legacy = path, storages, legacy

    def find_class(self, module: str, name: str) -> Any:
        obj = _GLOBALS.get((module, name))
        if obj is None:
            raise UnsafeFileError(
                "refused to load: the pickle references a global that torch.load("
                "weights_only=True) refuses too, and loading it could run code",
                path=self._path, field=f"global {module}.{name}",
                expected="only tensors, storages, dtypes and plain containers")
        return obj

    def persistent_load(self, pid: Any) -> Any:
        if self._storages is None:
            raise UnsafeFileError(path=self._path, field="persistent id",
                                  expected="none in this pickle", found=pid)
        n = 6 if self._legacy else 5
        if (not isinstance(pid, tuple) or len(pid) != n or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str)
                or not isinstance(pid[3], str) or type(pid[4]) is not int or pid[4] < 0):
            raise FormatError(path=self._path, field="persistent id",
                              expected="('storage', storage type, key, location, size"
                              + (", view)" if self._legacy else ")"), found=pid)
        kind, key, numel = pid[1], pid[2], pid[4]
        if isinstance(kind, _TorchDtype):
            raise FormatError(path=self._path, field=f"storage {key!r} type",
                              expected="a storage class", found=repr(kind))
        storage = self._storage(key, kind, numel * kind.itemsize)
        if self._legacy and pid[5] is not None:
            view = pid[5]
            if (not isinstance(view, tuple) or len(view) != 3 or not isinstance(view[0], str)
                    or not all(type(v) is int and v >= 0 for v in view[1:])):
                raise FormatError(path=self._path, field=f"storage {key!r} view",
                                  expected="(view key, offset, bytes)", found=view)
            vkey, offset, nbytes = view
            if offset + nbytes > storage.nbytes:
                raise FormatError(path=self._path, field=f"storage view {vkey!r}",
                                  expected=f"within the {storage.nbytes:,} bytes of storage "
                                  f"{key!r}", found=f"{nbytes:,} bytes at offset {offset:,}")
            return _Storage(vkey, kind, nbytes, offset, storage)
        return storage

    def _storage(self, key: str, kind: _StorageType, nbytes: int) -> _Storage:
        assert self._storages is not None
        known = self._storages.get(key)
        if known is None:
            known = self._storages[key] = _Storage(key, kind, nbytes)
        elif known.nbytes != nbytes or known.kind is not kind:
            raise FormatError(path=self._path, field=f"storage {key!r}",
                              expected=f"{known.nbytes:,} bytes of {known.label} as first "
                              "referred to", found=f"{nbytes:,} bytes of {kind!r}")
        return known


class _Bounded(io.RawIOBase):
    """Reads of *fileobj* up to *end*: a length a pickle claims cannot read, or make a
    reader allocate, beyond it."""

    def __init__(self, fileobj: IO[bytes], end: int) -> None:
        self._f, self._end = fileobj, end

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), max(0, self._end - self._f.tell()))
        data = self._f.read(n)
        view[: len(data)] = data
        return len(data)

    def tell(self) -> int:
        return self._f.tell()

    def seek(self, pos: int, whence: int = 0) -> int:
        return self._f.seek(pos, whence)


def _load_pickle(fileobj: IO[bytes], end: int, path: str, what: str, limits: Limits,
                 storages: dict[str, _Storage] | None = None, legacy: bool = False) -> Any:
    """The object the pickle at *fileobj*'s position holds, read no further than *end*;
    the file is left just after it.

    :mod:`pickletools` walks the opcodes first: a memo index may not exceed the number
    of opcodes before it (the C unpickler sizes its memo by the index), counted bytes and
    strings must lie within *end* (it allocates what they claim), and the pickle must
    end within ``Limits.max_header_bytes``.
    """
    start = fileobj.tell()
    bound = min(end, start + limits.max_header_bytes)
    reader = io.BufferedReader(_Bounded(fileobj, bound), CHUNK)
    count = 0
    try:
        for op, arg, _ in pickletools.genops(reader):
            count += 1
            if op.name in ("PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"):
                if not isinstance(arg, int) or arg < 0 or arg > count:
                    raise FormatError(path=path, field=f"{what} memo index",
                                      expected=f"at most {count:,} (the opcodes before it)",
                                      found=arg)
            elif op.name == "PROTO" and arg > 5:
                raise FormatError(path=path, field=f"{what} protocol", expected="2 to 5",
                                  found=arg)
    except WeightstoreError:
        raise
    except (ValueError, EOFError, UnicodeDecodeError, OverflowError, MemoryError) as e:
        if fileobj.tell() >= bound and bound < end:
            raise LimitError(path=path, field=what, expected=f"a pickle within "
                             f"{limits.max_header_bytes:,} bytes (Limits.max_header_bytes)",
                             found="more") from e
        raise FormatError(f"not a valid pickle ({e})", path=path, field=what) from e
    stop = reader.tell()
    fileobj.seek(start)
    try:
        obj = _Unpickler(io.BufferedReader(_Bounded(fileobj, stop), CHUNK), path, storages,
                         legacy).load()
    except WeightstoreError as e:
        if e.path is None:
            raise type(e)(e.message, path=path) from e
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, MemoryError, OverflowError, RecursionError) as e:
        raise FormatError(f"not a valid pickle ({type(e).__name__}: {e})", path=path,
                          field=what) from e
    fileobj.seek(stop)
    return obj


# --- the saved object as names ---------------------------------------------------------------


def _flatten(obj: Any, path: str, limits: Limits) -> tuple[list[tuple[str, _TensorRef]],
                                                          dict[str, str], list[Skipped]]:
    """Tensors by ``/``-joined path, plain values as metadata, and the entries skipped."""
    tensors: list[tuple[str, _TensorRef]] = []
    metadata: dict[str, str] = {}
    other: list[Skipped] = []
    plain = "a tensor, a plain value, or a dict, list or tuple of them"
    visits = 0

    def walk(node: Any, prefix: str, depth: int) -> None:
        nonlocal visits
        visits += 1
        if visits > 2 * limits.max_tensors + 1:
            raise LimitError(path=path, field="containers and tensors",
                             expected=f"at most {limits.max_tensors:,} tensors "
                             "(Limits.max_tensors)", found=f"more than {visits - 1:,} entries")
        if depth > limits.max_depth:
            raise FormatError(path=path, field=prefix or "top level",
                              expected=f"nesting within {limits.max_depth} levels")
        where = prefix or SINGLE_NAME
        if isinstance(node, _TensorRef):
            tensors.append((where, node))
        elif isinstance(node, dict):
            if not node and prefix:
                metadata[prefix] = "{}"
            for key, value in node.items():
                if not prefix and key == METADATA_KEY and isinstance(value, dict) and all(
                        isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                    metadata.update(value)
                    continue
                if isinstance(key, bool) or not isinstance(key, str | int):
                    other.append(Skipped(f"{prefix or 'top level'}[{key!r}]",
                                         f"a {type(key).__name__} key", "a string or int key"))
                    continue
                walk(value, f"{prefix}/{key}" if prefix else str(key), depth + 1)
        elif isinstance(node, list | tuple):
            if not node and prefix:
                metadata[prefix] = "[]" if isinstance(node, list) else "()"
            for i, value in enumerate(node):
                walk(value, f"{prefix}/{i}" if prefix else str(i), depth + 1)
        elif node is None or isinstance(node, str | int | float | bool):
            if not prefix:
                raise FormatError(path=path, field="top level",
                                  expected="a tensor or a container of tensors",
                                  found=type(node).__name__)
            metadata[prefix] = str(node)
        elif isinstance(node, _Storage | Frozen):
            other.append(Skipped(where, node.label if isinstance(node, _Storage)
                                 else repr(node), plain))
        else:
            other.append(Skipped(where, f"a {type(node).__name__}", plain))

    walk(obj, "", 0)
    return tensors, metadata, other


# --- reading ---------------------------------------------------------------------------------


@dataclass
class _Placed:
    """Where a storage's bytes are: *offset* in the file (stored), or a compressed member."""

    offset: int  # of the first byte, or -1 for a compressed zip member
    crc: int | None  # the zip member's CRC-32 (None: legacy, no checksum)
    info: zipfile.ZipInfo | None = None


def _numpy_dtype(name: str, big: bool) -> np.dtype:
    """The dtype a tensor is read as: big-endian in a big-endian archive, except bfloat16,
    which ml_dtypes holds only in native order (read as big-endian uint16, then swapped)."""
    dtype = canonical_dtype(name)
    if big and dtype.itemsize > 1 and name != "bfloat16":
        return dtype.newbyteorder(">")
    return dtype


def _extent(ref: _TensorRef) -> int:
    """Elements from the tensor's offset to one past the last element it reaches."""
    if any(d == 0 for d in ref.shape):
        return 0
    return 1 + sum((d - 1) * s for d, s in zip(ref.shape, ref.stride, strict=True))


def _c_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Element strides of a C-contiguous tensor, as torch computes them."""
    out, step = [], 1
    for d in reversed(shape):
        out.append(step)
        step *= max(d, 1)
    return tuple(reversed(out))


def _contiguous(ref: _TensorRef) -> bool:
    expected = _c_strides(ref.shape)
    return all(d <= 1 or s == e for d, s, e in zip(ref.shape, ref.stride, expected, strict=True))


class CheckpointSource(TensorSource):
    """An opened checkpoint: every tensor's dtype, shape and place known, its bytes on disk."""

    lazy = True

    def __init__(self, raw: RawFile, path: str, refs: list[tuple[str, _TensorRef]],
                 metadata: dict[str, str], places: dict[str, _Placed], big: bool,
                 limits: Limits, verify: bool, zf: zipfile.ZipFile | None = None,
                 skipped: list[Skipped] | None = None) -> None:
        self._raw, self._path, self._places, self._zf = raw, path, places, zf
        self._verify, self._limits = verify, limits
        self._verified: set[str] = set()
        self._refs: dict[str, _TensorRef] = {}
        self._big = big
        #: Entries left out: neither tensors nor plain values, or of a dtype not held.
        self.skipped: list[Skipped] = list(skipped or ())
        metas = []
        for name, ref in refs:
            if name in self._refs:
                raise FormatError(path=path, field=f"tensor {name!r}", expected="unique names",
                                  found="twice")
            if ref.dtype is None:
                self.skipped.append(Skipped(name, f"a torch.{ref.torch_dtype} tensor of "
                                            f"shape {ref.shape}"))
                continue
            dtype = _numpy_dtype(ref.dtype, big)
            storage = ref.storage.root or ref.storage
            itemsize = dtype.itemsize
            whole = storage.nbytes % itemsize == 0 or ref.storage.kind is not _UNTYPED
            if ref.storage.base % itemsize or not whole:
                raise FormatError(path=path, field=f"tensor {name!r}",
                                  expected=f"a storage of whole {dtype.name} elements",
                                  found=f"{ref.storage.nbytes:,} bytes")
            available = ref.storage.nbytes // itemsize
            reach = _extent(ref)
            if ref.offset + reach > available or ref.offset > available:
                raise FormatError(
                    path=path, field=f"tensor {name!r}",
                    expected=f"offset and strides within its storage {ref.storage.key!r} of "
                    f"{available:,} elements", found=f"offset {ref.offset:,}, size "
                    f"{ref.shape}, stride {ref.stride}: element {ref.offset + reach - 1:,}")
            meta = TensorInfo(name, dtype, ref.shape)
            limits.check_tensor(path, name, meta.nbytes)
            if meta.nbytes > limits.max_output(reach * itemsize):  # zero strides repeat
                raise LimitError(path=path, field=f"tensor {name!r}",
                                 expected=f"at most {limits.max_output(reach * itemsize):,} "
                                 f"bytes from the {reach * itemsize:,} bytes its strides reach "
                                 "(Limits.max_expansion)", found=f"{meta.nbytes:,} bytes, "
                                 f"stride {ref.stride}")
            metas.append(meta)
            self._refs[name] = ref
        super().__init__(metas, metadata)
        self._metas = {m.name: m for m in metas}

    def read(self, name: str, *, mmap: bool = False) -> np.ndarray:
        meta = self._metas[name]
        if self._big and meta.dtype.name == "bfloat16":  # swapped here: see _numpy_dtype
            return self._read(name, np.dtype(">u2"), mmap).astype("<u2").view(meta.dtype)
        return self._read(name, meta.dtype, mmap)

    def _read(self, name: str, dtype: np.dtype, mmap: bool) -> np.ndarray:
        ref, meta = self._refs[name], self._metas[name]
        root = ref.storage.root or ref.storage
        place = self._places[root.key]
        start = ref.storage.base + ref.offset * dtype.itemsize  # bytes into the root
        span = _extent(ref)
        contiguous = _contiguous(ref)
        field = f"tensor {name!r}"
        if place.offset < 0:  # a compressed member: inflate it (zipfile checks its CRC)
            data = self._member_bytes(place, root)
            base = np.frombuffer(data, dtype=dtype, count=span, offset=start)
            return np.lib.stride_tricks.as_strided(
                base, meta.shape, tuple(s * dtype.itemsize for s in ref.stride)).copy()
        at = place.offset + start
        if mmap and self._raw.can_mmap:
            if contiguous:
                return self._raw.map_array(at, dtype, meta.shape).view(np.ndarray)
            base = self._raw.map_array(at, dtype, (span,)).view(np.ndarray)
            return np.lib.stride_tricks.as_strided(
                base, meta.shape, tuple(s * dtype.itemsize for s in ref.stride),
                writeable=False)
        whole = start == 0 and span * dtype.itemsize == root.nbytes and root.key not in \
            self._verified
        crc = None
        if self._verify and place.crc is not None:
            if whole:
                crc = (0, place.crc)
            else:
                self._check_storage(root, place)
        if contiguous:
            array = self._raw.read_array(at, dtype, meta.shape, field=field, crc=crc)
        else:
            base = self._raw.read_array(at, dtype, (span,), field=field, crc=crc)
            array = np.lib.stride_tricks.as_strided(
                base, meta.shape, tuple(s * dtype.itemsize for s in ref.stride)).copy()
        if crc is not None:
            self._verified.add(root.key)
        return array

    def _check_storage(self, root: _Storage, place: _Placed) -> None:
        """The zip CRC-32 of a storage read in part (a view), checked once, in slices."""
        if root.key in self._verified:
            return
        value, done = 0, 0
        while done < root.nbytes:
            piece = self._raw.pread(place.offset + done, min(CHUNK, root.nbytes - done))
            if not piece:
                raise FormatError(path=self._path, field=f"storage {root.key!r}",
                                  expected=f"{root.nbytes:,} bytes", found=f"{done:,}")
            value = crc32(piece, value)
            done += len(piece)
        if value != place.crc:
            raise ChecksumError(path=self._path, field=f"storage {root.key!r}",
                                expected=f"CRC-32 {place.crc:08x}", found=f"{value:08x}")
        self._verified.add(root.key)

    def _member_bytes(self, place: _Placed, root: _Storage) -> bytes:
        assert self._zf is not None and place.info is not None
        try:
            return self._zf.read(place.info)
        except zipfile.BadZipFile as e:
            raise ChecksumError(f"damaged member ({e})", path=self._path,
                                field=f"storage {root.key!r}") from e
        except (OSError, EOFError, zlib.error, NotImplementedError, RuntimeError) as e:
            raise FormatError(f"unreadable member ({e})", path=self._path,
                              field=f"storage {root.key!r}") from e

    def close(self) -> None:
        if self._zf is not None:
            self._zf.close()


_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")


def _stored_offset(raw: RawFile, info: zipfile.ZipInfo, path: str) -> int:
    """Where a stored member's bytes start: after its local header and extra field."""
    head = raw.pread(info.header_offset, _LOCAL_HEADER.size)
    where = f"member {info.filename!r} local header"
    if len(head) != _LOCAL_HEADER.size or head[:4] != b"PK\x03\x04":
        raise FormatError(path=path, field=where, expected="a zip local header",
                          found=head[:4])
    fields = _LOCAL_HEADER.unpack(head)
    name_len, extra_len = fields[-2], fields[-1]
    start = info.header_offset + _LOCAL_HEADER.size
    if raw.pread(start, name_len) != info.orig_filename.encode(
            "utf-8" if info.flag_bits & 0x800 else "cp437", "replace"):
        raise FormatError(path=path, field=where, expected="the name in the central "
                          "directory", found=raw.pread(start, name_len)[:64])
    offset = start + name_len + extra_len
    if offset + info.file_size > raw.size:
        raise FormatError(path=path, field=f"member {info.filename!r}",
                          expected=f"{info.file_size:,} bytes at offset {offset:,}",
                          found=f"a file of {raw.size:,} bytes (truncated)")
    return offset


def _archive_prefix(zf: zipfile.ZipFile, path: str) -> str:
    names = zf.namelist()
    pickles = [n for n in names if n == "data.pkl" or (
        n.endswith("/data.pkl") and n.count("/") == 1)]
    what, hint = describe_zip(names)
    if len(pickles) != 1:
        raise FormatError(path=path, field="zip members",
                          expected="one <archive>/data.pkl (a torch.save checkpoint)",
                          found=what if not pickles else f"{len(pickles)} of them", hint=hint)
    if what.startswith("a TorchScript"):
        raise UnsupportedError(path=path, field="zip members", expected="a torch.save "
                               "checkpoint", found=what, hint=hint)
    return pickles[0][: -len("data.pkl")]


def _member(zf: zipfile.ZipFile, name: str, path: str, limit: int) -> bytes | None:
    try:
        info = zf.getinfo(name)
    except KeyError:
        return None
    if info.file_size > limit:
        raise LimitError(path=path, field=f"member {name!r}", expected=f"at most {limit:,} "
                         "bytes (Limits.max_header_bytes)", found=f"{info.file_size:,}")
    try:
        return zf.read(info)
    except zipfile.BadZipFile as e:
        raise ChecksumError(f"damaged member ({e})", path=path, field=f"member {name!r}") from e
    except (OSError, EOFError, zlib.error, NotImplementedError, RuntimeError) as e:
        raise FormatError(f"unreadable member ({e})", path=path, field=f"member {name!r}") from e


def _open_zip(fileobj: IO[bytes], path: str, limits: Limits, verify: bool) -> CheckpointSource:
    raw = RawFile(fileobj, path)
    try:
        zf = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as e:
        raise FormatError(f"not a valid zip archive ({e})", path=path) from e
    try:
        prefix = _archive_prefix(zf, path)
        _check_members(zf, raw, path)
        order = _member(zf, f"{prefix}byteorder", path, 64)
        if order not in (None, b"little", b"big"):
            raise FormatError(path=path, field=f"member {prefix}byteorder",
                              expected="'little' or 'big'", found=order)
        if _member(zf, f"{prefix}version", path, 64) is None:
            raise FormatError(path=path, field="zip members",
                              expected=f"{prefix}version beside {prefix}data.pkl",
                              found="none")
        data = _member(zf, f"{prefix}data.pkl", path, limits.max_header_bytes)
        assert data is not None
        storages: dict[str, _Storage] = {}
        obj = _load_pickle(io.BytesIO(data), len(data), path, f"member {prefix}data.pkl",
                           limits, storages)
        refs, metadata, skipped = _flatten(obj, path, limits)
        places: dict[str, _Placed] = {}
        for key, storage in storages.items():
            name = f"{prefix}data/{key}"
            try:
                info = zf.getinfo(name)
            except KeyError:
                raise FormatError(path=path, field=f"storage {key!r}",
                                  expected=f"a member {name!r}", found="none") from None
            if info.file_size != storage.nbytes:
                raise FormatError(path=path, field=f"member {name!r}",
                                  expected=f"{storage.nbytes:,} bytes ({storage.label} as "
                                  "data.pkl declares it)", found=f"{info.file_size:,} bytes")
            limits.check_tensor(path, f"storage {key}", storage.nbytes)
            if info.compress_type == zipfile.ZIP_STORED:
                if info.compress_size != info.file_size:
                    raise FormatError(path=path, field=f"member {name!r}",
                                      expected=f"{info.file_size:,} stored bytes",
                                      found=f"{info.compress_size:,}")
                places[key] = _Placed(_stored_offset(raw, info, path), info.CRC)
            else:
                if info.file_size > limits.max_output(info.compress_size):
                    raise LimitError(path=path, field=f"member {name!r}",
                                     expected=f"at most {limits.max_output(info.compress_size):,}"
                                     f" bytes from {info.compress_size:,} compressed "
                                     "(Limits.max_expansion)",
                                     found=f"{info.file_size:,} bytes claimed")
                places[key] = _Placed(-1, info.CRC, info)
        return CheckpointSource(raw, path, refs, metadata, places, order == b"big", limits,
                                verify, zf, skipped)
    except BaseException:
        zf.close()
        raise


def _check_members(zf: zipfile.ZipFile, raw: RawFile, path: str) -> None:
    """Refuse members whose bytes overlap or run past the directory (a zip bomb's trick),
    and encrypted ones."""
    infos = sorted(zf.infolist(), key=lambda i: i.header_offset)
    end = getattr(zf, "start_dir", raw.size)
    for i, info in enumerate(infos):
        if info.flag_bits & 0x1:
            raise FormatError(path=path, field=f"member {info.filename!r}",
                              expected="an unencrypted member", found="an encrypted one")
        limit = infos[i + 1].header_offset if i + 1 < len(infos) else end
        stop = info.header_offset + 30 + len(info.orig_filename.encode(
            "utf-8" if info.flag_bits & 0x800 else "cp437", "replace")) + info.compress_size
        if stop > limit:
            raise FormatError(path=path, field=f"member {info.filename!r}",
                              expected=f"its bytes to end by offset {limit:,}",
                              found=f"{info.compress_size:,} bytes from offset "
                              f"{info.header_offset:,} (overlapping members or past the end)")


def _open_legacy(fileobj: IO[bytes], path: str, limits: Limits, verify: bool
                 ) -> CheckpointSource:
    raw = RawFile(fileobj, path)
    size = raw.size
    fileobj.seek(0)
    # LEGACY_MAGIC: the caller matched its whole pickle (LEGACY_HEAD) before calling
    _load_pickle(fileobj, size, path, "magic number", limits)
    version = _load_pickle(fileobj, size, path, "protocol version", limits)
    if version != _LEGACY_PROTOCOL:
        raise FormatError(path=path, field="protocol version", expected=_LEGACY_PROTOCOL,
                          found=version)
    info = _load_pickle(fileobj, size, path, "sys_info", limits)
    if not isinstance(info, dict) or not isinstance(info.get("little_endian"), bool):
        raise FormatError(path=path, field="sys_info", expected="a dict with little_endian",
                          found=info)
    big = not info["little_endian"]
    storages: dict[str, _Storage] = {}
    obj = _load_pickle(fileobj, size, path, "saved object", limits, storages, legacy=True)
    keys = _load_pickle(fileobj, size, path, "storage keys", limits)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) or \
            len(set(keys)) != len(keys) or set(keys) != set(storages):
        raise FormatError(path=path, field="storage keys",
                          expected=f"each of the {len(storages)} storages the object refers "
                          "to, once", found=keys if isinstance(keys, list) else type(keys))
    refs, metadata, skipped = _flatten(obj, path, limits)
    places: dict[str, _Placed] = {}
    pos = fileobj.tell()
    order = ">" if big else "<"
    for key in keys:
        storage = storages[key]
        head = raw.pread(pos, 8)
        if len(head) != 8:
            raise FormatError(path=path, field=f"storage {key!r}", expected="its element "
                              f"count at offset {pos:,}", found="the end of the file")
        (numel,) = struct.unpack(f"{order}q", head)
        if numel * storage.kind.itemsize != storage.nbytes:
            raise FormatError(path=path, field=f"storage {key!r} size",
                              expected=f"{storage.nbytes // storage.kind.itemsize:,} elements "
                              "as the object declares", found=f"{numel:,}")
        limits.check_tensor(path, f"storage {key}", storage.nbytes)
        if pos + 8 + storage.nbytes > size:
            raise FormatError(path=path, field=f"storage {key!r}",
                              expected=f"{storage.nbytes:,} bytes at offset {pos + 8:,}",
                              found=f"a file of {size:,} bytes (truncated)")
        places[key] = _Placed(pos + 8, None)
        pos += 8 + storage.nbytes
    if pos != size:
        raise FormatError(path=path, field="end of file", expected=f"{pos:,} bytes",
                          found=f"{size:,} bytes")
    return CheckpointSource(raw, path, refs, metadata, places, big, limits, verify,
                            skipped=skipped)


def open_checkpoint(fileobj: IO[bytes], path: str, limits: Limits = DEFAULT_LIMITS,
                    verify: bool = True) -> CheckpointSource:
    """Open a checkpoint of either layout: its tensors described, their bytes left on disk."""
    head = fileobj.read(len(LEGACY_HEAD))
    fileobj.seek(0)
    if head == LEGACY_HEAD:
        return _open_legacy(fileobj, path, limits, verify)
    if _is_tar(fileobj):
        raise UnsupportedError(path=path, field="layout", expected="the zip or the legacy "
                               "pickle layout of torch.save", found="the tar layout of torch "
                               "before 0.4 (load and re-save it with torch)")
    if not head.startswith(b"PK"):
        # .bin names many things: say what this is not, rather than how a zip fails
        raise UnknownFormatError(path=path, field="content",
                                 expected="a PyTorch checkpoint (a zip, or the legacy pickle)",
                                 found=f"first bytes {head[:8]!r}")
    return _open_zip(fileobj, path, limits, verify)


def _is_tar(fileobj: IO[bytes]) -> bool:
    fileobj.seek(257)
    magic = fileobj.read(5)
    fileobj.seek(0)
    return magic == b"ustar"


# --- writing ------------------------------------------------------------------------------


class _PickleWriter:
    """Protocol-2 pickle opcodes for the handful of things a checkpoint holds."""

    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")
        self._memo: dict[str, int] = {}

    def global_(self, module: str, name: str) -> None:
        key = f"{module}\n{name}"
        if key in self._memo:
            i = self._memo[key]
            self.out += b"h" + bytes([i]) if i < 256 else b"j" + struct.pack("<I", i)
            return
        self.out += b"c" + f"{module}\n{name}\n".encode()
        i = self._memo[key] = len(self._memo)
        self.out += b"q" + bytes([i]) if i < 256 else b"r" + struct.pack("<I", i)

    def text(self, s: str) -> None:
        raw = s.encode("utf-8", "surrogatepass")
        self.out += b"X" + struct.pack("<I", len(raw)) + raw

    def int_(self, n: int) -> None:
        if 0 <= n < 256:
            self.out += b"K" + bytes([n])
        elif 0 <= n < 65536:
            self.out += b"M" + struct.pack("<H", n)
        elif -(1 << 31) <= n < (1 << 31):
            self.out += b"J" + struct.pack("<i", n)
        else:
            raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
            self.out += b"\x8a" + bytes([len(raw)]) + raw

    def ints(self, values: tuple[int, ...]) -> None:
        self.out += b"("
        for v in values:
            self.int_(v)
        self.out += b"t"


def _pickle_tensors(specs: list[tuple[str, str, tuple[int, ...]]],
                    metadata: Mapping[str, str]) -> bytes:
    """data.pkl for tensors (name, dtype name, shape), storage *i* for the *i*-th."""
    w = _PickleWriter()
    w.out += b"}("  # EMPTY_DICT, MARK
    for i, (name, dtype, shape) in enumerate(specs):
        if i and i % 1000 == 0:
            w.out += b"u("  # SETITEMS, MARK: batches as pickle writes them
        kind = _WRITE_STORAGE[dtype]
        count = math.prod(shape)
        w.text(name)
        w.global_("torch._utils", "_rebuild_tensor_v2" if kind else "_rebuild_tensor_v3")
        w.out += b"(("  # the arguments' MARK, the persistent id's MARK
        w.text("storage")
        if kind:
            w.global_("torch", kind)
        else:
            w.global_("torch.storage", "UntypedStorage")
        w.text(str(i))
        w.text("cpu")
        w.int_(count if kind else count * canonical_dtype(dtype).itemsize)
        w.out += b"tQ"  # TUPLE, BINPERSID
        w.int_(0)
        w.ints(shape)
        w.ints(_c_strides(shape))
        w.out += b"\x89"  # NEWFALSE: requires_grad
        w.global_("collections", "OrderedDict")
        w.out += b")R"  # EMPTY_TUPLE, REDUCE: no backward hooks
        if not kind:
            w.global_("torch", dtype)
        w.out += b"tR"  # TUPLE, REDUCE
    if metadata:
        w.text(METADATA_KEY)
        w.out += b"}("
        for k, v in metadata.items():
            w.text(k)
            w.text(v)
        w.out += b"u"
    w.out += b"u."  # SETITEMS, STOP
    return bytes(w.out)


def _aligned_info(name: str, offset: int, size: int) -> zipfile.ZipInfo:
    """A stored member whose data starts at a multiple of :data:`ALIGNMENT` when its local
    header starts at *offset* (padding in an extra field, as torch pads)."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.file_size = size
    zip64 = size * 1.05 > zipfile.ZIP64_LIMIT
    header = 30 + len(name.encode()) + (20 if zip64 else 0)
    pad = -(offset + header + 4) % ALIGNMENT
    info.extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad  # "FB", as torch writes
    return info


def write_checkpoint(weights: Mapping[str, np.ndarray], fileobj: IO[bytes], path: str) -> None:
    """Write *weights* (and their ``metadata``) as a torch.save zip, one tensor at a time
    (dtypes and shapes come from the mapping's ``describe`` where it has one)."""
    names = list(weights)
    specs = []
    for name in names:
        info = info_of(weights, name)
        dtype, shape = info.dtype_name, info.shape
        if dtype not in _WRITE_STORAGE:
            raise UnsupportedError(path=path, field=f"tensor {name!r} dtype",
                                   expected=f"one of {', '.join(_WRITE_STORAGE)}", found=dtype)
        specs.append((name, dtype, tuple(shape)))
    metadata = dict(getattr(weights, "metadata", {}) or {})
    if METADATA_KEY in names and metadata:
        raise UnsupportedError(path=path, field=f"tensor {METADATA_KEY!r}",
                               expected="no tensor under the metadata key")
    prefix = "archive/"
    start = fileobj.tell()

    def record(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
        info = _aligned_info(prefix + name, fileobj.tell() - start, len(data))
        zf.writestr(info, data)

    with zipfile.ZipFile(fileobj, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        pickled = _pickle_tensors(specs, metadata)
        record(zf, "data.pkl", pickled)
        record(zf, ".format_version", b"1")
        record(zf, ".storage_alignment", str(ALIGNMENT).encode())
        record(zf, "byteorder", b"little")
        digest = zlib.crc32(pickled)
        for i, (name, dtype, shape) in enumerate(specs):
            array = to_storage(weights[name])
            if array.shape != shape or dtype_name(array.dtype) != dtype:
                raise UnsupportedError(path=path, field=f"tensor {name!r}",
                                       expected=f"{dtype} {shape} as described",
                                       found=f"{array.dtype} {array.shape}")
            info = _aligned_info(f"{prefix}data/{i}", fileobj.tell() - start, array.nbytes)
            flat = memoryview(array.reshape(-1).view(np.uint8)) if array.size else b""
            with zf.open(info, "w", force_zip64=info.file_size * 1.05 > zipfile.ZIP64_LIMIT
                         ) as member:
                for at in range(0, len(flat), CHUNK):
                    member.write(flat[at:at + CHUNK])
            digest = zlib.crc32(flat, digest)
            del array, flat
        record(zf, "version", b"3\n")
        record(zf, ".data/serialization_id", f"{digest:040d}".encode())


class PytorchCodec(Codec):
    """PyTorch checkpoints (``torch.save``), read and written without torch."""

    name = "pytorch"
    extensions = (".pt", ".pth", ".bin")
    description = ("PyTorch torch.save checkpoint (zip or legacy), read without torch or "
                   "running its pickle; torch.load(weights_only=True) reads what it writes")
    checksums = True
    streams_writes = True
    needs_seekable_output = True

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return is_pytorch(head)

    def write(self, weights: Any, fileobj: IO[bytes], *, path: str) -> None:
        write_checkpoint(weights, fileobj, path)

    def open(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS,
             verify: bool = True, budget: Budget | None = None) -> TensorSource:
        """Read the pickle (no tensor data); each tensor is read, checked or memory-mapped
        when asked for."""
        source = open_checkpoint(fileobj, path, replace(limits, max_total_bytes=1 << 62),
                                 verify)
        try:
            report_skipped(path, source.skipped, budget)
        except BaseException:
            source.close()
            raise
        return source

    read = read_through_open
