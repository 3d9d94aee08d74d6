"""ONNX export of the book's network: runs in ONNX Runtime with the book's accuracy."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

import weightstore
from weightstore import Weights
from weightstore.errors import MissingDependencyError, ModelError, OptionError
from weightstore.lab.interop.onnx import DEFAULT_OPSET, export_mlp

#: The book's accuracy with sample_weight.pkl on the 10,000 test images.
BOOK_ACCURACY = 0.9352

needs_onnx = pytest.mark.skipif(importlib.util.find_spec("onnx") is None,
                                reason="onnx is not installed (pip install 'weightstore[onnx]')")
needs_ort = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None,
    reason="onnxruntime is not installed (pip install 'weightstore[onnx]')",
)


def forward(weights: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The numpy reference: the book's predict in float32 (net.mlp), weights cast first."""
    from net.mlp import predict

    return predict({k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}, x)


def _session(path: Path):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _small(rng: np.random.Generator, sizes=(6, 5, 4, 3)) -> Weights:  # type: ignore[no-untyped-def]
    d = {}
    for i in range(3):
        d[f"W{i + 1}"] = rng.standard_normal((sizes[i], sizes[i + 1])).astype(np.float32)
        d[f"b{i + 1}"] = rng.standard_normal(sizes[i + 1]).astype(np.float32)
    return Weights(d)


@needs_onnx
@needs_ort
def test_book_accuracy_and_outputs_match_numpy(tmp_path: Path, sample_weight_path: Path,
                                               data_dir: Path) -> None:
    from net.mnist import load_test_set

    weights = weightstore.load(sample_weight_path)
    model = export_mlp(weights, tmp_path / "model.onnx")
    x, labels = load_test_set(data_dir, download=False)
    assert x.dtype == np.float32 and x.shape == (10_000, 784)
    (y,) = _session(model).run(None, {"x": x})
    assert y.shape == (10_000, 10) and y.dtype == np.float32
    accuracy = float(np.mean(y.argmax(axis=1) == labels))
    assert accuracy == BOOK_ACCURACY
    expected = forward(weights, x)
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(y.sum(axis=1), 1, atol=1e-5)


@needs_onnx
def test_initializers_are_the_weights_bit_for_bit(tmp_path: Path,
                                                  sample_weight_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    weights = weightstore.load(sample_weight_path)
    model = onnx.load(export_mlp(weights, tmp_path / "model.onnx"))
    stored = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert sorted(stored) == sorted(weights)
    for name, array in weights.items():
        assert stored[name].dtype == np.float32
        assert stored[name].tobytes() == np.ascontiguousarray(array).tobytes(), name
    assert [o.version for o in model.opset_import] == [DEFAULT_OPSET]
    assert model.ir_version == 8  # the lowest that opset 17 allows
    assert [i.name for i in model.graph.input] == ["x"]
    assert [o.name for o in model.graph.output] == ["y"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and dims[1].dim_value == 784


@needs_onnx
@needs_ort
@pytest.mark.parametrize("opset", [13, DEFAULT_OPSET, 21])
def test_other_sizes_batches_and_opsets(tmp_path: Path, opset: int) -> None:
    rng = np.random.default_rng(opset)
    weights = _small(rng)
    session = _session(export_mlp(weights, tmp_path / "m.onnx", opset=opset))
    for batch in (1, 7):
        x = rng.random((batch, 6), dtype=np.float32)
        (y,) = session.run(None, {"x": x})
        np.testing.assert_allclose(y, forward(weights, x), rtol=0, atol=1e-6)


@needs_onnx
def test_metadata_becomes_model_properties(tmp_path: Path) -> None:
    import onnx

    weights = Weights(dict(_small(np.random.default_rng(0))), metadata={"source": "book"})
    model = onnx.load(export_mlp(weights, tmp_path / "m.onnx"))
    assert {p.key: p.value for p in model.metadata_props} == {"source": "book"}
    assert model.producer_name == "weightstore"


@needs_onnx
@needs_ort
def test_float64_weights_are_stored_as_float32(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    w64 = {k: v.astype(np.float64) for k, v in _small(rng).items()}
    session = _session(export_mlp(w64, tmp_path / "m.onnx"))
    x = rng.random((3, 6), dtype=np.float32)
    (y,) = session.run(None, {"x": x})
    np.testing.assert_allclose(y, forward(w64, x), rtol=0, atol=1e-6)


@needs_onnx
@pytest.mark.parametrize("change, field", [
    (lambda d: d.pop("W2"), "weights"),
    (lambda d: d.update(W2=np.zeros((4, 4), np.float32)), "tensor 'W2' shape"),
    (lambda d: d.update(b3=np.zeros(4, np.float32)), "tensor 'b3' shape"),
    (lambda d: d.update(W1=np.zeros(6, np.float32)), "tensor 'W1' shape"),
    (lambda d: d.update(W1=np.zeros((6, 5), np.int32)), "tensor 'W1'"),
])
def test_weights_that_do_not_fit_raise_model_error(tmp_path: Path, change, field) -> None:  # type: ignore[no-untyped-def]
    d = dict(_small(np.random.default_rng(2)))
    change(d)
    with pytest.raises(ModelError) as info:
        export_mlp(d, tmp_path / "m.onnx")
    assert info.value.field == field
    assert not (tmp_path / "m.onnx").exists()


@needs_onnx
@pytest.mark.parametrize("opset", [12, 10_000, "17", True])
def test_bad_opset_raises_option_error(tmp_path: Path, opset: object) -> None:
    with pytest.raises(OptionError, match="opset"):
        export_mlp(_small(np.random.default_rng(3)), tmp_path / "m.onnx", opset=opset)  # type: ignore[arg-type]


def test_missing_onnx_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for mod in [m for m in sys.modules if m == "onnx" or m.startswith("onnx.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(MissingDependencyError) as info:
        export_mlp(_small(np.random.default_rng(4)), tmp_path / "m.onnx")
    assert info.value.extra == "onnx"
    assert "pip install 'weightstore[onnx]'" in str(info.value)
