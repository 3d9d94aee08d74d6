"""npz, HDF5 and zstd: readable by their own ecosystems, and bounded against bombs."""

from __future__ import annotations

import io
import struct
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import zstandard
from conftest import require_tool

import weightstore as ws
from weightstore.codec import Limits

MiB = 1 << 20
W = ws.Weights({"W1": np.arange(12, dtype=np.float32).reshape(3, 4), "g/b": np.ones(4)},
               metadata={"source": "t"})


# --- npz ----------------------------------------------------------------------------


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_loads_with_numpy_without_pickle(tmp_path: Path, compressed: bool) -> None:
    path = tmp_path / "w.npz"
    ws.save(W, path, compressed=compressed)
    with np.load(path, allow_pickle=False) as npz:
        assert npz.files == ["W1", "g/b"]
        np.testing.assert_array_equal(npz["W1"], W["W1"])
    assert ws.load(path).metadata == {"source": "t"}


def test_npz_compression_shrinks_and_stays_exact(tmp_path: Path) -> None:
    zeros = ws.Weights({"z": np.zeros(100_000, np.float32)})
    ws.save(zeros, tmp_path / "plain.npz")
    ws.save(zeros, tmp_path / "small.npz", compressed=True, level=9)
    assert (tmp_path / "small.npz").stat().st_size < (tmp_path / "plain.npz").stat().st_size / 50
    assert zeros.equal(ws.load(tmp_path / "small.npz"))


def test_npz_member_claiming_absurd_size_is_refused(tmp_path: Path) -> None:
    """A deflated member whose header claims far more than its compressed bytes allow."""
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf, \
            zf.open("x.npy", "w", force_zip64=True) as m:
        np.lib.format.write_array(m, np.zeros(8 * MiB, np.uint8))
    with pytest.raises(ws.FormatError, match="Limits.max_expansion"):
        ws.load(path, limits=Limits(expansion_free_bytes=MiB, max_expansion=100))


def test_npz_header_that_disagrees_with_the_data_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lie.npz"
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.zeros(10, np.float64))
    data = buf.getvalue().replace(b"(10,)", b"(99,)")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", data)
    with pytest.raises(ws.FormatError, match="shape"):
        ws.load(path)


def test_npz_pickled_object_member_is_skipped_never_unpickled_and_strict_refuses(
        tmp_path: Path) -> None:
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object), y=np.arange(3, dtype=np.float32))
    with pytest.warns(ws.SkippedEntriesWarning, match="objects.npz") as caught:
        got = ws.load(path)
    assert list(got) == ["y"] and "'x'" in str(caught[0].message)
    with pytest.raises(ws.WeightstoreError, match="objects.npz"):
        ws.load(path, strict=True)


# --- HDF5 ---------------------------------------------------------------------------


