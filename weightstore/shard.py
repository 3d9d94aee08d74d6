"""Sharded models: numbered files plus a JSON index, in the Hugging Face layout.

``save(weights, "out/model.npz", max_shard_size="2GB")`` writes::

    out/model-00001-of-00003.npz
    out/model-00002-of-00003.npz
    out/model-00003-of-00003.npz
    out/model.npz.index.json

The index is ``{"metadata": {"total_size": N, ...}, "weight_map": {name: shard}}``:
*N* is the bytes of all tensors, ``weight_map`` names each tensor's shard in the
weights' order, and the weights' string metadata sits beside ``total_size`` (and
in every shard whose format holds metadata). Tensors go to shards in order; a
shard is closed before it would exceed the size, and a tensor larger than the
size gets a shard of its own. A model that fits in one shard still gets the
index (``model-00001-of-00001.npz``), so that the index path always names it.

:func:`weightstore.load`, :func:`weightstore.open` and :func:`weightstore.convert`
take the index's path and treat the shards as one model. Shard names in an index
must be plain file names in the index's folder (no ``/``, no ``..``); each shard
must hold exactly the tensors the index maps to it.

Writing is all or nothing up to the commit: every shard is written and synced
under a temporary name first, and only then renamed into place, the index last.
A failure before the commit leaves no new file; the commit itself is a few
renames. Shards of an earlier set at the same path that the new index no longer
names are removed after it.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Mapping
from typing import IO, Any

import numpy as np
import orjson

from . import registry, remote
from .codec import Codec, Limits, TensorSource
from .errors import FileAccessError, FormatError, LimitError, OptionError, UnsupportedError
from .fileio import StagedFiles, open_for_read
from .model import TensorInfo, info_of

__all__ = ["INDEX_SUFFIX", "is_index", "parse_size", "plan_shards", "shard_names", "index_path",
           "write_sharded", "read_index", "ShardedSource"]

#: An index file's name is the model's file name plus this.
INDEX_SUFFIX = ".index.json"
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_SHARD_NAME = re.compile(r"^(?P<stem>.+)-(?P<i>\d{5,})-of-(?P<n>\d{5,})(?P<ext>\..+)$")
#: Largest index file read, in bytes.
_MAX_INDEX_BYTES = 64 << 20


def is_index(path: Any) -> bool:
    """Whether *path* names a shard index (``*.index.json``)."""
    return os.fspath(path).lower().endswith(INDEX_SUFFIX) if isinstance(
        path, str | os.PathLike) else False


def parse_size(size: int | str) -> int:
    """Bytes from ``2GB`` (10**9), ``500MiB`` (2**20), ``1.5GB`` or an integer."""
    if isinstance(size, int) and not isinstance(size, bool):
        value = size
    else:
        m = _SIZE.match(str(size))
        if m is None or m.group(2).lower() not in _UNITS:
            raise OptionError(field="max_shard_size",
                              expected="a size like 2GB, 500MB, 1GiB or a number of bytes",
                              found=size)
        number = float(m.group(1)) * _UNITS[m.group(2).lower()]
        if not number < 2.0**63:  # inf from a number of hundreds of digits, too
            raise OptionError(field="max_shard_size", expected="a size below 2**63 bytes",
                              found=size)
        value = int(number)
    if value <= 0:
        raise OptionError(field="max_shard_size", expected="a positive size", found=size)
    return value


def plan_shards(sizes: Mapping[str, int], max_shard_size: int) -> list[list[str]]:
    """Tensor names grouped into shards in order, each within *max_shard_size* bytes
    unless a single tensor is larger."""
    shards: list[list[str]] = []
    current: list[str] = []
    used = 0
    for name, size in sizes.items():
        if current and used + size > max_shard_size:
            shards.append(current)
            current, used = [], 0
        current.append(name)
        used += size
    if current or not shards:
        shards.append(current)
    return shards


def split_name(path: str, codec: Codec) -> tuple[str, str]:
    """``out/model.npz.zst`` as ``("out/model", ".npz.zst")``: the stem and the
    extensions that name the format (the inner format too, for a layer codec)."""
    base = path.rsplit("/", 1)[-1] if remote.is_url(path) else os.path.basename(path)
    lower = base.lower()
    ext = next((e for e in sorted(codec.extensions, key=len, reverse=True)
                if lower.endswith(e)), "")
    rest = base[: len(base) - len(ext)]
    if codec.layer:
        inner = registry.codec_for_path("x" + rest[rest.rfind("."):]) if "." in rest else None
        if inner is not None:
            ext = rest[rest.rfind("."):] + ext
            rest = rest[: rest.rfind(".")]
    if not ext:
        ext = codec.extensions[0] if codec.extensions else ""
    return path[: len(path) - len(base)] + rest, ext


def index_path(path: str, codec: Codec) -> str:
    """The index a model saved to *path* with a shard size gets: ``out/model.npz.index.json``."""
    stem, ext = split_name(path, codec)
    return f"{stem}{ext}{INDEX_SUFFIX}"


def shard_names(path: str, codec: Codec, count: int) -> tuple[list[str], str]:
    """The shard paths and the index path for a model saved to *path* in *count* shards."""
    stem, ext = split_name(path, codec)
    shards = [f"{stem}-{i:05d}-of-{count:05d}{ext}" for i in range(1, count + 1)]
    return shards, f"{stem}{ext}{INDEX_SUFFIX}"


def _basename(path: str) -> str:
    return path.rsplit("/", 1)[-1] if remote.is_url(path) else os.path.basename(path)


def write_sharded(weights: Mapping[str, np.ndarray], path: str, codec: Codec,
                  max_shard_size: int, *, sizes: Mapping[str, int],
                  metadata: Mapping[str, str],
                  write: Callable[[Mapping[str, np.ndarray], IO[bytes], str], None],
                  storage_options: dict[str, Any] | None = None,
                  replace: bool = True) -> list[str]:
    """Write *weights* as shards plus an index; returns the files written, the shards in
    order and the index last. *write* writes one shard's mapping to a file. With
    *replace* false, an existing shard or index is refused (nothing is written)."""
    groups = plan_shards(sizes, max_shard_size)
    if "total_size" in metadata:
        raise UnsupportedError(path=path, field="metadata key 'total_size'",
                               expected="a key the shard index does not use for the size "
                               "of the tensors", found="total_size")
    shard_paths, index_path = shard_names(path, codec, len(groups))
    staged = StagedFiles(storage_options, replace=replace)
    weight_map: dict[str, str] = {}
    try:
        for names, shard in zip(groups, shard_paths, strict=True):
            part = _Part(weights, names, metadata)
            with staged.file(shard) as f:
                write(part, f, shard)
            for name in names:
                weight_map[name] = _basename(shard)
        index = {"metadata": {"total_size": int(sum(sizes.values())), **metadata},
                 "weight_map": weight_map}
        with staged.file(index_path) as f:
            f.write(orjson.dumps(index, option=orjson.OPT_INDENT_2))
    except BaseException:
        staged.discard()
        raise
    stem, ext = split_name(path, codec)
    old = _old_shards(index_path, f"{_basename(stem)}\0{ext}", storage_options)
    staged.commit()
    keep = {_basename(p) for p in shard_paths}
    for name in old - keep:
        stale = remote.join(index_path, name)
        with contextlib.suppress(OSError, FileAccessError):
            if remote.is_url(stale):
                remote.remove_url(stale, storage_options)
            else:
                os.unlink(stale)
    return [*shard_paths, index_path]


def _old_shards(index_path: str, naming: str,
                storage_options: dict[str, Any] | None) -> set[str]:
    """Shards of an earlier save to the same path that the index there lists, which this
    save may remove once its own are in place.

    Only names it can prove are its own: each must be exactly what :func:`shard_names`
    gives for this stem and extension (*naming* is ``stem NUL ext``, file name only),
    ``stem-<i>-of-<n>ext`` with the same *n* in every name and each *i* from 1 to *n*
    at most once. An index that lists anything else (another model's files, the index
    itself, a name in another folder) is not trusted at all: nothing is removed.
    """
    try:
        with open_for_read(index_path, storage_options) as f:
            doc = orjson.loads(f.read(_MAX_INDEX_BYTES))
        names = set(doc["weight_map"].values())
    except (FileAccessError, orjson.JSONDecodeError, KeyError, TypeError, AttributeError,
            OSError):
        return set()
    stem, ext = naming.split("\0")
    own = re.compile(re.escape(stem) + r"-(\d{5})-of-(\d{5})" + re.escape(ext))
    counts: set[int] = set()
    for n in names:
        m = own.fullmatch(n) if isinstance(n, str) and _plain(n) else None
        if m is None or not 1 <= int(m[1]) <= int(m[2]):
            return set()
        counts.add(int(m[2]))
    return names if len(counts) == 1 else set()


def _plain(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..") \
        and "\x00" not in name


class _Part(Mapping[str, np.ndarray]):
    """The tensors of one shard, taken from the whole model's mapping on access."""

    def __init__(self, weights: Mapping[str, np.ndarray], names: list[str],
                 metadata: Mapping[str, str]) -> None:
        self._weights, self._names = weights, names
        self.metadata = dict(metadata)

    @property
    def nbytes(self) -> int:
        """Bytes of this shard's tensors."""
        return sum(info_of(self._weights, n).nbytes for n in self._names)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._names:
            raise KeyError(name)
        return self._weights[name]

    def info(self, name: str) -> TensorInfo:
        """Tensor *name*'s header, without reading it where the whole model's mapping can
        tell."""
        if name not in self._names:
            raise KeyError(name)
        return info_of(self._weights, name)

    def __iter__(self) -> Any:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def read_index(path: str, storage_options: dict[str, Any] | None = None
               ) -> tuple[dict[str, str], dict[str, str]]:
    """The index's weight map (tensor name -> shard file name) and string metadata."""
    with open_for_read(path, storage_options) as f:
        raw = f.read(_MAX_INDEX_BYTES + 1)
    if len(raw) > _MAX_INDEX_BYTES:
        raise LimitError(path=path, field="index", expected=f"at most {_MAX_INDEX_BYTES:,} bytes",
                         found="more")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise FormatError(f"shard index is not JSON ({e})", path=path) from e
    if not isinstance(doc, dict) or not isinstance(doc.get("weight_map"), dict):
        raise FormatError(path=path, field="weight_map",
                          expected="a shard index: an object with a 'weight_map' object",
                          found=sorted(doc) if isinstance(doc, dict) else type(doc).__name__)
    weight_map = doc["weight_map"]
    if not weight_map:
        raise FormatError(path=path, field="weight_map", expected="at least one tensor",
                          found="{}")
    own_name = _basename(path)
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or not _plain(shard):
            raise FormatError(path=path, field=f"weight_map[{name!r}]",
                              expected="a file name in the index's folder", found=shard)
        if shard == own_name or is_index(shard):
            raise FormatError(path=path, field=f"weight_map[{name!r}]",
                              expected="a shard file, not an index", found=shard)
    meta = doc.get("metadata", {})
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise FormatError(path=path, field="metadata", expected="an object",
                          found=type(meta).__name__)
    total = meta.get("total_size")
    if total is not None and (not isinstance(total, int) or isinstance(total, bool) or total < 0):
        raise FormatError(path=path, field="metadata.total_size",
                          expected="a non-negative integer", found=total)
    strings = {k: v for k, v in meta.items() if k != "total_size" and isinstance(v, str)}
    return weight_map, strings


