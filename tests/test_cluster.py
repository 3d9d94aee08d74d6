"""convert_many / convert-many on a local Dask cluster: a zoo in a local S3 server (moto on
127.0.0.1) converted to another bucket, reruns, damaged files, sharded checkpoints."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import S3Server

import weightstore as ws
from weightstore import cluster
from weightstore.cli.main import main

distributed = pytest.importorskip("distributed", reason="convert-many needs the 'cluster' extra")
s3fs = pytest.importorskip("s3fs", reason="S3 URLs need s3fs")

#: Formats of the zoo's files (every one writable without an extra outside 'test').
ZOO_EXTS = [".npz", ".h5", ".json", ".pt", ".safetensors", ".wsc", ".npy", ".csv"]


@pytest.fixture(scope="module")
def client() -> Iterator[distributed.Client]:
    """Two single-threaded workers in this process: the scheduling is real, the start cheap."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as lc, distributed.Client(lc) as c:
        yield c


def _weights(i: int, ext: str) -> ws.Weights:
    rng = np.random.default_rng(i)
    if ext == ".npy":  # one tensor, named after the file
        return ws.Weights({f"m{i:03d}": rng.standard_normal((4, 3)).astype(np.float32)})
    return ws.Weights({"fc1/W": rng.standard_normal((4, 3)).astype(np.float32),
                       "fc1/b": np.arange(3, dtype=np.float32) + i})


def _make_zoo(folder: Path, count: int) -> tuple[dict[str, ws.Weights], list[str]]:
    """*count* small checkpoints in mixed formats under *folder* (two levels of folders),
    every 25th damaged (cut in half, or garbage). Returns (good relative path -> weights,
    damaged relative paths)."""
    good, damaged = {}, []
    for i in range(count):
        ext = ZOO_EXTS[i % len(ZOO_EXTS)]
        rel = f"team{i % 3}/run{i % 5}/m{i:03d}{ext}"
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        weights = _weights(i, ext)
        ws.save(weights, path)
        if i % 25 == 7:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2] if i % 50 == 7 else b"\x00garbage" * 20)
            damaged.append(rel)
        else:
            good[rel] = weights
    return good, damaged


def _dest(rel: str) -> str:
    return rel.rsplit(".", 1)[0] + ".npz"


def test_a_zoo_in_s3_converts_once_and_resumes(tmp_path: Path, s3_server: S3Server,
                                               client: distributed.Client) -> None:
    s3_server.create_bucket("zoo-src")
    s3_server.create_bucket("zoo-dst")
    # fsspec's instance cache on (as outside tests): each task reuses its worker's S3
    # client instead of building one per call (30 times slower here)
    opts = {k: v for k, v in s3_server.options.items() if k != "skip_instance_cache"}
    good, damaged = _make_zoo(tmp_path / "zoo", 209)
    fs = s3fs.S3FileSystem(**opts)
    fs.put(str(tmp_path / "zoo") + "/", "zoo-src/zoo/", recursive=True)
    assert len(fs.find("zoo-src/zoo")) == 209

    run = {"to": "npz", "out": "s3://zoo-dst/converted", "scheduler": client,
           "storage_options": opts}
    first = ws.convert_many("s3://zoo-src/zoo/**", **run)
    assert len(first.done) == len(good) == 200 and not first.skipped
    assert sorted(r.source.split("zoo/", 1)[1] for r in first.failed) == sorted(damaged)
    for r in first.failed:  # our one-line message, naming the file
        assert r.error and "\n" not in r.error and r.source.split("/")[-1] in r.error
    written = {p.split("converted/", 1)[1] for p in fs.find("zoo-dst/converted")}
    assert written == {_dest(rel) for rel in good} | {cluster.MANIFEST_NAME}
    for rel in list(good)[::20]:
        got = ws.load(f"s3://zoo-dst/converted/{_dest(rel)}", storage_options=opts)
        assert got.equal(good[rel])
    assert first.bytes_in == sum(r.size for r in first.done) > 0
    assert first.bytes_out == sum(fs.size(f"zoo-dst/converted/{_dest(rel)}") for rel in good)

    second = ws.convert_many("s3://zoo-src/zoo/**", **run)
    assert not second.done and len(second.skipped) == 200
    assert len(second.failed) == len(damaged)  # failures are retried (and fail again)

    changed = next(rel for rel in good if rel.endswith(".h5"))
    new = ws.Weights({"other": np.ones((2, 2), np.float64)})
    ws.save(new, tmp_path / "new.h5")
    fs.put(str(tmp_path / "new.h5"), f"zoo-src/zoo/{changed}")
    third = ws.convert_many("s3://zoo-src/zoo/**", **run)
    assert [r.source for r in third.done] == [f"s3://zoo-src/zoo/{changed}"]
    assert len(third.skipped) == 199 and len(third.failed) == len(damaged)
    assert ws.load(f"s3://zoo-dst/converted/{_dest(changed)}", storage_options=opts).equal(new)

    latest = cluster.read_manifest("s3://zoo-dst/converted/" + cluster.MANIFEST_NAME, opts)
    assert len(latest) == 209
    assert {r.status for r in latest.values()} == {"done", "failed"}
    assert all(r.fingerprint.startswith("etag:") for r in latest.values())


