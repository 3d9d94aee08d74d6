"""URLs as paths: memory:// in process, and S3 through a local moto server on 127.0.0.1."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import S3Server
from corpus import corpus

import weightstore as ws
from weightstore.codec import Codec
from weightstore.testing import as_stored, for_codec

fsspec = pytest.importorskip("fsspec", reason="URLs need the 'remote' extra (fsspec)")

CODECS = [c for c in ws.formats() if c.writable]  # these tests write
IDS = [c.name for c in CODECS]


def _weights(cls: type[Codec]) -> ws.Weights:
    tensors, metadata = corpus()
    return for_codec(cls, ws.Weights(tensors, metadata if cls.supports_metadata else None))


@pytest.fixture
def mem() -> Iterator[str]:
    """A fresh folder in fsspec's in-process memory filesystem."""
    folder = f"memory://weightstore-tests/{uuid.uuid4().hex}"
    yield folder
    fs = fsspec.filesystem("memory")
    if fs.exists(folder):
        fs.rm(folder, recursive=True)


@pytest.mark.parametrize("cls", CODECS, ids=IDS)
def test_memory_url_round_trip(cls: type[Codec], mem: str) -> None:
    weights = _weights(cls)
    url = f"{mem}/w{cls.extensions[0]}"
    try:
        assert ws.save(weights, url) == url
    except ws.MissingDependencyError as e:  # pragma: no cover - depends on extras
        pytest.skip(str(e))
    got = ws.load(url)
    weights = as_stored(cls, weights, url)  # a one-tensor format names it after the file
    if cls.lossless:
        assert got.equal(weights)
    with ws.open(url) as lazy:
        assert list(lazy) == list(weights) and lazy.metadata == got.metadata
    assert ws.inspect(url).file_size == fsspec.filesystem("memory").size(url)


def test_memory_urls_shard_convert_and_stream(mem: str, tmp_path: Path) -> None:
    tensors = {f"l{i}": np.full((64, 64), i, np.float32) for i in range(4)}
    weights = ws.Weights(tensors, metadata={"k": "v"})
    local = tmp_path / "w.h5"
    ws.save(weights, local)
    written = ws.convert(local, f"{mem}/model.npz", max_shard_size=40_000)
    assert written.path == f"{mem}/model.npz.index.json" and len(written.files) == 3
    fs = fsspec.filesystem("memory")
    names = sorted(p.rsplit("/", 1)[1] for p in fs.ls(mem, detail=False))
    assert names == ["model-00001-of-00002.npz", "model-00002-of-00002.npz",
                     "model.npz.index.json"]
    assert ws.load(f"{mem}/model.npz.index.json").equal(weights)
    ws.convert(f"{mem}/model.npz.index.json", tmp_path / "back.csv")
    assert ws.load(tmp_path / "back.csv").equal(weights)


def test_a_failed_upload_leaves_nothing(mem: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cls = ws.get_codec("npz")

    def failing(self, weights, fileobj, *, path):
        fileobj.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(cls, "write", failing)
    with pytest.raises(KeyboardInterrupt):
        ws.save({"a": np.zeros(3)}, f"{mem}/w.npz")
    assert not fsspec.filesystem("memory").exists(f"{mem}/w.npz")


def test_missing_urls_and_packages_are_named(mem: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ws.FileAccessError, match="no such file"):
        ws.load(f"{mem}/absent.npz")
    with pytest.raises(ws.FileAccessError, match="unsupported URL"):
        ws.load("nosuchprotocol://bucket/w.npz")
    monkeypatch.setitem(sys.modules, "fsspec", None)
    monkeypatch.setitem(sys.modules, "fsspec.core", None)
    with pytest.raises(ws.MissingDependencyError, match=r"weightstore\[remote\]"):
        ws.load(f"{mem}/w.npz")


def test_file_urls_are_local_paths(tmp_path: Path) -> None:
    ws.save({"a": np.arange(3)}, f"file://{tmp_path}/w.npz")
    assert (tmp_path / "w.npz").is_file()
    assert ws.load(f"file://{tmp_path}/w.npz")["a"].tolist() == [0, 1, 2]


# --- S3, served by moto on the loopback interface --------------------------------------


@pytest.fixture(scope="module")
def s3(s3_server: S3Server) -> dict:
    """storage_options for the local S3 server, with a bucket 'weights'."""
    s3_server.create_bucket("weights")
    return s3_server.options


@pytest.mark.parametrize("ext", [".npz", ".h5", ".json", ".npz.zst"])
def test_s3_round_trip(ext: str, s3: dict) -> None:
    weights = _weights(ws.get_codec(ext.rsplit(".", 1)[1]))
    url = f"s3://weights/{uuid.uuid4().hex}/w{ext}"
    ws.save(weights, url, storage_options=s3)
    got = ws.load(url, storage_options=s3)
    assert got.equal(weights) and got.metadata == weights.metadata
    info = ws.inspect(url, storage_options=s3)
    assert [t.name for t in info.tensors] == list(weights)


def test_s3_lazy_open_fetches_only_what_it_reads(s3: dict) -> None:
    big = {f"t{i}": np.full((512, 512), i, np.float32) for i in range(8)}  # 8 MiB
    url = f"s3://weights/{uuid.uuid4().hex}/big.npz"
    ws.save(big, url, storage_options=s3)
    import s3fs

    fetched = []
    real = s3fs.core.S3File._fetch_range

    def counting(self, start, end):
        fetched.append(end - start)
        return real(self, start, end)

    s3fs.core.S3File._fetch_range = counting
    try:
        with ws.open(url, storage_options=s3) as lazy:
            assert lazy.lazy and lazy.info("t7").shape == (512, 512)
            assert float(lazy["t5"][0, 0]) == 5.0
    finally:
        s3fs.core.S3File._fetch_range = real
    assert 0 < sum(fetched) < 8 * (1 << 20) * 0.75


def test_s3_sharded_convert_from_local(tmp_path: Path, s3: dict) -> None:
    weights = ws.Weights({f"l{i}": np.full((100, 100), i, np.float32) for i in range(3)})
    ws.save(weights, tmp_path / "w.h5")
    prefix = f"s3://weights/{uuid.uuid4().hex}"
    ws.convert(tmp_path / "w.h5", f"{prefix}/model.npz", max_shard_size="50kB",
               storage_options=s3)
    assert ws.load(f"{prefix}/model.npz.index.json", storage_options=s3).equal(weights)
    with pytest.raises(ws.FileAccessError, match="no such file"):
        ws.load(f"{prefix}/absent.npz", storage_options=s3)


def test_remote_file_helpers(mem: str, tmp_path: Path) -> None:
    from weightstore import remote

    local = tmp_path / "w.npz"
    ws.save({"a": np.arange(3.0)}, local)
    url = f"{mem}/deep/er/w.npz"
    assert not remote.url_exists(url)
    remote.upload(local, url)  # makes the folders it needs
    assert remote.url_exists(url) and remote.url_size(url) == local.stat().st_size
    with remote.open_url(url) as f:
        assert f.read() == local.read_bytes()
    with pytest.raises(ws.FileAccessError, match="expected a file, found a directory"):
        remote.open_url(f"{mem}/deep")
    remote.remove_url(url)
    remote.remove_url(url)  # already gone: nothing to do
    assert not remote.url_exists(url)
    with pytest.raises(ws.FileAccessError, match="no such file"):
        remote.url_size(url)
