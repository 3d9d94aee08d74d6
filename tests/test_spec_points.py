"""Issue 15 item 7: each place where docs/ and the files disagreed (or docs/ was silent),
settled and pinned, so that the two cannot drift again. One test per point."""

from __future__ import annotations

import io
import json
import re
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import weightstore as ws
from weightstore import integrity
from weightstore.codecs._text import json_text

DOCS = Path(__file__).resolve().parent.parent / "docs"
FORMATS = (DOCS / "formats.md").read_text()


def _block_after(text: str, marker: str, lang: str = "") -> str:
    start = text.index(marker)
    m = re.compile(r"```" + lang + r"\n(.*?)```", re.S).search(text, start)
    assert m is not None
    return m.group(1)


def test_csv_example_rows_are_the_books_first_rows(sample_weight_path: Path,
                                                   tmp_path: Path) -> None:
    out = tmp_path / "w.csv"
    ws.convert(sample_weight_path, out)
    lines = out.read_text().splitlines()
    block = _block_after(FORMATS, "The first lines of the book's `sample_weight.pkl`")
    shown = block.strip().splitlines()
    first = shown[: shown.index("...")]
    assert lines[: len(first)] == first  # header, then the first tensor's first rows
    for row in shown[shown.index("...") + 1:]:
        if row != "...":
            assert row in lines


def _netstring(text: str) -> bytes:
    raw = text.encode()
    return str(len(raw)).encode() + b":" + raw + b","


def test_header_checksum_orders_metadata_keys_by_code_point() -> None:
    # U+FF21 sorts before U+1F600 by code point (and UTF-8 bytes), after it in UTF-16
    metadata = {"\U0001F600": "b", "\uff21": "a", "z": "c"}
    tensors = [("W", "float32", (2, 3))]
    crc = zlib.crc32(_netstring("1"))
    crc = zlib.crc32(_netstring("W") + _netstring("float32") + _netstring("2x3"), crc)
    for key in sorted(metadata, key=lambda k: k.encode()):
        crc = zlib.crc32(_netstring(key) + _netstring(metadata[key]), crc)
    assert integrity.header_crc32(tensors, metadata) == crc & 0xFFFFFFFF
    assert "Unicode code point order" in FORMATS


def test_the_json_example_in_the_docs_loads_with_its_checksums(tmp_path: Path) -> None:
    p = tmp_path / "example.json"
    p.write_text(_block_after(FORMATS, "## JSON", "json"))
    w = ws.load(p)  # verifies header_crc32 and every crc32 shown
    assert list(w) == ["W1", "g/b", "flag", "big"]


@pytest.mark.parametrize(("dtype", "bits"), [("float16", 0x7E00), ("float32", 0x7FC00000),
                                             ("float64", 0x7FF8000000000000)])
def test_canonical_nan_bits_are_the_documented_ones(dtype: str, bits: int) -> None:
    dt = np.dtype(dtype)
    uint = np.dtype(f"u{dt.itemsize}")
    canonical = np.array([bits], uint).view(dt)
    assert json_text(canonical) == b'["NaN"]'
    other = np.array([bits | 1], uint).view(dt)
    assert json_text(other) == f'["NaN(0x{bits | 1:0{2 * dt.itemsize}x})"]'.encode()
    assert f"`0x{bits:x}`" in FORMATS.replace("`0x7e00`", "`0x7e00`")


def test_bfloat16_canonical_nan_bits() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    nan = np.array([0x7FC0], np.uint16).view(ml_dtypes.bfloat16)
    assert json_text(nan) == b'["NaN"]' and "`0x7fc0` (bfloat16)" in FORMATS


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_a_finite_value_beyond_the_dtypes_range_is_an_error(tmp_path: Path, fmt: str) -> None:
    p = tmp_path / f"x.{fmt}"
    ws.save({"x": np.float32([1.0, 2.0])}, p)
    text = p.read_text().replace("2.0", "1e39")
    p.write_text(text)
    with pytest.raises(ws.FormatError, match="range"):
        ws.load(p)
    # the largest float32 written with more digits still rounds once to it
    p.write_text(text.replace("1e39", "3.40282346638528859811704183484516925440e38"))
    assert ws.load(p, verify=False)["x"][1] == np.finfo(np.float32).max


