"""Compare the wsc codec with ZipNN and general-purpose compressors on the same bytes, in one run.

Data sets: the book's three weight files (``--reference``, the files in
shared/data), and synthetic models with the statistics of trained weights (see
:func:`trained_like`) in float32, bfloat16 and float16 of ``--synthetic-mib`` each.
For each it prints the stored size, encode and decode throughput (MB/s of raw tensor
bytes, 1 MB = 10**6 bytes, median of runs) and both as ratios to zstd level 3
measured in the same run. The other compressors get the tensors' raw bytes (C
order, little-endian, concatenated); wsc gets the weights and writes a complete file
(header and checksums included) to memory. ``shuffle-zstd`` is byte grouping (plane
``i`` = byte ``i`` of every value) then zstd -3 per plane. ``zipnn`` is IBM's ZipNN
(byte grouping, Huffman-coded exponents; it takes float32, bfloat16 and float16
only, so float64 is handed to it as float32 words), a benchmark-only dependency: it needs
torch, so install it in a separate environment (``pip install torch==2.13.0 zipnn``
then this package); without it the zipnn rows are left out with a note.

Each operation is timed twice: by the process's CPU time (user + system, which
includes the kernel's work on page faults) and by the wall clock. On a machine
shared with other jobs the wall clock also counts the time spent waiting for a core,
so the CPU-time columns are the ones to compare there; on an idle machine the two
agree for the single-threaded codecs. wsc encodes and decodes models of several
megabytes on every core: its wall clock falls below its CPU time only when cores are
free, which on a shared machine they may not be. The order of the codecs is shuffled in every
round so that disturbances fall on each of them alike, and medians are reported.

Run it from the repository root (or with weightstore installed)::

    python -m benchmarks.compression                       # full run (~10 min)
    python -m benchmarks.compression --synthetic-mib 16    # quick look
    python -m benchmarks.compression --codecs wsc,zstd-3 --runs 9
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import lzma
import os
import random
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zstandard

import weightstore
from weightstore import Weights
from weightstore.codecs.wsc import WscCodec
from weightstore.model import canonical_dtype

try:
    import zipnn
except ImportError:  # a benchmark-only dependency (it needs torch)
    zipnn = None

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REFERENCE = [DATA / "sample_weight.pkl", DATA / "simple_convnet_params.pkl",
             DATA / "deep_convnet_params.pkl"]
#: ZipNN's names of the dtypes it groups bytes for.
ZIPNN_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}
BASELINE = "zstd-3"
#: Codecs slow enough (a few MB/s) that a 256 MiB set is compressed only --slow-runs times.
SLOW = frozenset({"zstd-19", "xz-9e"})
#: A timed run of a fast operation repeats it until it lasts at least this long.
MIN_RUN_SECONDS = 0.05


@dataclass
class Candidate:
    """A codec under test: encode the data set, decode what it wrote, check the result."""

    name: str
    encode: Callable[[], Any]
    decode: Callable[[Any], Any]
    size: Callable[[Any], int]
    check: Callable[[Any], bool]


@dataclass
class Result:
    """Stored size and the seconds each timed run took, by CPU time and by wall clock."""

    name: str
    size: int = 0
    enc: list[float] = field(default_factory=list)
    dec: list[float] = field(default_factory=list)
    enc_wall: list[float] = field(default_factory=list)
    dec_wall: list[float] = field(default_factory=list)

    def mbs(self, raw: int, which: str) -> float:
        """Median MB/s of raw bytes for ``enc``, ``dec``, ``enc_wall`` or ``dec_wall``."""
        return raw / statistics.median(getattr(self, which)) / 1e6


def raw_bytes(weights: Weights) -> bytes:
    """The tensors' C-order little-endian bytes, concatenated."""
    return b"".join(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
                    for a in weights.values())


def shuffle_codec(itemsize: int) -> tuple[Callable[[bytes], Any], Callable[[Any], bytes]]:
    """Byte grouping then zstd -3 on each group: encode and decode."""
    cctx, dctx = zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()

    def enc(raw: bytes) -> list[bytes]:
        planes = np.frombuffer(raw, np.uint8).reshape(-1, itemsize).T
        return [cctx.compress(np.ascontiguousarray(p)) for p in planes]

    def dec(parts: list[bytes]) -> bytes:
        planes = [np.frombuffer(dctx.decompress(p), np.uint8) for p in parts]
        out = np.empty((planes[0].size, itemsize), np.uint8)
        for i, p in enumerate(planes):
            out[:, i] = p
        return out.tobytes()

    return enc, dec


