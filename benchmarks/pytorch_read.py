"""Reading a ~1 GiB PyTorch checkpoint without torch, against torch itself, and converting
it to safetensors within bounded memory.

Run from the repository root (torch optional; with it, the checkpoint is written by
``torch.save`` and torch's own reads are the baseline)::

    python -m benchmarks.pytorch_read              # about 1 GiB of float32 tensors
    python -m benchmarks.pytorch_read --gib 0.25   # quicker

The model is :func:`benchmarks.scale.synthetic_model` (shaped like a small transformer).
Each measurement runs in a fresh process, ``--runs`` times (median shown), after the
file was read once so that every reader starts from the page cache.

What is measured:

- ``read all``: every tensor in memory as an array, each value touched once (a sum):
  ``weightstore.load(pt)`` against ``torch.load(pt, weights_only=True, mmap=True)``
  (the issue's baseline: its pages are read in by the sum) and, with torch,
  ``torch.load(weights_only=True)`` without mmap. Without torch the baseline is
  ``weightstore.load`` of the same tensors as safetensors.
- ``open + map``: ``weightstore.open(pt)`` and every tensor memory-mapped, touched
  once, against ``torch.load(mmap=True)`` touched the same way.
- ``convert``: ``weightstore.convert(pt, .safetensors)``: its peak resident memory
  above what the process held before, against the bound of the largest tensor plus
  200 MiB.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.scale import MiB, rss_now, rss_peak, synthetic_model, warm

#: torch is the baseline where it is installed (it is not a dependency).
HAVE_TORCH = importlib.util.find_spec("torch") is not None


def _touch(arrays: Any) -> float:
    """Sum every value once (reads every page of a memory map)."""
    total = 0.0
    for a in arrays:
        total += float(np.add.reduce(np.asarray(a).reshape(-1), dtype=np.float64))
    return total


def child(task: str, path: str, extra: str) -> None:
    """One measurement in this fresh process: print seconds and peak memory as JSON."""
    import weightstore as ws

    if task.startswith("torch"):
        import torch
    ws.formats()
    gc.collect()
    base = rss_now()
    start = time.perf_counter()
    if task == "ws-load":
        got = ws.load(path)
        _touch(got.values())
    elif task == "ws-open-map":
        with ws.open(path, mmap=True) as lazy:
            _touch(lazy[k] for k in lazy)
    elif task == "torch-mmap":
        got = torch.load(path, weights_only=True, mmap=True)
        _touch(t.numpy() for t in got.values())
    elif task == "torch-load":
        got = torch.load(path, weights_only=True)
        _touch(t.numpy() for t in got.values())
    elif task == "convert":
        ws.convert(path, extra)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "grew": rss_peak() - base}))


def run(task: str, path: Path, extra: str = "") -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-m", "benchmarks.pytorch_read", "--child", task,
                          str(path), extra], capture_output=True, text=True, env=env,
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{task}: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def median(task: str, path: Path, runs: int, extra: str = "") -> dict[str, Any]:
    got = sorted((run(task, path, extra) for _ in range(runs)), key=lambda r: r["seconds"])
    return got[len(got) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="model size (default 1)")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    import weightstore as ws

    with tempfile.TemporaryDirectory(prefix="pt-bench-") as tmp:
        folder = Path(tmp)
        pt, st = folder / "model.pt", folder / "model.safetensors"
        model = synthetic_model(args.gib)
        nbytes = sum(a.nbytes for a in model.values())
        largest = max(a.nbytes for a in model.values())
        if HAVE_TORCH:
            import torch

            torch.save({k: torch.from_numpy(v) for k, v in model.items()}, pt)
            writer = f"torch.save (torch {torch.__version__})"
        else:
            ws.save(model, pt)
            writer = "weightstore (torch not installed)"
        ws.save(model, st)
        del model
        gc.collect()
        for p in (pt, st):
            warm(p)
        print(f"# {nbytes / MiB:,.0f} MiB of float32 in {len(ws.inspect(pt).tensors)} tensors;"
              f" .pt written by {writer}; {platform.python_version()}, "
              f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; median of {args.runs}")
        rows = []
        ours = median("ws-load", pt, args.runs)
        if HAVE_TORCH:
            base = median("torch-mmap", pt, args.runs)
            rows.append(("read all: weightstore.load(.pt)", ours,
                         "torch.load(mmap=True, weights_only=True)", base))
            rows.append(("read all: weightstore.load(.pt)", ours,
                         "torch.load(weights_only=True)", median("torch-load", pt, args.runs)))
            rows.append(("open + map: weightstore.open(.pt)", median("ws-open-map", pt, args.runs),
                         "torch.load(mmap=True, weights_only=True)", base))
        else:
            rows.append(("read all: weightstore.load(.pt)", ours,
                         "weightstore.load(.safetensors)", median("ws-load", st, args.runs)))
            rows.append(("open + map: weightstore.open(.pt)", median("ws-open-map", pt, args.runs),
                         "weightstore.open(.safetensors)", median("ws-open-map", st, args.runs)))
        print("| what | ours | s | baseline | s | ratio (ours / baseline) |")
        print("|---|---|---:|---|---:|---:|")
        for label, a, other, b in rows:
            print(f"| {label.split(':')[0]} | {label.split(': ')[1]} | {a['seconds']:.3f} | "
                  f"{other} | {b['seconds']:.3f} | {a['seconds'] / b['seconds']:.2f} |")
        conv = median("convert", pt, 1, str(folder / "out.safetensors"))
        bound = largest + 200 * MiB
        print(f"\nconvert .pt -> .safetensors: {conv['seconds']:.2f} s, peak memory grew "
              f"{conv['grew'] / MiB:,.0f} MiB; bound (largest tensor {largest / MiB:,.0f} MiB "
              f"+ 200 MiB) {bound / MiB:,.0f} MiB: {'within' if conv['grew'] < bound else 'OVER'}")
        return 0 if conv["grew"] < bound else 1


if __name__ == "__main__":
    sys.exit(main())
