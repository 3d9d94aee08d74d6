"""Precision options (cast, quantize, digits): every option through every registered codec,
the quantization layout, the lossy warning, and the refusals."""

from __future__ import annotations

import json
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import weightstore as ws
from weightstore import precision as prec
from weightstore.cli.main import main
from weightstore.codec import Budget, Codec
from weightstore.model import arrays_identical

# A precision record is metadata, and a quantized tensor is stored as several (codes and
# scales): a one-tensor format (npy) holds neither, and these tests write.
CODECS = [c for c in ws.formats() if not c.single_tensor and c.writable]
IDS = [c.name for c in CODECS]

OPTIONS = {
    "float16": {"dtype": "float16"},
    "bfloat16": {"dtype": "bfloat16"},
    "float32": {"dtype": "float32"},
    "float64": {"dtype": "float64"},
    "int8/per-column": {"quantize": "8"},
    "int4/per-column": {"quantize": "4/per-column"},
    "int2/per-column": {"quantize": "2"},
    "int3/block:16": {"quantize": "3/block:16"},
    "digits 4": {"digits": 4},
    "digits 6": {"digits": 6},
}


def sample() -> ws.Weights:
    """A small network's worth of tensors: 2-D weights, a bias, float64, an int, a scalar."""
    rng = np.random.default_rng(7)
    return ws.Weights(
        {
            "fc1/W": (rng.standard_normal((40, 6)) * 0.1).astype(np.float32),
            "fc1/b": (rng.standard_normal(6) * 0.01).astype(np.float32),
            "fc2/W": rng.standard_normal((6, 3)),  # float64
            "steps": np.arange(4, dtype=np.int32),
            "temperature": np.array(1.5, dtype=np.float32),
            "zeros": np.zeros((3, 2), dtype=np.float32),
        },
        metadata={"source": "tests"},
    )


def _quantized(bits: int, packed: bool = True) -> ws.Weights:
    """sample() quantized to *bits*, codes packed or one per byte."""
    w = sample()
    items = [(k, prec.quantize_tensor(a, bits, name=k) if a.dtype.kind == "f" else a)
             for k, a in w.items()]
    return prec.pack(items, w.metadata, packed=packed)


def stored_codes(q: ws.Weights, name: str) -> np.ndarray:
    """The int8 codes of *name* in stored weights *q*, unpacked if the record says so."""
    e = json.loads(q.metadata[prec.QUANT_KEY])["tensors"][name]
    c = q[name + prec.CODES_SUFFIX]
    return prec.unpack_codes(c, e["bits"], e["shape"]) if e.get("packed") else c


def assert_identical(expected: ws.Weights, got: ws.Weights) -> None:
    assert list(got) == list(expected)
    for name in expected:
        assert arrays_identical(expected[name], got[name]), name
    assert got.metadata == expected.metadata


def _save(cls: type[Codec], w: ws.Weights, path: Path, option: dict) -> None:
    try:
        ws.save(w, path, cls.name, precision=option)
    except ws.MissingDependencyError as e:  # pragma: no cover - depends on extras
        pytest.skip(str(e))


@pytest.mark.parametrize("label", list(OPTIONS))
@pytest.mark.parametrize("cls", CODECS, ids=IDS)
def test_every_precision_option_round_trips_through_every_codec(
    cls: type[Codec], label: str, tmp_path: Path
) -> None:
    option = OPTIONS[label]
    if option.get("dtype") == "bfloat16":
        pytest.importorskip("ml_dtypes", reason="bfloat16 needs the optional ml_dtypes")
    w = sample()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ws.LossyWarning)
        stored = prec.apply(w, option)
    path = tmp_path / f"w{cls.extensions[0]}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ws.LossyWarning)
        if option.get("dtype") == "bfloat16":
            try:
                _save(cls, w, path, option)
            except ws.UnsupportedError as e:  # a codec that cannot hold bfloat16 says so
                assert "bfloat16" in str(e)
                assert not path.exists()
                return
        else:
            _save(cls, w, path, option)
    assert_identical(stored, ws.load(path, dequantize=False))
    assert_identical(prec.dequantize(stored), ws.load(path))


