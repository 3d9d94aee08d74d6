"""Pages in a real browser: the examples/web/ demo, driven by Playwright in headless Chromium.

Marker ``browser`` (``pytest -m browser`` runs only these, ``-m "not browser"`` leaves them
out). They need Debian's ``chromium`` (``/usr/bin/chromium``, or $WEIGHTSTORE_CHROMIUM) and
the ``playwright`` package (the ``test`` extra); Playwright's own browser downloads are never
used. Where either is missing the tests are skipped, saying which; under CI (``CI`` set in
the environment, as ``.ci/run`` runs) they fail instead, since CI installs both.

One Chromium serves the whole session; each test opens its own page at 1280x800. The page,
the MNIST test set and the weight files are served by a local ``http.server`` on 127.0.0.1
from a temporary folder of links: nothing is fetched from the network, and the browser is
started with its background networking off. Screenshots go to each test's tmp_path.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import weightstore
from net.mlp import predict
from net.mnist import load_test_set
from weightstore.lab import report as rep
from weightstore.lab.report.html import render_html
from weightstore.lab.report.render import headline_lines

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
WEB = REPO / "examples" / "web"
#: The book's accuracy with sample_weight.pkl on the 10,000 MNIST test images.
BOOK_ACCURACY = 0.9352
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 800}
#: Milliseconds to wait for the bulk evaluation (about a second on a free core).
EVALUATION_TIMEOUT = 180_000


def chromium_path() -> str | None:
    """Debian's Chromium: $WEIGHTSTORE_CHROMIUM, else ``chromium`` on PATH, else None."""
    env = os.environ.get("WEIGHTSTORE_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    return shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)


def _missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if chromium_path() is None:
        return ("Chromium is not installed: apt-get install chromium (/usr/bin/chromium), "
                "or set WEIGHTSTORE_CHROMIUM to a Chromium binary")
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run under CI: {missing}")
        pytest.skip(f"browser tests skipped: {missing}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=chromium_path(), headless=True,
                                      args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        pass


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory, data_dir: Path,
         sample_weight_path: Path) -> Iterator[str]:
    """A local server's root URL: web/ (examples/web), mnist/ (the test set), weights/."""
    root = tmp_path_factory.mktemp("site")
    (root / "web").symlink_to(WEB, target_is_directory=True)
    (root / "mnist").symlink_to(data_dir / "mnist", target_is_directory=True)
    weights = root / "weights"
    weights.mkdir()
    book = weightstore.load(sample_weight_path)
    weightstore.save(book, weights / "book.json")
    weightstore.save(book, weights / "book.safetensors")
    damaged = bytearray((weights / "book.safetensors").read_bytes())
    damaged[-100] ^= 0x01  # one bit of the data buffer: the page must name the tensor
    (weights / "damaged.safetensors").write_bytes(bytes(damaged))
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class Page:
    """A browser page with its console errors and uncaught exceptions collected."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        self.log: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def _console(self, message: Any) -> None:
        (self.errors if message.type == "error" else self.log).append(message.text)


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)
    try:
        yield Page(context.new_page())
    finally:
        context.close()


def _open_demo(page: Page, site: str, weights: str) -> None:
    page.page.goto(f"{site}web/index.html?weights=../weights/{weights}&mnist=../mnist/")
    page.page.wait_for_selector("body[data-weights]:not([data-weights=''])", timeout=30_000)
    assert page.page.text_content("#error") == ""


def _evaluate(page: Page) -> tuple[str, int, int]:
    page.page.click("#evaluate")
    page.page.wait_for_selector("#accuracy[data-count='10000']", timeout=EVALUATION_TIMEOUT)
    accuracy = page.page.locator("#accuracy")
    return (accuracy.text_content() or "", int(accuracy.get_attribute("data-correct") or -1),
            int(accuracy.get_attribute("data-count") or -1))


@functools.cache
def _python_predictions(data_dir: Path, weights_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """numpy's class scores and the labels: the figures the page must agree with."""
    x, labels = load_test_set(data_dir, download=False)
    return predict(dict(weightstore.load(weights_path)), x), labels


def test_demo_reaches_the_books_accuracy_from_json_and_safetensors(
        page: Page, site: str, data_dir: Path, sample_weight_path: Path, tmp_path: Path) -> None:
    scores, labels = _python_predictions(data_dir, sample_weight_path)
    expected = int((scores.argmax(axis=1) == labels).sum())
    assert expected / len(labels) == BOOK_ACCURACY  # numpy agrees with the book

    _open_demo(page, site, "book.json")
    assert "weightstore JSON" in page.page.text_content("#weights-status")
    assert "every checksum verified" in page.page.text_content("#weights-status")
    text, correct, count = _evaluate(page)
    assert (correct, count) == (expected, 10_000)
    assert text == f"accuracy {BOOK_ACCURACY:.4f} ({expected}/10000)"

    # the same page, a safetensors file now: fetch + DataView
    page.page.fill("#weights-url", "../weights/book.safetensors")
    page.page.click("#load")
    page.page.wait_for_selector("body[data-weights='safetensors']")
    assert "every checksum verified" in page.page.text_content("#weights-status")
    text, correct, count = _evaluate(page)
    assert (correct, count) == (expected, 10_000)
    assert text == f"accuracy {BOOK_ACCURACY:.4f} ({expected}/10000)"

    page.page.click("#mistakes figure")  # the first misclassified image, into the canvas
    page.page.wait_for_selector("#prediction:not([data-digit=''])")
    shot = tmp_path / "web-demo.png"
    page.page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    printed = [line for line in page.log if "accuracy" in line]
    (tmp_path / "browser-console.txt").write_text("\n".join(printed) + "\n")
    print("\n".join(printed), f"\nscreenshot: {shot}")
    assert len(printed) == 2
    assert page.errors == []


def test_demo_scores_match_numpy(page: Page, site: str, data_dir: Path,
                                 sample_weight_path: Path) -> None:
    scores, labels = _python_predictions(data_dir, sample_weight_path)
    wrong = int(np.argmax(scores.argmax(axis=1) != labels))  # the first misclassified image
    _open_demo(page, site, "book.safetensors")
    for index in (0, 1, wrong, 9999):
        page.page.fill("#test-index", str(index))
        page.page.click("#show-test")
        page.page.wait_for_selector(f"#draw-status:has-text('test image #{index},')")
        got = np.array(json.loads(page.page.get_attribute("#probs", "data-values") or "[]"))
        assert got.shape == (10,)
        assert np.max(np.abs(got - scores[index])) <= 1e-6, index
        assert int(page.page.get_attribute("#prediction", "data-digit") or -1) == \
            int(scores[index].argmax())
    assert page.errors == []


def test_demo_classifies_a_drawn_digit(page: Page, site: str, tmp_path: Path) -> None:
    _open_demo(page, site, "book.json")
    box = page.page.locator("#canvas").bounding_box()
    assert box is not None
    mouse = page.page.mouse
    # a "7": a bar along the top, then a stroke down to the lower left
    points = [(80, 70), (200, 70), (185, 110), (160, 160), (135, 220)]
    mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
    mouse.down()
    for x, y in points[1:]:
        mouse.move(box["x"] + x, box["y"] + y, steps=8)
    mouse.up()
    page.page.wait_for_selector("#prediction:not([data-digit=''])")
    # the network's input: the ink scaled into MNIST's 20x20 box, centred
    box28 = page.page.evaluate("""() => {
        const c = document.getElementById('preview').getContext('2d');
        const d = c.getImageData(0, 0, 28, 28).data;
        let x0 = 28, y0 = 28, x1 = -1, y1 = -1;
        for (let i = 0; i < 784; i++) if (d[i * 4] > 0) {
          const x = i % 28, y = Math.floor(i / 28);
          x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
        }
        return [x1 - x0 + 1, y1 - y0 + 1];
    }""")
    assert max(box28) in (20, 21), box28  # 20 pixels, and one more where a shift splits one
    page.page.screenshot(path=str(tmp_path / "web-drawn-digit.png"))
    assert page.page.get_attribute("#prediction", "data-digit") == "7"
    assert page.errors == []


def test_demo_names_a_damaged_file(page: Page, site: str) -> None:
    page.page.goto(f"{site}web/index.html?weights=../weights/damaged.safetensors")
    page.page.wait_for_selector("#error:not(:empty)")
    message = page.page.text_content("#error") or ""
    assert message.startswith("../weights/damaged.safetensors: tensor ")
    assert "crc32: expected" in message and "(the file is damaged), found" in message
    page.page.fill("#weights-url", "../weights/missing.json")
    page.page.click("#load")
    page.page.wait_for_selector("#error:has-text('HTTP 404')")
    assert page.page.get_attribute("body", "data-weights") == ""


# --- weightstore report --format html -----------------------------------------------------

def test_html_report_renders_every_row_and_its_chart(page: Page, tmp_path: Path,
                                                     reference_report_run: Any) -> None:
    # the reference report (measured once per session), rendered twice: text and html
    report = reference_report_run[2]
    (headline, rows), = report.sections
    text = rep.render(report, "text")
    out = tmp_path / "report.html"
    out.write_text(render_html(report), encoding="utf-8")

    page.page.goto(out.as_uri())  # from file://: everything is inline
    page.page.wait_for_selector("body[data-ready='yes']")
    assert page.errors == []
    points = page.page.locator("svg.chart .point")
    assert points.count() == len(rows) == page.page.locator("table.rows tbody tr").count()
    # every line of the text report's table, cell for cell
    table = page.page.eval_on_selector_all(
        "table.rows tbody tr", "trs => trs.map(tr => [...tr.cells].map(td => td.textContent))")
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if set(line) == {"-", " "}) + 1
    frontier = rep.COLUMNS.index("frontier")  # the text table is printed before it is known
    for line, cells in zip(lines[start:start + len(rows)], table, strict=True):
        cells = cells[:frontier] + cells[frontier + 1:]
        assert " ".join(line.split()) == " ".join(" ".join(cells).split())
    shown = page.page.text_content("ul.headline") or ""
    assert all(line in shown for line in headline_lines(headline))
    # the frontier drawn through the frontier rows; a histogram card per lossy row
    assert page.page.locator("svg.chart .ring").count() == sum(r.pareto for r in rows)
    assert page.page.locator("svg.chart path.frontier").count() == 1
    assert page.page.locator(".hist").count() == sum(not r.exact for r in rows)

    shot = tmp_path / "report-1280x800.png"
    page.page.screenshot(path=str(shot))
    # a tooltip per point: the one of the smallest file names it
    smallest = min(range(len(rows)), key=lambda i: rows[i].bytes)
    page.page.hover(f"svg.chart .point[data-row='{smallest}']", force=True)
    assert rows[smallest].label in (page.page.text_content("#tooltip") or "")
    assert page.page.is_visible("#tooltip")
    # sortable by any column: bytes, ascending then descending
    header = page.page.locator("table.rows th", has_text="bytes").first
    for clicks, expected in ((1, sorted(r.bytes for r in rows)),
                             (2, sorted((r.bytes for r in rows), reverse=True))):
        header.click()
        got = page.page.eval_on_selector_all(
            "table.rows tbody tr", "trs => trs.map(tr => Number(tr.cells[2].dataset.sort))")
        assert got == expected, clicks
    page.page.locator(".hists").scroll_into_view_if_needed()
    page.page.screenshot(path=str(tmp_path / "report-histograms.png"))
    page.page.screenshot(path=str(tmp_path / "report-full.png"), full_page=True)
    assert page.errors == []
    print(f"\nscreenshots: {shot} and beside it")
