"""File handling shared by every codec: atomic writes and checked opens.

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
import os
import re
import socket
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from . import remote
from .errors import FileAccessError

__all__ = ["atomic_write", "open_for_read", "stale_temporaries", "TEMP_PREFIX", "TEMP_SUFFIX"]

#: Temporary files are named ``.<name>.<random>.<host>-<pid>.weightstore-tmp``.
TEMP_PREFIX = "."
TEMP_SUFFIX = ".weightstore-tmp"
#: This host's token in temporary file names.
HOST = f"{zlib.crc32(socket.gethostname().encode('utf-8', 'replace')):08x}"
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


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str],
                 storage_options: dict[str, Any] | None = None) -> Iterator[IO[bytes]]:
    """Yield a binary, seekable file that replaces *path* only if the block succeeds.

    After the replacement, temporary files that killed writers left for *path* are
    removed (those of live writers are kept).
    """
    if remote.is_url(path):
        with remote.spooled_upload(path, storage_options) as f:  # type: ignore[arg-type]
            yield f
        return
    dest = Path(remote.local_path(path))
    folder = dest.parent if str(dest.parent) else Path(".")
    if dest.is_dir():
        raise FileAccessError(path=dest, field="destination", expected="a file path",
                              found="a directory")
    if not folder.is_dir():
        raise FileAccessError(path=dest, field="destination folder",
                              expected="an existing folder", found=f"no folder {str(folder)!r}")
    try:
        fd, tmp = temporary_beside(dest)
    except OSError as e:
        raise FileAccessError(f"cannot write there: {e.strerror}", path=dest) from e
    try:
        with os.fdopen(fd, "w+b") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where supported
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    _remove_stale_temporaries(dest)


def temporary_beside(dest: Path) -> tuple[int, str]:
    """A new temporary file for *dest* in its folder, named after its writer (see above):
    the open descriptor and the path. Raises OSError."""
    folder = dest.parent if str(dest.parent) else Path(".")
    return tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{dest.name}.",
                            suffix=f".{HOST}-{os.getpid()}{TEMP_SUFFIX}", dir=folder)


def remove_stale_temporaries(dest: str | os.PathLike[str]) -> None:
    """Remove the temporary files killed writers left for *dest*."""
    _remove_stale_temporaries(Path(dest))


def open_for_read(path: str | os.PathLike[str],
                  storage_options: dict[str, Any] | None = None) -> IO[bytes]:
    """Open *path* for binary reading, turning OS failures into :class:`FileAccessError`."""
    if remote.is_url(path):
        return remote.open_url(path, storage_options)  # type: ignore[arg-type]
    p = Path(remote.local_path(path))
    if p.is_dir():
        raise FileAccessError(path=p, field="source", expected="a file", found="a directory")
    try:
        return open(p, "rb")  # noqa: SIM115  (the caller closes it)
    except FileNotFoundError as e:
        raise FileAccessError("no such file", path=p) from e
    except PermissionError as e:
        raise FileAccessError("permission denied", path=p) from e
    except OSError as e:
        raise FileAccessError(f"cannot open: {e.strerror}", path=p) from e
