"""The storage report: for every format and option set, what storing the weights costs.

For each variant (a codec with options) the weights are written to a real file
and read back; a row records the file size, bytes per weight, size relative to
the source file and after zip (deflate), whether the round trip is bit-exact and,
where not, the largest absolute, relative and ULP error, the network's accuracy
after the round trip, how many of the 10,000 predictions changed, and the median
write and read times. Above the table stand the figures of the reader's notes
(``../shared/docs/notes-analysis.md``), measured afresh: neurons, weights, the
``str(network)`` text dump with its precision loss, and the zip sizes.

Besides the formats at their options, rows cover each precision option
(:mod:`weightstore.precision`: float16, bfloat16, int8/int4/int2 per column, 4 and 6
significant digits in JSON and CSV) and the ``weightstore shrink`` result. The Pareto
frontier (:func:`pareto`) is the smallest file at each accuracy: a row is on it when no
other row is as small or smaller with an accuracy as high or higher (and one of the two
strictly better).

Nothing here is a stored figure: every number comes from files written in the run.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import api, registry
from . import precision as precision_mod
from .errors import LossyWarning, MissingDependencyError, UnsupportedError
from .evaluate import Evaluation, evaluate
from .model import Weights, arrays_identical

__all__ = ["Variant", "Row", "Headline", "Report", "default_variants", "build_report",
           "text_dump", "parse_text_dump", "compare", "zip_size", "pareto", "SHRINK"]

Progress = Callable[[int, int, str], None]


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
        p = precision_mod.Precision.of(self.precision)  # type: ignore[arg-type]
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
    covered = {x.format for x in v} | {"zstd"}
    for cls in registry.codecs():  # codecs added later (safetensors, compact, ...) join here
        if cls.name not in covered and not getattr(cls, "layer", False):
            v.append(Variant(cls.name, cls.name, cls.extensions[0]))
    for level in (3, 19):
        for inner, ext in (("pickle", ".pkl"), ("npz", ".npz"), ("json", ".json"),
                           ("csv", ".csv"), ("hdf5", ".h5")):
            v.append(Variant(f"zstd-{level} ({inner})", "zstd", f"{ext}.zst", {"level": level}))
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
    from .shrink import default_codec

    codec, options = default_codec()
    ext = {"zstd": ".npz.zst"}.get(codec, registry.get_codec(codec).extensions[0])
    v.append(Variant(f"shrink ({codec})", codec, ext, options, SHRINK))
    return v


# --- measurements --------------------------------------------------------------------


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


def text_dump(weights: Weights) -> str:
    """``str(network)`` with numpy printing every element: what the notes wrote to a file."""
    with np.printoptions(threshold=sys.maxsize):
        return str({k: np.asarray(v) for k, v in weights.items()})


_NUMBER = re.compile(rb"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|inf|nan)")


def parse_text_dump(text: str, like: Weights) -> Weights:
    """Read a :func:`text_dump` back into arrays shaped and typed like *like*: what a program
    that had only the text file could recover."""
    data = text.encode()
    out: dict[str, np.ndarray] = {}
    names = list(like)
    for i, name in enumerate(names):
        start = data.index(f"{name!r}: array(".encode())
        end = data.index(f"{names[i + 1]!r}: array(".encode()) if i + 1 < len(names) else len(data)
        body = data[start + len(f"{name!r}: array(".encode()):end]
        body = body[: body.rfind(b")")]
        body = re.sub(rb",\s*dtype=\w+\s*$", b"", body)
        numbers = np.array(_NUMBER.findall(body), dtype=np.float64)
        ref = like[name]
        out[name] = numbers.astype(ref.dtype).reshape(ref.shape)
    return Weights(out)


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
    #: Per tensor, a histogram of the absolute errors (:func:`tensor_errors`); empty when
    #: the round trip is exact.
    tensor_errors: list[TensorErrors] = field(default_factory=list)


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
            base = evaluate(weights, data_dir=data_dir, source=src)
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
    import platform

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
        from .shrink import shrink

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
        evaluated=evaluated, tensor_errors=[] if diff.exact else tensor_errors(weights, got),
    )


# --- rendering -----------------------------------------------------------------------

COLUMNS = ["format", "precision", "bytes", "B/weight", "vs src", "zipped", "exact",
           "max abs err", "max rel err", "max ULP", "accuracy", "changed", "frontier",
           "write ms", "read ms"]


def _cells(r: Row) -> list[str]:
    def err(x: float) -> str:
        return "0" if r.exact else f"{x:.3g}"

    return [r.label, r.precision, f"{r.bytes:,}", f"{r.bytes_per_weight:.2f}",
            f"{r.vs_source:.3f}x", f"{r.zipped_bytes:,}", "yes" if r.exact else "no",
            err(r.max_abs_error), err(r.max_rel_error), err(r.max_ulp_error),
            f"{r.accuracy:.4f}" + ("" if r.evaluated else "="), str(r.changed_predictions),
            "*" if r.pareto else "",
            f"{r.write_ms:.1f}", f"{r.read_ms:.1f}"]


def frontier_only(report: Report) -> Report:
    """*report* with only the rows on each section's Pareto frontier, smallest first."""
    return Report([(h, pareto(rows)) for h, rows in report.sections], report.repeats,
                  report.environment)


