"""The hostile corpus: files built to attack a reader, each with what loading it must do.

Built at test time into a temporary folder (nothing large is committed):
``python tests/hostile/build.py OUTDIR`` writes them all for a look by hand. Each
entry names the file, a builder, the error :func:`weightstore.load` must raise
and a pattern its message must match. Entries marked ``measure`` are loaded in a
fresh process whose peak memory growth must stay under ``max_growth_mib``.

Files that try to run code create ``marker`` (a path the test gives) when they
succeed; a test checks it never appears.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import weightstore as ws

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class Hostile:
    """One hostile file and what loading it must do: raise *error* with a message matching
    *match*, or, when *error* is None, load as the weights *expect* returns (compared by
    :func:`digest`)."""

    file: str
    build: Callable[[Path, Path], None]  # (path to write, marker path)
    error: type[ws.WeightstoreError] | None
    match: str
    what: str
    measure: bool = False
    max_growth_mib: int = 64
    limits: dict[str, int] = field(default_factory=dict)
    expect: Callable[[], ws.Weights] | None = None
    #: The issue-12 class it belongs to (budget, time, writes, output, special, code, ...).
    kind: str = "refuse"


def digest(weights: Any) -> str:
    """SHA-256 of names, dtypes, shapes, values and metadata: equal weights, equal digest."""
    import hashlib

    h = hashlib.sha256()
    for name in weights:
        a = np.ascontiguousarray(weights[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode("utf-8", "surrogatepass"))
        h.update(a.tobytes())
    for key, value in sorted(getattr(weights, "metadata", {}).items()):
        h.update(f"{key}\0{value}\0".encode("utf-8", "surrogatepass"))
    return h.hexdigest()


class _Reduce:
    """An object whose unpickling calls func(*args): the classic pickle attack."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


def _dump(obj: Any, protocol: int = 4) -> Callable[[Path, Path], None]:
    def build(path: Path, marker: Path) -> None:
        path.write_bytes(pickle.dumps(obj(marker), protocol=protocol))
    return build


# --- pickle opcodes, for payloads pickle.dumps will not write --------------------------


