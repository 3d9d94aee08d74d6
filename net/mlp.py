"""The 3-layer network of *Deep Learning from Scratch*, chapter 3.

Layers 784 -> 50 -> 100 -> 10, sigmoid hidden units, softmax output::

    a1 = x·W1 + b1,  z1 = sigmoid(a1)
    a2 = z1·W2 + b2, z2 = sigmoid(a2)
    a3 = z2·W3 + b3, y  = softmax(a3)

Shapes for a batch of N images: ``x`` (N, 784), ``W1`` (784, 50), ``b1`` (50,),
``W2`` (50, 100), ``b2`` (100,), ``W3`` (100, 10), ``b3`` (10,), ``y`` (N, 10).

Computation dtype: nothing is cast. The arithmetic runs in numpy's natural promotion of the
input and the weights, as in the book: float32 images with the book's float32 weights compute
in float32; float16 weights with float32 images compute in float32; float64 weights compute in
float64.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from net.errors import ModelError, OptionError
from net.parallel import max_workers, run_groups

__all__ = [
    "BOOK_SIZES",
    "PARAM_NAMES",
    "MULTIPLY_ADDS_PER_IMAGE",
    "DEFAULT_BATCH_SIZE",
    "sigmoid",
    "softmax",
    "forward",
    "predict",
    "ThreeLayerNet",
]

BOOK_SIZES: tuple[int, int, int, int] = (784, 50, 100, 10)
"""Layer widths of the book's network: input, hidden 1, hidden 2, output."""

PARAM_NAMES: tuple[str, ...] = ("W1", "b1", "W2", "b2", "W3", "b3")

MULTIPLY_ADDS_PER_IMAGE: int = (
    BOOK_SIZES[0] * BOOK_SIZES[1] + BOOK_SIZES[1] * BOOK_SIZES[2] + BOOK_SIZES[2] * BOOK_SIZES[3]
)
"""Multiply-adds of the three matrix products for one image: 784·50 + 50·100 + 100·10 = 45,200."""

DEFAULT_BATCH_SIZE: int = 10_000
"""Rows in flight in :meth:`ThreeLayerNet.predict`: each of the W worker threads evaluates
groups of ``DEFAULT_BATCH_SIZE // W`` rows, one matrix product per layer per group.

Large groups, because the element-wise steps between the products are short numpy calls that
each take and give back the GIL: with groups of 500 rows (the old batch of 1000 on two
workers) the two threads mostly took turns, and the whole evaluation of the 10,000 test images
ran at 1.2x of one thread, against 1.9x with groups of 5,000 (``benchmarks/mlp_eval.py
--batch-sizes``). The buffers stay small: (5000, 100) float32 is 2 MB per worker.
"""


def sigmoid(x: ArrayLike) -> NDArray[np.floating[Any]]:
    """Logistic function ``1 / (1 + exp(-x))``, elementwise; same shape and float dtype as ``x``.

    This is the book's formula, so results are bit-identical to it. The formula is accurate
    for every input (relative error of a few ulp); its only weak point is that ``exp(-x)``
    overflows to ``inf`` for large negative ``x`` (below about -88.7 in float32, -709.8 in
    float64), where the result correctly becomes 0. That overflow is expected, so its warning
    is silenced here instead of branching on the sign, which measured 7x slower.
    """
    x = np.asarray(x)
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


def softmax(a: ArrayLike) -> NDArray[np.floating[Any]]:
    """Softmax over the last axis: rows of a (N, K) batch, or a single (K,) vector.

    The row maximum is subtracted first, so large scores cannot overflow; each row sums to 1.
    """
    a = np.asarray(a)
    shifted = a - np.max(a, axis=-1, keepdims=True)
    exp_a = np.exp(shifted)
    return exp_a / np.sum(exp_a, axis=-1, keepdims=True)


def forward(network: Mapping[str, ArrayLike], x: ArrayLike) -> NDArray[np.floating[Any]]:
    """Scores before the softmax, ``a3``: (N, 10) for x (N, 784), or (10,) for x (784,).

    ``network`` maps ``W1 b1 W2 b2 W3 b3`` to arrays; nothing is validated here
    (:class:`ThreeLayerNet` does that once).
    """
    a1 = np.matmul(x, network["W1"]) + network["b1"]
    z1 = sigmoid(a1)
    a2 = np.matmul(z1, network["W2"]) + network["b2"]
    z2 = sigmoid(a2)
    return np.matmul(z2, network["W3"]) + network["b3"]


def predict(network: Mapping[str, ArrayLike], x: ArrayLike) -> NDArray[np.floating[Any]]:
    """The book's ``predict(network, x)``: ``softmax(forward(network, x))``, same shapes."""
    return softmax(forward(network, x))


