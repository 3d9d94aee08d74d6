"""gzip: gzip compression as a layer over any other codec's bytes (``w.json.gz``).

``w.csv.gz`` is exactly ``gzip`` applied to ``w.csv``: ``gzip -d w.csv.gz`` restores a
file the inner codec reads, and a file gzipped by the ``gzip`` command reads as its
inner format. The inner codec comes as for the zstd layer (:mod:`.zstd`): the
``inner`` option, else the name (``.json.gz``), else ``npz``; on reading, the
decompressed content decides, then the name. The header carries no file name and a
zero time, so writing is repeatable.

Integrity: every gzip member ends with the CRC-32 and the size of its content, which
are checked (a mismatch is a :class:`~weightstore.errors.ChecksumError`).
Decompression is bounded: more than :meth:`~weightstore.codec.Limits.max_output` of the
file's size is refused after at most one more piece has been read, whatever the ratio
(gzip declares no size before its data). :meth:`GzipCodec.open` decompresses into an
unnamed temporary file, as the zstd layer does.
"""

from __future__ import annotations

import gzip
import io
import os
import tempfile
import zlib
from typing import IO

from ..codec import Budget, Limits, Option
from ..errors import ChecksumError, FormatError
from ..model import Weights
from ..sniffing import GZIP_MAGIC
from .zstd import DEFAULT_INNER, ZstdCodec, _Unseekable

__all__ = ["GzipCodec", "MAGIC"]

MAGIC = GZIP_MAGIC
_CHUNK = 1 << 20


class GzipCodec(ZstdCodec):
    """gzip over another codec's file: ``.json.gz``, ``.csv.gz``, ``.npz.gz``, ...

    Shares the zstd layer's handling of the inner codec; only the compression differs.
    """

    name = "gzip"
    extensions = (".gz",)
    description = "gzip layer over any codec (w.json.gz, w.csv.gz); gzip -d restores it"
    options = (
        Option("inner", str, None, f"codec inside (default: from the name, else {DEFAULT_INNER})"),
        Option("level", int, 6, "compression level (1 fast .. 9 small)", min=1, max=9),
    )

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return head.startswith(MAGIC)

    def write(self, weights: Weights, fileobj: IO[bytes], *, path: str) -> None:
        inner = self._inner_codec()
        with gzip.GzipFile(filename="", mode="wb", fileobj=fileobj,
                           compresslevel=self.level, mtime=0) as gz:  # type: ignore[attr-defined]
            if inner.needs_seekable_output:
                with tempfile.TemporaryFile(dir=os.path.dirname(path) or None) as tmp:
                    inner.write(weights, tmp, path=path)
                    tmp.seek(0)
                    while chunk := tmp.read(_CHUNK):
                        gz.write(chunk)
            else:
                inner.write(weights, _Unseekable(gz), path=path)

    def decompress(self, fileobj: IO[bytes], path: str, limits: Limits,
                   out: IO[bytes] | None = None, budget: Budget | None = None) -> IO[bytes]:
        """The whole decompressed content, in memory or written into *out*, refusing more
        than the operation's *budget* allows (read in pieces, each charged before it is
        kept: at most the limit plus one piece is held)."""
        size = fileobj.seek(0, io.SEEK_END)
        budget = Budget.of(budget, limits)
        budget.add_compressed(size)
        limit = budget.allowance() - budget.expanded
        fileobj.seek(0)
        if fileobj.read(3) != MAGIC:
            raise FormatError(path=path, field="gzip header",
                              expected="1f 8b 08 (gzip, deflate)", found="other bytes")
        fileobj.seek(0)
        spooled = out is not None
        if out is None:
            out = io.BytesIO()
        reader = gzip.GzipFile(fileobj=fileobj, mode="rb")
        try:
            self.copy_bounded(reader, out, limit, size, path, budget, spooled)
        except gzip.BadGzipFile as e:
            if "CRC" in str(e) or "length" in str(e):
                raise ChecksumError(path=path, field="gzip content",
                                    expected="data matching the member's CRC-32 and size",
                                    found=f"a mismatch ({e}; the file is damaged)") from e
            raise FormatError(f"not a valid gzip file ({e})", path=path) from e
        except EOFError as e:
            raise FormatError(f"cut short ({e})", path=path, field="gzip content",
                              expected="the end of the compressed stream",
                              found="the end of the file (truncated)") from e
        except (zlib.error, OSError) as e:
            raise FormatError(f"corrupted gzip data ({e})", path=path) from e
        out.seek(0)
        return out
