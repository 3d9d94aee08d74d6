"""Time the book's conv nets on the 10,000 MNIST test images, against the book's own code.

For each network this prints the median time of ``--runs`` evaluations of the full test set
with ``net.convnet`` (``predict``), the multiply-adds per image (computed from the
architecture), the achieved GFLOP/s (2 FLOPs per multiply-add), the accuracy, and the time of
a plain-numpy reference measured in the same run: the book's own implementation (its
``im2col`` with a Python loop over filter offsets, ``Convolution``/``Pooling``/``Affine``
``forward``, batches of 100), run on the first ``--reference-images`` images and scaled up to
10,000. The reference's scores are compared with the engine's on those images.

Run from the repository root, next to ``../shared/data``::

    python -m benchmarks.convnet_eval
    python -m benchmarks.convnet_eval --nets deep --runs 5 --float16 --json

The machine may be shared: the load other processes put on the CPUs during the timed runs
is printed (from ``/proc/stat``, Linux only), because it changes the times a lot.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import weightstore
from net.convnet import ConvNet, DeepConvNet, SimpleConvNet
from net.data import resolve
from net.mnist import load_test_set

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
NETS: dict[str, tuple[type[ConvNet], str]] = {
    "simple": (SimpleConvNet, "simple_convnet_params.pkl"),
    "deep": (DeepConvNet, "deep_convnet_params.pkl"),
}


# --------------------------------------------------------------------------- reference data
def load_params(data: Path | None, name: str) -> dict[str, np.ndarray]:
    """A reference file through the project's resolver (SHA-256 checked) and safe loader."""
    return dict(weightstore.load(resolve(name, data)))