def test_bfloat16_is_held_by_some_codecs_and_refused_by_others(tmp_path: Path) -> None:
    pytest.importorskip("ml_dtypes", reason="bfloat16 needs the optional ml_dtypes")
    held, refused = set(), set()
    for cls in CODECS:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ws.LossyWarning)
                ws.save(sample(), tmp_path / f"w{cls.extensions[0]}", cls.name,
                        precision={"dtype": "bfloat16"})
            held.add(cls.name)
        except ws.UnsupportedError:
            refused.add(cls.name)
    assert {"json", "csv", "pickle"} <= held and "npz" in refused


def test_cast_only_casts_floats_and_keeps_metadata() -> None:
    got = prec.cast(sample(), "float16")
    assert [str(a.dtype) for a in got.values()] == [
        "float16", "float16", "float16", "int32", "float16", "float16"]
    assert got.metadata == {"source": "tests"}
    assert np.array_equal(got["fc1/W"], sample()["fc1/W"].astype(np.float16))


def test_cast_bfloat16_uses_ml_dtypes_and_rounds_to_nearest() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = np.array([1 + 2**-8, 1 + 3 * 2**-9, -0.1], dtype=np.float32)
    got = prec.cast({"x": x}, "bfloat16")["x"]
    assert got.dtype == np.dtype(ml_dtypes.bfloat16)
    # 1 + 2**-8 is a tie between 1 and 1 + 2**-7: to even gives 1; 1 + 3*2**-9 rounds up
    assert got.astype(np.float32).tolist()[:2] == [1.0, 1 + 2**-7]


def test_bfloat16_without_ml_dtypes_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)  # import now raises ImportError
    with pytest.raises(ws.MissingDependencyError) as e:
        prec.cast(sample(), "bfloat16")
    assert e.value.package == "ml_dtypes" and e.value.extra == "bfloat16"
    assert "precision dtype bfloat16" in str(e.value) and "weightstore[bfloat16]" in str(e.value)
    assert "--" not in str(e.value)  # the API speaks in keywords, the CLI in flags


