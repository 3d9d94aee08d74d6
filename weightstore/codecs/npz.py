"""npz: numpy's zip of ``.npy`` members, plain or deflate-compressed.

Each tensor is the member ``<name>.npy`` (``/`` in a name is a folder in the
zip, which ``numpy.load`` gives back as the same key). Files load with
``numpy.load(path)`` and ``allow_pickle=False``. Metadata, when there is any,
is the zip archive comment: ``weightstore-metadata:`` followed by a JSON object
of strings (at most 65,535 bytes in all); ``numpy.load`` ignores it.

Writing streams each array into its member; reading checks every member's
header (dtype, shape) against its stored size, and a compressed member's size
against :class:`~weightstore.codec.Limits`, before allocating anything.
:meth:`NpzCodec.open` reads those headers alone; an uncompressed member is then
read straight from its offset in the file (its zip CRC-32 checked beside the
reads) or memory-mapped, a compressed one inflated on access.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from typing import IO, NamedTuple

import numpy as np
import orjson

from ..codec import DEFAULT_LIMITS, Codec, Limits, Option, TensorMeta, TensorSource, read_all
from ..errors import FormatError, UnsupportedError
from ..model import Weights, dtype_name, little_endian
from ..rawio import RawFile, crc32
from ..registry import register

COMMENT_PREFIX = b"weightstore-metadata:"
_MAX_COMMENT = 65535


def _read_header(member: IO[bytes], path: str, name: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(member)
        if version == (1, 0):
            return fmt.read_array_header_1_0(member)
        if version == (2, 0):
            return fmt.read_array_header_2_0(member)
        return fmt._read_array_header(member, version)  # version 3.0: utf-8 header
    except (ValueError, EOFError, SyntaxError) as e:
        raise FormatError(f"bad .npy header ({e})", path=path, field=f"member {name!r}") from e


@register
class NpzCodec(Codec):
    """numpy ``.npz``: a zip of ``.npy`` files, one per tensor."""

    name = "npz"
    extensions = (".npz",)
    description = "numpy .npz (zip of .npy), plain or deflate-compressed; numpy.load reads it"
    options = (
        Option("compressed", bool, False, "deflate each member (like numpy.savez_compressed)"),
        Option("level", int, 6, "deflate level when compressed (1 fastest .. 9 smallest)",
               min=1, max=9),
    )

    streams_writes = True

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return head.startswith((b"PK\x03\x04", b"PK\x05\x06"))

    def write(self, weights: Weights, fileobj: IO[bytes], *, path: str) -> None:
        method = zipfile.ZIP_DEFLATED if self.compressed else zipfile.ZIP_STORED  # type: ignore[attr-defined]
        comment = b""
        if weights.metadata:
            comment = COMMENT_PREFIX + orjson.dumps(weights.metadata)
            if len(comment) > _MAX_COMMENT:
                raise UnsupportedError(
                    path=path, field="metadata",
                    expected=f"at most {_MAX_COMMENT - len(COMMENT_PREFIX)} bytes of JSON in npz",
                    found=f"{len(comment) - len(COMMENT_PREFIX)} bytes",
                )
        with zipfile.ZipFile(fileobj, "w", compression=method,
                             compresslevel=self.level if self.compressed else None) as zf:  # type: ignore[attr-defined]
            for name, array in weights.items():
                if array.dtype.name == "bfloat16":
                    raise UnsupportedError(path=path, field=f"tensor {name!r}",
                                           expected="a dtype numpy.load can read back",
                                           found="bfloat16")
                with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, little_endian(array), allow_pickle=False)
                del array  # from a lazy source: one tensor in memory at a time
            zf.comment = comment

    def read(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS) -> Weights:
        source = self.open(fileobj, path=path, limits=limits)
        try:
            return read_all(source, path, limits)
        finally:
            source.close()

    def open(self, fileobj: IO[bytes], *, path: str,
             limits: Limits = DEFAULT_LIMITS) -> TensorSource:
        """The members' headers only; each tensor is read (or memory-mapped) on access."""
        try:
            zf = zipfile.ZipFile(fileobj)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise FormatError(f"not a valid zip archive ({e})", path=path) from e
        try:
            return _NpzSource(zf, RawFile(fileobj, path), path, limits)
        except BaseException:
            zf.close()
            raise

    @staticmethod
    def _check_layout(zf: zipfile.ZipFile, fileobj: IO[bytes], path: str) -> None:
        """Refuse bytes before the first member (zipfile tolerates them silently)."""
        infos = zf.infolist()
        if infos:
            first = min(i.header_offset for i in infos)
            if first != 0:
                raise FormatError(path=path, field="zip layout",
                                  expected="the first member at offset 0",
                                  found=f"{first:,} unexplained bytes before it")
        else:
            end = fileobj.seek(0, 2)
            if end != 22 + len(zf.comment):
                raise FormatError(path=path, field="zip layout",
                                  expected="members or an empty archive",
                                  found=f"no members in {end:,} bytes")

    @staticmethod
    def _read_comment(comment: bytes, path: str) -> dict[str, str]:
        if not comment.startswith(COMMENT_PREFIX):
            return {}
        try:
            meta = orjson.loads(comment[len(COMMENT_PREFIX):])
        except orjson.JSONDecodeError as e:
            raise FormatError(f"metadata comment is not JSON ({e})", path=path,
                              field="zip comment") from e
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise FormatError(path=path, field="zip comment", expected="a JSON object of strings")
        return meta


