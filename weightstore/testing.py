"""Helpers for testing codecs against damaged and hostile files.

Used by the test suite's fuzzing tests and by ``scripts/fuzz.py``; a third-party
codec can use them the same way. Nothing here is imported by the library itself.

- :func:`random_weights` builds a random set of tensors (names, dtypes, shapes
  including 0-d and empty, every bit pattern of the values) from a seed.
- The mutation functions (:func:`flip`, :func:`truncate`, :func:`insert`,
  :func:`delete`, :func:`edit_number`, :func:`set_int`) each damage a file's
  bytes in one way, with explicit parameters, so a property-based test can draw
  them; :func:`random_mutation` draws one from a :class:`random.Random`.
- :func:`classify` loads damaged bytes and says what happened: the library
  refused them with its own error, they loaded to the same content (the change
  hit bytes that carry nothing), they loaded to different content without a
  word (an undetected change), or something else escaped (a crash, a bug).
"""

from __future__ import annotations

import enum
import os
import pickletools
import random
import re
import signal
import string
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .api import load
from .codec import Codec
from .errors import WeightstoreError
from .model import DTYPES, Weights, arrays_identical, canonical_dtype, grouped_names

__all__ = [
    "random_weights", "random_name_parts", "same_content", "as_stored",
    "flip", "truncate", "insert", "delete", "edit_number", "set_int", "number_spans",
    "random_mutation", "MUTATIONS", "Outcome", "Result", "classify", "time_limit", "Hang",
    "all_dtypes", "file_name", "for_codec", "stored_name",
]

#: Characters names are drawn from: plain, separators the formats quote, non-ASCII.
NAME_CHARS = string.ascii_letters + string.digits + "_-. ,\"'\t\n\\:;#%=" + "äßβжあ€😀"
#: Integers written over binary length and offset fields by :func:`set_int`.
INTERESTING_INTS = (0, 1, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF,
                    1 << 31, 1 << 32, 1 << 40, (1 << 63) - 1, (1 << 64) - 1)
#: Decimal numbers written over numbers in text headers by :func:`edit_number`.
INTERESTING_NUMBERS = ("0", "1", "-1", "2", "255", "65536", "4294967296", "9" * 20,
                       "1e308", "-0", "00", "1.5")


def all_dtypes() -> list[str]:
    """Every dtype name this installation supports (bfloat16 when ml_dtypes is present)."""
    names = list(DTYPES)
    try:
        canonical_dtype("bfloat16")
    except WeightstoreError:
        pass
    else:
        names.append("bfloat16")
    return names


def random_name_parts(rng: random.Random) -> str:
    """One part of a tensor name: 1 to 12 characters from :data:`NAME_CHARS`."""
    return "".join(rng.choice(NAME_CHARS) for _ in range(rng.randint(1, 12)))


def _random_array(rng: random.Random, dtype_name: str, shape: tuple[int, ...]) -> np.ndarray:
    dtype = canonical_dtype(dtype_name)
    count = int(np.prod(shape)) if shape else 1
    nprng = np.random.default_rng(rng.getrandbits(64))
    if dtype.kind == "b":
        return nprng.integers(0, 2, count).astype(bool).reshape(shape)
    bits = nprng.integers(0, 1 << (8 * dtype.itemsize), count, dtype=np.uint64, endpoint=False)
    raw = bits.astype(f"<u{dtype.itemsize}").view(dtype)
    if dtype.kind == "f" or dtype_name == "bfloat16":
        # Mix in the values that break text formats: NaN (quiet, signalling, with a
        # payload, negative), infinities, signed zeros, subnormals, extremes.
        width = dtype.itemsize * 8
        specials = [0, 1 << (width - 1), 1, (1 << (width - 1)) | 1]
        if width == 16 and dtype_name == "float16":
            specials += [0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFE01, 0x7BFF, 0x0400]
        elif width == 16:  # bfloat16
            specials += [0x7F80, 0xFF80, 0x7FC0, 0x7F81, 0xFFC1, 0x7F7F, 0x0080]
        elif width == 32:
            specials += [0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001, 0xFFC00001,
                         0x7F7FFFFF, 0x00800000, 0x3DCCCCCD]
        else:
            specials += [0x7FF0000000000000, 0xFFF0000000000000, 0x7FF8000000000000,
                         0x7FF0000000000001, 0xFFF8000000000001, 0x7FEFFFFFFFFFFFFF,
                         0x0010000000000000, 0x3FB999999999999A]
        flat = raw.reshape(-1).copy()
        for i in range(flat.size):
            if rng.random() < 0.3:
                flat[i:i + 1] = np.array([rng.choice(specials)],
                                         dtype=f"<u{dtype.itemsize}").view(dtype)
        raw = flat
    return raw.reshape(shape)


