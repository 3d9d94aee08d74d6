"""ONNX: the initializers of a ``.onnx`` model, read as tensors (read only).

The model is parsed with the ``onnx`` package's protobuf classes (extra ``onnx``; no
graph is checked, run or shape-inferred, and no external data is loaded by onnx).
Each initializer of the main graph becomes a tensor, in the graph's order, under its
own name (a leading ``/`` removed, as our names cannot start with one).

Types: FLOAT, FLOAT16, BFLOAT16 (``ml_dtypes``), DOUBLE, INT8-64, UINT8-64 and BOOL,
exactly, whether stored as ``raw_data`` (little-endian) or in the typed fields
(``float_data``, ``int32_data`` holding int8/16, uint8/16, bool and the bits of
float16/bfloat16, ``int64_data``, ``uint64_data``, ``double_data``). The float8 types map
to ``ml_dtypes``' dtypes, and load wherever weightstore's model holds those; STRING,
complex and 4-bit types are refused with :class:`~weightstore.errors.UnsupportedError`
naming the tensor, as are sparse initializers: nothing is dropped without a word.

External data (``data_location = EXTERNAL``): ``location`` is resolved only inside the
folder of the model file. An absolute path, a path that leaves the folder (``..``), or
one that a symbolic link leads out of, is refused with
:class:`~weightstore.errors.UnsafeFileError`; ``offset`` and ``length`` must lie inside
the data file and match the tensor's size. A model read from a URL cannot have
external data.

Metadata: the model's ``metadata_props``, plus ``onnx.producer_name``,
``onnx.producer_version``, ``onnx.ir_version``, ``onnx.graph`` (the graph's name) and
``onnx.opset_import`` (JSON ``{"domain": version}``, ``""`` for the default domain).

Why the ``onnx`` package rather than protobuf alone: the ONNX message classes come with
``onnx``; protobuf alone would need the ``.proto`` compiled here. ``onnx`` is the
existing extra (which also brings onnxruntime, used by the ONNX export; reading needs
only ``onnx`` and its protobuf).
"""

from __future__ import annotations

import json
import math
import os
from typing import IO, Any

import numpy as np

from .. import remote
from ..codec import DEFAULT_LIMITS, Budget, Codec, Limits
from ..errors import (
    FileAccessError,
    FormatError,
    LimitError,
    MissingDependencyError,
    UnsafeFileError,
    UnsupportedError,
)
from ..fileio import RawFile
from ..model import Weights, canonical_dtype, dtype_name, weights_from_file
from ..sniffing import is_onnx
from ._header import check_shape

__all__ = ["OnnxCodec", "read_onnx", "resolve_external"]

# ONNX TensorProto.DataType -> (name, dtype name or None when weightstore cannot hold it)
_TYPES: dict[int, tuple[str, str | None]] = {
    1: ("FLOAT", "float32"), 2: ("UINT8", "uint8"), 3: ("INT8", "int8"),
    4: ("UINT16", "uint16"), 5: ("INT16", "int16"), 6: ("INT32", "int32"),
    7: ("INT64", "int64"), 8: ("STRING", None), 9: ("BOOL", "bool"),
    10: ("FLOAT16", "float16"), 11: ("DOUBLE", "float64"), 12: ("UINT32", "uint32"),
    13: ("UINT64", "uint64"), 14: ("COMPLEX64", None), 15: ("COMPLEX128", None),
    16: ("BFLOAT16", "bfloat16"), 17: ("FLOAT8E4M3FN", "float8_e4m3fn"),
    18: ("FLOAT8E4M3FNUZ", "float8_e4m3fnuz"), 19: ("FLOAT8E5M2", "float8_e5m2"),
    20: ("FLOAT8E5M2FNUZ", "float8_e5m2fnuz"), 21: ("UINT4", None), 22: ("INT4", None),
    23: ("FLOAT4E2M1", None),
}
#: Types whose typed-field values are bit patterns in ``int32_data``.
_BITS = {"float16", "bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2",
         "float8_e5m2fnuz"}
_EXTERNAL = 1


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as e:
        raise MissingDependencyError("onnx", "onnx", "the ONNX codec") from e
    return onnx


