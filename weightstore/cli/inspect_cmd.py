"""``weightstore inspect``: what a weight file holds."""

from __future__ import annotations

import argparse

from .. import api
from ..display import table
from ..errors import printable
from ._util import print_json

HELP = "list a weight file's tensors (name, dtype, shape, count), its format and size"


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("inspect", help=HELP, description=HELP.capitalize() + ".",
                       parents=[common], epilog="example:\n  weightstore inspect w.h5 --json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE", help="weight file to describe")
    p.add_argument("--from", dest="from_format", metavar="FORMAT",
                   help="format (default: from the content, then the extension)")
    p.add_argument("--json", action="store_true", help="print JSON for programs")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="do not check the file's checksums")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    info = api.inspect(args.file, args.from_format, verify=args.verify)
    if args.json:
        print_json(info.to_dict())
        return 0
    # names and metadata come from the file: escaped (no terminal escape sequences)
    print(f"{printable(info.path)}: {info.format}, {info.file_size:,} bytes")
    rows = [[printable(t.name), t.dtype, "x".join(map(str, t.shape)) or "scalar",
             f"{t.count:,}"] for t in info.tensors]
    print(table(rows, ["tensor", "dtype", "shape", "values"], right={3}))
    print(f"{len(info.tensors)} tensors, {info.total_values:,} values")
    for key, value in info.metadata.items():
        print(f"metadata {printable(key)}: {printable(value)}")
    return 0
