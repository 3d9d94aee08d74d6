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

Spreadsheet formulas: a name, metadata key or metadata value that starts with
``=``, ``+``, ``-``, ``@``, a tab, a carriage return or ``'`` is written with one
``'`` before it (``=SUM(A1)`` as ``'=SUM(A1)``), so that a spreadsheet shows text
instead of running a formula; a reader removes one leading ``'`` when what follows
starts with one of those characters (:func:`guard`, :func:`unguard`), so every text
round-trips exactly.

Rows may come in any order (a reader places each by its index). Two kinds of
row carry no element and appear only when needed: an empty tensor has one row
with empty ``index`` and ``value``; each metadata entry is a row with ``dtype``
``metadata``, the key in ``tensor``, the text in ``value``, ``shape`` and
``index`` empty.

``layout=matrix`` writes another layout instead: a zip of one plain CSV per tensor
(rows of the tensor as rows of the file) and a manifest, for spreadsheets, R and
``np.loadtxt``; see :mod:`weightstore.codecs._matrix`. Reading tells the two apart by
the content.
"""

from __future__ import annotations

import csv
import io
import math
import mmap
import os
import stat
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any, NamedTuple

import numpy as np
import orjson

from ..codec import (
    DEFAULT_LIMITS,
    Budget,
    Codec,
    Limits,
    LoadedSource,
    Option,
    TensorSource,
    read_all,
)
from ..errors import FormatError, LimitError, WeightsError
from ..fileio import RawFile
from ..model import TensorInfo, Weights, canonical_dtype, dtype_name, weights_from_file
from ..sniffing import CSV_HEADER, ZIP_MAGICS, is_csv
from . import _fasttext, _matrix
from ._header import check_shape
from ._text import cast_exact, parse_token, value_text

HEADER = ("tensor", "dtype", "shape", "index", "value")
HEADER_LINE = CSV_HEADER  # b",".join(HEADER), spelled out where sniffing can see it
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
    if not all(p.isdigit() and p.isascii() for p in parts):
        raise FormatError(path=path, field=f"{where} shape",
                          expected="dimensions joined by 'x' (784x50) or 'scalar'", found=text)
    return check_shape([int(p) for p in parts], path=path, field=f"{where} shape")


def max_line_chars() -> int:
    """Longest line a reader accepts: five fields at csv's field size limit, quoted.

    The csv module bounds each field (``csv.field_size_limit()``, 131,072 characters
    by default) but not how many fields a line has: a line of a million commas would
    become a list of a million strings before any check could see it.
    """
    return 5 * (2 * csv.field_size_limit() + 2) + 4


def _bounded_lines(text: IO[str], path: str) -> Iterator[str]:
    """The lines of *text* (ends kept), refusing one longer than :func:`max_line_chars`."""
    limit = max_line_chars()
    while True:
        line = text.readline(limit + 1)
        if not line:
            return
        if len(line) > limit:
            raise LimitError(path=path, field="a line",
                             expected=f"at most {limit:,} characters (five fields within "
                             "csv.field_size_limit())", found=f"more than {limit:,}")
        yield line


#: A field starting with one of these is a formula to a spreadsheet (or, for the quote
#: itself, would read back ambiguously): the writer puts a quote ``'`` before it.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def guard(text: str) -> str:
    """*text* as written in a name or metadata field: with a ``'`` before it when it
    starts with ``= + - @``, a tab, a carriage return or ``'`` (so a spreadsheet shows
    it as text instead of running it as a formula). :func:`unguard` undoes it."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def unguard(text: str) -> str:
    """The text :func:`guard` was given: one leading ``'`` removed when what follows it
    starts with one of :data:`FORMULA_STARTS`; any other text unchanged."""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_STARTS) else text


class _Unguarded(TensorSource):
    """A row-layout source with its names and metadata as :func:`guard` was given them."""

    def __init__(self, inner: TensorSource) -> None:
        self._inner = inner
        self._names = {unguard(t.name): t.name for t in inner.tensors}
        super().__init__([TensorInfo(unguard(t.name), t.dtype, t.shape) for t in inner.tensors],
                         {unguard(k): unguard(v) for k, v in inner.metadata.items()})
        self.lazy = inner.lazy

    def read(self, name: str, *, mmap: bool = False) -> np.ndarray:
        return self._inner.read(self._names[name], mmap=mmap)

    def close(self) -> None:
        self._inner.close()


def _quote(text: str) -> str:
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


#: Values turned into rows per slice when writing.
_WRITE_STEP = 1 << 16


