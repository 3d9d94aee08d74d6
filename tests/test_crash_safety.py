"""Crash-safe writes: SIGKILL in the middle of weightstore.save never leaves a partial file,
and the next successful write removes the temporary files killed writers left.

The kill test forks a child that saves a ~4 MB file (eight tensors, so the data goes out
in eight writes) over an existing one and kills it with SIGKILL at a random moment, 100
times in a row. Most kills come at a random byte of the data (the child tells the parent
when it passes that byte and carries on writing; the parent kills after a random delay of
up to 2 ms), and some of them must leave a partly written temporary file behind; some
come exactly between the fsync and the rename, or just after the rename. After every kill the
destination must load as the complete old weights or the complete new ones.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import weightstore as ws
import weightstore.fileio as fileio
from weightstore.codecs.npz import NpzCodec
from weightstore.testing import same_content

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the kill test forks")

KILLS = 100


def _weights(seed: int) -> ws.Weights:
    rng = np.random.default_rng(seed)
    tensors = {f"W{j}": rng.standard_normal((64, 2000)).astype(np.float32)  # 8 x 512 KB
               for j in range(8)}
    tensors["b1"] = rng.standard_normal(2000).astype(np.float32)
    return ws.Weights(tensors, metadata={"version": str(seed)})


def _temporaries(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir()
                  if p.name.startswith(f".{dest.name}.") and p.name.endswith(fileio.TEMP_SUFFIX))


class _Counting:
    """A file object that calls *reached* once its written byte count passes *at*."""

    def __init__(self, f: Any, at: int, reached: Any) -> None:
        self._f, self._at, self._reached, self._count = f, at, reached, 0

    def write(self, data: Any) -> int:
        n = self._f.write(data)
        before = self._count
        self._count += len(memoryview(data).cast("B"))
        if before <= self._at < self._count:
            self._reached()
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def _child(dest: Path, weights: ws.Weights, phase: str, at: int, pipe: int) -> None:
    """In the forked child: save *weights* to *dest*, telling the parent when to kill."""
    def reached() -> None:
        os.write(pipe, b"k")

    def block() -> None:
        reached()
        time.sleep(60)  # the parent kills us here

    if phase == "data":
        original = NpzCodec.write

        def write(self: NpzCodec, w: ws.Weights, fileobj: Any, *, path: str) -> None:
            original(self, w, _Counting(fileobj, at, reached), path=path)

        NpzCodec.write = write  # type: ignore[method-assign]
    else:
        real_replace = os.replace

        def replace(src: Any, dst: Any) -> None:
            if phase == "before rename":
                block()
            real_replace(src, dst)
            if phase == "after rename":
                block()

        fileio.os.replace = replace  # type: ignore[assignment]
    ws.save(weights, dest)


def _kill_during_save(dest: Path, weights: ws.Weights, phase: str, at: int,
                      delay: float) -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read)
            _child(dest, weights, phase, at, write)
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    try:
        os.read(read, 1)  # "now": or b"" if the child finished or failed first
        if delay:
            time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
    finally:
        os.close(read)
        os.waitpid(pid, 0)


def test_sigkill_during_save_leaves_the_old_or_the_new_file_100_times(tmp_path: Path) -> None:
    dest = tmp_path / "w.npz"
    versions = [_weights(1), _weights(2)]
    ws.save(versions[0], dest)
    size = dest.stat().st_size
    assert size > 4_000_000  # ~4 MB
    rng = random.Random(8)
    current = 0
    outcomes = {"old": 0, "new": 0}
    cut_short = 0  # kills in the data that left a temporary shorter than the whole file
    for i in range(KILLS):
        new = 1 - current
        phase = rng.choice(["data"] * 8 + ["before rename", "after rename"])
        before = set(_temporaries(dest))
        _kill_during_save(dest, versions[new], phase, at=rng.randrange(size),
                          delay=rng.uniform(0, 0.002) if phase == "data" else 0)
        left = set(_temporaries(dest)) - before
        cut_short += phase == "data" and any((tmp_path / n).stat().st_size < size for n in left)
        got = ws.load(dest)
        if same_content(got, versions[current]):
            outcomes["old"] += 1
            # killed before the rename: its temporary file is all it left
            assert len(left) == 1 and phase != "after rename", f"kill {i} ({phase}): {left}"
        else:
            assert same_content(got, versions[new]), f"kill {i} ({phase}): neither version"
            outcomes["new"] += 1
            assert not left and phase != "before rename", f"kill {i} ({phase}): {left}"
            current = new
        if i % 10 == 9:  # the next successful write removes what the killed writers left
            assert _temporaries(dest)
            ws.save(versions[current], dest)
            assert _temporaries(dest) == [], f"after kill {i}"
            assert same_content(ws.load(dest), versions[current])
    print(f"{KILLS} kills in a row: {outcomes}, {cut_short} in the middle of the data")
    assert outcomes["old"] and outcomes["new"] and cut_short


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_only_temporaries_of_gone_writers_of_that_destination_are_removed(
    tmp_path: Path,
) -> None:
    dest = tmp_path / "w.npz"
    host, me = fileio.HOST, os.getpid()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {
            "dead writer": f".w.npz.abc123.{host}-{_dead_pid()}{fileio.TEMP_SUFFIX}",
            "live writer": f".w.npz.def456.{host}-{sleeper.pid}{fileio.TEMP_SUFFIX}",
            "this process, now": f".w.npz.ghi789.{host}-{me}{fileio.TEMP_SUFFIX}",
            "this pid, before this process": f".w.npz.jkl012.{host}-{me}{fileio.TEMP_SUFFIX}",
            "another host": f".w.npz.mno345.{'0' * 8 if host != '0' * 8 else '1' * 8}-"
                            f"{_dead_pid()}{fileio.TEMP_SUFFIX}",
            "another destination": f".w.npz.x.pqr678.{host}-{_dead_pid()}{fileio.TEMP_SUFFIX}",
            "old naming, no pid": f".w.npz.stu901{fileio.TEMP_SUFFIX}",
            "not a temporary": "w.npz.bak",
        }
        for label, name in names.items():
            (tmp_path / name).write_bytes(label.encode())
        old = time.time() - 3600
        os.utime(tmp_path / names["this pid, before this process"], (old, old))
        ws.save({"a": np.zeros(3)}, dest)
        left = set(os.listdir(tmp_path))
        removed = {label for label, name in names.items() if name not in left}
        assert removed == {"dead writer", "this pid, before this process"}
        assert dest.name in left
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_zombie_writer_counts_as_gone(tmp_path: Path) -> None:
    """A killed writer that its parent has not reaped yet writes nothing more."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("zombies are recognised through /proc (Linux)")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    while fileio._process_start(child.pid) is not None and \
            fileio._process_start(child.pid)[0] != "Z":  # type: ignore[index]
        time.sleep(0.01)
    try:
        name = f".w.npz.abc123.{fileio.HOST}-{child.pid}{fileio.TEMP_SUFFIX}"
        (tmp_path / name).write_bytes(b"partial")
        ws.save({"a": np.zeros(3)}, tmp_path / "w.npz")
        assert not (tmp_path / name).exists()
    finally:
        child.wait()