def candidates(weights: Weights, raw: bytes, names: list[str]) -> list[Candidate]:
    """The codecs named, each set up on *weights* or their *raw* bytes."""
    def byte_codec(name: str, enc: Callable[[bytes], bytes],
                   dec: Callable[[bytes], bytes]) -> Candidate:
        return Candidate(name, lambda: enc(raw), dec, len, lambda out: out == raw)

    wsc = WscCodec()

    def wsc_encode() -> io.BytesIO:
        buf = io.BytesIO()
        wsc.write(weights, buf, path="bench.wsc")
        return buf

    def wsc_decode(buf: io.BytesIO) -> Weights:
        buf.seek(0)
        return wsc.read(buf, path="bench.wsc")

    z3 = zstandard.ZstdCompressor(level=3)
    z19 = zstandard.ZstdCompressor(level=19)
    zd = zstandard.ZstdDecompressor()
    table = {
        "wsc": Candidate("wsc", wsc_encode, wsc_decode, lambda b: len(b.getbuffer()),
                         lambda w: w.equal(weights)),
        "zstd-3": byte_codec("zstd-3", z3.compress, zd.decompress),
        "zstd-19": byte_codec("zstd-19", z19.compress, zd.decompress),
        "xz-9e": byte_codec("xz-9e", lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME),
                            lzma.decompress),
        "zlib-9": byte_codec("zlib-9", lambda b: zlib.compress(b, 9), zlib.decompress),
    }
    itemsize = next(iter(weights.values())).dtype.itemsize
    enc, dec = shuffle_codec(itemsize)
    table["shuffle-zstd"] = Candidate("shuffle-zstd", lambda: enc(raw), dec,
                                      lambda parts: sum(map(len, parts)),
                                      lambda out: out == raw)
    if zipnn is not None:
        # ZipNN 0.5.4's input_format="byte" gives float32 and bfloat16 back altered (its
        # top byte differs), so it is given a torch tensor over the same bytes; and its
        # compress rearranges that tensor in place, so each encode gets a fresh copy
        # (the copy is in its encode time, at memcpy speed)
        import torch

        # (it takes float32, bfloat16 and float16 only: float64 is given as float32 words)
        dtype = ZIPNN_DTYPES.get(str(next(iter(weights.values())).dtype), "float32")
        tensor = torch.frombuffer(bytearray(raw), dtype=getattr(torch, dtype))
        z = zipnn.ZipNN(input_format="torch", bytearray_dtype=dtype)
        table["zipnn"] = Candidate(
            "zipnn", lambda: z.compress(tensor.clone()), z.decompress, len,
            lambda out: out.contiguous().view(torch.uint8).numpy().tobytes() == raw)
    return [table[n] for n in names if n in table]


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """CPU and wall seconds per call of *fn* (repeated to last MIN_RUN_SECONDS), and its
    last result."""
    calls, start, cpu = 0, time.perf_counter(), time.process_time()
    while True:
        out = fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= MIN_RUN_SECONDS:
            return (time.process_time() - cpu) / calls, elapsed / calls, out
        del out


def run(weights: Weights, raw: bytes, names: list[str], runs: int, slow_runs: int,
        seed: int, log: Callable[[str], None]) -> dict[str, Result]:
    """Measure every codec named on the same data, in shuffled order each round."""
    cands = candidates(weights, raw, names)
    results = {c.name: Result(c.name) for c in cands}
    big = len(raw) > 64 << 20
    order = random.Random(seed)
    for r in range(runs):
        todo = [c for c in cands if not (big and c.name in SLOW and r >= slow_runs)]
        order.shuffle(todo)
        for c in todo:
            gc.collect()
            t_enc, w_enc, blob = timed(c.encode)
            t_dec, w_dec, out = timed(lambda c=c, blob=blob: c.decode(blob))
            res = results[c.name]
            if r == 0:
                if not c.check(out):
                    raise SystemExit(f"error: {c.name} did not give back the same data")
                res.size = c.size(blob)
            res.enc.append(t_enc)
            res.dec.append(t_dec)
            res.enc_wall.append(w_enc)
            res.dec_wall.append(w_dec)
            log(f"  round {r + 1}/{runs} {c.name}: encode {t_enc:.3f} s cpu {w_enc:.3f} s wall, "
                f"decode {t_dec:.3f} s cpu {w_dec:.3f} s wall")
            del blob, out
    return results


