"""The report's measurements: one pass writes every variant to a real file, reads it back
and measures it (:func:`build_report`); :func:`compare`, :func:`zip_size` and :func:`pareto`
are its parts.

Rows are handed to a :class:`Sink` as they are measured (the command line prints each one
then). Besides size, precision and time, a row records what a format-chooser asks next:

- **peak memory of the load** (:attr:`Row.peak_bytes`): the high-water mark of memory
  allocated through Python's allocators during one ``weightstore.load`` of the file, taken
  with :mod:`tracemalloc` in a separate, untimed load (tracing slows allocation, so the timed
  loads run without it). It counts every numpy array, bytes object and parser container the
  load makes, which is what grows with the file; it does not count memory that C libraries
  allocate with their own ``malloc`` (HDF5's chunk cache, zstd's window) nor memory-mapped
  pages. The storage layer's :class:`~weightstore.codec.Budget` is not used: it holds what
  readers *declare* before allocating (a safety limit), not what was allocated, and it is
  not kept after a load.
- **lazy access** (:attr:`Row.lazy`, :attr:`Row.one_tensor_bytes_read`,
  :attr:`Row.one_tensor_ms`): the bytes read to open the file with ``weightstore.open`` and
  copy out its last tensor in file order (the one a reader that scans reaches last), counted
  by the kernel (Linux ``/proc/self/io``; elsewhere not counted); lazy when that is less than
  the whole file; and the median time to do it.

Accuracy is evaluated once per distinct set of loaded arrays: a row whose arrays are
bit-identical to the source's or to a row evaluated before (float16 in npz and in zstd npz,
say) takes those predictions (:attr:`Row.predictions_from`), unless *reevaluate* asks for a
fresh run; identical inputs give identical predictions.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import tracemalloc
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ... import api
from ...compare import ordered_ints
from ...errors import (
    LossyWarning,
    MissingDependencyError,
    ModelError,
    OptionError,
    UnsupportedError,
)
from ...model import Weights, arrays_identical
from ..evaluate import Evaluation, evaluate
from ..shrink import shrink
from .textdump import parse_text_dump, text_dump
from .variants import SHRINK, Variant, default_variants

__all__ = ["Progress", "Sink", "Diff", "Row", "Headline", "Report", "build_report", "compare",
           "zip_size", "pareto", "TensorErrors", "tensor_errors", "ERROR_BIN_EDGES",
           "ACCEPT_POINTS", "MAX_SECONDS", "load_peak_bytes", "one_tensor_access", "OneTensor"]

Progress = Callable[[int, int, str], None]

#: The frontier's default acceptance: rows at most this many percentage points below the
#: source's accuracy (that of every bit-exact row) are candidates; ``--accept`` changes it.
ACCEPT_POINTS = 1.0
#: A time is the median of ``repeats`` runs, or of fewer once the runs took this many
#: seconds in all (a 6-second write is timed once, a 20 ms one five times, a 200 ms one 3).
MAX_SECONDS = 0.5


@dataclass(frozen=True)
class Diff:
    """How far a round trip's values are from the source's."""

    exact: bool
    max_abs_error: float
    max_rel_error: float
    max_ulp_error: float
    #: sqrt(mean((a - b)**2)) over every value of every tensor (float64).
    rms_error: float = 0.0
    #: sum(a*b) / (|a| |b|) over every value, the tensors joined into one vector.
    cosine: float = 1.0


#: Edges of the per-tensor error histograms (:func:`tensor_errors`): absolute errors from
#: 1e-12 to 1, two bins per decade. Bin 0 counts the values read back exactly, bin 1 the
#: errors below the first edge, then one bin per pair of edges, and the last those of 1 or
#: more (or NaN against a number).
ERROR_BIN_EDGES: tuple[float, ...] = tuple(10.0 ** (k / 2) for k in range(-24, 1))


@dataclass(frozen=True)
class TensorErrors:
    """How one tensor's values moved in a lossy round trip: a histogram of the absolute
    errors over :data:`ERROR_BIN_EDGES` (``len(edges) + 2`` counts, the first the exact ones)."""

    name: str
    values: int
    max_abs_error: float
    histogram: list[int]


def tensor_errors(source: Weights, got: Weights) -> list[TensorErrors]:
    """Per tensor of *source*, the histogram of ``|got - source|`` (both NaN: 0 error;
    a tensor missing from *got* counts every value in the last bin)."""
    edges = np.array(ERROR_BIN_EDGES)
    out = []
    for name, ref in source.items():
        a = np.asarray(ref).astype(np.float64).ravel()
        if name in got:
            b = np.asarray(got[name]).astype(np.float64).ravel()
            with np.errstate(invalid="ignore"):
                err = np.where(np.isnan(a) & np.isnan(b), 0.0, np.abs(a - b))
            err = np.where(np.isnan(err), np.inf, err)
        else:
            err = np.full(a.size, np.inf)
        exact = int((err == 0).sum())
        # searchsorted: 0 below the first edge, len(edges) at or above the last
        bins = np.bincount(np.searchsorted(edges, err[err > 0], side="right"),
                           minlength=len(edges) + 1)
        out.append(TensorErrors(name, int(a.size), float(err.max()) if err.size else 0.0,
                                [exact, *(int(c) for c in bins)]))
    return out


def compare(source: Weights, got: Weights) -> Diff:
    """Bit-exactness and the largest errors of *got* against *source*, tensor by tensor.

    ULPs are counted in the source's dtype (values read back are rounded to it first).
    """
    exact = list(source) == list(got) and all(arrays_identical(source[k], got[k]) for k in source)
    max_abs = max_rel = max_ulp = 0.0
    sq = dot = na = nb = 0.0
    count = 0
    for name, ref in source.items():
        if name not in got:
            inf = float("inf")
            return Diff(False, inf, inf, inf, inf, float("nan"))
        a = np.asarray(ref)
        b = np.asarray(got[name])
        a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
        both_nan = np.isnan(a64) & np.isnan(b64)
        err = np.where(both_nan, 0.0, np.abs(a64 - b64))
        finite = np.isfinite(a64) & np.isfinite(b64)
        sq += float(np.square(err[finite]).sum())
        count += err.size
        dot += float(np.dot(a64[finite], b64[finite]))
        na += float(np.dot(a64[finite], a64[finite]))
        nb += float(np.dot(b64[finite], b64[finite]))
        if err.size:
            max_abs = max(max_abs, float(np.nanmax(err)))
            nz = a64 != 0
            if nz.any():
                max_rel = max(max_rel, float(np.nanmax(err[nz] / np.abs(a64[nz]))))
            if a.dtype.kind == "f":
                with np.errstate(over="ignore", invalid="ignore"):
                    b_in_a = b.astype(a.dtype)
                ulps = np.abs(ordered_ints(np.ascontiguousarray(a).ravel()) -
                              ordered_ints(np.ascontiguousarray(b_in_a).ravel()))
                max_ulp = max(max_ulp, float(np.where(both_nan, 0, ulps).max()))
            else:
                max_ulp = max(max_ulp, float(err.max()))
    rms = math.sqrt(sq / count) if count else 0.0
    cosine = dot / math.sqrt(na * nb) if na and nb else float(na == nb)
    return Diff(exact, max_abs, max_rel, max_ulp, rms, cosine)


def zip_size(data: bytes, name: str, workdir: Path) -> tuple[int, str]:
    """Bytes of a zip archive holding *data* as *name*, and the tool that made it.

    Uses Info-ZIP's ``zip`` at its defaults (as the notes did) when installed, else
    Python's zipfile with deflate level 6 (zlib; a few dozen bytes apart).
    """
    src = workdir / name
    src.write_bytes(data)
    if shutil.which("zip"):
        out = workdir / (name + ".zip")
        out.unlink(missing_ok=True)
        subprocess.run(["zip", "-q", out.name, name], cwd=workdir, check=True)
        size, tool = out.stat().st_size, "zip"
        out.unlink()
    else:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            zf.writestr(name, data)
        size, tool = len(buf.getvalue()), "zipfile"
    src.unlink()
    return size, tool


@dataclass
class Row:
    """One way of storing the weights, measured."""

    label: str
    format: str
    options: dict[str, Any]
    file: str
    bytes: int
    bytes_per_weight: float
    vs_source: float
    zipped_bytes: int
    exact: bool
    max_abs_error: float
    max_rel_error: float
    max_ulp_error: float
    accuracy: float
    changed_predictions: int
    #: Root-mean-square error and cosine similarity against the source, over all values
    #: (they say more than the max errors for quantized rows).
    write_ms: float
    read_ms: float
    precision: str = "as stored"
    pareto: bool = False
    #: False when the row took the predictions of the source or of an earlier row whose
    #: loaded arrays are bit-identical (:attr:`predictions_from`) instead of running the
    #: network again (identical weights give identical predictions); see
    #: ``build_report(reevaluate=)``.
    evaluated: bool = True
    rms_error: float = 0.0
    cosine: float = 1.0
    #: Per tensor, a histogram of the absolute errors (:func:`tensor_errors`); empty when
    #: the round trip is exact.
    tensor_errors: list[TensorErrors] = field(default_factory=list)
    #: Peak bytes allocated during one load of the file (:func:`load_peak_bytes`).
    peak_bytes: int = 0
    #: Whether ``weightstore.open`` gave :attr:`one_tensor` reading less than the whole
    #: file (:func:`one_tensor_access`); None where reads are not counted.
    lazy: bool | None = None
    #: Median ms to open the file and copy out :attr:`one_tensor` (:func:`one_tensor_access`).
    one_tensor_ms: float = 0.0
    one_tensor: str = ""
    #: Bytes read to open the file and copy out :attr:`one_tensor` (None: not counted).
    one_tensor_bytes_read: int | None = None
    #: Where the predictions of a row that was not evaluated come from: ``"source"`` or the
    #: label of the row whose loaded arrays are bit-identical; empty when evaluated.
    predictions_from: str = ""
    #: The fewest runs behind one of the row's times (``build_report(max_seconds=)``).
    timed_runs: int = 0


def pareto(rows: list[Row], min_accuracy: float | None = None) -> list[Row]:
    """The rows on the size/accuracy frontier, smallest first: each is the smallest file at
    its accuracy, and no other row is at most as large with at least its accuracy (one of
    the two strictly better). Rows of equal size and accuracy are all kept. With
    *min_accuracy*, only rows at least that accurate count (the rest a user would not
    accept, however small)."""
    rows = [r for r in rows if not math.isnan(r.accuracy)]  # no accuracy: no frontier
    if min_accuracy is not None:
        rows = [r for r in rows if r.accuracy >= min_accuracy]
    front = []
    for r in rows:
        dominated = any(
            o.bytes <= r.bytes and o.accuracy >= r.accuracy
            and (o.bytes < r.bytes or o.accuracy > r.accuracy) for o in rows)
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: (r.bytes, -r.accuracy))


@dataclass
class Headline:
    """The notes' figures, measured afresh on the source file."""

    source: str
    source_bytes: int
    model: str
    tensors: int
    weights: int
    neurons: int | None
    weights_per_neuron: float | None
    accuracy: float
    eval_seconds: float
    text_dump_bytes: int
    text_chars_per_weight: float
    text_vs_source: float
    text_exact: bool
    text_max_abs_error: float
    text_max_rel_error: float
    text_max_ulp_error: float
    text_accuracy: float
    text_changed_predictions: int
    zip_tool: str
    source_zipped_bytes: int
    text_zipped_bytes: int
    #: Why the ``str(network)`` text dump was not measured ("" when it was): numpy prints
    #: about 125,000 values a second, so above :data:`TEXT_DUMP_MAX_VALUES` it is skipped.
    text_skipped: str = ""
    #: Rows that could not be measured here, each with why: ``"bfloat16 (npz): needs ...;
    #: install it with: pip install 'weightstore[bfloat16]'"``.
    skipped: list[str] = field(default_factory=list)
    #: Why there are no accuracy figures (the weights are none of the book's networks);
    #: empty when the network ran. Accuracy fields are then NaN.
    not_evaluated: str = ""
    #: The frontier's acceptance: percentage points below :attr:`accuracy` a row may lose
    #: and still be on the frontier (:attr:`min_accuracy`, NaN without accuracy).
    accept_points: float = ACCEPT_POINTS

    @property
    def min_accuracy(self) -> float:
        """The lowest accuracy the frontier accepts."""
        return self.accuracy - self.accept_points / 100


