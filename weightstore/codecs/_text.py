"""Numbers as text, shared by the JSON and CSV codecs.

Writing: every float is the shortest decimal that reads back to the identical
value *of its own dtype* (float16, bfloat16, float32 or float64), as ryu/Dragon4
produce it; integers are exact decimals; non-finite floats are the tokens
``NaN``, ``Infinity`` and ``-Infinity``. A NaN whose bits are not the dtype's
canonical quiet NaN is written ``NaN(0x<hex bits>)`` so that nothing is lost
(``Number("NaN(0x7fc00001)")`` is still NaN in JavaScript). Integers of 64 bits
beyond ±(2**53 - 1) are written as strings in JSON so that JavaScript does not
round them.

Reading parses through float64 and rounds once to the target dtype; for the
shortest decimals written above this gives back the identical value (tested
over tens of millions of random float32 values).
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

import numpy as np
import orjson

from ..errors import FormatError
from ..model import canonical_dtype

_ORJSON_OPTS = orjson.OPT_SERIALIZE_NUMPY
NAN, POS_INF, NEG_INF = "NaN", "Infinity", "-Infinity"
_NAN_BITS = re.compile(r"NaN\(0x([0-9a-fA-F]{1,16})\)")
JS_SAFE_INT = 2**53 - 1


@functools.cache
def _half_table(name: str) -> np.ndarray:
    """float64 value of the shortest decimal of every 16-bit pattern of dtype *name*.

    Built once (65,536 entries) by trying 1, 2, ... significant digits until the
    decimal reads back to the same 16-bit value.
    """

    dtype = canonical_dtype(name)
    values = np.arange(65536, dtype=np.uint16).view(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        wide = values.astype(np.float64)
        table = wide.copy()
        for i, x in enumerate(wide.tolist()):
            if x != x or x in (float("inf"), float("-inf")) or x == 0.0:
                continue
            for digits in range(1, 10):
                candidate = float(f"{x:.{digits}g}")
                if np.array(candidate).astype(dtype).view(np.uint16) == i:
                    table[i] = candidate
                    break
    return table


def _as_f64_shortest(flat: np.ndarray) -> np.ndarray:
    """For 16-bit floats: float64 values whose shortest repr is the 16-bit shortest repr."""
    name = flat.dtype.name
    return _half_table(name)[flat.view(np.uint16)]


def _wide(flat: np.ndarray) -> np.ndarray:
    """Values numpy's float functions accept: bfloat16 widened to float32, others as they are."""
    return flat.astype(np.float32) if flat.dtype.name == "bfloat16" else flat


def _canonical_nan_bits(dtype: np.dtype) -> int:
    return int(np.array(np.nan, dtype=np.float64).astype(dtype).view(f"u{dtype.itemsize}"))


def _nan_token(value: np.ndarray) -> str:
    bits = int(value.view(f"u{value.dtype.itemsize}"))
    if bits == _canonical_nan_bits(value.dtype):
        return NAN
    return f"NaN(0x{bits:0{value.dtype.itemsize * 2}x})"


def needs_tokens(flat: np.ndarray, big_ints_as_strings: bool) -> bool:
    """Whether *flat* has values that plain JSON numbers cannot carry."""
    kind = flat.dtype.kind
    if kind == "f" or flat.dtype.name == "bfloat16":
        return not bool(np.isfinite(_wide(flat)).all())
    if big_ints_as_strings and flat.dtype.itemsize == 8 and kind in "iu" and flat.size:
        return bool(flat.max() > JS_SAFE_INT or (kind == "i" and flat.min() < -JS_SAFE_INT))
    return False


def json_ready(array: np.ndarray, *, big_ints_as_strings: bool = True) -> Any:
    """*array* (C order) as something orjson serialises to the text described above."""
    flat = np.ascontiguousarray(array).reshape(-1)
    if flat.dtype.byteorder == ">":
        flat = flat.astype(flat.dtype.newbyteorder("<"))
    if not needs_tokens(flat, big_ints_as_strings):
        if flat.dtype.itemsize == 2 and flat.dtype.kind not in "iu":
            flat = _as_f64_shortest(flat)
        return flat.reshape(array.shape) if array.ndim else flat[0]  # a numpy scalar: shortest
    items: list[Any] = []
    kind = flat.dtype.kind
    if kind in "iu":
        for v in flat.tolist():
            items.append(str(v) if abs(v) > JS_SAFE_INT else v)
    else:
        finite = np.isfinite(_wide(flat))
        shortest = _as_f64_shortest(flat) if flat.dtype.itemsize == 2 else flat
        numbers = orjson.loads(orjson.dumps(shortest, option=_ORJSON_OPTS))
        for i, ok in enumerate(finite.tolist()):
            if ok:
                items.append(numbers[i])
            elif np.isnan(_wide(flat[i:i + 1])[0]):
                items.append(_nan_token(flat[i]))
            else:
                items.append(POS_INF if _wide(flat[i:i + 1])[0] > 0 else NEG_INF)
    if array.ndim == 0:
        return items[0]
    return np.array(items, dtype=object).reshape(array.shape).tolist()


