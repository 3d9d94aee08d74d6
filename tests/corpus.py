"""The arrays every codec must round-trip exactly (shared by the codec test suite)."""

from __future__ import annotations

import random

import numpy as np

from weightstore.model import DTYPES


def special_floats(dtype: str) -> np.ndarray:
    """NaN, ±Inf, ±0.0, the smallest subnormal, the extremes, and ordinary values."""
    info = np.finfo(dtype)
    values = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.1, 1 / 3, np.pi,
              float(info.max), float(info.min), float(info.tiny), float(info.eps)]
    out = np.array(values, dtype=np.float64).astype(dtype)
    smallest_subnormal = np.array([1], dtype=f"u{out.itemsize}").view(dtype)
    odd_nan = np.array([(1 << (8 * out.itemsize - 1)) | _quiet_nan_bits(out.itemsize) | 1],
                       dtype=f"u{out.itemsize}").view(dtype)  # negative NaN with a payload
    return np.concatenate([out, smallest_subnormal, -smallest_subnormal, odd_nan])


def _quiet_nan_bits(itemsize: int) -> int:
    return int(np.array(np.nan).astype(f"f{itemsize}").view(f"u{itemsize}"))


def dtype_arrays() -> dict[str, np.ndarray]:
    """One array per core dtype, spanning its range."""
    rng = np.random.default_rng(1234)
    out: dict[str, np.ndarray] = {}
    for name in DTYPES:
        if name == "bool":
            out[name] = np.array([[True, False, True], [False, False, True]])
        elif name.startswith(("int", "uint")):
            info = np.iinfo(name)
            vals = [info.min, info.max, 0, 1, info.max // 3]
            if info.min < 0:
                vals += [-1, info.min + 1, -(2**53 + 1) if info.bits == 64 else -7]
            if info.bits == 64:
                vals += [2**53 + 1, 2**53 - 1]
            out[name] = np.array(vals, dtype=name)
        else:
            out[name] = special_floats(name)
        if name.startswith("float"):
            out[f"{name}_random"] = rng.standard_normal((7, 5)).astype(name) * 0.05
    return out


def corpus() -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tensors (ordered, with groups and awkward names) and metadata for round trips."""
    tensors: dict[str, np.ndarray] = {}
    for name, array in dtype_arrays().items():
        tensors[f"dtypes/{name}"] = array
    base = np.arange(60, dtype=np.float32).reshape(6, 10) / 7
    tensors["layout/c_order"] = base
    tensors["layout/fortran"] = np.asfortranarray(base)
    tensors["layout/non_contiguous"] = base[::2, 1::3]
    tensors["layout/big_endian"] = base.astype(">f4")
    tensors["layout/big_endian_i8"] = np.arange(5, dtype=">i8") - 2
    tensors["layout/3d"] = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    tensors["layout/4d_kernel"] = (np.arange(2 * 1 * 3 * 3, dtype=np.float64)
                                   .reshape(2, 1, 3, 3) - 5) / 3
    tensors["shape/scalar"] = np.array(2.5, dtype=np.float32)
    tensors["shape/scalar_int"] = np.array(-3, dtype=np.int64)
    tensors["shape/empty"] = np.zeros((0,), dtype=np.float32)
    tensors["shape/empty_rows"] = np.zeros((0, 3), dtype=np.float64)
    tensors["shape/empty_cols"] = np.zeros((3, 0), dtype=np.int32)
    tensors["names/with space"] = np.ones(2, dtype=np.float32)
    tensors['names/comma, "quote"'] = np.ones(2, dtype=np.float32) * 2
    tensors["names/ünïcødé β"] = np.ones(2, dtype=np.float32) * 3
    tensors["z_last_but_not_sorted"] = np.ones(1, dtype=np.uint8)
    tensors["a_first_after_z"] = np.zeros(1, dtype=np.uint8)
    metadata = {"source": "weightstore tests", "ünï": 'välue, "quoted"\nwith a newline'}
    return tensors, metadata


def damaged_csv(files: list[bytes], r: random.Random, edits: list[bytes], *,
                shuffle_all: bool = True) -> tuple[int, bytes]:
    """One of *files* (CSV) damaged one way, picked by *r*: rows shuffled (or, without
    *shuffle_all*, two swapped), a row duplicated, a blank line, a value replaced by or
    extended with one of *edits*; line ends mixed. Returns the way (0-5) and the bytes."""
    lines = r.choice(files).split(b"\r\n")[:-1]
    i = r.randrange(1, len(lines))
    op = r.randrange(6)
    if op == 0 and shuffle_all:
        body = lines[1:]
        r.shuffle(body)
        lines = lines[:1] + body
    elif op == 0:
        j = r.randrange(1, len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif op == 1:
        lines[i] = lines[r.randrange(1, len(lines))]
    elif op == 2:
        lines.insert(i, b"")
    elif op == 3:
        lines[i] = lines[i].rsplit(b",", 1)[0] + b"," + r.choice(edits)
    elif op == 4:
        lines[i] = lines[i] + r.choice(edits)
    return op, b"".join(line + r.choice([b"\r\n", b"\r\n", b"\n"]) for line in lines)