def _headline_lines(h: Headline) -> list[str]:
    lines = [f"source: {h.source} ({h.source_bytes:,} bytes, {h.tensors} tensors, "
             f"network: {h.model})"]
    if h.neurons:
        lines.append(f"neurons: {h.neurons:,}; weights (biases included): {h.weights:,}; "
                     f"{h.weights_per_neuron:.2f} per neuron")
    else:
        lines.append(f"weights (biases included): {h.weights:,}")
    lines.append(f"accuracy on the 10,000 test images: {h.accuracy:.4f} "
                 f"(batched, {h.eval_seconds * 1000:.0f} ms)")
    verdict = "exact" if h.text_exact else (
        f"lossy: max abs error {h.text_max_abs_error:.3g}, max rel error "
        f"{h.text_max_rel_error:.3g}, max {h.text_max_ulp_error:.0f} ULP")
    lines.append(f"str(network) text dump: {h.text_dump_bytes:,} bytes, "
                 f"{h.text_chars_per_weight:.2f} characters per weight, "
                 f"{h.text_vs_source:.2f}x the source; read back: {verdict}; accuracy "
                 f"{h.text_accuracy:.4f}, {h.text_changed_predictions} predictions changed")
    lines.append(f"zipped ({h.zip_tool}, deflate): source {h.source_zipped_bytes:,} bytes, "
                 f"text dump {h.text_zipped_bytes:,} bytes")
    return lines


#: The columns of :data:`COLUMNS` that hold numbers (aligned right).
NUMERIC_COLUMNS = frozenset(range(2, len(COLUMNS))) - {6, 12}


def notes(report: Report) -> list[str]:
    """What the table's marks and columns mean, below the table."""
    out = []
    if any(not r.evaluated for _, rows in report.sections for r in rows):
        out.append("accuracy marked '=': a bit-exact round trip, whose predictions are the "
                   "source's (identical weights); the network was not run again")
    out.append(f"times: median of {report.repeats} runs; errors against the source values, "
               "ULPs in the source dtype; 'changed': predictions that differ from the source's; "
               "frontier '*': the smallest file at its accuracy (no row is as small or smaller "
               "and as accurate or more)")
    return out


def render_text(report: Report) -> str:
    """A readable terminal table per source."""
    from .cli._util import table

    parts = []
    for h, rows in report.sections:
        parts.append("\n".join(_headline_lines(h)))
        parts.append(table([_cells(r) for r in rows], COLUMNS, right=set(NUMERIC_COLUMNS)))
    parts += notes(report)
    return "\n\n".join(parts) + "\n"