def _u(text: str) -> bytes:
    """BINUNICODE: a str."""
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _g(module: str, name: str) -> bytes:
    """GLOBAL: module.name."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _getattr_chain(path: Path, marker: Path) -> None:
    # getattr(__import__("os"), "system")("touch marker"): no os.system global in the file
    path.write_bytes(b"\x80\x02" + _g("builtins", "getattr") + _g("builtins", "__import__")
                     + _u("os") + b"\x85R" + _u("system") + b"\x86R"
                     + _u(f"touch {marker}") + b"\x85R.")


def _protocol0_inst(path: Path, marker: Path) -> None:
    # INST opcode of protocol 0: no 0x80 header, found by the .pkl extension
    path.write_bytes(b"(S'touch " + str(marker).encode() + b"'\nios\nsystem\n.")


def _build_on_global(path: Path, marker: Path) -> None:
    # BUILD with a slot state on the numpy.dtype global: setattr(numpy.dtype, "x", 1)
    path.write_bytes(b"\x80\x02" + _g("numpy", "dtype") + b"N}" + _u("x") + b"K\x01s\x86b0}.")


def _reconstruct_huge(path: Path, marker: Path) -> None:
    # _reconstruct(ndarray, (2**40,), b"b"): numpy would allocate 1 TiB
    path.write_bytes(b"\x80\x03}" + _u("W") + _g("numpy.core.multiarray", "_reconstruct")
                     + _g("numpy", "ndarray") + b"\x8a\x06\x00\x00\x00\x00\x00\x01\x85"
                     + b"C\x01b\x87Rs.")


def _array_state_lies(path: Path, marker: Path) -> None:
    # a plain array whose state claims shape (2**20, 2**20) float64 and holds 8 bytes
    dtype = (_g("numpy", "dtype") + _u("f8") + b"\x89\x88\x87R"
             + b"(K\x03" + _u("<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
    path.write_bytes(b"\x80\x03}" + _u("W") + _g("numpy.core.multiarray", "_reconstruct")
                     + _g("numpy", "ndarray") + b"K\x00\x85C\x01b\x87R"
                     + b"(K\x01J\x00\x00\x10\x00J\x00\x00\x10\x00\x86" + dtype
                     + b"\x89C\x08" + bytes(8) + b"tbs.")


def _billion_laughs(path: Path, marker: Path) -> None:
    # 40 dicts, each {"a": previous, "b": previous}: a 1,200-byte file, 2**40 paths
    out = [b"\x80\x02}q\x000"]
    for level in range(1, 41):
        out.append(b"}" + _u("a") + b"h" + bytes([level - 1]) + b"s" + _u("b") + b"h"
                   + bytes([level - 1]) + b"sq" + bytes([level]) + b"0")
    out.append(b"h\x28.")
    path.write_bytes(b"".join(out))


def _deep_dicts(path: Path, marker: Path) -> None:
    # {"a": {"a": {... 100,000 levels ...}}}
    levels = 100_000
    path.write_bytes(b"\x80\x04" + (b"}\x8c\x01a") * levels + b"}" + b"s" * levels + b".")


def _bytes_claim(path: Path, marker: Path) -> None:
    # BINBYTES8 claiming 8 GiB, followed by 10 bytes
    path.write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", 8 * GiB) + bytes(10))


# --- zstd ---------------------------------------------------------------------------


def _zstd_declared(path: Path, marker: Path) -> None:
    # one frame: descriptor with an 8-byte content size of 1 TiB, one 128 KiB RLE block
    descriptor = 0b1110_0000  # FCS field 8 bytes, single segment
    block = (128 * 1024) << 3 | 0b010 | 1  # RLE, last block
    path.write_bytes(b"\x28\xb5\x2f\xfd" + bytes([descriptor]) + struct.pack("<Q", 1 << 40)
                     + struct.pack("<I", block)[:3] + b"\x00")


def _zstd_stream(size: int) -> Callable[[Path, Path], None]:
    def build(path: Path, marker: Path) -> None:
        import zstandard

        out = io.BytesIO()
        cctx = zstandard.ZstdCompressor(level=1, write_content_size=False)
        with cctx.stream_writer(out, closefd=False) as writer:
            block = bytes(MiB)
            for _ in range(size // MiB):
                writer.write(block)
        path.write_bytes(out.getvalue())
    return build


def _zstd_cut(path: Path, marker: Path) -> None:
    ws.save({"W": np.arange(1000, dtype=np.float32)}, path, inner="json")
    path.write_bytes(path.read_bytes()[:-10])


# --- gzip ---------------------------------------------------------------------------


def _gzip_zeros(size: int) -> bytes:
    import gzip

    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) as gz:
        block = bytes(MiB)
        for _ in range(size // MiB):
            gz.write(block)
    return out.getvalue()


def _gzip_cut(path: Path, marker: Path) -> None:
    ws.save({"W": np.arange(1000, dtype=np.float32)}, path)
    path.write_bytes(path.read_bytes()[:-30])


def _gzip_bad_crc(path: Path, marker: Path) -> None:
    ws.save({"W": np.arange(1000, dtype=np.float32)}, path)
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # the CRC-32 of the content, in the trailer
    path.write_bytes(bytes(data))


# --- npz ----------------------------------------------------------------------------


def _npy(shape: tuple[int, ...], data: bytes, dtype: str = "<f8") -> bytes:
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def _npz_member(npy: bytes) -> Callable[[Path, Path], None]:
    def build(path: Path, marker: Path) -> None:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("W.npy", npy)
    return build


def _npz_past_end(path: Path, marker: Path) -> None:
    ws.save({"W": np.zeros(100)}, path)
    data = bytearray(path.read_bytes())
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 20:cd + 28] = struct.pack("<II", 0x7FFFFFFF, 0x7FFFFFFF)  # sizes: 2 GiB
    path.write_bytes(bytes(data))


def _npz_overlapping(path: Path, marker: Path) -> None:
    # one deflated 16 MiB member, and 200 directory entries all pointing at it
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf, \
            zf.open("W.npy", "w") as member:
        np.lib.format.write_array(member, np.zeros(16 * MiB, np.uint8))
    data = buf.getvalue()
    eocd = data.rfind(b"PK\x05\x06")
    cd_size, cd_offset = struct.unpack_from("<II", data, eocd + 12)
    record = data[cd_offset:cd_offset + cd_size]
    records = record * 200
    end = bytearray(data[eocd:eocd + 22])
    struct.pack_into("<HHI", end, 8, 200, 200, len(records))
    path.write_bytes(data[:cd_offset] + records + bytes(end))


def _npy_header_length(path: Path, marker: Path) -> None:
    npy = b"\x93NUMPY\x02\x00" + struct.pack("<I", 0xFFFFFFF0) + b"{}"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("W.npy", npy)


# --- HDF5 ---------------------------------------------------------------------------


def _h5_unwritten(shape: tuple[int, ...]) -> Callable[[Path, Path], None]:
    def build(path: Path, marker: Path) -> None:
        import h5py

        with h5py.File(path, "w") as f:
            f.create_dataset("W", shape=shape, dtype="f8", chunks=(1 << 16,))
    return build


def _h5_cut(path: Path, marker: Path) -> None:
    ws.save({"W": np.ones(MiB // 2)}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _h5_external(path: Path, marker: Path) -> None:
    import h5py

    other = path.with_name("secret.bin")
    other.write_bytes(b"private data" * 100)
    with h5py.File(path, "w") as f:
        f.create_dataset("W", shape=(100,), dtype="u1", external=[(other.name, 0, 100)])


def _h5_heap_loop(path: Path, marker: Path) -> None:
    # a variable-length string attribute whose global heap object size wraps around:
    # the HDF5 library's collection parser then never advances (it hangs forever)
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["note"] = "hello"
        f["W"] = np.ones(3)
    data = bytearray(path.read_bytes())
    heap = data.find(b"GCOL")
    struct.pack_into("<Q", data, heap + 16 + 8, 0xFFFFFFFFFFFFFFF0)
    path.write_bytes(bytes(data))


# --- JSON and CSV -------------------------------------------------------------------

_JSON_HEAD = b'{"format":"weightstore.json","version":1,'


def _json(text: bytes) -> Callable[[Path, Path], None]:
    def build(path: Path, marker: Path) -> None:
        path.write_bytes(text)
    return build


def _csv_columns(path: Path, marker: Path) -> None:
    with open(path, "wb") as f:
        f.write(b"tensor,dtype,shape,index,value\r\nW,float32,1,0,")
        f.write(b"1," * 3_000_000 + b"1\r\n")


def _csv_huge_field(path: Path, marker: Path) -> None:
    # a quoted field of 1 GiB: a sparse file, so the disk holds a few KiB
    with open(path, "wb") as f:
        f.write(b'tensor,dtype,shape,index,value\r\nW,float32,1,0,"')
        f.seek(GiB)
        f.write(b'"\r\n')


# --- safetensors --------------------------------------------------------------------


def _safetensors(header: bytes, data: bytes, length: int | None = None) -> Callable[
        [Path, Path], None]:
    def build(path: Path, marker: Path) -> None:
        n = len(header) if length is None else length
        path.write_bytes(struct.pack("<Q", n) + header + data)
    return build


# --- wsc ----------------------------------------------------------------------------

_WSC_MAGIC = b"\x89WSC\r\n\x1a\n\x01\x00"


def _wsc(header: dict[str, Any] | None, data: bytes = b"",
         length: int | None = None) -> Callable[[Path, Path], None]:
    """A wsc file: magic, *data*, the JSON *header* and a trailer with the header's CRC."""
    def build(path: Path, marker: Path) -> None:
        import zlib

        import orjson

        raw = orjson.dumps(header) if header is not None else b""
        n = len(raw) if length is None else length
        path.write_bytes(_WSC_MAGIC + data + raw
                         + struct.pack("<QI4s", n, zlib.crc32(raw), b"WSC\x00"))
    return build


