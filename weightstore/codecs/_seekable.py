"""The Zstandard seekable format: independent frames and a seek table, for random access.

This is the layout of the zstd repository's ``contrib/seekable_format``
(``zstd_seekable_compression_format.md``), written and read here with the
``zstandard`` binding. The content is cut into pieces of ``frame_size`` bytes (the
last one shorter), each compressed as an ordinary, independent zstd frame that
declares its content size and carries its content checksum; after the last frame
comes the seek table, inside a *skippable* frame, which every zstd decoder passes
over: ``zstd -d`` restores the content byte for byte. All integers little-endian::

    size        field
    4           skippable frame magic 0x184D2A5E
    4           frame size: 8 * N + 9 (without these first 8 bytes)
    8 * N       one entry per frame, in order: compressed size (u32),
                decompressed size (u32)
    4           N, the number of frames
    1           descriptor: bit 7 set when every entry carries a third u32, the low
                32 bits of the frame content's XXH64 (this writer leaves it clear;
                the reader accepts such tables and relies on each frame's own checksum);
                bits 2-6 reserved (zero)
    4           seekable magic 0x8F92EAB1

A file read from the end finds the table in two small reads. Before anything is
allocated, the reader checks that N entries fit in the file, that the frames tile
the file exactly up to the table, that no frame decompresses to more than 1 GiB
(the limit of the reference implementation), that no frame is stored in more than
zstd's compress bound of its content (so a read loads about what it gives), and
that the whole content is within ``Limits.max_output`` of the file's size. Each
frame's header must then declare the size its entry gives, and decompressing it
must give exactly that many bytes with a matching checksum.

:class:`SeekableReader` is a read-only, seekable file over the decompressed
content that decompresses only the frames a read spans (several at once on
separate threads, as zstandard releases the GIL), so an inner codec that reads by
offset (npz with stored members, safetensors, wsc, npy) reads one tensor by
decompressing about that tensor's bytes. :class:`SeekableWriter` is the writing side:
frames are compressed on a pool of threads while the inner codec keeps writing.
"""

from __future__ import annotations

import collections
import io
import os
import stat
import struct
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any, NamedTuple

import numpy as np
import zstandard

from ..codec import Limits
from ..errors import ChecksumError, FormatError, LimitError
from ..sniffing import ZSTD_MAGIC

__all__ = ["SeekTable", "SeekableReader", "SeekableWriter", "read_seek_table", "check_table",
           "SEEKABLE_MAGIC", "SKIPPABLE_MAGIC", "MAX_FRAME_SIZE"]

SKIPPABLE_MAGIC = 0x184D2A5E
SEEKABLE_MAGIC = 0x8F92EAB1
_FOOTER = struct.Struct("<IBI")
_SKIP_HEADER = struct.Struct("<II")
#: Largest decompressed frame (ZSTD_SEEKABLE_MAX_FRAME_DECOMPRESSED_SIZE).
MAX_FRAME_SIZE = 1 << 30
#: Most frames in one table (ZSTD_SEEKABLE_MAXFRAMES).
MAX_FRAMES = 0x8000000
_CHECKSUM_FLAG = 0x80
_RESERVED_BITS = 0x7C
#: Decompressed frames kept for the next read (small reads of headers hit the same frame).
_CACHED_FRAMES = 4


def _workers(threads: int | None) -> int:
    """Worker threads for *threads* (None or -1: every core; 0: none, work inline)."""
    if threads is None or threads < 0:
        return os.cpu_count() or 1
    return threads


class SeekTable(NamedTuple):
    """Where each frame lies: frame ``i`` is compressed in bytes ``cstarts[i] ..
    cstarts[i + 1]`` of the file and decompresses to bytes ``dstarts[i] .. dstarts[i + 1]``
    of the content."""

    cstarts: np.ndarray
    dstarts: np.ndarray

    @property
    def frames(self) -> int:
        """Number of frames."""
        return len(self.cstarts) - 1

    @property
    def content_size(self) -> int:
        """Bytes of decompressed content."""
        return int(self.dstarts[-1])