def render_markdown(report: Report) -> str:
    """Markdown: the headline as a list, the rows as a table."""
    parts = []
    for h, rows in report.sections:
        parts.append("\n".join(f"- {line}" for line in _headline_lines(h)))
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def render_csv(report: Report) -> str:
    """One CSV row per measured row, with the source file as the first column."""
    import csv

    buf = io.StringIO()
    fields = ["source", *(f for f in Row.__dataclass_fields__ if f != "tensor_errors")]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for h, rows in report.sections:
        for r in rows:
            d = asdict(r)
            del d["tensor_errors"]  # a list per tensor: in --format json and html
            d["options"] = ";".join(f"{k}={v}" for k, v in r.options.items())
            writer.writerow({"source": h.source, **d})
    return buf.getvalue()


def render_json(report: Report) -> str:
    """The whole report as JSON."""
    import orjson

    return orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n"


def check_plot_available() -> None:
    """Raise MissingDependencyError (naming the extra) when matplotlib is missing."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        from .errors import MissingDependencyError

        raise MissingDependencyError("matplotlib", "plot", "--plot")


def plot(report: Report, path: str | os.PathLike[str]) -> None:
    """Size against error and against accuracy, one labelled point per row (matplotlib)."""
    check_plot_available()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(report.sections)
    fig, axes = plt.subplots(n, 2, figsize=(15, 6.5 * n), squeeze=False)
    for (h, rows), (ax_err, ax_acc) in zip(report.sections, axes, strict=True):
        floor = 1e-10
        for r in rows:
            err = max(r.max_rel_error, floor)
            color = "tab:green" if r.exact else "tab:red"
            ax_err.scatter(r.bytes, err, color=color)
            ax_err.annotate(r.label, (r.bytes, err), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
            ax_acc.scatter(r.bytes, r.accuracy, color=color)
            ax_acc.annotate(r.label, (r.bytes, r.accuracy), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
        front = pareto(rows)
        if front:
            xs = [r.bytes for r in front]
            ys = [r.accuracy for r in front]
            ax_acc.step(xs, ys, where="post", color="tab:blue", linewidth=1.2,
                        label="Pareto frontier: smallest file at each accuracy")
            ax_acc.scatter(xs, ys, s=90, facecolors="none", edgecolors="tab:blue", zorder=3)
            ax_acc.legend(loc="lower right", fontsize=8)
        text_err = max(h.text_max_rel_error, floor)
        ax_err.scatter(h.text_dump_bytes, text_err, color="tab:orange", marker="s")
        ax_err.annotate("str(network) text", (h.text_dump_bytes, text_err), fontsize=7)
        ax_acc.scatter(h.text_dump_bytes, h.text_accuracy, color="tab:orange", marker="s")
        ax_acc.annotate("str(network) text", (h.text_dump_bytes, h.text_accuracy), fontsize=7)
        name = Path(h.source).name
        ax_err.set(xscale="log", yscale="log", xlabel="file size (bytes)",
                   ylabel=f"max relative error (exact shown at {floor:g})",
                   title=f"{name}: size against precision lost")
        ax_acc.set(xscale="log", xlabel="file size (bytes)", ylabel="test accuracy",
                   title=f"{name}: size against accuracy kept")
        for ax in (ax_err, ax_acc):
            ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def iter_formats() -> Iterator[str]:
    """The output formats :func:`render` knows."""
    yield from ("text", "markdown", "json", "csv")


def render(report: Report, fmt: str, *, pareto_only: bool = False) -> str:
    """The report in *fmt* (``text``, ``markdown``, ``json`` or ``csv``); with
    *pareto_only*, only the rows on the frontier, smallest first."""
    if pareto_only:
        report = frontier_only(report)
    return {"text": render_text, "markdown": render_markdown, "json": render_json,
            "csv": render_csv}[fmt](report)
