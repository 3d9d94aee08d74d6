"""safetensors: Hugging Face's format, written and read with the ``safetensors`` package.

Layout (the format's own, unchanged)::

    8 bytes   N, the header's length, unsigned 64-bit little-endian
    N bytes   the header: a UTF-8 JSON object, starting with '{' (trailing spaces allowed)
    rest      the data buffer: every tensor's bytes, little-endian, C order, no gaps

The header maps each tensor name to ``{"dtype": "F32", "shape": [784, 50],
"data_offsets": [begin, end]}`` (offsets into the data buffer), and may hold
``"__metadata__"``, an object of string values.

What weightstore adds, inside the format: our metadata is ``__metadata__``
itself, plus reserved keys: ``weightstore.order``, a JSON list of the tensor
names in the weights' order (the library lays tensors out sorted by alignment
and name, and JSON object order is not kept by every reader);
``weightstore.crc32``, a JSON object of each tensor's checksum; and
``weightstore.header_crc32``, the header checksum (both of
:mod:`weightstore.integrity`, 8 hex digits). Files from other writers, without
these keys, are read in data-offset order and unverified; ``verify=False``
skips the checksums.

Dtypes: ``BOOL U8 I8 U16 I16 U32 I32 U64 I64 F16 BF16 F32 F64`` (bfloat16 needs
``ml_dtypes``). Tensors of the format's other dtypes (F4, F6_*, F8_*, C64) are skipped,
their offsets checked all the same, and listed in one
:class:`~weightstore.errors.SkippedEntriesWarning` (``strict`` refuses the file
instead); unknown names are a :class:`~weightstore.errors.FormatError`.

Writing streams: the header is computed from the tensors' dtypes and shapes (a lazy
mapping's ``describe``, without reading them), written with placeholder checksums
of the same width, then each tensor's bytes follow one at a time in the given order,
and the header is rewritten in place with the checksums (so the output must be
seekable; the zstd layer spools it). The file is what ``safetensors.numpy.save``
would write but for the order of the tensors in the buffer (the library sorts them by
alignment and name; any order that tiles the buffer is valid). Reading checks the header
in layers (length, JSON, each entry, offsets tiling the buffer exactly, limits)
before any tensor is built, then reads each tensor from its offset into its
array (one copy; ``safetensors.deserialize`` makes two, and its numpy table has
no BF16, so the dtype table here replaces it). :meth:`SafetensorsCodec.open`
reads the header alone (``weightstore.open``). The package is imported only when
a file is read or written: registering the codec does not need it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from typing import IO, Any, NamedTuple

import numpy as np

from ..codec import (
    DEFAULT_LIMITS,
    Budget,
    Codec,
    Limits,
    Skipped,
    TensorSource,
    report_skipped,
)
from ..errors import (
    ChecksumError,
    FormatError,
    LimitError,
    MissingDependencyError,
    UnsupportedError,
)
from ..fileio import CHUNK, RawFile, crc32
from ..integrity import (
    HINT,
    format_crc,
    header_crc32,
    header_entries,
    parse_crc,
    tensor_crc32,
    verify_tensor,
)
from ..model import (
    TensorInfo,
    Weights,
    canonical_dtype,
    dtype_name,
    little_endian,
    weights_from_file,
)
from ..sniffing import is_safetensors
from ._header import check_shape

__all__ = ["SafetensorsCodec", "ORDER_KEY", "METADATA_KEY", "DTYPE_CODES"]

#: The header key safetensors reserves for string metadata.
METADATA_KEY = "__metadata__"
#: Our key inside ``__metadata__``: the tensor names in order, as a JSON list.
ORDER_KEY = "weightstore.order"
#: Our key inside ``__metadata__``: each tensor's CRC-32, as a JSON object of hex strings.
CRC_KEY = "weightstore.crc32"
#: Our key inside ``__metadata__``: the header checksum (names, dtypes, shapes, metadata).
HEADER_CRC_KEY = "weightstore.header_crc32"
_RESERVED = (ORDER_KEY, CRC_KEY, HEADER_CRC_KEY)
#: safetensors dtype code for each canonical dtype name weightstore holds.
DTYPE_CODES: dict[str, str] = {
    "bool": "BOOL",
    "uint8": "U8",
    "int8": "I8",
    "uint16": "U16",
    "int16": "I16",
    "uint32": "U32",
    "int32": "I32",
    "uint64": "U64",
    "int64": "I64",
    "float16": "F16",
    "bfloat16": "BF16",
    "float32": "F32",
    "float64": "F64",
}
_NAMES = {code: name for name, code in DTYPE_CODES.items()}
#: Dtypes the format defines that weightstore has no numpy dtype for, with their bits per
#: value: tensors of these are skipped (their place in the file checked all the same).
_UNSUPPORTED = {"F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "F8_E5M2": 8, "F8_E4M3": 8,
                "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "C64": 64}
_LENGTH = struct.Struct("<Q")


def _safetensors() -> Any:
    try:
        import safetensors
        import safetensors.numpy
    except ImportError as e:
        raise MissingDependencyError("safetensors", "safetensors", "the safetensors codec") from e
    return safetensors


def _c_order(array: np.ndarray) -> np.ndarray:
    """*array* itself when C-contiguous, else a C-ordered copy (0-d stays 0-d)."""
    return array if array.flags.c_contiguous else np.array(array, order="C")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _near(a: str, b: str, most: int = 2) -> bool:
    """Whether *a* becomes *b* with at most *most* characters inserted, deleted or changed."""
    if abs(len(a) - len(b)) > most:
        return False
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            row.append(min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if min(row) > most:
            return False
        previous = row
    return previous[-1] <= most


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class SafetensorsCodec(Codec):
    """safetensors: JSON header plus one flat buffer; read by the Hugging Face ecosystem."""

    name = "safetensors"
    extensions = (".safetensors",)
    checksums = True
    streams_writes = True
    needs_seekable_output = True
    description = "safetensors (Hugging Face): JSON header + raw little-endian buffer"
    extra = "safetensors"

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return is_safetensors(head)

    def write(self, weights: Weights, fileobj: IO[bytes], *, path: str) -> None:
        _safetensors()  # the format's package stays required, as for reading
        if METADATA_KEY in weights:
            raise UnsupportedError(path=path, field=f"tensor {METADATA_KEY!r}",
                                   expected="a tensor name other than the one safetensors "
                                   "reserves for metadata", found=METADATA_KEY)
        for key in weights.metadata:
            if key in _RESERVED or any(_near(key, r) for r in _RESERVED):
                raise UnsupportedError(path=path, field=f"metadata key {key!r}",
                                       expected="a key unlike those weightstore reserves in "
                                       f"safetensors ({', '.join(_RESERVED)}: order and "
                                       "checksums)", found=key)
        write_streaming(weights, fileobj, path)

    def read(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS,
             verify: bool = True, budget: Budget | None = None) -> Weights:
        _safetensors()  # the format's own package stays required, as for writing
        budget = Budget.of(budget, limits, fileobj)
        source = self._open(fileobj, path, limits, verify, budget)
        budget.take(sum(m.nbytes for m in source.tensors),
                                                path=path, field="tensors")
        # The header checks (offsets tiling the buffer exactly, sizes matching dtype and
        # shape) are what safetensors.deserialize checks; each tensor is then read from its
        # offset straight into its array: one copy, where the library makes two.
        return weights_from_file([(m.name, source.read(m.name)) for m in source.tensors],
                                 source.metadata, path)

    def open(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS,
             verify: bool = True, budget: Budget | None = None) -> TensorSource:
        """The header alone, checked as :meth:`read` checks it (its checksum too); each
        tensor is then read from its offset, checked, or memory-mapped."""
        # Opening holds no tensor, so only the per-tensor limit applies here.
        return self._open(fileobj, path, dataclasses.replace(limits, max_total_bytes=1 << 62),
                          verify, budget)

    def _open(self, fileobj: IO[bytes], path: str, limits: Limits,
              verify: bool, budget: Budget | None) -> _LazySource:
        size = fileobj.seek(0, 2)
        fileobj.seek(0)
        entries, metadata, skipped = self._read_header(fileobj, path, size, limits)
        report_skipped(path, skipped, budget)
        data_start = fileobj.tell()
        order = self._order(metadata, entries, path)
        for key in metadata:
            if key not in _RESERVED and any(_near(key, r) for r in _RESERVED):
                # a reserved key with a damaged name would turn into plain metadata, and
                # the checksum it holds would be lost without a word
                raise FormatError(path=path, field=f"{METADATA_KEY}[{key!r}]",
                                  expected=f"one of the reserved keys {list(_RESERVED)} "
                                  "exactly, or a key unlike them", found=key)
        if (CRC_KEY in metadata) != (HEADER_CRC_KEY in metadata):
            # written together: one alone means the other's key was damaged
            raise FormatError(path=path, field=METADATA_KEY,
                              expected=f"both {CRC_KEY!r} and {HEADER_CRC_KEY!r}, or neither",
                              found=f"only {CRC_KEY if CRC_KEY in metadata else HEADER_CRC_KEY!r}")
        crcs = self._checksums(metadata, entries, path)
        header = metadata.pop(HEADER_CRC_KEY, None)
        stored_header = None if header is None else parse_crc(
            header, path, f"{METADATA_KEY}[{HEADER_CRC_KEY!r}]")
        source = _LazySource(entries, order, metadata, RawFile(fileobj, path), data_start, path,
                             crcs if verify else {})
        if verify and stored_header is not None:
            actual = header_crc32([(m.name, dtype_name(m.dtype) or str(m.dtype), m.shape)
                                   for m in source.tensors], metadata)
            if actual != stored_header:
                raise ChecksumError(path=path, field="header (names, dtypes, shapes, metadata)",
                                    expected=f"CRC-32 {format_crc(stored_header)}",
                                    found=f"CRC-32 {format_crc(actual)}", hint=HINT)
        return source

    @staticmethod
    def _checksums(metadata: dict[str, str], entries: dict[str, _Entry],
                   path: str) -> dict[str, int]:
        """Each tensor's stored CRC-32 (removed from *metadata*); empty when the file has none."""
        field = f"{METADATA_KEY}[{CRC_KEY!r}]"
        text = metadata.pop(CRC_KEY, None)
        if text is None:
            return {}
        try:
            crcs = json.loads(text)
        except ValueError as e:
            raise FormatError(path=path, field=field, expected="a JSON object of checksums",
                              found=text) from e
        if not isinstance(crcs, dict) or set(crcs) != set(entries):
            raise FormatError(path=path, field=field,
                              expected=f"a checksum for each of the file's {len(entries)} "
                              "tensors", found=text)
        return {name: parse_crc(value, path, f"{field}[{name!r}]")
                for name, value in crcs.items()}

    @staticmethod
    def _read_header(
        fileobj: IO[bytes], path: str, size: int, limits: Limits
    ) -> tuple[dict[str, _Entry], dict[str, str], list[Skipped]]:
        """Validate everything the header claims; return its entries and metadata, and the
        tensors of a dtype weightstore does not hold (their place checked, then left out)."""
        first = fileobj.read(_LENGTH.size)
        if len(first) < _LENGTH.size:
            raise FormatError(path=path, field="header length",
                              expected="8 bytes (unsigned 64-bit little-endian)",
                              found=f"a file of {size} bytes")
        (length,) = _LENGTH.unpack(first)
        if length > size - _LENGTH.size:
            raise FormatError(path=path, field="header length",
                              expected=f"at most {size - _LENGTH.size:,} bytes (the rest "
                              "of the file)", found=f"{length:,} bytes")
        if length > limits.max_header_bytes:
            raise LimitError(path=path, field="header length",
                             expected=f"at most {limits.max_header_bytes:,} bytes "
                             "(Limits.max_header_bytes)", found=f"{length:,} bytes")
        header = fileobj.read(length)
        if not header.startswith(b"{"):
            raise FormatError(path=path, field="header", expected="a JSON object starting "
                              "with '{'", found=header[:16])
        try:
            doc = json.loads(header.decode("utf-8"), object_pairs_hook=_reject_duplicates)
        except UnicodeDecodeError as e:
            raise FormatError(path=path, field="header", expected="UTF-8 text",
                              found=f"invalid byte at {e.start + _LENGTH.size}") from e
        except _DuplicateKey as e:
            raise FormatError(path=path, field="header", expected="each key once",
                              found=f"{e.key!r} twice") from e
        except (ValueError, RecursionError) as e:
            raise FormatError(path=path, field="header", expected="valid JSON",
                              found=str(e)) from e
        if not isinstance(doc, dict):
            raise FormatError(path=path, field="header", expected="a JSON object",
                              found=type(doc).__name__)
        metadata = doc.pop(METADATA_KEY, {})
        if not isinstance(metadata, dict) or not all(isinstance(v, str)
                                                     for v in metadata.values()):
            raise FormatError(path=path, field=METADATA_KEY, expected="an object of strings",
                              found=metadata)
        if len(doc) > limits.max_tensors:
            raise LimitError(path=path, field="tensors",
                             expected=f"at most {limits.max_tensors:,} (Limits.max_tensors)",
                             found=f"{len(doc):,}")
        buffer_size = size - _LENGTH.size - length
        entries: dict[str, _Entry] = {}
        spans: dict[str, tuple[int, int]] = {}
        skipped: list[Skipped] = []
        total = 0
        for name, value in doc.items():
            entry = _check_entry(name, value, path, buffer_size)
            spans[name] = entry.span
            if entry.dtype is None:
                skipped.append(Skipped(name, f"a {entry.code} tensor of shape {entry.shape}"))
                continue
            limits.check_tensor(path, name, entry.nbytes, total)
            total += entry.nbytes
            entries[name] = entry
        _check_tiling(spans, path, buffer_size)
        return entries, metadata, skipped

    @staticmethod
    def _order(metadata: dict[str, str], entries: dict[str, _Entry], path: str) -> list[str]:
        """Our stored order when the file has one (removed from *metadata*), else data order."""
        field = f"{METADATA_KEY}[{ORDER_KEY!r}]"
        text = metadata.pop(ORDER_KEY, None)
        if text is None:
            return sorted(entries, key=lambda n: entries[n].span)
        try:
            order = json.loads(text)
        except ValueError as e:
            raise FormatError(path=path, field=field, expected="a JSON list of tensor names",
                              found=text) from e
        if (not isinstance(order, list) or not all(isinstance(n, str) for n in order)
                or len(order) != len(entries) or set(order) != set(entries)):
            raise FormatError(path=path, field=field,
                              expected=f"each of the file's {len(entries)} tensor names once",
                              found=text)
        return order


