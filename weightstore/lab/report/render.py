"""The report as text (a terminal table), Markdown, CSV, JSON lines or one JSON document.

Every format is a :class:`~.measure.Sink`: :func:`writer` gives one writing to a stream, and
:func:`build_report` feeds it while measuring, so the **streamed** formats (``text``,
``markdown``, ``csv``, ``jsonl``) print each row as soon as it is measured and flush. The
frontier is known only when a section's last row is in, so it comes after the section's
rows: a second table in text and Markdown, a ``section_end`` record in JSON lines; the CSV
has no frontier column (use ``--pareto``, or JSON lines). ``json`` (one document) and
``--pareto`` (the frontier rows only) need the whole set and write at the end.
:func:`render` replays a measured :class:`~.measure.Report` through the same writers.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict
from typing import Any, TextIO

import orjson

from ...display import markdown_line, table, table_line
from .measure import ACCEPT_POINTS, Headline, Report, Row

__all__ = ["COLUMNS", "NUMERIC_COLUMNS", "STREAM_COLUMNS", "STREAMED_FORMATS", "FORMATS",
           "render", "render_text", "render_markdown", "render_json", "render_csv",
           "render_jsonl", "frontier_only", "frontier_rows", "iter_formats", "notes", "cells",
           "stream_cells", "headline_lines", "frontier_title", "skipped_lines", "writer",
           "replay", "CSV_FIELDS"]


COLUMNS = ["format", "precision", "bytes", "B/weight", "vs src", "zipped", "exact",
           "max abs err", "max rel err", "max ULP", "RMS err", "cosine", "accuracy", "changed",
           "frontier", "write ms", "read ms", "peak KiB", "lazy", "1-tensor read", "1-tensor ms"]
#: The columns of :data:`COLUMNS` that hold numbers (aligned right).
NUMERIC_COLUMNS = frozenset(range(2, len(COLUMNS))) - {
    COLUMNS.index(c) for c in ("exact", "frontier", "lazy")}
_FRONTIER = COLUMNS.index("frontier")
#: The columns of a table printed while measuring: the frontier is known only at the end.
STREAM_COLUMNS = [c for c in COLUMNS if c != "frontier"]
_STREAM_NUMERIC = frozenset(i - (i > _FRONTIER) for i in NUMERIC_COLUMNS)
#: Widths of the streamed columns that hold numbers: room for the largest usual value
#: (a wider one pushes the rest of its line along).
_STREAM_WIDTHS = {"bytes": 11, "B/weight": 6, "vs src": 7, "zipped": 11, "max abs err": 9,
                  "max rel err": 9, "max ULP": 8, "RMS err": 9, "cosine": 11, "accuracy": 7,
                  "changed": 5, "write ms": 8, "read ms": 8, "peak KiB": 9, "1-tensor read": 6,
                  "1-tensor ms": 8}
#: Formats written row by row while measuring; the others are written at the end.
STREAMED_FORMATS = ("text", "markdown", "csv", "jsonl")
FORMATS = (*STREAMED_FORMATS, "json")
#: The CSV's columns: the source file, then the row's fields (not the per-tensor error
#: histograms, and not the frontier flag, unknown while rows are streamed).
CSV_FIELDS = ["source", *(f for f in Row.__dataclass_fields__
                          if f not in ("tensor_errors", "pareto"))]


def cells(r: Row) -> list[str]:
    """The table cells of row *r* under :data:`COLUMNS`, as every renderer shows them."""
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
            f"{r.write_ms:.1f}", f"{r.read_ms:.1f}", f"{r.peak_bytes / 1024:,.0f}",
            {True: "yes", False: "no", None: "?"}[r.lazy],
            "?" if r.one_tensor_bytes_read is None else
            f"{100 * r.one_tensor_bytes_read / r.bytes:.1f}%" if r.bytes else "-",
            f"{r.one_tensor_ms:.1f}"]


def stream_cells(r: Row) -> list[str]:
    """The cells of row *r* under :data:`STREAM_COLUMNS` (no frontier mark)."""
    c = cells(r)
    return c[:_FRONTIER] + c[_FRONTIER + 1:]


def frontier_rows(rows: list[Row]) -> list[Row]:
    """The rows flagged on the frontier, smallest first."""
    return sorted((r for r in rows if r.pareto), key=lambda r: (r.bytes, -r.accuracy))


def frontier_only(report: Report) -> Report:
    """*report* with only the rows on each section's frontier, smallest first."""
    return Report([(h, frontier_rows(rows)) for h, rows in report.sections], report.repeats,
                  report.environment, report.max_seconds)


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
    if h.text_skipped:
        lines.append(f"str(network) text dump: not measured ({h.text_skipped})")
        lines.append(f"zipped ({h.zip_tool}, deflate): source {h.source_zipped_bytes:,} bytes")
        return lines
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
    return lines