def test_quantize_per_column_layout_and_error_bound() -> None:
    w = sample()
    for bits in range(2, 9):
        q = prec.quantize(w, bits)
        assert list(q) == ["fc1/W.q", "fc1/W.scale", "fc1/b.q", "fc1/b.scale", "fc2/W.q",
                           "fc2/W.scale", "steps", "temperature.q", "temperature.scale",
                           "zeros.q", "zeros.scale"]
        top = 2 ** (bits - 1) - 1
        codes, scale = stored_codes(q, "fc1/W"), q["fc1/W.scale"]
        if bits < 8:  # packed: 240 codes of *bits* bits
            assert q["fc1/W.q"].dtype == np.uint8 and q["fc1/W.q"].shape == (240 * bits // 8,)
        assert codes.dtype == np.int8 and codes.shape == (40, 6)
        assert scale.shape == (6,) and scale.dtype == np.float32
        assert np.abs(codes).max() == top and codes.min() >= -top
        src = w["fc1/W"].astype(np.float64)
        assert np.allclose(scale, np.abs(src).max(axis=0) / top, rtol=1e-6)
        back = prec.dequantize(q)
        assert list(back) == list(w) and back.metadata == w.metadata
        err = np.abs(back["fc1/W"].astype(np.float64) - src)
        assert (err <= scale.astype(np.float64) / 2 * (1 + 1e-6)).all()
        assert q["fc1/b.scale"].shape == () and stored_codes(q, "temperature").shape == ()
        assert back["steps"] is w["steps"]  # ints are not touched
        assert back["fc2/W"].dtype == np.float64 and not back["zeros"].any()


def test_quantize_per_block_has_a_scale_per_block_of_rows() -> None:
    w = sample()
    q = prec.quantize(w, 4, block=16)
    assert q["fc1/W.scale"].shape == (3, 6)  # 40 rows: blocks of 16, 16, 8
    src = w["fc1/W"].astype(np.float64)
    for i, (lo, hi) in enumerate([(0, 16), (16, 32), (32, 40)]):
        assert np.allclose(q["fc1/W.scale"][i], np.abs(src[lo:hi]).max(axis=0) / 7, rtol=1e-6)
    back = prec.dequantize(q)["fc1/W"].astype(np.float64)
    scale = np.repeat(q["fc1/W.scale"].astype(np.float64), 16, axis=0)[:40]
    assert np.array_equal(back, (stored_codes(q, "fc1/W") * scale).astype(np.float32))
    per_column = prec.dequantize(prec.quantize(w, 4))["fc1/W"]
    assert np.abs(back - src).mean() <= np.abs(per_column - src).mean()


def test_quantization_record_is_the_documented_json() -> None:
    q = prec.quantize(sample(), 3, block=16)
    rec = json.loads(q.metadata[prec.QUANT_KEY])
    assert rec == {
        "version": 2, "scheme": "symmetric",
        "tensors": {
            "fc1/W": {"dtype": "float32", "shape": [40, 6], "bits": 3, "granularity": "block",
                      "block": 16, "packed": True},
            "fc1/b": {"dtype": "float32", "shape": [6], "bits": 3, "granularity": "tensor",
                      "packed": True},
            "fc2/W": {"dtype": "float64", "shape": [6, 3], "bits": 3, "granularity": "block",
                      "block": 16, "packed": True},
            "temperature": {"dtype": "float32", "shape": [], "bits": 3,
                            "granularity": "tensor", "packed": True},
            "zeros": {"dtype": "float32", "shape": [3, 2], "bits": 3, "granularity": "block",
                      "block": 16, "packed": True},
        },
    }
    assert q.metadata["source"] == "tests"


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "one-per-byte"])
@pytest.mark.parametrize("damage, field", [
    (lambda r: r.update(version=3), "version"),
    (lambda r: r["tensors"]["fc1/W"].update(bits=9), "bits"),
    (lambda r: r["tensors"]["fc1/W"].update(shape=[7, 40]), "fc1/W.q"),
    (lambda r: r["tensors"]["fc1/W"].update(granularity="block"), "fc1/W"),
    (lambda r: r["tensors"]["fc1/W"].update(granularity="block", block=7), "fc1/W.scale"),
    (lambda r: r["tensors"]["fc1/W"].update(packed="yes"), "fc1/W'].packed"),
    (lambda r: r["tensors"]["fc1/W"].pop("packed"), "fc1/W"),
    (lambda r: r["tensors"].update(missing={"dtype": "float32", "shape": [1], "bits": 4,
                                            "granularity": "tensor", "packed": True}),
     "missing.q"),
])
def test_a_damaged_record_is_refused_naming_the_field(damage, field: str, packed: bool) -> None:
    q = _quantized(4, packed)
    rec = json.loads(q.metadata[prec.QUANT_KEY])
    damage(rec)
    bad = ws.Weights(dict(q), {**q.metadata, prec.QUANT_KEY: json.dumps(rec)})
    with pytest.raises(ws.FormatError, match=field.replace(".", r"\.")):
        prec.dequantize(bad, path="w.npz")


def test_out_of_range_codes_are_refused_packed_or_not() -> None:
    for packed in (True, False):
        q = _quantized(4, packed)
        rec = json.loads(q.metadata[prec.QUANT_KEY])
        rec["tensors"]["fc1/W"]["bits"] = 2
        if packed:  # 2-bit codes would fill half the bytes: 240 codes -> 60 bytes
            rec["tensors"]["fc1/W"]["shape"] = [80, 6]
        bad = ws.Weights(dict(q), {**q.metadata, prec.QUANT_KEY: json.dumps(rec)})
        with pytest.raises(ws.FormatError, match="codes from -1 to 1"):
            prec.dequantize(bad, path="w.npz")


def _reference_pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """The documented stream built bit by bit with numpy's unpackbits/packbits."""
    lanes = np.unpackbits(codes.astype(np.int8).view(np.uint8)[:, None], axis=1,
                          bitorder="little")[:, :bits]
    return np.packbits(lanes.reshape(-1), bitorder="little")


