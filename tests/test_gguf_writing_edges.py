"""Writing GGUF metadata with declared types (weightstore.gguf_types): what is written, and
what is refused naming the key (once: not wrapped in a second message)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import weightstore as ws
from weightstore.codecs.gguf_codec import TYPES_KEY

pytest.importorskip("gguf", reason="writing GGUF needs the 'gguf' extra")

X = {"x": np.arange(4, dtype=np.float32)}


def _save(tmp_path: Path, metadata: dict[str, str], tensors=None) -> Path:  # type: ignore[no-untyped-def]
    out = tmp_path / "m.gguf"
    ws.save(ws.Weights(tensors or X, metadata=metadata), out)
    return out


@pytest.mark.parametrize(("metadata", "message"), [
    ({"k": "{", TYPES_KEY: '{"k": "UINT32"}'},
     "metadata 'k': expected JSON text of a UINT32 \\(weightstore.gguf_types\\), found {"),
    ({"k": "1", TYPES_KEY: '{"k": "ARRAY[UINT32]"}'},
     "metadata 'k': expected a JSON list \\(ARRAY\\[UINT32\\]\\), found 1"),
    ({"k": "[1]", TYPES_KEY: '{"k": "ARRAY[NOPE]"}'},
     "weightstore.gguf_types\\['k'\\]: expected a GGUF value type, found ARRAY\\[NOPE\\]"),
    ({"k": "1", TYPES_KEY: '{"k": "NOPE"}'},
     "weightstore.gguf_types\\['k'\\]: expected a GGUF value type, found NOPE"),
    ({"k": "[1]", TYPES_KEY: '{"k": "ARRAY"}'},
     "weightstore.gguf_types\\['k'\\]: expected a GGUF value type, found ARRAY"),
    ({TYPES_KEY: '{"k": "UINT32"}'},
     "'weightstore.gguf_types'\\['k'\\]: expected a type for a metadata key that is present"),
    ({TYPES_KEY.upper(): "x"}, "metadata key 'WEIGHTSTORE.GGUF_TYPES': expected a key unlike"),
])
def test_metadata_gguf_cannot_take_is_refused_once_naming_the_key(
        tmp_path: Path, metadata: dict[str, str], message: str) -> None:
    with pytest.raises(ws.UnsupportedError, match=message) as e:
        _save(tmp_path, metadata)
    assert str(e.value).count(str(tmp_path / "m.gguf")) == 1  # the path once, not nested
    assert "gguf cannot write this" not in str(e.value)
    assert not (tmp_path / "m.gguf").exists()


def test_typed_metadata_round_trips_nested_arrays_and_the_alignment(tmp_path: Path) -> None:
    metadata = {"nested": "[[1,2],[3]]", "general.alignment": "64",
                TYPES_KEY: json.dumps({"nested": "ARRAY[ARRAY]",
                                       "general.alignment": "UINT32"})}
    out = _save(tmp_path, metadata)
    got = ws.load(out)
    assert json.loads(got.metadata["nested"]) == [[1, 2], [3]]
    assert json.loads(got.metadata[TYPES_KEY]) == {"nested": "ARRAY[ARRAY[INT32]]",
                                                   "general.alignment": "UINT32"}
    assert got.metadata["general.alignment"] == "64"
    assert np.array_equal(got["x"], X["x"])
    gguf = pytest.importorskip("gguf")
    reader = gguf.GGUFReader(out)
    assert reader.tensors[0].data_offset % 64 == 0  # the data aligned as declared