def _dtype(type_name: str, dtype: str | None, name: str, path: str) -> np.dtype:
    """The numpy dtype of an ONNX type, or UnsupportedError naming the tensor."""
    if dtype is not None and dtype.startswith("float8"):
        try:
            import ml_dtypes
        except ImportError as e:
            raise MissingDependencyError("ml_dtypes", "bfloat16", f"{path}: tensor {name!r} "
                                         f"({type_name})") from e
        found = np.dtype(getattr(ml_dtypes, dtype))
        if dtype_name(found) is not None:
            return found
        dtype = None
    if dtype is None:
        raise UnsupportedError(path=path, field=f"tensor {name!r}",
                               expected="a type weightstore holds (float16/32/64, bfloat16, "
                               "(u)int8-64, bool)", found=type_name)
    return canonical_dtype(dtype)


def resolve_external(model_path: str, location: str, name: str) -> str:
    """The data file *location* names, refused unless it lies inside the model's folder."""
    field = f"tensor {name!r} external data location"
    if remote.is_url(model_path):
        raise UnsupportedError(path=model_path, field=field,
                               expected="a local model for external data", found=location)
    if (not location or os.path.isabs(location) or location.startswith(("/", "\\"))
            or (len(location) > 1 and location[1] == ":") or "\x00" in location):
        raise UnsafeFileError(path=model_path, field=field,
                              expected="a relative path inside the model's folder",
                              found=location)
    folder = os.path.realpath(os.path.dirname(os.path.abspath(model_path)))
    target = os.path.realpath(os.path.join(folder, location))
    if os.path.commonpath([folder, target]) != folder or target == folder:
        raise UnsafeFileError(path=model_path, field=field,
                              expected="a file inside the model's folder (no '..', no link "
                              "out of it)", found=location)
    return target


def _typed_values(t: Any, type_name: str, dtype: np.dtype, count: int, name: str,
                  path: str) -> np.ndarray:
    """The values of an initializer stored in the typed fields."""
    kind = dtype_name(dtype) or dtype.name
    if kind == "float32":
        values, field = np.asarray(t.float_data, np.float32), "float_data"
    elif kind == "float64":
        values, field = np.asarray(t.double_data, np.float64), "double_data"
    elif kind == "int64":
        values, field = np.asarray(t.int64_data, np.int64), "int64_data"
    elif kind in ("uint32", "uint64"):
        values, field = np.asarray(t.uint64_data, np.uint64).astype(dtype), "uint64_data"
    elif kind in _BITS:
        bits = np.asarray(t.int32_data, np.int64)
        width = np.dtype(f"<u{dtype.itemsize}")
        if bits.size and (bits.min() < 0 or bits.max() >= 1 << (8 * dtype.itemsize)):
            raise FormatError(path=path, field=f"tensor {name!r} int32_data",
                              expected=f"{type_name} bit patterns", found=int(bits.max()))
        values, field = bits.astype(width).view(dtype), "int32_data"
    else:  # int8/16/32, uint8/16, bool
        ints = np.asarray(t.int32_data, np.int64)
        if kind == "bool":
            values = ints != 0
        else:
            info = np.iinfo(dtype)
            if ints.size and (ints.min() < info.min or ints.max() > info.max):
                raise FormatError(path=path, field=f"tensor {name!r} int32_data",
                                  expected=f"values within {kind}", found=int(ints.max()))
            values = ints.astype(dtype)
        field = "int32_data"
    if values.size != count:
        raise FormatError(path=path, field=f"tensor {name!r} {field}",
                          expected=f"{count:,} values for its dims", found=f"{values.size:,}")
    return values


def _external(t: Any, dtype: np.dtype, shape: tuple[int, ...], name: str, path: str,
              limits: Limits) -> np.ndarray:
    info = {e.key: e.value for e in t.external_data}
    target = resolve_external(path, info.get("location", ""), name)
    field = f"tensor {name!r} external data"
    try:
        offset = int(info.get("offset", "0"))
        length = int(info["length"]) if "length" in info else None
    except ValueError as e:
        raise FormatError(path=path, field=field, expected="integer offset and length",
                          found=info) from e
    nbytes = math.prod(shape) * dtype.itemsize
    try:
        f = open(target, "rb")  # noqa: SIM115  (closed below)
    except OSError as e:
        raise FileAccessError(f"cannot open the external data ({e.strerror})", path=path,
                              field=field) from e
    with f:
        raw = RawFile(f, target)
        if raw.fd is None:
            raise UnsafeFileError(path=path, field=field, expected="a regular file",
                                  found=info.get("location"))
        if offset < 0 or (length is not None and length != nbytes) or offset + nbytes > raw.size:
            raise FormatError(path=path, field=field,
                              expected=f"{nbytes:,} bytes at offset {offset:,} of the "
                              f"{raw.size:,}-byte data file",
                              found=f"offset {offset:,}, length {length}")
        limits.check_tensor(path, name, nbytes)
        return raw.read_array(offset, dtype, shape, field=field)