def _wsc_plane_bomb(path: Path, marker: Path) -> None:
    # one uint8 tensor of 1 GiB whose single plane is a 32 KiB zstd frame of zeros
    import zstandard

    out = io.BytesIO()
    with zstandard.ZstdCompressor(level=1).stream_writer(out, closefd=False,
                                                         size=GiB) as writer:
        block = bytes(MiB)
        for _ in range(GiB // MiB):
            writer.write(block)
    frame = out.getvalue()
    _wsc({"metadata": {}, "tensors": [{"name": "W", "dtype": "uint8", "shape": [GiB],
                                       "offset": 10, "crc32": 0,
                                       "planes": [["zstd", len(frame)]]}]}, frame)(path, marker)


# --- issue 12: one budget per load ----------------------------------------------------


def _memo_index(path: Path, marker: Path) -> None:
    # a valid pickle that memoizes its dict at index 2**31 - 1: the C unpickler sizes its
    # memo array by the largest index (16 GiB); the budget charges one entry
    body = pickle.dumps({"W": np.arange(4, dtype=np.float32)}, protocol=2)
    assert body[2:3] == b"}"
    path.write_bytes(body[:3] + b"r\xff\xff\xff\x7f" + body[3:])


def _memo_index_expect() -> ws.Weights:
    return ws.Weights({"W": np.arange(4, dtype=np.float32)})


def _containers(path: Path, marker: Path) -> None:
    # 4 million empty lists appended to one list: 4 MiB of opcodes, ~300 MiB of objects
    path.write_bytes(b"\x80\x04](" + b"]" * 4_000_000 + b"e.")


def _quant_block(path: Path, marker: Path) -> None:
    # a quantization record whose block is 2**40 rows for a (4, 4) tensor: np.repeat of
    # the scales by the block size took 2**40 x 4 float64 before it was cut to 4 rows
    import json

    codes = np.array([[1, -2, 3, 0]] * 4, dtype=np.int8)
    record = {"version": 1, "scheme": "symmetric", "tensors": {"W": {
        "dtype": "float32", "shape": [4, 4], "bits": 4, "granularity": "block",
        "block": 1 << 40}}}
    path.write_bytes(pickle.dumps({"W.q": codes, "W.scale": np.full((1, 4), 0.5, np.float32),
                                   "__metadata__": {"weightstore.quantization":
                                                    json.dumps(record)}}, protocol=4))


def _packed_codes(path: Path, marker: Path) -> None:
    # bit-packed 4-bit codes whose record claims 2**20 x 2**20 codes for 8 bytes: unpacking
    # by the record's shape would allocate 2**40 bytes of int8 codes
    import json

    record = {"version": 2, "scheme": "symmetric", "tensors": {"W": {
        "dtype": "float32", "shape": [1 << 20, 1 << 20], "bits": 4, "granularity": "column",
        "packed": True}}}
    path.write_bytes(pickle.dumps({"W.q": np.full(8, 0x11, np.uint8),
                                   "W.scale": np.full(1 << 20, 0.5, np.float32)[:4],
                                   "__metadata__": {"weightstore.quantization":
                                                    json.dumps(record)}}, protocol=4))


def _quant_block_expect() -> ws.Weights:
    return ws.Weights({"W": np.array([[0.5, -1.0, 1.5, 0.0]] * 4, dtype=np.float32)})


def _empty_json(shape: list[int], nesting: bool) -> Callable[[Path, Path], None]:
    def build(path: Path, marker: Path) -> None:
        data = b"[" + b",".join([b"[]"] * shape[0]) + b"]" if nesting else b"[]"
        path.write_bytes(_JSON_HEAD + b'"metadata":{},"tensors":[{"name":"E","dtype":"float32",'
                         b'"shape":' + str(shape).replace(" ", "").encode() + b',"data":'
                         + data + b"}]}")
    return build


def _empty_expect(shape: tuple[int, ...]) -> Callable[[], ws.Weights]:
    return lambda: ws.Weights({"E": np.zeros(shape, np.float32)})


def _shared_names(path: Path, marker: Path) -> None:
    # 30 dicts, each {key_a: previous, key_b: previous} with 4 KiB keys: 2**30 paths whose
    # names are 120 KiB each, from a 250 KiB file
    out = [b"\x80\x02}q\x000"]
    for level in range(1, 31):
        out.append(b"}" + _u("a" * 4096) + b"h" + bytes([level - 1]) + b"s"
                   + _u("b" * 4096) + b"h" + bytes([level - 1]) + b"sq" + bytes([level]) + b"0")
    out.append(b"h\x1e.")
    path.write_bytes(b"".join(out))


def _zstd_shards(path: Path, marker: Path) -> None:
    # 8 shards, each a zstd frame holding 4 MiB of zeros: each within the 8 MiB allowance
    # alone, 32 MiB together (the limits of the entry)
    model = path.name[: -len(".index.json")]
    ws.save({f"t{i}": np.zeros(MiB, np.float32) for i in range(8)}, path.with_name(model),
            max_shard_size=4 * MiB, level=1)


# --- issue 12: linear time ------------------------------------------------------------


def _h5_links(path: Path, marker: Path) -> None:
    # 40 groups, each linking twice to the next: 2**40 paths to the one dataset at the end
    import h5py

    with h5py.File(path, "w") as f:
        groups = [f.create_group(f"g{i}") for i in range(40)]
        groups[-1]["W"] = np.ones(3)
        for a, b in zip(groups, groups[1:], strict=False):
            a["x"] = b
            a["y"] = b


def _h5_heap_compound(path: Path, marker: Path) -> None:
    # a compound attribute with a variable-length string field, its heap object's size
    # wrapped: the heap is walked only if the reader sees the string inside the compound
    import h5py

    dt = np.dtype([("n", "<i4"), ("s", h5py.string_dtype())])
    with h5py.File(path, "w") as f:
        f.attrs.create("note", np.array((1, "hello"), dtype=dt))
        f["W"] = np.ones(3)
    data = bytearray(path.read_bytes())
    heap = data.find(b"GCOL")
    struct.pack_into("<Q", data, heap + 16 + 8, 0xFFFFFFFFFFFFFFF0)
    path.write_bytes(bytes(data))


def _h5_compact_attrs(path: Path, marker: Path) -> None:
    # 5,000 metadata attributes in the root's object header (the HDF5 1.6 layout): the
    # library finds each by a scan of all, n**2 in all
    import h5py

    with h5py.File(path, "w", libver="earliest") as f:
        f["W"] = np.ones(3)
        for i in range(5000):
            f.attrs[f"k{i}"] = np.bytes_(b"v")


_PARTS = 40_000


def _many_parts(path: Path, marker: Path) -> None:
    ws.save(_many_parts_expect(), path)


def _many_parts_expect() -> ws.Weights:
    return ws.Weights({"/".join(["p"] * _PARTS): np.arange(3, dtype=np.float32)})


def _int_keys(path: Path, marker: Path) -> None:
    # 100,000 int keys that all hash alike (multiples of 2**61 - 1): quadratic inserts
    body = b"\x80\x04}(" + b"".join(
        b"\x8a\x10" + (i * ((1 << 61) - 1)).to_bytes(16, "little", signed=True) + b"N"
        for i in range(1, 100_001)) + b"u."
    path.write_bytes(body)


def _deep_lists(path: Path, marker: Path) -> None:
    # lists nested a million levels (APPEND each into the one below); the C unpickler
    # builds it, and walking or freeing it can overflow the C stack
    n = 1_000_000
    path.write_bytes(b"\x80\x04" + b"]" * n + b"a" * (n - 1) + b".")


def _deep_tuples(path: Path, marker: Path) -> None:
    n = 1_000_000
    path.write_bytes(b"\x80\x04)" + b"\x85" * n + b".")


# --- issue 12: writes and indexes ------------------------------------------------------


def _self_index(path: Path, marker: Path) -> None:
    path.write_bytes(b'{"metadata":{},"weight_map":{"W":"' + path.name.encode() + b'"}}')


def _escape_name(path: Path, marker: Path) -> None:
    # a tensor name full of terminal escapes (clear screen, set title) and line breaks,
    # with a dtype the reader refuses, so the error quotes the name
    import json

    name = "W\x1b[2J\x1b]0;pwned\x07\r\nweightstore: ok"
    header = ("{" + json.dumps(name) + ':{"dtype":"F99","shape":[1],"data_offsets":[0,4]}}'
              ).encode()
    _safetensors(header, bytes(4))(path, marker)


# --- issue 12: special files -----------------------------------------------------------


def _fifo(path: Path, marker: Path) -> None:
    os.mkfifo(path)


def _zero_link(path: Path, marker: Path) -> None:
    os.symlink("/dev/zero", path)


def _socket_file(path: Path, marker: Path) -> None:
    import socket

    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))