@dataclass
class Report:
    """A headline and rows per source file, plus how they were measured."""

    sections: list[tuple[Headline, list[Row]]]
    repeats: int
    environment: dict[str, str]
    #: A timing stops repeating once its runs took this many seconds (inf: never).
    max_seconds: float = math.inf

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for ``--format json``)."""
        return {
            "repeats": self.repeats,
            "max_seconds": self.max_seconds if math.isfinite(self.max_seconds) else None,
            "error_bin_edges": list(ERROR_BIN_EDGES),
            "environment": self.environment,
            "sections": [{"headline": asdict(h), "rows": [asdict(r) for r in rows]}
                         for h, rows in self.sections],
        }


class Sink(Protocol):
    """Receives the report while it is measured (:func:`build_report`'s *sink*): a section's
    headline before its rows, each row as soon as it is measured, the section's end (its
    rows, frontier flags set; skipped rows in ``headline.skipped``), and the whole report."""

    def section(self, headline: Headline, expected: list[tuple[str, str]]) -> None:
        """A section starts; *expected*: label and precision label of each row to come
        (some may be skipped or not apply)."""

    def row(self, headline: Headline, row: Row) -> None:
        """*row* was measured."""

    def end_section(self, headline: Headline, rows: list[Row]) -> None:
        """The section's rows are all in, frontier flags set."""

    def end(self, report: Report) -> None:
        """Every section is done."""


