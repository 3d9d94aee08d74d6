"""The JSON Schema of the JSON layout: valid for all we write, and precise about the rest."""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import weightstore
from weightstore import FormatError, Weights
from weightstore.codecs.json_codec import JsonCodec
from weightstore.schema import (
    json_schema,
    validate_json_bytes,
    validate_json_document,
    validate_json_file,
)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("jsonschema") is None,
                                reason="jsonschema is not installed (pip install "
                                "'weightstore[schema]')")
HAVE_ML_DTYPES = importlib.util.find_spec("ml_dtypes") is not None


def test_schema_is_valid_draft_2020_12_and_shipped_as_a_file() -> None:
    import jsonschema

    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["format"] == {"const": "weightstore.json"}
    assert schema["properties"]["version"] == {"const": 1}
    schema["title"] = "changed"
    assert json_schema()["title"] != "changed"  # a new dict each call
    shipped = Path(weightstore.__file__).parent / "schemas" / "weightstore.json.schema.json"
    assert json.loads(shipped.read_text()) == json_schema()


def test_dtype_enum_is_the_codecs_dtype_list() -> None:
    from weightstore.model import DTYPES

    enum = json_schema()["$defs"]["tensor"]["properties"]["dtype"]["enum"]
    assert sorted(enum) == sorted([*DTYPES, "bfloat16"])


def _corpus() -> dict[str, Weights]:
    """Weights that exercise every branch of the JSON writer."""
    rng = np.random.default_rng(3)
    every: dict[str, np.ndarray] = {
        "b": np.array([[True, False], [False, True]]),
        "i8": np.array([-128, 0, 127], np.int8),
        "u8": np.array([0, 255], np.uint8),
        "i16": np.array([-(2**15), 2**15 - 1], np.int16),
        "u16": np.array([0, 2**16 - 1], np.uint16),
        "i32": np.array([-(2**31), 2**31 - 1], np.int32),
        "u32": np.array([0, 2**32 - 1], np.uint32),
        "i64": np.array([-(2**63), -(2**53) + 1, 2**53, 2**63 - 1], np.int64),
        "u64": np.array([0, 2**53 - 1, 2**64 - 1], np.uint64),
        "f16": np.array([0.1, -0.0, 65504, np.inf, -np.inf, np.nan], np.float16),
        "f32": rng.standard_normal((3, 4)).astype(np.float32),
        "f64": np.array([5e-324, 1.7976931348623157e308, -np.inf], np.float64),
        "nan_bits32": np.array([0x7FC00001, 0xFFC00000, 0x7F800001], np.uint32).view(np.float32),
        "nan_bits64": np.array([0x7FF8000000000001], np.uint64).view(np.float64),
        "nan_bits16": np.array([0x7E01], np.uint16).view(np.float16),
    }
    if HAVE_ML_DTYPES:
        import ml_dtypes

        every["bf16"] = np.array([1.5, np.nan, np.inf], ml_dtypes.bfloat16)
    scalars = {f"s_{name}": a.reshape(-1)[0].copy() for name, a in every.items()}
    empties = {"e0": np.zeros((0,), np.float32), "e30": np.zeros((3, 0), np.int8),
               "e03": np.zeros((0, 3), np.float64), "e230": np.zeros((2, 3, 0), bool)}
    return {
        "every dtype": Weights(every, metadata={"source": "test", "ü": "ünïcode \"q\""}),
        "scalars": Weights(scalars),
        "empties": Weights(empties),
        "groups": Weights({"enc": {"layer/0": {"W": np.ones((2, 2), np.float32)}},
                           "dec/b": np.zeros(2)}),
        "nothing": Weights({}),
        "high rank": Weights({"t": np.arange(2 * 1 * 3 * 1 * 2, dtype=np.int16)
                              .reshape(2, 1, 3, 1, 2)}),
    }


CORPUS = _corpus()


@pytest.mark.parametrize("indent", [False, True])
@pytest.mark.parametrize("name", list(CORPUS))
def test_everything_the_codec_writes_is_valid(tmp_path: Path, name: str, indent: bool) -> None:
    path = tmp_path / "w.json"
    weightstore.save(CORPUS[name], path, indent=indent)
    validate_json_file(path)


