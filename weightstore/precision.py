"""Lower precision on purpose: cast, quantize, round; and undo what can be undone.

Pure functions from :class:`~weightstore.model.Weights` to new ``Weights``; the
caller's arrays are never modified. Any codec can then store the result (the
command line's ``--dtype``, ``--bits`` and ``--digits`` are meant to call these).

- :func:`cast` converts every floating tensor to float16, bfloat16, float32 or
  float64 (round to nearest, ties to even). Integer and bool tensors are kept.
- :func:`quantize` maps each floating tensor of two or more dimensions to signed
  integers of 2 to 8 bits (stored as int8) with one float32 scale per slice along
  *axis* (per output column for the book's ``x @ W`` layout, the default ``axis=-1``):
  ``q = round(w / scale)``, ``scale = max |w| / (2**(bits-1) - 1)``, symmetric, so
  zero stays exactly zero. Scales are stored beside it as ``<name>.scale``; the
  metadata key ``weightstore.quantization`` records, per tensor, how to restore it.
- :func:`dequantize` reverses that from the metadata alone: ``w' = q * scale`` in the
  original dtype. The error per value is at most ``scale / 2``.
- :func:`round_digits` rounds floats to N significant decimal digits, so that the
  text codecs (which write the shortest decimal that reads back exactly) write at most
  N digits per value.

Each function that loses information warns once per call with :class:`LossyWarning`
(how many values changed and the largest error), unless ``warn=False``.

    >>> w16 = cast(w, "float16")                  # LossyWarning: 45,201 of 45,360 values ...
    >>> q = quantize(w, bits=8)                   # W1 int8 + W1.scale float32, b1 kept
    >>> w2 = dequantize(q)                        # float32 again, within scale/2 per value
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import orjson

from .errors import OptionError, WeightsError
from .model import Weights, canonical_dtype, dtype_name

__all__ = ["LossyWarning", "FLOAT_TARGETS", "QUANT_KEY", "cast", "quantize", "dequantize",
           "round_digits"]

#: dtypes :func:`cast` accepts.
FLOAT_TARGETS = ("float16", "bfloat16", "float32", "float64")
#: Metadata key under which :func:`quantize` records how to restore each tensor.
QUANT_KEY = "weightstore.quantization"
#: Suffix of the tensor holding a quantized tensor's scales.
SCALE_SUFFIX = ".scale"


class LossyWarning(UserWarning):
    """The values written are not bit-identical to the values given."""


def _is_float(array: np.ndarray) -> bool:
    return dtype_name(array.dtype) in FLOAT_TARGETS


def _loss_report(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[int, int, float]:
    """(values changed, values compared, largest absolute change) over (before, after)."""
    changed = total = 0
    worst = 0.0
    for before, after in pairs:
        a = np.asarray(before, dtype=np.float64)
        b = np.asarray(after, dtype=np.float64)
        total += a.size
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        same &= np.signbit(a) == np.signbit(b)
        changed += int(a.size - np.count_nonzero(same))
        finite = np.isfinite(a) & np.isfinite(b)
        if finite.any():
            worst = max(worst, float(np.max(np.abs(a[finite] - b[finite]))))
    return changed, total, worst


def _warn(what: str, changed: int, total: int, worst: float, extra: str = "") -> None:
    warnings.warn(
        f"{what} changes {changed:,} of {total:,} values (largest change {worst:.3g}){extra}; "
        "the result is not bit-identical to the input",
        LossyWarning, stacklevel=3,
    )


def cast(weights: Weights, dtype: str, *, warn: bool = True) -> Weights:
    """*weights* with every floating tensor converted to *dtype* (float16, bfloat16,
    float32 or float64). Integer and bool tensors, names, order and metadata are kept.
    Values beyond the target's range become ±inf, and the warning counts them."""
    if dtype not in FLOAT_TARGETS:
        raise OptionError(field="dtype", expected=f"one of {', '.join(FLOAT_TARGETS)}",
                          found=dtype)
    target = canonical_dtype(dtype)  # bfloat16 without ml_dtypes: MissingDependencyError
    out: dict[str, np.ndarray] = {}
    pairs = []
    overflow = 0
    for name, array in weights.items():
        if not _is_float(array) or dtype_name(array.dtype) == dtype:
            out[name] = array
            continue
        with np.errstate(over="ignore"):
            converted = np.asarray(array).astype(target)
        out[name] = converted
        pairs.append((array, converted))
        overflow += int(np.count_nonzero(np.isinf(converted.astype(np.float64))
                                         & np.isfinite(np.asarray(array, np.float64))))
    result = Weights(out, metadata=weights.metadata)
    if warn and pairs:
        changed, total, worst = _loss_report(pairs)
        if changed:
            extra = f", {overflow:,} finite values overflow to inf" if overflow else ""
            _warn(f"cast to {dtype}", changed, total, worst, extra)
    return result


