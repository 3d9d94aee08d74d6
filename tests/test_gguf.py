"""GGUF: files made by gguf (tests/data/gguf/make_gguf.py) read without it, quantized types
equal to gguf's own dequantization, typed metadata kept, and gguf's reader reads ours."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import weightstore as ws
from weightstore.codecs.gguf_codec import QUANT_KEY, TYPES_KEY, read_header
from weightstore.model import arrays_identical

DATA = Path(__file__).resolve().parent / "data" / "gguf"


def _expected_plain() -> dict[str, np.ndarray]:
    import ml_dtypes

    with np.load(DATA / "plain_expected.npz") as z:
        out = {k: z[k] for k in z.files}
    out["blk.0.ffn_up.weight"] = out["blk.0.ffn_up.weight"].view(ml_dtypes.bfloat16)
    return out


def _header(path: Path):
    with open(path, "rb") as f:
        return read_header(f, str(path))


def test_plain_file_from_gguf_reads_exactly_with_numpy_shapes() -> None:
    got = ws.load(DATA / "plain.gguf")
    expected = _expected_plain()
    assert list(got) == list(expected)
    for name, array in expected.items():
        assert got[name].shape == array.shape, name  # GGUF's reversed dims undone
        assert arrays_identical(got[name], array), name
    assert got.metadata["general.name"] == "weightstore fixture"
    assert got.metadata["general.architecture"] == "llama"
    assert got.metadata["llama.context_length"] == "4096"
    assert json.loads(got.metadata["test.u64"]) == 2**64 - 1
    assert np.float32(json.loads(got.metadata["llama.rope.freq_base"])) == np.float32(10000.5)
    assert json.loads(got.metadata["tokenizer.ggml.tokens"]) == ["<s>", "</s>", "héllo",
                                                                 "▁world"]
    types = json.loads(got.metadata[TYPES_KEY])
    assert types["llama.context_length"] == "UINT32" and types["test.u64"] == "UINT64"
    assert types["tokenizer.ggml.tokens"] == "ARRAY[STRING]"
    assert types["test.u32s"] == "ARRAY[UINT32]" and types["test.bool"] == "BOOL"
    assert "general.name" not in types  # strings are the values themselves


def test_open_reads_the_header_alone_and_inspect_names_the_format() -> None:
    with ws.open(DATA / "plain.gguf") as lazy:
        assert lazy.lazy and lazy.format == "gguf"
        assert lazy.info("token_embd.weight").shape == (6, 8)
        assert arrays_identical(lazy["ids.i64"], _expected_plain()["ids.i64"])
    info = ws.inspect(DATA / "quant.gguf")
    assert info.format == "gguf" and len(info.tensors) == 6


def test_quantized_tensors_equal_ggufs_own_dequantization() -> None:
    with pytest.warns(ws.LossyWarning, match="Q4_0, Q4_K, Q5_0, Q6_K, Q8_0"):
        got = ws.load(DATA / "quant.gguf")
    for path in sorted((DATA / "quant_expected").glob("*.npy")):
        name = path.name[: -len(".npy")]
        expected = np.load(path)
        assert got[name].dtype == np.float32
        assert got[name].shape == expected.shape and arrays_identical(got[name], expected), name
    assert got["blk.0.ffn_down.weight"].shape == (3, 512)  # Q4_K: 2 blocks of 256 a row


def test_raw_blocks_with_dequantize_false_write_back_byte_for_byte(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ws.LossyWarning)  # nothing is lost this way
        raw = ws.load(DATA / "quant.gguf", dequantize=False)
    with np.load(DATA / "quant_blocks.npz") as z:
        for name in z.files:
            assert raw[name].dtype == np.uint8 and arrays_identical(raw[name], z[name]), name
    assert json.loads(raw.metadata[QUANT_KEY])["blk.0.ffn_down.weight"] == "Q4_K"
    # through another format and back: the blocks and their types come back
    mid = tmp_path / "blocks.safetensors"
    ws.save(raw, mid)
    out = tmp_path / "again.gguf"
    ws.save(ws.load(mid), out)
    original, again = _header(DATA / "quant.gguf"), _header(out)
    assert [(t.name, t.type_name, t.shape) for t in original.tensors] == \
        [(t.name, t.type_name, t.shape) for t in again.tensors]
    with pytest.warns(ws.LossyWarning):
        a, b = ws.load(DATA / "quant.gguf"), ws.load(out)
    for name in a:
        assert arrays_identical(a[name], b[name]), name


def test_metadata_types_survive_gguf_to_json_to_gguf(tmp_path: Path) -> None:
    mid = tmp_path / "m.json"
    ws.convert(DATA / "plain.gguf", mid)
    out = tmp_path / "again.gguf"
    ws.convert(mid, out)
    a, b = _header(DATA / "plain.gguf"), _header(out)
    assert a.metadata == b.metadata and a.types == b.types
    assert arrays_identical(ws.load(out)["blk.0.ffn_up.weight"],
                            _expected_plain()["blk.0.ffn_up.weight"])


def test_ggufs_own_reader_reads_what_we_write(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    from corpus import corpus

    tensors, metadata = corpus()
    path = tmp_path / "w.gguf"
    ws.save(ws.Weights(tensors, metadata), path)
    reader = gguf.GGUFReader(path)
    by_name = {t.name: t for t in reader.tensors}
    assert list(by_name) == list(tensors)
    for name, array in tensors.items():
        t = by_name[name]
        data = np.asarray(t.data)
        if array.dtype.kind in "fi" and array.dtype.itemsize > 0 and array.dtype.name != "bfloat16":
            assert data.reshape(array.shape).astype(array.dtype.newbyteorder("=")).tobytes() \
                == np.ascontiguousarray(array).astype(array.dtype.newbyteorder("=")).tobytes(), name
        assert [int(d) for d in t.shape][::-1] == list(array.shape) or array.ndim == 0, name
    field = reader.fields["source"]
    assert bytes(field.parts[field.data[0]]).decode() == metadata["source"]
    # the typed fixture: gguf sees the same value types after our round trip
    out = tmp_path / "plain.gguf"
    ws.save(ws.load(DATA / "plain.gguf"), out)
    theirs, ours = gguf.GGUFReader(DATA / "plain.gguf"), gguf.GGUFReader(out)
    assert {k: f.types for k, f in theirs.fields.items() if not k.startswith("GGUF.")} == \
        {k: f.types for k, f in ours.fields.items() if not k.startswith("GGUF.")}


def test_quantize_option_writes_q8_0_that_gguf_reads(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    rng = np.random.default_rng(3)
    w = {"W": rng.standard_normal((4, 64)).astype(np.float32), "b": np.ones(64, np.float32)}
    path = tmp_path / "q.gguf"
    with pytest.warns(ws.LossyWarning, match="Q8_0"):
        ws.save(w, path, quantize="Q8_0")
    reader = gguf.GGUFReader(path)
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types == {"W": "Q8_0", "b": "F32"}
    expected = gguf.quants.dequantize(gguf.quants.quantize(w["W"], gguf.GGMLQuantizationType.Q8_0),
                                      gguf.GGMLQuantizationType.Q8_0)
    with pytest.warns(ws.LossyWarning):
        got = ws.load(path)
    assert arrays_identical(got["W"], expected)
    assert np.abs(got["W"] - w["W"]).max() < 0.05


@pytest.mark.parametrize("cut", [10, 30, 100, 500])
def test_cut_fixture_is_refused_naming_the_file(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "cut.gguf"
    path.write_bytes((DATA / "plain.gguf").read_bytes()[:cut])
    with pytest.raises(ws.FormatError, match="cut.gguf"):
        ws.load(path)
