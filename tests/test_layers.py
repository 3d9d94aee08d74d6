"""Tests of net.layers: small hand-computed cases, and random cases against nested loops."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from net.errors import ModelError
from net.layers import (
    Affine,
    Convolution,
    Dropout,
    MaxPooling,
    Relu,
    conv2d,
    conv_output_size,
    im2col,
    max_pool2d,
)


# --------------------------------------------------------------------------- direct versions
# Slow and obviously correct: one output value at a time, straight from the definitions.
def direct_pad(x: np.ndarray, pad: int) -> np.ndarray:
    n, c, h, w = x.shape
    out = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=x.dtype)
    for i in range(h):
        for j in range(w):
            out[:, :, pad + i, pad + j] = x[:, :, i, j]
    return out


def direct_conv(x, W, b, stride, pad):
    xp = direct_pad(x, pad)
    n, c, hp, wp = xp.shape
    fn, _, fh, fw = W.shape
    oh = (hp - fh) // stride + 1
    ow = (wp - fw) // stride + 1
    out = np.zeros((n, fn, oh, ow))
    for k in range(n):
        for f in range(fn):
            for i in range(oh):
                for j in range(ow):
                    total = b[f]
                    for ch in range(c):
                        for u in range(fh):
                            for v in range(fw):
                                total += W[f, ch, u, v] * xp[k, ch, i * stride + u, j * stride + v]
                    out[k, f, i, j] = total
    return out


def direct_pool(x, ph, pw, stride, pad):
    xp = direct_pad(x, pad)
    n, c, hp, wp = xp.shape
    oh = (hp - ph) // stride + 1
    ow = (wp - pw) // stride + 1
    out = np.zeros((n, c, oh, ow), dtype=x.dtype)
    for k in range(n):
        for ch in range(c):
            for i in range(oh):
                for j in range(ow):
                    best = xp[k, ch, i * stride, j * stride]
                    for u in range(ph):
                        for v in range(pw):
                            best = max(best, xp[k, ch, i * stride + u, j * stride + v])
                    out[k, ch, i, j] = best
    return out


def direct_im2col(x, fh, fw, stride, pad):
    xp = direct_pad(x, pad)
    n, c, hp, wp = xp.shape
    oh = (hp - fh) // stride + 1
    ow = (wp - fw) // stride + 1
    rows = []
    for k in range(n):
        for i in range(oh):
            for j in range(ow):
                row = []
                for ch in range(c):
                    for u in range(fh):
                        for v in range(fw):
                            row.append(xp[k, ch, i * stride + u, j * stride + v])
                rows.append(row)
    return np.array(rows, dtype=x.dtype).reshape(n * oh * ow, c * fh * fw)


# --------------------------------------------------------------------------- hand-computed
def test_conv_output_size():
    assert conv_output_size(28, 5) == 24
    assert conv_output_size(14, 3, 1, 2) == 16
    assert conv_output_size(7, 3, 2, 1) == 4
    with pytest.raises(ModelError, match="window does not fit"):
        conv_output_size(2, 5)


def test_im2col_hand():
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    expected = [[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]]
    np.testing.assert_array_equal(im2col(x, 2, 2), expected)


def test_im2col_pad_stride_hand():
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    # Padded 4x4 input, 2x2 windows at rows/cols 0 and 2: each window holds one value.
    expected = [[0, 0, 0, 1], [0, 0, 2, 0], [0, 3, 0, 0], [4, 0, 0, 0]]
    np.testing.assert_array_equal(im2col(x, 2, 2, stride=2, pad=1), expected)


def test_conv_hand_sums():
    x = np.arange(16.0).reshape(1, 1, 4, 4)  # x[i, j] = 4i + j
    W = np.ones((1, 1, 2, 2))
    out = conv2d(x, W, np.array([0.5]))
    # window sum = 4*(4i + j) + (0 + 1 + 4 + 5) = 16i + 4j + 10
    np.testing.assert_array_equal(
        out[0, 0], [[10.5, 14.5, 18.5], [26.5, 30.5, 34.5], [42.5, 46.5, 50.5]]
    )


def test_conv_is_cross_correlation():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    W = np.array([[[[1.0, 0.0], [0.0, 0.0]]]])  # picks the top-left value of each window
    out = Convolution(W, np.zeros(1)).forward(x)
    np.testing.assert_array_equal(out[0, 0], x[0, 0, :3, :3])


def test_conv_pad_stride_channels_hand():
    x = np.stack([np.ones((3, 3)), 2 * np.ones((3, 3))])[None]  # 2 channels: ones, twos
    W = np.stack([np.ones((3, 3)), -np.ones((3, 3))])[None]  # +ones on channel 0, -ones on 1
    out = conv2d(x, W, np.array([1.0]), stride=2, pad=1)
    # each of the four windows covers 2x2 real pixels: 4*1 - 4*2 + 1 = -3
    np.testing.assert_array_equal(out, np.full((1, 1, 2, 2), -3.0))


def test_pool_hand():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(MaxPooling(2, 2, 2).forward(x)[0, 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(max_pool2d(x, 3, 3, 1)[0, 0], [[10, 11], [14, 15]])


def test_pool_pads_with_zeros_like_the_book():
    x = -np.ones((1, 1, 2, 2))
    np.testing.assert_array_equal(max_pool2d(x, 2, 2, stride=2, pad=1), np.zeros((1, 1, 2, 2)))


def test_relu_affine_dropout_hand():
    np.testing.assert_array_equal(Relu().forward(np.array([-1.5, 0.0, 2.0])), [0.0, 0.0, 2.0])
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]], [[[0.0, 1.0], [0.0, 1.0]]]])  # (2, 1, 2, 2)
    W = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, -1.0]])
    out = Affine(W, np.array([10.0, 20.0])).forward(x)
    np.testing.assert_array_equal(out, [[1 + 3 + 10, 2 + 3 - 4 + 20], [0 + 10, 1 - 1 + 20]])
    y = np.array([1.0, -3.0, 0.25])
    np.testing.assert_array_equal(Dropout(0.5).forward(y), [0.5, -1.5, 0.125])
    np.testing.assert_array_equal(Dropout(0.3).forward(y), y * (1.0 - 0.3))


# --------------------------------------------------------------------------- against direct
CONV_CASES = [
    # n, c, h, w, fn, fh, fw, stride, pad
    (2, 1, 7, 7, 3, 3, 3, 1, 0),
    (2, 3, 6, 9, 4, 3, 2, 1, 1),
    (1, 2, 9, 7, 2, 5, 3, 2, 0),
    (3, 2, 8, 5, 3, 3, 3, 2, 2),
    (2, 4, 10, 11, 5, 4, 3, 3, 1),
    (1, 1, 5, 5, 2, 5, 5, 1, 0),  # filter as large as the image
]


@pytest.mark.parametrize(("n", "c", "h", "w", "fn", "fh", "fw", "stride", "pad"), CONV_CASES)
def test_conv_matches_direct(n, c, h, w, fn, fh, fw, stride, pad):
    rng = np.random.default_rng(hash((n, c, h, w, fn, fh, fw, stride, pad)) % 2**32)
    x = rng.standard_normal((n, c, h, w))
    W = rng.standard_normal((fn, c, fh, fw))
    b = rng.standard_normal(fn)
    expected = direct_conv(x, W, b, stride, pad)
    out = Convolution(W, b, stride, pad).forward(x)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(
        im2col(x, fh, fw, stride, pad), direct_im2col(x, fh, fw, stride, pad)
    )


@pytest.mark.parametrize(
    ("n", "c", "h", "w", "ph", "pw", "stride", "pad"),
    [(2, 3, 6, 6, 2, 2, 2, 0), (1, 2, 7, 5, 2, 2, 2, 0), (2, 1, 8, 9, 3, 2, 1, 0),
     (1, 2, 7, 6, 3, 3, 2, 1), (2, 2, 5, 8, 2, 3, 3, 0)],
)  # fmt: skip
def test_pool_matches_direct(n, c, h, w, ph, pw, stride, pad):
    rng = np.random.default_rng(h * 100 + w)
    x = rng.standard_normal((n, c, h, w))
    np.testing.assert_array_equal(
        MaxPooling(ph, pw, stride, pad).forward(x), direct_pool(x, ph, pw, stride, pad)
    )


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 2), st.integers(1, 3), st.integers(1, 8), st.integers(1, 8),
    st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.integers(1, 3),
    st.integers(0, 2), st.integers(0, 2**32 - 1),
)  # fmt: skip
def test_conv_random_shapes(n, c, h, w, fn, fh, fw, stride, pad, seed):
    if h + 2 * pad < fh or w + 2 * pad < fw:
        with pytest.raises(ModelError):
            conv2d(np.zeros((n, c, h, w)), np.zeros((fn, c, fh, fw)), np.zeros(fn), stride, pad)
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    W = rng.standard_normal((fn, c, fh, fw))
    b = rng.standard_normal(fn)
    np.testing.assert_allclose(
        conv2d(x, W, b, stride, pad), direct_conv(x, W, b, stride, pad), rtol=1e-12, atol=1e-12
    )
    ph, pw = min(fh, h + 2 * pad), min(fw, w + 2 * pad)
    np.testing.assert_array_equal(
        max_pool2d(x, ph, pw, stride, pad), direct_pool(x, ph, pw, stride, pad)
    )


def test_affine_matches_direct():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 2, 3, 4))
    W = rng.standard_normal((24, 5))
    b = rng.standard_normal(5)
    expected = np.zeros((3, 5))
    for k in range(3):
        flat = [x[k, c, i, j] for c in range(2) for i in range(3) for j in range(4)]
        for m in range(5):
            expected[k, m] = b[m] + sum(flat[d] * W[d, m] for d in range(24))
    np.testing.assert_allclose(Affine(W, b).forward(x), expected, rtol=1e-12)


# --------------------------------------------------------------------------- dtypes and errors
def test_float32_stays_float32():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    W = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    b = np.zeros(3, np.float32)
    assert Convolution(W, b, pad=1).forward(x).dtype == np.float32
    assert MaxPooling(2, 2, 2).forward(x).dtype == np.float32
    assert Relu().forward(x).dtype == np.float32
    assert Dropout(0.5).forward(x).dtype == np.float32


def test_inputs_not_modified():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 2, 5, 5))
    W = rng.standard_normal((3, 2, 3, 3))
    b = rng.standard_normal(3)
    copies = [a.copy() for a in (x, W, b)]
    for layer in (Convolution(W, b, 2, 1), MaxPooling(2, 2, 1, 1), Relu(), Dropout(0.5)):
        layer.forward(x)
    for a, c in zip((x, W, b), copies, strict=True):
        np.testing.assert_array_equal(a, c)


def test_layer_errors():
    W = np.zeros((4, 3, 3, 3))
    with pytest.raises(ModelError, match="channels"):
        Convolution(W, np.zeros(4)).forward(np.zeros((1, 2, 5, 5)))
    with pytest.raises(ModelError, match=r"Convolution b.*\(4,\)"):
        Convolution(W, np.zeros(3))
    with pytest.raises(ModelError, match=r"shape \(N, C, H, W\)"):
        Convolution(W, np.zeros(4)).forward(np.zeros((3, 5, 5)))
    with pytest.raises(ModelError, match="window does not fit"):
        MaxPooling(3, 3, 1).forward(np.zeros((1, 1, 2, 2)))
    with pytest.raises(ModelError, match="Affine input"):
        Affine(np.zeros((6, 2)), np.zeros(2)).forward(np.zeros((2, 5)))
    with pytest.raises(ModelError):
        Dropout(1.5)


@pytest.mark.parametrize(("make", "field"), [
    (lambda: Convolution(np.zeros((2, 1, 3)), np.zeros(2)), "Convolution W"),
    (lambda: Convolution(np.zeros((2, 1, 3, 3)), np.zeros(3)), "Convolution b"),
    (lambda: Convolution(np.zeros((2, 1, 3, 3)), np.zeros(2), stride=0), "Convolution"),
    (lambda: MaxPooling(2, 0), "MaxPooling"),
    (lambda: Affine(np.zeros(3), np.zeros(3)), "Affine W"),
    (lambda: Affine(np.zeros((3, 4)), np.zeros(3)), "Affine b"),
    (lambda: conv2d(np.zeros((1, 1, 5, 5)), np.zeros((2, 1, 3, 3)), np.zeros(3)), "conv2d bias"),
], ids=["conv-W", "conv-b", "conv-stride", "pool", "affine-W", "affine-b", "conv2d-bias"])
def test_layers_refuse_bad_shapes_naming_what(make, field) -> None:
    with pytest.raises(ModelError, match=rf"^{field} \(expected .*, found "):
        make()


def test_layers_describe_themselves() -> None:
    layers = [Convolution(np.zeros((2, 1, 3, 3)), np.zeros(2), pad=1), MaxPooling(2, 2, 2),
              Relu(), Affine(np.zeros((8, 3)), np.zeros(3)), Dropout(0.25)]
    assert [repr(x) for x in layers] == [
        "Convolution(W=(2, 1, 3, 3), stride=1, pad=1)", "MaxPooling(2, 2, stride=2, pad=0)",
        "Relu()", "Affine(W=(8, 3))", "Dropout(0.25)"]
