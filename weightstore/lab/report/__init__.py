"""The storage report: for every format and option set, what storing the weights costs.

For each variant (a codec with options; :mod:`.variants`) the weights are written to a real
file and read back (:mod:`.measure`); a row records the file size, bytes per weight, size
relative to the source file and after zip (deflate), whether the round trip is bit-exact and,
where not, the largest absolute, relative and ULP error, the network's accuracy after the
round trip, how many of the 10,000 predictions changed, and the median write and read
times. Above the table stand the figures of the reader's notes on chapter 3 of the book,
measured afresh: neurons, weights, the ``str(network)`` text dump with its precision loss
(:mod:`.textdump`), and the zip sizes.

Besides the formats at their options, rows cover each precision option
(:mod:`weightstore.precision`: float16, bfloat16, int8/int4/int2 per column, 4 and 6
significant digits in JSON and CSV) and the ``weightstore shrink`` result. The Pareto
frontier (:func:`pareto`) is the smallest file at each accuracy: a row is on it when no
other row is as small or smaller with an accuracy as high or higher (and one of the two
strictly better), among the rows a user would accept: at most ``accept`` percentage points
(:data:`ACCEPT_POINTS`, 1 by default) below the source's accuracy. Each row also records the
peak memory of a load and whether ``weightstore.open`` reads one tensor lazily, and how fast
(:mod:`.measure`). :mod:`.render` writes the report as text, Markdown, CSV or JSON lines
while it is measured (a row as soon as it is measured), or as one JSON document;
:mod:`.html` writes it as one self-contained web page (chart, sortable table, per-tensor
error histograms: :attr:`Row.tensor_errors`); :mod:`.plot` draws it (the ``plot`` extra).

Nothing here is a stored figure: every number comes from files written in the run.
"""

from __future__ import annotations

from .html import render_html
from .measure import (
    ACCEPT_POINTS,
    ERROR_BIN_EDGES,
    MAX_SECONDS,
    Diff,
    Headline,
    OneTensor,
    Progress,
    Report,
    Row,
    Sink,
    TensorErrors,
    build_report,
    compare,
    load_peak_bytes,
    one_tensor_access,
    pareto,
    tensor_errors,
    zip_size,
)
from .plot import check_plot_available, plot
from .render import (
    COLUMNS,
    STREAMED_FORMATS,
    frontier_only,
    iter_formats,
    render,
    render_csv,
    render_json,
    render_jsonl,
    render_markdown,
    render_text,
    replay,
    writer,
)
from .textdump import parse_text_dump, text_dump
from .variants import SHRINK, Variant, default_variants, precision_variants

__all__ = [
    "Variant", "Row", "Headline", "Report", "Diff", "Progress", "SHRINK", "COLUMNS",
    "default_variants", "precision_variants", "build_report", "compare", "zip_size", "pareto",
    "text_dump", "parse_text_dump", "render", "render_text", "render_markdown", "render_json",
    "render_csv", "frontier_only", "iter_formats", "check_plot_available", "plot",
    "render_html", "TensorErrors", "tensor_errors", "ERROR_BIN_EDGES", "ACCEPT_POINTS",
    "MAX_SECONDS", "Sink",
    "load_peak_bytes", "one_tensor_access", "STREAMED_FORMATS", "render_jsonl", "writer",
    "replay", "OneTensor",
]
