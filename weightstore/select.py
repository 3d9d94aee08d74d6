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
* The metadata is kept as it is. Two tensors renamed to one name, or nothing kept,
  is an error.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .codec import TensorSource
from .errors import OptionError, WeightsError
from .lazy import LazyWeights
from .model import TensorInfo, Weights, as_weights

__all__ = ["RenameRule", "parse_rename", "select", "selected_names"]


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


def selected_names(names: Sequence[str], *, include: Sequence[str] = (),
                   exclude: Sequence[str] = (),
                   rename: Sequence[str | RenameRule] = ()) -> dict[str, str]:
    """New name -> old name of the tensors kept, in the order of *names*."""
    rules = [parse_rename(r) for r in rename]
    out: dict[str, str] = {}
    for name in names:
        if include and not any(fnmatch.fnmatchcase(name, p) for p in include):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in exclude):
            continue
        new = next((n for n in (r.apply(name) for r in rules) if n is not None), name)
        if new in out:
            raise WeightsError(field=f"tensor {new!r}", expected="one tensor per new name",
                               found=f"{out[new]!r} and {name!r} renamed to it")
        out[new] = name
    if not out:
        raise WeightsError(field="include/exclude", expected="at least one tensor kept",
                           found=f"none of {len(names)} (include {list(include)}, "
                           f"exclude {list(exclude)})")
    return out


class _SelectedSource(TensorSource):
    """Another source's tensors, some of them, under new names. Closing it leaves the
    other source open (the :class:`LazyWeights` it came from owns that)."""

    def __init__(self, inner: TensorSource, names: dict[str, str]) -> None:
        infos = {t.name: t for t in inner.tensors}
        super().__init__([TensorInfo(new, infos[old].dtype, infos[old].shape)
                          for new, old in names.items()], inner.metadata)
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
        names = selected_names(list(weights), include=include, exclude=exclude, rename=rename)
        return LazyWeights(_SelectedSource(weights._source, names), path=weights.path,
                           format=weights.format, mmap=weights._mmap, files=weights.files)
    w = as_weights(weights)
    names = selected_names(list(w), include=include, exclude=exclude, rename=rename)
    return Weights([(new, w[old]) for new, old in names.items()], metadata=w.metadata)
