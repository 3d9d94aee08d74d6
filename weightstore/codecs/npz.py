"""npz: numpy's zip of ``.npy`` members, plain or deflate-compressed.

Each tensor is the member ``<name>.npy`` (``/`` in a name is a folder in the
zip, which ``numpy.load`` gives back as the same key). Files load with
``numpy.load(path)`` and ``allow_pickle=False``. The zip archive comment, which
``numpy.load`` ignores, is ``weightstore:`` followed by a JSON object
``{"metadata": {...strings...}, "header_crc32": "<8 hex digits>"}`` (at most
65,535 bytes in all): the metadata and the header checksum of
:mod:`weightstore.integrity` (names, dtypes, shapes, metadata). Files written by
weightstore 0.1 have ``weightstore-metadata:`` and the metadata object alone (or
no comment); they still load.

Integrity: zip stores a CRC-32 of every member (the ``.npy`` header and the
values), which is checked as the member is read; a mismatch is a
:class:`~weightstore.errors.ChecksumError` naming the tensor, and so is a header
checksum that does not match. ``verify=False`` skips both.

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
from ..errors import ChecksumError, FormatError, UnsupportedError, WeightsError
from ..integrity import (
    HINT,
    format_crc,
    header_crc32,
    header_entries,
    parse_crc,
    verify_header,
)
from ..model import Weights, dtype_name, little_endian
from ..registry import register

COMMENT_PREFIX = b"weightstore:"
#: What weightstore 0.1 wrote: the metadata object alone, no checksum.
OLD_COMMENT_PREFIX = b"weightstore-metadata:"
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
    checksums = True
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
        header = format_crc(header_crc32(header_entries(weights), weights.metadata))
        comment = COMMENT_PREFIX + orjson.dumps({"metadata": weights.metadata,
                                                 "header_crc32": header})
        if len(comment) > _MAX_COMMENT:
            raise UnsupportedError(
                path=path, field="metadata",
                expected=f"at most {_MAX_COMMENT:,} bytes of zip comment in npz",
                found=f"{len(comment):,} bytes",
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

    def read(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS,
             verify: bool = True) -> Weights:
        try:
            zf = zipfile.ZipFile(fileobj)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise FormatError(f"not a valid zip archive ({e})", path=path) from e
        except NotImplementedError as e:  # zipfile's word for a feature it lacks
            raise FormatError(f"uses a zip feature this reader lacks ({e})", path=path) from e
        with zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            self._check_layout(zf, fileobj, path)
            if len(infos) > limits.max_tensors:
                raise FormatError(path=path, field="members",
                                  expected=f"at most {limits.max_tensors}", found=len(infos))
            archive_size = fileobj.seek(0, 2)
            self._check_extents(infos, getattr(zf, "start_dir", archive_size), path)
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
                tensors[name] = self._read_member(zf, info, path, name, limits, total, verify)
                total += tensors[name].nbytes
            metadata, stored_header = self._read_comment(zf.comment, path)
        try:
            weights = Weights(tensors, metadata=metadata)
        except WeightsError as e:
            raise FormatError(f"holds invalid weights: {e}", path=path) from e
        if verify and stored_header is not None:
            verify_header(path, stored_header, weights, metadata)
        return weights

    @staticmethod
    def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str, name: str,
                     limits: Limits, total: int, verify: bool) -> np.ndarray:
        try:
            with zf.open(info) as member:
                if not verify and hasattr(member, "_expected_crc"):
                    # zipfile checks a member's CRC-32 as it reaches its end and offers no
                    # switch; this is how it skips the check itself when it has no CRC
                    member._expected_crc = None
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
                got = 0
                with memoryview(buf) as view:  # released even when a read fails
                    while got < nbytes:
                        with view[got:] as rest:
                            n = member.readinto(rest)
                        if not n:
                            raise FormatError(path=path, field=f"member {info.filename!r}",
                                              expected=f"{nbytes:,} data bytes",
                                              found=f"{got:,}")
                        got += n
                if member.read(1):  # also makes zipfile reach the end and check the CRC
                    raise FormatError(path=path, field=f"member {info.filename!r}",
                                      expected=f"{nbytes:,} data bytes", found="more")
        except zipfile.BadZipFile as e:
            if "CRC" in str(e):
                raise ChecksumError(path=path, field=f"tensor {name!r}",
                                    expected=f"the zip CRC-32 {info.CRC:08x} of member "
                                    f"{info.filename!r}", found="a mismatch", hint=HINT) from e
            raise FormatError(f"corrupted member ({e})", path=path,
                              field=f"member {info.filename!r}") from e
        except (OSError, EOFError) as e:  # zlib.error is an Exception; see below
            raise FormatError(f"unreadable member ({e})", path=path,
                              field=f"member {info.filename!r}") from e
        except (NotImplementedError, RuntimeError) as e:  # a compression method or flag
            # zipfile lacks, or encryption (RuntimeError: "password required")
            raise FormatError(f"uses a zip feature this reader lacks ({e})", path=path,
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
    def _check_extents(infos: list[zipfile.ZipInfo], end: int, path: str) -> None:
        """Refuse members whose data overlap, or run into the central directory.

        A zip bomb without nesting points many directory entries at one compressed
        stream; each member's bytes (local header, name, data) must end before the
        next member starts. The local header's extra field is not counted (its
        length is only in the local header), so the check never refuses a valid file.
        """
        ordered = sorted(infos, key=lambda i: i.header_offset)
        for i, info in enumerate(ordered):
            nxt = ordered[i + 1] if i + 1 < len(ordered) else None
            encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
            try:
                name_len = len(info.orig_filename.encode(encoding))
            except UnicodeEncodeError:
                name_len = 0
            stop = info.header_offset + 30 + name_len + info.compress_size
            limit = nxt.header_offset if nxt is not None else end
            if stop > limit:
                raise FormatError(
                    path=path, field=f"member {info.filename!r}",
                    expected=f"its bytes to end by offset {limit:,} (where "
                    + (f"member {nxt.filename!r}" if nxt is not None else "the directory")
                    + " starts)",
                    found=f"{info.compress_size:,} bytes of data from offset "
                    f"{info.header_offset:,}"
                    + (" (overlapping members)" if nxt is not None else ""),
                )

    @staticmethod
    def _check_layout(zf: zipfile.ZipFile, fileobj: IO[bytes], path: str) -> None:
        """Refuse bytes before the first member and after the archive comment (zipfile
        tolerates both silently: a comment length cut short hides the rest of it)."""
        end = fileobj.seek(0, 2)
        tail = 22 + len(zf.comment)
        fileobj.seek(max(0, end - tail))
        record = fileobj.read(tail)
        if (len(record) != tail or not record.startswith(b"PK\x05\x06")
                or int.from_bytes(record[20:22], "little") != len(zf.comment)):
            raise FormatError(path=path, field="zip layout",
                              expected="the end record and its comment at the end of the file",
                              found="other bytes after them, or a comment of another length")
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
    def _read_comment(comment: bytes, path: str) -> tuple[dict[str, str], int | None]:
        """The metadata and the header checksum (None if the file has none)."""
        for prefix in (COMMENT_PREFIX, OLD_COMMENT_PREFIX):
            if comment.startswith(prefix):
                break
        else:
            looks_ours = comment and (b"weightstore".startswith(comment[:11])
                                      or comment.startswith(b"weight")
                                      or b'"header_crc32"' in comment)
            if looks_ours:
                # another tool's comment is ignored, but not ours with a damaged prefix,
                # which would silently drop the metadata and its checksum
                raise FormatError(path=path, field="zip comment",
                                  expected=f"{COMMENT_PREFIX!r} followed by JSON",
                                  found=comment[:32])
            return {}, None
        try:
            doc = orjson.loads(comment[len(prefix):])
        except orjson.JSONDecodeError as e:
            raise FormatError(f"metadata comment is not JSON ({e})", path=path,
                              field="zip comment") from e
        stored = None
        if prefix == COMMENT_PREFIX:
            if not isinstance(doc, dict) or set(doc) != {"metadata", "header_crc32"}:
                raise FormatError(path=path, field="zip comment",
                                  expected='{"metadata": {...}, "header_crc32": "..."}',
                                  found=doc)
            stored = parse_crc(doc["header_crc32"], path, "zip comment header_crc32")
            doc = doc["metadata"]
        if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
            raise FormatError(path=path, field="zip comment metadata",
                              expected="a JSON object of strings")
        return doc, stored