def load_peak_bytes(path: str | os.PathLike[str]) -> int:
    """Peak bytes allocated through Python's allocators (numpy arrays included) during one
    ``weightstore.load`` of *path*, above what was allocated before it (:mod:`tracemalloc`;
    see the module docstring for what it does not count)."""
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        got = api.load(path)
        _, peak = tracemalloc.get_traced_memory()
        del got
    finally:
        if not tracing:
            tracemalloc.stop()
    return max(0, peak - before)


@dataclass(frozen=True)
class OneTensor:
    """Reading one tensor through ``weightstore.open`` (:func:`one_tensor_access`)."""

    #: The tensor read: the file's last, which a reader that scans reaches last.
    name: str
    #: Bytes the process read (``rchar`` of ``/proc/self/io``) to open the file and copy
    #: the tensor out, without memory maps; None where the system does not count them.
    bytes_read: int | None
    #: Whether that is less than the whole file (None when not counted).
    lazy: bool | None
    #: Median ms to open the file and copy the tensor out (memory maps on, the default).
    ms: float
    runs: int


def _rchar() -> int | None:
    """Bytes this process has read through read/pread system calls (Linux), or None."""
    try:
        with open("/proc/self/io", "rb") as f:
            for line in f:
                if line.startswith(b"rchar:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def one_tensor_access(path: str | os.PathLike[str], repeats: int = 1,
                      max_seconds: float = math.inf) -> OneTensor:
    """Open *path* with ``weightstore.open`` and copy out its last tensor: the bytes read
    to do so, whether that is less than the file (so one tensor is read without reading the
    file), and the median ms of up to *repeats* runs (see :func:`_median_ms`).

    The bytes are counted by the kernel (every read of the process, native libraries'
    included), around a second opening, after one that loaded the codec's modules; the
    count of reading the counter itself is taken off. :attr:`weightstore.LazyWeights.lazy`
    is not used: a text format may index the whole file on opening and still call itself
    lazy, as it holds one tensor at a time.
    """
    def fetch(mmap: bool = True) -> None:
        with api.open_weights(path, mmap=mmap) as w:
            if name:
                np.array(w[name], copy=True)  # a memory map is read here, not on access

    with api.open_weights(path, mmap=False) as lw:
        names = list(lw)
    name = names[-1] if names else ""
    fetch(mmap=False)  # modules imported, caches warm
    before, again = _rchar(), _rchar()
    fetch(mmap=False)
    after = _rchar()
    read = (after - again - (again - before)) if None not in (before, again, after) else None
    size = os.stat(path).st_size
    ms, _, runs = _median_ms(fetch, repeats, max_seconds)
    return OneTensor(name, read, None if read is None else read < size, ms, runs)


