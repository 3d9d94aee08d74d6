"""Comparing two weight files tensor by tensor (:func:`diff`) and describing one
(:func:`stats`), both streaming: each tensor is read on its own (``weightstore.open``)
and walked in chunks of :data:`CHUNK_VALUES` values, so memory stays bounded by the
largest tensor (a memory map where the format stores raw bytes) plus a few chunks.

Definitions used by ``weightstore diff``:

* two values *differ* when they are not equal as numbers (``-0.0 == 0.0``; two NaNs in
  the same place are equal);
* *max abs* is the largest ``|a - b|``; *max rel* the largest ``|a - b| / |a|`` over the
  values where A is not zero (A is the reference); *max ULP* counts float steps between
  the two values in A's dtype (B's value rounded to it first), for integers ``|a - b|``;
* a value is *within tolerance* when ``|a - b| <= atol + rtol * |a|`` (NaN only matches
  NaN); a tensor passes when both files hold it with the same shape (and dtype, unless
  dtypes are ignored) and every value is within tolerance -- with the default tolerance
  of zero, when no value differs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .api import open_weights
from .codec import Limits
from .errors import WeightsError

__all__ = ["CHUNK_VALUES", "TensorDiff", "Diff", "diff", "diff_arrays", "TensorStats",
           "stats", "tensor_stats", "ordered_ints"]

#: Values compared or summed per step; temporaries stay a few times this many float64s.
CHUNK_VALUES = 1 << 20

PathLike = str | os.PathLike[str]


def ordered_ints(a: np.ndarray) -> np.ndarray:
    """Float bits mapped to numbers whose differences count units in the last place
    (+0.0 and -0.0 both map to 0), as float64."""
    bits = a.view(f"i{a.dtype.itemsize}").astype(np.int64)
    magnitude = bits & ((1 << (8 * a.dtype.itemsize - 1)) - 1)
    return np.where(bits < 0, -magnitude, magnitude).astype(np.float64)


def _chunks(*arrays: np.ndarray) -> Iterator[tuple[np.ndarray, ...]]:
    """Flat, equally long slices of *arrays* (same number of values), CHUNK_VALUES at a time."""
    flat = [np.asarray(a).reshape(-1) for a in arrays]
    n = flat[0].size
    for start in range(0, n, CHUNK_VALUES):
        yield tuple(f[start:start + CHUNK_VALUES] for f in flat)


def _is_numeric(dtype: np.dtype) -> bool:
    return dtype.kind in "biuf"


@dataclass(frozen=True)
class TensorDiff:
    """One tensor's comparison. *status* is ``"same"``, ``"within"`` (differs, within
    tolerance), ``"differs"``, ``"shape"``, ``"dtype"``, ``"only in A"`` or ``"only in B"``."""

    name: str
    status: str
    dtype_a: str | None
    dtype_b: str | None
    shape_a: tuple[int, ...] | None
    shape_b: tuple[int, ...] | None
    #: Values compared (0 when the shapes differ or one side lacks the tensor).
    count: int = 0
    #: Values that are not equal as numbers.
    differing: int = 0
    #: Values outside the tolerance.
    outside: int = 0
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    max_ulp_error: float = 0.0

    @property
    def passed(self) -> bool:
        """Whether this tensor counts as matching."""
        return self.status in ("same", "within")

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (infinite errors as the string ``"inf"``)."""
        d = asdict(self)
        for key in ("shape_a", "shape_b"):
            d[key] = list(d[key]) if d[key] is not None else None
        for key in ("max_abs_error", "max_rel_error", "max_ulp_error"):
            if not math.isfinite(d[key]):
                d[key] = str(d[key])
        d["passed"] = self.passed
        return d


@dataclass(frozen=True)
class Diff:
    """The comparison of two files: one :class:`TensorDiff` per tensor name in either file
    (A's order, then names only B holds), and the metadata keys whose values differ."""

    a: str
    b: str
    atol: float
    rtol: float
    tensors: list[TensorDiff]
    metadata_differs: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        """Same names, dtypes, shapes and values (as numbers)."""
        return all(t.status == "same" for t in self.tensors)

    @property
    def passed(self) -> bool:
        """Every tensor matches (within the tolerance): ``weightstore diff`` exits 0."""
        return all(t.passed for t in self.tensors)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {"a": self.a, "b": self.b, "atol": self.atol, "rtol": self.rtol,
                "identical": self.identical, "passed": self.passed,
                "metadata_differs": self.metadata_differs,
                "tensors": [t.to_dict() for t in self.tensors]}


