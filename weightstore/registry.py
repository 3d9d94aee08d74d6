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


# --- saying what a file is, when no codec reads it ---------------------------------------

#: The last 8 bytes of a TensorFlow checkpoint's ``.index`` file (a LevelDB table).
TF_INDEX_MAGIC = (0xDB4775248B80FB57).to_bytes(8, "little")


def describe_zip(names: list[str]) -> tuple[str, str]:
    """What a zip archive holding members *names* is, and what to do with it:
    ``(what, hint)``. Used when a zip is not the format it was read as (an npz that
    holds other members), so the message names the archive, not the first odd member."""
    tops = {n.split("/", 1)[0] + "/" for n in names if "/" in n}
    for top in sorted(tops) + [""]:
        if f"{top}data.pkl" in names:
            if f"{top}constants.pkl" in names or any(n.startswith(f"{top}code/") for n in names):
                return (f"a TorchScript archive ({top}code/, {top}constants.pkl)",
                        "weightstore reads torch.save checkpoints, not scripted modules: "
                        "load it with torch.jit.load and torch.save its state_dict()")
            return (f"a PyTorch checkpoint ({top}data.pkl)",
                    "read it as format 'pytorch' (--from pytorch), or name it .pt")
    if "model.weights.h5" in names or "config.json" in names and "metadata.json" in names:
        return ("a Keras archive (.keras: config.json, model.weights.h5)",
                "read it as format 'keras' (--from keras), or name it .keras")
    if any(n.endswith("saved_model.pb") for n in names):
        return ("a zipped TensorFlow SavedModel (saved_model.pb)",
                "weightstore does not read TensorFlow models: export the variables from "
                "TensorFlow (tf.train.load_checkpoint) to .npz or .safetensors")
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return (f"a zip archive of {len(names)} members ({shown or 'none'})",
            "'weightstore formats' lists the formats it reads")


def describe_unknown(head: bytes, tail: bytes, path: str) -> str:
    """A hint naming what a file no codec claims seems to be (*head*: its first bytes,
    *tail*: its last 8), and what to do; a generic hint when it is nothing we know."""
    name = os.path.basename(path).lower()
    if tail == TF_INDEX_MAGIC or name.endswith(".index") or ".data-" in name and "-of-" in name:
        return ("this looks like a TensorFlow checkpoint (model.ckpt.index + "
                ".data-NNNNN-of-NNNNN), which weightstore does not read: load it with "
                "tf.train.load_checkpoint and save the variables as .npz or .safetensors")
    if head[4:8] == b"TFL3":
        return ("this is a TensorFlow Lite model (.tflite), which weightstore does not read")
    if name == "saved_model.pb" or name.endswith((".pb", ".pbtxt")):
        return ("this looks like a TensorFlow graph (.pb), which weightstore does not read: "
                "export the variables from TensorFlow as .npz or .safetensors")
    if head[257:262] == b"ustar":
        return ("this is a tar archive (a PyTorch checkpoint from before torch 0.4 is one): "
                "unpack it, or load it with torch and save it again")
    return "pass a format (--from FORMAT); 'weightstore formats' lists them"
