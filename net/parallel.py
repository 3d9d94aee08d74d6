"""How the networks use the CPUs: independent row groups on worker threads, one BLAS thread each.

Evaluation is many matrix products of modest size (DeepConvNet runs groups of a few images,
the MLP batches of hundreds of rows) with copies and element-wise work between them. Left to itself,
numpy's BLAS (OpenBLAS) splits *each product* over every core and makes the calling thread
wait for all of its helpers at the end of it; its helpers spin while they wait for work. On an
idle machine that buys little (the copies and element-wise work stay on one core), and on a
busy one it is ruinous: a helper that the kernel has descheduled holds up every product, and
the spinning burns CPU the other processes need. Measured on the 2-core reference machine with
other jobs running, DeepConvNet took 286 s with default BLAS threads and 27.7 s with one (issue
20); the MLP's batched evaluation used 239 ms of CPU with default threads, 19 ms this way.

So :func:`run_groups` does the parallelism one level up. The rows (images) are cut into groups
that are independent of each other; each worker thread takes the next group when it is done
with its last one and runs the *whole* computation for it (copies, products, element-wise work;
numpy releases the GIL in all of them), with BLAS limited to one thread for the duration of
the call. Nothing ever waits on another thread mid-product, so a descheduled worker delays only
its own group, and the copies and element-wise work use every core too. A worker that the
machine cannot give a core (its thread waits on the run queue for more than 40% of the time,
for three windows of 100 ms in a row) stops taking groups, down to one worker: see
:class:`_Starvation`.

BLAS threads are set with ``threadpoolctl`` (a small, well-kept library that finds the BLAS
numpy loaded and calls its own thread-count setter). Without it, or with a BLAS it does not
know, net still works with numpy alone: groups then run one after another on the calling thread
with numpy's default BLAS threads, the behaviour before this module existed. The BLAS thread
count is process-wide; it is set on entry to the first concurrent :func:`run_groups` call and
restored when the last one returns, so nested or concurrent calls from several threads leave
it as they found it.

A group is computed the same way whichever thread runs it, so results do not depend on the
scheduling; callers that size their groups by the number of workers get results that depend on
it only in the last bits (the shapes of the matrix products change).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

try:
    from threadpoolctl import ThreadpoolController
except ImportError:  # numpy alone: run_groups falls back to one worker, default BLAS threads
    ThreadpoolController = None

__all__ = ["WORKERS", "available_cpus", "max_workers", "run_groups"]


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


WORKERS: int | None = None
"""Cap on the worker threads, for callers that want fewer than one per CPU (``None``: no cap).

Set it to 1 to keep evaluation on one core, e.g. ``net.parallel.WORKERS = 1``."""


def max_workers() -> int:
    """Worker threads :func:`run_groups` uses at most: one per available CPU, capped by
    :data:`WORKERS`; 1 when the BLAS thread count cannot be set (no ``threadpoolctl``, or a BLAS
    it does not know), since several threads each calling a multithreaded BLAS would
    oversubscribe the CPUs."""
    if not _single_threaded_blas.available():
        return 1
    cpus = available_cpus()
    return max(1, min(cpus, WORKERS)) if WORKERS is not None else cpus


class _SingleThreadedBlas:
    """Reference-counted "BLAS uses one thread" for the process; see the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._controller: Any = None
        self._limiter: Any = None

    def available(self) -> bool:
        """Whether the BLAS thread count can be set: ``threadpoolctl`` is installed and knows
        the BLAS numpy loaded (it does not know every one, e.g. Apple's Accelerate)."""
        if ThreadpoolController is None:
            return False
        with self._lock:
            if self._controller is None:  # scans the loaded libraries once (a few ms)
                self._controller = ThreadpoolController().select(user_api="blas")
            return bool(self._controller.lib_controllers)

    def __enter__(self) -> None:
        if not self.available():
            return
        with self._lock:
            if self._users == 0:
                self._limiter = self._controller.limit(limits=1)
            self._users += 1

    def __exit__(self, *exc: object) -> None:
        if not self.available():
            return
        with self._lock:
            self._users -= 1
            if self._users == 0:
                self._limiter.restore_original_limits()
                self._limiter = None


