"""The variants the storage report measures: every codec at its defaults, the option sets
worth comparing, each precision option and ``weightstore shrink``'s result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ... import registry
from ...precision import Precision
from ..shrink import default_codec

__all__ = ["SHRINK", "Variant", "default_variants", "precision_variants"]


#: The :attr:`Variant.precision` that stands for ``weightstore shrink``'s search.
SHRINK = "shrink"


@dataclass(frozen=True)
class Variant:
    """One way of storing the weights: a codec, its options, the file ending, and the
    precision the values are written at (a :class:`~weightstore.precision.Precision`
    mapping such as ``{"quantize": "4"}``, or :data:`SHRINK` for ``weightstore shrink``'s
    result, written with its own codec; ``None``: the values as they are)."""

    label: str
    format: str
    extension: str
    options: dict[str, Any] = field(default_factory=dict)
    precision: dict[str, Any] | str | None = None

    @property
    def precision_label(self) -> str:
        """``exact``, ``float16``, ``int4/per-column``, ``digits 6``, ``shrink``."""
        if self.precision is None:
            return "as stored"
        if self.precision == SHRINK:
            return SHRINK
        p = Precision.of(self.precision)  # type: ignore[arg-type]
        return p.label if p is not None else "as stored"


def default_variants() -> list[Variant]:
    """Every registered codec at its defaults, plus the option sets worth comparing."""
    v = [
        Variant("pickle", "pickle", ".pkl"),
        Variant("npz", "npz", ".npz"),
        Variant("npz deflate", "npz", ".npz", {"compressed": True}),
        Variant("json", "json", ".json"),
        Variant("csv", "csv", ".csv"),
        Variant("hdf5", "hdf5", ".h5"),
        Variant("hdf5 gzip-9+shuffle", "hdf5", ".h5", {"compression": "gzip", "level": 9}),
        Variant("hdf5 lzf+shuffle", "hdf5", ".h5", {"compression": "lzf"}),
    ]
    covered = {x.format for x in v} | {"zstd", "gzip"}
    for cls in registry.codecs():  # codecs added later (safetensors, wsc, ...) join here
        # (a layer is measured over its inner codecs below; a one-tensor format cannot hold
        # the network; a read-only one cannot be written)
        if (cls.name not in covered and not cls.layer and not cls.single_tensor
                and cls.writable):
            v.append(Variant(cls.name, cls.name, cls.extensions[0]))
    for level in (3, 19):
        for inner, ext in (("pickle", ".pkl"), ("npz", ".npz"), ("json", ".json"),
                           ("csv", ".csv"), ("hdf5", ".h5")):
            v.append(Variant(f"zstd-{level} ({inner})", "zstd", f"{ext}.zst", {"level": level}))
    for inner, ext in (("npz", ".npz"), ("json", ".json"), ("csv", ".csv")):
        v.append(Variant(f"gzip-9 ({inner})", "gzip", f"{ext}.gz", {"level": 9}))
    v += precision_variants()
    return v


def precision_variants() -> list[Variant]:
    """A row per precision option, and the shrink result (``weightstore shrink``)."""
    z19 = {"level": 19}
    v = [
        Variant("float16 (npz)", "npz", ".npz", {}, {"dtype": "float16"}),
        Variant("float16 (zstd-19 npz)", "zstd", ".npz.zst", z19, {"dtype": "float16"}),
        Variant("bfloat16 (pickle)", "pickle", ".pkl", {}, {"dtype": "bfloat16"}),
    ]
    for bits in (8, 4, 2):
        v.append(Variant(f"int{bits}/per-column (npz)", "npz", ".npz", {},
                         {"quantize": f"{bits}/per-column"}))
        v.append(Variant(f"int{bits}/per-column (zstd-19 npz)", "zstd", ".npz.zst", z19,
                         {"quantize": f"{bits}/per-column"}))
    for digits in (6, 4):
        for fmt in ("json", "csv"):
            v.append(Variant(f"{fmt} digits {digits}", fmt, f".{fmt}", {}, {"digits": digits}))
    codec, options = default_codec()
    ext = {"zstd": ".npz.zst"}.get(codec, registry.get_codec(codec).extensions[0])
    v.append(Variant(f"shrink ({codec})", codec, ext, options, SHRINK))
    return v
