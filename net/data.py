"""Find, verify and, if missing, download the reference files (the book's weights, MNIST test set).

:func:`resolve` looks for a file in these folders, in this order, and uses the first that has it:

1. the ``data_dir`` argument (the command line's ``--data-dir DIR``);
2. the folder named by the environment variable ``WEIGHTSTORE_DATA``;
3. ``../shared/data`` beside the checkout (relative to the repository root);
4. ``../shared/data`` relative to the current working directory;
5. the user cache: ``$WEIGHTSTORE_CACHE``, else ``$XDG_CACHE_HOME/weightstore``, else
   ``~/.cache/weightstore``.

A file that is found must match its SHA-256, or :class:`~net.errors.DataError` is
raised: a bad file is an error, never skipped in favour of the next folder. Only when no
folder has the file (and ``download`` is true) is it downloaded, into the cache, atomically,
and verified before use. Nothing touches the network when the files are present.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from net.errors import DataError

__all__ = [
    "ReferenceFile",
    "REFERENCE_FILES",
    "DATA_ENV",
    "CACHE_ENV",
    "DOWNLOAD_TIMEOUT",
    "search_dirs",
    "cache_dir",
    "resolve",
    "verify_all",
]

DATA_ENV = "WEIGHTSTORE_DATA"
CACHE_ENV = "WEIGHTSTORE_CACHE"
DOWNLOAD_TIMEOUT = 30.0
"""Seconds a download may wait on the server before it fails."""

_HOW_TO_SUPPLY = "supply the files with --data-dir DIR or WEIGHTSTORE_DATA=DIR"
_MAX_HASHED_MISMATCH = 64 << 20


@dataclass(frozen=True)
class ReferenceFile:
    """One reference file: its name relative to a data folder, checksum, size and origin."""

    name: str
    sha256: str
    size: int
    url: str
    description: str


_BOOK = "https://raw.githubusercontent.com/oreilly-japan/deep-learning-from-scratch"
_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist"

REFERENCE_FILES: Mapping[str, ReferenceFile] = MappingProxyType(
    {
        ref.name: ref
        for ref in (
            ReferenceFile(
                "sample_weight.pkl",
                "b7f55a27988ba34c3777b0f1bbd464817c8a4db855723e6ff26f703501917a13",
                181_853,
                f"{_BOOK}/master/ch03/sample_weight.pkl",
                "3-layer MNIST network (ch. 3), dict W1 b1 W2 b2 W3 b3 of float32",
            ),
            # The first-published commit of ch07/params.pkl could not be pinned here. The file
            # on master was replaced in 2022 by a weaker retrain, so this URL serves different
            # bytes and the checksum will refuse them: supply this file yourself.
            ReferenceFile(
                "simple_convnet_params.pkl",
                "290ab40c1b1218b392cdc155b633a5df642d829453702fa421ce5f3c6c55f779",
                3_471_538,
                f"{_BOOK}/master/ch07/params.pkl",
                "SimpleConvNet (ch. 7), dict W1 b1 W2 b2 W3 b3 of float64",
            ),
            # Not pinned to its first-published commit either; master is expected to still
            # hold the 2016 file, and the checksum refuses anything else.
            ReferenceFile(
                "deep_convnet_params.pkl",
                "8c81d1d6ddedd08c8277c957f3af30a91e455a1d65474ec2b5a0e3527b7422cc",
                989_346,
                f"{_BOOK}/master/ch08/deep_convnet_params.pkl",
                "DeepConvNet (ch. 8), dict W1 b1 ... W8 b8 of float64",
            ),
            ReferenceFile(
                "mnist/t10k-images-idx3-ubyte.gz",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                1_648_877,
                f"{_MNIST}/t10k-images-idx3-ubyte.gz",
                "MNIST test images, 10,000 x 28 x 28 uint8, IDX, gzip",
            ),
            ReferenceFile(
                "mnist/t10k-labels-idx1-ubyte.gz",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                4_542,
                f"{_MNIST}/t10k-labels-idx1-ubyte.gz",
                "MNIST test labels, 10,000 uint8, IDX, gzip",
            ),
        )
    }
)
"""The reference files by name (a path relative to a data folder, ``/``-separated)."""

# (resolved path, size, mtime_ns) of files whose digest already matched, with that digest.
_verified: dict[tuple[str, int, int], str] = {}


def _checkout_sibling() -> Path:
    """``../shared/data`` relative to the repository root holding this package."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def cache_dir() -> Path:
    """The user cache folder downloads go to (``$WEIGHTSTORE_CACHE`` overrides)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "weightstore"
    return Path.home() / ".cache" / "weightstore"


def search_dirs(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The folders :func:`resolve` searches, in order, without duplicates. An explicit
    *data_dir* must be an existing folder (a typo is an error, not a silent fallback to
    the other places)."""
    candidates: list[Path] = []
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        if not folder.is_dir():
            raise DataError(path=os.fspath(data_dir), field="data_dir",
                            expected="an existing folder",
                            found="a file" if folder.exists() else "no such folder")
        candidates.append(folder)
    if os.environ.get(DATA_ENV):
        candidates.append(Path(os.environ[DATA_ENV]).expanduser())
    candidates.append(_checkout_sibling())
    candidates.append(Path.cwd().parent / "shared" / "data")
    candidates.append(cache_dir())
    unique: list[Path] = []
    seen: set[Path] = set()
    for folder in candidates:
        key = folder.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(folder)
    return unique


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, ref: ReferenceFile, shown: str | os.PathLike[str] | None = None) -> None:
    """Raise DataError unless ``path`` has the reference size and SHA-256.

    A match is remembered per (path, size, mtime), so verifying again is a ``stat``.
    ``shown`` replaces the path in messages (a download's temporary file).
    """
    shown = path if shown is None else shown
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        if _verified.get(key) == ref.sha256:
            return
        # Hash a file of the wrong size too, so the message can show its digest, unless it is
        # far too large to be any reference file.
        found = _sha256(path) if st.st_size <= _MAX_HASHED_MISMATCH else None
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}", path=shown) from e
    if st.st_size == ref.size and found == ref.sha256:
        _verified[key] = found
        return
    size_note = "" if st.st_size == ref.size else f", {st.st_size} bytes instead of {ref.size}"
    raise DataError(
        f"not the reference {ref.name}{size_note}",
        path=shown,
        field="sha256",
        expected=ref.sha256,
        found=found or "not computed (far too large)",
    )