def test_hdf5_layout_for_other_tools(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "w.h5"
    ws.save(W, path, compression="gzip", level=9)
    with h5py.File(path, "r") as f:
        assert list(f) == ["W1", "g"] and list(f["g"]) == ["b"]
        # metadata is a fixed-length UTF-8 string: h5py gives it back as bytes
        assert f["W1"].compression == "gzip" and f.attrs["source"] == b"t"
        np.testing.assert_array_equal(f["W1"][()], W["W1"])


def test_hdf5_tools_read_our_file(tmp_path: Path) -> None:
    h5dump = require_tool("h5dump")  # Debian's hdf5-tools; .ci/run installs it
    path = tmp_path / "w.h5"
    ws.save(W, path, compression="gzip", level=9)
    out = subprocess.run([h5dump, "-H", str(path)], capture_output=True, text=True, check=True)
    assert 'DATASET "W1"' in out.stdout and 'GROUP "g"' in out.stdout
    assert 'DATASET "b"' in out.stdout


def test_hdf5_written_by_h5py_in_name_order_loads(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:
        f["b"] = np.arange(3)
        f.create_group("a")["w"] = np.eye(2)
    got = ws.load(path)
    assert list(got) == ["a/w", "b"]


def test_hdf5_open_reads_attributes_only_where_there_are_some(tmp_path: Path) -> None:
    # the walk reads an object's attributes only when it has some besides the tensor
    # checksum, and the checksum itself with its tensor: both must still be found
    import h5py

    path = tmp_path / "attrs.h5"
    with h5py.File(path, "w") as f:
        f["plain"] = np.arange(3)
        f["units"] = np.ones(2)
        f["units"].attrs["unit"] = np.float32(2.5)
        f["units"].attrs["weightstore.crc32"] = np.uint32(0)  # wrong: found when read
        f.create_group("g").attrs["note"] = np.int64(7)
        f["g"]["w"] = np.eye(2)
        f["bad"] = np.zeros(2)
        f["bad"].attrs["weightstore.crc32"] = np.float64(1.5)
    with ws.open(path, mmap=False) as w:
        assert list(w) == ["bad", "g/w", "plain", "units"]
        assert w.metadata["hdf5.attrs:/units"] == (
            '{"unit":{"dtype":"float32","shape":[],"value":2.5}}')
        assert w.metadata["hdf5.attrs:/g"] == '{"note":{"dtype":"int64","shape":[],"value":7}}'
        assert np.array_equal(w["plain"], np.arange(3))
        with pytest.raises(ws.ChecksumError, match="units"):
            w["units"]
        with pytest.raises(ws.FormatError, match=r"dataset 'bad' attribute 'weightstore\.crc32'"):
            w["bad"]


@pytest.mark.parametrize("kind", ["soft", "external"])
def test_hdf5_links_to_elsewhere_are_refused(tmp_path: Path, kind: str) -> None:
    import h5py

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["secret"] = np.arange(3)
    path = tmp_path / "links.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(2)
        f["y"] = h5py.SoftLink("/x") if kind == "soft" else h5py.ExternalLink(str(other), "/secret")
    with pytest.raises(ws.UnsafeFileError, match="link 'y'"):
        ws.load(path)


def test_hdf5_dataset_without_storage_claiming_gigabytes_is_refused(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "claims.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("huge", shape=(1 << 31,), dtype="f8", chunks=(1 << 20,))
    with pytest.raises(ws.FormatError, match="huge"):
        ws.load(path)


def test_bfloat16_is_refused_where_the_format_cannot_hold_it(tmp_path: Path) -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 needs the optional ml_dtypes")
    w = ws.Weights({"x": np.ones(2, dtype=ml_dtypes.bfloat16)})
    for ext in (".npz", ".h5"):
        with pytest.raises(ws.UnsupportedError, match="bfloat16"):
            ws.save(w, tmp_path / f"w{ext}")
        assert not (tmp_path / f"w{ext}").exists()
    for ext in (".json", ".csv", ".pkl"):
        ws.save(w, tmp_path / f"w{ext}")
        assert w.equal(ws.load(tmp_path / f"w{ext}"))


# --- zstd ---------------------------------------------------------------------------


@pytest.mark.parametrize("inner", ["json", "csv", "npz", "pkl", "h5"])
def test_zstd_command_line_restores_the_inner_file(tmp_path: Path, inner: str) -> None:
    zstd = require_tool("zstd")
    path = tmp_path / f"w.{inner}.zst"
    ws.save(W, path, level=19)
    subprocess.run([zstd, "-q", "-d", str(path)], check=True)
    assert W.equal(ws.load(tmp_path / f"w.{inner}"))


def test_zstd_restored_by_the_library_gives_the_inner_bytes(tmp_path: Path) -> None:
    ws.save(W, tmp_path / "w.json")
    ws.save(W, tmp_path / "w.json.zst")
    with zstandard.ZstdDecompressor().stream_reader((tmp_path / "w.json.zst").read_bytes()) as r:
        restored = r.read()
    assert restored == (tmp_path / "w.json").read_bytes()


def test_zstd_options_pass_through_to_the_inner_codec(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "w.h5.zst"
    ws.save(W, path, level=5, compression="gzip")
    raw = zstandard.ZstdDecompressor().decompress(path.read_bytes())
    with h5py.File(io.BytesIO(raw), "r") as f:
        assert f["W1"].compression == "gzip"
    with pytest.raises(ws.OptionError, match="compresion"):
        ws.save(W, path, compresion="gzip")


def test_zstd_inner_comes_from_content_not_name(tmp_path: Path) -> None:
    path = tmp_path / "w.csv.zst"
    ws.save(W, path, inner="json")  # named .csv.zst but holds JSON
    assert W.equal(ws.load(path))


def _zeros_frame(size: int, *, with_size: bool) -> bytes:
    cctx = zstandard.ZstdCompressor(level=1, write_content_size=with_size)
    if with_size:
        return cctx.compress(bytes(size))
    out = io.BytesIO()
    with cctx.stream_writer(out, closefd=False) as w:
        for _ in range(size // MiB):
            w.write(bytes(MiB))
    return out.getvalue()


def test_zstd_frame_declaring_an_absurd_size_is_refused_before_allocating(tmp_path: Path) -> None:
    path = tmp_path / "bomb.npz.zst"
    path.write_bytes(_zeros_frame(64 * MiB, with_size=True))
    assert path.stat().st_size < 64 * 1024
    with pytest.raises(ws.LimitError, match="declared"):
        ws.load(path, limits=Limits(expansion_free_bytes=MiB, max_expansion=100))


def test_zstd_stream_expanding_past_the_limit_is_refused(tmp_path: Path) -> None:
    import tracemalloc

    path = tmp_path / "bomb.npz.zst"
    path.write_bytes(_zeros_frame(256 * MiB, with_size=False))
    tracemalloc.start()
    with pytest.raises(ws.LimitError, match="more than"):
        ws.load(path, limits=Limits(expansion_free_bytes=4 * MiB, max_expansion=10))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 64 * MiB  # refused early, not after expanding 256 MiB


def test_zstd_truncated_frame_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.json.zst"
    ws.save(W, path)
    data = path.read_bytes()
    for cut in (len(data) - 1, len(data) - 4, len(data) // 2):
        path.write_bytes(data[:cut])
        with pytest.raises(ws.FormatError, match="w.json.zst"):
            ws.load(path)


def test_npz_header_numpy_cannot_tokenize_is_a_format_error(tmp_path: Path) -> None:
    """numpy's .npy header parser raises tokenize.TokenError on an unclosed bracket
    (found by scripts/fuzz.py); it must reach the user as our FormatError."""
    import struct

    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (3, "
    header += b" " * (64 - 10 - len(header) - 1) + b"\n"
    member = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + bytes(24)
    path = tmp_path / "token.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", member)
    with pytest.raises(ws.FormatError, match="token.npz"):
        ws.load(path)
    with pytest.raises(ws.FormatError, match="token.npz"), ws.open(path) as lazy:
        lazy["x"]


# --- damaged compressed npz members; zstd frames other than one plain frame ---------


def _deflated_member_span(path: Path, name: str) -> tuple[int, int]:
    """(start, length) of *name*'s deflate data in the npz at *path*."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
        assert info.compress_type == zipfile.ZIP_DEFLATED
    raw = path.read_bytes()
    offset = info.header_offset
    name_len, extra_len = struct.unpack_from("<HH", raw, offset + 26)
    return offset + 30 + name_len + extra_len, info.compress_size


@pytest.mark.parametrize("where", [0.0, 0.5, 0.99])
def test_npz_damaged_compressed_member_is_named(tmp_path: Path, where: float) -> None:
    path = tmp_path / "w.npz"
    big = ws.Weights({"W1": np.random.default_rng(0).standard_normal((200, 50)), "b": np.ones(3)})
    ws.save(big, path, compressed=True)
    start, length = _deflated_member_span(path, "W1.npy")
    data = bytearray(path.read_bytes())
    data[start + int(length * where)] ^= 0x55
    path.write_bytes(bytes(data))
    with pytest.raises(ws.FormatError, match="W1") as e:  # bad deflate data or its CRC
        ws.load(path)
    assert str(path) in str(e.value)
    # lazily: refused when its header is read (at open) or its data (on access)
    with pytest.raises(ws.FormatError, match="W1"), ws.open(path) as lazy:
        assert np.array_equal(lazy["b"], np.ones(3))  # the other member still reads
        lazy["W1"]


def _skippable(payload: bytes, kind: int = 0) -> bytes:
    return struct.pack("<II", 0x184D2A50 + kind, len(payload)) + payload


def test_zstd_skippable_frames_around_the_data_are_ignored(tmp_path: Path) -> None:
    inner = tmp_path / "w.json"
    ws.save(W, inner)
    frame = zstandard.ZstdCompressor().compress(inner.read_bytes())
    path = tmp_path / "w.json.zst"
    path.write_bytes(_skippable(b"made by a tool") + frame + _skippable(b"", 15))
    assert ws.load(path).equal(W)
    # two data frames one after the other are one stream, as `zstd -d` reads it
    half = len(inner.read_bytes()) // 2
    c = zstandard.ZstdCompressor()
    path.write_bytes(c.compress(inner.read_bytes()[:half]) + _skippable(b"x")
                     + c.compress(inner.read_bytes()[half:]))
    assert ws.load(path).equal(W)


def test_zstd_skippable_frame_cut_short_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.json.zst"
    ws.save(W, path)
    path.write_bytes(path.read_bytes() + _skippable(b"0123456789")[:-3])
    with pytest.raises(ws.FormatError, match="skippable frame .*truncated"):
        ws.load(path)


def test_zstd_only_skippable_frames_is_not_a_weight_file(tmp_path: Path) -> None:
    path = tmp_path / "w.json.zst"
    path.write_bytes(_skippable(b"nothing else"))
    with pytest.raises(ws.WeightstoreError, match="w.json.zst"):
        ws.load(path)


def test_zstd_inside_zstd_is_refused(tmp_path: Path) -> None:
    once = tmp_path / "w.json.zst"
    ws.save(W, once)
    twice = tmp_path / "twice.zst"  # the content, not the name, says what is inside
    twice.write_bytes(zstandard.ZstdCompressor().compress(once.read_bytes()))
    with pytest.raises(ws.FormatError, match="zstd inside zstd"):
        ws.load(twice)
    with pytest.raises(ws.FormatError, match="zstd inside zstd"):
        ws.load(twice, "zstd")
