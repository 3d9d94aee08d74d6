"""The wsc codec: layout pinned byte for byte, round trips, damage reported by name."""

from __future__ import annotations

import gzip
import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import weightstore
from weightstore import ChecksumError, FormatError, LimitError, Limits, Weights
from weightstore.codecs import wsc as compact
from weightstore.codecs.wsc import MAGIC, WscCodec

#: The issue's target for the reference weights: within 1% of the order-0 bound
#: (152,450 bytes: sign and exponent entropy-coded, mantissa stored raw).
REFERENCE_TARGET = 153_500


def encode(weights: Weights | dict, **options) -> bytes:
    buf = io.BytesIO()
    WscCodec(**options).write(weights if isinstance(weights, Weights) else Weights(weights),
                                  buf, path="t.wsc")
    return buf.getvalue()


def decode(data: bytes, limits: Limits = weightstore.DEFAULT_LIMITS, **options) -> Weights:
    return WscCodec(**options).read(io.BytesIO(data), path="t.wsc", limits=limits)


def split(data: bytes) -> tuple[bytes, dict, bytes]:
    """(data section with prefix, header as a dict, trailer) of an encoded file."""
    length, _, _ = struct.unpack("<QI4s", data[-16:])
    header = data[-16 - length:-16]
    return data[: -16 - length], orjson.loads(header), data[-16:]


def join(front: bytes, header: dict) -> bytes:
    """A file with *header* (its length and CRC in a fresh trailer)."""
    h = orjson.dumps(header)
    return front + h + struct.pack("<QI4s", len(h), zlib.crc32(h), b"WSC\x00")


# -- the layout --------------------------------------------------------------------


def test_golden_bytes_pin_the_layout():
    w = Weights({"a": np.array([1.0, -2.0], np.float32), "g/n": np.array([1, 2, -3], np.int16)},
                metadata={"k": "v"})
    # 1.0f is 0x3F800000, rotated left by one 0x7F000000; -2.0f is 0xC0000000 -> 0x80000001.
    # Planes go most significant byte first; tensors this small are stored raw.
    a_planes = bytes([0x7F, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01])
    # int16 1, 2, -3 (0xFFFD) are not rotated: high bytes, then low bytes.
    n_planes = bytes([0x00, 0x00, 0xFF, 0x01, 0x02, 0xFD])
    a_crc = zlib.crc32(np.array([1.0, -2.0], "<f4").tobytes())
    n_crc = zlib.crc32(np.array([1, 2, -3], "<i2").tobytes())
    assert (a_crc, n_crc) == (0xC3872656, 0x5C87CAF0)
    header = (
        b'{"metadata":{"k":"v"},"tensors":['
        b'{"name":"a","dtype":"float32","shape":[2],"offset":10,"crc32":3280414294,'
        b'"planes":[["raw",2],["raw",2],["raw",2],["raw",2]]},'
        b'{"name":"g/n","dtype":"int16","shape":[3],"offset":18,"crc32":1552403184,'
        b'"planes":[["raw",3],["raw",3]]}]}'
    )
    expected = (
        b"\x89WSC\r\n\x1a\n" + b"\x01\x00" + a_planes + n_planes + header
        + struct.pack("<Q", len(header)) + struct.pack("<I", zlib.crc32(header)) + b"WSC\x00"
    )
    assert encode(w) == expected
    assert decode(expected).equal(w)
    assert decode(expected).metadata == {"k": "v"}


def test_exponent_plane_is_zstd_and_mantissa_raw():
    x = np.random.default_rng(1).normal(0, 0.02, 300_000).astype(np.float32)
    data = encode({"x": x})
    _, header, _ = split(data)
    methods = [m for m, _ in header["tensors"][0]["planes"]]
    assert methods == ["zstd", "raw", "raw", "raw"]
    assert decode(data).equal({"x": x})
    assert len(data) < 0.86 * x.nbytes


