"""Keras files made by Keras 3 (tests/data/keras/make_keras.py) read without keras, named
and ordered as Keras names them; HDF5 attributes (layer_names, weight_names, model_config)
kept through HDF5 -> HDF5 and as metadata elsewhere."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

import weightstore as ws
from weightstore.model import arrays_identical

DATA = Path(__file__).resolve().parent / "data" / "keras"


def _expected() -> dict[str, np.ndarray]:
    with np.load(DATA / "expected.npz") as z:
        return {k.split(":", 1)[1]: z[k] for k in sorted(z.files)}  # "00:small/dense/kernel"


@pytest.mark.parametrize("file,fmt", [("small.weights.h5", None), ("small.keras", None),
                                      ("legacy.h5", "keras")])
def test_keras_names_in_the_models_order_with_exact_values(file: str, fmt: str | None) -> None:
    got = ws.load(DATA / file, fmt)
    expected = _expected()
    assert list(got)[: len(expected)] == list(expected)  # Keras's variable.path, model order
    for name, array in expected.items():
        assert arrays_identical(got[name], array), name
    optimizer = list(got)[len(expected):]
    assert optimizer == (["optimizer_weights/sgd/iteration", "optimizer_weights/sgd/learning_rate"]
                         if file == "legacy.h5" else ["optimizer/vars/0", "optimizer/vars/1"])


def test_keras_archive_is_never_taken_for_npz(tmp_path: Path) -> None:
    misnamed = tmp_path / "model.npz"
    shutil.copy(DATA / "small.keras", misnamed)
    with ws.open(misnamed) as lazy:
        assert lazy.format == "keras" and lazy.lazy
        assert "keras.config" in lazy.metadata and "small/head/bias" in lazy
    assert ws.inspect(DATA / "small.keras").format == "keras"


def test_weights_h5_content_is_plain_hdf5_unless_the_name_says_keras(tmp_path: Path) -> None:
    plain = tmp_path / "w.h5"
    shutil.copy(DATA / "small.weights.h5", plain)
    assert "layers/dense/vars/0" in ws.load(plain)  # HDF5 paths as stored
    assert "small/dense/kernel" in ws.load(plain, "keras")


def test_tf_keras_style_names_lose_their_colon_zero(tmp_path: Path) -> None:
    """The TF-Keras 2 naming (weight_names 'dense/kernel:0', fixed-length byte attributes),
    laid out here with h5py as that writer lays it out (TensorFlow is not installed)."""
    path = tmp_path / "tf.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([b"dense", b"flatten"])
        f.attrs["keras_version"] = b"2.15.0"
        g = f.create_group("dense")
        g.attrs["weight_names"] = np.array([b"dense/kernel:0", b"dense/bias:0"])
        g["dense/kernel:0"] = np.ones((2, 3), np.float32)
        g["dense/bias:0"] = np.zeros(3, np.float32)
        f.create_group("flatten").attrs["weight_names"] = np.array([], dtype="S1")
    got = ws.load(path, "keras")
    assert list(got) == ["dense/kernel", "dense/bias"]
    again = tmp_path / "again.h5"
    ws.convert(path, again, compression="gzip")
    with h5py.File(path) as a, h5py.File(again) as b:
        assert _all_attrs(a) == _all_attrs(b)


def _all_attrs(f: h5py.File) -> dict[str, dict[str, object]]:
    out = {"/": {k: _plain(v) for k, v in f.attrs.items() if not k.startswith("weightstore.")}}

    def visit(name: str, obj: object) -> None:
        out[name] = {k: _plain(v) for k, v in obj.attrs.items()  # type: ignore[attr-defined]
                     if not k.startswith("weightstore.")}
    f.visititems(visit)
    return out


def _plain(value: object) -> object:
    """An attribute's dtype, shape and value; scalar text as text (a root scalar text
    attribute is metadata, written back as fixed-length UTF-8, whatever it was stored as)."""
    if isinstance(value, bytes | str):
        return ("text", (), value.decode() if isinstance(value, bytes) else value)
    array = np.asarray(value)
    return (array.dtype.str if array.dtype.kind != "O" else "O", array.shape, array.tolist())


@pytest.mark.parametrize("via", [None, "safetensors", "json"])
def test_keras2_attributes_survive_recompression_and_other_formats(tmp_path: Path,
                                                                    via: str | None) -> None:
    src = DATA / "legacy.h5"
    out = tmp_path / "gz.h5"
    if via is None:
        ws.convert(src, out, compression="gzip")
    else:
        mid = tmp_path / f"mid.{via}"
        ws.convert(src, mid)
        assert "hdf5.attrs:/model_weights" in ws.load(mid).metadata
        ws.convert(mid, out, compression="gzip")
    with h5py.File(src) as a, h5py.File(out) as b:
        assert _all_attrs(a) == _all_attrs(b)  # every attribute, its dtype, shape and value
        assert set(a["model_weights"]) == set(b["model_weights"])  # layers without weights too
        assert b["model_weights/dense/small/dense/kernel"].compression == "gzip"
    original, again = ws.load(src, "keras"), ws.load(out, "keras")
    assert list(original) == list(again)
    for name in original:
        assert arrays_identical(original[name], again[name]), name


@pytest.mark.keras  # opt-in (pyproject addopts); recorded for CI in tests/test_tool_verdicts.py
def test_keras_itself_loads_the_recompressed_legacy_file(tmp_path: Path) -> None:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    out = tmp_path / "gz.h5"
    ws.convert(DATA / "legacy.h5", out, compression="gzip")
    model = keras.saving.load_model(out, compile=False)  # compile=True fails on Keras's own
    reference = keras.saving.load_model(DATA / "legacy.h5", compile=False)  # file as well
    assert [w.path for w in model.weights] == [w.path for w in reference.weights]
    for a, b in zip(model.weights, reference.weights, strict=True):
        assert np.array_equal(np.asarray(a.numpy()), np.asarray(b.numpy()))


def test_keras_is_read_only(tmp_path: Path) -> None:
    with pytest.raises(ws.UnsupportedError, match="read only"):
        ws.save({"a": np.zeros(2)}, tmp_path / "x.keras")
    assert not (tmp_path / "x.keras").exists()
