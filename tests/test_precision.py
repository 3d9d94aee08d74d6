"""Precision: cast, quantize/dequantize and round_digits, pure and honest about loss."""

from __future__ import annotations

import io
import warnings

import numpy as np
import orjson
import pytest

from weightstore import OptionError, Weights, WeightsError
from weightstore.codecs.compact import CompactCodec
from weightstore.precision import (
    QUANT_KEY,
    LossyWarning,
    cast,
    dequantize,
    quantize,
    round_digits,
)


def sample() -> Weights:
    rng = np.random.default_rng(11)
    return Weights({
        "W1": np.asfortranarray(rng.normal(0, 0.05, (20, 6)).astype(np.float32)),
        "b1": rng.normal(0, 0.1, 6).astype(np.float32),
        "W2": rng.normal(0, 0.3, (6, 3)).astype(np.float64),
        "steps": np.arange(5, dtype=np.int64),
    }, metadata={"source": "test"})


def snapshot(w: Weights) -> dict[str, bytes]:
    return {k: np.ascontiguousarray(v).tobytes() for k, v in w.items()}


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "bfloat16"])
def test_cast_converts_floats_only_and_keeps_the_rest(dtype):
    if dtype == "bfloat16":
        pytest.importorskip("ml_dtypes")
    w = sample()
    before = snapshot(w)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = cast(w, dtype)
    assert snapshot(w) == before  # the input is not modified
    assert [out[k].dtype.name for k in ("W1", "b1", "W2")] == [dtype] * 3
    assert out["steps"] is w["steps"]
    assert out.metadata == w.metadata and list(out) == list(w)
    lossy = [c for c in caught if issubclass(c.category, LossyWarning)]
    assert len(lossy) == (0 if dtype == "float64" else 1)  # once per call, not per tensor


def test_cast_counts_overflow_and_refuses_unknown_dtypes():
    w = Weights({"x": np.array([1.0, 1e6, -1e6], np.float32)})
    with pytest.warns(LossyWarning, match="2 finite values overflow"):
        out = cast(w, "float16")
    assert np.isinf(out["x"][1:]).all()
    with pytest.raises(OptionError, match="dtype"):
        cast(w, "int8")


def test_cast_without_loss_does_not_warn():
    w = Weights({"x": np.array([0.5, 1.0, -2.0], np.float32)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(cast(w, "float16")["x"], w["x"])


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_quantize_per_column_and_restore_within_half_a_step(bits):
    w = sample()
    before = snapshot(w)
    with pytest.warns(LossyWarning, match=f"{bits}-bit quantization"):
        q = quantize(w, bits)
    assert snapshot(w) == before
    assert list(q) == ["W1", "W1.scale", "b1", "W2", "W2.scale", "steps"]
    assert q["W1"].dtype == np.int8 and q["W1.scale"].shape == (6,)
    levels = 2 ** (bits - 1) - 1
    assert np.abs(q["W1"]).max() == levels
    record = orjson.loads(q.metadata[QUANT_KEY])
    assert record["W1"] == {"bits": bits, "axis": 1, "dtype": "float32", "scale": "W1.scale"}
    back = dequantize(q)
    assert list(back) == list(w) and back.metadata == w.metadata
    for name in ("W1", "W2"):
        assert back[name].dtype == w[name].dtype
        err = np.abs(back[name].astype(np.float64) - w[name])
        assert (err <= q[name + ".scale"].astype(np.float64) / 2 * (1 + 1e-6) + 1e-12).all()
    assert back["b1"] is w["b1"]


def test_quantize_survives_a_file_round_trip():
    q = quantize(sample(), 4, warn=False)
    buf = io.BytesIO()
    CompactCodec().write(q, buf, path="q.wsc")
    buf.seek(0)
    again = CompactCodec().read(buf, path="q.wsc")
    assert again.equal(q) and again.metadata == q.metadata
    assert dequantize(again).equal(dequantize(q))


def test_quantize_other_axis_names_and_zero_columns():
    x = np.zeros((4, 3), np.float32)
    x[:, 0] = [1, -2, 3, -4]
    w = Weights({"x": x, "v": np.array([0.5, -1.0], np.float32)})
    q = quantize(w, 8, axis=0, names=["x", "v"], warn=False)
    assert q["x.scale"].shape == (4,) and q["v.scale"].shape == (2,)
    assert np.array_equal(dequantize(q)["x"][:, 1:], x[:, 1:])  # zeros stay zeros


@pytest.mark.parametrize("bad, match", [
    (dict(bits=1), "bits"), (dict(bits=9), "bits"), (dict(bits=True), "bits"),
    (dict(axis=5), "axis"), (dict(names=["nope"]), "names"), (dict(names=["steps"]), "floating"),
])
def test_quantize_refuses_bad_arguments(bad, match):
    with pytest.raises((OptionError, WeightsError), match=match):
        quantize(sample(), **{"bits": 8, **bad}, warn=False)


def test_quantize_refuses_non_finite_and_taken_scale_names():
    with pytest.raises(WeightsError, match="finite"):
        quantize(Weights({"x": np.array([[1.0, np.nan]])}), warn=False)
    with pytest.raises(WeightsError, match="x.scale"):
        quantize(Weights({"x": np.ones((2, 2)), "x.scale": np.ones(2)}), warn=False)
    q = quantize(sample(), warn=False)
    with pytest.raises(WeightsError, match="already quantized"):
        quantize(q, warn=False)


def test_dequantize_checks_its_metadata():
    q = quantize(sample(), warn=False)
    assert dequantize(sample()).equal(sample())
    broken = Weights(dict(q), metadata={QUANT_KEY: "{not json"})
    with pytest.raises(WeightsError, match="JSON"):
        dequantize(broken)
    missing = Weights({k: v for k, v in q.items() if k != "W1.scale"}, metadata=q.metadata)
    with pytest.raises(WeightsError, match="missing"):
        dequantize(missing)


@pytest.mark.parametrize("digits", [1, 3, 6])
def test_round_digits_limits_the_shortest_decimal(digits):
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(0, 0.05, 2000), [0.0, -0.0, np.inf, np.nan, 1e-20,
                                                         123456.0, 9.9999, 0.00099999]])
    w = Weights({"f32": values.astype(np.float32), "f64": values, "i": np.arange(3)})
    with pytest.warns(LossyWarning, match=f"{digits} significant digits"):
        out = round_digits(w, digits)
    assert out["i"] is w["i"]
    for name in ("f32", "f64"):
        got = out[name]
        assert got.dtype == w[name].dtype
        for v, r in zip(w[name].tolist(), got.tolist(), strict=True):
            if not np.isfinite(v) or v == 0:
                assert r == v or (np.isnan(v) and np.isnan(r))
                continue
            text = str(np.float32(r)) if name == "f32" else repr(r)
            mantissa = text.lower().split("e")[0].lstrip("-").replace(".", "").strip("0")
            assert len(mantissa) <= digits, (v, text)
            assert abs(r - v) <= 0.5 * 10 ** (np.floor(np.log10(abs(v))) - digits + 1) * 1.01 \
                + abs(v) * 1e-7


def test_round_digits_refuses_bad_digits():
    with pytest.raises(OptionError, match="digits"):
        round_digits(sample(), 0)