def table(title: str, raw: int, results: dict[str, Result]) -> str:
    """The results as a text table with ratios to zstd-3 (above 1: better than zstd-3)."""
    base = results.get(BASELINE)
    lines = [
        title,
        f"{'':<12} {'':>13} {'':>7} {'':>8} | {'by CPU time':^34} | {'by wall clock':^34} |",
        f"{'codec':<12} {'bytes':>13} {'of raw':>7} {'size/z3':>8} | {'enc MB/s':>9} "
        f"{'dec MB/s':>9} {'enc/z3':>6} {'dec/z3':>6} | {'enc MB/s':>9} {'dec MB/s':>9} "
        f"{'enc/z3':>6} {'dec/z3':>6} | runs",
    ]
    for res in results.values():
        cells = [f"{res.name:<12} {res.size:>13,} {res.size / raw:7.4f} "
                 + (f"{res.size / base.size:8.4f}" if base else f"{'-':>8}")]
        for enc, dec in (("enc", "dec"), ("enc_wall", "dec_wall")):
            e, d = res.mbs(raw, enc), res.mbs(raw, dec)
            if base is not None:
                ratios = f"{e / base.mbs(raw, enc):6.2f} {d / base.mbs(raw, dec):6.2f}"
            else:
                ratios = f"{'-':>6} {'-':>6}"
            cells.append(f"{e:9.1f} {d:9.1f} {ratios}")
        lines.append(" | ".join(cells) + f" | {len(res.enc):>4}")
    return "\n".join(lines)


