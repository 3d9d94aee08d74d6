"""The storage report: for every format and option set, what storing the weights costs.

For each variant (a codec with options) the weights are written to a real file
and read back; a row records the file size, bytes per weight, size relative to
the source file and after zip (deflate), whether the round trip is bit-exact and,
where not, the largest absolute, relative and ULP error, the network's accuracy
after the round trip, how many of the 10,000 predictions changed, and the median
write and read times. Above the table stand the figures of the reader's notes
(``../shared/docs/notes-analysis.md``), measured afresh: neurons, weights, the
``str(network)`` text dump with its precision loss, and the zip sizes.

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
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import api, registry
from .evaluate import Evaluation, evaluate
from .model import Weights, arrays_identical

__all__ = ["Variant", "Row", "Headline", "Report", "default_variants", "build_report",
           "text_dump", "parse_text_dump", "compare", "zip_size"]

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Variant:
    """One way of storing the weights: a codec, its options, and the file ending."""

    label: str
    format: str
    extension: str
    options: dict[str, Any] = field(default_factory=dict)


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
) -> Report:
    """Measure every variant on every source file (see the module docstring)."""
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
            rows = []
            for variant in variants:
                step += 1
                if progress:
                    progress(step, steps, f"{src.name}: {variant.label}")
                rows.append(_measure(variant, weights, base, src, folder, scratch, repeats,
                                     data_dir))
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
             scratch: Path, repeats: int, data_dir: str | os.PathLike[str] | None) -> Row:
    slug = re.sub(r"[^a-z0-9]+", "-", variant.label.lower()).strip("-")
    path = folder / f"{src.stem}.{slug}{variant.extension}"
    write_ms, _ = _median_ms(
        lambda: api.save(weights, path, variant.format, **variant.options), repeats)
    read_ms, got = _median_ms(lambda: api.load(path), repeats)
    size = path.stat().st_size
    diff = compare(weights, got)
    result = evaluate(got, data_dir=data_dir, model=base.model)
    zipped, _ = zip_size(path.read_bytes(), path.name, scratch)
    return Row(
        label=variant.label, format=variant.format, options=dict(variant.options),
        file=str(path), bytes=size, bytes_per_weight=size / weights.total_values,
        vs_source=size / src.stat().st_size, zipped_bytes=zipped, exact=diff.exact,
        max_abs_error=diff.max_abs_error, max_rel_error=diff.max_rel_error,
        max_ulp_error=diff.max_ulp_error, accuracy=result.accuracy,
        changed_predictions=int((result.predictions != base.predictions).sum()),
        write_ms=write_ms, read_ms=read_ms,
    )


# --- rendering -----------------------------------------------------------------------

COLUMNS = ["format", "bytes", "B/weight", "vs src", "zipped", "exact", "max abs err",
           "max rel err", "max ULP", "accuracy", "changed", "write ms", "read ms"]


def _cells(r: Row) -> list[str]:
    def err(x: float) -> str:
        return "0" if r.exact else f"{x:.3g}"

    return [r.label, f"{r.bytes:,}", f"{r.bytes_per_weight:.2f}", f"{r.vs_source:.3f}x",
            f"{r.zipped_bytes:,}", "yes" if r.exact else "no", err(r.max_abs_error),
            err(r.max_rel_error), err(r.max_ulp_error), f"{r.accuracy:.4f}",
            str(r.changed_predictions), f"{r.write_ms:.1f}", f"{r.read_ms:.1f}"]


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


def render_text(report: Report) -> str:
    """A readable terminal table per source."""
    from .cli._util import table

    parts = []
    for h, rows in report.sections:
        parts.append("\n".join(_headline_lines(h)))
        parts.append(table([_cells(r) for r in rows], COLUMNS,
                           right=set(range(1, len(COLUMNS))) - {5}))
    parts.append(f"times: median of {report.repeats} runs; errors against the source values, "
                 "ULPs in the source dtype; 'changed': predictions that differ from the source's")
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
    fields = ["source", *Row.__dataclass_fields__]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for h, rows in report.sections:
        for r in rows:
            d = asdict(r)
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


def render(report: Report, fmt: str) -> str:
    """The report in *fmt* (``text``, ``markdown``, ``json`` or ``csv``)."""
    return {"text": render_text, "markdown": render_markdown, "json": render_json,
            "csv": render_csv}[fmt](report)
