"""Reading raw tensor bytes at a known offset: into a new array, or as a memory map.

Codecs whose files store tensors as raw bytes (uncompressed npz members, contiguous
HDF5 datasets) read them here, with one copy from the operating system into the
array numpy returns. A zip member's CRC-32 is checked beside the reads, with
ISA-L's implementation when the ``fast`` extra (``isal``) is installed. Local
files are read with ``os.preadv`` in slices of :data:`CHUNK` bytes (one huge read
is slower: the kernel then faults in the whole destination at once); other file
objects (remote files, in-memory buffers) with ``seek`` and ``readinto``.
"""

from __future__ import annotations

import io
import os
import stat
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO

import numpy as np

from .errors import ChecksumError, FormatError

try:  # ISA-L's CRC-32 (same polynomial) runs at ~10 GB/s, zlib's at ~1.5: extra 'fast'
    from isal.isal_zlib import crc32

    _FAST_CRC = True  # computed inline: cheaper than handing slices to a thread
except ImportError:  # pragma: no cover - depends on the extra
    from zlib import crc32

    _FAST_CRC = False

__all__ = ["RawFile", "CHUNK"]

#: Bytes per read call.
CHUNK = 8 << 20
#: Below this many bytes a CRC is computed inline rather than beside the reads.
_CRC_INLINE = 4 << 20

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _crc_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="weightstore-crc")
        return _pool


class _Crc:
    """CRC-32 of the slices handed to it, computed in order on a helper thread
    (zlib and ISA-L release the GIL, so it runs beside the next read)."""

    def __init__(self, start: int = 0) -> None:
        self.value = start
        self._last: Future[None] | None = None

    def _step(self, data: memoryview) -> None:
        self.value = crc32(data, self.value)

    def update(self, data: memoryview) -> None:
        self._last = _crc_pool().submit(self._step, data)

    def result(self) -> int:
        if self._last is not None:
            self._last.result()
        return self.value


class RawFile:
    """A readable, seekable binary file with helpers to read tensors at an offset."""

    def __init__(self, fileobj: IO[bytes], path: str) -> None:
        self.fileobj = fileobj
        self.path = path
        self.fd: int | None = None
        try:
            fd = fileobj.fileno()
            if stat.S_ISREG(os.fstat(fd).st_mode):
                self.fd = fd
        except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
            self.fd = None
        self.size = fileobj.seek(0, io.SEEK_END)
        fileobj.seek(0)

    @property
    def can_mmap(self) -> bool:
        """Whether the file is a local regular file that can be memory-mapped."""
        return self.fd is not None

    def pread(self, offset: int, n: int) -> bytes:
        """Up to *n* bytes at *offset* (fewer at the end of the file)."""
        if self.fd is not None:
            return os.pread(self.fd, n, offset)
        self.fileobj.seek(offset)
        return self.fileobj.read(n)

    def read_array(self, offset: int, dtype: np.dtype, shape: tuple[int, ...], *,
                   fortran: bool = False, field: str, crc: tuple[int, int] | None = None,
                   progress: Callable[[int], None] | None = None) -> np.ndarray:
        """A new array filled from the file at *offset*. With *crc* ``(start, expected)``,
        CRC-32 continued from *start* over the bytes must give *expected* (computed beside
        the reads); *progress* gets each slice's byte count."""
        out = np.empty(shape[::-1] if fortran else shape, dtype=dtype)
        view = memoryview(out.reshape(-1).view(np.uint8)) if out.size else memoryview(b"")
        nbytes = out.nbytes
        checker = _Crc(crc[0]) if crc is not None and nbytes > _CRC_INLINE and not _FAST_CRC \
            else None
        running = crc[0] if crc is not None else 0
        got = 0
        if self.fd is None:
            self.fileobj.seek(offset)
        while got < nbytes:
            want = view[got:got + CHUNK]
            if self.fd is not None:
                n = os.preadv(self.fd, [want], offset + got)
            else:
                n = self.fileobj.readinto(want) or 0
            if n <= 0:
                raise FormatError(path=self.path, field=field,
                                  expected=f"{nbytes:,} data bytes at offset {offset:,}",
                                  found=f"{got:,} (the file ends there)")
            if crc is not None and _FAST_CRC:
                running = crc32(want[:n], running)
            elif checker is not None:
                checker.update(want[:n])
            got += n
            if progress is not None:
                progress(n)
        if crc is not None:
            if _FAST_CRC:
                value = running
            else:
                value = checker.result() if checker is not None else crc32(view, crc[0])
            if value != crc[1]:
                raise ChecksumError(path=self.path, field=field,
                                    expected=f"CRC-32 {crc[1]:08x}", found=f"{value:08x}")
        return out.T if fortran else out

    def map_array(self, offset: int, dtype: np.dtype, shape: tuple[int, ...], *,
                  fortran: bool = False) -> np.ndarray:
        """A read-only memory map of the bytes at *offset* (requires :attr:`can_mmap`)."""
        count = 1
        for d in shape:
            count *= d
        if count == 0:
            return np.empty(shape, dtype=dtype, order="F" if fortran else "C")
        if offset + count * dtype.itemsize > self.size:
            raise FormatError(path=self.path, field=f"data at offset {offset:,}",
                              expected=f"{count * dtype.itemsize:,} bytes",
                              found=f"{max(0, self.size - offset):,} (the file ends there)")
        mm = np.memmap(self.fileobj, dtype=dtype, mode="r", offset=offset, shape=shape,
                       order="F" if fortran else "C")
        return mm