def test_registered_by_name_extension_and_content(tmp_path):
    assert weightstore.get_codec("wsc") is WscCodec
    assert weightstore.get_codec(".wsc") is WscCodec
    assert WscCodec.sniff(MAGIC + b"\x01\x00")
    assert not WscCodec.sniff(b"\x89PNG\r\n\x1a\n")
    w = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    path = weightstore.save(w, tmp_path / "w.wsc")
    misnamed = tmp_path / "w.bin"
    misnamed.write_bytes(path.read_bytes())
    assert weightstore.load(misnamed).equal(w)


# -- round trips -------------------------------------------------------------------


def _corpus() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    out: dict[str, np.ndarray] = {}
    for name in ("bool", "int8", "int16", "int32", "int64",
                 "uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64"):
        dt = np.dtype(name)
        if dt.kind == "b":
            a = rng.integers(0, 2, 1000).astype(bool)
        elif dt.kind in "iu":
            info = np.iinfo(dt)
            a = rng.integers(info.min, info.max, 1000, dtype=dt, endpoint=True)
        else:
            a = rng.normal(0, 0.05, 1000).astype(dt)
        out[f"{name}/vec"] = a
        out[f"{name}/scalar"] = a[:1].reshape(())
        out[f"{name}/empty"] = a[:0].reshape(0, 3)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 3.4e38, 1.0],
                        np.float32)
    nan_payload = np.array([0x7FC00001, 0xFFBFFFFF, 0x7F800001], np.uint32).view(np.float32)
    out["special/f32"] = np.concatenate([specials, nan_payload])
    out["special/f64"] = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, 1.7e308])
    out["special/f16"] = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 6e-8, 65504], np.float16)
    big = rng.normal(0, 0.02, (700, 300)).astype(np.float32)  # > one chunk, > the probe
    out["layout/fortran"] = np.asfortranarray(big)
    out["layout/strided"] = big[::3, ::2]
    out["layout/big_endian"] = big[:50].astype(">f4")
    out["layout/big_endian_i32"] = np.arange(-500, 500, dtype=">i4")
    out["compressible/f64_from_f32"] = big[:200].astype(np.float64)  # low mantissa bytes zero
    out["compressible/int_small"] = (rng.integers(-3, 4, 200_000)).astype(np.int32)
    out["compressible/zeros"] = np.zeros(300_000, np.float32)
    return out


def test_every_dtype_and_layout_round_trips_bit_exact():
    w = Weights(_corpus(), metadata={"source": "test", "ünï": "cödé"})
    back = decode(encode(w))
    assert back.equal(w)
    assert back.metadata == w.metadata
    for name, array in back.items():
        assert array.shape == w[name].shape
        assert array.flags.writeable, name


_DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
           "float16", "float32", "float64"]


@settings(max_examples=150, deadline=None)
@given(st.lists(
    st.sampled_from(_DTYPES).flatmap(lambda dt: hnp.arrays(
        np.dtype(dt),
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=9),
        # any bit pattern: NaN payloads, infinities, subnormals, -0.0
        elements=None if dt == "bool" else st.integers(0, 2 ** (8 * np.dtype(dt).itemsize) - 1)
        .map(lambda v, dt=dt: np.array(v, f"<u{np.dtype(dt).itemsize}").view(dt)[()]),
    )), min_size=1, max_size=4))
def test_any_arrays_round_trip_bit_exact(arrays):
    w = Weights({f"t{i}": a for i, a in enumerate(arrays)})
    assert decode(encode(w)).equal(w)


def test_bfloat16_round_trips():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = np.random.default_rng(3).normal(0, 0.02, 5000).astype(ml_dtypes.bfloat16)
    w = Weights({"x": x, "s": x[:1].reshape(()), "nan": np.array([np.nan, -0.0], x.dtype)})
    data = encode(w)
    _, header, _ = split(data)
    assert header["tensors"][0]["dtype"] == "bfloat16"
    assert decode(data).equal(w)


