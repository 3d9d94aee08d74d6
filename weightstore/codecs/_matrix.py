"""The CSV codec's matrix layout (``-o layout=matrix``): one plain CSV per tensor, rows of
the tensor as rows of the file, in a zip archive with a small manifest. Specified in
``docs/formats.md`` ("CSV — matrix layout"); this module docstring repeats the essentials.

The archive's **first** member is ``weightstore-matrix.json``::

    {"format": "weightstore.csv-matrix", "version": 1, "metadata": {"k": "v"},
     "tensors": [{"name": "W1", "dtype": "float32", "shape": [784, 50], "file": "W1.csv"}]}

then one member per tensor, named by ``file`` (the name with characters other than
``A-Z a-z 0-9 . _ -`` replaced by ``_``, and ``~N`` added when two would collide). A
tensor of shape ``(d0, d1, ..., dk)`` is written as ``d0`` lines of ``d1*...*dk``
comma-separated values (row-major order within a line); a 1-d tensor as one line; a
0-d tensor as one line of one value; an empty tensor as an empty member. Lines end with
CRLF. Values as in the long CSV layout (bool ``0``/``1``, exact integers, shortest
decimals, ``NaN``/``Infinity``/``-Infinity``/``NaN(0x<bits>)``). No header row, no
quoting: ``np.loadtxt(f, delimiter=",", ndmin=2)``, ``pandas.read_csv(f, header=None)``,
R's ``read.csv(f, header=FALSE)`` and spreadsheets read a member as it is. Members are
deflated.

Reading opens the manifest alone (:class:`MatrixSource`); a tensor is parsed from its
member when read, a batch of lines at a time into the tensor's array, so the memory a read
takes beyond the tensor is one batch of text and numbers, charged to the operation's
budget before it is allocated.
"""

from __future__ import annotations

import io
import math
import re
import zipfile
from typing import IO, Any

import numpy as np
import orjson

from ..codec import Budget, Limits, TensorSource
from ..errors import FormatError, LimitError
from ..model import TensorInfo, Weights, canonical_dtype, info_of
from ..sniffing import MATRIX_MANIFEST
from ._header import check_shape
from ._text import cast_exact, value_text

FORMAT_ID = "weightstore.csv-matrix"
VERSION = 1
MANIFEST = MATRIX_MANIFEST.decode()
#: Most bytes of text one value takes (a float64 NaN with its bits is the longest).
_MAX_VALUE_CHARS = 32