class _LazySource(TensorSource):
    """An open safetensors file: the header checked, the data left on disk."""

    lazy = True

    def __init__(self, entries: dict[str, _Entry], order: list[str], metadata: dict[str, str],
                 raw: RawFile, data_start: int, path: str, crcs: dict[str, int]) -> None:
        super().__init__([TensorInfo(n, entries[n].dtype, entries[n].shape) for n in order],
                         metadata)
        self._entries, self._raw, self._start = entries, raw, data_start
        self._path, self._crcs = path, crcs

    def read(self, name: str, *, mmap: bool = False) -> np.ndarray:
        entry = self._entries[name]
        offset = self._start + entry.span[0]
        if mmap and self._raw.can_mmap:
            return self._raw.map_array(offset, entry.dtype, entry.shape).view(np.ndarray)
        array = self._raw.read_array(offset, entry.dtype, entry.shape, field=f"tensor {name!r}")
        stored = self._crcs.get(name)
        if stored is not None:
            # The bytes read are the canonical ones (little-endian, C order), so their CRC
            # is the tensor checksum; the slower exact function names the damage.
            fast = array.dtype.kind != "b" and crc32(array.reshape(-1).view(np.uint8))
            if array.dtype.kind == "b" or (fast & 0xFFFFFFFF) != stored:
                verify_tensor(self._path, name, array, stored)
        return array