def test_callers_arrays_are_not_modified():
    x = np.arange(-20, 20, dtype=">f4")
    before = x.tobytes()
    encode({"x": x})
    assert x.tobytes() == before and x.dtype == np.dtype(">f4")


def test_writes_to_an_output_that_cannot_seek():
    class Pipe(io.RawIOBase):
        def __init__(self):
            self.chunks = []

        def writable(self):
            return True

        def write(self, b):
            self.chunks.append(bytes(b))
            return len(memoryview(b).cast("B"))

    x = np.random.default_rng(0).normal(0, 1, 200_000).astype(np.float32)
    pipe = Pipe()
    WscCodec().write(Weights({"x": x}), pipe, path="-")
    assert decode(b"".join(pipe.chunks)).equal({"x": x})


def test_through_the_zstd_layer(tmp_path):
    w = {"x": np.linspace(-1, 1, 1000, dtype=np.float32)}
    weightstore.save(w, tmp_path / "w.wsc.zst")
    assert weightstore.load(tmp_path / "w.wsc.zst").equal(w)


# -- one tensor alone --------------------------------------------------------------


def test_reads_one_tensor_without_decoding_the_others():
    rng = np.random.default_rng(5)
    w = Weights({"a": rng.normal(size=1000).astype(np.float32),
                 "b": rng.normal(size=2000).astype(np.float32),
                 "c": np.arange(10, dtype=np.int64)})
    data = bytearray(encode(w))
    _, header, _ = split(bytes(data))
    a, b = header["tensors"][0], header["tensors"][1]
    # Damage every plane of "a": reading "b" or "c" never touches them.
    start, end = a["offset"], b["offset"]
    data[start:end] = bytes(end - start)
    codec = WscCodec()
    got = codec.read_tensor(io.BytesIO(bytes(data)), "b", path="t.wsc")
    assert np.array_equal(got, w["b"])
    some = codec.read_tensors(io.BytesIO(bytes(data)), ["c", "b"], path="t.wsc")
    assert list(some) == ["b", "c"] and some.equal({"b": w["b"], "c": w["c"]})
    with pytest.raises(FormatError, match="'zz'"):
        codec.read_tensor(io.BytesIO(bytes(data)), "zz", path="t.wsc")
    meta, entries = codec.read_index(io.BytesIO(bytes(data)), path="t.wsc")
    assert [(e.name, e.dtype, e.shape) for e in entries] == [
        ("a", "float32", (1000,)), ("b", "float32", (2000,)), ("c", "int64", (10,))]


# -- damage ------------------------------------------------------------------------


def _damaged(data: bytes, tensor: dict, plane: int, at: float = 0.5) -> bytes:
    """*data* with one bit flipped inside *plane* of *tensor*."""
    start = tensor["offset"] + sum(size for _, size in tensor["planes"][:plane])
    size = tensor["planes"][plane][1]
    pos = start + int(size * at)
    out = bytearray(data)
    out[pos] ^= 0x10
    return bytes(out)


@pytest.fixture(params=["numpy", "blosc"])
def joiner(request, monkeypatch):
    """Each read joins its planes with numpy's strided writes, or with c-blosc's byte
    unshuffle (the 'fast' extra, numcodecs) however small the read; counts the chunks
    blosc joined."""
    calls: list[int] = []
    if request.param == "numpy":
        monkeypatch.setattr(compact, "_unshuffler", lambda nbytes: None)
    else:
        blosc = pytest.importorskip("numcodecs.blosc")  # in the 'test' extra
        monkeypatch.setattr(compact, "_unshuffler", lambda nbytes: blosc)
        original = compact._ShuffledChunk.join

        def counting(self, module, out):
            calls.append(self.m)
            original(self, module, out)

        monkeypatch.setattr(compact._ShuffledChunk, "join", counting)
    return request.param, calls


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "float64", "int16",
                                   "uint32", "int64", "int8", "bool"])
