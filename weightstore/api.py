"""The library's entry points: :func:`load`, :func:`save`, :func:`convert`, :func:`inspect`,
and :func:`open_weights` (``weightstore.open``) for random access.

Every path may be a URL (``s3://``, ``memory://``, ...; :mod:`weightstore.remote`)
or, for reading, a shard index (``model.npz.index.json``; :mod:`weightstore.shard`).
``convert`` and ``save`` from an opened file move one tensor at a time where both
formats allow it, so memory stays bounded by the largest tensor.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from . import precision as _precision
from . import registry, remote, shard, sniffing
from .codec import DEFAULT_LIMITS, Budget, Codec, Limits, file_size
from .errors import FileAccessError, FormatError, UnknownFormatError, translating_faults
from .fileio import atomic_write, open_for_read
from .lazy import LazyWeights, StreamingWarning
from .model import TensorInfo, Weights, as_weights, info_of
from .progress import ProgressCallback, reporting
from .select import select

__all__ = ["load", "save", "convert", "inspect", "verify", "open_weights", "codec_for_writing",
           "written_path", "stored_size",
           "TensorInfo", "FileInfo", "Written", "Verified", "STREAMING_WARN_BYTES"]

#: Above this many bytes of tensors, a conversion or save that must hold the whole model
#: in memory (a format that cannot stream) warns with :class:`StreamingWarning`.
STREAMING_WARN_BYTES = 1 << 30

PathLike = str | os.PathLike[str]

#: The end of a hint naming a format: the command line says it in its own words.
FORMATS_HINT = "weightstore.formats() lists them"


def _layer_options(cls: type[Codec], prefix: list[str], options: dict[str, Any]) -> dict[str, Any]:
    """For a layer codec (zstd) named like ``w.json.zst``, the inner format from the name."""
    if cls.layer and options.get("inner") is None and prefix:
        found = registry.codec_for_path("x" + "".join(prefix))
        if found is not None:
            options = {**options, "inner": found[0].name}
    return options


def codec_for_writing(path: PathLike, format: str | None = None, **options: Any) -> Codec:
    """The codec :func:`save` would use for *path*: *format* if given, else the extension."""
    found = registry.codec_for_path(path)
    if format is not None:
        cls = registry.get_codec(format)
        prefix = found[1] if found is not None and found[0] is cls else []
        if found is not None and cls.layer and found[0] is not cls:
            prefix = registry.suffixes(path)
    elif found is not None:
        cls, prefix = found
    else:
        ext = "".join(registry.suffixes(path)) or "(none)"
        raise UnknownFormatError(
            path=path, field="extension", expected="one a codec claims", found=ext,
            hint=f"pass format=NAME (to=NAME in convert); {FORMATS_HINT}",
        )
    return cls(**_layer_options(cls, prefix, options))


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"


def save(
    weights: Weights | LazyWeights | Mapping[str, Any],
    path: PathLike,
    format: str | None = None,
    *,
    precision: _precision.Precision | dict[str, Any] | None = None,
    max_shard_size: int | str | None = None,
    progress: ProgressCallback | None = None,
    storage_options: dict[str, Any] | None = None,
    overwrite: bool = True,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    rename: Sequence[str] = (),
    **options: Any,
) -> Path | str:
    """Write *weights* to *path* atomically, in *format* or the one its extension names.

    *options* are the codec's options (``weightstore formats`` lists them). *precision*
    (a :class:`~weightstore.precision.Precision` or a dict like ``{"dtype": "float16"}``,
    ``{"quantize": "4/block:64"}``, ``{"digits": 6}``) changes the values first, with a
    :class:`~weightstore.errors.LossyWarning` (the whole model is then in memory). From a
    :class:`LazyWeights` (``weightstore.open``) a format that streams is written one
    tensor at a time. *max_shard_size* (bytes, or ``"2GB"``) splits the model into
    numbered shards plus ``<path>.index.json`` (see :mod:`weightstore.shard`).
    *progress* is called as ``progress(done_bytes, total_bytes)``. An existing file is
    replaced (keeping its permissions) unless *overwrite* is false: then
    :class:`~weightstore.errors.FileAccessError`, and the file stays as it was.
    *include*/*exclude* (glob patterns) and *rename* (``"OLD=NEW"`` prefix or
    ``"re:PATTERN=REPL"`` rules) choose and rename tensors on the way, one at a time
    from a :class:`LazyWeights` (:mod:`weightstore.select`).
    Returns the path written (the index for a sharded model); a URL stays a string.
    """
    weights = _selecting(weights, include, exclude, rename)
    written = _write(weights, path, format, precision=precision, max_shard_size=max_shard_size,
                     progress=progress, storage_options=storage_options, options=options,
                     overwrite=overwrite)
    return written.path if remote.is_url(written.path) else Path(written.path)


@dataclass(frozen=True)
class Written:
    """What :func:`convert` wrote: the file, its format and size, and the tensors in it.

    Iterating gives the tensor names, ``len()`` their number.
    """

    #: The file written: the index of a sharded model.
    path: str
    #: The codec, as shown to people (``"npz"``, ``"zstd(json)"``).
    format: str
    #: The writing codec's :meth:`~weightstore.Codec.get_config`.
    config: dict[str, Any]
    #: Each tensor written, in the file's order.
    tensors: tuple[TensorInfo, ...]
    #: The string metadata written.
    metadata: dict[str, str]
    #: Every file written (shards, then the index).
    files: tuple[str, ...]
    #: Bytes all those files take in storage.
    file_size: int

    def __iter__(self) -> Iterator[str]:
        return (t.name for t in self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    @property
    def total_values(self) -> int:
        """Number of values across all tensors."""
        return sum(t.count for t in self.tensors)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {"path": self.path, "format": self.format, "config": self.config,
                "files": list(self.files), "file_size": self.file_size,
                "tensor_count": len(self.tensors), "total_values": self.total_values,
                "metadata": self.metadata, "tensors": [t.to_dict() for t in self.tensors]}


def _write(
    weights: Weights | LazyWeights | Mapping[str, Any],
    path: PathLike,
    format: str | None,
    *,
    precision: _precision.Precision | dict[str, Any] | None,
    max_shard_size: int | str | None,
    progress: ProgressCallback | None,
    storage_options: dict[str, Any] | None,
    options: dict[str, Any],
    overwrite: bool = True,
) -> Written:
    w: Any = weights if isinstance(weights, LazyWeights) else as_weights(weights)
    codec = codec_for_writing(path, format, **options)
    shard_size = shard.parse_size(max_shard_size) if max_shard_size is not None else None
    p = _precision.Precision.of(precision)
    if isinstance(w, LazyWeights) and (not codec.streams_writes or p is not None):
        if w.nbytes > STREAMING_WARN_BYTES:
            why = (f"{codec.name} cannot be written one tensor at a time" if p is None
                   else "a precision option changes the whole model at once")
            warnings.warn(f"{why}: writing {_gib(w.nbytes)} holds the whole model in memory",
                          StreamingWarning, stacklevel=3)
        w = w.load()
    if p is not None:
        w = _precision.apply(w, p)
    tensors = tuple(info_of(w, name) for name in w)
    out = os.fspath(path)
    if shard_size is not None:
        files = shard.write_sharded(
            reporting(w, progress), out, codec, shard_size,
            sizes={t.name: t.nbytes for t in tensors}, metadata=w.metadata,
            write=lambda part, f, p: codec.write(part, f, path=p),
            storage_options=storage_options, replace=overwrite)
    else:
        with atomic_write(path, storage_options, replace=overwrite) as f:
            codec.write(reporting(w, progress), f, path=out)
        files = [out]
    size = sum(_file_size(f, storage_options) for f in files)
    return Written(path=files[-1], format=codec.label, config=codec.get_config(),
                   tensors=tensors, metadata=dict(w.metadata), files=tuple(files),
                   file_size=size)


def _codec_for_reading(f: IO[bytes], path: PathLike, format: str | None,
                       options: dict[str, Any], dequantize: bool | None = None) -> Codec:
    head = f.read(registry.SNIFF_BYTES)
    f.seek(0)
    if not head:
        raise FormatError(path=path, field="content", expected="a weight file", found="0 bytes")
    found = registry.codec_for_path(path)
    prefix = found[1] if found is not None else []
    if format is not None:
        cls = registry.get_codec(format)
    else:
        sniffed = registry.sniff(head)
        if sniffed is not None and found is not None and \
                found[0].refines == sniffed.name:
            cls = found[0]  # a layout of that format, named by the extension (.weights.h5)
        elif sniffed is not None:
            cls = sniffed
        elif found is not None:
            cls = found[0]
        else:
            end = f.seek(0, os.SEEK_END)
            f.seek(max(0, end - 8))
            tail = f.read(8)
            f.seek(0)
            raise UnknownFormatError(
                path=path, field="format",
                expected="content or an extension that a codec recognises",
                found=f"first bytes {head[:16]!r}",
                hint=sniffing.describe_unknown(head, tail, os.fspath(path)),
            )
    if dequantize is not None and any(o.name == "dequantize" for o in cls.options):
        options = {"dequantize": dequantize, **options}  # a format's own quantized types
    return cls(**_layer_options(cls, prefix, options))


def load(
    path: PathLike,
    format: str | None = None,
    *,
    limits: Limits | None = None,
    verify: bool = True,
    dequantize: bool = True,
    progress: ProgressCallback | None = None,
    storage_options: dict[str, Any] | None = None,
    strict: bool = False,
    **options: Any,
) -> Weights:
    """Read the weights in *path* (a file, a URL, or a shard index). The format is *format*,
    else the one the content shows, else the one the extension names. Loading never runs
    code from the file. *progress* is called as ``progress(done_bytes, total_bytes)``.

    Checksums the format stores are verified (:class:`ChecksumError` names the damaged
    tensor); ``verify=False`` skips that, to salvage what a damaged file still holds.

    Quantized tensors come back as floats under their own names unless *dequantize* is
    false, which gives the stored integer codes and scales (:mod:`weightstore.precision`).

    Entries of other tools' files that weightstore does not hold (a complex or string
    array in an npz or HDF5 file, a float8 tensor, an object in a pickle) are left out
    with one :class:`~weightstore.errors.SkippedEntriesWarning` per file listing them;
    with *strict* such a file is refused (:class:`~weightstore.errors.UnsupportedError`).
    Plain numbers and strings in a pickle become metadata (docs/formats.md).
    """
    limits = limits or DEFAULT_LIMITS
    budget = Budget(limits, strict=strict)  # one for the whole load: every shard, layer
    if shard.is_index(path) or progress is not None:
        with _open(path, format, limits=limits, verify=verify, mmap=False,
                   storage_options=storage_options, options=options, budget=budget) as lazy:
            stored = lazy.load(limits=limits, progress=progress, budget=budget)
        return _precision.dequantize(stored, path=os.fspath(path), budget=budget) \
            if dequantize else stored
    with open_for_read(path, storage_options) as f:
        budget.add_input(file_size(f))
        codec = _codec_for_reading(f, path, format, options, dequantize)
        with translating_faults(os.fspath(path), codec.name):
            stored = codec.read(f, path=os.fspath(path), limits=limits, verify=verify,
                                budget=budget)
            return _precision.dequantize(stored, path=os.fspath(path), budget=budget) \
                if dequantize else stored


def convert(
    src: PathLike,
    dst: PathLike,
    *,
    from_format: str | None = None,
    to: str | None = None,
    limits: Limits | None = None,
    precision: _precision.Precision | dict[str, Any] | None = None,
    dequantize: bool = False,
    verify: bool = True,
    max_shard_size: int | str | None = None,
    progress: ProgressCallback | None = None,
    storage_options: dict[str, Any] | None = None,
    overwrite: bool = True,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    rename: Sequence[str] = (),
    strict: bool = False,
    **options: Any,
) -> Written:
    """Read *src* and write it to *dst* (format *to* or *dst*'s extension). *options* go
    to the writing codec; *verify* as for :func:`load`; *precision*, *max_shard_size*,
    *progress*, *overwrite*, *include*, *exclude* and *rename* as for :func:`save` (with
    *overwrite* false, an existing *dst* is refused before *src* is read). A quantized
    source is copied as stored (codes and scales), unless *dequantize* is true or a
    *precision* is given: then its floats are restored first. *strict* as for
    :func:`load`: entries weightstore does not hold refuse *src* instead of being skipped.

    Tensors move one at a time when *src*'s format can be read tensor by tensor and
    *dst*'s written so (``weightstore formats``; docs/formats.md), so memory stays
    bounded by the largest tensor; otherwise the model is held whole, with a
    :class:`StreamingWarning` above :data:`STREAMING_WARN_BYTES`. Returns a
    :class:`Written` record: the file written (a sharded model's index), its format, the
    tensors and metadata written, every file and their size in storage.
    """
    codec_for_writing(dst, to, **options)  # fail on bad options before reading
    if max_shard_size is not None:
        shard.parse_size(max_shard_size)
    if not overwrite:
        _refuse_existing(written_path(dst, to, max_shard_size=max_shard_size, **options),
                         storage_options)
    p = _precision.Precision.of(precision)
    limits = limits or DEFAULT_LIMITS
    budget = Budget(limits, strict=strict)  # one for the whole conversion
    with _open(src, from_format, limits=limits, verify=verify, mmap=False,
               storage_options=storage_options, options={}, budget=budget) as source:
        if not source.lazy and source.nbytes > STREAMING_WARN_BYTES:
            warnings.warn(
                f"{source.format} cannot be read one tensor at a time: converting "
                f"{_gib(source.nbytes)} holds the whole model in memory", StreamingWarning,
                stacklevel=2)
        weights: LazyWeights | Weights = _selecting(source, include, exclude, rename)
        if p is not None or (dequantize and _precision.is_quantized(source)):  # type: ignore[arg-type]
            weights = _precision.apply(
                _precision.dequantize(
                    weights.load(limits=limits, budget=budget),  # type: ignore[union-attr]
                    path=os.fspath(src), budget=budget), p)
        return _write(weights, dst, to, precision=None, max_shard_size=max_shard_size,
                      progress=progress, storage_options=storage_options, options=options,
                      overwrite=overwrite)


def _selecting(weights: Any, include: Sequence[str], exclude: Sequence[str],
               rename: Sequence[str]) -> Any:
    if not (include or exclude or rename):
        return weights
    return select(weights, include=include, exclude=exclude, rename=rename)


def _refuse_existing(path: str, storage_options: dict[str, Any] | None) -> None:
    exists = remote.url_exists(path, storage_options) if remote.is_url(path) else \
        os.path.lexists(remote.local_path(path))
    if exists:
        raise FileAccessError(path=path, field="destination", expected="no existing file",
                              found="a file", hint="it was kept as it is")


@dataclass(frozen=True)
class FileInfo:
    """What :func:`inspect` reports on a file."""

    path: str
    format: str
    file_size: int
    tensors: list[TensorInfo]
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def total_values(self) -> int:
        """Number of values across all tensors."""
        return sum(t.count for t in self.tensors)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {
            "path": self.path,
            "format": self.format,
            "file_size": self.file_size,
            "tensor_count": len(self.tensors),
            "total_values": self.total_values,
            "metadata": self.metadata,
            "tensors": [t.to_dict() for t in self.tensors],
        }


def inspect(path: PathLike, format: str | None = None, *, limits: Limits | None = None,
            verify: bool = True, storage_options: dict[str, Any] | None = None,
            strict: bool = False) -> FileInfo:
    """Describe *path*: its format, each tensor's name, dtype, shape and count, its size
    (a sharded model's: all its files). Reads the header alone where the format has one.

    A quantized file shows its codes and scales as stored (the record is in the metadata).
    *strict* as for :func:`load`.
    """
    limits = limits or DEFAULT_LIMITS
    with _open(path, format, limits=limits, verify=verify, mmap=True,
               storage_options=storage_options, options={},
               budget=Budget(limits, strict=strict)) as weights:
        tensors = [weights.info(name) for name in weights]
    size = sum(_file_size(p, storage_options) for p in weights.files)
    return FileInfo(path=os.fspath(path), format=weights.format, file_size=size,
                    tensors=tensors, metadata=dict(weights.metadata))


@dataclass(frozen=True)
class Verified:
    """What :func:`verify` checked."""

    path: str
    format: str
    #: Tensors read, and their values.
    tensors: int
    total_values: int
    #: Whether the format stores checksums (else the file was only read through).
    checksums: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {"path": self.path, "format": self.format, "tensors": self.tensors,
                "total_values": self.total_values, "checksums": self.checksums}


def verify(path: PathLike, format: str | None = None, *, limits: Limits | None = None,
           storage_options: dict[str, Any] | None = None, strict: bool = False) -> Verified:
    """Read every tensor of *path* (one at a time, never a memory map), checking every
    checksum the format stores: the header's and each tensor's. A damaged file raises
    :class:`~weightstore.errors.ChecksumError` (or :class:`FormatError`) naming what is
    damaged. For a format without checksums (:attr:`Verified.checksums` false) this
    only shows that every tensor decodes. *strict* as for :func:`load`."""
    with open_weights(path, format, limits=limits, verify=True, mmap=False,
                      storage_options=storage_options, strict=strict) as weights:
        for name in weights:
            weights[name]
        label = weights.format
        values = weights.total_values
        count = len(weights)
    names = [n for n in label.replace(")", "(").split("(") if n]
    checked = any(registry.get_codec(n).checksums for n in names)
    return Verified(path=os.fspath(path), format=label, tensors=count, total_values=values,
                    checksums=checked)


def written_path(dst: PathLike, to: str | None = None, *,
                 max_shard_size: int | str | None = None, **options: Any) -> str:
    """The file :func:`save` or :func:`convert` writes for *dst*: *dst* itself, or with a
    shard size, the index (``out/model.npz`` -> ``out/model.npz.index.json``)."""
    if max_shard_size is None:
        return os.fspath(dst)
    return shard.index_path(os.fspath(dst), codec_for_writing(dst, to, **options))


def stored_size(path: PathLike, storage_options: dict[str, Any] | None = None) -> int:
    """Bytes *path* takes in storage; for a shard index, the index and all its shards."""
    if not shard.is_index(path):
        return _file_size(path, storage_options)
    weight_map, _ = shard.read_index(os.fspath(path), storage_options)
    return _file_size(path, storage_options) + sum(
        _file_size(remote.join(os.fspath(path), name), storage_options)
        for name in dict.fromkeys(weight_map.values()))


def _file_size(path: PathLike, storage_options: dict[str, Any] | None) -> int:
    if remote.is_url(path):
        return remote.url_size(path, storage_options)  # type: ignore[arg-type]
    return os.path.getsize(remote.local_path(path))


def open_weights(
    path: PathLike,
    format: str | None = None,
    *,
    limits: Limits | None = None,
    verify: bool = True,
    mmap: bool = True,
    storage_options: dict[str, Any] | None = None,
    strict: bool = False,
    **options: Any,
) -> LazyWeights:
    """Open *path* (a file, a URL or a shard index) for random access: ``weightstore.open``.

    Names, dtypes, shapes and metadata come from the header where the format has one;
    each tensor is read when accessed (a read-only memory map of a local file where the
    format stores raw bytes and *mmap* is on). Stored checksums are checked: the header's
    on opening, each tensor's as it is read (not for memory maps), unless *verify* is
    false. Entries weightstore does not hold are skipped with a warning, or refused with
    *strict*, as :func:`load` does. Use as a context manager, or ``close()``.
    """
    limits = limits or DEFAULT_LIMITS
    return _open(path, format, limits=limits, verify=verify, mmap=mmap,
                 storage_options=storage_options, options=options,
                 budget=Budget(limits, strict=strict))


def _open(path: PathLike, format: str | None, *, limits: Limits, verify: bool, mmap: bool,
          storage_options: dict[str, Any] | None, options: dict[str, Any],
          budget: Budget) -> LazyWeights:
    """:func:`open_weights` drawing on the operation's *budget*."""
    if shard.is_index(path):
        return _open_sharded(os.fspath(path), format, limits, verify, mmap, storage_options,
                             options, budget)
    where = os.fspath(path)
    f = open_for_read(path, storage_options)
    try:
        budget.add_input(file_size(f))
        codec = _codec_for_reading(f, path, format, options)
        with translating_faults(where, codec.name):
            source = codec.open(f, path=where, limits=limits, verify=verify, budget=budget)
        try:
            return LazyWeights(source, path=where, format=codec.label, mmap=mmap,
                               closers=[f.close], files=[where])
        except BaseException:
            source.close()
            raise
    except BaseException:
        f.close()
        raise


def _open_sharded(index: str, format: str | None, limits: Limits, verify: bool, mmap: bool,
                  storage_options: dict[str, Any] | None, options: dict[str, Any],
                  budget: Budget) -> LazyWeights:
    weight_map, metadata = shard.read_index(index, storage_options)
    names = list(dict.fromkeys(weight_map.values()))
    opened: list[LazyWeights] = []
    try:
        for name in names:
            opened.append(_open(remote.join(index, name), format, limits=limits,
                                verify=verify, mmap=mmap, storage_options=storage_options,
                                options=options, budget=budget))
        source = shard.ShardedSource(index, weight_map, metadata,
                                     {n: lw._source for n, lw in zip(names, opened, strict=True)},
                                     limits)
        return LazyWeights(source, path=index, format=opened[0].format, mmap=mmap,
                           closers=[lw.close for lw in opened],
                           files=[index, *(f for lw in opened for f in lw.files)])
    except BaseException:
        for lw in opened:
            lw.close()
        raise
