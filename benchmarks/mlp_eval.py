"""Time the chapter-3 network on the 10,000 MNIST test images: batched vs the book's loop.

Run from the repository root::

    python -m benchmarks.mlp_eval   # or python benchmarks/mlp_eval.py once pip install -e . ran
    python -m benchmarks.mlp_eval --data-dir ../shared/data --repeats 7 --batch-sizes 100,10000

Each method computes the accuracy (scores, argmax, comparison with the labels), is run
``--repeats`` times on the machine as it is ("quiet") and as often beside a background process
burning one core ("busy", :mod:`benchmarks.busy`; ``--no-busy`` skips it), interleaved round
by round. Reported per condition: the median wall time, the median CPU time of this process
(all threads), images per second, the speed-up over the book's per-image loop, the ratio to
the three matrix products alone (full batch, numpy's default settings: the floor the
arithmetic sets) and the multiply-adds per second against the 45,200 per image, with the
1-minute load average after the runs.

BLAS threads matter: on a machine whose cores are busy with other work, a multithreaded BLAS
can make mid-sized products many times slower than one thread. ``ThreeLayerNet.predict``
therefore runs groups of rows on one worker thread per CPU with one BLAS thread each
(:mod:`net.parallel`); ``--compare`` adds the batched evaluation on one worker with numpy's
default BLAS threads, which is what it does without ``threadpoolctl``.
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import sys
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

import net.parallel
from benchmarks.busy import add_busy_argument, run_interleaved
from net.data import resolve
from net.mlp import DEFAULT_BATCH_SIZE, MULTIPLY_ADDS_PER_IMAGE, ThreeLayerNet, predict
from net.mnist import load_test_set

_THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
LOOP = "book loop, 1 image at a time"
MATMULS = "3 matrix products only (full)"


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
    add_busy_argument(parser, warmup=1)
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also time the default batch on one worker with numpy's default BLAS threads",
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
    model = ThreeLayerNet.from_weights(weights, source=weights_path)
    x, t = load_test_set(args.data_dir, download=download)
    n = len(x)
    total_macs = MULTIPLY_ADDS_PER_IMAGE * n

    print(f"weights: {weights_path} ({model!r})")
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

    methods: dict[str, Callable[[], Any]] = {}
    if args.loop_repeats:
        methods[LOOP] = lambda: book_loop_accuracy(model.params, x, t)
    for batch_size in args.batch_sizes:
        label = f"batched, {min(batch_size, n)} images" + (" (full)" if batch_size >= n else "")
        methods[label] = lambda b=batch_size: model.accuracy(x, t, b)
    if args.compare:

        def one_worker_default_blas() -> float:
            saved = net.parallel.ThreadpoolController
            net.parallel.ThreadpoolController = None  # the numpy-only path: 1 worker
            try:
                return model.accuracy(x, t)
            finally:
                net.parallel.ThreadpoolController = saved

        methods["default batch, 1 worker, default BLAS"] = one_worker_default_blas
    methods[MATMULS] = lambda: matmuls_only(model.params, x)
    if net.parallel.ThreadpoolController is not None:
        controller = net.parallel.ThreadpoolController()

        def matmuls_one_thread() -> np.ndarray:
            with controller.limit(limits=1, user_api="blas"):
                return matmuls_only(model.params, x)

        methods["3 matrix products, 1 BLAS thread"] = matmuls_one_thread

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    series = run_interleaved(
        methods,
        args.repeats,
        not args.no_busy,
        progress,
        rounds={LOOP: args.loop_repeats},
        settle=args.settle,
        warmup=args.warmup,
    )
    loop_series = None
    if args.loop_repeats:
        loop_series = {c: by_method[LOOP] for c, by_method in series.items()}

    header = (
        f"{'condition':<6} {'method':<38} {'wall ms':>8} {'CPU ms':>8} {'images/s':>10} "
        f"{'vs loop':>8} {'vs 3 mm':>8} {'GMAC/s':>7} {'acc':>7}  load"
    )
    print(header)
    print("-" * len(header))
    for condition, by_method in series.items():
        floor = by_method[MATMULS].wall
        for label, s in by_method.items():
            loop = loop_series[condition].wall if loop_series else None
            ratio = f"{loop / s.wall:7.1f}x" if loop else "      -"
            acc = s.result if isinstance(s.result, float) else None
            acc_text = f"{acc:.4f}" if acc is not None else "-"
            print(
                f"{condition:<6} {label:<38} {s.wall * 1e3:8.2f} {s.cpu * 1e3:8.2f} "
                f"{n / s.wall:10,.0f} {ratio:>8} {s.wall / floor:7.2f}x "
                f"{total_macs / s.wall / 1e9:7.2f} {acc_text:>7}  {s.loads()}"
            )
    default = f"batched, {min(DEFAULT_BATCH_SIZE, n)} images" + (
        " (full)" if n <= DEFAULT_BATCH_SIZE else ""
    )
    if default in series["quiet"]:
        print()
        for condition, by_method in series.items():
            print(
                f"default batch ({DEFAULT_BATCH_SIZE}), {condition}: "
                f"{by_method[default].wall / by_method[MATMULS].wall:.2f}x the 3 matrix products"
            )
        if "busy" in series:
            q, b = series["quiet"][default], series["busy"][default]
            print(
                f"default batch, busy / quiet: {b.wall / q.wall:.2f}x wall, "
                f"{b.cpu / q.cpu:.2f}x CPU"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
