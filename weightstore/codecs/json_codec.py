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

Plain layout (``layout=plain``; read whenever the top-level object has no ``format``
key): ``{"W1": [[...], ...], "b1": [...]}``, what ``json.dump`` of a dict of lists
gives. Each key is a tensor name, each value its nested lists (or a bare number for a
0-d tensor) in row-major order; the shape is the nesting. Values are written as in
``data`` above (shortest decimals; non-finite values as the strings ``"NaN"``,
``"Infinity"``, ``"-Infinity"``). There are no dtypes, checksums or metadata: reading
gives every tensor in the codec's ``dtype`` option (default ``float32``; each number
rounded once to it, an integer out of range is an error), writing drops the metadata
with a warning naming its keys.

Versions: ``crc32`` and ``header_crc32`` were added to version 1 as optional
keys (weightstore 0.1 wrote none, and its reader refuses them); files without
them still load, unverified. ``load(..., verify=False)`` skips the comparison.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import IO, Any

import numpy as np
import orjson

from ..codec import DEFAULT_LIMITS, Budget, Codec, Limits, LoadedSource, Option, TensorSource
from ..errors import ChecksumError, FormatError, WeightsError
from ..fileio import RawFile
from ..integrity import (
    HINT,
    format_crc,
    header_crc32,
    header_entries,
    parse_crc,
    tensor_crc32,
    verify_header,
    verify_tensor,
)
from ..model import TensorInfo, Weights, canonical_dtype, dtype_name, weights_from_file
from ..sniffing import is_json
from . import _fasttext
from ._header import check_shape
from ._text import cast_exact, json_ready, json_text, parse_token