class ShardedSource(TensorSource):
    """Several shards' sources as one, in the index's order."""

    def __init__(self, path: str, weight_map: dict[str, str], metadata: dict[str, str],
                 sources: dict[str, TensorSource], limits: Limits) -> None:
        self._owner: dict[str, TensorSource] = {}
        metas_by_name: dict[str, TensorInfo] = {}
        merged: dict[str, str] = {}
        for shard, source in sources.items():
            merged.update(source.metadata)
            expected = [n for n, s in weight_map.items() if s == shard]
            held = [m.name for m in source.tensors]
            if set(held) != set(expected):
                extra = sorted(set(held) - set(expected))
                missing = sorted(set(expected) - set(held))
                raise FormatError(
                    path=path, field=f"shard {shard!r}",
                    expected="exactly the tensors the index maps to it",
                    found=(f"unlisted {extra[:3]}" if extra else "")
                    + (" and " if extra and missing else "")
                    + (f"missing {missing[:3]}" if missing else ""),
                )
            for meta in source.tensors:
                metas_by_name[meta.name] = meta
                self._owner[meta.name] = source
        if len(weight_map) > limits.max_tensors:
            raise FormatError(path=path, field="weight_map",
                              expected=f"at most {limits.max_tensors} tensors",
                              found=len(weight_map))
        merged.update(metadata)
        super().__init__([metas_by_name[n] for n in weight_map], merged)
        self.lazy = all(s.lazy for s in sources.values())

    def read(self, name: str, *, mmap: bool = False) -> np.ndarray:
        return self._owner[name].read(name, mmap=mmap)

    def close(self) -> None:
        """Nothing: the shards' own files are closed by whoever opened them."""
