"""URLs as paths: ``s3://``, ``gs://``, ``https://``, ``memory://`` and any other fsspec protocol.

Every path argument of the library and the command line also takes a URL. The
``fsspec`` package (and ``s3fs`` for S3, ``gcsfs`` for Google Cloud Storage) comes
with the optional extra ``remote``: ``pip install 'weightstore[remote]'``.
``file://`` URLs are plain local paths.

Credentials and endpoints come from where the storage library looks for them (for
S3: ``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ``~/.aws``), or from
``storage_options`` given to the library functions, passed to fsspec unchanged.

Reading opens the object with random access: a lazy :func:`weightstore.open`
fetches the header and then only the byte ranges of the tensors asked for.
Writing goes to a local temporary file first and is uploaded in one piece when it
is complete, so a failed write leaves nothing at the URL (object stores make an
upload visible only when it has finished).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import IO, Any

from .errors import FileAccessError, MissingDependencyError

__all__ = ["is_url", "local_path", "filesystem", "open_url", "url_size", "url_exists",
           "upload", "remove_url", "join"]

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*)://")
#: Packages fsspec needs for some protocols, to name in the error.
_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs",
             "abfs": "adlfs", "http": "aiohttp", "https": "aiohttp"}


def is_url(path: Any) -> bool:
    """True if *path* is a URL other than ``file://`` (which is a local path)."""
    if not isinstance(path, str):
        return False
    m = _SCHEME.match(path)
    return m is not None and m.group(1).lower() != "file"


def local_path(path: Any) -> Any:
    """*path* with a ``file://`` prefix removed; anything else unchanged."""
    if isinstance(path, str) and path.lower().startswith("file://"):
        return path[len("file://"):]
    return path


def filesystem(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """The fsspec filesystem for *url* and the path within it."""
    try:
        import fsspec.core
    except ImportError as e:
        raise MissingDependencyError("fsspec", "remote", f"reading and writing URLs ({url})") from e
    scheme = _SCHEME.match(url).group(1).lower()  # type: ignore[union-attr]
    try:
        return fsspec.core.url_to_fs(url, **(storage_options or {}))
    except ImportError as e:
        package = _PACKAGES.get(scheme, getattr(e, "name", None) or scheme)
        raise MissingDependencyError(package, "remote", f"{scheme}:// URLs") from e
    except ValueError as e:  # fsspec: "Protocol not known"
        raise FileAccessError(f"unsupported URL ({e})", path=url) from e


@contextlib.contextmanager
def _translated(url: str, action: str) -> Iterator[None]:
    try:
        yield
    except FileNotFoundError as e:
        raise FileAccessError("no such file", path=url) from e
    except PermissionError as e:
        raise FileAccessError("permission denied", path=url) from e
    except IsADirectoryError as e:
        raise FileAccessError(path=url, field="source", expected="a file",
                              found="a directory") from e
    except OSError as e:
        raise FileAccessError(f"cannot {action}: {e}", path=url) from e


#: Bytes fetched beyond each read of a remote file (fsspec's "readahead" cache): small
#: header reads cost one request each, and a tensor costs its own bytes plus this.
READAHEAD = 64 << 10


def open_url(url: str, storage_options: dict[str, Any] | None = None) -> IO[bytes]:
    """*url* opened for binary, seekable reading with range requests."""
    fs, path = filesystem(url, storage_options)
    with _translated(url, "open"):
        if fs.isdir(path):
            raise IsADirectoryError(path)
        try:
            return fs.open(path, "rb", block_size=READAHEAD,  # type: ignore[no-any-return]
                           cache_type="readahead")
        except TypeError:  # a filesystem whose open takes no cache options
            return fs.open(path, "rb")  # type: ignore[no-any-return]


def url_size(url: str, storage_options: dict[str, Any] | None = None) -> int:
    """The size of the object at *url*, in bytes."""
    fs, path = filesystem(url, storage_options)
    with _translated(url, "stat"):
        return int(fs.size(path))


def url_exists(url: str, storage_options: dict[str, Any] | None = None) -> bool:
    """Whether an object exists at *url*."""
    fs, path = filesystem(url, storage_options)
    with _translated(url, "stat"):
        return bool(fs.exists(path))


def upload(local: str | os.PathLike[str], url: str,
           storage_options: dict[str, Any] | None = None) -> None:
    """Copy the complete local file to *url* (one object, visible when the copy ends)."""
    fs, path = filesystem(url, storage_options)
    with _translated(url, "write"):
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if parent:
            with contextlib.suppress(OSError, NotImplementedError):
                fs.makedirs(parent, exist_ok=True)
        fs.put_file(os.fspath(local), path)


def remove_url(url: str, storage_options: dict[str, Any] | None = None) -> None:
    """Delete the object at *url* if it exists."""
    fs, path = filesystem(url, storage_options)
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(path)


def join(base: str, name: str) -> str:
    """*name* in the same folder as *base* (a URL or a local path)."""
    if is_url(base):
        return base.rsplit("/", 1)[0] + "/" + name
    return os.path.join(os.path.dirname(os.fspath(base)), name)
