"""The list of command modules; each has ``add_parser(subparsers, common)``."""

from __future__ import annotations

from . import convert, eval, formats, inspect, interop, report, shrink

ALL = [convert, inspect, eval, shrink, report, formats, interop]
