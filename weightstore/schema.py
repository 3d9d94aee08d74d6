"""The JSON Schema (draft 2020-12) of the JSON layout, and a validator built on it.

The schema ships inside the package as ``weightstore/schemas/weightstore.json.schema.json``
so that other languages' validators can use it as is (``json_schema()`` returns it as a dict;
the file is ``importlib.resources.files("weightstore") / "schemas" / SCHEMA_FILE``).

It states the layout of :mod:`weightstore.codecs.json_codec`: the required keys, ``format`` and
``version`` constants, the dtype names, shapes of non-negative integers, tensor names,
and for each dtype the values ``data`` may hold (integers within the dtype's range, with
decimal strings for 64-bit ones; numbers or the ``NaN``/``Infinity``/``-Infinity``/
``NaN(0x<bits>)`` strings for floats; ``true``/``false`` for bool). Two things JSON Schema
cannot say are checked by :func:`validate_json_file` in code: that ``data`` nests exactly
as ``shape`` says, and that integer dtypes hold no number written with a fraction or an
exponent (JSON Schema counts ``1.0`` as an integer).
"""

from __future__ import annotations

import functools
import json
import os
from importlib import resources
from typing import Any

from .errors import FileAccessError, FormatError, MissingDependencyError

__all__ = ["json_schema", "validate_json_file", "validate_json_bytes", "validate_json_document",
           "SCHEMA_FILE"]

#: The schema's file name inside the package's ``schemas`` folder.
SCHEMA_FILE = "weightstore.json.schema.json"
_INT_DTYPES = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}


@functools.cache
def _schema_text() -> str:
    return (resources.files("weightstore") / "schemas" / SCHEMA_FILE).read_text("utf-8")


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the ``weightstore.json`` layout, as a new dict on every call."""
    return json.loads(_schema_text())


@functools.cache
def _validator() -> Any:
    try:
        import jsonschema
    except ImportError as e:
        raise MissingDependencyError("jsonschema", "schema", "JSON Schema validation") from e
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _where(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "top level"


def validate_json_document(doc: Any, path: str | os.PathLike[str] = "<document>") -> None:
    """Check a parsed document against the schema and its nesting; raise :class:`FormatError`."""
    validator = _validator()
    errors = list(validator.iter_errors(doc))
    if errors:
        import jsonschema.exceptions

        error = jsonschema.exceptions.best_match(errors)
        raise FormatError(f"does not match the weightstore.json schema: {error.message}",
                          path=path, field=_where(error.absolute_path))
    for i, tensor in enumerate(doc["tensors"]):
        shape = tuple(tensor["shape"])
        if tensor["data"] == [] and 0 in shape:
            continue  # an empty tensor may be written as [] (its nesting may be huge)
        _check_nesting(tensor["data"], shape, f"tensors[{i}].data", path)


def _check_nesting(data: Any, shape: tuple[int, ...], where: str,
                   path: str | os.PathLike[str]) -> None:
    if not shape:
        if isinstance(data, list):
            raise FormatError(path=path, field=where, expected="a value", found="a list")
        return
    if not isinstance(data, list) or len(data) != shape[0]:
        found = f"a list of {len(data)}" if isinstance(data, list) else "a value"
        raise FormatError(path=path, field=where, expected=f"a list of {shape[0]}", found=found)
    if len(shape) > 1:
        for j, item in enumerate(data):
            _check_nesting(item, shape[1:], f"{where}[{j}]", path)
    else:
        for j, item in enumerate(data):
            if isinstance(item, list):
                raise FormatError(path=path, field=f"{where}[{j}]", expected="a value",
                                  found="a list")


def validate_json_file(path: str | os.PathLike[str]) -> None:
    """Validate the JSON file at *path* against the schema, plus nesting and integer checks.

    Returns nothing when the file is valid; raises :class:`FormatError` naming the field
    otherwise, :class:`MissingDependencyError` without ``jsonschema`` (the ``schema`` extra).
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError as e:
        raise FileAccessError("no such file", path=path) from e
    except OSError as e:
        raise FileAccessError(f"cannot open: {e.strerror}", path=path) from e
    validate_json_bytes(raw, path)


def validate_json_bytes(raw: bytes, path: str | os.PathLike[str] = "<bytes>") -> None:
    """:func:`validate_json_file` for a document already in memory (*path* names it)."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        doc = json.loads(raw, parse_float=_FloatText, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as e:
        raise FormatError(f"not valid JSON ({e})", path=path) from e
    validate_json_document(doc, path)
    for i, tensor in enumerate(doc["tensors"]):
        if tensor["dtype"] in _INT_DTYPES:
            bad = _first_written_as_float(tensor["data"])
            if bad is not None:
                raise FormatError(path=path, field=f"tensors[{i}].data",
                                  expected=f"integers written without fraction or exponent "
                                  f"for {tensor['dtype']}", found=bad)


class _FloatText(float):
    """A JSON number written with a fraction or an exponent (``1.0``, ``1e3``)."""

    def __new__(cls, text: str) -> _FloatText:
        value = super().__new__(cls, text)
        value.text = text  # type: ignore[attr-defined]
        return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (write it as the string \"{name}\")")


def _first_written_as_float(data: Any) -> str | None:
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, _FloatText):
            return item.text  # type: ignore[attr-defined]
    return None
