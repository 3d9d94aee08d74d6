"""The smallest file that keeps the network's predictions: ``weightstore shrink``.

For the book's 3-layer network (``W1 b1 W2 b2 W3 b3``), :func:`shrink` searches the bits
of each weight matrix and writes the smallest file whose network predicts the same class
as the original on every calibration image (or on a given fraction of them). The
calibration images are the first 1,000 MNIST test images; **their labels are never read**:
the only target is the original network's own predictions.

What makes the file small, each measured by the size of the file actually written:

- **Pruning**: the rows of ``W1`` for pixels that are 0 in every calibration image never
  take part in a calibration prediction; their codes are 0, which the compressor stores
  almost for free (runs of zeros).
- **Error-compensating rounding** (GPTQ, Frantar et al. 2022): the rows of each weight
  matrix are rounded one at a time and the rounding error of each row is pushed onto the
  rows not yet rounded, weighted by the inverse of the calibration inputs' second-moment
  matrix ``H = X^T X``. The layer's outputs on the calibration inputs then change far less
  than with rounding to nearest.
- **Layer by layer against the original**: each next layer is refitted (least squares on
  the calibration set) so that, fed the already quantized layers' outputs, it gives the
  original network's pre-activations, then quantized the same way; biases absorb the
  mean error and are stored as float16.
- **Entropy-friendly codes**: each candidate is measured with its codes bit-packed and
  with them one per byte (:func:`weightstore.precision.pack`), and the smaller file is
  kept: one code per byte lets the compressor's Huffman stage code each byte close to its
  entropy (a 3-bit code of trained weights costs about 2 bits), packing wins when the
  codes are spread evenly. Scales are float16.

Search: start with 8 bits everywhere; repeatedly try one bit less for each matrix and
keep the change that gives the smallest file while agreement stays at least
``min_agreement``; stop when no change is allowed. Quantized files use the layout of
:mod:`weightstore.precision` (``W1.q`` codes, ``W1.scale``), so every reader restores them.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from net import mlp, mnist

from .. import api, registry
from ..codec import Codec
from ..errors import ModelError, OptionError
from ..model import Weights, as_weights
from ..precision import QuantizedTensor, codes_for, dequantize, pack, qmax, quantize_tensor
from . import data
from ._neterrors import net_errors

__all__ = ["ShrinkStep", "ShrinkResult", "shrink", "shrink_file", "calibration_images",
           "default_codec", "CALIBRATION_IMAGES"]

#: How many of the first MNIST test images calibrate the search.
CALIBRATION_IMAGES = 1000
LAYERS = ("W1", "W2", "W3")
BIASES = ("b1", "b2", "b3")
Progress = Callable[[str], None]


def calibration_images(data_dir: str | os.PathLike[str] | None = None,
                       count: int = CALIBRATION_IMAGES) -> np.ndarray:
    """The first *count* MNIST test images, float32 (count, 784) in [0, 1].

    Only the image file is resolved and read: the labels are not opened.
    """
    path = data.resolve(mnist.TEST_IMAGES, data_dir)
    with net_errors():
        return mnist.load_images(path)[:count]


def default_codec() -> tuple[str, dict[str, Any]]:
    """The compact codec ``wsc`` where it is registered, else zstd level 19 over npz."""
    if "wsc" in registry.names():
        return "wsc", {}
    return "zstd", {"inner": "npz", "level": 19}


# --- the network ---------------------------------------------------------------------


def _sigmoid(a: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-a))


def _predict(w: Weights | dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Classes the book's network gives for *x*, computed as :mod:`net.mlp` does."""
    return np.argmax(mlp.forward(w, x), axis=1)


@net_errors()
def _check_mlp(w: Weights) -> None:
    mlp.ThreeLayerNet.from_weights(w)  # raises ModelError naming what does not fit
    extra = [k for k in w if k not in (*LAYERS, *BIASES)]
    if extra:
        raise ModelError(field="tensors", expected="only W1 b1 W2 b2 W3 b3", found=extra)


# --- error-compensating quantization -----------------------------------------------------


#: Mantissa bits kept in a stored scale (float16 has 10): scales then take few distinct byte
#: values, which the compressor's Huffman stage codes in a few bits each.
SCALE_MANTISSA_BITS = 3
#: How much more an image near a class boundary counts in the fits: image n counts
#: ``1 + FOCUS / margin_n``, its margin the original's top score minus the runner-up's.
FOCUS = 1.0
#: Bits of the per-tensor codes that store each bias.
BIAS_BITS = 8