def test_both_joins_give_the_same_bits(dtype, joiner):
    chunk, least = compact._DECODE_CHUNK, compact._BLOSC_MIN
    counts = [0, 1, least - 1, chunk, chunk + 1, chunk + least - 1, chunk + least,
              3 * chunk + 5000]
    rng = np.random.default_rng(17)
    target = weightstore.model.canonical_dtype(dtype)
    tensors = {}
    for n in counts:
        bits = rng.integers(0, 256, n * target.itemsize, dtype=np.uint8)
        if dtype == "bool":
            bits &= 1
        tensors[f"t{n}"] = bits.view(target)
    # every bit pattern, NaNs and infinities included, comes back as it went in
    got = decode(encode(tensors))
    for name, array in tensors.items():
        assert got[name].dtype == array.dtype
        assert got[name].tobytes() == array.tobytes(), name
    mode, calls = joiner
    if mode == "blosc" and target.itemsize >= compact._BLOSC_ITEMSIZE:  # whole chunks,
        # and last ones of >= least; narrower words are joined by numpy (as fast)
        assert sorted(set(calls)) == [least, 5000, chunk]
    else:
        assert calls == []


def test_blosc_join_is_taken_from_256_mib_or_once_numcodecs_is_imported(monkeypatch):
    blosc = pytest.importorskip("numcodecs.blosc")  # in the 'test' extra
    monkeypatch.delitem(sys.modules, "numcodecs.blosc")  # as in a process that never used it
    assert compact._unshuffler(compact._BLOSC_FROM - 1) is None  # its import costs more
    assert compact._unshuffler(compact._BLOSC_FROM) is blosc
    monkeypatch.setitem(sys.modules, "numcodecs.blosc", blosc)  # already paid for
    assert compact._unshuffler(1) is blosc


@pytest.mark.parametrize("threads", [False, True], ids=["one-thread", "threaded"])
@pytest.mark.parametrize("size", [50_000, 200_000])  # one chunk, and streamed in chunks
@pytest.mark.parametrize("plane", [0, 1, 3])
def test_corrupted_tensor_is_named(plane, size, joiner, threads, monkeypatch):
    if threads:  # every read on several threads, a tensor's chunks shared among them
        monkeypatch.setattr(compact, "_MT_BYTES", 0)
        monkeypatch.setattr(compact.os, "cpu_count", lambda: 3)
    rng = np.random.default_rng(2)
    w = {"first": rng.normal(0, 0.1, size).astype(np.float32),
         "second": rng.normal(0, 0.1, size).astype(np.float32)}
    data = encode(w)
    _, header, _ = split(data)
    bad = _damaged(data, header["tensors"][1], plane)
    with pytest.raises(ChecksumError, match="tensor 'second'") as info:
        decode(bad)
    assert "t.wsc" in str(info.value)
    # The intact tensor still reads alone.
    got = WscCodec().read_tensor(io.BytesIO(bad), "first", path="t.wsc")
    assert np.array_equal(got, w["first"])


@pytest.mark.parametrize("pieces", [0, 1, 2, 7])
@pytest.mark.parametrize("nbytes", [1, 4, 1 << 18])
def test_chunk_checksums_join_into_the_checksum_of_the_whole(pieces, nbytes):
    data = np.random.default_rng(pieces).integers(0, 256, pieces * nbytes, dtype=np.uint8)
    crcs = [zlib.crc32(data[i * nbytes:(i + 1) * nbytes]) for i in range(pieces)]
    assert compact._crc_join(crcs, nbytes) == zlib.crc32(data)


