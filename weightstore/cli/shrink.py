"""``weightstore shrink``: the smallest file that keeps the network's predictions."""

from __future__ import annotations

import argparse
import sys

from ..lab import shrink as sh
from ._util import add_data_dir_arg, add_option_arg, check_distinct, parse_options, print_json

HELP = "write the smallest quantized file whose network predicts as the original does"
EXAMPLES = """\
The book's 3-layer network is quantized matrix by matrix (error-compensating
rounding, W1 rows of never-lit pixels pruned, later layers refitted to the
original's outputs), and the bits of each matrix are searched for the smallest
file whose predictions agree with the original's on the calibration images: the
first 1,000 MNIST test images. Their labels are never read. Progress goes to
stderr; the summary to stdout. Check the result with 'weightstore eval DST'.

examples:
  weightstore shrink ../shared/data/sample_weight.pkl small.npz.zst
  weightstore eval small.npz.zst                         accuracy on all 10,000 images
  weightstore shrink w.pkl small.npz.zst --min-agreement 0.995   allow 5 in 1,000 to change
  weightstore shrink w.pkl small.pkl.zst --codec zstd -o inner=pickle -o level=22
"""


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("shrink", help=HELP, description=HELP.capitalize() + ".",
                       parents=[common], epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", metavar="SRC", help="weight file of the book's 3-layer network")
    p.add_argument("dst", metavar="DST", help="file to write")
    p.add_argument("--min-agreement", type=float, default=1.0, metavar="FRACTION",
                   help="share of calibration predictions that must stay the same "
                   "(default: 1.0, all of them)")
    p.add_argument("--calibration", type=int, default=sh.CALIBRATION_IMAGES, metavar="N",
                   help=f"use the first N test images (default: {sh.CALIBRATION_IMAGES})")
    p.add_argument("--codec", metavar="FORMAT",
                   help="format to write (default: wsc, else zstd level 19 over npz)")
    add_option_arg(p)
    add_data_dir_arg(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_distinct(args.src, args.dst)
    x = None if args.calibration == sh.CALIBRATION_IMAGES else \
        sh.calibration_images(args.data_dir, args.calibration)

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    result = sh.shrink_file(args.src, args.dst, calibration=x, data_dir=args.data_dir,
                            min_agreement=args.min_agreement, codec=args.codec,
                            codec_options=parse_options(args.options) or None,
                            progress=None if args.quiet else progress)
    if args.json:
        print_json({"file": args.dst, **result.to_dict()})
        return 0
    bits = ", ".join(f"{k} {v}" for k, v in result.bits.items())
    print(f"wrote {args.dst} ({result.codec}, {result.bytes:,} bytes, "
          f"{result.bits_per_weight:.2f} bits per weight): bits {bits}; "
          f"{result.pruned_rows} W1 rows pruned; predictions agree with the original's on "
          f"{result.agreement:.1%} of {result.calibration_images:,} calibration images")
    return 0
