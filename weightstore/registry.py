"""The codec registry: find a codec by name, by file extension, or by content.

Built-in codecs are listed in :data:`BUILTIN`, one line each: name, the class (as
``"module:Class"``), the extensions it claims and a content test from
:mod:`weightstore.sniffing` or magic bytes. Nothing here imports a codec module: a
lookup imports only the codec it finds, so that reading one safetensors file never
imports h5py. Third-party codecs are found through the ``weightstore.codecs``
entry-point group (each entry point names a :class:`~weightstore.codec.Codec` subclass,
or a :class:`CodecEntry` to be imported lazily too); the group is read only when no
built-in codec answers. Content beats a misleading extension: :func:`sniff` tests the
first bytes before a caller looks at the name.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from . import sniffing
from .codec import Codec
from .errors import UnknownFormatError
from .sniffing import SNIFF_BYTES

__all__ = ["CodecEntry", "BUILTIN", "register", "get_codec", "codecs", "codec_for_path",
           "codec_from_config", "sniff", "names", "SNIFF_BYTES"]


@dataclass(frozen=True)
class CodecEntry:
    """A codec known by name, extensions and content test, imported on first use."""

    #: Registry key, the codec class's ``name``.
    name: str
    #: ``"package.module:ClassName"``.
    target: str
    #: File name endings it claims, most usual first.
    extensions: tuple[str, ...] = ()
    #: Leading bytes that identify the format (any of them), when that is the whole test.
    magic: tuple[bytes, ...] = ()
    #: A content test on the first :data:`SNIFF_BYTES` bytes, for formats magic cannot tell.
    test: Callable[[bytes], bool] | None = None

    def claims(self, head: bytes) -> bool:
        """Whether a file starting with *head* is of this format."""
        if self.magic and head.startswith(self.magic):
            return True
        return self.test is not None and self.test(head)

    def load(self) -> type[Codec]:
        """The codec class (imports its module)."""
        module, _, attr = self.target.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        if not (isinstance(cls, type) and issubclass(cls, Codec)) or cls.name != self.name:
            raise TypeError(f"codec entry {self.name!r} ({self.target}) is not a Codec "
                            f"subclass named {self.name!r}")
        return cls


#: The built-in codecs. Order is sniffing order: ``safetensors`` comes first, because its
#: test (a header length whose high bytes are zero, then ``{``) matches no other format,
#: while a safetensors file whose length byte happens to be ``0x80`` or ``{`` would
#: satisfy the looser pickle or JSON tests.
#: ``pytorch`` comes before ``npz`` and ``pickle``: its checkpoints are zips (like npz) or
#: start with a pickle (like the book's files), told apart by what they hold.
BUILTIN: tuple[CodecEntry, ...] = (
    CodecEntry("safetensors", "weightstore.codecs.safetensors_codec:SafetensorsCodec",
               (".safetensors",), test=sniffing.is_safetensors),
    CodecEntry("pytorch", "weightstore.codecs.pytorch:PytorchCodec", (".pt", ".pth", ".bin"),
               test=sniffing.is_pytorch),
    CodecEntry("wsc", "weightstore.codecs.wsc:WscCodec", (".wsc",), (sniffing.WSC_MAGIC,)),
    CodecEntry("csv", "weightstore.codecs.csv_codec:CsvCodec", (".csv",), test=sniffing.is_csv),
    CodecEntry("hdf5", "weightstore.codecs.hdf5:Hdf5Codec", (".h5", ".hdf5"),
               (sniffing.HDF5_SIGNATURE,)),
    CodecEntry("gguf", "weightstore.codecs.gguf_codec:GgufCodec", (".gguf",),
               (sniffing.GGUF_MAGIC,)),
    # before npz: a .keras archive is a zip too, and must never be taken for an npz
    CodecEntry("keras", "weightstore.codecs.keras_codec:KerasCodec", (".keras", ".weights.h5"),
               test=sniffing.is_keras_archive),
    CodecEntry("onnx", "weightstore.codecs.onnx_codec:OnnxCodec", (".onnx",),
               test=sniffing.is_onnx),
    CodecEntry("json", "weightstore.codecs.json_codec:JsonCodec", (".json",),
               test=sniffing.is_json),
    CodecEntry("npz", "weightstore.codecs.npz:NpzCodec", (".npz",), sniffing.ZIP_MAGICS),
    CodecEntry("pickle", "weightstore.codecs.pickle_codec:PickleCodec", (".pkl", ".pickle"),
               test=sniffing.is_pickle),
    CodecEntry("zstd", "weightstore.codecs.zstd:ZstdCodec", (".zst", ".zstd"),
               (sniffing.ZSTD_MAGIC,)),
    CodecEntry("gzip", "weightstore.codecs.gzip_codec:GzipCodec", (".gz",),
               (sniffing.GZIP_MAGIC,)),
    CodecEntry("npy", "weightstore.codecs.npy:NpyCodec", (".npy",), (sniffing.NPY_MAGIC,)),
)

_ENTRIES: dict[str, CodecEntry] = {e.name: e for e in BUILTIN}
_CLASSES: dict[str, type[Codec]] = {}
_plugins_loaded = False

C = TypeVar("C", bound=type[Codec])


def register(cls: C) -> C:
    """Add a codec class to the registry under ``cls.name`` (usable as a decorator)."""
    existing = _CLASSES.get(cls.name)
    entry = _ENTRIES.get(cls.name)
    if (existing is not None and existing is not cls) or (
            existing is None and entry is not None and entry.target != _target(cls)):
        raise ValueError(f"codec name {cls.name!r} is registered twice "
                         f"({existing or entry.target} and {cls})")  # type: ignore[union-attr]
    _CLASSES[cls.name] = cls
    if entry is None:
        _ENTRIES[cls.name] = CodecEntry(cls.name, _target(cls), tuple(cls.extensions),
                                        test=cls.sniff)
    return cls


def _target(cls: type[Codec]) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _load_plugins() -> None:
    """Read the ``weightstore.codecs`` entry-point group, once."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    # Imported here, not at the top: importlib.metadata costs ~20 ms (email, zipfile, csv),
    # more than the rest of the registry, and most processes never need a plugin.
    from importlib import metadata

    for ep in metadata.entry_points(group="weightstore.codecs"):
        found: Any = ep.load()
        if isinstance(found, CodecEntry):
            _ENTRIES.setdefault(found.name, found)
        elif isinstance(found, type) and issubclass(found, Codec):
            register(found)
        else:
            raise TypeError(f"entry point {ep.name!r} ({ep.value}) is neither a Codec "
                            "subclass nor a CodecEntry")