def test_csv_metadata_rows_come_last_with_empty_shape_and_index(tmp_path: Path) -> None:
    p = tmp_path / "m.csv"
    ws.save(ws.Weights({"a": np.float32([1, 2]), "e": np.zeros(0, np.int8)},
                       metadata={"k1": "v1", "k2": "v2"}), p)
    lines = p.read_bytes().decode().split("\r\n")
    assert lines[-3:] == ["k1,metadata,,,v1", "k2,metadata,,,v2", ""]
    assert "e,int8,0,," in lines
    # a reader accepts them anywhere
    moved = "\r\n".join([lines[0], *lines[-3:-1], *lines[1:-3]]) + "\r\n"
    p.write_text(moved, newline="")
    assert ws.load(p).metadata == {"k1": "v1", "k2": "v2"}


def test_npz_comment_without_header_crc32_loads_unverified(tmp_path: Path) -> None:
    p = tmp_path / "a.npz"
    np.savez(p, W=np.ones(3, np.float32))
    with zipfile.ZipFile(p, "a") as z:
        z.comment = b'weightstore:{"metadata": {"k": "v"}}'
    w = ws.load(p)
    assert w.metadata == {"k": "v"} and "may be absent" in FORMATS


def test_shard_names_total_size_and_a_tensor_larger_than_the_limit(tmp_path: Path) -> None:
    w = {"a": np.zeros(100, np.float32), "big": np.zeros(1000, np.float32),
         "c": np.zeros(10, np.float32), "d": np.zeros(10, np.float32)}
    (tmp_path / "out").mkdir()
    index = ws.save(w, tmp_path / "out" / "model.npz.zst", max_shard_size="1KB")
    assert Path(index).name == "model.npz.zst.index.json"
    doc = json.loads(Path(index).read_text())
    assert doc["metadata"]["total_size"] == sum(a.nbytes for a in w.values())  # bytes in memory
    assert doc["weight_map"] == {"a": "model-00001-of-00003.npz.zst",
                                 "big": "model-00002-of-00003.npz.zst",  # 4,000 > 1,000
                                 "c": "model-00003-of-00003.npz.zst",
                                 "d": "model-00003-of-00003.npz.zst"}
    assert "a tensor larger than the limit gets a shard of its own" in FORMATS
    help_text = subprocess.run([sys.executable, "-m", "weightstore.cli.main", "convert", "-h"],
                               capture_output=True, text=True).stdout
    assert "gets a shard of its own" in " ".join(help_text.split())


def test_the_wsc_example_file_and_header_are_what_the_writer_gives() -> None:
    w = ws.Weights({"a": np.float32([1.0, -2.0]), "g/n": np.int16([1, 2, -3])},
                   metadata={"k": "v"})
    buf = io.BytesIO()
    ws.get_codec("wsc")().write(w, buf, path="example.wsc")
    raw = buf.getvalue()
    doc_text = (DOCS / "wsc-format.md").read_text()
    assert f"{len(raw)} bytes (this exact file is pinned by `tests/test_spec_points.py`)" \
        in doc_text
    (length,) = struct.unpack_from("<Q", raw, len(raw) - 16)
    header = json.loads(raw[len(raw) - 16 - length:len(raw) - 16])
    assert header == json.loads(_block_after(doc_text, "### Header", "json"))
    dump = _block_after(doc_text, "### Example")
    for line in dump.strip().splitlines():
        if line == "...":
            continue
        offset = int(line[:8], 16)
        hexes = bytes.fromhex(line[10:49].replace(" ", ""))
        assert raw[offset:offset + len(hexes)] == hexes, line


def test_interop_says_the_schema_cannot_relate_data_to_shape(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from weightstore.schema import json_schema, validate_json_bytes

    assert "not that `data`'s nesting matches `shape`" in (DOCS / "interop.md").read_text()
    doc = {"format": "weightstore.json", "version": 1, "metadata": {},
           "tensors": [{"name": "W", "dtype": "float32", "shape": [2, 2], "data": [1.0, 2.0]}]}
    raw = json.dumps(doc).encode()
    jsonschema.validate(doc, json_schema())  # the schema alone accepts it ...
    with pytest.raises(ws.FormatError):  # ... weightstore's validator checks the nesting
        validate_json_bytes(raw)
    p = tmp_path / "w.json"
    p.write_bytes(raw)
    with pytest.raises(ws.FormatError, match="shape"):  # ... and so does the reader
        ws.load(p)
