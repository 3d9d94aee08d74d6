"""The hostile corpus: every file refused with a clear error, in bounded time and memory,
and nothing from any of them ran.

The files are built at test time by ``tests/hostile/build.py`` (which lists each one
and what it attacks). Files marked ``measure`` are loaded in a fresh interpreter that
reports how much its peak resident memory grew while loading; the rest load here.
Each load has a time limit that catches a hang (a bound, not a measurement).
"""

from __future__ import annotations

import os
import pickle
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from hostile.build import HOSTILE, Hostile, digest, load_measured

import weightstore as ws
from weightstore.testing import time_limit

#: Seconds a hostile file may take before it counts as a hang.
HANG = 60
#: CPU seconds and peak memory growth any hostile file may cost (issue 12's bounds; CPU
#: time, not wall time, so that a loaded machine does not fail the test).
MAX_CPU_SECONDS = 20
MAX_GROWTH_MIB = 1536

@pytest.mark.parametrize("h", HOSTILE, ids=[h.file for h in HOSTILE])
def test_hostile_file_is_refused_clearly(h: Hostile, tmp_path: Path) -> None:
    if sys.platform != "linux" and h.measure:
        pytest.skip("peak memory is read from ru_maxrss in KiB, as Linux reports it")
    marker = tmp_path / "marker"
    folder = tmp_path / "corpus"
    folder.mkdir()
    path = folder / h.file
    h.build(path, marker)
    before = {p.name: os.lstat(p).st_mtime_ns for p in folder.iterdir()}
    limits = ws.Limits(**h.limits) if h.limits else None
    if h.measure:
        got = load_measured(path, h, HANG)
        print(f"{h.file}: {got['error'] or 'read'}, {got['seconds']:.2f} s, "
              f"{got['cpu_seconds']:.2f} s CPU, peak memory +{got['grew_kib'] / 1024:.1f} MiB")
        assert got["cpu_seconds"] < MAX_CPU_SECONDS, got
        assert got["grew_kib"] < min(h.max_growth_mib, MAX_GROWTH_MIB) * 1024, (
            f"{h.file}: peak memory grew by {got['grew_kib'] / 1024:.0f} MiB")
        if h.error is None:
            assert got["error"] is None, got
            assert got["digest"] == digest(h.expect()), f"{h.file}: read wrong values"
        else:
            assert got["error"] == h.error.__name__, got
        message = got["message"]
    elif h.error is None:
        with time_limit(HANG):
            assert digest(ws.load(path, limits=limits)) == digest(h.expect())
        message = ""
    else:
        with time_limit(HANG), pytest.raises(h.error) as e:
            ws.load(path, limits=limits)
        message = str(e.value)
    if h.error is not None:
        stem = h.file.split(".")[0]  # a sharded model's error may name the shard
        assert h.file in message or (h.file.endswith(".index.json") and stem in message), \
            message  # names the file
        assert re.search(h.match, message), message
        assert message.isprintable(), message  # one line, no terminal escapes
    assert not marker.exists() and not marker.with_suffix(".npy").exists()
    # no file outside the output touched: the folder holds what it held, unchanged
    assert {p.name: os.lstat(p).st_mtime_ns for p in folder.iterdir()} == before


def test_nothing_from_any_hostile_file_ran(tmp_path: Path) -> None:
    """Load the whole corpus in one process: no marker appears, no file is created,
    and the process still reads a normal pickle the same way afterwards."""
    marker = tmp_path / "ran"
    folder = tmp_path / "corpus"
    folder.mkdir()
    light = [h for h in HOSTILE if not h.measure and h.error is not None]  # heavy: above
    for h in light:  # the files loaded here (building the heavy ones too cost ~1/3 more)
        h.build(folder / h.file, marker)
    before = sorted(os.listdir(folder))
    for h in light:
        with time_limit(HANG), pytest.raises(ws.WeightstoreError):
            ws.load(folder / h.file, limits=ws.Limits(**h.limits) if h.limits else None)
    assert not marker.exists() and not marker.with_suffix(".npy").exists()
    assert sorted(os.listdir(folder)) == before
    plain = tmp_path / "plain.pkl"
    arrays = {"W": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.float64(2.5)}
    plain.write_bytes(pickle.dumps(arrays, protocol=2))
    got = ws.load(plain)
    assert got["W"].tolist() == arrays["W"].tolist() and got["b"] == 2.5


def test_the_corpus_covers_every_registered_codec() -> None:
    """A new codec brings its own hostile files to tests/hostile/build.py (it joins the
    fuzzing on its own, but its worst inputs are format-specific)."""
    covered = set()
    for h in HOSTILE:
        if h.file.endswith(".index.json"):
            continue
        found = ws.registry.codec_for_path(h.file)
        assert found is not None, h.file
        covered.add(found[0].name)
    assert covered >= {c.name for c in ws.formats()}, covered
