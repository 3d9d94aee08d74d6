"""File handling shared by every codec: atomic writes, checked opens and raw reads.

Writes are atomic: data goes to a temporary file in the destination's folder,
is flushed and fsync'd, then renamed over the destination. A failed or
interrupted write leaves no partial file and keeps any old file intact.

Paths may also be URLs (``s3://...``, ``memory://...``; see :mod:`weightstore.remote`):
reading opens the object with random access, writing uploads a complete local
temporary file.

A process killed while writing (SIGKILL, power loss) cannot remove its
temporary file. Temporary files are therefore named after their writer::

    .<name>.<random>.<host>-<pid>.weightstore-tmp

(``<host>`` is 8 hex digits of the host name's CRC-32), and every successful
write to a destination then removes that destination's temporary files whose
writer is gone: same host, and the process is not running (or is a zombie, or
started after the file was last written, so its pid was reused). A temporary
file of a live writer, of another host, or of an unknown form is never touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import mmap
import os
import re
import signal
import stat
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from . import remote
from .errors import ChecksumError, FileAccessError, FormatError

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

try:  # ISA-L's CRC-32 (same polynomial) runs at ~10 GB/s, zlib's at ~1.5: extra 'fast'
    from isal.isal_zlib import crc32, crc32_combine

    _FAST_CRC = True  # computed inline: cheaper than handing slices to a thread
except ImportError:  # pragma: no cover - depends on the extra
    from zlib import crc32

    crc32_combine = None
    _FAST_CRC = False

__all__ = ["atomic_write", "StagedFiles", "open_for_read", "write_failure", "stale_temporaries",
           "TEMP_PREFIX", "TEMP_SUFFIX", "RawFile", "CHUNK", "crc32", "new_array", "regular_fd"]

#: Temporary files are named ``.<name>.<random>.<host>-<pid>.weightstore-tmp``.
TEMP_PREFIX = "."
TEMP_SUFFIX = ".weightstore-tmp"
def platform_node() -> str:
    """This machine's host name (``socket.gethostname()``, without importing socket)."""
    return os.uname().nodename if hasattr(os, "uname") else os.environ.get("COMPUTERNAME", "")


#: This host's token in temporary file names.
HOST = f"{zlib.crc32(platform_node().encode('utf-8', 'replace')):08x}"
#: Every temporary file this process writes is newer than this (seconds since the epoch);
#: one with this process's pid that is older was left by an earlier process with that pid.
_STARTED = time.time()
#: Slack for file systems that store modification times coarsely (FAT: 2 s).
_CLOCK_SLACK = 2.0


def _umask() -> int:
    """The process umask, read without changing it where the system allows."""
    # Linux >= 4.7 reports it, so there is no moment with a permissive umask
    with contextlib.suppress(OSError, ValueError, StopIteration), \
            open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o077)  # elsewhere: briefly restrictive, never briefly permissive
    os.umask(mask)
    return mask


def _temp_pattern(name: str) -> re.Pattern[str]:
    return re.compile(re.escape(f"{TEMP_PREFIX}{name}.") + r"[^.]+\.(?P<host>[0-9a-f]{8})-"
                      r"(?P<pid>[0-9]+)" + re.escape(TEMP_SUFFIX))


def _process_start(pid: int) -> tuple[str, float] | None:
    """Linux: the state letter of process *pid* and when it started (epoch seconds)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime"))
        ticks = os.sysconf("SC_CLK_TCK")
        return fields[0].decode(), boot + int(fields[19]) / ticks
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _writer_alive(pid: int, mtime: float) -> bool:
    """Whether the process that wrote a temporary file (last modified at *mtime*) may
    still be writing it. When in doubt: yes."""
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    if pid == os.getpid():
        return mtime >= _STARTED - _CLOCK_SLACK
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: running, as another user
        return True
    found = _process_start(pid)
    if found is not None:
        state, started = found
        if state == "Z":  # exited, not yet reaped: it writes nothing more
            return False
        if started > mtime + _CLOCK_SLACK:  # the pid was reused after the file was written
            return False
    return True


def stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Temporary files of writes to *path* whose writer has gone (see the module doc)."""
    dest = Path(path)
    folder = dest.parent if str(dest.parent) else Path(".")
    pattern = _temp_pattern(dest.name)
    stale = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None or m["host"] != HOST:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if entry.is_file(follow_symlinks=False) and not _writer_alive(int(m["pid"]),
                                                                     info.st_mtime):
            stale.append(Path(entry.path))
    return stale


