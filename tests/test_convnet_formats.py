"""The book's conv nets (ch. 7, 8) keep their accuracy in every format; float16 measured."""

from __future__ import annotations

from pathlib import Path

import pytest

import weightstore as ws
from weightstore.cli.main import main
from weightstore.lab import report as rep

FORMATS = [".pkl", ".npz", ".h5", ".json", ".csv", ".safetensors", ".wsc"]


@pytest.fixture(scope="module")
def accuracies(data_dir: Path, tmp_path_factory) -> dict[tuple[str, str], float]:
    """eval's accuracy for each reference conv net in each format, and as float16."""
    from weightstore.lab.evaluate import evaluate

    out: dict[tuple[str, str], float] = {}
    folder = tmp_path_factory.mktemp("convnets")
    for name in ("simple_convnet_params.pkl", "deep_convnet_params.pkl"):
        src = data_dir / name
        out[(name, "source")] = evaluate(ws.load(src), data_dir=data_dir).accuracy
        for ext in FORMATS:
            path = folder / f"{Path(name).stem}{ext}"
            ws.convert(src, path)
            got = ws.load(path)
            assert got.equal(ws.load(src)), f"{name} -> {ext} is not exact"
            # DeepConvNet takes seconds per evaluation: run it for our own binary and a text
            # format; the others are bit-identical (asserted above), so their predictions are.
            if name.startswith("simple") or ext in (".wsc", ".csv"):
                out[(name, ext)] = evaluate(got, data_dir=data_dir).accuracy
        half = folder / f"{Path(name).stem}.f16.npz"
        with pytest.warns(ws.LossyWarning):
            ws.convert(src, half, precision={"dtype": "float16"})
        out[(name, "float16")] = evaluate(ws.load(half), data_dir=data_dir).accuracy
    return out


@pytest.mark.parametrize("name", ["simple_convnet_params.pkl", "deep_convnet_params.pkl"])
def test_every_format_keeps_the_accuracy(accuracies, name: str) -> None:
    source = accuracies[(name, "source")]
    assert source > 0.98  # the book: ~0.99
    evaluated = [ext for ext in FORMATS if (name, ext) in accuracies]
    assert len(evaluated) >= 2
    for ext in evaluated:
        assert accuracies[(name, ext)] == source, ext


@pytest.mark.parametrize("name", ["simple_convnet_params.pkl", "deep_convnet_params.pkl"])
def test_float16_accuracy_is_measured(accuracies, name: str) -> None:
    # the book (ch. 8) says float16 storage does not change the accuracy; measured here
    assert abs(accuracies[(name, "float16")] - accuracies[(name, "source")]) <= 0.001


def test_eval_command_names_the_detected_network(data_dir: Path, capsys) -> None:
    assert main(["eval", str(data_dir / "simple_convnet_params.pkl"),
                 "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "network simple_convnet" in out and "accuracy 0.98" in out


def test_report_on_a_conv_net_reuses_predictions_only_for_exact_rows(data_dir: Path) -> None:
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
