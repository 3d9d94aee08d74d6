"""``weightstore report``: what each format and precision costs, measured."""

from __future__ import annotations

import argparse
import sys

from ..errors import OptionError
from ..lab import report as rep
from ..lab.data import REFERENCE_WEIGHTS, resolve
from ._util import add_data_dir_arg

HELP = "measure size, precision lost, accuracy kept and time for every format"
EXAMPLES = """\
For every codec and option set worth comparing, the weights are written to a
real file and read back; each row gives the file size, bytes per weight, size
against the source and after zip, whether the round trip is exact (else the
max absolute, relative and ULP error), the accuracy on the 10,000 MNIST test
images, how many predictions changed, and the median write and read times.
Above the table: the notes' figures (neurons, weights, the str(network) text
dump and its precision loss, zip sizes), measured afresh.

examples:
  weightstore report                               the book's sample_weight.pkl
  weightstore report --format markdown > report.md
  weightstore report --format json --keep out/     keep the files it measured
  weightstore report --plot report.png             needs: pip install 'weightstore[plot]'
  weightstore report my_weights.npz --repeats 9
  weightstore report --all-reference               the ch. 3, 7 and 8 networks, one section each
  weightstore report --pareto --plot front.png     only the smallest file at each accuracy

Rows cover every format, every precision option (float16, bfloat16, int8/int4/int2
per column, 4 and 6 significant digits in JSON and CSV) and the 'weightstore shrink'
result. The 'frontier' column marks the Pareto frontier: rows that no other row beats
on both size and accuracy; the plot draws it.
"""


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("report", help=HELP, description=HELP.capitalize() + ".",
                       parents=[common], epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="weight files to measure (default: the reference sample_weight.pkl)")
    p.add_argument("--all-reference", action="store_true",
                   help="add the book's three networks: sample_weight.pkl (ch. 3), "
                   "simple_convnet_params.pkl (ch. 7), deep_convnet_params.pkl (ch. 8)")
    p.add_argument("--format", choices=list(rep.iter_formats()), default="text",
                   help="output format (default: text)")
    p.add_argument("--plot", metavar="FILE.png", help="also draw size against error/accuracy")
    p.add_argument("--pareto", action="store_true",
                   help="list only the rows on the size/accuracy frontier, smallest first")
    p.add_argument("--repeats", type=int, default=5, metavar="N",
                   help="timed runs per write and read; the median is shown (default: 5)")
    p.add_argument("--keep", metavar="DIR", help="keep the files written in DIR")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    add_data_dir_arg(p)
    p.set_defaults(run=run)


def _progress(quiet: bool) -> rep.Progress | None:
    if quiet:
        return None
    tty = sys.stderr.isatty()

    def show(step: int, total: int, what: str) -> None:
        line = f"[{step}/{total}] {what}"
        if tty:
            end = "\n" if step == total else ""
            sys.stderr.write(f"\r\x1b[2K{line}{end}")
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    return show


def run(args: argparse.Namespace) -> int:
    if args.repeats < 1:
        raise OptionError(field="--repeats", expected="1 or more", found=args.repeats)
    if args.plot:
        rep.check_plot_available()
    files = list(args.files)
    if args.all_reference or not files:
        names = REFERENCE_WEIGHTS if args.all_reference else REFERENCE_WEIGHTS[:1]
        files += [resolve(name, args.data_dir) for name in names]
    report = rep.build_report(files, repeats=args.repeats, data_dir=args.data_dir,
                              keep_dir=args.keep, progress=_progress(args.quiet))
    sys.stdout.write(rep.render(report, args.format, pareto_only=args.pareto))
    if args.plot:
        rep.plot(report, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0