def diff_arrays(name: str, a: np.ndarray, b: np.ndarray, *, atol: float = 0.0,
                rtol: float = 0.0, check_dtype: bool = True) -> TensorDiff:
    """Compare two arrays (the module doc gives the definitions), chunk by chunk."""
    a, b = np.asarray(a), np.asarray(b)
    base = {"name": name, "dtype_a": a.dtype.name, "dtype_b": b.dtype.name,
            "shape_a": tuple(a.shape), "shape_b": tuple(b.shape)}
    if a.shape != b.shape:
        return TensorDiff(status="shape", **base)
    if not (_is_numeric(a.dtype) and _is_numeric(b.dtype)):
        raise WeightsError(field=f"tensor {name!r}", expected="numeric dtypes to compare",
                           found=f"{a.dtype} and {b.dtype}")
    differing = outside = 0
    max_abs = max_rel = max_ulp = 0.0
    floats = a.dtype.kind == "f"
    for ca, cb in _chunks(a, b):
        a64, b64 = ca.astype(np.float64), cb.astype(np.float64)
        both_nan = np.isnan(a64) & np.isnan(b64)
        # integers of one dtype compare exactly (beyond 2**53 too)
        unequal = ca != cb if a.dtype == b.dtype and not floats else (a64 != b64) & ~both_nan
        n_unequal = int(np.count_nonzero(unequal))
        if not n_unequal:
            continue
        differing += n_unequal
        with np.errstate(invalid="ignore", over="ignore"):
            err = np.where(both_nan, 0.0, np.abs(a64 - b64))
            err = np.where(np.isnan(err), np.inf, err)  # NaN against a number
            bad = ~(err <= atol + rtol * np.abs(a64)) | np.isinf(err)
            bad &= unequal
        outside += int(np.count_nonzero(bad))
        max_abs = max(max_abs, float(err.max()))
        nz = a64 != 0
        if nz.any():
            with np.errstate(invalid="ignore", over="ignore"):
                rel = err[nz] / np.abs(a64[nz])
            max_rel = max(max_rel, float(np.nan_to_num(rel, nan=np.inf).max()))
        if floats:
            with np.errstate(over="ignore", invalid="ignore"):
                b_in_a = cb.astype(a.dtype)
            ulps = np.abs(ordered_ints(np.ascontiguousarray(ca)) -
                          ordered_ints(np.ascontiguousarray(b_in_a)))
            ulps = np.where(both_nan, 0.0, ulps)
            ulps = np.where(np.isnan(a64) != np.isnan(b64), np.inf, ulps)
            max_ulp = max(max_ulp, float(ulps.max()))
        else:
            max_ulp = max(max_ulp, float(err.max()))
    if check_dtype and a.dtype != b.dtype:
        status = "dtype"
    elif not differing:
        status = "same"
    elif not outside:
        status = "within"
    else:
        status = "differs"
    return TensorDiff(status=status, count=int(a.size), differing=differing, outside=outside,
                      max_abs_error=max_abs, max_rel_error=max_rel, max_ulp_error=max_ulp,
                      **base)


