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
from collections.abc import Iterator
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
        if self.layout == "plain":  # the plain layout is not the schema's layout
            fileobj.write(buffer.getvalue())
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
