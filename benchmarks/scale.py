"""Gigabyte models: write and read throughput, peak memory, lazy access and streaming
conversion for every weightstore codec, beside the usual tools, in one run.

Run from the repository root::

    python -m benchmarks.scale                 # about 2 GiB of float32 tensors
    python -m benchmarks.scale --gib 0.25      # quicker
    python -m benchmarks.scale --json out.json # also save the numbers

The model is synthetic but shaped like a small transformer (token embedding, per
layer four 2048x2048 attention matrices, three 2048x8192 MLP matrices and two norm
vectors), values normal with std 0.02 from a fixed seed. ``--gib`` changes the
number of layers (and, below 1 GiB, the width).

What is measured, for each format:

- write: the parent process writes the model (every writer, weightstore's and the
  baselines', fsyncs its file(s) before the clock stops).
- read: a fresh process loads the whole model into numpy arrays; its time and its
  peak resident memory (``VmHWM``; ``ru_maxrss`` would include the parent's, which
  Linux carries across fork and exec) above what it held after its imports. Each
  read runs ``--runs`` times, in a new process each time, the tools alternating (every
  tool's first run, then every tool's second...); the median run is shown.
- lazy: a fresh process opens the file and copies one tensor (16 MiB at 2 GiB) into
  memory; time and extra peak memory. weightstore's tensor is copied only when it is a
  memory map (``open``'s default where the format allows); a tensor read into a new
  array (from a ``.zst`` file, say) is not copied again, as safetensors' ``get_tensor``
  and h5py's ``[()]`` results are not.
- convert: a fresh process converts between every ordered pair of weightstore formats;
  extra peak memory against the bound of the largest tensor plus 200 MiB (JSON and CSV:
  twice the largest tensor plus 200 MiB).

Baselines, measured in the same run: ``safetensors`` (numpy API), ``np.save`` /
``np.load(mmap_mode="r")`` (one .npy per tensor), h5py (one dataset per tensor,
contiguous), and ``torch.save`` / ``torch.load`` (``mmap=True`` for lazy access) when
torch is installed. Files are read once before each timed read, so every reader
starts from the page cache: the numbers are memory and CPU speed, not the disk's.

JSON and CSV are measured on a smaller model of the same shape (``--text-gib``, default
0.125 = 128 MiB, every tensor) against ``np.savetxt``/``np.loadtxt`` (one text file per
tensor) and ``pandas.read_csv`` (default options) on weightstore's own CSV file, on
the same values, medians of ``--runs`` runs in one process; each read is checked bit for
bit, and a fresh process's peak memory while loading is reported beside the file size.
They run first, while the process is small.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

MiB = 1 << 20
GiB = 1 << 30
SEED = 20240607

#: weightstore formats measured at full size: label -> file name ending.
WS_FORMATS = {"npz": ".npz", "hdf5": ".h5", "safetensors": ".safetensors",
              "pickle": ".pkl", "zstd(npz)": ".npz.zst", "wsc": ".wsc"}
#: Conversions whose peak memory is measured: every ordered pair of the formats written.
CONVERSIONS = [(src, dst) for src in WS_FORMATS for dst in WS_FORMATS if src != dst]
#: Memory a conversion may take above its imports besides its largest tensor (issue 14:
#: binary formats within the largest tensor + 200 MiB; JSON/CSV within twice the largest
#: tensor + 200 MiB, text parsing holding the values and their decoded array at once).
SLACK = 200 * MiB
#: Formats whose whole-model read should stay within 1.25x of safetensors' own (issue 14).
FULL_READ_TARGET = ("safetensors", "npz", "hdf5", "wsc")


# --- the model ---------------------------------------------------------------------------


def model_shapes(gib: float) -> tuple[dict[str, tuple[int, ...]], str]:
    """Tensor names and shapes adding up to about *gib* GiB of float32, and the name of
    the tensor read lazily (one attention matrix)."""
    hidden, ffn, vocab = (2048, 8192, 32000) if gib >= 1 else (
        (1024, 4096, 16000) if gib >= 0.2 else (512, 2048, 8000))
    embed = vocab * hidden * 4
    per_layer = (4 * hidden * hidden + 3 * hidden * ffn + 2 * hidden) * 4
    layers = max(1, round((gib * GiB - embed) / per_layer))
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}"
        for proj in ("q", "k", "v", "o"):
            shapes[f"{p}.self_attn.{proj}_proj.weight"] = (hidden, hidden)
        shapes[f"{p}.mlp.gate_proj.weight"] = (ffn, hidden)
        shapes[f"{p}.mlp.up_proj.weight"] = (ffn, hidden)
        shapes[f"{p}.mlp.down_proj.weight"] = (hidden, ffn)
        shapes[f"{p}.input_layernorm.weight"] = (hidden,)
        shapes[f"{p}.post_attention_layernorm.weight"] = (hidden,)
    shapes["model.norm.weight"] = (hidden,)
    return shapes, "model.layers.0.self_attn.q_proj.weight"


def synthetic_model(gib: float) -> dict[str, np.ndarray]:
    """The model: normal values, std 0.02, fixed seed."""
    rng = np.random.default_rng(SEED)
    out = {}
    for name, shape in model_shapes(gib)[0].items():
        array = rng.standard_normal(shape, dtype=np.float32)
        array *= np.float32(0.02)
        out[name] = array
    return out


# --- helpers --------------------------------------------------------------------------------


def fsync_path(path: Path) -> None:
    """Flush a file, or every file in a folder, to the disk."""
    for p in ([path] if path.is_file() else sorted(path.iterdir())):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir())
    if path.name.endswith(".index.json"):
        return sum(p.stat().st_size for p in path.parent.iterdir())
    return path.stat().st_size


def warm(path: Path) -> None:
    """Read the file(s) once so that the timed read starts from the page cache."""
    buf = bytearray(16 * MiB)
    for p in ([path] if path.is_file() else sorted(path.iterdir())):
        with open(p, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_peak() -> int:
    """This process's peak resident memory (VmHWM). Not ``ru_maxrss``: Linux carries the
    parent's high-water mark into a child across fork and exec, and the parent holds the
    whole model."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_child(*args: str) -> dict[str, Any]:
    """Run this script's child mode in a fresh interpreter and return its JSON line."""
    env = dict(os.environ)
    env.setdefault("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True,
                         text=True, env=env, check=False)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the child process: one read, one lazy access or one conversion ------------------------


