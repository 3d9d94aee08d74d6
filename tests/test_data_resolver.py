"""The reference-data resolver: search order, checksum refusal, download, messages.

Every test runs with the downloader replaced; none touches the network.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.error
from pathlib import Path

import pytest

from net import data
from net.data import REFERENCE_FILES, ReferenceFile, cache_dir, resolve, search_dirs, verify_all
from net.errors import DataError

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

TOY = b"trained weights, or so we pretend\n"
NAME = "sub/toy.bin"


def _toy_ref(content: bytes = TOY, name: str = NAME) -> ReferenceFile:
    return ReferenceFile(
        name,
        hashlib.sha256(content).hexdigest(),
        len(content),
        "https://example.invalid/toy",
        "toy",
    )


class Places:
    """Five folders standing for the five places, in search order."""

    def __init__(self, root: Path) -> None:
        self.explicit = root / "explicit"
        self.env = root / "env"
        self.sibling = root / "checkout-sibling" / "shared" / "data"
        self.cwd = root / "work" / "repo"
        self.cwd_sibling = root / "work" / "shared" / "data"
        self.cache = root / "cache"

    def put(self, folder: Path, content: bytes = TOY, name: str = NAME) -> Path:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return path


@pytest.fixture
def places(tmp_path, monkeypatch) -> Places:
    p = Places(tmp_path)
    p.cwd.mkdir(parents=True)
    monkeypatch.chdir(p.cwd)
    monkeypatch.setenv("WEIGHTSTORE_DATA", str(p.env))
    monkeypatch.setenv("WEIGHTSTORE_CACHE", str(p.cache))
    monkeypatch.setattr(data, "_checkout_sibling", lambda: p.sibling)
    monkeypatch.setattr(data, "REFERENCE_FILES", {NAME: _toy_ref()})
    monkeypatch.setattr(data, "_verified", {})

    def no_network(url, dest, max_bytes):
        raise AssertionError(f"the test touched the network: {url}")

    monkeypatch.setattr(data, "_download", no_network)
    return p


def test_search_order_explicit_env_sibling_cwd_cache(places):
    folders = [places.explicit, places.env, places.sibling, places.cwd_sibling, places.cache]
    paths = [places.put(folder) for folder in folders]
    assert search_dirs(places.explicit) == folders
    for path in paths:
        assert resolve(NAME, places.explicit) == path
        path.unlink()
    with pytest.raises(DataError):
        resolve(NAME, places.explicit, download=False)


def test_without_explicit_dir_the_environment_comes_first(places):
    places.put(places.sibling)
    env_copy = places.put(places.env)
    assert resolve(NAME) == env_copy
    os.environ.pop("WEIGHTSTORE_DATA")
    assert resolve(NAME) == places.sibling / NAME


def test_a_bad_file_is_refused_not_skipped(places):
    bad = places.put(places.explicit, content=TOY.upper())  # same size, other bytes
    places.put(places.env)
    with pytest.raises(DataError) as info:
        resolve(NAME, places.explicit)
    message = str(info.value)
    assert message.startswith(f"{bad}: sha256: not the reference {NAME}")
    expected, found = hashlib.sha256(TOY).hexdigest(), hashlib.sha256(TOY.upper()).hexdigest()
    assert message.endswith(f"(expected {expected}, found {found})")


def test_a_file_of_the_wrong_size_is_refused(places):
    bad = places.put(places.sibling, content=TOY[:-1])
    found = hashlib.sha256(TOY[:-1]).hexdigest()
    size_note = f"{len(TOY) - 1} bytes instead of {len(TOY)}"
    with pytest.raises(DataError, match=rf"{size_note} \(expected [0-9a-f]{{64}}, found {found}\)"):
        resolve(NAME)
    assert bad.exists()


def test_verification_is_cached_until_the_file_changes(places, monkeypatch):
    path = places.put(places.explicit)
    resolve(NAME, places.explicit)
    real_sha256 = data._sha256

    def must_not_hash(path):
        raise AssertionError("hashed again")

    monkeypatch.setattr(data, "_sha256", must_not_hash)
    assert resolve(NAME, places.explicit) == path

    monkeypatch.setattr(data, "_sha256", real_sha256)
    path.write_bytes(TOY.upper())
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.raises(DataError, match="sha256: not the reference"):
        resolve(NAME, places.explicit)


def test_download_when_missing_everywhere(places, monkeypatch):
    source = places.put(places.cwd / "server")
    calls = []

    def fake_download(url, dest, max_bytes):
        calls.append((url, max_bytes))
        dest.write_bytes(source.read_bytes())

    monkeypatch.setattr(data, "_download", fake_download)
    path = resolve(NAME)
    assert path == places.cache / NAME
    assert path.read_bytes() == TOY
    assert calls == [("https://example.invalid/toy", len(TOY))]
    assert [p.name for p in path.parent.iterdir()] == ["toy.bin"]  # no temporary left
    assert resolve(NAME) == path
    assert len(calls) == 1


def test_downloaded_bytes_that_fail_the_checksum_are_not_kept(places, monkeypatch):
    monkeypatch.setattr(data, "_download", lambda url, dest, n: dest.write_bytes(b"evil"))
    with pytest.raises(DataError) as info:
        resolve(NAME)
    assert "https://example.invalid/toy: sha256: not the reference" in str(info.value)
    assert not (places.cache / NAME).exists()
    assert list((places.cache / "sub").iterdir()) == []


def test_failed_download_lists_every_place_it_looked(places, monkeypatch):
    def unreachable(url, dest, max_bytes):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(data, "_download", unreachable)
    places.explicit.mkdir(parents=True)  # an explicit folder must exist (issue 15)
    with pytest.raises(DataError) as info:
        resolve(NAME, places.explicit)
    message = str(info.value)
    assert "\n" not in message
    for folder in (places.explicit, places.env, places.sibling, places.cwd_sibling, places.cache):
        assert str(folder / NAME) in message
    assert "no route to host" in message
    assert "--data-dir DIR" in message and "WEIGHTSTORE_DATA=DIR" in message
    assert isinstance(info.value.__cause__, urllib.error.URLError)
    assert list((places.cache / "sub").iterdir()) == []


def test_no_download_when_disabled(places):
    with pytest.raises(
        DataError, match="download disabled.*--data-dir DIR or WEIGHTSTORE_DATA=DIR"
    ):
        resolve(NAME, download=False)
    assert not places.cache.exists()


def test_unknown_name_lists_the_known_ones(places):
    with pytest.raises(DataError, match=f"name: expected one of {NAME}, found nope.pkl"):
        resolve("nope.pkl")


def test_verify_all_reports_every_problem(places, monkeypatch):
    monkeypatch.setattr(
        data, "REFERENCE_FILES", {NAME: _toy_ref(), "b.bin": _toy_ref(name="b.bin")}
    )
    places.put(places.env)
    places.put(places.env, content=b"x", name="b.bin")
    with pytest.raises(
        DataError, match=r"1 of 2 reference files missing or not verified: .*b\.bin"
    ):
        verify_all()
    places.put(places.env, name="b.bin")
    assert verify_all() == {NAME: places.env / NAME, "b.bin": places.env / "b.bin"}


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("WEIGHTSTORE_CACHE", str(tmp_path / "ws"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "ws"
    monkeypatch.delenv("WEIGHTSTORE_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "weightstore"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == tmp_path / "home" / ".cache" / "weightstore"


def test_real_downloader_caps_the_size(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"0123456789")
    data._download(source.as_uri(), tmp_path / "ok.bin", 10)  # file:// stays on this machine
    assert (tmp_path / "ok.bin").read_bytes() == b"0123456789"
    with pytest.raises(ValueError, match="more than the expected 9 bytes"):
        data._download(source.as_uri(), tmp_path / "big.bin", 9)


def test_reference_table_matches_the_shared_checksums(data_dir):
    names = {
        "sample_weight.pkl",
        "simple_convnet_params.pkl",
        "deep_convnet_params.pkl",
        "mnist/t10k-images-idx3-ubyte.gz",
        "mnist/t10k-labels-idx1-ubyte.gz",
    }
    assert set(REFERENCE_FILES) == names
    for ref in REFERENCE_FILES.values():
        assert re.fullmatch("[0-9a-f]{64}", ref.sha256), ref.sha256  # as hexdigest() gives
        assert ref.url.startswith("https://")
    sums = dict(
        reversed(line.split()) for line in (data_dir / "SHA256SUMS").read_text().splitlines()
    )
    assert {name: ref.sha256 for name, ref in REFERENCE_FILES.items()} == sums


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"reference data {SHARED_DATA} is absent")
def test_the_checkout_sibling_is_found_and_verified(monkeypatch, tmp_path):
    monkeypatch.delenv("WEIGHTSTORE_DATA", raising=False)
    monkeypatch.setenv("WEIGHTSTORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(data, "_download", None)  # calling it would fail the test
    paths = verify_all()
    assert paths == {name: SHARED_DATA / name for name in REFERENCE_FILES}
    assert resolve("sample_weight.pkl", download=True) == SHARED_DATA / "sample_weight.pkl"
