"""Inference layers of the book's convolutional networks (Deep Learning from Scratch, ch. 5, 7, 8).

Every layer has ``forward(x)`` and nothing else: no backward pass, no training state. The
semantics are the book's, so its trained weights give the book's results:

* :class:`Convolution` is a cross-correlation (no kernel flip) over zero-padded input, as the
  book computes it with ``im2col``.
* :class:`MaxPooling` takes the maximum over each window of the zero-padded input (the book's
  ``im2col`` pads with zeros; with ``pad=0``, as in both book networks, padding never matters).
* :class:`Affine` flattens ``(N, ...)`` to ``(N, -1)`` in C order, then ``x @ W + b``.
* :class:`Dropout` at inference multiplies by ``1 - ratio``, as the book's
  ``Dropout.forward(x, train_flg=False)`` does.

Images are ``(N, C, H, W)`` arrays. The work is vectorised: one copy builds the column matrix
(:func:`im2col`, or its per-image transpose inside :func:`conv2d`) and one matrix product does
the arithmetic. Results keep numpy's type promotion of the input and the weights.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from net.errors import ModelError

__all__ = [
    "conv_output_size",
    "im2col",
    "conv2d",
    "max_pool2d",
    "Convolution",
    "MaxPooling",
    "Relu",
    "Affine",
    "Dropout",
]


def conv_output_size(size: int, window: int, stride: int = 1, pad: int = 0) -> int:
    """Output length of a window sliding over ``size`` values.

    ``(size + 2*pad - window) // stride + 1``.

    Raises :class:`~net.errors.ModelError` when the window does not fit even once.
    """
    padded = size + 2 * pad
    if window < 1 or stride < 1 or pad < 0 or padded < window:
        raise ModelError(
            "window does not fit the input",
            expected="window <= size + 2*pad with window >= 1, stride >= 1, pad >= 0",
            found=f"size {size}, window {window}, stride {stride}, pad {pad}",
        )
    return (padded - window) // stride + 1


def _check_images(x: np.ndarray, what: str) -> None:
    if x.ndim != 4:
        raise ModelError(f"{what} input", expected="shape (N, C, H, W)", found=f"shape {x.shape}")


def _windows(x: np.ndarray, fh: int, fw: int, stride: int, pad: int) -> np.ndarray:
    """View ``(N, C, OH, OW, FH, FW)`` of the windows of zero-padded ``x`` (no copy but the pad)."""
    n, c, h, w = x.shape
    oh = conv_output_size(h, fh, stride, pad)
    ow = conv_output_size(w, fw, stride, pad)
    if pad:
        x = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    view = sliding_window_view(x, (fh, fw), axis=(2, 3))
    return view[:, :, ::stride, ::stride][:, :, :oh, :ow]


def im2col(
    x: np.ndarray, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0
) -> np.ndarray:
    """The book's ``im2col``: the windows of ``x`` as rows of a matrix.

    ``x`` is ``(N, C, H, W)``; the result is ``(N*OH*OW, C*filter_h*filter_w)``, row
    ``(n, oh, ow)`` holding window ``x_padded[n, :, oh*stride : oh*stride+filter_h,
    ow*stride : ow*stride+filter_w]`` in C order, exactly the book's layout. Unlike the book
    (which always returns float64) the result keeps the dtype of ``x``.
    """
    x = np.asarray(x)
    _check_images(x, "im2col")
    n, c = x.shape[:2]
    win = _windows(x, filter_h, filter_w, stride, pad)  # N, C, OH, OW, FH, FW
    oh, ow = win.shape[2:4]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * filter_h * filter_w)


def conv2d(
    x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int = 1, pad: int = 0
) -> np.ndarray:
    """The book's convolution (a cross-correlation): ``(N, C, H, W)`` -> ``(N, FN, OH, OW)``.

    ``out[n, f, i, j] = b[f] + sum_{c,u,v} W[f, c, u, v] * xp[n, c, i*stride + u, j*stride + v]``
    with ``W`` of shape ``(FN, C, FH, FW)``, ``b`` of shape ``(FN,)`` and ``xp`` the input
    zero-padded by ``pad`` on each side of H and W. Computed as one batched matrix product
    ``W (FN, C*FH*FW) @ cols (N, C*FH*FW, OH*OW)``, so the output needs no transpose.
    """
    x = np.asarray(x)
    _check_images(x, "conv2d")
    fn, c, fh, fw = W.shape
    if x.shape[1] != c:
        raise ModelError(
            "conv2d input channels", expected=f"{c} channels (W is {W.shape})", found=x.shape[1]
        )
    if b.shape != (fn,):
        raise ModelError("conv2d bias", expected=f"shape {(fn,)}", found=f"shape {b.shape}")
    n = x.shape[0]
    win = _windows(x, fh, fw, stride, pad)  # N, C, OH, OW, FH, FW
    oh, ow = win.shape[2:4]
    cols = win.transpose(0, 1, 4, 5, 2, 3).reshape(n, c * fh * fw, oh * ow)
    out = np.matmul(W.reshape(fn, c * fh * fw), cols)
    out += b.reshape(fn, 1)
    return out.reshape(n, fn, oh, ow)


def max_pool2d(
    x: np.ndarray, pool_h: int, pool_w: int, stride: int = 1, pad: int = 0
) -> np.ndarray:
    """Maximum over each ``pool_h x pool_w`` window: ``(N, C, H, W)`` -> ``(N, C, OH, OW)``.

    Padding, if any, is with zeros as in the book's ``im2col``-based ``Pooling``. The maximum
    is taken with one ``np.maximum`` per window offset (``pool_h * pool_w`` vectorised passes).
    """
    x = np.asarray(x)
    _check_images(x, "max_pool2d")
    h, w = x.shape[2:]
    oh = conv_output_size(h, pool_h, stride, pad)
    ow = conv_output_size(w, pool_w, stride, pad)
    if pad:
        x = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    out = None
    for u in range(pool_h):
        for v in range(pool_w):
            part = x[
                :, :, u : u + stride * (oh - 1) + 1 : stride, v : v + stride * (ow - 1) + 1 : stride
            ]
            out = part.copy() if out is None else np.maximum(out, part, out=out)
    assert out is not None  # pool_h, pool_w >= 1 is checked above
    return out


class Convolution:
    """Convolution layer: ``(N, C, H, W)`` -> ``(N, FN, OH, OW)``; see :func:`conv2d`.

    ``W`` is ``(FN, C, FH, FW)``, ``b`` is ``(FN,)``.
    """

    def __init__(self, W: np.ndarray, b: np.ndarray, stride: int = 1, pad: int = 0) -> None:
        W = np.asarray(W)
        b = np.asarray(b)
        if W.ndim != 4:
            raise ModelError(
                "Convolution W", expected="shape (FN, C, FH, FW)", found=f"shape {W.shape}"
            )
        if b.shape != (W.shape[0],):
            raise ModelError(
                "Convolution b", expected=f"shape {(W.shape[0],)}", found=f"shape {b.shape}"
            )
        if stride < 1 or pad < 0:
            raise ModelError(
                "Convolution", expected="stride >= 1 and pad >= 0", found=(stride, pad)
            )
        self.W = W
        self.b = b
        self.stride = stride
        self.pad = pad

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``(N, C, H, W)`` -> ``(N, FN, OH, OW)``."""
        return conv2d(x, self.W, self.b, self.stride, self.pad)

    def __repr__(self) -> str:
        return f"Convolution(W={self.W.shape}, stride={self.stride}, pad={self.pad})"