_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_LOCAL_SIGNATURE = b"PK\x03\x04"


class _Member(NamedTuple):
    info: zipfile.ZipInfo
    data_offset: int  # of the array bytes in the file, for a stored member; else -1
    header_len: int  # bytes of .npy header before the array bytes
    fortran: bool


class _NpzSource(TensorSource):
    """An open npz: every member's .npy header read and checked, the data left on disk."""

    lazy = True

    def __init__(self, zf: zipfile.ZipFile, raw: RawFile, path: str, limits: Limits) -> None:
        self._zf, self._raw, self._path = zf, raw, path
        infos = [i for i in zf.infolist() if not i.is_dir()]
        NpzCodec._check_layout(zf, raw.fileobj, path)
        if len(infos) > limits.max_tensors:
            raise FormatError(path=path, field="members",
                              expected=f"at most {limits.max_tensors}", found=len(infos))
        metas: list[TensorMeta] = []
        self._members: dict[str, _Member] = {}
        for info in infos:
            if info.header_offset + info.compress_size > raw.size:
                raise FormatError(
                    path=path, field=f"member {info.filename!r}",
                    expected=f"data within the file's {raw.size:,} bytes",
                    found=f"{info.compress_size:,} bytes at offset {info.header_offset:,}",
                )
            if not info.filename.endswith(".npy"):
                raise FormatError(path=path, field=f"member {info.filename!r}",
                                  expected="only .npy members in an npz file")
            name = info.filename[: -len(".npy")]
            if info.flag_bits & 0x1:
                raise FormatError(path=path, field=f"member {info.filename!r}",
                                  expected="an unencrypted member", found="an encrypted one")
            if info.compress_type != zipfile.ZIP_STORED and info.file_size > limits.max_output(
                info.compress_size
            ):
                raise FormatError(
                    path=path, field=f"member {info.filename!r}",
                    expected=f"at most {limits.max_output(info.compress_size):,} bytes "
                    f"from {info.compress_size:,} compressed (Limits.max_expansion)",
                    found=f"{info.file_size:,} bytes claimed",
                )
            meta, member = self._header(info, name, limits)
            metas.append(meta)
            self._members[name] = member
        super().__init__(metas, NpzCodec._read_comment(zf.comment, path))
        self._metas = {m.name: m for m in metas}

    @staticmethod
    def _where(info: zipfile.ZipInfo) -> str:
        return f"member {info.filename!r}"

    def _header(self, info: zipfile.ZipInfo, name: str,
                limits: Limits) -> tuple[TensorMeta, _Member]:
        path, where = self._path, self._where(info)
        data_offset = -1
        try:
            if info.compress_type == zipfile.ZIP_STORED:
                if info.compress_size != info.file_size:
                    raise FormatError(path=path, field=where,
                                      expected=f"{info.file_size:,} stored bytes",
                                      found=f"{info.compress_size:,}")
                data_offset = self._stored_data_offset(info)
                head = io.BytesIO(self._raw.pread(data_offset, min(info.file_size, 1 << 16)))
                shape, fortran, dtype = _read_header(head, path, info.filename)
                header_len = head.tell()
            else:
                with self._zf.open(info) as member:
                    shape, fortran, dtype = _read_header(member, path, info.filename)
                    header_len = member.tell()
        except zipfile.BadZipFile as e:
            raise FormatError(f"corrupted member ({e})", path=path, field=where) from e
        except (OSError, EOFError) as e:
            raise FormatError(f"unreadable member ({e})", path=path, field=where) from e
        except zlib.error as e:
            raise FormatError(f"corrupted compressed data ({e})", path=path, field=where) from e
        if dtype_name(dtype) is None:
            raise FormatError(path=path, field=f"{where} dtype",
                              expected="a numeric or bool dtype", found=str(dtype))
        meta = TensorMeta(name, dtype, tuple(shape))
        limits.check_tensor(path, name, meta.nbytes)
        if header_len + meta.nbytes != info.file_size:
            raise FormatError(
                path=path, field=where,
                expected=f"{header_len + meta.nbytes:,} bytes for shape {shape} {dtype}",
                found=f"{info.file_size:,} bytes",
            )
        if data_offset >= 0:
            data_offset += header_len
        return meta, _Member(info, data_offset, header_len, fortran)

    def _stored_data_offset(self, info: zipfile.ZipInfo) -> int:
        """Where a stored member's bytes start: after its local header (as zipfile finds it)."""
        head = self._raw.pread(info.header_offset, _LOCAL_HEADER.size)
        where = f"{self._where(info)} local header"
        if len(head) != _LOCAL_HEADER.size:
            raise FormatError(path=self._path, field=where,
                              expected=f"{_LOCAL_HEADER.size} bytes", found=len(head))
        fields = _LOCAL_HEADER.unpack(head)
        if fields[0] != _LOCAL_SIGNATURE:
            raise FormatError(path=self._path, field=where,
                              expected=repr(_LOCAL_SIGNATURE), found=fields[0])
        name_len, extra_len = fields[-2], fields[-1]
        start = info.header_offset + _LOCAL_HEADER.size
        stored = self._raw.pread(start, name_len).decode(
            "utf-8" if info.flag_bits & 0x800 else "cp437", "replace")
        if stored != info.orig_filename:
            raise FormatError(path=self._path, field=where,
                              expected="the name in the central directory", found=stored)
        offset = start + name_len + extra_len
        if offset + info.file_size > self._raw.size:
            raise FormatError(path=self._path, field=self._where(info),
                              expected=f"{info.file_size:,} bytes at offset {offset:,}",
                              found=f"a file of {self._raw.size:,} bytes (truncated)")
        return offset

    def read(self, name: str, *, mmap: bool = False) -> np.ndarray:
        meta, member = self._metas[name], self._members[name]
        shape = meta.shape[::-1] if member.fortran else meta.shape
        if member.data_offset < 0:
            return self._read_compressed(meta, member, shape)
        if mmap and self._raw.can_mmap:
            array = self._raw.map_array(member.data_offset, meta.dtype, shape)
            return (array.T if member.fortran else array).view(np.ndarray)
        # zip's CRC covers the .npy header and the data: start from the header's CRC.
        header = self._raw.pread(member.data_offset - member.header_len, member.header_len)
        array = self._raw.read_array(member.data_offset, meta.dtype, shape,
                                     field=self._where(member.info),
                                     crc=(crc32(header), member.info.CRC))
        return array.T if member.fortran else array

    def _read_compressed(self, meta: TensorMeta, member: _Member,
                         shape: tuple[int, ...]) -> np.ndarray:
        path, where = self._path, self._where(member.info)
        try:
            with self._zf.open(member.info) as stream:
                stream.read(member.header_len)
                buf = bytearray(meta.nbytes)
                view = memoryview(buf)
                got = 0
                while got < meta.nbytes:
                    n = stream.readinto(view[got:])
                    if not n:
                        raise FormatError(path=path, field=where,
                                          expected=f"{meta.nbytes:,} data bytes",
                                          found=f"{got:,}")
                    got += n
                stream.read(1)  # reach the end so that zipfile checks the CRC
        except zipfile.BadZipFile as e:
            raise FormatError(f"corrupted member ({e})", path=path, field=where) from e
        except (OSError, EOFError) as e:
            raise FormatError(f"unreadable member ({e})", path=path, field=where) from e
        except zlib.error as e:
            raise FormatError(f"corrupted compressed data ({e})", path=path, field=where) from e
        array = np.frombuffer(buf, dtype=meta.dtype).reshape(shape)
        return array.T if member.fortran else array

    def close(self) -> None:
        self._zf.close()