def _tokens(text: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """*text*'s bytes, and the start and length of each of its comma-separated tokens."""
    raw = np.frombuffer(text, np.uint8)
    comma = np.flatnonzero(raw == 44)
    starts = np.empty(comma.size + 1, np.int64)
    starts[0] = 0
    starts[1:] = comma + 1
    lengths = np.empty_like(starts)
    lengths[:-1] = comma - starts[:-1]
    lengths[-1] = len(text) - starts[-1]
    return raw, starts, lengths


def _rows(prefix: bytes, start: int, values: bytes) -> bytes:
    """``prefix + index + "," + value + CRLF`` for each comma-separated value, indexes from
    *start*, without a Python loop per row.

    The rows ``index,value\n`` are laid out with numpy: each token of the index text and
    of the value text (with the comma after it) is moved to its row's offset in one
    scatter per text. One ``bytes.replace`` then turns each ``\n`` into CRLF plus the
    next row's prefix."""
    vraw, vstart, vlen = _tokens(values)
    count = vstart.size
    indexes = orjson.dumps(np.arange(start, start + count, dtype=np.int64),
                           option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]
    iraw, istart, ilen = _tokens(indexes)
    row_start = np.empty(count + 1, np.int64)
    row_start[0] = 0
    np.cumsum(ilen + vlen + 2, out=row_start[1:])  # "i" "," "v" "\n"
    out = np.empty(int(row_start[-1]), np.uint8)
    for raw, token_start, token_len, offset in ((iraw, istart, ilen, 0),
                                                (vraw, vstart, vlen, ilen + 1)):
        where = np.repeat(row_start[:-1] + offset - token_start, token_len + 1)[: raw.size]
        where += np.arange(raw.size)
        out[where] = raw  # each token, and the comma after it, to its place in its row
    out[row_start[:-1] + ilen] = ord(",")
    out[row_start[1:] - 1] = ord("\n")
    body = out.tobytes()
    return prefix + body[:-1].replace(b"\n", b"\r\n" + prefix) + b"\r\n"


#: Threads that turn slices into rows while the file is written (orjson holds the GIL for
#: the decimals, Arrow's kernels and the write itself release it).
_WRITE_THREADS = 2


def _slice_rows(pool: ThreadPoolExecutor, prefix: bytes, flat: np.ndarray,
                cache: dict[Any, Any]) -> Iterator[list[bytes | memoryview]]:
    """The rows of *flat* (a tensor's values) in order, one slice of :data:`_WRITE_STEP`
    values at a time, made by *pool* a few slices ahead of the one yielded (memory stays
    bounded by a few slices of text); *cache* is the compiled path's, for the file."""
    compiled = _fasttext.enabled(flat.size)

    def make(start: int) -> list[bytes | memoryview]:
        text = value_text(flat[start:start + _WRITE_STEP])
        return _fasttext.csv_rows(prefix, start, text, cache) if compiled else \
            [_rows(prefix, start, text)]

    pending: deque[Future[list[bytes | memoryview]]] = deque()
    for start in range(0, flat.size, _WRITE_STEP):
        pending.append(pool.submit(make, start))
        if len(pending) > _WRITE_THREADS:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


#: Bytes written between two background flushes of a CSV file to its disk.
_FLUSH_BYTES = 64 << 20


class _Writeback:
    """Sends what has been written of a regular file to its disk on a thread of its own
    (``fdatasync`` after every :data:`_FLUSH_BYTES`, one at a time), so that the disk
    works while the next rows are made and the atomic write's final ``fsync`` finds
    little left to do: a CSV file is about 17 bytes of text per byte of float32. Does
    nothing for any other stream (a pipe, a compressor, memory). A failed flush raises
    its OSError when the block ends (the atomic write names it)."""

    def __init__(self, fileobj: IO[bytes]) -> None:
        self.fileobj, self.fd, self.since = fileobj, -1, 0
        self.pending: Future[None] | None = None
        self.pool: ThreadPoolExecutor | None = None
        if isinstance(fileobj, io.BufferedRandom | io.BufferedWriter | io.FileIO):
            try:
                if stat.S_ISREG(os.fstat(fileobj.fileno()).st_mode):
                    self.fd = fileobj.fileno()
            except (OSError, ValueError):
                pass

    def __enter__(self) -> _Writeback:
        if self.fd >= 0:
            self.pool = ThreadPoolExecutor(1)
        return self

    def wrote(self, size: int) -> None:
        """*size* more bytes were written."""
        self.since += size
        if self.pool is None or self.since < _FLUSH_BYTES or (
                self.pending is not None and not self.pending.done()):
            return
        if self.pending is not None:
            self.pending.result()  # the last flush's error, if any
        self.fileobj.flush()
        self.pending = self.pool.submit(getattr(os, "fdatasync", os.fsync), self.fd)
        self.since = 0

    def __exit__(self, *exc: object) -> None:
        if self.pool is None:
            return
        self.pool.shutdown(wait=True)
        if self.pending is not None and exc[0] is None:
            self.pending.result()


class CsvCodec(Codec):
    """One value per row: tensor, dtype, shape, index, value."""

    name = "csv"
    extensions = (".csv",)
    #: A file cut exactly between two tensors' rows reads as the tensors before the cut:
    #: CSV has no header or trailer that could count them (see docs/formats.md).
    detects_cut_between_tensors = False
    description = "CSV (RFC 4180), one value per row; sqlite3, DuckDB, pandas, spreadsheets"
    options = (
        Option("layout", str, "long", "'matrix': a zip of one CSV per tensor (rows as rows) "
               "and a manifest, for spreadsheets, R, np.loadtxt", choices=("long", "matrix")),
        Option("level", int, 6, "deflate level of the matrix layout's zip (0-9)", min=0, max=9),
    )
    layout: str
    level: int

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return is_csv(head)

    streams_writes = True

    def write(self, weights: Weights, fileobj: IO[bytes], *, path: str) -> None:
        if self.layout == "matrix":
            _matrix.write(weights, fileobj, level=self.level)
            return
        fileobj.write(HEADER_LINE + b"\r\n")
        cache: dict[Any, Any] = {}
        with ThreadPoolExecutor(_WRITE_THREADS) as pool, _Writeback(fileobj) as disk:
            for name, array in weights.items():
                prefix = (f"{_quote(guard(name))},{dtype_name(array.dtype)},"
                          f"{format_shape(array.shape)},").encode()
                if array.size == 0:
                    fileobj.write(prefix + b",\r\n")
                    continue
                flat = np.ascontiguousarray(array).reshape(-1)
                for parts in _slice_rows(pool, prefix, flat, cache):
                    for part in parts:
                        fileobj.write(part)
                        disk.wrote(len(part))
                del array, flat  # from a lazy source: one tensor in memory at a time
        for key, value in weights.metadata.items():
            fileobj.write(f"{_quote(guard(key))},{METADATA_DTYPE},,,{_quote(guard(value))}"
                          "\r\n".encode())

    def open(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS,
             verify: bool = True, budget: Budget | None = None) -> TensorSource:
        """The file's tensors (:meth:`_open`); in the row layout, names and metadata with
        the spreadsheet guard removed (:func:`unguard`)."""
        source = self._open(fileobj, path=path, limits=limits, verify=verify, budget=budget)
        fileobj.seek(0)
        if fileobj.read(4) == ZIP_MAGICS[0] or not any(
                unguard(text) != text for text in (*(t.name for t in source.tensors),
                                                    *source.metadata, *source.metadata.values())):
            return source  # the matrix layout, or nothing guarded: the source itself
        return _Unguarded(source)

    def read(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS,
             verify: bool = True, budget: Budget | None = None) -> Weights:
        """The file's weights (:meth:`_read`); in the row layout, names and metadata with
        the spreadsheet guard removed (:func:`unguard`)."""
        fileobj.seek(0)
        matrix = fileobj.read(4) == ZIP_MAGICS[0]
        fileobj.seek(0)
        weights = self._read(fileobj, path=path, limits=limits, verify=verify, budget=budget)
        if matrix:
            return weights
        return weights_from_file([(unguard(k), v) for k, v in weights.items()],
                                 {unguard(k): unguard(v) for k, v in weights.metadata.items()},
                                 path)

    def _open(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS,
              verify: bool = True, budget: Budget | None = None) -> TensorSource:
        """A file as the writer lays it out (each tensor's rows together and in order) is
        scanned for where each tensor's rows are, a window at a time, and each tensor is
        parsed from its rows when read; the matrix layout opens its manifest, each tensor
        parsed from its member when read; any other file is read whole."""
        raw = RawFile(fileobj, path)
        source = None
        if raw.size and raw.pread(0, 4) == ZIP_MAGICS[0]:
            return _matrix.open_matrix(fileobj, path=path, limits=limits,
                                       budget=Budget.of(budget, limits, fileobj),
                                       parse=_parse_values)
        if raw.size and raw.pread(raw.size - 1, 1) == b"\n":
            source = _open_blocks(_fasttext.FileText(raw), path, limits)
        if source is None:
            fileobj.seek(0)
            return LoadedSource(self._read(fileobj, path=path, limits=limits, verify=verify))
        return source

    def _read(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS,
              verify: bool = True, budget: Budget | None = None) -> Weights:
        if fileobj.read(4) == ZIP_MAGICS[0]:
            fileobj.seek(0)
            budget = Budget.of(budget, limits, fileobj)
            source = _matrix.open_matrix(fileobj, path=path, limits=limits, budget=budget,
                                         parse=_parse_values)
            try:
                return read_all(source, path, limits, budget)
            finally:
                source.close()
        end = fileobj.seek(0, io.SEEK_END)
        fileobj.seek(max(0, end - 1))
        if fileobj.read(1) != b"\n":
            raise FormatError(path=path, field="last line", expected="a line ending",
                              found="none (the file is truncated)")
        fileobj.seek(0)
        data = _read_text_bounded(fileobj)
        fast = _read_blocks(data, path, limits) if data is not None else None
        del data
        if fast is not None:
            return fast
        fileobj.seek(0)
        text = io.TextIOWrapper(fileobj, encoding="utf-8-sig", newline="")
        try:
            return self._read_rows(csv.reader(_bounded_lines(text, path), strict=True), path,
                                   limits)
        except UnicodeDecodeError as e:
            raise FormatError(f"not UTF-8 text ({e.reason} at byte {e.start})", path=path) from e
        except csv.Error as e:
            raise FormatError(f"malformed CSV ({e})", path=path) from e
        finally:
            text.detach()

    @staticmethod
    def _read_rows(reader: Iterator[list[str]], path: str, limits: Limits) -> Weights:
        """The general reader: Python's csv module, row by row."""
        header = next(reader, None)
        if header is None or tuple(header) != HEADER:
            raise FormatError(path=path, field="header row", expected=",".join(HEADER),
                              found=",".join(header) if header else "nothing")
        rows = _Rows(path, limits)
        for row in reader:
            rows.add_row(row, reader.line_num)
        return rows.finish()


class _Chunk(NamedTuple):
    """Rows of one tensor: index and value texts, or already parsed numbers (the indexes
    as a range when they are consecutive)."""

    indexes: list[str] | np.ndarray | range
    values: list[str] | np.ndarray


class _Rows:
    """Rows gathered per tensor in order of first appearance, checked as they come."""

    def __init__(self, path: str, limits: Limits) -> None:
        self.path, self.limits = path, limits
        self.order: dict[str, tuple[str, str, list[_Chunk]]] = {}
        self.empty: set[str] = set()
        self.metadata: dict[str, str] = {}

    def _chunks(self, name: str, dtype_text: str, shape_text: str, line: int) -> list[_Chunk]:
        entry = self.order.get(name)
        if entry is None:
            if len(self.order) >= self.limits.max_tensors:
                raise FormatError(path=self.path, field=f"line {line}",
                                  expected=f"at most {self.limits.max_tensors} tensors")
            entry = self.order[name] = (dtype_text, shape_text, [])
        elif entry[0] != dtype_text or entry[1] != shape_text:
            raise FormatError(
                path=self.path, field=f"line {line}, tensor {name!r}",
                expected=f"dtype {entry[0]} and shape {entry[1]} as on its first row",
                found=f"dtype {dtype_text} and shape {shape_text}",
            )
        return entry[2]

    def add_row(self, row: list[str], line: int) -> None:
        """One row as the csv module gives it."""
        if len(row) != 5:
            if not row:
                return
            raise FormatError(path=self.path, field=f"line {line}", expected="5 fields",
                              found=len(row))
        name, dtype_text, shape_text, index, value = row
        if dtype_text == METADATA_DTYPE:
            self.metadata[name] = value
            return
        chunks = self._chunks(name, dtype_text, shape_text, line)
        if index == "" and value == "":
            self.empty.add(name)
            return
        if not chunks or not isinstance(chunks[-1].indexes, list):
            chunks.append(_Chunk([], []))
        chunks[-1].indexes.append(index)  # type: ignore[union-attr]
        chunks[-1].values.append(value)  # type: ignore[union-attr]

    def add_chunk(self, name: str, dtype_text: str, shape_text: str, chunk: _Chunk,
                  line: int) -> None:
        """Many rows of one tensor at once."""
        self._chunks(name, dtype_text, shape_text, line).append(chunk)

    def finish(self) -> Weights:
        tensors: list[tuple[str, np.ndarray]] = []
        total = 0
        for name, (dtype_text, shape_text, chunks) in self.order.items():
            array = _build(name, dtype_text, shape_text, chunks, name in self.empty, self.path,
                           self.limits, total)
            total += array.nbytes
            tensors.append((name, array))
        return weights_from_file(tensors, self.metadata, self.path)


# --- the fast reader ------------------------------------------------------------------
#
# Files as the writer makes them (each tensor's rows together and in order) are read in
# runs: the rows of a run share the prefix "name,dtype,shape,", found with bytes.count,
# and their "index,value" tails are parsed in one orjson call. Anything else (quoted
# fields, odd line ends, tokens like NaN, rows out of order) takes the general route
# for just the rows concerned, with the same results and errors as the csv module.

#: Bytes a run's "index,value" tails may hold to be parsed as JSON numbers.
_NUMERIC = b"0123456789-.eE,"
#: Runs shorter than this are read row by row.
_MIN_RUN = 8


#: Bytes of a memory-mapped file copied and counted at a time by :meth:`_Mapped.count`.
_COUNT_WINDOW = 1 << 20


class _Mapped(mmap.mmap):
    """A file read through a memory map, with the two ``bytes`` methods the fast readers
    use beside ``find``, slicing and the buffer protocol: no copy of the file is made,
    and Arrow parses its pages where they are."""

    def startswith(self, prefix: bytes, start: int = 0) -> bool:
        return self[start:start + len(prefix)] == prefix

    def count(self, needle: bytes, start: int = 0, end: int | None = None) -> int:
        """How often *needle* (which cannot overlap itself) occurs between *start* and *end*,
        counted a window at a time (each window counts the occurrences that start in it;
        a window small enough to stay in the CPU's cache while it is counted)."""
        end = len(self) if end is None else min(end, len(self))
        step = _COUNT_WINDOW
        return sum(self[at:min(end, at + step + len(needle) - 1)].count(needle)
                   for at in range(start, end, step))


def _read_text_bounded(fileobj: IO[bytes]) -> bytes | _Mapped | None:
    """The whole file, or None when one of its stretches of :func:`max_line_chars` bytes
    (from the start, one after the other) holds no line break: a line too long, which the
    general reader refuses in bounded memory. A file on disk is checked and given as a
    memory map (a page or so per stretch to check it, no copy); any other stream is read
    a stretch at a time."""
    size = max_line_chars()
    try:
        view = _Mapped(fileobj.fileno(), 0, access=mmap.ACCESS_READ)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        fileobj.seek(0)  # not a file on disk (or an empty one): read a stretch at a time
    else:
        for start in range(0, len(view) - size + 1, size):
            if view.find(b"\n", start, start + size) < 0:
                view.close()
                return None
        return view
    parts = []
    while True:
        chunk = fileobj.read(size)
        if not chunk:
            return b"".join(parts)
        if len(chunk) == size and b"\n" not in chunk:
            return None
        parts.append(chunk)


def _read_fast(data: bytes, path: str, limits: Limits, rows: _Rows | None = None,
               base: int = 0) -> Weights | None:
    """The weights in *data*, or None when the general reader must read the whole file
    (a bare CR, text that is not UTF-8, a header that differs). With *rows*, they are
    added to those already read, and *data* (header line first) is the rest of a file
    whose first *base* lines were read: line numbers in messages count them."""
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    raw = np.frombuffer(data, np.uint8)
    if data.count(b"\r") != data.count(b"\r\n"):
        return None  # a CR that does not end a line
    ends = np.flatnonzero(raw == 10)  # the file ends with a line break (checked)
    if ends.size and int(np.max(np.diff(ends, prepend=-1))) > max_line_chars():
        return None  # the general reader refuses it (LimitError), or counts characters
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    if data[: ends[0]].rstrip(b"\r") != HEADER_LINE:
        return None
    lines = ends.size
    special = np.zeros(lines, dtype=bool)
    if b'"' in data:  # lines with quotes, or inside a quoted field that spans lines
        quote_line = np.searchsorted(ends, np.flatnonzero(raw == 34))
        counts = np.bincount(quote_line, minlength=lines)
        special = (counts > 0) | ((np.cumsum(counts) - counts) % 2 == 1)
    special_lines = np.flatnonzero(special)
    rows = _Rows(path, limits) if rows is None else rows
    k = 1
    while k < lines:
        if special[k]:
            j = k
            while j < lines and special[j]:
                j += 1
            text = data[starts[k]:ends[j - 1] + 1].decode("utf-8")
            reader = csv.reader(io.StringIO(text, newline=""), strict=True)
            try:
                for row in reader:
                    rows.add_row(row, base + k + reader.line_num)
            except csv.Error as e:
                raise FormatError(f"malformed CSV ({e})", path=path) from e
            k = j
            continue
        line = data[starts[k]:ends[k]].rstrip(b"\r")
        fields = line.split(b",")
        if len(fields) != 5 or fields[1] == METADATA_DTYPE.encode() or fields[3:] == [b"", b""]:
            rows.add_row([f.decode("utf-8") for f in fields] if line else [], base + k + 1)
            k += 1
            continue
        prefix = line[: len(line) - len(fields[3]) - len(fields[4]) - 1]
        nxt = special_lines[np.searchsorted(special_lines, k)] if special_lines.size and \
            special_lines[-1] > k else lines
        cap = min(_row_count(fields[2]), int(nxt) - k)
        tail = _strip_prefix(data, starts, ends, k, cap, prefix) if cap >= _MIN_RUN else None
        if tail is not None:  # the usual case: the tensor's rows all together
            run = cap
        else:
            run = _run_length(data, starts, ends, k, prefix, cap)
            if run >= _MIN_RUN:
                tail = _strip_prefix(data, starts, ends, k, run, prefix)
        if tail is None or not _add_run(rows, tail, base + k, run, fields):
            for i in range(k, k + max(run, 1)):
                text_line = data[starts[i]:ends[i]].rstrip(b"\r")
                rows.add_row([f.decode("utf-8") for f in text_line.split(b",")], base + i + 1)
            run = max(run, 1)
        k += run
    return rows.finish()


# --- the block reader ------------------------------------------------------------------
#
# The usual file, as the writer makes it: each tensor's rows together and in order. The
# file is walked one tensor (block) at a time: its first line gives the prefix
# "name,dtype,shape," and the row count; its last line is found by its index (searched
# for near where the first lines' lengths put it); one count checks that every line
# between starts with the prefix; the block is then parsed in one call (the compiled path
# for large tensors, orjson for small ones). Large float blocks are parsed ahead, in
# pieces on worker threads, while the walk goes on and the blocks before them are added.
# The first line it does not recognise (quotes, rows out of order...) hands the rest of
# the file to _read_fast, which reads it exactly as the csv module would.


def _read_blocks(data: bytes, path: str, limits: Limits) -> Weights | None:
    """The weights in *data*, or None when the general reader must read the whole file."""
    p = len(_BOM) if data.startswith(_BOM) else 0
    for end in (b"\r\n", b"\n"):
        if data.startswith(HEADER_LINE + end, p):
            p += len(HEADER_LINE + end)
            break
    else:
        return _read_fast(data[:], path, limits)  # bytes (a copy of a memory map)
    rows = _Rows(path, limits)
    line = 2  # the number of the line at p
    size = len(data)
    with ThreadPoolExecutor(_PARSE_THREADS) as pool:
        p, line = _walk_blocks(data, p, line, rows, pool, _fasttext.IndexDigits())
    if p >= size:
        return rows.finish()
    return _read_fast(HEADER_LINE + b"\r\n" + data[p:], path, limits, rows, line - 2)


def _add_row(rows: _Rows, row: list[str], line: int) -> bool:
    rows.add_row(row, line)
    return True


def _plain_fields(first: bytes) -> list[str] | None:
    """The fields of a block's first line (without its line end) when the line is as the
    writer writes it: no quote, no bare CR, UTF-8; else None (the general reader reads it)."""
    if b'"' in first or b"\r" in first:
        return None
    try:
        return [f.decode("utf-8") for f in first.split(b",")]
    except UnicodeDecodeError:
        return None


class _Step(NamedTuple):
    """A block of rows (or one row) the walk found, added to the rows when its turn comes."""

    p: int  # where it starts
    line: int  # the number of its first line
    add: Callable[[], bool]  # adds its rows; False when they must be read as text
    futures: list[Future[Any]]  # its pieces being parsed


def _walk_blocks(data: bytes, p: int, line: int, rows: _Rows, pool: ThreadPoolExecutor,
                 digits: _fasttext.IndexDigits) -> tuple[int, int]:
    """Add the blocks of rows from *p* (line *line*) to *rows*, up to the first one it does
    not recognise: where it stopped (the end of *data* when done) and its line number.

    The walk runs ahead of the rows being added: the next blocks' pieces are parsed by
    Arrow on the pool's threads (up to :data:`_AHEAD` pieces, :data:`_STEPS` blocks) while
    this thread counts their lines and adds the blocks before them, in the file's order."""
    size = len(data)
    steps: deque[_Step] = deque()
    ahead, walking = 0, True
    try:
        while True:
            while walking and p < size and ahead < _AHEAD and len(steps) < _STEPS:
                found = _next_step(data, p, line, rows, pool, digits)
                if found is None:  # not recognised: the rows before it, then text from it
                    walking = False
                    break
                step, p, line = found
                steps.append(step)
                ahead += len(step.futures)
            if not steps:
                return p, line
            step = steps.popleft()
            ahead -= len(step.futures)
            if not step.add():
                return step.p, step.line
    finally:
        for rest in steps:  # after a failure: the parses not started are not needed
            for future in rest.futures:
                future.cancel()


def _next_step(data: bytes, p: int, line: int, rows: _Rows, pool: ThreadPoolExecutor,
               digits: _fasttext.IndexDigits) -> tuple[_Step, int, int] | None:
    """The block (or row) at *p*, line *line*, with where the next one starts and its line
    number; None when it is not laid out as the writer lays it out. A large float block's
    pieces are handed to *pool* at once."""
    e = data.find(b"\n", p)
    first = data[p:e - 1] if data[e - 1:e] == b"\r" else data[p:e]
    fields = _plain_fields(first)
    if fields is None:
        return None
    if len(fields) != 5 or fields[1] == METADATA_DTYPE or fields[3:] == ["", ""]:
        row = fields if first else []
        return _Step(p, line, lambda: _add_row(rows, row, line), []), e + 1, line + 1
    count = _row_count(fields[2].encode())
    prefix = first[: len(first) - len(fields[3]) - len(fields[4]) - 1]
    if _fasttext.enabled(count) and fields[1].startswith(("float", "bfloat")):
        end = _block_end(data, p, prefix, count, counted=False)
        if end < 0:
            return None
        futures, add = _parse_block(pool, data, p, end, count, prefix, fields, line, rows,
                                    digits)
        return _Step(p, line, add, futures), end, line + count
    end = _block_end(data, p, prefix, count)
    if end < 0:
        return None
    return (_Step(p, line, lambda: _add_block(rows, data, p, end, count, fields, line), []),
            end, line + count)


#: Bytes of a block handed to Arrow at a time by the whole-file reader.
_PIECE_BYTES = 32 << 20
#: Pieces parsed ahead of the block whose rows are being added (their text stays in the
#: file's pages; the numbers of one take 8 bytes a row).
_AHEAD = 6
#: Blocks and rows the walk finds ahead of the one being added (small ones are parsed
#: when added: this bounds what a file of many small tensors keeps waiting).
_STEPS = 64
#: Threads calling Arrow for the whole-file reader: each parse runs on Arrow's own threads
#: too; a second caller casts one piece's numbers while Arrow parses the next.
_PARSE_THREADS = 2


def _parse_block(pool: ThreadPoolExecutor, data: bytes, p: int, end: int, count: int,
                 prefix: bytes, fields: list[str], line: int, rows: _Rows,
                 digits: _fasttext.IndexDigits) -> tuple[list[Future[Any]], Callable[[], bool]]:
    """The *count* rows of a float tensor in data[p:end] (the last one with index
    count - 1) being parsed, and the call that adds them to the rows as chunks of
    numbers, or returns False if they must be read as text: every line must start with
    *prefix*, hold the writer's indexes 0 .. count - 1 in order and finite values.

    The block is cut into pieces of whole lines; Arrow parses each on a worker thread
    (releasing the GIL) while this thread counts the piece's lines that start with
    *prefix* (holding it): a piece is taken when the two counts agree."""
    pieces = []
    a = p
    while a < end:
        b = end if end - a <= _PIECE_BYTES else data.find(b"\n", a + _PIECE_BYTES) + 1
        pieces.append((a, b))
        a = b
    view = memoryview(data)
    name, dtype_text, shape_text = fields[:3]
    digits.want(count)
    parsed = [pool.submit(_parse_piece, view[a:b], dtype_text, digits) for a, b in pieces]
    needle = b"\n" + prefix
    counts = [data.count(needle, a - 1, b - 1) for a, b in pieces]

    def add() -> bool:
        chunks, done = [], 0
        for future, counted in zip(parsed, counts, strict=True):
            got = future.result()
            if got is None:
                return False
            indexes, values = got
            if len(values) != counted or indexes != range(done, done + counted):
                return False
            chunks.append(_Chunk(indexes, values))
            done += counted
        if done != count:
            return False
        for chunk in chunks:
            rows.add_chunk(name, dtype_text, shape_text, chunk, line)
        return True

    return parsed, add


def _parse_piece(text: memoryview, dtype_text: str,
                 digits: _fasttext.IndexDigits) -> tuple[range, np.ndarray] | None:
    """A float block's piece parsed by Arrow (on a worker thread), or None if it must be
    read as text (:func:`_fasttext.csv_lines`; NaN(0x..) and friends: read as text, which
    keeps a NaN's bits). The values come in the tensor's dtype when that is numpy's own
    and every one is within its range, else as float64 (:func:`cast_exact` then casts them
    and names one that is not)."""
    got = _fasttext.csv_lines(text, dtype_text, None, digits)
    if got is None:
        return None
    indexes, values = got
    if not np.isfinite(values).all():
        return None
    if dtype_text in ("float32", "float16"):
        narrow = values.astype(dtype_text)
        if not np.isinf(narrow).any():
            return indexes, narrow
    return indexes, values


def _block_end(data: bytes | _fasttext.Text, p: int, prefix: bytes, count: int,
               counted: bool = True) -> int:
    """Where the *count* rows from *p* end, if every one starts with *prefix* and the last
    has index count - 1; else -1. Unless *counted*, the caller counts the lines that start
    with *prefix* itself.

    Each line that starts with *prefix* is longer than it (a field after it, a line break),
    so the last of *count* such lines cannot start before ``(count - 1) * (len(prefix) + 1)``
    bytes from *p*: the search for it starts there (a first occurrence before that point
    could not end *count* such lines, and the count below refuses any other)."""
    start = p - 1 + (count - 1) * (len(prefix) + 1)
    size = data.size if isinstance(data, (_fasttext.MemoryText, _fasttext.FileText)) \
        else len(data)
    if start >= size:  # fewer bytes left than *count* lines need (an absurd shape, too:
        return -1      # a memory map's find refuses a start beyond 2**63)
    needle = b"\n" + prefix + b"%d," % (count - 1)
    last = -1
    if start - p > _GUESS_FROM:  # a large block: search a few % of it, near the guess
        guess = _last_line_guess(data, p, prefix, count)
        if guess - (slack := (guess - p) // 32 + _GUESS_FROM) > start:
            last = data.find(needle, guess - slack)
    if last < 0:  # the guess was off (or the block small): from the bound
        last = data.find(needle, start)
    if last < 0:
        return -1
    end = data.find(b"\n", last + 1) + 1
    if counted and data.count(b"\n" + prefix, p - 1, end - 1) != count:
        return -1
    return end


#: Bytes of a block's first lines that :func:`_last_line_guess` measures.
_SAMPLE_BYTES = 16 << 10
#: Blocks whose last line is searched for near a guess: at least this many bytes by the
#: bound (a smaller one is searched from the bound, which costs less than the sample).
_GUESS_FROM = 1 << 20


def _last_line_guess(data: bytes | _fasttext.Text, p: int, prefix: bytes, count: int) -> int:
    """Where the last of the *count* lines from *p* probably starts, if they are the
    writer's: their prefixes and index digits counted exactly, their values as long on
    average as in the first lines. -1 when the first lines are not such lines.

    Only a hint for :func:`_block_end`'s search: a wrong guess costs a longer search,
    never a wrong end (what is found there is checked as before)."""
    if isinstance(data, (_fasttext.MemoryText, _fasttext.FileText)):
        sample = data.get(p, p + _SAMPLE_BYTES)
    else:
        sample = data[p:p + _SAMPLE_BYTES]
    lines = sample.count(b"\n")
    if not 0 < lines < count:
        return -1
    sampled = sample.rfind(b"\n") + 1
    # per line: prefix, index digits, comma, value (and CR), LF
    value_bytes = sampled - lines * (len(prefix) + 2) - _fasttext.digits_before(lines)
    return (p + (count - 1) * (len(prefix) + 2) + _fasttext.digits_before(count - 1)
            + (count - 1) * value_bytes // lines)


def _add_block(rows: _Rows, data: bytes | bytearray, p: int, end: int, count: int,
               fields: list[str], line: int) -> bool:
    """Add the *count* rows in data[p:end] (each starting with the same three *fields*);
    False if they must be read row by row."""
    name, dtype_text, shape_text = fields[:3]
    prefix = ",".join(fields[:3]).encode("utf-8") + b","
    if _fasttext.enabled(count) and (dtype_text.startswith(("float", "bfloat")) or
                                     _no_hex(data, p, end, count, prefix)):
        parsed = _fasttext.csv_lines(memoryview(data)[p:end], dtype_text, count)
        if parsed is None:
            return False
        indexes, values = parsed
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            return False  # NaN(0x..) and friends: read as text, which keeps a NaN's bits
        rows.add_chunk(name, dtype_text, shape_text, _Chunk(indexes, values), line)
        return True
    tail = data[p + len(prefix):end].replace(b"\n" + prefix, b"\n")
    return _add_run(rows, tail, line - 1, count, [f.encode("utf-8") for f in fields])


# --- the lazy reader ---------------------------------------------------------------------
#
# open() scans a file laid out as the writer lays it out (each tensor's rows together, in
# order, then metadata rows) for its blocks, a window at a time, and reads each tensor from
# its block when asked, in slices, so that a conversion holds one tensor (and one slice of
# its text). Any other file is read whole by read().

#: Bytes of a block parsed at a time by the lazy reader.
_SLICE_BYTES = 16 << 20


class _Block(NamedTuple):
    fields: list[str]  # tensor, dtype, shape
    begin: int
    end: int
    rows: int
    line: int
    empty: bool


def _open_blocks(text: _fasttext.FileText, path: str, limits: Limits) -> _CsvSource | None:
    """The file's tensors as blocks of rows, or None when the file is not laid out so."""
    p = len(_BOM) if text.get(0, len(_BOM)) == _BOM else 0
    head = text.get(p, p + len(HEADER_LINE) + 2)
    if head.startswith(HEADER_LINE + b"\r\n"):
        p += len(HEADER_LINE) + 2
    elif head.startswith(HEADER_LINE + b"\n"):
        p += len(HEADER_LINE) + 1
    else:
        return None
    blocks: dict[str, _Block] = {}
    metadata: dict[str, str] = {}
    line = 2
    while p < text.size:
        e = text.find(b"\n", p, p + max_line_chars() + 1)  # a line is at most this long
        if e < 0:
            return None  # read() refuses the line
        first = text.get(p, e)
        first = first[:-1] if first.endswith(b"\r") else first
        fields = _plain_fields(first)
        if fields is None:
            return None
        if len(fields) != 5 or fields[0] in blocks or len(blocks) >= limits.max_tensors:
            return None
        if fields[1] == METADATA_DTYPE:
            metadata[fields[0]] = fields[4]
            p, line = e + 1, line + 1
            continue
        if fields[3:] == ["", ""]:
            blocks[fields[0]] = _Block(fields[:3], p, p, 0, line, True)
            p, line = e + 1, line + 1
            continue
        count = _row_count(fields[2].encode())
        end = _block_end(text, p, first[: len(first) - len(fields[3]) - len(fields[4]) - 1],
                         count)
        if end < 0:
            return None
        blocks[fields[0]] = _Block(fields[:3], p, end, count, line, False)
        p, line = end, line + count
    return _CsvSource(text, blocks, metadata, path, limits)


class _CsvSource(TensorSource):
    """A CSV file's tensors, each read from its block of rows when asked."""

    lazy = True

    def __init__(self, text: _fasttext.FileText, blocks: dict[str, _Block],
                 metadata: dict[str, str], path: str, limits: Limits) -> None:
        infos = []
        for name, block in blocks.items():
            dtype, shape = _tensor_type(name, block.fields[1], block.fields[2], path)
            count = math.prod(shape)
            limits.check_tensor(path, name, count * dtype.itemsize)
            _check_rows(name, count, block.rows, block.empty, block.fields[2], path)
            infos.append(TensorInfo(name, dtype, shape))
        super().__init__(infos, metadata)
        self._infos = {info.name: info for info in infos}
        self._text, self._blocks, self._path = text, blocks, path

    def read(self, name: str, *, mmap: bool = False) -> np.ndarray:
        info, block = self._infos[name], self._blocks[name]
        if info.count == 0:
            return np.zeros(info.shape, dtype=info.dtype)
        placer = _Placer(name, info.dtype, info.shape, self._path)
        position, line = block.begin, block.line
        while position < block.end:
            # a slice of whole lines (one is < 1.3 MB) in this thread's reused buffer
            stop = min(block.end, position + _SLICE_BYTES)
            buf = self._text.read_into(position, stop)
            size = stop - position if stop == block.end else buf.rfind(b"\n", 0,
                                                                       stop - position) + 1
            rows = buf.count(b"\n", 0, size)
            for chunk in self._chunks(buf, size, rows, block.fields, line):
                placer.values(chunk, placer.indexes(chunk))
            position, line = position + size, line + rows
        placer.check_complete()
        return placer.out.reshape(info.shape)

    def _chunks(self, buf: bytearray, size: int, rows: int, fields: list[str],
                line: int) -> list[_Chunk]:
        """The rows in buf[:size] (all of one tensor), parsed as the block reader parses
        them (nothing parsed keeps a reference to *buf*, which the next slice reuses)."""
        got = _Rows(self._path, DEFAULT_LIMITS)
        if not _add_block(got, buf, 0, size, rows, [*fields, "", ""], line):
            piece = bytes(memoryview(buf)[:size])
            try:
                for i, text_line in enumerate(piece.split(b"\n")[:-1]):
                    got.add_row([f.decode("utf-8") for f in text_line.rstrip(b"\r").split(b",")],
                                line + i)
            except UnicodeDecodeError as e:
                raise FormatError(f"not UTF-8 text ({e.reason})", path=self._path,
                                  field=f"line {line}") from e
        return got.order[fields[0]][2] if fields[0] in got.order else []


def _no_hex(data: bytes, p: int, end: int, rows: int, prefix: bytes) -> bool:
    """Whether data[p:end] (*rows* rows starting with *prefix*) has no x or X beyond the
    prefixes: Arrow reads an integer 0x10 as 16, where the general reader refuses it.
    Counted in slices into reused buffers (no fresh pages for a whole block)."""
    step = 1 << 22
    lowered = np.empty(step, np.uint8)
    hits = np.empty(step, bool)
    found = 0
    for start in range(p, end, step):
        n = min(step, end - start)
        np.bitwise_or(np.frombuffer(data, np.uint8, n, start), 0x20, out=lowered[:n])
        found += np.count_nonzero(np.equal(lowered[:n], ord("x"), out=hits[:n]))  # x or X
    return found == rows * (prefix.count(b"x") + prefix.count(b"X"))


def _row_count(shape_text: bytes) -> int:
    """Rows a tensor of this shape has (1 when the shape does not parse: read row by row)."""
    count = 1
    if shape_text == SCALAR.encode():
        return 1
    for part in shape_text.split(b"x"):
        if not part.isdigit():
            return 1
        count *= int(part)
    return max(count, 1)


def _run_length(data: bytes, starts: np.ndarray, ends: np.ndarray, k: int, prefix: bytes,
                cap: int) -> int:
    """How many lines from line *k* on (at most *cap*) start with *prefix*."""
    needle = b"\n" + prefix

    def all_match(n: int) -> bool:
        return data.count(needle, int(starts[k]) - 1, int(ends[k + n - 1])) == n

    if cap <= 1 or all_match(cap):
        return cap
    low, high = 1, 2  # all_match(low) holds; find the largest
    while high < cap and all_match(high):
        low, high = high, high * 2
    high = min(high, cap)
    while high - low > 1:
        mid = (low + high) // 2
        if all_match(mid):
            low = mid
        else:
            high = mid
    return low


def _strip_prefix(data: bytes, starts: np.ndarray, ends: np.ndarray, k: int, run: int,
                  prefix: bytes) -> bytes | None:
    """Lines k .. k+run-1 without *prefix*, or None unless every one of them starts with it
    (line k does; the others do if the replacement happened once per line break)."""
    region = data[starts[k] + len(prefix):ends[k + run - 1] + 1]
    tail = region.replace(b"\n" + prefix, b"\n")
    return tail if len(region) - len(tail) == (run - 1) * len(prefix) else None


def _add_run(rows: _Rows, tail: bytes, k: int, run: int, fields: list[bytes]) -> bool:
    """Add lines k .. k+run-1, given without their shared prefix (the first three *fields*);
    False if they must go row by row."""
    name, dtype_text, shape_text = (f.decode("utf-8") for f in fields[:3])
    raw = np.frombuffer(tail, np.uint8)
    commas, breaks = np.flatnonzero(raw == 44), np.flatnonzero(raw == 10)
    if commas.size != run or breaks.size != run or not (commas < breaks).all() or not (
            commas[1:] > breaks[:-1]).all():
        return False  # not one comma per line: the row-by-row reader names the line
    # One list "i,v,i,v,...": each line break (CRLF or LF) becomes a comma.
    flat = tail[:-2] if tail.endswith(b"\r\n") else tail[:-1]
    flat = flat.replace(b"\r\n", b",")
    if b"\n" in flat:  # some lines end with LF alone
        flat = flat.replace(b"\n", b",")
    chunk = None
    if dtype_text != "bool" and not flat.translate(None, _NUMERIC) and not (
            flat.startswith(b"-0,") or b",-0," in flat or flat.endswith(b",-0")):
        chunk = _parse_run(flat, dtype_text)
    if chunk is None:
        parts = flat.decode("ascii" if flat.isascii() else "utf-8").split(",")
        chunk = _Chunk(parts[0::2], parts[1::2])
    rows.add_chunk(name, dtype_text, shape_text, chunk, k + 1)
    return True


def _parse_run(flat: bytes, dtype_text: str) -> _Chunk | None:
    """Indexes and values of "i,v,i,v,..." as numbers, or None to parse them as text."""
    try:
        numbers = orjson.loads(b"[" + flat + b"]")
    except orjson.JSONDecodeError:
        return None
    indexes = np.array(numbers[0::2])
    if indexes.dtype != np.int64:
        return None
    values = numbers[1::2]
    try:
        if dtype_text.startswith(("int", "uint")):
            array = np.array(values)
            if array.dtype.kind not in "iu":
                return None
        else:
            array = np.array(values, dtype=np.float64)
    except (OverflowError, ValueError, TypeError):
        return None
    return _Chunk(indexes, array)


def _build(name: str, dtype_text: str, shape_text: str, chunks: list[_Chunk],
           marked_empty: bool, path: str, limits: Limits, total: int) -> np.ndarray:
    dtype, shape = _tensor_type(name, dtype_text, shape_text, path)
    count = math.prod(shape)  # exact: a float product overflows on absurd claims
    limits.check_tensor(path, name, count * dtype.itemsize, total)
    _check_rows(name, count, sum(len(c.values) for c in chunks), marked_empty, shape_text, path)
    if count == 0:
        return np.zeros(shape, dtype=dtype)
    placer = _Placer(name, dtype, shape, path)
    indexes = [placer.indexes(c) for c in chunks]
    placer.check_complete()
    for chunk, idx in zip(chunks, indexes, strict=True):
        placer.values(chunk, idx)
    return placer.out.reshape(shape)


def _tensor_type(name: str, dtype_text: str, shape_text: str,
                 path: str) -> tuple[np.dtype, tuple[int, ...]]:
    """A tensor's dtype and shape from their fields, checked."""
    where = f"tensor {name!r}"
    try:
        dtype = canonical_dtype(dtype_text)
    except WeightsError as e:
        raise FormatError(path=path, field=f"{where} dtype", expected=e.expected,
                          found=dtype_text) from e
    return dtype, parse_shape(shape_text, where, path)


def _check_rows(name: str, count: int, rows: int, marked_empty: bool, shape_text: str,
                path: str) -> None:
    if rows != count or (marked_empty and count):
        raise FormatError(path=path, field=f"tensor {name!r}",
                          expected=f"{count:,} value rows for shape {shape_text}",
                          found=f"{rows:,}" + (" and an empty-tensor row"
                                               if marked_empty and count else ""))


class _Placer:
    """A tensor's values put in place chunk by chunk, each index checked."""

    def __init__(self, name: str, dtype: np.dtype, shape: tuple[int, ...], path: str) -> None:
        self.where, self.dtype, self.path = f"tensor {name!r}", dtype, path
        self.count = math.prod(shape)
        self.out = np.empty(self.count, dtype=dtype)
        self.seen = np.zeros(self.count, dtype=bool)

    def indexes(self, chunk: _Chunk) -> np.ndarray | slice:
        """The chunk's indexes, checked to be integers within the tensor, marked as seen."""
        if isinstance(chunk.indexes, range):
            run = chunk.indexes
            if run and run.stop > self.count:
                raise FormatError(path=self.path, field=f"{self.where} index",
                                  expected=f"0 to {self.count - 1}", found=run.stop - 1)
            self.seen[run.start:run.stop] = True
            return slice(run.start, run.stop)
        try:
            idx = np.asarray(chunk.indexes, dtype=np.int64)
        except (ValueError, OverflowError) as e:
            raise FormatError(path=self.path, field=f"{self.where} index",
                              expected="integers") from e
        if idx.size and (idx.min() < 0 or idx.max() >= self.count):
            raise FormatError(path=self.path, field=f"{self.where} index",
                              expected=f"0 to {self.count - 1}",
                              found=int(idx.min() if idx.min() < 0 else idx.max()))
        self.seen[idx] = True
        return idx

    def check_complete(self) -> None:
        if not self.seen.all():
            missing = int(np.argmin(self.seen))
            raise FormatError(path=self.path, field=f"{self.where} index",
                              expected="each index once", found=f"index {missing} missing")

    def values(self, chunk: _Chunk, idx: np.ndarray | slice) -> None:
        """The chunk's values parsed and put at *idx*."""
        if isinstance(chunk.values, np.ndarray) and chunk.values.dtype == self.dtype:
            self.out[idx] = chunk.values  # parsed into the dtype already
            return
        values = (_parse_values(chunk.values, self.dtype, self.where, self.path)
                  if isinstance(chunk.values, list)
                  else cast_exact(chunk.values, self.dtype, f"{self.where} value", self.path))
        self.out[idx] = values


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
