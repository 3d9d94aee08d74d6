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
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from typing import IO, NamedTuple

import numpy as np
import orjson

from ..codec import DEFAULT_LIMITS, Budget, Codec, Limits
from ..errors import FormatError, LimitError, WeightsError
from ..model import Weights, canonical_dtype, dtype_name, weights_from_file
from ..sniffing import CSV_HEADER, is_csv
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


def _quote(text: str) -> str:
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


#: Values turned into rows per slice when writing.
_WRITE_STEP = 1 << 18


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
        return is_csv(head)

    streams_writes = True

    def write(self, weights: Weights, fileobj: IO[bytes], *, path: str) -> None:
        fileobj.write(HEADER_LINE + b"\r\n")
        for name, array in weights.items():
            prefix = (f"{_quote(guard(name))},{dtype_name(array.dtype)},"
                      f"{format_shape(array.shape)},").encode()
            if array.size == 0:
                fileobj.write(prefix + b",\r\n")
                continue
            flat = np.ascontiguousarray(array).reshape(-1)
            # In slices, so that memory stays bounded by one slice of text.
            for start in range(0, flat.size, _WRITE_STEP):
                fileobj.write(_rows(prefix, start, value_text(flat[start:start + _WRITE_STEP])))
            del array, flat  # from a lazy source: one tensor in memory at a time
        for key, value in weights.metadata.items():
            fileobj.write(f"{_quote(guard(key))},{METADATA_DTYPE},,,{_quote(guard(value))}"
                          "\r\n".encode())

    def read(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS,
             verify: bool = True, budget: Budget | None = None) -> Weights:
        end = fileobj.seek(0, io.SEEK_END)
        fileobj.seek(max(0, end - 1))
        if fileobj.read(1) != b"\n":
            raise FormatError(path=path, field="last line", expected="a line ending",
                              found="none (the file is truncated)")
        fileobj.seek(0)
        data = _read_text_bounded(fileobj)
        fast = _read_fast(data, path, limits) if data is not None else None
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
    """Rows of one tensor: index and value texts, or already parsed numbers."""

    indexes: list[str] | np.ndarray
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
        name = unguard(name)
        if dtype_text == METADATA_DTYPE:
            self.metadata[name] = unguard(value)
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


def _read_text_bounded(fileobj: IO[bytes]) -> bytes | None:
    """The whole file, or None as soon as a stretch of :func:`max_line_chars` bytes holds no
    line break (a line too long: the general reader refuses it in bounded memory)."""
    size = max_line_chars()
    parts = []
    while True:
        chunk = fileobj.read(size)
        if not chunk:
            return b"".join(parts)
        if len(chunk) == size and b"\n" not in chunk:
            return None
        parts.append(chunk)


def _read_fast(data: bytes, path: str, limits: Limits) -> Weights | None:
    """The weights in *data*, or None when the general reader must read the whole file
    (a bare CR, text that is not UTF-8, a header that differs)."""
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    raw = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(raw == 10)  # the file ends with a line break (checked)
    if np.count_nonzero(raw == 13) != np.count_nonzero(raw[ends[ends > 0] - 1] == 13):
        return None  # a CR that does not end a line
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
    rows = _Rows(path, limits)
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
                    rows.add_row(row, k + reader.line_num)
            except csv.Error as e:
                raise FormatError(f"malformed CSV ({e})", path=path) from e
            k = j
            continue
        line = data[starts[k]:ends[k]].rstrip(b"\r")
        fields = line.split(b",")
        if len(fields) != 5 or fields[1] == METADATA_DTYPE.encode() or fields[3:] == [b"", b""]:
            rows.add_row([f.decode("utf-8") for f in fields] if line else [], k + 1)
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
        if tail is None or not _add_run(rows, tail, k, run, fields):
            for i in range(k, k + max(run, 1)):
                text_line = data[starts[i]:ends[i]].rstrip(b"\r")
                rows.add_row([f.decode("utf-8") for f in text_line.split(b",")], i + 1)
            run = max(run, 1)
        k += run
    return rows.finish()


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
    name, dtype_text, shape_text = (f.decode("utf-8") for f in fields[:3])
    name = unguard(name)
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
    where = f"tensor {name!r}"
    try:
        dtype = canonical_dtype(dtype_text)
    except WeightsError as e:
        raise FormatError(path=path, field=f"{where} dtype", expected=e.expected,
                          found=dtype_text) from e
    shape = parse_shape(shape_text, where, path)
    count = math.prod(shape)  # exact: a float product overflows on absurd claims
    limits.check_tensor(path, name, count * dtype.itemsize, total)
    rows = sum(len(c.values) for c in chunks)
    if rows != count or (marked_empty and count):
        raise FormatError(path=path, field=where,
                          expected=f"{count:,} value rows for shape {shape_text}",
                          found=f"{rows:,}" + (" and an empty-tensor row"
                                               if marked_empty and count else ""))
    if count == 0:
        return np.zeros(shape, dtype=dtype)
    try:
        idx = np.concatenate([np.asarray(c.indexes, dtype=np.int64) for c in chunks])
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
    parts = [_parse_values(c.values, dtype, where, path) if isinstance(c.values, list)
             else cast_exact(c.values, dtype, f"{where} value", path) for c in chunks]
    out = np.empty(count, dtype=dtype)
    out[idx] = parts[0] if len(parts) == 1 else np.concatenate(parts)
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
