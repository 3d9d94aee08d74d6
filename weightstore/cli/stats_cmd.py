"""``weightstore stats``: per-tensor statistics and histograms, read one tensor at a time."""

from __future__ import annotations

import argparse
import sys

from ..compare import TensorStats, stats
from ..display import table
from ._util import add_strict_arg, input_path, print_json

HELP = "per-tensor min, max, mean, std, zeros, NaN/Inf counts and a histogram"
EXAMPLES = """\
Statistics are over each tensor's finite values (NaN and Inf are counted
apart); std is the population standard deviation. The 'histogram' column
draws BINS equal-width bins from min to max; --histogram prints them in full.
Tensors are read one at a time, so a model larger than memory works.

examples:
  weightstore stats model.safetensors
  weightstore stats w.npz --histogram --bins 20
  weightstore stats w.h5 --json > stats.json
"""

BARS = " ▁▂▃▄▅▆▇█"
COLUMNS = ["tensor", "dtype", "shape", "min", "max", "mean", "std", "zeros", "NaN", "Inf",
           "histogram"]


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("stats", help=HELP, description=HELP.capitalize() + ".",
                       parents=[common], epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE",
                   help="weight file in any supported format (- reads stdin)")
    p.add_argument("--from", dest="from_format", metavar="FORMAT",
                   help="format (default: from the content, then the extension)")
    p.add_argument("--bins", type=int, default=10, metavar="N",
                   help="histogram bins (default: 10)")
    p.add_argument("--histogram", action="store_true",
                   help="print each tensor's histogram in full, one bar per bin")
    p.add_argument("--json", action="store_true", help="print JSON for programs")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="read without checking the file's checksums")
    add_strict_arg(p)
    p.set_defaults(run=run)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def sparkline(counts: list[int]) -> str:
    """One character per bin, its height proportional to the count (any count > 0 shows)."""
    top = max(counts, default=0)
    if not top:
        return ""
    return "".join(BARS[0] if c == 0 else BARS[max(1, round(c / top * (len(BARS) - 1)))]
                   for c in counts)


def bars(s: TensorStats, width: int = 40) -> str:
    """The histogram as lines ``[lo, hi)  ####  count``."""
    top = max(s.histogram, default=0) or 1
    lines = []
    for i, c in enumerate(s.histogram):
        close = "]" if i == len(s.histogram) - 1 else ")"
        label = f"[{s.edges[i]:.4g}, {s.edges[i + 1]:.4g}{close}"
        lines.append(f"  {label:<24} {'#' * round(c / top * width):<{width}} {c:,}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    with input_path(args.file) as path:
        results = list(stats(path, bins=args.bins, format=args.from_format,
                             verify=args.verify, strict=args.strict))
    if args.json:
        print_json([s.to_dict() for s in results])
        return 0
    rows = [[s.name, s.dtype, "x".join(map(str, s.shape)) or "scalar", _num(s.min),
             _num(s.max), _num(s.mean), _num(s.std), f"{s.zeros:,}", f"{s.nans:,}",
             f"{s.infs:,}", sparkline(s.histogram)] for s in results]
    sys.stdout.write(table(rows, COLUMNS, right=set(range(3, 10))) + "\n")
    if args.histogram:
        for s in results:
            print(f"\n{s.name} ({s.count:,} values)")
            print(bars(s) if s.histogram else "  no finite values")
    return 0
