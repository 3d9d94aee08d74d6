"""``weightstore formats``: the codecs, their extensions and options."""

from __future__ import annotations

import argparse

from .. import registry
from ..display import table
from ._util import print_json

HELP = "list the formats (codecs), their file extensions, whether exact, and their options"


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("formats", help=HELP, description=HELP.capitalize() + ".",
                       parents=[common])
    p.add_argument("--json", action="store_true", help="print JSON for programs")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    classes = registry.codecs()
    if args.json:
        print_json([
            {
                "name": c.name,
                "extensions": list(c.extensions),
                "lossless": c.lossless,
                "metadata": c.supports_metadata,
                "writable": c.writable,
                "description": c.description,
                "options": [o.describe() for o in c.options],
            }
            for c in classes
        ])
        return 0
    rows = [[c.name, " ".join(c.extensions), "yes" if c.lossless else "no", c.description]
            for c in classes]
    print(table(rows, ["format", "extensions", "exact", "description"]))
    print()
    print("options (pass with -o KEY=VALUE):")
    for c in classes:
        for o in c.options:
            extra = f" [{'|'.join(map(str, o.choices))}]" if o.choices else ""
            setting = f"{o.name}={o.default}"
            print(f"  {c.name:<12} {setting:<18} {o.help}{extra}")
    return 0