def _fifo_shard(path: Path, marker: Path) -> None:
    shard = path.with_name("fifo-shard-00001-of-00001.npz")
    os.mkfifo(shard)
    path.write_bytes(b'{"metadata":{},"weight_map":{"W":"' + shard.name.encode() + b'"}}')


# --- pytorch ------------------------------------------------------------------------


def _long(n: int) -> bytes:
    """LONG1: any integer."""
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def _ints(values: tuple[int, ...]) -> bytes:
    return b"(" + b"".join(_long(v) for v in values) + b"t"


def _torch_tensor_pickle(size: tuple[int, ...], stride: tuple[int, ...], offset: int = 0,
                         numel: int = 4, kind: str = "FloatStorage") -> bytes:
    """data.pkl of {"w": _rebuild_tensor_v2(storage "0", offset, size, stride, ...)}."""
    return (b"\x80\x02}(" + _u("w") + _g("torch._utils", "_rebuild_tensor_v2") + b"(("
            + _u("storage") + _g("torch", kind) + _u("0") + _u("cpu") + _long(numel) + b"tQ"
            + _long(offset) + _ints(size) + _ints(stride) + b"\x89"
            + _g("collections", "OrderedDict") + b")RtRu.")


def _torch_zip(pickled: Callable[[Path], bytes], storage: bytes = bytes(16)
               ) -> Callable[[Path, Path], None]:
    """A torch.save-shaped zip around the data.pkl *pickled(marker)* builds."""
    def build(path: Path, marker: Path) -> None:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", pickled(marker))
            zf.writestr("archive/byteorder", "little")
            zf.writestr("archive/data/0", storage)
            zf.writestr("archive/version", "3\n")
    return build


def _torch_runs_code(marker: Path) -> bytes:
    return pickle.dumps({"w": _Reduce(os.system, f"touch {marker}")}, protocol=2)


def _torch_legacy_eval(path: Path, marker: Path) -> None:
    # the legacy layout: magic, protocol, sys_info, then an object that calls eval
    head = b"".join(pickle.dumps(o, protocol=2) for o in (
        0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}))
    path.write_bytes(head + pickle.dumps(_Reduce(eval, f"open({str(marker)!r}, 'w')"),
                                         protocol=2))


def _torch_legacy_past_end(path: Path, marker: Path) -> None:
    # a legacy checkpoint whose one storage claims 2**30 floats; 16 bytes follow
    head = b"".join(pickle.dumps(o, protocol=2) for o in (
        0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}))
    obj = (b"\x80\x02}(" + _u("w") + _g("torch._utils", "_rebuild_tensor_v2") + b"(("
           + _u("storage") + _g("torch", "FloatStorage") + _u("0") + _u("cpu")
           + _long(1 << 30) + b"NtQ" + _long(0) + _ints((1 << 30,)) + _ints((1,)) + b"\x89"
           + _g("collections", "OrderedDict") + b")RtRu.")
    keys = pickle.dumps(["0"], protocol=2)
    path.write_bytes(head + obj + keys + struct.pack("<q", 1 << 30) + bytes(16))


def _torch_memo(marker: Path) -> bytes:
    # LONG_BINPUT at index 2**32 - 16: the C unpickler would size its memo to 2**33 slots
    return b"\x80\x02}r\xf0\xff\xff\xff."


def _torch_bytes_claim(marker: Path) -> bytes:
    # BINBYTES claiming 4 GiB - 1 in a few bytes (protocol 3 opcode in data.pkl)
    return b"\x80\x03B\xff\xff\xff\xff" + bytes(8)
# --- GGUF ---------------------------------------------------------------------------


def _gs(text: str) -> bytes:
    """A GGUF string: uint64 length, UTF-8 bytes."""
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _gguf(n_tensors: int | None = None, kvs: bytes = b"", n_kv: int | None = None,
          infos: list[tuple[str, list[int], int, int]] = (),  # type: ignore[assignment]
          data: bytes = b"") -> Callable[[Path, Path], None]:
    """A GGUF v3 file: counts (given, or true), key/values, tensor infos, aligned *data*."""
    def build(path: Path, marker: Path) -> None:
        head = b"GGUF" + struct.pack("<IQQ", 3, len(infos) if n_tensors is None else n_tensors,
                                     (1 if kvs else 0) if n_kv is None else n_kv) + kvs
        for name, dims, ggml_type, offset in infos:
            head += _gs(name) + struct.pack("<I", len(dims)) + struct.pack(
                f"<{len(dims)}Q", *dims) + struct.pack("<IQ", ggml_type, offset)
        head += bytes(-len(head) % 32)
        path.write_bytes(head + data)
    return build