def trained_like(mib: float, dtype: str, seed: int) -> Weights:
    """A model of about *mib* MiB of *dtype* with the statistics of trained weights:
    matrices of 1024 columns (at most 16 MiB of float32 each) whose values follow a
    Student-t with 5 degrees of freedom (trained weights have heavier tails than a
    normal) scaled to a per-matrix standard deviation drawn log-uniformly from 0.005 to
    0.05 (layers differ), each followed by a norm weight near 1 and a bias near 0, as
    in a transformer block. Values are rounded to *dtype* from float32."""
    rng = np.random.default_rng(seed)
    target = canonical_dtype(dtype)
    total = int(mib * (1 << 20)) // target.itemsize
    tensors: dict[str, np.ndarray] = {}
    done, i = 0, 0
    while done < total:
        rows = min(4096, max(1, (total - done) // 1024))
        std = float(np.exp(rng.uniform(np.log(0.005), np.log(0.05))))
        m = rng.standard_t(5, (rows, 1024)).astype(np.float32) * np.float32(std / np.sqrt(5 / 3))
        tensors[f"layer{i}/W"] = m.astype(target)
        tensors[f"layer{i}/norm"] = (1 + 0.1 * rng.standard_normal(1024)).astype(np.float32) \
            .astype(target)
        tensors[f"layer{i}/b"] = (0.01 * rng.standard_normal(1024)).astype(np.float32) \
            .astype(target)
        done += rows * 1024 + 2048
        i += 1
    return Weights(tensors)


def synthetic(mib: float, seed: int) -> Weights:
    """float32 normal(0, 0.02): matrices of 1024 columns, at most 16 MiB each."""
    total = int(mib * (1 << 20)) // 4
    values = np.random.default_rng(seed).normal(0.0, 0.02, total).astype(np.float32)
    tensors, per = {}, 4 << 20
    for i, start in enumerate(range(0, total, per)):
        part = values[start:start + per]
        tensors[f"layer{i}/W"] = part.reshape(-1, 1024) if part.size % 1024 == 0 else part
    return Weights(tensors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Sizes and encode/decode throughput of wsc against zstd -3/-19, xz -9e "
                    "and zlib -9 on the same bytes, as ratios to zstd -3 measured in the same run.",
    )
    parser.add_argument("--reference", type=Path, nargs="*", default=REFERENCE,
                        help="reference weight files (default: the book's three in "
                        f"{DATA}); each skipped with a note if absent")
    parser.add_argument("--synthetic-mib", type=float, default=256.0,
                        help="size of each synthetic set in MiB (default 256; 0 skips them)")
    parser.add_argument("--dtypes", default="float32,bfloat16,float16",
                        help="dtypes of the trained-like synthetic sets (default: "
                        "float32,bfloat16,float16); 'normal' adds the old normal(0, 0.02) set")
    parser.add_argument("--seed", type=int, default=20240601, help="seed of the synthetic set")
    parser.add_argument("--runs", type=int, default=5, help="timed rounds per codec (default 5)")
    parser.add_argument("--slow-runs", type=int, default=1,
                        help="rounds of zstd-19 and xz-9e on sets over 64 MiB (default 1)")
    parser.add_argument("--codecs", default="wsc,zipnn,zstd-3,zstd-19,shuffle-zstd,xz-9e,zlib-9",
                        help="comma-separated subset to run (default: all)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("--quiet", action="store_true", help="no per-round progress on stderr")
    args = parser.parse_args(argv)

    names = [n.strip() for n in args.codecs.split(",") if n.strip()]
    known = {"wsc", "zipnn", "zstd-3", "zstd-19", "shuffle-zstd", "xz-9e", "zlib-9"}
    unknown = [n for n in names if n not in known]
    if unknown or not names or args.runs < 1 or args.slow_runs < 1:
        parser.error(f"--codecs takes some of {', '.join(sorted(known))}; runs must be >= 1")

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    if "zipnn" in names and zipnn is None:
        print("# note: zipnn is not installed here, so its rows are missing "
              "(pip install torch==2.13.0 zipnn)")
    sets: list[tuple[str, Weights]] = []
    for ref in args.reference:
        if ref.exists():
            w = weightstore.load(ref)
            dtypes = sorted({str(a.dtype) for a in w.values()})
            sets.append((f"reference: {ref.name}, {len(w)} tensors of {'/'.join(dtypes)}, "
                         f"{w.total_values:,} values", w))
        else:
            print(f"# note: {ref} not found, that reference set is skipped")
    for dtype in [d.strip() for d in args.dtypes.split(",") if d.strip()]:
        if args.synthetic_mib <= 0:
            break
        if dtype == "normal":
            w = synthetic(args.synthetic_mib, args.seed)
            title = "synthetic: float32 normal(0, 0.02)"
        else:
            w = trained_like(args.synthetic_mib, dtype, args.seed)
            title = f"synthetic: {dtype}, trained-like (Student-t 5, per-layer std)"
        sets.append((f"{title}, seed {args.seed}, {args.synthetic_mib:g} MiB, {len(w)} tensors, "
                     f"{w.total_values:,} values", w))

    report = []
    print(f"# numpy {np.__version__}, zstandard {zstandard.__version__} "
          f"(libzstd {'.'.join(map(str, zstandard.ZSTD_VERSION))}), "
          f"zlib {zlib.ZLIB_RUNTIME_VERSION}, python {sys.version.split()[0]}, "
          f"zipnn {getattr(zipnn, '__version__', 'installed') if zipnn else 'absent'}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    for title, w in sets:
        raw = raw_bytes(w)
        log(f"{title}: {len(raw):,} raw bytes")
        results = run(w, raw, names, args.runs, args.slow_runs, args.seed, log)
        print()
        print(table(f"{title}, {len(raw):,} raw bytes", len(raw), results))
        report.append({"set": title, "raw_bytes": len(raw), "results": [
            {"codec": r.name, "bytes": r.size, "encode_cpu_s": r.enc, "decode_cpu_s": r.dec,
             "encode_wall_s": r.enc_wall, "decode_wall_s": r.dec_wall,
             "encode_mb_s_cpu": r.mbs(len(raw), "enc"), "decode_mb_s_cpu": r.mbs(len(raw), "dec"),
             "encode_mb_s_wall": r.mbs(len(raw), "enc_wall"),
             "decode_mb_s_wall": r.mbs(len(raw), "dec_wall")}
            for r in results.values()]})
        del raw
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
