"""torch and Keras loading our files, checked without them (see tests/tool_verdicts.py).

Each case writes our files with today's writer; they must be byte-identical to the files
the real tool loaded when the record was made, and what the tool loaded (recorded) must
be today's source tensors and metadata. The live versions of these checks are
tests/test_pytorch_torch.py (marker ``torch``) and the ``keras``-marked test of
tests/test_keras.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tool_verdicts as tv

import weightstore as ws

RERUN = {"torch": "PYTHONPATH=. /work/venv-torch/bin/python tests/data/pytorch/torch_loads_ours.py",
         "keras": "KERAS_BACKEND=torch PYTHONPATH=. python tests/data/keras/keras_loads_ours.py"}
CASES = ([("torch", name) for name in tv.TORCH_CASES]
         + [("keras", name) for name in tv.KERAS_CASES])


def _record(tool: str) -> dict:
    return tv.load_record(tv.TORCH_RECORD if tool == "torch" else tv.KERAS_RECORD)


@pytest.mark.parametrize(("tool", "case"), CASES)
def test_our_files_are_the_ones_the_tool_loaded(tool: str, case: str, tmp_path: Path,
                                               data_dir: Path) -> None:
    make = (tv.TORCH_CASES if tool == "torch" else tv.KERAS_CASES)[case]
    written = make(tmp_path, data_dir)
    recorded = _record(tool)["cases"][case]
    assert written.hashes(tmp_path) == recorded["files"], (
        f"weightstore now writes other bytes than the {tool} verdict was recorded for; "
        f"run `{RERUN[tool]}` with {tool} installed to have it load them")
    source = tv.view(written.source)
    if tool == "keras":  # Keras names a nested block differently when it loads a file:
        # the names must be those it gives its own legacy.h5, the values expected.npz's
        assert [t[0] for t in recorded["tensors"]] == [t[0] for t in
                                                       recorded["keras_own_file"]]
        assert recorded["tensors"] == recorded["keras_own_file"]
        assert [t[1:] for t in recorded["tensors"]] == [t[1:] for t in source]
    else:
        assert recorded["tensors"] == source
    assert recorded["metadata"] == written.metadata


def test_the_corpus_torch_loaded_holds_every_dtype_and_layout() -> None:
    """The committed corpus.pt is the input of the "corpus" case: it must still hold
    every dtype the corpus has (bfloat16 included), so the verdict covers them all."""
    dtypes = {t[1] for t in tv.view(ws.load(tv.TORCH_CORPUS))}
    assert {"bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
            "float16", "float32", "float64", "bfloat16"} <= dtypes


@pytest.mark.parametrize("tool", ["torch", "keras"])
def test_the_record_names_the_tool_and_how_it_loaded(tool: str) -> None:
    record = _record(tool)
    assert record["tool"].startswith(f"{tool} ")
    assert "load" in record["loaded_with"]
    assert (tv.TESTS.parent / record["made_by"]).is_file()
    assert set(record["cases"]) == set(tv.TORCH_CASES if tool == "torch" else tv.KERAS_CASES)


def test_digest_sees_bits_and_byte_order() -> None:
    a = np.array([0.0, 1.5], "<f4")
    assert tv.digest(a) == tv.digest(a.astype(">f4"))  # byte order is not content
    assert tv.digest(a) != tv.digest(np.array([-0.0, 1.5], "<f4"))  # -0.0 is
    assert tv.digest(a) != tv.digest(a.astype("f8"))
    assert tv.digest(a)[:2] == ["float32", [2]]
    assert json.loads(json.dumps(tv.digest(a))) == tv.digest(a)
