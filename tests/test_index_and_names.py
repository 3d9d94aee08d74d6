"""Damaged shard indexes and invalid tensor names in a file are refused naming the field;
the diff command's option errors and its dtype/metadata lines; --storage-options."""

from __future__ import annotations

import io
import warnings
import zipfile
from pathlib import Path

import numpy as np
import orjson
import pytest

import weightstore as ws
from weightstore.cli.convert_many import storage_options_arg
from weightstore.cli.main import main
from weightstore.errors import OptionError

# --- shard indexes --------------------------------------------------------------------


def _sharded(tmp_path: Path) -> Path:
    return Path(ws.save({f"w{i}": np.full(30, i, np.float32) for i in range(4)},
                        tmp_path / "m.npz", max_shard_size=200))


@pytest.mark.parametrize(("change", "message"), [
    (lambda doc: b"{not json", "shard index is not JSON"),
    (lambda doc: orjson.dumps([1]), "weight_map: expected a shard index: an object with a "
                                    "'weight_map' object, found list"),
    (lambda doc: orjson.dumps({"metadata": {}}), "weight_map: expected a shard index.*found "
                                                 "\\['metadata'\\]"),
    (lambda doc: orjson.dumps({**doc, "weight_map": {}}), "weight_map: expected at least one "
                                                          "tensor, found {}"),
    (lambda doc: orjson.dumps({**doc, "metadata": [1]}), "metadata: expected an object, "
                                                         "found list"),
    (lambda doc: orjson.dumps({**doc, "metadata": {"total_size": -1}}),
     "metadata.total_size: expected a non-negative integer, found -1"),
    (lambda doc: orjson.dumps({**doc, "weight_map": {**doc["weight_map"], "w0": "../x.npz"}}),
     "weight_map\\['w0'\\]: expected a file name in the index's folder"),
    (lambda doc: orjson.dumps({**doc, "weight_map": {**doc["weight_map"],
                                                     "w0": "m.npz.index.json"}}),
     "weight_map\\['w0'\\]: expected a shard file, not an index"),
])
def test_a_damaged_index_names_the_field(tmp_path: Path, change, message: str) -> None:
    index = _sharded(tmp_path)
    index.write_bytes(change(orjson.loads(index.read_bytes())))
    with pytest.raises(ws.FormatError, match=message) as e:
        ws.load(index)
    assert str(index) in str(e.value)


def test_an_index_with_null_metadata_reads(tmp_path: Path) -> None:
    index = _sharded(tmp_path)
    doc = orjson.loads(index.read_bytes())
    index.write_bytes(orjson.dumps({**doc, "metadata": None}))
    assert list(ws.load(index)) == ["w0", "w1", "w2", "w3"]


def test_an_index_mapping_more_tensors_than_the_limit_is_refused(tmp_path: Path) -> None:
    index = _sharded(tmp_path)
    with pytest.raises(ws.FormatError, match="weight_map: expected at most 3 tensors, found 4"):
        ws.load(index, limits=ws.Limits(max_tensors=3))


def test_a_sharded_model_opened_lazily_names_only_its_tensors(tmp_path: Path) -> None:
    index = _sharded(tmp_path)
    with ws.open(index) as lazy:
        assert len(lazy) == 4 and np.array_equal(lazy["w2"], np.full(30, 2, np.float32))
        with pytest.raises(KeyError):
            lazy["nope"]


# --- tensor names a file may hold ---------------------------------------------------------


def _npz_with(path: Path, names: list[str]) -> Path:
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as z:
        warnings.simplefilter("ignore")  # zipfile warns of a duplicate name: the point here
        for name in names:
            buf = io.BytesIO()
            np.save(buf, np.zeros(2))
            z.writestr(name + ".npy", buf.getvalue())
    return path


@pytest.mark.parametrize(("names", "message"), [
    (["a", "a"], "tensor name 'a': expected unique names, found twice"),
    (["a", "a/b"], "tensor name 'a/b': expected 'a' to be a group, not also a tensor"),
    (["a//b"], "tensor name 'a//b': expected non-empty '/'-separated parts"),
    (["x/"], "tensor name 'x/': expected non-empty"),
])
def test_a_file_with_invalid_names_is_refused_lazily_and_whole(tmp_path: Path,
                                                               names: list[str],
                                                               message: str) -> None:
    path = _npz_with(tmp_path / "n.npz", names)
    for read in (ws.open, ws.load):
        with pytest.raises(ws.FormatError, match=message) as e:
            read(path)
        assert str(path) in str(e.value)


# --- the diff command ----------------------------------------------------------------------


def test_diff_option_errors(tmp_path: Path, capsys) -> None:
    a = tmp_path / "a.npz"
    ws.save({"x": np.zeros(2)}, a)
    assert main(["diff", str(a), str(a), "--atol", "-1"]) == 1
    assert "--atol/--rtol: expected non-negative numbers, found -1.0, 0.0" in \
        capsys.readouterr().err
    assert main(["diff", "-", "-"]) == 1
    assert "A and B: expected at most one '-' (stdin), found both" in capsys.readouterr().err


def test_diff_shows_dtype_changes_and_metadata_differences(tmp_path: Path, capsys) -> None:
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    ws.save(ws.Weights({"x": np.arange(3, dtype=np.float32), "big": np.full(2, 3e6)},
                       metadata={"k": "1"}), a)
    ws.save(ws.Weights({"x": np.arange(3, dtype=np.float64), "big": np.full(2, 3e6 + 1)},
                       metadata={"k": "2"}), b)
    assert main(["diff", str(a), str(b), "--ignore-dtype", "--atol", "2"]) == 0
    out = capsys.readouterr().out
    assert "float32/float64" in out  # the dtype cell shows both
    assert "metadata differs: k" in out
    assert "match within atol=2" in out
    assert main(["diff", str(a), str(b)]) == 1  # dtypes count, and 1 is more than atol 0
    assert "tensors do not match" in capsys.readouterr().out


# --- --storage-options ------------------------------------------------------------------------


def test_storage_options_must_be_a_json_object() -> None:
    assert storage_options_arg(None) is None
    assert storage_options_arg('{"anon": true}') == {"anon": True}
    with pytest.raises(OptionError, match="--storage-options: expected a JSON object, "
                                          "found unexpected"):
        storage_options_arg("{anon")
    with pytest.raises(OptionError, match="--storage-options: expected a JSON object, "
                                          "found list"):
        storage_options_arg("[1]")
