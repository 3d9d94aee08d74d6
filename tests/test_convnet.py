"""Tests of net.convnet and net.models: shape checks, engine vs layers, reference accuracies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import net.convnet as convnet
import weightstore
from net.convnet import ConvNet, ConvSpec, DeepConvNet, SimpleConvNet
from net.data import resolve
from net.errors import ModelError, OptionError
from net.mlp import ThreeLayerNet
from net.mnist import load_test_set
from net.models import MODELS, build_model, detect_model, multiply_adds_per_image

#: Images on which the engine is compared with the book's layer-by-layer path.
LAYER_CHECK_IMAGES = 300


@pytest.fixture(scope="module")
def mnist(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """MNIST test set: images (10000, 1, 28, 28) float32 in [0, 1], labels (10000,) uint8."""
    return load_test_set(data_dir, flatten=False, download=False)


def load_params(name: str, data_dir: Path) -> dict[str, np.ndarray]:
    """A reference file through the project's resolver (SHA-256 checked) and safe loader."""
    return dict(weightstore.load(resolve(name, data_dir)))


@pytest.fixture(scope="module")
def simple_params(data_dir: Path) -> dict[str, np.ndarray]:
    return load_params("simple_convnet_params.pkl", data_dir)


@pytest.fixture(scope="module")
def deep_params(data_dir: Path) -> dict[str, np.ndarray]:
    return load_params("deep_convnet_params.pkl", data_dir)


def random_params(cls: type[ConvNet], seed: int = 0, dtype=np.float64) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in cls.param_shapes().items():
        fan_in = int(np.prod(shape[1:])) if len(shape) == 4 else shape[0]
        scale = np.sqrt(2.0 / fan_in) if name.startswith("W") else 0.1
        params[name] = (rng.standard_normal(shape) * scale).astype(dtype)
    return params


def direct_scores(net: ConvNet, x: np.ndarray, chunk: int = 500) -> np.ndarray:
    """The book's path: every layer of ``net.layers`` in turn (each tested against nested loops)."""
    return np.concatenate([net.predict_layers(x[i : i + chunk]) for i in range(0, len(x), chunk)])


# --------------------------------------------------------------------------- architecture
def test_param_shapes_are_the_books():
    assert SimpleConvNet.param_shapes() == {
        "W1": (30, 1, 5, 5), "b1": (30,), "W2": (4320, 100), "b2": (100,),
        "W3": (100, 10), "b3": (10,),
    }  # fmt: skip
    assert DeepConvNet.param_shapes() == {
        "W1": (16, 1, 3, 3), "b1": (16,), "W2": (16, 16, 3, 3), "b2": (16,),
        "W3": (32, 16, 3, 3), "b3": (32,), "W4": (32, 32, 3, 3), "b4": (32,),
        "W5": (64, 32, 3, 3), "b5": (64,), "W6": (64, 64, 3, 3), "b6": (64,),
        "W7": (1024, 50), "b7": (50,), "W8": (50, 10), "b8": (10,),
    }  # fmt: skip


def test_param_shapes_match_reference_files(simple_params, deep_params):
    for cls, params in ((SimpleConvNet, simple_params), (DeepConvNet, deep_params)):
        assert {k: v.shape for k, v in params.items()} == cls.param_shapes()


def test_layer_lists_are_the_books():
    net = DeepConvNet.from_weights(random_params(DeepConvNet))
    names = [type(layer).__name__ for layer in net.layers]
    block = ["Convolution", "Relu", "Convolution", "Relu", "MaxPooling"]
    assert names == block * 3 + ["Affine", "Relu", "Dropout", "Affine", "Dropout"]
    assert [layer.pad for layer in net.layers if type(layer).__name__ == "Convolution"] == [
        1, 1, 1, 2, 1, 1
    ]  # fmt: skip
    simple = SimpleConvNet.from_weights(random_params(SimpleConvNet))
    assert [type(layer).__name__ for layer in simple.layers] == [
        "Convolution", "Relu", "MaxPooling", "Affine", "Relu", "Affine"
    ]  # fmt: skip


