"""The bit-exact comparison every round-trip test relies on: ``model.arrays_identical``.

It must compare bits, not values: a NaN equals itself only with the same payload, -0.0
is not 0.0, and the dtype is part of the identity (byte order is not: it is storage).
"""

from __future__ import annotations

import numpy as np
import pytest

import weightstore as ws
from weightstore.model import arrays_identical, as_weights


def _bits(value: int, dtype: str) -> np.ndarray:
    size = np.dtype(dtype).itemsize
    return np.array([value], dtype=f"u{size}").view(dtype)


def _quiet_nan(dtype: str) -> int:
    size = np.dtype(dtype).itemsize
    return int(np.array([np.nan], dtype).view(f"u{size}")[0])


FLOATS = ["float16", "float32", "float64"]


@pytest.mark.parametrize("dtype", FLOATS)
def test_a_nan_is_identical_to_itself(dtype: str) -> None:
    a = np.array([1.0, np.nan, -np.inf], dtype)
    assert arrays_identical(a, a.copy())  # NaN != NaN by value; the bits are the same


@pytest.mark.parametrize("dtype", FLOATS)
def test_nan_payloads_and_signs_differ(dtype: str) -> None:
    quiet = _quiet_nan(dtype)
    payload = _bits(quiet | 1, dtype)
    assert np.isnan(payload[0])
    assert not arrays_identical(_bits(quiet, dtype), payload)
    sign = 1 << (8 * np.dtype(dtype).itemsize - 1)
    assert not arrays_identical(_bits(quiet, dtype), _bits(quiet | sign, dtype))
    assert arrays_identical(payload, _bits(quiet | 1, dtype))


@pytest.mark.parametrize("dtype", FLOATS)
def test_negative_zero_is_not_zero(dtype: str) -> None:
    zero, negative = np.array([0.0], dtype), np.array([-0.0], dtype)
    assert zero == negative  # equal by value ...
    assert not arrays_identical(zero, negative)  # ... not by bits
    assert arrays_identical(negative, np.array([-0.0], dtype))


def test_bfloat16_is_compared_by_bits() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 needs ml_dtypes")
    bf16 = np.dtype(ml_dtypes.bfloat16)
    zero = np.array([0.0, 1.5], bf16)
    assert arrays_identical(zero, zero.copy())
    assert not arrays_identical(zero, np.array([-0.0, 1.5], bf16))
    nan = np.array([0x7FC0], np.uint16).view(bf16)
    assert arrays_identical(nan, nan.copy())
    assert not arrays_identical(nan, np.array([0x7FC1], np.uint16).view(bf16))
    # same values, another dtype
    assert not arrays_identical(zero, zero.astype(np.float32))


@pytest.mark.parametrize(("a", "b"), [
    (np.array([1.0, 2.0], np.float32), np.array([1.0, 2.0], np.float64)),
    (np.array([1, 2], np.int32), np.array([1, 2], np.int64)),
    (np.array([1, 2], np.int16), np.array([1, 2], np.uint16)),
    (np.array([0, 1], np.uint8), np.array([False, True])),
    # the same 32 bits, read as two different dtypes
    (np.array([1.0], np.float32), np.array([1.0], np.float32).view(np.int32)),
], ids=["float32-float64", "int32-int64", "int16-uint16", "uint8-bool", "float32-int32-bits"])
def test_the_dtype_is_part_of_the_identity(a: np.ndarray, b: np.ndarray) -> None:
    assert not arrays_identical(a, b) and not arrays_identical(b, a)


def test_shape_matters_but_layout_and_byte_order_do_not() -> None:
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    assert not arrays_identical(a, a.reshape(4, 3))
    assert not arrays_identical(a, a.reshape(12))
    assert arrays_identical(a, np.asfortranarray(a))
    assert arrays_identical(a, a.astype(">f8"))
    assert arrays_identical(a[:, ::2], np.ascontiguousarray(a[:, ::2]))
    one_ulp = a.copy()
    one_ulp[2, 3] = np.nextafter(one_ulp[2, 3], np.inf)
    assert not arrays_identical(a, one_ulp)
    assert arrays_identical(np.zeros((0, 3)), np.zeros((0, 3)))
    assert not arrays_identical(np.zeros((0, 3)), np.zeros((3, 0)))


def test_bool_and_integers() -> None:
    assert arrays_identical(np.array([True, False]), np.array([True, False]))
    assert not arrays_identical(np.array([True, False]), np.array([True, True]))
    big = np.array([-(2**63), 2**63 - 1], np.int64)
    assert arrays_identical(big, big.astype(">i8"))
    assert not arrays_identical(big, big + np.array([0, -1]))


def test_weights_equal_uses_the_bits() -> None:
    a = ws.Weights({"w": np.array([0.0, np.nan], np.float32)})
    assert a.equal(ws.Weights({"w": np.array([0.0, np.nan], np.float32)}))
    assert not a.equal(ws.Weights({"w": np.array([-0.0, np.nan], np.float32)}))


# --- the rest of the data model's checks (weightstore.model) -------------------------


@pytest.mark.parametrize(("tensors", "metadata", "message"), [
    ({1: np.zeros(1)}, None, "tensor name: expected a string"),
    ({"a\x00b": np.zeros(1)}, None, "no NUL character"),
    ({"a//b": np.zeros(1)}, None, "doubled"),
    ({"g": {}}, None, "group 'g': expected at least one tensor"),
    ({"x": [1.0, 2.0]}, None, "tensor 'x': expected a numpy array, found list"),
    ({"x": np.zeros(2, np.complex64)}, None, "tensor 'x' dtype.*found complex64"),
    ({"x": np.zeros(1)}, {"k": 1}, "metadata: expected string keys and string values"),
], ids=["name-not-str", "nul", "doubled-slash", "empty-group", "list", "complex", "metadata"])
def test_weights_refuse_what_no_format_can_hold(tensors, metadata, message) -> None:
    with pytest.raises(ws.WeightsError, match=message):
        ws.Weights(tensors, metadata=metadata)


def test_weights_from_nested_groups_and_numpy_scalars() -> None:
    w = ws.Weights({"enc": {"W": np.zeros((2, 3), np.float32)}, "s": np.float64(2.5)})
    assert list(w) == ["enc/W", "s"] and w["s"].shape == ()
    assert repr(w) == "Weights({enc/W: float32[2, 3], s: float64[]}, metadata={})"
    assert w.info("enc/W").nbytes == 24
    assert not w.equal({"s": w["s"], "enc/W": w["enc/W"]})  # order is part of equality
    with pytest.raises(ws.WeightsError, match="unique names"):
        ws.Weights([("a", np.zeros(1)), ("a", np.ones(1))])
    with pytest.raises(ws.WeightsError, match="a mapping of names to arrays"):
        as_weights([np.zeros(1)])  # type: ignore[arg-type]
    assert as_weights(w) is w and as_weights({"x": np.zeros(1)}).equal({"x": np.zeros(1)})
