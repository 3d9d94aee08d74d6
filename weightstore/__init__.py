"""weightstore: store neural-network weights in many formats, exactly, and know the cost.

    >>> import weightstore
    >>> w = weightstore.load("sample_weight.pkl")       # safe: never runs code from the file
    >>> weightstore.save(w, "w.json")                   # format from the extension
    >>> weightstore.convert("w.json", "w.h5", compression="gzip")

A file holds an ordered set of named numpy arrays plus string metadata
(:class:`Weights`). Codecs are found by name, extension or content
(:func:`formats` lists them). Every failure a user can cause raises a
:class:`WeightstoreError` subclass.
"""

from __future__ import annotations

from .api import FileInfo, TensorInfo, codec_for_writing, convert, inspect, load, save
from .codec import DEFAULT_LIMITS, Codec, Limits, Option
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
    UnknownFormatError,
    UnsafeFileError,
    UnsupportedError,
    WeightsError,
    WeightstoreError,
)
from .model import Weights
from .registry import codecs as formats
from .registry import get_codec, register

__version__ = "0.1.0"

__all__ = [
    "load", "save", "convert", "inspect", "formats", "get_codec", "register", "codec_for_writing",
    "Weights", "Codec", "Option", "Limits", "DEFAULT_LIMITS", "FileInfo", "TensorInfo",
    "WeightstoreError", "FormatError", "UnsafeFileError", "ChecksumError", "LimitError",
    "UnknownFormatError", "UnsupportedError", "OptionError", "WeightsError", "FileAccessError",
    "DataError", "ModelError", "MissingDependencyError", "LossyWarning", "__version__",
]
