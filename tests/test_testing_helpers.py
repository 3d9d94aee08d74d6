"""weightstore.testing, which the fuzz tests and scripts/fuzz.py stand on: its mutations
change the bytes as documented, and classify tells the four outcomes apart."""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import pytest

import weightstore as ws
from weightstore import testing
from weightstore.testing import Outcome

DATA = bytes(range(256)) * 8  # 2 KiB: a head, a middle and a tail


@pytest.mark.parametrize("kind", list(testing.MUTATIONS))
def test_every_mutation_kind_changes_the_bytes(kind: str) -> None:
    rng = random.Random(kind)
    changed = [testing.MUTATIONS[kind](rng, DATA) for _ in range(50)]
    assert sum(c != DATA for c in changed) >= 45, kind  # an edit may rewrite a value as is
    if kind in ("flip", "header-flip", "number", "int-field"):
        assert all(len(c) == len(DATA) for c in changed if kind != "number")
    if kind == "truncate":
        assert all(len(c) < len(DATA) and DATA.startswith(c) for c in changed)
    if kind == "insert":
        assert all(len(c) > len(DATA) for c in changed)
    if kind == "delete":
        assert all(len(c) < len(DATA) for c in changed)


def test_random_mutation_draws_every_kind_and_inserts_into_nothing() -> None:
    rng = random.Random(1)
    kinds = {testing.random_mutation(rng, DATA)[0] for _ in range(300)}
    assert kinds == set(testing.MUTATIONS)
    kind, data = testing.random_mutation(rng, b"")
    assert kind == "insert" and data


def test_the_mutation_primitives() -> None:
    assert testing.flip(b"\x00\x00", 3, 0) == b"\x00\x01"  # position modulo the length
    assert testing.flip(b"", 0, 5) == b""
    assert testing.set_int(b"\x00" * 8, 0, 4, 0x01020304) == b"\x04\x03\x02\x01" + b"\x00" * 4
    assert testing.set_int(b"ab", 0, 4, 1) == b"ab"  # too short: unchanged
    text = b'{"a": 12, "b": [3, -7]}'
    assert testing.edit_number(text, 1, "99") == b'{"a": 12, "b": [99, -7]}'
    assert testing.edit_number(b"no digits", 0, "1") == testing.flip(b"no digits", 0, 1)


@pytest.fixture
def npz_case(tmp_path: Path) -> tuple[type, ws.Weights, bytes]:
    clean = ws.Weights({"a": np.arange(6, dtype=np.float32), "b": np.ones(2)})
    path = tmp_path / "clean.npz"
    ws.save(clean, path)
    return ws.get_codec("npz"), clean, path.read_bytes()


def test_classify_tells_the_outcomes_apart(npz_case, tmp_path: Path, monkeypatch) -> None:
    cls, clean, data = npz_case
    assert testing.classify(cls, data, clean, tmp_path).outcome is Outcome.HARMLESS
    refused = testing.classify(cls, data[:40], clean, tmp_path)
    assert refused.outcome is Outcome.REFUSED and "case.npz" in refused.detail
    # a changed value that verify=False lets through
    other = ws.Weights({"a": np.arange(6, dtype=np.float32) + 1, "b": np.ones(2)})
    path = tmp_path / "other.npz"
    ws.save(other, path)
    undetected = testing.classify(cls, path.read_bytes(), clean, tmp_path)
    assert undetected.outcome is Outcome.UNDETECTED and "tensor 'a' changed" in undetected.detail

    def crash(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug")

    monkeypatch.setattr(testing, "load", crash)
    crashed = testing.classify(cls, data, clean, tmp_path)
    assert crashed.outcome is Outcome.CRASH and "RuntimeError: a bug" in crashed.detail

    def unnamed(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ws.FormatError("bad, but which file?")

    monkeypatch.setattr(testing, "load", unnamed)
    assert testing.classify(cls, data, clean, tmp_path).outcome is Outcome.CRASH


def test_differences_are_described() -> None:
    a = ws.Weights({"x": np.zeros(2)}, metadata={"k": "v"})
    assert "names" in testing._difference(a, ws.Weights({"y": np.zeros(2)}))
    assert testing._difference(a, ws.Weights({"x": np.zeros(2)})) == "metadata changed"
    assert testing._difference(a, ws.Weights({"x": -np.zeros(2)}, metadata={"k": "v"})) == \
        "tensor 'x' changed"


def test_time_limit_interrupts_a_hang_and_is_disarmed_after() -> None:
    with pytest.raises(testing.Hang, match="0.05 s"), testing.time_limit(0.05):
        while True:
            time.sleep(0.01)
    with testing.time_limit(0.05):
        pass
    time.sleep(0.1)  # no late alarm


def test_random_weights_are_valid_and_varied() -> None:
    rng = random.Random(7)
    sets = [testing.random_weights(rng) for _ in range(60)]
    assert any(len(w) == 0 for w in sets) and any(len(w) >= 3 for w in sets)
    assert any("/" in name for w in sets for name in w)
    assert {str(v.dtype) for w in sets for v in w.values()} >= {"float32", "int8", "bool"}

