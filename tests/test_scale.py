"""Large models: lazy opening, streaming conversion, sharding, progress (issue 7).

Everything here runs on small models: the properties (header-only opening, one
tensor alive at a time, all-or-nothing shard sets) do not depend on size.
"""

from __future__ import annotations

import gc
import io
import json
import os
import tracemalloc
import warnings
import weakref
import zipfile
from pathlib import Path

import numpy as np
import pytest
from corpus import corpus, damaged_csv
from test_codecs import _sample

import weightstore as ws
from weightstore import api, shard
from weightstore.codec import Codec
from weightstore.codecs.npz import NpzCodec
from weightstore.lazy import LazyWeights
from weightstore.testing import for_codec

CODECS = [c for c in ws.formats() if c.writable]  # these tests write
IDS = [c.name for c in CODECS]
MiB = 1 << 20


def _model(n: int = 4, rows: int = 64) -> ws.Weights:
    rng = np.random.default_rng(7)
    tensors = {f"layer{i}/W": (rng.standard_normal((rows, 32)) * 0.02).astype(np.float32)
               for i in range(n)}
    tensors["bias"] = np.arange(5, dtype=np.int64)
    tensors["fortran"] = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    return ws.Weights(tensors, metadata={"source": "test_scale"})


def _save(weights: ws.Weights | dict, path: Path, fmt: str | None = None, **kw) -> None:
    try:
        ws.save(weights, path, fmt, **kw)
    except ws.MissingDependencyError as e:  # pragma: no cover - depends on extras
        pytest.skip(str(e))


# --- weightstore.open ---------------------------------------------------------------


@pytest.mark.parametrize("cls", CODECS, ids=IDS)
def test_open_gives_what_load_gives(cls: type[Codec], tmp_path: Path) -> None:
    tensors, metadata = corpus()
    weights = for_codec(cls, ws.Weights(tensors, metadata if cls.supports_metadata else None))
    path = tmp_path / f"w{cls.extensions[0]}"
    _save(weights, path, cls.name)
    loaded = ws.load(path)
    with ws.open(path) as lazy:
        assert list(lazy) == list(loaded) and len(lazy) == len(loaded)
        assert lazy.metadata == loaded.metadata
        for name in loaded:
            info = lazy.info(name)
            assert (info.dtype, info.shape) == (str(loaded[name].dtype), loaded[name].shape)
            assert ws.Weights({name: lazy[name]}).equal({name: loaded[name]})
        assert lazy.load().equal(loaded)
    assert lazy.closed


@pytest.mark.parametrize("ext", [".npz", ".h5", ".safetensors", ".wsc"])
def test_open_reads_the_header_alone(ext: str, tmp_path: Path) -> None:
    """Opening a file with 16 MiB of tensors reads a small part of it."""
    path = tmp_path / f"w{ext}"
    _save({f"t{i}": np.ones((1024, 1024), np.float32) for i in range(4)}, path)
    codec = ws.get_codec(ext)()

    class Counting(io.FileIO):
        read_bytes = 0

        def read(self, n: int = -1) -> bytes:
            data = super().read(n)
            Counting.read_bytes += len(data)
            return data

        def readinto(self, b) -> int:  # type: ignore[override]
            n = super().readinto(b)
            Counting.read_bytes += n or 0
            return n  # type: ignore[return-value]

    with Counting(path, "rb") as f:
        source = codec.open(f, path=str(path))
        try:
            assert source.lazy and [m.name for m in source.tensors] == ["t0", "t1", "t2", "t3"]
        finally:
            source.close()
    # zipfile reads the last 64 KiB to find the end record behind the archive comment
    assert Counting.read_bytes < 256 * 1024, Counting.read_bytes


