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
document it says about the small ones the suite writes by the hundred.
"""

from __future__ import annotations

import compileall
import importlib.util
import io
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
from weightstore.codecs.json_codec import JsonCodec
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


def xdist_group_of(item: pytest.Item) -> str | None:
    """The group that keeps *item* on the xdist worker (``-n 2 --dist loadgroup``) where a
    costly shared fixture it uses is already built, or None: one of this file's session
    fixtures (``full_test_set_evaluation``: one DeepConvNet run over the test set) is its
    own group; a module's or session fixture of a test module groups that module."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    module_group = None
    for name in item.fixturenames:
        defs = info.name2fixturedefs.get(name)
        if not defs or defs[-1].scope == "function" or name in CHEAP_SHARED_FIXTURES:
            continue
        baseid = defs[-1].baseid
        if baseid.endswith(".py"):
            module_group = module_group or baseid
        elif baseid.startswith("tests") and defs[-1].scope == "session":
            return name
        elif baseid.startswith("tests"):  # a conftest module fixture: per module anyway
            module_group = module_group or item.nodeid.split("::", 1)[0]
    return module_group


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        group = xdist_group_of(item)
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
        try:
            validate_json_bytes(buffer.getvalue(), path)
        except FormatError as e:
            failures.append(str(e))
        fileobj.write(buffer.getvalue())

    monkeypatch.setattr(JsonCodec, "write", checked_write)
    yield
    if failures:
        pytest.fail("JSON written by the codec does not match the schema:\n" + "\n".join(failures))
