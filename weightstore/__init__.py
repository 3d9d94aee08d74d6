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

if TYPE_CHECKING:
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
    from .api import open_weights as open  # noqa: A004
    from .cluster import convert_many
    from .codec import DEFAULT_LIMITS, Budget, Codec, Limits, Option
    from .compare import Diff, diff, stats
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


def _names(module: str, *names: str) -> dict[str, tuple[str, str]]:
    return {name: (module, name) for name in names}


# Every public name, with the module that defines it (and its name there). Nothing is
# imported until a name is first used (issue 19: ``import weightstore`` costs next to
# nothing beyond the interpreter, and a command pays only for the modules it uses);
# ``from weightstore import load`` and ``weightstore.load`` work as usual.
_LAZY: dict[str, tuple[str, str]] = {
    **_names("api", "STREAMING_WARN_BYTES", "FileInfo", "Verified", "Written",
             "codec_for_writing", "convert", "inspect", "load", "open_weights", "save",
             "verify"),
    "open": ("api", "open_weights"),  # weightstore.open(path): a LazyWeights
    **_names("codec", "DEFAULT_LIMITS", "Budget", "Codec", "Limits", "Option"),
    **_names("compare", "Diff", "diff", "stats"),
    **_names("cluster", "convert_many"),  # extra 'cluster'
    **_names("errors", "ChecksumError", "DataError", "FileAccessError", "FormatError",
             "LimitError", "LossyWarning", "MissingDependencyError", "ModelError",
             "OptionError", "SkippedEntriesWarning", "UnknownFormatError", "UnsafeFileError",
             "UnsupportedError", "WeightsError", "WeightstoreError"),
    **_names("lazy", "LazyWeights", "StreamingWarning"),
    **_names("model", "TensorInfo", "Weights"),
    "formats": ("registry", "codecs"),
    **_names("registry", "get_codec", "register"),
}


def __getattr__(name: str) -> object:
    """A public name of :data:`_LAZY`, imported from its module on first use."""
    found = _LAZY.get(name)
    if found is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{found[0]}"), found[1])
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
