"""Time the book's conv nets on the 10,000 MNIST test images, quiet and busy, against the book.

For each network this prints the median wall time and CPU time (this process's, all threads)
of ``--runs`` evaluations of the full test set with ``net.convnet`` (``predict``), and of a
plain-numpy reference measured in the same rounds: the book's own implementation (its
``im2col`` with a Python loop over filter offsets, ``Convolution``/``Pooling``/``Affine``
``forward``, batches of 100, numpy's default BLAS threads), run on the first
``--reference-images`` images and scaled up to 10,000. Both are timed on the machine as it is
("quiet") and beside a background process burning one core ("busy", see
:mod:`benchmarks.busy`), interleaved round by round, with the 1-minute load average after every
run. Also printed: the multiply-adds per image (from the architecture), the GFLOP/s, the
accuracy, whether the book's code predicts the same classes, and the ratios the targets of
issue 20 are stated in. ``--compare`` adds the engine on one worker thread, with one BLAS
thread and with numpy's default BLAS threads (the behaviour without ``threadpoolctl``).

Run from the repository root, next to ``../shared/data``::

    python -m benchmarks.convnet_eval
    python -m benchmarks.convnet_eval --nets deep --runs 5 --compare --json
    python -m benchmarks.convnet_eval --no-busy --float16

The machine may be shared with other work, so "quiet" means "without our burner": read the
load averages and the CPU times beside the wall times.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

import net.parallel
import weightstore
from benchmarks.busy import Series, add_busy_argument, run_interleaved
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
@contextmanager
def one_worker(default_blas_threads: bool) -> Iterator[None]:
    """The engine on one worker thread; with numpy's default BLAS threads if asked, which is
    what ``net.parallel`` does without ``threadpoolctl`` (and did before issue 20)."""
    saved = net.parallel.WORKERS, net.parallel.ThreadpoolController
    net.parallel.WORKERS = 1
    if default_blas_threads:
        net.parallel.ThreadpoolController = None
    try:
        yield
    finally:
        net.parallel.WORKERS, net.parallel.ThreadpoolController = saved


ENGINE = "net.convnet predict"
BOOK = "book's code"


def evaluate(
    key: str, x: np.ndarray, t: np.ndarray, args: argparse.Namespace, half: bool
) -> dict[str, Any]:
    cls, fname = NETS[key]
    params = load_params(args.data, fname)
    if half:
        params = {k: v.astype(np.float16) for k, v in params.items()}
    model = cls.from_weights(params)
    n = len(x)
    m = 0 if half else min(args.reference_images, n)

    def predict() -> np.ndarray:
        return model.predict(x, args.batch_size)

    def predict_one_worker(default_blas: bool) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            with one_worker(default_blas):
                return model.predict(x, args.batch_size)

        return run

    methods: dict[str, Callable[[], Any]] = {ENGINE: predict}
    if args.compare:
        methods["1 worker, 1 BLAS thread"] = predict_one_worker(False)
        methods["1 worker, default BLAS threads"] = predict_one_worker(True)
    if m:
        methods[BOOK] = lambda: book_scores(model, x[:m])
    progress = None if args.json else lambda line: print(line, file=sys.stderr, flush=True)
    series = run_interleaved(methods, args.runs, not args.no_busy, progress, settle=args.settle,
                            warmup=args.warmup)

    scores = series["quiet"][ENGINE].result
    workers = min(net.parallel.max_workers(), args.batch_size)
    result: dict[str, Any] = {
        "network": cls.__name__,
        "weights": fname + (" cast to float16" if half else ""),
        "compute_dtype": str(model.dtype),
        "images": n,
        "batch_size": args.batch_size,
        "workers": workers,
        "group_size": min(args.batch_size // workers, model.group_size()),
        "multiply_adds_per_image": cls.multiply_adds_per_image(),
        "accuracy": float(np.mean(np.argmax(scores, axis=1) == t)),
        "busy_accuracy": (
            float(np.mean(np.argmax(series["busy"][ENGINE].result, axis=1) == t))
            if "busy" in series
            else None
        ),
        "conditions": {},
    }
    for condition, by_method in series.items():
        result["conditions"][condition] = {
            name: s.to_dict(n / m if name == BOOK else 1.0) for name, s in by_method.items()
        }
    if m:
        ref = series["quiet"][BOOK].result
        result.update(
            reference="book's im2col layers, batches of 100, numpy's default BLAS threads",
            reference_images=m,
            reference_max_abs_diff=float(np.max(np.abs(ref - scores[:m]))),
            reference_same_predictions=bool(
                np.array_equal(np.argmax(ref, axis=1), np.argmax(scores[:m], axis=1))
            ),
        )
    result["_series"] = series
    return result


def report(r: dict[str, Any]) -> str:
    series: dict[str, dict[str, Series]] = r["_series"]
    n, m = r["images"], r.get("reference_images", 0)
    macs = r["multiply_adds_per_image"]
    lines = [
        f"{r['network']} ({r['weights']}), compute {r['compute_dtype']}, {n} images, "
        f"batch_size {r['batch_size']}: groups of {r['group_size']} on {r['workers']} workers",
        f"  multiply-adds per image: {macs:,} (computed from shapes)",
        f"  {'method':<34} {'condition':<9} {'wall s':>7} {'CPU s':>7} {'GFLOP/s':>8} "
        f"{'others':>6}  load after each run",
    ]
    for condition, by_method in series.items():
        for name, s in by_method.items():
            scale = n / m if name == BOOK else 1.0
            label = f"{name} (x{scale:g} of {m} images)" if name == BOOK else name
            lines.append(
                f"  {label:<34} {condition:<9} {s.wall * scale:7.2f} {s.cpu * scale:7.2f} "
                f"{2 * macs * n / (s.wall * scale) / 1e9:8.1f} {s.others():>6}  {s.loads()}"
            )
    engine = {c: by_method[ENGINE] for c, by_method in series.items()}
    lines.append(
        "  runs (wall s): "
        + "; ".join(
            f"{c} {' '.join(f'{x.wall:.2f}' for x in s.samples)}" for c, s in engine.items()
        )
    )
    if "busy" in engine:
        lines.append(
            f"  busy / quiet            : {engine['busy'].wall / engine['quiet'].wall:.2f}x wall, "
            f"{engine['busy'].cpu / engine['quiet'].cpu:.2f}x CPU"
        )
    if m:
        for condition, by_method in series.items():
            book = by_method[BOOK].wall * n / m
            lines.append(
                f"  vs book's code ({condition:5}) : {book / by_method[ENGINE].wall:.1f}x faster"
            )
        lines.append(
            f"  same predictions as book: {r['reference_same_predictions']} on {m} images "
            f"(max |score difference| {r['reference_max_abs_diff']:.1e})"
        )
    lines.append(f"  accuracy                : {r['accuracy']:.4f}")
    if r["busy_accuracy"] is not None and r["busy_accuracy"] != r["accuracy"]:
        lines.append(f"  accuracy when busy      : {r['busy_accuracy']:.4f} (DIFFERS)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.convnet_eval",
        description="Time SimpleConvNet and DeepConvNet on the 10,000 MNIST test images.",
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="reference data folder")
    parser.add_argument("--nets", nargs="+", choices=list(NETS), default=list(NETS))
    parser.add_argument("--runs", type=int, default=3, help="rounds per network (median)")
    parser.add_argument("--batch-size", type=int, default=100, help="predict's batch_size")
    parser.add_argument(
        "--reference-images",
        type=int,
        default=1000,
        help="images for the book's reference code, scaled to 10,000 (0: skip; default 1000)",
    )
    add_busy_argument(parser)
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also time one worker thread with one and with default BLAS threads",
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
        for r in results:
            del r["_series"]
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
