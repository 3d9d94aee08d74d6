"""wsc: weightstore's compact lossless format, byte planes with the exponent entropy-coded.

Why it is small: in a float the sign and the exponent are predictable (trained
weights cluster within a few octaves) while the low mantissa bits are noise. Each
float is rotated left by one bit, which moves the sign to the lowest bit and the
exponent to the top; the value is then split into byte planes. The top plane
(the exponent for float32, float64's top 8 exponent bits, bfloat16's whole
exponent) is entropy-coded with Zstandard set up to find almost no matches, which
leaves Huffman coding of that byte stream; the mantissa planes are stored raw
unless Zstandard makes them smaller. Integers and bool are split into byte
planes without the rotation and each plane takes whichever of raw or Zstandard
is smaller. Every tensor carries a CRC-32 of its bytes, the header carries its
own, and the header gives each tensor's offset so one tensor reads alone.

Format version 1.0, byte by byte (all integers little-endian)::

    offset        size  field
    0             8     magic: b"\\x89WSC\\r\\n\\x1a\\n"
    8             1     major version: 1
    9             1     minor version: 0
    10            ...   data: each tensor's planes, in header order, back to back
    F - 16 - L    L     header: UTF-8 JSON object (below)
    F - 16        8     L, the header's length in bytes (unsigned)
    F - 8         4     CRC-32 (zlib.crc32) of the L header bytes
    F - 4         4     end mark: b"WSC\\x00"

where F is the file's size. The header comes last so that a writer streams each
tensor as it is encoded, on outputs that cannot seek. Like PNG's, the magic
starts with a byte above 0x7F and holds ``\\r\\n``, ``\\x1a`` and ``\\n``, so a
transfer in text mode or a 7-bit channel breaks it visibly.

The header is exactly::

    {"metadata": {str: str, ...},
     "tensors": [{"name": str,            # a Weights name ("fc1/W")
                  "dtype": str,           # bool, int8..int64, uint8..uint64,
                                          # float16, float32, float64, bfloat16
                  "shape": [int, ...],    # row-major (C order), [] for a scalar
                  "offset": int,          # file offset of its first plane
                  "crc32": int,           # zlib.crc32 of its C-order little-endian bytes
                  "planes": [[method, size], ...]}, ...]}

with no other keys. A tensor of ``count`` values and ``itemsize``-byte dtype has
``itemsize`` planes, most significant byte first; plane ``i`` (from 0) holds byte
``itemsize - 1 - i`` of each value's stored word, so each plane decodes to
``count`` bytes. ``method`` is ``"raw"`` (``size == count`` bytes as they are) or
``"zstd"`` (one Zstandard frame of ``size`` bytes that declares its content size
``count``). The stored word is the value's little-endian bits, except that for
float16, bfloat16, float32 and float64 it is those bits rotated left by one (the
sign bit moves to bit 0); a reader rotates right by one. The first tensor starts
at offset 10, each next tensor where the previous one's planes end, and the last
one ends where the header begins: there are no gaps.

Reading checks in layers, before allocating anything a file claims: magic,
version, end mark, header length against ``Limits.max_header_bytes``, header CRC,
JSON, the exact key sets and each field's type and range, each tensor's offsets
within the data section, each tensor's size against ``Limits`` and each zstd
plane's declared size against its stored size (``Limits.max_expansion``). Then
each tensor decodes plane by plane and, unless ``verify=False``, its CRC-32 is
compared with the header's: a mismatch raises :class:`ChecksumError` naming it.

CRC-32 rather than a cryptographic hash: the checksums guard against accidental
damage (disks, transfers, truncation), where CRC-32 detects every burst of up to
32 bits and misses other damage with chance 2**-32 per tensor; zlib's runs at about
2.4 GB/s here against 1.0 GB/s for BLAKE2b, and decoding must keep up with zstd.
The same CRC-32 is computed with ISA-L's (``weightstore.fileio.crc32``, about 7x
zlib's on 16 MiB) when the ``fast`` extra is installed.

Decoding rebuilds each 256 Ki-value chunk of words from its planes, rotates it back and
checksums it while it is in cache. From 4 MiB of tensors on (one tensor's, for a lazy
read) the chunks are shared among threads, one per core: they take turns at the zstd
frames (a frame decodes in order; the exponent plane is a fifth of the work), then fetch
the raw planes (slices of an in-memory file's own buffer, or positional reads), join,
rotate and checksum side by side; the chunks' CRC-32s are combined into the tensor's
(CRC-32 is affine in its start value). The join is a byte unshuffle: numpy's widening
casts, shifts and ORs for 2- and 4-byte words, strided byte writes for 8-byte ones, or,
for 4- and 8-byte words with the ``fast`` extra on a read of at least 256 MiB (or once
the process has imported numcodecs), c-blosc's SIMD unshuffle through numcodecs: the planes
are read into a blosc chunk whose byte streams are all stored uncompressed, which
blosc's decompress only unshuffles. The words are the same either way; the rest of
decoding is zstd's Huffman decoding of the exponent plane, reading the raw planes, the
rotation, the CRC-32 and the output's page faults (see docs/wsc-format.md for figures).
Neither would stop a deliberate forger, who can recompute either.

Beyond the Codec interface: :meth:`WscCodec.read_index` (metadata and every
tensor's :class:`TensorEntry`, nothing decoded), :meth:`WscCodec.read_tensor`
and :meth:`WscCodec.read_tensors` (only the tensors named are decoded).
"""

from __future__ import annotations

import io
import math
import os
import struct
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import orjson
import zstandard

from ..codec import DEFAULT_LIMITS, Budget, Codec, Limits, Option, TensorSource
from ..errors import ChecksumError, FormatError, LimitError, UnsupportedError
from ..fileio import crc32, new_array, regular_fd
from ..model import TensorInfo, Weights, canonical_dtype, dtype_name, weights_from_file
from ..sniffing import WSC_MAGIC
from ._header import check_shape

__all__ = ["WscCodec", "TensorEntry", "MAGIC", "VERSION", "END_MARK"]

MAGIC = WSC_MAGIC
#: (major, minor) this module writes and reads.
VERSION = (1, 0)
END_MARK = b"WSC\x00"
#: Magic and version: where the data section starts.
PREFIX_SIZE = len(MAGIC) + 2
_TRAILER = struct.Struct("<QI4s")
TRAILER_SIZE = _TRAILER.size  # 16

