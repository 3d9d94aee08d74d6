"""The plain JSON layout ({name: nested lists}) and JSON's shortest decimals for 0-d tensors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import weightstore as ws
from weightstore.cli.main import main


def test_reads_what_json_dump_of_a_state_dict_gives(tmp_path: Path) -> None:
    p = tmp_path / "sd.json"
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((3, 4)).astype(np.float32)
    p.write_text(json.dumps({"W1": w1.tolist(), "b1": [1, 2, 3], "lr": 0.5, "empty": []}))
    w = ws.load(p)
    assert list(w) == ["W1", "b1", "lr", "empty"]
    assert all(w[k].dtype == np.float32 for k in w)
    assert np.array_equal(w["W1"], w1) and w["lr"].shape == () and w["empty"].shape == (0,)
    assert ws.load(p, dtype="float64")["W1"].dtype == np.float64


def test_ragged_or_non_numeric_plain_json_is_a_format_error(tmp_path: Path) -> None:
    p = tmp_path / "bad.json"
    p.write_text('{"W": [[1, 2], [3]]}')
    with pytest.raises(ws.FormatError, match="'W'"):
        ws.load(p)
    p.write_text('{"W": [1, {"x": 2}]}')
    with pytest.raises(ws.FormatError):
        ws.load(p)


def test_writes_plain_json_that_json_load_reads_back_exactly(tmp_path: Path) -> None:
    w = {"a/W": np.float32([[0.1, -2.5], [1e-45, 3.4e38]]), "s": np.float32(0.1)}
    p = tmp_path / "plain.json"
    with pytest.warns(UserWarning, match="'note'"):
        ws.save(ws.Weights(w, metadata={"note": "x"}), p, layout="plain")
    doc = json.loads(p.read_text())
    assert doc == {"a/W": [[0.1, -2.5], [1e-45, 3.4e38]], "s": 0.1}
    back = ws.load(p)
    assert all(np.array_equal(back[k], v) for k, v in w.items())
    assert main(["convert", str(p), str(tmp_path / "x.json"), "-o", "layout=plain",
                 "-q"]) == 0
    assert (tmp_path / "x.json").read_bytes() == p.read_bytes()


@pytest.mark.parametrize("layout", ["weightstore", "plain"])
@pytest.mark.parametrize("indent", [False, True])
def test_a_0d_float32_is_its_shortest_decimal(tmp_path: Path, layout: str, indent: bool) -> None:
    # docs/formats.md: floats are "the shortest decimal that reads back to the identical
    # value of that dtype"; a 0-d float32 0.1 was written 0.10000000149011612
    p = tmp_path / "s.json"
    ws.save({"s": np.float32(0.1), "h": np.float16(0.1)}, p, layout=layout, indent=indent)
    text = p.read_text()
    assert "0.10000000149011612" not in text and "0.0999755859375" not in text
    assert ws.load(p)["s"] == np.float32(0.1)