def test_packed_codes_are_the_documented_bit_stream(monkeypatch) -> None:
    # by hand: 4 bits [1, -1, 3] -> 0xF1 0x03; 3 bits [1, 2, -1] -> stream 100 010 111 (LSB
    # first) = bits 0..8 -> 0b11010001, 0b1 ; 2 bits [-1, 0, 1, 1, -1] -> 0b01010011, 0b11
    assert prec.pack_codes(np.array([1, -1, 3], np.int8), 4).tolist() == [0xF1, 0x03]
    assert prec.pack_codes(np.array([1, 2, -1], np.int8), 3).tolist() == [0b11010001, 0b1]
    assert prec.pack_codes(np.array([-1, 0, 1, 1, -1], np.int8), 2).tolist() == [0b01010011,
                                                                                 0b11]
    monkeypatch.setattr(prec, "PACK_CHUNK", 16)  # several chunks, and a short last one
    rng = np.random.default_rng(3)
    for bits in range(2, 9):
        top = prec.qmax(bits)
        for n in (0, 1, 7, 8, 9, 16, 17, 63, 1001):
            codes = rng.integers(-top, top + 1, n).astype(np.int8)
            packed = prec.pack_codes(codes, bits)
            assert packed.dtype == np.uint8 and packed.shape == ((n * bits + 7) // 8,)
            if n:
                assert np.array_equal(packed, _reference_pack(codes, bits)), (bits, n)
            back = prec.unpack_codes(packed, bits, (n,))
            assert back.dtype == np.int8 and np.array_equal(back, codes), (bits, n)
    shaped = rng.integers(-7, 8, (5, 3, 7)).astype(np.int8)
    assert np.array_equal(prec.unpack_codes(prec.pack_codes(shaped, 4), 4, [5, 3, 7]), shaped)


@pytest.mark.parametrize("fmt", ["npz", "safetensors", "hdf5", "wsc", "pickle"])
def test_packed_codes_round_trip_bit_identical_through_binary_formats(
        fmt: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    w = ws.Weights({"W": rng.standard_normal((301, 67)).astype(np.float32),
                    "b": rng.standard_normal(67).astype(np.float32)})
    for bits in (2, 3, 4, 5, 6, 7):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ws.LossyWarning)
            stored = prec.apply(w, {"quantize": str(bits)})
            path = tmp_path / f"w{bits}.{fmt}"
            ws.save(w, path, fmt, precision={"quantize": str(bits)})
        got = ws.load(path, dequantize=False)
        assert got["W.q"].dtype == np.uint8
        assert got["W.q"].shape == ((301 * 67 * bits + 7) // 8,)
        assert_identical(stored, got)
        assert np.array_equal(stored_codes(got, "W"), prec.quantize_tensor(w["W"], bits).codes)
        assert_identical(prec.dequantize(stored), ws.load(path))


def test_an_int4_npz_is_about_half_an_int8_npz(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    w = ws.Weights({"W": rng.standard_normal((512, 256)).astype(np.float32)})
    sizes = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ws.LossyWarning)
        for bits in (8, 4, 2):
            ws.save(w, tmp_path / f"q{bits}.npz", precision={"quantize": str(bits)})
            sizes[bits] = (tmp_path / f"q{bits}.npz").stat().st_size
    codes = 512 * 256
    assert sizes[8] > codes and sizes[4] < sizes[8] * 0.55 and sizes[2] < sizes[8] * 0.3
    assert sizes[4] - sizes[2] == codes // 4  # exactly the bytes the codes take


def test_version_1_files_with_one_code_per_byte_still_read(tmp_path: Path) -> None:
    q = _quantized(4, packed=False)
    rec = json.loads(q.metadata[prec.QUANT_KEY])
    rec["version"] = 1
    for e in rec["tensors"].values():
        del e["packed"]
    old = ws.Weights(dict(q), {**q.metadata, prec.QUANT_KEY: json.dumps(rec)})
    ws.save(old, tmp_path / "old.npz")
    assert_identical(prec.dequantize(_quantized(4)), ws.load(tmp_path / "old.npz"))
    rec["tensors"]["fc1/W"]["packed"] = True  # version 1 has no such key
    bad = ws.Weights(dict(q), {**q.metadata, prec.QUANT_KEY: json.dumps(rec)})
    with pytest.raises(ws.FormatError, match="fc1/W"):
        prec.dequantize(bad, path="old.npz")


@pytest.mark.parametrize("damage, field, found", [
    (lambda c: c[:-1], "'fc1/W.q'", "uint8 of shape [119]"),
    (lambda c: np.concatenate([c, c[:1]]), "'fc1/W.q'", "uint8 of shape [121]"),
    (lambda c: c.view(np.int8), "'fc1/W.q'", "int8 of shape [120]"),
    (lambda c: c.reshape(12, 10), "'fc1/W.q'", "uint8 of shape [12, 10]"),
])
def test_hostile_packed_codes_are_refused_naming_file_field_expected_found(
        damage, field: str, found: str, tmp_path: Path) -> None:
    q = _quantized(4)
    bad = ws.Weights({k: damage(v) if k == "fc1/W.q" else v for k, v in q.items()},
                     q.metadata)
    path = tmp_path / "bad.npz"
    ws.save(bad, path)
    with pytest.raises(ws.FormatError) as e:
        ws.load(path)
    msg = str(e.value)
    assert str(path) in msg and field in msg and "uint8 of shape (120,)" in msg
    assert found in msg


def test_packed_padding_bits_and_claimed_counts_are_checked(tmp_path: Path) -> None:
    q = _quantized(3)  # fc1/b: 6 codes of 3 bits = 18 bits, 6 padding bits in byte 3
    codes = q["fc1/b.q"].copy()
    codes[-1] |= 0x80
    path = tmp_path / "pad.npz"
    ws.save(ws.Weights({**q, "fc1/b.q": codes}, q.metadata), path)
    with pytest.raises(ws.FormatError, match=r"'fc1/b\.q' padding.*last byte 0x8"):
        ws.load(path)
    # a record claiming 2**40 codes for 120 bytes is refused before anything is allocated
    rec = json.loads(q.metadata[prec.QUANT_KEY])
    rec["tensors"]["fc1/W"]["shape"] = [1 << 20, 1 << 20]
    ws.save(ws.Weights(dict(q), {**q.metadata, prec.QUANT_KEY: json.dumps(rec)}), path)
    with pytest.raises(ws.FormatError, match=r"uint8 of shape \(412316860416,\)"):
        ws.load(path)


def test_unpacking_is_charged_to_the_budget_before_allocating() -> None:
    packed = prec.pack_codes(np.ones(100_000, np.int8), 4)
    budget = Budget(ws.Limits(max_memory_bytes=60_000))
    budget.add_input(packed.nbytes)
    with pytest.raises(ws.LimitError, match="unpacking tensor 'W.q'"):
        prec.unpack_codes(packed, 4, (100_000,), path="w.npz", field="W.q", budget=budget)
    assert budget.memory == 0  # nothing was charged, nothing allocated
    roomy = Budget(ws.Limits())
    prec.unpack_codes(packed, 4, (100_000,), path="w.npz", field="W.q", budget=roomy)
    assert roomy.memory == 100_000  # the codes stay charged; the scratch is given back


def test_quantize_refuses_non_finite_values_and_reserved_names() -> None:
    with pytest.raises(ws.WeightsError, match="finite"):
        prec.quantize({"x": np.array([1.0, np.nan])}, 4)
    with pytest.raises(ws.WeightsError, match="reserved"):
        prec.quantize({"x": np.ones(3), "x.q": np.ones(3, dtype=np.int8)}, 4)


def test_digits_round_to_significant_digits_and_shrink_the_text(tmp_path: Path) -> None:
    w = sample()
    for digits in (1, 3, 4, 6):
        r = prec.round_digits(w, digits)
        for name in ("fc1/W", "fc2/W"):
            src, got = w[name].astype(np.float64), r[name].astype(np.float64)
            assert np.all(np.abs(got - src) <= 0.5 * 10.0 ** (1 - digits) * np.abs(src) * 1.001)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ws.LossyWarning)
        ws.save(w, tmp_path / "full.json")
        ws.save(w, tmp_path / "d4.json", precision={"digits": 4})
    text = (tmp_path / "d4.json").read_text()
    values = re.sub(r'"[^"]*"', '""', text.split('"tensors"')[1])  # no names, no crc32 hex
    numbers = re.findall(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", values)
    assert len(numbers) > 250
    significant = [n.split("e")[0].replace("-", "").replace(".", "").strip("0") for n in numbers]
    assert max(len(d) for d in significant) == 4
    assert (tmp_path / "d4.json").stat().st_size < 0.8 * (tmp_path / "full.json").stat().st_size


def test_every_lossy_write_warns_exactly_once(tmp_path: Path) -> None:
    for option in ({"dtype": "float16"}, {"quantize": "4"}, {"digits": 6}):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ws.save(sample(), tmp_path / "w.npz", precision=option)
        lossy = [c for c in caught if issubclass(c.category, ws.LossyWarning)]
        assert len(lossy) == 1, option
        assert "lose precision" in str(lossy[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ws.LossyWarning)  # widening and plain saves are exact
        ws.save(sample(), tmp_path / "w.npz", precision={"dtype": "float64"})
        ws.save(sample(), tmp_path / "w.npz")


def test_precision_options_are_validated() -> None:
    with pytest.raises(ws.OptionError, match="2 to 8"):
        prec.Quantization.parse("9")
    with pytest.raises(ws.OptionError, match="BITS"):
        prec.Quantization.parse("4/blok:8")
    assert prec.Quantization.parse("4/block:64") == prec.Quantization(4, 64)
    assert str(prec.Quantization.parse("3")) == "3/per-column"
    with pytest.raises(ws.OptionError, match="dtype"):
        prec.Precision(dtype="int8")
    with pytest.raises(ws.OptionError, match="not both"):
        prec.Precision(quantize=prec.Quantization(4), digits=3)
    with pytest.raises(ws.OptionError, match="precision 'bits'"):
        prec.Precision.of({"bits": 4})


def test_convert_keeps_codes_unless_asked_to_dequantize(tmp_path: Path) -> None:
    src = tmp_path / "q.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ws.LossyWarning)
        ws.save(sample(), src, precision={"quantize": "4"})
    ws.convert(src, tmp_path / "q.json")
    assert_identical(ws.load(src, dequantize=False), ws.load(tmp_path / "q.json",
                                                             dequantize=False))
    ws.convert(src, tmp_path / "f.json", dequantize=True)
    assert_identical(ws.load(src), ws.load(tmp_path / "f.json"))
    assert prec.QUANT_KEY not in ws.load(tmp_path / "f.json").metadata


def test_cli_convert_precision_flags(tmp_path: Path, capsys) -> None:
    src = tmp_path / "w.npz"
    ws.save(sample(), src)
    with pytest.warns(ws.LossyWarning, match="lose precision") as caught:
        assert main(["convert", str(src), str(tmp_path / "q.npz.zst"),
                     "--quantize", "4/block:16"]) == 0
    assert len(caught) == 1 and "wrote" in capsys.readouterr().out
    stored = ws.load(tmp_path / "q.npz.zst", dequantize=False)
    assert stored["fc1/W.scale"].shape == (3, 6)
    with pytest.warns(ws.LossyWarning):
        assert main(["convert", str(src), str(tmp_path / "h.json"), "--dtype", "float16",
                     "--digits", "3"]) == 0
    assert ws.load(tmp_path / "h.json")["fc1/W"].dtype == np.float16
    assert main(["inspect", str(tmp_path / "q.npz.zst")]) == 0
    assert "fc1/W.q" in capsys.readouterr().out  # inspect shows what the file holds
    assert main(["convert", str(src), str(tmp_path / "x.npz"), "--quantize", "1"]) == 1
    assert "2 to 8" in capsys.readouterr().err and not (tmp_path / "x.npz").exists()
