"""ONNX initializers from models made by onnx (tests/data/onnx/make_onnx.py): every type
exact, raw and typed fields, external data resolved only inside the model's folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import weightstore as ws
from weightstore.model import arrays_identical

DATA = Path(__file__).resolve().parent / "data" / "onnx"
onnx = pytest.importorskip("onnx")  # the codec's extra; the test extra installs it


def _expected() -> dict[str, np.ndarray]:
    import ml_dtypes

    with np.load(DATA / "expected.npz") as z:
        out = {k: z[k] for k in z.files}
    out["bf16"] = out["bf16"].view(ml_dtypes.bfloat16)
    return out


@pytest.mark.parametrize("file", ["model.onnx", "with_external.onnx"])
def test_initializers_equal_onnxs_own_arrays(file: str) -> None:
    got = ws.load(DATA / file)
    expected = _expected()
    assert list(got) == list(expected)  # the graph's order
    for name, array in expected.items():
        assert got[name].dtype == array.dtype and arrays_identical(got[name], array), name
    assert got.metadata["author"] == "tests" and got.metadata["note"] == "héllo"
    assert got.metadata["onnx.producer_name"] == "weightstore-fixture"
    assert got.metadata["onnx.opset_import"] == '{"": 17}'


def test_onnx_converts_to_safetensors_exactly(tmp_path: Path) -> None:
    out = tmp_path / "w.safetensors"
    ws.convert(DATA / "with_external.onnx", out)
    got, expected = ws.load(out), _expected()
    for name, array in expected.items():
        assert arrays_identical(got[name], array), name


def _with_location(tmp_path: Path, location: str) -> Path:
    model = onnx.load(DATA / "with_external.onnx", load_external_data=False)
    for t in model.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = location
    folder = tmp_path / "models"
    folder.mkdir(exist_ok=True)
    path = folder / "m.onnx"
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin",
                                      "link.bin"])
def test_external_data_outside_the_models_folder_is_refused(tmp_path: Path,
                                                            location: str) -> None:
    secret = tmp_path / "secret.bin"
    shutil.copy(DATA / "with_external.bin", secret)  # readable data, just not allowed
    path = _with_location(tmp_path, location)
    (path.parent / "link.bin").symlink_to(secret)  # a link out of the folder
    with pytest.raises(ws.UnsafeFileError, match="inside the model's folder") as e:
        ws.load(path)
    assert "m.onnx" in str(e.value)


def test_external_data_inside_the_folder_through_a_subfolder_loads(tmp_path: Path) -> None:
    path = _with_location(tmp_path, "data/w.bin")
    (path.parent / "data").mkdir()
    shutil.copy(DATA / "with_external.bin", path.parent / "data" / "w.bin")
    assert arrays_identical(ws.load(path)["fc.weight"], _expected()["fc.weight"])


def test_external_data_shorter_than_claimed_is_refused(tmp_path: Path) -> None:
    path = _with_location(tmp_path, "w.bin")
    (path.parent / "w.bin").write_bytes((DATA / "with_external.bin").read_bytes()[:40])
    with pytest.raises(ws.FormatError, match="external data"):
        ws.load(path)


def test_types_weightstore_cannot_hold_are_named(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph([], "g", [], [], initializer=[
        helper.make_tensor("words", TensorProto.STRING, [1], [b"hi"])])
    path = tmp_path / "s.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    with pytest.raises(ws.UnsupportedError, match="'words'.*STRING"):
        ws.load(path)


def test_onnx_is_found_by_content_and_is_read_only(tmp_path: Path) -> None:
    misnamed = tmp_path / "model.bin"
    shutil.copy(DATA / "model.onnx", misnamed)
    assert ws.inspect(misnamed).format == "onnx"
    with pytest.raises(ws.UnsupportedError, match="read only"):
        ws.save({"a": np.zeros(1)}, tmp_path / "x.onnx")