def load_mnist_test(data: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST test set: images (10000, 1, 28, 28) float32 in [0, 1], labels (10000,) uint8."""
    return load_test_set(data, flatten=False)



# --------------------------------------------------------------------------- the book's code
# Transcribed from oreilly-japan/deep-learning-from-scratch (MIT, (c) 2016 Koki Saitoh):
# common/util.py im2col and common/layers.py forward passes, inference only.
def book_im2col(input_data, filter_h, filter_w, stride=1, pad=0):
    N, C, H, W = input_data.shape
    out_h = (H + 2 * pad - filter_h) // stride + 1
    out_w = (W + 2 * pad - filter_w) // stride + 1
    img = np.pad(input_data, [(0, 0), (0, 0), (pad, pad), (pad, pad)], "constant")
    col = np.zeros((N, C, filter_h, filter_w, out_h, out_w))
    for y in range(filter_h):
        y_max = y + stride * out_h
        for x in range(filter_w):
            x_max = x + stride * out_w
            col[:, :, y, x, :, :] = img[:, :, y:y_max:stride, x:x_max:stride]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(N * out_h * out_w, -1)


def book_convolution(x, W, b, stride, pad):
    FN, C, FH, FW = W.shape
    N, C, H, Wd = x.shape
    out_h = 1 + int((H + 2 * pad - FH) / stride)
    out_w = 1 + int((Wd + 2 * pad - FW) / stride)
    col = book_im2col(x, FH, FW, stride, pad)
    col_W = W.reshape(FN, -1).T
    out = np.dot(col, col_W) + b
    return out.reshape(N, out_h, out_w, -1).transpose(0, 3, 1, 2)


def book_pooling(x, pool_h, pool_w, stride):
    N, C, H, W = x.shape
    out_h = int(1 + (H - pool_h) / stride)
    out_w = int(1 + (W - pool_w) / stride)
    col = book_im2col(x, pool_h, pool_w, stride, 0).reshape(-1, pool_h * pool_w)
    out = np.max(col, axis=1)
    return out.reshape(N, out_h, out_w, C).transpose(0, 3, 1, 2)


def book_relu(x):
    out = x.copy()
    out[x <= 0] = 0
    return out


def book_predict(net: ConvNet, x: np.ndarray) -> np.ndarray:
    """The book's ``predict(x, train_flg=False)``, layer by layer, on the net's parameters."""
    p = net.params
    for i, spec in enumerate(net.conv_specs, start=1):
        x = book_relu(book_convolution(x, p[f"W{i}"], p[f"b{i}"], spec.stride, spec.pad))
        if spec.pool:
            x = book_pooling(x, net.pool_size, net.pool_size, net.pool_size)
    first = len(net.conv_specs) + 1
    last = first + len(net.hidden_sizes)
    for j in range(first, last + 1):
        x = np.dot(x.reshape(x.shape[0], -1), p[f"W{j}"]) + p[f"b{j}"]
        if j < last:
            x = book_relu(x)
        if net.dropout_ratio is not None:
            x = x * (1.0 - net.dropout_ratio)
    return x


def book_scores(net: ConvNet, x: np.ndarray, batch_size: int = 100) -> np.ndarray:
    return np.concatenate(
        [book_predict(net, x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    )


# --------------------------------------------------------------------------- measuring
def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine, or None where /proc/stat does not exist."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return None
    return sum(values) - values[3] - values[4], sum(values)


def timed(fn: Callable[[], Any]) -> tuple[float, Any, float | None]:
    """(seconds, result, share of all CPUs used by *other* processes meanwhile, if known)."""
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    before, mine = _cpu_jiffies(), os.times()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    after, mine_after = _cpu_jiffies(), os.times()
    others = None
    if before is not None and after is not None and after[1] > before[1]:
        own = (mine_after.user + mine_after.system - mine.user - mine.system) * hz
        others = max(0.0, (after[0] - before[0]) - own) / (after[1] - before[1])
    return seconds, result, others


def evaluate(
    key: str, x: np.ndarray, t: np.ndarray, args: argparse.Namespace, half: bool
) -> dict[str, Any]:
    cls, fname = NETS[key]
    params = load_params(args.data, fname)
    if half:
        params = {k: v.astype(np.float16) for k, v in params.items()}
    net = cls.from_weights(params)
    macs = cls.multiply_adds_per_image()
    n = len(x)

    runs = [timed(lambda: net.predict(x, args.batch_size)) for _ in range(args.runs)]
    times = [r[0] for r in runs]
    scores = runs[-1][1]
    loads = [r[2] for r in runs if r[2] is not None]
    seconds = statistics.median(times)
    result: dict[str, Any] = {
        "network": cls.__name__,
        "weights": fname + (" cast to float16" if half else ""),
        "compute_dtype": str(net.dtype),
        "images": n,
        "batch_size": args.batch_size,
        "group_size": min(args.batch_size, net.group_size()),
        "multiply_adds_per_image": macs,
        "seconds_median": seconds,
        "seconds_runs": times,
        "gflops": 2 * macs * n / seconds / 1e9,
        "accuracy": float(np.mean(np.argmax(scores, axis=1) == t)),
        "other_load_during_runs": max(loads) if loads else None,
    }
    m = min(args.reference_images, n)
    if m > 0 and not half:
        ref_seconds, ref_scores, ref_load = timed(lambda: book_scores(net, x[:m]))
        result.update(
            reference="book's im2col layers, batches of 100",
            reference_images=m,
            reference_seconds_scaled=ref_seconds * n / m,
            speedup=ref_seconds * n / m / seconds,
            reference_max_abs_diff=float(np.max(np.abs(ref_scores - scores[:m]))),
            reference_same_predictions=bool(
                np.array_equal(np.argmax(ref_scores, axis=1), np.argmax(scores[:m], axis=1))
            ),
            reference_other_load=ref_load,
        )
    return result


def report(r: dict[str, Any]) -> str:
    load = r["other_load_during_runs"]
    lines = [
        f"{r['network']} ({r['weights']}), compute {r['compute_dtype']}, {r['images']} images, "
        f"batch_size {r['batch_size']} (groups of {r['group_size']})",
        f"  multiply-adds per image : {r['multiply_adds_per_image']:,} (computed from shapes)",
        f"  net.convnet predict     : median {r['seconds_median']:.2f} s over "
        f"{len(r['seconds_runs'])} runs ({' '.join(f'{s:.2f}' for s in r['seconds_runs'])})"
        f", {r['gflops']:.1f} GFLOP/s",
        f"  accuracy                : {r['accuracy']:.4f}",
    ]
    if load is not None:
        lines.append(f"  other processes' load   : up to {load:.0%} of the CPUs during the runs")
    if "reference_seconds_scaled" in r:
        ref_load = r["reference_other_load"]
        lines += [
            f"  book's code (reference) : {r['reference_seconds_scaled']:.2f} s for "
            f"{r['images']} images (measured on {r['reference_images']}, scaled)"
            + (f", other load {ref_load:.0%}" if ref_load is not None else ""),
            f"  speed-up                : {r['speedup']:.1f}x",
            f"  same predictions        : {r['reference_same_predictions']} "
            f"(max |score difference| {r['reference_max_abs_diff']:.1e})",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.convnet_eval",
        description="Time SimpleConvNet and DeepConvNet on the 10,000 MNIST test images.",
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="reference data folder")
    parser.add_argument("--nets", nargs="+", choices=list(NETS), default=list(NETS))
    parser.add_argument("--runs", type=int, default=3, help="timed runs per network (median)")
    parser.add_argument("--batch-size", type=int, default=100, help="predict's batch_size")
    parser.add_argument(
        "--reference-images",
        type=int,
        default=2000,
        help="images for the book's reference code, scaled to 10,000 (0: skip; default 2000)",
    )
    parser.add_argument(
        "--float16", action="store_true", help="also evaluate the weights cast to float16"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.batch_size < 1 or args.reference_images < 0:
        parser.error("--runs and --batch-size must be >= 1, --reference-images >= 0")
    if not args.data.is_dir():
        print(f"Error: reference data not found at {args.data}; use --data", file=sys.stderr)
        return 1

    x, t = load_mnist_test(args.data)
    results = []
    for key in args.nets:
        for half in (False, True) if args.float16 else (False,):
            results.append(evaluate(key, x, t, args, half))
            if not args.json:
                print(report(results[-1]), flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
