"""JSON and CSV: the exact layouts (golden bytes), shortest exact decimals, other tools."""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import orjson
import pytest
from conftest import require_tool

import weightstore as ws

TINY = ws.Weights(
    {
        "W1": np.array([[0.1, -2.5], [1e-45, np.inf]], dtype=np.float32),
        "g/b": np.array([1, -2], dtype=np.int8),
        "flag": np.array(True),
        "big": np.array([2**53 + 1], dtype=np.uint64),
        "h": np.array([0.1, np.nan], dtype=np.float16),
    },
    metadata={"source": "golden"},
)

GOLDEN_JSON = (
    b'{"format":"weightstore.json","version":1,"metadata":{"source":"golden"},'
    b'"header_crc32":"ba7b2cfc","tensors":['
    b'{"name":"W1","dtype":"float32","shape":[2,2],"crc32":"3e98c0af",'
    b'"data":[[0.1,-2.5],[1e-45,"Infinity"]]},'
    b'{"name":"g/b","dtype":"int8","shape":[2],"crc32":"02c7fca5","data":[1,-2]},'
    b'{"name":"flag","dtype":"bool","shape":[],"crc32":"a505df1b","data":true},'
    b'{"name":"big","dtype":"uint64","shape":[1],"crc32":"3c0cfb55",'
    b'"data":["9007199254740993"]},'
    b'{"name":"h","dtype":"float16","shape":[2],"crc32":"ba674012","data":[0.1,"NaN"]}]}'
)
#: The same file as weightstore 0.1 wrote it, without checksums: still loads.
GOLDEN_JSON_V1_0 = (
    b'{"format":"weightstore.json","version":1,"metadata":{"source":"golden"},"tensors":['
    b'{"name":"W1","dtype":"float32","shape":[2,2],"data":[[0.1,-2.5],[1e-45,"Infinity"]]},'
    b'{"name":"g/b","dtype":"int8","shape":[2],"data":[1,-2]},'
    b'{"name":"flag","dtype":"bool","shape":[],"data":true},'
    b'{"name":"big","dtype":"uint64","shape":[1],"data":["9007199254740993"]},'
    b'{"name":"h","dtype":"float16","shape":[2],"data":[0.1,"NaN"]}]}'
)

GOLDEN_CSV = (
    b"tensor,dtype,shape,index,value\r\n"
    b"W1,float32,2x2,0,0.1\r\nW1,float32,2x2,1,-2.5\r\n"
    b"W1,float32,2x2,2,1e-45\r\nW1,float32,2x2,3,Infinity\r\n"
    b"g/b,int8,2,0,1\r\ng/b,int8,2,1,-2\r\n"
    b"flag,bool,scalar,0,1\r\n"
    b"big,uint64,1,0,9007199254740993\r\n"
    b"h,float16,2,0,0.1\r\nh,float16,2,1,NaN\r\n"
    b"source,metadata,,,golden\r\n"
)


