"""Entries weightstore does not hold (issue 15, item 5): skipped with one warning per file
listing each, or refused with ``strict``; plain pickle values become metadata and lists of
arrays get index names. The files are made by numpy, h5py and pickle themselves."""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

import weightstore as ws
from weightstore.cli.main import main


def _npz(tmp_path: Path) -> Path:
    path = tmp_path / "mixed.npz"
    np.savez(path, W=np.arange(6, dtype=np.float32).reshape(2, 3),
             z=np.array([1 + 2j, 3 - 1j]), labels=np.array(["cat", "dog"]),
             b=np.ones(2, np.float64))
    return path


def _h5(tmp_path: Path) -> Path:
    path = tmp_path / "mixed.h5"
    with h5py.File(path, "w") as f:
        f["dense/kernel"] = np.ones((2, 2), np.float32)
        f["dense/name"] = "the first layer"  # a variable-length string dataset
        f["dense/name"].attrs["note"] = "goes with it"
        f["tags"] = np.array([b"ab", b"cd"])  # fixed-length byte strings
        f["bias"] = np.zeros(2, np.float32)
    return path


def _pickle(tmp_path: Path) -> Path:
    path = tmp_path / "checkpoint.pkl"
    with open(path, "wb") as f:
        pickle.dump({"lr": 0.001, "epoch": 12, "arch": "mlp-50-100", "best": True,
                     "layers": [np.ones((2, 2), np.float32), np.zeros(2, np.float32)],
                     "shapes": (np.arange(3),), "opt": {"momentum": 0.9},
                     "W": np.full(3, 7, np.int64), "blob": b"\x00\x01",
                     "spectrum": np.zeros(2, np.complex64)}, f, protocol=4)
    return path


