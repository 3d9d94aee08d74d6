"""--rename/--include/--exclude on a quantized file keep it dequantizable: the rules see a
quantized tensor by its own name and the record follows the new names (issue 15)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import weightstore as ws
from weightstore import select as sel
from weightstore.cli.main import main
from weightstore.codecs import gguf_codec
from weightstore.model import arrays_identical
from weightstore.precision import QUANT_KEY

GGUF = Path(__file__).parent / "data" / "gguf"


def _quantized(tmp_path: Path) -> tuple[Path, ws.Weights]:
    rng = np.random.default_rng(15)
    w = {"W1": rng.standard_normal((8, 4)).astype(np.float32),
         "b1": rng.standard_normal(4).astype(np.float32),
         "W2": rng.standard_normal((4, 3)).astype(np.float32),
         "steps": np.arange(3)}
    path = tmp_path / "q.npz"
    with pytest.warns(ws.LossyWarning):
        ws.save(w, path, precision={"quantize": "4/block:4"})
    return path, ws.load(path)


def test_rename_rewrites_the_record_and_the_file_still_dequantizes(tmp_path: Path) -> None:
    src, restored = _quantized(tmp_path)
    assert "W1.q" in ws.load(src, dequantize=False)
    out = tmp_path / "renamed.safetensors"
    written = ws.convert(src, out, rename=["W1=fc1/weight", r"re:b(\d)=fc\1/bias"],
                         exclude=["W2"])
    assert list(written) == ["fc1/weight.q", "fc1/weight.scale", "fc1/bias.q",
                             "fc1/bias.scale", "steps"]
    record = json.loads(written.metadata[QUANT_KEY])["tensors"]
    assert list(record) == ["fc1/weight", "fc1/bias"]  # W2 excluded: its entry went too
    got = ws.load(out)
    assert list(got) == ["fc1/weight", "fc1/bias", "steps"]
    assert arrays_identical(got["fc1/weight"], restored["W1"])
    assert arrays_identical(got["fc1/bias"], restored["b1"])
    # the same from weights in memory (save), with a rule naming the tensor in full
    stored = ws.load(src, dequantize=False)
    again = ws.load(ws.save(stored, tmp_path / "r.h5", rename=[r"re:W(\d)=layer\1.w"]))
    assert list(again) == ["layer1.w", "b1", "layer2.w", "steps"]
    assert arrays_identical(again["layer2.w"], restored["W2"])


def test_rules_see_a_quantized_tensor_by_its_own_name() -> None:
    names = ["W1.q", "W1.scale", "b1.q", "b1.scale", "x.q"]
    quantized = {"W1", "b1"}
    assert list(sel.selected_names(names, include=["W1"], quantized=quantized)) == \
        ["W1.q", "W1.scale"]
    assert list(sel.selected_names(names, exclude=["W1", "x*"], quantized=quantized)) == \
        ["b1.q", "b1.scale"]
    # x.q is no quantized tensor's part: an ordinary name
    assert sel.selected_names(names, rename=["re:(.*)=n.\\1"], quantized=quantized) == {
        "n.W1.q": "W1.q", "n.W1.scale": "W1.scale", "n.b1.q": "b1.q",
        "n.b1.scale": "b1.scale", "n.x.q": "x.q"}


def test_keeping_no_quantized_tensor_drops_the_record(tmp_path: Path) -> None:
    src, restored = _quantized(tmp_path)
    out = tmp_path / "steps.npz"
    written = ws.convert(src, out, include=["steps"])
    assert QUANT_KEY not in written.metadata and list(ws.load(out)) == ["steps"]


def test_cli_convert_rename_of_a_quantized_file(tmp_path: Path) -> None:
    src, restored = _quantized(tmp_path)
    out = tmp_path / "cli.h5"
    assert main(["convert", str(src), str(out), "-q", "--rename", "W=dense"]) == 0
    got = ws.load(out)
    assert list(got) == ["dense1", "b1", "dense2", "steps"]
    assert arrays_identical(got["dense1"], restored["W1"])


def test_gguf_raw_blocks_follow_a_rename_back_into_gguf(tmp_path: Path) -> None:
    assert set(sel.NAME_KEYED) == {gguf_codec.QUANT_KEY, gguf_codec.DTYPES_KEY}
    with warnings.catch_warnings():
        warnings.simplefilter("error", ws.LossyWarning)
        raw = ws.load(GGUF / "quant.gguf", dequantize=False)
    assert "blk.0.ffn_down.weight" in json.loads(raw.metadata[gguf_codec.QUANT_KEY])
    out = tmp_path / "renamed.gguf"
    ws.save(raw, out, rename=["blk.0.=layers.0."])
    types = json.loads(ws.load(out, dequantize=False).metadata[gguf_codec.QUANT_KEY])
    assert types["layers.0.ffn_down.weight"] == "Q4_K"
    assert not any(name.startswith("blk.0.") for name in types)
    with pytest.warns(ws.LossyWarning):
        a, b = ws.load(GGUF / "quant.gguf"), ws.load(out)
    assert [n.replace("blk.0.", "layers.0.") for n in a] == list(b)
    for name in a:
        assert arrays_identical(a[name], b[name.replace("blk.0.", "layers.0.")]), name
