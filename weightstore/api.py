"""The library's entry points: :func:`load`, :func:`save`, :func:`convert`, :func:`inspect`."""

from __future__ import annotations

import os
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from . import precision as _precision
from . import registry
from .codec import DEFAULT_LIMITS, Codec, Limits
from .errors import FormatError, LimitError, UnknownFormatError, WeightstoreError
from .fileio import atomic_write, open_for_read
from .model import Weights, as_weights, dtype_name

__all__ = ["load", "save", "convert", "inspect", "codec_for_writing", "TensorInfo", "FileInfo"]

PathLike = str | os.PathLike[str]


def _layer_options(cls: type[Codec], prefix: list[str], options: dict[str, Any]) -> dict[str, Any]:
    """For a layer codec (zstd) named like ``w.json.zst``, the inner format from the name."""
    if getattr(cls, "layer", False) and options.get("inner") is None and prefix:
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
        if found is not None and getattr(cls, "layer", False) and found[0] is not cls:
            prefix = registry._suffixes(path)
    elif found is not None:
        cls, prefix = found
    else:
        ext = "".join(registry._suffixes(path)) or "(none)"
        raise UnknownFormatError(
            path=path, field="extension", expected="one a codec claims", found=ext,
            hint="pass a format (--to FORMAT); 'weightstore formats' lists them",
        )
    return cls(**_layer_options(cls, prefix, options))


def save(
    weights: Weights | dict[str, Any], path: PathLike, format: str | None = None, *,
    precision: _precision.Precision | dict[str, Any] | None = None, **options: Any
) -> Path:
    """Write *weights* to *path* atomically, in *format* or the one its extension names.

    *options* are the codec's options (``weightstore formats`` lists them). *precision*
    (a :class:`~weightstore.precision.Precision` or a dict like ``{"dtype": "float16"}``,
    ``{"quantize": "4/block:64"}``, ``{"digits": 6}``) changes the values first, with a
    :class:`~weightstore.errors.LossyWarning`. Returns the path.
    """
    codec = codec_for_writing(path, format, **options)
    w = _precision.apply(as_weights(weights), precision)
    with atomic_write(path) as f:
        codec.write(w, f, path=os.fspath(path))
    return Path(path)


# Exceptions that a malformed file can provoke inside the libraries codecs use; a codec
# should translate them itself, and this is the net below it so that a user never sees
# a raw traceback for a bad file.
_FILE_FAULTS = (ValueError, EOFError, KeyError, IndexError, TypeError, struct.error,
                zipfile.BadZipFile, OSError, OverflowError, UnicodeError, RecursionError)


def _codec_for_reading(f: IO[bytes], path: PathLike, format: str | None,
                       options: dict[str, Any]) -> Codec:
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
        if sniffed is not None:
            cls = sniffed
        elif found is not None:
            cls = found[0]
        else:
            raise UnknownFormatError(
                path=path, field="format",
                expected="content or an extension that a codec recognises",
                found=f"first bytes {head[:16]!r}",
                hint="pass a format (--from FORMAT); 'weightstore formats' lists them",
            )
    return cls(**_layer_options(cls, prefix, options))


def load(
    path: PathLike, format: str | None = None, *, limits: Limits | None = None,
    dequantize: bool = True, **options: Any
) -> Weights:
    """Read the weights in *path*. The format is *format*, else the one the content shows,
    else the one the extension names. Loading never runs code from the file.

    Quantized tensors come back as floats under their own names unless *dequantize* is
    false, which gives the stored integer codes and scales (:mod:`weightstore.precision`).
    """
    with open_for_read(path) as f:
        codec = _codec_for_reading(f, path, format, options)
        try:
            stored = codec.read(f, path=os.fspath(path), limits=limits or DEFAULT_LIMITS)
            return _precision.dequantize(stored, path=os.fspath(path)) if dequantize else stored
        except (FormatError, LimitError) as e:
            if e.path is None:  # raised deep inside a codec: say which file
                raise type(e)(e.message, path=path) from e
            raise
        except WeightstoreError:
            raise
        except _FILE_FAULTS as e:
            raise FormatError(
                f"not a valid {codec.name} file ({type(e).__name__}: {e})", path=path
            ) from e


def convert(
    src: PathLike,
    dst: PathLike,
    *,
    from_format: str | None = None,
    to: str | None = None,
    limits: Limits | None = None,
    precision: _precision.Precision | dict[str, Any] | None = None,
    dequantize: bool = False,
    **options: Any,
) -> Weights:
    """Read *src* and write it to *dst* (format *to* or *dst*'s extension). *options* go
    to the writing codec. Returns the weights written.

    A quantized source is copied as stored (codes and scales), unless *dequantize* is true
    or a *precision* is given (see :func:`save`): then its floats are restored first.
    """
    codec = codec_for_writing(dst, to, **options)  # fail on bad options before reading
    p = _precision.Precision.of(precision)
    weights = load(src, from_format, limits=limits, dequantize=dequantize or p is not None)
    weights = _precision.apply(weights, p)
    with atomic_write(dst) as f:
        codec.write(weights, f, path=os.fspath(dst))
    return weights


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as :func:`inspect` reports it."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def count(self) -> int:
        """Number of values."""
        n = 1
        for d in self.shape:
            n *= d
        return n


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
            "tensors": [
                {"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "count": t.count}
                for t in self.tensors
            ],
        }


def inspect(path: PathLike, format: str | None = None, *, limits: Limits | None = None) -> FileInfo:
    """Describe *path*: its format, each tensor's name, dtype, shape and count, its size.

    A quantized file shows its codes and scales as stored (the record is in the metadata).
    """
    with open_for_read(path) as f:
        codec = _codec_for_reading(f, path, format, {})
    weights = load(path, format, limits=limits, dequantize=False)  # what the file holds
    name = codec.name
    inner = getattr(codec, "inner", None)
    if inner:
        name = f"{name}({inner})"
    return FileInfo(
        path=os.fspath(path),
        format=name,
        file_size=os.path.getsize(path),
        tensors=[TensorInfo(k, dtype_name(v.dtype) or str(v.dtype), tuple(v.shape))
                 for k, v in weights.items()],
        metadata=dict(weights.metadata),
    )
