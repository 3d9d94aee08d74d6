"""In CI (CI=true) a skip fails unless tests/skip_allowlist.txt lists it with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SKIP_ALLOWLIST, _read_allowlist, skip_allowed

REPO = Path(__file__).resolve().parents[1]

TESTS = """
    import pytest

    def test_runs():
        pass

    def test_skips_in_the_body():
        pytest.skip("no tool here")

    @pytest.mark.skipif(True, reason="a mark")
    def test_skipped_by_a_mark():
        pass

    def test_allowed():
        pytest.skip("allowed, with a reason in the list")

    @pytest.mark.xfail(reason="known")
    def test_expected_to_fail():
        raise AssertionError
"""


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str,
         allowlist: str) -> pytest.RunResult:
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # this checkout's weightstore
    monkeypatch.setenv("CI", ci)
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makefile(".txt", skip_allowlist=allowlist)
    pytester.makepyfile(test_it=TESTS)
    pytester.makepyfile(test_module_skip="""
        import pytest
        pytest.importorskip("no_such_module_anywhere")
    """)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_it.py")


def test_outside_ci_a_skip_is_a_skip(pytester, monkeypatch) -> None:
    result = _run(pytester, monkeypatch, "", "")
    result.assert_outcomes(passed=1, skipped=3, xfailed=1)


def test_in_ci_an_unlisted_skip_fails_and_says_why(pytester, monkeypatch) -> None:
    result = _run(pytester, monkeypatch, "true",
                  "test_it.py::test_allowed | the reason it may skip in CI\n")
    result.assert_outcomes(passed=1, failed=1, errors=1, skipped=1, xfailed=1)
    result.stdout.fnmatch_lines(["*skipped in CI: no tool here*", "*skipped in CI: a mark*"])


def test_in_ci_a_module_skip_fails_the_collection(pytester, monkeypatch) -> None:
    _run(pytester, monkeypatch, "true", "")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_module_skip.py")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*skipped in CI*no_such_module_anywhere*"])


def test_an_allowlist_line_needs_a_reason(tmp_path: Path) -> None:
    listed = tmp_path / "list.txt"
    listed.write_text("# comment\n\ntests/a.py::test_* | the tool is absent on CI  # note\n")
    entries = _read_allowlist(listed)
    assert entries == [("tests/a.py::test_*", "the tool is absent on CI")]
    assert skip_allowed("tests/a.py::test_x[1]", entries)
    assert not skip_allowed("tests/b.py::test_x", entries)
    assert skip_allowed("t.py::test_y[onnx]", [("t.py::test_y[onnx]", "why")])
    assert not skip_allowed("t.py::test_y[o]", [("t.py::test_y[onnx]", "why")])  # literal [
    listed.write_text("tests/a.py::test_x\n")
    with pytest.raises(pytest.UsageError, match="REASON"):
        _read_allowlist(listed)


def test_the_repository_allow_list_reads() -> None:
    assert SKIP_ALLOWLIST.is_file()
    assert all(reason for _, reason in _read_allowlist())