#: Dtypes whose stored word is rotated left by one bit (sign to bit 0).
FLOAT_DTYPES = frozenset({"float16", "bfloat16", "float32", "float64"})
#: Every dtype name a header may give.
_DTYPE_NAMES = FLOAT_DTYPES | {"bool"} | {f"{s}int{b}" for s in ("", "u") for b in (8, 16, 32, 64)}
#: Plane methods.
RAW, ZSTD = "raw", "zstd"
_TENSOR_KEYS = frozenset({"name", "dtype", "shape", "offset", "crc32", "planes"})
_HEADER_KEYS = frozenset({"metadata", "tensors"})
#: Values per step when splitting into or joining planes: small enough that the
#: temporaries stay in the processor's cache, large enough that numpy's per-call
#: overhead does not show.
_CHUNK = 1 << 16
#: Values per task when decoding (a tensor of at most this many is read in one piece): a
#: chunk's planes, words and temporaries (about 2 MiB for 4-byte words) stay in a core's
#: cache, and the per-chunk Python work and the threads' turns at a zstd frame cost a
#: quarter of what 64 Ki-value chunks cost (1 GiB model, full read: 0.66 -> 0.58 s).
_DECODE_CHUNK = 1 << 18
#: A read of at least this many bytes of tensors (one tensor's, for a lazy read) decodes
#: them on every core, a tensor's chunks shared among the threads (starting them costs
#: about 0.1 ms; decoding 4 MiB about 5 ms on one core).
_MT_BYTES = 4 << 20
#: A threaded read shares a tensor among its threads chunk by chunk when the tensor is
#: more than 1/(this x threads) of the read; smaller ones are decoded whole, one per thread.
_SPLIT_SHARE = 4
#: A write encodes on every core from the first tensor of at least this many bytes on
#: (below it, a model never starts threads: small inputs pay no fixed cost).
_MT_WRITE_BYTES = 4 << 20
#: A threaded write encodes a tensor of at most this many bytes as one unit of work (many
#: tensors keep the cores busy); a larger one plane by plane.
_WHOLE_BYTES = 16 << 20
#: Tensor bytes a threaded write has submitted but not yet written, at most (besides the
#: tensor being submitted): what bounds its memory (each in-flight tensor's words, and
#: its planes as encoded, at most as large).
_WRITE_WINDOW = 64 << 20


_local = threading.local()


def _plane_compressor() -> Any:
    """This thread's Zstandard compressor, tuned to entropy-code a byte plane: the fast
    strategy with 7-byte minimum matches and the smallest hash table finds almost no
    matches in weight planes, so nearly every byte becomes a Huffman-coded literal; on
    exponent planes that is both smaller and several times faster than the default
    levels (see docs/wsc-format.md). One per thread: compressors are not thread-safe."""
    compressor = getattr(_local, "compressor", None)
    if compressor is None:
        params = zstandard.ZstdCompressionParameters(
            strategy=zstandard.STRATEGY_FAST, min_match=7, window_log=17, hash_log=6,
            write_content_size=1, write_checksum=0, write_dict_id=0,
        )
        compressor = _local.compressor = zstandard.ZstdCompressor(compression_params=params)
    return compressor


def _decompressor() -> Any:
    """This thread's Zstandard decompressor, for whole small planes."""
    found = getattr(_local, "decompressor", None)
    if found is None:
        found = _local.decompressor = zstandard.ZstdDecompressor()
    return found


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as the header of a ``.wsc`` file describes it."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int
    crc32: int
    planes: tuple[tuple[str, int], ...]

    @property
    def count(self) -> int:
        """Number of values."""
        return math.prod(self.shape)

    @property
    def stored_size(self) -> int:
        """Bytes its planes take in the file."""
        return sum(size for _, size in self.planes)


def _word_dtype(itemsize: int) -> np.dtype:
    return np.dtype(f"<u{itemsize}")


_STORAGE: dict[np.dtype, tuple[str, np.dtype, np.dtype]] = {}


def _storage_of(dtype: np.dtype) -> tuple[str, np.dtype, np.dtype]:
    """(canonical name, little-endian storage dtype, unsigned word dtype) of a dtype that
    :class:`Weights` admits; cached, since working them out costs more than a small
    tensor's encoding."""
    found = _STORAGE.get(dtype)
    if found is None:
        name = dtype_name(dtype)
        if name is None:  # Weights admits supported dtypes only
            raise UnsupportedError(field="dtype", expected="a dtype Weights admits",
                                   found=str(dtype))
        storage = canonical_dtype(name)
        found = _STORAGE[dtype] = (name, storage, _word_dtype(storage.itemsize))
    return found


def _rotate_right(words: np.ndarray, tmp: np.ndarray) -> None:
    """Rotate *words* right by one bit in place: a float's stored word back to its bits."""
    np.left_shift(words, 8 * words.itemsize - 1, out=tmp)
    np.right_shift(words, 1, out=words)
    np.bitwise_or(words, tmp, out=words)


