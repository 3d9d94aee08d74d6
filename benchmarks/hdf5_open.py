"""One 16 MiB tensor of a 1 GiB HDF5 file: ``weightstore.open`` beside h5py alone.

Run from the repository root::

    python -m benchmarks.hdf5_open                # 1 GiB model, 7 alternating runs
    python -m benchmarks.hdf5_open --gib 0.25 --runs 11 --keep /tmp/h5-bench

The model is :mod:`benchmarks.scale`'s (a small transformer's shapes, float32, written
by ``weightstore.save``; h5py reads it as any HDF5 file). Both readers copy the same
tensor (``model.layers.0.self_attn.q_proj.weight``, 16 MiB from 1 GiB) into memory,
both timed after their imports, the two alternating so that the machine's load hits
them alike:

- fresh process (as ``benchmarks.scale``'s lazy row): ``h5py.File(p)[name][()]``
  against ``np.array(weightstore.open(p)[name])``, each in a new process, the clock
  started after ``import weightstore, h5py`` and after ``weightstore.open`` is looked up
  (which imports ``weightstore.api``, as ``from safetensors import safe_open`` is
  imported before safetensors' clock);
- warm, in this process: the same two calls, and ``weightstore.open(p, mmap=False)``
  (read with ``pread`` and checked against the tensor's stored CRC-32).

Target (issue 14): weightstore within 1.5x of h5py alone. Medians are printed with the
ratio and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

import weightstore as ws

from .scale import model_shapes, run_child, synthetic_model

TARGET = 1.5


def _warm(path: str, name: str, runs: int) -> dict[str, float]:
    def h5() -> np.ndarray:
        with h5py.File(path, "r") as f:
            return f[name][()]

    def ws_mmap() -> np.ndarray:
        with ws.open(path) as w:
            return np.array(w[name])

    def ws_read() -> np.ndarray:
        with ws.open(path, mmap=False) as w:
            return w[name]

    calls = {"h5py": h5, "weightstore.open (memory map, copied)": ws_mmap,
             "weightstore.open(mmap=False) (read, CRC checked)": ws_read}
    expected = h5()
    for fn in calls.values():  # warm up, and check they agree
        assert np.array_equal(fn(), expected)
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(runs):
        for label, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def _fresh(path: str, name: str, runs: int) -> dict[str, float]:
    times: dict[str, list[float]] = {"h5py": [], "weightstore.open (memory map, copied)": []}
    for tool in ("h5py", "weightstore"):  # warm the page cache and the imports once
        run_child("lazy", tool, path, name)
    for _ in range(runs):
        times["h5py"].append(run_child("lazy", "h5py", path, name)["seconds"])
        times["weightstore.open (memory map, copied)"].append(
            run_child("lazy", "weightstore", path, name)["seconds"])
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="model size in GiB")
    parser.add_argument("--runs", type=int, default=7, help="alternating runs (median)")
    parser.add_argument("--keep", help="folder for the model file (kept between runs)")
    args = parser.parse_args()
    folder = Path(args.keep or tempfile.mkdtemp(prefix="ws-h5open-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"model-{args.gib:g}.h5"
    name = model_shapes(args.gib)[1]
    if not path.exists():
        print(f"writing {path} ...", flush=True)
        ws.save(synthetic_model(args.gib), path)
    with h5py.File(path, "r") as f:
        tensors, tensor_mib = len(f), f[name].nbytes / (1 << 20)
    print(f"{path}: {path.stat().st_size / (1 << 30):.2f} GiB, {tensors} datasets; "
          f"{name}: {tensor_mib:.0f} MiB; load average {os.getloadavg()[0]:.2f} at the start")
    for title, got in (("fresh process each, after imports", _fresh(str(path), name, args.runs)),
                       ("warm, in this process", _warm(str(path), name, args.runs))):
        base = got["h5py"]
        print(f"\n{title}: medians of {args.runs} alternating runs")
        for label, seconds in got.items():
            ratio = seconds / base
            verdict = "" if label == "h5py" else (
                f"  (target <= {TARGET}x: {'met' if ratio <= TARGET else 'MISSED'})")
            print(f"  {label:50} {seconds * 1000:7.2f} ms {ratio:6.2f}x{verdict}")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
