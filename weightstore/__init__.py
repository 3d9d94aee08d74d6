"""weightstore: store neural-network weights in many formats, exactly, and know the cost.

    >>> import weightstore
    >>> w = weightstore.load("sample_weight.pkl")       # safe: never runs code from the file
    >>> weightstore.save(w, "w.json")                   # format from the extension
    >>> weightstore.convert("w.json", "w.h5", compression="gzip")
    >>> with weightstore.open("big.h5") as w:            # header only; tensors on access
    ...     w.info("fc/W"), w["fc/W"][:2]

A file holds an ordered set of named numpy arrays plus string metadata
(:class:`Weights`). Codecs are found by name, extension or content
(:func:`formats` lists them). Every failure a user can cause raises a
:class:`WeightstoreError` subclass.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .api import (
    STREAMING_WARN_BYTES,
    FileInfo,
    Verified,
    Written,
    codec_for_writing,
    convert,
    inspect,
    load,
    open_weights,
    save,
    verify,
)
from .codec import DEFAULT_LIMITS, Budget, Codec, Limits, Option
from .errors import (
    ChecksumError,
    DataError,
    FileAccessError,
    FormatError,
    LimitError,
    LossyWarning,
    MissingDependencyError,
    ModelError,
    OptionError,
    SkippedEntriesWarning,
    UnknownFormatError,
    UnsafeFileError,
    UnsupportedError,
    WeightsError,
    WeightstoreError,
)
from .lazy import LazyWeights, StreamingWarning
from .model import TensorInfo, Weights
from .registry import codecs as formats
from .registry import get_codec, register

if TYPE_CHECKING:
    from .cluster import convert_many
    from .compare import Diff, diff, stats


# Names whose module is imported on first use, so that ``import weightstore`` pays only for
# what loading and saving need (issue 19): comparing files, and the Dask cluster (extra
# 'cluster').
_ON_FIRST_USE = {"diff": "compare", "stats": "compare", "Diff": "compare",
                 "convert_many": "cluster"}


def __getattr__(name: str) -> object:
    """The names of :data:`_ON_FIRST_USE`, from their module, imported on first use."""
    module = _ON_FIRST_USE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_ON_FIRST_USE})


#: ``weightstore.open(path)``: random access to a file's tensors (:class:`LazyWeights`).
open = open_weights  # noqa: A001  (the module's own open; builtins.open is untouched)

__version__ = "0.1.0"

__all__ = [
    "load", "save", "convert", "convert_many", "inspect", "verify", "diff", "stats", "Diff",
    "Verified", "formats", "get_codec", "register", "codec_for_writing",
    "open", "open_weights", "LazyWeights", "StreamingWarning", "STREAMING_WARN_BYTES",
    "Weights", "Codec", "Option", "Limits", "DEFAULT_LIMITS", "Budget", "FileInfo", "TensorInfo",
    "Written",
    "WeightstoreError", "FormatError", "UnsafeFileError", "ChecksumError", "LimitError",
    "UnknownFormatError", "UnsupportedError", "OptionError", "WeightsError", "FileAccessError",
    "DataError", "ModelError", "MissingDependencyError", "LossyWarning", "SkippedEntriesWarning",
    "__version__",
]
