"""The safetensors codec: round trips, files from other writers, bad headers, sniffing."""

from __future__ import annotations

import importlib.util
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import weightstore
from weightstore import Limits, Weights
from weightstore.codecs.safetensors_codec import ORDER_KEY, SafetensorsCodec
from weightstore.errors import (
    FormatError,
    LimitError,
    MissingDependencyError,
    UnsupportedError,
)

HAVE_SAFETENSORS = importlib.util.find_spec("safetensors") is not None
HAVE_ML_DTYPES = importlib.util.find_spec("ml_dtypes") is not None
needs_safetensors = pytest.mark.skipif(
    not HAVE_SAFETENSORS, reason="the safetensors package is not installed "
    "(pip install 'weightstore[safetensors]')"
)


def _every_dtype() -> Weights:
    rng = np.random.default_rng(7)
    tensors: dict[str, np.ndarray] = {
        # Names deliberately out of alphabetical and alignment order.
        "zeta/f64": rng.standard_normal((3, 4)),
        "alpha/u8": rng.integers(0, 256, (5,), dtype=np.uint8),
        "mid/f32": rng.standard_normal((2, 3, 4)).astype(np.float32),
        "b": np.array([True, False, True]),
        "i8": np.array([-128, 0, 127], dtype=np.int8),
        "i16": np.array([-(2**15), 2**15 - 1], dtype=np.int16),
        "u16": np.array([0, 2**16 - 1], dtype=np.uint16),
        "i32": np.array([-(2**31), 2**31 - 1], dtype=np.int32),
        "u32": np.array([0, 2**32 - 1], dtype=np.uint32),
        "i64": np.array([-(2**63), 2**63 - 1], dtype=np.int64),
        "u64": np.array([0, 2**64 - 1], dtype=np.uint64),
        "f16": np.array([0.1, -0.0, np.inf, np.nan], dtype=np.float16),
        "scalar": np.array(3.25, dtype=np.float32),
        "empty": np.zeros((3, 0), dtype=np.float64),
        "nan_payload": np.array([0x7FC00001, 0xFF800001], dtype=np.uint32).view(np.float32),
        "big_endian": np.arange(6, dtype=">i4").reshape(2, 3),
        "fortran": np.asfortranarray(rng.standard_normal((4, 5)).astype(np.float32)),
        "strided": np.arange(20, dtype=np.int16)[::3],
    }
    if HAVE_ML_DTYPES:
        import ml_dtypes

        tensors["bf16"] = np.array([1.5, -2.0, 3e38], dtype=ml_dtypes.bfloat16)
        tensors["bf16_scalar"] = np.array(0.75, dtype=ml_dtypes.bfloat16)
    return Weights(tensors, metadata={"source": "test", "note": "ünïcode, \"quotes\""})


def _raw(header: dict | bytes, data: bytes = b"", length: int | None = None) -> bytes:
    """A safetensors file built by hand, for files other writers (or attackers) make."""
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(body) if length is None else length) + body + data


@needs_safetensors
def test_round_trip_every_dtype_keeps_order_metadata_and_bits(tmp_path: Path) -> None:
    w = _every_dtype()
    path = tmp_path / "w.safetensors"
    weightstore.save(w, path)
    back = weightstore.load(path)
    assert list(back) == list(w)
    assert back.equal(w)
    assert back.metadata == w.metadata  # the order key is ours and is not handed back
    assert back["scalar"].shape == ()
    assert all(a.flags.writeable for a in back.values())


@needs_safetensors
def test_caller_arrays_are_not_modified(tmp_path: Path) -> None:
    big = np.arange(6, dtype=">i4").reshape(2, 3)
    before = big.copy()
    weightstore.save({"x": big}, tmp_path / "w.safetensors")
    assert big.dtype == np.dtype(">i4") and np.array_equal(big, before)