def child(argv: list[str]) -> None:
    """``--child TASK TOOL PATH [NAME|DST]``: do it and print time and memory as JSON."""
    task, tool, path = argv[0], argv[1], argv[2]
    extra = argv[3] if len(argv) > 3 else ""
    import weightstore as ws

    ws.formats()  # import every codec's libraries now, as the baselines import theirs
    ws.open, ws.load, ws.convert  # noqa: B018  (and weightstore.api, which these import)
    if tool == "safetensors-lib":
        import safetensors.numpy as stn
        from safetensors import safe_open
    if tool == "h5py":
        import h5py
    if tool == "torch":
        import torch
    gc.collect()
    base = rss_now()
    start = time.perf_counter()
    if task == "load":
        if tool == "weightstore":
            got = ws.load(path)
        elif tool == "safetensors-lib":
            got = stn.load_file(path)
        elif tool == "np.load":
            got = {p.stem: np.load(p) for p in sorted(Path(path).iterdir())}
        elif tool == "h5py":
            with h5py.File(path, "r") as f:
                got = {k: f[k][()] for k in f}
        elif tool == "torch":
            got = torch.load(path, weights_only=True)
        count = len(got)
    elif task == "lazy":
        if tool == "weightstore":
            with ws.open(path) as w:
                got = w[extra]
                if not got.flags.owndata:  # a memory map (or a view of one): read it in
                    got = np.array(got)
        elif tool == "safetensors-lib":
            with safe_open(path, framework="np") as f:
                got = f.get_tensor(extra)
        elif tool == "np.load":
            got = np.array(np.load(Path(path) / f"{extra}.npy", mmap_mode="r"))
        elif tool == "h5py":
            with h5py.File(path, "r") as f:
                got = f[extra][()]
        elif tool == "torch":
            got = torch.load(path, weights_only=True, mmap=True)[extra].numpy().copy()
        count = int(got.size)
    elif task == "convert":
        got = ws.convert(path, extra)
        count = len(got)
    seconds = time.perf_counter() - start
    peak = rss_peak()
    print(json.dumps({"seconds": seconds, "peak": peak, "base": base, "count": count}))


