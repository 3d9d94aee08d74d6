"""The report's per-tensor error histograms and its HTML rendering (the page in a browser:
tests/test_browser.py)."""

from __future__ import annotations

import contextlib
import html.parser
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

import weightstore as ws
from weightstore import Weights
from weightstore.cli.main import main
from weightstore.lab import report as rep
from weightstore.lab.report import measure
from weightstore.lab.report.html import SORT_FIELDS, render_html
from weightstore.lab.report.render import cells, headline_lines, stream_cells

#: Few variants, of each kind the page draws: exact, lossy on the frontier, lossy far below.
VARIANTS = [rep.Variant("npz", "npz", ".npz"),
            rep.Variant("json", "json", ".json"),
            rep.Variant("int8", "npz", ".npz", {}, {"quantize": "8/per-column"}),
            rep.Variant("int2 zstd", "zstd", ".npz.zst", {"level": 3}, {"quantize": "2"})]


@pytest.fixture(scope="module")
def small_report(sample_weight_path: Path, data_dir: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> rep.Report:
    return rep.build_report([sample_weight_path], variants=VARIANTS, repeats=1, data_dir=data_dir,
                            keep_dir=tmp_path_factory.mktemp("small-report"))


def test_tensor_errors_bins_every_value() -> None:
    edges = rep.ERROR_BIN_EDGES
    assert edges[0] == pytest.approx(1e-12) and edges[-1] == 1.0 and len(edges) == 25
    src = Weights({"a": np.array([1.0, 2.0, 3.0, 4.0, np.nan, 6.0], np.float32),
                   "gone": np.zeros(3, np.float32)})
    got = Weights({"a": np.array([1.0, 2.0 + 2**-22, 3.5, 4.0, np.nan, np.nan], np.float32)})
    a, gone = rep.tensor_errors(src, got)
    assert (a.name, a.values, gone.values) == ("a", 6, 3)
    hist = np.array(a.histogram)
    assert len(hist) == len(edges) + 2 and hist.sum() == 6
    assert hist[0] == 3  # 1.0, 4.0 and NaN against NaN are exact
    # 2**-22 (2.4e-7) lies in [1e-7, 10**-6.5): bin 1 + the count of edges at or below it
    assert hist[1 + int(np.sum(np.array(edges) <= 2**-22))] == 1
    assert hist[1 + int(np.sum(np.array(edges) <= 0.5))] == 1  # 0.5 in [10**-0.5, 1)
    assert hist[-1] == 1  # NaN against a number: with the errors of 1 or more
    assert a.max_abs_error == np.inf
    assert gone.histogram[-1] == 3 and sum(gone.histogram) == 3


def test_lossy_rows_carry_per_tensor_histograms(small_report: rep.Report,
                                                sample_weight_path: Path) -> None:
    source = ws.load(sample_weight_path)
    (_, rows), = small_report.sections
    for row in rows:
        if row.exact:
            assert row.tensor_errors == []
            continue
        assert [t.name for t in row.tensor_errors] == list(source)
        got = ws.load(row.file)
        for t in row.tensor_errors:
            assert sum(t.histogram) == t.values == source[t.name].size
            err = np.abs(source[t.name].astype(np.float64) - got[t.name].astype(np.float64))
            assert t.max_abs_error == float(err.max())
            assert t.histogram[0] == int((err == 0).sum())
        assert max(t.max_abs_error for t in row.tensor_errors) == row.max_abs_error
    # JSON keeps them; CSV (one line per row) leaves them out
    data = json.loads(rep.render(small_report, "json"))
    assert data["error_bin_edges"] == list(rep.ERROR_BIN_EDGES)
    assert any(r["tensor_errors"] for r in data["sections"][0]["rows"])
    assert "tensor_errors" not in rep.render(small_report, "csv").splitlines()[0]


class _Cells(html.parser.HTMLParser):
    """The text of each <td>/<th> per table row, of each <li>, and every src/href."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.items: list[str] = []
        self.links: list[str] = []
        self._cell: list[str] | None = None
        self._item: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [v or "" for k, v in attrs if k in ("src", "href")]
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "li":
            self._item = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "li" and self._item is not None:
            self.items.append("".join(self._item))
            self._item = None

    def handle_data(self, data: str) -> None:
        for part in (self._cell, self._item):
            if part is not None:
                part.append(data)


def test_html_shows_the_text_reports_figures(small_report: rep.Report) -> None:
    page = render_html(small_report)
    parser = _Cells()
    parser.feed(page)
    (headline, rows), = small_report.sections
    header, *body = parser.rows
    assert header == rep.COLUMNS
    assert body == [cells(r) for r in rows]  # the text report's own strings
    text = rep.render(small_report, "text")
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if set(line) == {"-", " "}) + 1
    streamed = [stream_cells(r) for r in rows]  # the same cells but the frontier mark
    frontier = rep.COLUMNS.index("frontier")
    assert [b[:frontier] + b[frontier + 1:] for b in body] == streamed
    for line, row in zip(lines[start:start + len(body)], streamed, strict=True):  # the table
        assert " ".join(line.split()) == " ".join(" ".join(row).split())
    for line in headline_lines(headline):
        assert line in parser.items and line in text
    # self-contained: nothing to fetch (anchors within the page only)
    assert all(link.startswith("#") for link in parser.links), parser.links
    assert "<link" not in page and not re.search(r"""(src|href)=["']?(https?:|//)""", page)
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)'
                                r"</script>", page, re.S).group(1))
    assert [r["label"] for r in data["sections"][0]["rows"]] == [r.label for r in rows]


def test_html_sort_fields_name_row_fields() -> None:
    assert len(SORT_FIELDS) == len(rep.COLUMNS)
    assert set(SORT_FIELDS) <= set(rep.Row.__dataclass_fields__)


def test_html_escapes_what_it_shows(small_report: rep.Report) -> None:
    h, rows = small_report.sections[0]
    evil = rep.Report([(h, [rep.Row(**{**rows[0].__dict__, "label": "</script><b>x"})])],
                      small_report.repeats, small_report.environment)
    page = render_html(evil)
    assert "</script><b>x" not in page and "&lt;/script&gt;&lt;b&gt;x" in page


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_cli_writes_the_html_page(tmp_path: Path, sample_weight_path: Path, data_dir: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(measure, "default_variants", lambda: VARIANTS[:3])
    common = ["--repeats", "1", "--data-dir", str(data_dir), "-q"]
    code, out, err = _cli(["report", "--format", "html", str(sample_weight_path),
                           str(tmp_path / "r.html"), *common])
    assert code == 0 and out == "" and "r.html" in err
    page = (tmp_path / "r.html").read_text()
    assert page.startswith("<!doctype html>") and page.count('data-section="0" data-row=') == 3
    code, out, err = _cli(["report", "--format", "html", "-o", str(tmp_path / "d.html"),
                           *common])  # the reference file by default
    assert code == 0 and "sample_weight.pkl" in (tmp_path / "d.html").read_text()
    code, out, err = _cli(["report", "--format", "markdown", "-o", str(tmp_path / "r.md"),
                           *common])
    assert code == 0 and out == "" and (tmp_path / "r.md").read_text().startswith("- source:")


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "html"], "--format html: expected an output file"),
    (["--format", "html", "-o", "/no/such/folder/r.html"], "destination folder"),
])
def test_cli_html_needs_a_writable_output(args: list[str], message: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rep, "build_report", lambda *a, **k: pytest.fail("measured first"))
    code, _, err = _cli(["report", *args, "-q"])
    assert code != 0 and message in err