def test_multiply_adds():
    # by hand: FN*C*FH*FW*OH*OW per conv, D*M per affine layer
    simple = 30 * 1 * 5 * 5 * 24 * 24 + 4320 * 100 + 100 * 10
    deep = (
        16 * 1 * 9 * 28 * 28 + 16 * 16 * 9 * 28 * 28  # 28x28, pads 1
        + 32 * 16 * 9 * 14 * 14 + 32 * 32 * 9 * 16 * 16  # 14x14 pad 1, then pad 2 -> 16x16
        + 64 * 32 * 9 * 8 * 8 + 64 * 64 * 9 * 8 * 8
        + 1024 * 50 + 50 * 10
    )  # fmt: skip
    assert SimpleConvNet.multiply_adds_per_image() == simple == 865_000
    assert DeepConvNet.multiply_adds_per_image() == deep == 8_772_340
    assert multiply_adds_per_image("simple_convnet") == simple
    assert multiply_adds_per_image("deep_convnet") == deep
    assert multiply_adds_per_image("mlp") == 784 * 50 + 50 * 100 + 100 * 10
    with pytest.raises(OptionError, match="model"):
        multiply_adds_per_image("resnet")


# --------------------------------------------------------------------------- shape checks
@pytest.mark.parametrize("cls", [SimpleConvNet, DeepConvNet])
def test_missing_tensor(cls):
    params = random_params(cls)
    del params["b2"]
    with pytest.raises(ModelError, match=r"b2: missing tensor .*expected shape \(\d+,\)"):
        cls.from_weights(params)


@pytest.mark.parametrize("cls", [SimpleConvNet, DeepConvNet])
def test_wrong_shape_names_tensor_expected_and_found(cls):
    params = random_params(cls)
    params["W2"] = params["W2"][..., :1]
    expected = cls.param_shapes()["W2"]
    with pytest.raises(ModelError) as info:
        cls.from_weights(params)
    message = str(info.value)
    assert message.startswith("W2: ")
    assert f"expected shape {expected}" in message
    assert f"found shape {params['W2'].shape}" in message
    assert info.value.field == "W2"


def test_other_problems_listed_in_hint():
    params = random_params(SimpleConvNet)
    params["W1"] = np.zeros((30, 1, 3, 3))
    params["b3"] = np.zeros(11)
    params["extra"] = np.zeros(1)
    with pytest.raises(ModelError, match=r"^W1: .*also b3 has shape \(11,\), .*unexpected extra"):
        SimpleConvNet.from_weights(params)


def test_non_float_weights_rejected():
    params = random_params(SimpleConvNet)
    params["W3"] = params["W3"].astype(np.int64)
    with pytest.raises(ModelError, match="W3.*floating-point.*int64"):
        SimpleConvNet.from_weights(params)


def test_deep_weights_do_not_fit_simple():
    with pytest.raises(ModelError, match=r"W1: .*\(30, 1, 5, 5\).*\(16, 1, 3, 3\)"):
        SimpleConvNet.from_weights(random_params(DeepConvNet))


def test_weights_are_copied_not_shared():
    params = random_params(SimpleConvNet)
    before = {k: v.copy() for k, v in params.items()}
    net = SimpleConvNet.from_weights(params)
    x = np.random.default_rng(1).random((3, 1, 28, 28), dtype=np.float32)
    scores = net.predict(x)
    params["W1"][...] = 0.0
    np.testing.assert_array_equal(net.predict(x), scores)
    for k in before:
        if k != "W1":
            np.testing.assert_array_equal(params[k], before[k])


# --------------------------------------------------------------------------- dtypes and inputs
def test_compute_dtype_rule():
    assert SimpleConvNet.from_weights(random_params(SimpleConvNet)).dtype == np.float64
    net32 = SimpleConvNet.from_weights(random_params(SimpleConvNet, dtype=np.float32))
    assert net32.dtype == np.float32
    net16 = SimpleConvNet.from_weights(random_params(SimpleConvNet, dtype=np.float16))
    assert net16.dtype == np.float32  # float16 weights are computed in float32
    x = np.random.default_rng(2).random((4, 1, 28, 28))
    assert net16.predict(x).dtype == np.float32
    mixed = random_params(SimpleConvNet, dtype=np.float16)
    mixed["b3"] = mixed["b3"].astype(np.float64)
    assert SimpleConvNet.from_weights(mixed).dtype == np.float64