def _digest(weights: Weights) -> bytes:
    """A hash of names, dtypes, shapes and bytes: equal for bit-identical weights."""
    h = hashlib.blake2b(digest_size=20)
    for name, value in weights.items():
        a = np.ascontiguousarray(value)
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.reshape(-1).view(np.uint8))
    return h.digest()


def _widened(weights: Weights) -> Weights:
    """bfloat16 widened to float32 (exactly), which the network computes with."""
    return Weights({k: v.astype(np.float32) if v.dtype.name == "bfloat16" else v
                    for k, v in weights.items()})


def _median_ms(fn: Callable[[], Any], repeats: int,
               max_seconds: float = math.inf) -> tuple[float, Any, int]:
    """The median ms of up to *repeats* runs of *fn*, its last result and the runs made:
    at least one, and no new run once the runs so far took *max_seconds* in all."""
    times, result = [], None
    while len(times) < repeats and (not times or sum(times) < max_seconds * 1000):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result, len(times)


def _neurons(model: str, weights: Weights) -> int | None:
    """Input width plus every layer's output width, for the fully connected network."""
    if model != "mlp":
        return None
    w = [weights[k] for k in ("W1", "W2", "W3")]
    return int(w[0].shape[0] + sum(x.shape[1] for x in w))


def build_report(
    sources: list[str | os.PathLike[str]],
    *,
    variants: list[Variant] | None = None,
    repeats: int = 5,
    max_seconds: float = MAX_SECONDS,
    data_dir: str | os.PathLike[str] | None = None,
    keep_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    reevaluate: bool | None = None,
    accept: float = ACCEPT_POINTS,
    sink: Sink | None = None,
) -> Report:
    """Measure every variant on every source file (see the module docstring).

    *reevaluate*: run the network again for rows whose loaded arrays are bit-identical to
    the source's or to an evaluated row's. By default (None) only where one evaluation of
    the source takes under a second (the ch. 3 MLP); elsewhere such a row takes those
    predictions, since identical weights give identical predictions, and is marked so.

    *accept*: the frontier (:attr:`Row.pareto`) holds only rows at most this many
    percentage points below the source's accuracy (:data:`ACCEPT_POINTS` by default).

    *repeats*, *max_seconds*: each time is the median of up to *repeats* runs, fewer when
    the runs so far took *max_seconds* in all (at least one; :attr:`Row.timed_runs`).

    *sink* receives each headline, row and section end as soon as it is measured.
    """
    if not accept >= 0:
        raise OptionError(field="accept", expected="0 or more percentage points",
                          found=accept)
    variants = variants if variants is not None else default_variants()
    env = {"python": platform.python_version(), "numpy": np.__version__,
           "machine": platform.machine(), "cpus": str(os.cpu_count())}
    with contextlib.ExitStack() as stack:
        if keep_dir is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ws-report-")))
        else:
            work = Path(keep_dir)
            work.mkdir(parents=True, exist_ok=True)
        sections = []
        steps = len(sources) * (len(variants) + 1)
        step = 0
        for source in sources:
            src = Path(source)
            folder = work / src.stem if len(sources) > 1 else work
            folder.mkdir(parents=True, exist_ok=True)
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ws-zip-")))
            weights = api.load(src)
            step += 1
            if progress:
                progress(step, steps, f"{src.name}: evaluating the source")
            try:
                base: Evaluation | None = evaluate(weights, data_dir=data_dir)
                why = ""
            except ModelError:  # any weights: sizes, precision and times still mean much
                base, why = None, ("the weights are none of the book's networks (the ch. 3 "
                                   "MLP, the ch. 7/8 convnets; 'weightstore eval' says why)")
            headline = _headline(src, weights, base, scratch, data_dir, why)
            headline.accept_points = accept
            if sink:
                sink.section(headline, [(v.label, v.precision_label) for v in variants])
            again = (reevaluate if reevaluate is not None else
                     base is not None and base.seconds < 1.0)
            # predictions per distinct set of loaded arrays, and whose they were
            seen: dict[bytes, tuple[Evaluation, str]] = {}
            if base is not None:
                seen[_digest(_widened(weights))] = (base, "source")
            rows = []
            for variant in variants:
                step += 1
                if progress:
                    progress(step, steps, f"{src.name}: {variant.label}")
                try:
                    row = _measure(variant, weights, base, src, folder, scratch,
                                   (repeats, max_seconds), data_dir, seen, again)
                except MissingDependencyError as e:
                    headline.skipped.append(f"{variant.label}: {e}")
                    continue
                if row is not None:
                    rows.append(row)
                    if sink:
                        sink.row(headline, row)
            for r in pareto(rows, headline.min_accuracy):
                r.pareto = True
            if sink:
                sink.end_section(headline, rows)
            sections.append((headline, rows))
    report = Report(sections, repeats, env, max_seconds)
    if sink:
        sink.end(report)
    return report


