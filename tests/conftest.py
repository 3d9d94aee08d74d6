"""Shared fixtures: the reference data folder and the book's weights; suite-wide hooks.

Every JSON document a test writes through the JSON codec is validated against the
shipped JSON Schema (``weightstore.schema.validate_json_bytes``, the check behind
``validate_json_file``), so the schema is checked on whatever the suite produces, not
only on a corpus of its own. The bytes are checked as written, so a test may damage
the file afterwards; a mismatch fails the test at teardown, naming the file.
"""

from __future__ import annotations

import importlib.util
import io
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from weightstore.codecs.json_codec import JsonCodec

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]


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
        pytest.skip("reference data not found: ../shared/data beside the checkout "
                    "or $WEIGHTSTORE_DATA holds the book's files")
    return d


@pytest.fixture(scope="session")
def sample_weight_path(data_dir: Path) -> Path:
    return data_dir / "sample_weight.pkl"


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
        try:
            validate_json_bytes(buffer.getvalue(), path)
        except FormatError as e:
            failures.append(str(e))
        fileobj.write(buffer.getvalue())

    monkeypatch.setattr(JsonCodec, "write", checked_write)
    yield
    if failures:
        pytest.fail("JSON written by the codec does not match the schema:\n" + "\n".join(failures))