def _download(url: str, dest: Path, max_bytes: int) -> None:
    """Write the body at ``url`` to ``dest``; fail if it exceeds ``max_bytes``.

    The one place that touches the network (tests replace it).
    """
    request = urllib.request.Request(url, headers={"User-Agent": "weightstore"})
    with (
        urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT) as response,
        dest.open("wb") as out,
    ):
        written = 0
        while chunk := response.read(1 << 16):
            written += len(chunk)
            if written > max_bytes:
                raise ValueError(f"more than the expected {max_bytes} bytes")
            out.write(chunk)


def _fetch(ref: ReferenceFile, target: Path) -> None:
    """Download ``ref`` to ``target`` through a temporary file; verify before it appears."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _download(ref.url, tmp, ref.size)
        _verify(tmp, ref, shown=ref.url)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _reference(name: str) -> ReferenceFile:
    try:
        return REFERENCE_FILES[name]
    except KeyError:
        raise DataError(
            path=name,
            field="name",
            expected="one of " + ", ".join(REFERENCE_FILES),
            found=name,
        ) from None


def resolve(
    name: str, data_dir: str | os.PathLike[str] | None = None, *, download: bool = True
) -> Path:
    """Path of the verified reference file ``name`` (a key of :data:`REFERENCE_FILES`).

    Searches :func:`search_dirs` in order; the first folder holding the file wins and the
    file must match its SHA-256. If no folder has it and ``download`` is true, it is
    downloaded into :func:`cache_dir` and verified.

    Raises :class:`~net.errors.DataError`: for a file that fails verification
    (naming it, the expected and found digest), and when the file is nowhere and cannot be
    downloaded (listing every place searched and how to supply the files).
    """
    ref = _reference(name)
    folders = search_dirs(data_dir)
    looked: list[Path] = []
    for folder in folders:
        candidate = folder / ref.name
        looked.append(candidate)
        if candidate.is_file():
            _verify(candidate, ref)
            return candidate

    where = ", ".join(map(str, looked))
    if not download:
        raise DataError(
            f"reference file not found in {where} (download disabled)",
            path=ref.name,
            hint=_HOW_TO_SUPPLY,
        )
    target = cache_dir() / ref.name
    try:
        _fetch(ref, target)
    except (OSError, http.client.HTTPException, ValueError, DataError) as e:
        # OSError covers URLError, HTTPError, timeouts and an unwritable cache;
        # HTTPException (e.g. IncompleteRead) is not an OSError.
        raise DataError(
            f"reference file not found in {where}, and downloading {ref.url} failed: {e}",
            path=ref.name,
            hint=_HOW_TO_SUPPLY,
        ) from e
    return target


def verify_all(
    data_dir: str | os.PathLike[str] | None = None, *, download: bool = False
) -> dict[str, Path]:
    """Resolve and verify every reference file; return their paths by name.

    Does not download unless ``download`` is true. Raises one
    :class:`~net.errors.DataError` naming every file that is missing or bad.
    """
    found: dict[str, Path] = {}
    problems: list[str] = []
    for name in REFERENCE_FILES:
        try:
            found[name] = resolve(name, data_dir, download=download)
        except DataError as e:
            problems.append(str(e))
    if problems:
        raise DataError(
            f"{len(problems)} of {len(REFERENCE_FILES)} reference files missing or not verified: "
            + " | ".join(problems)
        )
    return found
