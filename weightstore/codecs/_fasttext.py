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
  dtype); one Arrow kernel joins, row by row, two string arrays made in bulk over
  those texts (each value with its line end, each index with its comma) with the
  ``tensor,dtype,shape,`` prefix between them.
- Reading CSV: the rows of a tensor's block (all sharing their first three fields, which
  the caller checks) are parsed by Arrow's CSV reader, the first three fields skipped,
  the index kept as text and proved to be the writer's, the value as float64 or integer.
- Reading JSON: a tensor's ``data`` text holding only numbers, commas and brackets is
  checked against the bracket skeleton its shape implies, one slice at a time. With
  ``pysimdjson`` (the ``text`` extra) each slice, cut between two of the outermost list's
  elements, is parsed by simdjson (strict RFC 8259 numbers, exactly rounded, the same
  grammar as orjson's) straight into a buffer of doubles or 64-bit integers; any number
  simdjson refuses (``1e400``, an integer beyond 64 bits) hands the tensor to orjson.
  Without it the numbers are parsed by orjson as flat lists (the general reader's parser,
  so the grammar and the values are the same by construction).
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from ..errors import FormatError
from ..fileio import RawFile

#: Values below which the general code is used (importing pyarrow costs ~0.2 s).
MIN_VALUES = 1 << 16
#: Bytes of JSON number text parsed per slice (bounds the temporaries of one tensor).
JSON_SLICE_BYTES = 8 << 20


@functools.cache
def _simdjson() -> Any:
    """The ``simdjson`` module (pysimdjson), or None when the extra is not installed."""
    try:
        import simdjson
    except ImportError:
        return None
    return simdjson


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


#: 10, 100, ... 10**18: the number of digits of n >= 0 is searchsorted(_POWERS, n, "right") + 1.
_POWERS = 10 ** np.arange(1, 19, dtype=np.int64)


def _strings(count: int, ends: np.ndarray, data: bytes) -> Any:
    """An Arrow string array of *count* strings, string k being data[ends[k]:ends[k + 1]]."""
    pa = _pyarrow()[0]
    return pa.LargeStringArray.from_buffers(count, pa.py_buffer(ends), pa.py_buffer(data))


#: Index string arrays kept by :func:`csv_rows` for the next slices (every tensor's slices
#: start at the same indexes): about 1 MiB each for slices of 65,536 rows.
_ROW_PARTS_KEPT = 32


_KEPT_LOCK = threading.Lock()


def _kept(cache: dict[Any, Any] | None, key: Any, make: Callable[[], Any]) -> Any:
    """``make()``, kept in *cache* under *key* (at most :data:`_ROW_PARTS_KEPT` entries,
    the oldest dropped first)."""
    if cache is None:
        return make()
    with _KEPT_LOCK:
        got = cache.get(key)
    if got is None:
        got = make()
        with _KEPT_LOCK:  # the writer's threads share the cache
            cache[key] = got
            while len(cache) > _ROW_PARTS_KEPT:
                del cache[next(iter(cache))]
    return got


def _index_strings(start: int, count: int) -> Any:
    """The decimals of start .. start + count - 1, each with a comma after it, as Arrow
    strings over orjson's text of them (the lengths from their digit counts)."""
    index = np.arange(start, start + count, dtype=np.int64)
    ends = np.empty(count + 1, np.int64)
    ends[0] = 0
    np.cumsum(np.searchsorted(_POWERS, index, side="right") + 2, out=ends[1:])
    digits = orjson.dumps(index, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1] + b","
    return _strings(count, ends, digits)


def csv_rows(prefix: bytes, start: int, values: bytes,
             cache: dict[Any, Any] | None = None) -> list[bytes | memoryview]:
    """``prefix + index + "," + value + CRLF`` for each comma-separated value in *values*
    (at least one, none empty), indexes counted from *start*, as parts to write one after
    the other: the same bytes as ``csv_codec._rows``. Needs pyarrow (check
    :func:`enabled` first). *cache* (a dict the caller keeps for one file) keeps the
    index strings for the next slices.

    The rows' text, cut before each prefix instead of after each line end, is
    ``prefix + "0,"``, then ``value + CRLF + prefix + index + ","`` for each next row, then
    the last value and CRLF. One Arrow kernel makes it, joining two string arrays row by
    row with the prefix between them: the values with their line ends (an empty string
    first), over ``values`` with each comma made CRLF, and the indexes with their commas
    (:func:`_index_strings`)."""
    pa, pc, _ = _pyarrow()
    comma = np.flatnonzero(np.frombuffer(values, np.uint8) == 44)
    count = comma.size + 1
    lines = values.replace(b",", b"\r\n")  # value k ends at comma[k] + k (its CRLF after)
    bounds = np.zeros(count + 1, np.int64)  # string 0 empty, string k value k - 1 + CRLF
    np.add(comma, np.arange(2, count + 1), out=bounds[2:])
    texts = _strings(count, bounds, lines)
    indexes = _kept(cache, ("index", start, count), lambda: _index_strings(start, count))
    rows = pc.binary_join_element_wise(texts, indexes,
                                       pa.scalar(prefix.decode("utf-8"), pa.large_string()))
    offsets = rows.buffers()[1]
    begin = int(np.frombuffer(offsets, np.int64, 1, rows.offset * 8)[0])
    end = int(np.frombuffer(offsets, np.int64, 1, (rows.offset + count) * 8)[0])
    return [memoryview(rows.buffers()[2])[begin:end], memoryview(lines)[int(bounds[-1]):],
            b"\r\n"]


# --- CSV reading ---------------------------------------------------------------------------


def digits_before(n: int) -> int:
    """How many decimal digits the indexes 0 .. n - 1 take together."""
    total, power = n, 10
    while power < n:
        total += n - power
        power *= 10
    return total


#: Indexes whose plain decimals :class:`IndexDigits` makes at most (about 7 bytes each):
#: a block's pieces beyond them have their index texts parsed instead.
INDEX_DIGITS_MAX = 1 << 22


class IndexDigits:
    """The plain decimals of 0, 1, 2, ... one after the other, as the CSV writer writes a
    tensor's indexes, made for one read (shared by its threads) and grown as larger
    indexes come, up to :data:`INDEX_DIGITS_MAX`: a piece's index texts are then checked
    with two comparisons of memory (their bytes, their lengths) instead of being parsed
    one by one (Arrow's cast: about 20 ns an index, a fifth of the parse)."""

    def __init__(self) -> None:
        self._text = np.empty(0, np.uint8)
        self._count = 0
        self._wanted = 0
        self._lock = threading.Lock()

    def want(self, stop: int) -> None:
        """Make the decimals of 0 .. *stop* - 1 (within the bound) when next asked: a block
        of *stop* rows is coming (made once at its size, not grown piece by piece)."""
        self._wanted = max(self._wanted, min(stop, INDEX_DIGITS_MAX))

    def text(self, stop: int) -> np.ndarray | None:
        """The decimals of 0 .. *stop* - 1 at least, or None beyond the bound."""
        if stop > INDEX_DIGITS_MAX:
            return None
        with self._lock:
            if self._count < stop:  # 4 Mi indexes: ~80 ms, once
                count = min(INDEX_DIGITS_MAX, max(stop, self._wanted, 2 * self._count))
                listed = orjson.dumps(np.arange(count, dtype=np.int64),
                                      option=orjson.OPT_SERIALIZE_NUMPY)
                self._text = np.frombuffer(memoryview(listed)[1:-1].tobytes().translate(
                    None, b","), np.uint8)
                self._count = count
            return self._text


def _plain_decimals(texts: Any, first: int, digits: np.ndarray) -> bool:
    """Whether the binary column *texts* holds exactly the plain decimals of first,
    first + 1, ...: its bytes are *digits*' for those indexes, and each text is as long
    as its index's decimal (a step at each power of ten)."""
    at = first
    for chunk in texts.chunks:
        n = len(chunk)
        if not n:
            continue
        offsets = np.frombuffer(chunk.buffers()[1], np.int32, n + 1, chunk.offset * 4)
        begin, end = int(offsets[0]), int(offsets[-1])
        start = digits_before(at)
        if end - begin != digits_before(at + n) - start or not np.array_equal(
                np.frombuffer(chunk.buffers()[2], np.uint8, end - begin, begin),
                digits[start:start + end - begin]):
            return False
        lengths = np.diff(offsets)
        k, width, power = 0, len(str(at)), 10 ** len(str(at))
        while k < n:  # indexes below *power* have *width* digits
            stop = min(n, power - at)
            if not (lengths[k:stop] == width).all():
                return False
            k, width, power = stop, width + 1, power * 10
        at += n
    return True


def csv_lines(text: memoryview, dtype_text: str, run: int | None,
              digits: IndexDigits | None = None) -> tuple[range, np.ndarray] | None:
    """Indexes and values of *run* CSV lines (any number when None; CRLF or LF ends) of
    five unquoted fields, the last two numbers: the indexes as a ``range`` (they must be
    the plain decimals of consecutive integers, as the writer writes them), the values as
    float64 for a float dtype or int64/uint64 for an integer one. None when any line is
    not that (the general reader then reads them). The caller checks that the first
    three fields are the same, and for an integer dtype that no value is hexadecimal
    (Arrow reads ``0x10`` as 16).

    The index texts are kept as text by Arrow and cast to int64; that they are consecutive
    and take exactly as many bytes as those integers' plain decimals proves that each one
    is that plain decimal (any other text Arrow reads as the same integer -- ``+5``,
    ``05``, `` 5``, ``0x5`` -- is longer)."""
    if dtype_text == "bool":
        return None
    pa, pc, csv = _pyarrow()
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
                column_types={"i": pa.binary(), "v": value_type}, include_columns=["i", "v"],
                null_values=[],
                strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
        if run is None:
            run = table.num_rows
        if table.num_rows != run or table.num_columns != 2 or not run:
            return None
        texts = table.column(0)
        head = texts[0].as_py()
        if not (head.isdigit() and head.isascii()) or (head[:1] == b"0" and head != b"0"):
            return None  # not the writer's indexes: the general reader places them
        first = int(head)
        known = digits.text(first + run) if digits is not None else None
        if known is not None:
            if not _plain_decimals(texts, first, known):
                return None
        else:
            indexes = pc.cast(texts, pa.int64()).to_numpy()
            lengths = pc.sum(pc.binary_length(texts)).as_py()
            if lengths != digits_before(first + run) - digits_before(first) or \
                    not np.array_equal(indexes, np.arange(first, first + run)):
                return None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return range(first, first + run), table.column(1).to_numpy()


# --- JSON reading --------------------------------------------------------------------------

_NUMBER_TEXT = b"0123456789.eE+-"
#: Bytes :class:`FileText` reads ahead for short reads and starts each search with.
_READ_AHEAD = 64 << 10


class MemoryText:
    """A document held in memory, behind the interface :class:`FileText` gives a file."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def get(self, begin: int, end: int) -> bytes:
        """The bytes from *begin* to *end* (fewer at the end)."""
        return self.data[begin:end]

    def find(self, needle: bytes, start: int, end: int | None = None) -> int:
        """Where *needle* first occurs from *start* on (ending before *end*), or -1."""
        return self.data.find(needle, start, self.size if end is None else end)

    def count(self, needle: bytes, start: int, end: int) -> int:
        """How often *needle* occurs between *start* and *end* (not overlapping)."""
        return self.data.count(needle, start, end)


class FileText:
    """A document on disk, searched and read a window at a time (never whole).

    Reads of up to :attr:`window` bytes are served from one buffer, read with at least
    :data:`_READ_AHEAD` bytes ahead, so walking a document of many small tensors reads it
    about once, not once per look (a find or a short get for each of thousands of tensors)."""

    def __init__(self, raw: RawFile, window: int = 8 << 20) -> None:
        self.raw, self.window, self.size = raw, window, raw.size
        self._at, self._buf = 0, b""
        self._scratch = threading.local()  # each thread's reused buffer (read_into, count)

    def read_into(self, begin: int, end: int) -> bytearray:
        """Bytes *begin* .. *end* in this thread's reused buffer (its first
        ``min(end, size) - begin`` bytes; the rest is stale): no fresh pages for each
        large read. Valid until this thread's next read_into or count."""
        n = max(0, min(end, self.size) - begin)
        buf = getattr(self._scratch, "buf", None)
        if buf is None or len(buf) < n:
            buf = self._scratch.buf = bytearray(n)
        got = self.raw.pread_into(begin, memoryview(buf)[:n])
        if got != n:
            raise FormatError(f"EOF: read {got:,} of {n:,} bytes at offset {begin:,}",
                              path=self.raw.path)
        return buf

    def get(self, begin: int, end: int) -> bytes:
        end = min(end, self.size)
        if end <= begin:
            return b""
        if self._at <= begin and end <= self._at + len(self._buf):
            return self._buf[begin - self._at:end - self._at]
        if end - begin > self.window:  # a data array's text: read alone, not kept
            return self.raw.pread(begin, end - begin)
        self._at, self._buf = begin, self.raw.pread(begin, max(end - begin, _READ_AHEAD))
        return self._buf[:end - begin]

    def find(self, needle: bytes, start: int, end: int | None = None) -> int:
        """Where *needle* first occurs from *start* on (ending before *end*), or -1. The
        windows start at :data:`_READ_AHEAD` and double up to :attr:`window`, so a find
        reads about twice the distance to what it finds, and nothing past *end*."""
        end = self.size if end is None else min(end, self.size)
        position, step = start, min(_READ_AHEAD, self.window)
        while position < end:
            chunk = self.get(position, min(end, position + step + len(needle) - 1))
            found = chunk.find(needle)
            if found >= 0:
                return position + found
            position += step
            step = min(2 * step, self.window)
        return -1

    def count(self, needle: bytes, start: int, end: int) -> int:
        """How often *needle* (which cannot overlap itself) occurs between *start* and
        *end*: each window counts the occurrences that start in it."""
        total = 0
        for position in range(start, end, self.window):
            stop = min(end, self.size, position + self.window + len(needle) - 1)
            total += self.read_into(position, stop).count(needle, 0, stop - position)
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
                 slice_bytes: int | None = None) -> np.ndarray | None:
    """The numbers of a tensor's ``data`` text (bytes *begin* to *end*) as an array of *dtype* and
    *shape*, parsed one slice of about *slice_bytes* at a time and each slice turned into
    *dtype* by *convert* (given float64, int64 or uint64 numbers, or object for integers
    beyond 64 bits: what ``np.array`` makes of orjson's numbers), or None when the text is
    anything but numbers in exactly the nesting of *shape* (strings, spaces, other nesting)
    or holds a number the fast parser refuses: the caller then parses it whole, which
    names any fault. A slice that is not valid JSON raises ``orjson.JSONDecodeError``
    (without pysimdjson) or gives None (with it).

    Bulk parsing without nested lists of Python objects: the brackets and commas are
    checked against the nesting *shape* implies (one ``bytes.translate`` per slice), and
    the numbers are parsed by simdjson into one buffer per slice (:func:`_simd_numbers`)
    or, without pysimdjson, by orjson as one flat list per slice."""
    slice_bytes = JSON_SLICE_BYTES if slice_bytes is None else slice_bytes
    count = math.prod(shape)
    if not shape or not count or text.get(begin, begin + 1) != b"[" or \
            text.get(end - 1, end) != b"]":
        return None
    if _simdjson() is not None and dtype.kind != "b":
        return _simd_numbers(text, begin, end, shape, dtype, convert, slice_bytes)
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