def test_every_format_with_a_header_opens_lazily(tmp_path: Path) -> None:
    """``weightstore.open`` reads the header alone wherever the format has one: the codecs
    that override ``Codec.open``, and at least the four binary formats with a header."""
    lazy = set()
    for cls in ws.formats():
        if cls.open is Codec.open or cls.layer:
            continue
        path = tmp_path / f"w{cls.extensions[0]}"
        if cls.writable:
            _save({"a": np.ones(3, np.float32)}, path)
        else:  # a read-only codec: its sample file, made by the format's own tool
            path = _sample(cls)
        with ws.open(path) as opened:
            assert opened.lazy, cls.name
        lazy.add(cls.name)
    assert {"npz", "hdf5", "safetensors", "wsc"} <= lazy


@pytest.mark.parametrize("ext", [".npz", ".h5", ".safetensors"])
def test_raw_tensors_are_read_only_memory_maps_unless_asked_otherwise(
        ext: str, tmp_path: Path) -> None:
    path = tmp_path / f"w{ext}"
    weights = _model()
    _save(weights, path)
    with ws.open(path) as lazy:
        mapped = lazy["layer1/W"]
        assert not mapped.flags.writeable
        assert any(isinstance(b, np.memmap) or type(b).__name__ == "mmap"
                   for b in _bases(mapped))
        np.testing.assert_array_equal(lazy["fortran"], weights["fortran"])
    np.testing.assert_array_equal(mapped, weights["layer1/W"])  # stays valid after close
    with ws.open(path, mmap=False) as lazy:
        copy = lazy["layer1/W"]
        assert copy.flags.writeable and not any(isinstance(b, np.memmap) for b in _bases(copy))


def _bases(array: np.ndarray) -> list:
    out, base = [], array.base
    while base is not None:
        out.append(base)
        base = getattr(base, "base", None)
    return out


def test_closed_lazy_weights_keep_the_header_but_not_the_data(tmp_path: Path) -> None:
    path = tmp_path / "w.npz"
    _save(_model(), path)
    lazy = ws.open(path)
    lazy.close()
    assert lazy.info("bias").shape == (5,) and "bias" in lazy and lazy.nbytes > 0
    with pytest.raises(ws.FileAccessError, match="closed"):
        lazy["bias"]


