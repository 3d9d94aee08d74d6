"""Round-trip the book's sample_weight.pkl through every codec and write the report.

A thin wrapper over the library (``weightstore.lab.report``): the files it measured are kept
in OUT_DIR beside report.md, report.json and (with matplotlib) report.png.

    python scripts/roundtrip_sample_weight.py [OUT_DIR] [--data-dir DIR] [--repeats N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from weightstore import get_codec
from weightstore.errors import WeightstoreError
from weightstore.lab import report as rep
from weightstore.lab.data import resolve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", nargs="?", default="roundtrip-out", help="where to write")
    parser.add_argument("--data-dir", help="folder with the reference files")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per write/read")
    args = parser.parse_args(argv)
    out = Path(args.out_dir)
    try:
        source = resolve("sample_weight.pkl", args.data_dir)
        report = rep.build_report([source], repeats=args.repeats, data_dir=args.data_dir,
                                  keep_dir=out / "files",
                                  progress=lambda i, n, what: print(f"[{i}/{n}] {what}",
                                                                    file=sys.stderr))
        (out / "report.md").write_text(rep.render_markdown(report))
        (out / "report.json").write_text(rep.render_json(report))
        try:
            rep.plot(report, out / "report.png")
        except WeightstoreError as e:  # matplotlib is optional
            print(f"no plot: {e}", file=sys.stderr)
    except WeightstoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    rows = report.sections[0][1]
    not_exact = [r.label for r in rows if get_codec(r.format).lossless and not r.exact]
    print(rep.render_text(report))
    print(f"written to {out}/; lossless codecs that were not exact: {not_exact or 'none'}")
    return 1 if not_exact else 0


if __name__ == "__main__":
    sys.exit(main())
