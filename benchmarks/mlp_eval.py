"""Time the chapter-3 network on the 10,000 MNIST test images: batched vs the book's loop.

Run from the repository root::

    python -m benchmarks.mlp_eval   # or python benchmarks/mlp_eval.py once pip install -e . ran
    python -m benchmarks.mlp_eval --data-dir ../shared/data --repeats 7 --batch-sizes 100,10000

Each method computes the accuracy (scores, argmax, comparison with the labels), is run
``--repeats`` times, and the median wall time is reported, with images per second, the
speed-up over the book's per-image loop measured in the same run, and the achieved
multiply-adds per second against the arithmetic count of 45,200 per image.

BLAS threads matter: on a machine whose cores are busy with other work, a multithreaded
BLAS can make mid-sized products (batches of 100-1000) many times slower than one thread.
Set ``OPENBLAS_NUM_THREADS=1`` (or ``OMP_NUM_THREADS``) before the run to compare one core.
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from net.data import resolve
from net.mlp import MULTIPLY_ADDS_PER_IMAGE, ThreeLayerNet, predict
from net.mnist import load_test_set

_THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def book_loop_accuracy(network: Mapping[str, Any], x: np.ndarray, t: np.ndarray) -> float:
    """The book's evaluation (ch. 3, neuralnet_mnist.py): one image at a time."""
    accuracy_cnt = 0
    for i in range(len(x)):
        y = predict(network, x[i])
        p = np.argmax(y)
        if p == t[i]:
            accuracy_cnt += 1
    return accuracy_cnt / len(x)


def matmuls_only(network: Mapping[str, Any], x: np.ndarray) -> np.ndarray:
    """The three matrix products alone, full batch: the floor set by the arithmetic."""
    return x @ network["W1"] @ network["W2"] @ network["W3"]


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of ``repeats`` calls of ``fn`` and the last result."""
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time the book's 3-layer MNIST network: batched matrix products "
        "against the book's per-image loop, on the 10,000 test images."
    )
    parser.add_argument(
        "--data-dir", help="folder holding the reference files (default: the usual search)"
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="runs per method; the median is shown (default 5)"
    )
    parser.add_argument(
        "--loop-repeats",
        type=int,
        default=3,
        help="runs of the slow per-image loop (default 3; 0 skips it)",
    )
    parser.add_argument(
        "--batch-sizes",
        default="100,1000,10000",
        help="comma-separated batch sizes; 10000 is the full test set (default 100,1000,10000)",
    )
    parser.add_argument(
        "--no-download", action="store_true", help="fail instead of downloading missing files"
    )
    args = parser.parse_args(argv)
    try:
        args.batch_sizes = [int(v) for v in args.batch_sizes.split(",") if v.strip()]
    except ValueError:
        parser.error(
            f"--batch-sizes: expected integers separated by commas, found {args.batch_sizes!r}"
        )
    if not args.batch_sizes or min(args.batch_sizes) < 1:
        parser.error("--batch-sizes: expected positive integers")
    if args.repeats < 1 or args.loop_repeats < 0:
        parser.error("--repeats must be at least 1 and --loop-repeats at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    download = not args.no_download
    weights_path = resolve("sample_weight.pkl", args.data_dir, download=download)
    with weights_path.open("rb") as f:
        weights = pickle.load(f)  # checksum-verified file; the safe loader replaces this later
    net = ThreeLayerNet.from_weights(weights, source=weights_path)
    x, t = load_test_set(args.data_dir, download=download)
    n = len(x)
    total_macs = MULTIPLY_ADDS_PER_IMAGE * n

    print(f"weights: {weights_path} ({net!r})")
    print(f"images:  {n} x {x.shape[1]} {x.dtype}")
    print(
        f"arithmetic: {MULTIPLY_ADDS_PER_IMAGE:,} multiply-adds per image, "
        f"{total_macs:,} for {n:,} images"
    )
    print(
        f"numpy {np.__version__}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; median of {args.repeats} runs "
        f"({args.loop_repeats} for the loop)"
    )
    threads = {k: os.environ[k] for k in _THREAD_ENV if k in os.environ}
    print("BLAS threads: " + (", ".join(f"{k}={v}" for k, v in threads.items()) or "default"))
    print()

    rows: list[tuple[str, float, float | None]] = []
    if args.loop_repeats:
        seconds, acc = median_time(lambda: book_loop_accuracy(net.params, x, t), args.loop_repeats)
        rows.append(("book loop, 1 image at a time", seconds, acc))
    for batch_size in args.batch_sizes:
        label = f"batched, {min(batch_size, n)} images" + (" (full)" if batch_size >= n else "")
        seconds, acc = median_time(lambda b=batch_size: net.accuracy(x, t, b), args.repeats)
        rows.append((label, seconds, acc))
    seconds, _ = median_time(lambda: matmuls_only(net.params, x), args.repeats)
    rows.append(("3 matrix products only (full)", seconds, None))

    loop_seconds = rows[0][1] if args.loop_repeats else None
    header = (
        f"{'method':<32} {'time ms':>9} {'images/s':>12} {'vs loop':>8} {'GMAC/s':>7} {'acc':>7}"
    )
    print(header)
    print("-" * len(header))
    for label, seconds, acc in rows:
        ratio = f"{loop_seconds / seconds:7.1f}x" if loop_seconds else "      -"
        acc_text = f"{acc:.4f}" if acc is not None else "-"
        print(
            f"{label:<32} {seconds * 1e3:9.2f} {n / seconds:12,.0f} {ratio:>8} "
            f"{total_macs / seconds / 1e9:7.2f} {acc_text:>7}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
