"""CSV: one value per row, every row complete on its own (RFC 4180).

Specified in full in ``docs/formats.md``. UTF-8, CRLF line ends, fields quoted
only when they hold a comma, a quote or a line break. The header row is::

    tensor,dtype,shape,index,value

- ``tensor``: the tensor's name (``/`` separates groups).
- ``dtype``: ``bool int8 ... uint64 float16 bfloat16 float32 float64``.
- ``shape``: the dimensions joined by ``x`` (``784x50``); ``scalar`` for a 0-d tensor.
- ``index``: the element's position in row-major (C) order, from 0. For shape
  ``(R, C)`` the element at row ``r``, column ``c`` has index ``r*C + c``.
- ``value``: bool as ``0``/``1``; integers as exact decimals; floats as the
  shortest decimal that reads back to the identical value of that dtype, or
  ``NaN``, ``Infinity``, ``-Infinity``, ``NaN(0x<bits>)`` (a NaN with other bits).

Every row ends with CRLF, the last one included: a file that does not end
with a line break is refused as truncated, and so is a tensor with rows
missing. A file cut exactly between two tensors cannot be told from a file
with fewer tensors; use ``.csv.zst`` (which carries a checksum) where that matters.

Rows may come in any order (a reader places each by its index). Two kinds of
row carry no element and appear only when needed: an empty tensor has one row
with empty ``index`` and ``value``; each metadata entry is a row with ``dtype``
``metadata``, the key in ``tensor``, the text in ``value``, ``shape`` and
``index`` empty.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import IO

import numpy as np

from ..codec import DEFAULT_LIMITS, Codec, Limits
from ..errors import FormatError, WeightsError
from ..model import Weights, canonical_dtype, dtype_name
from ..registry import register
from ._text import cast_exact, parse_token, value_strings

HEADER = ("tensor", "dtype", "shape", "index", "value")
HEADER_LINE = ",".join(HEADER).encode()
METADATA_DTYPE = "metadata"
SCALAR = "scalar"
_BOM = b"\xef\xbb\xbf"


def format_shape(shape: tuple[int, ...]) -> str:
    """``(784, 50)`` as ``784x50``; ``()`` as ``scalar``."""
    return "x".join(map(str, shape)) if shape else SCALAR


def parse_shape(text: str, where: str, path: str) -> tuple[int, ...]:
    """The inverse of :func:`format_shape`, with a clear error."""
    if text == SCALAR:
        return ()
    parts = text.split("x")
    if not all(p.isdigit() and p.isascii() for p in parts) or len(parts) > 64:
        raise FormatError(path=path, field=f"{where} shape",
                          expected="dimensions joined by 'x' (784x50) or 'scalar'", found=text)
    return tuple(int(p) for p in parts)


def _quote(text: str) -> str:
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


@register
class CsvCodec(Codec):
    """One value per row: tensor, dtype, shape, index, value."""

    name = "csv"
    extensions = (".csv",)
    #: A file cut exactly between two tensors' rows reads as the tensors before the cut:
    #: CSV has no header or trailer that could count them (see docs/formats.md).
    detects_cut_between_tensors = False
    description = "CSV (RFC 4180), one value per row; sqlite3, DuckDB, pandas, spreadsheets"

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return head.removeprefix(_BOM).startswith(HEADER_LINE)

    def write(self, weights: Weights, fileobj: IO[bytes], *, path: str) -> None:
        out = io.TextIOWrapper(fileobj, encoding="utf-8", newline="", write_through=False)
        try:
            out.write(",".join(HEADER) + "\r\n")
            for name, array in weights.items():
                prefix = f"{_quote(name)},{dtype_name(array.dtype)},{format_shape(array.shape)},"
                if array.size == 0:
                    out.write(prefix + ",\r\n")
                    continue
                values = value_strings(array)
                # Written in slices so that memory stays bounded by one slice of text.
                step = 1 << 16
                for start in range(0, len(values), step):
                    chunk = values[start:start + step]
                    out.write("".join(
                        f"{prefix}{i},{v}\r\n" for i, v in enumerate(chunk, start)
                    ))
            for key, value in weights.metadata.items():
                out.write(f"{_quote(key)},{METADATA_DTYPE},,,{_quote(value)}\r\n")
            out.flush()
        finally:
            out.detach()

    def read(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS) -> Weights:
        end = fileobj.seek(0, io.SEEK_END)
        fileobj.seek(max(0, end - 1))
        if fileobj.read(1) != b"\n":
            raise FormatError(path=path, field="last line", expected="a line ending",
                              found="none (the file is truncated)")
        fileobj.seek(0)
        text = io.TextIOWrapper(fileobj, encoding="utf-8-sig", newline="")
        try:
            return self._read_rows(csv.reader(text, strict=True), path, limits)
        except UnicodeDecodeError as e:
            raise FormatError(f"not UTF-8 text ({e.reason} at byte {e.start})", path=path) from e
        except csv.Error as e:
            raise FormatError(f"malformed CSV ({e})", path=path) from e
        finally:
            text.detach()

    @staticmethod
    def _read_rows(reader: Iterator[list[str]], path: str, limits: Limits) -> Weights:
        header = next(reader, None)
        if header is None or tuple(header) != HEADER:
            raise FormatError(path=path, field="header row", expected=",".join(HEADER),
                              found=",".join(header) if header else "nothing")
        order: dict[str, tuple[str, str, list[str], list[str]]] = {}
        empty: set[str] = set()
        metadata: dict[str, str] = {}
        for row in reader:
            line = reader.line_num
            if len(row) != 5:
                if not row:
                    continue
                raise FormatError(path=path, field=f"line {line}", expected="5 fields",
                                  found=len(row))
            name, dtype_text, shape_text, index, value = row
            if dtype_text == METADATA_DTYPE:
                metadata[name] = value
                continue
            entry = order.get(name)
            if entry is None:
                if len(order) >= limits.max_tensors:
                    raise FormatError(path=path, field=f"line {line}",
                                      expected=f"at most {limits.max_tensors} tensors")
                entry = order[name] = (dtype_text, shape_text, [], [])
            elif entry[0] != dtype_text or entry[1] != shape_text:
                raise FormatError(
                    path=path, field=f"line {line}, tensor {name!r}",
                    expected=f"dtype {entry[0]} and shape {entry[1]} as on its first row",
                    found=f"dtype {dtype_text} and shape {shape_text}",
                )
            if index == "" and value == "":
                empty.add(name)
                continue
            entry[2].append(index)
            entry[3].append(value)
        tensors: list[tuple[str, np.ndarray]] = []
        total = 0
        for name, (dtype_text, shape_text, indexes, values) in order.items():
            array = _build(name, dtype_text, shape_text, indexes, values, name in empty, path,
                           limits, total)
            total += array.nbytes
            tensors.append((name, array))
        try:
            return Weights(tensors, metadata=metadata)
        except WeightsError as e:
            raise FormatError(f"holds invalid weights: {e}", path=path) from e


def _build(name: str, dtype_text: str, shape_text: str, indexes: list[str], values: list[str],
           marked_empty: bool, path: str, limits: Limits, total: int) -> np.ndarray:
    where = f"tensor {name!r}"
    try:
        dtype = canonical_dtype(dtype_text)
    except WeightsError as e:
        raise FormatError(path=path, field=f"{where} dtype", expected=e.expected,
                          found=dtype_text) from e
    shape = parse_shape(shape_text, where, path)
    count = int(np.prod(shape, dtype=np.float64)) if shape else 1
    limits.check_tensor(path, name, count * dtype.itemsize, total)
    if len(values) != count or (marked_empty and count):
        raise FormatError(path=path, field=where,
                          expected=f"{count:,} value rows for shape {shape_text}",
                          found=f"{len(values):,}" + (" and an empty-tensor row"
                                                      if marked_empty and count else ""))
    if count == 0:
        return np.zeros(shape, dtype=dtype)
    try:
        idx = np.array(indexes, dtype=np.int64)
    except (ValueError, OverflowError) as e:
        raise FormatError(path=path, field=f"{where} index", expected="integers") from e
    if idx.min() < 0 or idx.max() >= count:
        raise FormatError(path=path, field=f"{where} index", expected=f"0 to {count - 1}",
                          found=int(idx.min() if idx.min() < 0 else idx.max()))
    seen = np.zeros(count, dtype=bool)
    seen[idx] = True
    if not seen.all():
        missing = int(np.argmin(seen))
        raise FormatError(path=path, field=f"{where} index",
                          expected="each index once", found=f"index {missing} missing")
    parsed = _parse_values(values, dtype, where, path)
    out = np.empty(count, dtype=dtype)
    out[idx] = parsed
    return out.reshape(shape)


def _parse_values(values: list[str], dtype: np.dtype, where: str, path: str) -> np.ndarray:
    if dtype.kind == "b":
        if not set(values) <= {"0", "1"}:
            bad = next(v for v in values if v not in ("0", "1"))
            raise FormatError(path=path, field=f"{where} value", expected="0 or 1", found=bad)
        return np.array(values) == "1"
    target = np.int64 if dtype.kind == "i" else np.uint64 if dtype.kind == "u" else np.float64
    try:
        numbers = np.array(values).astype(target)
    except (ValueError, OverflowError):
        flat = np.empty(len(values), dtype=object)
        for j, v in enumerate(values):
            flat[j] = _parse_one(v, dtype, f"{where} value at row {j}", path)
        numbers = flat
    return cast_exact(numbers, dtype, f"{where} value", path)


def _plain(text: str) -> bool:
    return text[:1].isdigit() or (text[:1] == "-" and text[1:2].isdigit())


def _parse_one(text: str, dtype: np.dtype, where: str, path: str) -> object:
    if dtype.kind in "iu":
        if text.lstrip("-").isdigit():
            return int(text)
        raise FormatError(path=path, field=where, expected="an integer", found=text)
    if _plain(text):
        try:
            return float(text)
        except ValueError:
            pass
    return parse_token(text, dtype, where, path)