#: Most values whose ``str(network)`` text dump the headline measures: numpy prints about
#: 125,000 float32 values a second (8 s for a million), and the dump is only the notes'
#: baseline, not a format anyone converts to.
TEXT_DUMP_MAX_VALUES = 2_000_000


def _headline(src: Path, weights: Weights, base: Evaluation | None, scratch: Path,
              data_dir: str | os.PathLike[str] | None, why: str = "") -> Headline:
    raw = src.read_bytes()
    total = weights.total_values
    nan = float("nan")
    if total > TEXT_DUMP_MAX_VALUES:  # the text dump's fields stay empty, saying why
        text_fields: dict[str, Any] = dict(
            text_dump_bytes=0, text_chars_per_weight=nan, text_vs_source=nan,
            text_exact=False, text_max_abs_error=nan, text_max_rel_error=nan,
            text_max_ulp_error=nan, text_accuracy=nan, text_changed_predictions=0,
            text_zipped_bytes=0, text_skipped=(
                f"{total:,} values; numpy would print them for about {total / 125_000:,.0f} "
                f"s (measured up to {TEXT_DUMP_MAX_VALUES:,} values)"))
    else:
        text = text_dump(weights)
        back = parse_text_dump(text, weights)
        diff = compare(weights, back)
        text_eval = evaluate(back, data_dir=data_dir, model=base.model) if base else None
        text_fields = dict(
            text_dump_bytes=len(text.encode()), text_chars_per_weight=len(text) / total,
            text_vs_source=len(text.encode()) / len(raw), text_exact=diff.exact,
            text_max_abs_error=diff.max_abs_error, text_max_rel_error=diff.max_rel_error,
            text_max_ulp_error=diff.max_ulp_error,
            text_accuracy=text_eval.accuracy if text_eval and base else nan,
            text_changed_predictions=int((text_eval.predictions != base.predictions).sum())
            if text_eval and base else 0,
            text_zipped_bytes=zip_size(text.encode(), "network.txt", scratch)[0])
    src_zip, tool = zip_size(raw, src.name, scratch)
    n = _neurons(base.model, weights) if base else None
    return Headline(
        source=str(src), source_bytes=len(raw), model=base.model if base else "none",
        tensors=len(weights), weights=total, neurons=n,
        weights_per_neuron=total / n if n else None,
        accuracy=base.accuracy if base else nan, eval_seconds=base.seconds if base else 0.0,
        zip_tool=tool, source_zipped_bytes=src_zip, not_evaluated=why, **text_fields,
    )