def test_a_truncated_zstd_plane_fails_on_every_thread_count(monkeypatch):
    rng = np.random.default_rng(8)
    data = encode({"w": (rng.standard_normal(5 * compact._DECODE_CHUNK) * 0.02)
                   .astype(np.float32)})
    _, header, _ = split(data)
    method, stored = header["tensors"][0]["planes"][0]
    assert method == "zstd"
    # a frame that declares its size but ends early: the frame check passes, decoding fails
    cut = bytearray(data)
    start = header["tensors"][0]["offset"]
    cut[start + stored // 2:start + stored] = bytes(stored - stored // 2)
    for mt in (1 << 62, 0):
        monkeypatch.setattr(compact, "_MT_BYTES", mt)
        monkeypatch.setattr(compact.os, "cpu_count", lambda: 4)
        with pytest.raises(ChecksumError, match="tensor 'w' plane 0"):
            decode(bytes(cut))


def test_verify_false_skips_the_tensor_checksums():
    w = {"x": np.random.default_rng(4).normal(size=1000).astype(np.float32),
         "y": np.random.default_rng(4).normal(size=100_000).astype(np.float32)}
    data = encode(w)
    _, header, _ = split(data)
    assert header["tensors"][0]["planes"][3][0] == "raw"
    with pytest.raises(ChecksumError):
        decode(_damaged(data, header["tensors"][1], 3))
    assert not decode(_damaged(data, header["tensors"][1], 3), verify=False).equal(w)
    bad = _damaged(data, header["tensors"][0], 3)
    with pytest.raises(ChecksumError):
        decode(bad)
    assert not decode(bad, verify=False).equal(w)


def test_corrupted_header_is_a_checksum_error():
    data = bytearray(encode({"x": np.arange(10, dtype=np.float32)}))
    pos = data.index(b'"dtype"') + 2
    data[pos] ^= 0x01
    with pytest.raises(ChecksumError, match="header"):
        decode(bytes(data))


@pytest.mark.parametrize("cut", [1, 16, 100, 200])
def test_truncated_file_is_refused(cut):
    data = encode({"x": np.arange(100, dtype=np.float32)})
    with pytest.raises(FormatError):
        decode(data[:-cut])


def test_bad_magic_and_version_are_named():
    data = encode({"x": np.arange(4, dtype=np.float32)})
    with pytest.raises(FormatError, match="magic"):
        decode(b"\x89WSX" + data[4:])
    with pytest.raises(FormatError, match="version.*expected 1.0.*found 2.0"):
        decode(data[:8] + b"\x02\x00" + data[10:])
    with pytest.raises(FormatError, match="magic"):
        decode(data.replace(b"\r\n", b"\n", 1))  # a text-mode transfer


def test_header_length_is_capped_by_limits():
    data = encode({"x": np.arange(4, dtype=np.float32)})
    with pytest.raises(LimitError, match="max_header_bytes"):
        decode(data, limits=Limits(max_header_bytes=50))
    huge = data[:-16] + struct.pack("<QI4s", 1 << 60, 0, b"WSC\x00")
    with pytest.raises(LimitError, match="header length"):
        decode(huge)


def test_tensor_size_is_checked_against_limits_before_decoding():
    data = encode({"x": np.zeros(10_000, np.float32)})
    with pytest.raises(LimitError, match="'x'"):
        decode(data, limits=Limits(max_tensor_bytes=1000))
    with pytest.raises(LimitError, match="max_expansion"):
        decode(data, limits=Limits(expansion_free_bytes=0, max_expansion=2))


def _rewrite(data: bytes, change) -> bytes:
    front, header, _ = split(data)
    change(header)
    return join(front, header)


@pytest.mark.parametrize("change, message", [
    (lambda h: h.update(extra=1), "header"),
    (lambda h: h.update(metadata={"k": 1}), "metadata"),
    (lambda h: h["tensors"][0].pop("crc32"), r"tensors\[0\]"),
    (lambda h: h["tensors"][0].update(dtype="complex64"), "dtype"),
    (lambda h: h["tensors"][0].update(shape=[-1]), "shape"),
    (lambda h: h["tensors"][0].update(shape=[True]), "shape"),
    (lambda h: h["tensors"][0].update(offset=11), "offset"),
    (lambda h: h["tensors"][0].update(crc32=-1), "crc32"),
    (lambda h: h["tensors"][0]["planes"].pop(), "planes"),
    (lambda h: h["tensors"][0]["planes"].__setitem__(1, ["lz4", 10]), "plane 1"),
    (lambda h: h["tensors"][0]["planes"].__setitem__(1, ["raw", 9]), "plane 1"),
    (lambda h: h["tensors"][0].update(shape=[11]), "plane"),
    (lambda h: h["tensors"].append(dict(h["tensors"][0], name="y")), "offset"),
    (lambda h: h["tensors"].clear(), "data section"),
])
def test_each_header_field_is_validated(change, message):
    data = encode({"x": np.arange(10, dtype=np.float32)})
    with pytest.raises(FormatError, match=message):
        decode(_rewrite(data, change))


def test_duplicate_names_are_refused():
    data = encode({"x": np.arange(4, dtype=np.float32), "y": np.arange(4, dtype=np.float32)})
    with pytest.raises(FormatError, match="unique tensor names.*'x' twice"):
        decode(_rewrite(data, lambda h: h["tensors"][1].update(name="x")))


@pytest.mark.parametrize("size", [50_000, 100_000])
def test_zstd_plane_must_declare_its_size(size):
    x = np.random.default_rng(0).normal(0, 0.02, size).astype(np.float32)
    data = encode({"x": x})
    front, header, _ = split(data)
    tensor = header["tensors"][0]
    assert tensor["planes"][0][0] == "zstd"
    # A frame claiming another size is refused before it is decompressed.
    start, stored = tensor["offset"], tensor["planes"][0][1]
    other = compact._plane_compressor().compress(bytes(50))
    front = front[:start] + other + front[start + stored:]
    tensor["planes"][0][1] = len(other)
    with pytest.raises(FormatError, match=f"plane 0.*declaring {size:,} bytes"):
        decode(join(front, header))


@pytest.mark.parametrize("count", [7, 200_000])  # one read, and streamed in chunks
@pytest.mark.parametrize("bad", [2, 0xFF])
def test_bool_bytes_other_than_0_and_1_are_refused(count, bad):
    # A uint8 tensor stores exactly as a bool one (one plane, not rotated) and its CRC-32
    # is of the same bytes: relabelled 'bool', it is a file with valid checksums whose
    # bool bytes are not all 0 or 1.
    values = (np.arange(count) % 2).astype(np.uint8)
    values[count // 2] = bad
    data = _rewrite(encode({"b": values}), lambda h: h["tensors"][0].update(dtype="bool"))
    with pytest.raises(FormatError, match=rf"'b'.*bool bytes 0 or 1.*found {bad}"):
        decode(data)
    with pytest.raises(FormatError, match="bool bytes 0 or 1"):
        WscCodec().read_tensor(io.BytesIO(data), "b", path="t.wsc")
    values[count // 2] = 1  # the same file with good bytes reads
    good = _rewrite(encode({"b": values}), lambda h: h["tensors"][0].update(dtype="bool"))
    assert np.array_equal(decode(good)["b"], values.astype(bool))


def test_load_reports_a_bad_file_as_weightstore_error(tmp_path):
    path = tmp_path / "w.wsc"
    path.write_bytes(MAGIC + b"\x01\x00" + b"garbage")
    with pytest.raises(FormatError, match="w.wsc"):
        weightstore.load(path)


# -- the reference weights ---------------------------------------------------------


def test_reference_weights_meet_the_size_target(tmp_path, sample_weight_path):
    w = weightstore.load(sample_weight_path)
    path = weightstore.save(w, tmp_path / "sample.wsc")
    size = path.stat().st_size
    assert size <= REFERENCE_TARGET, f"{size:,} bytes"
    back = weightstore.load(path)
    assert back.equal(w)


def test_reading_on_several_threads_gives_the_same_tensors(monkeypatch):
    rng = np.random.default_rng(5)
    w = Weights({f"l{i}/W": (rng.standard_normal((300, 257)) * 0.02).astype(np.float32)
                 for i in range(6)} | {"small/b": np.arange(7, dtype=np.int16)})
    data = encode(w)
    monkeypatch.setattr(compact, "_MT_BYTES", 0)  # every read takes the threaded path
    got = decode(data)
    assert list(got) == list(w)
    for name in w:
        np.testing.assert_array_equal(got[name], w[name])
    _, header, _ = split(data)
    entry = header["tensors"][3]
    damaged = bytearray(data)
    damaged[entry["offset"] + entry["planes"][0][1] + 5] ^= 0x10  # a mantissa byte
    with pytest.raises(ChecksumError, match="l3/W"):
        decode(bytes(damaged))


def _mixed_weights() -> Weights:
    """Tensors that take every encoding path: several chunks of floats (raw and zstd
    mantissa planes), one-byte words, small tensors, empty and 0-d ones."""
    rng = np.random.default_rng(11)
    big = (compact._CHUNK * 3) + 17
    return Weights({
        "emb": (rng.standard_normal(big) * 0.02).astype(np.float32).reshape(-1, 1),
        "coarse": np.round(rng.standard_normal((400, 401)), 1).astype(np.float64),
        "half": rng.standard_normal(big).astype(np.float16),
        "codes": rng.integers(-7, 8, big).astype(np.int8),
        "mask": rng.random(big) < 0.1,
        "ids": np.arange(big, dtype=np.int64),
        "b": rng.standard_normal(7).astype(np.float32),
        "empty": np.zeros((0, 3), np.float32),
        "scale": np.array(0.5, np.float32),
        "tail": (rng.standard_normal((300, 257)) * 0.02).astype(np.float32),
    }, metadata={"source": "tests"})


@pytest.mark.parametrize("whole", [0, 1 << 30], ids=["by-plane", "by-tensor"])
@pytest.mark.parametrize("window", [1, 1 << 30], ids=["one-in-flight", "all-in-flight"])
def test_writing_on_several_threads_gives_the_same_bytes(monkeypatch, window, whole):
    w = _mixed_weights()
    monkeypatch.setattr(compact, "_MT_WRITE_BYTES", 1 << 62)  # never threaded
    single = encode(w)
    used: set[str] = set()
    unit = "_encode_plane" if whole == 0 else "_encode_planes"
    encode_unit = getattr(compact, unit)

    def spy(*args):
        used.add(compact.threading.current_thread().name)
        return encode_unit(*args)

    monkeypatch.setattr(compact, unit, spy)
    monkeypatch.setattr(compact, "_WHOLE_BYTES", whole)
    monkeypatch.setattr(compact.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(compact, "_MT_WRITE_BYTES", 0)  # threaded from the first tensor
    monkeypatch.setattr(compact, "_WRITE_WINDOW", window)
    threaded = encode(w)
    assert used and all(name.startswith("wsc-encode") for name in used)
    assert threaded == single
    got = decode(threaded)
    for name in w:
        np.testing.assert_array_equal(got[name], w[name])


def test_a_failing_tensor_stops_a_threaded_write(monkeypatch):
    monkeypatch.setattr(compact.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(compact, "_MT_WRITE_BYTES", 0)

    def broken(*args):
        raise MemoryError("no room for the plane")

    monkeypatch.setattr(compact, "_encode_plane", broken)
    monkeypatch.setattr(compact, "_WHOLE_BYTES", 0)
    with pytest.raises(MemoryError, match="no room"):
        encode(_mixed_weights())


class _Unmapped(io.RawIOBase):
    """A seekable file with no file descriptor and no buffer of its own to share (as a
    remote or decompressing file is): reads go through seek and readinto."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = offset if whence == 0 else (self._pos + offset if whence == 1
                                                 else len(self._data) + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer) -> int:
        piece = self._data[self._pos:self._pos + len(buffer)]
        memoryview(buffer).cast("B")[:len(piece)] = piece
        self._pos += len(piece)
        return len(piece)


@pytest.mark.parametrize("source", ["file", "memory", "unmapped", "gzip"])
@pytest.mark.parametrize("threads", [False, True], ids=["one-thread", "threaded"])
def test_every_kind_of_file_reads_the_same_and_reports_damage(tmp_path, monkeypatch,
                                                               source, threads):
    monkeypatch.setattr(compact, "_MT_BYTES", 0 if threads else 1 << 62)
    monkeypatch.setattr(compact.os, "cpu_count", lambda: 3)
    rng = np.random.default_rng(21)
    w = Weights({"big": (rng.standard_normal(4 * compact._DECODE_CHUNK + 99) * 0.02)
                 .astype(np.float32), "small": np.arange(10, dtype=np.int16),
                 "wide": rng.standard_normal(compact._DECODE_CHUNK + 3)})
    data = encode(w)
    _, header, _ = split(data)
    assert header["tensors"][0]["planes"][0][0] == "zstd"

    def opened(blob: bytes):
        if source == "file":
            path = tmp_path / "w.wsc"
            path.write_bytes(blob)
            return open(path, "rb")
        if source == "memory":
            return io.BytesIO(blob)
        if source == "gzip":  # its fileno() is the compressed file's: never read through it
            path = tmp_path / "w.wsc.gz"
            path.write_bytes(gzip.compress(blob))
            return gzip.open(path, "rb")
        return io.BufferedReader(_Unmapped(blob))

    with opened(data) as f:
        got = WscCodec().read(f, path="w.wsc")
        assert got.equal(w)
        source_ = WscCodec().open(f, path="w.wsc")
        np.testing.assert_array_equal(source_.read("big"), w["big"])
    for plane, at in ((0, 0.5), (0, 0.01), (2, 0.9)):
        bad = _damaged(data, header["tensors"][0], plane, at)
        with opened(bad) as f, pytest.raises(ChecksumError, match="tensor 'big'"):
            WscCodec().read(f, path="w.wsc")


def test_opening_and_reading_a_large_tensor_imports_no_thread_pool_or_logging(tmp_path):
    # concurrent.futures (and the logging it imports) would cost every process that
    # opens a .wsc about 5 ms; the threaded read and write use threading alone
    path = tmp_path / "w.wsc"
    rng = np.random.default_rng(3)
    weightstore.save(Weights({"w": rng.standard_normal(2 << 20).astype(np.float32)}), path)
    code = (
        "import sys, weightstore\n"
        "from weightstore.codecs import wsc\n"
        "wsc._MT_BYTES = 0\n"
        f"with weightstore.open({str(path)!r}) as w:\n"
        "    a = w['w']\n"
        "assert a.shape == (2 << 20,)\n"
        "print(sorted(m for m in ('concurrent.futures', 'logging') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_a_threaded_read_of_whole_and_shared_tensors(monkeypatch):
    # ten tensors of 2 chunks are each a small part of the read (one thread decodes each
    # whole); the one of 40 chunks is shared among the threads chunk by chunk
    monkeypatch.setattr(compact, "_MT_BYTES", 0)
    monkeypatch.setattr(compact.os, "cpu_count", lambda: 2)
    rng = np.random.default_rng(31)
    chunk = compact._DECODE_CHUNK
    w = Weights({f"l{i}": (rng.standard_normal(2 * chunk) * 0.02).astype(np.float32)
                 for i in range(10)} |
                {"big": (rng.standard_normal(40 * chunk) * 0.02).astype(np.float32)})
    data = encode(w)
    shared_by_name = []
    original = compact._Decoding.tasks

    def spy(self, shared):
        shared_by_name.append((self.entry.name, shared))
        return original(self, shared)

    monkeypatch.setattr(compact._Decoding, "tasks", spy)
    assert decode(data).equal(w)
    assert dict(shared_by_name) == {**{f"l{i}": False for i in range(10)}, "big": True}
    _, header, _ = split(data)
    for t in (header["tensors"][3], header["tensors"][10]):
        with pytest.raises(ChecksumError, match=f"tensor '{t['name']}'"):
            decode(_damaged(data, t, 2))
