"""The report's measurements: one pass writes every variant to a real file, reads it back
and measures it (:func:`build_report`); :func:`compare`, :func:`zip_size` and :func:`pareto`
are its parts."""

from __future__ import annotations

import contextlib
import io
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ... import api
from ...errors import LossyWarning, MissingDependencyError, UnsupportedError
from ...model import Weights, arrays_identical
from ..evaluate import Evaluation, evaluate
from ..shrink import shrink
from .textdump import parse_text_dump, text_dump
from .variants import SHRINK, Variant, default_variants

__all__ = ["Progress", "Diff", "Row", "Headline", "Report", "build_report", "compare",
           "zip_size", "pareto"]

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Diff:
    """How far a round trip's values are from the source's."""

    exact: bool
    max_abs_error: float
    max_rel_error: float
    max_ulp_error: float


def _ordered_ints(a: np.ndarray) -> np.ndarray:
    """Float bits mapped to numbers whose differences count units in the last place
    (+0.0 and -0.0 both map to 0)."""
    bits = a.view(f"i{a.dtype.itemsize}").astype(np.int64)
    magnitude = bits & ((1 << (8 * a.dtype.itemsize - 1)) - 1)
    return np.where(bits < 0, -magnitude, magnitude).astype(np.float64)


def compare(source: Weights, got: Weights) -> Diff:
    """Bit-exactness and the largest errors of *got* against *source*, tensor by tensor.

    ULPs are counted in the source's dtype (values read back are rounded to it first).
    """
    exact = list(source) == list(got) and all(arrays_identical(source[k], got[k]) for k in source)
    max_abs = max_rel = max_ulp = 0.0
    for name, ref in source.items():
        if name not in got:
            return Diff(False, float("inf"), float("inf"), float("inf"))
        a = np.asarray(ref)
        b = np.asarray(got[name])
        a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
        both_nan = np.isnan(a64) & np.isnan(b64)
        err = np.where(both_nan, 0.0, np.abs(a64 - b64))
        if err.size:
            max_abs = max(max_abs, float(np.nanmax(err)))
            nz = a64 != 0
            if nz.any():
                max_rel = max(max_rel, float(np.nanmax(err[nz] / np.abs(a64[nz]))))
            if a.dtype.kind == "f":
                with np.errstate(over="ignore", invalid="ignore"):
                    b_in_a = b.astype(a.dtype)
                ulps = np.abs(_ordered_ints(np.ascontiguousarray(a).ravel()) -
                              _ordered_ints(np.ascontiguousarray(b_in_a).ravel()))
                max_ulp = max(max_ulp, float(np.where(both_nan, 0, ulps).max()))
            else:
                max_ulp = max(max_ulp, float(err.max()))
    return Diff(exact, max_abs, max_rel, max_ulp)


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
    write_ms: float
    read_ms: float
    precision: str = "as stored"
    pareto: bool = False
    #: False when a bit-exact row took the source's predictions instead of running the network
    #: again (identical weights give identical predictions); see ``build_report(reevaluate=)``.
    evaluated: bool = True


def pareto(rows: list[Row]) -> list[Row]:
    """The rows on the size/accuracy frontier, smallest first: each is the smallest file at
    its accuracy, and no other row is at most as large with at least its accuracy (one of
    the two strictly better). Rows of equal size and accuracy are all kept."""
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
            base = evaluate(weights, data_dir=data_dir)
            headline = _headline(src, weights, base, scratch, data_dir)
            again = reevaluate if reevaluate is not None else base.seconds < 1.0
            rows = []
            for variant in variants:
                step += 1
                if progress:
                    progress(step, steps, f"{src.name}: {variant.label}")
                row = _measure(variant, weights, base, src, folder, scratch, repeats, data_dir,
                               again)
                if row is not None:
                    rows.append(row)
            for r in pareto(rows):
                r.pareto = True
            sections.append((headline, rows))
    env = {"python": platform.python_version(), "numpy": np.__version__,
           "machine": platform.machine(), "cpus": str(os.cpu_count())}
    return Report(sections, repeats, env)


def _headline(src: Path, weights: Weights, base: Evaluation, scratch: Path,
              data_dir: str | os.PathLike[str] | None) -> Headline:
    text = text_dump(weights)
    back = parse_text_dump(text, weights)
    diff = compare(weights, back)
    text_eval = evaluate(back, data_dir=data_dir, model=base.model)
    raw = src.read_bytes()
    src_zip, tool = zip_size(raw, src.name, scratch)
    text_zip, _ = zip_size(text.encode(), "network.txt", scratch)  # the notes' str(network)
    n = _neurons(base.model, weights)
    total = weights.total_values
    return Headline(
        source=str(src), source_bytes=len(raw), model=base.model, tensors=len(weights),
        weights=total, neurons=n, weights_per_neuron=total / n if n else None,
        accuracy=base.accuracy, eval_seconds=base.seconds,
        text_dump_bytes=len(text.encode()), text_chars_per_weight=len(text) / total,
        text_vs_source=len(text.encode()) / len(raw), text_exact=diff.exact,
        text_max_abs_error=diff.max_abs_error, text_max_rel_error=diff.max_rel_error,
        text_max_ulp_error=diff.max_ulp_error, text_accuracy=text_eval.accuracy,
        text_changed_predictions=int((text_eval.predictions != base.predictions).sum()),
        zip_tool=tool, source_zipped_bytes=src_zip, text_zipped_bytes=text_zip,
    )


def _measure(variant: Variant, weights: Weights, base: Evaluation, src: Path, folder: Path,
             scratch: Path, repeats: int, data_dir: str | os.PathLike[str] | None,
             reevaluate: bool = True) -> Row | None:
    """The row for *variant*, or None when it does not apply (a missing optional package,
    a codec that cannot hold the precision, shrink on another network)."""
    slug = re.sub(r"[^a-z0-9]+", "-", variant.label.lower()).strip("-")
    path = folder / f"{src.stem}.{slug}{variant.extension}"
    values: Weights = weights
    precision: Any = variant.precision
    if precision == SHRINK:
        if base.model != "mlp":
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
    except (MissingDependencyError, UnsupportedError):
        return None
    read_ms, got = _median_ms(lambda: api.load(path), repeats)
    size = path.stat().st_size
    diff = compare(weights, got)
    # bfloat16 widens exactly to float32, which the network computes with
    wide = Weights({k: v.astype(np.float32) if v.dtype.name == "bfloat16" else v
                    for k, v in got.items()})
    evaluated = not (diff.exact and not reevaluate)
    result = evaluate(wide, data_dir=data_dir, model=base.model) if evaluated else base
    zipped, _ = zip_size(path.read_bytes(), path.name, scratch)
    return Row(
        label=variant.label, format=variant.format, options=dict(variant.options),
        file=str(path), bytes=size, bytes_per_weight=size / weights.total_values,
        vs_source=size / src.stat().st_size, zipped_bytes=zipped, exact=diff.exact,
        max_abs_error=diff.max_abs_error, max_rel_error=diff.max_rel_error,
        max_ulp_error=diff.max_ulp_error, accuracy=result.accuracy,
        changed_predictions=int((result.predictions != base.predictions).sum()),
        write_ms=write_ms, read_ms=read_ms, precision=variant.precision_label,
        evaluated=evaluated,
    )