FORMAT_ID = "weightstore.json"
VERSION = 1
_KEYS = {"format", "version", "metadata", "tensors"}
_OPTIONAL_KEYS = {"header_crc32"}
_TENSOR_KEYS = {"name", "dtype", "shape", "data"}
_OPTIONAL_TENSOR_KEYS = {"crc32"}
#: The dtypes a plain layout may be read as.
PLAIN_DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
                "uint16", "uint32", "uint64", "bool")


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
        return []  # shape [10**9, 0] would be 2 GB of text holding no value
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
    options = (
        Option("indent", bool, False, "indent the document by 2 spaces for reading"),
        Option("layout", str, "weightstore", "'plain': {name: nested lists} as json.dump of "
               "a dict gives (no dtypes, checksums or metadata)",
               choices=("weightstore", "plain")),
        Option("dtype", str, "float32", "dtype of the tensors read from a plain layout",
               choices=PLAIN_DTYPES),
    )
    indent: bool
    layout: str
    dtype: str

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return is_json(head)

    streams_writes = True

    def write(self, weights: Weights, fileobj: IO[bytes], *, path: str) -> None:
        if self.layout == "plain":
            self._write_plain(weights, fileobj, path)
            return
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

    def _write_plain(self, weights: Weights, fileobj: IO[bytes], path: str) -> None:
        if weights.metadata:
            warnings.warn(f"{path}: the plain JSON layout has no place for metadata: "
                          f"{', '.join(map(repr, weights.metadata))} not written", stacklevel=4)
        separator = b"{"
        newline = b"\n" if self.indent else b""
        for name, array in weights.items():
            data = json_text(array) if array.size else orjson.dumps(_empty_nesting(array.shape))
            fileobj.write(separator + newline + orjson.dumps(name) + b":" + data)
            separator = b","
            del array, data
        fileobj.write(b"{}" if separator == b"{" else newline + b"}")

    def _read_plain(self, doc: dict[str, Any], path: str, limits: Limits) -> Weights:
        if len(doc) > limits.max_tensors:
            raise FormatError(path=path, field="top level",
                              expected=f"at most {limits.max_tensors} tensors", found=len(doc))
        tensors: list[tuple[str, np.ndarray]] = []
        total = 0
        for name, data in doc.items():
            shape: list[int] = []
            v = data
            while isinstance(v, list):
                shape.append(len(v))
                if not v:
                    break
                v = v[0]
            entry = {"name": name, "dtype": self.dtype, "shape": shape, "data": data}
            name, array = self._read_tensor(entry, f"key {name!r}", path, limits, total)
            total += array.nbytes
            tensors.append((name, array))
        return weights_from_file(tensors, {}, path)

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
        budget.take(len(raw), path=path, field="JSON document")
        fast = _read_compact(raw, path, limits, verify, budget)
        if fast is not None:
            return fast
        budget.take(_parsed_bytes(raw), path=path, field="JSON document (parsed)")
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise FormatError(f"not valid JSON ({e})", path=path) from e
        del raw
        if self.layout == "plain" or (isinstance(doc, dict) and "format" not in doc):
            if not isinstance(doc, dict):
                raise FormatError(path=path, field="top level", expected="a JSON object",
                                  found=type(doc).__name__)
            return self._read_plain(doc, path, limits)
        metadata, stored_header = _check_document(doc, path)
        entries = doc.get("tensors")
        _check_entries(entries, path, limits)
        tensors: list[tuple[str, np.ndarray]] = []
        crcs: dict[str, Any] = {}
        total = 0
        for i, entry in enumerate(entries):
            name, array = self._read_tensor(entry, f"tensors[{i}]", path, limits, total)
            total += array.nbytes
            tensors.append((name, array))
            if "crc32" in entry:
                crcs[name] = entry["crc32"]
        return _finish(tensors, crcs, metadata, stored_header, path, verify)

    def open(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS,
             verify: bool = True, budget: Budget | None = None) -> TensorSource:
        """The tensors of a compact document (as the writer makes it without indent) from
        its text outside the data arrays, each parsed from the file when read (its
        checksum checked then; the header's on opening); any other document (the plain
        layout too) read whole."""
        source = None if self.layout == "plain" else _open_compact(
            _fasttext.FileText(RawFile(fileobj, path)), path,
            dataclasses.replace(limits, max_total_bytes=1 << 62), verify)
        if source is None:
            fileobj.seek(0)
            return LoadedSource(self.read(fileobj, path=path, limits=limits, verify=verify,
                                          budget=budget))
        if verify and source.stored_header is not None:
            actual = header_crc32([(t.name, t.dtype_name, t.shape) for t in source.tensors],
                                  source.metadata)
            if actual != source.stored_header:
                raise ChecksumError(path=path, field="header (names, dtypes, shapes, metadata)",
                                    expected=f"CRC-32 {format_crc(source.stored_header)}",
                                    found=f"CRC-32 {format_crc(actual)}", hint=HINT)
        return source

    @staticmethod
    def _read_tensor(entry: Any, where: str, path: str, limits: Limits,
                     total: int) -> tuple[str, np.ndarray]:
        name, dtype, shape_t = _tensor_header(entry, where, path, limits, total)
        return name, _tensor_values(entry["data"], name, dtype, shape_t, path)


def _parsed_bytes(text: bytes) -> int:
    """What orjson builds from *text*, charged before it parses: each list or object (an
    empty list is 56 bytes for 2 bytes of text) and each value (a float object and its
    slot)."""
    return 88 * (text.count(b"[") + text.count(b"{")) + 40 * (text.count(b",") + 1)


def _check_document(doc: Any, path: str) -> tuple[dict[str, str], int | None]:
    """The top level's checks (all but the tensors): its metadata and header checksum."""
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
    return metadata, stored_header


def _check_entries(entries: Any, path: str, limits: Limits) -> None:
    if not isinstance(entries, list):
        raise FormatError(path=path, field="tensors", expected="a list",
                          found=type(entries).__name__)
    if len(entries) > limits.max_tensors:
        raise FormatError(path=path, field="tensors",
                          expected=f"at most {limits.max_tensors}", found=len(entries))