def _sharded(folder: Path) -> ws.Weights:
    weights = ws.Weights({f"l{i}": np.full((50, 50), i, np.float32) for i in range(3)})
    (folder / "big").mkdir(parents=True, exist_ok=True)
    ws.save(weights, folder / "big" / "model.npz", max_shard_size=12_000)
    return weights


@pytest.mark.filterwarnings("ignore::weightstore.LossyWarning")
def test_local_tree_sharded_unit_collisions_and_precision(tmp_path: Path,
                                                          client: distributed.Client) -> None:
    src = tmp_path / "src"
    (src / "big").mkdir(parents=True)
    sharded = _sharded(src)
    assert len(list((src / "big").iterdir())) == 4  # three shards and the index
    ws.save({"a": np.arange(4.0)}, src / "w.json")
    ws.save({"a": np.arange(4.0) + 1}, src / "w.h5")
    result = ws.convert_many(str(src / "**" / "*.npz"), to="h5", out=str(tmp_path / "o1"),
                             scheduler=client)
    assert [r.source for r in result.done] == [str(src / "big" / "model.npz.index.json")]
    assert ws.load(tmp_path / "o1" / "big" / "model.h5").equal(sharded)

    result = ws.convert_many(str(src), to="npz", out=str(tmp_path / "o2"), scheduler=client,
                             precision={"dtype": "float16"}, compressed=True)
    assert len(result.done) == 3 and not result.failed
    assert ws.load(tmp_path / "o2" / "w.json.npz")["a"].tolist() == [0, 1, 2, 3]
    assert ws.load(tmp_path / "o2" / "w.h5.npz")["a"].dtype == np.float16
    assert ws.load(tmp_path / "o2" / "big" / "model.npz")["l2"].dtype == np.float16
    # the same sources with other settings are converted again, not skipped
    again = ws.convert_many(str(src), to="npz", out=str(tmp_path / "o2"), scheduler=client)
    assert len(again.done) == 3 and not again.skipped
    assert ws.load(tmp_path / "o2" / "w.h5.npz")["a"].dtype == np.float64


