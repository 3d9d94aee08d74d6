"""The zstd layer's seekable format: random access, compatibility, hostile seek tables."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import zipfile

import numpy as np
import pytest
import zstandard

import weightstore
from weightstore import Weights
from weightstore.codec import Limits
from weightstore.codecs import _seekable
from weightstore.codecs._seekable import (
    SEEKABLE_MAGIC,
    SKIPPABLE_MAGIC,
    SeekableReader,
    SeekableWriter,
    read_seek_table,
)
from weightstore.codecs.zstd import HEADER_FRAME
from weightstore.errors import ChecksumError, FormatError, LimitError
from weightstore.testing import same_content


def model() -> Weights:
    rng = np.random.default_rng(7)
    tensors = {f"layer{i}/W": (rng.standard_normal((256, 300)) * 0.02).astype(np.float32)
               for i in range(8)}
    tensors["layer0/b"] = np.arange(5, dtype=np.int64)
    return Weights(tensors, metadata={"k": "v"})


def seekable_bytes(content: bytes, frame_size: int, threads: int = 0) -> bytes:
    out = io.BytesIO()
    writer = SeekableWriter(out, level=3, frame_size=frame_size, threads=threads)
    for i in range(0, len(content), 777):  # pieces that straddle frames
        writer.write(content[i:i + 777])
    writer.close()
    return out.getvalue()


@pytest.mark.parametrize("threads", [0, 2])
def test_reader_gives_every_slice(threads: int) -> None:
    content = np.random.default_rng(1).integers(0, 4, 50_000, dtype=np.uint8).tobytes()
    data = seekable_bytes(content, 4096, threads)
    f = io.BytesIO(data)
    table = read_seek_table(f, len(data), "x.zst", Limits())
    assert table is not None and table.frames == -(-len(content) // 4096)
    reader = SeekableReader(f, table, "x.zst", threads=threads)
    rng = np.random.default_rng(2)
    for _ in range(200):
        a = int(rng.integers(0, len(content)))
        n = int(rng.integers(0, 20_000))
        reader.seek(a)
        assert reader.read(n) == content[a:a + n]
    reader.seek(0)
    assert reader.read() == content
    # every zstd decoder reads the file as the content: the table is a skippable frame
    dctx = zstandard.ZstdDecompressor()
    assert dctx.stream_reader(io.BytesIO(data), read_across_frames=True).read() == content


@pytest.mark.parametrize("threads", [0, 2])
def test_reader_on_a_local_file_decompresses_whole_frames_in_place(tmp_path,
                                                                    threads: int) -> None:
    # a real file: worker threads read their frames with preadv and decompress them
    # straight into the caller's buffer; frames wanted in part go through the cache
    content = np.random.default_rng(3).integers(0, 4, 60_000, dtype=np.uint8).tobytes()
    path = tmp_path / "c.zst"
    path.write_bytes(seekable_bytes(content, 4096, threads))
    with open(path, "rb") as f:
        table = read_seek_table(f, path.stat().st_size, str(path), Limits())
        reader = SeekableReader(f, table, str(path), threads=threads)
        rng = np.random.default_rng(4)
        for _ in range(100):
            a = int(rng.integers(0, len(content)))
            n = int(rng.integers(0, 30_000))
            reader.seek(a)
            buf = bytearray(n)
            got = reader.readinto(buf)
            assert bytes(buf[:got]) == content[a:a + n]
        for a, n in ((0, 4096), (4096, 8192), (8192, 40_000), (0, len(content))):  # aligned
            reader.seek(a)
            assert reader.read(n) == content[a:a + n]
        reader.close()


@pytest.mark.parametrize("damage", ["checksum", "short", "long"])
def test_a_damaged_frame_is_refused_when_decompressed_in_place(tmp_path,
                                                               damage: str) -> None:
    content = np.random.default_rng(5).integers(0, 4, 40_000, dtype=np.uint8).tobytes()
    data = bytearray(seekable_bytes(content, 4096))
    f = io.BytesIO(bytes(data))
    table = read_seek_table(f, len(data), "d.zst", Limits())
    end = int(table.cstarts[4])  # frame 3 ends here: its last 4 bytes are its checksum
    if damage == "checksum":
        data[end - 1] ^= 0x01
        error = ChecksumError
    else:  # frame 3's entry says 4096 bytes; it holds one fewer or one more and, not
        # declaring its size, is found out only as it is decompressed
        piece = content[12288:16383] if damage == "short" else content[12288:16385]
        other = zstandard.ZstdCompressor(write_checksum=True,
                                         write_content_size=False).compress(piece)
        data[int(table.cstarts[3]):end] = other
        entry = len(data) - 9 - 8 * table.frames + 8 * 3
        data[entry:entry + 4] = struct.pack("<I", len(other))
        error = FormatError
    path = tmp_path / "d.zst"
    path.write_bytes(bytes(data))
    with open(path, "rb") as f:
        table = read_seek_table(f, len(data), str(path), Limits())
        reader = SeekableReader(f, table, str(path), threads=2)
        with pytest.raises(error, match="zstd frame 3"):
            reader.read()  # frame 3 is wanted whole: decompressed into the buffer


def test_npz_zst_is_seekable_and_zstd_d_restores_the_npz(tmp_path) -> None:
    w = model()
    weightstore.save(w, tmp_path / "one.npz.zst", frame_size=0)  # the old single frame
    weightstore.save(w, tmp_path / "m.npz.zst", frame_size=16 << 10)
    data = (tmp_path / "m.npz.zst").read_bytes()
    assert struct.unpack("<I", data[-4:])[0] == SEEKABLE_MAGIC
    dctx = zstandard.ZstdDecompressor()
    plain = dctx.stream_reader(io.BytesIO((tmp_path / "one.npz.zst").read_bytes())).read()
    assert dctx.stream_reader(io.BytesIO(data), read_across_frames=True).read() == plain
    (tmp_path / "plain.npz").write_bytes(plain)
    assert same_content(weightstore.load(tmp_path / "plain.npz"), w)
    if shutil.which("zstd") is None:
        pytest.skip("the zstd command line is not installed (checked with zstandard above)")
    out = subprocess.run(["zstd", "-d", "-c", str(tmp_path / "m.npz.zst")],
                         capture_output=True, check=True).stdout
    assert out == plain


def test_open_decompresses_only_the_frames_a_tensor_spans(tmp_path, monkeypatch) -> None:
    w = model()
    path = tmp_path / "m.npz.zst"
    weightstore.save(w, path, frame_size=16 << 10)
    calls: list[int] = []
    real = _seekable.decompress_frame

    def counting(data, size, path, where, out=None):  # noqa: ANN001, ANN202
        calls.append(size)
        return real(data, size, path, where, out)

    monkeypatch.setattr(_seekable, "decompress_frame", counting)
    with weightstore.open(path) as lazy:
        assert lazy.lazy
        opened = sum(calls)
        calls.clear()
        np.testing.assert_array_equal(lazy["layer3/W"], w["layer3/W"])
        one = sum(calls)
        assert same_content(lazy.load(), w)
    with open(path, "rb") as f:
        total = read_seek_table(f, path.stat().st_size, str(path), Limits()).content_size
    tensor = w["layer3/W"].nbytes
    assert one <= tensor + 2 * (16 << 10), (one, tensor)
    assert opened + one < total / 2, (opened, one, total)
    # each large tensor's header starts a small frame of its own: opening decompresses
    # those, the small tensor's frame and the frames of the last 64 KiB (where zipfile
    # looks for its end record when the archive has a comment), not a frame per header
    big = sum(1 for a in w.values() if a.nbytes >= 16 << 10)
    assert opened <= big * HEADER_FRAME + (64 << 10) + 3 * (16 << 10), (opened, big)


def test_frames_are_cut_before_each_large_tensor(tmp_path) -> None:
    w = model()
    path = tmp_path / "m.npz.zst"
    weightstore.save(w, path, frame_size=16 << 10)
    data = path.read_bytes()
    with open(path, "rb") as f:
        table = read_seek_table(f, len(data), str(path), Limits())
    starts = set(table.dstarts.tolist())
    sizes = np.diff(table.dstarts)
    plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data),
                                                       read_across_frames=True).read()
    with zipfile.ZipFile(io.BytesIO(plain)) as zf:
        for info in zf.infolist():
            large = info.file_size >= 16 << 10
            assert (info.header_offset in starts) == large, info.filename
            if large:  # a header frame, then frames of frame_size again
                i = int(np.searchsorted(table.dstarts, info.header_offset))
                assert sizes[i] == HEADER_FRAME and sizes[i + 1] == 16 << 10


def test_single_frame_files_still_read(tmp_path) -> None:
    w = model()
    path = tmp_path / "old.npz.zst"
    weightstore.save(w, path, frame_size=0)
    assert struct.unpack("<I", path.read_bytes()[-4:])[0] != SEEKABLE_MAGIC
    assert same_content(weightstore.load(path), w)
    with weightstore.open(path) as lazy:
        np.testing.assert_array_equal(lazy["layer1/W"], w["layer1/W"])


def test_json_inside_a_seekable_file_reads(tmp_path) -> None:
    w = Weights({"a/W": np.linspace(-1, 1, 3000, dtype=np.float32).reshape(30, 100)})
    path = tmp_path / "m.json.zst"
    weightstore.save(w, path, frame_size=4096)  # several frames: the text spans them
    assert same_content(weightstore.load(path), w)
    with weightstore.open(path) as lazy:
        assert same_content(lazy.load(), w)


def table_file(entries: list[tuple[int, int]], frames: bytes = b"", descriptor: int = 0,
               count: int | None = None, size_field: int | None = None) -> bytes:
    body = b"".join(struct.pack("<II", c, d) for c, d in entries)
    body += struct.pack("<IBI", len(entries) if count is None else count, descriptor,
                        SEEKABLE_MAGIC)
    size = len(body) if size_field is None else size_field
    return frames + struct.pack("<II", SKIPPABLE_MAGIC, size) + body


def frame(content: bytes) -> bytes:
    return zstandard.ZstdCompressor(write_checksum=True).compress(content)


@pytest.mark.parametrize("case", ["count", "zero", "tiling", "size_field", "reserved",
                                  "frame_too_big", "stored_beyond_bound"])
def test_bad_seek_tables_are_refused_before_allocating(case: str) -> None:
    f1 = frame(b"a" * 100)
    data = {
        "count": table_file([(len(f1), 100)], f1, count=0x7FFFFFF),
        "zero": table_file([], b""),
        "tiling": table_file([(len(f1) + 1, 100)], f1),
        "size_field": table_file([(len(f1), 100)], f1, size_field=99),
        "reserved": table_file([(len(f1), 100)], f1, descriptor=0x04),
        "frame_too_big": table_file([(len(f1), (1 << 30) + 1)], f1),
        "stored_beyond_bound": table_file([(len(f1) + 4000, 1)], f1 + bytes(4000)),
    }[case]
    with pytest.raises(FormatError):
        read_seek_table(io.BytesIO(data), len(data), "bad.zst", Limits())


def test_content_beyond_the_limits_is_refused() -> None:
    f1 = frame(b"a" * 100)
    data = table_file([(len(f1), 1 << 29), (len(f1), 1 << 29)], f1 + f1)
    with pytest.raises(LimitError):
        read_seek_table(io.BytesIO(data), len(data), "big.zst",
                        Limits(expansion_free_bytes=1 << 20))


def test_a_frame_that_disagrees_with_its_entry_is_refused() -> None:
    f1 = frame(b"a" * 100)
    data = table_file([(len(f1), 50)], f1)
    f = io.BytesIO(data)
    table = read_seek_table(f, len(data), "lie.zst", Limits())
    assert table is not None
    with pytest.raises(FormatError, match="50"):
        SeekableReader(f, table, "lie.zst").read(10)


def test_tables_with_checksums_are_read() -> None:
    f1, f2 = frame(b"x" * 70), frame(b"y" * 30)
    body = struct.pack("<III", len(f1), 70, 0) + struct.pack("<III", len(f2), 30, 0)
    body += struct.pack("<IBI", 2, 0x80, SEEKABLE_MAGIC)
    data = f1 + f2 + struct.pack("<II", SKIPPABLE_MAGIC, len(body)) + body
    f = io.BytesIO(data)
    table = read_seek_table(f, len(data), "c.zst", Limits())
    reader = SeekableReader(f, table, "c.zst")
    reader.seek(65)
    assert reader.read(10) == b"xxxxxyyyyy"


def test_a_damaged_table_is_found_by_a_full_read_too(tmp_path) -> None:
    w = model()
    path = tmp_path / "m.npz.zst"
    weightstore.save(w, path, frame_size=16 << 10)
    data = bytearray(path.read_bytes())
    count = int.from_bytes(data[-9:-5], "little")
    entry = len(data) - 9 - 8 * count  # the first entry's compressed size
    data[entry:entry + 4] = (int.from_bytes(data[entry:entry + 4], "little") + 1).to_bytes(
        4, "little")
    data[entry + 8:entry + 12] = (int.from_bytes(data[entry + 8:entry + 12], "little") - 1
                                  ).to_bytes(4, "little")  # the frames still tile the file
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="seek table entry 0"):
        weightstore.load(path)
    with pytest.raises(FormatError), weightstore.open(path) as lazy:
        lazy.load()
