"""GGUF: llama.cpp's file format, read by a bounded parser here and written with ``gguf``.

Layout (GGUF version 2 and 3, little-endian; the format's own, unchanged)::

    4 bytes    magic "GGUF"
    uint32     version (2 or 3)
    uint64     tensor count
    uint64     key/value count
    KV pairs   key (string), value type (uint32), value
    tensor infos, one per tensor:
               name (string), n_dims (uint32), n_dims x uint64 dims (fastest-varying
               first: numpy's shape reversed), ggml type (uint32), offset (uint64, from
               the data start, a multiple of the alignment)
    padding    to ``general.alignment`` (default 32)
    data       each tensor's bytes, padded to the alignment

A string is a uint64 length and that many UTF-8 bytes. Value types: UINT8 INT8 UINT16
INT16 UINT32 INT32 FLOAT32 BOOL STRING ARRAY UINT64 INT64 FLOAT64; an ARRAY is an element
type (uint32), a count (uint64) and the elements.

Reading parses the header here, in one pass: every count, length, dimension and offset
is checked against the bytes left in the file and against :class:`~weightstore.codec.Limits`
before anything is allocated (``gguf.GGUFReader`` memory-maps the file and trusts its
counts). Tensors are then read from their offsets (:meth:`GgufCodec.open` reads the
header alone). Data regions must lie inside the file without overlapping, each padded to
the alignment as both gguf's and llama.cpp's writers pad them.

Dtypes and shapes: F32, F16, BF16, F64, I8, I16, I32, I64 are read exactly; shapes are
numpy's (GGUF's dims reversed), so they match what PyTorch and safetensors show.
Quantized types (Q8_0, Q4_0, Q4_K, Q6_K and every other type ``gguf.quants`` can
dequantize) load as float32 through ``gguf.quants.dequantize``, with a
:class:`~weightstore.errors.LossyWarning` naming the types; with ``dequantize=False``
(``weightstore.load(path, dequantize=False)``) they load as their raw blocks: uint8
arrays of shape ``(*shape[:-1], bytes per row)`` (as gguf's reader gives them), named in
the metadata key :data:`QUANT_KEY`, and writing such weights back to GGUF restores the
quantized type byte for byte.

Metadata: a STRING value is the metadata value itself. Any other value is its JSON text
(numbers, ``true``/``false``, lists; floats exact: a FLOAT32 value prints the float64
equal to it), and its GGUF type is recorded in :data:`TYPES_KEY`, a JSON object
``{"key": "UINT32", "other": "ARRAY[STRING]", ...}``; writing reads the types back, so a
GGUF -> anything -> GGUF round trip keeps every key's type. Metadata from other formats
(no :data:`TYPES_KEY`) is written as STRING values.

Writing (needs the ``gguf`` extra) goes through ``gguf.GGUFWriter``, which lays out the
header, key/values and tensor infos; each tensor's bytes are then written one at a time
with the writer's padding (``streams_writes``). Dtypes GGUF lacks (bool, uint8-64) are
stored bit for bit under the signed integer type of their width and named in
:data:`DTYPES_KEY`, so they read back exactly here (other GGUF readers see the signed
type). Option ``quantize`` (``Q8_0`` or ``Q4_0``) stores each float tensor of at least
two dimensions whose last dimension is a multiple of 32 in that type, through
``gguf.quants.quantize`` (others stay as they are), with a LossyWarning. llama.cpp itself
also limits names to 63 bytes and tensors to 4 dimensions; those are not enforced here.
"""

from __future__ import annotations

import io
import json
import math
import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from ..codec import DEFAULT_LIMITS, Budget, Codec, Limits, Option, TensorSource, read_through_open
from ..errors import (
    FormatError,
    LimitError,
    LossyWarning,
    MissingDependencyError,
    UnsupportedError,
    WeightstoreError,
)
from ..fileio import RawFile
from ..integrity import header_entries
from ..model import MAX_NDIM, TensorInfo, Weights, canonical_dtype, dtype_name, little_endian
from ..sniffing import GGUF_MAGIC

__all__ = ["GgufCodec", "GgufHeader", "read_header", "write_gguf", "TYPES_KEY", "DTYPES_KEY",
           "QUANT_KEY", "PLAIN_TYPES"]

