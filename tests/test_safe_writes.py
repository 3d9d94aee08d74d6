"""Writes harm nothing but their own output, and what reaches a terminal is escaped
(issue 12): a sharded save removes only shards it can prove it wrote; a full disk, a
file-size limit or a permission error is one line and leaves no temporary file; SIGTERM
and SIGHUP clean up like Ctrl-C; CSV names that a spreadsheet would run are neutralised
and read back exactly.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

import weightstore as ws
from weightstore import fileio
from weightstore.codecs.csv_codec import guard, unguard


def _temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(fileio.TEMP_SUFFIX)]


def _weights(n: int = 2) -> ws.Weights:
    return ws.Weights({f"t{i}": np.full(1000, i, np.float32) for i in range(n)})


# --- a sharded save deletes only its own earlier shards -------------------------------


def test_sharded_save_does_not_delete_what_an_old_index_names(tmp_path: Path) -> None:
    ws.save(_weights(), tmp_path / "m.npz", max_shard_size=4000)
    index = tmp_path / "m.npz.index.json"
    victims = {"victim.txt": b"precious", "m-00001-of-00009.npz.bak": b"backup",
               "other-00001-of-00002.npz": b"another model's shard"}
    for name, data in victims.items():
        (tmp_path / name).write_bytes(data)
    for name in victims:  # an index (planted, or damaged) naming files that are not its own
        doc = orjson.loads(index.read_bytes())
        doc["weight_map"]["t0"] = name
        index.write_bytes(orjson.dumps(doc))
        ws.save(_weights(), tmp_path / "m.npz", max_shard_size=1 << 20)
    for name, data in victims.items():
        assert (tmp_path / name).read_bytes() == data, name


def test_sharded_save_removes_its_own_stale_shards(tmp_path: Path) -> None:
    ws.save(_weights(3), tmp_path / "m.npz", max_shard_size=4000)
    assert (tmp_path / "m-00003-of-00003.npz").exists()
    ws.save(_weights(3), tmp_path / "m.npz", max_shard_size=1 << 20)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["m-00001-of-00001.npz", "m.npz.index.json"], left


# --- full disk, size limit, permission ------------------------------------------------


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EIO])
def test_a_refused_write_is_one_line_and_leaves_nothing(code: int, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fileio.os, "fsync", refuse)
    for dest in (tmp_path / "w.npz", tmp_path / "w.h5"):
        with pytest.raises(ws.errors.FileAccessError) as e:
            ws.save(_weights(), dest)
        assert str(dest) in str(e.value) and os.strerror(code) in str(e.value)
        assert "\n" not in str(e.value)
    with pytest.raises(ws.errors.FileAccessError):
        ws.save(_weights(), tmp_path / "s.npz", max_shard_size=4000)
    assert sorted(os.listdir(tmp_path)) == []


def test_file_size_limit_is_one_line_on_the_command_line(tmp_path: Path) -> None:
    src = tmp_path / "w.npz"
    ws.save(ws.Weights({"W": np.ones(1 << 20, np.float32)}), src)  # 4 MiB

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    for out in ("w.json", "w.h5", "w.safetensors"):
        done = subprocess.run([sys.executable, "-m", "weightstore.cli.main", "convert",
                               str(src), str(tmp_path / out)], capture_output=True,
                              text=True, preexec_fn=limit, timeout=300, check=False)
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "File too large" in lines[0], done.stderr
        assert sorted(os.listdir(tmp_path)) == ["w.npz"]


# --- signals --------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signal_during_convert_removes_the_temporary(sig: int, tmp_path: Path) -> None:
    src = tmp_path / "w.npz"
    ws.save(ws.Weights({f"W{i}": np.random.default_rng(i).normal(size=1 << 20)
                        .astype(np.float32) for i in range(8)}), src)  # JSON: slow to write
    out = tmp_path / "out"
    out.mkdir()
    child = subprocess.Popen([sys.executable, "-m", "weightstore.cli.main", "convert",
                              str(src), str(out / "w.json")], stderr=subprocess.PIPE,
                             text=True)
    deadline = time.monotonic() + 120
    while not _temporaries(out):
        assert child.poll() is None, "convert finished before the signal"
        assert time.monotonic() < deadline, "no temporary file appeared"
        time.sleep(0.01)
    child.send_signal(sig)
    _, err = child.communicate(timeout=120)
    assert child.returncode in (128 + sig, 130), (child.returncode, err)
    assert len(err.strip().splitlines()) == 1, err
    assert os.listdir(out) == [], os.listdir(out)


class _Stop(BaseException):
    pass


@pytest.mark.parametrize("at", ["temporary made", "writing", "written"])
def test_a_signal_at_any_step_of_staging_leaves_no_temporary(
        at: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A signal whose handler raises (the command line's SIGTERM/SIGHUP, Ctrl-C) may land
    the moment the temporary file exists but before the writer knows its name, in the
    middle of the writing, or just after it: the temporary is removed every time."""
    def stop(signum, frame):  # type: ignore[no-untyped-def]
        raise _Stop()

    old = signal.signal(signal.SIGTERM, stop)
    try:
        if at == "temporary made":
            made = fileio.temporary_beside

            def signalled(dest):  # type: ignore[no-untyped-def]
                got = made(dest)
                os.kill(os.getpid(), signal.SIGTERM)  # handled at the next bytecode
                return got

            monkeypatch.setattr(fileio, "temporary_beside", signalled)
        if at == "written":  # after the block, before the commit's rename
            commit = fileio.StagedFiles.commit

            def signalled_commit(self):  # type: ignore[no-untyped-def]
                os.kill(os.getpid(), signal.SIGTERM)
                commit(self)

            monkeypatch.setattr(fileio.StagedFiles, "commit", signalled_commit)
        with pytest.raises(_Stop), fileio.atomic_write(tmp_path / "w.bin") as f:
            f.write(b"x" * 1000)
            if at == "writing":
                os.kill(os.getpid(), signal.SIGTERM)
                f.write(b"y")
    finally:
        signal.signal(signal.SIGTERM, old)
    assert os.listdir(tmp_path) == [], os.listdir(tmp_path)


