"""``weightstore convert``: read a weight file and write it in another format."""

from __future__ import annotations

import argparse
import sys

from .. import api
from ..errors import OptionError
from ._progress import progress_bar
from ._util import (
    STDIO,
    add_option_arg,
    add_precision_args,
    add_strict_arg,
    check_distinct,
    input_path,
    output_path,
    parse_options,
    precision_from_args,
)

HELP = "convert a weight file to another format (chosen by DST's extension or --to)"
EXAMPLES = """\
examples:
  weightstore convert ../shared/data/sample_weight.pkl w.json
  weightstore convert w.json w.npz -o compressed=true
  weightstore convert w.pkl w.csv -o layout=matrix     (a zip of one CSV per tensor, rows
                                                       as rows: np.loadtxt, pandas, R)
  weightstore convert w.npz w.h5 -o compression=gzip -o level=9
  weightstore convert w.h5 w.csv.zst -o level=19      (zstd over CSV; 'zstd -d' restores w.csv)
  weightstore convert w.bin weights.out --from npz --to json
  weightstore convert w.pkl w16.npz --dtype float16           (half the size, lossy)
  weightstore convert w.pkl w4.npz.zst --quantize 4           (4-bit codes, a scale per column)
  weightstore convert w.pkl w3.npz --quantize 3/block:64      (a scale per 64 rows of a column)
  weightstore convert w.pkl w.json --digits 6                 (6 significant digits in the text)
  weightstore convert w4.npz.zst w.npz --dequantize           (codes back to floats)
  weightstore convert big.h5 out/model.npz --max-shard-size 2GB   (shards + index)
  weightstore convert s3://bucket/model.safetensors w.h5          (URLs: extra 'remote')
  weightstore convert big.safetensors enc.npz --include 'encoder/*' --exclude '*.bias'
  weightstore convert w.h5 w.npz --rename model/=  --rename 're:layer(\\d+)/W=fc\\1/W'
  curl -s URL | weightstore convert - w.npz --from safetensors    ('-': stdin/stdout)
  weightstore convert w.npz - --to json | jq .tensors[0].name

--dtype, --quantize and --digits lose precision on purpose (a warning says so once);
weightstore.load() of a quantized file gives floats, and 'weightstore eval' runs them.

The destination is replaced atomically: if anything fails, no partial file is
left and an existing file keeps its old content. A replaced file keeps its
permissions; --no-clobber refuses to replace it. Tensors move one at a time
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
    add_precision_args(p)
    g = p.add_argument_group("choosing tensors (applied while streaming)")
    g.add_argument("--include", action="append", default=[], metavar="GLOB",
                   help="keep only tensors whose name matches GLOB (repeatable; * matches /)")
    g.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                   help="drop tensors whose name matches GLOB (repeatable)")
    g.add_argument("--rename", action="append", default=[], metavar="OLD=NEW",
                   help="replace the name prefix OLD with NEW, or with re:PATTERN=REPL a "
                   "name PATTERN matches in full (repeatable; the first that applies wins); "
                   "a quantized tensor is matched and renamed by its own name, its codes, "
                   "scales and quantization record following it")
    p.add_argument("--max-shard-size", metavar="SIZE",
                   help="split into numbered shards plus DST.index.json, each holding at most "
                   "SIZE bytes of tensor values (2GB = 10**9, 500MiB = 500*2**20); a tensor "
                   "larger than SIZE gets a shard of its own")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="read SRC without checking its checksums (to salvage a damaged file)")
    add_strict_arg(p)
    p.add_argument("-n", "--no-clobber", action="store_true",
                   help="refuse to replace an existing DST (checked before reading SRC, "
                   "and again atomically when DST is put in place)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print nothing on success and show no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_distinct(args.src, args.dst)
    options = parse_options(args.options)
    precision = precision_from_args(args)
    to_stdout = args.dst == STDIO
    if to_stdout and args.max_shard_size:
        raise OptionError(field="--max-shard-size", expected="a DST path (shards are files)",
                          found="DST '-' (stdout)")
    with input_path(args.src) as src, output_path(args.dst, args.to) as dst, \
            progress_bar("convert", quiet=args.quiet) as progress:
        written = api.convert(src, dst, from_format=args.from_format, to=args.to,
                              precision=precision, dequantize=args.dequantize,
                              verify=args.verify, max_shard_size=args.max_shard_size,
                              progress=progress, overwrite=not args.no_clobber,
                              include=args.include, exclude=args.exclude, rename=args.rename,
                              strict=args.strict, **options)
    if not args.quiet:
        print(f"wrote {'stdout' if to_stdout else written.path} ({written.format}, "
              f"{written.file_size:,} bytes, {len(written)} tensors, "
              f"{written.total_values:,} values)", file=sys.stderr if to_stdout else sys.stdout)
    return 0
