"""``weightstore convert-many``: convert a collection of weight files on Dask."""

from __future__ import annotations

import argparse
import sys

import orjson

from .. import cluster
from ..display import table
from ..errors import OptionError
from ._progress import progress_bar
from ._util import (
    add_option_arg,
    add_precision_args,
    add_strict_arg,
    parse_options,
    precision_from_args,
)

HELP = "convert many weight files (paths, globs, s3:// URLs) on a Dask cluster"
EXAMPLES = """\
examples:
  weightstore convert-many 'zoo/**/*.bin' --to safetensors --out converted/
  weightstore convert-many ckpts/ --to npz --out ckpts16/ --dtype float16 --workers 4
  weightstore convert-many 's3://bucket/zoo/**/*.bin' --to safetensors \\
      --out s3://bucket/zoo-st --scheduler tcp://scheduler:8786
  weightstore convert-many 's3://in/**' --to npz --out s3://out \\
      --storage-options '{"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}'

Each file is one Dask task that reads its source and writes its destination on a
worker. A sharded checkpoint (NAME.index.json and its shards) is one task. DEST
mirrors the source tree below the part of each source before its first wildcard.

The manifest (DEST/weightstore-manifest.jsonl, or --manifest) records every attempt;
running the same command again converts only what is new, changed or failed.
A file that fails is listed with its error and the run goes on; the exit status is
then 1. Needs: pip install 'weightstore[cluster]' (docs/cluster.md).
"""


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("convert-many", help=HELP, description=HELP.capitalize() + ".",
                       epilog=EXAMPLES, parents=[common],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="file, folder, glob ('zoo/**/*.bin') or URL ('s3://b/zoo/**/*.bin')")
    p.add_argument("--to", required=True, metavar="FORMAT", help="output format")
    p.add_argument("--out", required=True, metavar="DEST", help="folder or URL to write to")
    add_cluster_args(p)
    p.add_argument("--manifest", metavar="PATH",
                   help="the manifest (default: DEST/weightstore-manifest.jsonl)")
    add_option_arg(p)
    add_precision_args(p)
    p.add_argument("--max-shard-size", metavar="SIZE",
                   help="split each output into shards of at most SIZE plus an index")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="read sources without checking their checksums")
    add_strict_arg(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print only failures and the summary; no progress bar")
    p.set_defaults(run=run)


def add_cluster_args(p: argparse.ArgumentParser) -> None:
    """--scheduler, --workers and --storage-options (convert-many, report-many)."""
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="a dask.distributed scheduler (tcp://host:8786); default: a local "
                   "cluster")
    p.add_argument("--workers", type=int, metavar="N",
                   help="worker processes of the local cluster (default: one per core)")
    p.add_argument("--storage-options", metavar="JSON",
                   help="fsspec storage options (credentials, endpoint) for every path")


def storage_options_arg(text: str | None) -> dict | None:
    """The dict a ``--storage-options JSON`` flag gives, or None."""
    if text is None:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise OptionError(field="--storage-options", expected="a JSON object",
                          found=str(e).split("\n")[0]) from e
    if not isinstance(value, dict):
        raise OptionError(field="--storage-options", expected="a JSON object",
                          found=type(value).__name__)
    return value


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} TB"  # pragma: no cover


def run(args: argparse.Namespace) -> int:
    options = parse_options(args.options)
    with progress_bar("convert-many", quiet=args.quiet) as progress:
        result = cluster.convert_many(
            args.sources, to=args.to, out=args.out, scheduler=args.scheduler,
            workers=args.workers, manifest=args.manifest,
            precision=precision_from_args(args), dequantize=args.dequantize,
            verify=args.verify, max_shard_size=args.max_shard_size,
            storage_options=storage_options_arg(args.storage_options), progress=progress,
            strict=args.strict, **options)
    for r in result.failed:
        print(f"failed: {r.source}: {r.error}", file=sys.stderr)
    s = result.summary()
    if args.json:
        print(orjson.dumps({**s, "failures": [{"source": r.source, "error": r.error}
                                              for r in result.failed]},
                           option=orjson.OPT_INDENT_2).decode())
    else:
        print(table([[str(s["done"]), str(s["skipped"]), str(s["failed"]),
                      _size(s["bytes_in"]), _size(s["bytes_out"]), f"{s['seconds']:.1f} s",
                      _size(s["throughput_bytes_per_s"]) + "/s"]],
                    ["done", "skipped", "failed", "bytes in", "bytes out", "time",
                     "throughput"], right=set(range(7))))
        if not args.quiet:
            print(f"manifest: {s['manifest']}")
    return 1 if result.failed else 0
