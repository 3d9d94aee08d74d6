"""``weightstore report``: what each format and precision costs, measured."""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

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
max absolute, relative and ULP error, RMS error and cosine similarity), the
accuracy on the 10,000 MNIST test images, how many predictions changed, the
median write and read times, the peak memory of a load (tracemalloc: numpy
arrays and Python objects, not C libraries' own buffers), the bytes read to
open the file with 'weightstore.open' and copy out its last tensor, as a share
of the file ('1-tensor read', counted by the kernel: /proc/self/io, '?'
elsewhere), whether that is less than the file ('lazy') and its median time
('1-tensor ms').
Above the table: the notes' figures (neurons, weights, the str(network) text
dump and its precision loss, zip sizes), measured afresh.

Rows are printed as they are measured (and flushed) in the text, markdown, csv
and jsonl formats; the frontier follows each section's rows (in csv: only with
--pareto; in jsonl: a "section_end" record). json (one document), html and
--pareto need every row and write at the end. With -o FILE the file appears
when the report is complete (written atomically).

examples:
  weightstore report                               the book's sample_weight.pkl
  weightstore report --format markdown > report.md
  weightstore report --format jsonl | jq -c 'select(.type == "row")'   rows as measured
  weightstore report --format html report.html     one page: chart, sortable table, histograms
  weightstore report --format json --keep out/     keep the files it measured
  weightstore report --plot report.png             needs: pip install 'weightstore[plot]'
  weightstore report my_weights.npz --repeats 9
  weightstore report --all-reference               the ch. 3, 7 and 8 networks, one section each
  weightstore report --pareto --plot front.png     only the smallest file at each accuracy
  weightstore report --pareto --accept 0.2         ... within 0.2 points of the source's
  weightstore report model.safetensors --only 'zstd*' --only float16   some rows only

Any weights can be measured: accuracy columns need one of the book's networks (a line
says why they are missing otherwise); size, precision lost (max and RMS error, cosine
similarity) and times are given for every file.

Rows cover every format, every precision option (float16, bfloat16, int8/int4/int2
per column, 4 and 6 significant digits in JSON and CSV) and the 'weightstore shrink'
result. The frontier is the Pareto frontier of the rows a user would accept: those
at most --accept percentage points (default 1) below the source's accuracy; among
them, the rows that no other row beats on both size and accuracy. A smaller file
that loses more is not on it. The plot draws it.

Accuracy is evaluated once per distinct set of loaded arrays: for the conv nets a
row bit-identical to the source or to an earlier row takes its predictions (marked
'='); the ch. 3 MLP, which evaluates in well under a second, is run for every row.
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
                   help="output format (default: text). text, markdown, csv, jsonl: each row "
                   "printed as it is measured; json: one document, at the end; html: one "
                   "self-contained page (chart, sortable table, error histograms) written at "
                   "the end to -o FILE or a last FILE.html")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the report to FILE instead of standard output")
    p.add_argument("--plot", metavar="FILE.png", help="also draw size against error/accuracy")
    p.add_argument("--pareto", action="store_true",
                   help="list only the rows on the size/accuracy frontier, smallest first "
                   "(written at the end of each section)")
    p.add_argument("--accept", type=float, default=rep.ACCEPT_POINTS, metavar="POINTS",
                   help="the frontier counts only rows at most POINTS percentage points below "
                   f"the source's accuracy (default: {rep.ACCEPT_POINTS:g}; 0: only rows as "
                   "accurate as the source)")
    p.add_argument("--repeats", type=int, default=5, metavar="N",
                   help="at most N timed runs per write, read and one-tensor access (see "
                   "--max-seconds); the median is shown (default: 5)")
    p.add_argument("--max-seconds", type=float, default=rep.MAX_SECONDS, metavar="S",
                   help="stop repeating a timing once its runs took S seconds in all (at least "
                   f"one run; default: {rep.MAX_SECONDS:g}; 'inf': always --repeats runs)")
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


class _AfterProgress(io.TextIOBase):
    """Standard output that first clears a progress line drawn on the same terminal."""

    def __init__(self, out: TextIO, clear: bool) -> None:
        self.out, self.clear = out, clear

    def write(self, text: str) -> int:  # type: ignore[override]
        if self.clear:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()


@contextlib.contextmanager
def _destination(output: str | None) -> Iterator[TextIO]:
    """Standard output, or a text stream into *output* written atomically."""
    if output is None:
        yield _AfterProgress(sys.stdout, sys.stdout.isatty() and sys.stderr.isatty())  # type: ignore[misc]
        return
    with atomic_write(output) as f:
        text = io.TextIOWrapper(f, encoding="utf-8", newline="", write_through=True)
        try:
            yield text
        finally:
            text.detach()  # atomic_write closes the file itself
    print(f"report written to {output}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    if args.repeats < 1:
        raise OptionError(field="--repeats", expected="1 or more", found=args.repeats)
    if not args.max_seconds > 0:
        raise OptionError(field="--max-seconds", expected="a positive number of seconds",
                          found=args.max_seconds)
    if not args.accept >= 0:
        raise OptionError(field="--accept", expected="0 or more percentage points",
                          found=args.accept)
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
    with _destination(output) as out:
        sink = None if args.format == "html" else rep.writer(args.format, out,
                                                             pareto_only=args.pareto)
        report = rep.build_report(files, variants=variants, repeats=args.repeats,
                                  max_seconds=args.max_seconds,
                                  data_dir=args.data_dir, keep_dir=args.keep,
                                  progress=_progress(args.quiet), accept=args.accept, sink=sink)
        if args.format == "html":
            out.write(rep.render_html(rep.frontier_only(report) if args.pareto else report))
    if args.plot:
        rep.plot(report, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0
