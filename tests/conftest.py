"""Shared fixtures: the reference data folder and the book's weights; suite-wide hooks.

In CI (``CI=true`` in the environment) a skipped test is a failed test unless its node
id is listed in ``tests/skip_allowlist.txt`` with a reason: a missing extra, system tool
or the reference data must not turn into a green run that tested less.

Every JSON document a test writes through the JSON codec is validated against the
shipped JSON Schema (``weightstore.schema.validate_json_bytes``, the check behind
``validate_json_file``), so the schema is checked on whatever the suite produces, not
only on a corpus of its own. The bytes are checked as written, so a test may damage
the file afterwards; a mismatch fails the test at teardown, naming the file. Documents
over :data:`SCHEMA_CHECK_MAX_BYTES` are not checked: jsonschema walks every number (about
60 microseconds each, 30 s for a 2 MiB model), and what the schema can say about a large
document it says about the small ones the suite writes by the hundred. A document that
passed is not validated again in the same process (:data:`_SCHEMA_VALID`, by SHA-256): the
suite writes the same book weights as JSON in dozens of tests and report rows, 4-5 s of
validation each.
"""

from __future__ import annotations

import compileall
import contextlib
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import weightstore as ws
from weightstore.cli.main import main as cli_main
from weightstore.codecs.json_codec import JsonCodec
from weightstore.lab import report as rep
from weightstore.lab.evaluate import Evaluation, evaluate

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("true", "1", "yes")
SKIP_ALLOWLIST = Path(__file__).with_name("skip_allowlist.txt")


def _read_allowlist(path: Path = SKIP_ALLOWLIST) -> list[tuple[str, str]]:
    """(node id pattern, reason) pairs from *path*: ``PATTERN | REASON`` per line, ``#``
    comments; a line without a reason is refused, so every allowed skip says why."""
    entries = []
    if not path.is_file():
        return entries
    for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        pattern, _, reason = (part.strip() for part in line.partition("|"))
        if not pattern or not reason:
            raise pytest.UsageError(f"{path}:{number}: expected 'NODE-ID-PATTERN | REASON', "
                                    f"found {line!r}")
        entries.append((pattern, reason))
    return entries


def skip_allowed(nodeid: str, entries: list[tuple[str, str]]) -> bool:
    """Whether *nodeid* matches a pattern of the allow-list: the node id itself, ``*``
    standing for any characters (brackets are literal, as in ``test_x[onnx]``)."""
    return any(re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), nodeid)
               for pattern, _ in entries)