def quantize(weights: Weights, bits: int = 8, axis: int = -1, *,
             names: Iterable[str] | None = None, warn: bool = True) -> Weights:
    """*weights* with floating tensors of 2+ dimensions (or those *names*) as *bits*-bit
    signed integers (int8 storage) plus one float32 scale per slice along *axis*.

    ``W`` of shape (784, 50) with ``axis=-1`` becomes ``W`` int8 (784, 50) and
    ``W.scale`` float32 (50,). The metadata key :data:`QUANT_KEY` holds, per tensor,
    ``{"bits", "axis", "dtype", "scale"}``; :func:`dequantize` needs nothing else.
    Other tensors are kept as they are. Non-finite values cannot be quantized.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        raise OptionError(field="bits", expected="an integer from 2 to 8", found=bits)
    if QUANT_KEY in weights.metadata:
        raise WeightsError(field=f"metadata {QUANT_KEY!r}",
                           expected="weights that are not already quantized")
    chosen = set(names) if names is not None else None
    if chosen is not None:
        missing = chosen - set(weights)
        if missing:
            raise WeightsError(field="names", expected="names of tensors in the weights",
                               found=sorted(missing))
    levels = 2 ** (bits - 1) - 1
    out: dict[str, np.ndarray] = {}
    record: dict[str, dict[str, Any]] = {}
    pairs = []
    for name, array in weights.items():
        take = (name in chosen) if chosen is not None else (array.ndim >= 2)
        if not take:
            out[name] = array
            continue
        if not _is_float(array):
            raise WeightsError(field=f"tensor {name!r}", expected="a floating tensor to quantize",
                               found=str(array.dtype))
        if array.ndim == 0:
            raise WeightsError(field=f"tensor {name!r}", expected="at least one dimension",
                               found="a scalar")
        ax = _axis(axis, array.ndim, name)
        scale_name = name + SCALE_SUFFIX
        if scale_name in weights:
            raise WeightsError(field=f"tensor name {scale_name!r}",
                               expected="free for the scales of " + repr(name), found="taken")
        values = np.asarray(array, dtype=np.float64)
        if not np.isfinite(values).all():
            raise WeightsError(field=f"tensor {name!r}",
                               expected="finite values to quantize", found="NaN or inf")
        others = tuple(i for i in range(array.ndim) if i != ax)
        peak = np.max(np.abs(values), axis=others) if values.size else np.zeros(
            array.shape[ax])
        scale = (peak / levels).astype(np.float32)
        shape = [1] * array.ndim
        shape[ax] = array.shape[ax]
        s = scale.astype(np.float64).reshape(shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.where(s > 0, np.rint(values / np.where(s > 0, s, 1.0)), 0.0)
        q = np.clip(q, -levels, levels).astype(np.int8)
        out[name] = q
        out[scale_name] = scale
        record[name] = {"bits": bits, "axis": ax, "dtype": dtype_name(array.dtype),
                        "scale": scale_name}
        pairs.append((array, _restore(q, scale, ax, dtype_name(array.dtype) or "float32")))
    metadata = dict(weights.metadata)
    if record:
        metadata[QUANT_KEY] = orjson.dumps(record).decode()
    result = Weights(out, metadata=metadata)
    if warn and pairs:
        changed, total, worst = _loss_report(pairs)
        if changed:
            _warn(f"{bits}-bit quantization", changed, total, worst)
    return result


def _axis(axis: int, ndim: int, name: str) -> int:
    if isinstance(axis, bool) or not isinstance(axis, int) or not -ndim <= axis < ndim:
        raise OptionError(field="axis", expected=f"an axis of tensor {name!r} ({ndim} dims)",
                          found=axis)
    return axis % ndim


def _restore(q: np.ndarray, scale: np.ndarray, axis: int, dtype: str) -> np.ndarray:
    shape = [1] * q.ndim
    shape[axis] = q.shape[axis]
    values = q.astype(np.float32) * scale.astype(np.float32).reshape(shape)
    return values.astype(canonical_dtype(dtype))


def dequantize(weights: Weights) -> Weights:
    """Undo :func:`quantize`: each recorded tensor as ``q * scale`` in its original dtype,
    the scale tensors and the metadata key removed. Weights without the key come back
    unchanged."""
    text = weights.metadata.get(QUANT_KEY)
    if text is None:
        return weights
    try:
        record = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise WeightsError(field=f"metadata {QUANT_KEY!r}", expected="JSON",
                           found=text) from e
    if not isinstance(record, dict):
        raise WeightsError(field=f"metadata {QUANT_KEY!r}", expected="a JSON object",
                           found=text)
    scales = set()
    restored: dict[str, np.ndarray] = {}
    for name, info in record.items():
        where = f"metadata {QUANT_KEY!r} entry {name!r}"
        if (not isinstance(info, dict) or set(info) != {"bits", "axis", "dtype", "scale"}
                or info["dtype"] not in FLOAT_TARGETS or not isinstance(info["scale"], str)):
            raise WeightsError(field=where, expected='{"bits", "axis", "dtype", "scale"}',
                               found=info)
        if name not in weights or info["scale"] not in weights:
            raise WeightsError(field=where, expected=f"tensors {name!r} and {info['scale']!r}",
                               found="missing")
        q, scale = weights[name], weights[info["scale"]]
        if dtype_name(q.dtype) != "int8" or not isinstance(info["axis"], int) or not (
                0 <= info["axis"] < q.ndim) or scale.shape != (q.shape[info["axis"]],):
            raise WeightsError(field=where, expected="int8 values and one scale per slice",
                               found=f"{q.dtype}{list(q.shape)}, scale {list(scale.shape)}")
        restored[name] = _restore(q, scale, info["axis"], info["dtype"])
        scales.add(info["scale"])
    out = {n: restored.get(n, a) for n, a in weights.items() if n not in scales}
    metadata = {k: v for k, v in weights.metadata.items() if k != QUANT_KEY}
    return Weights(out, metadata=metadata)


def round_digits(weights: Weights, digits: int, *, warn: bool = True) -> Weights:
    """*weights* with every floating value rounded to *digits* significant decimal digits
    (1 to 17), kept in its dtype. Text codecs then write at most *digits* digits per
    value, since they write the shortest decimal that reads back exactly."""
    if isinstance(digits, bool) or not isinstance(digits, int) or not 1 <= digits <= 17:
        raise OptionError(field="digits", expected="an integer from 1 to 17", found=digits)
    out: dict[str, np.ndarray] = {}
    pairs = []
    for name, array in weights.items():
        if not _is_float(array):
            out[name] = array
            continue
        values = np.asarray(array, dtype=np.float64)
        rounded = _round_significant(values, digits)
        with np.errstate(over="ignore"):
            result = rounded.astype(array.dtype.newbyteorder("="))
        out[name] = result
        pairs.append((array, result))
    result_weights = Weights(out, metadata=weights.metadata)
    if warn and pairs:
        changed, total, worst = _loss_report(pairs)
        if changed:
            _warn(f"rounding to {digits} significant digits", changed, total, worst)
    return result_weights


def _round_significant(values: np.ndarray, digits: int) -> np.ndarray:
    """float64 *values* rounded to *digits* significant decimal digits: each result is
    the float64 nearest to a decimal of at most *digits* digits (so its shortest repr
    has at most that many), the nearest such decimal except, rarely, at a near-tie.
    NaN, inf and zeros are unchanged."""
    flat = values.reshape(-1)
    out = flat.copy()
    idx = np.flatnonzero(np.isfinite(flat) & (flat != 0))
    if idx.size == 0:
        return out.reshape(values.shape)
    a = np.abs(flat[idx])
    k = digits - 1 - np.floor(np.log10(a)).astype(np.int64)
    n = np.zeros_like(a)
    exact = np.abs(k) <= 22  # powers of ten up to 1e22 are exact in float64
    for _ in range(3):  # log10 can be one off near powers of ten: correct k and redo
        p = 10.0 ** np.abs(np.where(exact, k, 0))
        n = np.where(k >= 0, np.rint(a * p), np.rint(a / p))
        high = exact & (n >= 10.0 ** digits)
        low = exact & (n < 10.0 ** (digits - 1))
        if not (high.any() or low.any()):
            break
        k = k - high + low
    # n is an integer and 10**|k| exact, so one correctly rounded operation gives the
    # float64 nearest to the decimal n * 10**-k.
    p = 10.0 ** np.abs(np.where(exact, k, 0))
    rounded = np.where(k >= 0, n / p, n * p)
    result = np.copysign(rounded, flat[idx])
    if not exact.all():  # below 1e-16 or above 1e22: exact decimal formatting
        fmt = f"{{:.{digits - 1}e}}"
        far = np.flatnonzero(~exact)
        result[far] = [float(fmt.format(v)) for v in flat[idx[far]].tolist()]
    out[idx] = result
    return out.reshape(values.shape)
