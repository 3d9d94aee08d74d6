"""``weightstore eval``: the accuracy a weight file keeps on the MNIST test set."""

from __future__ import annotations

import argparse
import time

from .. import api
from ..lab.evaluate import evaluate
from ._util import add_data_dir_arg, add_strict_arg, print_json

HELP = "run the book's network from a weight file on the 10,000 MNIST test images"
EXAMPLES = """\
examples:
  weightstore eval ../shared/data/sample_weight.pkl      -> accuracy 0.9352
  weightstore eval w.json.zst --json
  weightstore eval w.h5 --data-dir /path/to/data          (folder with mnist/t10k-*.gz)

The network (the ch. 3 MLP, or the ch. 7/8 convnets where available) is
recognised from the tensors' names and shapes; --model names it instead.
"""


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("eval", help=HELP, description=HELP.capitalize() + ".", parents=[common],
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE", help="weight file in any supported format")
    p.add_argument("--from", dest="from_format", metavar="FORMAT",
                   help="format (default: from the content, then the extension)")
    p.add_argument("--model", metavar="NAME", help="network to build (default: detected)")
    p.add_argument("--batch-size", type=int, metavar="N", help="images per batch")
    add_data_dir_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON for programs")
    add_strict_arg(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    weights = api.load(args.file, args.from_format, strict=args.strict)
    load_s = time.perf_counter() - start
    result = evaluate(weights, model=args.model, data_dir=args.data_dir,
                      batch_size=args.batch_size)
    if args.json:
        print_json({"file": args.file, **result.to_dict(), "load_seconds": load_s})
        return 0
    print(f"{args.file}: accuracy {result.accuracy:.4f} ({result.correct:,} of "
          f"{result.total:,} test images correct), network {result.model}, "
          f"evaluated in {result.seconds:.3f} s (file read in {load_s:.3f} s)")
    return 0
