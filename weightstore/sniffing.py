"""What a file is, from its first bytes, without importing the codec that reads it.

Each built-in codec's content test lives here, beside the magic numbers it looks for,
so that the registry (:mod:`weightstore.registry`) can tell a file's format and then
import only the codec that claims it. The codec modules take their magic numbers from
here, so the test and the reader cannot drift apart. Every test is given at most
:data:`SNIFF_BYTES` bytes and must not raise.
"""

from __future__ import annotations

import struct

__all__ = ["SNIFF_BYTES", "HDF5_SIGNATURE", "WSC_MAGIC", "ZSTD_MAGIC", "ZIP_MAGICS", "CSV_HEADER",
           "UTF8_BOM", "MAX_SAFETENSORS_HEADER", "is_safetensors", "is_csv", "is_json",
           "is_pickle"]

#: How many leading bytes a content test is given.
SNIFF_BYTES = 512

#: HDF5's format signature (at offset 0 for every file h5py writes).
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Our compact format's magic (weightstore/codecs/wsc.py).
WSC_MAGIC = b"\x89WSC\r\n\x1a\n"
#: A Zstandard frame's magic number, little-endian 0xFD2FB528.
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: A zip archive starts with a local file header, or is empty (end of central directory).
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
#: The header row of our CSV layout (weightstore/codecs/csv_codec.py).
CSV_HEADER = b"tensor,dtype,shape,index,value"
UTF8_BOM = b"\xef\xbb\xbf"
#: The largest safetensors header length the content test believes (the default
#: ``Limits.max_header_bytes``; the file's own size is checked on reading).
MAX_SAFETENSORS_HEADER = 100 << 20
_LENGTH = struct.Struct("<Q")


def is_safetensors(head: bytes) -> bool:
    """A plausible little-endian header length (at least ``{}``), then ``{``. Bytes 4-7
    of such a length are zero, which no text format starts with."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (length,) = _LENGTH.unpack_from(head)
    return 2 <= length <= MAX_SAFETENSORS_HEADER


def is_csv(head: bytes) -> bool:
    """Our CSV layout's header row, after an optional UTF-8 byte order mark."""
    return head.removeprefix(UTF8_BOM).startswith(CSV_HEADER)


def is_json(head: bytes) -> bool:
    """A JSON object: ``{`` after an optional byte order mark and white space."""
    return head.lstrip(UTF8_BOM + b" \t\r\n").startswith(b"{")


def is_pickle(head: bytes) -> bool:
    """The PROTO opcode of pickle protocols 2 to 5."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5
