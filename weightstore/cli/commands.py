"""The commands, the module that defines each, and each one's help line; every module has
``add_parser(subparsers, common)``.

A command's module is imported only when that command runs, through this table, as the
registry imports a codec: ``weightstore inspect`` then does not pay for the lab's imports
(the networks, the report, the data resolver's HTTP client), and ``weightstore --help``
lists the commands from the help lines here without importing any of them.
``tests/test_cli.py`` checks that each line is the one its module gives.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: Command name -> module in this package, in the order ``--help`` lists them.
COMMANDS: dict[str, str] = {
    "convert": "convert",
    "convert-many": "convert_many",
    "report-many": "report_many",
    "inspect": "inspect_cmd",
    "eval": "eval_cmd",
    "diff": "diff_cmd",
    "stats": "stats_cmd",
    "verify": "verify_cmd",
    "shrink": "shrink",
    "report": "report",
    "formats": "formats",
    "export-onnx": "interop",
    "schema": "interop",
    "test-image": "interop",
}


#: Command name -> its one-line help, as its module's ``add_parser`` gives it.
HELP: dict[str, str] = {
    "convert": "convert a weight file to another format (chosen by DST's extension or --to)",
    "convert-many": "convert many weight files (paths, globs, s3:// URLs) on a Dask cluster",
    "report-many": "tabulate format, parameters, bytes per parameter and dtypes of many "
                   "weight files",
    "inspect": "list a weight file's tensors (name, dtype, shape, count), its format and size",
    "eval": "run the book's network from a weight file on the 10,000 MNIST test images",
    "diff": "compare two weight files tensor by tensor; exit 0 when they match, else 1",
    "stats": "per-tensor min, max, mean, std, zeros, NaN/Inf counts and a histogram",
    "verify": "read every tensor of each FILE and check every checksum; exit 1 if any fails",
    "shrink": "write the smallest quantized file whose network predicts as the original does",
    "report": "measure size, precision lost, accuracy kept and time for every format",
    "formats": "list the formats (codecs), their file extensions, whether exact, and their "
               "options",
    "export-onnx": "write the book's 3-layer network as an ONNX model "
                   "(extra: weightstore[onnx])",
    "schema": "print the JSON Schema (draft 2020-12) of a layout weightstore writes",
    "test-image": "write one MNIST test image as a CSV of its 784 pixel values (for SQL, "
                  "sheets)",
}


def modules(command: str | None = None) -> list[ModuleType]:
    """The module of *command*, or every command module when *command* is not one."""
    names = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    return [importlib.import_module(f"{__package__}.{name}") for name in names]