def _measure(variant: Variant, weights: Weights, base: Evaluation | None, src: Path,
             folder: Path, scratch: Path, timing: tuple[int, float],
             data_dir: str | os.PathLike[str] | None,
             seen: dict[bytes, tuple[Evaluation, str]], reevaluate: bool = True) -> Row | None:
    """The row for *variant*, or None when it does not apply (a codec that cannot hold the
    precision, shrink on another network). A missing optional package raises
    :class:`MissingDependencyError`: the caller lists the row as skipped. *seen* maps the
    digest of loaded arrays already evaluated to their evaluation and whose it was."""
    slug = re.sub(r"[^a-z0-9]+", "-", variant.label.lower()).strip("-")
    path = folder / f"{src.stem}.{slug}{variant.extension}"
    values: Weights = weights
    precision: Any = variant.precision
    if precision == SHRINK:
        if base is None or base.model != "mlp":
            return None
        values = shrink(weights, data_dir=data_dir, codec=variant.format,
                        codec_options=dict(variant.options)).weights
        precision = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LossyWarning)  # lossy on purpose: measured here
            write_ms, _, write_runs = _median_ms(
                lambda: api.save(values, path, variant.format, precision=precision,
                                 **variant.options), *timing)
    except UnsupportedError:
        return None
    read_ms, got, read_runs = _median_ms(lambda: api.load(path), *timing)
    size = path.stat().st_size
    diff = compare(weights, got)
    result: Evaluation | None = None
    source = ""
    if base is not None:
        wide = _widened(got)
        key = _digest(wide)
        if key in seen and not reevaluate:
            result, source = seen[key]
        else:
            result = evaluate(wide, data_dir=data_dir, model=base.model)
            seen.setdefault(key, (result, variant.label))
    zipped, _ = zip_size(path.read_bytes(), path.name, scratch)
    peak = load_peak_bytes(path)
    one = one_tensor_access(path, *timing)
    return Row(
        label=variant.label, format=variant.format, options=dict(variant.options),
        file=str(path), bytes=size, bytes_per_weight=size / weights.total_values,
        vs_source=size / src.stat().st_size, zipped_bytes=zipped, exact=diff.exact,
        max_abs_error=diff.max_abs_error, max_rel_error=diff.max_rel_error,
        max_ulp_error=diff.max_ulp_error,
        rms_error=diff.rms_error, cosine=diff.cosine,
        accuracy=result.accuracy if result else float("nan"),
        changed_predictions=int((result.predictions != base.predictions).sum())
        if result and base else 0,
        write_ms=write_ms, read_ms=read_ms, precision=variant.precision_label,
        evaluated=base is not None and not source, predictions_from=source,
        tensor_errors=[] if diff.exact else tensor_errors(weights, got),
        peak_bytes=peak, lazy=one.lazy, one_tensor_ms=one.ms, one_tensor=one.name,
        one_tensor_bytes_read=one.bytes_read, timed_runs=min(write_runs, read_runs, one.runs),
    )
