"""The format summary table of docs/formats.md and the README, generated from the registry.

    python scripts/docs_tables.py          # print the table
    python scripts/docs_tables.py --write  # rewrite it in docs/formats.md

``tests/test_docs.py`` fails when the table in the docs differs from what the registry
says, so a codec's documentation cannot drift from its class attributes.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import weightstore as ws
from weightstore.codec import Codec

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "formats.md"
START, END = "<!-- registry-table:start -->", "<!-- registry-table:end -->"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def row(cls: type[Codec]) -> str:
    """One codec's row."""
    exts = " ".join(f"`{e}`" for e in cls.extensions)
    lazy = "as its inner codec" if cls.layer else _yes(cls.opens_lazily())
    streams = ("as its inner codec" if cls.layer else _yes(cls.streams_writes)
               if cls.writable else "no: read only")
    extra = f"`{cls.extra}`" if cls.extra else "—"
    return (f"| {cls.name} | {exts} | {_yes(cls.lossless)} | {_yes(cls.checksums)} | {lazy} "
            f"| {streams} | {extra} | {cls.description} |")


def table() -> str:
    """The whole table, every registered codec in sniffing order."""
    head = ("| codec | extensions | exact | checksums | `open()` reads the header alone "
            "| writes one tensor at a time | extra | what it is |\n"
            "|---|---|---|---|---|---|---|---|")
    return "\n".join([head, *(row(cls) for cls in ws.formats())])


def in_docs(text: str) -> str | None:
    """The table between the markers in *text*, or None."""
    m = re.search(re.escape(START) + r"(.*?)" + re.escape(END), text, re.S)
    return m.group(1).strip("\n") if m else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite docs/formats.md")
    args = parser.parse_args()
    if not args.write:
        print(table())
        return
    text = DOCS.read_text()
    if in_docs(text) is None:
        raise SystemExit(f"{DOCS}: no {START} ... {END} markers")
    DOCS.write_text(re.sub(re.escape(START) + r".*?" + re.escape(END),
                           lambda _: f"{START}\n{table()}\n{END}", text, flags=re.S))


if __name__ == "__main__":
    main()