@needs_safetensors
def test_library_reads_our_files_and_order_is_in_metadata(tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.numpy import load_file

    w = Weights({"W2": np.ones((2, 2), np.float32), "a": np.arange(3, dtype=np.int64)},
                metadata={"k": "v"})
    path = tmp_path / "w.safetensors"
    weightstore.save(w, path)
    loaded = load_file(path)
    assert set(loaded) == {"W2", "a"}
    for name in w:
        np.testing.assert_array_equal(loaded[name], w[name])
    with safe_open(path, framework="np") as f:
        meta = f.metadata()
    assert meta["k"] == "v"
    assert json.loads(meta[ORDER_KEY]) == ["W2", "a"]


@needs_safetensors
def test_book_weights_round_trip(tmp_path: Path, sample_weight_path: Path) -> None:
    w = weightstore.load(sample_weight_path)
    path = tmp_path / "book.safetensors"
    weightstore.save(w, path)
    assert weightstore.load(path).equal(w)


@needs_safetensors
def test_files_from_other_writers_load_in_data_order(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    tensors = {"zz": np.arange(4, dtype=np.float64), "aa": np.arange(3, dtype=np.uint8),
               "mm": np.ones((2, 2), dtype=np.float32)}
    for metadata in (None, {"format": "np"}):
        path = tmp_path / f"other-{metadata is None}.safetensors"
        save_file(tensors, path, metadata=metadata)
        back = weightstore.load(path)
        assert back.metadata == (metadata or {})
        assert set(back) == set(tensors)
        for name, array in tensors.items():
            np.testing.assert_array_equal(back[name], array)
        # Data-offset order, whatever order the header object lists them in.
        n = struct.unpack("<Q", path.read_bytes()[:8])[0]
        header = json.loads(path.read_bytes()[8:8 + n])
        header.pop("__metadata__", None)
        assert list(back) == sorted(header, key=lambda k: header[k]["data_offsets"])


@needs_safetensors
def test_header_listed_out_of_offset_order_loads_in_offset_order(tmp_path: Path) -> None:
    data = np.arange(2, dtype="<f4").tobytes() + np.arange(3, dtype="<i2").tobytes()
    header = {"second": {"dtype": "I16", "shape": [3], "data_offsets": [8, 14]},
              "first": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    path = tmp_path / "x.safetensors"
    path.write_bytes(_raw(header, data))
    back = weightstore.load(path)
    assert list(back) == ["first", "second"]
    np.testing.assert_array_equal(back["second"], [0, 1, 2])


@needs_safetensors
@pytest.mark.skipif(not HAVE_ML_DTYPES, reason="ml_dtypes is not installed")
def test_bfloat16_from_the_library_loads(tmp_path: Path) -> None:
    import ml_dtypes
    from safetensors.numpy import save_file

    x = np.array([[1.0, -0.5], [2.0, 65280.0]], dtype=ml_dtypes.bfloat16)
    save_file({"x": x}, tmp_path / "bf.safetensors")
    back = weightstore.load(tmp_path / "bf.safetensors")
    assert back["x"].dtype == x.dtype
    assert back["x"].view(np.uint16).tolist() == x.view(np.uint16).tolist()


@needs_safetensors
def test_empty_weights_round_trip(tmp_path: Path) -> None:
    weightstore.save(Weights({}, metadata={"only": "metadata"}), tmp_path / "e.safetensors")
    back = weightstore.load(tmp_path / "e.safetensors")
    assert len(back) == 0 and back.metadata == {"only": "metadata"}


@needs_safetensors
def test_through_the_zstd_layer(tmp_path: Path) -> None:
    w = _every_dtype()
    weightstore.save(w, tmp_path / "w.safetensors.zst")
    assert weightstore.load(tmp_path / "w.safetensors.zst").equal(w)


@needs_safetensors
def test_write_refuses_reserved_names(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedError, match="__metadata__"):
        weightstore.save({"__metadata__": np.zeros(1)}, tmp_path / "a.safetensors")
    with pytest.raises(UnsupportedError, match="weightstore.order"):
        weightstore.save(Weights({"x": np.zeros(1)}, metadata={ORDER_KEY: "[]"}),
                         tmp_path / "b.safetensors")
    assert not list(tmp_path.iterdir())  # atomic writes left nothing behind


F32x2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
GOOD_DATA = b"\0" * 8
ORDER_FIELD = "__metadata__['weightstore.order']"

BAD_FILES = {
    # id: (file bytes, field named in the error, words the error must contain)
    "shorter than the length field": (b"\x05\0\0", "header length", "8 bytes"),
    "length beyond the file": (_raw({"x": F32x2}, GOOD_DATA, length=10_000), "header length",
                               "at most"),
    "not JSON": (_raw(b"{not json}  "), "header", "valid JSON"),
    "not UTF-8": (_raw(b'{"\xff": 1}'), "header", "UTF-8"),
    "no opening brace": (_raw(b' {"x": 1}'), "header", "starting with '{'"),
    "JSON array, not object": (_raw(b"[1, 2]"), "header", "starting with '{'"),
    "duplicate tensor": (_raw(b'{"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},'
                              b' "x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}',
                              GOOD_DATA), "header", "twice"),
    "metadata not strings": (_raw({"__metadata__": {"a": 1}}), "__metadata__",
                             "object of strings"),
    "entry not an object": (_raw({"x": [1, 2]}), "tensor 'x'", "dtype, shape and data_offsets"),
    "entry missing a key": (_raw({"x": {"dtype": "F32", "shape": [2]}}, GOOD_DATA),
                            "tensor 'x'", "data_offsets"),
    "unknown dtype": (_raw({"x": {**F32x2, "dtype": "F128"}}, GOOD_DATA), "tensor 'x' dtype",
                      "F128"),
    "dtype not a string": (_raw({"x": {**F32x2, "dtype": ["F32"]}}, GOOD_DATA),
                           "tensor 'x' dtype", "safetensors dtype"),
    "negative dimension": (_raw({"x": {**F32x2, "shape": [-2]}}, GOOD_DATA),
                           "tensor 'x' shape", "non-negative"),
    "boolean dimension": (_raw({"x": {**F32x2, "shape": [True, 2]}}, GOOD_DATA),
                          "tensor 'x' shape", "non-negative"),
    "offsets reversed": (_raw({"x": {**F32x2, "data_offsets": [8, 0]}}, GOOD_DATA),
                         "tensor 'x' data_offsets", "begin <= end"),
    "offsets of three": (_raw({"x": {**F32x2, "data_offsets": [0, 4, 8]}}, GOOD_DATA),
                         "tensor 'x' data_offsets", "[begin, end]"),
    "offset beyond the buffer": (_raw({"x": {**F32x2, "shape": [4],
                                             "data_offsets": [0, 16]}}, GOOD_DATA),
                                 "tensor 'x' data_offsets", "within the data buffer"),
    "size does not match shape": (_raw({"x": {**F32x2, "shape": [3]}}, GOOD_DATA),
                                  "tensor 'x' data_offsets", "12 bytes for F32 [3]"),
    "overlapping tensors": (_raw({"x": F32x2, "y": {**F32x2, "data_offsets": [4, 12]}},
                                 b"\0" * 12), "tensor 'y' data_offsets", "no overlap"),
    "gap between tensors": (_raw({"x": F32x2, "y": {**F32x2, "data_offsets": [12, 20]}},
                                 b"\0" * 20), "tensor 'y' data_offsets", "no gaps"),
    "bytes after the last tensor": (_raw({"x": F32x2}, b"\0" * 12), "data buffer",
                                    "8 bytes"),
    "order key not JSON": (_raw({"__metadata__": {ORDER_KEY: "x"}, "x": F32x2}, GOOD_DATA),
                           ORDER_FIELD, "JSON list"),
    "order key missing a name": (_raw({"__metadata__": {ORDER_KEY: "[]"}, "x": F32x2},
                                      GOOD_DATA), ORDER_FIELD, "1 tensor names"),
    "order key with an extra name": (_raw({"__metadata__": {ORDER_KEY: '["x", "y"]'},
                                           "x": F32x2}, GOOD_DATA), ORDER_FIELD,
                                     "each of"),
    "tensor and group clash": (_raw({"a": F32x2, "a/b": {**F32x2, "data_offsets": [8, 16]}},
                                    b"\0" * 16), None, "to be a group"),
}


@needs_safetensors
@pytest.mark.parametrize("raw, field, words", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_headers_get_our_format_error(tmp_path: Path, raw: bytes, field: str | None,
                                          words: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(raw)
    with pytest.raises(FormatError) as info:
        weightstore.load(path, format="safetensors")
    err = info.value
    assert err.path == str(path)
    assert err.field == field
    assert words in str(err)
    assert "deserializ" not in str(err) and "SafetensorError" not in str(err)


@needs_safetensors
def test_known_but_unsupported_dtype_is_skipped_and_named(tmp_path: Path) -> None:
    path = tmp_path / "f8.safetensors"
    path.write_bytes(_raw({"x": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]},
                           "y": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]}},
                          b"\0\0" + np.float32(1.5).tobytes()))
    with pytest.warns(weightstore.SkippedEntriesWarning,
                      match=r"skipped 1 entry .*'x' \(a F8_E4M3 tensor of shape \(2,\)\)"):
        got = weightstore.load(path)
    assert list(got) == ["y"] and got["y"][0] == 1.5
    with pytest.raises(UnsupportedError) as info:
        weightstore.load(path, strict=True)
    assert info.value.field == "entry 'x'" and info.value.found == "a F8_E4M3 tensor of shape (2,)"


@needs_safetensors
def test_limits_are_checked_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    weightstore.save({"a": np.zeros(100, np.float32), "b": np.zeros(100, np.float32)}, path)
    with pytest.raises(LimitError, match="max_header_bytes"):
        weightstore.load(path, limits=Limits(max_header_bytes=16))
    with pytest.raises(LimitError, match="max_tensors"):
        weightstore.load(path, limits=Limits(max_tensors=1))
    with pytest.raises(LimitError, match="max_tensor_bytes"):
        weightstore.load(path, limits=Limits(max_tensor_bytes=399))
    with pytest.raises(LimitError, match="max_total_bytes"):
        weightstore.load(path, limits=Limits(max_total_bytes=799))
    assert len(weightstore.load(path, limits=Limits(max_total_bytes=800))) == 2


@needs_safetensors
@pytest.mark.parametrize("low_byte", [0x80, ord("{"), 0x89, ord("P")])
def test_content_sniffing_beats_other_formats(tmp_path: Path, low_byte: int) -> None:
    # A header whose length's first byte is also another format's first byte (pickle's
    # 0x80, JSON's '{', HDF5's 0x89, zip's 'P') must still be read as safetensors.
    base = json.dumps({"x": F32x2}).encode()
    target = next(n for n in range(len(base), len(base) + 512) if n % 256 == low_byte)
    raw = _raw(base + b" " * (target - len(base)), GOOD_DATA)
    assert raw[0] == low_byte
    path = tmp_path / "misnamed.bin"
    path.write_bytes(raw)
    assert list(weightstore.load(path)) == ["x"]


def test_sniff_rejects_other_formats(tmp_path: Path) -> None:
    w = Weights({"x": np.arange(3, dtype=np.float32)})
    for ext in (".json", ".csv", ".npz", ".h5", ".pkl", ".json.zst"):
        path = tmp_path / f"w{ext}"
        weightstore.save(w, path)
        assert not SafetensorsCodec.sniff(path.read_bytes()[:512]), ext
    assert not SafetensorsCodec.sniff(b"")
    assert not SafetensorsCodec.sniff(struct.pack("<Q", 1) + b"{")  # too short for "{}"


def test_missing_package_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for mod in [m for m in sys.modules if m == "safetensors" or m.startswith("safetensors.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "safetensors", None)  # makes the import fail
    with pytest.raises(MissingDependencyError) as info:
        weightstore.save({"x": np.zeros(2)}, tmp_path / "w.safetensors")
    assert info.value.package == "safetensors" and info.value.extra == "safetensors"
    assert "pip install 'weightstore[safetensors]'" in str(info.value)
    path = tmp_path / "w.safetensors"
    path.write_bytes(_raw({"x": F32x2}, GOOD_DATA))
    with pytest.raises(MissingDependencyError):
        weightstore.load(path)


def test_registration_does_not_import_the_package() -> None:
    code = ("import sys, weightstore; names = [c.name for c in weightstore.formats()]; "
            "assert 'safetensors' in names, names; "
            "assert 'safetensors' not in sys.modules, 'imported at registration'")
    subprocess.run([sys.executable, "-c", code], check=True,
                   cwd=Path(__file__).resolve().parents[1])
