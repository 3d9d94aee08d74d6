"""A file replaced on disk while it is loaded gives the old file, the new file or a clear
error, never a mix of the two (issue 12).

For every format, another process replaces the file in a loop (write a temporary beside
it, rename it over), alternating two models with the same names and shapes but different
values, while this process loads it :data:`LOADS` times. Every load must equal one of
the two models. A load reads one file through one open handle from start to end (HDF5
included: the library reads through our handle, it never reopens the path), so the
rename cannot reach a load in progress.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import weightstore as ws
from weightstore.model import Weights

#: Loads per format.
LOADS = 1000

_WRITER = """
import os, sys
folder, name, a, b, stop = sys.argv[1:6]
versions = [open(a, "rb").read(), open(b, "rb").read()]
target, tmp, i = os.path.join(folder, name), os.path.join(folder, "." + name + ".tmp"), 0
while not os.path.exists(stop):
    with open(tmp, "wb") as f:
        f.write(versions[i % 2])
    os.replace(tmp, target)
    i += 1
print(i)
"""


def _model(value: float) -> Weights:
    return Weights({"fc1/W": np.full((30, 20), value, np.float32),
                    "fc1/b": np.full(20, value * 2, np.float32),
                    "out/W": np.full((20, 10), value * 3, np.float64)},
                   metadata={"version": str(value)})


@pytest.mark.slow
@pytest.mark.parametrize("ext", [".pkl", ".npz", ".json", ".csv", ".h5", ".safetensors",
                                 ".wsc", ".npz.zst", ".csv.zst"])
def test_replaced_during_loads_never_mixes(ext: str, tmp_path: Path) -> None:
    old, new = _model(1.0), _model(2.0)
    a, b = tmp_path / f"a{ext}", tmp_path / f"b{ext}"
    ws.save(old, a)
    ws.save(new, b)
    folder = tmp_path / "live"
    folder.mkdir()
    target = folder / f"w{ext}"
    target.write_bytes(a.read_bytes())
    stop = tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(folder), target.name,
                               str(a), str(b), str(stop)], stdout=subprocess.PIPE, text=True)
    seen = {"old": 0, "new": 0, "wrong": 0, "errors": 0}
    errors: list[str] = []
    started = time.perf_counter()
    try:
        for _ in range(LOADS):
            try:
                got = ws.load(target)
            except ws.WeightstoreError as e:
                seen["errors"] += 1
                errors.append(str(e))
                continue
            if got.equal(old) and got.metadata == old.metadata:
                seen["old"] += 1
            elif got.equal(new) and got.metadata == new.metadata:
                seen["new"] += 1
            else:
                seen["wrong"] += 1
    finally:
        stop.touch()
        replaced = int(writer.communicate(timeout=60)[0].strip() or 0)
    print(f"{ext}: {seen}, {replaced:,} replacements, "
          f"{time.perf_counter() - started:.1f} s")
    assert seen["wrong"] == 0, seen
    assert seen["errors"] == 0, (seen, errors[:3])  # renames never make a load fail
    assert replaced > 0 and min(seen["old"], seen["new"]) > 0, (seen, replaced)
