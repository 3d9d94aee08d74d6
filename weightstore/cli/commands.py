"""The commands and the module that defines each; every module has
``add_parser(subparsers, common)``.

A command's module is imported when that command runs (or for the full ``--help``), through
this table, as the registry imports a codec: ``weightstore inspect`` then does not pay for
the lab's imports (the networks, the report, the data resolver's HTTP client).
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: Command name -> module in this package, in the order ``--help`` lists them.
COMMANDS: dict[str, str] = {
    "convert": "convert",
    "inspect": "inspect_cmd",
    "eval": "eval_cmd",
    "shrink": "shrink",
    "report": "report",
    "formats": "formats",
    "export-onnx": "interop",
    "schema": "interop",
    "test-image": "interop",
}


def modules(command: str | None = None) -> list[ModuleType]:
    """The module of *command*, or every command module when *command* is not one."""
    names = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    return [importlib.import_module(f"{__package__}.{name}") for name in names]