def _one_dtype(params: Mapping[str, NDArray[Any]], x_dtype: np.dtype[Any]) -> np.dtype[Any] | None:
    """The dtype every stage of :func:`predict` computes in for inputs of ``x_dtype``, or
    ``None`` when numpy's promotion changes it from one stage to the next (then
    :func:`_predict_into` would round differently and the book's code is used instead)."""
    dtype = np.result_type(x_dtype, params["W1"].dtype)
    for name in PARAM_NAMES[1:]:
        if np.result_type(dtype, params[name].dtype) != dtype:
            return None
    return dtype


def _sigmoid_inplace(a: NDArray[Any]) -> None:
    """:func:`sigmoid` with ``a`` as its only buffer: the same four operations, the same bits."""
    np.negative(a, out=a)
    with np.errstate(over="ignore"):
        np.exp(a, out=a)
    a += 1
    np.reciprocal(a, out=a)


def _predict_into(
    params: Mapping[str, NDArray[Any]],
    x: NDArray[Any],
    h1: NDArray[Any],
    h2: NDArray[Any],
    out: NDArray[Any],
) -> None:
    """:func:`predict` of the rows ``x`` written to ``out``, through the buffers ``h1``, ``h2``
    (at least ``len(x)`` rows each) instead of a new array per operation: the same operations
    in the same order, so the same bits, without the allocations and page faults of about
    twenty temporaries per group (measured 18% of a single-threaded evaluation)."""
    n = len(x)
    a1, a2 = h1[:n], h2[:n]
    np.matmul(x, params["W1"], out=a1)
    a1 += params["b1"]
    _sigmoid_inplace(a1)
    np.matmul(a1, params["W2"], out=a2)
    a2 += params["b2"]
    _sigmoid_inplace(a2)
    np.matmul(a2, params["W3"], out=out)
    out += params["b3"]
    out -= np.max(out, axis=-1, keepdims=True)
    np.exp(out, out=out)
    out /= np.sum(out, axis=-1, keepdims=True)


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(n) for n in shape) + (",)" if len(shape) == 1 else ")")