def read_seek_table(fileobj: IO[bytes], size: int, path: str,
                    limits: Limits) -> SeekTable | None:
    """The seek table at the end of a zstd file of *size* bytes, or None when the file
    does not end with one (a plain zstd file). A table that is there but wrong raises
    :class:`FormatError` (or :class:`LimitError` for content beyond *limits*)."""
    if size < _FOOTER.size + _SKIP_HEADER.size:
        return None
    fileobj.seek(size - _FOOTER.size)
    footer = fileobj.read(_FOOTER.size)
    if len(footer) != _FOOTER.size:
        return None
    count, descriptor, magic = _FOOTER.unpack(footer)
    if magic != SEEKABLE_MAGIC:
        return None
    field = "zstd seek table"
    if descriptor & _RESERVED_BITS:
        raise FormatError(path=path, field=f"{field} descriptor",
                          expected="reserved bits 2-6 clear", found=f"0x{descriptor:02x}")
    entry = 12 if descriptor & _CHECKSUM_FLAG else 8
    table = count * entry + _FOOTER.size
    if count > MAX_FRAMES or count == 0 or table + _SKIP_HEADER.size > size:
        raise FormatError(path=path, field=f"{field} frame count",
                          expected=f"1 to {MAX_FRAMES:,} frames whose {entry}-byte entries fit "
                          f"in the file's {size:,} bytes", found=f"{count:,}")
    start = size - table - _SKIP_HEADER.size
    fileobj.seek(start)
    head = fileobj.read(_SKIP_HEADER.size + count * entry)
    if len(head) != _SKIP_HEADER.size + count * entry:
        raise FormatError(path=path, field=field, expected=f"{count * entry:,} bytes of entries",
                          found=f"{len(head):,} bytes")
    skip_magic, frame_size = _SKIP_HEADER.unpack_from(head)
    if skip_magic != SKIPPABLE_MAGIC or frame_size != table:
        raise FormatError(path=path, field=f"{field} frame header at byte {start:,}",
                          expected=f"skippable magic 0x{SKIPPABLE_MAGIC:08x} and size {table:,}",
                          found=f"0x{skip_magic:08x} and {frame_size:,}")
    entries = np.frombuffer(head, "<u4", offset=_SKIP_HEADER.size).reshape(count, entry // 4)
    csizes = entries[:, 0].astype(np.int64)
    dsizes = entries[:, 1].astype(np.int64)
    big = int(dsizes.max())
    if big > MAX_FRAME_SIZE:
        raise FormatError(path=path, field=f"{field} entry {int(dsizes.argmax())}",
                          expected=f"a frame of at most {MAX_FRAME_SIZE:,} bytes",
                          found=f"{big:,} bytes")
    # a frame is at least its magic, and never larger than ZSTD_compressBound of its
    # content plus slack for the header: a read then never loads much more than it gives
    bound = dsizes + (dsizes >> 8) + np.maximum((128 << 10) - dsizes, 0) // 2048 + 64
    bad = np.flatnonzero((csizes < 4) | (csizes > bound))
    if bad.size:
        i = int(bad[0])
        raise FormatError(path=path, field=f"{field} entry {i}",
                          expected=f"a compressed frame of 4 to {int(bound[i]):,} bytes for "
                          f"{int(dsizes[i]):,} bytes of content",
                          found=f"{int(csizes[i]):,} bytes")
    cstarts = np.zeros(count + 1, np.int64)
    np.cumsum(csizes, out=cstarts[1:])
    if int(cstarts[-1]) != start:
        raise FormatError(path=path, field=field,
                          expected=f"frames filling the file up to the table at byte {start:,}",
                          found=f"frames of {int(cstarts[-1]):,} bytes in all")
    dstarts = np.zeros(count + 1, np.int64)
    np.cumsum(dsizes, out=dstarts[1:])
    limit = limits.max_output(size)
    if int(dstarts[-1]) > limit:
        raise LimitError(path=path, field=f"{field} decompressed sizes",
                         expected=f"at most {limit:,} bytes from {size:,} compressed "
                         "(Limits.max_expansion, Limits.max_total_bytes)",
                         found=f"{int(dstarts[-1]):,} bytes")
    return SeekTable(cstarts, dstarts)


def check_table(table: SeekTable, frames: list[tuple[int, int, int | None]],
                path: str) -> None:
    """Refuse a seek table that disagrees with the *frames* found by walking the file
    (start, end, declared content size; the table's own skippable frame last)."""
    data = frames[:-1]
    stored = [(end - start, size) for start, end, size in data]
    csizes = np.diff(table.cstarts).tolist()
    dsizes = np.diff(table.dstarts).tolist()
    listed = list(zip(csizes, dsizes, strict=True))
    for i, ((c, d), (tc, td)) in enumerate(zip(stored, listed, strict=False)):
        if c != tc or d not in (td, None):
            raise FormatError(path=path, field=f"zstd seek table entry {i}",
                              expected=f"the frame found there: {c:,} bytes stored, "
                              f"{d if d is not None else 'undeclared'} of content",
                              found=f"{tc:,} stored, {td:,} of content")
    if len(stored) != len(listed):
        raise FormatError(path=path, field="zstd seek table frame count",
                          expected=f"{len(stored):,} (the frames in the file)",
                          found=f"{len(listed):,}")


_local = threading.local()


def _decompressor() -> Any:
    """This thread's decompressor (they are not thread-safe)."""
    dctx = getattr(_local, "dctx", None)
    if dctx is None:
        dctx = _local.dctx = zstandard.ZstdDecompressor()
    return dctx


def decompress_frame(data: Any, size: int, path: str, where: str,
                     out: memoryview | None = None) -> Any:
    """One frame's content, which must be exactly *size* bytes; its header's declared
    size is checked before anything is allocated. With *out* (a writable buffer of *size*
    bytes) the content is decompressed straight into it, and *out* is returned."""
    if data[:4] != ZSTD_MAGIC:
        raise FormatError(path=path, field=where, expected="a zstd frame (magic 28 b5 2f fd)",
                          found=bytes(data[:4]).hex(" "))
    try:
        declared = zstandard.get_frame_parameters(data).content_size
    except zstandard.ZstdError as e:
        raise FormatError(f"bad zstd frame header ({e})", path=path, field=where) from e
    if declared not in (size, zstandard.CONTENTSIZE_UNKNOWN):
        raise FormatError(path=path, field=where, expected=f"a frame of {size:,} bytes "
                          "as the seek table says", found=f"{declared:,} bytes declared")
    try:
        if out is None:
            got = _decompressor().decompress(data, max_output_size=size, allow_extra_data=False)
            n = len(got)
        else:
            got, n = out, _decompress_into(data, out)
    except zstandard.ZstdError as e:
        if "checksum" in str(e):
            raise ChecksumError(path=path, field=where,
                                expected="data matching the frame's checksum",
                                found="a mismatch (the file is damaged)") from e
        raise FormatError(f"corrupted zstd data ({e})", path=path, field=where) from e
    if n != size:
        raise FormatError(path=path, field=where, expected=f"{size:,} bytes",
                          found=f"{n:,} bytes" if n <= size else f"more than {size:,} bytes")
    return got


def _decompress_into(data: Any, out: memoryview) -> int:
    """Decompress the one frame in *data* into *out*: the bytes given (one more than
    ``len(out)`` when the frame holds more). The frame is read to its end, so its content
    checksum is checked."""
    reader = _decompressor().stream_reader(data, closefd=False)
    n = 0
    while n < len(out):
        got = reader.readinto(out[n:])
        if not got:
            return n
        n += got
    return n + len(reader.read(1))  # b"" at the frame's end, after the checksum


class SeekableReader(io.RawIOBase):
    """The decompressed content of a seekable zstd file as a read-only, seekable file:
    a read decompresses only the frames it spans (a few recent ones are kept)."""

    def __init__(self, fileobj: IO[bytes], table: SeekTable, path: str,
                 threads: int | None = None) -> None:
        super().__init__()
        self._file, self._table, self._path = fileobj, table, path
        self._pos = 0
        self._size = table.content_size
        self._cache: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self._workers = _workers(threads)
        self._pool: ThreadPoolExecutor | None = None
        #: A local file's descriptor: worker threads then read their own frames with
        #: ``preadv`` (into :attr:`_buffers`, one reused buffer per thread) beside
        #: decompressing them, instead of this thread reading them all first.
        self._fd = _local_fd(fileobj)
        self._buffers = threading.local()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def _compressed(self, first: int, last: int) -> memoryview:
        """The stored bytes of frames *first* .. *last* (inclusive), in one read."""
        cstarts = self._table.cstarts
        lo, hi = int(cstarts[first]), int(cstarts[last + 1])
        if self._fd is not None and first == last:
            return self._pread(lo, hi, first)
        self._file.seek(lo)
        blob = memoryview(self._file.read(hi - lo))
        if len(blob) != hi - lo:
            self._truncated(first, lo, hi, len(blob))
        return blob

    def _pread(self, lo: int, hi: int, i: int) -> memoryview:
        """File bytes *lo* .. *hi* (frame *i*) in this thread's reused buffer (a local
        file: :attr:`_fd` is set)."""
        fd = self._fd if self._fd is not None else self._file.fileno()
        buf = getattr(self._buffers, "buf", None)
        if buf is None or len(buf) < hi - lo:
            buf = self._buffers.buf = bytearray(hi - lo)
        view = memoryview(buf)[:hi - lo]
        got = 0
        while got < hi - lo:
            n = os.preadv(fd, [view[got:]], lo + got)
            if n <= 0:
                self._truncated(i, lo, hi, got)
            got += n
        return view

    def _truncated(self, i: int, lo: int, hi: int, got: int) -> None:
        raise FormatError(path=self._path, field=f"zstd frame {i}",
                          expected=f"{hi - lo:,} bytes at byte {lo:,}",
                          found=f"{got:,} (the file ends there)")

    def _where(self, i: int) -> str:
        return f"zstd frame {i} at byte {int(self._table.cstarts[i]):,}"

    def _content_of(self, i: int) -> int:
        """Bytes of content in frame *i*."""
        dstarts = self._table.dstarts
        return int(dstarts[i + 1] - dstarts[i])

    def _cached(self, i: int) -> bytes:
        """Frame *i*, from the cache or decompressed into it."""
        content = self._cache.get(i)
        if content is None:
            content = decompress_frame(self._compressed(i, i), self._content_of(i), self._path,
                                       self._where(i))
            self._cache[i] = content
            while len(self._cache) > _CACHED_FRAMES:
                self._cache.popitem(last=False)
        self._cache.move_to_end(i)
        return content

    def _fill(self, view: memoryview, pos: int, first: int, last: int,
              blob: memoryview | None, base: int) -> None:
        """Frames *first* .. *last*, which *view* (content from byte *pos*) covers whole,
        decompressed straight into their place in it: their stored bytes read here with
        ``preadv``, or taken from *blob* (stored bytes from file byte *base*). Safe on
        several threads at once."""
        cstarts, dstarts = self._table.cstarts, self._table.dstarts
        for i in range(first, last + 1):
            lo, hi = int(cstarts[i]), int(cstarts[i + 1])
            piece = self._pread(lo, hi, i) if blob is None else blob[lo - base:hi - base]
            at, size = int(dstarts[i]) - pos, self._content_of(i)
            decompress_frame(piece, size, self._path, self._where(i), out=view[at:at + size])

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), self._size - self._pos)
        if n <= 0:
            return 0
        dstarts = self._table.dstarts
        pos, end = self._pos, self._pos + n
        view = view[:n]
        first = int(np.searchsorted(dstarts, pos, "right")) - 1
        last = int(np.searchsorted(dstarts, end - 1, "right")) - 1
        # a frame at either end wanted in part goes through the cache (small reads of
        # headers hit the same frame); frames wanted whole are decompressed into place
        lo, hi = first, last
        if int(dstarts[first]) < pos or int(dstarts[first + 1]) > end:
            self._copy_part(view, pos, end, first)
            lo += 1
        if last >= lo and int(dstarts[last + 1]) > end:
            self._copy_part(view, pos, end, last)
            hi -= 1
        if hi >= lo:
            self._fill_whole(view, pos, lo, hi)
        self._pos = end
        return n

    def _copy_part(self, view: memoryview, pos: int, end: int, i: int) -> None:
        """The part of frame *i* within content bytes *pos* .. *end*, into *view*."""
        content = self._cached(i)
        start = int(self._table.dstarts[i])
        a, b = max(pos, start), min(end, start + len(content))
        view[a - pos:b - pos] = content[a - start:b - start]

    def _fill_whole(self, view: memoryview, pos: int, first: int, last: int) -> None:
        """Frames *first* .. *last* (wanted whole) into *view*, on the worker threads."""
        blob, base = None, 0
        if self._fd is None:  # one read on this thread (a remote file: one request)
            blob, base = self._compressed(first, last), int(self._table.cstarts[first])
        workers = max(1, min(self._workers, last - first + 1))
        if workers == 1:
            self._fill(view, pos, first, last, blob, base)
            return
        bounds = np.linspace(first, last + 1, workers + 1).round().astype(int)
        jobs = [(view, pos, int(a), int(b) - 1, blob, base)
                for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers)
        for _ in self._pool.map(lambda job: self._fill(*job), jobs):
            pass

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        self._cache.clear()
        self._buffers = threading.local()
        super().close()


