"""The codec registry: find a codec by name, by file extension, or by content.

A plain dict keyed by codec name. Built-in codecs register when
:mod:`weightstore.codecs` is imported; third-party codecs are found through the
``weightstore.codecs`` entry-point group (each entry point names a
:class:`~weightstore.codec.Codec` subclass). Content beats a misleading
extension: :func:`detect` sniffs the first bytes before it looks at the name.
"""

from __future__ import annotations

import os
from importlib import metadata
from typing import TypeVar

from .codec import Codec
from .errors import UnknownFormatError

__all__ = ["register", "get_codec", "codecs", "codec_for_path", "sniff", "SNIFF_BYTES"]

#: How many leading bytes :func:`sniff` looks at.
SNIFF_BYTES = 512

_REGISTRY: dict[str, type[Codec]] = {}
_loaded = False

C = TypeVar("C", bound=type[Codec])


def register(cls: C) -> C:
    """Class decorator: add a codec class to the registry under ``cls.name``."""
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls:
        raise ValueError(f"codec name {cls.name!r} is registered twice ({existing} and {cls})")
    _REGISTRY[cls.name] = cls
    return cls


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from . import codecs as _builtin  # noqa: F401  (registers the built-in codecs)

    for ep in metadata.entry_points(group="weightstore.codecs"):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Codec)):
            raise TypeError(f"entry point {ep.name!r} ({ep.value}) is not a Codec subclass")
        register(cls)


def codecs() -> list[type[Codec]]:
    """Every registered codec class, built-in first."""
    _ensure_loaded()
    return list(_REGISTRY.values())


def get_codec(name: str) -> type[Codec]:
    """The codec class registered as *name* (also accepts an extension like ``.h5``)."""
    _ensure_loaded()
    key = name.lower()
    if key in _REGISTRY:
        return _REGISTRY[key]
    for cls in _REGISTRY.values():
        if key in cls.extensions or f".{key}" in cls.extensions:
            return cls
    raise UnknownFormatError(
        field="format", expected=f"one of {', '.join(_REGISTRY)}", found=name,
        hint="'weightstore formats' lists them",
    )


def _suffixes(path: str | os.PathLike[str]) -> list[str]:
    name = os.path.basename(os.fspath(path)).lower()
    parts = name.split(".")
    return ["." + p for p in parts[1:]]


def codec_for_path(path: str | os.PathLike[str]) -> tuple[type[Codec], list[str]] | None:
    """The codec claiming *path*'s last extension, and the suffixes before it.

    ``w.json.zst`` gives ``(ZstdCodec, [".json"])``; ``None`` when no codec claims it.
    """
    _ensure_loaded()
    suffixes = _suffixes(path)
    # Longest match first, so that a codec may claim a double suffix like ".tar.gz".
    for n in range(min(3, len(suffixes)), 0, -1):
        ending = "".join(suffixes[-n:])
        for cls in _REGISTRY.values():
            if ending in cls.extensions:
                return cls, suffixes[:-n]
    return None


def sniff(head: bytes) -> type[Codec] | None:
    """The codec whose :meth:`~Codec.sniff` accepts *head*, or ``None``."""
    _ensure_loaded()
    for cls in _REGISTRY.values():
        if cls.sniff(head):
            return cls
    return None
