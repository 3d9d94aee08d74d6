"""Issue 15 item 6: a --data-dir that does not exist is an error; report rows needing a
missing extra are listed as skipped, naming the extra."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

import weightstore as ws
from weightstore.cli.main import main
from weightstore.lab import report as rep
from weightstore.lab.data import resolve
from weightstore.lab.report import measure


def test_an_explicit_data_dir_that_does_not_exist_is_an_error(tmp_path: Path, capsys,
                                                              sample_weight_path: Path) -> None:
    missing = tmp_path / "typo"
    with pytest.raises(ws.DataError, match="data_dir: expected an existing folder"):
        resolve("sample_weight.pkl", missing)
    assert main(["eval", str(sample_weight_path), "--data-dir", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--data-dir: expected an existing folder" in err
    assert "no such folder" in err


def test_rows_needing_a_missing_extra_are_listed_as_skipped(
        monkeypatch, sample_weight_path: Path, data_dir: Path) -> None:
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)  # import now raises ImportError
    variants = [rep.Variant("npz", "npz", ".npz"),
                rep.Variant("bfloat16 (npz)", "npz", ".npz", {}, {"dtype": "bfloat16"})]
    report = rep.build_report([sample_weight_path], variants=variants, repeats=1,
                              data_dir=data_dir)
    headline, rows = report.sections[0]
    assert [r.label for r in rows] == ["npz"]
    assert len(headline.skipped) == 1 and headline.skipped[0].startswith("bfloat16 (npz): ")
    assert "pip install 'weightstore[bfloat16]'" in headline.skipped[0]
    for fmt in ("text", "markdown"):
        assert "skipped bfloat16 (npz): " in rep.render(report, fmt)
    assert "weightstore[bfloat16]" in rep.render(report, "json")


def _row(label: str, size: int, accuracy: float, exact: bool, err: float) -> rep.Row:
    return rep.Row(label=label, format="npz", options={}, file="x", bytes=size,
                   bytes_per_weight=1.0, vs_source=1.0, zipped_bytes=size, exact=exact,
                   max_abs_error=err, max_rel_error=err, max_ulp_error=err, accuracy=accuracy,
                   changed_predictions=0, write_ms=1.0, read_ms=1.0)


def test_plot_labels_do_not_overlap_and_near_exact_rows_stay_apart(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from weightstore.lab.report.plot import _overlaps

    h = rep.Headline(source="w.pkl", source_bytes=180_000, model="mlp", tensors=6,
                     weights=45_360, neurons=160, weights_per_neuron=283.5, accuracy=0.9352,
                     eval_seconds=0.1, text_dump_bytes=900_000, text_chars_per_weight=20.0,
                     text_vs_source=5.0, text_exact=False, text_max_abs_error=1e-6,
                     text_max_rel_error=1e-6, text_max_ulp_error=3.0, text_accuracy=0.9352,
                     text_changed_predictions=0, zip_tool="zipfile", source_zipped_bytes=1,
                     text_zipped_bytes=1)
    rows = [_row(f"exact {i}", 170_000 + 1_000 * i, 0.9352, True, 0.0) for i in range(20)]
    rows += [_row("one image lost", 90_000, 0.9351, False, 1e-3),
             _row("two images lost", 91_000, 0.9350, False, 1e-3),
             _row("int2", 5_000, 0.45, False, 1.0)]
    report = rep.Report([(h, rows)], 1, {})
    out = tmp_path / "p.png"
    boxes = rep.plot(report, out)
    assert out.stat().st_size > 0
    for axis in boxes:
        assert len(axis) == len(rows) + 1
        assert not any(_overlaps(a, b) for i, a in enumerate(axis) for b in axis[i + 1:])
    # on the accuracy axis, 0, 1 and 2 images lost are at clearly different heights
    acc = boxes[1]
    ys = [acc[i].y0 for i in (0, 20, 21)]
    assert min(abs(ys[0] - ys[1]), abs(ys[1] - ys[2])) > 15


def test_report_works_on_any_weights_with_only_and_new_columns(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    w = {"enc/W": rng.standard_normal((64, 32)).astype(np.float32),
         "enc/b": rng.standard_normal(32).astype(np.float32)}
    src = tmp_path / "any.npz"
    ws.save(w, src)
    assert main(["report", str(src), "--only", "pickle", "--only", "int8*", "--repeats", "1",
                 "-q", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    section = data["sections"][0]
    assert "none of the book's networks" in section["headline"]["not_evaluated"]
    rows = {r["label"]: r for r in section["rows"]}
    assert set(rows) == {"pickle", "bfloat16 (pickle)", "int8/per-column (npz)",
                         "int8/per-column (zstd-19 npz)"}  # label or format matches
    exact, q = rows["pickle"], rows["int8/per-column (npz)"]
    assert exact["exact"] and exact["rms_error"] == 0 and exact["cosine"] == 1
    back = ws.load(q["file"]) if Path(q["file"]).exists() else None
    assert back is None  # the measured files are temporary without --keep
    # RMS error and cosine recomputed here from a kept file
    keep = tmp_path / "keep"
    report = rep.build_report([src], variants=[rep.Variant("int8", "npz", ".npz", {},
                                                           {"quantize": "8"})],
                              repeats=1, keep_dir=keep)
    row = report.sections[0][1][0]
    got = ws.load(row.file)
    a = np.concatenate([w[k].ravel() for k in w]).astype(np.float64)
    b = np.concatenate([got[k].ravel() for k in w]).astype(np.float64)
    assert row.rms_error == pytest.approx(np.sqrt(np.mean((a - b) ** 2)), rel=1e-12)
    assert row.cosine == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b), rel=1e-12)
    assert math.isnan(row.accuracy) and not row.pareto
    text = rep.render(report, "text")
    assert "accuracy not measured" in text and "marked '='" not in text
    assert main(["report", str(src), "--only", "nothing*", "-q"]) == 1


def test_weights_too_large_for_the_text_dump_skip_it_and_say_why(
        tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy prints ~125,000 values a second: above the limit the headline says it did not
    measure the text dump, and every output still renders (no zero-byte point)."""
    monkeypatch.setattr(measure, "TEXT_DUMP_MAX_VALUES", 100)
    src = tmp_path / "big.npz"
    ws.save({"W": np.arange(200, dtype=np.float32)}, src)
    assert main(["report", str(src), "--only", "pickle", "--repeats", "1", "-q"]) == 0
    out = capsys.readouterr().out
    assert "str(network) text dump: not measured (200 values" in out
    page, png = tmp_path / "r.html", tmp_path / "r.png"
    assert main(["report", str(src), "--only", "pickle", "--repeats", "1", "-q",
                 "--format", "html", "-o", str(page), "--plot", str(png)]) == 0
    assert "not measured" in page.read_text() and png.stat().st_size > 0
    monkeypatch.setattr(measure, "TEXT_DUMP_MAX_VALUES", 1000)
    assert main(["report", str(src), "--only", "pickle", "--repeats", "1", "-q"]) == 0
    assert "str(network) text dump: 1," in capsys.readouterr().out  # measured below it