def test_cli_lists_failures_and_exits_1(tmp_path: Path, client: distributed.Client,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    ws.save({"a": np.arange(3)}, src / "ok.npz")
    (src / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    argv = ["convert-many", str(src / "*.npz"), "--to", "json", "--out", str(tmp_path / "out"),
            "--scheduler", client.scheduler.address]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert f"failed: {src / 'bad.npz'}: " in err and "bad.npz" in err.split("failed: ")[1]
    header, _, row = out.splitlines()[:3]
    assert header.split() == ["done", "skipped", "failed", "bytes", "in", "bytes", "out",
                              "time", "throughput"]
    assert row.split()[:3] == ["1", "0", "1"]
    lines = (tmp_path / "out" / cluster.MANIFEST_NAME).read_text().splitlines()
    assert sorted(json.loads(line)["status"] for line in lines) == ["done", "failed"]
    (src / "bad.npz").unlink()
    assert main([*argv, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["done"], summary["skipped"], summary["failed"]) == (0, 1, 0)


def test_strict_makes_a_file_with_unheld_entries_a_failure(
        tmp_path: Path, client: distributed.Client, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    np.savez(src / "mixed.npz", w=np.arange(3.0), z=np.array([1 + 2j]))  # complex: not held
    argv = ["convert-many", str(src / "*.npz"), "--to", "h5", "--out", str(tmp_path / "out"),
            "--scheduler", client.scheduler.address, "-q"]
    assert main([*argv, "--strict"]) == 1
    assert "mixed.npz" in capsys.readouterr().err
    assert main(argv) == 0  # other settings: converted again, the complex entry skipped
    assert list(ws.load(tmp_path / "out" / "mixed.h5")) == ["w"]


def test_a_torn_manifest_line_is_ignored(tmp_path: Path) -> None:
    record = cluster.Record(source="a", size=1, fingerprint="mtime:1", destination="b",
                            status="done")
    path = tmp_path / "m.jsonl"
    path.write_bytes(record.to_json() + b"\n" + record.to_json()[:10])
    assert list(cluster.read_manifest(str(path))) == ["a"]
    path.write_bytes(b"{oops\n" + record.to_json() + b"\n")
    with pytest.raises(ws.FormatError, match="line 1"):
        cluster.read_manifest(str(path))


def test_without_dask_the_extra_is_named(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ws.MissingDependencyError, match=r"weightstore\[cluster\]"):
        ws.convert_many(str(tmp_path), to="npz", out=str(tmp_path / "out"))


@pytest.mark.filterwarnings("ignore::weightstore.LossyWarning")
def test_report_many_rows_and_sizes(tmp_path: Path, client: distributed.Client,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    ws.save({"a": np.zeros((10, 3), np.float32), "b": np.arange(10, dtype=np.int64)},
            src / "m.h5")
    _sharded(src)
    (src / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    rows = ws.cluster.report_many(str(src), to="npz", precision={"dtype": "float16"},
                                  scheduler=client)
    by = {Path(r["source"]).name: r for r in rows}
    assert sorted(by) == ["bad.npz", "m.h5", "model.npz.index.json"]
    m = by["m.h5"]
    assert (m["format"], m["tensors"], m["parameters"]) == ("hdf5", 2, 40)
    assert m["bytes"] == (src / "m.h5").stat().st_size
    assert m["bytes_per_param"] == round(m["bytes"] / 40, 4)
    assert m["dtypes"] == "float32:75.0% int64:25.0%"
    ws.convert(src / "m.h5", tmp_path / "m16.npz", precision={"dtype": "float16"})
    assert m["size_as_to"] == (tmp_path / "m16.npz").stat().st_size
    big = by["model.npz.index.json"]
    assert big["parameters"] == 3 * 2500 and big["bytes"] == sum(
        p.stat().st_size for p in (src / "big").iterdir())
    assert by["bad.npz"]["error"] and "bad.npz" in by["bad.npz"]["error"]

    assert main(["report-many", str(src / "*.h5"), "--csv",
                 "--scheduler", client.scheduler.address]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split(",") == list(ws.cluster.REPORT_COLUMNS)
    assert lines[1].split(",")[1:5] == ["hdf5", "2", "40", str(m["bytes"])]
    assert main(["report-many", str(src), "--scheduler", client.scheduler.address]) == 1
    assert "bad.npz" in capsys.readouterr().out
    pq = pytest.importorskip("pyarrow.parquet", reason="--parquet needs pyarrow")
    assert main(["report-many", str(src), "--parquet", str(tmp_path / "r.parquet"),
                 "--scheduler", client.scheduler.address]) == 1
    back = pq.read_table(tmp_path / "r.parquet").to_pylist()
    assert [r["source"] for r in back] == [r["source"] for r in rows]
    named = {Path(r["source"]).name: r for r in back}
    assert named["m.h5"]["parameters"] == 40
    assert named["m.h5"]["bytes_per_param"] == m["bytes_per_param"]
    assert named["bad.npz"]["error"] and named["bad.npz"]["parameters"] is None


def test_sources_that_name_nothing_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ws.FileAccessError, match="no such file"):
        cluster.list_sources([str(tmp_path / "absent.npz")])
    with pytest.raises(ws.FileAccessError, match="nothing matches"):
        cluster.list_sources([str(tmp_path / "*.npz")])