_single_threaded_blas = _SingleThreadedBlas()

# A worker whose thread waits for a CPU longer than _STARVED_SHARE of the time, in each of
# _STARVED_WINDOWS windows of at least _WINDOW_NS in a row, stops taking groups (see _Starvation).
# One window is not enough: right after other numpy work, OpenBLAS's own helper threads go on
# spinning for a while, and a single 50 ms window retired a worker on an idle machine (the
# DeepConvNet benchmark's quiet runs then used one core; issue 20).
_STARVED_SHARE = 0.4
_WINDOW_NS = 100_000_000
_STARVED_WINDOWS = 3


class _Starvation:
    """Whether the calling thread spends most of its time runnable but not running.

    Reads the thread's scheduler statistics (``/proc/thread-self/schedstat`` on Linux: time
    run, time waited on a run queue). When the machine cannot give each worker a core, for
    instance because the scheduler shares the CPUs per session (Linux's autogroup) and other
    sessions are busy, extra workers only add GIL hand-overs and cache contention; measured on
    the 2-core reference machine pinned to one CPU, two workers took 1.3x the wall time of one.
    Waiting for the GIL is sleeping, not waiting on a run queue, so it does not count. Only
    starvation that lasts counts: the answer is True after :data:`_STARVED_WINDOWS` starved
    windows in a row. Where the file does not exist the answer is always False and every
    worker stays.
    """

    def __init__(self) -> None:
        self._start = self._read()
        self._streak = 0

    @staticmethod
    def _read() -> tuple[int, int] | None:
        try:
            with open("/proc/thread-self/schedstat", "rb") as f:
                run, wait = f.read().split()[:2]
            return int(run), int(wait)
        except (OSError, ValueError):
            return None

    def __call__(self) -> bool:
        if self._start is None:
            return False
        now = self._read()
        if now is None:
            return False
        run, wait = now[0] - self._start[0], now[1] - self._start[1]
        if run + wait < _WINDOW_NS:
            return False
        self._start = now
        self._streak = self._streak + 1 if wait > _STARVED_SHARE * (run + wait) else 0
        return self._streak >= _STARVED_WINDOWS


def run_groups(
    n: int,
    step: int,
    make_worker: Callable[[], Callable[[int, int], None]],
    workers: int | None = None,
) -> None:
    """Process rows ``0 .. n-1`` in groups ``[start, start + step)`` on worker threads.

    ``make_worker()`` is called once in each worker thread and returns the function that
    processes one group, ``fn(start, stop)``; a worker's buffers live in that closure, so
    workers share nothing but what ``fn`` writes, which must be disjoint per group (the rows
    ``start:stop`` of an output array). ``workers`` defaults to :func:`max_workers`, and is
    never more than the number of groups; the calling thread is one of the workers, so with one
    worker everything runs on it. BLAS runs one thread per worker for the duration of the call.
    The first exception raised by a worker is re-raised here, once the other workers have
    finished the group they were on.
    """
    if n <= 0:
        return
    groups = -(-n // step)
    count = max(1, min(workers if workers is not None else max_workers(), groups))
    with _single_threaded_blas:
        if count == 1:
            fn = make_worker()
            for start in range(0, n, step):
                fn(start, min(start + step, n))
            return
        lock = threading.Lock()
        next_group = iter(range(0, n, step))
        errors: list[BaseException] = []
        active = [count]

        def worker() -> None:
            try:
                fn = make_worker()
                starved = _Starvation()
                while not errors:
                    with lock:
                        start = next(next_group, None)
                        if start is None:
                            return
                    fn(start, min(start + step, n))
                    if starved():
                        with lock:
                            if active[0] > 1:  # the last worker never retires
                                active[0] -= 1
                                return
            except BaseException as exc:  # re-raised on the calling thread below
                errors.append(exc)

        threads = [
            threading.Thread(target=worker, name=f"net-worker-{i}", daemon=True)
            for i in range(count - 1)
        ]
        for thread in threads:
            thread.start()
        worker()  # the calling thread is a worker too
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
