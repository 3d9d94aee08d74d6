"""A quantization record (metadata 'weightstore.quantization') that disagrees with itself
or with its tensors is refused naming the field, never dequantized into wrong floats;
and the quantizer's own refusals."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import weightstore as ws
from weightstore import precision as prec
from weightstore.errors import OptionError, WeightsError

KEY = prec.QUANT_KEY


def _quantized() -> ws.Weights:
    rng = np.random.default_rng(0)
    return prec.quantize({"W": rng.standard_normal((4, 8)).astype(np.float32),
                          "b": np.ones(3, np.float32)}, 4, block=4)


def _with_record(change: Callable[[dict], object]) -> ws.Weights:
    q = _quantized()
    doc = json.loads(q.metadata[KEY])
    changed = change(doc)
    text = changed if isinstance(changed, str) else json.dumps(doc if changed is None
                                                               else changed)
    return ws.Weights(dict(q), metadata={**q.metadata, KEY: text})


def _set(path: list, value: object) -> Callable[[dict], None]:
    def change(doc: dict) -> None:
        node = doc
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    return change


@pytest.mark.parametrize(("change", "field"), [
    (lambda doc: "{not json", "metadata 'weightstore.quantization': not JSON"),
    (lambda doc: [1], "expected an object with keys scheme, tensors, version, found \\[1\\]"),
    (_set(["version"], 99), "'weightstore.quantization' version: expected .*found 99"),
    (_set(["scheme"], "affine"), "scheme: expected 'symmetric', found affine"),
    (_set(["tensors"], []), "tensors: expected an object, found \\[\\]"),
    (_set(["tensors", "b"], [1]), "tensors\\['b'\\]: expected keys"),
    (_set(["tensors", "b", "dtype"], "int8"), "tensors\\['b'\\].dtype: expected one of"),
    (_set(["tensors", "b", "bits"], True), "tensors\\['b'\\].bits: expected an integer from"),
    (_set(["tensors", "b", "shape"], [-3]), "tensors\\['b'\\].shape: expected a list of "
                                            "non-negative integers"),
    (_set(["tensors", "b", "granularity"], "row"), "tensors\\['b'\\].granularity: expected "
                                                   "one of"),
    (_set(["tensors", "b", "granularity"], "column"), "tensors\\['b'\\].granularity: expected "
                                                      "'tensor' for 0-d and 1-d"),
    (_set(["tensors", "W", "block"], 0), "tensors\\['W'\\].block: expected a positive integer"),
    (_set(["tensors", "W", "shape"], [4, 9]), "tensor 'W.q': expected .*of shape .*found"),
])
def test_a_damaged_record_names_the_field(change, field: str) -> None:
    with pytest.raises(ws.FormatError, match=field):
        prec.dequantize(_with_record(change), path="model.npz")


def test_a_record_and_its_tensors_must_agree() -> None:
    q = _quantized()
    missing = ws.Weights({k: v for k, v in q.items() if k != "b.scale"}, metadata=q.metadata)
    with pytest.raises(ws.FormatError, match="tensor 'b.scale': expected present \\(the "
                                             "record quantizes 'b'\\), found missing"):
        prec.dequantize(missing)
    doubled = ws.Weights({**dict(q), "b": np.ones(3, np.float32)}, metadata=q.metadata)
    with pytest.raises(ws.FormatError, match="tensor 'b': expected only its codes and scales"):
        prec.dequantize(doubled)


def test_a_damaged_record_in_a_file_is_refused_on_load(tmp_path: Path) -> None:
    path = tmp_path / "q.npz"
    ws.save(_with_record(_set(["scheme"], "affine")), path)
    with pytest.raises(ws.FormatError, match=f"{path}: metadata 'weightstore.quantization' "
                                             "scheme"):
        ws.load(path)
    assert prec.is_quantized(ws.load(path, dequantize=False))  # the codes, as stored


def test_the_quantizer_refuses_what_it_cannot_quantize() -> None:
    kept = prec.quantize({"n": np.arange(4)}, 4)  # non-float tensors are kept as they are
    assert np.array_equal(kept["n"], np.arange(4))
    with pytest.raises(WeightsError, match="weights: expected float weights to quantize, "
                                           "found weights already quantized"):
        prec.quantize(_quantized(), 4)
    with pytest.raises(WeightsError, match="tensor 'n': expected a float tensor to quantize"):
        prec.quantize_tensor(np.arange(4), 4, name="n")
    with pytest.raises(OptionError, match="expected a Precision or a mapping"):
        prec.apply({"x": np.zeros(2)}, 5)  # type: ignore[arg-type]
    with pytest.raises(OptionError, match="dtype int8: expected one of float16, bfloat16"):
        prec.cast({"x": np.zeros(2)}, "int8")
