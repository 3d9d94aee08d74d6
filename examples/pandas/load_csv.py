"""Rebuild the arrays of a weightstore CSV file with pandas (and numpy), without weightstore.

Usage: python examples/pandas/load_csv.py WEIGHTS.csv [OUT.npz]

Prints each tensor's name, dtype and shape; with OUT.npz, also saves the arrays
there with numpy.savez. The CSV layout (weightstore/codecs/csv_codec.py) has one row per
value: tensor, dtype, shape ("784x50", "scalar"), index (row-major position), value.
Values are read as text and parsed by numpy, so every float comes back bit for bit
("NaN", "Infinity" and "-Infinity" included; a NaN written with its bits,
"NaN(0x...)", is outside this example). bfloat16 needs ml_dtypes imported first.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd


def load_csv(path: str) -> dict[str, np.ndarray]:
    """The tensors of a weightstore CSV file, in file order."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df = df[df["dtype"] != "metadata"]  # metadata rows: key in "tensor", text in "value"
    arrays = {}
    for name, rows in df.groupby("tensor", sort=False):
        dtype, shape_text = np.dtype(rows["dtype"].iloc[0]), rows["shape"].iloc[0]
        shape = () if shape_text == "scalar" else tuple(int(d) for d in shape_text.split("x"))
        rows = rows[rows["index"] != ""]  # an empty tensor has one row without index and value
        flat = np.empty(len(rows), dtype=dtype)
        values = rows["value"].to_numpy()
        if dtype.kind == "b":
            parsed = values == "1"
        else:  # integers parse exactly as themselves; floats through float64, rounded once
            parsed = values.astype(dtype if dtype.kind in "iu" else np.float64)
        flat[rows["index"].astype(np.int64).to_numpy()] = parsed
        arrays[name] = flat.reshape(shape)
    return arrays


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python load_csv.py WEIGHTS.csv [OUT.npz]")
    tensors = load_csv(sys.argv[1])
    for name, array in tensors.items():
        print(f"{name}\t{array.dtype}\t{list(array.shape)}")
    if len(sys.argv) == 3:
        np.savez(sys.argv[2], **tensors)