def _fail_unlisted_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not (IN_CI and report.skipped) or hasattr(report, "wasxfail"):
        return
    if skip_allowed(report.nodeid, _read_allowlist()):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    report.outcome = "failed"
    report.longrepr = (f"skipped in CI: {reason}\n(CI=true: a skip fails unless its node id "
                       f"is in {SKIP_ALLOWLIST.relative_to(REPO)} with a reason)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    _fail_unlisted_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    report = yield
    _fail_unlisted_skip(report)
    return report


#: Session fixtures of this file that cost next to nothing: no reason to keep their users
#: on one xdist worker.
CHEAP_SHARED_FIXTURES = {"data_dir", "sample_weight_path"}


def shared_costs(item: pytest.Item) -> set[str]:
    """What *item* shares with other tests that is costly to build: the names of this
    file's session fixtures it uses (``full_test_set_evaluation``: one DeepConvNet run
    over the test set), and its module (for a module's own fixture or a module-scoped one
    of a conftest, built once per module)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return set()
    found: set[str] = set()
    for name in item.fixturenames:
        defs = info.name2fixturedefs.get(name)
        if not defs or defs[-1].scope == "function" or name in CHEAP_SHARED_FIXTURES:
            continue
        baseid = defs[-1].baseid
        if baseid.endswith(".py"):
            found.add(baseid)
        elif baseid.startswith("tests") and defs[-1].scope == "session":
            found.add(name)
        elif baseid.startswith("tests"):  # a conftest module fixture: per module anyway
            found.add(item.nodeid.split("::", 1)[0])
    return found


def xdist_groups(items: list[pytest.Item]) -> dict[str, str]:
    """The xdist group of each test id that shares something costly: tests that share
    anything (:func:`shared_costs`), directly or through other tests, are one group, named
    after the first of its costs in sort order, so that ``--dist loadgroup`` runs them on
    one worker and each shared fixture is built once."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    costs = {item.nodeid: sorted(shared_costs(item)) for item in items}
    for keys in costs.values():
        for key in keys:
            parent.setdefault(key, key)
        for key in keys[1:]:
            a, b = root(keys[0]), root(key)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return {nodeid: root(keys[0]) for nodeid, keys in costs.items() if keys}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each item with its group (:func:`xdist_groups`). First of the hooks:
    pytest-xdist's worker turns the marks into the ``@group`` suffix of the test id, which is
    what ``--dist loadgroup`` schedules by, in a hook of its own that would otherwise run
    before this one and find no marks (conftest hooks are registered before xdist's worker
    plugin)."""
    groups = xdist_groups(items)
    for item in items:
        group = groups.get(item.nodeid)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_sessionstart(session: pytest.Session) -> None:
    """Byte-compile our packages once, as an installed copy is: many tests start a fresh
    ``python`` or ``weightstore`` process, and with ``PYTHONDONTWRITEBYTECODE=1`` (set on the
    reference machines) an editable install would compile every module from source in each
    of them (40-60 ms a process)."""
    root = Path(__file__).resolve().parent.parent
    for package in ("weightstore", "net"):
        compileall.compile_dir(root / package, quiet=1)


def require_tool(name: str) -> str:
    """The path of the command-line tool *name*; skips without it (a failure in CI,
    where .ci/run installs it)."""
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"the {name!r} command-line tool is not on PATH (.ci/run installs it)")
    return found


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the checkout (or $WEIGHTSTORE_DATA), if present."""
    env = os.environ.get("WEIGHTSTORE_DATA")
    for candidate in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if (candidate / "sample_weight.pkl").is_file():
            return candidate
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = shared_data_dir()
    if d is None:
        missing = pytest.fail if IN_CI else pytest.skip  # CI always has ../shared/data
        missing("reference data not found: ../shared/data beside the checkout "
                "or $WEIGHTSTORE_DATA holds the book's files")
    return d


@pytest.fixture(scope="session")
def sample_weight_path(data_dir: Path) -> Path:
    return data_dir / "sample_weight.pkl"


@pytest.fixture(scope="session")
def full_test_set_evaluation(data_dir: Path) -> Callable[[str], Evaluation]:
    """``get(name)``: the reference file *name* (``deep_convnet_params.pkl``, ...) evaluated
    on all 10,000 MNIST test images, computed once per session and shared by every test
    (DeepConvNet takes tens of seconds). Tests of other paths compare with its predictions
    on a few hundred images, or prove their weights bit-identical to the reference."""
    done: dict[str, Evaluation] = {}

    def get(name: str) -> Evaluation:
        if name not in done:
            done[name] = evaluate(ws.load(data_dir / name), data_dir=data_dir)
        return done[name]

    return get


@pytest.fixture(scope="session")
def reference_report_run(tmp_path_factory: pytest.TempPathFactory, sample_weight_path: Path,
                         data_dir: Path) -> tuple[dict, Path, rep.Report, Path]:
    """The full report on the book's weights, built once per session through the command
    line (JSON, kept files, plot): its JSON, the kept files' folder, the Report object the
    command rendered, and the plot. Shared by the report's tests and the browser's."""
    keep = tmp_path_factory.mktemp("report")
    plot = keep / "r.png"
    argv = ["report", str(sample_weight_path), "--format", "json", "--keep", str(keep / "files"),
            "--repeats", "1", "--data-dir", str(data_dir), "-q", "--plot", str(plot)]
    built: list[rep.Report] = []
    real = rep.build_report

    def recording(*args: Any, **kwargs: Any) -> rep.Report:
        built.append(real(*args, **kwargs))
        return built[-1]

    buf = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(buf), \
            contextlib.redirect_stderr(io.StringIO()):
        mp.setattr(rep, "build_report", recording)
        assert cli_main(argv) == 0
    (report,) = built
    return json.loads(buf.getvalue()), keep / "files", report, plot


@dataclass
class S3Server:
    """A moto S3 server on 127.0.0.1: fsspec storage_options that reach it."""

    options: dict
    endpoint: str

    def create_bucket(self, name: str) -> None:
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                     aws_access_key_id="testing", aws_secret_access_key="testing",
                     ).create_bucket(Bucket=name)


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    """A local S3 server (moto, loopback only) for one test module."""
    pytest.importorskip("s3fs", reason="S3 URLs need the 'remote' extra (s3fs)")
    server_mod = pytest.importorskip("moto.server", reason="moto[server] runs the local S3")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    options = {"key": "testing", "secret": "testing", "skip_instance_cache": True,
               "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
               "config_kwargs": {"retries": {"max_attempts": 2}, "connect_timeout": 5,
                                 "read_timeout": 20}}
    try:
        yield S3Server(options, endpoint)
    finally:
        server.stop()


#: Largest JSON document the schema check below validates (see the module docstring).
SCHEMA_CHECK_MAX_BYTES = 1 << 20
#: SHA-256 digests of the documents that passed the schema check in this process.
_SCHEMA_VALID: set[bytes] = set()


@pytest.fixture(autouse=True)
def _json_output_matches_the_schema(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if importlib.util.find_spec("jsonschema") is None:
        yield
        return
    from weightstore.errors import FormatError
    from weightstore.schema import validate_json_bytes

    failures: list[str] = []
    original = JsonCodec.write

    def checked_write(self, weights, fileobj, *, path):  # type: ignore[no-untyped-def]
        buffer = io.BytesIO()
        original(self, weights, buffer, path=path)
        if self.layout == "plain" or buffer.tell() > SCHEMA_CHECK_MAX_BYTES:
            fileobj.write(buffer.getvalue())  # the plain layout is not the schema's layout
            return
        digest = hashlib.sha256(buffer.getbuffer()).digest()
        if digest not in _SCHEMA_VALID:
            try:
                validate_json_bytes(buffer.getvalue(), path)
            except FormatError as e:
                failures.append(str(e))
            else:
                _SCHEMA_VALID.add(digest)
        fileobj.write(buffer.getvalue())

    monkeypatch.setattr(JsonCodec, "write", checked_write)
    yield
    if failures:
        pytest.fail("JSON written by the codec does not match the schema:\n" + "\n".join(failures))