@pytest.mark.parametrize("fast_crc", [True, False])
@pytest.mark.parametrize("size", [4096, 6 * MiB // 4])  # inline, and beside the reads
def test_damaged_npz_data_is_caught_by_the_zip_crc(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_crc: bool, size: int) -> None:
    import zlib

    from weightstore import fileio as rawio

    if fast_crc and not rawio._FAST_CRC:
        pytest.skip("the 'fast' extra (isal) is not installed")
    if not fast_crc:
        monkeypatch.setattr(rawio, "_FAST_CRC", False)
        monkeypatch.setattr(rawio, "crc32", zlib.crc32)
    path = tmp_path / "w.npz"
    _save({"a": np.zeros(size, np.float32), "b": np.ones(8, np.float32)}, path)
    np.testing.assert_array_equal(ws.load(path)["a"], np.zeros(size, np.float32))
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("a.npy")
    data = bytearray(path.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + 2000] ^= 0xFF  # inside a's values
    path.write_bytes(bytes(data))
    with ws.open(path, mmap=False) as lazy:
        np.testing.assert_array_equal(lazy["b"], np.ones(8, np.float32))  # others still read
        with pytest.raises(ws.FormatError, match="CRC"):
            lazy["a"]
    with pytest.raises(ws.FormatError, match="w.npz"):
        ws.load(path)


@pytest.mark.parametrize("fast_crc", [True, False])
def test_large_reads_are_split_across_threads_and_checked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_crc: bool) -> None:
    # a local file's large tensor is read in parts on several threads, each part's
    # CRC-32 combined in order: the values, the checksum and a file cut short all hold
    import zlib

    from weightstore import fileio

    if fast_crc and not fileio._FAST_CRC:
        pytest.skip("the 'fast' extra (isal) is not installed")
    if not fast_crc:
        monkeypatch.setattr(fileio, "_FAST_CRC", False)
        monkeypatch.setattr(fileio, "crc32", zlib.crc32)
    monkeypatch.setattr(fileio, "PARALLEL_READ", 4096)
    monkeypatch.setattr(fileio, "_cores", lambda: 3)  # three parts, whatever the machine
    parts: list[int] = []
    serial = fileio.RawFile._read_serial
    monkeypatch.setattr(fileio.RawFile, "_read_serial",
                        lambda self, view, *a, **k: parts.append(len(view))
                        or serial(self, view, *a, **k))
    data = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    path = tmp_path / "raw.bin"
    path.write_bytes(data)
    start, count = 123, 70_000  # float32 values from byte 123
    want = np.frombuffer(data[start:start + 4 * count], np.float32).reshape(700, 100)
    crc = zlib.crc32(data[start:start + 4 * count], 7)
    with open(path, "rb") as f:
        raw = fileio.RawFile(f, str(path))
        got = raw.read_array(start, np.dtype(np.float32), (700, 100), field="t", crc=(7, crc))
        np.testing.assert_array_equal(got, want)
        assert len(parts) == 3 and sum(parts) == 4 * count and max(parts) < 2 * count
        got = raw.read_array(start, np.dtype(np.float32), (100, 700), fortran=True, field="t")
        np.testing.assert_array_equal(got, want.reshape(700, 100).T)
        for bad in (crc ^ 1, crc ^ 0x80000000):
            with pytest.raises(ws.ChecksumError, match="CRC-32"):
                raw.read_array(start, np.dtype(np.float32), (700, 100), field="t",
                               crc=(7, bad))
        with pytest.raises(ws.FormatError, match="280,000 data bytes at offset 50,000"):
            raw.read_array(50_000, np.dtype(np.float32), (count,), field="t")  # cut short


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="Linux's smaps only")
def test_tensors_read_from_files_are_allocated_on_small_pages() -> None:
    # numpy advises huge pages for big arrays; new_array takes that back (see its doc)
    from weightstore import fileio

    out = fileio.new_array((3, 1 << 20), np.dtype(np.float32))
    assert out.shape == (3, 1 << 20) and out.dtype == np.float32 and out.flags.owndata
    inside = out.__array_interface__["data"][0] + out.nbytes // 2
    flags, here = None, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
                here = lo <= inside < hi
            elif here and line.startswith("VmFlags:"):
                flags = line.split()[1:]
    assert flags is not None and "nh" in flags and "hg" not in flags, flags


def test_inspect_uses_the_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w.h5"
    _save(_model(), path)

    def no_data(*args, **kwargs):
        raise AssertionError("inspect read tensor data")

    monkeypatch.setattr("weightstore.fileio.RawFile.read_array", no_data)
    monkeypatch.setattr("weightstore.fileio.RawFile.map_array", no_data)
    info = ws.inspect(path)
    assert [t.name for t in info.tensors][:2] == ["layer0/W", "layer1/W"]
    assert info.metadata == {"source": "test_scale"} and info.file_size == path.stat().st_size


# --- streaming conversion -------------------------------------------------------------