def _remove_stale_temporaries(dest: Path) -> None:
    for stale in stale_temporaries(dest):
        with contextlib.suppress(OSError):  # gone already, or not ours to remove
            os.unlink(stale)


class StagedFiles:
    """Files written under temporary names, moved into place together on :meth:`commit`.

    ``with staged.file(dest) as f:`` gives a new, seekable file: a temporary beside a local
    *dest* (named after its writer, see the module doc), a local spool for a URL. Nothing
    is visible at any destination before :meth:`commit`, which renames (or uploads) the
    files in the order staged, so that the last one (a shard index) appears last; a
    failure before the commit, or :meth:`discard`, leaves no file behind.
    """

    def __init__(self, storage_options: dict[str, Any] | None = None, *,
                 replace: bool = True) -> None:
        self.storage_options = storage_options
        #: False: :meth:`commit` refuses a destination that exists (checked atomically for
        #: local files: the temporary is linked, never renamed, over it).
        self.replace = replace
        self.pending: list[tuple[str, str]] = []  # (temporary, destination)

    @contextlib.contextmanager
    def file(self, dest: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
        """A new temporary file for *dest*, kept for the commit if the block succeeds."""
        if remote.is_url(dest):
            where = os.fspath(dest)
            remote.filesystem(where, self.storage_options)  # fail early: fsspec missing

            def make() -> tuple[int, str]:
                return tempfile.mkstemp(prefix=".weightstore-upload-", suffix=".tmp")
        else:
            where = remote.local_path(dest)
            target = Path(where)
            folder = target.parent if str(target.parent) else Path(".")
            if target.is_dir():
                raise FileAccessError(path=target, field="destination", expected="a file path",
                                      found="a directory")
            if not folder.is_dir():
                raise FileAccessError(path=target, field="destination folder",
                                      expected="an existing folder",
                                      found=f"no folder {str(folder)!r}")

            def make() -> tuple[int, str]:
                try:
                    return temporary_beside(target)
                except OSError as e:
                    raise FileAccessError(f"cannot write there: {e.strerror}",
                                          path=target) from e
        tmp: str | None = None
        try:
            with _signals_deferred():  # the file, and what removes or closes it: one step
                fd, tmp = make()
                f = os.fdopen(fd, "w+b")
            with f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            self.pending.append((tmp, where))
        except BaseException as e:
            if tmp is None:  # no temporary made: its error as it is
                raise
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            failure = write_failure(e, where) if isinstance(e, Exception) else None
            if failure is not None:  # ENOSPC, EFBIG (RLIMIT_FSIZE), EACCES...: one line
                raise failure from e
            raise

    def discard(self) -> None:
        """Remove every staged file; nothing reaches a destination."""
        for tmp, _ in self.pending:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self.pending = []

    def commit(self) -> None:
        """Move every staged file into place, in the order staged."""
        done: list[str] = []
        try:
            for tmp, dest in self.pending:
                if remote.is_url(dest):
                    if not self.replace and remote.url_exists(dest, self.storage_options):
                        raise FileAccessError(path=dest, field="destination",
                                              expected="no existing file", found="a file",
                                              hint="it was kept as it is")
                    remote.upload(tmp, dest, self.storage_options)
                    os.unlink(tmp)
                else:
                    os.chmod(tmp, _mode_for(dest))
                    try:
                        if self.replace:
                            os.replace(tmp, dest)
                        else:
                            _link_new(tmp, dest)
                    except FileAccessError:  # an OSError too, whose cause is no write fault
                        raise
                    except OSError as e:
                        raise write_failure(e, dest) or e from e
                done.append(dest)
        except BaseException:
            for dest in done:  # all or nothing: take back what this commit put in place
                with contextlib.suppress(OSError, FileAccessError):
                    if remote.is_url(dest):
                        remote.remove_url(dest, self.storage_options)
                    else:
                        os.unlink(dest)
            self.discard()
            raise
        self.pending = []
        local = [d for d in done if not remote.is_url(d)]
        for folder in dict.fromkeys(os.path.dirname(d) or "." for d in local):
            with contextlib.suppress(OSError):  # make the renames durable where supported
                dfd = os.open(folder, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
        for dest in local:
            _remove_stale_temporaries(Path(dest))


def _mode_for(dest: str) -> int:
    """The permissions a new file at *dest* gets: an existing file's (an overwrite keeps
    them), else the default for new files (0o666 less the umask)."""
    try:
        return stat.S_IMODE(os.stat(dest).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _link_new(tmp: str, dest: str) -> None:
    """Put *tmp* at *dest* only if nothing is there (``replace=False``)."""
    try:
        os.link(tmp, dest)
    except FileExistsError as e:
        raise FileAccessError(path=dest, field="destination", expected="no existing file",
                              found="a file", hint="it was kept as it is") from e
    except OSError:  # no hard links here (FAT, some network shares): check, then rename
        if os.path.lexists(dest):
            raise FileAccessError(path=dest, field="destination", expected="no existing file",
                                  found="a file", hint="it was kept as it is") from None
        os.replace(tmp, dest)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str],
                 storage_options: dict[str, Any] | None = None, *,
                 replace: bool = True) -> Iterator[IO[bytes]]:
    """Yield a binary, seekable file that replaces *path* only if the block succeeds
    (:class:`StagedFiles` with one file). An existing file keeps its permissions; with
    *replace* false it is not replaced at all (:class:`FileAccessError`).

    After the replacement, temporary files that killed writers left for *path* are
    removed (those of live writers are kept).
    """
    staged = StagedFiles(storage_options, replace=replace)
    try:
        with staged.file(path) as f:
            yield f
        staged.commit()
    except BaseException:
        staged.discard()
        raise


#: The signals that stop a command (Ctrl-C, and SIGTERM and SIGHUP, which the command line
#: turns into an exception): held back while a temporary file is made.
_STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP")
                      if hasattr(signal, n))


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Handle :data:`_STOP_SIGNALS` only after the block: one that comes meanwhile is noted
    and raised again once the block is done (its handler, or its exception, then runs).
    Between the creation of a temporary file and the assignment of its name an exception
    would leave the file behind, unnamed. Python runs signal handlers on the main thread
    only, so a block on another thread is never interrupted by them: nothing to defer."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    saved = {}
    for sig in _STOP_SIGNALS:
        old = signal.getsignal(sig)
        if old is not None:  # None: a handler not set from Python, left as it is
            saved[sig] = signal.signal(sig, lambda signum, frame: came.append(signum))
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)
        for signum in came:
            signal.raise_signal(signum)


