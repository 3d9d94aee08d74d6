"""``weightstore report --format html``: the report as one self-contained web page.

The page is a renderer of the same :class:`~.measure.Report` as the text, markdown, JSON and
CSV outputs of :mod:`.render` (one measuring pass, several renderers): the headline lines and
every table cell are the text report's own strings (:func:`~.render.headline_lines`,
:func:`~.render.cells`). On top of them it draws, in the browser, an interactive
size-against-accuracy chart (log size axis, the Pareto frontier as steps, a tooltip per
point, one point per row), makes the table sortable by any column, and shows for each lossy
row a histogram of each tensor's absolute errors (:attr:`~.measure.Row.tensor_errors`).

Everything is inline: the styles and script (``assets/report.css`` and ``assets/report.js``
beside this module) and the report's data (a ``<script type="application/json">`` block),
so the file works from ``file://`` with no network. Nothing the page shows comes from a
source other than the report object.
"""

from __future__ import annotations

import html
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from .measure import ERROR_BIN_EDGES, Headline, Report, Row
from .render import (
    COLUMNS,
    NUMERIC_COLUMNS,
    cells,
    frontier_title,
    headline_lines,
    notes,
    skipped_lines,
)

__all__ = ["render_html", "SORT_FIELDS", "ZOOM_POINTS"]

#: The :class:`Row` field each column of :data:`COLUMNS` sorts by.
SORT_FIELDS: tuple[str, ...] = (
    "label", "precision", "bytes", "bytes_per_weight", "vs_source", "zipped_bytes", "exact",
    "max_abs_error", "max_rel_error", "max_ulp_error", "rms_error", "cosine", "accuracy",
    "changed_predictions",
    "pareto", "write_ms", "read_ms", "peak_bytes", "lazy", "one_tensor_bytes_read",
    "one_tensor_ms")
#: The chart's accuracy axis starts zoomed on accuracies at most this far below the source's
#: (rows further below sit on a band at the bottom; a checkbox shows the full range).
ZOOM_POINTS = 0.05
_BOOL_COLUMNS = frozenset(i for i, f in enumerate(SORT_FIELDS) if f in ("exact", "pareto", "lazy"))


def _asset(name: str) -> str:
    return (resources.files(__package__) / "assets" / name).read_text(encoding="utf-8")


def _inline_json(data: Any) -> str:
    """JSON safe inside a <script> element: ``</`` cannot close it."""
    return orjson.dumps(data).decode().replace("</", "<\\/")


def _sort_value(row: Row, column: int) -> str:
    name = SORT_FIELDS[column]
    value = getattr(row, name)
    if name in ("max_abs_error", "max_rel_error", "max_ulp_error") and row.exact:
        value = 0  # the table shows 0 for an exact row
    if isinstance(value, bool):
        return "1" if value else "0"
    return "" if value is None else str(value)


def _tiles(h: Headline) -> str:
    tiles = []
    if h.neurons:
        tiles.append((f"{h.neurons:,}", "neurons"))
    tiles.append((f"{h.weights:,}", "weights"))
    if h.weights_per_neuron:
        tiles.append((f"{h.weights_per_neuron:.2f}", "weights per neuron"))
    tiles += [
        (f"{h.accuracy:.4f}", "test accuracy"),
        (f"{h.source_bytes:,}", "bytes, source file"),
        (f"{h.text_dump_bytes:,}" if not h.text_skipped else "not measured",
         "bytes, str(network) text"),
        (f"{h.source_zipped_bytes:,}", f"bytes, source zipped ({h.zip_tool})"),
    ]
    return "".join(f'<div class="tile"><b>{html.escape(v)}</b><span>{html.escape(t)}</span></div>'
                   for v, t in tiles)