@pytest.mark.parametrize(("src", "dst"), [
    (".npz", ".h5"), (".h5", ".npz"), (".npz", ".csv"), (".h5", ".json"),
    (".npz", ".npz.zst"), (".h5.zst", ".npz"), (".json", ".npz"), (".npz", ".safetensors"),
    (".csv", ".npz"),
    (".pt", ".safetensors"), (".safetensors", ".pt"), (".pt", ".h5"), (".npz", ".pt.gz"),
])
def test_convert_holds_one_tensor_at_a_time(src: str, dst: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Every tensor handed to the writer is released before the next one is read."""
    weights = _model()
    _save(weights, tmp_path / f"a{src}")
    alive: list[weakref.ref] = []
    most = 0
    original = LazyWeights.__getitem__

    def tracking(self: LazyWeights, name: str) -> np.ndarray:
        nonlocal most
        gc.collect()
        most = max(most, sum(r() is not None for r in alive))
        array = original(self, name)
        alive.append(weakref.ref(array))
        return array

    monkeypatch.setattr(LazyWeights, "__getitem__", tracking)
    # what the session left alive is frozen: the collections above then walk this test's
    # objects only (in the full suite each one walked the whole session's heap, ~1 s)
    gc.freeze()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ws.StreamingWarning)
            monkeypatch.setattr(api, "STREAMING_WARN_BYTES", 0)
            ws.convert(tmp_path / f"a{src}", tmp_path / f"b{dst}")
    finally:
        gc.unfreeze()
    assert len(alive) == len(weights) and most == 0
    monkeypatch.undo()
    assert ws.load(tmp_path / f"b{dst}").equal(weights)


@pytest.mark.parametrize("protocol", [3, 4, 5])
@pytest.mark.parametrize(("src", "dst"), [(".npz", ".pkl"), (".pkl", ".h5"), (".pkl", ".pkl")])
def test_pickle_converts_one_tensor_at_a_time(src: str, dst: str, protocol: int,
                                              tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Pickle is read lazily (each array's bytes left in the file until asked for) and
    written tensor by tensor: converting eight 1 MiB tensors never holds more than about
    two of them (protocols up to 4 copy each array into a bytes object to write it)."""
    rng = np.random.default_rng(3)
    weights = ws.Weights({f"block{i}/W": rng.standard_normal((512, 512), np.float32)
                          for i in range(8)}, metadata={"k": "v"})
    _save(weights, tmp_path / f"a{src}", **({"protocol": protocol} if src == ".pkl" else {}))
    options = {"protocol": protocol} if dst == ".pkl" else {}
    monkeypatch.setattr(api, "STREAMING_WARN_BYTES", 0)  # a whole-model step would warn
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ws.StreamingWarning)  # ... and fail the test
            ws.convert(tmp_path / f"a{src}", tmp_path / f"b{dst}", **options)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    tensor = 512 * 512 * 4
    assert peak < 2.5 * tensor, f"peak {peak / tensor:.2f} tensors"
    got = ws.load(tmp_path / f"b{dst}")
    assert got.equal(weights) and got.metadata == weights.metadata


def _bytes_read() -> int:
    """Bytes this process has read through system calls (Linux: /proc/self/io's rchar)."""
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar"))


@pytest.mark.parametrize("ext", [".json", ".csv"])
def test_opening_text_with_many_tensors_reads_the_file_about_once(ext: str,
                                                                  tmp_path: Path) -> None:
    """Finding each tensor's span reads about the distance to it, not a fixed window per
    tensor (8 MiB windows read the rest of a small file once per tensor: 300x here)."""
    weights = ws.Weights({f"t{i}": np.full(8, i, np.float32) for i in range(300)})
    path = tmp_path / f"w{ext}"
    _save(weights, path)
    before = _bytes_read()
    with ws.open(path) as opened:
        assert opened.lazy
        read = _bytes_read() - before
        assert opened["t299"].tolist() == [299.0] * 8
    assert read < 4 * path.stat().st_size, f"{read / path.stat().st_size:.1f}x the file"