def _finish(tensors: list[tuple[str, np.ndarray]], crcs: dict[str, Any],
            metadata: dict[str, str], stored_header: int | None, path: str,
            verify: bool) -> Weights:
    """The weights, their checksums verified unless *verify* is false."""
    if verify:
        for name, array in tensors:
            if name in crcs:
                verify_tensor(path, name, array,
                              parse_crc(crcs[name], path, f"tensor {name!r} crc32"))
    weights = weights_from_file(tensors, metadata, path)
    if verify and stored_header is not None:
        verify_header(path, stored_header, weights, weights.metadata)
    return weights


def _tensor_header(entry: Any, where: str, path: str, limits: Limits,
                   total: int) -> tuple[str, np.dtype, tuple[int, ...]]:
    """A tensor entry's keys, name, dtype and shape checked (and its size against
    *limits*)."""
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
    return name, dtype, shape_t


def _tensor_values(data: Any, name: str, dtype: np.dtype, shape_t: tuple[int, ...],
                   path: str) -> np.ndarray:
    """A tensor's parsed ``data`` (nested lists) as an array of *dtype* and *shape_t*."""
    where = f"tensor {name!r}"
    shape = list(shape_t)
    if math.prod(shape_t) == 0:
        if not _is_empty_nesting(data, shape_t):
            raise FormatError(path=path, field=f"{where} data",
                              expected=f"empty nesting for shape {shape}", found=data)
        return np.zeros(shape_t, dtype=dtype)
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
        return values
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
    return cast_exact(values, dtype, f"{where} data", path)


# --- the compact reader ---------------------------------------------------------------
#
# A document as the writer makes it without indent (the tensors list last; in each tensor
# "data" last) is read without building Python objects for its values: the text outside
# the data arrays (small) is parsed by orjson, each data array on its own, by the compiled
# path when it holds only numbers (_fasttext.json_numbers) or else by orjson. Anything
# else returns None and the whole document is parsed as one; either way the checks and
# messages are the functions above.

_TENSORS_AT = b'"tensors":['
_DATA_AT = b',"data":'


def _read_compact(raw: bytes, path: str, limits: Limits, verify: bool,
                  budget: Budget | None = None) -> Weights | None:
    """The weights of a compact document, or None (the caller parses it whole). With
    *budget*, the tensors are charged to it before they are read, and the Python objects
    of any data array parsed by orjson before it is parsed."""
    source = _open_compact(_fasttext.MemoryText(raw), path, limits, verify)
    if source is None:
        return None
    charge = sum(info.nbytes for info in source.tensors)
    if budget is not None:
        budget.take(charge, path=path, field="tensors")
        source.budget = budget
    try:
        tensors = [(info.name, source.read(info.name)) for info in source.tensors]
    except _NotCompact:
        if budget is not None:
            budget.give_back(charge)  # the whole document is parsed instead
        return None
    weights = weights_from_file(tensors, source.metadata, path)
    if verify and source.stored_header is not None:
        verify_header(path, source.stored_header, weights, weights.metadata)
    return weights


class _NotCompact(Exception):
    """A data array that orjson cannot parse on its own: the whole document is parsed."""


