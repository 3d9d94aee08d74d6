"""The book's conv nets (ch. 7, 8) keep their accuracy in every format; float16 measured."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import weightstore as ws
from weightstore.cli.main import main
from weightstore.lab import evaluate as ev
from weightstore.lab import report as rep

FORMATS = [".pkl", ".npz", ".h5", ".json", ".csv", ".safetensors", ".wsc"]
NETS = ["simple_convnet_params.pkl", "deep_convnet_params.pkl"]


@pytest.mark.parametrize("name", [
    NETS[0],
    # slow only when it is the first in the session to need the DeepConvNet run
    pytest.param(NETS[1], marks=pytest.mark.slow),
])
def test_every_format_keeps_the_accuracy(name: str, data_dir: Path, tmp_path: Path,
                                         full_test_set_evaluation) -> None:
    """Each format gives back the reference weights bit for bit, so the network they
    build makes the same predictions: the session's one full run of the reference
    weights measures the accuracy every format keeps."""
    src = data_dir / name
    source = ws.load(src)
    for ext in FORMATS:
        path = tmp_path / f"{Path(name).stem}{ext}"
        ws.convert(src, path)
        assert ws.load(path).equal(source), f"{name} -> {ext} is not exact"
    assert full_test_set_evaluation(name).accuracy > 0.98  # the book: ~0.99


@pytest.mark.parametrize("name", NETS)
def test_float16_files_hold_the_weights_whose_accuracy_is_measured(
        name: str, data_dir: Path, tmp_path: Path) -> None:
    """A float16 file holds exactly the reference weights rounded to float16: the weights
    whose accuracy tests/test_convnet.py measures against the book's ch. 8 claim."""
    src = data_dir / name
    half = tmp_path / f"{Path(name).stem}.f16.npz"
    with pytest.warns(ws.LossyWarning):
        ws.convert(src, half, precision={"dtype": "float16"})
    rounded = ws.Weights({k: v.astype(np.float16) for k, v in ws.load(src).items()})
    assert ws.load(half).equal(rounded)


SUBSET = 500


@pytest.fixture
def first_test_images(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> np.ndarray:
    """Evaluations in this test see the first SUBSET test images only (the full set is
    evaluated once per session); returns their labels."""
    full = ev.test_set

    def first(data_dir=None, *, flatten=True):  # type: ignore[no-untyped-def]
        x, t = full(data_dir, flatten=flatten)
        return x[:SUBSET], t[:SUBSET]

    monkeypatch.setattr(ev, "test_set", first)
    return full(data_dir)[1][:SUBSET]


def test_eval_command_names_the_detected_network(data_dir: Path, capsys, first_test_images,
                                                 full_test_set_evaluation) -> None:
    name = "simple_convnet_params.pkl"
    assert main(["eval", str(data_dir / name), "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    predictions = full_test_set_evaluation(name).predictions[:SUBSET]
    correct = int((predictions == first_test_images).sum())
    assert "network simple_convnet" in out
    assert f"accuracy {correct / SUBSET:.4f} ({correct:,} of {SUBSET:,} test images" in out


def test_report_on_a_conv_net_reuses_predictions_only_for_exact_rows(
        data_dir: Path, first_test_images) -> None:
    variants = [rep.Variant("npz", "npz", ".npz"),
                rep.Variant("float16 (npz)", "npz", ".npz", precision={"dtype": "float16"})]
    report = rep.build_report([data_dir / "simple_convnet_params.pkl"], variants=variants,
                              repeats=1, data_dir=data_dir, reevaluate=False)
    (headline, rows) = report.sections[0]
    assert headline.model == "simple_convnet" and headline.neurons is None
    exact, half = rows
    assert exact.exact and not exact.evaluated and exact.accuracy == headline.accuracy
    assert not half.exact and half.evaluated and half.max_rel_error > 0
    assert "'='" in rep.render_text(report)