class _Entry(NamedTuple):
    """One tensor's header entry, checked."""

    code: str
    dtype: np.dtype | None  # None: a dtype weightstore does not hold
    shape: tuple[int, ...]
    span: tuple[int, int]

    @property
    def nbytes(self) -> int:
        return self.span[1] - self.span[0]


def _check_entry(name: str, entry: Any, path: str, buffer_size: int) -> _Entry:
    where = f"tensor {name!r}"
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
        raise FormatError(path=path, field=where,
                          expected="an object with dtype, shape and data_offsets",
                          found=sorted(entry) if isinstance(entry, dict) else entry)
    code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(code, str) or (code not in _NAMES and code not in _UNSUPPORTED):
        raise FormatError(path=path, field=f"{where} dtype",
                          expected=f"a safetensors dtype ({', '.join(_NAMES)})", found=code)
    # MissingDependencyError for BF16 without ml_dtypes; None for a dtype not held
    dtype = canonical_dtype(_NAMES[code]) if code in _NAMES else None
    check_shape(shape, path=path, field=f"{where} shape")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_count, offsets))
            or offsets[0] > offsets[1]):
        raise FormatError(path=path, field=f"{where} data_offsets",
                          expected="[begin, end], integers with 0 <= begin <= end",
                          found=offsets)
    begin, end = offsets
    if end > buffer_size:
        raise FormatError(path=path, field=f"{where} data_offsets",
                          expected=f"within the data buffer of {buffer_size:,} bytes",
                          found=offsets)
    count = 1
    for d in shape:
        count *= d
    bits = dtype.itemsize * 8 if dtype is not None else _UNSUPPORTED[code]
    if (count * bits + 7) // 8 != end - begin:
        raise FormatError(path=path, field=f"{where} data_offsets",
                          expected=f"{(count * bits + 7) // 8:,} bytes for {code} {shape}",
                          found=f"{end - begin:,} bytes ({offsets})")
    return _Entry(code, dtype, tuple(shape), (begin, end))


