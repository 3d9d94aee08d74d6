"""Entry point of the ``weightstore`` command.

Results go to stdout, warnings and errors to stderr. A known failure prints one
line ``weightstore: error: ...`` and exits 1; a usage error exits 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import signal
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from .. import __version__
from ..errors import WeightstoreError, printable
from . import commands
from ._util import in_cli_words


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: raised like Ctrl-C's KeyboardInterrupt, so that every
    ``finally`` and ``except BaseException`` on the way out runs (a staged write removes
    its temporary files)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


@contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`Terminated` while the command runs."""
    wanted = [getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    saved = {}
    try:
        for sig in wanted:
            saved[sig] = signal.signal(sig, _raise)
    except ValueError:  # not the main thread: leave the handlers alone
        pass
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)

EPILOG = """\
examples:
  weightstore convert sample_weight.pkl w.json          convert by extension
  weightstore convert w.json w.h5 -o compression=gzip   with a codec option
  weightstore convert w.pkl w.csv.zst -o level=19       zstd over CSV
  weightstore inspect w.h5                              tensors, shapes, dtypes, size
  weightstore formats                                   codecs and their options

'weightstore COMMAND --help' tells more about each command.
"""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with every command, or with *command* alone when it names one."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback when something fails")
    parser = argparse.ArgumentParser(
        prog="weightstore",
        description="Store, convert, inspect and compare neural-network weight files.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"weightstore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    if command not in commands.COMMANDS:  # the overview: help lines alone, no module imported
        for name, line in commands.HELP.items():
            sub.add_parser(name, help=line, parents=[common])
        return parser
    for module in commands.modules(command):
        module.add_parser(sub, common)
    return parser


def _command(argv: list[str]) -> str | None:
    """The command *argv* runs: the options before it take no value, so it is the first
    other word; None when there is none or help is asked for first (the full parser)."""
    for arg in argv:
        if arg in ("-h", "--help"):
            return None
        if not arg.startswith("-"):
            return arg
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command(argv))
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    warnings.simplefilter("default")
    if not debug:
        warnings.formatwarning = lambda msg, cat, *a, **k: \
            f"weightstore: warning: {printable(in_cli_words(str(msg)))}\n"
    try:
        with _signals_raise():
            return int(args.run(args) or 0)
    except Terminated as e:
        if debug:
            raise
        print(f"weightstore: stopped by signal {signal.Signals(e.signum).name}", file=sys.stderr)
        return 128 + e.signum
    except WeightstoreError as e:
        if debug:
            raise
        print(f"weightstore: error: {in_cli_words(str(e))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if debug:
            raise
        print("weightstore: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