def random_weights(rng: random.Random, *, max_tensors: int = 4, max_dims: int = 3,
                   max_dim: int = 5, dtypes: list[str] | None = None,
                   metadata: bool = True) -> Weights:
    """A random, valid set of weights: 0 to *max_tensors* tensors, groups, metadata."""
    choices = dtypes or all_dtypes()
    tensors: dict[str, np.ndarray] = {}
    groups = [random_name_parts(rng) for _ in range(2)]
    for _ in range(rng.randint(0, max_tensors)):
        leaf = random_name_parts(rng)
        name = f"{rng.choice(groups)}/{leaf}" if rng.random() < 0.3 else leaf
        if name in groups or any(name == g or name.startswith(g + "/") or g.startswith(name + "/")
                                 for g in tensors):
            continue
        if name.split("/")[0] in tensors:
            continue
        ndim = rng.randint(0, max_dims)
        shape = tuple(rng.choice([0, 1, 2, 3, max_dim]) if rng.random() < 0.5
                      else rng.randint(1, max_dim) for _ in range(ndim))
        tensors[name] = _random_array(rng, rng.choice(choices), shape)
    meta: dict[str, str] = {}
    if metadata:
        for _ in range(rng.randint(0, 2)):
            value = random_name_parts(rng) * rng.randint(0, 3)
            if value and rng.random() < 0.05:
                value += "\x00"
            meta[random_name_parts(rng)] = value
    try:
        return Weights(tensors, metadata=meta)
    except WeightstoreError:  # a name that is also a group: drop the groups
        return Weights({k.replace("/", "_"): v for k, v in tensors.items()}, metadata=meta)


def for_codec(cls: type[Codec], weights: Weights) -> Weights:
    """The part of *weights* that *cls* can hold: for a one-tensor format (``single_tensor``)
    the first tensor alone, without metadata; else *weights* itself."""
    if not getattr(cls, "single_tensor", False):
        return weights
    return Weights([next(iter(weights.items()))] if len(weights) else [])


def stored_name(cls: type[Codec], path: str | os.PathLike[str]) -> str:
    """The name a one-tensor format gives the tensor in *path*: the file's stem."""
    return Path(path).stem or Path(path).name


def as_stored(cls: type[Codec], weights: Weights,
              path: str | os.PathLike[str] | None = None) -> Weights:
    """*weights* as *cls* gives them back from *path*: reordered by group where it groups
    them; for a one-tensor format, the tensor named after the file."""
    if getattr(cls, "single_tensor", False) and path is not None and len(weights) == 1:
        return Weights({stored_name(cls, path): next(iter(weights.values()))})
    if not cls.groups_together:
        return weights
    return Weights([(k, weights[k]) for k in grouped_names(weights)], weights.metadata)


def same_content(a: Weights, b: Weights) -> bool:
    """Same names in order, bit-identical arrays, same metadata."""
    if list(a) != list(b) or a.metadata != b.metadata:
        return False
    return all(arrays_identical(a[k], b[k]) for k in a)


# --- mutations: each takes the file's bytes and explicit parameters ----------------


def flip(data: bytes, pos: int, xor: int) -> bytes:
    """XOR the byte at *pos* (modulo the length) with *xor* (1-255)."""
    if not data:
        return data
    out = bytearray(data)
    out[pos % len(out)] ^= (xor % 255) + 1
    return bytes(out)


