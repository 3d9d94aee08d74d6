"""``weightstore verify``: check every checksum of one or more weight files."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from .. import api
from ..errors import WeightstoreError
from ._util import add_strict_arg, in_cli_words, input_path, print_json

HELP = "read every tensor of each FILE and check every checksum; exit 1 if any fails"
EXAMPLES = """\
Each file's header checksum and every tensor's are checked (formats that store
them: npz, safetensors, HDF5, JSON, wsc, zstd frames; 'weightstore formats').
A file in a format without checksums is read through, which shows only that it
decodes: the line says so. Tensors are read one at a time.

examples:
  weightstore verify model.npz                   -> model.npz: ok, 4 tensors ...
  weightstore verify out/*.safetensors --json
  weightstore inspect model.h5 --verify          the listing, then the same check
"""


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("verify", help=HELP, description=HELP.capitalize() + ".",
                       parents=[common], epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", metavar="FILE", help="weight files to check")
    p.add_argument("--from", dest="from_format", metavar="FORMAT",
                   help="format (default: from the content, then the extension)")
    p.add_argument("--json", action="store_true", help="print JSON for programs")
    add_strict_arg(p)
    p.set_defaults(run=run)


def describe(v: api.Verified) -> str:
    """One line saying what was checked."""
    what = "every checksum matches" if v.checksums else \
        f"{v.format} stores no checksums: read through only"
    return (f"{v.path}: ok, {v.tensors:,} tensors, {v.total_values:,} values, {v.format}; "
            f"{what}")


def run(args: argparse.Namespace) -> int:
    results: list[dict[str, object]] = []
    failed = 0
    for path in args.files:
        try:
            with input_path(path) as local:
                v = dataclasses.replace(api.verify(local, args.from_format,
                                                          strict=args.strict), path=path)
        except WeightstoreError as e:
            failed += 1
            results.append({"path": path, "ok": False, "error": in_cli_words(str(e))})
            if not args.json:
                print(f"weightstore: error: {in_cli_words(str(e))}", file=sys.stderr)
            continue
        results.append({**v.to_dict(), "ok": True})
        if not args.json:
            print(describe(v))
    if args.json:
        print_json(results)
    elif len(args.files) > 1:
        print(f"{len(args.files) - failed} of {len(args.files)} files ok")
    return 1 if failed else 0
