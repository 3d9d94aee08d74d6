"""Precision options that apply to every codec: a narrower dtype, integer codes, fewer digits.

Three ways to trade precision for size, each applied to the weights before any codec
writes them, so each works with every format that can hold the result:

- :func:`cast` to ``float16``, ``bfloat16`` (through the ``ml_dtypes`` package, the
  ``bfloat16`` extra), ``float32`` or ``float64``. Only float tensors are cast.
- :func:`quantize` to integer codes of 2 to 8 bits (below).
- :func:`round_digits`: each float rounded to N significant decimal digits. The text
  codecs (JSON, CSV) write the shortest decimal of each value, so they shrink in proportion.

Every lossy option warns once per write (:class:`~weightstore.errors.LossyWarning`).

Quantization (version 2)
------------------------
Symmetric, one scale per group, no zero point: ``value = code * scale`` with integer codes
from ``-(2**(bits-1) - 1)`` to ``2**(bits-1) - 1`` (so 2 bits is ternary, -1 0 1; the
most negative code of the two's complement range is left unused so that the range is
symmetric about 0). Symmetric because trained weights are centred on zero: a zero point
would cost a tensor per quantized tensor and buy nothing here. Groups:

- per column (default): a tensor of 2 or more dimensions has one scale per index of its
  last axis (for a ``(inputs, outputs)`` weight, one per output), taken over all other axes;
  a 0-d or 1-d tensor (a bias) has one scale;
- per block ``N``: a tensor of 2 or more dimensions, seen as a matrix ``(R, C)`` with
  ``C`` its last axis, has one scale per ``N`` consecutive rows of each column: scale
  ``(ceil(R / N), C)``, ``value[r, c] = code[r, c] * scale[r // N, c]``. 0-d and 1-d
  tensors have one scale.

A scale is ``max |w| / (2**(bits-1) - 1)`` over its group, stored in ``scale_dtype``
(float32 by default), and the codes are computed against the stored scale, so that the
dequantized values are exactly what the file says.

A quantized tensor ``NAME`` is stored as two tensors in its place: ``NAME.q``, the codes,
and ``NAME.scale``, the scales (a float dtype, shape ``()``, ``(C,)`` or
``(ceil(R / N), C)``). The metadata key ``weightstore.quantization`` holds a JSON object
that says how to restore the floats::

    {"version": 2, "scheme": "symmetric",
     "tensors": {"W1": {"dtype": "float32", "shape": [784, 50], "bits": 4,
                        "granularity": "column", "packed": true},
                 "W2": {"dtype": "float32", "shape": [50, 100], "bits": 3,
                        "granularity": "block", "block": 16, "packed": true},
                 "b1": {"dtype": "float32", "shape": [50], "bits": 8,
                        "granularity": "tensor", "packed": false}}}

with exactly these keys (``block`` only for ``"block"``).

Codes (version 2)
-----------------
``"packed": false``: ``NAME.q`` is ``int8`` of the tensor's shape, one code per byte.
``"packed": true`` (what :func:`pack` writes for 2 to 7 bits): ``NAME.q`` is ``uint8`` of
shape ``(ceil(count * bits / 8),)``, ``count`` the product of ``shape`` (1 for ``[]``).
The codes, in C order (last axis fastest), form one bit stream: code ``i`` is its ``bits``
low bits in two's complement and occupies stream bits ``i*bits`` to ``i*bits + bits - 1``,
its least significant bit first; stream bit ``k`` is bit ``k % 8`` (``1 << (k % 8)``) of
byte ``k // 8``. The bits after the last code in the last byte are 0. To unpack code
``i``: take those ``bits`` bits as an unsigned ``u``, then ``u - 2**bits`` if
``u >= 2**(bits-1)``. (This is numpy's ``packbits(..., bitorder="little")`` of each code's
low bits, LSB first.) A 4-bit tensor thus takes half the bytes of an 8-bit one before any
compression. A reader refuses a packed tensor whose dtype, rank or length disagrees with
``shape`` and ``bits``, or whose padding bits are not 0, before allocating the codes.
Version 1 records (no ``packed`` key; codes always unpacked ``int8``) still read.

Restoring multiplies each code
by its scale in float64 (exact: an 8-bit code times a scale of at most 53 bits) and rounds
once to ``dtype``; the restored tensor takes the place of ``NAME.q`` and ``NAME.scale``.
:func:`weightstore.load` restores by default; ``load(path, dequantize=False)`` gives the
codes and scales as stored.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .codec import Budget
from .errors import FormatError, LossyWarning, MissingDependencyError, OptionError, WeightsError
from .model import Weights, as_weights, canonical_dtype, dtype_name

__all__ = [
    "FLOAT_DTYPES", "QUANT_KEY", "CODES_SUFFIX", "SCALE_SUFFIX", "Quantization", "Precision",
    "QuantizedTensor", "cast", "round_digits", "quantize", "quantize_tensor", "pack",
    "pack_codes", "unpack_codes", "packed_length",
    "dequantize", "is_quantized", "apply", "quantization_record", "record_text",
]

#: Target dtypes of :func:`cast`.
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
#: Metadata key of the quantization record.
QUANT_KEY = "weightstore.quantization"
#: Suffixes of the codes and scales tensors of a quantized tensor.
CODES_SUFFIX = ".q"
SCALE_SUFFIX = ".scale"
QUANT_VERSION = 2
#: Record versions a reader accepts (1: codes one per byte, no ``packed`` key).
READ_VERSIONS = (1, 2)
MIN_BITS, MAX_BITS = 2, 8
MAX_DIGITS = 17

_ENTRY_KEYS = {"dtype", "shape", "bits", "granularity"}
#: Codes packed per chunk (a multiple of 8, so a chunk starts on a byte): bounds scratch.
PACK_CHUNK = 1 << 20
_GRANULARITIES = ("tensor", "column", "block")
#: Largest block of rows (a block never needs more rows than a tensor can have).
MAX_BLOCK = 1 << 62


def _is_float(array: np.ndarray) -> bool:
    return array.dtype.kind == "f" or array.dtype.name == "bfloat16"


def _float_dtype(name: str, feature: str) -> np.dtype:
    if name not in FLOAT_DTYPES:
        raise OptionError(field=feature, expected=f"one of {', '.join(FLOAT_DTYPES)}", found=name)
    if name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError as e:
            raise MissingDependencyError("ml_dtypes", "bfloat16", feature) from e
        return np.dtype(ml_dtypes.bfloat16)
    return canonical_dtype(name)


# --- options ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Quantization:
    """Integer quantization: *bits* (2 to 8), per column or per *block* rows."""

    bits: int
    block: int | None = None

    def __post_init__(self) -> None:
        if (not isinstance(self.bits, int) or isinstance(self.bits, bool)
                or not MIN_BITS <= self.bits <= MAX_BITS):
            raise OptionError(field="quantize bits", expected=f"{MIN_BITS} to {MAX_BITS}",
                              found=self.bits)
        if self.block is not None and (not isinstance(self.block, int)
                                       or not 1 <= self.block <= MAX_BLOCK):
            raise OptionError(field="quantize block",
                              expected=f"a positive number of rows up to {MAX_BLOCK:,}",
                              found=self.block)

    @classmethod
    def parse(cls, text: str) -> Quantization:
        """``"4"``, ``"4/per-column"`` or ``"4/block:64"``."""
        bits_text, _, rest = text.strip().partition("/")
        expected = "BITS[/per-column|/block:N] with BITS from 2 to 8, e.g. 4/block:64"
        try:
            bits = int(bits_text)
        except ValueError:
            raise OptionError(field="precision quantize", expected=expected, found=text) from None
        if rest in ("", "per-column", "column"):
            return cls(bits)
        kind, _, n = rest.partition(":")
        if kind == "block" and n.isdigit() and int(n) > 0:
            return cls(bits, int(n))
        raise OptionError(field="precision quantize", expected=expected, found=text)

    def __str__(self) -> str:
        return f"{self.bits}/" + (f"block:{self.block}" if self.block else "per-column")


@dataclass(frozen=True)
class Precision:
    """What :func:`apply` does before a write: cast to *dtype*, then quantize or round."""

    dtype: str | None = None
    quantize: Quantization | None = None
    digits: int | None = None

    def __post_init__(self) -> None:
        if self.dtype is not None and self.dtype not in FLOAT_DTYPES:
            raise OptionError(field="dtype", expected=f"one of {', '.join(FLOAT_DTYPES)}",
                              found=self.dtype)
        if self.digits is not None and (
                not isinstance(self.digits, int) or not 1 <= self.digits <= MAX_DIGITS):
            raise OptionError(field="digits", expected=f"1 to {MAX_DIGITS}", found=self.digits)
        if self.digits is not None and self.quantize is not None:
            raise OptionError(field="digits", expected="either digits or quantize, not both",
                              found=f"digits {self.digits} with quantize {self.quantize}")

    @classmethod
    def of(cls, value: Precision | Mapping[str, Any] | None) -> Precision | None:
        """*value* as a Precision: one already, a mapping of its fields, or None."""
        if value is None or isinstance(value, Precision):
            return value
        if isinstance(value, Mapping):
            known = {"dtype", "quantize", "digits"}
            unknown = sorted(set(value) - known)
            if unknown:
                raise OptionError(field=f"precision {unknown[0]!r}",
                                  expected=f"one of {', '.join(sorted(known))}")
            q = value.get("quantize")
            if isinstance(q, str | int) and not isinstance(q, bool):
                q = Quantization.parse(str(q))
            return cls(value.get("dtype"), q, value.get("digits"))
        raise OptionError(field="precision", expected="a Precision or a mapping",
                          found=type(value).__name__)

    @property
    def label(self) -> str:
        """Short text for tables: ``float16``, ``int4/per-column``, ``digits 6``."""
        parts = []
        if self.dtype:
            parts.append(self.dtype)
        if self.quantize:
            parts.append(f"int{self.quantize}")
        if self.digits:
            parts.append(f"digits {self.digits}")
        return " ".join(parts) or "as stored"


# --- cast and digits -------------------------------------------------------------------


def cast(weights: Weights | Mapping[str, Any], dtype: str) -> Weights:
    """*weights* with every float tensor cast to *dtype* (float16, bfloat16, float32,
    float64); other tensors and the metadata unchanged. Rounds to nearest even."""
    w = as_weights(weights)
    target = _float_dtype(dtype, f"precision dtype {dtype}")
    out = []
    for name, array in w.items():
        if _is_float(array) and array.dtype != target:
            with np.errstate(over="ignore"):
                array = np.asarray(array).astype(target)
        out.append((name, array))
    return Weights(out, w.metadata)


def _round_significant(x: np.ndarray, digits: int) -> np.ndarray:
    """float64 *x* rounded to *digits* significant decimal digits (the nearest float64 to
    the rounded decimal); 0, inf and NaN unchanged."""
    out = x.copy()
    ok = np.isfinite(x) & (x != 0)
    v = x[ok]
    k = digits - 1 - np.floor(np.log10(np.abs(v))).astype(np.int64)
    pos = k >= 0
    scaled = np.where(pos, v * 10.0 ** np.where(pos, k, 0), v / 10.0 ** np.where(pos, 0, -k))
    m = np.round(scaled)
    out[ok] = np.where(pos, m / 10.0 ** np.where(pos, k, 0), m * 10.0 ** np.where(pos, 0, -k))
    return out


def round_digits(weights: Weights | Mapping[str, Any], digits: int) -> Weights:
    """*weights* with every float rounded to *digits* significant decimal digits (1 to 17),
    in its own dtype; other tensors and the metadata unchanged."""
    Precision(digits=digits)  # validates
    w = as_weights(weights)
    out = []
    for name, array in w.items():
        if _is_float(array) and array.size:
            wide = np.asarray(array).astype(np.float64)
            with np.errstate(over="ignore"):
                array = _round_significant(wide, digits).astype(array.dtype)
        out.append((name, array))
    return Weights(out, w.metadata)


# --- quantization ----------------------------------------------------------------------


@dataclass(frozen=True)
class QuantizedTensor:
    """Integer codes and their scales, and how to restore the floats (see the module doc)."""

    codes: np.ndarray
    scale: np.ndarray
    bits: int
    dtype: str
    block: int | None = None

    @property
    def granularity(self) -> str:
        """``tensor`` (one scale), ``column`` or ``block``."""
        if self.codes.ndim < 2:
            return "tensor"
        return "block" if self.block else "column"

    def scale_shape(self) -> tuple[int, ...]:
        """The shape the scales must have for these codes."""
        return _scale_shape(self.codes.shape, self.block)

    def dequantize(self) -> np.ndarray:
        """The float values ``code * scale`` in ``dtype``."""
        codes = self.codes.astype(np.float64)
        scale = np.asarray(self.scale).astype(np.float64)
        if self.codes.ndim >= 2:
            rows = _as_matrix(codes)
            if self.block:  # each row's block scale; never more rows than the codes have
                scale = scale[np.arange(rows.shape[0]) // self.block]
            values = (rows * scale).reshape(self.codes.shape)
        else:
            values = codes * scale
        return values.astype(_float_dtype(self.dtype, f"dtype {self.dtype}"))

    def entry(self, packed: bool = False) -> dict[str, Any]:
        """This tensor's record in the metadata JSON (codes *packed* or one per byte)."""
        e: dict[str, Any] = {"dtype": self.dtype, "shape": list(self.codes.shape),
                             "bits": self.bits, "granularity": self.granularity}
        if self.granularity == "block":
            e["block"] = self.block
        e["packed"] = packed
        return e


