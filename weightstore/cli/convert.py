"""``weightstore convert``: read a weight file and write it in another format."""

from __future__ import annotations

import argparse
import os

from .. import api
from ..errors import FileAccessError
from ._util import add_option_arg, parse_options

HELP = "convert a weight file to another format (chosen by DST's extension or --to)"
EXAMPLES = """\
examples:
  weightstore convert ../shared/data/sample_weight.pkl w.json
  weightstore convert w.json w.npz -o compressed=true
  weightstore convert w.npz w.h5 -o compression=gzip -o level=9
  weightstore convert w.h5 w.csv.zst -o level=19      (zstd over CSV; 'zstd -d' restores w.csv)
  weightstore convert w.bin weights.out --from npz --to json

The destination is replaced atomically: if anything fails, no partial file is
left and an existing file keeps its old content.
"""


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("convert", help=HELP, description=HELP.capitalize() + ".",
                       epilog=EXAMPLES, parents=[common],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", metavar="SRC", help="weight file to read (format from its content)")
    p.add_argument("dst", metavar="DST", help="file to write")
    p.add_argument("--to", metavar="FORMAT", help="output format (default: from DST's extension)")
    p.add_argument("--from", dest="from_format", metavar="FORMAT",
                   help="input format (default: from SRC's content, then its extension)")
    add_option_arg(p)
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if os.path.exists(args.dst) and os.path.exists(args.src) and os.path.samefile(
        args.src, args.dst
    ):
        raise FileAccessError(path=args.dst, field="destination",
                              expected="a different file from the source", found="the same file")
    options = parse_options(args.options)
    weights = api.convert(args.src, args.dst, from_format=args.from_format, to=args.to, **options)
    if not args.quiet:
        codec = api.codec_for_writing(args.dst, args.to, **options)
        print(f"wrote {args.dst} ({codec.name}, {os.path.getsize(args.dst):,} bytes, "
              f"{len(weights)} tensors, {weights.total_values:,} values)")
    return 0
