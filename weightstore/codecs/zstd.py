"""zstd: Zstandard compression as a layer over any other codec's bytes.

``w.json.zst`` is exactly ``zstd`` applied to ``w.json``: the ``zstd`` command
line restores a file that the inner codec reads (``zstd -d w.json.zst``). The
inner codec comes from the ``inner`` option, else from the name (``.json.zst``),
else it is ``npz``; on reading, the decompressed content decides (content beats
the name), then the name. Options other than ``inner``, ``level`` and
``threads`` pass through to the inner codec (``compression=gzip`` for HDF5).

Files are written in the zstd *seekable format* (see :mod:`._seekable`):
independent frames of ``frame_size`` bytes of content (128 KiB unless given) and a
seek table in a skippable frame, which ``zstd -d`` passes over. When a streaming inner
codec (npz) takes a tensor of at least one frame, the frame ends there and the next
holds only 4 KiB (``HEADER_FRAME``): that tensor's header then sits in a small frame of
its own, which is all that opening the file decompresses for it. Data above 32 MiB
is compressed on every core (frames in parallel) unless ``threads`` is given;
``frame_size=0`` writes one frame (zstd's own multi-threaded mode), as before.
:meth:`ZstdCodec.open` on a seekable file whose inner codec reads by offset (npz
with stored members, safetensors, wsc, npy) reads one tensor by decompressing only
the frames spanning its bytes; on any other file it decompresses into an unnamed
temporary file and opens the inner codec there, so memory stays bounded by what
the inner codec holds.

Frames are written with the content size and a checksum of the content, so a
damaged file is detected. Decompression is bounded: a frame that declares, or
expands to, more than :meth:`Limits.max_output` of the file's size is refused
before the memory is taken.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
from typing import IO, Any, NamedTuple

import numpy as np
import zstandard

from ..codec import DEFAULT_LIMITS, Budget, Codec, Limits, Option, TensorSource
from ..errors import ChecksumError, FormatError, LimitError, UnknownFormatError
from ..model import Weights
from ..progress import reporting
from ..registry import SNIFF_BYTES, get_codec, sniff
from ..sniffing import ZSTD_MAGIC
from ._seekable import (
    MAX_FRAME_SIZE,
    SeekableReader,
    SeekableWriter,
    check_table,
    read_seek_table,
)

MAGIC = ZSTD_MAGIC
DEFAULT_INNER = "npz"
_CHUNK = 1 << 20
#: Data above this size is compressed on every core unless ``threads`` says otherwise.
_MT_BYTES = 32 << 20
#: Content bytes per frame: small enough that reading one tensor decompresses little
#: beyond it (and opening an npz decompresses little beside each member's header), large
#: enough that the frames cost next to nothing in size. 128 KiB is zstd's largest block:
#: on a 1 GiB float32 model the file is the size it is with 256 KiB frames (-0.0003%);
#: 64 KiB frames cost +0.03% (benchmarks/scale.py's model, level 3).
DEFAULT_FRAME_SIZE = 128 << 10
#: Content bytes of the frame that starts at a large tensor's header (see
#: _CutBeforeLargeTensors): an npz member's local and .npy headers take about 250.
HEADER_FRAME = 4 << 10


class _Unseekable(io.RawIOBase):
    """A write-only stream whose ``tell`` counts the bytes written into it.

    zstandard's writer reports the compressed position; zip writers need the
    uncompressed one, and must see that they cannot seek.
    """

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        n = self._raw.write(data)
        self._pos += len(memoryview(data).cast("B"))
        return n if n is not None else 0

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        self._raw.flush()


class Frame(NamedTuple):
    """A zstd frame found by :func:`walk_frames`."""

    start: int
    end: int
    content_size: int | None


_SKIPPABLE = range(0x184D2A50, 0x184D2A60)
_BLOCK_MAX = 128 * 1024


def walk_frames(fileobj: IO[bytes], size: int, path: str) -> list[Frame]:
    """The frames of a zstd file, from their headers and block headers (RFC 8878).

    Refuses a file that does not start with a frame, a header or block that runs
    past the end of the file (truncation), a reserved block type or bit, and bytes
    after the last frame that are not another frame.
    """
    frames: list[Frame] = []
    pos = 0

    def need(n: int, what: str) -> bytes:
        fileobj.seek(pos)
        data = fileobj.read(n)
        if len(data) < n:
            raise FormatError(path=path, field=f"zstd frame at byte {frames_start}",
                              expected=f"{what} ({n} bytes at byte {pos:,})",
                              found=f"the end of the file at byte {size:,} (truncated)")
        return data

    while pos < size or not frames:
        frames_start = pos
        (magic,) = struct.unpack("<I", need(4, "a frame's magic number"))
        pos += 4
        if magic in _SKIPPABLE:
            (skip,) = struct.unpack("<I", need(4, "a skippable frame's size"))
            pos += 4 + skip
            if pos > size:
                raise FormatError(path=path, field=f"skippable frame at byte {frames_start}",
                                  expected=f"{skip:,} bytes", found="fewer (truncated)")
            frames.append(Frame(frames_start, pos, 0))
            continue
        if magic != int.from_bytes(MAGIC, "little"):
            raise FormatError(path=path, field=f"byte {frames_start:,}",
                              expected="a zstd frame (magic 28 b5 2f fd)",
                              found=struct.pack("<I", magic).hex(" "))
        (descriptor,) = need(1, "the frame header descriptor")
        pos += 1
        if descriptor & 0x08:
            raise FormatError(path=path, field=f"zstd frame at byte {frames_start} descriptor",
                              expected="the reserved bit clear", found=f"0x{descriptor:02x}")
        fcs_flag, single, checksum = descriptor >> 6, descriptor & 0x20, descriptor & 0x04
        header = (0 if single else 1) + (0, 1, 2, 4)[descriptor & 0x03]
        fcs_size = (1 if single else 0, 2, 4, 8)[fcs_flag]
        fields = need(header + fcs_size, "the frame header")
        pos += header + fcs_size
        content: int | None = None
        if fcs_size:
            content = int.from_bytes(fields[header:], "little") + (256 if fcs_size == 2 else 0)
        while True:
            (block,) = struct.unpack("<I", need(3, "a block header") + b"\0")
            pos += 3
            kind, length = (block >> 1) & 3, block >> 3
            if kind == 3 or length > _BLOCK_MAX:
                raise FormatError(path=path, field=f"zstd block at byte {pos - 3:,}",
                                  expected="a raw, RLE or compressed block of at most 128 KiB",
                                  found=f"type {kind}, {length:,} bytes")
            pos += 1 if kind == 1 else length
            if pos > size:
                raise FormatError(path=path, field=f"zstd block at byte {pos - length - 3:,}",
                                  expected=f"{length:,} bytes of data",
                                  found=f"the end of the file at byte {size:,} (truncated)")
            if block & 1:
                break
        if checksum:
            need(4, "the frame's content checksum")
            pos += 4
        frames.append(Frame(frames_start, pos, content))
    return frames


class ZstdCodec(Codec):
    """Zstandard over another codec's file: ``.json.zst``, ``.csv.zst``, ``.npz.zst``, ..."""

    name = "zstd"
    extensions = (".zst", ".zstd")
    #: The frame's content checksum (XXH64), always verified: the zstandard binding
    #: offers no switch, so ``verify=False`` reaches only the inner codec.
    checksums = True
    description = "Zstandard layer over any codec (w.json.zst, w.npz.zst); zstd -d restores it"
    layer = True
    options = (
        Option("inner", str, None, f"codec inside (default: from the name, else {DEFAULT_INNER})"),
        Option("level", int, 3, "compression level (1 fast .. 19 small; up to 22)", min=-7,
               max=22),
        Option("threads", int, None, "worker threads (0 = single-threaded, -1 = all cores; "
               f"default: all cores above {_MT_BYTES >> 20} MiB of data)", min=-1, max=256),
        Option("frame_size", int, DEFAULT_FRAME_SIZE,
               "content bytes per independent frame of the seekable format "
               "(0 = one frame, no seek table)", min=0, max=MAX_FRAME_SIZE),
    )
    level: int
    threads: int | None
    frame_size: int

    def __init__(self, **options: Any) -> None:
        own = {o.name for o in self.options}
        self.inner_options = {k: v for k, v in options.items() if k not in own}
        super().__init__(**{k: v for k, v in options.items() if k in own})
        inner_cls = get_codec(self.inner or DEFAULT_INNER)
        if inner_cls.layer:
            raise UnknownFormatError(field=f"{self.name} option 'inner'",
                                     expected="a codec that is not itself a layer",
                                     found=self.inner)
        if self.inner is not None:
            self.inner = inner_cls.name
        inner = inner_cls(**self.inner_options)  # validate the pass-through options now
        #: A layer streams when its inner codec does (an inner needing seeks spools to disk).
        self.streams_writes = inner.streams_writes

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self.inner_options}

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return head.startswith(MAGIC)

    def _inner_codec(self) -> Codec:
        return get_codec(self.inner or DEFAULT_INNER)(**self.inner_options)

    def write(self, weights: Weights, fileobj: IO[bytes], *, path: str) -> None:
        inner = self._inner_codec()
        threads = self.threads
        if threads is None:
            size = int(getattr(weights, "nbytes", 0))  # Weights and LazyWeights know it
            threads = -1 if size > _MT_BYTES else 0
        if self.frame_size:
            self._write_seekable(inner, weights, fileobj, path, threads)
            return
        cctx = zstandard.ZstdCompressor(level=self.level, threads=threads,
                                   write_checksum=True, write_content_size=True)
        if inner.needs_seekable_output:
            with tempfile.TemporaryFile(dir=os.path.dirname(path) or None) as tmp:
                inner.write(weights, tmp, path=path)
                size = tmp.seek(0, io.SEEK_END)
                tmp.seek(0)
                cctx.copy_stream(tmp, fileobj, size=size)
        else:
            with cctx.stream_writer(fileobj, closefd=False) as writer:
                inner.write(weights, _Unseekable(writer), path=path)

    def _write_seekable(self, inner: Codec, weights: Weights, fileobj: IO[bytes], path: str,
                        threads: int) -> None:
        writer = SeekableWriter(fileobj, level=self.level, frame_size=self.frame_size,
                                threads=threads)
        if inner.needs_seekable_output:
            with tempfile.TemporaryFile(dir=os.path.dirname(path) or None) as tmp:
                inner.write(weights, tmp, path=path)
                tmp.seek(0)
                while chunk := tmp.read(_CHUNK * 8):
                    writer.write(chunk)
        else:
            cutting = reporting(weights, _CutBeforeLargeTensors(writer, self.frame_size))
            inner.write(cutting, _Unseekable(writer), path=path)
        writer.close()

    def decompress(self, fileobj: IO[bytes], path: str, limits: Limits,
                   out: IO[bytes] | None = None, budget: Budget | None = None) -> IO[bytes]:
        """The whole decompressed content, refusing more than the limits allow: in memory,
        or written into *out* (a seekable binary file) when given.

        The frames are walked first (headers and block headers only), so a file cut
        short or a block running past the end is refused before anything is
        decompressed, and so is a declared content size beyond the limits. Then the
        content is read in bounded pieces: at most the limit plus one piece is ever
        held, however well the data compresses (a 4-byte block can stand for 128 KiB).

        Every piece is charged to *budget* before it is kept: as decompressed output
        (shared by all layers and shards of the operation, see
        :class:`~weightstore.codec.Budget`), and as memory, or temporary disk with *out*.
        """
        size = fileobj.seek(0, io.SEEK_END)
        budget = Budget.of(budget, limits)
        budget.add_compressed(size)
        limit = budget.allowance() - budget.expanded
        frames = walk_frames(fileobj, size, path)
        # A seek table is the file's last frame, a skippable one: bytes that only look like
        # a table's footer (the end of a zstd file stored raw inside another) are content.
        table = (read_seek_table(fileobj, size, path, limits)
                 if _ends_in_skippable_frame(fileobj, frames) else None)
        if table is not None:  # damage to the table is found on a full read too
            check_table(table, frames, path)
        declared = [f.content_size for f in frames if f.content_size is not None]
        if sum(declared) > limit:
            raise LimitError(path=path, field="zstd frame content size",
                             expected=f"at most {limit:,} bytes from {size:,} compressed "
                             "(Limits.max_expansion, Limits.max_total_bytes)",
                             found=f"{sum(declared):,} bytes declared")
        spooled = out is not None
        if out is None:
            out = io.BytesIO()
        fileobj.seek(0)
        reader = zstandard.ZstdDecompressor().stream_reader(fileobj, read_across_frames=True,
                                                       closefd=False)
        try:
            self.copy_bounded(reader, out, limit, size, path, budget, spooled)
        except zstandard.ZstdError as e:
            if "checksum" in str(e):
                raise ChecksumError(path=path, field="zstd content",
                                    expected="data matching the frame's checksum",
                                    found="a mismatch (the file is damaged)") from e
            raise FormatError(f"corrupted zstd data ({e})", path=path) from e
        if len(declared) == len(frames) and out.tell() != sum(declared):
            raise FormatError(path=path, field="zstd content",
                              expected=f"{sum(declared):,} bytes as declared",
                              found=f"{out.tell():,} bytes")
        out.seek(0)
        return out

    def copy_bounded(self, reader: Any, out: IO[bytes], limit: int, size: int,
                     path: str, budget: Budget, spooled: bool) -> None:
        """Copy decompressed *reader* into *out* in pieces, refusing more than *limit*
        bytes (from *size* compressed) before keeping a piece beyond it. Each piece is
        charged to *budget* before it is kept: as decompressed output, and as memory,
        or temporary disk when *spooled*."""
        what = f"{self.name} content"
        while True:
            chunk = reader.read(min(_CHUNK, limit + 1 - out.tell()))
            if not chunk:
                return
            if out.tell() + len(chunk) > limit:
                raise LimitError(
                    path=path, field=what,
                    expected=f"at most {limit:,} bytes from {size:,} compressed "
                    "(Limits.max_expansion, Limits.max_total_bytes)",
                    found=f"more than {limit:,} bytes",
                )
            budget.expand(len(chunk), path=path, field=what)
            if spooled:
                budget.spool(len(chunk), path=path, field=f"{what} on temporary disk")
            else:
                budget.take(len(chunk), path=path, field=f"{what} in memory")
            out.write(chunk)

    def inner_for(self, content: IO[bytes], path: str) -> Codec:
        """The codec for decompressed *content*: by its bytes, else by the name."""
        head = content.read(SNIFF_BYTES)
        content.seek(0)
        cls = sniff(head)
        if cls is not None and cls.layer:
            raise FormatError(path=path, field=f"{self.name} content",
                              expected="another codec's file",
                              found=f"{cls.name} inside {self.name}")
        if cls is None:
            if self.inner is None:
                raise UnknownFormatError(
                    path=path, field=f"{self.name} content",
                    expected="a file of a known format inside", found=f"first bytes {head[:16]!r}",
                    hint=f"name it like w.json{self.extensions[0]} or pass inner=FORMAT",
                )
            return self._inner_codec()
        return cls(**self.inner_options) if cls.name == self.inner else cls()

    def read(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS,
             verify: bool = True, budget: Budget | None = None) -> Weights:
        budget = Budget.of(budget, limits, fileobj)
        content = self.decompress(fileobj, path, limits, budget=budget)
        return self.inner_for(content, path).read(content, path=path, limits=limits,
                                                  verify=verify, budget=budget)

    def open(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS,
             verify: bool = True, budget: Budget | None = None) -> TensorSource:
        """A seekable file whose inner codec reads by offset: that codec opened on a view
        of the content that decompresses only the frames each read spans. Any other:
        decompress into an unnamed temporary file (disk, not memory), then open the inner
        codec's file there: its tensors are read one at a time as the inner codec allows."""
        size = fileobj.seek(0, io.SEEK_END)
        try:
            table = read_seek_table(fileobj, size, path, limits)
        except FormatError:  # not a table after all, or a damaged one: the full path below
            table = None    # walks the frames and tells which (see decompress)
        budget = Budget.of(budget, limits, fileobj)
        if table is not None:
            reader = SeekableReader(fileobj, table, path)
            try:
                inner = self.inner_for(reader, path)
                if inner.opens_lazily():
                    # the whole content is what the frames declare: charged as decompressed
                    # output up front, though a read decompresses only the frames it spans
                    budget.add_compressed(size)
                    budget.expand(table.content_size, path=path, field="zstd content")
                    reader.seek(0)
                    source = inner.open(reader, path=path, limits=limits, verify=verify,
                                        budget=budget)
                    return _SpooledSource(source, reader)
            except BaseException:
                reader.close()
                raise
            reader.close()
        tmp = tempfile.TemporaryFile()  # noqa: SIM115  (closed with the source)
        try:
            content = self.decompress(fileobj, path, limits, out=tmp, budget=budget)
            inner = self.inner_for(content, path)
            source = inner.open(content, path=path, limits=limits, verify=verify,
                                budget=budget)
        except BaseException:
            tmp.close()
            raise
        return _SpooledSource(source, tmp)