# --- the measurements --------------------------------------------------------------------


def write_baselines(model: dict[str, np.ndarray], folder: Path) -> dict[str, tuple[Path, float]]:
    """Each baseline tool's file and its write time."""
    out: dict[str, tuple[Path, float]] = {}
    import h5py
    import safetensors.numpy as stn

    path = folder / "lib.safetensors"
    out["safetensors-lib"] = (path, timed(lambda: (stn.save_file(model, str(path)),
                                                   fsync_path(path))))
    npy = folder / "npy"
    npy.mkdir()

    def save_npy() -> None:
        for name, array in model.items():
            np.save(npy / f"{name}.npy", array)
        fsync_path(npy)

    out["np.load"] = (npy, timed(save_npy))
    h5 = folder / "lib.h5"

    def save_h5() -> None:
        with h5py.File(h5, "w") as f:
            for name, array in model.items():
                f.create_dataset(name, data=array)
        fsync_path(h5)

    out["h5py"] = (h5, timed(save_h5))
    try:
        import torch
    except ImportError:
        print("torch is not installed: its columns are skipped "
              "(pip install torch==2.13.0 for the CPU build)", file=sys.stderr)
    else:
        pt = folder / "model.pt"
        tensors = {k: torch.from_numpy(v) for k, v in model.items()}
        out["torch"] = (pt, timed(lambda: (torch.save(tensors, pt), fsync_path(pt))))
        del tensors
    return out