def member_name(name: str, taken: set[str]) -> str:
    """The file a tensor is stored in: its name made safe, unique in *taken*."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "tensor"
    candidate, n = f"{base}.csv", 1
    while candidate in taken or candidate == MANIFEST:
        n += 1
        candidate = f"{base}~{n}.csv"
    taken.add(candidate)
    return candidate


def matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """(lines, values per line) a tensor of *shape* is written as."""
    if len(shape) <= 1:
        return 1, (shape[0] if shape else 1)
    return shape[0], math.prod(shape[1:])


def write(weights: Weights, fileobj: IO[bytes], *, level: int = 6) -> None:
    """The matrix layout of *weights*, one tensor in memory at a time."""
    taken: set[str] = set()
    entries = []
    for name in weights:
        info = info_of(weights, name)
        entries.append({"name": name, "dtype": info.dtype_name, "shape": list(info.shape),
                        "file": member_name(name, taken)})
    manifest = {"format": FORMAT_ID, "version": VERSION, "metadata": dict(weights.metadata),
                "tensors": entries}
    with zipfile.ZipFile(fileobj, "w", zipfile.ZIP_DEFLATED, compresslevel=level,
                         allowZip64=True) as z:
        z.writestr(MANIFEST, orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        for entry in entries:
            array = np.asarray(weights[entry["name"]])
            with z.open(entry["file"], "w", force_zip64=True) as out:
                if array.size:
                    rows, cols = matrix_shape(array.shape)
                    matrix = np.ascontiguousarray(array).reshape(rows, cols)
                    for r in range(rows):
                        out.write(value_text(matrix[r]) + b"\r\n")
            del array


def open_matrix(fileobj: IO[bytes], *, path: str, limits: Limits, budget: Budget,
                parse: Any) -> MatrixSource:
    """The matrix layout opened: the manifest read and every entry checked against its
    member (name, dtype, shape, size claims, the operation's decompression allowance);
    each tensor is parsed from its member when read. *parse(values, dtype, where, path)*
    turns a list of value texts into an array (the long CSV layout's careful parser)."""
    try:
        z = zipfile.ZipFile(fileobj)
    except zipfile.BadZipFile as e:
        raise FormatError(f"not a zip archive ({e})", path=path) from e
    try:
        return MatrixSource(z, path, limits, budget, parse)
    except BaseException:
        z.close()
        raise


class MatrixSource(TensorSource):
    """An open matrix-layout archive: the manifest read, each tensor parsed on access, a
    batch of lines at a time, with its scratch charged to the operation's budget first."""

    lazy = True

    def __init__(self, z: zipfile.ZipFile, path: str, limits: Limits, budget: Budget,
                 parse: Any) -> None:
        self._z, self._path, self._budget, self._parse = z, path, budget, parse
        members = {i.filename: i for i in z.infolist()}
        info = members.get(MANIFEST)
        if info is None:
            raise FormatError(path=path, field="manifest", expected=MANIFEST, found="none")
        if info.file_size > limits.max_header_bytes:
            raise LimitError(path=path, field="manifest",
                             expected=f"at most {limits.max_header_bytes} bytes",
                             found=info.file_size)
        # the text, and the parsed document (a generous bound on Python objects per byte)
        budget.take(_MANIFEST_COST * info.file_size, path=path, field="manifest")
        try:
            doc = orjson.loads(z.read(MANIFEST))
        except orjson.JSONDecodeError as e:
            raise FormatError(f"manifest is not valid JSON ({e})", path=path) from e
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_ID:
            raise FormatError(path=path, field="manifest format", expected=repr(FORMAT_ID),
                              found=doc.get("format") if isinstance(doc, dict) else doc)
        if doc.get("version") != VERSION:
            raise FormatError(path=path, field="manifest version", expected=VERSION,
                              found=doc.get("version"))
        metadata = doc.get("metadata", {})
        if not isinstance(metadata, dict) or not all(isinstance(v, str)
                                                     for v in metadata.values()):
            raise FormatError(path=path, field="manifest metadata",
                              expected="an object of strings", found=metadata)
        entries = doc.get("tensors")
        if not isinstance(entries, list) or len(entries) > limits.max_tensors:
            raise FormatError(path=path, field="manifest tensors",
                              expected=f"a list of at most {limits.max_tensors}",
                              found=entries if not isinstance(entries, list) else len(entries))
        infos: list[TensorInfo] = []
        #: tensor name -> its member
        self._files: dict[str, zipfile.ZipInfo] = {}
        used: set[str] = set()
        for i, entry in enumerate(entries):
            meta, member = _check_entry(members, entry, f"tensors[{i}]", path, limits, used)
            infos.append(meta)
            self._files[meta.name] = member
        deflated = [m for m in self._files.values() if m.compress_type != zipfile.ZIP_STORED]
        if deflated:  # what the members claim, against the operation's one allowance
            budget.add_compressed(sum(m.compress_size for m in deflated))
            budget.expand(sum(m.file_size for m in deflated), path=path,
                          field="deflated members")
        super().__init__(infos, metadata)
        self._metas = {m.name: m for m in infos}

    def read(self, name: str, *, mmap: bool = False) -> np.ndarray:
        meta, member = self._metas[name], self._files[name]
        where = f"tensor {name!r}"
        if meta.count == 0:
            with self._z.open(member) as f:
                if f.read(1):
                    raise FormatError(path=self._path, field=f"{where} file {member.filename!r}",
                                      expected="an empty member for an empty tensor",
                                      found=f"{member.file_size} bytes")
            return np.zeros(meta.shape, dtype=meta.dtype)
        rows, cols = matrix_shape(meta.shape)
        out = np.empty((rows, cols), dtype=meta.dtype)
        with self._z.open(member) as f:
            _parse_member(f, out, member, where, self._path, self._budget, self._parse)
        return out.reshape(meta.shape)

    def close(self) -> None:
        self._z.close()


def _check_entry(members: dict[str, zipfile.ZipInfo], entry: Any, where: str, path: str,
                 limits: Limits, used: set[str]) -> tuple[TensorInfo, zipfile.ZipInfo]:
    """One manifest entry checked: its tensor's header and member."""
    keys = {"name", "dtype", "shape", "file"}
    if not isinstance(entry, dict) or set(entry) != keys:
        raise FormatError(path=path, field=f"manifest {where}",
                          expected=f"an object with keys {sorted(keys)}", found=entry)
    name, file = entry["name"], entry["file"]
    if not isinstance(name, str) or not isinstance(file, str):
        raise FormatError(path=path, field=f"manifest {where}",
                          expected="string name and file", found=entry)
    where = f"tensor {name!r}"
    try:
        dtype = canonical_dtype(entry["dtype"]) if isinstance(entry["dtype"], str) else None
    except Exception:  # noqa: BLE001 - a WeightsError; reported below
        dtype = None
    if dtype is None:
        raise FormatError(path=path, field=f"{where} dtype", expected="a dtype name",
                          found=entry["dtype"])
    shape = check_shape(entry["shape"], path=path, field=f"{where} shape")
    meta = TensorInfo(name, dtype, shape)
    limits.check_tensor(path, name, meta.nbytes)
    if file not in members or file in used:
        raise FormatError(path=path, field=f"{where} file",
                          expected="a member of the archive, used once", found=file)
    used.add(file)
    member = members[file]
    rows, cols = matrix_shape(shape)
    bound = meta.count * (_MAX_VALUE_CHARS + 1) + 2 * rows
    if member.file_size > bound:
        raise FormatError(path=path, field=f"{where} file {file!r}",
                          expected=f"at most {bound} bytes for {meta.count} values",
                          found=member.file_size)
    if member.compress_type != zipfile.ZIP_STORED and \
            member.file_size > limits.max_output(member.compress_size):
        raise LimitError(path=path, field=f"{where} file {file!r}",
                         expected=f"at most {limits.max_output(member.compress_size):,} bytes "
                         f"from {member.compress_size:,} compressed (Limits.max_expansion)",
                         found=f"{member.file_size:,} bytes claimed")
    return meta, member


#: Values parsed in one batch of lines (at least one line): the scratch of a read is a
#: batch's text and numbers, whatever the tensor's size.
_BATCH_VALUES = 1 << 16
#: Bytes charged per manifest byte: the text and the objects parsed from it.
_MANIFEST_COST = 8
#: Bytes charged per value for the careful parser's Python strings and objects.
_CAREFUL_COST = 120


def _parse_member(f: IO[bytes], out: np.ndarray, member: zipfile.ZipInfo, where: str,
                  path: str, budget: Budget, parse: Any) -> None:
    """Fill *out* (rows x cols) from the member's lines, a batch of lines at a time: numpy's
    C parser where it reads the batch exactly, else the careful parser line by line. Each
    batch's scratch is charged to *budget* before it is read and given back after."""
    rows, cols = out.shape
    file = member.filename
    line_bound = cols * (_MAX_VALUE_CHARS + 1) + 2
    step = max(1, _BATCH_VALUES // max(cols, 1))
    scratch = min(step * line_bound, member.file_size + 1) + step * cols * 8
    budget.take(scratch, path=path, field=f"{where} file {file!r} (a batch of lines)")
    try:
        for first in range(0, rows, step):
            n = min(step, rows - first)
            lines = []
            for i in range(n):
                line = f.readline(line_bound + 1)
                if not line:
                    raise FormatError(path=path, field=f"{where} file {file!r}",
                                      expected=f"{rows} lines", found=first + i)
                if not line.endswith(b"\r\n"):
                    found = "a last line without one" if len(line) <= line_bound \
                        else f"a line longer than {line_bound} bytes"
                    raise FormatError(path=path, field=f"{where} file {file!r}",
                                      expected="lines ending with CRLF", found=found)
                if not line.isascii():
                    raise FormatError(path=path, field=f"{where} file {file!r} line "
                                      f"{first + i + 1}", expected="ASCII text",
                                      found=f"byte {next(b for b in line if b > 127)}")
                lines.append(line)
            block = b"".join(lines)
            fast = _parse_fast(block, out.dtype, n, cols)
            if fast is not None:
                out[first:first + n] = _cast(fast, out.dtype, where, path)
                continue
            for i, line in enumerate(lines):
                _careful_line(line, out, first + i, where, f"{where} file {file!r} line "
                              f"{first + i + 1}", path, budget, parse)
        extra = len(f.read(1))
        if extra:
            raise FormatError(path=path, field=f"{where} file {file!r}",
                              expected=f"{rows} lines", found="more")
    finally:
        budget.give_back(scratch)


def _careful_line(line: bytes, out: np.ndarray, r: int, where: str, field: str, path: str,
                  budget: Budget, parse: Any) -> None:
    """Row *r* of *out* from one line by the careful parser (its strings charged first)."""
    cols = out.shape[1]
    cost = cols * _CAREFUL_COST
    budget.take(cost, path=path, field=f"{field} (parsed value by value)")
    try:
        cells = line[:-2].decode("ascii").split(",")
        if len(cells) != cols:
            raise FormatError(path=path, field=field, expected=f"{cols} values",
                              found=len(cells))
        out[r] = parse(cells, out.dtype, where, path)
    finally:
        budget.give_back(cost)


def _parse_fast(data: bytes, dtype: np.dtype, rows: int, cols: int) -> np.ndarray | None:
    """The values by numpy's C parser (correctly rounded decimals, a fraction of the memory
    of Python strings), or None when anything is unusual (a NaN with bits, a wrong count,
    a word): the careful parser then reads it and names the fault."""
    target = (np.uint8 if dtype.kind == "b" else np.int64 if dtype.kind == "i"
              else np.uint64 if dtype.kind == "u" else np.float64)
    if b"\r\n\r\n" in data or data.startswith(b"\r\n"):
        return None  # an empty line: loadtxt would skip it
    try:
        values = np.loadtxt(io.BytesIO(data), delimiter=",", dtype=target, ndmin=2,
                            comments=None, encoding="ascii")
    except (ValueError, OverflowError):
        return None
    if values.shape != (rows, cols):
        return None
    return values


def _cast(values: np.ndarray, dtype: np.dtype, where: str, path: str) -> np.ndarray:
    if dtype.kind == "b":
        if values.size and values.max() > 1:
            raise FormatError(path=path, field=f"{where} value", expected="0 or 1",
                              found=int(values.max()))
        return values.astype(bool)
    return cast_exact(values, dtype, f"{where} value", path)
