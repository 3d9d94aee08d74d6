"""`--dist loadgroup` really keeps the tests that share a costly fixture on one worker.

The README's test command runs the suite on every core with pytest-xdist; the conftest
marks each test with its group (tests/conftest.py, ``xdist_groups``). If grouping stops
working (as it did when pytest 9.2 changed how test ids are computed, which pytest-xdist
3.8 relies on), every module fixture is built on each worker and the suite slows down
without failing, so this test runs a small suite on two workers and looks.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SHARED = """
    import pytest

    @pytest.fixture(scope="module")
    def costly():
        return object()

    @pytest.mark.parametrize("i", range(8))
    def test_shares(costly, i):
        pass

    @pytest.mark.parametrize("i", range(8))
    def test_alone(i):
        pass
"""


def test_loadgroup_keeps_a_group_on_one_worker(pytester: pytest.Pytester,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # this checkout's weightstore
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makefile(".txt", skip_allowlist="")
    pytester.makepyfile(test_groups=SHARED)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2",
                                           "--dist", "loadgroup", "-v")
    result.assert_outcomes(passed=16)
    workers: dict[str, set[str]] = {}
    for line in result.outlines:
        found = re.match(r"\[(gw\d)\].* PASSED test_groups\.py::(test_\w+)\[", line)
        if found:
            workers.setdefault(found[2], set()).add(found[1])
    assert len(workers["test_shares"]) == 1, f"the group ran on {sorted(workers['test_shares'])}"
    assert workers["test_alone"], "ungrouped tests ran too"