def test_a_write_in_progress_keeps_its_temporary_while_another_write_finishes(
    tmp_path: Path,
) -> None:
    """Two writes to one destination from this process: finishing one leaves the other's
    temporary alone, and the other still completes."""
    dest = tmp_path / "w.npz"
    with fileio.atomic_write(dest) as first:
        first.write(b"first, still being written")
        ws.save({"a": np.ones(3)}, dest)
        assert len(_temporaries(dest)) == 1
    assert dest.read_bytes() == b"first, still being written"
    assert _temporaries(dest) == []


# --- atomicity observed from outside: no hook into the writer -----------------------
#
# A rename puts the new file's inode in place in one step; a reader that opened the old
# file keeps the old inode, complete. Copying into the destination (and unlinking the
# temporary) instead rewrites the old inode in place: the reader would see it truncated
# and refilled, and the destination would not be the file that was written.


def _held(path: Path) -> tuple[Any, int, bytes]:
    """An open reader of *path*, its inode, and the bytes it holds now."""
    f = open(path, "rb")  # noqa: SIM115 - closed by the caller
    return f, os.fstat(f.fileno()).st_ino, path.read_bytes()


@pytest.mark.parametrize("ext", [".npz", ".json", ".wsc"])
def test_save_puts_a_new_file_in_place_and_old_readers_keep_the_old_one(
    tmp_path: Path, ext: str
) -> None:
    dest = tmp_path / f"w{ext}"
    ws.save({"old": np.arange(50_000, dtype=np.float32)}, dest)
    reader, old_inode, old_bytes = _held(dest)
    try:
        ws.save({"new": np.ones(7)}, dest)
        assert os.stat(dest).st_ino != old_inode  # a new file, not the old one rewritten
        assert os.stat(dest).st_nlink == 1
        assert reader.read() == old_bytes  # the old file, complete, for whoever had it open
    finally:
        reader.close()
    assert list(ws.load(dest)) == ["new"]
    assert _temporaries(dest) == []


def test_the_written_file_is_the_one_renamed_into_place(tmp_path: Path) -> None:
    for exists in (False, True):
        dest = tmp_path / f"w{exists}.bin"
        if exists:
            dest.write_bytes(b"old")
        with fileio.atomic_write(dest) as f:
            f.write(b"new bytes")
            written = os.fstat(f.fileno())
            (temporary,) = _temporaries(dest)  # beside the destination: same file system
            assert os.stat(dest.parent / temporary).st_ino == written.st_ino
            assert dest.read_bytes() == b"old" if exists else not dest.exists()
        now = os.stat(dest)
        assert (now.st_ino, now.st_dev) == (written.st_ino, written.st_dev)
        assert _temporaries(dest) == [] and dest.read_bytes() == b"new bytes"


def test_a_sharded_save_renames_every_file_into_place(tmp_path: Path) -> None:
    dest = tmp_path / "model.npz"
    big = {f"t{i}": np.full(20_000, i, np.float32) for i in range(4)}
    index = Path(ws.save(big, dest, max_shard_size=100_000))
    files = sorted(p for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert len(files) > 2 and index in files
    held = {p: _held(p) for p in files}
    try:
        ws.save({k: v + 1 for k, v in big.items()}, dest, max_shard_size=100_000)
        for p, (reader, inode, old_bytes) in held.items():
            if p.exists():
                assert os.stat(p).st_ino != inode, p.name
            assert reader.read() == old_bytes, p.name
    finally:
        for reader, _, _ in held.values():
            reader.close()
    assert ws.load(index).equal({k: v + 1 for k, v in big.items()})
