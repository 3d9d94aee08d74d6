"""Commands that hand the weights to other tools: ``export-onnx``, ``schema``, ``test-image``."""

from __future__ import annotations

import argparse
import json
import sys

from .. import api
from ..lab.interop.mnist import write_image_csv
from ..lab.interop.onnx import DEFAULT_OPSET, export_mlp
from ..schema import json_schema
from ._util import add_data_dir_arg


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "export-onnx", parents=[common], formatter_class=fmt,
        help="write the book's 3-layer network as an ONNX model (extra: weightstore[onnx])",
        description="Write the book's 3-layer network (784-50-100-10, sigmoid, softmax) as "
        "an ONNX model whose initializers are the weights: input x float32 [N, 784], "
        "output y [N, 10].",
        epilog="example:\n  weightstore export-onnx ../shared/data/sample_weight.pkl mlp.onnx\n"
        "  python -c \"import onnxruntime as ort; print(ort.InferenceSession('mlp.onnx'))\"",
    )
    p.add_argument("weights", metavar="WEIGHTS", help="weight file in any supported format")
    p.add_argument("out", metavar="OUT.onnx", help="model file to write")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset (default: {DEFAULT_OPSET})")
    p.set_defaults(run=_export_onnx)

    p = sub.add_parser(
        "schema", parents=[common], formatter_class=fmt,
        help="print the JSON Schema (draft 2020-12) of a layout weightstore writes",
        description="Print the JSON Schema (draft 2020-12) of weightstore's JSON layout, for "
        "validators in any language.",
        epilog="example:\n  weightstore schema json > weightstore.schema.json",
    )
    p.add_argument("layout", choices=["json"], help="the layout (json)")
    p.set_defaults(run=_schema)

    p = sub.add_parser(
        "test-image", parents=[common], formatter_class=fmt,
        help="write one MNIST test image as a CSV of its 784 pixel values (for SQL, sheets)",
        description="Write MNIST test image INDEX (0-9999) as a CSV of its 784 raw pixel "
        "values, 0 to 255 (header index,pixel; one pixel per row, row-major; the network "
        "sees pixel / 255); prints its label.",
        epilog="example:\n  weightstore test-image 0 image.csv   (see examples/sql/README.md)",
    )
    p.add_argument("index", type=int, metavar="INDEX", help="test image number, 0 to 9999")
    p.add_argument("out", metavar="OUT.csv", help="CSV file to write")
    add_data_dir_arg(p)
    p.set_defaults(run=_test_image)


def _export_onnx(args: argparse.Namespace) -> int:
    path = export_mlp(api.load(args.weights), args.out, opset=args.opset)
    print(f"wrote {path} (ONNX opset {args.opset})")
    return 0


def _schema(args: argparse.Namespace) -> int:
    json.dump(json_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _test_image(args: argparse.Namespace) -> int:
    label = write_image_csv(args.index, args.out, data_dir=args.data_dir)
    print(f"wrote {args.out} (test image {args.index}, label {label})")
    return 0