def test_json_golden_bytes(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    ws.save(TINY, path)
    assert path.read_bytes() == GOLDEN_JSON
    assert ws.Weights.equal(TINY, ws.load(path))


def test_json_checksums_match_an_independent_computation() -> None:
    """The golden checksums, computed from the spec with struct and zlib alone."""
    import struct
    import zlib

    def crc(data: bytes) -> str:
        return f"{zlib.crc32(data):08x}"

    assert crc(struct.pack("<4f", 0.1, -2.5, 1e-45, float("inf"))) == "3e98c0af"
    assert crc(struct.pack("<2b", 1, -2)) == "02c7fca5"
    assert crc(b"\x01") == "a505df1b"
    assert crc(struct.pack("<Q", 2**53 + 1)) == "3c0cfb55"
    assert crc(struct.pack("<2e", 0.1, float("nan"))) == "ba674012"

    def ns(text: str) -> str:
        return f"{len(text.encode())}:{text},"

    header = (ns("5") + ns("W1") + ns("float32") + ns("2x2") + ns("g/b") + ns("int8") + ns("2")
              + ns("flag") + ns("bool") + ns("") + ns("big") + ns("uint64") + ns("1")
              + ns("h") + ns("float16") + ns("2") + ns("source") + ns("golden"))
    assert crc(header.encode()) == "ba7b2cfc"


def test_json_without_checksums_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_bytes(GOLDEN_JSON_V1_0)
    assert ws.Weights.equal(TINY, ws.load(path))


def test_csv_golden_bytes(tmp_path: Path) -> None:
    path = tmp_path / "w.csv"
    ws.save(TINY, path)
    assert path.read_bytes() == GOLDEN_CSV
    assert ws.Weights.equal(TINY, ws.load(path))


def test_json_is_plain_json_for_a_standard_parser(tmp_path: Path) -> None:
    """Python's json module (as strict as JavaScript's JSON.parse) reads our file, and
    rebuilding each tensor by the spec's rule gives the identical values."""
    path = tmp_path / "w.json"
    weights = ws.Weights({"x": np.random.default_rng(0).standard_normal((30, 7)).astype("f4")})
    ws.save(weights, path)
    doc = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    t = doc["tensors"][0]
    rebuilt = np.array(t["data"], dtype=np.float64).astype(t["dtype"]).reshape(t["shape"])
    assert np.array_equal(rebuilt.view(np.uint32), weights["x"].view(np.uint32))


SAFE = 2**53 - 1  # the largest integer every JavaScript number holds exactly


@pytest.mark.parametrize(("dtype", "values"), [
    ("int64", [-(2**53), -(2**63), -SAFE, 0, SAFE]),  # only negative ones beyond
    ("int64", [2**53, -(2**53) - 7, 5]),
    ("int64", [2**63 - 1, SAFE + 1, -SAFE]),  # only positive ones beyond
    ("uint64", [2**64 - 1, SAFE + 1, SAFE, 0]),
])
def test_64_bit_integers_beyond_2_53_are_strings(tmp_path: Path, dtype: str,
                                                 values: list[int]) -> None:
    """What JavaScript's JSON.parse would round is written as a decimal string: negative
    values too; the others, and every value of a smaller type, as bare numbers."""
    path = tmp_path / "w.json"
    weights = ws.Weights({"x": np.array(values, dtype), "s": np.array(values[0], dtype),
                          "small": np.array([-(2**31), 2**31 - 1], np.int32)})
    ws.save(weights, path)
    doc = json.loads(path.read_text())
    expected = [str(v) if abs(v) > SAFE else v for v in values]
    data = {t["name"]: t["data"] for t in doc["tensors"]}
    assert data == {"x": expected, "s": expected[0], "small": [-(2**31), 2**31 - 1]}
    assert ws.load(path).equal(weights)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_floats_are_the_shortest_exact_decimals(dtype: str) -> None:
    from weightstore.codecs._text import value_strings

    rng = np.random.default_rng(7)
    span = 3 if dtype == "float16" else 6  # stay within float16's range
    values = (rng.standard_normal(20_000) * 10.0 ** rng.integers(-span, span, 20_000)).astype(dtype)
    texts = value_strings(values)
    back = np.array([float(t) for t in texts]).astype(dtype)
    assert np.array_equal(back.view(f"u{values.itemsize}"), values.view(f"u{values.itemsize}"))
    # shortest: numpy's Dragon4 (unique=True) gives the shortest digits; ours are no longer
    for t, v in zip(texts[:2000], values[:2000], strict=True):
        digits = len(t.lstrip("-").split("e")[0].replace(".", "").lstrip("0").rstrip("0"))
        ref = np.format_float_scientific(v, unique=True, trim="-")
        ref_digits = len(ref.lstrip("-").split("e")[0].replace(".", "").rstrip("0"))
        assert digits <= ref_digits, (t, ref)


def test_float32_reads_back_exactly_through_float64_parsing() -> None:
    """A reader in any language parses into a double and rounds once to float32 (what
    JavaScript's Math.fround does); that must give back the identical bits."""
    from weightstore.codecs._text import value_strings

    bits = np.random.default_rng(3).integers(0, 2**32, 300_000, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    values = values[np.isfinite(values)]
    texts = value_strings(values)
    back = np.array(texts, dtype=np.float64).astype(np.float32)
    assert np.array_equal(back.view(np.uint32), values.view(np.uint32))


def test_csv_rows_can_come_in_any_order(tmp_path: Path) -> None:
    path = tmp_path / "w.csv"
    ws.save(TINY, path)
    header, *rows = path.read_bytes().split(b"\r\n")[:-1]
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_bytes(b"\r\n".join([header, *reversed(rows)]) + b"\r\n")
    got = ws.load(shuffled)
    for name in TINY:
        np.testing.assert_array_equal(got[name], TINY[name])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace(b"W1,float32,2x2,3,", b"W1,float32,2x2,7,"), "index"),
        (lambda t: t.replace(b"W1,float32,2x2,3,", b"W1,float32,2x2,2,"), "missing"),
        (lambda t: t.replace(b"g/b,int8,2,1,-2", b"g/b,int8,2,1,-200"), "-128 to 127"),
        (lambda t: t.replace(b"g/b,int8,2,1,-2", b"g/b,int8,2,1,1.5"), "integer"),
        (lambda t: t.replace(b"2x2,1,", b"2x3,1,"), "shape"),
        (lambda t: t.replace(b"tensor,dtype", b"name,dtype"), "header"),
        (lambda t: t.replace(b"h,float16,2,1,NaN", b"h,float16,2,1,banana"), "banana"),
        (lambda t: t.replace(b"flag,bool,scalar,0,1", b"flag,bool,scalar,0,2"), "0 or 1"),
        (lambda t: t.replace(b"g/b,int8,2,0,1\r\n", b"g/b,int8,2,0,1,extra\r\n"), "5 fields"),
        (lambda t: t.replace(b"W1,float32,2x2,0", b"W1,complex64,2x2,0"), "dtype"),
    ],
)
def test_csv_damage_is_named(tmp_path: Path, edit, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(edit(GOLDEN_CSV))
    with pytest.raises(ws.FormatError, match=message) as e:
        ws.load(path)
    assert "bad.csv" in str(e.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(format="other"), "format"),
        (lambda d: d.update(version=2), "version"),
        (lambda d: d["tensors"][0].update(shape=[2, 3]), "shape"),
        (lambda d: d["tensors"][0].update(shape=[-1]), "non-negative"),
        (lambda d: d["tensors"][0].update(dtype="complex64"), "dtype"),
        (lambda d: d["tensors"][0].update(data=[[1, 2], [3]]), "nested lists"),
        (lambda d: d["tensors"][1].update(data=[1, 2.5]), "integers"),
        (lambda d: d["tensors"][1].update(data=[1, 300]), "-128 to 127"),
        (lambda d: d["tensors"][2].update(data=1), "true/false"),
        (lambda d: d["tensors"][0].pop("data"), "keys"),
        (lambda d: d["tensors"][4].update(data=[0.1, "nan?"]), "nan"),
    ],
)
def test_json_damage_is_named(tmp_path: Path, edit, message: str) -> None:
    doc = json.loads(GOLDEN_JSON)
    edit(doc)
    path = tmp_path / "bad.json"
    path.write_bytes(orjson.dumps(doc))
    with pytest.raises(ws.FormatError, match=message) as e:
        ws.load(path)
    assert "bad.json" in str(e.value)