MAGIC = GGUF_MAGIC
#: Metadata key: the GGUF type of each key/value that is not a STRING (JSON object).
TYPES_KEY = "weightstore.gguf_types"
#: Metadata key: tensors stored under a signed type GGUF has, with their own dtype (JSON).
DTYPES_KEY = "weightstore.gguf_dtypes"
#: Metadata key: tensors given as raw quantized blocks, with their ggml type name (JSON).
QUANT_KEY = "weightstore.gguf_quantized"
_RESERVED = (TYPES_KEY, DTYPES_KEY, QUANT_KEY)
DEFAULT_ALIGNMENT = 32
ALIGNMENT_KEY = "general.alignment"

#: ggml types held exactly: type number -> (name, dtype name).
PLAIN_TYPES: dict[int, tuple[str, str]] = {
    0: ("F32", "float32"), 1: ("F16", "float16"), 30: ("BF16", "bfloat16"),
    28: ("F64", "float64"), 24: ("I8", "int8"), 25: ("I16", "int16"), 26: ("I32", "int32"),
    27: ("I64", "int64"),
}
_TYPE_FOR_DTYPE = {dtype: number for number, (_, dtype) in PLAIN_TYPES.items()}
#: Dtypes GGUF lacks, stored under the signed type of their width.
_STAND_INS = {"bool": "int8", "uint8": "int8", "uint16": "int16", "uint32": "int32",
              "uint64": "int64"}
#: Quantized types this writer offers through the ``quantize`` option.
WRITE_QUANT = ("Q8_0", "Q4_0")

# value types: number -> (name, struct format or None)
_VALUE_TYPES: dict[int, tuple[str, str | None]] = {
    0: ("UINT8", "<B"), 1: ("INT8", "<b"), 2: ("UINT16", "<H"), 3: ("INT16", "<h"),
    4: ("UINT32", "<I"), 5: ("INT32", "<i"), 6: ("FLOAT32", "<f"), 7: ("BOOL", "<?"),
    8: ("STRING", None), 9: ("ARRAY", None), 10: ("UINT64", "<Q"), 11: ("INT64", "<q"),
    12: ("FLOAT64", "<d"),
}
_VALUE_NUMBERS = {name: number for number, (name, _) in _VALUE_TYPES.items()}
_STRING, _ARRAY = 8, 9
#: Least bytes one key/value pair takes (empty key, a one-byte value).
_MIN_KV = 8 + 4 + 1
#: Least bytes one tensor info takes (empty name, no dims).
_MIN_TENSOR_INFO = 8 + 4 + 4 + 8


def _gguf() -> Any:
    try:
        import gguf
    except ImportError as e:
        raise MissingDependencyError("gguf", "gguf", "the GGUF codec (quantized tensors, "
                                     "writing)") from e
    return gguf


# --- reading the header ------------------------------------------------------------------


class _Cursor:
    """Sequential reads of a file's header, each checked against the bytes left."""

    CHUNK = 1 << 20

    def __init__(self, fileobj: IO[bytes], path: str, size: int, limits: Limits) -> None:
        self.f, self.path, self.size, self.limits = fileobj, path, size, limits
        self.pos = 0
        self._buf = b""
        self._buf_start = 0
        fileobj.seek(0)

    def left(self) -> int:
        return self.size - self.pos

    def take(self, n: int, field: str) -> bytes:
        if n > self.left():
            raise FormatError(path=self.path, field=field,
                              expected=f"{n:,} bytes at offset {self.pos:,}",
                              found=f"{self.left():,} (the file ends there)")
        if self.pos + n > self.limits.max_header_bytes:
            raise LimitError(path=self.path, field=field,
                             expected=f"a header within {self.limits.max_header_bytes:,} bytes "
                             "(Limits.max_header_bytes)",
                             found=f"{self.pos + n:,} bytes")
        end = self._buf_start + len(self._buf)
        if self.pos + n > end:
            keep = self._buf[self.pos - self._buf_start:]
            more = self.f.read(max(n - len(keep), self.CHUNK))
            self._buf, self._buf_start = keep + more, self.pos
        at = self.pos - self._buf_start
        out = self._buf[at:at + n]
        if len(out) != n:  # the file shrank under us
            raise FormatError(path=self.path, field=field, expected=f"{n:,} bytes",
                              found=f"{len(out):,}")
        self.pos += n
        return out

    def unpack(self, fmt: str, field: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), field))[0]

    def count(self, field: str, least_each: int) -> int:
        """A uint64 count of items taking at least *least_each* bytes each."""
        n = self.unpack("<Q", field)
        if n * least_each > self.left():
            raise FormatError(path=self.path, field=field,
                              expected=f"at most {self.left() // max(1, least_each):,} "
                              f"(the {self.left():,} bytes left in the file)",
                              found=f"{n:,}")
        return n

    def string(self, field: str) -> str:
        n = self.count(f"{field} length", 1)
        raw = self.take(n, field)
        return raw.decode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class GgufTensor:
    """One tensor as the GGUF header describes it."""

    name: str
    ggml_type: int
    type_name: str
    shape: tuple[int, ...]  # numpy order
    offset: int  # from the data start
    nbytes: int  # stored bytes


