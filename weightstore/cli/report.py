"""``weightstore report``: what each format and precision costs, measured."""

from __future__ import annotations

import argparse
import fnmatch
import sys
from pathlib import Path

from ..errors import FileAccessError, OptionError
from ..fileio import atomic_write
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
  weightstore report --format html report.html     one page: chart, sortable table, histograms
  weightstore report --format json --keep out/     keep the files it measured
  weightstore report --plot report.png             needs: pip install 'weightstore[plot]'
  weightstore report my_weights.npz --repeats 9
  weightstore report --all-reference               the ch. 3, 7 and 8 networks, one section each
  weightstore report --pareto --plot front.png     only the smallest file at each accuracy
  weightstore report model.safetensors --only 'zstd*' --only float16   some rows only

Any weights can be measured: accuracy columns need one of the book's networks (a line
says why they are missing otherwise); size, precision lost (max and RMS error, cosine
similarity) and times are given for every file.

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
    p.add_argument("--format", choices=[*rep.iter_formats(), "html"], default="text",
                   help="output format (default: text); html: one self-contained page (chart, "
                   "sortable table, error histograms) written to -o FILE or a last FILE.html")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the report to FILE instead of standard output")
    p.add_argument("--plot", metavar="FILE.png", help="also draw size against error/accuracy")
    p.add_argument("--pareto", action="store_true",
                   help="list only the rows on the size/accuracy frontier, smallest first")
    p.add_argument("--repeats", type=int, default=5, metavar="N",
                   help="timed runs per write and read; the median is shown (default: 5)")
    p.add_argument("--only", action="append", default=[], metavar="GLOB",
                   help="measure only rows whose label or format matches GLOB (repeatable; "
                   "e.g. 'zstd*', npz, 'int*')")
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
    output = args.output
    if (args.format == "html" and output is None and files
            and files[-1].lower().endswith((".html", ".htm"))):
        output = files.pop()  # weightstore report --format html OUT.html
    if args.format == "html" and output is None:
        raise OptionError(field="--format html", expected="an output file: -o OUT.html, or "
                          "OUT.html as the last argument", found="none")
    if output is not None:
        folder = Path(output).parent
        if not folder.is_dir():  # before measuring for a minute
            raise FileAccessError(path=output, field="destination folder",
                                  expected="an existing folder", found=f"no folder {str(folder)!r}")
    if args.all_reference or not files:
        names = REFERENCE_WEIGHTS if args.all_reference else REFERENCE_WEIGHTS[:1]
        files += [resolve(name, args.data_dir) for name in names]
    variants = None
    if args.only:
        variants = [v for v in rep.default_variants()
                    if any(fnmatch.fnmatchcase(v.label, g) or fnmatch.fnmatchcase(v.format, g)
                           for g in args.only)]
        if not variants:
            raise OptionError(field="--only", expected="a pattern matching some row",
                              found=" ".join(args.only),
                              hint="rows: " + ", ".join(v.label for v in rep.default_variants()))
    report = rep.build_report(files, variants=variants, repeats=args.repeats,
                              data_dir=args.data_dir,
                              keep_dir=args.keep, progress=_progress(args.quiet))
    if args.format == "html":
        shown = rep.frontier_only(report) if args.pareto else report
        text = rep.render_html(shown)
    else:
        text = rep.render(report, args.format, pareto_only=args.pareto)
    if output is None:
        sys.stdout.write(text)
    else:
        with atomic_write(output) as f:
            f.write(text.encode("utf-8"))
        print(f"report written to {output}", file=sys.stderr)
    if args.plot:
        rep.plot(report, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0
