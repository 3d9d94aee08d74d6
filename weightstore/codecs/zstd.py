"""zstd: Zstandard compression as a layer over any other codec's bytes.

``w.json.zst`` is exactly ``zstd`` applied to ``w.json``: the ``zstd`` command
line restores a file that the inner codec reads (``zstd -d w.json.zst``). The
inner codec comes from the ``inner`` option, else from the name (``.json.zst``),
else it is ``npz``; on reading, the decompressed content decides (content beats
the name), then the name. Options other than ``inner``, ``level`` and
``threads`` pass through to the inner codec (``compression=gzip`` for HDF5).

Frames are written with the content size and a checksum of the content, so a
damaged file is detected. Decompression is bounded: a frame that declares, or
expands to, more than :meth:`Limits.max_output` of the file's size is refused
before the memory is taken.
"""

from __future__ import annotations

import io
import os
import tempfile
from typing import IO, Any

from ..codec import DEFAULT_LIMITS, Codec, Limits, Option
from ..errors import FormatError, LimitError, UnknownFormatError
from ..model import Weights
from ..registry import SNIFF_BYTES, get_codec, register, sniff

MAGIC = b"\x28\xb5\x2f\xfd"
DEFAULT_INNER = "npz"
_CHUNK = 1 << 20
_MAX_BLOCK_RATIO = 32768


def _zstd() -> Any:
    import zstandard

    return zstandard


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


@register
class ZstdCodec(Codec):
    """Zstandard over another codec's file: ``.json.zst``, ``.csv.zst``, ``.npz.zst``, ..."""

    name = "zstd"
    extensions = (".zst", ".zstd")
    description = "Zstandard layer over any codec (w.json.zst, w.npz.zst); zstd -d restores it"
    layer = True
    options = (
        Option("inner", str, None, f"codec inside (default: from the name, else {DEFAULT_INNER})"),
        Option("level", int, 3, "compression level (1 fast .. 19 small; up to 22)", min=-7,
               max=22),
        Option("threads", int, 0, "worker threads (0 = single-threaded, -1 = all cores)",
               min=-1, max=256),
    )

    def __init__(self, **options: Any) -> None:
        own = {o.name for o in self.options}
        self.inner_options = {k: v for k, v in options.items() if k not in own}
        super().__init__(**{k: v for k, v in options.items() if k in own})
        inner_cls = get_codec(self.inner or DEFAULT_INNER)  # type: ignore[attr-defined]
        if getattr(inner_cls, "layer", False):
            raise UnknownFormatError(field="zstd option 'inner'",
                                     expected="a codec that is not itself a layer",
                                     found=self.inner)  # type: ignore[attr-defined]
        if self.inner is not None:  # type: ignore[attr-defined]
            self.inner = inner_cls.name
        inner_cls(**self.inner_options)  # validate the pass-through options now

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self.inner_options}

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return head.startswith(MAGIC)

    def _inner_codec(self) -> Codec:
        return get_codec(self.inner or DEFAULT_INNER)(**self.inner_options)  # type: ignore[attr-defined]

    def write(self, weights: Weights, fileobj: IO[bytes], *, path: str) -> None:
        zstd = _zstd()
        inner = self._inner_codec()
        cctx = zstd.ZstdCompressor(level=self.level, threads=self.threads,  # type: ignore[attr-defined]
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

    def decompress(self, fileobj: IO[bytes], path: str, limits: Limits) -> io.BytesIO:
        """The whole decompressed content, refusing more than the limits allow."""
        zstd = _zstd()
        fileobj.seek(0, io.SEEK_END)
        size = fileobj.tell()
        fileobj.seek(0)
        limit = limits.max_output(size)
        head = fileobj.read(18)
        fileobj.seek(0)
        try:
            declared = zstd.get_frame_parameters(head).content_size
        except zstd.ZstdError as e:
            raise FormatError(f"bad zstd frame header ({e})", path=path) from e
        if declared != zstd.CONTENTSIZE_UNKNOWN and declared > limit:
            raise LimitError(path=path, field="zstd frame content size",
                             expected=f"at most {limit:,} bytes from {size:,} compressed "
                             "(Limits.max_expansion, Limits.max_total_bytes)",
                             found=f"{declared:,} bytes declared")
        out = io.BytesIO()
        dobj = zstd.ZstdDecompressor().decompressobj()
        finished = False
        try:
            while True:
                # Feed little enough that one call cannot overshoot the limit by much:
                # a zstd block expands at most ~32,768x (a 4-byte RLE block of 128 KiB).
                room = max(0, limit - out.tell())
                chunk = fileobj.read(min(_CHUNK, max(512, room // _MAX_BLOCK_RATIO)))
                if not chunk:
                    break
                while chunk:
                    out.write(dobj.decompress(chunk))
                    chunk = b""
                    if dobj.eof:  # another frame may follow (zstd allows concatenation)
                        chunk = dobj.unused_data
                        dobj = zstd.ZstdDecompressor().decompressobj()
                        finished = not chunk
                    else:
                        finished = False
                    if out.tell() > limit:
                        raise LimitError(
                            path=path, field="zstd content",
                            expected=f"at most {limit:,} bytes from {size:,} compressed "
                            "(Limits.max_expansion, Limits.max_total_bytes)",
                            found=f"more than {limit:,} bytes",
                        )
        except zstd.ZstdError as e:
            raise FormatError(f"corrupted zstd data ({e})", path=path) from e
        if not finished:
            raise FormatError(path=path, field="zstd frame", expected="a complete frame",
                              found="the file ends inside a frame (truncated)")
        if declared != zstd.CONTENTSIZE_UNKNOWN and out.tell() != declared:
            raise FormatError(path=path, field="zstd content", expected=f"{declared:,} bytes",
                              found=f"{out.tell():,} bytes")
        out.seek(0)
        return out

    def inner_for(self, content: IO[bytes], path: str) -> Codec:
        """The codec for decompressed *content*: by its bytes, else by the name."""
        head = content.read(SNIFF_BYTES)
        content.seek(0)
        cls = sniff(head)
        if cls is not None and getattr(cls, "layer", False):
            raise FormatError(path=path, field="zstd content",
                              expected="another codec's file", found="zstd inside zstd")
        if cls is None:
            if self.inner is None:  # type: ignore[attr-defined]
                raise UnknownFormatError(
                    path=path, field="zstd content",
                    expected="a file of a known format inside", found=f"first bytes {head[:16]!r}",
                    hint="name it like w.json.zst or pass inner=FORMAT",
                )
            return self._inner_codec()
        return cls(**self.inner_options) if cls.name == self.inner else cls()  # type: ignore[attr-defined]

    def read(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS) -> Weights:
        content = self.decompress(fileobj, path, limits)
        return self.inner_for(content, path).read(content, path=path, limits=limits)
