"""Compare the wsc codec with general-purpose compressors on the same bytes, in one run.

For each data set (the reference weights, and a synthetic set of float32 drawn from
normal(0, 0.02) with a fixed seed) it prints the stored size, encode and decode
throughput (MB/s of raw tensor bytes, 1 MB = 10**6 bytes, median of runs) and both
as ratios to zstd level 3 measured in the same run. The general-purpose compressors
get the tensors' raw bytes (C order, little-endian, concatenated); wsc gets the
weights and writes a complete file (header and checksums included) to memory.

Each operation is timed twice: by the process's CPU time (user + system, which
includes the kernel's work on page faults) and by the wall clock. On a machine
shared with other jobs the wall clock also counts the time spent waiting for a core,
so the CPU-time columns are the ones to compare there; on an idle machine the two
agree for these single-threaded codecs. The order of the codecs is shuffled in every
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

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sample_weight.pkl"
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
    return [table[n] for n in names]


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
        f"{'':<8} {'':>13} {'':>7} {'':>8} | {'by CPU time':^34} | {'by wall clock':^34} |",
        f"{'codec':<8} {'bytes':>13} {'of raw':>7} {'size/z3':>8} | {'enc MB/s':>9} "
        f"{'dec MB/s':>9} {'enc/z3':>6} {'dec/z3':>6} | {'enc MB/s':>9} {'dec MB/s':>9} "
        f"{'enc/z3':>6} {'dec/z3':>6} | runs",
    ]
    for res in results.values():
        cells = [f"{res.name:<8} {res.size:>13,} {res.size / raw:7.4f} "
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
    parser.add_argument("--reference", type=Path, default=REFERENCE,
                        help=f"reference weight file (default: {REFERENCE}); skipped if absent")
    parser.add_argument("--synthetic-mib", type=float, default=256.0,
                        help="size of the synthetic float32 set in MiB (default 256; 0 skips it)")
    parser.add_argument("--seed", type=int, default=20240601, help="seed of the synthetic set")
    parser.add_argument("--runs", type=int, default=5, help="timed rounds per codec (default 5)")
    parser.add_argument("--slow-runs", type=int, default=1,
                        help="rounds of zstd-19 and xz-9e on sets over 64 MiB (default 1)")
    parser.add_argument("--codecs", default="wsc,zstd-3,zstd-19,xz-9e,zlib-9",
                        help="comma-separated subset to run (default: all)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("--quiet", action="store_true", help="no per-round progress on stderr")
    args = parser.parse_args(argv)

    names = [n.strip() for n in args.codecs.split(",") if n.strip()]
    known = {"wsc", "zstd-3", "zstd-19", "xz-9e", "zlib-9"}
    unknown = [n for n in names if n not in known]
    if unknown or not names or args.runs < 1 or args.slow_runs < 1:
        parser.error(f"--codecs takes some of {', '.join(sorted(known))}; runs must be >= 1")

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    sets: list[tuple[str, Weights]] = []
    if args.reference.exists():
        w = weightstore.load(args.reference)
        sets.append((f"reference: {args.reference.name}, {len(w)} tensors, "
                     f"{w.total_values:,} values", w))
    else:
        log(f"note: {args.reference} not found, reference set skipped")
    if args.synthetic_mib > 0:
        w = synthetic(args.synthetic_mib, args.seed)
        sets.append((f"synthetic: float32 normal(0, 0.02), seed {args.seed}, "
                     f"{args.synthetic_mib:g} MiB, {len(w)} tensors, {w.total_values:,} values", w))

    report = []
    print(f"# numpy {np.__version__}, zstandard {zstandard.__version__} "
          f"(libzstd {'.'.join(map(str, zstandard.ZSTD_VERSION))}), "
          f"zlib {zlib.ZLIB_RUNTIME_VERSION}, python {sys.version.split()[0]}")
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
