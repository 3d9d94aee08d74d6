"""The report's numbers, checked against the files it wrote and computed independently."""

from __future__ import annotations

import csv
import io
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

import weightstore as ws
from weightstore.cli.main import main
from weightstore.lab import report as rep
from weightstore.model import arrays_identical


@pytest.fixture(scope="module")
def report_run(reference_report_run) -> tuple[dict, Path, rep.Report, Path]:
    """The full report on the book's weights (conftest's ``reference_report_run``)."""
    return reference_report_run


@pytest.fixture(scope="module")
def report_json(report_run) -> tuple[dict, Path]:
    doc, files, _, _ = report_run
    return doc, files


@pytest.fixture(scope="module")
def book_report(report_run) -> rep.Report:
    return report_run[2]


def _independent_accuracy(weights: dict, data_dir: Path) -> tuple[float, np.ndarray]:
    """The book's forward pass written out here, on the test set read here."""
    import gzip

    with gzip.open(data_dir / "mnist" / "t10k-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255
    with gzip.open(data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz") as f:
        t = np.frombuffer(f.read(), np.uint8, offset=8)

    def sigmoid(a):
        return 1 / (1 + np.exp(-a))

    # bfloat16 widens exactly to float32
    weights = {k: (v.astype(np.float32) if v.dtype.name == "bfloat16" else v)
               for k, v in weights.items()}

    a1 = x @ weights["W1"] + weights["b1"]
    a2 = sigmoid(a1) @ weights["W2"] + weights["b2"]
    a3 = sigmoid(a2) @ weights["W3"] + weights["b3"]
    pred = np.argmax(a3, axis=1)  # softmax keeps the argmax
    return float((pred == t).mean()), pred


@pytest.mark.slow  # builds the module's report (with the shrink search) when run first
def test_every_codec_has_a_row_and_rows_match_the_files_written(
    report_json, sample_weight_path: Path, data_dir: Path
) -> None:
    doc, files = report_json
    (section,) = doc["sections"]
    rows = section["rows"]
    formats = {r["format"] for r in rows}
    # every codec but a one-tensor one (npy), which cannot hold the network, and the
    # read-only ones
    assert {c.name for c in ws.formats() if not c.single_tensor and c.writable} <= formats
    with open(sample_weight_path, "rb") as f:
        source = pickle.load(f)
    base_acc, base_pred = _independent_accuracy(source, data_dir)
    for row in rows:
        path = Path(row["file"])
        assert path.parent == files and path.is_file()
        assert row["bytes"] == path.stat().st_size
        assert row["bytes_per_weight"] == pytest.approx(path.stat().st_size / 45_360)
        assert row["vs_source"] == pytest.approx(path.stat().st_size / 181_853)
        got = ws.load(path)
        exact = all(arrays_identical(source[k], got[k]) for k in source)
        assert row["exact"] is exact
        acc, pred = _independent_accuracy(dict(got), data_dir)
        assert row["accuracy"] == pytest.approx(acc, abs=1e-12)
        assert row["changed_predictions"] == int((pred != base_pred).sum())
        if exact:
            assert row["max_abs_error"] == row["max_ulp_error"] == 0
            assert row["accuracy"] == base_acc == 0.9352
        assert row["write_ms"] > 0 and row["read_ms"] > 0
        assert row["zipped_bytes"] > 0


def test_headline_reproduces_the_notes(report_json, sample_weight_path: Path) -> None:
    doc, _ = report_json
    h = doc["sections"][0]["headline"]
    with open(sample_weight_path, "rb") as f:
        source = pickle.load(f)
    with np.printoptions(threshold=sys.maxsize):
        dump = str(source)  # what the notes did, computed here on its own
    assert h["text_dump_bytes"] == len(dump.encode()) == 895_218
    assert h["text_chars_per_weight"] == pytest.approx(895_218 / 45_360)
    assert round(h["text_vs_source"], 2) == 4.92
    assert (h["neurons"], h["weights"]) == (944, 45_360)
    assert round(h["weights_per_neuron"], 2) == 48.05
    assert h["accuracy"] == 0.9352 and h["source_bytes"] == 181_853
    # the text dump is lossy: numpy prints 8 digits after the point
    assert h["text_exact"] is False and 0 < h["text_max_abs_error"] < 1e-8


def test_text_dump_error_matches_an_independent_parse(sample_weight_path: Path) -> None:
    weights = ws.load(sample_weight_path)
    text = rep.text_dump(weights)
    back = rep.parse_text_dump(text, weights)
    # independent: numpy's own printing of each array, split on the separator
    for name, array in weights.items():
        with np.printoptions(threshold=sys.maxsize):
            printed = np.array2string(array, separator=",")
        tokens = printed.replace("[", "").replace("]", "").replace("\n", "").split(",")
        expected = np.array([float(t) for t in tokens]).astype(array.dtype).reshape(array.shape)
        assert np.array_equal(back[name], expected), name
    diff = rep.compare(weights, back)
    errors = [np.abs(weights[k].astype(np.float64) - back[k].astype(np.float64)).max()
              for k in weights]
    assert diff.max_abs_error == pytest.approx(max(errors))


def test_compare_counts_ulps_and_relative_error() -> None:
    a = ws.Weights({"x": np.array([1.0, -2.0, 0.0], np.float32)})
    b = ws.Weights({"x": np.array([np.nextafter(np.float32(1), np.float32(2)), -2.0, -0.0],
                                  np.float32)})
    d = rep.compare(a, b)
    assert not d.exact and d.max_ulp_error == 1
    assert d.max_abs_error == pytest.approx(2**-23) and d.max_rel_error == pytest.approx(2**-23)
    assert rep.compare(a, a).exact


@pytest.mark.parametrize("fmt", ["text", "markdown", "csv"])
def test_other_renderings_carry_every_row(fmt: str, book_report: rep.Report) -> None:
    (section,) = book_report.sections
    text = rep.render(book_report, fmt)
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert [r["label"] for r in rows] == [r.label for r in section[1]]
        assert [int(r["bytes"]) for r in rows] == [r.bytes for r in section[1]]
    else:
        assert "895,218" in text  # the headline's text dump size
        for row in section[1]:
            assert row.label in text and f"{row.bytes:,}" in text, row.label


def test_plot_is_written(report_run) -> None:
    plot = report_run[3]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_without_files_takes_the_books_weights(monkeypatch, data_dir: Path,
                                                      book_report: rep.Report, capsys) -> None:
    """The command's own work: which files, which options; the report itself is the
    module's (building it again would measure the same thing)."""
    calls: list[tuple[list, dict]] = []

    def recording(files, **kwargs):  # type: ignore[no-untyped-def]
        calls.append((list(files), kwargs))
        rep.replay(book_report, kwargs["sink"])  # what measuring hands the writer
        return book_report

    monkeypatch.setattr(rep, "build_report", recording)
    assert main(["report", "--data-dir", str(data_dir), "--format", "csv", "-q"]) == 0
    assert main(["report", "--all-reference", "--data-dir", str(data_dir), "--pareto",
                 "--repeats", "2", "-q"]) == 0
    (no_files, options), (every, more) = calls
    assert no_files == [data_dir / "sample_weight.pkl"]
    assert every == [data_dir / n for n in ("sample_weight.pkl", "simple_convnet_params.pkl",
                                            "deep_convnet_params.pkl")]
    assert (options["repeats"], more["repeats"]) == (5, 2)
    out = capsys.readouterr().out
    assert out.startswith(rep.render(book_report, "csv"))
    assert out.endswith(rep.render(book_report, "text", pareto_only=True))
    assert main(["report", "--repeats", "0"]) == 1
    assert "--repeats: expected 1 or more" in capsys.readouterr().err


def test_plot_without_matplotlib_names_the_extra(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    with pytest.raises(ws.MissingDependencyError, match=r"weightstore\[plot\]"):
        rep.check_plot_available()


PRECISION_ROWS = {
    "float16": ("float16", None), "bfloat16": ("bfloat16", None),
    "int8/per-column": (None, 8), "int4/per-column": (None, 4), "int2/per-column": (None, 2),
}


def test_every_precision_option_has_rows_checked_against_their_files(report_json) -> None:
    doc, _ = report_json
    rows = doc["sections"][0]["rows"]
    by_precision: dict[str, list[dict]] = {}
    for r in rows:
        by_precision.setdefault(r["precision"], []).append(r)
    assert set(PRECISION_ROWS) | {"digits 4", "digits 6", "shrink", "as stored"} <= set(
        by_precision)
    assert {r["format"] for r in by_precision["digits 4"]} == {"json", "csv"}
    assert {r["format"] for r in by_precision["digits 6"]} == {"json", "csv"}
    for label, (dtype, bits) in PRECISION_ROWS.items():
        for r in by_precision[label]:
            stored = ws.load(r["file"], dequantize=False)
            assert r["exact"] is False
            if dtype:
                assert {v.dtype.name for v in stored.values()} == {dtype}
            else:
                record = json.loads(stored.metadata["weightstore.quantization"])
                assert {e["bits"] for e in record["tensors"].values()} == {bits}
                codes = stored["W1.q"]  # int8 one per byte, or 784 x 50 codes bit-packed
                assert (codes.dtype, codes.shape) == ((np.int8, (784, 50)) if bits == 8 else
                                                      (np.uint8, (784 * 50 * bits // 8,)))
                assert stored["W1.scale"].shape == (50,)
    for digits in (4, 6):
        for r in by_precision[f"digits {digits}"]:
            assert 0 < r["max_rel_error"] <= 0.5 * 10.0 ** (1 - digits) * 1.001
    for r in rows:  # the lossless rows are all exact, the others none
        assert r["exact"] is (r["precision"] == "as stored")


def test_the_shrink_row_is_on_the_frontier_and_meets_the_target(report_json) -> None:
    doc, _ = report_json
    rows = doc["sections"][0]["rows"]
    (row,) = [r for r in rows if r["precision"] == "shrink"]
    assert row["bytes"] == Path(row["file"]).stat().st_size <= 16_000
    assert row["accuracy"] >= 0.9352 and row["pareto"] is True
    # nothing smaller is as accurate
    assert not [r for r in rows if r["bytes"] < row["bytes"] and r["accuracy"] >= 0.9352]


def test_pareto_flags_match_an_independent_frontier(report_json) -> None:
    doc, _ = report_json
    rows = doc["sections"][0]["rows"]
    # the default acceptance: at most 1 percentage point below the source's 0.9352
    assert doc["sections"][0]["headline"]["accept_points"] == 1.0
    accepted = [r for r in rows if r["accuracy"] >= 0.9352 - 0.01]
    assert len(accepted) < len(rows)  # int2 (about 0.45) is not acceptable
    best_so_far = -1.0
    expected = set()
    for r in sorted(accepted, key=lambda r: (r["bytes"], -r["accuracy"])):
        if r["accuracy"] > best_so_far:
            expected.add(r["label"])
            best_so_far = r["accuracy"]
    assert {r["label"] for r in rows if r["pareto"]} == expected


def _row(label: str, size: int, accuracy: float) -> rep.Row:
    return rep.Row(label, "npz", {}, "f", size, 0, 0, 0, False, 0, 0, 0, accuracy, 0, 0, 0)


def test_pareto_keeps_the_smallest_file_at_each_accuracy() -> None:
    rows = [_row("big exact", 100, 0.93), _row("small", 10, 0.5), _row("dominated", 50, 0.4),
            _row("mid", 40, 0.93), _row("tie", 40, 0.93), _row("worse at same size", 40, 0.9)]
    assert [r.label for r in rep.pareto(rows)] == ["small", "mid", "tie"]
    assert rep.pareto([]) == []


def test_pareto_only_rendering_lists_the_frontier(book_report: rep.Report) -> None:
    rows = list(csv.DictReader(io.StringIO(rep.render(book_report, "csv", pareto_only=True))))
    ((headline, section),) = book_report.sections
    front = rep.pareto(section, headline.min_accuracy)
    assert [r["label"] for r in rows] == [r.label for r in front]
    assert 0 < len(rows) < len(section) and all(r.pareto for r in front)
    assert "pareto" not in rows[0]  # not a CSV column: unknown while rows are streamed
    text = rep.render(book_report, "text")
    assert "frontier" in text and "int8/per-column" in text