class MaxPooling:
    """Max-pooling layer: ``(N, C, H, W)`` -> ``(N, C, OH, OW)``; see :func:`max_pool2d`."""

    def __init__(self, pool_h: int, pool_w: int, stride: int = 1, pad: int = 0) -> None:
        if pool_h < 1 or pool_w < 1 or stride < 1 or pad < 0:
            raise ModelError(
                "MaxPooling",
                expected="pool_h, pool_w, stride >= 1 and pad >= 0",
                found=(pool_h, pool_w, stride, pad),
            )
        self.pool_h = pool_h
        self.pool_w = pool_w
        self.stride = stride
        self.pad = pad

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``(N, C, H, W)`` -> ``(N, C, OH, OW)``."""
        return max_pool2d(x, self.pool_h, self.pool_w, self.stride, self.pad)

    def __repr__(self) -> str:
        return f"MaxPooling({self.pool_h}, {self.pool_w}, stride={self.stride}, pad={self.pad})"


class Relu:
    """``max(x, 0)`` elementwise; any shape."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Any shape -> the same shape."""
        return np.maximum(x, 0)

    def __repr__(self) -> str:
        return "Relu()"


class Affine:
    """Fully connected layer: ``(N, ...)`` flattened to ``(N, D)``, then ``x @ W + b``: ``(N, M)``.

    ``W`` is ``(D, M)``, ``b`` is ``(M,)``.
    """

    def __init__(self, W: np.ndarray, b: np.ndarray) -> None:
        W = np.asarray(W)
        b = np.asarray(b)
        if W.ndim != 2:
            raise ModelError("Affine W", expected="shape (D, M)", found=f"shape {W.shape}")
        if b.shape != (W.shape[1],):
            raise ModelError(
                "Affine b", expected=f"shape {(W.shape[1],)}", found=f"shape {b.shape}"
            )
        self.W = W
        self.b = b

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``(N, ...)`` with ``prod(...) == D`` -> ``(N, M)``."""
        x = np.asarray(x)
        x2 = x.reshape(x.shape[0], -1)
        if x2.shape[1] != self.W.shape[0]:
            raise ModelError(
                "Affine input",
                expected=f"{self.W.shape[0]} values per row",
                found=f"shape {x.shape}",
            )
        return x2 @ self.W + self.b

    def __repr__(self) -> str:
        return f"Affine(W={self.W.shape})"


class Dropout:
    """Dropout at inference: ``x * (1 - ratio)``, exactly the book's ``train_flg=False`` path."""

    def __init__(self, ratio: float = 0.5) -> None:
        if not 0.0 <= ratio < 1.0:
            raise ModelError("Dropout ratio", expected="0 <= ratio < 1", found=ratio)
        self.dropout_ratio = float(ratio)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Any shape -> the same shape."""
        return x * (1.0 - self.dropout_ratio)

    def __repr__(self) -> str:
        return f"Dropout({self.dropout_ratio})"