def test_deeply_nested_json_is_refused_quickly(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_bytes(b'{"format":"weightstore.json","version":1,"tensors":' + b"[" * 200_000)
    with pytest.raises(ws.FormatError, match="deep.json"):
        ws.load(path)


def test_csv_imports_into_sqlite_with_default_options(tmp_path: Path, sample_weight_path) -> None:
    """sqlite3's own CSV import (the shell's '.import --csv') and Python's csv module."""
    path = tmp_path / "w.csv"
    ws.convert(sample_weight_path, path)
    weights = ws.load(sample_weight_path)
    db = tmp_path / "w.db"
    subprocess.run([require_tool("sqlite3"), str(db), f".import --csv {path} w"], check=True)
    memory = sqlite3.connect(":memory:")  # the same import done with the standard library
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    columns = ", ".join('"' + c + '"' for c in rows[0])  # "index" is an SQL keyword
    memory.execute(f"create table w ({columns})")
    memory.executemany("insert into w values (?,?,?,?,?)", rows[1:])
    for con in (sqlite3.connect(db), memory):
        count, tensors = con.execute("select count(*), count(distinct tensor) from w").fetchone()
        assert (count, tensors) == (45_360, 6)
        # W1[3, 7] by SQL integer arithmetic on the flat row-major index
        (value,) = con.execute(
            "select cast(value as real) from w where tensor='W1' "
            "and cast(\"index\" as integer)=3*50+7"
        ).fetchone()
        assert np.float32(value) == weights["W1"][3, 7]
        con.close()


def test_csv_reads_with_pandas_defaults(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas", reason="pandas is optional; the examples use it")
    path = tmp_path / "w.csv"
    weights = ws.Weights({"a": np.array([[0.1, np.inf], [-0.0, 2.0]], dtype=np.float32),
                          "b, c": np.arange(3, dtype=np.int32)})
    ws.save(weights, path)
    df = pd.read_csv(path)
    assert list(df.columns) == ["tensor", "dtype", "shape", "index", "value"]
    assert df["value"].dtype == np.float64 and df["index"].dtype == np.int64
    a = df[df.tensor == "a"].sort_values("index")["value"].to_numpy().astype("f4").reshape(2, 2)
    assert np.array_equal(a.view(np.uint32), weights["a"].view(np.uint32))
    assert df[df.tensor == "b, c"]["value"].tolist() == [0, 1, 2]


def _doc(*tensors: object, **top: object) -> bytes:
    doc = {"format": "weightstore.json", "version": 1, "tensors": list(tensors), **top}
    return json.dumps(doc).encode()


def _tensor(**fields: object) -> dict:
    return {"name": "x", "dtype": "float32", "shape": [2], "data": [1.5, 2.5], **fields}


@pytest.mark.parametrize(("content", "field"), [
    (b"[1, 2]", "top level"),
    (_doc(tensors={"x": 1}), "tensors"),
    (_doc(_tensor(name=7)), "tensors[0].name"),
    (_doc(_tensor(dtype=["float32"])), "tensor 'x' dtype"),
    (_doc(_tensor(shape=[0], data=[[]])), "tensor 'x' data"),
    (_doc(_tensor(dtype="bool", data=[1, 0])), "tensor 'x' data"),
    (_doc(_tensor(data=["1.5", "two"])), "tensor 'x' data[1]"),
    (_doc(_tensor(data=[{"a": 1}, 2.0])), "tensor 'x' data[0]"),
], ids=["array", "tensors-object", "name-number", "dtype-list", "empty-nesting", "bool-ints",
        "bad-token", "object-value"])
def test_json_reader_names_the_field_it_refuses(tmp_path: Path, content: bytes,
                                                field: str) -> None:
    path = tmp_path / "w.json"
    path.write_bytes(content)
    with pytest.raises(ws.FormatError) as e:
        ws.load(path)
    assert e.value.field == field and str(path) in str(e.value)


def test_json_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    path.write_bytes(b"\xef\xbb\xbf" + _doc(_tensor()))
    assert ws.load(path).equal({"x": np.array([1.5, 2.5], np.float32)})