def temporary_beside(dest: Path) -> tuple[int, str]:
    """A new temporary file for *dest* in its folder, named after its writer (see above):
    the open descriptor and the path. Raises OSError."""
    folder = dest.parent if str(dest.parent) else Path(".")
    return tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{dest.name}.",
                            suffix=f".{HOST}-{os.getpid()}{TEMP_SUFFIX}", dir=folder)


def remove_stale_temporaries(dest: str | os.PathLike[str]) -> None:
    """Remove the temporary files killed writers left for *dest*."""
    _remove_stale_temporaries(Path(dest))


def _kind(mode: int) -> str | None:
    """What a non-regular file is ("a FIFO", ...), or None for a regular file."""
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character "
                       "device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) else "not a regular file"


def open_for_read(path: str | os.PathLike[str],
                  storage_options: dict[str, Any] | None = None) -> IO[bytes]:
    """Open *path* for binary reading, turning OS failures into :class:`FileAccessError`.

    Only a regular file is opened (symbolic links followed): a FIFO, a device
    (``/dev/zero``), a socket or a directory is refused before anything is read, and the
    open itself never blocks (a FIFO swapped in after the check is refused as well).
    """
    if remote.is_url(path):
        return remote.open_url(path, storage_options)  # type: ignore[arg-type]
    p = Path(remote.local_path(path))
    try:
        kind = _kind(os.stat(p).st_mode)
        if kind is not None:
            raise FileAccessError(path=p, field="source", expected="a regular file", found=kind)
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileAccessError:
        raise
    except FileNotFoundError as e:
        raise FileAccessError("no such file", path=p) from e
    except PermissionError as e:
        raise FileAccessError("permission denied", path=p) from e
    except OSError as e:
        raise FileAccessError(f"cannot open: {e.strerror}", path=p) from e
    try:
        kind = _kind(os.fstat(fd).st_mode)  # what was opened, not what was checked
        if kind is not None:
            raise FileAccessError(path=p, field="source", expected="a regular file", found=kind)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def write_failure(e: BaseException, dest: str | os.PathLike[str]) -> FileAccessError | None:
    """A one-line :class:`FileAccessError` for a write the system refused (a full disk,
    a file-size limit, a quota, no permission, a read-only file system, an I/O error)
    anywhere in *e*'s chain, or None when *e* is something else."""
    seen: BaseException | None = e
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, OSError) and not isinstance(seen, FileAccessError) \
                and seen.errno is not None:
            return FileAccessError(path=dest, field="write",
                                   expected="room and permission to write the file",
                                   found=seen.strerror or os.strerror(seen.errno))
        seen = seen.__cause__ or seen.__context__
    return None


