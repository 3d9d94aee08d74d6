"""Crash-safe writes: SIGKILL in the middle of weightstore.save never leaves a partial file,
and the next successful write removes the temporary files killed writers left.

The kill test forks a child that saves a ~20 MB file over an existing one and kills it
with SIGKILL at a random moment, 100 times in a row. Most kills come at a random byte
of the data (the child tells the parent when it passes that byte and carries on
writing; the parent kills after a random delay of up to 10 ms); some come exactly
between the fsync and the rename, or just after the rename. After every kill the
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
MiB = 1 << 20


def _weights(seed: int) -> ws.Weights:
    rng = np.random.default_rng(seed)
    return ws.Weights({"W1": rng.standard_normal((2500, 2000)).astype(np.float32),  # 20 MB
                       "b1": rng.standard_normal(2000).astype(np.float32)},
                      metadata={"version": str(seed)})


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
    assert size > 19 * MiB  # ~20 MB
    rng = random.Random(8)
    current = 0
    outcomes = {"old": 0, "new": 0}
    for i in range(KILLS):
        new = 1 - current
        phase = rng.choice(["data"] * 8 + ["before rename", "after rename"])
        before = set(_temporaries(dest))
        _kill_during_save(dest, versions[new], phase, at=rng.randrange(size),
                          delay=rng.uniform(0, 0.01) if phase == "data" else 0)
        left = set(_temporaries(dest)) - before
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
    print(f"{KILLS} kills in a row: {outcomes}")
    assert outcomes["old"] and outcomes["new"]


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
