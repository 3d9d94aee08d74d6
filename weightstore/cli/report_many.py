"""``weightstore report-many``: size, parameters and precision of many weight files."""

from __future__ import annotations

import argparse
import csv
import sys

import orjson

from .. import cluster
from ..display import table
from ._util import add_option_arg, add_precision_args, parse_options, precision_from_args
from .convert_many import add_cluster_args, storage_options_arg

HELP = "tabulate format, parameters, bytes per parameter and dtypes of many weight files"
EXAMPLES = """\
examples:
  weightstore report-many 'zoo/**/*.bin'
  weightstore report-many 's3://bucket/zoo/**' --to safetensors --dtype float16 --csv > z.csv
  weightstore report-many ckpts/ --json --scheduler tcp://scheduler:8786
  weightstore report-many 'zoo/**' --parquet zoo.parquet      (DuckDB, pandas)

Columns: source, format, tensors, parameters, bytes, bytes_per_param, dtypes (share of
the parameters per dtype), and with --to the exact size in that format (each file is
converted to a temporary file on its worker and measured). A file that cannot be read
has its error in the last column; the exit status is then 1. Runs on Dask like
convert-many; needs: pip install 'weightstore[cluster]'.
"""


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("report-many", help=HELP, description=HELP.capitalize() + ".",
                       epilog=EXAMPLES, parents=[common],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="file, folder, glob ('zoo/**/*.bin') or URL ('s3://b/zoo/**')")
    p.add_argument("--to", metavar="FORMAT", help="also measure the size in this format")
    add_cluster_args(p)
    add_option_arg(p)
    add_precision_args(p)
    out = p.add_mutually_exclusive_group()
    out.add_argument("--csv", action="store_true", help="CSV on stdout")
    out.add_argument("--json", action="store_true", help="JSON on stdout (a list of rows)")
    out.add_argument("--parquet", metavar="PATH",
                     help="write a Parquet file (needs pyarrow: pip install "
                     "'weightstore[parquet]')")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    rows = cluster.report_many(
        args.sources, to=args.to, precision=precision_from_args(args),
        scheduler=args.scheduler, workers=args.workers,
        storage_options=storage_options_arg(args.storage_options),
        **parse_options(args.options))
    columns = list(cluster.REPORT_COLUMNS)
    if args.parquet:
        cluster.write_parquet(rows, args.parquet)
    elif args.json:
        print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
    elif args.csv:
        w = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    else:
        shown = [c for c in columns if any(r[c] is not None for r in rows)]
        cells = [["" if r[c] is None else f"{r[c]:,}" if isinstance(r[c], int) else str(r[c])
                  for c in shown] for r in rows]
        numeric = {i for i, c in enumerate(shown)
                   if c in ("tensors", "parameters", "bytes", "bytes_per_param", "size_as_to")}
        print(table(cells, shown, right=numeric))
    return 1 if any(r["error"] for r in rows) else 0
