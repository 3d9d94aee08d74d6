"""``weightstore diff``: compare two weight files tensor by tensor."""

from __future__ import annotations

import argparse
import dataclasses
import math

from ..compare import Diff, TensorDiff, diff
from ..display import markdown_table, table
from ..errors import OptionError
from ..lab.compare import eval_diff
from ._util import STDIO, add_strict_arg, input_path, print_json

HELP = "compare two weight files tensor by tensor; exit 0 when they match, else 1"
EXAMPLES = """\
For each tensor: whether both files hold it with the same shape and dtype, how
many values differ, and the largest absolute, relative (to A) and ULP error
(float steps in A's dtype). The exit status is 0 when every tensor matches --
equal values, or within --atol/--rtol: |a - b| <= atol + rtol * |a| -- and 1
otherwise, so a CI job can use it. Tensors are read one at a time.

examples:
  weightstore diff w.pkl w.npz                         exact round trip? (exit 0)
  weightstore diff w.pkl w16.npz --atol 1e-3 --ignore-dtype   a float16 copy, close enough
  weightstore diff old.safetensors new.safetensors --json      for programs
  weightstore diff a.h5 b.h5 --format markdown > diff.md       for a pull request
  weightstore diff w.pkl w.npz --eval                  accuracy of both and changed predictions
"""

COLUMNS = ["tensor", "status", "dtype", "shape", "differing", "max abs", "max rel", "max ULP"]


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("diff", help=HELP, description=HELP.capitalize() + ".",
                       parents=[common], epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", metavar="A", help="reference weight file")
    p.add_argument("b", metavar="B",
                   help="weight file to compare with A (either may be - for stdin)")
    p.add_argument("--atol", type=float, default=0.0, metavar="X",
                   help="absolute tolerance (default: 0)")
    p.add_argument("--rtol", type=float, default=0.0, metavar="X",
                   help="tolerance relative to A's value (default: 0)")
    p.add_argument("--ignore-dtype", action="store_true",
                   help="tensors of different dtypes match when their values do")
    p.add_argument("--format", choices=["text", "json", "markdown"], default="text",
                   help="output format (default: text)")
    p.add_argument("--json", dest="format", action="store_const", const="json",
                   help="same as --format json")
    p.add_argument("--eval", action="store_true",
                   help="also run the book's network from both files on the MNIST test set")
    p.add_argument("--data-dir", metavar="DIR",
                   help="with --eval: folder with mnist/t10k-*.gz (as for 'weightstore eval')")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="read without checking the files' checksums")
    add_strict_arg(p)
    p.set_defaults(run=run)


def _num(x: float) -> str:
    if x == 0:
        return "0"
    if not math.isfinite(x):
        return str(x)
    return f"{x:.3g}" if x < 1e6 else f"{x:.4g}"


def _dtype(t: TensorDiff) -> str:
    if t.dtype_a == t.dtype_b or t.dtype_b is None:
        return t.dtype_a or ""
    return f"{t.dtype_a or '-'}/{t.dtype_b}"


def _shape(shape: tuple[int, ...] | None) -> str:
    return "-" if shape is None else ("x".join(map(str, shape)) or "scalar")


def _cells(t: TensorDiff) -> list[str]:
    shape = _shape(t.shape_a) if t.shape_a == t.shape_b or t.shape_b is None else \
        f"{_shape(t.shape_a)}/{_shape(t.shape_b)}"
    if t.status in ("shape", "only in A", "only in B"):
        return [t.name, t.status, _dtype(t), shape, "", "", "", ""]
    return [t.name, t.status, _dtype(t), shape, f"{t.differing:,} of {t.count:,}",
            _num(t.max_abs_error), _num(t.max_rel_error), _num(t.max_ulp_error)]


def _summary(d: Diff) -> str:
    bad = [t for t in d.tensors if not t.passed]
    if d.identical:
        verdict = "identical"
    elif d.passed:
        verdict = f"match within atol={d.atol:g}, rtol={d.rtol:g}"
    else:
        verdict = f"{len(bad)} of {len(d.tensors)} tensors do not match"
    lines = [f"{d.a} vs {d.b}: {verdict}"]
    if d.metadata_differs:
        lines.append("metadata differs: " + ", ".join(d.metadata_differs))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.atol < 0 or args.rtol < 0:
        raise OptionError(field="--atol/--rtol", expected="non-negative numbers",
                          found=f"{args.atol}, {args.rtol}")
    if args.a == args.b == STDIO:
        raise OptionError(field="A and B", expected="at most one '-' (stdin)", found="both")
    with input_path(args.a) as a, input_path(args.b) as b:
        result = diff(a, b, atol=args.atol, rtol=args.rtol, check_dtype=not args.ignore_dtype,
                      verify=args.verify, strict=args.strict)
        evaluation = eval_diff(a, b, data_dir=args.data_dir).to_dict() if args.eval else None
    result = dataclasses.replace(result, a=args.a, b=args.b)
    if args.format == "json":
        data = result.to_dict()
        if evaluation is not None:
            data["eval"] = evaluation
        print_json(data)
    else:
        rows = [_cells(t) for t in result.tensors]
        if args.format == "markdown":
            print(markdown_table(rows, COLUMNS))
            print()
            print(_summary(result))
        else:
            print(table(rows, COLUMNS, right={4, 5, 6, 7}))
            print(_summary(result))
        if evaluation is not None:
            print(f"accuracy: A {evaluation['accuracy_a']:.4f}, B {evaluation['accuracy_b']:.4f}; "
                  f"{evaluation['changed']:,} of {evaluation['total']:,} predictions changed")
    return 0 if result.passed else 1