@dataclass
class GgufHeader:
    """What a GGUF header holds: version, typed key/values, tensor infos, data start."""

    version: int
    metadata: dict[str, str]
    types: dict[str, str]
    tensors: list[GgufTensor]
    alignment: int
    data_start: int


def _value(cur: _Cursor, vtype: int, field: str, depth: int) -> tuple[Any, str]:
    """One value of type *vtype*: (the Python value, its type name)."""
    if vtype not in _VALUE_TYPES:
        raise FormatError(path=cur.path, field=f"{field} type",
                          expected="a GGUF value type (0-12)", found=vtype)
    name, fmt = _VALUE_TYPES[vtype]
    if fmt is not None:
        value = cur.unpack(fmt, field)
        return (float(value) if vtype == 6 else value), name
    if vtype == _STRING:
        return cur.string(field), name
    if depth >= cur.limits.max_depth:
        raise FormatError(path=cur.path, field=field,
                          expected=f"arrays nested within {cur.limits.max_depth} levels")
    etype = cur.unpack("<I", f"{field} element type")
    if etype not in _VALUE_TYPES:
        raise FormatError(path=cur.path, field=f"{field} element type",
                          expected="a GGUF value type (0-12)", found=etype)
    ename, efmt = _VALUE_TYPES[etype]
    least = struct.calcsize(efmt) if efmt is not None else (8 if etype == _STRING else 12)
    n = cur.count(f"{field} count", least)
    if efmt is not None:
        raw = cur.take(n * least, field)
        arr = np.frombuffer(raw, dtype=np.dtype(efmt))
        items = arr.astype(np.float64).tolist() if etype == 6 else arr.tolist()
        return items, f"ARRAY[{ename}]"
    items, inner = [], f"ARRAY[{ename}]"
    for i in range(n):
        item, item_type = _value(cur, etype, f"{field}[{i}]", depth + 1)
        items.append(item)
        inner = f"ARRAY[{item_type}]"
    return items, inner


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def read_header(fileobj: IO[bytes], path: str, limits: Limits = DEFAULT_LIMITS,
                need_sizes: bool = True) -> GgufHeader:
    """Parse and check a GGUF header (see the module doc); the tensors' data is not read."""
    size = fileobj.seek(0, io.SEEK_END)
    cur = _Cursor(fileobj, path, size, limits)
    magic = cur.take(4, "magic") if size >= 4 else b""
    if magic != MAGIC:
        raise FormatError(path=path, field="magic", expected="b'GGUF'",
                          found=magic if size >= 4 else f"a file of {size} bytes")
    version = cur.unpack("<I", "version")
    if version not in (2, 3):
        swapped = version & 0xFFFF == 0 and version != 0
        raise (UnsupportedError if swapped or version == 1 else FormatError)(
            path=path, field="version", expected="GGUF version 2 or 3, little-endian",
            found="a big-endian file" if swapped else version)
    n_tensors = cur.count("tensor count", _MIN_TENSOR_INFO)
    if n_tensors > limits.max_tensors:
        raise LimitError(path=path, field="tensor count",
                         expected=f"at most {limits.max_tensors:,} (Limits.max_tensors)",
                         found=f"{n_tensors:,}")
    n_kv = cur.count("key/value count", _MIN_KV)
    metadata: dict[str, str] = {}
    types: dict[str, str] = {}
    for i in range(n_kv):
        key = cur.string(f"key/value {i} key")
        if key in metadata:
            raise FormatError(path=path, field=f"key {key!r}", expected="each key once",
                              found="twice")
        vtype = cur.unpack("<I", f"key {key!r} type")
        value, type_name = _value(cur, vtype, f"key {key!r}", 0)
        if key in (TYPES_KEY, QUANT_KEY) or (key == DTYPES_KEY and vtype != _STRING):
            raise FormatError(path=path, field=f"key {key!r}",
                              expected="a key weightstore does not reserve (or its "
                              f"{DTYPES_KEY!r} as a STRING)", found=key)
        if vtype == _STRING:
            metadata[key] = value
        else:
            metadata[key] = _json(value)
            types[key] = type_name
    alignment = DEFAULT_ALIGNMENT
    if ALIGNMENT_KEY in metadata:
        alignment = json.loads(metadata[ALIGNMENT_KEY]) if ALIGNMENT_KEY in types else -1
        if (types.get(ALIGNMENT_KEY) != "UINT32" or not 0 < alignment <= 1 << 20
                or alignment % 8):
            raise FormatError(path=path, field=f"key {ALIGNMENT_KEY!r}",
                              expected="a UINT32 multiple of 8 up to 1,048,576",
                              found=metadata[ALIGNMENT_KEY])
    quant_sizes: dict[int, tuple[str, int, int]] | None = None
    infos: list[GgufTensor] = []
    names: set[str] = set()
    for i in range(n_tensors):
        name = cur.string(f"tensor {i} name")
        where = f"tensor {name!r}"
        if name in names:
            raise FormatError(path=path, field=where, expected="each tensor name once",
                              found="twice")
        names.add(name)
        n_dims = cur.unpack("<I", f"{where} n_dims")
        if n_dims > MAX_NDIM:
            raise FormatError(path=path, field=f"{where} n_dims",
                              expected=f"at most {MAX_NDIM} (numpy's limit)", found=n_dims)
        dims = struct.unpack(f"<{n_dims}Q", cur.take(8 * n_dims, f"{where} dims"))
        ggml_type = cur.unpack("<I", f"{where} type")
        offset = cur.unpack("<Q", f"{where} offset")
        count = math.prod(dims)
        if ggml_type in PLAIN_TYPES:
            type_name = PLAIN_TYPES[ggml_type][0]
            itemsize = canonical_dtype(PLAIN_TYPES[ggml_type][1]).itemsize \
                if ggml_type != 30 else 2
            nbytes = count * itemsize
        else:
            if quant_sizes is None:
                quant_sizes = _quant_sizes(path, where, ggml_type)
            if ggml_type not in quant_sizes:
                raise FormatError(path=path, field=f"{where} type",
                                  expected="a ggml type the gguf package knows",
                                  found=ggml_type)
            type_name, block, type_size = quant_sizes[ggml_type]
            if not dims or dims[0] % block:
                raise FormatError(path=path, field=f"{where} dims",
                                  expected=f"a row length that is a multiple of {type_name}'s "
                                  f"block of {block}", found=list(dims))
            nbytes = count // block * type_size
        if offset % alignment:
            raise FormatError(path=path, field=f"{where} offset",
                              expected=f"a multiple of the alignment {alignment}", found=offset)
        limits.check_tensor(path, name, nbytes)
        infos.append(GgufTensor(name, ggml_type, type_name, tuple(reversed(dims)), offset,
                                nbytes))
    data_start = -(-cur.pos // alignment) * alignment
    data_size = size - data_start
    previous_end, previous = 0, ""
    for info in sorted(infos, key=lambda t: t.offset):
        if info.offset < previous_end:
            raise FormatError(path=path, field=f"tensor {info.name!r} offset",
                              expected=f"data not overlapping tensor {previous!r} "
                              f"(from {previous_end:,})", found=info.offset)
        end = info.offset + -(-info.nbytes // alignment) * alignment
        if end > data_size:
            raise FormatError(path=path, field=f"tensor {info.name!r} data",
                              expected=f"{info.nbytes:,} bytes (padded to {alignment}) at data "
                              f"offset {info.offset:,}",
                              found=f"{max(0, data_size - info.offset):,} (the file ends there)")
        previous_end, previous = end, info.name
    return GgufHeader(version, metadata, types, infos, alignment, data_start)


def _quant_sizes(path: str, where: str, ggml_type: int) -> dict[int, tuple[str, int, int]]:
    """Block sizes of the quantized types, from the gguf package (the extra)."""
    try:
        gguf = _gguf()
    except MissingDependencyError as e:
        raise MissingDependencyError("gguf", "gguf", f"{path}: {where} (ggml type "
                                     f"{ggml_type}, quantized)") from e
    return {int(t): (t.name, block, size) for t, (block, size) in gguf.GGML_QUANT_SIZES.items()
            if int(t) not in PLAIN_TYPES}


# --- tensors -----------------------------------------------------------------------------


def _json_record(metadata: dict[str, str], key: str, path: str) -> dict[str, str]:
    text = metadata.pop(key, None)
    if text is None:
        return {}
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise FormatError(path=path, field=f"metadata {key!r}", expected="a JSON object",
                          found=text) from e
    if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
        raise FormatError(path=path, field=f"metadata {key!r}",
                          expected="a JSON object of strings", found=text)
    return doc


class GgufSource(TensorSource):
    """An open GGUF file: the header parsed, each tensor read from its offset when asked."""

    lazy = True

    def __init__(self, fileobj: IO[bytes], path: str, limits: Limits, dequantize: bool) -> None:
        header = read_header(fileobj, path, limits)
        self._raw = RawFile(fileobj, path)
        self._path, self._header = path, header
        self._dequantize = dequantize
        self._infos = {t.name: t for t in header.tensors}
        metadata = dict(header.metadata)
        if header.types:
            metadata[TYPES_KEY] = _json(header.types)
        metas: list[TensorInfo] = []
        quantized: dict[str, str] = {}
        for info in header.tensors:
            if info.ggml_type in PLAIN_TYPES:
                dtype = canonical_dtype(PLAIN_TYPES[info.ggml_type][1])
                metas.append(TensorInfo(info.name, dtype, info.shape))
            elif dequantize:
                quantized[info.name] = info.type_name
                meta = TensorInfo(info.name, np.dtype("<f4"), info.shape)
                limits.check_tensor(path, info.name, meta.nbytes)
                metas.append(meta)
            else:
                quantized[info.name] = info.type_name
                row = info.nbytes // max(1, math.prod(info.shape[:-1]))
                metas.append(TensorInfo(info.name, np.dtype(np.uint8), (*info.shape[:-1], row)))
        if quantized and dequantize:
            kinds = ", ".join(sorted(set(quantized.values())))
            warnings.warn(f"{path}: {len(quantized)} quantized tensors ({kinds}) load "
                          "dequantized to float32 (dequantize=False gives the raw blocks)",
                          LossyWarning, stacklevel=4)
        elif quantized:
            metadata[QUANT_KEY] = _json(quantized)
        super().__init__(metas, metadata)
        self._metas = {m.name: m for m in metas}
        # the dtypes GGUF lacks, stored under a signed stand-in by this writer
        self._stand_ins = _json_record(self.metadata, DTYPES_KEY, path)
        for name, dtype in self._stand_ins.items():
            meta = self._metas.get(name)
            if (meta is None or _STAND_INS.get(dtype) != dtype_name(meta.dtype)):
                raise FormatError(path=path, field=f"metadata {DTYPES_KEY!r}[{name!r}]",
                                  expected="a dtype stored under its signed stand-in",
                                  found=dtype)
            new = TensorInfo(name, canonical_dtype(dtype), meta.shape)
            self._metas[name] = new
            self.tensors[self.tensors.index(meta)] = new

    def read(self, name: str, *, mmap: bool = False) -> np.ndarray:
        info, meta = self._infos[name], self._metas[name]
        offset = self._header.data_start + info.offset
        where = f"tensor {name!r}"
        if info.ggml_type in PLAIN_TYPES or not self._dequantize:
            stored = canonical_dtype(PLAIN_TYPES[info.ggml_type][1]) \
                if info.ggml_type in PLAIN_TYPES else np.dtype(np.uint8)
            if mmap and self._raw.can_mmap and meta.count:
                out = self._raw.map_array(offset, stored, meta.shape).view(np.ndarray)
            else:
                out = self._raw.read_array(offset, stored, meta.shape, field=where)
            if name in self._stand_ins:
                out = out.view(np.uint8).astype(bool) if meta.dtype.kind == "b" \
                    else out.view(meta.dtype)
            return out
        gguf = _gguf()
        blocks = self._raw.read_array(offset, np.dtype(np.uint8), (info.nbytes,), field=where)
        rows = blocks.reshape(*info.shape[:-1], -1) if info.shape else blocks
        try:
            values = gguf.quants.dequantize(rows, gguf.GGMLQuantizationType(info.ggml_type))
        except NotImplementedError as e:
            raise UnsupportedError(path=self._path, field=where,
                                   expected="a type gguf can dequantize (or dequantize=False "
                                   "for the raw blocks)", found=info.type_name) from e
        return np.ascontiguousarray(values, dtype=np.float32).reshape(meta.shape)


# --- writing -----------------------------------------------------------------------------


def _typed_value(gguf: Any, text: str, type_name: str, key: str, path: str) -> tuple[Any, Any,
                                                                                     Any]:
    """(value, value type, element type) for the writer, from metadata text and its type."""
    vt = gguf.GGUFValueType
    try:
        value = json.loads(text)
    except ValueError as e:
        raise UnsupportedError(path=path, field=f"metadata {key!r}",
                               expected=f"JSON text of a {type_name} ({TYPES_KEY})",
                               found=text) from e
    if type_name.startswith("ARRAY[") and type_name.endswith("]"):
        inner = type_name[6:-1]
        if not isinstance(value, list):
            raise UnsupportedError(path=path, field=f"metadata {key!r}",
                                   expected=f"a JSON list ({type_name})", found=text)
        if inner.startswith("ARRAY"):  # nested: the writer infers inner types itself
            return value, vt.ARRAY, vt.ARRAY
        if inner not in _VALUE_NUMBERS:
            raise UnsupportedError(path=path, field=f"{TYPES_KEY}[{key!r}]",
                                   expected="a GGUF value type", found=type_name)
        return value, vt.ARRAY, vt(_VALUE_NUMBERS[inner])
    if type_name not in _VALUE_NUMBERS or type_name in ("ARRAY", "STRING"):
        raise UnsupportedError(path=path, field=f"{TYPES_KEY}[{key!r}]",
                               expected="a GGUF value type", found=type_name)
    return value, vt(_VALUE_NUMBERS[type_name]), None


def _plan(weights: Mapping[str, np.ndarray], quant: dict[str, str], quantize: str,
          path: str) -> list[tuple[str, str, tuple[int, ...], str | None]]:
    """(name, dtype name, numpy shape, ggml type name or None for plain) of each tensor."""
    out = []
    for name, dtype, shape in header_entries(weights):
        if name in quant:
            if dtype != "uint8" or not shape:
                raise UnsupportedError(path=path, field=f"tensor {name!r}",
                                       expected=f"uint8 blocks of {quant[name]} ({QUANT_KEY})",
                                       found=f"{dtype} {list(shape)}")
            out.append((name, dtype, tuple(shape), quant[name]))
        elif (quantize != "none" and dtype in ("float16", "bfloat16", "float32", "float64")
              and len(shape) >= 2 and shape[-1] % 32 == 0 and shape[-1]):
            out.append((name, dtype, tuple(shape), quantize))
        elif dtype in _TYPE_FOR_DTYPE or dtype in _STAND_INS:
            out.append((name, dtype, tuple(shape), None))
        else:
            raise UnsupportedError(path=path, field=f"tensor {name!r}",
                                   expected="a dtype GGUF can hold", found=dtype)
    return out


def write_gguf(weights: Mapping[str, np.ndarray], metadata: Mapping[str, str],
               fileobj: IO[bytes], path: str, quantize: str = "none") -> None:
    """Write *weights* as GGUF (module doc), the tensors one at a time."""
    gguf = _gguf()
    meta = dict(metadata)
    types = _json_record(meta, TYPES_KEY, path)
    quant = _json_record(meta, QUANT_KEY, path)
    meta.pop(DTYPES_KEY, None)
    for key in types:
        if key not in meta:
            raise UnsupportedError(path=path, field=f"metadata {TYPES_KEY!r}[{key!r}]",
                                   expected="a type for a metadata key that is present",
                                   found="no such key")
    for key in meta:
        if any(key.lower() == r.lower() for r in _RESERVED):
            raise UnsupportedError(path=path, field=f"metadata key {key!r}",
                                   expected="a key unlike those weightstore reserves in GGUF",
                                   found=key)
    writer = gguf.GGUFWriter(None, "")  # no architecture key unless the metadata has one
    vt = gguf.GGUFValueType
    try:
        for key, text in meta.items():
            if key in types:
                value, vtype, sub = _typed_value(gguf, text, types[key], key, path)
                if key == ALIGNMENT_KEY:
                    writer.data_alignment = int(value)
                writer.add_key_value(key, value, vtype, sub_type=sub)
            else:
                writer.add_key_value(key, text, vt.STRING)
        plan = _plan(weights, quant, quantize, path)
        stand_ins = {name: dtype for name, dtype, _, q in plan if q is None and dtype in _STAND_INS}
        if stand_ins:
            writer.add_key_value(DTYPES_KEY, _json(stand_ins), vt.STRING)
        lossy = sorted({q for name, _, _, q in plan if q is not None and name not in quant})
        if lossy:
            warnings.warn(f"{path}: float tensors quantized to {', '.join(lossy)} "
                          "(lose precision)", LossyWarning, stacklevel=4)
        for name, dtype, shape, q in plan:
            if q is None:
                stored = _STAND_INS.get(dtype, dtype)
                writer.add_tensor_info(name, shape, canonical_dtype(stored).newbyteorder("="),
                                       math.prod(shape) * canonical_dtype(stored).itemsize,
                                       raw_dtype=gguf.GGMLQuantizationType(
                                           _TYPE_FOR_DTYPE[stored]))
            else:
                qtype = gguf.GGMLQuantizationType[q]
                block, size = gguf.GGML_QUANT_SIZES[qtype]
                if name in quant:
                    writer.add_tensor_info(name, shape, np.dtype(np.uint8), math.prod(shape),
                                           raw_dtype=qtype)
                else:
                    writer.add_tensor_info(name, (*shape[:-1], shape[-1] // block * size),
                                           np.dtype(np.uint8),
                                           math.prod(shape) // block * size, raw_dtype=qtype)
        out = _Counting(fileobj)
        writer.fout = [out]  # gguf opens files by path; ours is the atomic temporary
        writer.state = type(writer.state).EMPTY
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
    except WeightstoreError:  # ours already name the file and the field
        raise
    except (ValueError, KeyError, TypeError, OverflowError, struct.error) as e:
        raise UnsupportedError(f"gguf cannot write this ({e})", path=path) from e
    alignment = writer.data_alignment
    _pad(fileobj, out.written, alignment)
    for name, dtype, _shape, q in plan:
        array = weights[name]
        if q is None:
            data = little_endian(np.ascontiguousarray(array))
            data = data.view(canonical_dtype(_STAND_INS.get(dtype, dtype))) \
                if dtype in _STAND_INS else data
        elif name in quant:
            data = np.ascontiguousarray(array)
        else:
            data = gguf.quants.quantize(np.asarray(array, dtype=np.float32),
                                        gguf.GGMLQuantizationType[q])
        view = memoryview(np.ascontiguousarray(data).reshape(-1).view(np.uint8))
        fileobj.write(view)
        _pad(fileobj, len(view), alignment)
        del array, data, view  # from a lazy source: one tensor in memory at a time


class _Counting:
    """The output file as gguf's writer sees it: write, flush, and tell by counting."""

    def __init__(self, fileobj: IO[bytes]) -> None:
        self.f, self.written = fileobj, 0

    def write(self, data: bytes) -> int:
        self.f.write(data)
        self.written += len(data)
        return len(data)

    def flush(self) -> None:
        """Nothing: the atomic write flushes the file when it is complete."""

    def tell(self) -> int:
        return self.written


def _pad(fileobj: IO[bytes], n: int, alignment: int) -> None:
    pad = -n % alignment
    if pad:
        fileobj.write(bytes(pad))


class GgufCodec(Codec):
    """GGUF (llama.cpp): header parsed here, quantized types and writing through gguf."""

    name = "gguf"
    extensions = (".gguf",)
    description = "GGUF (llama.cpp): typed key/values + aligned tensors, quantized types"
    streams_writes = True
    extra = "gguf"
    options = (
        Option("dequantize", bool, True, "quantized tensors as float32 (false: raw blocks)"),
        Option("quantize", str, "none", "store float matrices in a GGUF block type",
               choices=("none", *WRITE_QUANT)),
    )

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return head.startswith(MAGIC)

    def write(self, weights: Weights, fileobj: IO[bytes], *, path: str) -> None:
        write_gguf(weights, weights.metadata, fileobj, path,
                   self.quantize)  # type: ignore[attr-defined]

    read = read_through_open

    def open(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS,
             verify: bool = True, budget: Budget | None = None) -> TensorSource:
        """The header alone (checked); tensors are read, or dequantized, on access."""
        try:
            return GgufSource(fileobj, path, limits, self.dequantize)  # type: ignore[attr-defined]
        except WeightstoreError:
            raise
        except (ValueError, OverflowError, struct.error) as e:
            raise FormatError(f"not a readable GGUF file ({e})", path=path) from e
