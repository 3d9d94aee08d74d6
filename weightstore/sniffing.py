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
           "MATRIX_MANIFEST", "UTF8_BOM", "MAX_SAFETENSORS_HEADER", "GGUF_MAGIC", "KERAS_MEMBERS",
           "is_safetensors", "is_csv", "is_json", "is_pickle", "is_keras_archive", "is_onnx",
           "is_pytorch", "PYTORCH_LEGACY_HEAD", "GZIP_MAGIC", "NPY_MAGIC",
           "describe_zip", "describe_unknown", "TF_INDEX_MAGIC"]

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
#: gzip with deflate, the only method gzip defines.
GZIP_MAGIC = b"\x1f\x8b\x08"
#: numpy's .npy magic.
NPY_MAGIC = b"\x93NUMPY"
#: How a legacy (pre-zip) torch.save file starts: pickle protocol 2, then LONG1 of the
#: 10-byte magic number 0x1950a86a20f9469cfc6c.
PYTORCH_LEGACY_HEAD = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
#: The last 8 bytes of a TensorFlow checkpoint's ``.index`` file (a LevelDB table).
TF_INDEX_MAGIC = (0xDB4775248B80FB57).to_bytes(8, "little")
#: The header row of our CSV layout (weightstore/codecs/csv_codec.py).
CSV_HEADER = b"tensor,dtype,shape,index,value"
#: The first member of the CSV codec's matrix layout, a zip (weightstore/codecs/_matrix.py).
MATRIX_MANIFEST = b"weightstore-matrix.json"
UTF8_BOM = b"\xef\xbb\xbf"
#: The largest safetensors header length the content test believes (the default
#: ``Limits.max_header_bytes``; the file's own size is checked on reading).
MAX_SAFETENSORS_HEADER = 100 << 20
#: GGUF's magic (llama.cpp's format, weightstore/codecs/gguf_codec.py).
GGUF_MAGIC = b"GGUF"
#: The members a Keras archive (.keras) starts with, in the order Keras writes them.
KERAS_MEMBERS = (b"metadata.json", b"config.json", b"model.weights.h5")
_LENGTH = struct.Struct("<Q")


def is_safetensors(head: bytes) -> bool:
    """A plausible little-endian header length (at least ``{}``), then ``{``. Bytes 4-7
    of such a length are zero, which no text format starts with."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (length,) = _LENGTH.unpack_from(head)
    return 2 <= length <= MAX_SAFETENSORS_HEADER


def is_csv(head: bytes) -> bool:
    """Our CSV layout's header row, after an optional UTF-8 byte order mark; or a zip whose
    first member is the matrix layout's manifest (its name at offset 30 of the local
    header, after the 2-byte name length at offset 26)."""
    if head.startswith(ZIP_MAGICS[0]) and len(head) >= 30:
        (length,) = struct.unpack_from("<H", head, 26)
        return head[30:30 + length] == MATRIX_MANIFEST
    return head.removeprefix(UTF8_BOM).startswith(CSV_HEADER)


def is_json(head: bytes) -> bool:
    """A JSON object: ``{`` after an optional byte order mark and white space."""
    return head.lstrip(UTF8_BOM + b" \t\r\n").startswith(b"{")


def is_pickle(head: bytes) -> bool:
    """The PROTO opcode of pickle protocols 2 to 5."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def is_keras_archive(head: bytes) -> bool:
    """A zip whose first member is one of a Keras archive's (a ``.keras`` file, never to be
    taken for an npz)."""
    if not head.startswith(b"PK\x03\x04") or len(head) < 30:
        return False
    (name_len,) = struct.unpack_from("<H", head, 26)
    return head[30:30 + name_len] in KERAS_MEMBERS


def is_onnx(head: bytes) -> bool:
    """An ONNX ModelProto as onnx serializes it: field 1 (``ir_version``, a small varint)
    first, then a field from 2 to 8 (``producer_name`` ... ``opset_import``). 0x08 starts
    no text format, and no other format's magic."""
    return (len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 64
            and head[2] in (0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42))


def is_pytorch(head: bytes) -> bool:
    """A torch.save checkpoint: a zip whose first member is ``<archive>/data.pkl`` (as
    torch writes it), or the legacy layout's magic number."""
    if head.startswith(PYTORCH_LEGACY_HEAD):
        return True
    if not head.startswith(ZIP_MAGICS[0]) or len(head) < 30:
        return False
    name = head[30:30 + int.from_bytes(head[26:28], "little")]
    return name == b"data.pkl" or (name.endswith(b"/data.pkl") and name.count(b"/") == 1)


# --- saying what a file is, when no codec reads it ---------------------------------------


def describe_zip(names: list[str]) -> tuple[str, str]:
    """What a zip archive holding members *names* is, and what to do with it:
    ``(what, hint)``. Used when a zip is not the format it was read as (an npz that
    holds other members), so the message names the archive, not the first odd member."""
    tops = {n.split("/", 1)[0] + "/" for n in names if "/" in n}
    for top in sorted(tops) + [""]:
        if f"{top}data.pkl" in names:
            if f"{top}constants.pkl" in names or any(n.startswith(f"{top}code/") for n in names):
                return (f"a TorchScript archive ({top}code/, {top}constants.pkl)",
                        "weightstore reads torch.save checkpoints, not scripted modules: "
                        "load it with torch.jit.load and torch.save its state_dict()")
            return (f"a PyTorch checkpoint ({top}data.pkl)",
                    "read it as format 'pytorch', or name it .pt")
    if "model.weights.h5" in names or "config.json" in names and "metadata.json" in names:
        return ("a Keras archive (.keras: config.json, model.weights.h5)",
                "read it as format 'keras', or name it .keras")
    if any(n.endswith("saved_model.pb") for n in names):
        return ("a zipped TensorFlow SavedModel (saved_model.pb)",
                "weightstore does not read TensorFlow models: export the variables from "
                "TensorFlow (tf.train.load_checkpoint) to .npz or .safetensors")
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return (f"a zip archive of {len(names)} members ({shown or 'none'})",
            "weightstore.formats() lists the formats it reads")


def describe_unknown(head: bytes, tail: bytes, name: str) -> str:
    """A hint naming what a file no codec claims seems to be (*head*: its first bytes,
    *tail*: its last 8, *name*: its file name), and what to do; a generic hint when it is
    nothing we know."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1].lower()
    if tail == TF_INDEX_MAGIC or name.endswith(".index") or (".data-" in name
                                                             and "-of-" in name):
        return ("this looks like a TensorFlow checkpoint (model.ckpt.index + "
                ".data-NNNNN-of-NNNNN), which weightstore does not read: load it with "
                "tf.train.load_checkpoint and save the variables as .npz or .safetensors")
    if head[4:8] == b"TFL3":
        return "this is a TensorFlow Lite model (.tflite), which weightstore does not read"
    if name.endswith((".pb", ".pbtxt")):
        return ("this looks like a TensorFlow graph (.pb), which weightstore does not read: "
                "export the variables from TensorFlow as .npz or .safetensors")
    if head[257:262] == b"ustar":
        return ("this is a tar archive (a PyTorch checkpoint from before torch 0.4 is one): "
                "unpack it, or load it with torch and save it again")
    return "pass format=NAME (from_format=NAME in convert); weightstore.formats() lists them"
