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

import struct
import tokenize
import zipfile
import zlib
from typing import IO, NamedTuple

import numpy as np
import orjson

from ..codec import (
    DEFAULT_LIMITS,
    Budget,
    Codec,
    Limits,
    Option,
    Skipped,
    TensorSource,
    read_through_open,
    report_skipped,
)
from ..errors import ChecksumError, FormatError, UnsupportedError
from ..fileio import RawFile, crc32
from ..integrity import (
    HINT,
    format_crc,
    header_crc32,
    header_entries,
    parse_crc,
)
from ..model import TensorInfo, Weights, dtype_name, little_endian
from ..sniffing import ZIP_MAGICS, describe_zip

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
        # version 3.0 (a UTF-8 header): numpy 2 keeps its reader in _format_impl
        impl = getattr(fmt, "_read_array_header", None)
        if impl is None:
            from numpy.lib import _format_impl

            impl = _format_impl._read_array_header
        return impl(member, version)
    except (ValueError, EOFError, SyntaxError, tokenize.TokenError) as e:  # numpy's header parse
        raise FormatError(f"bad .npy header ({e})", path=path, field=f"member {name!r}") from e


class _Window:
    """The *size* bytes at *offset* of a raw file, read in the small pieces numpy's
    header parser asks for: only the header is read (a seekable zstd file then
    decompresses only the frame it lies in, not 64 KiB of data after it)."""

    def __init__(self, raw: RawFile, offset: int, size: int) -> None:
        self._raw, self._offset, self._size = raw, offset, size
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        n = self._size - self.pos if n < 0 else min(n, self._size - self.pos)
        data = self._raw.pread(self._offset + self.pos, n)
        self.pos += len(data)
        return data