def read_onnx(data: bytes, path: str, limits: Limits = DEFAULT_LIMITS) -> Weights:
    """The initializers of the serialized model *data* (see the module doc)."""
    onnx = _onnx()
    from google.protobuf.message import DecodeError

    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError, RecursionError, UnicodeDecodeError) as e:
        raise FormatError(f"not a readable ONNX model ({e})", path=path) from e
    if not model.ir_version or not model.HasField("graph") or not model.opset_import:
        raise FormatError(path=path, field="model",
                          expected="an ONNX model (ir_version, graph, opset_import)",
                          found="none of those" if not model.ir_version else "a part missing")
    graph = model.graph
    if len(graph.sparse_initializer):
        raise UnsupportedError(path=path, field=f"sparse initializer "
                               f"{graph.sparse_initializer[0].values.name!r}",
                               expected="dense initializers", found="a sparse one")
    if len(graph.initializer) > limits.max_tensors:
        raise LimitError(path=path, field="initializers",
                         expected=f"at most {limits.max_tensors:,} (Limits.max_tensors)",
                         found=f"{len(graph.initializer):,}")
    tensors: list[tuple[str, np.ndarray]] = []
    total = 0
    for t in graph.initializer:
        name = t.name[1:] if t.name.startswith("/") else t.name
        type_name, dtype_text = _TYPES.get(t.data_type, (str(t.data_type), None))
        dtype = _dtype(type_name, dtype_text, t.name, path)
        shape = check_shape([int(d) for d in t.dims], path=path, field=f"tensor {t.name!r} dims")
        count = math.prod(shape)
        limits.check_tensor(path, t.name, count * dtype.itemsize, total)
        total += count * dtype.itemsize
        if t.data_location == _EXTERNAL:
            array = _external(t, dtype, shape, t.name, path, limits)
        elif t.HasField("raw_data"):
            if len(t.raw_data) != count * dtype.itemsize:
                raise FormatError(path=path, field=f"tensor {t.name!r} raw_data",
                                  expected=f"{count * dtype.itemsize:,} bytes for dims "
                                  f"{list(shape)}", found=f"{len(t.raw_data):,} bytes")
            stored = dtype.newbyteorder("<") if dtype.itemsize > 1 and dtype.kind != "V" \
                else dtype
            array = np.frombuffer(t.raw_data, dtype=stored).reshape(shape).copy()
        else:
            array = _typed_values(t, type_name, dtype, count, t.name, path).reshape(shape)
        tensors.append((name, array))
    metadata = {p.key: p.value for p in model.metadata_props}
    for key, value in (("onnx.producer_name", model.producer_name),
                       ("onnx.producer_version", model.producer_version),
                       ("onnx.ir_version", str(model.ir_version)),
                       ("onnx.graph", graph.name),
                       ("onnx.opset_import", json.dumps({o.domain: o.version
                                                         for o in model.opset_import}))):
        if value:
            metadata.setdefault(key, value)
    return weights_from_file(tensors, metadata, path)


class OnnxCodec(Codec):
    """ONNX models: their initializers as tensors (read only, through onnx)."""

    name = "onnx"
    extensions = (".onnx",)
    description = "ONNX model initializers (read only; external data inside its folder)"
    writable = False
    extra = "onnx"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        _onnx()

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return is_onnx(head)

    def write(self, weights: Weights, fileobj: IO[bytes], *, path: str) -> None:
        raise UnsupportedError(path=path, field="format", expected="a format weightstore "
                               "writes (onnx is read only here: 'weightstore export-onnx' "
                               "builds a model)", found="onnx")

    def read(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS,
             verify: bool = True, budget: Budget | None = None) -> Weights:
        size = fileobj.seek(0, os.SEEK_END)
        fileobj.seek(0)
        most = limits.max_total_bytes + limits.max_header_bytes
        if size > most:
            raise LimitError(path=path, field="file size",
                             expected=f"at most {most:,} bytes (Limits.max_total_bytes + "
                             "max_header_bytes: the model is parsed in memory)",
                             found=f"{size:,} bytes")
        return read_onnx(fileobj.read(), path, limits)