# --- output -----------------------------------------------------------------------------


def test_csv_neutralises_formulas_and_reads_them_back(tmp_path: Path) -> None:
    texts = ["=HYPERLINK(\"x\")", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "'", "'=",
             "''", "'a", "a=b", "plain", "-"]
    for t in texts:
        assert unguard(guard(t)) == t
        assert not guard(t).startswith(("=", "+", "-", "@", "\t", "\r"))
    w = ws.Weights({t.replace("\r", "r") or "x": np.zeros(1, np.float32) for t in texts},
                   metadata={t: t for t in texts})
    ws.save(w, tmp_path / "w.csv")
    for line in (tmp_path / "w.csv").read_bytes().split(b"\r\n")[1:]:
        assert line[:1] not in (b"=", b"+", b"-", b"@", b"\t"), line
    back = ws.load(tmp_path / "w.csv")
    assert back.equal(w) and back.metadata == w.metadata


def test_inspect_escapes_what_the_file_says(tmp_path: Path) -> None:
    evil = "W\x1b[2J\x1b]0;pwned\x07\r\nfake line\u202e"
    ws.save(ws.Weights({evil: np.zeros(1, np.float32)}, metadata={evil: evil}),
            tmp_path / "w.safetensors")
    for extra in ([], ["--json"]):
        done = subprocess.run([sys.executable, "-m", "weightstore.cli.main", "inspect",
                               str(tmp_path / "w.safetensors"), *extra], capture_output=True,
                              text=True, timeout=120, check=True)
        for bad in ("\x1b", "\x07", "\r", "\u202e"):
            assert bad not in done.stdout, (extra, done.stdout)
        assert "fake line" in done.stdout
        if extra:
            assert orjson.loads(done.stdout)["metadata"] == {evil: evil}


def test_an_all_empty_tensor_writes_small_json(tmp_path: Path) -> None:
    """Shape (10**12, 0) holds no value: its JSON is '[]', not 2 TB of empty lists."""
    w = ws.Weights({"E": np.zeros((10**12, 0), np.float32), "F": np.zeros((3, 0), np.int8)})
    for indent in (False, True):
        ws.save(w, tmp_path / "e.json", indent=indent)
        assert (tmp_path / "e.json").stat().st_size < 1000
        assert ws.load(tmp_path / "e.json").equal(w)
    assert b"[[],[],[]]" in (tmp_path / "e.json").read_bytes().replace(b" ", b"").replace(
        b"\n", b"")  # small nestings keep the full form older readers expect


@pytest.mark.parametrize("args", [
    ["--max-shard-size", "9" * 400 + ".5GB"],
    ["--quantize", "4/block:" + "9" * 40],
    ["--digits", "9" * 40],
    ["-o", "level=" + "9" * 40],
])
def test_oversized_numbers_on_the_command_line_are_one_line(args: list[str],
                                                           tmp_path: Path) -> None:
    src = tmp_path / "w.npz"
    ws.save(_weights(), src)
    out = "w.zst" if args[0] == "-o" else "w.json"
    done = subprocess.run([sys.executable, "-m", "weightstore.cli.main", "convert", str(src),
                           str(tmp_path / out), *args], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode in (1, 2), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
