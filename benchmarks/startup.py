"""What a fresh process pays before it reads a byte: imports, ``--help``, one tensor.

Run from the repository root::

    python -m benchmarks.startup                  # 7 alternating runs, 1 GiB model files
    python -m benchmarks.startup --runs 11 --gib 0.25 --keep /tmp/startup-files

Every figure is a whole new Python process, measured side by side in one run, the
commands alternating so that a change in the machine's load hits them all alike:

- ``python -c "import numpy"``: the baseline every other process pays too;
- ``python -c "import weightstore"`` (names only: each is imported on first use) and
  ``python -c "from weightstore import load"`` (the API, numpy with it),
  ``weightstore --help``, ``weightstore inspect`` of
  the book's ``sample_weight.pkl`` (the whole command, as a shell loop pays it);
- ``weightstore.open(FILE)[name]`` of one 16 MiB tensor of a model of ``--gib`` GiB in
  safetensors, npz, HDF5 and wsc: the process prints the time from just after ``import
  weightstore`` and its API (``ws.open``, numpy with it) to the tensor in memory (what the
  library adds for that file: the codec's import, its library's, the header, the read), and
  for HDF5 also ``import h5py`` alone in a fresh process (h5py's own price, which any HDF5
  reader pays).

Our own modules are byte-compiled first (``compileall``, into their ``__pycache__``), as
``pip install`` leaves an installed package and as numpy's already are: an editable install
under ``PYTHONDONTWRITEBYTECODE=1`` (set on the reference machines) would otherwise compile
every module from source in every process, 40-60 ms that no installed copy pays.

Targets (issue 19): ``import weightstore`` <= 1.15x ``import numpy``; ``inspect`` <= 1.3x
``import numpy``; one tensor of the safetensors file <= 15 ms after ``import weightstore``
(npz, wsc <= 30 ms; HDF5 <= h5py's own import + 15 ms). Medians are printed with the
ratio and whether the target is met.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import net
import weightstore as ws
from net.data import resolve

TENSOR_MIB = 16
_OPEN_ONE = (
    "import time, sys\n"
    "t0 = time.perf_counter()\n"
    "import weightstore as ws\n"
    "ws.open  # the API (and numpy): imported on first use since import weightstore is lazy\n"
    "t1 = time.perf_counter()\n"
    "with ws.open(sys.argv[1]) as w:\n"
    "    a = w[sys.argv[2]]\n"
    "    a = a.copy() if not a.flags.owndata else a\n"
    "t2 = time.perf_counter()\n"
    "print(t1 - t0, t2 - t1)\n"
)


def _cli() -> list[str]:
    found = shutil.which("weightstore", path=os.path.dirname(sys.executable))
    return [found] if found else [sys.executable, "-m", "weightstore.cli.main"]


def _wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _inner(cmd: list[str]) -> float:
    """The time the process itself reports after ``import weightstore``."""
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()
    return float(out[1])


def make_files(folder: Path, gib: float) -> dict[str, Path]:
    """One model of about *gib* GiB (16 MiB float32 tensors) in each format."""
    count = max(1, int(gib * 1024 / TENSOR_MIB))
    rng = np.random.default_rng(0)
    tensor = rng.standard_normal((TENSOR_MIB << 18,), dtype=np.float32).reshape(1024, -1)
    weights = ws.Weights({f"layer{i}/W": tensor for i in range(count)})
    paths = {}
    for ext in (".safetensors", ".npz", ".h5", ".wsc"):
        path = folder / f"model{ext}"
        if not path.exists():
            ws.save(weights, path)
        paths[ext] = path
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="alternating runs (median)")
    parser.add_argument("--gib", type=float, default=1.0, help="model size in GiB")
    parser.add_argument("--data-dir", help="folder with sample_weight.pkl")
    parser.add_argument("--keep", help="folder for the model files (kept between runs)")
    args = parser.parse_args()

    folder = Path(args.keep or tempfile.mkdtemp(prefix="ws-startup-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"writing the {args.gib:g} GiB model files to {folder} ...", flush=True)
    files = make_files(folder, args.gib)
    reference = str(resolve("sample_weight.pkl", data_dir=args.data_dir))
    for package in (ws, net):  # as an installed copy is (see the module docstring)
        compileall.compile_dir(os.path.dirname(package.__file__), quiet=1)
    py, cli = sys.executable, _cli()
    walls = {
        "python -c 'import numpy'": [py, "-c", "import numpy"],
        "python -c 'import weightstore'": [py, "-c", "import weightstore"],
        "python -c 'from weightstore import load'": [py, "-c", "from weightstore import load"],
        "python -c 'import h5py'": [py, "-c", "import h5py"],
        "weightstore --help": [*cli, "--help"],
        "weightstore inspect sample_weight.pkl": [*cli, "inspect", reference],
    }
    inners = {f"open + one tensor: {ext[1:]}": [py, "-c", _OPEN_ONE, str(p), "layer0/W"]
              for ext, p in files.items()}
    times: dict[str, list[float]] = {k: [] for k in [*walls, *inners]}
    for cmd in [*walls.values(), *inners.values()]:  # warm the page cache once
        subprocess.run(cmd, check=True, capture_output=True)
    for _ in range(args.runs):
        for name, cmd in walls.items():
            times[name].append(_wall(cmd))
        for name, cmd in inners.items():
            times[name].append(_inner(cmd))
    med = {k: statistics.median(v) for k, v in times.items()}
    numpy_s, h5py_s = med["python -c 'import numpy'"], med["python -c 'import h5py'"]
    targets = {
        "python -c 'import weightstore'": ("<= 1.15x import numpy", med[
            "python -c 'import weightstore'"] <= 1.15 * numpy_s),
        "weightstore inspect sample_weight.pkl": ("<= 1.3x import numpy", med[
            "weightstore inspect sample_weight.pkl"] <= 1.3 * numpy_s),
        "open + one tensor: safetensors": ("<= 15 ms", med["open + one tensor: safetensors"]
                                           <= 0.015),
        "open + one tensor: npz": ("<= 30 ms", med["open + one tensor: npz"] <= 0.030),
        "open + one tensor: wsc": ("<= 30 ms", med["open + one tensor: wsc"] <= 0.030),
        "open + one tensor: h5": ("<= import h5py + 15 ms",
                                  med["open + one tensor: h5"] <= h5py_s + 0.015),
    }
    print(f"\nmedians of {args.runs} alternating runs, load average "
          f"{os.getloadavg()[0]:.2f} at the end\n")
    print(f"{'what':42} {'median':>9} {'x numpy':>8}  target")
    for name, value in med.items():
        target, met = targets.get(name, ("", None))
        verdict = "" if met is None else ("met" if met else "MISSED")
        print(f"{name:42} {value * 1000:7.1f}ms {value / numpy_s:7.2f}x  {target} {verdict}")
    print("\n(open + one tensor: time after 'import weightstore' in a fresh process)")


if __name__ == "__main__":
    main()