#: The buffer type pysimdjson fills for a dtype kind: doubles, int64 or uint64.
_SIMD_TYPES = {"i": ("i", np.int64), "u": ("u", np.uint64)}


def _simd_numbers(text: Text, begin: int, end: int, shape: tuple[int, ...], dtype: np.dtype,
                  convert: Callable[[np.ndarray], np.ndarray],
                  slice_bytes: int) -> np.ndarray | None:
    """:func:`json_numbers` by simdjson. The text inside the outermost brackets is cut into
    slices of whole elements of the outermost list (after a comma for a vector; between
    ``]``...``,``...``[`` for more dimensions); each slice's brackets and commas must be
    ``k`` copies of one element's skeleton joined by commas, and its numbers are parsed by
    simdjson as the list ``[slice]``, flattened into one buffer of ``k`` elements' values."""
    simdjson = _simdjson()
    of_type, wide = _SIMD_TYPES.get(dtype.kind, ("d", np.float64))
    inner_shape = shape[1:]
    element = _skeleton(inner_shape) if inner_shape else b""
    per_element = math.prod(inner_shape)
    depth = len(inner_shape)
    boundary = b"]" * depth + b"," + b"[" * depth
    parser = simdjson.Parser()
    count = math.prod(shape)
    out = np.empty(count, dtype)
    position, stop_all, done, elements = begin + 1, end - 1, 0, 0
    while position < stop_all:
        piece = text.get(position, min(stop_all, position + slice_bytes))
        stop = position + len(piece)
        if stop < stop_all:  # cut between two elements of the outermost list
            cut = piece.rfind(boundary)
            if cut < 0:  # one element longer than a slice: up to the end of it
                at = text.find(boundary, stop - len(boundary) + 1)
                if at < 0 or at >= stop_all:
                    at = -1
                piece = text.get(position, at + depth if at >= 0 else stop_all)
            else:
                piece = piece[:cut + depth]
            stop = position + len(piece)
        shape_text = piece.translate(None, _NUMBER_TEXT)
        k = (len(shape_text) + 1) // (len(element) + 1)
        if shape_text != b",".join([element] * k):
            return None  # other characters, or other nesting
        try:
            document = parser.parse(b"[" + piece + b"]")
            values = np.frombuffer(document.as_buffer(of_type=of_type), wide)
            del document
        except (ValueError, TypeError, RuntimeError, OverflowError):
            return None  # a number simdjson refuses (1e400, a 65-bit integer...): orjson's
        del piece, shape_text
        if values.size != k * per_element or done + values.size > count:
            return None
        out[done:done + values.size] = convert(values)
        done += values.size
        elements += k
        position = stop + 1  # past the comma
    if elements != shape[0] or done != count:
        return None
    return out.reshape(shape)


__all__ = ["MIN_VALUES", "IndexDigits", "enabled", "csv_rows", "csv_lines", "digits_before",
           "json_numbers", "MemoryText", "FileText", "Text"]