def _one_warning(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    skipped = [w for w in caught if issubclass(w.category, ws.SkippedEntriesWarning)]
    assert len(skipped) == 1, [str(w.message) for w in caught]
    return result, skipped[0].message


def test_npz_with_complex_and_string_members_loads_the_rest(tmp_path: Path) -> None:
    path = _npz(tmp_path)
    got, warning = _one_warning(ws.load, path)
    assert list(got) == ["W", "b"]
    assert np.array_equal(got["W"], np.arange(6, dtype=np.float32).reshape(2, 3))
    text = str(warning)
    assert text.startswith(f"{path}: skipped 2 entries weightstore does not hold: ")
    assert "'z' (a complex128 array of shape (2,))" in text
    assert "'labels' (a <U3 array of shape (2,))" in text
    assert "strict=True refuses such a file instead" in text
    assert warning.path == str(path)
    assert [name for name, _ in warning.entries] == ["z", "labels"]


def test_npz_strict_refuses_naming_file_entry_expected_found(tmp_path: Path) -> None:
    path = _npz(tmp_path)
    for call in (ws.load, ws.open, ws.inspect, ws.verify):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # strict refuses: it does not warn first
            with pytest.raises(ws.UnsupportedError) as info:
                call(path, strict=True)
        err = info.value
        assert err.path == str(path) and err.field == "entry 'z'"
        assert err.found == "a complex128 array of shape (2,)"
        assert "float16/32/64" in err.expected
        assert "nor are 1 more entries" in str(err)
    out = tmp_path / "out.h5"
    with pytest.raises(ws.UnsupportedError, match="entry 'z'"):
        ws.convert(path, out, strict=True)
    assert not out.exists()


def test_open_skips_lazily_too(tmp_path: Path) -> None:
    with pytest.warns(ws.SkippedEntriesWarning, match="'z'"), ws.open(_npz(tmp_path)) as lazy:
        assert lazy.lazy and list(lazy) == ["W", "b"]


def test_hdf5_string_datasets_are_skipped_with_their_attributes(tmp_path: Path) -> None:
    path = _h5(tmp_path)
    got, warning = _one_warning(ws.load, path)
    assert sorted(got) == ["bias", "dense/kernel"]
    text = str(warning)
    assert "'dense/name' (a variable-length utf-8 string dataset of shape ())" in text
    assert "'tags' (a 2-byte ascii string dataset of shape (2,))" in text
    assert not any("dense/name" in key for key in got.metadata)  # its attribute went with it
    with pytest.raises(ws.UnsupportedError) as info:
        ws.load(path, strict=True)
    assert info.value.field in ("entry 'dense/name'", "entry 'tags'")


def test_pickle_plain_values_are_metadata_lists_get_index_names(tmp_path: Path) -> None:
    path = _pickle(tmp_path)
    got, warning = _one_warning(ws.load, path)
    assert list(got) == ["layers/0", "layers/1", "shapes/0", "W"]
    assert got["layers/0"].shape == (2, 2) and got["shapes/0"].tolist() == [0, 1, 2]
    assert got.metadata == {"lr": "0.001", "epoch": "12", "arch": "mlp-50-100",
                            "best": "True", "opt/momentum": "0.9"}
    text = str(warning)
    assert "skipped 2 entries" in text
    assert "'blob' (a bytes value)" in text
    assert "'spectrum' (a complex64 array of shape (2,))" in text
    # the metadata survives a conversion, and the index names come back
    out = tmp_path / "w.safetensors"
    with pytest.warns(ws.SkippedEntriesWarning):
        ws.convert(path, out)
    back = ws.load(out)
    assert list(back) == list(got) and back.metadata["lr"] == "0.001"


def test_pickle_without_unheld_entries_loads_silently_even_strict(tmp_path: Path) -> None:
    path = tmp_path / "clean.pkl"
    with open(path, "wb") as f:
        pickle.dump({"epoch": 3, "layers": [np.ones(2)]}, f)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = ws.load(path, strict=True)
    assert list(got) == ["layers/0"] and got.metadata == {"epoch": "3"}


def test_pickle_strict_refuses(tmp_path: Path) -> None:
    path = _pickle(tmp_path)
    with pytest.raises(ws.UnsupportedError) as info:
        ws.load(path, strict=True)
    assert info.value.path == str(path) and info.value.field == "entry 'blob'"
    assert info.value.found == "a bytes value"


def test_cli_warns_in_flag_words_and_strict_is_a_one_line_error(tmp_path: Path) -> None:
    path = _npz(tmp_path)
    ok = subprocess.run([sys.executable, "-m", "weightstore.cli.main", "inspect", str(path)],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "W " in ok.stdout
    assert ok.stderr.startswith(f"weightstore: warning: {path}: skipped 2 entries")
    assert ok.stderr.count("\n") == 1 and "--strict refuses such a file instead" in ok.stderr
    for command in (["inspect"], ["stats"], ["verify"], ["convert", "--strict", "-q"]):
        argv = [*command, str(path)]
        if command[0] == "convert":
            argv.append(str(tmp_path / "out.npz"))
        else:
            argv.append("--strict")
        r = subprocess.run([sys.executable, "-m", "weightstore.cli.main", *argv],
                           capture_output=True, text=True)
        assert r.returncode == 1, (command, r.stderr)
        assert r.stderr.count("\n") == 1, r.stderr
        assert r.stderr.startswith(f"weightstore: error: {path}: entry 'z': ") \
            or (command[0] == "verify" and f"{path}: entry 'z': " in r.stderr), r.stderr
        assert "without --strict the rest loads" in r.stderr
    assert not (tmp_path / "out.npz").exists()


def test_cli_diff_strict(tmp_path: Path, capsys) -> None:
    path = _npz(tmp_path)
    with pytest.warns(ws.SkippedEntriesWarning):
        assert main(["diff", str(path), str(path)]) == 0
    assert main(["diff", str(path), str(path), "--strict"]) == 1
    assert "entry 'z'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["convert", "inspect", "stats", "diff", "verify", "eval"])
def test_strict_is_in_the_help(command: str, capsys) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--strict" in capsys.readouterr().out


def test_pickle_opened_lazily_skips_a_large_unheld_array_without_reading_it(
        tmp_path: Path) -> None:
    path = tmp_path / "big.pkl"
    with open(path, "wb") as f:  # arrays of 64 KiB and more are left in the file on open
        pickle.dump({"W": np.ones((200, 200), np.float32), "z": np.zeros(10_000, complex),
                     "lr": 0.1, "layers": [np.ones(20_000)]}, f, protocol=4)
    with pytest.warns(ws.SkippedEntriesWarning, match=r"'z' \(a complex128 array"), \
            ws.open(path) as lazy:
        assert lazy.lazy and list(lazy) == ["W", "layers/0"]
        assert lazy.metadata == {"lr": "0.1"} and lazy["layers/0"].shape == (20_000,)
