"""JSON: one document any language's standard JSON parser reads.

Layout (version 1), specified in full in ``docs/formats.md``::

    {
      "format": "weightstore.json",
      "version": 1,
      "metadata": {"key": "value", ...},
      "header_crc32": "<8 hex digits>",
      "tensors": [
        {"name": "W1", "dtype": "float32", "shape": [784, 50], "crc32": "<8 hex digits>",
         "data": [[...], ...]},
        ...
      ]
    }

- ``tensors`` is a list, in the weights' order. ``name`` uses ``/`` for groups.
- ``dtype`` is one of ``bool int8 int16 int32 int64 uint8 uint16 uint32 uint64
  float16 bfloat16 float32 float64``.
- ``shape`` is a list of non-negative integers (``[]`` for a 0-d tensor).
- ``data`` holds the values in row-major (C) order as nested lists, one level per
  dimension (a bare value for a 0-d tensor). An empty tensor keeps the nesting down
  to its first zero dimension, e.g. shape ``[3, 0]`` is ``[[], [], []]``, while that
  takes at most :data:`MAX_EMPTY_LISTS` lists; beyond, its ``data`` is ``[]`` (shape
  ``[10**9, 0]`` would otherwise be 2 GB of text for no value). Readers accept both.
- A value is ``true``/``false`` for bool; a JSON integer for integer dtypes, or a
  decimal string when a 64-bit value is beyond ±(2**53 - 1); for floats, the
  shortest decimal that reads back to the identical value of that dtype, or one of
  the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``, or ``"NaN(0x<bits>)"``
  for a NaN whose bits are not the canonical quiet NaN.

- ``crc32`` (optional) is the tensor checksum and ``header_crc32`` (optional)
  the header checksum of :mod:`weightstore.integrity`, each as 8 lowercase hex
  digits: the CRC-32 of the values as little-endian bytes in row-major order, and
  the CRC-32 of the names, dtypes, shapes and metadata.

A reader rebuilds a tensor by parsing ``data``, converting strings with its
decimal parser (JavaScript: ``Number(s)`` or ``BigInt(s)``), flattening in
row-major order, and rounding each number once to ``dtype``; where ``crc32`` is
present it compares it with the CRC-32 of the rebuilt tensor's bytes.

Versions: ``crc32`` and ``header_crc32`` were added to version 1 as optional
keys (weightstore 0.1 wrote none, and its reader refuses them); files without
them still load, unverified. ``load(..., verify=False)`` skips the comparison.
"""

from __future__ import annotations

import math
from typing import IO, Any

import numpy as np
import orjson

from ..codec import DEFAULT_LIMITS, Budget, Codec, Limits, Option
from ..errors import FormatError, WeightsError
from ..integrity import (
    format_crc,
    header_crc32,
    header_entries,
    parse_crc,
    tensor_crc32,
    verify_header,
    verify_tensor,
)
from ..model import Weights, canonical_dtype, dtype_name, weights_from_file
from ..sniffing import is_json
from ._header import check_shape
from ._text import cast_exact, json_ready, json_text, parse_token

FORMAT_ID = "weightstore.json"
VERSION = 1
_KEYS = {"format", "version", "metadata", "tensors"}
_OPTIONAL_KEYS = {"header_crc32"}
_TENSOR_KEYS = {"name", "dtype", "shape", "data"}
_OPTIONAL_TENSOR_KEYS = {"crc32"}


#: Most lists an empty tensor's nesting is written with; beyond, its data is ``[]``.
MAX_EMPTY_LISTS = 4096


def _empty_lists(shape: tuple[int, ...]) -> int:
    """How many lists the full nesting of an empty tensor of *shape* takes."""
    lists, run = 1, 1
    for d in shape:
        if d == 0:
            break
        run *= d
        lists += run
        if lists > MAX_EMPTY_LISTS:
            return lists
    return lists


def _empty_nesting(shape: tuple[int, ...]) -> Any:
    if _empty_lists(shape) > MAX_EMPTY_LISTS:
        return []
    if not shape or shape[0] == 0:
        return []
    return [_empty_nesting(shape[1:]) for _ in range(shape[0])]