def test_book_weights_are_valid(tmp_path: Path, sample_weight_path: Path) -> None:
    weightstore.save(weightstore.load(sample_weight_path), tmp_path / "book.json")
    validate_json_file(tmp_path / "book.json")


DTYPES = st.sampled_from(["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32",
                          "int64", "uint64", "float16", "float32", "float64"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_arrays_are_valid(data: st.DataObject) -> None:
    dtype = np.dtype(data.draw(DTYPES))
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4))
    array = data.draw(hnp.arrays(dtype, shape))
    buffer = io.BytesIO()
    JsonCodec().write(Weights({"x": array}), buffer, path="<memory>")
    validate_json_bytes(buffer.getvalue())


def _doc() -> dict[str, Any]:
    buffer = io.BytesIO()
    JsonCodec().write(Weights({"W": np.arange(6, dtype=np.float32).reshape(2, 3),
                               "n": np.array([1, 2], np.int32),
                               "big": np.array([2**60], np.int64),
                               "s": np.array(1.5, np.float16),
                               "flag": np.array([True])}, metadata={"k": "v"}),
                      buffer, path="<memory>")
    return json.loads(buffer.getvalue())


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change that sets the item at a dotted path (``tensors.0.dtype``)."""
    def change(doc: dict[str, Any]) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        node: Any = doc
        for p in parents:
            node = node[p]
        node[last] = value
    return change


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        node: Any = doc
        for p in parents:
            node = node[p]
        del node[last]
    return change


# id: (change, field the error names, whether the JSON codec's reader refuses it too)
INVALID = {
    "wrong format": (_set("format", "other"), "format", True),
    "version 2": (_set("version", 2), "version", True),
    "no tensors key": (_drop("tensors"), "top level", True),
    "extra top-level key": (_set("extra", 1), "top level", True),
    "metadata value not a string": (_set("metadata.k", 1), "metadata.k", True),
    "extra tensor key": (_set("tensors.0.extra", 1), "tensors[0]", True),
    "tensor without data": (_drop("tensors.0.data"), "tensors[0]", True),
    "unknown dtype": (_set("tensors.0.dtype", "float8"), "tensors[0].dtype", True),
    "negative dimension": (_set("tensors.0.shape", [-2, 3]), "tensors[0].shape[0]", True),
    "fractional dimension": (_set("tensors.0.shape", [2.5, 3]), "tensors[0].shape[0]", True),
    "shape not a list": (_set("tensors.0.shape", "2x3"), "tensors[0].shape", True),
    "empty name": (_set("tensors.0.name", ""), "tensors[0].name", True),
    "name with leading slash": (_set("tensors.0.name", "/W"), "tensors[0].name", True),
    "name with doubled slash": (_set("tensors.0.name", "a//W"), "tensors[0].name", True),
    # Stricter than the reader (which takes any string Python's float() takes): only
    # the documented tokens.
    "lowercase nan token": (_set("tensors.0.data.0.0", "nan"), "tensors[0].data[0][0]", False),
    "NaN bits without digits": (_set("tensors.0.data.0.0", "NaN(0x)"),
                                "tensors[0].data[0][0]", True),
    "float16 NaN with 32-bit payload": (_set("tensors.3.data", "NaN(0x7fc00001)"),
                                        "tensors[3].data", True),
    # Stricter than the reader, which lets numpy turn true into 1.0.
    "boolean in float data": (_set("tensors.0.data.0.0", True), "tensors[0].data[0][0]", False),
    "int32 out of range": (_set("tensors.1.data.0", 2**31), "tensors[1].data[0]", True),
    "uint64 negative string": (_set("tensors.2.dtype", "uint64") , None, None),
    "number in bool data": (_set("tensors.4.data.0", 1), "tensors[4].data[0]", True),
    "0-d tensor with list data": (_set("tensors.3.data", [1.5]), "tensors[3].data", True),
    "1-d tensor with bare value": (_set("tensors.1.data", 1), "tensors[1].data", True),
    "nesting deeper than shape": (_set("tensors.1.data", [[1], [2]]), "tensors[1].data[0]", True),
    "rows of wrong length": (_set("tensors.0.data", [[0, 1], [2, 3], [4, 5]]),
                             "tensors[0].data", True),
    "integer written as 1.0": (_set("tensors.1.data", [1.0, 2]), "tensors[1].data", True),
    # Stricter than the reader: a bare number JavaScript would round (the codec writes a
    # decimal string beyond +-(2**53 - 1)).
    "int64 beyond -(2**53 - 1) as a number": (_set("tensors.2.data.0", -(2**53)),
                                              "tensors[2].data[0]", False),
    "int64 beyond 2**53 - 1 as a number": (_set("tensors.2.data.0", 2**60),
                                           "tensors[2].data[0]", False),
    # Stricter than the reader: the layout puts decimal strings only in 64-bit data.
    "int32 as string": (_set("tensors.1.data.0", "1"), "tensors[1].data[0]", False),
}
INVALID["uint64 negative string"] = (
    lambda d: (_set("tensors.2.dtype", "uint64")(d), _set("tensors.2.data", ["-5"])(d)),
    "tensors[2].data[0]", True)
INVALID["uint64 beyond 2**53 - 1 as a number"] = (
    lambda d: (_set("tensors.2.dtype", "uint64")(d), _set("tensors.2.data", [2**64 - 1])(d)),
    "tensors[2].data[0]", False)


@pytest.mark.parametrize("change, field, reader_refuses", INVALID.values(), ids=INVALID.keys())
def test_invalid_documents_are_refused(tmp_path: Path, change: Callable[[dict[str, Any]], None],
                                       field: str, reader_refuses: bool) -> None:
    doc = _doc()
    validate_json_document(copy.deepcopy(doc))  # the unchanged document is valid
    change(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(FormatError) as info:
        validate_json_file(path)
    assert info.value.field == field
    assert info.value.path == str(path)
    if reader_refuses:
        with pytest.raises(FormatError):
            weightstore.load(path)
    else:  # the parser takes it; the value changed, so its checksum no longer matches
        got = weightstore.load(path, verify=False)
        assert list(got) == [t["name"] for t in doc["tensors"]]


def test_not_json_at_all(tmp_path: Path) -> None:
    for text in ('{"format": NaN}', "[1, 2", ""):
        path = tmp_path / "x.json"
        path.write_text(text)
        with pytest.raises(FormatError):
            validate_json_file(path)
    path.write_text("[]")
    with pytest.raises(FormatError) as info:
        validate_json_file(path)
    assert info.value.field == "top level"


def test_the_suite_hook_fails_a_test_whose_json_breaks_the_schema(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The subprocess must import this checkout's weightstore, not an installed one.
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(test_it="""
        import numpy as np
        import weightstore
        import weightstore.codecs.json_codec as codec

        def test_writes_bad_json(tmp_path, monkeypatch):
            monkeypatch.setattr(codec, "FORMAT_ID", "not-weightstore")
            weightstore.save({"x": np.zeros(2)}, tmp_path / "w.json")

        def test_writes_good_json(tmp_path):
            weightstore.save({"x": np.zeros(2)}, tmp_path / "w.json")
            (tmp_path / "w.json").write_text("damaged afterwards on purpose")
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    # The bad test's call passes and its teardown errors; the damaged-afterwards file passes.
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_writes_bad_json*",
                                 "*does not match the schema*"])


def test_validating_a_missing_or_unreadable_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(weightstore.FileAccessError, match="no such file") as e:
        validate_json_file(tmp_path / "missing.json")
    assert "missing.json" in str(e.value)
    with pytest.raises(weightstore.FileAccessError, match="cannot open"):
        validate_json_file(tmp_path)  # a folder
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(_doc()).encode())
    validate_json_file(path)  # a byte order mark is allowed, as the reader allows it


def test_without_jsonschema_validation_names_the_extra(monkeypatch) -> None:
    from weightstore import schema

    monkeypatch.setitem(sys.modules, "jsonschema", None)  # import jsonschema -> ImportError
    schema._validator.cache_clear()
    try:
        with pytest.raises(weightstore.MissingDependencyError, match=r"weightstore\[schema\]"):
            validate_json_document(_doc())
    finally:
        monkeypatch.undo()
        schema._validator.cache_clear()
