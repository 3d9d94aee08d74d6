"""Converting whole collections on Dask: :func:`convert_many`.

Sources are local paths, folders, globs (``zoo/**/*.bin``) or fsspec URLs
(``s3://bucket/zoo/**/*.bin``). The client only lists them; every file is a Dask
task that runs :func:`weightstore.convert` on a worker, which reads the source from
its storage and writes the destination to its storage directly (bytes never pass
through the client), with the memory bound of the single-file convert. A sharded
checkpoint (``*.index.json`` and its shards) is one task. The destination tree
mirrors the source tree below each source's fixed part (the folder before the first
wildcard), each name with the new format's extension.

Writes are atomic as for :func:`weightstore.convert`: a local destination is a
temporary file renamed into place, an object-store destination is uploaded whole
from the worker's local spool (a PUT or multipart upload that the store makes
visible only when complete), so no reader ever sees half a file.

The manifest (JSON lines, ``DEST/weightstore-manifest.jsonl`` unless given) holds one
record per attempt: source, size, fingerprint (the object's ETag, else its
modification time), destination, bytes written, seconds, status (``done`` or
``failed``), error (the one-line message) and the settings. A rerun skips every
source whose latest record is ``done`` with the same fingerprint, size, destination
and settings, and retries the rest, failures included. A failure is a record, not an
exception: the run goes on.

Needs the extra ``cluster`` (``pip install 'weightstore[cluster]'``: dask[distributed]
and s3fs).
"""

from __future__ import annotations

import datetime
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from . import api, registry, remote
from . import precision as _precision
from .errors import FileAccessError, FormatError, MissingDependencyError, WeightstoreError
from .fileio import TEMP_SUFFIX, atomic_write, open_for_read
from .progress import ProgressCallback
from .shard import INDEX_SUFFIX

__all__ = ["convert_many", "report_many", "REPORT_COLUMNS", "Unit", "Record", "ManyResult",
           "list_sources", "read_manifest", "write_parquet", "MANIFEST_NAME"]

#: The manifest's file name inside DEST (``manifest=`` puts it elsewhere).
MANIFEST_NAME = "weightstore-manifest.jsonl"
_MAGIC = re.compile(r"[*?\[]")
_SHARD = re.compile(r"^(?P<stem>.+)-(?P<i>\d{5,})-of-(?P<n>\d{5,})(?P<ext>\..+)$")
#: Seconds between rewrites of a manifest kept at a URL (a local one is appended to).
_URL_MANIFEST_EVERY = 30.0


def _dask() -> Any:
    try:
        import distributed
    except ImportError as e:
        raise MissingDependencyError("distributed", "cluster",
                                     "converting collections on Dask (convert-many)") from e
    return distributed


def _fs(path: str, storage_options: dict[str, Any] | None) -> tuple[Any, str]:
    if remote.is_url(path):
        return remote.filesystem(path, storage_options)
    try:
        import fsspec.core
    except ImportError as e:
        raise MissingDependencyError("fsspec", "cluster", "listing sources") from e
    return fsspec.core.url_to_fs(os.path.abspath(remote.local_path(path)))


@dataclass(frozen=True)
class Unit:
    """One conversion task: a file, or a shard index with its shards."""

    #: The file to convert (a URL, or an absolute local path; a shard index).
    source: str
    #: Its path below the source's fixed part, ``/``-separated.
    relative: str
    #: Bytes of every file of the unit.
    size: int
    #: ETag or modification time of every file of the unit.
    fingerprint: str


def _fingerprint(info: dict[str, Any]) -> str:
    for key in ("ETag", "etag", "md5Hash", "crc32c"):
        if info.get(key):
            return f"{key.lower()}:{str(info[key]).strip(chr(34))}"
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        if info.get(key) is not None:
            return f"mtime:{info[key]}"
    return "size-only"


