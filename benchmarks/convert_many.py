"""Throughput of ``convert_many`` on a local Dask cluster (1 and 2 worker processes)
against a plain sequential loop of ``weightstore.convert``, measured in the same run.

It writes a collection of PyTorch checkpoints (``--files`` files, ``--size-mib`` MiB in
all; float32 tensors of a few MiB each, as in a real checkpoint) to a temporary folder,
then converts the whole collection to ``--to`` (default safetensors) three ways, each
into a fresh output folder:

- ``loop``: ``for f in files: weightstore.convert(f, out)`` in this process;
- ``dask-1`` / ``dask-2``: ``weightstore.convert_many`` on a ``LocalCluster`` of 1 / 2
  single-threaded worker processes (started before the clock starts; its start-up time
  is printed apart).

Throughput is source bytes per wall-clock second (1 MB = 10**6 bytes). The ratio column
is against ``loop``. The sources are read once before timing so that every mode reads
them from the page cache, and dirty pages are synced before each mode so that no mode
pays for the previous one's writeback. On a machine shared with other jobs, look at the load average
printed first: waiting for a core counts in the wall clock.

    python -m benchmarks.convert_many                         # ~2 GiB over 128 files
    python -m benchmarks.convert_many --size-mib 256 --files 100   # quick look
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import weightstore as ws


def make_collection(folder: Path, files: int, size_mib: int) -> int:
    """*files* checkpoints of about size_mib/files MiB each; returns the bytes written."""
    per_file = (size_mib << 20) // files
    rng = np.random.default_rng(0)
    block = rng.standard_normal(1 << 20).astype(np.float32)  # 4 MiB reused: fast to make
    total = 0
    for i in range(files):
        tensors, left, j = {}, per_file, 0
        while left > 0:
            n = min(left // 4, block.size) or 1
            tensors[f"layer{j}.weight"] = block[:n].reshape(-1, 256 if n % 256 == 0 else 1)
            left -= n * 4
            j += 1
        path = folder / f"run{i % 4}" / f"step{i:04d}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        ws.save(tensors, path)
        total += path.stat().st_size
    return total


def warm(folder: Path) -> None:
    for p in folder.rglob("*.pt"):
        with open(p, "rb") as f:
            while f.read(8 << 20):
                pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=128)
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--to", default="safetensors")
    ap.add_argument("--dir", help="where to put the collection (default: a temporary folder)")
    args = ap.parse_args()
    import distributed  # the 'cluster' extra

    warnings.simplefilter("ignore")
    print(f"load average before: {os.getloadavg()}, cores: {os.cpu_count()}")
    root = Path(tempfile.mkdtemp(prefix="ws-bench-", dir=args.dir))
    try:
        src = root / "src"
        t = time.perf_counter()
        size = make_collection(src, args.files, args.size_mib)
        os.sync()  # no writeback of the collection during the first timed mode
        print(f"collection: {args.files} files, {size / 1e6:,.0f} MB, made in "
              f"{time.perf_counter() - t:.1f} s")
        sources = sorted(src.rglob("*.pt"))
        ext = ws.get_codec(args.to).extensions[0]
        results: dict[str, float] = {}

        warm(src)
        out = root / "loop"
        t = time.perf_counter()
        for p in sources:
            dest = out / p.relative_to(src).with_suffix(ext)
            dest.parent.mkdir(parents=True, exist_ok=True)
            ws.convert(p, dest, to=args.to)
        results["loop"] = time.perf_counter() - t
        shutil.rmtree(out)
        os.sync()

        for n in (1, 2):
            t = time.perf_counter()
            with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                          dashboard_address=None) as lc, \
                    distributed.Client(lc) as client:
                started = time.perf_counter() - t
                warm(src)
                out = root / f"dask-{n}"
                t = time.perf_counter()
                result = ws.convert_many(str(src), to=args.to, out=str(out), scheduler=client)
                results[f"dask-{n}"] = time.perf_counter() - t
                assert len(result.done) == len(sources) and not result.failed, result.summary()
                print(f"dask-{n}: cluster start {started:.1f} s (not counted)")
            shutil.rmtree(out)
            os.sync()

        print(f"load average after: {os.getloadavg()}")
        print(f"{'mode':8} {'seconds':>8} {'MB/s':>8} {'vs loop':>8}")
        for mode, sec in results.items():
            print(f"{mode:8} {sec:8.2f} {size / sec / 1e6:8.1f} {results['loop'] / sec:8.2f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
