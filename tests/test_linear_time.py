"""Every reader's time is linear in the file: double a hostile input, and the load may take
at most three times as long (issue 12).

Each case builds the same attack at size n and 2n (a name of n '/' parts, n dict keys,
n memo entries, n metadata keys, ...) and times ``weightstore.load`` in process CPU
time, the best of a few repetitions, so that other processes on a loaded machine do not
count. Linear time doubles; quadratic time quadruples. This is a complexity check, not a
speed target: n is chosen so that one load takes a tenth of a second or so.
"""

from __future__ import annotations

import gc
import pickle
import struct
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import weightstore as ws

#: A doubled input may take at most this many times as long (linear: 2, quadratic: 4).
MAX_RATIO = 3.0
REPEATS = 3


def _names_with_parts(n: int, path: Path) -> Path:
    out = path / f"parts{n}.safetensors"
    ws.save({"/".join(["p"] * n): np.zeros(2, np.float32)}, out)
    return out


def _pickle_keys(n: int, path: Path) -> Path:
    out = path / f"keys{n}.pkl"
    out.write_bytes(pickle.dumps({f"k{i}": np.float32(i) for i in range(n)}, protocol=4))
    return out


def _pickle_memo(n: int, path: Path) -> Path:
    # n values memoized at scattered indexes, one array at the end
    body = b"".join(b"N" + b"r" + struct.pack("<I", (i * 2654435761) & 0x7FFFFFFF) + b"0"
                    for i in range(n))
    tail = pickle.dumps({"W": np.zeros(2, np.float32)}, protocol=2)
    out = path / f"memo{n}.pkl"
    out.write_bytes(tail[:2] + body + tail[2:])
    return out


def _json_metadata(n: int, path: Path) -> Path:
    out = path / f"meta{n}.json"
    ws.save(ws.Weights({"W": np.zeros(2, np.float32)},
                       metadata={f"key{i}": "v" for i in range(n)}), out)
    return out


def _csv_metadata(n: int, path: Path) -> Path:
    out = path / f"meta{n}.csv"
    ws.save(ws.Weights({"W": np.zeros(2, np.float32)},
                       metadata={f"key{i}": "=v" for i in range(n)}), out)
    return out


def _hdf5_vlen_heap(n: int, path: Path) -> Path:
    # n variable-length string attributes: their global heap is walked before reading
    import h5py

    out = path / f"vlen{n}.h5"
    with h5py.File(out, "w", libver="v108") as f:
        f["W"] = np.zeros(2)
        for i in range(n):
            f.attrs[f"k{i}"] = f"value {i}"  # h5py stores str as variable-length
    return out


def _hdf5_groups(n: int, path: Path) -> Path:
    import h5py

    out = path / f"groups{n}.h5"
    with h5py.File(out, "w", libver="v108") as f:
        for i in range(n):
            f.create_group(f"g{i}")["W"] = np.zeros(1, np.float32)
    return out


def _index_names(n: int, path: Path) -> Path:
    ws.save({f"layer{i}/W": np.zeros(1, np.float32) for i in range(n)},
            path / f"idx{n}.npz", max_shard_size=1 << 30)
    return path / f"idx{n}.npz.index.json"


CASES: dict[str, tuple[Callable[[int, Path], Path], int]] = {
    "name with n '/' parts": (_names_with_parts, 100_000),
    "pickle dict of n keys": (_pickle_keys, 4_000),
    "pickle with n memo entries": (_pickle_memo, 40_000),
    "JSON with n metadata keys": (_json_metadata, 40_000),
    "CSV with n metadata rows": (_csv_metadata, 40_000),
    "HDF5 with n variable-length attributes": (_hdf5_vlen_heap, 1_000),
    "HDF5 with n groups": (_hdf5_groups, 500),
    "shard index of n names": (_index_names, 2_500),
}


def _cpu_seconds(path: Path) -> float:
    """Best of REPEATS loads, with the garbage collector off while timing: a collection
    costs in proportion to everything the rest of the test session left alive, which is
    no property of the reader (seen in CI: one collection turned 2.2x into 4.6x). What the
    session left alive is frozen first (gc.freeze), so that the collections between
    repetitions look at this test's objects only, not at the whole session's (nor is the
    session's heap collected first: that too costs in proportion to it)."""
    best = float("inf")
    gc.freeze()
    try:
        for _ in range(REPEATS):
            gc.collect()
            gc.disable()
            try:
                start = time.process_time()
                ws.load(path)
                best = min(best, time.process_time() - start)
            finally:
                gc.enable()
    finally:
        gc.unfreeze()
    return best


@pytest.mark.parametrize("case", list(CASES))
def test_doubling_the_input_at_most_triples_the_time(case: str, tmp_path: Path) -> None:
    build, n = CASES[case]
    small, large = build(n, tmp_path), build(2 * n, tmp_path)
    _cpu_seconds(small)  # warm up: imports, caches
    t1, t2 = _cpu_seconds(small), _cpu_seconds(large)
    print(f"{case}: n={n:,} {t1 * 1000:.1f} ms, 2n {t2 * 1000:.1f} ms, ratio {t2 / t1:.2f}")
    assert t2 <= MAX_RATIO * max(t1, 0.005), f"{case}: {t1:.3f} s -> {t2:.3f} s"