def _as_matrix(a: np.ndarray) -> np.ndarray:
    """A tensor of 2+ dimensions as ``(R, C)``, C its last axis."""
    return a.reshape(-1, a.shape[-1]) if a.shape[-1] else a.reshape(int(np.prod(a.shape[:-1])), 0)


def _scale_shape(shape: tuple[int, ...], block: int | None) -> tuple[int, ...]:
    if len(shape) < 2:
        return ()
    rows = int(np.prod(shape[:-1]))
    return (-(-rows // block), shape[-1]) if block else (shape[-1],)


def qmax(bits: int) -> int:
    """The largest code of *bits* bits: ``2**(bits-1) - 1``."""
    return (1 << (bits - 1)) - 1


def codes_for(values: np.ndarray, scale: np.ndarray, bits: int) -> np.ndarray:
    """Round-to-nearest codes of float64 *values* against broadcastable *scale*, clipped."""
    top = qmax(bits)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(scale > 0, np.round(values / np.where(scale > 0, scale, 1)), 0)
    return np.clip(q, -top, top).astype(np.int8)


def packed_length(count: int, bits: int) -> int:
    """Bytes that *count* codes of *bits* bits take packed: ``ceil(count * bits / 8)``."""
    return (count * bits + 7) // 8


def _shifts(bits: int) -> np.ndarray:
    """Where each of 8 consecutive codes starts in their little-endian 64-bit word."""
    return np.arange(8, dtype=np.uint64) * np.uint64(bits)


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """*codes* (integers within *bits* bits, two's complement) as the packed ``uint8``
    stream of the module doc: C order, LSB first, last byte padded with 0 bits.

    Works through :data:`PACK_CHUNK` codes at a time, so scratch stays a few MiB.
    """
    flat = np.ascontiguousarray(codes, dtype=np.int8).reshape(-1).view(np.uint8)
    out = np.empty(packed_length(flat.size, bits), dtype=np.uint8)
    mask, shifts = np.uint8((1 << bits) - 1), _shifts(bits)
    for start in range(0, flat.size, PACK_CHUNK):
        part = flat[start:start + PACK_CHUNK]
        n, groups = part.size, -(-part.size // 8)
        lanes = np.zeros(groups * 8, dtype=np.uint8)
        np.bitwise_and(part, mask, out=lanes[:n])
        lanes = lanes.reshape(groups, 8)
        words = lanes[:, 0].astype("<u8")
        for j in range(1, 8):
            words |= lanes[:, j].astype("<u8") << shifts[j]
        raw = words.view(np.uint8).reshape(groups, 8)[:, :bits].reshape(-1)
        first = start * bits // 8  # start is a multiple of 8: a whole byte
        size = packed_length(n, bits)
        out[first:first + size] = raw[:size]
    return out


def unpack_codes(packed: np.ndarray, bits: int, shape: Iterable[int], *,
                 path: str | None = None, field: str = "codes",
                 budget: Budget | None = None) -> np.ndarray:
    """The ``int8`` codes of *shape* that :func:`pack_codes` packed into *packed*.

    Checks *packed* against *shape* and *bits* (dtype ``uint8``, 1-D, exactly
    :func:`packed_length` bytes, padding bits 0) and charges *budget* for the codes and
    the scratch before allocating them; :class:`FormatError` names *field* otherwise.
    """
    shape = tuple(shape)
    count = 1
    for d in shape:
        count *= int(d)
    want = packed_length(count, bits)
    if packed.dtype != np.uint8 or packed.ndim != 1 or packed.shape[0] != want:
        raise FormatError(path=path, field=f"tensor {field!r}",
                          expected=f"uint8 of shape ({want},): {count:,} codes of {bits} bits "
                          f"packed", found=f"{packed.dtype} of shape {list(packed.shape)}")
    tail = count * bits % 8
    if tail and int(packed[-1]) >> tail:
        raise FormatError(path=path, field=f"tensor {field!r} padding",
                          expected=f"the last byte's {8 - tail} bits after the last code 0",
                          found=f"last byte 0x{int(packed[-1]):02x}")
    scratch = min(count, PACK_CHUNK) * 24  # lanes, 64-bit words and the unpacked chunk
    if budget is not None:
        budget.take(count + scratch, path=path, field=f"unpacking tensor {field!r}")
    out = np.empty(count, dtype=np.int8)
    mask, shifts = np.uint64((1 << bits) - 1), _shifts(bits)
    up = np.uint8(8 - bits)
    for start in range(0, count, PACK_CHUNK):
        n = min(PACK_CHUNK, count - start)
        groups = -(-n // 8)
        first = start * bits // 8
        raw = packed[first:first + packed_length(n, bits)]
        lanes = np.zeros((groups, 8), dtype=np.uint8)
        flat = np.zeros(groups * bits, dtype=np.uint8)
        flat[:raw.size] = raw
        lanes[:, :bits] = flat.reshape(groups, bits)
        words = lanes.view("<u8").reshape(groups, 1)
        values = ((words >> shifts) & mask).astype(np.uint8).reshape(-1)[:n]
        # sign-extend: move the code's top bit to bit 7, then shift back arithmetically
        np.right_shift((values << up).view(np.int8), up.astype(np.int8), out=out[start:start + n])
    if budget is not None:
        budget.give_back(scratch)
    return out.reshape(shape)


def quantize_tensor(array: np.ndarray, bits: int, *, block: int | None = None,
                    scale_dtype: str = "float32", name: str = "tensor") -> QuantizedTensor:
    """One float tensor as symmetric *bits*-bit codes with per-column (or per-*block*) scales."""
    Quantization(bits, block)
    a = np.asarray(array)
    name_dtype = dtype_name(a.dtype)
    if not _is_float(a) or name_dtype is None:
        raise WeightsError(field=f"tensor {name!r}", expected="a float tensor to quantize",
                           found=str(a.dtype))
    wide = a.astype(np.float64)
    if not np.isfinite(wide).all():
        raise WeightsError(field=f"tensor {name!r}", expected="finite values to quantize",
                           found="NaN or infinity")
    sdtype = _float_dtype(scale_dtype, f"scale dtype {scale_dtype}")
    top = qmax(bits)
    if a.ndim < 2:
        amax = float(np.abs(wide).max()) if wide.size else 0.0
        scale = np.array(amax / top).astype(sdtype)
        codes = codes_for(wide, scale.astype(np.float64), bits)
        return QuantizedTensor(codes.reshape(a.shape), scale, bits, name_dtype, None)
    rows = _as_matrix(wide)
    n = rows.shape[0]
    if block:  # per block of rows, without padding to the block size (it may be huge)
        starts = np.arange(0, n, block) if n else np.zeros(0, dtype=np.intp)
        amax = np.maximum.reduceat(np.abs(rows), starts, axis=0) if n and rows.shape[1] \
            else np.zeros((len(starts), rows.shape[1]))
        scale = (amax / top).astype(sdtype)
        full = scale.astype(np.float64)[np.arange(n) // block]
    else:
        amax = np.abs(rows).max(axis=0) if n else np.zeros(rows.shape[1])
        scale = (amax / top).astype(sdtype)
        full = scale.astype(np.float64)[None, :]
    codes = codes_for(rows, full, bits).reshape(a.shape)
    return QuantizedTensor(codes, scale, bits, name_dtype, block)


def pack(items: Iterable[tuple[str, np.ndarray | QuantizedTensor]],
         metadata: Mapping[str, str] | None = None, *, packed: bool = True) -> Weights:
    """Stored weights: each :class:`QuantizedTensor` as ``NAME.q`` and ``NAME.scale`` in its
    place, plain arrays as they are, and the record under :data:`QUANT_KEY`.

    Codes of fewer than 8 bits are bit-packed (module doc) unless *packed* is false; 8-bit
    codes are always one per byte."""
    tensors: list[tuple[str, np.ndarray]] = []
    record: dict[str, Any] = {}
    plain: set[str] = set()
    items = list(items)
    for name, value in items:
        if not isinstance(value, QuantizedTensor):
            plain.add(name)
    for name, value in items:
        if isinstance(value, QuantizedTensor):
            for reserved in (name + CODES_SUFFIX, name + SCALE_SUFFIX):
                if reserved in plain:
                    raise WeightsError(field=f"tensor {reserved!r}",
                                       expected=f"no tensor under the name reserved for {name!r}'s "
                                       "quantized form")
            if value.scale.shape != value.scale_shape():
                raise WeightsError(field=f"tensor {name!r} scale",
                                   expected=f"shape {value.scale_shape()}",
                                   found=value.scale.shape)
            packs = packed and value.bits < 8
            codes = pack_codes(value.codes, value.bits) if packs else value.codes
            tensors.append((name + CODES_SUFFIX, codes))
            tensors.append((name + SCALE_SUFFIX, value.scale))
            record[name] = value.entry(packs)
        else:
            tensors.append((name, value))
    meta = dict(metadata or {})
    if record:
        meta[QUANT_KEY] = record_text(record)
    else:
        meta.pop(QUANT_KEY, None)
    return Weights(tensors, meta)


def record_text(tensors: Mapping[str, Mapping[str, Any]]) -> str:
    """The metadata value of :data:`QUANT_KEY` for these per-tensor entries."""
    return json.dumps({"version": QUANT_VERSION, "scheme": "symmetric", "tensors": tensors},
                      separators=(",", ":"))


def quantization_record(metadata: Mapping[str, str],
                        path: str | None = None) -> dict[str, dict[str, Any]] | None:
    """The checked per-tensor entries of the quantization record in *metadata* (name ->
    entry, the names of the tensors stored as ``NAME.q`` and ``NAME.scale``), or None when
    there is none. A damaged record is a :class:`FormatError` naming *path*."""
    text = metadata.get(QUANT_KEY)
    return None if text is None else _parse_record(text, path)


def quantize(weights: Weights | Mapping[str, Any], bits: int, *, block: int | None = None,
             scale_dtype: str = "float32") -> Weights:
    """*weights* with every float tensor stored as *bits*-bit codes and scales (module doc).

    Tensors already quantized, and non-float tensors, are kept as they are.
    """
    w = as_weights(weights)
    if is_quantized(w):
        raise WeightsError(field="weights", expected="float weights to quantize",
                           found="weights already quantized (dequantize them first)")
    items: list[tuple[str, np.ndarray | QuantizedTensor]] = []
    for name, array in w.items():
        if _is_float(array):
            items.append((name, quantize_tensor(array, bits, block=block,
                                                scale_dtype=scale_dtype, name=name)))
        else:
            items.append((name, array))
    return pack(items, w.metadata)


def is_quantized(weights: Weights) -> bool:
    """Whether *weights* carry a quantization record (codes to restore)."""
    return QUANT_KEY in weights.metadata


def _parse_record(text: str, path: str | None) -> dict[str, dict[str, Any]]:
    field = f"metadata {QUANT_KEY!r}"
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise FormatError(f"not JSON ({e})", path=path, field=field) from e
    if not isinstance(doc, dict) or set(doc) != {"version", "scheme", "tensors"}:
        raise FormatError(path=path, field=field,
                          expected="an object with keys scheme, tensors, version",
                          found=sorted(doc) if isinstance(doc, dict) else doc)
    version = doc["version"]
    if version not in READ_VERSIONS or isinstance(version, bool):
        raise FormatError(path=path, field=f"{field} version",
                          expected=" or ".join(map(str, READ_VERSIONS)), found=version)
    if doc["scheme"] != "symmetric":
        raise FormatError(path=path, field=f"{field} scheme", expected="'symmetric'",
                          found=doc["scheme"])
    if not isinstance(doc["tensors"], dict):
        raise FormatError(path=path, field=f"{field} tensors", expected="an object",
                          found=doc["tensors"])
    for name, e in doc["tensors"].items():
        where = f"{field} tensors[{name!r}]"
        keys = _ENTRY_KEYS | ({"block"} if isinstance(e, dict) and
                              e.get("granularity") == "block" else set()) \
            | ({"packed"} if version >= 2 else set())
        if not isinstance(e, dict) or set(e) != keys:
            raise FormatError(path=path, field=where, expected=f"keys {sorted(keys)}",
                              found=sorted(e) if isinstance(e, dict) else e)
        if e["dtype"] not in FLOAT_DTYPES:
            raise FormatError(path=path, field=f"{where}.dtype",
                              expected=f"one of {', '.join(FLOAT_DTYPES)}", found=e["dtype"])
        bits = e["bits"]
        if not isinstance(bits, int) or isinstance(bits, bool) or not MIN_BITS <= bits <= MAX_BITS:
            raise FormatError(path=path, field=f"{where}.bits",
                              expected=f"an integer from {MIN_BITS} to {MAX_BITS}", found=bits)
        shape = e["shape"]
        if not isinstance(shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise FormatError(path=path, field=f"{where}.shape",
                              expected="a list of non-negative integers", found=shape)
        if e["granularity"] not in _GRANULARITIES:
            raise FormatError(path=path, field=f"{where}.granularity",
                              expected=f"one of {', '.join(_GRANULARITIES)}",
                              found=e["granularity"])
        expected_gran = "tensor" if len(shape) < 2 else e["granularity"]
        if e["granularity"] != expected_gran or (len(shape) >= 2 and e["granularity"] == "tensor"):
            raise FormatError(path=path, field=f"{where}.granularity",
                              expected="'tensor' for 0-d and 1-d tensors, 'column' or 'block' "
                              "for others", found=e["granularity"])
        if "block" in e and (not isinstance(e["block"], int) or isinstance(e["block"], bool)
                             or not 1 <= e["block"] <= MAX_BLOCK):
            raise FormatError(path=path, field=f"{where}.block",
                              expected=f"a positive integer up to {MAX_BLOCK:,}",
                              found=e["block"])
        if version < 2:
            e["packed"] = False  # version 1: one code per byte
        elif not isinstance(e["packed"], bool):
            raise FormatError(path=path, field=f"{where}.packed", expected="true or false",
                              found=e["packed"])
    return doc["tensors"]


def dequantize(weights: Weights, *, path: str | None = None,
               budget: Budget | None = None) -> Weights:
    """Stored weights with their quantized tensors restored to floats, in their places and
    under their own names; the record leaves the metadata. Unquantized weights unchanged.

    Raises :class:`FormatError` naming the field when the record or a tensor disagrees.
    """
    if not is_quantized(weights):
        return weights
    record = _parse_record(weights.metadata[QUANT_KEY], path)
    restored: dict[str, np.ndarray] = {}
    for name, e in record.items():
        codes_name, scale_name = name + CODES_SUFFIX, name + SCALE_SUFFIX
        for part in (codes_name, scale_name):
            if part not in weights:
                raise FormatError(path=path, field=f"tensor {part!r}",
                                  expected=f"present (the record quantizes {name!r})",
                                  found="missing")
        if name in weights:
            raise FormatError(path=path, field=f"tensor {name!r}",
                              expected="only its codes and scales (it is quantized)",
                              found="a tensor of that name as well")
        codes, scale = weights[codes_name], weights[scale_name]
        unpacked = 0
        if e["packed"]:
            codes = unpack_codes(codes, e["bits"], e["shape"], path=path, field=codes_name,
                                 budget=budget)
            unpacked = codes.size
        if codes.dtype != np.int8 or list(codes.shape) != e["shape"]:
            raise FormatError(path=path, field=f"tensor {codes_name!r}",
                              expected=f"int8 codes of shape {e['shape']}",
                              found=f"{codes.dtype} of shape {list(codes.shape)}")
        top = qmax(e["bits"])
        if codes.size and (int(codes.min()) < -top or int(codes.max()) > top):
            raise FormatError(path=path, field=f"tensor {codes_name!r}",
                              expected=f"codes from {-top} to {top} ({e['bits']} bits)",
                              found=int(codes.min()) if codes.min() < -top else int(codes.max()))
        q = QuantizedTensor(codes, scale, e["bits"], e["dtype"], e.get("block"))
        if not _is_float(scale) or scale.shape != q.scale_shape():
            raise FormatError(path=path, field=f"tensor {scale_name!r}",
                              expected=f"float scales of shape {q.scale_shape()}",
                              found=f"{scale.dtype} of shape {scale.shape}")
        if budget is not None:  # float64 codes, row scales and product, then the result
            budget.take(codes.size * 4 * 8, path=path, field=f"dequantizing tensor {name!r}")
        restored[codes_name] = q.dequantize()
        if budget is not None:  # the float64 scratch and unpacked codes are freed
            budget.give_back(codes.size * 3 * 8 + unpacked)
    scales = {name + SCALE_SUFFIX for name in record}
    out = [(key[: -len(CODES_SUFFIX)], restored[key]) if key in restored else (key, array)
           for key, array in weights.items() if key not in scales]
    meta = {k: v for k, v in weights.metadata.items() if k != QUANT_KEY}
    return Weights(out, meta)


# --- all together ----------------------------------------------------------------------


def _narrows(array: np.ndarray, target: str) -> bool:
    order = {"float16": 0, "bfloat16": 0, "float32": 1, "float64": 2}
    name = dtype_name(array.dtype)
    return name != target and (order.get(target, 0) <= order.get(name or "", 0))


def apply(weights: Weights | Mapping[str, Any], precision: Precision | Mapping[str, Any] | None,
          *, warn: bool = True) -> Weights:
    """*weights* as *precision* asks: cast, then quantize or round digits.

    Warns :class:`LossyWarning` once if any float tensor loses precision. Quantized input
    is restored to floats first when a precision is given.
    """
    w = as_weights(weights)
    p = Precision.of(precision)
    if p is None or (p.dtype is None and p.quantize is None and p.digits is None):
        return w
    w = dequantize(w)
    floats = [a for a in w.values() if _is_float(a)]
    lossy = []
    if p.dtype is not None:
        if any(_narrows(a, p.dtype) for a in floats):
            lossy.append(f"cast to {p.dtype}")
        w = cast(w, p.dtype)
    if p.quantize is not None:
        if floats:
            lossy.append(f"quantized to {p.quantize.bits}-bit codes")
        w = quantize(w, p.quantize.bits, block=p.quantize.block)
    if p.digits is not None:
        if floats:
            lossy.append(f"rounded to {p.digits} significant digits")
        w = round_digits(w, p.digits)
    if lossy and warn:
        warnings.warn(f"the values written lose precision ({', '.join(lossy)})", LossyWarning,
                      stacklevel=3)
    return w
