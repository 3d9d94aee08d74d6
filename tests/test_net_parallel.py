"""net.parallel: every group processed once, errors surface, BLAS threads set and restored."""

from __future__ import annotations

import threading
import time
import types

import numpy as np
import pytest

import net.parallel as parallel
from net.convnet import DeepConvNet, SimpleConvNet
from net.mlp import ThreeLayerNet
from net.models import MLP_SHAPES

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_threads() -> list[int]:
    return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]


@pytest.mark.parametrize("workers", [1, 2, 3, None])
@pytest.mark.parametrize(("n", "step"), [(0, 4), (1, 4), (10, 3), (12, 4), (7, 100)])
def test_every_row_once(n, step, workers):
    seen = np.zeros(n, dtype=int)
    groups: list[tuple[int, int]] = []
    made: list[int] = []
    lock = threading.Lock()

    def make_worker():
        with lock:
            made.append(threading.get_ident())

        def run(start, stop):
            assert 0 <= start < stop <= n and stop - start <= step
            seen[start:stop] += 1
            with lock:
                groups.append((start, stop))

        return run

    parallel.run_groups(n, step, make_worker, workers)
    assert (seen == 1).all()
    assert sorted(groups) == [(s, min(s + step, n)) for s in range(0, n, step)]
    expected_workers = 0 if n == 0 else min(workers or parallel.max_workers(), -(-n // step))
    assert len(made) == expected_workers


def test_starved_workers_retire_but_every_row_is_done(monkeypatch):
    monkeypatch.setattr(parallel._Starvation, "__call__", lambda self: True)
    seen = np.zeros(50, dtype=int)
    done_by: dict[str, int] = {}
    lock = threading.Lock()

    def make_worker():
        def run(start, stop):
            seen[start:stop] += 1
            with lock:
                name = threading.current_thread().name
                done_by[name] = done_by.get(name, 0) + 1

        return run

    parallel.run_groups(50, 1, make_worker, workers=3)
    assert (seen == 1).all()
    # Each retiring worker did one group; the last one left did all the rest.
    assert sorted(done_by.values()) == [1, 1, 48]


def test_starvation_reads_this_threads_schedstat():
    probe = parallel._Starvation()
    if probe._start is None:
        pytest.skip("no /proc/thread-self/schedstat on this OS")
    assert probe() is False  # a fresh window is too short to judge
    end = time.perf_counter() + 0.06
    while time.perf_counter() < end:
        pass
    assert probe._read()[0] > probe._start[0]  # run time counted


def test_only_lasting_starvation_retires_a_worker(monkeypatch):
    window = parallel._WINDOW_NS
    # (run, wait) totals read at each call: windows starved, starved, fine, then starved x3.
    shares = [0.5, 0.5, 0.1, 0.5, 0.5, 0.5]
    readings = [(0, 0)]
    for share in shares:
        run, wait = readings[-1]
        readings.append((run + int(window * (1 - share)), wait + int(window * share)))
    feed = iter(readings)
    monkeypatch.setattr(parallel._Starvation, "_read", staticmethod(lambda: next(feed)))
    probe = parallel._Starvation()
    answers = [probe() for _ in shares]
    assert answers == [False, False, False, False, False, True]


def test_worker_error_is_raised_and_stops_the_rest():
    before = _blas_threads()
    calls = []

    def make_worker():
        def run(start, stop):
            calls.append(start)
            if start == 3:
                raise ValueError("group 3")

        return run

    with pytest.raises(ValueError, match="group 3"):
        parallel.run_groups(1000, 1, make_worker, workers=2)
    assert len(calls) < 1000
    assert _blas_threads() == before


def test_blas_is_single_threaded_inside_and_restored_after():
    before = _blas_threads()
    assert before, "threadpoolctl finds no BLAS in this numpy"
    inside: list[list[int]] = []

    def make_worker():
        def run(start, stop):
            inside.append(_blas_threads())

        return run

    parallel.run_groups(4, 1, make_worker, workers=2)
    assert inside and all(threads == [1] * len(before) for threads in inside)
    assert _blas_threads() == before


def test_nested_calls_restore_the_outer_setting():
    before = _blas_threads()

    def make_worker():
        def run(start, stop):
            parallel.run_groups(2, 1, lambda: lambda a, b: None, workers=2)
            assert _blas_threads() == [1] * len(before)

        return run

    parallel.run_groups(4, 1, make_worker, workers=2)
    assert _blas_threads() == before


def test_workers_cap_and_numpy_only_fallback(monkeypatch):
    monkeypatch.setattr(parallel, "WORKERS", 1)
    assert parallel.max_workers() == 1
    monkeypatch.setattr(parallel, "WORKERS", None)
    assert parallel.max_workers() == parallel.available_cpus()
    # A BLAS threadpoolctl does not know (e.g. Accelerate): one worker, threads untouched.
    unknown = types.SimpleNamespace(lib_controllers=[])
    monkeypatch.setattr(parallel._single_threaded_blas, "_controller", unknown)
    assert parallel.max_workers() == 1
    monkeypatch.undo()
    monkeypatch.setattr(parallel, "ThreadpoolController", None)
    assert parallel.max_workers() == 1
    before = _blas_threads()
    inside: list[list[int]] = []

    def make_worker():
        def run(start, stop):
            inside.append(_blas_threads())

        return run

    parallel.run_groups(5, 2, make_worker)
    assert inside == [before] * 3  # one worker, numpy's own BLAS threads untouched


@pytest.mark.parametrize("cls", [SimpleConvNet, DeepConvNet])
def test_convnet_scores_do_not_depend_on_workers(cls, monkeypatch):
    rng = np.random.default_rng(20)
    weights = {k: rng.normal(0, 0.1, shape) for k, shape in cls.param_shapes().items()}
    net = cls.from_weights(weights)
    x = rng.random((23, 1, 28, 28))
    monkeypatch.setattr(parallel, "available_cpus", lambda: 4)
    small, cache_sized = {}, {}
    for workers in (1, 2, 4):
        monkeypatch.setattr(parallel, "WORKERS", workers)
        small[workers] = net.predict(x, batch_size=8)  # groups of 8, 4 and 2 images
        cache_sized[workers] = net.predict(x, batch_size=4 * net.group_size())
    reference = net.predict_layers(x)
    for s in (*small.values(), *cache_sized.values()):
        np.testing.assert_allclose(s, reference, rtol=1e-12, atol=1e-12)
    # The same group size whatever the workers: the same bits, whichever thread ran a group.
    np.testing.assert_array_equal(cache_sized[2], cache_sized[1])
    np.testing.assert_array_equal(cache_sized[4], cache_sized[1])


def test_mlp_rows_do_not_depend_on_workers(monkeypatch):
    rng = np.random.default_rng(21)
    net = ThreeLayerNet.from_weights(
        {k: rng.normal(0, 0.1, s).astype(np.float32) for k, s in MLP_SHAPES.items()}
    )
    x = rng.random((57, 784), dtype=np.float32)
    results = []
    for workers in (1, 2, 3):
        monkeypatch.setattr(parallel, "WORKERS", workers)
        monkeypatch.setattr(parallel, "available_cpus", lambda: 3)
        results.append(net.predict(x, batch_size=12))
    assert all(r.dtype == np.float32 and r.shape == (57, 10) for r in results)
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], rtol=1e-5, atol=1e-6)
        assert (np.argmax(r, axis=1) == np.argmax(results[0], axis=1)).all()