def _class(entry: CodecEntry) -> type[Codec]:
    cls = _CLASSES.get(entry.name)
    if cls is None:
        cls = _CLASSES[entry.name] = entry.load()
    return cls


def names() -> list[str]:
    """Every codec name, built-in first (imports no codec module)."""
    _load_plugins()
    return list(_ENTRIES)


def codecs() -> list[type[Codec]]:
    """Every registered codec class, built-in first (imports every codec module)."""
    _load_plugins()
    return [_class(e) for e in list(_ENTRIES.values())]


def _by_name(key: str) -> CodecEntry | None:
    if key in _ENTRIES:
        return _ENTRIES[key]
    for entry in _ENTRIES.values():
        if key in entry.extensions or f".{key}" in entry.extensions:
            return entry
    return None


def get_codec(name: str) -> type[Codec]:
    """The codec class registered as *name* (also accepts an extension like ``.h5``)."""
    key = name.lower()
    entry = _by_name(key)
    if entry is None:
        _load_plugins()
        entry = _by_name(key)
    if entry is None:
        raise UnknownFormatError(
            field="format", expected=f"one of {', '.join(_ENTRIES)}", found=name,
            hint="weightstore.formats() lists them",
        )
    return _class(entry)


def codec_from_config(config: dict[str, Any]) -> Codec:
    """The codec a :meth:`Codec.get_config` dict describes: ``config["id"]`` names it."""
    return get_codec(str(config.get("id", ""))).from_config(config)


def suffixes(path: str | os.PathLike[str]) -> list[str]:
    """The lower-case extensions of *path*'s file name: ``w.JSON.zst`` -> ``[".json", ".zst"]``."""
    name = os.path.basename(os.fspath(path)).lower()
    parts = name.split(".")
    return ["." + p for p in parts[1:]]


def _by_ending(path: str | os.PathLike[str]) -> tuple[CodecEntry, list[str]] | None:
    parts = suffixes(path)
    # Longest match first, so that a codec may claim a double suffix like ".tar.gz".
    for n in range(min(3, len(parts)), 0, -1):
        ending = "".join(parts[-n:])
        for entry in _ENTRIES.values():
            if ending in entry.extensions:
                return entry, parts[:-n]
    return None


def codec_for_path(path: str | os.PathLike[str]) -> tuple[type[Codec], list[str]] | None:
    """The codec claiming *path*'s last extension, and the suffixes before it.

    ``w.json.zst`` gives ``(ZstdCodec, [".json"])``; ``None`` when no codec claims it.
    """
    found = _by_ending(path)
    if found is None:
        _load_plugins()
        found = _by_ending(path)
    return None if found is None else (_class(found[0]), found[1])


def _by_content(head: bytes) -> CodecEntry | None:
    return next((e for e in _ENTRIES.values() if e.claims(head)), None)


def sniff(head: bytes) -> type[Codec] | None:
    """The codec whose content test accepts *head*, or ``None``. Imports that codec only."""
    entry = _by_content(head)
    if entry is None:
        _load_plugins()
        entry = _by_content(head)
    return None if entry is None else _class(entry)