def _local_fd(fileobj: IO[bytes]) -> int | None:
    """The descriptor of *fileobj* when it is a local regular file read as it is (not a
    wrapper whose ``fileno`` belongs to another stream), else None."""
    raw = getattr(fileobj, "raw", fileobj)
    if not isinstance(raw, io.FileIO):
        return None
    try:
        fd = raw.fileno()
        return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except (OSError, ValueError):
        return None


class SeekableWriter:
    """Writes content given in any pieces as frames of *frame_size* bytes compressed at
    *level* (on *threads* worker threads: 0 for none), then the seek table on
    :meth:`close`. Only ``write``, ``flush`` and ``close``: it cannot seek."""

    def __init__(self, fileobj: IO[bytes], *, level: int, frame_size: int,
                 threads: int | None) -> None:
        if not 1 <= frame_size <= MAX_FRAME_SIZE:
            raise ValueError(f"frame_size {frame_size} outside 1 .. {MAX_FRAME_SIZE}")
        self._file, self._level, self._frame_size = fileobj, level, frame_size
        #: Content bytes the frame being filled may hold (see :meth:`cut`).
        self._limit = frame_size
        self._buf = bytearray()
        self._entries: list[tuple[int, int]] = []
        workers = _workers(threads)
        self._pool = ThreadPoolExecutor(workers) if workers > 1 else None
        self._pending: collections.deque[tuple[Future[bytes], int]] = collections.deque()
        self._max_pending = 2 * workers

    def _compress(self, data: bytes) -> bytes:
        cctx = getattr(_local, "cctx", None)
        if cctx is None or _local.level != self._level:
            cctx = _local.cctx = zstandard.ZstdCompressor(
                level=self._level, write_checksum=True, write_content_size=True)
            _local.level = self._level
        return cctx.compress(data)

    def _emit(self, frame: bytes, size: int) -> None:
        self._file.write(frame)
        self._entries.append((len(frame), size))

    def _submit(self, data: bytes) -> None:
        self._limit = self._frame_size  # the frame after a short one is whole again
        if self._pool is None:
            self._emit(self._compress(data), len(data))
            return
        self._pending.append((self._pool.submit(self._compress, data), len(data)))
        while len(self._pending) > self._max_pending:
            self._drain_one()

    def _drain_one(self) -> None:
        future, size = self._pending.popleft()
        self._emit(future.result(), size)

    def cut(self, next_frame: int | None = None) -> None:
        """End the frame here: what is buffered becomes a frame, however short. With
        *next_frame*, the frame after it holds at most that many bytes (then frames of
        ``frame_size`` again): a small frame for a header that is read on its own."""
        if self._buf:
            self._submit(bytes(self._buf))
            self._buf = bytearray()
        if next_frame is not None:
            self._limit = max(1, min(next_frame, self._frame_size))

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        n, i = len(view), 0
        while i < n:
            take = min(self._limit - len(self._buf), n - i)
            if not self._buf and take == self._limit:  # a whole frame, straight from data
                self._submit(bytes(view[i:i + take]))
            else:
                self._buf += view[i:i + take]
                if len(self._buf) == self._limit:
                    self._submit(bytes(self._buf))
                    self._buf = bytearray()
            i += take
        return n

    def flush(self) -> None:
        """Nothing to do: frames are written as they are compressed."""

    def close(self) -> None:
        """Compress what is left, write the seek table and stop the threads."""
        try:
            if self._buf or not self._entries and not self._pending:
                self._submit(bytes(self._buf))
                self._buf = bytearray()
            while self._pending:
                self._drain_one()
            entries = np.array(self._entries, dtype="<u4").reshape(-1, 2)
            body = entries.tobytes() + _FOOTER.pack(len(self._entries), 0, SEEKABLE_MAGIC)
            self._file.write(_SKIP_HEADER.pack(SKIPPABLE_MAGIC, len(body)) + body)
        finally:
            if self._pool is not None:
                self._pool.shutdown()
