"""Compiled paths for the text codecs (CSV and JSON), through Apache Arrow.

Optional: with ``pyarrow`` installed (the ``text`` extra) the CSV and JSON codecs
parse and format numbers in Arrow's C++ code (multi-threaded, exactly rounded
``fast_float`` parsing); without it they use their own numpy/orjson code, which
gives the same bytes and the same values (tests run both and compare them). Every
function here returns ``None`` where it cannot do the job exactly as the general
code would (text it does not recognise, a value it would parse differently); the
caller then takes the general route, which names the fault.

The file layouts are unchanged: see ``docs/formats.md``.

- Writing CSV: the values' shortest decimals come from orjson as before (ryu, per
  dtype); Arrow joins ``prefix, index, ",", value, CRLF`` row by row in C++.
- Reading CSV: the ``index,value`` tails of a run of rows that share their first
  three fields are parsed as a two-column CSV (int64 index, float64 or integer value).
- Reading JSON (needs no pyarrow): a tensor's ``data`` text holding only numbers,
  commas and brackets is checked against the bracket skeleton its shape implies, then
  its numbers are parsed by orjson as flat lists, one slice at a time (orjson's number
  parser is as fast as Arrow's, and it is the one the general reader uses, so the
  grammar and the values are the same by construction).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from ..fileio import RawFile

#: Values below which the general code is used (importing pyarrow costs ~0.2 s).
MIN_VALUES = 1 << 16
#: Bytes of JSON number text parsed per slice (bounds the temporaries of one tensor).
JSON_SLICE_BYTES = 8 << 20


@functools.cache
def _pyarrow() -> Any:
    """``(pyarrow, pyarrow.compute, pyarrow.csv)``, or None when the extra is not installed."""
    try:
        import pyarrow
        import pyarrow.compute
        import pyarrow.csv
    except ImportError:
        return None
    return pyarrow, pyarrow.compute, pyarrow.csv


def enabled(values: int) -> bool:
    """Whether the compiled path handles *values* values (pyarrow installed, enough work)."""
    return values >= MIN_VALUES and _pyarrow() is not None


# --- CSV writing ---------------------------------------------------------------------------


def _strings(text: bytes) -> tuple[int, np.ndarray, bytes]:
    """Count, offsets and data of an Arrow string array of the comma-separated tokens in
    *text* (none empty)."""
    comma = np.flatnonzero(np.frombuffer(text, np.uint8) == 44)
    count = comma.size + 1
    offsets = np.empty(count + 1, np.int64)
    offsets[0] = 0
    offsets[1:-1] = comma - np.arange(comma.size)
    offsets[-1] = len(text) - comma.size
    return count, offsets, text.replace(b",", b"")


#: 10, 100, ... 10**18: the number of digits of n >= 0 is searchsorted(_POWERS, n, "right") + 1.
_POWERS = 10 ** np.arange(1, 19, dtype=np.int64)


def csv_rows(prefix: bytes, start: int, values: bytes) -> memoryview:
    """``prefix + index + "," + value + CRLF`` for each comma-separated value in *values*
    (at least one, none empty), indexes counted from *start*: the same bytes as
    ``csv_codec._rows``. Needs pyarrow (check :func:`enabled` first)."""
    pa, pc, _ = _pyarrow()
    count, offsets, data = _strings(values)
    texts = pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(data))
    # The indexes' decimals from orjson, their lengths from their digit counts.
    index = np.arange(start, start + count, dtype=np.int64)
    ends = np.empty(count + 1, np.int64)
    ends[0] = 0
    np.cumsum(np.searchsorted(_POWERS, index, side="right") + 1, out=ends[1:])
    digits = orjson.dumps(index, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].replace(b",", b"")
    indexes = pa.LargeStringArray.from_buffers(count, pa.py_buffer(ends), pa.py_buffer(digits))
    text = functools.partial(pa.scalar, type=pa.large_string())
    rows = pc.binary_join_element_wise(text(prefix.decode("utf-8")), indexes, text(","), texts,
                                       text("\r\n"), text(""))
    bounds = np.frombuffer(rows.buffers()[1], np.int64, count + 1, rows.offset * 8)
    return memoryview(rows.buffers()[2])[int(bounds[0]):int(bounds[-1])]


# --- CSV reading ---------------------------------------------------------------------------


def csv_lines(text: memoryview, dtype_text: str,
              run: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Indexes and values of *run* CSV lines (CRLF or LF ends) of five unquoted fields,
    the last two numbers: int64 indexes, and float64 values for a float dtype or
    int64/uint64 for an integer one. None when any line is not that (the general reader
    then reads them). The caller checks that the first three fields are the same."""
    if dtype_text == "bool":
        return None
    pa, _, csv = _pyarrow()
    if dtype_text.startswith("uint"):
        value_type = pa.uint64()
    elif dtype_text.startswith("int"):
        value_type = pa.int64()
    else:
        value_type = pa.float64()
    try:
        table = csv.read_csv(
            pa.py_buffer(text),
            read_options=csv.ReadOptions(column_names=["t", "d", "s", "i", "v"]),
            parse_options=csv.ParseOptions(quote_char=False, double_quote=False,
                                           ignore_empty_lines=False),
            convert_options=csv.ConvertOptions(
                column_types={"i": pa.int64(), "v": value_type}, include_columns=["i", "v"],
                null_values=[],
                strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != run or table.num_columns != 2:
        return None
    return (table.column(0).to_numpy(), table.column(1).to_numpy())


# --- JSON reading --------------------------------------------------------------------------

_NUMBER_TEXT = b"0123456789.eE+-"


class MemoryText:
    """A document held in memory, behind the interface :class:`FileText` gives a file."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def get(self, begin: int, end: int) -> bytes:
        """The bytes from *begin* to *end* (fewer at the end)."""
        return self.data[begin:end]

    def find(self, needle: bytes, start: int) -> int:
        """Where *needle* first occurs from *start* on, or -1."""
        return self.data.find(needle, start)

    def count(self, needle: bytes, start: int, end: int) -> int:
        """How often *needle* occurs between *start* and *end* (not overlapping)."""
        return self.data.count(needle, start, end)


class FileText:
    """A document on disk, searched and read a window at a time (never whole)."""

    def __init__(self, raw: RawFile, window: int = 8 << 20) -> None:
        self.raw, self.window, self.size = raw, window, raw.size

    def get(self, begin: int, end: int) -> bytes:
        return self.raw.pread(begin, max(0, min(end, self.size) - begin))

    def find(self, needle: bytes, start: int) -> int:
        position = start
        while position < self.size:
            chunk = self.get(position, position + self.window + len(needle) - 1)
            found = chunk.find(needle)
            if found >= 0:
                return position + found
            position += self.window
        return -1

    def count(self, needle: bytes, start: int, end: int) -> int:
        """How often *needle* (which cannot overlap itself) occurs between *start* and
        *end*: each window counts the occurrences that start in it."""
        total = 0
        for position in range(start, end, self.window):
            total += self.get(position, min(end, position + self.window + len(needle) - 1)
                              ).count(needle)
        return total


Text = MemoryText | FileText


@functools.cache
def _skeleton(shape: tuple[int, ...]) -> bytes:
    """The brackets and commas of a JSON nesting of *shape* (no zero dimension)."""
    inner = b""
    for size in reversed(shape):
        inner = b"[" + (inner + b",") * (size - 1) + inner + b"]"
    return inner


def json_numbers(text: Text, begin: int, end: int, shape: tuple[int, ...], dtype: np.dtype,
                 convert: Callable[[np.ndarray], np.ndarray],
                 slice_bytes: int = JSON_SLICE_BYTES) -> np.ndarray | None:
    """The numbers of a tensor's ``data`` text (bytes *begin* to *end*) as an array of *dtype* and
    *shape*, parsed by orjson one slice of about *slice_bytes* at a time and each slice
    turned into *dtype* by *convert* (given what ``np.array`` makes of orjson's numbers:
    float64, int64, or object for integers beyond 64 bits), or None when
    the text is anything but numbers in exactly the nesting of *shape* (strings, spaces,
    other nesting): the caller then parses it whole, which names any fault. A slice that
    is not valid JSON raises ``orjson.JSONDecodeError``.

    Bulk parsing without nested lists: the brackets and commas are checked against the
    nesting *shape* implies (one ``bytes.translate``), and the numbers between them are
    parsed as one flat JSON list per slice, so that Python objects exist for one slice
    at a time, never for the whole tensor."""
    count = math.prod(shape)
    if not shape or not count or text.get(begin, begin + 1) != b"[":
        return None
    skeleton = _skeleton(shape)
    out = np.empty(count, dtype)
    position, matched, done = begin, 0, 0
    while position < end:
        piece = text.get(position, min(end, position + slice_bytes))
        stop = position + len(piece)
        if stop < end:  # cut at a comma: no number is split
            cut = piece.rfind(b",")
            if cut <= 0:
                return None
            piece, stop = piece[:cut], position + cut
        shape_text = piece.translate(None, _NUMBER_TEXT)
        if shape_text != skeleton[matched:matched + len(shape_text)]:
            return None  # other characters, or other nesting
        matched += len(shape_text) + (stop < end)  # and the comma cut at
        numbers = orjson.loads(b"[" + piece.translate(None, b"[]") + b"]")
        del piece, shape_text
        values = np.array(numbers)
        del numbers
        if done + values.size > count:
            return None
        out[done:done + values.size] = convert(values)
        done += values.size
        position = stop + 1
    if matched != len(skeleton) or done != count:
        return None
    return out.reshape(shape)


__all__ = ["MIN_VALUES", "enabled", "csv_rows", "csv_lines", "json_numbers", "MemoryText",
           "FileText", "Text"]