def skipped_lines(h: Headline) -> list[str]:
    """The rows that could not be measured, each with why (known at the section's end)."""
    return [f"skipped {reason}" for reason in h.skipped]


def _points(x: float) -> str:
    return f"{x:g} percentage point{'' if x == 1 else 's'}"


def frontier_title(h: Headline) -> str:
    """The line above a section's frontier rows: what they are and which rows count."""
    if h.not_evaluated:
        return "frontier: none (accuracy not measured)"
    return (f"frontier: the smallest file at each accuracy among the rows a user would "
            f"accept, at most {_points(h.accept_points)} below the source's "
            f"{h.accuracy:.4f} (accuracy >= {h.min_accuracy:.4f}; --accept), smallest first")


def notes(report: Report) -> list[str]:
    """What the table's marks and columns mean, below the table."""
    out = []
    if any(not r.evaluated and not math.isnan(r.accuracy)
           for _, rows in report.sections for r in rows):
        out.append("accuracy marked '=': the row's loaded arrays are bit-identical to the "
                   "source's or to an earlier row's, whose predictions it takes (identical "
                   "weights give identical predictions); the network was not run again")
    accept = sorted({h.accept_points for h, _ in report.sections}) or [ACCEPT_POINTS]
    runs = ("one run" if report.repeats == 1 else
            f"median of {report.repeats} runs" if math.isinf(report.max_seconds) else
            f"median of up to {report.repeats} runs, fewer once they took "
            f"{report.max_seconds:g} s (a row's 'timed_runs' in csv/json)")
    out.append(f"times: {runs}; errors against the source values, "
               "ULPs in the source dtype; 'changed': predictions that differ from the source's")
    out.append("frontier (the table after each section's rows; '*' in the html table): the "
               "smallest file at its accuracy (no row is as small or smaller and as accurate "
               "or more) among the rows a user would accept, those at most "
               f"{' / '.join(_points(a) for a in accept)} below the source's accuracy "
               "(--accept): a smaller file that loses more is not on it")
    out.append("peak KiB: memory allocated during one load of the file (tracemalloc: numpy "
               "arrays and Python objects; not C libraries' own buffers nor memory maps); "
               "1-tensor read: bytes read to open the file with 'weightstore.open' and copy "
               "out its last tensor, against the file's size (counted by the kernel: "
               "/proc/self/io, '?' where not available); lazy: that is less than the whole "
               "file; 1-tensor ms: the time to do it (median)")
    return out


class _Writer:
    """A :class:`~.measure.Sink` writing to *out*, flushing after each piece."""

    def __init__(self, out: TextIO, *, pareto_only: bool = False) -> None:
        self.out = out
        self.pareto_only = pareto_only
        self.sections = 0

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def section(self, headline: Headline, expected: list[tuple[str, str]]) -> None:
        self.sections += 1

    def row(self, headline: Headline, row: Row) -> None:
        pass

    def end_section(self, headline: Headline, rows: list[Row]) -> None:
        pass

    def end(self, report: Report) -> None:
        pass


