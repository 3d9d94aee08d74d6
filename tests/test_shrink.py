"""weightstore shrink: the real target on the book's weights, and that no label is read."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

import weightstore as ws
from weightstore import precision as prec
from weightstore.cli.main import main
from weightstore.lab import shrink as sh

TARGET_BYTES = 16_000
BOOK_ACCURACY = 0.9352


@pytest.fixture(scope="session")
def shrunk(tmp_path_factory, sample_weight_path: Path, data_dir: Path) -> tuple[Path, dict, str]:
    """The full search, once per session, through the command line (~30 s)."""
    dst = tmp_path_factory.mktemp("shrink") / "small.npz.zst"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(["shrink", str(sample_weight_path), str(dst), "--data-dir", str(data_dir),
                     "--json"]) == 0
    return dst, json.loads(out.getvalue()), err.getvalue()


def test_shrink_meets_the_target_size_and_accuracy(shrunk, data_dir: Path, capsys) -> None:
    dst, summary, _ = shrunk
    assert dst.stat().st_size == summary["bytes"] <= TARGET_BYTES
    assert main(["eval", str(dst), "--data-dir", str(data_dir), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["total"] == 10_000 and result["accuracy"] >= BOOK_ACCURACY


def test_shrink_agrees_on_the_calibration_images(shrunk, sample_weight_path: Path,
                                                 data_dir: Path) -> None:
    dst, summary, _ = shrunk
    from net.mlp import forward

    x = sh.calibration_images(data_dir)
    original = np.argmax(forward(ws.load(sample_weight_path), x), axis=1)
    got = np.argmax(forward(ws.load(dst), x), axis=1)
    assert summary["agreement"] == float(np.mean(got == original)) == 1.0
    assert summary["calibration_images"] == 1000


def test_shrunk_file_is_the_documented_quantized_layout(shrunk) -> None:
    dst, summary, _ = shrunk
    stored = ws.load(dst, dequantize=False)
    record = json.loads(stored.metadata[prec.QUANT_KEY])["tensors"]
    assert {k: record[k]["bits"] for k in ("W1", "W2", "W3")} == summary["bits"]
    for name, entry in record.items():
        top = 2 ** (entry["bits"] - 1) - 1
        codes = stored[name + ".q"]
        if entry["packed"]:  # bit-packed (the search keeps whichever form is smaller)
            assert codes.dtype == np.uint8 and entry["bits"] < 8
            codes = prec.unpack_codes(codes, entry["bits"], entry["shape"])
        assert codes.dtype == np.int8 and np.abs(codes).max() <= top
        if name == "W1":
            w1 = codes
    # the W1 rows of pixels never lit in the calibration images are pruned (all codes 0)
    x = sh.calibration_images()
    never_lit = ~(x != 0).any(axis=0)
    assert never_lit.sum() == summary["pruned_rows"] > 100
    assert not w1[never_lit].any()
    loaded = ws.load(dst)
    assert list(loaded) == ["b2", "W1", "b1", "W2", "W3", "b3"]  # the source's names and order
    assert all(v.dtype == np.float32 for v in loaded.values())


def test_shrink_prints_its_progress(shrunk) -> None:
    _, summary, err = shrunk
    assert "labels not used" in err and err.count("try W1=") >= 3 and "keep " in err
    accepted = [s for s in summary["steps"] if s["accepted"]]
    assert accepted[-1]["bytes"] == summary["bytes"]
    assert all(a["bytes"] > b["bytes"] for a, b in zip(accepted, accepted[1:], strict=False))


def _small_search(data_dir: Path, weights: ws.Weights) -> sh.ShrinkResult:
    """A reduced budget: 200 calibration images, one accepted step from 6 bits (a step
    tries every lower bit count of every matrix: all of the search's code runs)."""
    x = sh.calibration_images(data_dir, 200)
    return sh.shrink(weights, calibration=x, min_agreement=0.99, start_bits=6, max_steps=1)


def test_the_choice_never_reads_labels(monkeypatch, sample_weight_path: Path,
                                       data_dir: Path) -> None:
    import net.mnist
    from weightstore.lab import evaluate

    weights = ws.load(sample_weight_path)
    honest = _small_search(data_dir, weights)

    def no_labels(*args, **kwargs):
        raise AssertionError("shrink read the labels")

    monkeypatch.setattr(net.mnist, "load_labels", no_labels)
    monkeypatch.setattr(net.mnist, "load_test_set", no_labels)
    monkeypatch.setattr(evaluate, "test_set", no_labels)
    blind = _small_search(data_dir, weights)
    assert blind.bits == honest.bits and blind.bytes == honest.bytes
    assert blind.weights.equal(honest.weights)
    assert sum(s.accepted for s in blind.steps) >= 1  # the search did choose something
    with pytest.raises(AssertionError, match="labels"):  # and the patch was in force
        net.mnist.load_test_set(data_dir)


def test_a_stricter_agreement_never_gives_a_smaller_file(sample_weight_path: Path,
                                                         data_dir: Path) -> None:
    weights = ws.load(sample_weight_path)
    x = sh.calibration_images(data_dir, 200)
    loose = sh.shrink(weights, calibration=x, min_agreement=0.95, start_bits=5, max_steps=1)
    strict = sh.shrink(weights, calibration=x, min_agreement=1.0, start_bits=5, max_steps=1)
    assert loose.agreement >= 0.95 and strict.agreement == 1.0
    assert loose.bytes <= strict.bytes


def test_shrink_refuses_other_networks_and_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ws.ModelError, match="W1"):
        sh.shrink({"x": np.zeros((3, 3), np.float32)}, calibration=np.zeros((1, 784)))
    book = {"W1": np.zeros((784, 50), np.float32), "b1": np.zeros(50, np.float32),
            "W2": np.zeros((50, 100), np.float32), "b2": np.zeros(100, np.float32),
            "W3": np.zeros((100, 10), np.float32), "b3": np.zeros(10, np.float32)}
    with pytest.raises(ws.OptionError, match="min_agreement"):
        sh.shrink(book, calibration=np.zeros((2, 784)), min_agreement=1.5)
    with pytest.raises(ws.ModelError, match="calibration"):
        sh.shrink(book, calibration=np.zeros((2, 10)))


def test_gptq_beats_rounding_to_nearest_on_the_calibration_outputs(
        sample_weight_path: Path, data_dir: Path) -> None:
    w = ws.load(sample_weight_path)
    x = sh.calibration_images(data_dir, 300).astype(np.float64)
    h = x.T @ x
    for bits in (3, 4):
        q = sh.gptq(w["W1"], h, bits).dequantize().astype(np.float64)
        rtn = prec.quantize_tensor(w["W1"], bits).dequantize().astype(np.float64)
        exact = x @ w["W1"]
        assert np.linalg.norm(x @ q - exact) < 0.7 * np.linalg.norm(x @ rtn - exact)


def test_coarse_scale_rounds_up_to_three_mantissa_bits() -> None:
    s = np.array([0.1, 1.0, 3.3e-3, 0.0], dtype=np.float16)
    c = sh.coarse_scale(s)
    assert c.dtype == np.float16 and (c >= s).all()
    assert (c.view(np.uint16) & 0x7F == 0).all()  # the 7 low mantissa bits are clear
    assert c[1] == 1.0 and c[3] == 0.0