def truncate(data: bytes, length: int) -> bytes:
    """The first *length* bytes (modulo the length: always shorter than *data*)."""
    return data[: length % len(data)] if data else data


def insert(data: bytes, pos: int, chunk: bytes) -> bytes:
    """*chunk* inserted before position *pos* (modulo the length + 1)."""
    pos %= len(data) + 1
    return data[:pos] + chunk + data[pos:]


def delete(data: bytes, pos: int, count: int) -> bytes:
    """*count* bytes (at least one) removed from position *pos* (modulo the length)."""
    if not data:
        return data
    pos %= len(data)
    return data[:pos] + data[pos + max(1, count):]


_NUMBER = re.compile(rb"-?\d+")


def number_spans(data: bytes, limit: int = 4096) -> list[tuple[int, int]]:
    """Where ASCII decimal numbers are, among the first *limit* bytes and the last *limit*.

    Text headers keep their sizes and shapes there (an ``.npy`` header's shape, a
    JSON document's ``shape``, a CSV row's shape and index, a safetensors header).
    """
    head = [m.span() for m in _NUMBER.finditer(data, 0, min(len(data), limit))]
    start = max(limit, len(data) - limit)
    tail = [m.span() for m in _NUMBER.finditer(data, start)] if start < len(data) else []
    return head + tail


def edit_number(data: bytes, which: int, new: str) -> bytes:
    """Replace the *which*-th number found by :func:`number_spans` with *new*."""
    spans = number_spans(data)
    if not spans:
        return flip(data, which, 1)
    a, b = spans[which % len(spans)]
    return data[:a] + new.encode("ascii") + data[b:]


def set_int(data: bytes, pos: int, width: int, value: int) -> bytes:
    """Overwrite *width* (4 or 8) bytes at *pos* with *value*, little-endian.

    Hits the binary length, offset and count fields of zip, HDF5 and similar headers.
    """
    if len(data) < width:
        return data
    pos %= len(data) - width + 1
    field = (value % (1 << (8 * width))).to_bytes(width, "little")
    return data[:pos] + field + data[pos + width:]


def _header_pos(rng: random.Random, data: bytes) -> int:
    """A position biased to where headers live: the first and last 512 bytes."""
    n = len(data)
    r = rng.random()
    if r < 0.35:
        return rng.randrange(min(n, 512))
    if r < 0.6:
        return max(0, n - 1 - rng.randrange(min(n, 512)))
    return rng.randrange(n)


def _m_flip(rng: random.Random, data: bytes) -> bytes:
    return flip(data, rng.randrange(len(data)), rng.randrange(255))


def _m_header_flip(rng: random.Random, data: bytes) -> bytes:
    return flip(data, _header_pos(rng, data), rng.randrange(255))


def _m_truncate(rng: random.Random, data: bytes) -> bytes:
    if rng.random() < 0.5:  # near the end, where trailers are
        return truncate(data, len(data) - 1 - rng.randrange(min(len(data), 64)))
    return truncate(data, rng.randrange(len(data)))


def _m_insert(rng: random.Random, data: bytes) -> bytes:
    chunk = rng.choice([b"\x00", b"\xff", b",", b"[", b'"', b"\r\n", b"0",
                        rng.randbytes(rng.randint(1, 16))])
    return insert(data, rng.randrange(len(data) + 1), chunk)


def _m_delete(rng: random.Random, data: bytes) -> bytes:
    return delete(data, rng.randrange(len(data)), rng.choice([1, 1, 2, 4, 8, 16]))


def _m_number(rng: random.Random, data: bytes) -> bytes:
    return edit_number(data, rng.randrange(1 << 16), rng.choice(INTERESTING_NUMBERS))


def _m_int(rng: random.Random, data: bytes) -> bytes:
    return set_int(data, _header_pos(rng, data), rng.choice([2, 4, 8]),
                   rng.choice(INTERESTING_INTS))