class NpzCodec(Codec):
    """numpy ``.npz``: a zip of ``.npy`` files, one per tensor."""

    name = "npz"
    extensions = (".npz",)
    checksums = True
    streams_writes = True
    description = "numpy .npz (zip of .npy), plain or deflate-compressed; numpy.load reads it"
    options = (
        Option("compressed", bool, False, "deflate each member (like numpy.savez_compressed)"),
        Option("level", int, 6, "deflate level when compressed (1 fastest .. 9 smallest)",
               min=1, max=9),
    )
    compressed: bool
    level: int

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return head.startswith(ZIP_MAGICS)

    def write(self, weights: Weights, fileobj: IO[bytes], *, path: str) -> None:
        method = zipfile.ZIP_DEFLATED if self.compressed else zipfile.ZIP_STORED
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
                             compresslevel=self.level if self.compressed else None) as zf:
            for name, array in weights.items():
                if array.dtype.name == "bfloat16":
                    raise UnsupportedError(path=path, field=f"tensor {name!r}",
                                           expected="a dtype numpy.load can read back",
                                           found="bfloat16")
                with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, little_endian(array), allow_pickle=False)
                del array  # from a lazy source: one tensor in memory at a time
            zf.comment = comment

    read = read_through_open

    def open(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS,
             verify: bool = True, budget: Budget | None = None) -> TensorSource:
        """The members' headers only (and the header checksum); each tensor is read, its
        zip CRC-32 checked, or memory-mapped, on access."""
        try:
            zf = zipfile.ZipFile(fileobj)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise FormatError(f"not a valid zip archive ({e})", path=path) from e
        except NotImplementedError as e:  # zipfile's word for a feature it lacks
            raise FormatError(f"uses a zip feature this reader lacks ({e})", path=path) from e
        try:
            return _NpzSource(zf, RawFile(fileobj, path), path, limits, verify,
                              Budget.of(budget, limits, fileobj))
        except BaseException:
            zf.close()
            raise

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
            head = comment[:len(COMMENT_PREFIX)]
            looks_ours = comment and (b"weightstore".startswith(comment[:11])
                                      or comment.startswith(b"weight")
                                      or b"store:" in comment[:24]
                                      or b'"header_crc' in comment
                                      or b'"metadata":' in comment
                                      or sum(a == b for a, b in zip(head, COMMENT_PREFIX,
                                                                    strict=False)) >= 6)
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
            # header_crc32 is optional (docs/formats.md: files without it load unverified)
            if not isinstance(doc, dict) or not {"metadata"} <= set(doc) <= {"metadata",
                                                                            "header_crc32"}:
                raise FormatError(path=path, field="zip comment",
                                  expected='{"metadata": {...}} with an optional '
                                  '"header_crc32": "..."', found=doc)
            if "header_crc32" in doc:
                stored = parse_crc(doc["header_crc32"], path, "zip comment header_crc32")
            doc = doc["metadata"]
        if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
            raise FormatError(path=path, field="zip comment metadata",
                              expected="a JSON object of strings")
        return doc, stored


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

    def __init__(self, zf: zipfile.ZipFile, raw: RawFile, path: str, limits: Limits,
                 verify: bool, budget: Budget) -> None:
        self._zf, self._raw, self._path, self._verify = zf, raw, path, verify
        self._limits = limits
        infos = [i for i in zf.infolist() if not i.is_dir()]
        NpzCodec._check_layout(zf, raw.fileobj, path)
        if len(infos) > limits.max_tensors:
            raise FormatError(path=path, field="members",
                              expected=f"at most {limits.max_tensors}", found=len(infos))
        NpzCodec._check_extents(infos, getattr(zf, "start_dir", raw.size), path)
        metas: list[TensorInfo] = []
        skipped: list[Skipped] = []
        self._members: dict[str, _Member] = {}
        for info in infos:
            if info.header_offset + info.compress_size > raw.size:
                raise FormatError(
                    path=path, field=f"member {info.filename!r}",
                    expected=f"data within the file's {raw.size:,} bytes",
                    found=f"{info.compress_size:,} bytes at offset {info.header_offset:,}",
                )
            if not info.filename.endswith(".npy"):
                what, hint = describe_zip([i.filename for i in infos])
                raise FormatError(path=path, field="zip members",
                                  expected="an npz file (only .npy members)", found=what,
                                  hint=hint)
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
            header = self._header(info, name, limits)
            if isinstance(header, Skipped):
                skipped.append(header)
                continue
            meta, member = header
            metas.append(meta)
            self._members[name] = member
        report_skipped(path, skipped, budget)
        deflated = [i for i in infos if i.compress_type != zipfile.ZIP_STORED
                    and i.filename[: -len(".npy")] in self._members]
        if deflated:  # what the members claim, against the operation's one allowance
            budget.add_compressed(sum(i.compress_size for i in deflated))
            budget.expand(sum(i.file_size for i in deflated), path=path,
                          field="deflated members")
        metadata, stored_header = NpzCodec._read_comment(zf.comment, path)
        super().__init__(metas, metadata)
        self._metas = {m.name: m for m in metas}
        if verify and stored_header is not None:  # names, dtypes, shapes: known already
            actual = header_crc32([(m.name, dtype_name(m.dtype) or str(m.dtype), m.shape)
                                   for m in metas], metadata)
            if actual != stored_header:
                raise ChecksumError(path=path, field="header (names, dtypes, shapes, metadata)",
                                    expected=f"CRC-32 {format_crc(stored_header)}",
                                    found=f"CRC-32 {format_crc(actual)}", hint=HINT)

    @staticmethod
    def _where(info: zipfile.ZipInfo) -> str:
        return f"member {info.filename!r}"

    def _header(self, info: zipfile.ZipInfo, name: str,
                limits: Limits) -> tuple[TensorInfo, _Member] | Skipped:
        """The member's tensor and where it lies, or :class:`Skipped` for an array of a
        dtype weightstore does not hold (complex, strings, objects: never unpickled)."""
        path, where = self._path, self._where(info)
        data_offset = -1
        try:
            if info.compress_type == zipfile.ZIP_STORED:
                if info.compress_size != info.file_size:
                    raise FormatError(path=path, field=where,
                                      expected=f"{info.file_size:,} stored bytes",
                                      found=f"{info.compress_size:,}")
                data_offset = self._stored_data_offset(info)
                head = _Window(self._raw, data_offset, info.file_size)
                shape, fortran, dtype = _read_header(head, path, info.filename)
                header_len = head.pos
            else:
                with self._zf.open(info) as member:
                    shape, fortran, dtype = _read_header(member, path, info.filename)
                    header_len = member.tell()
        except zipfile.BadZipFile as e:
            raise FormatError(f"corrupted member ({e})", path=path, field=where) from e
        except (OSError, EOFError) as e:
            raise FormatError(f"unreadable member ({e})", path=path, field=where) from e
        except (NotImplementedError, RuntimeError) as e:  # a method or flag zipfile lacks
            raise FormatError(f"uses a zip feature this reader lacks ({e})", path=path,
                              field=where) from e
        except zlib.error as e:
            raise FormatError(f"corrupted compressed data ({e})", path=path, field=where) from e
        if dtype_name(dtype) is None:
            return Skipped(name, f"a {dtype} array of shape {tuple(shape)}"
                           if dtype.kind != "O" else
                           f"an object array of shape {tuple(shape)}, never unpickled")
        meta = TensorInfo(name, dtype, tuple(shape))
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
        info = member.info
        if member.data_offset < 0:  # deflated: zipfile inflates it and checks its CRC
            return NpzCodec._read_member(self._zf, info, self._path, name, self._limits, 0,
                                         self._verify)
        if mmap and self._raw.can_mmap:
            return self._raw.map_array(member.data_offset, meta.dtype, meta.shape,
                                       fortran=member.fortran).view(np.ndarray)
        crc = None
        if self._verify:  # zip's CRC covers the .npy header and the data
            header = self._raw.pread(member.data_offset - member.header_len, member.header_len)
            crc = (crc32(header), info.CRC)
        try:
            return self._raw.read_array(member.data_offset, meta.dtype, meta.shape,
                                        fortran=member.fortran, field=f"tensor {name!r}",
                                        crc=crc)
        except ChecksumError as e:
            raise ChecksumError(path=self._path, field=f"tensor {name!r}",
                                expected=f"the zip CRC-32 {info.CRC:08x} of member "
                                f"{info.filename!r}", found="a mismatch", hint=HINT) from e

    def close(self) -> None:
        self._zf.close()
