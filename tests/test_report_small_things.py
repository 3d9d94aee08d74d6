"""Issue 15 item 6: a --data-dir that does not exist is an error; report rows needing a
missing extra are listed as skipped, naming the extra."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import weightstore as ws
from weightstore.cli.main import main
from weightstore.lab import report as rep
from weightstore.lab.data import resolve


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
