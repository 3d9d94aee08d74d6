"""Timing on a quiet and on a synthetic busy machine, for the evaluation benchmarks.

:func:`one_core_busy` starts a background process that burns one core (a Python busy loop, in
its own session so the scheduler treats it as another user's work) and stops it on exit; the
process also stops by itself after ``max_seconds``, so a killed benchmark cannot leave it behind.

:func:`run_interleaved` times several methods in rounds: each round runs every method once
quiet, then once again with the burner running, so slow drifts of the (shared) machine touch
every figure alike. Before each run it waits ``settle`` seconds (``--settle``, default 0.3):
after a product with its default threads OpenBLAS leaves its helper threads spinning for about
0.1 s (its ``THREAD_TIMEOUT``, 2^28 cycles), and without the pause the next method is timed
against them (measured: the MLP's batched evaluation read 16-19 ms right after the default-thread
products and 9-10 ms on its own). The pause in turn leaves the CPUs idle, and on the
reference machine (a 2-vCPU virtual machine) the first few milliseconds of work after an
idle spell run up to twice as slowly and seldom on both CPUs at once (two threads of
``np.exp`` taking 2.2 ms each: 8.5 ms after 0.3 s idle, 5 ms back to back, 4.4 ms one after
the other), which would decide a 10 ms measurement; so a benchmark of short methods runs
each one ``warmup`` times untimed after the pause (``--warmup``), every method alike.
Each :class:`Sample` keeps the wall time, this process's CPU time
(``time.process_time``: all its threads, so a method that spins shows it), the share of the
CPUs other processes used meanwhile (``/proc/stat``, Linux only) and the 1-minute load
average, as ``uptime`` prints it, right after the run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Sample",
    "Series",
    "add_busy_argument",
    "measure",
    "one_core_busy",
    "run_interleaved",
    "loadavg",
]

#: Pause before each timed run: longer than OpenBLAS's helper threads spin after a product.
SETTLE_SECONDS = 0.3

_BURN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


@contextmanager
def one_core_busy(max_seconds: float = 600.0) -> Iterator[int]:
    """Keep one core busy with a background process while the block runs; yields its pid."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _BURN.format(seconds=float(max_seconds))],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(0.3)  # let it start and reach its loop
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def add_busy_argument(parser: argparse.ArgumentParser, warmup: int = 0) -> None:
    """The ``--no-busy``, ``--settle`` and ``--warmup`` options (default *warmup*) of every
    benchmark that uses :func:`run_interleaved`."""
    parser.add_argument(
        "--no-busy", action="store_true", help="skip the runs beside a process burning one core"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=SETTLE_SECONDS,
        metavar="SECONDS",
        help="pause before each timed run, so that BLAS threads left spinning by the previous "
        f"method stop first (default {SETTLE_SECONDS}; 0 times back to back)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=warmup,
        metavar="N",
        help=f"untimed runs of a method after the pause, before the timed one (default {warmup})",
    )


def loadavg() -> float | None:
    """The 1-minute load average (``uptime``'s first figure), or None where the OS has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine, or None where /proc/stat does not exist."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return None
    return sum(values) - values[3] - values[4], sum(values)


@dataclass(frozen=True)
class Sample:
    """One timed run: wall and own-CPU seconds, others' CPU share, load average after it."""

    wall: float
    cpu: float
    others: float | None
    load: float | None


def measure(fn: Callable[[], Any]) -> tuple[Sample, Any]:
    """Run ``fn`` once; its :class:`Sample` and its result."""
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    before, cpu = _cpu_jiffies(), time.process_time()
    start = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu
    after = _cpu_jiffies()
    others = None
    if before is not None and after is not None and after[1] > before[1]:
        others = max(0.0, (after[0] - before[0]) - cpu * hz) / (after[1] - before[1])
    return Sample(wall, cpu, others, loadavg()), result


@dataclass
class Series:
    """The samples of one method in one condition (quiet or busy), and its last result."""

    samples: list[Sample] = field(default_factory=list)
    result: Any = None

    @property
    def wall(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    @property
    def cpu(self) -> float:
        return statistics.median(s.cpu for s in self.samples)

    def loads(self) -> str:
        """The load averages after the runs, as ``min-max``."""
        values = [s.load for s in self.samples if s.load is not None]
        if not values:
            return "?"
        low, high = min(values), max(values)
        return f"{low:.1f}" if round(low, 1) == round(high, 1) else f"{low:.1f}-{high:.1f}"

    def others(self) -> str:
        values = [s.others for s in self.samples if s.others is not None]
        return f"{max(values):.0%}" if values else "?"

    def to_dict(self, scale: float = 1.0) -> dict[str, Any]:
        return {
            "wall_median": self.wall * scale,
            "cpu_median": self.cpu * scale,
            "wall_runs": [s.wall * scale for s in self.samples],
            "cpu_runs": [s.cpu * scale for s in self.samples],
            "load_after_runs": [s.load for s in self.samples],
            "others_cpu_share": [s.others for s in self.samples],
        }


def run_interleaved(
    methods: Mapping[str, Callable[[], Any]],
    runs: int,
    busy: bool,
    progress: Callable[[str], None] | None = None,
    rounds: Mapping[str, int] | None = None,
    settle: float = 0.0,
    warmup: int = 0,
) -> dict[str, dict[str, Series]]:
    """Time every method ``runs`` times quiet and, if ``busy``, as often beside the burner.

    Returns ``{"quiet": {method: Series}, "busy": {...}}``. Rounds alternate: all methods
    quiet, then all methods busy (the burner started for the round and stopped after it).
    ``rounds`` runs a slow method in fewer rounds (the first ones) than ``runs``. ``settle``
    seconds pass before each run, then ``warmup`` untimed calls (see the module docstring).
    """
    conditions = ("quiet", "busy") if busy else ("quiet",)
    out: dict[str, dict[str, Series]] = {c: {m: Series() for m in methods} for c in conditions}
    for round_ in range(runs):
        for condition in conditions:
            with one_core_busy() if condition == "busy" else nullcontext():
                for name, fn in methods.items():
                    if rounds is not None and round_ >= rounds.get(name, runs):
                        continue
                    time.sleep(settle)
                    for _ in range(warmup):
                        fn()
                    sample, result = measure(fn)
                    series = out[condition][name]
                    series.samples.append(sample)
                    series.result = result
                    if progress is not None:
                        progress(
                            f"  round {round_ + 1}/{runs} {condition:5} {name}: "
                            f"{sample.wall:.3f} s wall, {sample.cpu:.3f} s CPU, load {sample.load}"
                        )
    return out