def measure_binary(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    import weightstore as ws

    model = synthetic_model(args.gib)
    shapes, lazy_name = model_shapes(args.gib)
    total = sum(a.nbytes for a in model.values())
    largest = max(a.nbytes for a in model.values())
    print(f"model: {len(model)} tensors, {total / GiB:.2f} GiB float32, largest "
          f"{largest / MiB:.0f} MiB; lazy read of {lazy_name} "
          f"({model[lazy_name].nbytes / MiB:.0f} MiB)", flush=True)
    results: dict[str, Any] = {"total_bytes": total, "largest_bytes": largest,
                               "lazy_tensor": lazy_name, "rows": {}, "conversions": []}
    files: dict[str, tuple[str, Path]] = {}
    weights = ws.Weights(model)
    for label, ext in WS_FORMATS.items():
        if args.formats and label not in args.formats:
            continue
        path = folder / f"model{ext}"
        try:
            seconds = timed(lambda p=path, w=weights: ws.save(w, p))
        except ws.MissingDependencyError as e:
            print(f"{label}: skipped ({e})", file=sys.stderr)
            continue
        files[label] = ("weightstore", path)
        results["rows"][label] = {"tool": "weightstore", "write_s": seconds,
                                  "size": size_of(path)}
        print(f"  wrote {label}: {seconds:.2f} s", flush=True)
    for label, (path, seconds) in write_baselines(model, folder).items():
        files[label] = (label, path)
        results["rows"][label] = {"tool": label, "write_s": seconds, "size": size_of(path)}
        print(f"  wrote {label}: {seconds:.2f} s", flush=True)
    del weights, model
    gc.collect()
    # Every tool's run i before any tool's run i + 1 (alternating, as issue 14 asks): a
    # burst of load on a shared machine then hits each tool once, not one tool's runs.
    reads: dict[str, list[dict[str, Any]]] = {label: [] for label in files}
    lazies: dict[str, list[dict[str, Any]]] = {label: [] for label in files}
    for _tool, path in files.values():
        warm(path)
    for _ in range(args.runs):
        for label, (tool, path) in files.items():
            reads[label].append(run_child("load", tool, str(path)))
    for _ in range(args.runs):
        for label, (tool, path) in files.items():
            lazies[label].append(run_child("lazy", tool, str(path), lazy_name))
    for label in files:
        row = results["rows"][label]
        got = _median(reads[label])
        row["read_s"], row["read_peak_extra"] = got.get("seconds"), _extra(got)
        row["read_error"] = got.get("error")
        row["read_runs_s"] = [r.get("seconds") for r in reads[label]]
        got = _median(lazies[label])
        row["lazy_runs_ms"] = [r["seconds"] * 1000 for r in lazies[label] if "seconds" in r]
        if "seconds" in got:
            row["lazy_ms"], row["lazy_extra"] = got["seconds"] * 1000, _extra(got)
        else:
            row["lazy_error"] = got.get("error")
        print(f"  read {label}: {row['read_s'] or float('nan'):.2f} s, lazy "
              f"{row.get('lazy_ms', float('nan')):.1f} ms", flush=True)
    for src, dst in CONVERSIONS:
        if src not in files or files[src][0] != "weightstore" or dst not in WS_FORMATS:
            continue
        out = folder / f"converted{WS_FORMATS[dst]}"
        warm(files[src][1])
        got = run_child("convert", "weightstore", str(files[src][1]), str(out))
        results["conversions"].append({"from": src, "to": dst, "seconds": got.get("seconds"),
                                       "peak_extra": _extra(got), "error": got.get("error")})
        print(f"  convert {src} -> {dst}: {got.get('seconds') or float('nan'):.1f} s", flush=True)
        if out.exists():
            out.unlink()
    return results


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median time (its memory with it), or the first error."""
    ok = sorted((r for r in runs if "seconds" in r), key=lambda r: r["seconds"])
    return ok[len(ok) // 2] if ok else runs[0]


def _extra(got: dict[str, Any]) -> int | None:
    if "peak" not in got:
        return None
    return max(0, got["peak"] - got["base"])


def _median_of(runs: int, fn: Callable[[], Any]) -> tuple[float, list[float]]:
    """The median time of *runs* calls of *fn*, and every time."""
    times = [timed(fn) for _ in range(runs)]
    return sorted(times)[len(times) // 2], times


def _identical(got: Any, model: dict[str, np.ndarray]) -> bool:
    return list(got) == list(model) and all(
        got[k].dtype == v.dtype and got[k].shape == v.shape
        and got[k].tobytes() == v.tobytes() for k, v in model.items())


def convert_text(path: Path, folder: Path) -> list[dict[str, Any]]:
    """Peak memory of converting a JSON or CSV file to npz and to safetensors in a fresh
    process (the bound: twice the largest tensor's values, plus 200 MiB)."""
    rows = []
    for ext in (".npz", ".safetensors"):
        out = folder / f"converted{ext}"
        warm(path)
        got = run_child("convert", "weightstore", str(path), str(out))
        rows.append({"from": path.suffix[1:], "to": ext[1:], "seconds": got.get("seconds"),
                     "peak_extra": _extra(got), "error": got.get("error")})
        print(f"  convert {path.name} -> {ext}: {got.get('seconds') or float('nan'):.1f} s, "
              f"+{(_extra(got) or 0) / MiB:.0f} MiB", flush=True)
        if out.exists():
            out.unlink()
    return rows


def measure_text(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """JSON and CSV on a whole model (``--text-gib``, every tensor), beside numpy's and
    pandas' text I/O on the same values; medians of ``--runs`` runs, in this process."""
    import weightstore as ws
    from weightstore.codecs import _fasttext

    model = synthetic_model(args.text_gib)
    weights = ws.Weights(model)
    total = sum(a.nbytes for a in model.values())
    out: dict[str, Any] = {"values": int(sum(a.size for a in model.values())),
                           "bytes": int(total), "tensors": len(model), "runs": args.runs,
                           "largest_bytes": max(a.nbytes for a in model.values()),
                           "compiled": _fasttext.enabled(1 << 62), "rows": {}}
    print(f"text: {len(model)} tensors, {total / MiB:.0f} MiB float32, {args.runs} runs each "
          f"(pyarrow {'installed' if out['compiled'] else 'not installed'})", flush=True)
    for label in ("json", "csv"):
        path = folder / f"model.{label}"
        write, write_runs = _median_of(args.runs, lambda p=path: ws.save(weights, p))
        got: list[Any] = [None]

        def load(p: Path = path, got: list[Any] = got) -> None:
            got[0] = None  # the previous run's tensors are freed before this run
            got[0] = ws.load(p)

        read, read_runs = _median_of(args.runs, load)
        exact = _identical(got[0], model)
        got[0] = None
        gc.collect()
        warm(path)
        child_read = run_child("load", "weightstore", str(path))
        if label == "csv":  # pandas' default reader on the same file
            try:
                import pandas as pd
            except ImportError:
                print("pandas is not installed: its column is skipped", file=sys.stderr)
            else:
                pandas, pandas_runs = _median_of(args.runs, lambda p=path: pd.read_csv(p))
                out["rows"]["pandas.read_csv"] = {
                    "write_s": None, "read_s": pandas, "size": size_of(path),
                    "read_runs": pandas_runs}
                print(f"  pandas.read_csv: {pandas:.1f} s", flush=True)
        out["rows"][label] = {"write_s": write, "read_s": read, "size": size_of(path),
                              "exact": exact, "write_runs": write_runs, "read_runs": read_runs,
                              "read_peak_extra": _extra(child_read),
                              "child_read_s": child_read.get("seconds")}
        print(f"  {label}: write {write:.1f} s, read {read:.1f} s, exact {exact}", flush=True)
        out["conversions"] = out.get("conversions", []) + convert_text(path, folder)
        path.unlink()
    txt = folder / "txt"
    txt.mkdir()

    def savetxt() -> None:
        for name, array in model.items():
            np.savetxt(txt / f"{name}.txt", array.reshape(array.shape[0], -1))
        fsync_path(txt)

    write, write_runs = _median_of(args.runs, savetxt)
    read, read_runs = _median_of(args.runs, lambda: {p.stem: np.loadtxt(p)
                                                     for p in sorted(txt.iterdir())})
    out["rows"]["np.savetxt"] = {"write_s": write, "read_s": read, "size": size_of(txt),
                                 "write_runs": write_runs, "read_runs": read_runs}
    print(f"  np.savetxt/loadtxt: write {write:.1f} s, read {read:.1f} s", flush=True)
    shutil.rmtree(txt)
    return out


# --- the report --------------------------------------------------------------------------


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / MiB:,.0f}"


def _rate(nbytes: int, seconds: float | None) -> str:
    return "-" if not seconds else f"{nbytes / seconds / GiB:.2f}"


def report(binary: dict[str, Any] | None, text: dict[str, Any] | None) -> str:
    lines: list[str] = []
    if binary:
        total = binary["total_bytes"]
        ref = binary["rows"].get("safetensors-lib", {}).get("read_s")
        lines.append(f"Binary formats, {total / GiB:.2f} GiB model (GiB/s of tensor data; "
                     "read = whole model into numpy in a fresh process; lazy = open + one "
                     f"tensor, {binary['lazy_tensor']})")
        head = ["format", "tool", "file MiB", "write s", "GiB/s", "read s", "GiB/s",
                "read/safetensors", "read peak +MiB", "lazy ms", "lazy +MiB"]
        rows = []
        for label, r in binary["rows"].items():
            read = r.get("read_s")
            rows.append([label, r["tool"], _mib(r["size"]), f"{r['write_s']:.2f}",
                         _rate(total, r["write_s"]),
                         f"{read:.2f}" if read else r.get("read_error") or "-",
                         _rate(total, read),
                         f"{read / ref:.2f}x" if read and ref else "-",
                         _mib(r.get("read_peak_extra")),
                         f"{r['lazy_ms']:.1f}" if "lazy_ms" in r else r.get("lazy_error", "-"),
                         _mib(r.get("lazy_extra"))])
        lines += _table(head, rows)
        if ref:
            verdicts = [f"{label} {r['read_s'] / ref:.2f}x "
                        f"{'met' if r['read_s'] <= 1.25 * ref else 'MISSED'}"
                        for label, r in binary["rows"].items()
                        if label in FULL_READ_TARGET and r.get("read_s")]
            lines.append("full read <= 1.25x safetensors.numpy.load_file (issue 14): "
                         + ", ".join(verdicts))
        if binary["conversions"]:
            bound = binary["largest_bytes"] + SLACK
            lines.append("")
            lines.append(f"Streaming conversion (fresh process; bound = largest tensor "
                         f"+ 200 MiB = {bound / MiB:,.0f} MiB)")
            rows = []
            for c in binary["conversions"]:
                extra = c["peak_extra"]
                verdict = "-" if extra is None else ("within" if extra < bound else "OVER")
                rows.append([c["from"], c["to"], f"{c['seconds']:.1f}" if c["seconds"] else
                             c.get("error") or "-", _mib(extra), verdict])
            lines += _table(["from", "to", "seconds", "peak +MiB", "bound"], rows)
    if text:
        lines.append("")
        lines.append(f"Text formats on the whole {text['bytes'] / MiB:.0f} MiB model "
                     f"({text['tensors']} tensors, {text['values']:,} float32 values; medians "
                     f"of {text['runs']} runs; compiled path "
                     f"{'on' if text['compiled'] else 'off (no pyarrow)'})")
        savetxt = text["rows"]["np.savetxt"]
        pandas = text["rows"].get("pandas.read_csv")
        head = ["format", "file MiB", "write s", "read s", "write vs savetxt",
                "read vs loadtxt", "read vs pandas*", "exact", "read peak +MiB", "peak/file"]
        rows = []
        for label, r in text["rows"].items():
            peak, write = r.get("read_peak_extra"), r.get("write_s")
            rows.append([label, _mib(r["size"]), f"{write:.2f}" if write else "-",
                         f"{r['read_s']:.2f}",
                         f"{savetxt['write_s'] / write:.2f}x" if write else "-",
                         f"{savetxt['read_s'] / r['read_s']:.2f}x",
                         f"{pandas['read_s'] / r['read_s']:.2f}x" if pandas else "-",
                         str(r.get("exact", "-")), _mib(peak),
                         f"{peak / r['size']:.2f}" if peak is not None else "-"])
        lines += _table(head, rows)
        lines.append("x = how many times faster than the baseline (its time / this time). "
                     "* pandas.read_csv with default options on weightstore's CSV file. "
                     "Peak = a fresh process's load, above its memory after imports.")
        if text.get("conversions"):
            bound = 2 * text["largest_bytes"] + SLACK
            lines.append("")
            lines.append(f"Converting the text files (fresh process; bound = 2 x the largest "
                         f"tensor + 200 MiB = {bound / MiB:,.0f} MiB)")
            rows = [[c["from"], c["to"], f"{c['seconds']:.1f}" if c["seconds"] else
                     c.get("error") or "-", _mib(c["peak_extra"]),
                     "-" if c["peak_extra"] is None else
                     ("within" if c["peak_extra"] < bound else "OVER")]
                    for c in text["conversions"]]
            lines += _table(["from", "to", "seconds", "peak +MiB", "bound"], rows)
    return "\n".join(lines)


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return [line(head), line(["-" * w for w in widths]), *map(line, rows)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Measure weightstore on a gigabyte model beside safetensors, np.save, "
        "h5py and torch: throughput, peak memory, lazy access, streaming conversion.",
        epilog="example: python -m benchmarks.scale --gib 2 --json scale.json",
    )
    parser.add_argument("--gib", type=float, default=2.0,
                        help="model size in GiB of float32 (default 2)")
    parser.add_argument("--text-gib", type=float, default=0.125,
                        help="size of the model JSON and CSV are measured on, every tensor "
                        "(default 0.125 = 128 MiB)")
    parser.add_argument("--dir", help="folder for the files (default: a temporary folder, "
                        "removed afterwards); needs about 10x --gib free")
    parser.add_argument("--formats", nargs="*", choices=list(WS_FORMATS),
                        help="weightstore formats to measure (default: all)")
    parser.add_argument("--runs", type=int, default=3,
                        help="fresh processes per read and per lazy read; the median run is "
                        "shown (default 3)")
    parser.add_argument("--skip-binary", action="store_true", help="only the text formats")
    parser.add_argument("--skip-text", action="store_true", help="only the binary formats")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    print(f"python {platform.python_version()}, numpy {np.__version__}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="ws-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        # Text first, while this process's heap is small (after the binary part it holds
        # a fragmented 2 GiB that slows the allocation-heavy text readers and writers).
        text = None if args.skip_text else measure_text(args, folder)
        binary = None if args.skip_binary else measure_binary(args, folder)
    finally:
        if not args.dir:
            shutil.rmtree(folder, ignore_errors=True)
    print()
    print(report(binary, text))
    if args.json:
        Path(args.json).write_text(json.dumps({"binary": binary, "text": text}, indent=2))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        sys.exit(main())