def _is_empty_nesting(data: Any, shape: tuple[int, ...]) -> bool:
    """Whether *data* is ``[]`` or the full nesting of an empty tensor of *shape*; walked
    without building anything, so its cost is the size of *data* (already parsed)."""
    if data == []:
        return True
    stack = [(data, 0)]
    while stack:
        node, level = stack.pop()
        if not isinstance(node, list):
            return False
        if level == len(shape) or shape[level] == 0:
            if node:
                return False
            continue
        if len(node) != shape[level]:
            return False
        stack.extend((child, level + 1) for child in node)
    return True


class JsonCodec(Codec):
    """Our JSON layout: tensors as nested lists of exact shortest decimals."""

    name = "json"
    extensions = (".json",)
    checksums = True
    description = "JSON document (weightstore.json v1): name, dtype, shape, nested values"
    options = (Option("indent", bool, False, "indent the document by 2 spaces for reading"),)
    indent: bool

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return is_json(head)

    streams_writes = True

    def write(self, weights: Weights, fileobj: IO[bytes], *, path: str) -> None:
        if self.indent:
            self._write_indented(weights, fileobj)
            return
        # The same bytes as one orjson.dumps of the whole document, written one tensor at
        # a time: each tensor's values become text once (orjson.Fragment embeds it).
        head = orjson.dumps({
            "format": FORMAT_ID, "version": VERSION, "metadata": dict(weights.metadata),
            "header_crc32": format_crc(header_crc32(header_entries(weights), weights.metadata)),
            "tensors": []})
        fileobj.write(head[: -len(b"]}")])
        separator = b""
        for name, array in weights.items():  # not enumerate: it keeps the last item alive
            data = json_text(array) if array.size else orjson.dumps(_empty_nesting(array.shape))
            entry = orjson.dumps({"name": name, "dtype": dtype_name(array.dtype),
                                  "shape": list(array.shape),
                                  "crc32": format_crc(tensor_crc32(array)),
                                  "data": orjson.Fragment(data)})
            fileobj.write(separator + entry)
            separator = b","
            del array, data, entry  # one tensor (and its text) in memory at a time
        fileobj.write(b"]}")

    def _write_indented(self, weights: Weights, fileobj: IO[bytes]) -> None:
        doc = {
            "format": FORMAT_ID,
            "version": VERSION,
            "metadata": dict(weights.metadata),
            "header_crc32": format_crc(header_crc32(header_entries(weights), weights.metadata)),
            "tensors": [
                {
                    "name": name,
                    "dtype": dtype_name(array.dtype),
                    "shape": list(array.shape),
                    "crc32": format_crc(tensor_crc32(array)),
                    "data": json_ready(array) if array.size else _empty_nesting(array.shape),
                }
                for name, array in weights.items()
            ],
        }
        fileobj.write(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_INDENT_2))

    def read(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS,
             verify: bool = True, budget: Budget | None = None) -> Weights:
        budget = Budget.of(budget, limits, fileobj)
        raw = fileobj.read()
        if raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        # What parsing will build, charged first: each list or object (an empty list is
        # 56 bytes for 2 bytes of text) and each value (a float object and its slot).
        containers = raw.count(b"[") + raw.count(b"{")
        budget.take(len(raw) + 88 * containers + 40 * (raw.count(b",") + 1), path=path,
                    field="JSON document (parsed)")
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise FormatError(f"not valid JSON ({e})", path=path) from e
        if not isinstance(doc, dict):
            raise FormatError(path=path, field="top level", expected="a JSON object",
                              found=type(doc).__name__)
        if doc.get("format") != FORMAT_ID:
            raise FormatError(path=path, field="format", expected=repr(FORMAT_ID),
                              found=doc.get("format", "no 'format' key"),
                              hint="this JSON file was not written by weightstore")
        if doc.get("version") != VERSION:
            raise FormatError(path=path, field="version", expected=VERSION,
                              found=doc.get("version"))
        extra = set(doc) - _KEYS - _OPTIONAL_KEYS
        if extra:
            raise FormatError(path=path, field="top level",
                              expected=f"keys {sorted(_KEYS)} and optionally "
                              f"{sorted(_OPTIONAL_KEYS)}", found=sorted(extra))
        stored_header = (parse_crc(doc["header_crc32"], path, "header_crc32")
                         if "header_crc32" in doc else None)
        metadata = doc.get("metadata", {})
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise FormatError(path=path, field="metadata", expected="an object of strings",
                              found=metadata)
        entries = doc.get("tensors")
        if not isinstance(entries, list):
            raise FormatError(path=path, field="tensors", expected="a list",
                              found=type(entries).__name__)
        if len(entries) > limits.max_tensors:
            raise FormatError(path=path, field="tensors",
                              expected=f"at most {limits.max_tensors}", found=len(entries))
        tensors: list[tuple[str, np.ndarray]] = []
        total = 0
        for i, entry in enumerate(entries):
            name, array = self._read_tensor(entry, f"tensors[{i}]", path, limits, total,
                                            budget)
            total += array.nbytes
            tensors.append((name, array))
            if verify and "crc32" in entry:
                verify_tensor(path, name, array, parse_crc(entry["crc32"], path,
                                                            f"tensor {name!r} crc32"))
        weights = weights_from_file(tensors, metadata, path)
        if verify and stored_header is not None:
            verify_header(path, stored_header, weights, weights.metadata)
        return weights

    @staticmethod
    def _read_tensor(entry: Any, where: str, path: str, limits: Limits,
                     total: int, budget: Budget) -> tuple[str, np.ndarray]:
        if not isinstance(entry, dict) or not (
                _TENSOR_KEYS <= set(entry) <= _TENSOR_KEYS | _OPTIONAL_TENSOR_KEYS):
            raise FormatError(path=path, field=where, expected=f"an object with keys "
                              f"{sorted(_TENSOR_KEYS)} and optionally "
                              f"{sorted(_OPTIONAL_TENSOR_KEYS)}",
                              found=sorted(entry) if isinstance(entry, dict) else entry)
        name, dtype_text, shape = entry["name"], entry["dtype"], entry["shape"]
        if not isinstance(name, str):
            raise FormatError(path=path, field=f"{where}.name", expected="a string", found=name)
        where = f"tensor {name!r}"
        if not isinstance(dtype_text, str):
            raise FormatError(path=path, field=f"{where} dtype", expected="a string",
                              found=dtype_text)
        try:
            dtype = canonical_dtype(dtype_text)
        except WeightsError as e:
            raise FormatError(path=path, field=f"{where} dtype", expected=e.expected,
                              found=dtype_text) from e
        shape_t = check_shape(shape, path=path, field=f"{where} shape")
        count = math.prod(shape_t)  # exact: a float product overflows on absurd claims
        limits.check_tensor(path, name, count * dtype.itemsize, total)
        data = entry["data"]
        if count == 0:
            if not _is_empty_nesting(data, shape_t):
                raise FormatError(path=path, field=f"{where} data",
                                  expected=f"empty nesting for shape {shape}", found=data)
            return name, np.zeros(shape_t, dtype=dtype)  # no values: no memory
        budget.take(count * (8 + dtype.itemsize), path=path, field=f"{where} data")
        try:
            values = np.array(data)
        except ValueError as e:
            raise FormatError(path=path, field=f"{where} data",
                              expected=f"nested lists of shape {shape}",
                              found="ragged lists") from e
        if values.shape != shape_t:
            raise FormatError(path=path, field=f"{where} data",
                              expected=f"nested lists of shape {shape}",
                              found=f"shape {list(values.shape)}")
        if dtype.kind == "b":
            if values.dtype != np.bool_:
                raise FormatError(path=path, field=f"{where} data", expected="true/false values",
                                  found=str(values.dtype))
            return name, values
        if values.dtype.kind in "UO":
            flat = np.array(data, dtype=object).reshape(-1)
            for j, v in enumerate(flat.tolist()):
                if isinstance(v, str):
                    flat[j] = parse_token(v, dtype, f"{where} data[{j}]", path)
                elif isinstance(v, bool) or not isinstance(v, int | float):
                    raise FormatError(path=path, field=f"{where} data[{j}]",
                                      expected="a number", found=v)
            values = flat.reshape(shape_t)
        elif values.dtype.kind not in "iuf":
            raise FormatError(path=path, field=f"{where} data", expected="numbers",
                              found=str(values.dtype))
        return name, cast_exact(values, dtype, f"{where} data", path)