class _CompactSource(TensorSource):
    """A compact document's tensors, each parsed from its data text when read."""

    lazy = True

    def __init__(self, text: _fasttext.Text, head: dict[str, Any], spans: list[_Span],
                 path: str, limits: Limits, verify: bool) -> None:
        metadata, self.stored_header = _check_document(head, path)
        _check_entries(spans, path, limits)
        infos, self._spans, self._crcs = [], {}, {}
        total = 0
        for i, (entry, begin, end) in enumerate(spans):
            entry["data"] = None  # checked when read
            name, dtype, shape_t = _tensor_header(entry, f"tensors[{i}]", path, limits, total)
            total += math.prod(shape_t) * dtype.itemsize
            infos.append(TensorInfo(name, dtype, shape_t))
            self._spans[name] = (begin, end)
            if verify and "crc32" in entry:
                self._crcs[name] = parse_crc(entry["crc32"], path, f"tensor {name!r} crc32")
        super().__init__(infos, metadata)
        self._infos = {info.name: info for info in infos}
        self._text, self._path = text, path
        #: Charged for a data array's Python objects when orjson parses it (read()).
        self.budget: Budget | None = None

    def read(self, name: str, *, mmap: bool = False) -> np.ndarray:
        info, (begin, end), path = self._infos[name], self._spans[name], self._path
        where = f"tensor {name!r} data"
        try:
            array = None if info.dtype.kind == "b" else _fasttext.json_numbers(
                self._text, begin, end, info.shape, info.dtype,
                lambda values: cast_exact(values, info.dtype, where, path))
            if array is None:
                text = self._text.get(begin, end)
                charge = _parsed_bytes(text) if self.budget is not None else 0
                if self.budget is not None:
                    self.budget.take(charge, path=path, field=f"{where} (parsed)")
                try:
                    array = _tensor_values(orjson.loads(text), name, info.dtype, info.shape,
                                           path)
                finally:
                    if self.budget is not None:
                        self.budget.give_back(charge)
        except orjson.JSONDecodeError as e:
            if isinstance(self._text, _fasttext.MemoryText):
                raise _NotCompact from e
            raise FormatError(f"not valid JSON ({e})", path=path, field=where) from e
        if name in self._crcs:
            verify_tensor(path, name, array, self._crcs[name])
        return array


_Span = tuple[dict[str, Any], int, int]


def _open_compact(text: _fasttext.Text, path: str, limits: Limits,
                  verify: bool) -> _CompactSource | None:
    """A compact document's tensors, described by its text outside the data arrays; None if
    the document is not laid out so (the caller then parses it whole)."""
    if text.get(0, 3) == b"\xef\xbb\xbf":
        return None
    at = text.find(_TENSORS_AT, 0)
    head = None
    while at >= 0 and head is None:  # the first place where it is the top level's key
        try:
            head = orjson.loads(text.get(0, at) + b'"tensors":[]}')
        except orjson.JSONDecodeError:
            at = text.find(_TENSORS_AT, at + 1)
    if head is None or not isinstance(head, dict):
        return None
    spans = _data_spans(text, at + len(_TENSORS_AT))
    if spans is None:
        return None
    return _CompactSource(text, head, spans, path, limits, verify)


def _data_spans(text: _fasttext.Text, p: int) -> list[_Span] | None:
    """Each tensor object's keys but data, and where its data text begins and ends, from
    *p* (just inside the tensors list) to the end of the document; None if the text is
    not laid out as the compact writer lays it out."""
    spans: list[_Span] = []
    if text.get(p, p + 1) == b"]":
        p += 1
    else:
        while True:
            if text.get(p, p + 8) != b'{"name":':
                return None
            at = text.find(_DATA_AT, p)
            if at < 0:
                return None
            try:
                entry = orjson.loads(text.get(p, at) + b"}")
            except orjson.JSONDecodeError:
                return None
            if not isinstance(entry, dict) or "data" in entry:
                return None
            begin = at + len(_DATA_AT)
            # An array ends at the first "]}" (values never hold one; numbers hold no "}",
            # found by memchr); a bare value at "}".
            end = text.find(b"}", begin)
            if text.get(begin, begin + 1) == b"[":
                end = end if end > 0 and text.get(end - 1, end) == b"]" else \
                    text.find(b"]}", begin) + 1
            if end <= 0:
                return None
            spans.append((entry, begin, end))
            p = end + 2  # past the "}" and the "," or "]" after it
            after = text.get(end + 1, p)
            if after == b"]":
                break
            if after != b",":
                return None
    if text.get(p, p + 1) != b"}" or text.get(p + 1, p + 1 + 4096).strip() or \
            text.size > p + 1 + 4096:
        return None
    return spans
