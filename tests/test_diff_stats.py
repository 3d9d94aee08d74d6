"""``weightstore diff``, ``stats`` and ``verify``: the library functions and the commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import weightstore as ws
from weightstore import compare
from weightstore.cli.main import main


def _save(path: Path, **arrays: np.ndarray) -> str:
    ws.save(arrays, path)
    return str(path)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[str, str, np.ndarray]:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((40, 30)).astype(np.float32)
    b = rng.standard_normal(30).astype(np.float32)
    return _save(tmp_path / "a.npz", W=w, b=b), str(tmp_path), w


def test_identical_files_exit_0(pair, tmp_path: Path, capsys) -> None:
    a, _, _ = pair
    c = str(tmp_path / "c.safetensors")
    ws.convert(a, c)
    assert main(["diff", a, c]) == 0
    out = capsys.readouterr().out
    assert "identical" in out and "0 of 1,200" in out
    assert ws.diff(a, c).identical


def test_one_ulp_is_found_and_counted(pair, tmp_path: Path, capsys) -> None:
    a, _, w = pair
    w2 = w.copy()
    w2[3, 4] = np.nextafter(w2[3, 4], np.float32(np.inf))
    w2[5, 6] += 0.5
    b = _save(tmp_path / "b.npz", W=w2, b=ws.load(a)["b"])
    d = ws.diff(a, b)
    row = {t.name: t for t in d.tensors}["W"]
    assert row.status == "differs" and row.differing == 2 and row.count == 1200
    assert row.max_abs_error == pytest.approx(abs(float(w2[5, 6]) - float(w[5, 6])))
    assert row.max_rel_error == pytest.approx(row.max_abs_error / abs(float(w[5, 6])), rel=1e-6) \
        or row.max_rel_error > row.max_abs_error / abs(float(w[5, 6]))
    assert row.max_ulp_error >= 1
    assert main(["diff", a, b]) == 1
    assert "1 of 2 tensors do not match" in capsys.readouterr().out
    # a tolerance large enough lets it pass, and says so
    assert main(["diff", a, b, "--atol", "0.6"]) == 0
    assert "match within atol=0.6" in capsys.readouterr().out


def test_ulps_count_float_steps(tmp_path: Path) -> None:
    x = np.array([1.0, -0.0, 2.0], np.float32)
    y = np.array([np.nextafter(np.nextafter(np.float32(1), np.float32(2)), np.float32(2)),
                  0.0, 2.0], np.float32)
    t = compare.diff_arrays("x", x, y)
    assert t.max_ulp_error == 2 and t.differing == 1  # -0.0 == 0.0


def test_dtype_shape_and_missing_tensors_fail(tmp_path: Path, capsys) -> None:
    a = _save(tmp_path / "a.npz", W=np.ones((2, 3), np.float32), x=np.zeros(2, np.float32),
              only_a=np.zeros(1, np.float32))
    b = _save(tmp_path / "b.npz", W=np.ones((2, 3), np.float16), x=np.zeros(3, np.float32),
              only_b=np.zeros(1, np.float32))
    status = {t.name: t.status for t in ws.diff(a, b).tensors}
    assert status == {"W": "dtype", "x": "shape", "only_a": "only in A", "only_b": "only in B"}
    assert main(["diff", a, b, "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert not data["passed"] and [t["name"] for t in data["tensors"]] == \
        ["W", "x", "only_a", "only_b"]
    same_values = {t.name: t.status for t in ws.diff(a, b, check_dtype=False).tensors}
    assert same_values["W"] == "same"


def test_nan_matches_nan_only(tmp_path: Path) -> None:
    x = np.array([np.nan, 1.0, np.inf], np.float32)
    assert compare.diff_arrays("x", x, x.copy()).status == "same"
    t = compare.diff_arrays("x", x, np.array([1.0, 1.0, np.inf], np.float32), atol=10)
    assert t.status == "differs" and t.outside == 1 and t.max_abs_error == np.inf


def test_integers_compare_exactly_beyond_float64(tmp_path: Path) -> None:
    x = np.array([2**62, 5], np.int64)
    y = np.array([2**62 + 1, 5], np.int64)
    assert compare.diff_arrays("x", x, y).differing == 1


def test_chunked_diff_equals_whole_array_figures(monkeypatch) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal(10_001).astype(np.float32)
    y = (x + rng.standard_normal(10_001).astype(np.float32) * 1e-3).astype(np.float32)
    whole = compare.diff_arrays("x", x, y, atol=1e-3)
    monkeypatch.setattr(compare, "CHUNK_VALUES", 1000)
    chunked = compare.diff_arrays("x", x, y, atol=1e-3)
    assert chunked == whole
    err = np.abs(x.astype(np.float64) - y)
    assert whole.max_abs_error == err.max() and whole.differing == np.count_nonzero(x != y)
    assert whole.outside == np.count_nonzero(err > 1e-3)


def test_markdown_output(pair, capsys) -> None:
    a, _, _ = pair
    assert main(["diff", a, a, "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| tensor | status |") and "|---|" in out


def test_stats_match_numpy(tmp_path: Path, monkeypatch, capsys) -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((100, 37)).astype(np.float32)
    x[0, :5] = 0
    x[1, 0], x[1, 1], x[1, 2] = np.nan, np.inf, -np.inf
    path = _save(tmp_path / "s.npz", x=x, e=np.zeros(0, np.float32))
    monkeypatch.setattr(compare, "CHUNK_VALUES", 512)
    got = {s.name: s for s in ws.stats(path, bins=7)}
    s = got["x"]
    finite = x[np.isfinite(x)].astype(np.float64)
    assert (s.min, s.max) == (finite.min(), finite.max())
    assert s.mean == pytest.approx(finite.mean(), rel=1e-12)
    assert s.std == pytest.approx(finite.std(), rel=1e-12)
    assert (s.zeros, s.nans, s.infs) == (5, 1, 2)
    assert s.histogram == np.histogram(finite, bins=7)[0].tolist()
    assert got["e"].min is None and got["e"].histogram == []
    assert main(["stats", path, "--histogram"]) == 0
    out = capsys.readouterr().out
    assert "x" in out and "no finite values" in out and "#" in out
    assert main(["stats", path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["nans"] == 1


def test_verify_finds_a_flipped_bit(tmp_path: Path, capsys) -> None:
    w = np.arange(4000, dtype=np.float32)
    good = _save(tmp_path / "good.npz", W1=w)
    raw = bytearray(Path(good).read_bytes())
    at = raw.find(w[1000:1002].tobytes())
    raw[at] ^= 1
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(raw))
    assert main(["inspect", str(bad)]) == 0  # the header alone is fine
    capsys.readouterr()
    assert main(["inspect", str(bad), "--verify"]) == 1
    assert "W1" in capsys.readouterr().err
    assert main(["verify", good, str(bad)]) == 1
    captured = capsys.readouterr()
    assert "good.npz: ok, 1 tensors" in captured.out and "every checksum matches" in captured.out
    assert "1 of 2 files ok" in captured.out and "bad.npz" in captured.err
    with pytest.raises(ws.ChecksumError):
        ws.verify(bad)


def test_verify_says_when_a_format_has_no_checksums(tmp_path: Path, capsys) -> None:
    p = _save(tmp_path / "w.pkl", W=np.ones(3, np.float32))
    assert main(["verify", p]) == 0
    assert "stores no checksums" in capsys.readouterr().out
    assert ws.verify(p).checksums is False


@pytest.mark.parametrize("command", ["diff", "stats", "verify"])
def test_help_has_examples(command: str, capsys) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "examples:" in capsys.readouterr().out


def test_diff_eval_reports_both_accuracies(sample_weight_path: Path, data_dir: Path,
                                           tmp_path: Path, capsys) -> None:
    small = tmp_path / "w16.npz"
    assert main(["convert", str(sample_weight_path), str(small), "--dtype", "float16",
                 "-q"]) == 0
    rc = main(["diff", str(sample_weight_path), str(small), "--eval", "--data-dir",
               str(data_dir), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 1 and data["eval"]["accuracy_a"] == 0.9352
    assert 0 <= data["eval"]["changed"] <= 10_000 and data["eval"]["total"] == 10_000
