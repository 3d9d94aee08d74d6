"""Shared fixtures: the reference data folder and the book's weights."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
