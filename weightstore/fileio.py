"""File handling shared by every codec: atomic writes and checked opens.

Writes are atomic: data goes to a temporary file in the destination's folder,
is flushed and fsync'd, then renamed over the destination. A failed or
interrupted write leaves no partial file and keeps any old file intact.

Paths may also be URLs (``s3://...``, ``memory://...``; see :mod:`weightstore.remote`):
reading opens the object with random access, writing uploads a complete local
temporary file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from . import remote
from .errors import FileAccessError

__all__ = ["atomic_write", "open_for_read", "TEMP_PREFIX"]

#: Temporary files are named ``.<name>.<random>.weightstore-tmp`` beside the destination.
TEMP_PREFIX = "."
TEMP_SUFFIX = ".weightstore-tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str],
                 storage_options: dict[str, Any] | None = None) -> Iterator[IO[bytes]]:
    """Yield a binary, seekable file that replaces *path* only if the block succeeds."""
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
        fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{dest.name}.", suffix=TEMP_SUFFIX,
                                   dir=folder)
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