def diff(a: PathLike, b: PathLike, *, atol: float = 0.0, rtol: float = 0.0,
         check_dtype: bool = True, format_a: str | None = None, format_b: str | None = None,
         verify: bool = True, limits: Limits | None = None,
         storage_options: dict[str, Any] | None = None, strict: bool = False) -> Diff:
    """Compare the weight files *a* and *b* tensor by tensor, one tensor in memory at a time.

    *atol*/*rtol* set the tolerance; *check_dtype* false lets tensors of different dtypes
    match when their values do. Quantized files are compared as stored (codes and scales).
    *strict* as for :func:`weightstore.load` (entries not held refuse a file).
    """
    if atol < 0 or rtol < 0 or math.isnan(atol) or math.isnan(rtol):
        raise WeightsError(field="atol/rtol", expected="non-negative numbers",
                           found=f"atol={atol}, rtol={rtol}")
    with open_weights(a, format_a, verify=verify, limits=limits,
                      storage_options=storage_options, strict=strict) as wa, \
            open_weights(b, format_b, verify=verify, limits=limits,
                         storage_options=storage_options, strict=strict) as wb:
        rows: list[TensorDiff] = []
        for name in wa:
            ia = wa.info(name)
            if name not in wb:
                rows.append(TensorDiff(name, "only in A", ia.dtype.name, None, ia.shape, None))
                continue
            ib = wb.info(name)
            if ia.shape != ib.shape:
                rows.append(TensorDiff(name, "shape", ia.dtype.name, ib.dtype.name,
                                       ia.shape, ib.shape))
                continue
            rows.append(diff_arrays(name, wa[name], wb[name], atol=atol, rtol=rtol,
                                    check_dtype=check_dtype))
        for name in wb:
            if name not in wa:
                ib = wb.info(name)
                rows.append(TensorDiff(name, "only in B", None, ib.dtype.name, None, ib.shape))
        keys = dict.fromkeys([*wa.metadata, *wb.metadata])
        meta = [k for k in keys if wa.metadata.get(k) != wb.metadata.get(k)]
    return Diff(os.fspath(a), os.fspath(b), atol, rtol, rows, meta)


@dataclass(frozen=True)
class TensorStats:
    """One tensor's statistics over its finite values (NaN and Inf are only counted).

    *histogram* holds the counts of equal-width bins between *min* and *max* (its
    *edges* are ``bins + 1`` numbers); both are empty when no value is finite."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    count: int
    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    zeros: int
    nans: int
    infs: int
    histogram: list[int]
    edges: list[float]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


def tensor_stats(name: str, array: np.ndarray, *, bins: int = 10) -> TensorStats:
    """Statistics of *array*, two passes of chunks (sums, then the histogram): the mean and
    the standard deviation (population, ``ddof=0``) are combined chunk by chunk in float64
    (Chan et al.'s pairwise update), so their error does not grow with the tensor's size."""
    array = np.asarray(array)
    if not _is_numeric(array.dtype):
        raise WeightsError(field=f"tensor {name!r}", expected="a numeric dtype",
                           found=str(array.dtype))
    n = 0
    mean = m2 = 0.0
    lo, hi = math.inf, -math.inf
    zeros = nans = infs = 0
    for (chunk,) in _chunks(array):
        x = chunk.astype(np.float64)
        zeros += int(np.count_nonzero(x == 0))
        finite = np.isfinite(x)
        if not finite.all():
            nans += int(np.count_nonzero(np.isnan(x)))
            infs += int(np.count_nonzero(np.isinf(x)))
            x = x[finite]
        if not x.size:
            continue
        lo, hi = min(lo, float(x.min())), max(hi, float(x.max()))
        k = x.size
        cmean = float(x.mean())
        cm2 = float(np.square(x - cmean).sum())
        delta = cmean - mean
        total = n + k
        mean += delta * k / total
        m2 += cm2 + delta * delta * n * k / total
        n = total
    hist: list[int] = []
    edges: list[float] = []
    if n:
        counts = np.zeros(bins, dtype=np.int64)
        for (chunk,) in _chunks(array):
            x = chunk.astype(np.float64)
            h, e = np.histogram(x[np.isfinite(x)], bins=bins, range=(lo, hi))
            counts += h
        hist = [int(c) for c in counts]
        edges = [float(v) for v in e]
    return TensorStats(name=name, dtype=array.dtype.name, shape=tuple(array.shape),
                       count=int(array.size), min=lo if n else None, max=hi if n else None,
                       mean=mean if n else None, std=math.sqrt(m2 / n) if n else None,
                       zeros=zeros, nans=nans, infs=infs, histogram=hist, edges=edges)


def stats(path: PathLike, *, bins: int = 10, format: str | None = None, verify: bool = True,
          limits: Limits | None = None, storage_options: dict[str, Any] | None = None,
          strict: bool = False) -> Iterator[TensorStats]:
    """:class:`TensorStats` of each tensor of *path*, yielded as each is read (one tensor in
    memory at a time). *strict* as for :func:`weightstore.load`."""
    if bins < 1:
        raise WeightsError(field="bins", expected="1 or more", found=bins)
    with open_weights(path, format, verify=verify, limits=limits,
                      storage_options=storage_options, strict=strict) as w:
        for name in w:
            yield tensor_stats(name, w[name], bins=bins)
