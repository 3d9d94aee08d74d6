"""``weightstore convert``: read a weight file and write it in another format."""

from __future__ import annotations

import argparse
import os

from .. import api
from ..errors import FileAccessError
from ._progress import progress_bar
from ._util import add_option_arg, parse_options

HELP = "convert a weight file to another format (chosen by DST's extension or --to)"
EXAMPLES = """\
examples:
  weightstore convert ../shared/data/sample_weight.pkl w.json
  weightstore convert w.json w.npz -o compressed=true
  weightstore convert w.npz w.h5 -o compression=gzip -o level=9
  weightstore convert w.h5 w.csv.zst -o level=19      (zstd over CSV; 'zstd -d' restores w.csv)
  weightstore convert w.bin weights.out --from npz --to json
  weightstore convert big.h5 out/model.npz --max-shard-size 2GB   (shards + index)
  weightstore convert s3://bucket/model.safetensors w.h5          (URLs: extra 'remote')

The destination is replaced atomically: if anything fails, no partial file is
left and an existing file keeps its old content. Tensors move one at a time
where both formats allow it (docs/formats.md, "Streaming and memory").
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
    p.add_argument("--max-shard-size", metavar="SIZE",
                   help="split into numbered shards of at most SIZE (2GB, 500MiB) plus "
                   "DST.index.json")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print nothing on success and show no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if os.path.exists(args.dst) and os.path.exists(args.src) and os.path.samefile(
        args.src, args.dst
    ):
        raise FileAccessError(path=args.dst, field="destination",
                              expected="a different file from the source", found="the same file")
    options = parse_options(args.options)
    with progress_bar("convert", quiet=args.quiet) as progress:
        weights = api.convert(args.src, args.dst, from_format=args.from_format, to=args.to,
                              max_shard_size=args.max_shard_size, progress=progress, **options)
    if not args.quiet:
        codec = api.codec_for_writing(args.dst, args.to, **options)
        written = api.written_path(args.dst, args.to, max_shard_size=args.max_shard_size,
                                   **options)
        print(f"wrote {written} ({codec.name}, {api.stored_size(written):,} bytes, "
              f"{len(weights)} tensors, {weights.total_values:,} values)")
    return 0
