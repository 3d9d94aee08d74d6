"""The report as text (a terminal table), Markdown, JSON or CSV: :func:`render`."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from dataclasses import asdict

import orjson

from ...display import table
from .measure import Headline, Report, Row, pareto

__all__ = ["COLUMNS", "NUMERIC_COLUMNS", "render", "render_text", "render_markdown",
           "render_json", "render_csv", "frontier_only", "iter_formats", "notes", "cells",
           "headline_lines"]


COLUMNS = ["format", "precision", "bytes", "B/weight", "vs src", "zipped", "exact",
           "max abs err", "max rel err", "max ULP", "RMS err", "cosine", "accuracy", "changed",
           "frontier", "write ms", "read ms"]
#: The columns of :data:`COLUMNS` that hold numbers (aligned right).
NUMERIC_COLUMNS = frozenset(range(2, len(COLUMNS))) - {6, 14}


def cells(r: Row) -> list[str]:
    """The table cells of row *r*, as every renderer shows them."""
    def err(x: float) -> str:
        return "0" if r.exact else f"{x:.3g}"

    measured = not math.isnan(r.accuracy)
    return [r.label, r.precision, f"{r.bytes:,}", f"{r.bytes_per_weight:.2f}",
            f"{r.vs_source:.3f}x", f"{r.zipped_bytes:,}", "yes" if r.exact else "no",
            err(r.max_abs_error), err(r.max_rel_error), err(r.max_ulp_error),
            err(r.rms_error), "1" if r.exact else f"{r.cosine:.9f}",
            (f"{r.accuracy:.4f}" + ("" if r.evaluated else "=")) if measured else "-",
            str(r.changed_predictions) if measured else "-",
            "*" if r.pareto else "",
            f"{r.write_ms:.1f}", f"{r.read_ms:.1f}"]


def frontier_only(report: Report) -> Report:
    """*report* with only the rows on each section's Pareto frontier, smallest first."""
    return Report([(h, pareto(rows)) for h, rows in report.sections], report.repeats,
                  report.environment)


def headline_lines(h: Headline) -> list[str]:
    """The notes' figures above a section's table, one line each."""
    lines = [f"source: {h.source} ({h.source_bytes:,} bytes, {h.tensors} tensors, "
             f"network: {h.model})"]
    if h.neurons:
        lines.append(f"neurons: {h.neurons:,}; weights (biases included): {h.weights:,}; "
                     f"{h.weights_per_neuron:.2f} per neuron")
    else:
        lines.append(f"weights (biases included): {h.weights:,}")
    if h.not_evaluated:
        lines.append(f"accuracy not measured: {h.not_evaluated}; sizes, precision lost and "
                     "times are")
    else:
        lines.append(f"accuracy on the 10,000 test images: {h.accuracy:.4f} "
                     f"(batched, {h.eval_seconds * 1000:.0f} ms)")
    verdict = "exact" if h.text_exact else (
        f"lossy: max abs error {h.text_max_abs_error:.3g}, max rel error "
        f"{h.text_max_rel_error:.3g}, max {h.text_max_ulp_error:.0f} ULP")
    kept = "" if h.not_evaluated else (f"; accuracy {h.text_accuracy:.4f}, "
                                       f"{h.text_changed_predictions} predictions changed")
    lines.append(f"str(network) text dump: {h.text_dump_bytes:,} bytes, "
                 f"{h.text_chars_per_weight:.2f} characters per weight, "
                 f"{h.text_vs_source:.2f}x the source; read back: {verdict}{kept}")
    lines.append(f"zipped ({h.zip_tool}, deflate): source {h.source_zipped_bytes:,} bytes, "
                 f"text dump {h.text_zipped_bytes:,} bytes")
    lines += [f"skipped {reason}" for reason in h.skipped]
    return lines


def notes(report: Report) -> list[str]:
    """What the table's marks and columns mean, below the table."""
    out = []
    if any(not r.evaluated and not math.isnan(r.accuracy)
           for _, rows in report.sections for r in rows):
        out.append("accuracy marked '=': a bit-exact round trip, whose predictions are the "
                   "source's (identical weights); the network was not run again")
    out.append(f"times: median of {report.repeats} runs; errors against the source values, "
               "ULPs in the source dtype; 'changed': predictions that differ from the source's; "
               "frontier '*': the smallest file at its accuracy (no row is as small or smaller "
               "and as accurate or more)")
    return out


def render_text(report: Report) -> str:
    """A readable terminal table per source."""
    parts = []
    for h, rows in report.sections:
        parts.append("\n".join(headline_lines(h)))
        parts.append(table([cells(r) for r in rows], COLUMNS, right=set(NUMERIC_COLUMNS)))
    parts += notes(report)
    return "\n\n".join(parts) + "\n"


def render_markdown(report: Report) -> str:
    """Markdown: the headline as a list, the rows as a table."""
    parts = []
    for h, rows in report.sections:
        parts.append("\n".join(f"- {line}" for line in headline_lines(h)))
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def render_csv(report: Report) -> str:
    """One CSV row per measured row, with the source file as the first column."""
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
    return orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n"


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
