"""convert --no-clobber, kept permissions, '-' as stdin/stdout, errors in the caller's
words, and --include/--exclude/--rename applied while streaming."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import weightstore as ws
from weightstore import select as sel
from weightstore.cli._util import CLI_WORDS
from weightstore.cli.main import main


def _weights() -> dict[str, np.ndarray]:
    return {"enc/layer0/W": np.arange(6, dtype=np.float32).reshape(2, 3),
            "enc/layer0/b": np.ones(3, np.float32),
            "enc/layer1/W": np.full((3, 2), 2, np.float32),
            "head/W": np.zeros((2, 2), np.float64)}


def test_no_clobber_keeps_the_existing_file(tmp_path: Path, capsys) -> None:
    src = tmp_path / "w.npz"
    ws.save(_weights(), src)
    dst = tmp_path / "out.json"
    dst.write_text("precious")
    assert main(["convert", str(src), str(dst), "--no-clobber"]) == 1
    assert dst.read_text() == "precious"
    assert "no existing file" in capsys.readouterr().err
    with pytest.raises(ws.FileAccessError):
        ws.save(_weights(), dst, overwrite=False)
    assert dst.read_text() == "precious"


def test_no_clobber_is_checked_again_when_the_file_is_put_in_place(tmp_path: Path) -> None:
    # a file appearing while writing is not replaced: the commit links, never renames
    dst = tmp_path / "late.npz"
    with pytest.raises(ws.FileAccessError), ws.fileio.atomic_write(dst, replace=False) as f:
        f.write(b"new")
        dst.write_bytes(b"appeared meanwhile")
    assert dst.read_bytes() == b"appeared meanwhile"
    assert [p.name for p in tmp_path.iterdir()] == ["late.npz"]  # no temporary left


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_overwrite_keeps_permissions(tmp_path: Path) -> None:
    dst = tmp_path / "w.npz"
    ws.save(_weights(), dst)
    os.chmod(dst, 0o640)
    ws.save(_weights(), dst)
    assert stat.S_IMODE(os.stat(dst).st_mode) == 0o640
    fresh = tmp_path / "new.npz"
    ws.save(_weights(), fresh)
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o666 & ~mask


def _cli(*argv: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "weightstore.cli.main", *argv],
                          input=stdin, capture_output=True)


def test_dash_is_stdin_and_stdout(tmp_path: Path) -> None:
    src = tmp_path / "w.safetensors"
    ws.save(_weights(), src)
    r = _cli("convert", "-", "-", "--to", "npz", stdin=src.read_bytes())
    assert r.returncode == 0, r.stderr
    assert b"wrote stdout" in r.stderr
    out = tmp_path / "from_stdout.npz"
    out.write_bytes(r.stdout)
    back = ws.load(out)
    assert list(back) == list(_weights())
    assert all(np.array_equal(back[k], v) for k, v in _weights().items())
    assert not (tmp_path / "-").exists() and not Path("-").exists()
    r = _cli("convert", str(src), "-")
    assert r.returncode == 1 and b"--to FORMAT" in r.stderr
    r = _cli("inspect", "-", stdin=out.read_bytes())
    assert r.returncode == 0 and b"enc/layer0/W" in r.stdout


def test_errors_speak_keywords_in_python_and_flags_on_the_command_line(tmp_path: Path) -> None:
    w = tmp_path / "w.npz"
    ws.save(_weights(), w)
    with pytest.raises(ws.UnknownFormatError) as e:
        ws.save(_weights(), tmp_path / "w.unknown")
    assert "format=NAME" in str(e.value) and "--" not in str(e.value)
    r = _cli("convert", str(w), str(tmp_path / "w.unknown"))
    err = r.stderr.decode()
    assert r.returncode == 1 and "--to FORMAT" in err and "format=" not in err
    assert "'weightstore formats' lists them" in err
    r = _cli("convert", str(w), str(tmp_path / "x.npz"), "--quantize", "x")
    assert "--quantize" in r.stderr.decode()
    # a damaged file: the library says verify=False, the command line --no-verify
    raw = bytearray(w.read_bytes())
    at = raw.find(np.arange(6, dtype=np.float32)[1:3].tobytes())
    raw[at] ^= 1
    w.write_bytes(bytes(raw))
    with pytest.raises(ws.ChecksumError) as e:
        ws.load(w)
    assert "verify=False" in str(e.value)
    r = _cli("verify", str(w))
    err = r.stderr.decode()
    assert r.returncode == 1 and "--no-verify" in err and "verify=False" not in err
    assert all(api != cli for api, cli in CLI_WORDS)


def test_include_exclude_rename_rules() -> None:
    names = list(_weights())
    assert list(sel.selected_names(names, include=["enc/*"], exclude=["*/b"])) == \
        ["enc/layer0/W", "enc/layer1/W"]
    renamed = sel.selected_names(names, rename=["enc/=encoder.", r"re:head/(\w)=out.\1"])
    assert list(renamed) == ["encoder.layer0/W", "encoder.layer0/b", "encoder.layer1/W",
                             "out.W"]
    with pytest.raises(ws.WeightsError):
        sel.selected_names(names, rename=["re:enc/.*=x"])  # two tensors onto one name
    with pytest.raises(ws.WeightsError):
        sel.selected_names(names, include=["nothing*"])
    with pytest.raises(ws.OptionError):
        sel.parse_rename("no-equals-sign")
    with pytest.raises(ws.OptionError):
        sel.parse_rename("re:([=x")


def test_convert_selects_while_streaming(tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "w.h5"
    ws.save(_weights(), src)
    read: list[str] = []
    original = ws.LazyWeights.__getitem__

    def spy(self, name):  # type: ignore[no-untyped-def]
        read.append(name)
        return original(self, name)

    monkeypatch.setattr(ws.LazyWeights, "__getitem__", spy)
    dst = tmp_path / "part.safetensors"
    assert main(["convert", str(src), str(dst), "-q", "--include", "enc/*", "--exclude",
                 "*/b", "--rename", "enc/=encoder/"]) == 0
    assert ws.load(dst).keys() == {"encoder/layer0/W", "encoder/layer1/W"}
    assert np.array_equal(ws.load(dst)["encoder/layer1/W"], _weights()["enc/layer1/W"])
    assert sorted(set(read)) == ["encoder/layer0/W", "encoder/layer1/W"]  # never head/W
    with ws.open(src) as lazy:
        view = sel.select(lazy, include=["head/*"])
        assert isinstance(view, ws.LazyWeights) and view.lazy and list(view) == ["head/W"]
        assert view.info("head/W").dtype == np.float64
    back = ws.load(ws.save(_weights(), tmp_path / "s.npz", exclude=["enc/*"]))
    assert list(back) == ["head/W"]
