"""npz: numpy's zip of ``.npy`` members, plain or deflate-compressed.

Each tensor is the member ``<name>.npy`` (``/`` in a name is a folder in the
zip, which ``numpy.load`` gives back as the same key). Files load with
``numpy.load(path)`` and ``allow_pickle=False``. Metadata, when there is any,
is the zip archive comment: ``weightstore-metadata:`` followed by a JSON object
of strings (at most 65,535 bytes in all); ``numpy.load`` ignores it.

Writing streams each array into its member; reading checks every member's
header (dtype, shape) against its stored size, and a compressed member's size
against :class:`~weightstore.codec.Limits`, before allocating anything.
"""

from __future__ import annotations

import zipfile
from typing import IO

import numpy as np
import orjson

from ..codec import DEFAULT_LIMITS, Codec, Limits, Option
from ..errors import FormatError, UnsupportedError, WeightsError
from ..model import Weights, dtype_name, little_endian
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
            zf.comment = comment

    def read(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS) -> Weights:
        try:
            zf = zipfile.ZipFile(fileobj)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise FormatError(f"not a valid zip archive ({e})", path=path) from e
        with zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            self._check_layout(zf, fileobj, path)
            if len(infos) > limits.max_tensors:
                raise FormatError(path=path, field="members",
                                  expected=f"at most {limits.max_tensors}", found=len(infos))
            archive_size = fileobj.seek(0, 2)
            tensors: dict[str, np.ndarray] = {}
            total = 0
            for info in infos:
                if info.header_offset + info.compress_size > archive_size:
                    raise FormatError(
                        path=path, field=f"member {info.filename!r}",
                        expected=f"data within the file's {archive_size:,} bytes",
                        found=f"{info.compress_size:,} bytes at offset {info.header_offset:,}",
                    )
                if not info.filename.endswith(".npy"):
                    raise FormatError(path=path, field=f"member {info.filename!r}",
                                      expected="only .npy members in an npz file")
                name = info.filename[: -len(".npy")]
                if info.compress_type != zipfile.ZIP_STORED and info.file_size > limits.max_output(
                    info.compress_size
                ):
                    raise FormatError(
                        path=path, field=f"member {info.filename!r}",
                        expected=f"at most {limits.max_output(info.compress_size):,} bytes "
                        f"from {info.compress_size:,} compressed (Limits.max_expansion)",
                        found=f"{info.file_size:,} bytes claimed",
                    )
                tensors[name] = self._read_member(zf, info, path, name, limits, total)
                total += tensors[name].nbytes
            metadata = self._read_comment(zf.comment, path)
        try:
            return Weights(tensors, metadata=metadata)
        except WeightsError as e:
            raise FormatError(f"holds invalid weights: {e}", path=path) from e

    @staticmethod
    def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str, name: str,
                     limits: Limits, total: int) -> np.ndarray:
        try:
            with zf.open(info) as member:
                shape, fortran, dtype = _read_header(member, path, info.filename)
                if dtype_name(dtype) is None:
                    raise FormatError(path=path, field=f"member {info.filename!r} dtype",
                                      expected="a numeric or bool dtype", found=str(dtype))
                count = 1
                for d in shape:
                    count *= d
                nbytes = count * dtype.itemsize
                limits.check_tensor(path, name, nbytes, total)
                header_len = member.tell()
                if header_len + nbytes != info.file_size:
                    raise FormatError(
                        path=path, field=f"member {info.filename!r}",
                        expected=f"{header_len + nbytes:,} bytes for shape {shape} {dtype}",
                        found=f"{info.file_size:,} bytes",
                    )
                buf = bytearray(nbytes)
                view = memoryview(buf)
                got = 0
                while got < nbytes:
                    n = member.readinto(view[got:])
                    if not n:
                        raise FormatError(path=path, field=f"member {info.filename!r}",
                                          expected=f"{nbytes:,} data bytes", found=f"{got:,}")
                    got += n
        except zipfile.BadZipFile as e:
            raise FormatError(f"corrupted member ({e})", path=path,
                              field=f"member {info.filename!r}") from e
        except (OSError, EOFError) as e:  # zlib.error is an Exception; see below
            raise FormatError(f"unreadable member ({e})", path=path,
                              field=f"member {info.filename!r}") from e
        except Exception as e:
            import zlib

            if isinstance(e, zlib.error):
                raise FormatError(f"corrupted compressed data ({e})", path=path,
                                  field=f"member {info.filename!r}") from e
            raise
        array = np.frombuffer(buf, dtype=dtype)
        return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)

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