def _gguf_deep_arrays(path: Path, marker: Path) -> None:
    levels = 10_000
    value = struct.pack("<I", 9) + (struct.pack("<IQ", 9, 1)) * levels + struct.pack("<IQ", 0, 0)
    _gguf(kvs=_gs("deep") + value)(path, marker)


# --- Keras --------------------------------------------------------------------------


def _keras_bomb(path: Path, marker: Path) -> None:
    # a .keras archive whose deflated weights member claims 2 GiB from a few bytes
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("metadata.json", b"{}")
        zf.writestr("model.weights.h5", bytes(1000), compress_type=zipfile.ZIP_DEFLATED)
    data = bytearray(buf.getvalue())
    cd = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, cd + 24, 0x7FFFFFFF)  # uncompressed size
    path.write_bytes(bytes(data))


# --- ONNX ---------------------------------------------------------------------------


def _onnx_model(dims: list[int], location: str | None = None) -> Callable[[Path, Path], None]:
    """A model with one FLOAT initializer of *dims*: 4 bytes inline, or external data."""
    def build(path: Path, marker: Path) -> None:
        from onnx import TensorProto, helper

        t = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=dims, raw_data=bytes(4))
        if location is not None:
            t.ClearField("raw_data")
            t.data_location = TensorProto.EXTERNAL
            for key, value in (("location", location), ("offset", "0"), ("length", "4")):
                entry = t.external_data.add()
                entry.key, entry.value = key, value
        graph = helper.make_graph([], "g", [], [], initializer=[t])
        path.write_bytes(helper.make_model(graph).SerializeToString())
    return build


def _numpy_testing_runstring() -> Any:
    from numpy.testing._private import utils

    return utils.runstring


