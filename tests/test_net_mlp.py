"""The chapter-3 network: maths on a hand-computed net, stability, shape checks, real accuracy."""

from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import pytest

from net.data import resolve

# net stands alone, with its own error hierarchy; its base class plays the part here.
from net.errors import ModelError, OptionError
from net.errors import NetError as WeightstoreError
from net.mlp import (
    MULTIPLY_ADDS_PER_IMAGE,
    PARAM_NAMES,
    ThreeLayerNet,
    forward,
    predict,
    sigmoid,
    softmax,
)
from net.mnist import load_test_set

# A 2-2-2-2 network small enough to evaluate by hand.
TINY = {
    "W1": np.array([[1.0, -1.0], [0.5, 2.0]]),
    "b1": np.array([0.0, 1.0]),
    "W2": np.array([[2.0, 0.0], [-1.0, 1.0]]),
    "b2": np.array([-0.5, 0.25]),
    "W3": np.array([[1.0, 3.0], [-2.0, 1.0]]),
    "b3": np.array([0.5, -0.5]),
}


def _sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def _tiny_by_hand(x0: float, x1: float) -> list[float]:
    """The same network written out scalar by scalar with math.exp."""
    z1 = [_sig(x0 * 1.0 + x1 * 0.5 + 0.0), _sig(x0 * -1.0 + x1 * 2.0 + 1.0)]
    z2 = [_sig(z1[0] * 2.0 + z1[1] * -1.0 - 0.5), _sig(z1[0] * 0.0 + z1[1] * 1.0 + 0.25)]
    a3 = [z2[0] * 1.0 + z2[1] * -2.0 + 0.5, z2[0] * 3.0 + z2[1] * 1.0 - 0.5]
    e = [math.exp(v) for v in a3]
    return [v / sum(e) for v in e]


def test_tiny_network_matches_hand_computation():
    net = ThreeLayerNet.from_weights(TINY, sizes=None)
    assert net.sizes == (2, 2, 2, 2)
    x = np.array([[0.0, 0.0], [1.0, 2.0], [-3.0, 0.5]])
    y = net.predict(x)
    expected = np.array([_tiny_by_hand(*row) for row in x])
    np.testing.assert_allclose(y, expected, rtol=1e-13)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-15)
    np.testing.assert_array_equal(net.predict_classes(x), expected.argmax(axis=1))


def test_tiny_network_single_image_and_batches_agree():
    net = ThreeLayerNet.from_weights(TINY, sizes=None)
    x = np.random.default_rng(0).normal(size=(7, 2))
    whole = net.predict(x, batch_size=7)
    np.testing.assert_allclose(net.predict(x, batch_size=3), whole, rtol=1e-14)
    np.testing.assert_allclose(net.predict(x[4]), whole[4], rtol=1e-14)
    assert net.predict(x[4]).shape == (2,)


@pytest.mark.parametrize(
    ("x_dtype", "w_dtypes"),
    [
        (np.float32, {}),  # the book's: every stage in float32, through the buffers
        (np.float64, {}),
        (np.float16, {}),
        (np.float32, {"b2": np.float64}),  # promotion mid-way: the book's code instead
        (np.float16, {"W1": np.float32}),
    ],
)
def test_batched_predict_is_bit_identical_to_the_book_formula(monkeypatch, x_dtype, w_dtypes):
    """ThreeLayerNet.predict evaluates each group in place (reused buffers); every bit of it,
    NaN and overflow included, equals predict() of the same group."""
    rng = np.random.default_rng(3)
    sizes = (6, 5, 4, 3)
    shapes = {"W1": (6, 5), "b1": (5,), "W2": (5, 4), "b2": (4,), "W3": (4, 3), "b3": (3,)}
    params = {
        name: (rng.normal(size=shape) * 4).astype(w_dtypes.get(name, x_dtype))
        for name, shape in shapes.items()
    }
    x = (rng.normal(size=(23, 6)) * 30).astype(x_dtype)
    x[5] = 1e4  # sigmoid's exp overflows
    x[6, 2] = np.nan
    monkeypatch.setattr("net.parallel.WORKERS", 1)
    net = ThreeLayerNet.from_weights(params, sizes=sizes)
    with np.errstate(over="ignore", invalid="ignore"):  # float16 products overflow: inf
        got = net.predict(x, batch_size=4)
        expected = np.concatenate([predict(params, x[i : i + 4]) for i in range(0, len(x), 4)])
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got.view(np.uint8), expected.view(np.uint8))


def test_accuracy_counts_labels_and_one_hot():
    net = ThreeLayerNet.from_weights(TINY, sizes=None)
    x = np.array([[0.0, 0.0], [1.0, 2.0], [-3.0, 0.5], [2.0, -1.0]])
    classes = net.predict_classes(x)
    t = classes.copy()
    t[0] = 1 - t[0]
    assert net.accuracy(x, t) == 0.75
    assert net.accuracy(x, np.eye(2)[t]) == 0.75


def test_sigmoid_values_and_no_warnings_for_huge_inputs():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for dtype in (np.float16, np.float32, np.float64):
            x = np.array([-1e4, -1000.0, -100.0, 0.0, 100.0, 1000.0, 1e4], dtype=dtype)
            y = sigmoid(x)
            assert y.dtype == dtype
            assert np.all(np.isfinite(y))
            assert y[0] == 0 and y[3] == 0.5 and y[-1] == 1
    x = np.linspace(-700, 700, 1401)
    expected = np.array([_sig(v) for v in x])
    np.testing.assert_allclose(sigmoid(x), expected, rtol=1e-13)