def test_input_shapes():
    net = SimpleConvNet.from_weights(random_params(SimpleConvNet))
    x = np.random.default_rng(3).random((5, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(net.predict(x.reshape(5, 784)), net.predict(x))
    assert net.predict(np.zeros((0, 1, 28, 28))).shape == (0, 10)
    with pytest.raises(ModelError, match=r"expected shape \(N, 1, 28, 28\) or \(N, 784\)"):
        net.predict(np.zeros((5, 28, 28)))
    with pytest.raises(OptionError, match="batch_size"):
        net.predict(x, batch_size=0)
    with pytest.raises(ModelError, match="labels"):
        net.accuracy(x, np.zeros(4))


def test_accuracy_counts_every_image():
    net = DeepConvNet.from_weights(random_params(DeepConvNet, seed=5))
    x = np.random.default_rng(6).random((7, 1, 28, 28), dtype=np.float32)
    y = np.argmax(net.predict(x), axis=1)
    t = y.copy()
    t[[1, 6]] = (t[[1, 6]] + 1) % 10  # two wrong labels, one in the last partial batch
    assert net.accuracy(x, t, batch_size=3) == pytest.approx(5 / 7)
    assert net.accuracy(x, np.eye(10)[t], batch_size=4) == pytest.approx(5 / 7)


# --------------------------------------------------------------------------- engine vs layers
class OddNet(ConvNet):
    """Exercises the engine beyond the book's nets: strides, pad 0 and 2, odd sizes, no pool."""

    input_shape = (2, 13, 11)
    conv_specs = (
        ConvSpec(3, 3, stride=2, pad=1, pool=True),  # 13x11 -> 7x6 -> pool 3x3
        ConvSpec(4, 2, stride=1, pad=2),  # 3x3 -> 6x6
        ConvSpec(5, 3, stride=3, pad=0, pool=True),  # 6x6 -> 2x2 -> pool 1x1
    )
    hidden_sizes = (6,)
    output_size = 10
    dropout_ratio = 0.25


@pytest.mark.parametrize("cls", [SimpleConvNet, DeepConvNet, OddNet])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_engine_matches_layers(cls, dtype, monkeypatch):
    net = cls.from_weights(random_params(cls, seed=11, dtype=dtype))
    x = np.random.default_rng(12).random((23, *cls.input_shape)).astype(np.float32)
    x_before = x.copy()
    expected = net.predict_layers(x)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    for batch_size in (1, 4, 23, 100):
        np.testing.assert_allclose(net.predict(x, batch_size), expected, rtol=tol, atol=tol)
    # groups of one image, whatever the batch size
    monkeypatch.setattr(convnet, "_GROUP_BYTES", 1)
    np.testing.assert_allclose(net.predict(x, 10), expected, rtol=tol, atol=tol)
    np.testing.assert_array_equal(x, x_before)


def test_dropout_before_last_affine_matters():
    # The book scales by 0.5 before the last affine layer; its bias makes that visible.
    params = random_params(DeepConvNet, seed=8)
    params["b8"] = np.linspace(-1.0, 1.0, 10)
    net = DeepConvNet.from_weights(params)
    x = np.random.default_rng(9).random((3, 1, 28, 28))
    h = x.astype(np.float64)
    for layer in net.layers[:-2]:  # up to and including the first dropout
        h = layer.forward(h)
    expected = (h @ params["W8"] + params["b8"]) * 0.5
    np.testing.assert_allclose(net.predict(x), expected, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- models
def test_detect_reference_files(simple_params, deep_params, data_dir):
    assert detect_model(simple_params) == "simple_convnet"
    assert detect_model(deep_params) == "deep_convnet"
    assert detect_model(load_params("sample_weight.pkl", data_dir)) == "mlp"
    assert isinstance(build_model(simple_params), SimpleConvNet)
    assert isinstance(build_model(deep_params), DeepConvNet)


def test_models_registry_consistent():
    assert set(MODELS) == {"mlp", "simple_convnet", "deep_convnet"}
    for name, info in MODELS.items():
        assert info.name == name
        shapes = info.param_shapes()
        fake = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
        assert detect_model(fake) == name


def test_detect_bad_inputs():
    with pytest.raises(ModelError, match="not mlp: missing W1.*not deep_convnet: missing W1"):
        detect_model({})
    deep = {k: np.zeros(s) for k, s in DeepConvNet.param_shapes().items()}
    del deep["W4"]
    with pytest.raises(ModelError) as info:
        detect_model(deep)
    message = str(info.value)
    assert "not mlp: W1 has shape (16, 1, 3, 3), expected shape (784, 50)" in message
    assert "not simple_convnet: W1 has shape (16, 1, 3, 3), expected shape (30, 1, 5, 5)" in message
    assert "not deep_convnet: missing W4 (expected shape (32, 32, 3, 3))" in message
    extra = {k: np.zeros(s) for k, s in SimpleConvNet.param_shapes().items()}
    extra["W4"] = np.zeros(3)
    with pytest.raises(ModelError, match="not simple_convnet: unexpected W4"):
        detect_model(extra)


def test_build_model_explicit():
    params = random_params(SimpleConvNet)
    assert isinstance(build_model(params, "simple_convnet"), SimpleConvNet)
    with pytest.raises(ModelError, match=r"^W1: does not fit deep_convnet"):
        build_model(params, "deep_convnet")
    with pytest.raises(ModelError, match=r"^W1: does not fit mlp"):
        build_model(params, "mlp")  # checked before net.mlp is imported
    with pytest.raises(OptionError, match="one of mlp, simple_convnet, deep_convnet"):
        build_model(params, "lenet")


def test_build_mlp():
    params = {k: np.zeros(s, np.float32) for k, s in MODELS["mlp"].param_shapes().items()}
    assert isinstance(build_model(params), ThreeLayerNet)


# --------------------------------------------------------------------------- reference results
@pytest.mark.parametrize(("name", "cls", "measured"), [
    ("simple_convnet_params.pkl", SimpleConvNet, 0.989),
    # the session's one DeepConvNet run over the test set, when this test comes first
    pytest.param("deep_convnet_params.pkl", DeepConvNet, 0.9935, marks=pytest.mark.slow),
])
def test_reference_accuracy(name, cls, measured, data_dir, mnist, full_test_set_evaluation):
    x, t = mnist
    full = full_test_set_evaluation(name)
    # On the first few hundred images: the engine's scores are the layer-by-layer ones,
    # and its classes those of the session's full-test-set run.
    net = cls.from_weights(load_params(name, data_dir))
    few = x[:LAYER_CHECK_IMAGES]
    expected = direct_scores(net, few)
    np.testing.assert_allclose(net.predict(few), expected, rtol=1e-10, atol=1e-10)
    assert np.array_equal(np.argmax(expected, axis=1), full.predictions[:LAYER_CHECK_IMAGES])
    assert full.model == name.removesuffix("_params.pkl") and full.total == len(t) == 10_000
    assert full.accuracy == np.mean(full.predictions == t) == full.correct / 10_000
    assert full.accuracy == measured  # the book reports about 0.99


@pytest.mark.parametrize("name", [
    "simple_convnet_params.pkl",
    pytest.param("deep_convnet_params.pkl", marks=pytest.mark.slow),
])
def test_float16_weights_keep_accuracy(name, mnist, data_dir, full_test_set_evaluation):
    x, t = mnist
    params = load_params(name, data_dir)
    net16 = build_model({k: v.astype(np.float16) for k, v in params.items()})
    assert net16.dtype == np.float32
    n = 2000 if "deep" in name else len(x)  # deep net: a subset keeps the suite fast
    acc64 = float(np.mean(full_test_set_evaluation(name).predictions[:n] == t[:n]))
    acc16 = net16.accuracy(x[:n], t[:n])
    # the book's ch. 8 claim: half-precision weights do not change recognition accuracy
    assert abs(acc16 - acc64) <= 1 / n


class _Unreadable:
    """A lazily loaded tensor: shape and dtype known, values must not be needed."""

    def __init__(self, shape):
        self.shape = shape
        self.dtype = np.dtype(np.float32)

    def __array__(self, *args, **kwargs):
        raise AssertionError("detection read tensor values")


def test_detection_reads_no_values():
    lazy = {k: _Unreadable(s) for k, s in DeepConvNet.param_shapes().items()}
    assert detect_model(lazy) == "deep_convnet"
    lazy["W1"] = _Unreadable((30, 1, 5, 5))
    with pytest.raises(ModelError, match="not deep_convnet: W1 has shape"):
        detect_model(lazy)