def test_a_writer_that_cannot_stream_warns_above_the_threshold(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every built-in writer streams, so one is made not to (as a plugin may be)."""
    _save(_model(), tmp_path / "a.h5")
    monkeypatch.setattr(NpzCodec, "streams_writes", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ws.StreamingWarning)
        ws.convert(tmp_path / "a.h5", tmp_path / "b.npz")  # small: no warning
    monkeypatch.setattr(api, "STREAMING_WARN_BYTES", 1000)
    with pytest.warns(ws.StreamingWarning, match="npz cannot be written one tensor at a time"):
        ws.convert(tmp_path / "a.h5", tmp_path / "c.npz")
    with ws.open(tmp_path / "a.h5") as opened, pytest.warns(
            ws.StreamingWarning, match="a precision option changes the whole model"):
        ws.save(opened, tmp_path / "d.h5", precision={"dtype": "float16"})
    assert ws.load(tmp_path / "c.npz").equal(_model())


def test_a_reader_that_cannot_stream_warns_above_the_threshold(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX is read whole (its tensors sit inside a protobuf message)."""
    source = Path(__file__).parent / "data" / "onnx" / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("error", ws.StreamingWarning)
        ws.convert(source, tmp_path / "b.safetensors")
    monkeypatch.setattr(api, "STREAMING_WARN_BYTES", 100)
    with pytest.warns(ws.StreamingWarning, match="onnx cannot be read one tensor at a time"):
        ws.convert(source, tmp_path / "c.safetensors")
    assert ws.load(tmp_path / "c.safetensors").equal(ws.load(source))


def test_progress_reports_every_byte_in_order(tmp_path: Path) -> None:
    weights = _model()
    _save(weights, tmp_path / "a.npz")
    calls: list[tuple[int, int]] = []
    ws.convert(tmp_path / "a.npz", tmp_path / "b.h5", progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (weights.nbytes, weights.nbytes)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and len(calls) == len(weights)
    calls.clear()
    ws.load(tmp_path / "b.h5", progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (weights.nbytes, weights.nbytes)


def test_convert_returns_a_record_of_what_it_wrote(tmp_path: Path) -> None:
    weights = _model()
    _save(weights, tmp_path / "a.h5")
    got = ws.convert(tmp_path / "a.h5", tmp_path / "b.npz", compressed=True)
    assert list(got) == list(weights) and got.total_values == weights.total_values
    assert got.path == str(tmp_path / "b.npz") and got.files == (got.path,)
    assert got.format == "npz" and got.config["compressed"] is True
    assert got.file_size == (tmp_path / "b.npz").stat().st_size
    assert [t.shape for t in got.tensors] == [a.shape for a in weights.values()]
    assert ws.get_codec("npz").from_config(got.config) == ws.get_codec("npz")(compressed=True)


# --- sharding -------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".npz", ".h5", ".pkl", ".npz.zst", ".json"])
def test_sharded_save_writes_the_hugging_face_layout(ext: str, tmp_path: Path) -> None:
    weights = _model(n=5, rows=64)  # five 8 KiB tensors, then 40 + 96 bytes
    index = ws.save(weights, tmp_path / f"model{ext}", max_shard_size=20_000)
    assert index == tmp_path / f"model{ext}.index.json"
    doc = json.loads(index.read_text())
    assert set(doc) == {"metadata", "weight_map"}
    assert doc["metadata"]["total_size"] == weights.nbytes
    assert list(doc["weight_map"]) == list(weights)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted([f"model-0000{i}-of-00003{ext}" for i in (1, 2, 3)]
                           + [index.name])
    assert doc["weight_map"]["layer0/W"] == f"model-00001-of-00003{ext}"
    got = ws.load(index)
    assert got.equal(weights) and got.metadata == weights.metadata
    with ws.open(index) as lazy:
        np.testing.assert_array_equal(lazy["layer4/W"], weights["layer4/W"])
    ws.convert(index, tmp_path / "whole.h5")
    assert ws.load(tmp_path / "whole.h5").equal(weights)


def test_shards_respect_the_size_and_a_big_tensor_gets_its_own() -> None:
    sizes = {"a": 40, "b": 40, "huge": 500, "c": 10, "d": 95}
    assert shard.plan_shards(sizes, 100) == [["a", "b"], ["huge"], ["c"], ["d"]]
    assert shard.plan_shards(sizes, 10_000) == [list(sizes)]


@pytest.mark.parametrize(("text", "expected"), [
    ("2GB", 2 * 10**9), ("500MB", 500 * 10**6), ("1GiB", 1 << 30), ("1.5 KB", 1500),
    (4096, 4096), ("123", 123),
])
def test_shard_sizes_parse_like_hugging_face(text, expected: int) -> None:
    assert shard.parse_size(text) == expected


@pytest.mark.parametrize("bad", ["2XB", "-1", "0", "lots", ""])
def test_bad_shard_sizes_are_refused(bad: str) -> None:
    with pytest.raises(ws.OptionError, match="max_shard_size"):
        shard.parse_size(bad)


def test_a_failed_sharded_write_leaves_the_old_set_and_no_new_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = _model(n=2)
    ws.save(old, tmp_path / "model.npz", max_shard_size=9000)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    cls = ws.get_codec("npz")
    real_write = cls.write
    calls = 0

    def failing(self, weights, fileobj, *, path):
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt  # the third shard fails
        real_write(self, weights, fileobj, path=path)

    monkeypatch.setattr(cls, "write", failing)
    with pytest.raises(KeyboardInterrupt):
        ws.save(_model(n=5), tmp_path / "model.npz", max_shard_size=9000)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    monkeypatch.undo()
    assert ws.load(tmp_path / "model.npz.index.json").equal(old)


def test_resaving_with_fewer_shards_removes_the_stale_ones(tmp_path: Path) -> None:
    ws.save(_model(n=5), tmp_path / "model.npz", max_shard_size=9000)
    assert len(list(tmp_path.iterdir())) == 6
    small = _model(n=1)
    ws.save(small, tmp_path / "model.npz", max_shard_size=9000)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model-00001-of-00001.npz", "model.npz.index.json"]
    assert ws.load(tmp_path / "model.npz.index.json").equal(small)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["weight_map"].update({"bias": "../elsewhere.npz"}), "file name in the index"),
    (lambda d: d["weight_map"].update({"bias": "/etc/passwd"}), "file name in the index"),
    (lambda d: d["weight_map"].pop("bias"), "exactly the tensors"),
    (lambda d: d["weight_map"].update({"extra": "model-00001-of-00002.npz"}),
     "exactly the tensors"),
    (lambda d: d.pop("weight_map"), "weight_map"),
    (lambda d: d["metadata"].update(total_size="big"), "total_size"),
])
def test_bad_indexes_are_refused_with_the_reason(edit, message: str, tmp_path: Path) -> None:
    index = ws.save(_model(n=2), tmp_path / "model.npz", max_shard_size=9000)
    doc = json.loads(Path(index).read_text())
    edit(doc)
    Path(index).write_text(json.dumps(doc))
    with pytest.raises(ws.FormatError, match=message) as e:
        ws.load(index)
    assert "model" in str(e.value)


