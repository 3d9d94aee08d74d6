"""The report's measurements: one pass writes every variant to a real file, reads it back
and measures it (:func:`build_report`); :func:`compare`, :func:`zip_size` and :func:`pareto`
are its parts."""

from __future__ import annotations

import contextlib
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
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ... import api
from ...compare import ordered_ints
from ...errors import LossyWarning, MissingDependencyError, ModelError, UnsupportedError
from ...model import Weights, arrays_identical
from ..evaluate import Evaluation, evaluate
from ..shrink import shrink
from .textdump import parse_text_dump, text_dump
from .variants import SHRINK, Variant, default_variants

__all__ = ["Progress", "Diff", "Row", "Headline", "Report", "build_report", "compare",
           "zip_size", "pareto", "TensorErrors", "tensor_errors", "ERROR_BIN_EDGES"]

Progress = Callable[[int, int, str], None]


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
    #: False when a bit-exact row took the source's predictions instead of running the network
    #: again (identical weights give identical predictions); see ``build_report(reevaluate=)``.
    evaluated: bool = True
    rms_error: float = 0.0
    cosine: float = 1.0
    #: Per tensor, a histogram of the absolute errors (:func:`tensor_errors`); empty when
    #: the round trip is exact.
    tensor_errors: list[TensorErrors] = field(default_factory=list)


def pareto(rows: list[Row]) -> list[Row]:
    """The rows on the size/accuracy frontier, smallest first: each is the smallest file at
    its accuracy, and no other row is at most as large with at least its accuracy (one of
    the two strictly better). Rows of equal size and accuracy are all kept."""
    rows = [r for r in rows if not math.isnan(r.accuracy)]  # no accuracy: no frontier
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
    #: Rows that could not be measured here, each with why: ``"bfloat16 (npz): needs ...;
    #: install it with: pip install 'weightstore[bfloat16]'"``.
    skipped: list[str] = field(default_factory=list)
    #: Why there are no accuracy figures (the weights are none of the book's networks);
    #: empty when the network ran. Accuracy fields are then NaN.
    not_evaluated: str = ""


@dataclass
class Report:
    """A headline and rows per source file, plus how they were measured."""

    sections: list[tuple[Headline, list[Row]]]
    repeats: int
    environment: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for ``--format json``)."""
        return {
            "repeats": self.repeats,
            "error_bin_edges": list(ERROR_BIN_EDGES),
            "environment": self.environment,
            "sections": [{"headline": asdict(h), "rows": [asdict(r) for r in rows]}
                         for h, rows in self.sections],
        }


def _median_ms(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


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
    data_dir: str | os.PathLike[str] | None = None,
    keep_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    reevaluate: bool | None = None,
) -> Report:
    """Measure every variant on every source file (see the module docstring).

    *reevaluate*: run the network again for rows whose round trip is bit-exact. By default
    (None) only where one evaluation of the source takes under a second (the ch. 3 MLP);
    for the conv nets a bit-exact row takes the source's predictions, since identical
    weights give identical predictions, and is marked as such.
    """
    variants = variants if variants is not None else default_variants()
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
            again = (reevaluate if reevaluate is not None else
                     base is not None and base.seconds < 1.0)
            rows = []
            for variant in variants:
                step += 1
                if progress:
                    progress(step, steps, f"{src.name}: {variant.label}")
                try:
                    row = _measure(variant, weights, base, src, folder, scratch, repeats,
                                   data_dir, again)
                except MissingDependencyError as e:
                    headline.skipped.append(f"{variant.label}: {e}")
                    continue
                if row is not None:
                    rows.append(row)
            for r in pareto(rows):
                r.pareto = True
            sections.append((headline, rows))
    env = {"python": platform.python_version(), "numpy": np.__version__,
           "machine": platform.machine(), "cpus": str(os.cpu_count())}
    return Report(sections, repeats, env)


def _headline(src: Path, weights: Weights, base: Evaluation | None, scratch: Path,
              data_dir: str | os.PathLike[str] | None, why: str = "") -> Headline:
    text = text_dump(weights)
    back = parse_text_dump(text, weights)
    diff = compare(weights, back)
    text_eval = evaluate(back, data_dir=data_dir, model=base.model) if base else None
    raw = src.read_bytes()
    src_zip, tool = zip_size(raw, src.name, scratch)
    text_zip, _ = zip_size(text.encode(), "network.txt", scratch)  # the notes' str(network)
    n = _neurons(base.model, weights) if base else None
    total = weights.total_values
    nan = float("nan")
    return Headline(
        source=str(src), source_bytes=len(raw), model=base.model if base else "none",
        tensors=len(weights), weights=total, neurons=n,
        weights_per_neuron=total / n if n else None,
        accuracy=base.accuracy if base else nan, eval_seconds=base.seconds if base else 0.0,
        text_dump_bytes=len(text.encode()), text_chars_per_weight=len(text) / total,
        text_vs_source=len(text.encode()) / len(raw), text_exact=diff.exact,
        text_max_abs_error=diff.max_abs_error, text_max_rel_error=diff.max_rel_error,
        text_max_ulp_error=diff.max_ulp_error,
        text_accuracy=text_eval.accuracy if text_eval and base else nan,
        text_changed_predictions=int((text_eval.predictions != base.predictions).sum())
        if text_eval and base else 0,
        zip_tool=tool, source_zipped_bytes=src_zip, text_zipped_bytes=text_zip,
        not_evaluated=why,
    )


def _measure(variant: Variant, weights: Weights, base: Evaluation | None, src: Path,
             folder: Path,
             scratch: Path, repeats: int, data_dir: str | os.PathLike[str] | None,
             reevaluate: bool = True) -> Row | None:
    """The row for *variant*, or None when it does not apply (a codec that cannot hold the
    precision, shrink on another network). A missing optional package raises
    :class:`MissingDependencyError`: the caller lists the row as skipped."""
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
            write_ms, _ = _median_ms(lambda: api.save(values, path, variant.format,
                                                      precision=precision, **variant.options),
                                     repeats)
    except UnsupportedError:
        return None
    read_ms, got = _median_ms(lambda: api.load(path), repeats)
    size = path.stat().st_size
    diff = compare(weights, got)
    # bfloat16 widens exactly to float32, which the network computes with
    wide = Weights({k: v.astype(np.float32) if v.dtype.name == "bfloat16" else v
                    for k, v in got.items()})
    evaluated = base is not None and not (diff.exact and not reevaluate)
    result = evaluate(wide, data_dir=data_dir, model=base.model) if evaluated and base else base
    zipped, _ = zip_size(path.read_bytes(), path.name, scratch)
    return Row(
        label=variant.label, format=variant.format, options=dict(variant.options),
        file=str(path), bytes=size, bytes_per_weight=size / weights.total_values,
        vs_source=size / src.stat().st_size, zipped_bytes=zipped, exact=diff.exact,
        max_abs_error=diff.max_abs_error, max_rel_error=diff.max_rel_error,
        max_ulp_error=diff.max_ulp_error,
        rms_error=diff.rms_error, cosine=diff.cosine,
        accuracy=result.accuracy if result and base else float("nan"),
        changed_predictions=int((result.predictions != base.predictions).sum())
        if result and base else 0,
        write_ms=write_ms, read_ms=read_ms, precision=variant.precision_label,
        evaluated=evaluated, tensor_errors=[] if diff.exact else tensor_errors(weights, got),
    )