def _check_tiling(spans: dict[str, tuple[int, int]], path: str, buffer_size: int) -> None:
    """The tensors must cover the data buffer exactly: no overlap, no gap, nothing after."""
    position, previous = 0, None
    for name in sorted(spans, key=lambda n: spans[n]):
        begin, end = spans[name]
        if begin < position:
            raise FormatError(path=path, field=f"tensor {name!r} data_offsets",
                              expected=f"no overlap with tensor {previous!r} (ends at {position})",
                              found=[begin, end])
        if begin > position:
            raise FormatError(path=path, field=f"tensor {name!r} data_offsets",
                              expected=f"to start at byte {position}, where the data before "
                              "it ends (no gaps)", found=[begin, end])
        position, previous = end, name
    if position != buffer_size:
        raise FormatError(path=path, field="data buffer",
                          expected=f"{position:,} bytes, as the tensors' offsets cover",
                          found=f"{buffer_size:,} bytes")


def _header_bytes(entries: list[tuple[str, str, tuple[int, ...]]], metadata: dict[str, str],
                  crcs: dict[str, str]) -> bytes:
    """The JSON header for *entries* laid out in order, padded with spaces to 8 bytes."""
    doc: dict[str, Any] = {}
    position = 0
    for name, dtype, shape in entries:
        nbytes = math.prod(shape) * canonical_dtype(dtype).itemsize
        doc[name] = {"dtype": DTYPE_CODES[dtype], "shape": list(shape),
                     "data_offsets": [position, position + nbytes]}
        position += nbytes
    names = [name for name, _, _ in entries]
    header_crc = format_crc(header_crc32(entries, metadata))
    doc = {METADATA_KEY: {**metadata, ORDER_KEY: json.dumps(names), CRC_KEY: json.dumps(crcs),
                          HEADER_CRC_KEY: header_crc}, **doc}
    raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8",
                                                                           "surrogatepass")
    return raw + b" " * (-len(raw) % 8)


