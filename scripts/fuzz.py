"""Fuzz every registered codec with damaged files and random round trips.

Each case is rebuilt from (seed, codec, case number), so any reported case can be
run again alone with ``--case`` (a writer whose bytes vary from run to run, like the
safetensors library's hash-ordered metadata, may damage a different byte then:
``--keep DIR`` saves the damaged file of every reported case).

For pickle, a third of the damage cases are structure-aware instead: random opcode
streams, or opcodes inserted, replaced, deleted or repeated at opcode boundaries of a
valid file, with valid, lying or absurd arguments (``random_pickle_ops``).

Nine cases in ten take a valid file (one of a few random weight sets the codec
wrote), damage it (a byte flip, a flip near the header or trailer, a cut, an
insertion, a deletion, a number in a text header replaced, a binary length
field overwritten) and load it; one in ten writes a fresh random weight set and
checks that it reads back bit for bit.

Cases run in worker processes, each with a time limit (a case over it is a hang;
its worker is killed and replaced) and a cap on its address space (an allocation
a hostile file provokes beyond it shows as a crash, MemoryError).

Per codec the table gives: cases tried, errors raised cleanly (a WeightstoreError
that names the file), harmless changes (the file loaded to the same content: the
damage hit bytes that carry nothing), undetected changes (it loaded to different
content without an error), crashes (any other exception, or a round trip that
did not give the same weights back) and hangs. Crashes and hangs must be zero;
undetected changes must be zero for codecs that declare ``checksums``. The exit
status is 1 when any of these fails.

examples:
  python scripts/fuzz.py                         every codec, 5000 cases each
  python scripts/fuzz.py --codec json --cases 20000 --seed 7
  python scripts/fuzz.py --codec hdf5 --seed 7 --case 1234   replay one case, show the error
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import weightstore as ws
from weightstore.codec import Codec
from weightstore.testing import (
    Outcome,
    Result,
    as_stored,
    classify,
    file_name,
    for_codec,
    random_mutation,
    random_pickle_ops,
    random_weights,
    same_content,
)

#: Share of cases that are round trips of fresh random weights rather than damage.
ROUND_TRIP_SHARE = 0.1
#: Share of pickle's damage cases built from random opcodes rather than byte damage.
PICKLE_OPCODE_SHARE = 1 / 3
#: Valid files per codec that damaged cases start from.
BASE_FILES = 8
COLUMNS = ("codec", "cases", "clean errors", "harmless", "undetected", "crashes", "hangs",
           "round trips")


#: Where a read-only codec's sample files are (made by the format's own tool).
SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "data"


def _weights_for(cls: type[Codec], rng: random.Random, folder: Path,
                 stem: str) -> tuple[bytes, ws.Weights] | None:
    """Random weights the codec can hold, written: (file bytes, weights as read back).
    A read-only codec (``writable = False``) gives one of its sample files instead."""
    if not cls.writable:
        samples = sorted(SAMPLES.rglob(f"*{cls.extensions[0]}"))
        if not samples:
            return None
        sample = samples[rng.randrange(len(samples))]
        return sample.read_bytes(), ws.load(sample, cls.name)
    for attempt in range(20):
        weights = for_codec(cls, random_weights(rng, metadata=cls.supports_metadata))
        path = folder / file_name(cls, f"{stem}-{attempt}")
        try:
            ws.save(weights, path, cls.name)
        except ws.UnsupportedError:
            continue
        data = path.read_bytes()
        clean = ws.load(path, cls.name)
        path.unlink()
        return data, clean
    return None


def run_case(codec: str, seed: int, case: int, folder: Path,
             bases: dict[int, tuple[bytes, ws.Weights]],
             keep: Path | None = None) -> tuple[str, str, str]:
    """One case: (outcome name, what was done, detail). Exceptions escape to the caller.

    With *keep*, the damaged file of a crash or undetected change is copied there (a
    writer whose output is not byte-for-byte repeatable, like safetensors' metadata
    order, cannot be replayed exactly).
    """
    cls = ws.get_codec(codec)
    rng = random.Random(f"{seed}/{codec}/{case}")
    if rng.random() < ROUND_TRIP_SHARE and cls.writable:
        weights = for_codec(cls, random_weights(rng, metadata=cls.supports_metadata))
        path = folder / file_name(cls, f"rt{case}")
        try:
            ws.save(weights, path, cls.name)
        except ws.UnsupportedError as e:
            return "round trip", "round trip", f"unsupported, refused cleanly: {e}"
        try:
            got = ws.load(path, cls.name)
        finally:
            path.unlink(missing_ok=True)
        if cls.lossless and not same_content(as_stored(cls, weights, path), got):
            return Outcome.CRASH.value, "round trip", f"not identical: {weights!r} -> {got!r}"
        return "round trip", "round trip", ""
    index = rng.randrange(BASE_FILES)
    if index not in bases:
        made = _weights_for(cls, random.Random(f"{seed}/{codec}/base{index}"), folder, "base")
        if made is None:
            raise RuntimeError(f"{codec}: no random weights it can write")
        bases[index] = made
    data, clean = bases[index]
    kinds = []
    if cls.name == "pickle" and rng.random() < PICKLE_OPCODE_SHARE:
        kind, data = random_pickle_ops(rng, data)
        kinds.append(kind)
    else:
        for _ in range(1 if rng.random() < 0.8 else rng.randint(2, 3)):
            kind, data = random_mutation(rng, data)
            kinds.append(kind)
    result: Result = classify(cls, data, clean, folder, f"case{case}")
    if keep is not None and result.outcome in (Outcome.CRASH, Outcome.UNDETECTED):
        keep.mkdir(parents=True, exist_ok=True)
        (keep / file_name(cls, f"{codec}-seed{seed}-case{case}")).write_bytes(data)
    return result.outcome.value, "+".join(kinds), result.detail


def warm_up(codec: str, seed: int, folder: Path,
            bases: dict[int, tuple[bytes, ws.Weights]]) -> None:
    """What a worker does once per codec before its cases are timed: import the codec and
    write the valid files damaged cases start from (on a loaded machine this alone can
    take longer than a case's time limit, and is not a case)."""
    cls = ws.get_codec(codec)
    for index in range(BASE_FILES):
        if index not in bases:
            made = _weights_for(cls, random.Random(f"{seed}/{codec}/base{index}"), folder,
                                "base")
            if made is None:
                raise RuntimeError(f"{codec}: no random weights it can write")
            bases[index] = made


def _limit_memory(extra_mib: int) -> None:
    """Cap this process's address space at its current size plus *extra_mib*."""
    try:
        import resource

        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        limit = vm + extra_mib * (1 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, OSError, StopIteration, ValueError):  # not Linux: no cap
        pass


def _worker(conn: Connection, memory_mib: int, keep: Path | None) -> None:
    """Run cases sent through *conn* until it closes."""
    _limit_memory(memory_mib)
    warnings.simplefilter("ignore")  # regrouping warnings: the round trip checks the order
    bases: dict[tuple[str, int], dict[int, tuple[bytes, ws.Weights]]] = {}
    with tempfile.TemporaryDirectory(prefix="weightstore-fuzz-") as tmp:
        while True:
            try:
                codec, seed, case = conn.recv()
            except EOFError:
                return
            if case is None:  # warm-up, untimed: import the codec, write the base files
                try:
                    warm_up(codec, seed, Path(tmp), bases.setdefault((codec, seed), {}))
                    conn.send(("ready", "", ""))
                except BaseException as e:  # noqa: BLE001
                    conn.send((Outcome.CRASH.value, "warm-up", f"{type(e).__name__}: {e}"))
                continue
            try:
                reply = run_case(codec, seed, case, Path(tmp), bases.setdefault((codec, seed), {}),
                                 keep)
            except BaseException as e:  # noqa: BLE001  (a crash is what we count)
                reply = (Outcome.CRASH.value, "?", f"{type(e).__name__}: {e}")
            conn.send(reply)


@dataclass
class Worker:
    """A worker process and the case it is running."""

    process: Any
    conn: Connection
    case: int | None = None
    started: float = 0.0


@dataclass
class Tally:
    """Counts for one codec, and the first examples of each failure."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, outcome: str, case: int, kind: str, detail: str) -> None:
        self.counts[outcome] += 1
        if outcome in (Outcome.CRASH.value, Outcome.UNDETECTED.value, "hang"):
            found = self.examples.setdefault(outcome, [])
            if len(found) < 5:
                found.append(f"case {case} ({kind}): {detail[:300]}")


class Pool:
    """Worker processes, each running one case at a time under a time limit."""

    def __init__(self, jobs: int, timeout: float, memory_mib: int,
                 keep: Path | None = None) -> None:
        self.keep = keep
        methods = mp.get_all_start_methods()
        self.ctx = mp.get_context("fork" if "fork" in methods else "spawn")
        self.timeout = timeout
        self.memory_mib = memory_mib
        self.workers = [self._start() for _ in range(jobs)]

    def _start(self) -> Worker:
        parent, child = self.ctx.Pipe()
        process = self.ctx.Process(target=_worker, args=(child, self.memory_mib, self.keep),
                                   daemon=True)
        process.start()
        child.close()
        return Worker(process, parent)

    def run(self, codec: str, seed: int, cases: range, tally: Tally, progress: bool) -> None:
        """Run *cases* of *codec*, adding each outcome to *tally*."""
        todo = iter(cases)
        busy = 0
        done = 0
        for w in self.workers:  # untimed warm-up (a worker replaced later warms in its case)
            w.conn.send((codec, seed, None))
        for w in self.workers:
            if w.conn.poll(600):
                outcome, kind, detail = w.conn.recv()
                if outcome != "ready":
                    tally.add(outcome, -1, kind, detail)
        for w in self.workers:
            busy += self._give(w, codec, seed, todo)
        while busy:
            ready = wait([w.conn for w in self.workers if w.case is not None], timeout=0.25)
            now = time.monotonic()
            for i, w in enumerate(self.workers):
                if w.case is None:
                    continue
                if w.conn in ready:
                    try:
                        outcome, kind, detail = w.conn.recv()
                    except EOFError:  # the worker died (a segfault, the OOM killer)
                        outcome, kind, detail = (Outcome.CRASH.value, "?",
                                                 f"worker died, exit code {w.process.exitcode}")
                        self.workers[i] = w = self._replace(w)
                elif now - w.started > self.timeout:
                    outcome, kind, detail = "hang", "?", f"over {self.timeout} s"
                    self.workers[i] = w = self._replace(w)
                else:
                    continue
                tally.add(outcome, w.case if w.case is not None else -1, kind, detail)
                done += 1
                busy -= 1
                w.case = None
                busy += self._give(w, codec, seed, todo)
                if progress and done % 500 == 0:
                    print(f"  {codec}: {done} cases", file=sys.stderr)

    def _give(self, w: Worker, codec: str, seed: int, todo: Any) -> int:
        case = next(todo, None)
        if case is None:
            return 0
        w.case, w.started = case, time.monotonic()
        w.conn.send((codec, seed, case))
        return 1

    def _replace(self, w: Worker) -> Worker:
        case = w.case
        w.process.kill()
        w.process.join()
        w.conn.close()
        fresh = self._start()
        fresh.case = case
        return fresh

    def close(self) -> None:
        """Stop every worker."""
        for w in self.workers:
            w.conn.close()
        for w in self.workers:
            w.process.join(timeout=5)
            if w.process.is_alive():
                w.process.kill()


def replay(codec: str, seed: int, case: int) -> int:
    """Run one case in this process and show its outcome (with the traceback of a crash)."""
    with tempfile.TemporaryDirectory(prefix="weightstore-fuzz-") as tmp:
        try:
            outcome, kind, detail = run_case(codec, seed, case, Path(tmp), {})
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
            return 1
    print(f"{codec} seed {seed} case {case} ({kind}): {outcome} {detail}")
    return 0 if outcome not in (Outcome.CRASH.value, "hang") else 1


def print_table(rows: list[list[str]]) -> None:
    """Rows under the column names, numbers right-aligned."""
    widths = [max(len(str(r[i])) for r in [list(COLUMNS), *rows]) for i in range(len(COLUMNS))]
    line = "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                     for i, (c, w) in enumerate(zip(COLUMNS, widths, strict=True)))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths, strict=True))))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--cases", type=int, default=5000, help="cases per codec (default 5000)")
    p.add_argument("--seed", type=int, default=0, help="seed of every case (default 0)")
    p.add_argument("--codec", action="append", metavar="NAME",
                   help="fuzz only this codec (repeatable; default every registered codec)")
    p.add_argument("--case", type=int, help="replay this one case in-process and show it")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="worker processes (default: one per core)")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="seconds a case may run before it counts as a hang (default 5)")
    p.add_argument("--memory", type=int, default=2048, metavar="MIB",
                   help="address space each worker may add, in MiB (default 2048)")
    p.add_argument("--keep", type=Path, metavar="DIR",
                   help="copy the damaged file of each crash or undetected change into DIR")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the campaign and print the table; 1 if a crash, hang or checked change was found."""
    args = parse_args(argv)
    names = args.codec or [c.name for c in ws.formats()]
    for name in names:
        ws.get_codec(name)  # fail early on a typo
    if args.case is not None:
        return sum(replay(n, args.seed, args.case) for n in names) and 1
    pool = Pool(max(1, args.jobs), args.timeout, args.memory, args.keep)
    rows, failed, tallies = [], False, {}
    started = time.monotonic()
    try:
        for name in names:
            tally = tallies[name] = Tally()
            pool.run(name, args.seed, range(args.cases), tally, not args.quiet)
            c = tally.counts
            checked = getattr(ws.get_codec(name), "checksums", False)
            rows.append([name + (" (checksums)" if checked else ""), sum(c.values()),
                         c[Outcome.REFUSED.value], c[Outcome.HARMLESS.value],
                         c[Outcome.UNDETECTED.value], c[Outcome.CRASH.value], c["hang"],
                         c["round trip"]])
            failed |= bool(c[Outcome.CRASH.value] or c["hang"]
                           or (checked and c[Outcome.UNDETECTED.value]))
    finally:
        pool.close()
    print(f"python scripts/fuzz.py --seed {args.seed} --cases {args.cases}"
          + "".join(f" --codec {n}" for n in (args.codec or [])))
    print_table(rows)
    print(f"{time.monotonic() - started:.0f} s, {args.jobs} workers")
    for name, tally in tallies.items():
        for outcome, found in tally.examples.items():
            print(f"\n{name}: {outcome}, first {len(found)} "
                  f"(replay with --codec {name} --seed {args.seed} --case N):")
            for line in found:
                print(f"  {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