def _table(section: int, rows: list[Row]) -> str:
    head = []
    for i, name in enumerate(COLUMNS):
        cls = ' class="num"' if i in NUMERIC_COLUMNS else ""
        kind = ' data-kind="bool"' if i in _BOOL_COLUMNS else ""
        head.append(f'<th{cls}{kind} title="sort by {html.escape(name)}">{html.escape(name)}</th>')
    body = []
    for index, r in enumerate(rows):
        tds = []
        for i, text in enumerate(cells(r)):
            classes = ["num"] if i in NUMERIC_COLUMNS else []
            if SORT_FIELDS[i] == "exact" and not r.exact:
                classes.append("no")
            cls = f' class="{" ".join(classes)}"' if classes else ""
            tds.append(f'<td{cls} data-sort="{html.escape(_sort_value(r, i))}">'
                         f"{html.escape(text)}</td>")
        front = ' class="front"' if r.pareto else ""
        body.append(f'<tr{front} data-section="{section}" data-row="{index}">{"".join(tds)}</tr>')
    return (f'<div class="table-wrap"><table class="rows" data-section="{section}">'
            f'<thead><tr>{"".join(head)}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


def _section(index: int, h: Headline, rows: list[Row], footnotes: str) -> str:
    name = html.escape(Path(h.source).name)
    lines = "".join(f"<li>{html.escape(line)}</li>"
                    for line in [*headline_lines(h), *skipped_lines(h), frontier_title(h)])
    below = sum(r.accuracy < h.accuracy - ZOOM_POINTS for r in rows)
    zoom = (f'<label><input type="checkbox" class="full-range" data-section="{index}"> full '
            f"accuracy range ({below} row{'s' if below != 1 else ''} more than {ZOOM_POINTS:g} "
            "below the source sit on the band at the bottom)</label>") if below else (
            f'<input type="checkbox" class="full-range" data-section="{index}" hidden>')
    lossy = sum(not r.exact for r in rows)
    return f"""
<section class="source" id="source-{index}">
  <h2>{name}: {html.escape(h.model)}, {len(rows)} ways of storing it</h2>
  <div class="card">
    <div class="tiles">{_tiles(h)}</div>
    <ul class="headline">{lines}</ul>
  </div>
  <div class="card">
    <div class="chart-head"><h3>Size against accuracy: one point per row; hover for the
      figures, click to find the row</h3>{zoom}</div>
    <svg class="chart" data-section="{index}" role="img"
      aria-label="file size against accuracy, {len(rows)} points"></svg>
    <div class="legend"><span><i style="background:var(--exact)"></i>bit-exact round trip</span>
      <span><i style="background:var(--lossy)"></i>lossy (a precision option)</span>
      <span><i style="border:2px solid var(--front);background:none"></i>Pareto frontier:
        the smallest file at its accuracy (blue steps)</span>
      <span><i style="background:#8a94a3;border-radius:0"></i>the notes' str(network) text
        dump, for reference</span></div>
  </div>
  <div class="card">
    <h3>Every row (click a column to sort)</h3>
    {_table(index, rows)}
    <div class="notes">{footnotes}</div>
  </div>
  <div class="card">
    <h3>What the lossy options do to the weights: absolute error per tensor
      ({lossy} lossy row{'s' if lossy != 1 else ''}; share of each tensor's values per bin)</h3>
    <div class="hists" data-section="{index}"></div>
  </div>
</section>"""


def _data(report: Report) -> dict[str, Any]:
    sections = []
    for h, rows in report.sections:
        sections.append({
            "name": Path(h.source).name,
            "headline": asdict(h),
            "zoom_points": ZOOM_POINTS,
            "rows": [{**asdict(r), "cells": cells(r)} for r in rows],
        })
    return {"columns": COLUMNS, "error_bin_edges": list(ERROR_BIN_EDGES), "sections": sections}


def render_html(report: Report) -> str:
    """The whole report as one HTML page (see the module docstring)."""
    names = ", ".join(Path(h.source).name for h, _ in report.sections)
    nav = " ".join(f'<a href="#source-{i}">{html.escape(Path(h.source).name)}</a>'
                   for i, (h, _) in enumerate(report.sections)) if len(report.sections) > 1 else ""
    env = ", ".join(f"{k} {v}" for k, v in report.environment.items())
    foot = "".join(f"<p>{html.escape(n)}</p>" for n in notes(report))
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>weightstore report: {html.escape(names)}</title>
<style>
{_asset("report.css")}</style>
</head>
<body>
<header class="page">
  <h1>weightstore report: {html.escape(names)}</h1>
  <p>What each format and precision option costs in bytes and keeps in accuracy, every file
    written and read back in this run. {nav}</p>
</header>
{"".join(_section(i, h, rows, foot) for i, (h, rows) in enumerate(report.sections))}
<footer><p>measured with {html.escape(env)}</p></footer>
<div id="tooltip" role="tooltip"></div>
<script type="application/json" id="report-data">{_inline_json(_data(report))}</script>
<script>
{_asset("report.js")}</script>
</body>
</html>
"""