def json_text(array: np.ndarray, *, big_ints_as_strings: bool = True,
              quote_tokens: bool = True) -> bytes:
    """The JSON text of ``json_ready(array)`` (nested lists, C order), built without a
    Python loop per value: orjson serialises the array and the few non-finite values,
    which it writes as ``null``, are replaced by their tokens (quoted unless
    *quote_tokens* is false). Identical bytes to ``orjson.dumps(json_ready(array))``."""
    if array.ndim == 0:  # as a one-value list, so a float32 is its shortest decimal too
        return json_text(array.reshape(1), big_ints_as_strings=big_ints_as_strings,
                         quote_tokens=quote_tokens)[1:-1]
    arr = np.ascontiguousarray(array)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    flat = arr.reshape(-1)
    float_like = flat.dtype.kind == "f" or flat.dtype.name == "bfloat16"
    if not needs_tokens(flat, big_ints_as_strings):
        if flat.dtype.itemsize == 2 and flat.dtype.kind not in "iu":
            arr = _as_f64_shortest(flat).reshape(arr.shape)
        return orjson.dumps(arr, option=_ORJSON_OPTS)
    if not float_like:  # 64-bit integers beyond 2**53 as strings: rare, done per value
        return orjson.dumps(json_ready(array, big_ints_as_strings=big_ints_as_strings),
                            option=_ORJSON_OPTS)
    shortest = _as_f64_shortest(flat) if flat.dtype.itemsize == 2 else flat
    # Through Python floats, as json_ready formats a tensor that holds non-finite values.
    text = orjson.dumps(orjson.loads(orjson.dumps(shortest.reshape(arr.shape),
                                                  option=_ORJSON_OPTS)))
    wide = _wide(flat)
    q = b'"' if quote_tokens else b""
    tokens = []
    for i in np.flatnonzero(~np.isfinite(wide)).tolist():
        token = _nan_token(flat[i]) if np.isnan(wide[i]) else POS_INF if wide[i] > 0 else NEG_INF
        tokens.append(q + token.encode("ascii") + q)
    parts = text.split(b"null")
    out: list[bytes] = [b""] * (2 * len(parts) - 1)
    out[0::2] = parts
    out[1::2] = tokens
    return b"".join(out)


def value_text(array: np.ndarray) -> bytes:
    """Each value of *array* in C order as text (bool as 0/1), comma-separated, for CSV."""
    flat = np.ascontiguousarray(array).reshape(-1)
    if flat.dtype.kind == "b":
        flat = flat.view(np.uint8)
    if flat.size == 0:
        return b""
    return json_text(flat, big_ints_as_strings=False, quote_tokens=False)[1:-1]


def value_strings(array: np.ndarray) -> list[str]:
    """Each value of *array* in C order as text (bool as 0/1), for CSV."""
    text = value_text(array)
    return text.decode("ascii").split(",") if text else []


def parse_token(token: str, dtype: np.dtype, where: str, path: str) -> Any:
    """One non-numeric token (``NaN``, ``Infinity``, ``NaN(0x..)``, a big integer) as a value."""
    if dtype.kind in "iu":
        try:
            return int(token)
        except ValueError:
            pass
    else:
        if token == NAN:
            return float("nan")
        if token == POS_INF:
            return float("inf")
        if token == NEG_INF:
            return float("-inf")
        m = _NAN_BITS.fullmatch(token)
        if m:
            bits = int(m.group(1), 16)
            if bits < 1 << (8 * dtype.itemsize):
                value = np.array(bits, dtype=f"u{dtype.itemsize}").view(dtype)
                if np.isnan(_wide(value.reshape(1))[0]):
                    return value
        try:  # a number given as a string: accepted, as JavaScript's Number() would
            return float(token)
        except ValueError:
            pass
    raise FormatError(
        path=path, field=where,
        expected="a number, 'NaN', 'Infinity', '-Infinity' or 'NaN(0x<bits>)'", found=token,
    )


def cast_exact(values: np.ndarray, dtype: np.dtype, where: str, path: str) -> np.ndarray:
    """float64/int64/uint64/object *values* as *dtype*, refusing integers out of range."""
    if dtype.kind in "iu":
        if values.dtype.kind == "f":
            raise FormatError(path=path, field=where, expected=f"integers for {dtype.name}",
                              found="a fractional or float value")
        if values.dtype.kind == "O" or values.size and values.dtype != dtype:
            info = np.iinfo(dtype)
            if values.size:
                flat = values.reshape(-1).tolist()
                lo, hi = min(flat), max(flat)
                if lo < info.min or hi > info.max:
                    raise FormatError(path=path, field=where,
                                      expected=f"values from {info.min} to {info.max}",
                                      found=lo if lo < info.min else hi)
        return np.array(values.tolist() if values.dtype.kind == "O" else values, dtype=dtype)
    if dtype.kind == "b":
        return values.astype(bool)
    if values.dtype.kind == "O":
        out = np.empty(values.shape, dtype=dtype)
        flat_out = out.reshape(-1)
        for i, v in enumerate(values.reshape(-1).tolist()):
            if isinstance(v, np.ndarray | np.generic):  # a token, already of the dtype
                flat_out[i] = v
                continue
            with np.errstate(over="ignore"):
                flat_out[i] = np.float64(v)
            if math.isfinite(v) and not np.isfinite(flat_out[i:i + 1].astype(np.float64))[0]:
                raise FormatError(path=path, field=where,
                                  expected=f"finite values within {dtype.name}'s range",
                                  found=float(v))
        return out
    if values.dtype.kind not in "iuf":
        raise FormatError(path=path, field=where, expected=f"numbers for {dtype.name}",
                          found=str(values.dtype))
    wide = values.astype(np.float64)
    with np.errstate(over="ignore"):
        out = wide.astype(dtype)
    # Rounding once to the dtype is the rule; a finite decimal that rounds to infinity (a
    # float32 1e39) is out of the dtype's range: an error (infinity is written "Infinity").
    overflow = np.isinf(out.astype(np.float64)) & np.isfinite(wide)
    if overflow.any():
        raise FormatError(path=path, field=where,
                          expected=f"finite values within {dtype.name}'s range",
                          found=float(wide.reshape(-1)[np.flatnonzero(overflow.reshape(-1))[0]]))
    return out