#: Bytes per read call.
CHUNK = 8 << 20
#: Below this many bytes a CRC is computed inline rather than beside the reads.
_CRC_INLINE = 4 << 20
#: From this many bytes a local file's tensor is read by every core at once: each
#: thread reads (and checksums) its own part, so the kernel's copy and the page faults
#: of the new array run in parallel. Below it, handing a part to another thread costs
#: more than it saves when that thread must wait for a core: a warm 16 MiB read took
#: 3.2 ms serially and 6.9 ms split in two on the loaded benchmark machine (medians).
PARALLEL_READ = 32 << 20
#: Arrays of this many bytes and more are allocated on ordinary pages (see new_array).
_SMALL_PAGES_FROM = 4 << 20

_pools: dict[str, ThreadPoolExecutor] = {}  # by name, each made on its first use
_pool_lock = threading.Lock()


def _libc_madvise() -> Any:
    """libc's ``madvise`` through ctypes (numpy has imported ctypes already), or None."""
    if getattr(mmap, "MADV_NOHUGEPAGE", None) is None:
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):  # pragma: no cover - not a Linux libc
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_madvise = _libc_madvise()


def new_array(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``np.empty(shape, dtype)`` for a tensor about to be filled from a file, on ordinary
    4 KiB pages where the system allows.

    numpy asks Linux for transparent huge pages on arrays of 4 MiB and more
    (``madvise(MADV_HUGEPAGE)``). On a virtual machine whose host backs guest memory
    lazily (virtio-balloon free page reporting hands exactly such 2 MiB blocks back to
    the host), the first touch of a huge page then costs two to four times as much CPU
    as the same bytes in small pages, and varies from run to run: faulting 1 GiB took
    1.0-2.0 s of CPU against 0.43-0.63 s on the benchmark machine, where safetensors'
    reader (which allocates without that advice) pays the small-page price. The advice
    is therefore taken back (``MADV_NOHUGEPAGE``) before any page is touched; on other
    systems, or if that fails, the array is numpy's own."""
    out = np.empty(shape, dtype=dtype)
    if _madvise is not None and out.nbytes >= _SMALL_PAGES_FROM:
        page = mmap.PAGESIZE
        addr = out.__array_interface__["data"][0]
        start, end = -(-addr // page) * page, (addr + out.nbytes) // page * page
        if end > start:
            _madvise(start, end - start, mmap.MADV_NOHUGEPAGE)  # advice: failure is harmless
    return out


def _thread_pool(name: str, workers: int) -> ThreadPoolExecutor:
    """The process's pool *name* of *workers* threads, made on first use: the CRC helper
    (``crc``, one thread beside the reads) and the readers of large tensors' parts (``read``,
    one per core beside the calling thread)."""
    with _pool_lock:
        pool = _pools.get(name)
        if pool is None:
            # Imported here: concurrent.futures pulls in logging (~30 ms at start-up), and
            # only reads of more than a few MiB use a pool.
            from concurrent.futures import ThreadPoolExecutor

            pool = _pools[name] = ThreadPoolExecutor(max_workers=workers,
                                                     thread_name_prefix=f"weightstore-{name}")
        return pool


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


class _Crc:
    """CRC-32 of the slices handed to it, computed in order on a helper thread
    (zlib and ISA-L release the GIL, so it runs beside the next read)."""

    def __init__(self, start: int = 0) -> None:
        self.value = start
        self._last: Future[None] | None = None

    def _step(self, data: memoryview) -> None:
        self.value = crc32(data, self.value)

    def update(self, data: memoryview) -> None:
        self._last = _thread_pool("crc", 1).submit(self._step, data)

    def result(self) -> int:
        if self._last is not None:
            self._last.result()
        return self.value


def regular_fd(fileobj: IO[bytes]) -> int | None:
    """The descriptor of the regular file *fileobj* reads, for positional reads and memory
    maps, or None. Only a plain file object's descriptor holds what it reads: a wrapper may
    hand out the descriptor of the file beneath it (``gzip.GzipFile.fileno()`` gives the
    compressed file's), so any other object is read through its own methods."""
    raw = getattr(fileobj, "raw", fileobj)
    if not isinstance(fileobj, (io.FileIO, io.BufferedReader, io.BufferedRandom)) \
            or not isinstance(raw, io.FileIO):
        return None
    try:
        fd = fileobj.fileno()
        return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except (OSError, ValueError, io.UnsupportedOperation):
        return None


class RawFile:
    """A readable, seekable binary file with helpers to read tensors at an offset."""

    def __init__(self, fileobj: IO[bytes], path: str) -> None:
        self.fileobj = fileobj
        self.path = path
        self.fd = regular_fd(fileobj)
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

    def pread_into(self, offset: int, view: memoryview | bytearray) -> int:
        """Fill *view* with the bytes at *offset*; how many there were (fewer at the end
        of the file). Into a buffer the caller reuses: no fresh pages per read."""
        want = memoryview(view).cast("B")
        got = 0
        if self.fd is None:
            self.fileobj.seek(offset)
        while got < len(want):
            if self.fd is not None:
                n = os.preadv(self.fd, [want[got:]], offset + got)
            else:
                n = self.fileobj.readinto(want[got:]) or 0
            if n <= 0:
                break
            got += n
        return got

    def read_array(self, offset: int, dtype: np.dtype, shape: tuple[int, ...], *,
                   fortran: bool = False, field: str, crc: tuple[int, int] | None = None,
                   progress: Callable[[int], None] | None = None) -> np.ndarray:
        """A new array filled from the file at *offset*. With *crc* ``(start, expected)``,
        CRC-32 continued from *start* over the bytes must give *expected* (computed beside
        the reads); *progress* gets each slice's byte count. A large tensor of a local file
        is read by every core at once, each its own part (see :data:`PARALLEL_READ`)."""
        out = new_array(shape[::-1] if fortran else shape, dtype)
        view = memoryview(out.reshape(-1).view(np.uint8)) if out.size else memoryview(b"")
        nbytes = out.nbytes
        cores = _cores()
        if (self.fd is not None and nbytes >= PARALLEL_READ and cores > 1 and progress is None
                and (crc is None or crc32_combine is not None)):
            value = self._read_parallel(view, offset, cores, crc[0] if crc else None, field)
        else:
            value = self._read_serial(view, offset, crc[0] if crc else None, field, progress)
        if crc is not None and value != crc[1]:
            raise ChecksumError(path=self.path, field=field,
                                expected=f"CRC-32 {crc[1]:08x}", found=f"{value:08x}")
        return out.T if fortran else out

    def _short(self, field: str, nbytes: int, offset: int, got: int) -> FormatError:
        return FormatError(path=self.path, field=field,
                           expected=f"{nbytes:,} data bytes at offset {offset:,}",
                           found=f"{got:,} (the file ends there)")

    def _read_serial(self, view: memoryview, offset: int, crc: int | None, field: str,
                     progress: Callable[[int], None] | None = None, *,
                     total: int | None = None, base: int = 0) -> int:
        """Fill *view* from file byte *offset*; the CRC-32 continued from *crc* over it (0
        when *crc* is None). *total* and *base*: the whole read's size and where this part
        starts in it (for the error of a file cut short)."""
        nbytes = len(view)
        checker = _Crc(crc) if crc is not None and nbytes > _CRC_INLINE and not _FAST_CRC \
            else None
        running = crc if crc is not None else 0
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
                raise self._short(field, nbytes if total is None else total, offset - base,
                                  base + got)
            if crc is not None and _FAST_CRC:
                running = crc32(want[:n], running)
            elif checker is not None:
                checker.update(want[:n])
            got += n
            if progress is not None:
                progress(n)
        if crc is None or _FAST_CRC:
            return running
        return checker.result() if checker is not None else crc32(view, crc)

    def _read_parallel(self, view: memoryview, offset: int, cores: int, crc: int | None,
                       field: str) -> int:
        """Fill *view* in *cores* parts (page-aligned), the first on this thread and the
        others on the reader pool; each part's CRC-32 is combined in order."""
        nbytes, page = len(view), mmap.PAGESIZE
        bounds = [min(nbytes, (nbytes * i // cores) // page * page) for i in range(cores)]
        bounds.append(nbytes)
        pool = _thread_pool("read", max(1, _cores() - 1))
        part_crc = None if crc is None else 0  # each part's own CRC, combined below
        futures = [pool.submit(self._read_serial, view[a:b], offset + a, part_crc, field,
                               total=nbytes, base=a)
                   for a, b in zip(bounds[1:-1], bounds[2:], strict=True)]
        try:
            first = self._read_serial(view[:bounds[1]], offset, crc, field, total=nbytes)
        finally:
            done = [f.exception() for f in futures]  # every part ends before the array goes
        for error in done:
            if error is not None:
                raise error
        if crc is None:
            return 0
        value = first
        for (a, b), future in zip(zip(bounds[1:-1], bounds[2:], strict=True), futures,
                                  strict=True):
            value = crc32_combine(value, future.result(), b - a)
        return value

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