class _Splitter:
    """Extracts byte planes from a tensor's words, a cache-sized chunk at a time.

    Plane ``p`` holds byte ``b = itemsize - 1 - p`` of each stored word. For floats the
    stored word is the value's bits rotated left by one, whose byte ``b`` is
    ``bits >> (8b - 1)`` for ``b >= 1`` and ``(bits << 1) | (bits >> (8 itemsize - 1))``
    for ``b = 0``, both truncated to 8 bits; so no rotated copy is ever made.
    """

    def __init__(self, words: np.ndarray, rotate: bool) -> None:
        self.words, self.rotate = words, rotate
        self.k = words.itemsize
        size = min(words.size, _CHUNK)
        self.tmp = np.empty(size, words.dtype)
        self.tmp2 = np.empty(size, words.dtype)

    def chunk(self, p: int, i: int, j: int, out: np.ndarray) -> None:
        """Bytes ``i .. j`` of plane *p* into *out* (``j - i`` bytes, ``j - i <= _CHUNK``)."""
        w, t = self.words[i:j], self.tmp[: j - i]
        b = self.k - 1 - p
        if not self.rotate:
            np.right_shift(w, 8 * b, out=t)
        elif b:
            np.right_shift(w, 8 * b - 1, out=t)
        else:
            t2 = self.tmp2[: j - i]
            np.left_shift(w, 1, out=t)
            np.right_shift(w, 8 * self.k - 1, out=t2)
            np.bitwise_or(t, t2, out=t)
        np.copyto(out, t, casting="unsafe")

    def plane(self, p: int, crc: bool = False) -> tuple[np.ndarray, int]:
        """The whole plane *p*, and the CRC-32 of the words when *crc*."""
        n = self.words.size
        out = np.empty(n, np.uint8)
        value = 0
        for i in range(0, n, _CHUNK):
            j = min(n, i + _CHUNK)
            if crc:
                value = crc32(self.words[i:j], value)
            self.chunk(p, i, j, out[i:j])
        return out, value

    def sample(self, p: int, size: int) -> np.ndarray:
        """Four slices of plane *p* spread over it, *size* bytes in all."""
        n, part = self.words.size, size // 4
        out = np.empty(4 * part, np.uint8)
        for s in range(4):
            i = s * (n // 4)
            self.chunk(p, i, i + part, out[s * part:(s + 1) * part])
        return out

    def write_raw(self, p: int, fileobj: IO[bytes]) -> None:
        """Write plane *p* as it is, chunk by chunk."""
        n = self.words.size
        buf = np.empty(min(n, _CHUNK), np.uint8)
        for i in range(0, n, _CHUNK):
            j = min(n, i + _CHUNK)
            self.chunk(p, i, j, buf[: j - i])
            fileobj.write(buf[: j - i])


#: A plane of at least ``_PROBE_FROM`` bytes, other than the top one, is first judged on
#: a sample (four slices spread over it, 1/8 of it, 4 to 64 KiB): it is compressed only if
#: the sample shrinks by at least 1/64, else it is written raw, straight from the tensor.
#: Mantissa planes are noise, and compressing them whole would cost more time than all
#: the rest of the writing. The choice is the writer's; the format allows either.
_PROBE_FROM = 1 << 14
_PROBE_MAX = 1 << 16


def _probe_size(n: int) -> int:
    """Bytes of the sample a plane of *n* bytes is judged on (0: try it whole)."""
    return 0 if n < _PROBE_FROM else min(_PROBE_MAX, max(1 << 12, n // 8))


def _worth_compressing(compressor: Any, sample: np.ndarray) -> bool:
    return len(compressor.compress(sample)) <= sample.size - sample.size // 64


def _slices(plane: np.ndarray, size: int) -> np.ndarray:
    n, part = plane.size, size // 4
    return np.concatenate([plane[s * (n // 4):s * (n // 4) + part] for s in range(4)])


def _compress(compressor: Any, plane: np.ndarray) -> tuple[str, bytes | np.ndarray]:
    """The smaller of the plane as it is and its Zstandard frame."""
    if plane.size == 0:
        return RAW, plane
    packed = compressor.compress(plane)
    return (ZSTD, packed) if len(packed) < plane.size else (RAW, plane)


def _write_planes(fileobj: IO[bytes], words: np.ndarray, rotate: bool,
                  compressor: Any) -> tuple[list[list[Any]], int]:
    """Write the planes of the 1-d unsigned *words*; their ``[method, size]`` list and the
    CRC-32 of the words. Only a plane that is compressed is held whole in memory."""
    n, k = words.size, words.itemsize
    if n <= _CHUNK:  # small: all planes at once, a handful of numpy calls
        stored = words
        if rotate and n:
            stored = (words << 1) | (words >> (8 * k - 1))
        described = []
        probe = _probe_size(n)
        planes = np.ascontiguousarray(stored.view(np.uint8).reshape(n, k)[:, ::-1].T)
        for p, plane in enumerate(planes):
            if p > 0 and probe and not _worth_compressing(compressor, _slices(plane, probe)):
                fileobj.write(plane)
                described.append([RAW, n])
                continue
            method, data = _compress(compressor, plane)
            fileobj.write(data)
            described.append([method, len(data) if method == ZSTD else n])
        return described, crc32(words)
    if k == 1:
        method, data = _compress(compressor, words.view(np.uint8))
        fileobj.write(data)
        return [[method, len(data) if method == ZSTD else n]], crc32(words)
    splitter = _Splitter(words, rotate)
    described = []
    crc = 0
    for p in range(k):
        probe = _probe_size(n)
        if p > 0 and not _worth_compressing(compressor, splitter.sample(p, probe)):
            splitter.write_raw(p, fileobj)
            described.append([RAW, n])
            continue
        plane, value = splitter.plane(p, crc=p == 0)
        if p == 0:
            crc = value
        method, data = _compress(compressor, plane)
        fileobj.write(data)
        described.append([method, len(data) if method == ZSTD else n])
    return described, crc


#: What :func:`_encode_plane` gives for a plane to be written raw, straight from the words.
_STREAM = None


def _encode_plane(words: np.ndarray, rotate: bool, p: int) -> tuple[str, Any, int]:
    """Plane *p* of the 1-d unsigned *words* (more than one chunk of them, more than one
    byte each) as :func:`_write_planes` decides it: ``(method, data, CRC-32 of the words
    when p == 0)``, *data* :data:`_STREAM` for a plane judged on its sample to be written
    raw (the writer extracts it as it writes, as :func:`_write_planes` does, so it is
    never held whole). Runs on any thread (its own compressor and scratch)."""
    compressor = _plane_compressor()
    splitter = _Splitter(words, rotate)
    if p > 0 and not _worth_compressing(compressor, splitter.sample(p, _probe_size(words.size))):
        return RAW, _STREAM, 0
    plane, crc = splitter.plane(p, crc=p == 0)
    method, data = _compress(compressor, plane)
    return method, data, crc


def _encode_planes(words: np.ndarray, rotate: bool) -> list[tuple[str, Any, int]]:
    """Every plane of *words* by :func:`_encode_plane`, on one thread."""
    return [_encode_plane(words, rotate, p) for p in range(words.itemsize)]


def _encode_small(words: np.ndarray, rotate: bool) -> tuple[list[list[Any]], int, bytes]:
    """A tensor of at most one chunk (or of one-byte words) encoded whole, on any
    thread: its planes' list, CRC-32 and bytes."""
    buf = io.BytesIO()
    described, crc = _write_planes(buf, words, rotate, _plane_compressor())
    return described, crc, buf.getvalue()


class _Job:
    """A call handed to a :class:`_Pool`; :meth:`result` waits for it."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn, self.args = fn, args
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self.fn(*self.args)
        except BaseException as e:  # noqa: BLE001 - raised by result() on the caller's thread
            self.error = e
        finally:
            self.done.set()

    def result(self) -> Any:
        """The call's value, or its exception raised."""
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.value


class _Pool:
    """Threads that run the calls submitted to them, oldest first: what the threaded
    write needs of ``concurrent.futures``, whose import (logging's with it) would cost
    about 5 ms in every process that opens a ``.wsc`` file."""

    def __init__(self, workers: int, name: str) -> None:
        self.jobs: deque[_Job] = deque()
        self.cond = threading.Condition()
        self.closed = False
        self.threads = [threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True)
                        for i in range(workers)]
        for thread in self.threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> _Job:
        """Queue ``fn(*args)``."""
        job = _Job(fn, args)
        with self.cond:
            self.jobs.append(job)
            self.cond.notify()
        return job

    def _work(self) -> None:
        while True:
            with self.cond:
                while not self.jobs and not self.closed:
                    self.cond.wait()
                if not self.jobs:
                    return
                job = self.jobs.popleft()
            job.run()

    def shutdown(self) -> None:
        """Stop the threads once their current calls return; calls not started are dropped."""
        with self.cond:
            self.closed = True
            self.jobs.clear()
            self.cond.notify_all()
        for thread in self.threads:
            thread.join()


class _PlaneEncoder:
    """Encodes tensors on a pool of threads and writes them in order, byte for byte what
    the single-threaded :func:`_write_planes` writes. The threads compress (the planes
    worth it, with the CRC-32) and judge the rest on samples; the writing thread extracts
    the planes judged raw from the words as it writes them, as a one-thread write does,
    overlapping the threads' work. A tensor up to :data:`_WHOLE_BYTES` is one unit of
    work, a larger one a unit per plane. At most :data:`_WRITE_WINDOW` bytes of tensors are
    in flight besides the newest (their words, and their compressed planes, smaller)."""

    def __init__(self, fileobj: IO[bytes], workers: int) -> None:
        self.fileobj = fileobj
        self.pool = _Pool(workers, "wsc-encode")
        self.pending: deque[tuple[dict[str, Any], np.ndarray, bool, list[_Job]]] = deque()
        self.in_flight = 0

    def submit(self, entry: dict[str, Any], words: np.ndarray, rotate: bool) -> None:
        """Queue one tensor (*entry* gets its ``crc32`` and ``planes`` when written)."""
        n, k = words.size, words.itemsize
        if n <= _CHUNK or k == 1:
            futures = [self.pool.submit(_encode_small, words, rotate)]
        elif words.nbytes <= _WHOLE_BYTES:
            futures = [self.pool.submit(_encode_planes, words, rotate)]
        else:
            futures = [self.pool.submit(_encode_plane, words, rotate, p) for p in range(k)]
        while self.pending and self.in_flight + words.nbytes > _WRITE_WINDOW:
            self._write_oldest()
        self.pending.append((entry, words, rotate, futures))
        self.in_flight += words.nbytes

    def _write_oldest(self) -> None:
        entry, words, rotate, futures = self.pending.popleft()
        n = words.size
        if n <= _CHUNK or words.itemsize == 1:
            described, crc, data = futures[0].result()
            self.fileobj.write(data)
        else:
            planes = futures[0].result() if len(futures) == 1 else [f.result() for f in futures]
            described, crc = [], planes[0][2]
            for p, (method, data, _) in enumerate(planes):
                if data is _STREAM:
                    _Splitter(words, rotate).write_raw(p, self.fileobj)
                else:
                    self.fileobj.write(data)
                described.append([method, len(data) if method == ZSTD else n])
        entry["crc32"], entry["planes"] = crc, described
        self.in_flight -= words.nbytes

    def finish(self) -> None:
        """Write every tensor still queued."""
        while self.pending:
            self._write_oldest()

    def close(self) -> None:
        """Stop the threads (after :meth:`finish`, or on an error: pending work dropped)."""
        self.pool.shutdown()


#: A read of at least this many bytes of tensors joins planes with c-blosc's SIMD byte
#: unshuffle when the ``fast`` extra (numcodecs) is installed: 4-5x numpy's strided
#: writes, which takes 0.1-0.2 ms per MB off decoding; importing numcodecs costs 25-40 ms,
#: so a smaller read uses it only when the process has already imported it.
_BLOSC_FROM = 256 << 20
#: A chunk of fewer values is joined by numpy (c-blosc splits a block into byte streams
#: only from 128 values per block on; below a few thousand its call costs more than it saves).
_BLOSC_MIN = 4096
#: Words of fewer bytes are joined by numpy even on a blosc read: its casts, shifts and
#: ORs join 2-byte words as fast as c-blosc's unshuffle (measured on 64 MiB of trained-
#: like bfloat16 and float16: within 5%), while for 4-byte words blosc saves ~15% of
#: the decoding and for 8-byte ones (numpy's strided writes) far more.
_BLOSC_ITEMSIZE = 4
#: c-blosc's chunk header (format version 2) and the start of its one block.
_BLOSC_HEADER = struct.Struct("<BBBBiiii")


def _unshuffler(nbytes: int) -> Any:
    """numcodecs' ``blosc`` module when a read of *nbytes* bytes of tensors should join
    its planes with it (see :data:`_BLOSC_FROM`), else None (the numpy join)."""
    module = sys.modules.get("numcodecs.blosc")
    if module is not None or nbytes < _BLOSC_FROM:
        return module
    try:  # extra 'fast'
        from numcodecs import blosc
    except ImportError:  # pragma: no cover - depends on the extra
        return None
    return blosc


class _ShuffledChunk:
    """*m* values' byte planes laid out as a c-blosc chunk (the documented Blosc chunk
    format, version 2) of one block whose *k* byte streams are all stored uncompressed
    (a stream's size equal to the block's size over *k*), so that blosc's decompress
    does nothing but its SIMD byte unshuffle: stream ``s`` holds byte ``s`` of every
    value, i.e. plane ``k - 1 - s``. The planes are read straight into their streams."""

    def __init__(self, k: int, m: int) -> None:
        self.m = m
        start = _BLOSC_HEADER.size
        self.buf = np.empty(start + k * (4 + m), np.uint8)
        # version 2, blosclz format 1 (never called: every stream is stored), flags:
        # byte shuffle, blocks split into streams; typesize, nbytes, blocksize, cbytes,
        # and the one block's start
        _BLOSC_HEADER.pack_into(self.buf, 0, 2, 1, 0x01, k, m * k, m * k, self.buf.size, start)
        self.planes = []
        for p in range(k):
            at = start + (k - 1 - p) * (4 + m)
            struct.pack_into("<i", self.buf, at, m)
            self.planes.append(self.buf[at + 4:at + 4 + m])

    def join(self, blosc: Any, out: np.ndarray) -> None:
        """The chunk's words into *out* (its *m* words)."""
        blosc.decompress(self.buf, out.view(np.uint8))


class _Bytes:
    """A file's bytes at any offset, for any thread: slices of an in-memory file's own
    buffer (no copy), positional reads of a regular file (``os.preadv``: no lock, no
    shared position), else seek and read under a lock."""

    def __init__(self, fileobj: IO[bytes], path: str) -> None:
        self.file, self.path = fileobj, path
        self.lock = threading.Lock()
        self.mem: np.ndarray | None = None
        self.fd: int | None = None
        if isinstance(fileobj, io.BytesIO):
            self.mem = np.frombuffer(fileobj.getbuffer(), np.uint8)
            return
        self.fd = regular_fd(fileobj)  # None for a wrapper such as gzip.GzipFile

    def _short(self, offset: int, n: int, got: int, what: str) -> FormatError:
        return FormatError(f"EOF: reading {what}", path=self.path, field=what,
                           expected=f"{n:,} bytes at offset {offset:,}", found=f"{got:,}")

    def read(self, offset: int, n: int, what: str) -> Any:
        """The *n* bytes at *offset* (a view of the file's buffer when it is in memory)."""
        if self.mem is not None:
            view = self.mem[offset:offset + n]
            if view.size != n:
                raise self._short(offset, n, view.size, what)
            return view
        buf = np.empty(n, np.uint8)
        self.fill(offset, buf, what)
        return buf

    def pread(self, offset: int, n: int, what: str) -> bytes:
        """The *n* bytes at *offset* of a file not in memory, as bytes."""
        if self.fd is not None:
            data = os.pread(self.fd, n, offset)
            while 0 < len(data) < n:
                more = os.pread(self.fd, n - len(data), offset + len(data))
                if not more:
                    break
                data += more
        else:
            with self.lock:
                self.file.seek(offset)
                data = self.file.read(n)
        if len(data) != n:
            raise self._short(offset, n, len(data), what)
        return data

    def get(self, offset: int, buf: np.ndarray, what: str) -> np.ndarray:
        """The ``len(buf)`` bytes at *offset*: a view of the file's buffer when it is in
        memory, else *buf* filled with them."""
        if self.mem is None:
            self.fill(offset, buf, what)
            return buf
        view = self.mem[offset:offset + buf.size]
        if view.size != buf.size:
            raise self._short(offset, buf.size, view.size, what)
        return view

    def fill(self, offset: int, buf: np.ndarray, what: str) -> None:
        """*buf* (1-d uint8) filled with the bytes at *offset*."""
        n = buf.size
        if self.mem is not None:
            buf[:] = self.get(offset, buf, what)
            return
        view = memoryview(buf)
        got = 0
        if self.fd is not None:
            while got < n:
                step = os.preadv(self.fd, [view[got:]], offset + got)
                if step <= 0:
                    raise self._short(offset, n, got, what)
                got += step
            return
        with self.lock:
            self.file.seek(offset)
            while got < n:
                step = self.file.readinto(view[got:]) or 0
                if step <= 0:
                    raise self._short(offset, n, got, what)
                got += step


#: The most bytes a Zstandard frame header takes (magic, descriptor, window, dictionary
#: id, content size).
_FRAME_HEADER_MAX = 18
#: Bytes of a zstd plane read at a time from a file (below glibc's 128 KiB threshold, so
#: the pieces reuse heap memory rather than each mapping fresh pages).
_FRAME_PIECE = 1 << 16


class _FrameFile:
    """One zstd plane of a file as a file for zstandard's stream reader, read in pieces
    at its own position (a plane is decompressed by one thread at a time: the chunks
    take turns), so that the frame is never held whole."""

    def __init__(self, data: _Bytes, offset: int, size: int, what: str) -> None:
        self.data, self.pos, self.end, self.what = data, offset, offset + size, what

    def read(self, n: int = -1) -> bytes:
        n = self.end - self.pos if n < 0 else min(n, self.end - self.pos)
        if n <= 0:
            return b""
        piece = self.data.pread(self.pos, n, self.what)
        self.pos += n
        return piece


class _Abandoned(Exception):
    """A task given up because another one of its tensor failed (that one's error is
    the one raised)."""


def _run(tasks: Iterator[Callable[[], None]], workers: int) -> None:
    """Run *tasks* in their order on *workers* threads (this one among them): each
    thread takes the next task when it is free. The first error stops the handing out
    and is raised once every thread has stopped. A task may wait for one handed out
    before it (never after), so they cannot deadlock."""
    lock = threading.Lock()
    errors: list[BaseException] = []

    def loop() -> None:
        while True:
            with lock:
                task = None if errors else next(tasks, None)
            if task is None:
                return
            try:
                task()
            except BaseException as e:  # noqa: BLE001 - re-raised on the calling thread
                with lock:
                    errors.append(e)
                return

    threads = [threading.Thread(target=loop, name=f"wsc-decode_{i}", daemon=True)
               for i in range(workers - 1)]
    for thread in threads:
        thread.start()
    try:
        loop()
    except BaseException as e:  # an interrupt between tasks: the threads stop too
        with lock:
            errors.append(e)
        raise
    finally:
        for thread in threads:
            thread.join()
    if errors:
        raise next((e for e in errors if not isinstance(e, _Abandoned)), errors[0])


def _join_words(planes: list[np.ndarray], out: np.ndarray, tmp: np.ndarray) -> None:
    """*out*'s words from their byte planes, most significant first (a byte unshuffle).
    2- and 4-byte words are built by widening casts, shifts and ORs, each a vectorised
    numpy pass (1.3-1.6x faster than strided byte writes); 8-byte ones by strided byte
    writes, which then take fewer passes."""
    k = out.itemsize
    if k in (2, 4):
        np.copyto(out, planes[k - 1], casting="unsafe")
        for p in range(k - 1):
            np.copyto(tmp, planes[p], casting="unsafe")
            np.left_shift(tmp, 8 * (k - 1 - p), out=tmp)
            np.bitwise_or(out, tmp, out=out)
        return
    columns = out.view(np.uint8).reshape(-1, k)
    for p, plane in enumerate(planes):
        columns[:, k - 1 - p] = plane


_scratch = threading.local()


def _buffers(k: int, dtype: np.dtype) -> tuple[list[np.ndarray], np.ndarray]:
    """This thread's chunk buffers: one per plane (at least *k*), and one of words (a
    scratch for joining and rotating). Made once per thread, no more than needed: in a
    fresh process every page of a new buffer costs a page fault."""
    cache = getattr(_scratch, "bufs", None)
    if cache is None:
        cache = _scratch.bufs = ([], {})
    while len(cache[0]) < k:
        cache[0].append(np.empty(_DECODE_CHUNK, np.uint8))
    words = cache[1].get(dtype)
    if words is None:
        words = cache[1][dtype] = np.empty(_DECODE_CHUNK, dtype)
    return cache[0], words


def _shuffled(k: int, m: int) -> _ShuffledChunk:
    """This thread's c-blosc chunk for *m* values of *k* bytes."""
    cache = getattr(_scratch, "shuffled", None)
    if cache is None:
        cache = _scratch.shuffled = {}
    found = cache.get((k, m))
    if found is None:
        if len(cache) > 8:
            cache.clear()
        found = cache[k, m] = _ShuffledChunk(k, m)
    return found


class _Decoding:
    """One tensor being decoded by tasks that may run on several threads: one per chunk
    of :data:`_DECODE_CHUNK` values, or one for a tensor of at most a chunk. A chunk's task
    decompresses its slice of each zstd plane in turn (a frame decodes in order: the
    tasks take turns, chunk by chunk), then, beside the other threads, fetches its slice
    of each raw plane (from the file's own buffer when it is in memory), joins the
    planes, rotates the words back and takes their CRC-32, all while they are in cache.
    :meth:`finish` joins the chunks' CRC-32s into the tensor's and checks it."""

    def __init__(self, data: _Bytes, entry: TensorEntry, verify: bool, blosc: Any) -> None:
        self.data, self.entry, self.verify = data, entry, verify
        self.dtype = canonical_dtype(entry.dtype)
        self.word = _word_dtype(self.dtype.itemsize)
        self.k = self.word.itemsize
        self.count = entry.count
        self.rotate = entry.dtype in FLOAT_DTYPES
        self.blosc = blosc if self.k >= _BLOSC_ITEMSIZE else None
        self.field = f"tensor {entry.name!r}"
        self.out = new_array((self.count,), self.word)  # small pages: see fileio.new_array
        self.chunks = -(-self.count // _DECODE_CHUNK)
        self.crcs = [0] * self.chunks
        offsets, offset = [], entry.offset
        for _, stored in entry.planes:
            offsets.append(offset)
            offset += stored
        self.offsets = offsets
        #: per plane: zstd or not, its offset, its name in messages
        self.layout = [(method == ZSTD, offsets[p], f"{self.field} plane {p}")
                       for p, (method, _) in enumerate(entry.planes)]
        self.streams: list[Any] = []  # each plane's decompressor (None: raw), by chunk 0
        self.turn = 0  # the chunk whose zstd slices decompress next
        self.failed = False
        self.cond = threading.Condition()

    def tasks(self, split: bool) -> Iterator[Callable[[], None]]:
        """The tensor's tasks, in the order they must be handed out: one per chunk when
        *split* (the threads share it), else one for the whole tensor."""
        if self.count <= _DECODE_CHUNK:
            yield self._small
        elif split:
            for c in range(self.chunks):
                yield lambda c=c: self._chunk(c)
        else:
            yield self._whole

    def _whole(self) -> None:
        for c in range(self.chunks):
            self._chunk(c)

    def _where(self, p: int) -> str:
        return self.layout[p][2]

    def _small(self) -> None:
        """A tensor of at most one chunk: its planes in one read, joined in a few numpy
        calls."""
        count, k, entry = self.count, self.k, self.entry
        blob = self.data.read(entry.offset, entry.stored_size, self.field)
        columns = self.out.view(np.uint8).reshape(count, k)
        pos = 0
        for p, (method, stored) in enumerate(entry.planes):
            piece = blob[pos:pos + stored]
            pos += stored
            if method == ZSTD:
                where = self._where(p)
                _check_frame(piece, count, self.data.path, where)
                try:
                    raw = _decompressor().decompress(piece)
                except zstandard.ZstdError as e:
                    raise ChecksumError(f"corrupted zstd data ({e})", path=self.data.path,
                                        field=where) from e
                if len(raw) != count:
                    raise FormatError(path=self.data.path, field=where,
                                      expected=f"{count:,} bytes", found=f"{len(raw):,}")
                piece = np.frombuffer(raw, np.uint8)
            columns[:, k - 1 - p] = piece
        if self.rotate and count:
            _rotate_right(self.out, np.empty_like(self.out))
        if self.verify:
            self.crcs = [crc32(self.out)]

    def _open_streams(self) -> None:
        """Each zstd plane's frame read and checked, and its decompressor (chunk 0)."""
        for p, (method, stored) in enumerate(self.entry.planes):
            stream = None
            if method == ZSTD:
                where = self._where(p)
                head = self.data.read(self.offsets[p], min(stored, _FRAME_HEADER_MAX), where)
                _check_frame(head, self.count, self.data.path, where)
                if self.data.mem is not None:
                    frame: Any = self.data.read(self.offsets[p], stored, where)
                else:  # read in pieces: a fresh buffer of the whole frame costs its page faults
                    frame = _FrameFile(self.data, self.offsets[p], stored, where)
                stream = zstandard.ZstdDecompressor().stream_reader(
                    frame, read_size=_FRAME_PIECE, read_across_frames=False)
            self.streams.append(stream)

    def _inflate(self, c: int, targets: list[np.ndarray]) -> None:
        """Chunk *c*'s slice of each zstd plane into *targets* (by plane), in turn."""
        if self.turn != c:  # (only chunk c - 1 moves it to c: no lock needed to see it)
            with self.cond:
                while self.turn != c and not self.failed:
                    self.cond.wait()
        if self.failed:
            raise _Abandoned()
        if c == 0:
            self._open_streams()
        for p, stream in enumerate(self.streams):
            if stream is not None:
                self._decompress(p, stream, targets[p])
        if c == self.chunks - 1:
            for p, stream in enumerate(self.streams):
                if stream is not None:
                    self._check_end(p, stream)
        with self.cond:
            self.turn = c + 1
            self.cond.notify_all()

    def _decompress(self, p: int, stream: Any, buf: np.ndarray) -> None:
        view = memoryview(buf)
        got = 0
        try:
            while got < buf.size:
                step = stream.readinto(view[got:])
                if not step:
                    raise FormatError(f"EOF: reading {self._where(p)}", path=self.data.path,
                                      field=self._where(p), expected=f"{self.count:,} bytes",
                                      found="fewer")
                got += step
        except zstandard.ZstdError as e:
            raise ChecksumError(f"corrupted zstd data ({e})", path=self.data.path,
                                field=self._where(p)) from e

    def _check_end(self, p: int, stream: Any) -> None:
        """A zstd plane holds no more than its values."""
        try:
            extra = stream.read(1)
        except zstandard.ZstdError as e:
            raise ChecksumError(f"corrupted zstd data ({e})", path=self.data.path,
                                field=self._where(p)) from e
        if extra:
            raise FormatError(path=self.data.path, field=self._where(p),
                              expected="a frame that ends with its declared size",
                              found="more data")

    def _chunk(self, c: int) -> None:
        try:
            self._join_chunk(c)
        except BaseException:
            with self.cond:  # the chunks after it wait for no turn that will not come
                self.failed = True
                self.cond.notify_all()
            raise

    def _join_chunk(self, c: int) -> None:
        i = c * _DECODE_CHUNK
        j = min(self.count, i + _DECODE_CHUNK)
        m, k = j - i, self.k
        o = self.out[i:j]
        bufs, tmp = _buffers(k, self.word)
        shuffled = _shuffled(k, m) if self.blosc is not None and m >= _BLOSC_MIN else None
        targets = shuffled.planes if shuffled is not None else [b[:m] for b in bufs]
        self._inflate(c, targets)
        planes = []
        data = self.data
        for p, (zstd, offset, where) in enumerate(self.layout):
            if zstd:
                planes.append(targets[p])
            elif shuffled is not None:
                data.fill(offset + i, targets[p], where)
            else:
                planes.append(data.get(offset + i, targets[p], where))
        if shuffled is not None:
            shuffled.join(self.blosc, o)
        else:
            _join_words(planes, o, tmp[:m])
        if self.rotate:
            _rotate_right(o, tmp[:m])
        if self.verify and c < self.chunks - 1:  # the last one: by finish, in order
            self.crcs[c] = crc32(o)

    def finish(self) -> np.ndarray:
        """The tensor, its CRC-32 checked (unless not verifying), bool bytes checked."""
        entry, data = self.entry, self.data
        if self.verify:
            if self.count <= _DECODE_CHUNK:
                crc = self.crcs[0] if self.count else 0
            else:
                crc = _crc_join(self.crcs[:-1], _DECODE_CHUNK * self.k)
                crc = crc32(self.out[(self.chunks - 1) * _DECODE_CHUNK:], crc)
            if crc != entry.crc32:
                raise ChecksumError(path=data.path, field=self.field,
                                    expected=f"CRC-32 {entry.crc32:#010x}", found=f"{crc:#010x}")
        if entry.dtype == "bool" and self.count and int(self.out.max()) > 1:
            raise FormatError(path=data.path, field=self.field, expected="bool bytes 0 or 1",
                              found=int(self.out.max()))
        return self.out.view(self.dtype).reshape(entry.shape)


_CRC_SHIFTS: dict[int, list[list[int]]] = {}


def _crc_shift(nbytes: int) -> list[list[int]]:
    """What appending *nbytes* bytes does to a CRC-32 it starts from, as four tables by
    byte: CRC-32 is affine in its start value, so ``crc32(b, start) == crc32(b) ^
    shift(start)`` for ``b`` of *nbytes* bytes, with ``shift`` linear over GF(2); its
    value for each of the 32 bits is measured on zeros (cached by length)."""
    tables = _CRC_SHIFTS.get(nbytes)
    if tables is None:
        zeros = np.zeros(nbytes, np.uint8)
        base = crc32(zeros)
        bits = [crc32(zeros, 1 << b) ^ base for b in range(32)]
        tables = []
        for byte in range(4):
            table = [0] * 256
            for v in range(1, 256):
                low = v & -v
                table[v] = table[v ^ low] ^ bits[8 * byte + low.bit_length() - 1]
            tables.append(table)
        _CRC_SHIFTS[nbytes] = tables
    return tables


def _crc_join(crcs: list[int], nbytes: int) -> int:
    """The CRC-32 of consecutive pieces of *nbytes* bytes each, from theirs."""
    if not crcs:
        return 0
    t0, t1, t2, t3 = _crc_shift(nbytes)
    crc = crcs[0]
    for piece in crcs[1:]:
        crc = piece ^ t0[crc & 255] ^ t1[(crc >> 8) & 255] ^ t2[(crc >> 16) & 255] \
            ^ t3[crc >> 24]
    return crc


def _decode(data: _Bytes, entries: list[TensorEntry], verify: bool) -> list[np.ndarray]:
    """The tensors of *entries*, decoded on every core when they are large enough (zstd,
    numpy, the CRC-32 and the reads release the GIL)."""
    nbytes = sum(e.count * canonical_dtype(e.dtype).itemsize for e in entries)
    blosc = _unshuffler(nbytes)
    jobs = [_Decoding(data, e, verify, blosc) for e in entries]
    workers = 1
    if nbytes >= _MT_BYTES:
        workers = min(os.cpu_count() or 1, 8, sum(job.chunks for job in jobs))
    # A tensor that is a small part of the read is one task (threads on whole tensors
    # need no hand-over between chunks: about 0.1 s of CPU per GiB less); a large one is
    # shared chunk by chunk, so that one tensor alone still uses every core.
    split = nbytes // (_SPLIT_SHARE * workers)
    tasks = (task for job in jobs
             for task in job.tasks(workers > 1 and job.out.nbytes > split))
    if workers > 1:
        _run(tasks, workers)
    else:
        for task in tasks:
            task()
    return [job.finish() for job in jobs]


class WscCodec(Codec):
    """wsc: lossless byte planes, exponents entropy-coded, with per-tensor CRC-32."""

    name = "wsc"
    extensions = (".wsc",)
    description = ("compact lossless binary: float exponents entropy-coded, CRC-32 per "
                   "tensor, tensors readable alone")
    #: Every tensor and the header carry a CRC-32 (the shared test suite then requires
    #: every random change to be detected).
    checksums = True
    options = (
        Option("verify", bool, True, "check each tensor's CRC-32 when reading"),
    )
    verify: bool
    streams_writes = True  # one tensor at a time; the header is written last

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return head.startswith(MAGIC)

    # -- writing -------------------------------------------------------------------

    def write(self, weights: Weights, fileobj: IO[bytes], *, path: str) -> None:
        """Tensors one at a time, in order. From the first tensor of
        :data:`_MT_WRITE_BYTES` on, their planes are encoded on every core (zstd, numpy
        and CRC-32 release the GIL), the bytes written identical to a one-thread write."""
        fileobj.write(MAGIC + bytes(VERSION))
        entries: list[dict[str, Any]] = []
        compressor = _plane_compressor()
        workers = min(os.cpu_count() or 1, 8)
        encoder: _PlaneEncoder | None = None
        try:
            for name, array in weights.items():
                dtype, storage, word = _storage_of(array.dtype)
                words = np.ascontiguousarray(array, dtype=storage).reshape(-1).view(word)
                entry: dict[str, Any] = {"name": name, "dtype": dtype,
                                         "shape": list(array.shape)}
                entries.append(entry)
                rotate = dtype in FLOAT_DTYPES
                if encoder is None and workers > 1 and words.nbytes >= _MT_WRITE_BYTES:
                    encoder = _PlaneEncoder(fileobj, workers)
                if encoder is not None:
                    encoder.submit(entry, words, rotate)
                else:
                    entry["planes"], entry["crc32"] = _write_planes(fileobj, words, rotate,
                                                                    compressor)
                del array, words  # from a lazy source: only what is in flight is held
            if encoder is not None:
                encoder.finish()
        finally:
            if encoder is not None:
                encoder.close()
        offset = PREFIX_SIZE
        for entry in entries:  # the header's key order, as the one-thread writer had it
            described = entry.pop("planes")
            crc = entry.pop("crc32")
            entry.update(offset=offset, crc32=crc, planes=described)
            offset += sum(size for _, size in described)
        header = orjson.dumps({"metadata": weights.metadata, "tensors": entries})
        fileobj.write(header)
        fileobj.write(_TRAILER.pack(len(header), crc32(header), END_MARK))

    # -- reading -------------------------------------------------------------------

    def read(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS,
             verify: bool = True, budget: Budget | None = None) -> Weights:
        """Every tensor; tensor CRC-32s checked unless *verify* or the ``verify`` option is
        false (``weightstore.load(path, verify=False)``). The header's is always checked."""
        metadata, entries = self.read_index(fileobj, path=path, limits=limits)
        budget = Budget.of(budget, limits, fileobj)
        _charge(entries, budget, path)
        budget.take(sum(e.count * canonical_dtype(e.dtype).itemsize for e in entries),
                    path=path, field="tensors")
        arrays = _decode(_Bytes(fileobj, path), entries, verify and self.verify)
        tensors = {e.name: a for e, a in zip(entries, arrays, strict=True)}
        return weights_from_file(tensors, metadata, path)

    def open(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS,
             verify: bool = True, budget: Budget | None = None) -> TensorSource:
        """The header alone (its CRC-32 checked); each tensor is decoded when read, with its
        CRC-32 checked unless *verify* or the ``verify`` option is false."""
        metadata, entries = self.read_index(fileobj, path=path, limits=limits)
        _charge(entries, Budget.of(budget, limits, fileobj), path)
        return _WscSource(self, fileobj, path, limits, metadata, entries,
                          verify and self.verify)

    def read_tensor(self, fileobj: IO[bytes], name: str, *, path: str,
                    limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
        """One tensor, reading only the header and that tensor's planes."""
        _, entries = self.read_index(fileobj, path=path, limits=limits)
        for entry in entries:
            if entry.name == name:
                return _decode(_Bytes(fileobj, path), [entry], self.verify)[0]
        raise FormatError(path=path, field="tensors", expected=f"a tensor named {name!r}",
                          found=f"{len(entries)} tensors, none of that name")

    def read_tensors(self, fileobj: IO[bytes], names: Iterable[str], *, path: str,
                     limits: Limits = DEFAULT_LIMITS) -> Weights:
        """The tensors named, in file order, decoding no others."""
        wanted = set(names)
        metadata, entries = self.read_index(fileobj, path=path, limits=limits)
        missing = wanted - {e.name for e in entries}
        if missing:
            raise FormatError(path=path, field="tensors",
                              expected=f"tensors named {sorted(missing)!r}", found="none")
        chosen = [e for e in entries if e.name in wanted]
        arrays = _decode(_Bytes(fileobj, path), chosen, self.verify)
        return Weights({e.name: a for e, a in zip(chosen, arrays, strict=True)},
                       metadata=metadata)

    def read_index(self, fileobj: IO[bytes], *, path: str,
                   limits: Limits = DEFAULT_LIMITS) -> tuple[dict[str, str], list[TensorEntry]]:
        """The metadata and the tensors' entries, every field validated; no tensor decoded."""
        fileobj.seek(0, 2)
        size = fileobj.tell()
        fileobj.seek(0)
        prefix = _read_exact(fileobj, PREFIX_SIZE, path, "magic and version", size)
        if prefix[: len(MAGIC)] != MAGIC:
            raise FormatError(path=path, field="magic", expected=repr(MAGIC),
                              found=repr(prefix[: len(MAGIC)]))
        version = (prefix[8], prefix[9])
        if version != VERSION:
            raise FormatError(path=path, field="version",
                              expected=f"{VERSION[0]}.{VERSION[1]}",
                              found=f"{version[0]}.{version[1]}")
        if size < PREFIX_SIZE + TRAILER_SIZE:
            raise FormatError(path=path, field="trailer",
                              expected=f"a file of at least {PREFIX_SIZE + TRAILER_SIZE} bytes",
                              found=f"{size} bytes (truncated?)")
        fileobj.seek(size - TRAILER_SIZE)
        header_len, header_crc, end = _TRAILER.unpack(
            _read_exact(fileobj, TRAILER_SIZE, path, "trailer", size))
        if end != END_MARK:
            raise FormatError(path=path, field="end mark", expected=repr(END_MARK),
                              found=f"{end!r} (truncated or not completely written?)")
        if header_len > limits.max_header_bytes:
            raise LimitError(path=path, field="header length",
                             expected=f"at most {limits.max_header_bytes:,} bytes "
                             "(Limits.max_header_bytes)", found=f"{header_len:,} bytes")
        data_end = size - TRAILER_SIZE - header_len
        if data_end < PREFIX_SIZE:
            raise FormatError(path=path, field="header length",
                              expected=f"at most {size - TRAILER_SIZE - PREFIX_SIZE:,} bytes "
                              f"in a file of {size:,}", found=f"{header_len:,}")
        fileobj.seek(data_end)
        header = _read_exact(fileobj, header_len, path, "header", size)
        if crc32(header) != header_crc:
            raise ChecksumError(path=path, field="header",
                                expected=f"CRC-32 {header_crc:#010x}",
                                found=f"{crc32(header):#010x}")
        try:
            doc = orjson.loads(header)
        except orjson.JSONDecodeError as e:
            raise FormatError(f"header is not JSON ({e})", path=path, field="header") from e
        return _parse_header(doc, path, limits, data_end)


def _charge(entries: list[TensorEntry], budget: Budget, path: str) -> None:
    """What the zstd planes claim, against the operation's one decompression allowance."""
    planes = [(stored, entry.count) for entry in entries for method, stored in entry.planes
              if method == ZSTD]
    if planes:
        budget.add_compressed(sum(stored for stored, _ in planes))
        budget.expand(sum(count for _, count in planes), path=path, field="zstd planes")


class _WscSource(TensorSource):
    """A ``.wsc`` file opened on its header: one tensor's planes decoded per read."""

    lazy = True

    def __init__(self, codec: WscCodec, fileobj: IO[bytes], path: str, limits: Limits,
                 metadata: dict[str, str], entries: list[TensorEntry], verify: bool) -> None:
        super().__init__([TensorInfo(e.name, canonical_dtype(e.dtype), e.shape)
                          for e in entries], metadata)
        self._codec, self._file, self._path, self._limits = codec, fileobj, path, limits
        self._entries = {e.name: e for e in entries}
        self._verify = verify

    def read(self, name: str, *, mmap: bool = False) -> np.ndarray:
        return _decode(_Bytes(self._file, self._path), [self._entries[name]], self._verify)[0]


def _check_frame(data: Any, count: int, path: str, where: str) -> None:
    """Refuse a zstd plane whose frame does not declare exactly *count* bytes, before
    anything is decompressed."""
    try:
        declared = zstandard.get_frame_parameters(data).content_size
    except zstandard.ZstdError as e:
        raise FormatError(f"bad zstd frame header ({e})", path=path, field=where) from e
    if declared != count:
        raise FormatError(path=path, field=where,
                          expected=f"a zstd frame declaring {count:,} bytes",
                          found=f"{declared:,}" if declared != zstandard.CONTENTSIZE_UNKNOWN
                          else "a frame without its size")


def _read_exact(fileobj: IO[bytes], n: int, path: str, what: str, size: int | None) -> bytes:
    data = fileobj.read(n)
    if len(data) != n:
        extra = f" of a {size:,}-byte file" if size is not None else ""
        raise FormatError(f"EOF: reading {what}{extra}", path=path, field=what,
                          expected=f"{n:,} bytes", found=f"{len(data):,}")
    return data


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_header(doc: Any, path: str, limits: Limits,
                  data_end: int) -> tuple[dict[str, str], list[TensorEntry]]:
    if not isinstance(doc, dict) or set(doc) != _HEADER_KEYS:
        found = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        raise FormatError(path=path, field="header", expected=f"an object with keys "
                          f"{sorted(_HEADER_KEYS)}", found=found)
    metadata = doc["metadata"]
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise FormatError(path=path, field="header.metadata",
                          expected="an object of strings", found=metadata)
    tensors = doc["tensors"]
    if not isinstance(tensors, list):
        raise FormatError(path=path, field="header.tensors", expected="a list", found=tensors)
    if len(tensors) > limits.max_tensors:
        raise LimitError(path=path, field="header.tensors",
                         expected=f"at most {limits.max_tensors:,} tensors (Limits.max_tensors)",
                         found=f"{len(tensors):,}")
    entries = []
    offset = PREFIX_SIZE
    total = 0
    names: set[str] = set()
    for i, t in enumerate(tensors):
        entry = _parse_tensor(t, f"header.tensors[{i}]", path, limits, offset, data_end, total)
        if entry.name in names:
            raise FormatError(path=path, field=f"header.tensors[{i}].name",
                              expected="unique tensor names", found=f"{entry.name!r} twice")
        names.add(entry.name)
        total += entry.count * canonical_dtype(entry.dtype).itemsize
        offset += entry.stored_size
        entries.append(entry)
    if offset != data_end:
        raise FormatError(path=path, field="data section",
                          expected=f"tensors ending where the header starts, at {data_end:,}",
                          found=f"they end at {offset:,}")
    return metadata, entries


def _parse_tensor(t: Any, where: str, path: str, limits: Limits, offset: int, data_end: int,
                  total: int) -> TensorEntry:
    if not isinstance(t, dict) or set(t) != _TENSOR_KEYS:
        found = sorted(t) if isinstance(t, dict) else type(t).__name__
        raise FormatError(path=path, field=where,
                          expected=f"an object with keys {sorted(_TENSOR_KEYS)}", found=found)
    name = t["name"]
    if not isinstance(name, str) or not name:
        raise FormatError(path=path, field=f"{where}.name", expected="a non-empty string",
                          found=name)
    where = f"tensor {name!r}"
    dtype_str = t["dtype"]
    if not isinstance(dtype_str, str):
        raise FormatError(path=path, field=f"{where} dtype", expected="a string", found=dtype_str)
    if dtype_str not in _DTYPE_NAMES:
        raise FormatError(path=path, field=f"{where} dtype",
                          expected="bool, (u)int8-64, float16/32/64 or bfloat16", found=dtype_str)
    itemsize = canonical_dtype(dtype_str).itemsize  # bfloat16 without ml_dtypes raises here
    shape = t["shape"]
    check_shape(shape, path=path, field=f"{where} shape")
    count = 1
    for d in shape:
        count *= d
    limits.check_tensor(path, name, count * itemsize, total)
    if not _is_int(t["offset"]) or t["offset"] != offset:
        raise FormatError(path=path, field=f"{where} offset",
                          expected=f"{offset:,} (where the previous tensor ends)",
                          found=t["offset"])
    crc = t["crc32"]
    if not _is_int(crc) or not 0 <= crc < 1 << 32:
        raise FormatError(path=path, field=f"{where} crc32",
                          expected="an integer from 0 to 2**32 - 1", found=crc)
    planes = t["planes"]
    if not isinstance(planes, list) or len(planes) != itemsize:
        raise FormatError(path=path, field=f"{where} planes",
                          expected=f"a list of {itemsize} planes for {dtype_str}",
                          found=planes)
    parsed = []
    end = offset
    for i, plane in enumerate(planes):
        pwhere = f"{where} plane {i}"
        if (not isinstance(plane, list) or len(plane) != 2 or plane[0] not in (RAW, ZSTD)
                or not _is_int(plane[1]) or plane[1] < 0):
            raise FormatError(path=path, field=pwhere,
                              expected='["raw" or "zstd", a size in bytes]', found=plane)
        method, stored = plane
        if method == RAW and stored != count:
            raise FormatError(path=path, field=pwhere,
                              expected=f"{count:,} raw bytes (one per value)", found=stored)
        if method == ZSTD and count > limits.max_output(stored):
            raise LimitError(path=path, field=pwhere,
                             expected=f"at most {limits.max_output(stored):,} bytes from "
                             f"{stored:,} compressed (Limits.max_expansion)",
                             found=f"{count:,} bytes")
        end += stored
        if end > data_end:
            raise FormatError(path=path, field=pwhere,
                              expected=f"to end within the data section (at {data_end:,})",
                              found=f"ends at {end:,}")
        parsed.append((method, stored))
    return TensorEntry(name, dtype_str, tuple(shape), offset, crc, tuple(parsed))