class _TextWriter(_Writer):
    """Headline lines, then a table whose lines appear as rows are measured, then the
    skipped rows and the frontier as a table; the notes at the end."""

    def section(self, headline: Headline, expected: list[tuple[str, str]]) -> None:
        super().section(headline, expected)
        self.write(("\n" if self.sections > 1 else "") + "\n".join(headline_lines(headline))
                   + "\n\n")
        self.widths = [max(len(c), _STREAM_WIDTHS.get(c, 0)) for c in STREAM_COLUMNS]
        for label, precision in expected:  # the rows to come: their label and precision
            self.widths[0] = max(self.widths[0], len(label))
            self.widths[1] = max(self.widths[1], len(precision))
        if not self.pareto_only:
            self.write(table_line(STREAM_COLUMNS, self.widths, _STREAM_NUMERIC) + "\n"
                       + table_line(["-" * w for w in self.widths], self.widths,
                                    _STREAM_NUMERIC) + "\n")

    def row(self, headline: Headline, row: Row) -> None:
        if not self.pareto_only:
            self.write(table_line(stream_cells(row), self.widths, _STREAM_NUMERIC) + "\n")

    def end_section(self, headline: Headline, rows: list[Row]) -> None:
        blocks = ["\n".join(skipped_lines(headline))] if headline.skipped else []
        front = frontier_rows(rows)
        blocks.append(frontier_title(headline) + ("\n" + table(
            [stream_cells(r) for r in front], STREAM_COLUMNS, right=set(_STREAM_NUMERIC))
            if front else ""))
        self.write(("" if self.pareto_only else "\n") + "\n\n".join(blocks) + "\n")

    def end(self, report: Report) -> None:
        self.write("\n" + "\n\n".join(notes(report)) + "\n")


class _MarkdownWriter(_Writer):
    """The headline as a list, the rows as a table (one line per row, as measured), the
    skipped rows and the frontier table below it, the notes at the end."""

    def section(self, headline: Headline, expected: list[tuple[str, str]]) -> None:
        super().section(headline, expected)
        self.write(("\n" if self.sections > 1 else "")
                   + "\n".join(f"- {line}" for line in headline_lines(headline)) + "\n\n")
        if not self.pareto_only:
            self.write(markdown_line(STREAM_COLUMNS) + "\n|" + "---|" * len(STREAM_COLUMNS)
                       + "\n")

    def row(self, headline: Headline, row: Row) -> None:
        if not self.pareto_only:
            self.write(markdown_line(stream_cells(row)) + "\n")

    def end_section(self, headline: Headline, rows: list[Row]) -> None:
        parts = [""] if not self.pareto_only else []
        if headline.skipped:
            parts += [*(f"- {line}" for line in skipped_lines(headline)), ""]
        parts.append(f"**{frontier_title(headline)}**")
        front = frontier_rows(rows)
        if front:
            parts += ["", markdown_line(STREAM_COLUMNS), "|" + "---|" * len(STREAM_COLUMNS),
                      *(markdown_line(stream_cells(r)) for r in front)]
        self.write("\n".join(parts) + "\n")

    def end(self, report: Report) -> None:
        self.write("\n" + "\n\n".join(notes(report)) + "\n")


class _CsvWriter(_Writer):
    """One CSV line per row as measured (:data:`CSV_FIELDS`); with *pareto_only*, the
    frontier rows at each section's end."""

    def __init__(self, out: TextIO, *, pareto_only: bool = False) -> None:
        super().__init__(out, pareto_only=pareto_only)
        self.buf = io.StringIO()
        self.csv = csv.DictWriter(self.buf, fieldnames=CSV_FIELDS, lineterminator="\n",
                                  extrasaction="ignore")
        self.csv.writeheader()
        self._flush()

    def _flush(self) -> None:
        self.write(self.buf.getvalue())
        self.buf.seek(0)
        self.buf.truncate()

    def _put(self, headline: Headline, row: Row) -> None:
        d = asdict(row)
        d["options"] = ";".join(f"{k}={v}" for k, v in row.options.items())
        self.csv.writerow({"source": headline.source, **d})
        self._flush()

    def row(self, headline: Headline, row: Row) -> None:
        if not self.pareto_only:
            self._put(headline, row)

    def end_section(self, headline: Headline, rows: list[Row]) -> None:
        if self.pareto_only:
            for r in frontier_rows(rows):
                self._put(headline, r)