HOSTILE: list[Hostile] = [
    # pickles that try to run code: refused at the global, before anything runs
    Hostile("os-system.pkl", _dump(lambda m: {"W": _Reduce(os.system, f"touch {m}")}),
            ws.UnsafeFileError, r"global (posix|os)\.system", "os.system('touch marker')"),
    Hostile("eval.pkl", _dump(lambda m: _Reduce(eval, f"open({str(m)!r}, 'w')")),
            ws.UnsafeFileError, r"global builtins\.eval", "eval of Python source"),
    Hostile("exec.pkl", _dump(lambda m: _Reduce(exec, f"open({str(m)!r}, 'w')")),
            ws.UnsafeFileError, r"global builtins\.exec", "exec of Python source"),
    Hostile("subprocess.pkl", _dump(lambda m: _Reduce(subprocess.Popen, ["touch", str(m)])),
            ws.UnsafeFileError, r"global subprocess\.Popen", "subprocess.Popen(['touch', ...])"),
    Hostile("getattr-chain.pkl", _getattr_chain, ws.UnsafeFileError,
            r"global builtins\.getattr", "getattr(__import__('os'), 'system')(...)"),
    Hostile("protocol0-inst.pkl", _protocol0_inst, ws.UnsafeFileError,
            r"global os\.system|opcode (STRING|INST)",
            "protocol 0 INST opcode calling os.system"),
    Hostile("numpy-load.pkl", _dump(lambda m: _Reduce(np.load, str(m))), ws.UnsafeFileError,
            r"global numpy\.load", "numpy.load of another file"),
    Hostile("numpy-fromfile.pkl", _dump(lambda m: _Reduce(np.fromfile, "/etc/passwd")),
            ws.UnsafeFileError, r"global numpy\.fromfile", "numpy.fromfile('/etc/passwd')"),
    Hostile("numpy-save.pkl",
            _dump(lambda m: _Reduce(np.save, str(m.with_suffix(".npy")), np.zeros(1))),
            ws.UnsafeFileError, r"global numpy\.save", "numpy.save writing a file"),
    Hostile("numpy-testing-runstring.pkl",
            _dump(lambda m: _Reduce(_numpy_testing_runstring(), f"open({str(m)!r}, 'w')",
                                    {})),
            ws.UnsafeFileError, r"global numpy\.testing\._private\.utils\.runstring",
            "numpy.testing's runstring: exec in disguise"),
    Hostile("build-on-global.pkl", _build_on_global, ws.UnsafeFileError, r"attribute 'x'|BUILD",
            "BUILD setting an attribute on an allowed global"),
    Hostile("reconstruct-huge.pkl", _reconstruct_huge, ws.UnsafeFileError, r"_reconstruct",
            "_reconstruct(ndarray, (2**40,), ...) allocating 1 TiB"),
    Hostile("array-state-lies.pkl", _array_state_lies, ws.FormatError, r"bytes for shape",
            "array state claiming 2**40 float64 with 8 bytes", measure=True),
    Hostile("billion-laughs.pkl", _billion_laughs, ws.LimitError,
            r"Limits\.max_(tensors|memory_bytes)",
            "40 shared dicts: 2**40 paths from 1 KiB", measure=True),
    Hostile("deep-dicts.pkl", _deep_dicts, ws.FormatError, r"nesting within 64",
            "dicts nested 100,000 levels deep"),
    Hostile("bytes-claim.pkl", _bytes_claim, ws.FormatError, r"truncated",
            "a bytes object claiming 8 GiB in a 21-byte file", measure=True),
    # zstd
    Hostile("declared.npz.zst", _zstd_declared, ws.LimitError, r"1,099,511,627,776 bytes "
            "declared", "a frame declaring 1 TiB of content in 17 bytes", measure=True),
    Hostile("expands-1gib.npz.zst", _zstd_stream(GiB), ws.LimitError, r"more than 268,435,456",
            "1 GiB of zeros in 32 KiB, no size declared (default limits)", measure=True,
            max_growth_mib=256 + 32),
    Hostile("expands-64mib.npz.zst", _zstd_stream(64 * MiB), ws.LimitError,
            r"at most 2,066,000 bytes from 2,066 compressed",
            "64 MiB of zeros in 2 KiB (32,000-fold), Limits(expansion_free_bytes=1 MiB)",
            measure=True, max_growth_mib=8, limits={"expansion_free_bytes": MiB}),
    Hostile("cut.json.zst", _zstd_cut, ws.FormatError, r"truncated",
            "a frame cut 10 bytes short"),
    # npz
    Hostile("absurd-shape.npz", _npz_member(_npy((1 << 40,), bytes(16))), ws.LimitError,
            r"Limits\.max_tensor_bytes", "an .npy header claiming 2**40 float64", measure=True),
    Hostile("shape-lies.npz", _npz_member(_npy((10**9,), bytes(80))), ws.FormatError,
            r"8,000,000,128 bytes for shape", "8 GB claimed, 80 bytes held", measure=True),
    Hostile("past-end.npz", _npz_past_end, ws.FormatError, r"file's .* bytes|offset",
            "a directory entry whose data runs 2 GiB past the end", measure=True),
    Hostile("overlapping.npz", _npz_overlapping, ws.FormatError, r"overlapping",
            "200 entries sharing one deflated 16 MiB stream (zip bomb)", measure=True),
    Hostile("npy-header-length.npz", _npy_header_length, ws.FormatError, r"header",
            "an .npy header length of 4 GiB"),
    # HDF5
    Hostile("absurd-shape.h5", _h5_unwritten((1 << 40,)), ws.LimitError,
            r"Limits\.max_tensor_bytes", "a dataset claiming 2**40 float64", measure=True),
    Hostile("claims-1gib.h5", _h5_unwritten((GiB // 8,)), ws.FormatError,
            r"Limits\.max_expansion", "1 GiB claimed, nothing stored", measure=True),
    Hostile("cut.h5", _h5_cut, ws.FormatError, r"cut\.h5", "a 4 MiB file cut in half"),
    Hostile("external.h5", _h5_external, ws.UnsafeFileError, r"external storage",
            "a dataset whose data is another file"),
    Hostile("heap-loop.h5", _h5_heap_loop, ws.FormatError, r"global heap",
            "a global heap object whose size wraps (hangs the HDF5 library)"),
    # JSON
    Hostile("million-deep.json", _json(_JSON_HEAD + b'"tensors":' + b"[" * 1_000_000),
            ws.FormatError, r"not valid JSON", "arrays nested a million levels", measure=True),
    Hostile("million-deep-metadata.json", _json(_JSON_HEAD + b'"metadata":'
                                                 + b'{"a":' * 1_000_000), ws.FormatError,
            r"not valid JSON", "metadata objects nested a million levels", measure=True),
    Hostile("absurd-shape.json", _json(_JSON_HEAD + b'"tensors":[{"name":"W","dtype":'
                                       b'"float64","shape":[1099511627776],"data":[1]}]}'),
            ws.LimitError, r"Limits\.max_tensor_bytes", "shape [2**40] holding one value"),
    Hostile("overflowing-shape.json", _json(_JSON_HEAD + b'"tensors":[{"name":"W","dtype":'
                                            b'"uint8","shape":[' + b",".join(
                                                [b"4611686018427387904"] * 64)
                                            + b'],"data":[1]}]}'),
            ws.LimitError, r"Limits\.max_tensor_bytes", "64 dimensions of 2**62"),
    # CSV
    Hostile("million-columns.csv", _csv_columns, ws.LimitError, r"characters",
            "a row of 3,000,001 fields", measure=True),
    Hostile("1gib-field.csv", _csv_huge_field, ws.LimitError, r"characters",
            "a quoted field of 1 GiB (sparse file)", measure=True),
    Hostile("absurd-shape.csv", _json(b"tensor,dtype,shape,index,value\r\n"
                                      b"W,float64,1099511627776x1099511627776,0,1\r\n"),
            ws.LimitError, r"Limits\.max_tensor_bytes", "shape 2**40 x 2**40, one row"),
    # wsc
    Hostile("header-length.wsc", _wsc(None, length=1 << 40), ws.LimitError,
            r"Limits\.max_header_bytes", "a header length of 1 TiB in a 26-byte file"),
    Hostile("absurd-shape.wsc",
            _wsc({"metadata": {}, "tensors": [{"name": "W", "dtype": "float64",
                                               "shape": [1 << 40], "offset": 10, "crc32": 0,
                                               "planes": [["raw", 1 << 40]] * 8}]}),
            ws.LimitError, r"Limits\.max_tensor_bytes", "a tensor claiming 2**40 float64"),
    Hostile("plane-bomb.wsc", _wsc_plane_bomb, ws.LimitError, r"Limits\.max_expansion",
            "a 1 GiB plane from a 32 KiB zstd frame", measure=True),
    # pytorch
    Hostile("runs-code.pt", _torch_zip(_torch_runs_code), ws.UnsafeFileError,
            r"global (posix|os)\.system", "data.pkl calling os.system('touch marker')"),
    Hostile("legacy-eval.pt", _torch_legacy_eval, ws.UnsafeFileError,
            r"global (__builtin__|builtins)\.eval",
            "a legacy checkpoint whose object calls eval"),
    Hostile("stride-past-storage.pt",
            _torch_zip(lambda m: _torch_tensor_pickle((4, 4), (4, 2)), bytes(16)),
            ws.FormatError, r"within its storage", "strides reaching element 18 of 4"),
    Hostile("offset-past-storage.pt",
            _torch_zip(lambda m: _torch_tensor_pickle((2,), (1,), offset=1 << 40), bytes(16)),
            ws.FormatError, r"within its storage", "a storage offset of 2**40 in 4 elements"),
    Hostile("huge-storage.pt",
            _torch_zip(lambda m: _torch_tensor_pickle((1 << 28,), (1,), numel=1 << 28),
                       bytes(16)),
            ws.FormatError, r"1,073,741,824 bytes .*found 16 bytes",
            "a storage declared as 1 GiB whose member holds 16 bytes", measure=True),
    Hostile("zero-stride.pt",
            _torch_zip(lambda m: _torch_tensor_pickle((1 << 15, 1 << 15), (0, 0)), bytes(16)),
            ws.LimitError, r"Limits\.max_expansion",
            "4 GiB from one float repeated by zero strides", measure=True),
    Hostile("memo-index.pt", _torch_zip(_torch_memo), ws.FormatError, r"memo index",
            "a memo index of 2**32 - 16 (the unpickler would size its memo by it)",
            measure=True),
    Hostile("bytes-claim.pt", _torch_zip(_torch_bytes_claim), ws.FormatError,
            r"not a valid pickle", "data.pkl holding bytes that claim 4 GiB", measure=True),
    Hostile("legacy-past-end.pt", _torch_legacy_past_end, ws.FormatError, r"truncated",
            "a legacy storage of 4 GiB in a 300-byte file", measure=True),
    # npy
    Hostile("absurd-shape.npy", lambda p, m: p.write_bytes(_npy((1 << 40,), bytes(16))),
            ws.LimitError, r"Limits\.max_tensor_bytes", "a header claiming 2**40 float64",
            measure=True),
    Hostile("shape-lies.npy", lambda p, m: p.write_bytes(_npy((10**8,), bytes(80))),
            ws.FormatError, r"800,000,000 bytes for shape", "800 MB claimed, 80 bytes held",
            measure=True),
    Hostile("object.npy", lambda p, m: p.write_bytes(
        _npy((1,), pickle.dumps([_Reduce(os.system, f"touch {m}")]), dtype="|O")),
            ws.FormatError, r"object arrays need pickle", "an object array whose pickle "
            "calls os.system"),
    # gzip
    Hostile("expands-64mib.json.gz", lambda p, m: p.write_bytes(_gzip_zeros(64 * MiB)),
            ws.LimitError, r"Limits\.max_expansion", "64 MiB of zeros in 286 KiB, "
            "Limits(expansion_free_bytes=1 MiB, max_expansion=100)", measure=True,
            max_growth_mib=32, limits={"expansion_free_bytes": MiB, "max_expansion": 100}),
    Hostile("cut.csv.gz", _gzip_cut, ws.FormatError, r"truncated", "a gzip stream cut short"),
    Hostile("crc.json.gz", _gzip_bad_crc, ws.ChecksumError, r"CRC", "a wrong CRC-32 trailer"),
    # GGUF
    Hostile("tensor-count.gguf", _gguf(n_tensors=1 << 40), ws.FormatError, r"tensor count",
            "a tensor count of 2**40 in a 32-byte file", measure=True),
    Hostile("kv-count.gguf", _gguf(n_kv=(1 << 64) - 1), ws.FormatError, r"key/value count",
            "a key/value count of 2**64-1 in a 32-byte file", measure=True),
    Hostile("string-length.gguf", _gguf(kvs=struct.pack("<Q", 1 << 62) + b"k"),
            ws.FormatError, r"key length", "a key claiming 2**62 bytes", measure=True),
    Hostile("array-count.gguf", _gguf(kvs=_gs("tokens") + struct.pack("<IIQ", 9, 8, 1 << 50)),
            ws.FormatError, r"count", "an array of 2**50 strings in a few bytes",
            measure=True),
    Hostile("deep-arrays.gguf", _gguf_deep_arrays, ws.FormatError, r"nested within 64",
            "arrays nested 10,000 levels deep"),
    Hostile("data-past-end.gguf", _gguf(infos=[("W", [1 << 28], 0, 0)], data=bytes(64)),
            ws.FormatError, r"the file ends there", "an F32 tensor of 1 GiB, 64 bytes held",
            measure=True),
    Hostile("absurd-shape.gguf", _gguf(infos=[("W", [1 << 40, 1 << 40], 0, 0)]),
            ws.LimitError, r"Limits\.max_tensor_bytes", "dims 2**40 x 2**40", measure=True),
    Hostile("overlapping.gguf", _gguf(infos=[("A", [1 << 20], 0, 0), ("B", [1 << 20], 0, 0)],
                                      data=bytes(4 << 20)),
            ws.FormatError, r"overlapping", "two tensors on the same bytes"),
    # Keras
    Hostile("bomb.keras", _keras_bomb, ws.LimitError, r"Limits\.max_expansion",
            "a weights member claiming 2 GiB from a few deflated bytes", measure=True),
    Hostile("external.weights.h5", _h5_external, ws.UnsafeFileError, r"external storage",
            "a Keras weights file whose dataset is another file"),
    # ONNX
    Hostile("escape.onnx", _onnx_model([1], "../../../../etc/passwd"), ws.UnsafeFileError,
            r"inside the model's folder", "external data at ../../../../etc/passwd"),
    Hostile("absolute.onnx", _onnx_model([1], "/etc/passwd"), ws.UnsafeFileError,
            r"relative path inside", "external data at an absolute path"),
    Hostile("absurd-dims.onnx", _onnx_model([1 << 40, 1 << 20]), ws.LimitError,
            r"Limits\.max_tensor_bytes", "dims 2**40 x 2**20 with 4 bytes held",
            measure=True),
    # safetensors
    Hostile("header-past-end.safetensors", _safetensors(b"{}", b"", length=1 << 40),
            ws.FormatError, r"header length", "a header length of 1 TiB in 10 bytes"),
    Hostile("offsets-past-end.safetensors",
            _safetensors(b'{"W":{"dtype":"F32","shape":[1073741824],'
                         b'"data_offsets":[0,4294967296]}}', bytes(8)),
            ws.FormatError, r"data_offsets|buffer|bytes", "data offsets 4 GiB past the end",
            measure=True),
    # --- issue 12: one budget per load (memory, decompressed bytes, temporary disk) ---
    Hostile("memo-index.pkl", _memo_index, None, "", "a memo index of 2**31 - 1 "
            "(the C unpickler's memo array: 16 GiB)", measure=True,
            expect=_memo_index_expect, kind="budget"),
    Hostile("containers.pkl", _containers, ws.LimitError, r"Limits\.max_memory_bytes",
            "4 million empty lists in 4 MiB, Limits(expansion_free_bytes=16 MiB, "
            "max_expansion=8)", measure=True,
            limits={"expansion_free_bytes": 16 * MiB, "max_expansion": 8}, kind="budget"),
    Hostile("packed-codes.pkl", _packed_codes, ws.FormatError,
            r"'W\.q'.*uint8 of shape \(549755813888,\).*uint8 of shape \[8\]",
            "bit-packed 4-bit codes claiming 2**40 codes in 8 bytes", measure=True,
            kind="budget"),
    Hostile("quant-block.pkl", _quant_block, None, "", "a quantization block of 2**40 rows "
            "for a 4x4 tensor (dequantization scratch)", measure=True,
            expect=_quant_block_expect, kind="budget"),
    Hostile("empty-2pow40.json", _empty_json([1 << 40, 0], False), None, "",
            "an empty tensor of shape [2**40, 0] (its full nesting: 2 TiB of text)",
            measure=True, expect=_empty_expect((1 << 40, 0)), kind="budget"),
    Hostile("empty-nesting.json", _empty_json([1 << 20, 0], True), None, "",
            "an empty tensor spelled as 2**20 empty lists", measure=True,
            expect=_empty_expect((1 << 20, 0)), max_growth_mib=256, kind="budget"),
    Hostile("shared-names.pkl", _shared_names, ws.LimitError,
            r"Limits\.max_(memory_bytes|tensors)", "30 shared dicts with 4 KiB keys: "
            "2**30 names of 120 KiB from 250 KiB", measure=True, max_growth_mib=320,
            kind="budget"),
    Hostile("zshards.npz.zst.index.json", _zstd_shards, ws.LimitError,
            r"Limits\.max_expansion", "8 zstd shards of 4 MiB each, "
            "Limits(expansion_free_bytes=8 MiB): the allowance is one per load",
            measure=True, limits={"expansion_free_bytes": 8 * MiB, "max_expansion": 100},
            kind="budget"),
    # --- issue 12: linear time --------------------------------------------------------
    Hostile("two-links.h5", _h5_links, ws.FormatError, r"second link",
            "40 groups each linked twice: 2**40 paths", measure=True, kind="time"),
    Hostile("heap-loop-compound.h5", _h5_heap_compound, ws.FormatError, r"global heap",
            "a wrapping heap object behind a compound attribute's string field",
            kind="time"),
    Hostile("compact-attrs.h5", _h5_compact_attrs, ws.LimitError, r"object header",
            "5,000 metadata attributes in the object header (n**2 lookups)", kind="time"),
    Hostile("many-parts.safetensors", _many_parts, None, "",
            f"a name of {_PARTS:,} '/' parts (the name check was quadratic)",
            measure=True, expect=_many_parts_expect, kind="time"),
    Hostile("int-keys.pkl", _int_keys, ws.FormatError, r"dict key",
            "100,000 int keys that hash alike", kind="time"),
    Hostile("deep-lists.pkl", _deep_lists, ws.FormatError, r"nesting within 64",
            "lists nested a million levels (SIGSEGV before)", measure=True, max_growth_mib=256,
            kind="time"),
    Hostile("deep-tuples.pkl", _deep_tuples, ws.FormatError, r"nesting within 64",
            "tuples nested a million levels", measure=True, kind="time"),
    # --- issue 12: indexes and output -------------------------------------------------
    Hostile("self.npz.index.json", _self_index, ws.FormatError, r"not an index",
            "a shard index naming itself as its shard", kind="writes"),
    Hostile("escape.safetensors", _escape_name, ws.FormatError, r"dtype",
            "a name of terminal escapes and line breaks, quoted by the error", kind="output"),
    # --- issue 12: special files --------------------------------------------------------
    Hostile("fifo.npz", _fifo, ws.FileAccessError, r"FIFO", "a named pipe (blocks forever)",
            kind="special"),
    Hostile("zero-link.npz", _zero_link, ws.FileAccessError, r"character device",
            "a symlink to /dev/zero (endless zeros)", measure=True, kind="special"),
    Hostile("socket.npz", _socket_file, ws.FileAccessError, r"socket", "a Unix socket",
            kind="special"),
    Hostile("fifo-shard.npz.index.json", _fifo_shard, ws.FileAccessError, r"FIFO",
            "a shard index whose shard is a named pipe", kind="special"),
]


_MEASURE = """
import json, resource, sys, time
import weightstore as ws
from hostile.build import digest
path, limits = sys.argv[1], json.loads(sys.argv[2])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started, cpu = time.perf_counter(), time.process_time()
try:
    got = ws.load(path, limits=ws.Limits(**limits) if limits else None)
    out = {"error": None, "message": "loaded", "digest": digest(got)}
except ws.WeightstoreError as e:
    out = {"error": type(e).__name__, "message": str(e)}
except BaseException as e:
    out = {"error": "not a WeightstoreError: " + type(e).__name__, "message": str(e)}
out["seconds"] = time.perf_counter() - started
out["cpu_seconds"] = time.process_time() - cpu
out["grew_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps(out))
"""


def load_measured(path: Path, h: Hostile, timeout: float) -> dict[str, Any]:
    """Load *path* in a fresh interpreter that imports weightstore from this checkout.

    Returns the error's class name and message, the seconds the load took, and how much
    the peak resident memory grew while loading (``grew_kib``, KiB as Linux reports it).
    """
    import json

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(repo), str(repo / "tests"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(path), json.dumps(h.limits)],
                          capture_output=True, text=True, timeout=timeout, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{h.file}: the loading process failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def build_all(folder: Path, marker: Path) -> dict[str, Path]:
    """Write every hostile file into *folder*; their paths by file name."""
    paths = {}
    for h in HOSTILE:
        path = folder / h.file
        h.build(path, marker)
        paths[h.file] = path
    return paths


def main() -> None:
    """Build the corpus into a folder, load each file in a fresh process, print a table."""
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile-files")
    out.mkdir(parents=True, exist_ok=True)
    marker = out / "MARKER-if-this-exists-something-ran"
    built = build_all(out, marker)
    print("| file | bytes | attack | outcome | time | CPU | peak memory growth |")
    print("|---|---:|---|---|---:|---:|---:|")
    for h in HOSTILE:
        got = load_measured(built[h.file], h, timeout=120)
        message = got["message"].replace(str(out) + os.sep, "")
        if h.error is None:
            message += " (correct)" if got.get("digest") == digest(h.expect()) else " (WRONG)"
        size = os.lstat(built[h.file]).st_size
        print(f"| {h.file} | {size:,} | {h.what} | "
              f"{got['error']}: {message} | {got['seconds']:.2f} s | "
              f"{got['cpu_seconds']:.2f} s | {got['grew_kib'] / 1024:.1f} MiB |")
    print(f"\nmarker present: {marker.exists() or marker.with_suffix('.npy').exists()}")


if __name__ == "__main__":
    main()