#: The mutation kinds :func:`random_mutation` draws from, by name.
MUTATIONS: dict[str, Callable[[random.Random, bytes], bytes]] = {
    "flip": _m_flip,
    "header-flip": _m_header_flip,
    "truncate": _m_truncate,
    "insert": _m_insert,
    "delete": _m_delete,
    "number": _m_number,
    "int-field": _m_int,
}


def random_mutation(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    """One mutation kind drawn from *rng* and applied: (its name, the changed bytes)."""
    if not data:  # a cut may leave nothing: only an insertion still changes it
        return "insert", insert(data, 0, rng.randbytes(rng.randint(1, 16)))
    kind = rng.choice(list(MUTATIONS))
    return kind, MUTATIONS[kind](rng, data)


# --- outcomes ------------------------------------------------------------------------


# --- structure-aware pickles: random opcode streams ---------------------------------------

#: Globals a random pickle names: the ones the reader allows and ones it must refuse.
_PICKLE_GLOBALS = (
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
    ("_codecs", "encode"), ("ml_dtypes", "bfloat16"), ("builtins", "getattr"),
    ("os", "system"), ("builtins", "eval"), ("numpy", "frombuffer"), ("copyreg", "_reconstructor"),
)
_PICKLE_TEXT = ("W", "b", "f4", "<f8", "|b1", "latin1", "<", "b", "C", "F", "", "__metadata__",
                "a/b", "x" * 300)


def _pickle_arg(rng: random.Random, kind: str) -> bytes:
    """Bytes for an opcode argument of pickletools' *kind*: valid, lying or absurd."""
    def n_bytes(width: int) -> int:
        return rng.choice([0, 1, 2, 3, 4, 8, 16, 255, rng.randrange(1 << min(8 * width, 31)),
                           (1 << (8 * width)) - 1])

    def sized(width: int, payload: bytes) -> bytes:
        payload = payload[: (1 << (8 * width)) - 1]
        length = len(payload) if rng.random() < 0.8 else n_bytes(width)
        return (length & ((1 << (8 * width)) - 1)).to_bytes(width, "little") + payload

    text = rng.choice(_PICKLE_TEXT).encode()
    simple = {
        "uint1": lambda: bytes([n_bytes(1) & 0xFF]),
        "uint2": lambda: (n_bytes(2) & 0xFFFF).to_bytes(2, "little"),
        "int4": lambda: rng.randrange(-(1 << 31), 1 << 31).to_bytes(4, "little", signed=True),
        "uint4": lambda: (n_bytes(4) & 0xFFFFFFFF).to_bytes(4, "little"),
        "uint8": lambda: n_bytes(8).to_bytes(8, "little"),
        "float8": lambda: os.urandom(8),
        "long1": lambda: sized(1, os.urandom(rng.choice([0, 1, 2, 8, 9]))),
        "long4": lambda: sized(4, os.urandom(rng.choice([0, 1, 8, 9]))),
        "string1": lambda: sized(1, text), "bytes1": lambda: sized(1, text),
        "unicodestring1": lambda: sized(1, text),
        "string4": lambda: sized(4, text), "bytes4": lambda: sized(4, text),
        "unicodestring4": lambda: sized(4, text),
        "bytes8": lambda: sized(8, text), "bytearray8": lambda: sized(8, text),
        "unicodestring8": lambda: sized(8, text),
        "decimalnl_short": lambda: str(rng.randrange(-9, 1 << 40)).encode() + b"\n",
        "decimalnl_long": lambda: str(rng.randrange(-9, 1 << 40)).encode() + b"L\n",
        "floatnl": lambda: b"1.5\n", "stringnl": lambda: b"'" + text + b"'\n",
        "unicodestringnl": lambda: text + b"\n", "stringnl_noescape": lambda: text + b"\n",
    }
    if kind == "stringnl_noescape_pair":
        module, name = rng.choice(_PICKLE_GLOBALS)
        return f"{module}\n{name}\n".encode()
    make = simple.get(kind)
    return make() if make is not None else b""


def random_pickle_ops(rng: random.Random, base: bytes) -> tuple[str, bytes]:
    """A pickle built from random opcodes with random (valid, lying or absurd) arguments:
    a whole stream, or a few opcodes spliced into, over or out of *base* at an opcode
    boundary. Returns (what was done, the bytes)."""
    ops = list(pickletools.opcodes)

    def stream(n: int) -> bytes:
        out = []
        for _ in range(n):
            op = rng.choice(ops)
            arg = _pickle_arg(rng, op.arg.name) if op.arg is not None else b""
            out.append(op.code.encode("latin1") + arg)
        return b"".join(out)

    if rng.random() < 0.4:
        return "opcode stream", b"\x80\x04" + stream(rng.randint(1, 300)) + b"."
    try:
        starts = [pos for _, _, pos in pickletools.genops(base)]
    except Exception:  # noqa: BLE001  (a base that is not a pickle: splice anywhere)
        starts = [0]
    at = rng.choice(starts)
    ends = [p for p in starts if p > at] or [len(base)]
    how = rng.choice(["insert", "replace", "delete", "repeat"])
    if how == "insert":
        return "opcodes inserted", base[:at] + stream(rng.randint(1, 5)) + base[at:]
    if how == "replace":
        return "opcode replaced", base[:at] + stream(rng.randint(1, 3)) + base[ends[0]:]
    if how == "delete":
        return "opcode deleted", base[:at] + base[ends[0]:]
    chunk = base[at:ends[0]]
    return "opcode repeated", base[:at] + chunk * rng.randint(2, 1000) + base[ends[0]:]


class Outcome(enum.Enum):
    """What loading a damaged file did."""

    #: The library raised its own error (:class:`WeightstoreError`).
    REFUSED = "refused"
    #: It loaded, and the content is the original's: the change hit bytes that carry nothing.
    HARMLESS = "harmless"
    #: It loaded, and the content differs from the original: damage went unnoticed.
    UNDETECTED = "undetected"
    #: Any other exception: a bug.
    CRASH = "crash"


@dataclass
class Result:
    """An :class:`Outcome` with a one-line detail (the error or what changed)."""

    outcome: Outcome
    detail: str = ""


def file_name(cls: type[Codec], stem: str = "case") -> str:
    """A file name with the codec's usual extension."""
    return f"{stem}{cls.extensions[0] if cls.extensions else '.bin'}"


def classify(cls: type[Codec], data: bytes, clean: Weights, folder: str | os.PathLike[str],
             stem: str = "case", **load_options: Any) -> Result:
    """Write *data* to a file in *folder*, load it as *cls*, and compare with *clean*."""
    path = Path(folder) / file_name(cls, stem)
    path.write_bytes(data)
    try:
        got = load(path, cls.name, **load_options)
    except WeightstoreError as e:
        if str(path) not in str(e) and path.name not in str(e):
            return Result(Outcome.CRASH, f"error does not name the file: {e}")
        return Result(Outcome.REFUSED, f"{type(e).__name__}: {e}")
    except Hang:
        raise
    except BaseException as e:  # noqa: BLE001  (everything else is what we are looking for)
        if isinstance(e, KeyboardInterrupt | SystemExit):
            raise
        return Result(Outcome.CRASH, f"{type(e).__name__}: {e}")
    finally:
        path.unlink(missing_ok=True)
    clean = as_stored(cls, clean, path)  # a one-tensor format names it after the file
    if same_content(got, clean):
        return Result(Outcome.HARMLESS)
    return Result(Outcome.UNDETECTED, _difference(clean, got))


def _difference(clean: Weights, got: Weights) -> str:
    if list(clean) != list(got):
        return f"names {list(clean)[:4]} became {list(got)[:4]}"
    if clean.metadata != got.metadata:
        return "metadata changed"
    for k in clean:
        if not arrays_identical(clean[k], got[k]):
            return f"tensor {k!r} changed"
    return "content changed"


class Hang(Exception):
    """A case ran past its time limit."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` in the main thread after *seconds* (Unix; a guard, not a measure).

    Interrupts Python code; a loop inside C code is interrupted when it returns, so a
    driver that must survive real hangs runs cases in a worker process it can kill.
    """
    if not hasattr(signal, "setitimer"):  # pragma: no cover - not on Windows
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
