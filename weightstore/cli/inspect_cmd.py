"""``weightstore inspect``: what a weight file holds."""

from __future__ import annotations

import argparse

from .. import api
from ..display import table
from ..errors import printable
from ._util import add_strict_arg, input_path, print_json
from .verify_cmd import describe

HELP = "list a weight file's tensors (name, dtype, shape, count), its format and size"


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("inspect", help=HELP, description=HELP.capitalize() + ".",
                       parents=[common], epilog="examples:\n  weightstore inspect w.h5 --json\n"
                       "  weightstore inspect w.npz --verify    also check every tensor's checksum",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE", help="weight file to describe (- reads stdin)")
    p.add_argument("--from", dest="from_format", metavar="FORMAT",
                   help="format (default: from the content, then the extension)")
    p.add_argument("--json", action="store_true", help="print JSON for programs")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--verify", dest="verify_all", action="store_true",
                   help="also read every tensor and check every checksum (exit 1 if one fails)")
    g.add_argument("--no-verify", dest="verify", action="store_false",
                   help="do not check the header's checksum")
    add_strict_arg(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    with input_path(args.file) as path:
        info = api.inspect(path, args.from_format, verify=args.verify, strict=args.strict)
        checked = api.verify(path, args.from_format, strict=args.strict) \
            if args.verify_all else None
    if args.json:
        data = info.to_dict()
        if checked is not None:
            data["verified"] = checked.to_dict()
        print_json(data)
        return 0
    # names and metadata come from the file: escaped (no terminal escape sequences)
    print(f"{printable(info.path)}: {info.format}, {info.file_size:,} bytes")
    rows = [[printable(t.name), t.dtype, "x".join(map(str, t.shape)) or "scalar",
             f"{t.count:,}"] for t in info.tensors]
    print(table(rows, ["tensor", "dtype", "shape", "values"], right={3}))
    print(f"{len(info.tensors)} tensors, {info.total_values:,} values")
    for key, value in info.metadata.items():
        print(f"metadata {printable(key)}: {printable(value)}")
    if checked is not None:
        print(describe(checked))
    return 0