def test_metadata_key_total_size_cannot_be_sharded(tmp_path: Path) -> None:
    weights = ws.Weights({"a": np.zeros(3)}, metadata={"total_size": "x"})
    with pytest.raises(ws.UnsupportedError, match="total_size"):
        ws.save(weights, tmp_path / "m.npz", max_shard_size="1MB")
    assert list(tmp_path.iterdir()) == []


# --- the command line -----------------------------------------------------------------


def test_cli_convert_with_shards_reports_the_index(tmp_path: Path, capsys) -> None:
    from weightstore.cli.main import main

    _save(_model(), tmp_path / "a.h5")
    assert main(["convert", str(tmp_path / "a.h5"), str(tmp_path / "m.npz"),
                 "--max-shard-size", "10kB"]) == 0
    out = capsys.readouterr().out
    assert "m.npz.index.json (npz," in out and "6 tensors" in out
    assert ws.load(tmp_path / "m.npz.index.json").equal(_model())
    assert main(["convert", str(tmp_path / "a.h5"), str(tmp_path / "q.npz"), "-q",
                 "--max-shard-size", "nonsense"]) == 1
    assert "max_shard_size" in capsys.readouterr().err


@pytest.mark.parametrize(("tty", "quiet", "shown"), [
    (True, False, True), (True, True, False), (False, False, False)])