def test_softmax_is_stable_and_row_wise():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = np.array([[1.0, 2.0, 3.0], [1001.0, 1002.0, 1003.0], [-1e300, 0.0, -np.inf]])
        y = softmax(a)
    np.testing.assert_allclose(y[0], y[1], rtol=1e-15)
    e = [math.exp(v - 3) for v in (1, 2, 3)]
    np.testing.assert_allclose(y[0], [v / sum(e) for v in e], rtol=1e-15)
    np.testing.assert_array_equal(y[2], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(softmax(np.array([1e4, 1e4], dtype=np.float32)), [0.5, 0.5])
    assert softmax(np.zeros((2, 3), dtype=np.float32)).dtype == np.float32


def test_computation_dtype_follows_numpy_promotion():
    x32 = np.full((3, 2), 0.5, dtype=np.float32)
    half = {k: v.astype(np.float16) for k, v in TINY.items()}
    single = {k: v.astype(np.float32) for k, v in TINY.items()}
    assert ThreeLayerNet.from_weights(half, sizes=None).predict(x32).dtype == np.float32
    assert ThreeLayerNet.from_weights(single, sizes=None).predict(x32).dtype == np.float32
    assert ThreeLayerNet.from_weights(TINY, sizes=None).predict(x32).dtype == np.float64
    assert predict(TINY, x32).dtype == np.float64
    assert forward(single, x32).dtype == np.float32


def test_from_weights_does_not_copy_or_modify():
    weights = {k: v.copy() for k, v in TINY.items()}
    before = {k: v.copy() for k, v in weights.items()}
    net = ThreeLayerNet.from_weights(weights, sizes=None)
    net.predict(np.ones((2, 2)))
    for name in PARAM_NAMES:
        assert net.params[name] is weights[name]
        np.testing.assert_array_equal(weights[name], before[name])


def _book_shaped(**changes):
    sizes = {"W1": (784, 50), "b1": (50,), "W2": (50, 100), "b2": (100,), "W3": (100, 10)}
    weights = {name: np.zeros(shape, np.float32) for name, shape in sizes.items()}
    weights["b3"] = np.zeros(10, np.float32)
    weights.update(changes)
    return {k: v for k, v in weights.items() if v is not None}


def test_book_sizes_accepted():
    net = ThreeLayerNet.from_weights(_book_shaped())
    assert net.sizes == (784, 50, 100, 10)
    assert MULTIPLY_ADDS_PER_IMAGE == 45_200


def _zeros(*shape: int, dtype: type = np.float32) -> np.ndarray:
    return np.zeros(shape, dtype)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"W2": None}, "w.pkl: missing tensor W2 (expected tensors W1, b1, W2, b2, W3, b3"),
        ({"W1": None, "b3": None}, "missing tensors W1, b3"),
        ({"W2": _zeros(100, 50)}, "w.pkl: W2.shape: expected (50, 100), found (100, 50)"),
        ({"b1": _zeros(1, 50)}, "w.pkl: b1.shape: expected 1 dimensions, found (1, 50)"),
        ({"b3": _zeros(11)}, "w.pkl: b3.shape: expected (10,), found (11,)"),
        (
            {"W3": _zeros(100, 10, dtype=np.int32)},
            "w.pkl: W3.dtype: expected a floating-point dtype, found int32",
        ),
    ],
)
def test_from_weights_names_the_bad_tensor(changes, message):
    with pytest.raises(ModelError) as info:
        ThreeLayerNet.from_weights(_book_shaped(**changes), source="w.pkl")
    assert message in str(info.value)
    assert isinstance(info.value, WeightstoreError)


def test_inferred_sizes_still_check_consistency():
    bad = dict(TINY, W2=np.zeros((3, 2)))
    with pytest.raises(ModelError, match=r"W2\.shape: expected \(2, 2\), found \(3, 2\)"):
        ThreeLayerNet.from_weights(bad, sizes=None)


def test_bad_inputs_are_reported():
    net = ThreeLayerNet.from_weights(TINY, sizes=None)
    with pytest.raises(ModelError, match=r"x\.shape: expected \(N, 2\) or \(2,\), found \(3, 5\)"):
        net.predict(np.zeros((3, 5)))
    with pytest.raises(ModelError, match=r"x\.dtype: expected floating-point.*found uint8"):
        net.predict(np.zeros((3, 2), np.uint8))
    with pytest.raises(ModelError, match=r"t\.shape: expected \(3,\) labels"):
        net.accuracy(np.zeros((3, 2)), np.zeros(4, np.uint8))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(OptionError, match="batch_size: expected a positive integer"):
            net.predict(np.zeros((3, 2)), batch_size=bad)
    with pytest.raises(OptionError, match="sizes: expected four positive integers"):
        ThreeLayerNet.from_weights(TINY, sizes=(2, 2, 2))


def test_book_accuracy_on_the_mnist_test_set(data_dir):
    path = resolve("sample_weight.pkl", data_dir, download=False)
    with path.open("rb") as f:
        weights = pickle.load(f)  # the project's safe loader replaces this later
    net = ThreeLayerNet.from_weights(weights, source=path)
    x, t = load_test_set(data_dir, download=False)
    assert x.shape == (10_000, 784) and x.dtype == np.float32
    classes = net.predict_classes(x)
    assert int(np.count_nonzero(classes == t)) == 9352
    assert net.accuracy(x, t) == 0.9352
    assert net.accuracy(x, t, batch_size=100) == 0.9352
    assert net.predict(x[:5]).dtype == np.float32
