"""Choosing and renaming tensors on the way through (``convert --include/--exclude/--rename``).

:func:`select` gives a view: over a file opened with ``weightstore.open`` it is again a
:class:`~weightstore.LazyWeights` reading each chosen tensor from the file when asked for,
so a conversion still moves one tensor at a time; over weights in memory it is new
:class:`~weightstore.Weights` sharing the arrays.

Rules:

* *include*/*exclude* are shell-style patterns (``fnmatch``: ``*``, ``?``, ``[abc]``;
  ``*`` also matches ``/``) matched against a tensor's whole name, case-sensitively. A
  tensor is kept when it matches some *include* pattern (every tensor, when none is
  given) and no *exclude* pattern.
* *rename* rules ``OLD=NEW`` are tried in order on each kept name and the first that
  applies is used: ``OLD=NEW`` replaces the prefix ``OLD`` with ``NEW``;
  ``re:PATTERN=REPL`` replaces a name that PATTERN matches in full with REPL
  (``\\1`` and ``\\g<name>`` refer to PATTERN's groups; :func:`re.fullmatch`).
* The metadata is kept as it is, except a quantization record
  (:mod:`weightstore.precision`): in a quantized file the rules see a quantized tensor by
  its own name ``NAME``, not as its parts ``NAME.q`` and ``NAME.scale``, which are kept,
  dropped and renamed together (``W1=fc1/W`` turns ``W1.q`` into ``fc1/W.q``), and the
  record is rewritten to the new names and the tensors kept, so that the result still
  dequantizes. The other metadata entries that are JSON objects keyed by tensor name
  (:data:`NAME_KEYED`: GGUF's raw quantized blocks and stand-in dtypes) are rewritten
  the same way. Two tensors renamed to one name, or nothing kept, is an error.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .codec import TensorSource
from .errors import OptionError, WeightsError
from .lazy import LazyWeights
from .model import TensorInfo, Weights, as_weights
from .precision import CODES_SUFFIX, QUANT_KEY, SCALE_SUFFIX, quantization_record, record_text

__all__ = ["RenameRule", "parse_rename", "select", "selected_names", "NAME_KEYED"]

#: Metadata entries holding a JSON object keyed by tensor name, which follow the tensors
#: they name through a selection (the gguf codec's ``QUANT_KEY`` and ``DTYPES_KEY``).
NAME_KEYED = ("weightstore.gguf_quantized", "weightstore.gguf_dtypes")


@dataclass(frozen=True)
class RenameRule:
    """One ``OLD=NEW`` (prefix) or ``re:PATTERN=REPL`` (regular expression) rule."""

    old: str
    new: str
    regex: re.Pattern[str] | None = None

    def apply(self, name: str) -> str | None:
        """The new name, or None when the rule does not apply to *name*."""
        if self.regex is not None:
            m = self.regex.fullmatch(name)
            return m.expand(self.new) if m else None
        return self.new + name[len(self.old):] if name.startswith(self.old) else None


def parse_rename(text: str | RenameRule) -> RenameRule:
    """``"OLD=NEW"`` or ``"re:PATTERN=REPL"`` as a :class:`RenameRule`."""
    if isinstance(text, RenameRule):
        return text
    regex = text.startswith("re:")
    old, sep, new = (text[3:] if regex else text).partition("=")
    if not sep or not old:
        raise OptionError(field=f"rename {text!r}", expected="OLD=NEW or re:PATTERN=REPL")
    if not regex:
        return RenameRule(old, new)
    try:
        return RenameRule(old, new, re.compile(old))
    except re.error as e:
        raise OptionError(field=f"rename {text!r}", expected="a valid regular expression",
                          found=str(e)) from None


def _own_name(name: str, quantized: Collection[str]) -> tuple[str, str]:
    """*name* as the rules see it, and the suffix it carries: ``("W1", ".q")`` for the codes
    of a quantized tensor ``W1``, ``(name, "")`` for any other tensor."""
    for suffix in (CODES_SUFFIX, SCALE_SUFFIX):
        if name.endswith(suffix) and name[: -len(suffix)] in quantized:
            return name[: -len(suffix)], suffix
    return name, ""


def selected_names(names: Sequence[str], *, include: Sequence[str] = (),
                   exclude: Sequence[str] = (), rename: Sequence[str | RenameRule] = (),
                   quantized: Collection[str] = ()) -> dict[str, str]:
    """New name -> old name of the tensors kept, in the order of *names*. The tensors in
    *quantized* (stored as ``NAME.q`` and ``NAME.scale``) are matched and renamed by
    ``NAME``, both parts together."""
    rules = [parse_rename(r) for r in rename]
    out: dict[str, str] = {}
    for stored in names:
        name, suffix = _own_name(stored, quantized)
        if include and not any(fnmatch.fnmatchcase(name, p) for p in include):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in exclude):
            continue
        new = next((n for n in (r.apply(name) for r in rules) if n is not None), name) + suffix
        name = stored
        if new in out:
            raise WeightsError(field=f"tensor {new!r}", expected="one tensor per new name",
                               found=f"{out[new]!r} and {name!r} renamed to it")
        out[new] = name
    if not out:
        raise WeightsError(field="include/exclude", expected="at least one tensor kept",
                           found=f"none of {len(names)} (include {list(include)}, "
                           f"exclude {list(exclude)})")
    return out


def _renamed_metadata(metadata: Mapping[str, str], names: dict[str, str],
                      record: dict[str, dict[str, Any]] | None) -> dict[str, str]:
    """*metadata* with its quantization *record* (if any) and the :data:`NAME_KEYED`
    entries for the tensors kept under *names* (new -> old), by their new names; an entry
    that names no tensor kept is dropped."""
    meta = dict(metadata)
    for key in NAME_KEYED:
        if key in meta:
            try:
                by_name = json.loads(meta[key])
            except ValueError:
                continue  # damaged: left for the reader that needs it to name
            if isinstance(by_name, dict):
                moved = {new: by_name[old] for new, old in names.items() if old in by_name}
                if moved:
                    meta[key] = json.dumps(moved, ensure_ascii=False, separators=(",", ":"))
                else:
                    del meta[key]
    if record is None:
        return meta
    kept = {}
    for new, old in names.items():
        name, suffix = _own_name(old, record)
        if suffix == CODES_SUFFIX:
            kept[new[: -len(suffix)]] = record[name]
    if kept:
        meta[QUANT_KEY] = record_text(kept)
    else:
        meta.pop(QUANT_KEY)
    return meta


class _SelectedSource(TensorSource):
    """Another source's tensors, some of them, under new names. Closing it leaves the
    other source open (the :class:`LazyWeights` it came from owns that)."""

    def __init__(self, inner: TensorSource, names: dict[str, str],
                 metadata: dict[str, str]) -> None:
        infos = {t.name: t for t in inner.tensors}
        super().__init__([TensorInfo(new, infos[old].dtype, infos[old].shape)
                          for new, old in names.items()], metadata)
        self.lazy = inner.lazy
        self._inner = inner
        self._names = names

    def read(self, name: str, *, mmap: bool = False) -> np.ndarray:
        return self._inner.read(self._names[name], mmap=mmap)


def select(weights: LazyWeights | Weights | Mapping[str, Any], *,
           include: Sequence[str] = (), exclude: Sequence[str] = (),
           rename: Sequence[str | RenameRule] = ()) -> LazyWeights | Weights:
    """*weights* with only the tensors *include*/*exclude* keep, renamed by *rename*
    (the module doc gives the rules). Nothing is read here."""
    if isinstance(weights, LazyWeights):
        record = quantization_record(weights.metadata, weights.path)
        names = selected_names(list(weights), include=include, exclude=exclude, rename=rename,
                               quantized=record or ())
        source = _SelectedSource(weights._source, names,
                                 _renamed_metadata(weights.metadata, names, record))
        return LazyWeights(source, path=weights.path, format=weights.format,
                           mmap=weights._mmap, files=weights.files)
    w = as_weights(weights)
    record = quantization_record(w.metadata)
    names = selected_names(list(w), include=include, exclude=exclude, rename=rename,
                           quantized=record or ())
    return Weights([(new, w[old]) for new, old in names.items()],
                   metadata=_renamed_metadata(w.metadata, names, record))