def test_progress_bar_only_on_a_terminal_and_not_with_quiet(
        tty: bool, quiet: bool, shown: bool, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from weightstore.cli import _progress
    from weightstore.cli.main import main

    _save(_model(), tmp_path / "a.h5")
    fake = io.StringIO()
    fake.isatty = lambda: tty  # type: ignore[method-assign]
    monkeypatch.setattr(sys, "stderr", fake)
    monkeypatch.setattr(_progress, "DELAY", 0)
    argv = ["convert", str(tmp_path / "a.h5"), str(tmp_path / "b.npz")] + (["-q"] if quiet else [])
    assert main(argv) == 0
    assert ("convert" in fake.getvalue()) is shown


# --- text formats at speed keep their bytes --------------------------------------------


def test_csv_fast_reader_agrees_with_the_csv_module_on_damaged_files() -> None:
    """The run-based reader gives exactly what the csv module gives, errors included, on
    files with rows shuffled, duplicated, cut, blanked, or given odd values and line ends."""
    import csv
    import random

    from weightstore.codec import DEFAULT_LIMITS
    from weightstore.codecs.csv_codec import CsvCodec, _read_fast

    def general(data: bytes):
        text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="")
        try:
            return CsvCodec._read_rows(csv.reader(text, strict=True), "f", DEFAULT_LIMITS)
        except csv.Error as e:
            raise ws.FormatError(f"malformed CSV ({e})", path="f") from e

    def outcome(read, data: bytes):
        try:
            got = read(data)
        except ws.WeightstoreError as e:
            return ("error", str(e))
        if got is None:
            return None
        return ("ok", list(got), [(got[k].dtype.str, got[k].shape, got[k].tobytes())
                                  for k in got], got.metadata)

    tensors, metadata = corpus()
    rng = np.random.default_rng(0)
    tensors["big"] = (rng.standard_normal((30, 20)) * 0.02).astype(np.float32)
    tensors["ints"] = rng.integers(-100, 100, 300).astype(np.int16)
    plain = {k: v for k, v in tensors.items() if not any(c in k for c in ',"')}
    files = []
    for t, m in ((tensors, metadata), (plain, {"source": "plain"})):
        buf = io.BytesIO()
        CsvCodec().write(ws.Weights(t, m), buf, path="f")
        files.append(buf.getvalue())
    r = random.Random(1)
    edits = [b"x", b"e5", b".5", b"0", b" ", b",", b"-0", b"1e400", b"NaN", b"+1", b"1.0",
             b"99999999999999999999"]
    compared = 0
    for _ in range(400):
        op, data = damaged_csv(files, r, edits)
        fast = outcome(lambda d: _read_fast(d, "f", DEFAULT_LIMITS), data)
        if fast is not None:
            compared += 1
            assert fast == outcome(general, data), (op, data[:200])
    assert compared > 300


def test_json_writer_streams_the_bytes_of_one_document(tmp_path: Path) -> None:
    """Tensor by tensor, the same bytes as orjson.dumps of the whole document."""
    import orjson

    from weightstore.codecs._text import json_ready

    rng = np.random.default_rng(3)
    big = (rng.standard_normal((40, 30)) * 1e14).astype(np.float32)
    big[1, 2], big[5, 5] = np.nan, -np.inf
    tensors = {"big": big, "f64": rng.standard_normal(50), "h": (big[:3] / 1e14).astype(np.float16),
               "u": np.array([2**60, 1], dtype=np.uint64), "s": np.float32(0.1)}
    weights = ws.Weights(tensors, metadata={"k": "v"})
    ws.save(weights, tmp_path / "w.json")
    from weightstore.integrity import format_crc, header_crc32, header_entries, tensor_crc32

    doc = {"format": "weightstore.json", "version": 1, "metadata": {"k": "v"},
           "header_crc32": format_crc(header_crc32(header_entries(weights), {"k": "v"})),
           "tensors": [{"name": k, "dtype": str(v.dtype), "shape": list(v.shape),
                        "crc32": format_crc(tensor_crc32(v)), "data": json_ready(v)}
                       for k, v in weights.items()]}
    assert (tmp_path / "w.json").read_bytes() == orjson.dumps(
        doc, option=orjson.OPT_SERIALIZE_NUMPY)
    assert ws.load(tmp_path / "w.json").equal(weights)


