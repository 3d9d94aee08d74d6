"""The .npy codec (one array, named after the file) and the gzip layer.

The shared suite (test_codecs.py) runs both; these are what is particular to them:
numpy reading what we write and the reverse, the name, the refusals, and the ``gzip``
command restoring the inner file.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import weightstore as ws
from weightstore.model import arrays_identical


def test_numpy_files_read_with_their_layout(tmp_path: Path) -> None:
    arrays = {"c": np.arange(12, dtype=np.int16).reshape(3, 4),
              "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
              "big": np.arange(5, dtype=">f4"), "scalar": np.array(7, dtype=np.uint64),
              "empty": np.zeros((0, 4), dtype=np.float32), "flags": np.array([True, False])}
    for name, array in arrays.items():
        path = tmp_path / f"{name}.npy"
        np.save(path, array)
        got = ws.load(path)
        assert list(got) == [name] and arrays_identical(array, got[name])
        with ws.open(path) as lazy:  # memory-mapped where it can be
            assert arrays_identical(array, lazy[name])


def test_numpy_reads_what_we_write_and_the_name_is_the_stem(tmp_path: Path) -> None:
    array = np.arange(6, dtype=">i8").reshape(2, 3)
    path = tmp_path / "fc1.weight.npy"
    ws.save({"fc1.weight": array}, path)
    assert arrays_identical(np.load(path, allow_pickle=False), array)
    assert list(ws.load(path)) == ["fc1.weight"]
    assert list(ws.load(tmp_path / "fc1.weight.npy")) == ["fc1.weight"]


def test_npy_refuses_several_tensors_and_warns_of_what_it_cannot_keep(tmp_path: Path) -> None:
    with pytest.raises(ws.UnsupportedError, match=r"exactly one .*found 2"):
        ws.save({"a": np.zeros(1), "b": np.zeros(1)}, tmp_path / "w.npy")
    with pytest.warns(ws.LossyWarning, match=r"the name 'a' .*'w'.*metadata \['k'\]"):
        ws.save(ws.Weights({"a": np.zeros(1)}, {"k": "v"}), tmp_path / "w.npy")


def test_object_arrays_are_refused_without_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(ws.FormatError, match="object arrays need pickle"):
        ws.load(path)


def test_trailing_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.npy"
    np.save(path, np.arange(4.0))
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(ws.FormatError, match=r"32 bytes .*found 33 bytes"):
        ws.load(path)


@pytest.mark.parametrize("inner", [".json", ".csv", ".npz", ".pt", ".npy"])
def test_gzip_layer_is_plain_gzip(inner: str, tmp_path: Path) -> None:
    weights = ws.Weights({"w": np.arange(12, dtype=np.float32).reshape(3, 4) / 7})
    path = tmp_path / f"w{inner}.gz"
    ws.save(weights, path)
    plain = tmp_path / f"plain{inner}"
    plain.write_bytes(gzip.decompress(path.read_bytes()))
    got = ws.load(plain)
    assert arrays_identical(got[list(got)[0]], weights["w"])
    assert ws.load(path).equal(weights)
    with ws.open(path) as lazy:
        assert lazy.format == f"gzip({inner[1:].replace('pt', 'pytorch')})"


@pytest.mark.skipif(shutil.which("gzip") is None, reason="no gzip command on this machine")
def test_gzip_command_restores_the_inner_file(tmp_path: Path) -> None:
    path = tmp_path / "w.csv.gz"
    ws.save({"w": np.arange(3.0)}, path)
    subprocess.run(["gzip", "-d", str(path)], check=True)
    assert ws.load(tmp_path / "w.csv")["w"].tolist() == [0.0, 1.0, 2.0]
    subprocess.run(["gzip", "-k", str(tmp_path / "w.csv")], check=True)  # the tool's own
    assert ws.load(tmp_path / "w.csv.gz")["w"].tolist() == [0.0, 1.0, 2.0]


def test_gzip_damage_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "w.json.gz"
    ws.save({"w": np.arange(100.0)}, path)
    data = bytearray(path.read_bytes())
    data[-6] ^= 1  # the stored size
    path.write_bytes(bytes(data))
    with pytest.raises(ws.ChecksumError, match="w.json.gz"):
        ws.load(path)