def _json_line(record: dict[str, Any]) -> str:
    return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY).decode() + "\n"


class _JsonLinesWriter(_Writer):
    """One JSON object per line: ``{"type": "section", "headline": ...}``, a ``"row"``
    record per row as measured (the row's fields and ``source``), ``"section_end"`` (the
    frontier's labels smallest first, its lowest accepted accuracy, the skipped rows) and
    ``"end"`` (repeats, environment, notes). NaN is written ``null``."""

    def section(self, headline: Headline, expected: list[tuple[str, str]]) -> None:
        super().section(headline, expected)
        d = asdict(headline)
        del d["skipped"]  # known at the section's end
        self.write(_json_line({"type": "section", "headline": d}))

    def _put(self, headline: Headline, row: Row) -> None:
        d = asdict(row)
        del d["pareto"]
        self.write(_json_line({"type": "row", "source": headline.source, **d}))

    def row(self, headline: Headline, row: Row) -> None:
        if not self.pareto_only:
            self._put(headline, row)

    def end_section(self, headline: Headline, rows: list[Row]) -> None:
        front = frontier_rows(rows)
        if self.pareto_only:
            for r in front:
                self._put(headline, r)
        self.write(_json_line({
            "type": "section_end", "source": headline.source,
            "frontier": [r.label for r in front],
            "accept_points": headline.accept_points,
            "min_accuracy": headline.min_accuracy, "skipped": headline.skipped}))

    def end(self, report: Report) -> None:
        self.write(_json_line({"type": "end", "repeats": report.repeats,
                               "environment": report.environment, "notes": notes(report)}))


class _JsonWriter(_Writer):
    """The whole report as one JSON document, written at the end."""

    def end(self, report: Report) -> None:
        self.write(render_json(frontier_only(report) if self.pareto_only else report))


_WRITERS: dict[str, type[_Writer]] = {
    "text": _TextWriter, "markdown": _MarkdownWriter, "csv": _CsvWriter,
    "jsonl": _JsonLinesWriter, "json": _JsonWriter}


def writer(fmt: str, out: TextIO, *, pareto_only: bool = False) -> _Writer:
    """A :class:`~.measure.Sink` writing the report in *fmt* to *out* as it is measured
    (see the module docstring for what each format writes when)."""
    return _WRITERS[fmt](out, pareto_only=pareto_only)


def replay(report: Report, sink: _Writer) -> None:
    for h, rows in report.sections:
        sink.section(h, [(r.label, r.precision) for r in rows])
        for r in rows:
            sink.row(h, r)
        sink.end_section(h, rows)
    sink.end(report)


def render(report: Report, fmt: str, *, pareto_only: bool = False) -> str:
    """The report in *fmt* (:data:`FORMATS`), exactly as :func:`writer` writes it while
    measuring; with *pareto_only*, only the rows on the frontier, smallest first."""
    out = io.StringIO()
    replay(report, writer(fmt, out, pareto_only=pareto_only))
    return out.getvalue()


def render_text(report: Report) -> str:
    """A readable terminal table per source."""
    return render(report, "text")


def render_markdown(report: Report) -> str:
    """Markdown: the headline as a list, the rows as a table, the notes below."""
    return render(report, "markdown")


def render_csv(report: Report) -> str:
    """One CSV row per measured row, with the source file as the first column."""
    return render(report, "csv")


def render_jsonl(report: Report) -> str:
    """JSON lines, as streamed (see :class:`_JsonLinesWriter`)."""
    return render(report, "jsonl")


def render_json(report: Report) -> str:
    """The whole report as JSON."""
    return orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n"


def iter_formats() -> tuple[str, ...]:
    """The output formats :func:`render` knows."""
    return FORMATS
