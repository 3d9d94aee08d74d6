"""Small helpers shared by the command modules."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from ..errors import FileAccessError, OptionError, UnknownFormatError
from ..integrity import HINT as DAMAGED_HINT
from ..precision import FLOAT_DTYPES, Precision, Quantization


def parse_options(pairs: list[str] | None) -> dict[str, str]:
    """``["level=19", "compression=gzip"]`` as a dict; the codec parses the values."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise OptionError(field=f"option {pair!r}", expected="KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def add_option_arg(parser: argparse.ArgumentParser) -> None:
    """The ``-o KEY=VALUE`` codec option flag."""
    parser.add_argument(
        "-o", "--option", action="append", metavar="KEY=VALUE", dest="options",
        help="codec option, repeatable (see 'weightstore formats'), e.g. -o level=19",
    )


def print_json(data: Any) -> None:
    """Indented JSON to stdout. Characters a terminal could act on (json escapes those
    below U+0020; this also the C1 controls, bidirectional overrides and the like) are
    written as ``\\uXXXX``, which every JSON reader decodes back."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    if not text.isprintable():
        text = "".join(c if c.isprintable() or c in "\n" else _json_escape(c) for c in text)
    sys.stdout.write(text + "\n")


def _json_escape(c: str) -> str:
    code = ord(c)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def add_data_dir_arg(parser: argparse.ArgumentParser) -> None:
    """The ``--data-dir`` flag for commands that need the reference data."""
    parser.add_argument(
        "--data-dir", metavar="DIR",
        help="folder with the reference files (sample_weight.pkl, mnist/t10k-*.gz); default: "
        "$WEIGHTSTORE_DATA, then ../shared/data beside the checkout, then the user cache",
    )


def add_strict_arg(parser: argparse.ArgumentParser) -> None:
    """``--strict``: refuse a file with entries weightstore does not hold."""
    parser.add_argument(
        "--strict", action="store_true",
        help="refuse a file holding entries weightstore does not hold (a complex, string or "
        "object array; a pickle value that is not an array, number or string) instead of "
        "reading the rest with a warning that lists what was skipped")


def check_distinct(src: str, dst: str) -> None:
    """Refuse a destination that is the source file itself."""
    if os.path.exists(dst) and os.path.exists(src) and os.path.samefile(src, dst):
        raise FileAccessError(path=dst, field="destination",
                              expected="a different file from the source", found="the same file")


#: The library's errors name keywords (``format=``, ``verify=False``); on the command line
#: the same advice names flags. The one place that translates them.
CLI_WORDS: tuple[tuple[str, str], ...] = (
    (DAMAGED_HINT, "the file is damaged; --no-verify reads it without checking"),
    ("pass format=NAME (to=NAME in convert)", "pass --to FORMAT"),
    ("pass format=NAME (from_format=NAME in convert)", "pass --from FORMAT"),
    ("weightstore.formats() lists them", "'weightstore formats' lists them"),
    ("or pass inner=FORMAT", "or pass -o inner=FORMAT"),
    ("precision quantize:", "--quantize:"),
    ("precision dtype ", "--dtype "),
    (": data_dir: expected an existing folder", ": --data-dir: expected an existing folder"),
    ("without strict=True the rest loads", "without --strict the rest loads"),
    ("strict=True refuses such a file instead", "--strict refuses such a file instead"),
)


def in_cli_words(message: str) -> str:
    """*message* with the library's keyword advice said as command-line flags."""
    for api_words, cli_words in CLI_WORDS:
        message = message.replace(api_words, cli_words)
    return message


#: The path that means stdin (as a source) or stdout (as a destination).
STDIO = "-"


@contextlib.contextmanager
def input_path(path: str) -> Iterator[str]:
    """*path*, or for ``-`` a temporary file holding all of stdin (removed afterwards):
    every format can then be read from a pipe, at the cost of a copy on disk, not in
    memory."""
    if path != STDIO:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="weightstore-stdin-") as folder:
        copy = os.path.join(folder, "stdin")
        with open(copy, "wb") as f:
            shutil.copyfileobj(sys.stdin.buffer, f, 8 << 20)
        yield copy


@contextlib.contextmanager
def output_path(path: str, to: str | None) -> Iterator[str]:
    """*path*, or for ``-`` a temporary file copied to stdout once written whole (so a
    failed write sends nothing). Writing to stdout needs the format named with --to."""
    if path != STDIO:
        yield path
        return
    if to is None:
        raise UnknownFormatError(field="DST '-' (stdout)", expected="--to FORMAT",
                                 found="no --to")
    with tempfile.TemporaryDirectory(prefix="weightstore-stdout-") as folder:
        out = os.path.join(folder, "stdout")
        yield out
        with open(out, "rb") as f:
            shutil.copyfileobj(f, sys.stdout.buffer, 8 << 20)
        sys.stdout.buffer.flush()

def add_precision_args(parser: argparse.ArgumentParser) -> None:
    """The lossy precision flags of ``convert`` and ``convert-many``."""
    g = parser.add_argument_group("precision (lossy; works with every format)")
    g.add_argument("--dtype", choices=FLOAT_DTYPES,
                   help="cast every float tensor (bfloat16 needs: pip install "
                   "'weightstore[bfloat16]')")
    g.add_argument("--quantize", metavar="BITS[/per-column|/block:N]",
                   help="integer codes of 2-8 bits, one scale per column (default) or per N "
                   "rows of a column; stored as NAME.q and NAME.scale")
    g.add_argument("--digits", type=int, metavar="N",
                   help="round every float to N significant digits (shrinks JSON and CSV)")
    g.add_argument("--dequantize", action="store_true",
                   help="write a quantized source's floats instead of its codes")


def precision_from_args(args: argparse.Namespace) -> Precision | None:
    """The :class:`Precision` the flags of :func:`add_precision_args` ask for, or None."""
    if not (args.dtype or args.quantize or args.digits is not None):
        return None
    quantize = Quantization.parse(args.quantize) if args.quantize else None
    return Precision(args.dtype, quantize, args.digits)