def _hidden(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.startswith(".") or name.endswith(TEMP_SUFFIX) or name == MANIFEST_NAME


def _expand(source: str, storage_options: dict[str, Any] | None
            ) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(full path as given back to the library, relative path, fsspec info) per file."""
    fs, path = _fs(source, storage_options)
    fs.invalidate_cache()  # a listing cached by an earlier run in this process may be stale
    url = remote.is_url(source)
    if _MAGIC.search(path):
        fixed = path[:_MAGIC.search(path).start()]  # type: ignore[union-attr]
        base = fixed.rsplit("/", 1)[0] if "/" in fixed else ""
        found = fs.glob(path, detail=True)
    elif fs.isdir(path):
        base = path.rstrip("/")
        found = fs.find(path, detail=True)
    else:
        base = path.rsplit("/", 1)[0] if "/" in path else ""
        try:
            found = {path: fs.info(path)}
        except FileNotFoundError as e:
            raise FileAccessError("no such file", path=source) from e
    if not found:
        raise FileAccessError(path=source, field="source", expected="files to convert",
                              found="none (nothing matches)")
    for p, info in sorted(found.items()):
        if info.get("type") == "directory" or _hidden(p):
            continue
        rel = p[len(base):].lstrip("/") if base and p.startswith(base) else p.rsplit("/", 1)[-1]
        yield (fs.unstrip_protocol(p) if url else p), rel, info


def list_sources(sources: Iterable[str], storage_options: dict[str, Any] | None = None
                 ) -> list[Unit]:
    """The units :func:`convert_many` converts for *sources*: every file they name, the
    shards of a sharded checkpoint folded into its index (found beside them even when a
    glob does not name it)."""
    files: dict[str, tuple[str, dict[str, Any]]] = {}
    for source in sources:
        for path, rel, info in _expand(os.fspath(source), storage_options):
            files.setdefault(path, (rel, info))
    shards: dict[str, list[str]] = {}
    for path in files:
        m = _SHARD.match(path.rsplit("/", 1)[-1])
        if m:
            folder = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
            shards.setdefault(f"{folder}{m['stem']}{m['ext']}{INDEX_SUFFIX}", []).append(path)
    for index, members in shards.items():
        if index not in files:
            fs, p = _fs(index, storage_options)
            if not fs.exists(p):
                continue  # shard-like names without an index: plain files
            rel = files[members[0]][0].rsplit("/", 1)
            files[index] = ("/".join([*rel[:-1], index.rsplit("/", 1)[-1]]), fs.info(p))
    grouped = {m for index, members in shards.items() if index in files for m in members}
    units = []
    for path, (rel, info) in sorted(files.items()):
        if path in grouped:
            continue  # a shard: converted with its index
        parts = [info] + [files[m][1] for m in shards.get(path, [])]
        units.append(Unit(source=path, relative=rel,
                          size=sum(int(i.get("size") or 0) for i in parts),
                          fingerprint="+".join(_fingerprint(i) for i in parts)))
    return units


def _stem(name: str) -> str:
    """*name* without the extensions a codec claims (``w.json.zst`` -> ``w``)."""
    if name.lower().endswith(INDEX_SUFFIX):
        name = name[:-len(INDEX_SUFFIX)]
    while "." in name.lstrip(".") and registry.codec_for_path(name) is not None:
        name = name.rsplit(".", 1)[0]
    return name


def target_extension(to: str, options: dict[str, Any]) -> str:
    """The extension a file written in format *to* with *options* gets."""
    cls = registry.get_codec(to)
    ext = cls.extensions[0]
    inner = options.get("inner")
    if cls.layer:
        ext = registry.get_codec(inner or cls(**options).inner).extensions[0] + ext  # type: ignore[attr-defined]
    return ext


def destinations(units: list[Unit], out: str, ext: str) -> list[str]:
    """Where each unit goes under *out*: its relative path with extension *ext*; units that
    would collide (``w.json`` and ``w.h5``) keep their whole name (``w.json.npz``)."""
    def name(u: Unit, whole: bool) -> str:
        folder, _, base = u.relative.rpartition("/")
        if whole:
            base = base[:-len(INDEX_SUFFIX)] if base.lower().endswith(INDEX_SUFFIX) else base
        new = (base if whole else _stem(base)) + ext
        return f"{folder}/{new}" if folder else new

    first = [name(u, False) for u in units]
    counts: dict[str, int] = {}
    for d in first:
        counts[d] = counts.get(d, 0) + 1
    out = out.rstrip("/")
    return [f"{out}/{d if counts[d] == 1 else name(u, True)}"
            for d, u in zip(first, units, strict=True)]


@dataclass
class Record:
    """One line of the manifest: an attempt at one unit."""

    source: str
    size: int
    fingerprint: str
    destination: str
    status: str  # "done" or "failed"
    bytes_written: int = 0
    seconds: float = 0.0
    error: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    finished: str = ""

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))


def read_manifest(path: str, storage_options: dict[str, Any] | None = None
                  ) -> dict[str, Record]:
    """The latest record per source in the manifest at *path* (empty if there is none).

    A torn last line (a run killed while appending) is ignored; any other bad line is
    a :class:`FormatError`.
    """
    try:
        with open_for_read(path, storage_options) as f:
            lines = f.read().splitlines()
    except WeightstoreError as e:
        if "no such file" in str(e):
            return {}
        raise
    latest: dict[str, Record] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = orjson.loads(line)
            record = Record(**data)
        except (orjson.JSONDecodeError, TypeError) as e:
            if n == len(lines):
                break
            raise FormatError(path=path, field=f"line {n}", expected="a manifest record",
                              found=str(e).split("\n")[0]) from e
        latest[record.source] = record
    return latest


@dataclass
class ManyResult:
    """What :func:`convert_many` did."""

    #: The records of this run's attempts, in the order the units were listed.
    records: list[Record]
    #: Units skipped: done before with an unchanged source.
    skipped: list[Unit]
    #: Wall-clock seconds of the run.
    seconds: float
    manifest: str

    @property
    def done(self) -> list[Record]:
        return [r for r in self.records if r.status == "done"]

    @property
    def failed(self) -> list[Record]:
        return [r for r in self.records if r.status == "failed"]

    @property
    def bytes_in(self) -> int:
        """Bytes of the sources converted in this run."""
        return sum(r.size for r in self.done)

    @property
    def bytes_out(self) -> int:
        return sum(r.bytes_written for r in self.done)

    @property
    def throughput(self) -> float:
        """Source bytes converted per second of the run."""
        return self.bytes_in / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {"done": len(self.done), "skipped": len(self.skipped),
                "failed": len(self.failed), "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out, "seconds": round(self.seconds, 3),
                "throughput_bytes_per_s": round(self.throughput), "manifest": self.manifest}


def convert_one(unit: Unit, destination: str, settings: dict[str, Any],
                storage_options: dict[str, Any] | None) -> Record:
    """The task run on a worker: convert one unit, and say how it went (never raises for
    a failure of the file)."""
    start = time.perf_counter()
    record = Record(source=unit.source, size=unit.size, fingerprint=unit.fingerprint,
                    destination=destination, status="failed", settings=settings)
    try:
        if not remote.is_url(destination):
            os.makedirs(os.path.dirname(destination) or ".", exist_ok=True)
        written = api.convert(unit.source, destination, to=settings["to"],
                              precision=settings["precision"],
                              dequantize=settings["dequantize"], verify=settings["verify"],
                              max_shard_size=settings["max_shard_size"],
                              strict=settings.get("strict", False),
                              storage_options=storage_options, **settings["options"])
        record.status, record.bytes_written = "done", written.file_size
    except WeightstoreError as e:
        record.error = str(e).replace("\n", " ")
    except (OSError, ValueError, MemoryError) as e:  # failures of the storage, not the file's
        record.error = f"{type(e).__name__}: {e}".replace("\n", " ")
    record.seconds = round(time.perf_counter() - start, 4)
    record.finished = _now()
    return record


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class _Manifest:
    """Appends records to a local manifest as they come; rewrites one at a URL."""

    def __init__(self, path: str, previous: dict[str, Record],
                 storage_options: dict[str, Any] | None) -> None:
        self.path, self.storage_options = path, storage_options
        self.latest = dict(previous)
        self.url = remote.is_url(path)
        self.written = time.monotonic()
        if not self.url:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def add(self, record: Record) -> None:
        self.latest[record.source] = record
        if not self.url:
            with open(self.path, "ab") as f:  # one line per write: a crash tears at most one
                f.write(record.to_json() + b"\n")
        elif time.monotonic() - self.written > _URL_MANIFEST_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.url:
            with atomic_write(self.path, self.storage_options) as f:
                for r in self.latest.values():
                    f.write(r.to_json() + b"\n")
            self.written = time.monotonic()


def convert_many(
    sources: str | Iterable[str],
    *,
    to: str,
    out: str,
    scheduler: Any = None,
    workers: int | None = None,
    manifest: str | None = None,
    precision: _precision.Precision | dict[str, Any] | None = None,
    dequantize: bool = False,
    verify: bool = True,
    max_shard_size: int | str | None = None,
    storage_options: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    on_record: Callable[[Record], None] | None = None,
    strict: bool = False,
    **options: Any,
) -> ManyResult:
    """Convert every file *sources* name to format *to* under *out*, on Dask.

    *scheduler*: a ``dask.distributed`` address (``tcp://host:8786``), a
    ``distributed.Client``, or None for a local cluster of *workers* processes (default:
    one per core). *storage_options* (fsspec: credentials, endpoint) apply to sources,
    destinations and the manifest. *precision*, *dequantize*, *verify*,
    *max_shard_size*, *strict* and *options* are those of :func:`weightstore.convert` (with
    *strict*, a file holding entries weightstore does not hold is a failed record).
    *progress* is called as ``progress(done_bytes, total_bytes)`` over the sources to
    convert, *on_record* with each :class:`Record` as it arrives. Failures are records
    (``result.failed``), not exceptions. See the module doc for the manifest.
    """
    started = time.perf_counter()
    api.codec_for_writing("x", to, **options)  # bad format or options: fail before any work
    p = _precision.Precision.of(precision)
    settings = {"to": to, "options": {k: options[k] for k in sorted(options)},
                "precision": None if p is None else {
                    "dtype": p.dtype, "digits": p.digits,
                    "quantize": None if p.quantize is None else str(p.quantize)},
                "dequantize": dequantize, "verify": verify, "max_shard_size": max_shard_size}
    if strict:  # only when set, so that manifests of earlier runs still match without it
        settings["strict"] = True
    settings = orjson.loads(orjson.dumps(settings, default=str))
    distributed = _dask()
    units = list_sources([sources] if isinstance(sources, str | os.PathLike) else sources,
                         storage_options)
    dests = destinations(units, out, target_extension(to, options))
    manifest = manifest or f"{out.rstrip('/')}/{MANIFEST_NAME}"
    previous = read_manifest(manifest, storage_options)
    todo, skipped = [], []
    for unit, dest in zip(units, dests, strict=True):
        old = previous.get(unit.source)
        if old is not None and old.status == "done" and old.fingerprint == unit.fingerprint \
                and old.size == unit.size and old.destination == dest \
                and old.settings == settings:
            skipped.append(unit)
        else:
            todo.append((unit, dest))
    log = _Manifest(manifest, previous, storage_options)
    got: dict[str, Record] = {}
    total, done_bytes = sum(u.size for u, _ in todo), 0

    def lost(u: Unit, d: str, error: str) -> Record:
        return Record(source=u.source, size=u.size, fingerprint=u.fingerprint, destination=d,
                      status="failed", settings=settings, error=error, finished=_now())

    try:
        for record in _run(distributed, scheduler, workers, convert_one, todo, lost,
                           settings, storage_options):
            got[record.source] = record
            log.add(record)
            done_bytes += record.size
            if on_record is not None:
                on_record(record)
            if progress is not None:
                progress(done_bytes, total)
    finally:
        log.flush()
    records = [got[u.source] for u, _ in todo]
    return ManyResult(records=records, skipped=skipped,
                      seconds=time.perf_counter() - started, manifest=manifest)


#: Columns of :func:`report_many`'s rows, in order.
REPORT_COLUMNS = ("source", "format", "tensors", "parameters", "bytes", "bytes_per_param",
                  "dtypes", "to", "size_as_to", "error")


def report_one(unit: Unit, _: str, to: str | None, precision: dict[str, Any] | None,
               options: dict[str, Any], storage_options: dict[str, Any] | None
               ) -> dict[str, Any]:
    """The task of :func:`report_many` on a worker: one row (never raises for a failure
    of the file: the row's ``error`` says it)."""
    row: dict[str, Any] = dict.fromkeys(REPORT_COLUMNS)
    row.update(source=unit.source, bytes=unit.size, to=to)
    try:
        info = api.inspect(unit.source, storage_options=storage_options)
        params = info.total_values
        counts: dict[str, int] = {}
        for t in info.tensors:
            counts[t.dtype_name] = counts.get(t.dtype_name, 0) + t.count
        row.update(format=info.format, tensors=len(info.tensors), parameters=params,
                   bytes=info.file_size,
                   bytes_per_param=round(info.file_size / params, 4) if params else None,
                   dtypes=" ".join(f"{k}:{100 * v / max(params, 1):.1f}%" for k, v in
                                   sorted(counts.items(), key=lambda kv: -kv[1])))
        if to is not None:
            with tempfile.TemporaryDirectory(prefix="weightstore-report-") as tmp:
                ext = target_extension(to, options)
                written = api.convert(unit.source, os.path.join(tmp, "w" + ext), to=to,
                                      precision=precision, storage_options=storage_options,
                                      **options)
                row["size_as_to"] = written.file_size
    except WeightstoreError as e:
        row["error"] = str(e).replace("\n", " ")
    return row


def report_many(
    sources: str | Iterable[str],
    *,
    to: str | None = None,
    precision: _precision.Precision | dict[str, Any] | None = None,
    scheduler: Any = None,
    workers: int | None = None,
    storage_options: dict[str, Any] | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """One row per file *sources* name (columns :data:`REPORT_COLUMNS`): format, tensors,
    parameters, bytes, bytes per parameter, the dtype mix by parameters and, with *to*
    (and *precision*, *options* as for :func:`weightstore.convert`), the exact size the
    file takes in that format: each file is converted to a temporary file on its worker
    and measured. Runs on Dask as :func:`convert_many`; a file that fails has its
    ``error`` set. Rows are in the order of the listing."""
    if to is not None:
        api.codec_for_writing("x", to, **options)
    p = _precision.Precision.of(precision)
    pdict = None if p is None else {"dtype": p.dtype, "digits": p.digits,
                                    "quantize": None if p.quantize is None else str(p.quantize)}
    distributed = _dask()
    units = list_sources([sources] if isinstance(sources, str | os.PathLike) else sources,
                         storage_options)

    def lost(u: Unit, _: str, error: str) -> dict[str, Any]:
        return {**dict.fromkeys(REPORT_COLUMNS), "source": u.source, "bytes": u.size,
                "to": to, "error": error}

    rows = {r["source"]: r for r in _run(distributed, scheduler, workers, report_one,
                                         [(u, "") for u in units], lost, to, pdict,
                                         options, storage_options)}
    return [rows[u.source] for u in units]


def write_parquet(rows: list[dict[str, Any]], path: str,
                  storage_options: dict[str, Any] | None = None) -> None:
    """*rows* of :func:`report_many` as a Parquet file at *path*, written atomically
    (needs pyarrow: extra 'parquet')."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise MissingDependencyError("pyarrow", "parquet", "Parquet output") from e
    schema = pa.schema([("source", pa.string()), ("format", pa.string()),
                        ("tensors", pa.int64()), ("parameters", pa.int64()),
                        ("bytes", pa.int64()), ("bytes_per_param", pa.float64()),
                        ("dtypes", pa.string()), ("to", pa.string()),
                        ("size_as_to", pa.int64()), ("error", pa.string())])
    table = pa.Table.from_pylist(rows, schema=schema)
    with atomic_write(path, storage_options) as f:
        pq.write_table(table, f)


def _run(distributed: Any, scheduler: Any, workers: int | None, task: Callable[..., Any],
         items: list[tuple[Unit, str]], lost: Callable[[Unit, str, str], Any],
         *args: Any) -> Iterator[Any]:
    """``task(unit, dest, *args)`` for each item on Dask, results as they finish; a task
    lost with its worker gives ``lost(unit, dest, message)``."""
    if not items:
        return
    client, owned = _client(distributed, scheduler, workers)
    try:
        run = uuid.uuid4().hex  # a key of its own: Dask would reuse an earlier result
        futures = {client.submit(task, u, d, *args, key=f"weightstore-{run}-{i}",
                                 pure=False): (u, d) for i, (u, d) in enumerate(items)}
        for future in distributed.as_completed(futures):
            try:
                yield future.result()
            except Exception as e:  # the task itself was lost: a worker died (memory?)
                u, d = futures[future]
                yield lost(u, d, f"task lost: {type(e).__name__}: {e}".replace("\n", " "))
    finally:
        if owned:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()


def _client(distributed: Any, scheduler: Any, workers: int | None) -> tuple[Any, bool]:
    """A client for *scheduler*, and whether this call made it (and closes it)."""
    if isinstance(scheduler, distributed.Client):
        return scheduler, False
    if scheduler is not None:
        return distributed.Client(scheduler), True
    cluster = distributed.LocalCluster(n_workers=workers or os.cpu_count() or 1,
                                       threads_per_worker=1)
    return distributed.Client(cluster), True