def coarse_scale(scale: np.ndarray, mantissa_bits: int = SCALE_MANTISSA_BITS) -> np.ndarray:
    """Positive float16 *scale* rounded up to *mantissa_bits* bits of mantissa.

    Up, so that the largest weight of a group still fits the codes without clipping.
    """
    drop = 10 - mantissa_bits
    raw = np.asarray(scale, dtype=np.float16).view(np.uint16).astype(np.uint32)
    raw = (raw + (1 << drop) - 1) >> drop << drop
    return raw.astype(np.uint16).view(np.float16)


def _inverse_factor(h: np.ndarray, damp: float) -> tuple[np.ndarray, np.ndarray]:
    """``(U, dead)``: the upper Cholesky factor of the damped ``H^-1`` and the rows whose
    input is always 0."""
    h = np.array(h, dtype=np.float64)
    dead = np.diag(h) == 0
    h[dead, dead] = 1
    h += damp * np.mean(np.diag(h)) * np.eye(len(h))
    return np.linalg.cholesky(np.linalg.inv(h)).T, dead


def gptq(w: np.ndarray, h: np.ndarray | tuple[np.ndarray, np.ndarray], bits: int, *,
         block: int | None = None, damp: float = 0.01, dtype: str = "float32"
         ) -> QuantizedTensor:
    """Quantize ``w`` (inputs, outputs) row by row, pushing each row's rounding error onto
    the rows after it through ``H^-1`` (*h*: the inputs' second moments, inputs x inputs,
    or its :func:`_inverse_factor`).

    Rows whose input is always 0 (``h[i, i] == 0``) get code 0. Scales (float16, see
    :func:`coarse_scale`) are per column, or per *block* rows of a column taken from the
    compensated weights as each block starts.
    """
    u, dead = h if isinstance(h, tuple) else _inverse_factor(h, damp)
    w = np.array(w, dtype=np.float64)
    n, m = w.shape
    top = qmax(bits)
    w[dead] = 0
    codes = np.zeros((n, m), dtype=np.int8)
    if block:
        scales = np.zeros((-(-n // block), m), dtype=np.float16)
    else:
        scales = coarse_scale(np.abs(w).max(axis=0) / top)
        step = scales.astype(np.float64)
    for i in range(n):
        if block and i % block == 0:
            scales[i // block] = coarse_scale(np.abs(w[i:i + block]).max(axis=0) / top)
            step = scales[i // block].astype(np.float64)
        if dead[i]:
            continue
        codes[i] = codes_for(w[i], step, bits)
        err = (w[i] - codes[i] * step) / u[i, i]
        w[i + 1:] -= np.outer(u[i, i + 1:], err)
    return QuantizedTensor(codes, scales, bits, dtype, block)


def _refit(inputs: np.ndarray, target: np.ndarray, weight: np.ndarray,
           ridge: float = 1e-5) -> np.ndarray:
    """Weighted least squares ``[inputs, 1] @ Wb ≈ target`` (a weight per image) with a
    small ridge; returns ``Wb``."""
    a = np.hstack([inputs, np.ones((len(inputs), 1))])
    g = (a * weight[:, None]).T @ a
    g += ridge * np.mean(np.diag(g)) * np.eye(len(g))
    return np.linalg.solve(g, (a * weight[:, None]).T @ target)


class Calibrated:
    """The book's network and its calibration images, quantized layer by layer on demand.

    Each layer's result depends on the bits of the layers before it, so results are kept
    per prefix of bits: a search that changes only ``W3`` redoes only ``W3``.
    """

    def __init__(self, weights: Weights, x: np.ndarray, damp: float = 0.01,
                 focus: float = FOCUS) -> None:
        self.weights = weights
        self.x = np.asarray(x, dtype=np.float64)
        self.damp = damp
        self.ref = {k: np.asarray(weights[k], dtype=np.float64) for k in (*LAYERS, *BIASES)}
        # the original network's pre-activations and activations on the calibration images
        self.targets: list[np.ndarray] = []
        z = self.x
        for wn, bn in zip(LAYERS, BIASES, strict=True):
            self.targets.append(z @ self.ref[wn] + self.ref[bn])
            z = _sigmoid(self.targets[-1])
        top2 = np.sort(self.targets[-1], axis=1)[:, -2:]
        #: per image: how much its outputs count, more the nearer it is to changing class
        self.focus = 1 + focus / np.maximum(top2[:, 1] - top2[:, 0], 1e-3)
        self._factor1 = _inverse_factor((self.x * self.focus[:, None]).T @ self.x, damp)
        self._layers: dict[tuple[int, ...],
                           tuple[QuantizedTensor, QuantizedTensor, np.ndarray]] = {}

    def _layer(self, bits: tuple[int, ...]) -> tuple[QuantizedTensor, QuantizedTensor, np.ndarray]:
        """Layer ``len(bits)``'s (weight codes, bias codes, quantized activations)."""
        if bits not in self._layers:
            i = len(bits) - 1
            z_q = self.x if i == 0 else self._layer(bits[:-1])[2]
            wn = LAYERS[i]
            target = self.targets[i]
            if i == 0:
                weight, h = self.ref[wn], self._factor1
            else:  # refit to give the original pre-activations from the quantized inputs
                weight = _refit(z_q, target, self.focus)[:-1]
                h = (z_q * self.focus[:, None]).T @ z_q
            q = gptq(weight, h, bits[-1], damp=self.damp,
                     dtype=str(np.asarray(self.weights[wn]).dtype))
            wq = q.dequantize().astype(np.float64)
            bias = quantize_tensor(np.mean(target - z_q @ wq, axis=0), BIAS_BITS,
                                   scale_dtype="float16")
            bias = QuantizedTensor(bias.codes, bias.scale, BIAS_BITS,
                                   str(np.asarray(self.weights[LAYERS[i].replace("W", "b")]).dtype))
            bq = bias.dequantize().astype(np.float64)
            self._layers[bits] = (q, bias, _sigmoid(z_q @ wq + bq))
        return self._layers[bits]

    def stored(self, bits: dict[str, int], packed: bool = True) -> Weights:
        """The stored form at *bits* per matrix (:mod:`weightstore.precision` layout),
        codes bit-packed or (*packed* false) one per byte."""
        key = tuple(bits[k] for k in LAYERS)
        items: dict[str, Any] = {}
        for i, (wn, bn) in enumerate(zip(LAYERS, BIASES, strict=True)):
            q, bias, _ = self._layer(key[: i + 1])
            items[wn], items[bn] = q, bias
        return pack([(k, items[k]) for k in self.weights if k in items], packed=packed)


def quantize_mlp(w: Weights, x: np.ndarray, bits: dict[str, int]) -> Weights:
    """The stored form of *w* at *bits* per matrix, calibrated on images *x* (see module)."""
    return Calibrated(w, x).stored(bits)


# --- search --------------------------------------------------------------------------


@dataclass(frozen=True)
class ShrinkStep:
    """One candidate the search measured."""

    bits: dict[str, int]
    bytes: int
    agreement: float
    accepted: bool


@dataclass
class ShrinkResult:
    """The chosen file: its stored weights, size, agreement and how it was found."""

    weights: Weights
    bytes: int
    codec: str
    codec_options: dict[str, Any]
    bits: dict[str, int]
    agreement: float
    calibration_images: int
    pruned_rows: int
    steps: list[ShrinkStep] = field(default_factory=list)

    @property
    def bits_per_weight(self) -> float:
        """File bits per original weight (biases included)."""
        total = sum(int(np.prod(e)) for e in self._shapes().values())
        return 8 * self.bytes / total

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: v.shape for k, v in dequantize(self.weights).items()}

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {"bytes": self.bytes, "codec": self.codec, "codec_options": self.codec_options,
                "bits": self.bits, "agreement": self.agreement,
                "calibration_images": self.calibration_images,
                "pruned_rows": self.pruned_rows, "bits_per_weight": self.bits_per_weight,
                "steps": [vars(s) for s in self.steps]}


def encoded_size(weights: Weights, codec: Codec) -> int:
    """Bytes *codec* writes for *weights* (in memory)."""
    buf = io.BytesIO()
    codec.write(weights, buf, path="<memory>")
    return len(buf.getvalue())


def shrink(
    weights: Weights | dict[str, Any],
    *,
    calibration: np.ndarray | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    min_agreement: float = 1.0,
    codec: str | None = None,
    codec_options: dict[str, Any] | None = None,
    start_bits: int = 8,
    max_steps: int | None = None,
    progress: Progress | None = None,
) -> ShrinkResult:
    """The smallest stored form of the book's network whose predictions agree with the
    original's on at least *min_agreement* of the *calibration* images (default: the first
    1,000 MNIST test images; no label is read).

    *codec* and *codec_options* choose the file format (default: :func:`default_codec`);
    *start_bits* is where the search starts, *max_steps* caps its accepted steps (tests).
    """
    w = as_weights(weights)
    _check_mlp(w)
    if not 0 < min_agreement <= 1:
        raise OptionError(field="min_agreement", expected="a fraction in (0, 1]",
                          found=min_agreement)
    if not 2 <= start_bits <= 8:
        raise OptionError(field="start_bits", expected="2 to 8", found=start_bits)
    if codec is None:
        codec, defaults = default_codec()
        codec_options = {**defaults, **(codec_options or {})}
    codec_options = dict(codec_options or {})
    writer = registry.get_codec(codec)(**codec_options)
    x = calibration_images(data_dir) if calibration is None else np.asarray(calibration)
    if x.ndim != 2 or x.shape[1] != w["W1"].shape[0] or not len(x):
        raise ModelError(field="calibration images", expected=f"(N, {w['W1'].shape[0]})",
                         found=x.shape)
    x = x.astype(np.float32)
    original = _predict(w, x)
    say = progress or (lambda _: None)
    say(f"calibration: {len(x):,} images, labels not used; "
        f"{int((~(x != 0).any(axis=0)).sum())} pixels never lit (their W1 rows pruned)")
    model = Calibrated(w, x)
    seen: dict[tuple[int, ...], tuple[Weights, int, float]] = {}
    steps: list[ShrinkStep] = []

    def measure(bits: dict[str, int]) -> tuple[Weights, int, float]:
        key = tuple(bits[k] for k in LAYERS)
        if key not in seen:
            forms = [model.stored(bits, packed) for packed in (True, False)]
            sized = [(encoded_size(f, writer), i) for i, f in enumerate(forms)]
            size, best_form = min(sized)
            stored = forms[best_form]
            agree = float(np.mean(_predict(dequantize(stored), x) == original))
            seen[key] = (stored, size, agree)
        return seen[key]

    def text(bits: dict[str, int]) -> str:
        return " ".join(f"{k}={v}" for k, v in bits.items())

    bits = dict.fromkeys(LAYERS, start_bits)
    best, size, agree = measure(bits)
    say(f"start {text(bits)}: {size:,} bytes, agreement {agree:.4f}")
    if agree < min_agreement:
        say(f"the start already disagrees more than allowed ({agree:.4f} < {min_agreement})")
    steps.append(ShrinkStep(dict(bits), size, agree, agree >= min_agreement))
    accepted = 0
    while max_steps is None or accepted < max_steps:
        # every lower bit count for one matrix at a time: agreement is not monotonic in
        # the bits, so a step of one bit alone can stop the search too early
        choice = None
        for name in LAYERS:
            for lower in range(bits[name] - 1, 1, -1):
                trial = {**bits, name: lower}
                stored, tsize, tagree = measure(trial)
                ok = tagree >= min_agreement
                steps.append(ShrinkStep(dict(trial), tsize, tagree, False))
                say(f"  try {text(trial)}: {tsize:,} bytes, agreement {tagree:.4f}"
                    f"{'' if ok else ' (too low)'}")
                if ok and tsize < size and (choice is None or tsize < choice[2]):
                    choice = (trial, stored, tsize, tagree)
        if choice is None:
            break
        bits, best, size, agree = choice
        steps.append(ShrinkStep(dict(bits), size, agree, True))
        accepted += 1
        say(f"keep {text(bits)}: {size:,} bytes, agreement {agree:.4f}")
    plain = model.stored(bits, packed=False)  # the codes one per byte, shaped
    pruned = int((plain["W1.q"] == 0).all(axis=1).sum()) if "W1.q" in plain else 0
    return ShrinkResult(best, size, codec, codec_options, dict(bits), agree, len(x), pruned,
                        steps)


def shrink_file(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                **kwargs: Any) -> ShrinkResult:
    """Read *src*, :func:`shrink` it, and write the result to *dst* atomically."""
    result = shrink(api.load(src), **kwargs)
    api.save(result.weights, dst, result.codec, **result.codec_options)
    return result
