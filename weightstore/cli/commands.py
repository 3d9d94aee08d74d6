"""The list of command modules; each has ``add_parser(subparsers, common)``."""

from __future__ import annotations

from . import convert, eval_cmd, formats, inspect_cmd, interop, report, shrink

ALL = [convert, inspect_cmd, eval_cmd, shrink, report, formats, interop]