class ThreeLayerNet:
    """The chapter-3 network ``y = softmax(sigmoid(sigmoid(x·W1 + b1)·W2 + b2)·W3 + b3)``.

    Build it with :meth:`from_weights`, which checks every tensor's presence, dtype and shape.
    The arrays are used as given: never copied, cast or modified.
    """

    def __init__(
        self,
        params: Mapping[str, NDArray[np.floating[Any]]],
        sizes: tuple[int, int, int, int],
    ) -> None:
        """Wrap already validated ``params``; use :meth:`from_weights` instead."""
        self._params = MappingProxyType({name: params[name] for name in PARAM_NAMES})
        self.sizes = sizes

    @classmethod
    def from_weights(
        cls,
        weights: Mapping[str, Any],
        *,
        sizes: tuple[int, int, int, int] | None = BOOK_SIZES,
        source: str | os.PathLike[str] | None = None,
    ) -> ThreeLayerNet:
        """Check ``weights`` (a mapping with keys ``W1 b1 W2 b2 W3 b3``) and build the network.

        ``sizes`` are the layer widths (input, hidden 1, hidden 2, output) the weights must
        have; the book's (784, 50, 100, 10) by default, or ``None`` to take them from W1, W2
        and W3 and only check that the six tensors fit together. Other keys in ``weights``
        are ignored. ``source`` (a file name) prefixes error messages.

        Raises :class:`~net.errors.ModelError` naming the missing tensor, or the
        tensor with its expected and found dtype or shape.
        """
        missing = [name for name in PARAM_NAMES if name not in weights]
        if missing:
            found = ", ".join(sorted(map(str, weights))) or "no tensors"
            raise ModelError(
                f"missing tensor{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
                path=source,
                expected="tensors " + ", ".join(PARAM_NAMES),
                found=found,
            )
        params: dict[str, NDArray[np.floating[Any]]] = {}
        for name in PARAM_NAMES:
            value = np.asarray(weights[name])
            if not np.issubdtype(value.dtype, np.floating):
                raise ModelError(
                    path=source,
                    field=f"{name}.dtype",
                    expected="a floating-point dtype",
                    found=str(value.dtype),
                )
            expected_ndim = 2 if name.startswith("W") else 1
            if value.ndim != expected_ndim:
                raise ModelError(
                    path=source,
                    field=f"{name}.shape",
                    expected=f"{expected_ndim} dimensions",
                    found=_shape_text(value.shape),
                )
            params[name] = value

        if sizes is None:
            sizes = (
                params["W1"].shape[0],
                params["W1"].shape[1],
                params["W2"].shape[1],
                params["W3"].shape[1],
            )
        else:
            sizes = _check_sizes(sizes)
        d, h1, h2, k = sizes
        expected_shapes = {
            "W1": (d, h1),
            "b1": (h1,),
            "W2": (h1, h2),
            "b2": (h2,),
            "W3": (h2, k),
            "b3": (k,),
        }
        for name, shape in expected_shapes.items():
            if params[name].shape != shape:
                raise ModelError(
                    path=source,
                    field=f"{name}.shape",
                    expected=_shape_text(shape),
                    found=_shape_text(params[name].shape),
                )
        return cls(params, sizes)

    @property
    def params(self) -> Mapping[str, NDArray[np.floating[Any]]]:
        """The six tensors, read-only mapping ``W1 b1 W2 b2 W3 b3``."""
        return self._params

    def __repr__(self) -> str:
        widths = "-".join(map(str, self.sizes))
        dtypes = sorted({str(v.dtype) for v in self._params.values()})
        return f"ThreeLayerNet({widths}, dtype={'/'.join(dtypes)})"

    def _check_x(self, x: ArrayLike) -> NDArray[np.floating[Any]]:
        x = np.asarray(x)
        if x.ndim not in (1, 2) or x.shape[-1] != self.sizes[0]:
            raise ModelError(
                field="x.shape",
                expected=f"(N, {self.sizes[0]}) or ({self.sizes[0]},)",
                found=_shape_text(x.shape),
            )
        if not np.issubdtype(x.dtype, np.floating):
            raise ModelError(
                field="x.dtype",
                expected="floating-point pixels scaled to [0, 1] "
                "(net.mnist.load_images(normalize=True))",
                found=str(x.dtype),
            )
        return x

    def predict(
        self, x: ArrayLike, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> NDArray[np.floating[Any]]:
        """Softmax scores: (N, 10) for x (N, 784), or (10,) for one image x (784,).

        At most ``batch_size`` rows are in flight: they are evaluated in groups of
        ``batch_size // workers`` rows, one matrix product per layer per group, on one worker
        thread per CPU with one BLAS thread each (:mod:`net.parallel`). The result does not
        depend on ``batch_size`` or on the number of workers beyond the last bits of rounding.
        """
        x = self._check_x(x)
        batch_size = _check_batch_size(batch_size)
        params = self._params
        if x.ndim == 1:
            return predict(params, x)
        workers = min(max_workers(), batch_size)
        step = batch_size // workers
        probe = predict(params, x[:1])  # the result dtype, by numpy's own promotion
        y = np.empty((len(x), probe.shape[1]), dtype=probe.dtype)
        dtype = _one_dtype(params, x.dtype)
        if dtype != y.dtype:
            dtype = None

        def make_worker() -> Callable[[int, int], None]:
            if dtype is None:  # promotion changes the dtype between stages: the book's code

                def run(start: int, stop: int) -> None:
                    y[start:stop] = predict(params, x[start:stop])

                return run
            rows = min(step, len(x))
            h1 = np.empty((rows, self.sizes[1]), dtype)
            h2 = np.empty((rows, self.sizes[2]), dtype)

            def run_into(start: int, stop: int) -> None:
                _predict_into(params, x[start:stop], h1, h2, y[start:stop])

            return run_into

        run_groups(len(x), step, make_worker, workers)
        return y

    def predict_classes(self, x: ArrayLike, batch_size: int = DEFAULT_BATCH_SIZE) -> NDArray[Any]:
        """Predicted class ``argmax(y)`` per image: integer array (N,), or a scalar for x (784,)."""
        return np.argmax(self.predict(x, batch_size), axis=-1)

    def accuracy(self, x: ArrayLike, t: ArrayLike, batch_size: int = DEFAULT_BATCH_SIZE) -> float:
        """Fraction of images whose predicted class equals the label.

        ``x`` (N, 784); ``t`` labels (N,) or one-hot (N, 10).
        """
        x = self._check_x(x)
        if x.ndim != 2:
            raise ModelError(
                field="x.shape", expected=f"(N, {self.sizes[0]})", found=_shape_text(x.shape)
            )
        t = np.asarray(t)
        if t.ndim == 2:
            t = np.argmax(t, axis=1)
        if t.shape != (len(x),):
            raise ModelError(
                field="t.shape",
                expected=f"({len(x)},) labels or ({len(x)}, {self.sizes[3]}) one-hot",
                found=_shape_text(t.shape),
            )
        if len(x) == 0:
            raise ModelError(field="x", expected="at least one image", found="0 images")
        correct = int(np.count_nonzero(self.predict_classes(x, batch_size) == t))
        return correct / len(x)


def _check_sizes(sizes: Any) -> tuple[int, int, int, int]:
    try:
        values = tuple(sizes)
    except TypeError:
        values = ()
    if len(values) != 4 or not all(
        isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n > 0 for n in values
    ):
        raise OptionError(field="sizes", expected="four positive integers", found=sizes)
    return (int(values[0]), int(values[1]), int(values[2]), int(values[3]))


def _check_batch_size(batch_size: Any) -> int:
    if (
        not isinstance(batch_size, (int, np.integer))
        or isinstance(batch_size, bool)
        or batch_size < 1
    ):
        raise OptionError(field="batch_size", expected="a positive integer", found=batch_size)
    return int(batch_size)