def test_npz_written_from_a_lazy_source_loads_with_numpy(tmp_path: Path) -> None:
    weights = _model()
    _save(weights, tmp_path / "a.h5")
    with ws.open(tmp_path / "a.h5") as lazy:
        ws.save(lazy, tmp_path / "b.npz")
    with np.load(tmp_path / "b.npz", allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["layer2/W"], weights["layer2/W"])
    assert os.path.getsize(tmp_path / "b.npz") > weights.nbytes


def test_the_benchmark_model_has_the_size_and_shapes_asked_for() -> None:
    import subprocess
    import sys

    from benchmarks.scale import model_shapes

    for gib in (2.0, 0.5, 0.1):
        shapes, lazy = model_shapes(gib)
        total = sum(4 * int(np.prod(s)) for s in shapes.values())
        assert abs(total - gib * (1 << 30)) < 0.2 * gib * (1 << 30) + 64 * MiB
        assert lazy in shapes and len(shapes[lazy]) == 2
    assert 4 * int(np.prod(model_shapes(2.0)[0][model_shapes(2.0)[1]])) == 16 * MiB
    help_text = subprocess.run([sys.executable, "-m", "benchmarks.scale", "--help"],
                               capture_output=True, text=True, check=True,
                               cwd=Path(__file__).resolve().parents[1]).stdout
    assert "--gib" in help_text and "--text-gib" in help_text


@pytest.mark.parametrize("ext", [".npz", ".h5", ".safetensors"])
def test_lazy_reads_check_each_tensors_checksum(ext: str, tmp_path: Path) -> None:
    """weightstore.open verifies what it reads (not memory maps), unless verify=False."""
    path = tmp_path / f"w{ext}"
    target = np.full(64, 1.25, np.float32)
    _save({"first": np.arange(4.0), "target": target}, path)
    data = path.read_bytes()
    at = data.find(target.tobytes())
    assert at >= 0
    path.write_bytes(data[:at] + np.float32(5.0).tobytes() + data[at + 4:])
    with ws.open(path, mmap=False) as lazy:
        np.testing.assert_array_equal(lazy["first"], np.arange(4.0))
        with pytest.raises(ws.ChecksumError, match="tensor 'target'"):
            lazy["target"]
    with ws.open(path, mmap=False, verify=False) as lazy:
        assert lazy["target"][0] == 5.0
    with pytest.raises(ws.ChecksumError, match="tensor 'target'"):
        ws.convert(path, tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()


def test_lazy_weights_describe_their_tensors_from_the_header(tmp_path: Path) -> None:
    w = ws.Weights({"enc/W": np.zeros((3, 4), np.float32), "b": np.arange(5, dtype=np.int16),
                    "enc/b": np.ones(4)}, metadata={"k": "v"})
    path = tmp_path / "w.wsc"
    ws.save(w, path)
    lazy = ws.open(path)
    assert "b" in lazy and "nope" not in lazy
    assert lazy.lazy and not lazy.closed and lazy.metadata == {"k": "v"}
    assert lazy.grouped_order() == w.grouped_order()
    assert (lazy.dtype("b"), lazy.shape("enc/W")) == (np.dtype(np.int16), (3, 4))
    assert lazy.tensor_nbytes("enc/W") == 48 and lazy.nbytes == w.nbytes
    assert lazy.total_values == w.total_values == 21
    assert repr(lazy) == f"<LazyWeights {str(path)!r} wsc, 3 tensors, {w.nbytes:,} bytes, open>"
    lazy.close()
    lazy.close()  # twice is harmless
    assert lazy.closed and repr(lazy).endswith("closed>")