class _CutBeforeLargeTensors:
    """A progress callback (see :func:`~weightstore.progress.reporting`) that ends the
    frame when a streaming inner codec takes a tensor of at least one frame, before it
    writes that tensor's header (npz: the member's local header and .npy header), and
    makes the next frame :data:`HEADER_FRAME` bytes: opening the file then decompresses
    that small frame for each large tensor's header, not a whole frame of data."""

    def __init__(self, writer: SeekableWriter, frame_size: int) -> None:
        self._writer, self._frame_size, self._done = writer, frame_size, 0

    def __call__(self, done: int, total: int) -> None:
        size, self._done = done - self._done, done
        if size >= self._frame_size:
            self._writer.cut(HEADER_FRAME)


def _ends_in_skippable_frame(fileobj: IO[bytes], frames: list[Frame]) -> bool:
    """Whether the last of *frames* is a skippable frame (where a seek table lives)."""
    if not frames:
        return False
    fileobj.seek(frames[-1].start)
    head = fileobj.read(4)
    return len(head) == 4 and int.from_bytes(head, "little") in _SKIPPABLE


class _SpooledSource(TensorSource):
    """An inner codec's source over a file (a temporary one, or a view of the frames) that
    closes with it."""

    def __init__(self, inner: TensorSource, tmp: IO[bytes]) -> None:
        super().__init__(inner.tensors, inner.metadata)
        self.lazy = inner.lazy
        self._inner, self._tmp = inner, tmp

    def read(self, name: str, *, mmap: bool = False) -> np.ndarray:
        return self._inner.read(name, mmap=mmap)

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._tmp.close()
