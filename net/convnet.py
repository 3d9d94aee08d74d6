"""The book's convolutional networks for inference (Deep Learning from Scratch, ch. 7 and 8).

:class:`SimpleConvNet` (ch. 7)::

    conv 30x5x5 (stride 1, pad 0) - relu - pool 2x2 (stride 2) - affine 4320x100 - relu
    - affine 100x10

:class:`DeepConvNet` (ch. 8)::

    conv 16x3x3 - relu - conv 16x3x3 - relu - pool
    conv 32x3x3 - relu - conv 32x3x3 - relu - pool
    conv 64x3x3 - relu - conv 64x3x3 - relu - pool
    affine 1024x50 - relu - dropout(0.5) - affine 50x10 - dropout(0.5)

with conv strides 1, conv pads 1, 1, 1, 2, 1, 1 and pools 2x2 stride 2. At inference the book's
dropout multiplies by 0.5; before the last affine layer that changes the scores (because of its
bias), after it only their scale.

Both are built from the book's parameter dicts (``W1 b1 ... Wn bn``) with ``from_weights``, which
checks every name and shape. ``predict(x, batch_size)`` returns the scores before softmax, as the
book's ``predict``; ``accuracy(x, t, batch_size)`` the fraction of correct labels.

Compute dtype
-------------
The network computes in ``numpy.result_type(float32, *weights)``: float64 weights are evaluated
in float64, float32 weights in float32, and float16 weights are upcast once to float32 (numpy has
no fast float16 matrix product; the book's float16 experiment also computes in wider precision).
Inputs are converted to the compute dtype.

How it is fast
--------------
``net.layers`` is the book's layer list (:mod:`net.layers`), usable as a plain reference path.
``predict`` runs the same arithmetic with a planned engine instead: activations are kept
channel-major, ``(C, N, H, W)``, so each convolution is a single matrix product
``W (FN, C*FH*FW) @ cols (C*FH*FW, N*OH*OW)`` whose result is already channel-major for the next
layer, with no transposes. Images go through all layers a small group at a time (see
:meth:`ConvNet.group_size`) so that a group's buffers stay in the CPU caches; the buffers
(zero-bordered padded inputs, column matrices) are allocated once per worker and ``predict``
call and reused for every group, and each layer writes straight into the next one's padded
input. Bias, ReLU and max-pooling are fused where that is exact: max-pooling commutes with
adding a per-channel constant and with ReLU, so the bias is added after pooling, on a quarter
of the values.

Groups are independent, so they run on one worker thread per CPU, each with one BLAS thread
(:mod:`net.parallel`): the copies and element-wise work use every core, and no matrix product
waits on BLAS helper threads, which on a busy machine made evaluation slower than the book's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.lib.stride_tricks import as_strided

from net.errors import ModelError, OptionError
from net.layers import Affine, Convolution, Dropout, MaxPooling, Relu, conv_output_size
from net.parallel import max_workers, run_groups

__all__ = [
    "ConvSpec",
    "ConvNet",
    "SimpleConvNet",
    "DeepConvNet",
    "WeightProblem",
    "check_weights",
]

# Images go through the whole network in groups whose largest column matrix is about this size:
# small enough that a group's buffers stay in the CPU caches from one layer to the next, large
# enough that each matrix product is efficient. With one BLAS thread each on two workers
# (DeepConvNet, float64, 2,000 images, 2 cores at load 12-13, CPU time medians of 3), groups
# whose column matrix is 2, 3, 4 and 8 MiB cost 1.43, 1.47, 1.46 and 1.65 s: two workers share
# the caches that one had (issue 20; the single-threaded optimum had been 8 MiB).
_GROUP_BYTES = 3 << 20


@dataclass(frozen=True)
class ConvSpec:
    """One convolution stage: conv ``filters x size x size`` - relu - optional 2x2 max-pool."""

    filters: int
    size: int
    stride: int = 1
    pad: int = 0
    pool: bool = False


class ConvNet:
    """Base class of the book's conv nets: conv stages, then affine layers.

    Subclasses set :attr:`input_shape`, :attr:`conv_specs`, :attr:`hidden_sizes`,
    :attr:`output_size` and :attr:`dropout_ratio` (``None`` for no dropout). Parameters are
    numbered ``W1 b1`` for the first convolution up to ``Wn bn`` for the last affine layer.
    There must be at least one conv stage.
    """

    input_shape: ClassVar[tuple[int, int, int]] = (1, 28, 28)
    conv_specs: ClassVar[tuple[ConvSpec, ...]] = ()
    hidden_sizes: ClassVar[tuple[int, ...]] = ()
    output_size: ClassVar[int] = 10
    dropout_ratio: ClassVar[float | None] = None
    pool_size: ClassVar[int] = 2

    # ----------------------------------------------------------------- architecture
    @classmethod
    def _feature_shapes(cls) -> list[tuple[int, int, int]]:
        """Shape ``(C, H, W)`` of one image after each conv stage (including its pool)."""
        c, h, w = cls.input_shape
        shapes = []
        for spec in cls.conv_specs:
            h = conv_output_size(h, spec.size, spec.stride, spec.pad)
            w = conv_output_size(w, spec.size, spec.stride, spec.pad)
            c = spec.filters
            if spec.pool:
                h = conv_output_size(h, cls.pool_size, cls.pool_size)
                w = conv_output_size(w, cls.pool_size, cls.pool_size)
            shapes.append((c, h, w))
        return shapes

    @classmethod
    def param_shapes(cls) -> dict[str, tuple[int, ...]]:
        """Expected name -> shape of every parameter, in layer order."""
        shapes: dict[str, tuple[int, ...]] = {}
        c = cls.input_shape[0]
        for i, spec in enumerate(cls.conv_specs, start=1):
            shapes[f"W{i}"] = (spec.filters, c, spec.size, spec.size)
            shapes[f"b{i}"] = (spec.filters,)
            c = spec.filters
        last = cls._feature_shapes()[-1] if cls.conv_specs else cls.input_shape
        d = int(np.prod(last))
        for j, m in enumerate((*cls.hidden_sizes, cls.output_size), start=len(cls.conv_specs) + 1):
            shapes[f"W{j}"] = (d, m)
            shapes[f"b{j}"] = (m,)
            d = m
        return shapes

    @classmethod
    def multiply_adds_per_image(cls) -> int:
        """Multiply-adds of one forward pass of one image (convolutions and affine layers).

        Computed from the architecture: ``FN*C*FH*FW*OH*OW`` per convolution and ``D*M`` per
        affine layer. Bias additions, ReLU, pooling comparisons and dropout scaling are not
        counted.
        """
        total = 0
        c, h, w = cls.input_shape
        for spec in cls.conv_specs:
            oh = conv_output_size(h, spec.size, spec.stride, spec.pad)
            ow = conv_output_size(w, spec.size, spec.stride, spec.pad)
            total += spec.filters * c * spec.size * spec.size * oh * ow
            c, h, w = spec.filters, oh, ow
            if spec.pool:
                h = conv_output_size(h, cls.pool_size, cls.pool_size)
                w = conv_output_size(w, cls.pool_size, cls.pool_size)
        for shape in cls.param_shapes().values():
            if len(shape) == 2:
                total += shape[0] * shape[1]
        return total

    @classmethod
    def check_weights(cls, weights: Mapping[str, Any]) -> list[WeightProblem]:
        """Every way ``weights`` fails to fit this network; an empty list means it fits."""
        return check_weights(cls.param_shapes(), weights)

    # ----------------------------------------------------------------- construction
    def __init__(self, weights: Mapping[str, Any]) -> None:
        """Build the network from the book's parameter dict; see :meth:`from_weights`."""
        if not self.conv_specs:
            raise TypeError(f"{type(self).__name__} defines no conv_specs; subclass ConvNet")
        problems = self.check_weights(weights)
        if problems:
            raise problems[0].error(type(self).__name__, problems[1:])
        self.dtype: np.dtype = np.result_type(
            np.float32, *(np.asarray(weights[name]).dtype for name in self.param_shapes())
        )
        # Own copies in the compute dtype: the caller's arrays are never shared or modified.
        self.params: dict[str, np.ndarray] = {
            name: np.array(weights[name], dtype=self.dtype, order="C", copy=True)
            for name in self.param_shapes()
        }
        self.layers: list[Any] = self._build_layers()
        convs = [layer for layer in self.layers if isinstance(layer, Convolution)]
        self._stages = [
            _Stage(conv, spec.pool, self.pool_size)
            for conv, spec in zip(convs, self.conv_specs, strict=True)
        ]
        first_affine = next(i for i, layer in enumerate(self.layers) if isinstance(layer, Affine))
        self._tail = self.layers[first_affine:]

    @classmethod
    def from_weights(cls, mapping: Mapping[str, Any]) -> ConvNet:
        """Build the network from a dict ``W1 b1 ... Wn bn`` (the book's ``params``).

        Raises :class:`ModelError` naming the first tensor that is missing, unexpected, not
        floating point, or of the wrong shape (with the expected and found shape).
        """
        return cls(mapping)

    def _build_layers(self) -> list[Any]:
        """The book's layer list: Convolution, Relu, [MaxPooling] ..., Affine, Relu, ..."""
        p = self.params
        layers: list[Any] = []
        for i, spec in enumerate(self.conv_specs, start=1):
            layers.append(Convolution(p[f"W{i}"], p[f"b{i}"], spec.stride, spec.pad))
            layers.append(Relu())
            if spec.pool:
                layers.append(MaxPooling(self.pool_size, self.pool_size, self.pool_size))
        first = len(self.conv_specs) + 1
        last = first + len(self.hidden_sizes)
        for j in range(first, last + 1):
            layers.append(Affine(p[f"W{j}"], p[f"b{j}"]))
            if j < last:
                layers.append(Relu())
            if self.dropout_ratio is not None:
                layers.append(Dropout(self.dropout_ratio))
        return layers

    # ----------------------------------------------------------------- inference
    def _images(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        c, h, w = self.input_shape
        if x.ndim == 2 and x.shape[1] == c * h * w:
            x = x.reshape(x.shape[0], c, h, w)
        if x.ndim != 4 or x.shape[1:] != self.input_shape:
            raise ModelError(
                f"{type(self).__name__} input x",
                expected=f"shape (N, {c}, {h}, {w}) or (N, {c * h * w})",
                found=f"shape {x.shape}",
            )
        return x

    def predict_layers(self, x: Any) -> np.ndarray:
        """Scores ``(N, 10)`` through the book's layer list, all images at once.

        The plain reference path (the book's ``predict``); :meth:`predict` gives the same
        scores faster and in bounded memory.
        """
        out = self._images(x).astype(self.dtype, copy=False)
        for layer in self.layers:
            out = layer.forward(out)
        return out

    def group_size(self) -> int:
        """Images per step of the engine: as many as keep the largest column matrix cache-sized."""
        itemsize = self.dtype.itemsize
        largest = 1
        c, h, w = self.input_shape
        for spec in self.conv_specs:
            oh = conv_output_size(h, spec.size, spec.stride, spec.pad)
            ow = conv_output_size(w, spec.size, spec.stride, spec.pad)
            largest = max(largest, c * spec.size * spec.size * oh * ow * itemsize)
            c, h, w = spec.filters, oh, ow
            if spec.pool:
                h = conv_output_size(h, self.pool_size, self.pool_size)
                w = conv_output_size(w, self.pool_size, self.pool_size)
        return max(1, _GROUP_BYTES // largest)

    def predict(self, x: Any, batch_size: int = 100) -> np.ndarray:
        """Scores before softmax, ``(N, 10)`` in the compute dtype, for images ``(N, 1, 28, 28)``.

        Flattened images ``(N, 784)`` are accepted too. At most ``batch_size`` images are in
        flight at a time, so memory use is bounded by ``batch_size``, not ``N``; the engine
        steps through them in groups of ``min(batch_size // workers, self.group_size())``
        images, the size that keeps its buffers in the CPU caches (3 images for DeepConvNet in
        float64), on one worker thread per CPU (:mod:`net.parallel`). The scores do not depend
        on the number of workers beyond the last bits of rounding (where it changes the group
        size, hence the shapes of the matrix products).
        """
        x = self._images(x)
        batch_size = _check_batch_size(batch_size)
        workers = min(max_workers(), batch_size)
        step = min(batch_size // workers, self.group_size())
        n = x.shape[0]
        scores = np.empty((n, self.output_size), dtype=self.dtype)

        def make_worker() -> Callable[[int, int], None]:
            engines: dict[int, _Engine] = {}  # this worker's buffers, by group size

            def run(start: int, stop: int) -> None:
                engine = engines.get(stop - start)
                if engine is None:  # once, and once more for a last partial group
                    engine = engines[stop - start] = _Engine(self, stop - start)
                scores[start:stop] = engine.run(x[start:stop])

            return run

        run_groups(n, step, make_worker, workers)
        return scores

    def accuracy(self, x: Any, t: Any, batch_size: int = 100) -> float:
        """Fraction of images whose highest score is the label.

        ``t`` holds labels ``(N,)`` or one-hot rows ``(N, 10)``. Unlike the book, a last partial
        batch is counted too.
        """
        t = np.asarray(t)
        if t.ndim == 2:
            t = np.argmax(t, axis=1)
        n = np.asarray(x).shape[0]
        if t.shape != (n,):
            raise ModelError(
                "labels t", expected=f"shape ({n},) or ({n}, 10)", found=f"shape {t.shape}"
            )
        if n == 0:
            return 0.0
        y = np.argmax(self.predict(x, batch_size), axis=1)
        return float(np.count_nonzero(y == t)) / n

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dtype={self.dtype})"


class SimpleConvNet(ConvNet):
    """The book's ch. 7 ``SimpleConvNet``: conv 30x5x5 - relu - pool - affine - relu - affine.

    Parameters ``W1 (30, 1, 5, 5) b1 (30,) W2 (4320, 100) b2 (100,) W3 (100, 10) b3 (10,)``.
    """

    conv_specs = (ConvSpec(30, 5, stride=1, pad=0, pool=True),)
    hidden_sizes = (100,)


class DeepConvNet(ConvNet):
    """The book's ch. 8 ``DeepConvNet``: six 3x3 convolutions, three pools, two affine layers.

    Parameters ``W1 (16, 1, 3, 3)``, ``W2 (16, 16, 3, 3)``, ``W3 (32, 16, 3, 3)``,
    ``W4 (32, 32, 3, 3)``, ``W5 (64, 32, 3, 3)``, ``W6 (64, 64, 3, 3)``, ``W7 (1024, 50)``,
    ``W8 (50, 10)`` and their biases. Dropout (0.5) follows both affine layers.
    """

    conv_specs = (
        ConvSpec(16, 3, pad=1),
        ConvSpec(16, 3, pad=1, pool=True),
        ConvSpec(32, 3, pad=1),
        ConvSpec(32, 3, pad=2, pool=True),
        ConvSpec(64, 3, pad=1),
        ConvSpec(64, 3, pad=1, pool=True),
    )
    hidden_sizes = (50,)
    dropout_ratio = 0.5


@dataclass(frozen=True)
class WeightProblem:
    """One way a weights mapping does not fit a network.

    ``kind`` is ``"missing"``, ``"shape"``, ``"dtype"`` or ``"unexpected"``; ``name`` is the
    tensor; ``expected`` and ``found`` describe the mismatch.
    """

    kind: str
    name: str
    expected: str | None = None
    found: str | None = None

    def __str__(self) -> str:
        if self.kind == "missing":
            return f"missing {self.name} (expected {self.expected})"
        if self.kind == "unexpected":
            return f"unexpected {self.name}"
        return f"{self.name} has {self.found}, expected {self.expected}"

    def error(self, network: str, others: Sequence[WeightProblem] = ()) -> ModelError:
        """This problem as a :class:`ModelError` naming the tensor; ``others`` go in the hint."""
        hint = None
        if others:
            listed = "; ".join(str(p) for p in others[:5])
            hint = f"also {listed}" + ("; ..." if len(others) > 5 else "")
        message = {
            "missing": f"missing tensor for {network}",
            "unexpected": f"tensor not part of {network}",
        }.get(self.kind, f"does not fit {network}")
        return ModelError(
            message, field=self.name, expected=self.expected, found=self.found, hint=hint
        )


def check_weights(
    expected_shapes: Mapping[str, tuple[int, ...]], weights: Mapping[str, Any]
) -> list[WeightProblem]:
    """Compare ``weights`` with ``expected_shapes``: missing, misshapen, non-float, extra tensors.

    Returns the problems in the order of ``expected_shapes`` (extra tensors last, sorted).
    """
    problems: list[WeightProblem] = []
    for name, shape in expected_shapes.items():
        if name not in weights:
            problems.append(WeightProblem("missing", name, f"shape {shape}"))
            continue
        value = weights[name]
        found = tuple(np.shape(value))
        if found != shape:
            problems.append(WeightProblem("shape", name, f"shape {shape}", f"shape {found}"))
            continue
        dtype = getattr(value, "dtype", None)  # no need to read the values of an array
        if dtype is None:
            dtype = np.asarray(value).dtype
        if not np.issubdtype(dtype, np.floating):
            problems.append(
                WeightProblem("dtype", name, "a floating-point array", f"dtype {dtype}")
            )
    for name in sorted(set(weights) - set(expected_shapes), key=str):
        problems.append(
            WeightProblem("unexpected", str(name), f"only {', '.join(expected_shapes)}")
        )
    return problems


def _check_batch_size(batch_size: Any) -> int:
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise OptionError(field="batch_size", expected="a positive integer", found=batch_size)
    return int(batch_size)


# --------------------------------------------------------------------------- engine
@dataclass
class _Stage:
    conv: Convolution
    pool: bool
    pool_size: int


class _Engine:
    """Buffers and steps to run one batch of ``n`` images, channel-major ``(C, N, H, W)``."""

    def __init__(self, net: ConvNet, n: int) -> None:
        dtype = net.dtype
        self.n = n
        self.tail: Sequence[Any] = net._tail
        c, h, w = net.input_shape
        self.steps: list[_ConvStep] = []
        for stage in net._stages:
            step = _ConvStep(stage, c, h, w, n, dtype)
            self.steps.append(step)
            c, h, w = step.out_chw
        self.features = np.empty((c, n, h, w), dtype=dtype)
        for step, nxt in zip(self.steps[:-1], self.steps[1:], strict=True):
            step.dst = nxt.interior
        self.steps[-1].dst = self.features

    def run(self, x: np.ndarray) -> np.ndarray:
        np.copyto(self.steps[0].interior, x.transpose(1, 0, 2, 3), casting="same_kind")
        for step in self.steps:
            step.run()
        out = self.features.transpose(1, 0, 2, 3).reshape(self.n, -1)
        for layer in self.tail:
            out = layer.forward(out)
        return out


class _ConvStep:
    """conv - relu - [max-pool] on channel-major buffers; writes into ``dst``."""

    def __init__(self, stage: _Stage, c: int, h: int, w: int, n: int, dtype: np.dtype) -> None:
        conv = stage.conv
        fn, _, fh, fw = conv.W.shape
        s, p = conv.stride, conv.pad
        oh = conv_output_size(h, fh, s, p)
        ow = conv_output_size(w, fw, s, p)
        self.W = conv.W.reshape(fn, -1)
        self.b = conv.b.reshape(fn, 1, 1, 1)
        # Zero-bordered input; the previous step writes the interior, the border stays zero.
        self.xpad = np.zeros((c, n, h + 2 * p, w + 2 * p), dtype=dtype)
        self.interior = self.xpad[:, :, p : p + h, p : p + w]
        sc, sn, sh, sw = self.xpad.strides
        # cols[c, u, v, n, i, j] = xpad[c, n, i*s + u, j*s + v]: a view, copied once per group.
        self.windows = as_strided(
            self.xpad, (c, fh, fw, n, oh, ow), (sc, sh, sw, sn, sh * s, sw * s), writeable=False
        )
        self.cols = np.empty((c, fh, fw, n, oh, ow), dtype=dtype)
        self.out = np.empty((fn, n, oh, ow), dtype=dtype)
        self.pool = stage.pool
        if stage.pool:
            k = stage.pool_size
            ph, pw = conv_output_size(oh, k, k), conv_output_size(ow, k, k)
            self.pool_views = [
                self.out[:, :, u : u + k * (ph - 1) + 1 : k, v : v + k * (pw - 1) + 1 : k]
                for u in range(k)
                for v in range(k)
            ]
            self.pooled = np.empty((fn, n, ph, pw), dtype=dtype)
            self.out_chw = (fn, ph, pw)
        else:
            self.out_chw = (fn, oh, ow)
        self.dst: np.ndarray = self.out  # replaced by the engine

    def run(self) -> None:
        np.copyto(self.cols, self.windows)
        fn, k = self.W.shape
        np.matmul(self.W, self.cols.reshape(k, -1), out=self.out.reshape(fn, -1))
        if self.pool:
            # max-pool(relu(x + b)) == relu(max-pool(x) + b) exactly: max commutes with adding a
            # per-channel constant (rounding is monotonic) and with relu.
            views = self.pool_views
            if len(views) == 1:
                np.copyto(self.pooled, views[0])
            else:
                np.maximum(views[0], views[1], out=self.pooled)
            for view in views[2:]:
                np.maximum(self.pooled, view, out=self.pooled)
            self.pooled += self.b
            np.maximum(self.pooled, 0, out=self.dst)
        else:
            self.out += self.b
            np.maximum(self.out, 0, out=self.dst)
