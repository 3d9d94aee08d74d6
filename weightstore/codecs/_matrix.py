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
"""

from __future__ import annotations

import io
import math
import re
import zipfile
from typing import IO, Any

import numpy as np
import orjson

from ..codec import Limits
from ..errors import FormatError, LimitError
from ..model import Weights, canonical_dtype, info_of, weights_from_file
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


def read(fileobj: IO[bytes], *, path: str, limits: Limits,
         parse: Any) -> Weights:
    """Read the matrix layout; *parse(values, dtype, where, path)* turns a list of value
    texts into an array (the long CSV layout's parser)."""
    try:
        z = zipfile.ZipFile(fileobj)
    except zipfile.BadZipFile as e:
        raise FormatError(f"not a zip archive ({e})", path=path) from e
    with z:
        members = {i.filename: i for i in z.infolist()}
        info = members.get(MANIFEST)
        if info is None:
            raise FormatError(path=path, field="manifest", expected=MANIFEST, found="none")
        if info.file_size > limits.max_header_bytes:
            raise LimitError(path=path, field="manifest",
                             expected=f"at most {limits.max_header_bytes} bytes",
                             found=info.file_size)
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
        tensors: list[tuple[str, np.ndarray]] = []
        used: set[str] = set()
        total = 0
        for i, entry in enumerate(entries):
            name, array = _read_tensor(z, members, entry, f"tensors[{i}]", path, limits, total,
                                       used, parse)
            total += array.nbytes
            tensors.append((name, array))
    return weights_from_file(tensors, metadata, path)


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


def _read_tensor(z: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], entry: Any,
                 where: str, path: str, limits: Limits, total: int, used: set[str],
                 parse: Any) -> tuple[str, np.ndarray]:
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
    count = math.prod(shape)
    limits.check_tensor(path, name, count * dtype.itemsize, total)
    if file not in members or file in used:
        raise FormatError(path=path, field=f"{where} file",
                          expected="a member of the archive, used once", found=file)
    used.add(file)
    rows, cols = matrix_shape(shape)
    bound = count * (_MAX_VALUE_CHARS + 1) + 2 * rows
    if members[file].file_size > bound:
        raise FormatError(path=path, field=f"{where} file {file!r}",
                          expected=f"at most {bound} bytes for {count} values",
                          found=members[file].file_size)
    with z.open(file) as f:
        data = f.read(bound + 1)
    if count == 0:
        if data:
            raise FormatError(path=path, field=f"{where} file {file!r}",
                              expected="an empty member for an empty tensor",
                              found=f"{len(data)} bytes")
        return name, np.zeros(shape, dtype=dtype)
    if not data.isascii():
        bad = next(i for i, b in enumerate(data) if b > 127)
        raise FormatError(path=path, field=f"{where} file {file!r}",
                          expected="ASCII text", found=f"byte {bad}")
    if not data.endswith(b"\r\n"):
        raise FormatError(path=path, field=f"{where} file {file!r}",
                          expected="lines ending with CRLF", found="a last line without one")
    fast = _parse_fast(data, dtype, rows, cols)
    if fast is not None:
        del data
        return name, _cast(fast, dtype, where, path).reshape(shape)
    lines = data.decode("ascii").split("\r\n")
    lines.pop()
    if len(lines) != rows:
        raise FormatError(path=path, field=f"{where} file {file!r}",
                          expected=f"{rows} lines", found=len(lines))
    values: list[str] = []
    for r, line in enumerate(lines):
        cells = line.split(",")
        if len(cells) != cols:
            raise FormatError(path=path, field=f"{where} file {file!r} line {r + 1}",
                              expected=f"{cols} values", found=len(cells))
        values.extend(cells)
    return name, parse(values, dtype, where, path).reshape(shape)