def write_streaming(weights: Any, fileobj: IO[bytes], path: str) -> None:
    """Write *weights* one tensor at a time: header with placeholder checksums, each
    tensor's bytes, then the header again with the checksums (the same length)."""
    entries = header_entries(weights)
    for name, dtype, _ in entries:
        if dtype not in DTYPE_CODES:
            raise UnsupportedError(path=path, field=f"tensor {name!r} dtype",
                                   expected=f"one of {', '.join(DTYPE_CODES)}", found=dtype)
    metadata = dict(weights.metadata)
    crcs = {name: "00000000" for name, _, _ in entries}
    header = _header_bytes(entries, metadata, crcs)
    start = fileobj.tell()
    fileobj.write(_LENGTH.pack(len(header)) + header)
    for name, dtype, shape in entries:
        # C order, little-endian; not np.ascontiguousarray, which makes a 0-d array (1,)
        array = _c_order(little_endian(weights[name]))
        if (dtype_name(array.dtype), tuple(array.shape)) != (dtype, tuple(shape)):
            raise UnsupportedError(path=path, field=f"tensor {name!r}",
                                   expected=f"{dtype} {tuple(shape)} as described",
                                   found=f"{array.dtype} {array.shape}")
        flat = memoryview(array.reshape(-1).view(np.uint8)) if array.size else memoryview(b"")
        value = 0
        for at in range(0, len(flat), CHUNK):  # no name kept: a slice would keep the array
            value = crc32(flat[at:at + CHUNK], value)
            fileobj.write(flat[at:at + CHUNK])
        crcs[name] = format_crc(value if array.dtype.kind != "b" else tensor_crc32(array))
        del array, flat
    end = fileobj.tell()
    final = _header_bytes(entries, metadata, crcs)
    assert len(final) == len(header)  # checksums are 8 hex digits, as the placeholders
    fileobj.seek(start + _LENGTH.size)
    fileobj.write(final)
    fileobj.seek(end)
