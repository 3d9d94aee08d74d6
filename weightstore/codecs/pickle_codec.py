"""pickle: the book's format, read by a restricted pickle machine of our own.

Reading admits only what a weight file needs: dicts (plain or ``OrderedDict``),
lists, tuples, numpy arrays, dtypes and scalars, from pickle protocols 2 to 5,
whether numpy pickled them under ``numpy.core`` (numpy 1.x) or ``numpy._core``
(numpy 2.x). Any other global (``os.system``, ``builtins.eval``,
``subprocess.Popen``, ...) is refused with :class:`~weightstore.errors.UnsafeFileError`
naming it, before anything from the file runs. Arrays of a dtype weightstore does not
hold (complex, fixed-length text or bytes, ``object``) are never made: they are skipped
and listed in one :class:`~weightstore.errors.SkippedEntriesWarning` (``strict`` refuses
the file instead); plain numbers, strings, booleans and ``None`` become metadata, and
lists and tuples are named by index (``layers/0``), as :func:`_collect` says.

The opcodes are run by :class:`_Machine`, not :class:`pickle.Unpickler`: it charges
every object, container slot and memo entry to the operation's budget before making
it, checks every length against the bytes left, admits only string dict keys, and
measures nesting as it builds (see its docstring and docs/security.md). Opcodes a
pickle of arrays never needs (``INST``, ``OBJ``, ``NEWOBJ``, ``EXT*``, persistent
ids, sets, out-of-band buffers, protocol 0's text opcodes) are refused by name.

:meth:`PickleCodec.open` runs the same machine once with every byte string of 64 KiB or
more left in the file (a seek over it, its offset kept): an array's data is such a string
in protocols 3 to 5, so each array is then read from its offset on access, and converting
a pickle holds one tensor at a time.

Writing gives a plain dict of arrays (nested dicts for ``/`` in names) that
``pickle.load`` returns as is, as the book's code expects. Metadata, when there is
any, is stored under the key ``"__metadata__"`` as a dict of strings. The pickler keeps
no memo (nothing is shared) and fetches each tensor as it reaches it, so a lazily opened
source is written one tensor at a time.
"""

from __future__ import annotations

import contextvars
import io
import math
import pickle
import re
import struct
from collections import OrderedDict
from collections.abc import Callable
from typing import IO, Any, ClassVar

import numpy as np

from ..codec import (
    DEFAULT_LIMITS,
    Budget,
    Codec,
    Limits,
    LoadedSource,
    Option,
    Skipped,
    TensorSource,
    file_size,
    read_all,
    report_skipped,
    warn_if_regrouped,
)
from ..errors import FormatError, LimitError, UnsafeFileError, WeightsError, WeightstoreError
from ..fileio import RawFile
from ..model import TensorInfo, Weights, canonical_dtype, to_storage, weights_from_file
from ..sniffing import is_pickle
from ._unpickle import Frozen

#: The key under which metadata is stored in the top-level dict.
METADATA_KEY = "__metadata__"

# (module, name) pairs a weight pickle may reference, and nothing else.
_ALLOWED: dict[tuple[str, str], Any] = {}

#: dtype codes numpy writes for the core dtypes ("f4", "<i8", "b1", ...).
_DTYPE_CODE = re.compile(r"[<>=|]?(?:b1|\?|[iu][1248]|f[248])")
#: dtype codes of arrays weightstore does not hold but recognises, to skip them: complex,
#: fixed-length bytes and text, objects (whose items the machine below has made safely).
_UNHELD_CODE = re.compile(r"[<>=|]?(?:c(?:8|16|32)|[SU][0-9]{1,6}|O8?)")
#: Most dimensions numpy allows.
_MAX_DIMS = 64
#: The budget and path of the read in progress, for the array builders below.
_BUDGET: contextvars.ContextVar[tuple[Budget, str] | None] = contextvars.ContextVar(
    "weightstore_pickle_budget", default=None)


#: Stands for numpy.ndarray: only _reconstruct may use it, as its first argument.
_NDARRAY = Frozen("numpy.ndarray")
#: Stands for ml_dtypes.bfloat16, the scalar type bfloat16 dtypes are pickled with.
_BFLOAT16 = Frozen("ml_dtypes.bfloat16")


def _allowed() -> dict[tuple[str, str], Any]:
    if not _ALLOWED:
        for core in ("numpy.core", "numpy._core"):
            _ALLOWED[(f"{core}.multiarray", "_reconstruct")] = Frozen(
                f"{core}.multiarray._reconstruct", _reconstruct)
            _ALLOWED[(f"{core}.multiarray", "scalar")] = Frozen(
                f"{core}.multiarray.scalar", _scalar)
            _ALLOWED[(f"{core}.numeric", "_frombuffer")] = Frozen(
                f"{core}.numeric._frombuffer", _frombuffer)
        _ALLOWED[("numpy", "ndarray")] = _NDARRAY
        _ALLOWED[("numpy", "dtype")] = Frozen("numpy.dtype", _DtypeSpec)
        _ALLOWED[("collections", "OrderedDict")] = Frozen("collections.OrderedDict",
                                                           OrderedDict)
        _ALLOWED[("ml_dtypes", "bfloat16")] = _BFLOAT16
        # Protocol 2 stores bytes as _codecs.encode(str, "latin1"); only that use is allowed.
        _ALLOWED[("_codecs", "encode")] = Frozen("_codecs.encode", _latin1_encode)
    return _ALLOWED


# numpy's own pickling support (dtype.__setstate__, ndarray.__setstate__) is written
# for trusted input: damaged states crash it (segfaults, SystemError). So the names
# above stand for small builders of ours, which check every value the file gives
# and then make the dtype or the array with ordinary numpy calls.


def _refuse(field: str, expected: str, found: Any) -> FormatError:
    return FormatError(field=field, expected=expected, found=found)


class _DtypeSpec:
    """What ``numpy.dtype(code, align, copy)`` in a pickle builds: a checked dtype.

    Only the core dtypes are accepted; the state numpy then sets (byte order and
    sizes) is checked against the form numpy writes for them.
    """

    __slots__ = ("dtype", "held")

    def __init__(self, code: Any, align: Any = False, copy: Any = True) -> None:
        self.held = True
        if code is _BFLOAT16:
            self.dtype = canonical_dtype("bfloat16")  # needs ml_dtypes, else says so
        elif isinstance(code, str) and _DTYPE_CODE.fullmatch(code):
            self.dtype = np.dtype(code)
        elif isinstance(code, str) and _UNHELD_CODE.fullmatch(code):
            self.dtype, self.held = np.dtype(code), False  # an array to skip, never made
        else:
            raise UnsafeFileError(field="numpy dtype",
                                  expected="bool, (u)int8-64, float16/32/64 or bfloat16",
                                  found=code)

    def __setstate__(self, state: Any) -> None:
        where = "numpy dtype state"
        if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4):
            raise _refuse(where, "(3, byteorder, None, None, None, size, alignment, flags)",
                          state)
        order, subarray, names, fields, size, align, flags = state[1:8]
        if (order not in ("<", ">", "|", "=") or (subarray, names, fields) != (None,) * 3
                or size not in (-1, self.dtype.itemsize)
                or align not in (-1, self.dtype.alignment)
                or not isinstance(flags, int) or (len(state) == 9 and state[8] is not None
                                                  and not isinstance(state[8], dict))):
            raise _refuse(where, f"the state of a plain {self.dtype.name}", state)
        if self.dtype.itemsize > 1 and order in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(order)


def _dtype(value: Any, where: str) -> np.dtype:
    if not isinstance(value, _DtypeSpec):
        raise _refuse(where, "a numpy dtype", type(value).__name__)
    return value.dtype


class _Span:
    """Bytes the file holds at *offset*, left there: what :class:`_Machine` in lazy mode
    puts on the stack for a long ``BINBYTES``/``BYTEARRAY8`` instead of reading it."""

    __slots__ = ("offset", "size")

    def __init__(self, offset: int, size: int) -> None:
        self.offset, self.size = offset, size

    def __len__(self) -> int:
        return self.size


class _OnDisk:
    """An array whose bytes the file holds at :attr:`offset` (``open()``; read on access)."""

    __slots__ = ("dtype", "fortran", "offset", "shape")

    def __init__(self, offset: int, shape: tuple[int, ...], dtype: np.dtype,
                 fortran: bool) -> None:
        self.offset, self.shape, self.dtype, self.fortran = offset, shape, dtype, fortran

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _raw_bytes(value: Any, where: str) -> bytes | bytearray | _Span:
    if isinstance(value, _Span):
        return value
    if isinstance(value, str):  # written by Python 2: bytes were str, read as latin-1
        return value.encode("latin1")
    if isinstance(value, bytes | bytearray):
        return value
    if isinstance(value, pickle.PickleBuffer):
        return bytes(value.raw())
    raise _refuse(where, "bytes", type(value).__name__)


class _Unheld:
    """An array of a dtype weightstore does not hold (complex, text, objects): its
    description alone, for the warning that says it was skipped."""

    __slots__ = ("dtype", "shape")

    def __init__(self, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        self.dtype, self.shape = dtype, shape

    def describe(self) -> str:
        kind = "an object" if self.dtype.kind == "O" else f"a {self.dtype}"
        return f"{kind} array of shape {self.shape}"


def _build_array(shape: Any, dtype: Any, fortran: Any, raw: Any,
                 where: str) -> np.ndarray | _OnDisk | _Unheld:
    """An array of *shape* and *dtype* holding a copy of *raw*, after checking each (an
    :class:`_OnDisk` where *raw* was left in the file; for a dtype weightstore does not
    hold, an :class:`_Unheld` description: nothing is made)."""
    if (not isinstance(shape, tuple) or len(shape) > _MAX_DIMS
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                       for d in shape)):
        raise _refuse(f"{where} shape", f"a tuple of at most {_MAX_DIMS} non-negative ints",
                      shape)
    dt = _dtype(dtype, f"{where} dtype")
    if not isinstance(fortran, bool | int):
        raise _refuse(f"{where} order", "a flag", fortran)
    if not dtype.held:
        return _Unheld(dt, shape)  # the data (bytes, or the objects) is left unused
    data = _raw_bytes(raw, f"{where} data")
    count = 1
    for d in shape:
        count *= d
    if len(data) != count * dt.itemsize:
        raise _refuse(f"{where} data", f"{count * dt.itemsize:,} bytes for shape {shape} "
                      f"{dt.name}", f"{len(data):,} bytes")
    if isinstance(data, _Span):
        return _OnDisk(data.offset, shape, dt, bool(fortran))
    current = _BUDGET.get()
    if current is not None:  # the copy below: charged before it is made
        current[0].take(len(data), path=current[1], field=f"{where} ({shape} {dt.name})")
    flat = np.frombuffer(data, dtype=dt)
    array = flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
    return array.copy(order="K")  # writable and owning its data, as numpy's unpickling gives


class _ArraySpec:
    """What ``_reconstruct(ndarray, (0,), b"b")`` builds: filled in by its state."""

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array: np.ndarray | _OnDisk | _Unheld | None = None

    def __setstate__(self, state: Any) -> None:
        where = "numpy array state"
        if self.array is not None:
            raise _refuse(where, "set once", "a second state")
        if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
            state = state[1:]
        if not isinstance(state, tuple) or len(state) != 4:
            raise _refuse(where, "(1, shape, dtype, is_fortran, data)",
                          type(state).__name__ if not isinstance(state, tuple) else state[:3])
        self.array = _build_array(*state, where=where)


def _reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> _ArraySpec:
    """``numpy.core.multiarray._reconstruct``, only as numpy writes it for a plain array.

    numpy pickles an array as ``_reconstruct(ndarray, (0,), b"b")`` followed by its
    state (shape, dtype, bytes). Anything else would let a small file allocate a huge
    array or build an ndarray subclass.
    """
    if subtype is not _NDARRAY or shape != (0,) or dtype_code not in (b"b", "b"):
        raise UnsafeFileError(
            field="global numpy.core.multiarray._reconstruct",
            expected="_reconstruct(numpy.ndarray, (0,), b'b')",
            found=f"_reconstruct({subtype!r}, {shape!r}, {dtype_code!r})",
        )
    return _ArraySpec()


def _scalar(dtype: Any, raw: Any = None) -> np.generic | _Unheld:
    """``numpy.core.multiarray.scalar(dtype, bytes)``: a numpy scalar of a core dtype."""
    array = _build_array((), dtype, False, raw, "numpy scalar")
    if isinstance(array, _Unheld):
        return array
    assert isinstance(array, np.ndarray)  # a span is longer than any scalar: refused above
    return array[()]


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray | _OnDisk | _Unheld:
    """``numpy.core.numeric._frombuffer``, which pickle protocol 5 uses for arrays."""
    if order not in ("C", "F"):
        raise _refuse("numpy array order", "'C' or 'F'", order)
    return _build_array(shape, dtype, order == "F", buf, "numpy array")


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding != "latin1":
        raise UnsafeFileError(
            field="global _codecs.encode", expected="encode(str, 'latin1')",
            found=f"encode({type(text).__name__}, {encoding!r})",
        )
    return text.encode("latin1")


#: Bytes charged for each object the pickle makes, beyond its own contents: a generous
#: upper bound on CPython's object headers, list slots, dict entries and memo entries.
_OBJECT_COST = 112
#: Longest module or attribute name a GLOBAL opcode may give.
_MAX_GLOBAL_NAME = 256
#: Bytes the machine takes from the budget at a time (see :meth:`_Machine.charge`).
_RESERVE = 1 << 20
_CONTAINERS = (list, dict, tuple)
#: Byte strings at least this long stay in the file when a pickle is opened lazily.
_LAZY_BYTES = 1 << 16


class _Mark:
    """The MARK opcode's position on the stack."""

    __slots__ = ()


_MARK = _Mark()


class _Machine:
    """A pickle virtual machine of our own, in place of :class:`pickle.Unpickler`.

    It runs the opcodes of protocols 2 to 5 that a pickle of arrays and dicts needs and
    refuses the rest by name. Owning the loop fixes, at the cause, what the C unpickler
    lets a small file do: every object, container slot and memo entry is charged to the
    operation's :class:`~weightstore.codec.Budget` before it is made (the C memo is an
    array sized by the largest index a file names); a length is checked against the
    bytes left in the file before it is read; dict keys must be strings (whose hashes
    are randomised per process, so a file cannot make them collide); nesting is
    measured as containers are built and refused beyond ``max_depth``, long before the
    interpreter's own recursion limit; and a container already placed inside another
    cannot change, so no cycle and no late deepening can be built.
    """

    def __init__(self, fileobj: IO[bytes], path: str, limits: Limits, budget: Budget,
                 lazy: bool = False) -> None:
        self.f, self.path, self.limits, self.budget = fileobj, path, limits, budget
        #: Leave long byte strings in the file (:class:`_Span`): ``open()``, seekable files.
        self.lazy = lazy
        self.left = file_size(fileobj) - fileobj.tell()
        self.stack: list[Any] = []
        self.memo: dict[int, Any] = {}
        self.depth: dict[int, int] = {}  # id of a container made here -> its nesting
        self.sealed: set[int] = set()  # ids of containers placed inside another
        self.keep: list[Any] = []  # containers stay alive, so their ids stay theirs
        self.reserved = 0  # bytes taken from the budget and not yet spent

    # --- input -----------------------------------------------------------------------

    def read(self, n: int, what: str) -> bytes:
        if n > self.left:
            raise FormatError(path=self.path, field=what, expected=f"{n:,} bytes",
                              found=f"{self.left:,} left in the file (truncated)")
        data = self.f.read(n)
        if len(data) != n:
            raise FormatError(path=self.path, field=what, expected=f"{n:,} bytes",
                              found=f"{len(data):,} (the file ends there)")
        self.left -= n
        return data

    def length(self, size: int, what: str) -> int:
        (n,) = struct.unpack({1: "<B", 4: "<I", 8: "<Q"}[size], self.read(size, what))
        if n > self.left:
            raise FormatError(path=self.path, field=what, expected=f"at most {self.left:,} "
                              "bytes (what is left of the file)", found=f"{n:,} (truncated?)")
        return n

    def line(self, what: str) -> str:
        out = bytearray()
        while True:
            c = self.read(1, what)
            if c == b"\n":
                return out.decode("utf-8", "strict")
            out += c
            if len(out) > _MAX_GLOBAL_NAME:
                raise FormatError(path=self.path, field=what,
                                  expected=f"a name of at most {_MAX_GLOBAL_NAME} characters",
                                  found=bytes(out[:40]))

    # --- accounting ------------------------------------------------------------------

    def charge(self, nbytes: int, what: str) -> None:
        """Charge the budget before making an object: drawn from a reserve taken from the
        budget :data:`_RESERVE` bytes at a time (exactly what is needed when the budget
        has less), so that each opcode does not pay a budget call."""
        need = nbytes + _OBJECT_COST
        if need > self.reserved:
            want = need - self.reserved
            try:
                self.budget.take(want + _RESERVE, path=self.path, field=f"pickle {what}")
                self.reserved += want + _RESERVE
            except LimitError:
                self.budget.take(want, path=self.path, field=f"pickle {what}")
                self.reserved += want
        self.reserved -= need

    def nest(self, parent: Any, items: list[Any]) -> None:
        """*items* go into container *parent*: seal them, measure the depth."""
        pid = id(parent)
        if pid in self.sealed and isinstance(parent, list | dict):
            raise FormatError(path=self.path, field="pickle container",
                              expected="no change to a container after it is placed in "
                              "another (weight files have no cycles)", found="a change")
        deepest = self.depth.get(pid, 1)
        for item in items:
            if isinstance(item, (*_CONTAINERS, _ArraySpec)):
                self.sealed.add(id(item))
                deepest = max(deepest, self.depth.get(id(item), 1) + 1)
        if deepest > self.limits.max_depth:
            raise FormatError(path=self.path, field="pickle nesting",
                              expected=f"nesting within {self.limits.max_depth} levels "
                              "(Limits.max_depth)", found=f"{deepest} levels")
        self.depth[pid] = deepest

    def new(self, obj: Any, items: list[Any], what: str) -> Any:
        """A new container holding *items*, charged and measured, pushed on the stack."""
        self.charge(16 * len(items), what)
        self.keep.append(obj)
        self.nest(obj, items)
        self.stack.append(obj)
        return obj

    def pop_mark(self) -> list[Any]:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i] is _MARK:
                items = self.stack[i + 1:]
                del self.stack[i:]
                return items
        raise FormatError(path=self.path, field="pickle stack", expected="a MARK",
                          found="none")

    def pop(self) -> Any:
        if not self.stack or self.stack[-1] is _MARK:
            raise FormatError(path=self.path, field="pickle stack", expected="a value",
                              found="an empty stack")
        return self.stack.pop()

    def set_items(self, target: Any, items: list[Any]) -> None:
        if not isinstance(target, dict) or len(items) % 2:
            raise FormatError(path=self.path, field="pickle SETITEMS",
                              expected="a dict and key-value pairs",
                              found=type(target).__name__)
        keys = items[0::2]
        for key in keys:
            if type(key) is not str:  # str hashes are randomised: no collision flood
                raise FormatError(path=self.path, field="pickle dict key",
                                  expected="a string (weight files use no other keys)",
                                  found=f"{type(key).__name__} {key!r}")
        self.charge(64 * len(keys), "dict entries")
        self.nest(target, items[1::2])
        for key, value in zip(keys, items[1::2], strict=True):
            target[key] = value

    # --- the loop ----------------------------------------------------------------------

    def run(self) -> Any:
        refused = {b"P": "PERSID", b"Q": "BINPERSID", b"\x82": "EXT1", b"\x83": "EXT2",
                   b"\x84": "EXT4", b"o": "OBJ", b"\x81": "NEWOBJ", b"\x92": "NEWOBJ_EX",
                   b"\x8f": "EMPTY_SET", b"\x90": "ADDITEMS", b"\x91": "FROZENSET",
                   b"\x97": "NEXT_BUFFER", b"\x98": "READONLY_BUFFER", b"I": "INT",
                   b"L": "LONG", b"F": "FLOAT", b"S": "STRING", b"V": "UNICODE",
                   b"p": "PUT", b"g": "GET", b"\x8b": "LONG4", b"l": "LIST", b"d": "DICT"}
        stack, read, ops = self.stack, self.f.read, self.ops
        while True:
            op = read(1)
            if not op:
                raise FormatError(path=self.path, field="pickle opcode", expected="1 byte",
                                  found="the end of the file (truncated)")
            self.left -= 1
            if op == b".":
                if len(stack) != 1:
                    raise FormatError(path=self.path, field="pickle STOP",
                                      expected="one value on the stack",
                                      found=f"{len(stack)} values")
                self.budget.give_back(self.reserved)  # what the reserve did not spend
                self.reserved = 0
                return stack[0]
            handler = ops.get(op)
            if handler is None:
                if op in (b"i", b"c"):
                    pass
                elif op in refused:
                    raise UnsafeFileError(path=self.path, field=f"pickle opcode {refused[op]}",
                                          expected="only the opcodes a pickle of arrays and "
                                          "dicts uses (protocols 2 to 5)")
                else:
                    raise FormatError(path=self.path, field="pickle opcode",
                                      expected="a known opcode", found=op)
            if op == b"i":  # INST: name the global, then refuse the opcode
                self.global_(self.line("INST module"), self.line("INST name"))
                raise UnsafeFileError(path=self.path, field="pickle opcode INST",
                                      expected="only the opcodes a pickle of arrays uses")
            if op == b"c":
                stack.append(self.global_(self.line("GLOBAL module"), self.line("GLOBAL name")))
                continue
            handler(self)

    def global_(self, module: str, name: str) -> Any:
        obj = _allowed().get((module, name))
        if obj is None:
            raise UnsafeFileError(
                "refused to load: the pickle references a global a weight file never needs, "
                "and loading it could run code",
                path=self.path, field=f"global {module}.{name}",
                expected="only numpy arrays, dtypes, scalars and dicts",
            )
        return obj

    def memo_put(self, index: int) -> None:
        if not self.stack:
            raise FormatError(path=self.path, field="pickle memo", expected="a value to store",
                              found="an empty stack")
        if index not in self.memo:
            self.charge(0, "memo entry")
        self.memo[index] = self.stack[-1]

    def memo_get(self, index: int) -> None:
        if index not in self.memo:
            raise FormatError(path=self.path, field="pickle memo", expected="a stored index",
                              found=index)
        self.stack.append(self.memo[index])

    def text(self, n: int, what: str, encoding: str) -> None:
        self.charge(4 * n if encoding == "utf-8" else n, what)
        raw = self.read(n, what)
        try:
            self.stack.append(raw.decode(encoding, "surrogatepass"))
        except UnicodeDecodeError as e:
            raise FormatError(path=self.path, field=what, expected="UTF-8 text",
                              found=str(e)) from e

    def raw(self, n: int, what: str, mutable: bool = False) -> None:
        if self.lazy and n >= _LAZY_BYTES:  # n is within the file: checked by length()
            self.charge(_OBJECT_COST, what)
            self.stack.append(_Span(self.f.tell(), n))
            self.f.seek(n, io.SEEK_CUR)
            self.left -= n
            return
        self.charge(n, what)
        data = self.read(n, what)
        self.stack.append(bytearray(data) if mutable else data)

    def reduce(self) -> None:
        args = self.pop()
        func = self.pop()
        if not isinstance(func, Frozen) or not isinstance(args, tuple):
            raise UnsafeFileError(path=self.path, field="pickle REDUCE",
                                  expected="an allowed global called with a tuple",
                                  found=type(func).__name__)
        for a in args:  # the arguments are used: they may not change any more
            if isinstance(a, _CONTAINERS):
                self.sealed.add(id(a))
        if func is _allowed()[("collections", "OrderedDict")]:
            if args:  # pickle writes OrderedDict() and fills it with SETITEMS
                raise UnsafeFileError(path=self.path, field="global collections.OrderedDict",
                                      expected="OrderedDict() without arguments",
                                      found=f"{len(args)} arguments")
            self.new(OrderedDict(), [], "dict")
            return
        self.stack.append(func(*args))

    def build(self) -> None:
        state = self.pop()
        inst = self.pop()
        if not isinstance(inst, _ArraySpec | _DtypeSpec):
            raise UnsafeFileError(path=self.path, field="pickle BUILD",
                                  expected="the state of a numpy array or dtype",
                                  found=type(inst).__name__)
        if isinstance(state, _CONTAINERS):
            self.sealed.add(id(state))
        inst.__setstate__(state)
        self.stack.append(inst)

    ops: ClassVar[dict[bytes, Callable[[_Machine], None]]] = {}


def _op(code: bytes) -> Callable[[Callable[[_Machine], None]], Callable[[_Machine], None]]:
    def register(fn: Callable[[_Machine], None]) -> Callable[[_Machine], None]:
        _Machine.ops[code] = fn
        return fn
    return register


def _define_ops() -> None:  # noqa: C901 - one short entry per opcode
    M = _Machine
    reg = M.ops

    def proto(m: M) -> None:
        (v,) = m.read(1, "PROTO")
        if v > pickle.HIGHEST_PROTOCOL:
            raise FormatError(path=m.path, field="pickle protocol",
                              expected=f"at most {pickle.HIGHEST_PROTOCOL}", found=v)

    reg[b"\x80"] = proto
    def frame(m: M) -> None:  # frames are plain bytes here: the length is only checked
        m.length(8, "FRAME length")

    def mark(m: M) -> None:
        m.charge(0, "mark")
        m.stack.append(_MARK)

    def pop(m: M) -> None:
        m.pop()

    def pop_mark(m: M) -> None:
        m.pop_mark()

    reg[b"\x95"], reg[b"("], reg[b"0"], reg[b"1"] = frame, mark, pop, pop_mark
    reg[b"2"] = lambda m: m.stack.append(m.stack[-1] if m.stack else m.pop())
    reg[b"N"] = lambda m: m.stack.append(None)
    reg[b"\x88"] = lambda m: m.stack.append(True)
    reg[b"\x89"] = lambda m: m.stack.append(False)
    reg[b"J"] = lambda m: m.stack.append(struct.unpack("<i", m.read(4, "BININT"))[0])
    reg[b"K"] = lambda m: m.stack.append(m.read(1, "BININT1")[0])
    reg[b"M"] = lambda m: m.stack.append(struct.unpack("<H", m.read(2, "BININT2"))[0])
    reg[b"\x8a"] = lambda m: m.stack.append(
        int.from_bytes(m.read(m.length(1, "LONG1 length"), "LONG1"), "little", signed=True))
    reg[b"G"] = lambda m: m.stack.append(struct.unpack(">d", m.read(8, "BINFLOAT"))[0])
    reg[b"\x8c"] = lambda m: m.text(m.length(1, "SHORT_BINUNICODE length"),
                                    "SHORT_BINUNICODE", "utf-8")
    reg[b"X"] = lambda m: m.text(m.length(4, "BINUNICODE length"), "BINUNICODE", "utf-8")
    reg[b"\x8d"] = lambda m: m.text(m.length(8, "BINUNICODE8 length"), "BINUNICODE8", "utf-8")
    reg[b"U"] = lambda m: m.text(m.length(1, "SHORT_BINSTRING length"), "SHORT_BINSTRING",
                                 "latin1")
    reg[b"T"] = lambda m: m.text(m.length(4, "BINSTRING length"), "BINSTRING", "latin1")
    reg[b"C"] = lambda m: m.raw(m.length(1, "SHORT_BINBYTES length"), "SHORT_BINBYTES")
    reg[b"B"] = lambda m: m.raw(m.length(4, "BINBYTES length"), "BINBYTES")
    reg[b"\x8e"] = lambda m: m.raw(m.length(8, "BINBYTES8 length"), "BINBYTES8")
    reg[b"\x96"] = lambda m: m.raw(m.length(8, "BYTEARRAY8 length"), "BYTEARRAY8", True)
    reg[b"}"] = lambda m: m.new({}, [], "dict") and None
    reg[b"]"] = lambda m: m.new([], [], "list") and None
    reg[b")"] = lambda m: m.new((), [], "tuple") and None

    def tuple_n(n: int) -> Callable[[M], None]:
        def run(m: M) -> None:
            if len(m.stack) < n or any(x is _MARK for x in m.stack[len(m.stack) - n:]):
                raise FormatError(path=m.path, field=f"pickle TUPLE{n}",
                                  expected=f"{n} values", found="fewer")
            items = m.stack[len(m.stack) - n:]
            del m.stack[len(m.stack) - n:]
            m.new(tuple(items), items, "tuple")
        return run

    reg[b"\x85"], reg[b"\x86"], reg[b"\x87"] = tuple_n(1), tuple_n(2), tuple_n(3)

    def tuple_mark(m: M) -> None:
        items = m.pop_mark()
        m.new(tuple(items), items, "tuple")

    reg[b"t"] = tuple_mark

    def extend(m: M, items: list[Any], what: str) -> None:
        target = m.stack[-1] if m.stack else None
        if not isinstance(target, list):
            raise FormatError(path=m.path, field=f"pickle {what}", expected="a list",
                              found=type(target).__name__)
        m.charge(16 * len(items), "list items")
        m.nest(target, items)
        target.extend(items)

    def append(m: M) -> None:
        extend(m, [m.pop()], "APPEND")

    def appends(m: M) -> None:
        extend(m, m.pop_mark(), "APPENDS")

    def setitem(m: M) -> None:
        value = m.pop()
        key = m.pop()
        m.set_items(m.stack[-1] if m.stack else None, [key, value])

    def setitems(m: M) -> None:
        items = m.pop_mark()
        m.set_items(m.stack[-1] if m.stack else None, items)

    reg[b"a"], reg[b"e"], reg[b"s"], reg[b"u"] = append, appends, setitem, setitems
    reg[b"q"] = lambda m: m.memo_put(m.read(1, "BINPUT")[0])
    reg[b"r"] = lambda m: m.memo_put(struct.unpack("<I", m.read(4, "LONG_BINPUT"))[0])
    reg[b"\x94"] = lambda m: m.memo_put(len(m.memo))
    reg[b"h"] = lambda m: m.memo_get(m.read(1, "BINGET")[0])
    reg[b"j"] = lambda m: m.memo_get(struct.unpack("<I", m.read(4, "LONG_BINGET"))[0])

    def stack_global(m: M) -> None:
        name, module = m.pop(), m.pop()
        if not isinstance(module, str) or not isinstance(name, str):
            raise FormatError(path=m.path, field="pickle STACK_GLOBAL",
                              expected="module and name strings", found=type(name).__name__)
        m.stack.append(m.global_(module, name))

    reg[b"\x93"] = stack_global
    reg[b"R"] = M.reduce
    reg[b"b"] = M.build


_define_ops()


#: Entries :func:`_collect` may walk per byte of pickle, beyond :data:`_VISITS_FLOOR`. Each
#: entry of a container costs the stream at least one byte (an opcode, or two for a memo
#: reference), so a file whose objects are each referred to from one place is walked in
#: about one visit per byte; one shared dict inside another (tied weights in a shared
#: block) multiplies that by a few. Only sharing nested many levels deep (the billion
#: laughs: 40 dicts in 1,200 bytes describe 2**40 entries) needs more, and is refused
#: after a walk linear in the file's size, not after Limits.max_tensors entries (seconds).
_VISITS_PER_BYTE = 16
_VISITS_FLOOR = 4096


class _Found:
    """What :func:`_collect` finds: tensors, plain values (metadata) and skipped entries;
    *size* is the pickle's length in bytes when known (it bounds the walk)."""

    def __init__(self, limits: Limits, size: int | None = None) -> None:
        self.tensors: dict[str, np.ndarray | _OnDisk] = {}
        self.values: dict[str, str] = {}
        self.skipped: list[Skipped] = []
        self.visits = 0
        self.size = size
        self.by_tensors = 2 * limits.max_tensors + 1
        self.by_size = None if size is None else _VISITS_PER_BYTE * size + _VISITS_FLOOR
        self.max_visits = self.by_tensors if self.by_size is None else \
            min(self.by_tensors, self.by_size)

    def refuse(self, path: str) -> LimitError:
        """The error for a walk past :attr:`max_visits`."""
        if self.by_size is not None and self.by_size < self.by_tensors:
            return LimitError(
                path=path, field="dicts and arrays",
                expected=f"at most {self.by_size:,} entries for a {self.size:,}-byte pickle "
                f"({_VISITS_PER_BYTE} per byte; Limits.max_tensors caps the rest)",
                found=f"more than {self.by_size:,}: it refers to the same containers from so "
                "many places that it describes far more entries than it holds")
        return LimitError(path=path, field="dicts and arrays",
                          expected=f"at most {(self.by_tensors - 1) // 2:,} tensors "
                          "(Limits.max_tensors)", found=f"more than {self.visits - 1:,} entries")


#: Plain values a pickle may hold beside its arrays, kept as metadata.
_PLAIN = (str, int, float, bool, type(None))


def _collect(obj: Any, path: str, prefix: str, found: _Found, depth: int,
             limits: Limits, budget: Budget) -> None:
    """The arrays in *obj* by their ``/``-joined names, into *found*: dict keys and list or
    tuple indices (``layers/0``) make the names; plain numbers, strings, booleans and
    ``None`` become metadata under the same name (``str(value)``: ``"0.001"``, ``"3"``);
    anything else is recorded as skipped.

    *found.visits* counts the containers and arrays walked: a pickle may refer to one dict
    from many places, so that a small file describes a tree with billions of paths; and
    each name built is charged to *budget* before it is made (long keys shared that
    way would otherwise build gigabytes of names).
    """
    where = repr(prefix) if prefix else "top level"
    if depth > limits.max_depth:
        raise FormatError(path=path, field=prefix or "top level",
                          expected=f"nesting within {limits.max_depth} levels")
    found.visits += 1
    if found.visits > found.max_visits:
        raise found.refuse(path)
    if isinstance(obj, dict | list | tuple):
        items = obj.items() if isinstance(obj, dict) else enumerate(obj)
        for key, value in items:
            if not isinstance(key, str | int):
                raise FormatError(path=path, field=f"key in {prefix or 'top-level dict'}",
                                  expected="a string", found=key)
            if not prefix and key == METADATA_KEY:
                continue
            budget.take(len(prefix) + len(str(key)) + 80, path=path,
                        field="pickle tensor names")
            name = f"{prefix}/{key}" if prefix else str(key)
            _collect(value, path, name, found, depth + 1, limits, budget)
        return  # an empty container holds nothing to keep
    if isinstance(obj, _ArraySpec):
        if obj.array is None:
            raise FormatError(path=path, field=where,
                              expected="a numpy array with its state", found="no state")
        obj = obj.array
    if isinstance(obj, np.generic):
        obj = np.asarray(obj)
    if isinstance(obj, np.ndarray | _OnDisk):
        found.tensors[prefix] = obj
    elif not prefix:
        raise FormatError(path=path, field="top level",
                          expected="a dict of numpy arrays", found=type(obj).__name__)
    elif isinstance(obj, _PLAIN):
        text = str(obj)
        budget.take(len(text) + 80, path=path, field=f"pickle value {where}")
        found.values[prefix] = text
    elif isinstance(obj, _Unheld):
        found.skipped.append(Skipped(prefix, obj.describe()))
    else:
        kind = repr(obj) if isinstance(obj, Frozen) else f"a {type(obj).__name__} value"
        found.skipped.append(Skipped(prefix, kind, "a numpy array, a plain number or string, "
                                     "or a dict, list or tuple of them"))


class _Pending:
    """A tensor of the weights being written, fetched only when pickle reaches it, so that a
    lazily opened source is written one tensor at a time."""

    __slots__ = ("name", "weights")

    def __init__(self, weights: Any, name: str) -> None:
        self.weights, self.name = weights, name


class _Pickler(pickle.Pickler):
    """``pickle.Pickler`` that fetches each :class:`_Pending` tensor as it reaches it and
    keeps no memo (which would hold every tensor's bytes to the end of the file)."""

    def __init__(self, fileobj: IO[bytes], protocol: int) -> None:
        super().__init__(fileobj, protocol=protocol)
        self._protocol = protocol
        # Nothing written here is shared or self-referential, so without the memo the
        # output is what pickle.dump writes minus its memo opcodes, and pickle.load returns
        # the same dict.
        self.fast = True

    def reducer_override(self, obj: Any) -> Any:
        """A :class:`_Pending` is pickled as its array, by numpy's own reduction; anything
        else as usual."""
        if not isinstance(obj, _Pending):
            return NotImplemented
        array = obj.weights[obj.name]
        if array.dtype.byteorder == ">":
            array = to_storage(array)
        return array.__reduce_ex__(self._protocol)


class PickleCodec(Codec):
    """The book's format: a pickled dict of numpy arrays, loaded with a restricted unpickler."""

    name = "pickle"
    extensions = (".pkl", ".pickle")
    groups_together = True
    streams_writes = True  # one tensor in memory at a time (protocols 2-4: and a copy of it)
    description = "Python pickle of a dict of numpy arrays (the book's format), read safely"
    options = (
        Option("protocol", int, 5, "pickle protocol to write (2 to 5; 5 needs Python 3.8 to "
               "read, and writes each array without copying it)", min=2,
               max=pickle.HIGHEST_PROTOCOL),
    )
    protocol: int

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return is_pickle(head)

    def write(self, weights: Any, fileobj: IO[bytes], *, path: str) -> None:
        warn_if_regrouped(weights, path, self.name)
        metadata = getattr(weights, "metadata", None) or {}
        nested: dict[str, Any] = {}
        for name in weights:  # the tensors are fetched as pickle reaches them (_Pending)
            *groups, leaf = name.split("/")
            node = nested
            for group in groups:
                node = node.setdefault(group, {})
            node[leaf] = _Pending(weights, name)
        if metadata:
            if METADATA_KEY in nested:
                raise WeightsError(path=path, field=f"tensor {METADATA_KEY!r}",
                                   expected="no tensor under the metadata key")
            nested[METADATA_KEY] = dict(metadata)
        _Pickler(fileobj, self.protocol).dump(nested)

    def read(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS,
             verify: bool = True, budget: Budget | None = None) -> Weights:
        """The whole file. A seekable one goes through :meth:`open`, each array read from
        the file straight into its own memory (holding its bytes and then a copy would take
        twice the model)."""
        budget = Budget.of(budget, limits, fileobj)
        if fileobj.seekable():
            source = self.open(fileobj, path=path, limits=limits, verify=verify,
                               budget=budget)
            try:
                return read_all(source, path, limits, budget)
            finally:
                source.close()
        tensors, meta = _parse(fileobj, path, limits, budget)
        return weights_from_file(tensors, meta, path)

    def open(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS,
             verify: bool = True, budget: Budget | None = None) -> TensorSource:
        """The pickle run once with its long byte strings left in the file (seeked over):
        each array is then read from its offset on access. Arrays whose bytes are not
        stored raw (Python 2's latin-1 text) are made on opening."""
        budget = Budget.of(budget, limits, fileobj)
        if not fileobj.seekable():
            return LoadedSource(self.read(fileobj, path=path, limits=limits, budget=budget))
        tensors, meta = _parse(fileobj, path, limits, budget, lazy=True)
        return _PickleSource(fileobj, path, tensors, meta)


def _consumed(fileobj: IO[bytes]) -> int | None:
    """Where the pickle ended in *fileobj* (its length when it started at 0), or None."""
    try:
        return fileobj.tell()
    except (OSError, AttributeError, io.UnsupportedOperation):
        return None


def _parse(fileobj: IO[bytes], path: str, limits: Limits, budget: Budget,
           lazy: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    """Run the pickle: its arrays (:class:`_OnDisk` for those left in the file) by name, and
    its metadata (the file's ``__metadata__`` and its plain values); the entries it does not
    hold are reported (:func:`~weightstore.codec.report_skipped`)."""
    token = _BUDGET.set((budget, path))
    try:
        obj = _Machine(fileobj, path, limits, budget, lazy=lazy).run()
    except WeightstoreError as e:  # refused by the machine or a builder above
        if e.path is None:
            raise type(e)(e.message, path=path) from e
        raise
    except (ValueError, TypeError, struct.error, IndexError, KeyError, OverflowError,
            io.UnsupportedOperation) as e:
        raise FormatError(f"not a valid pickle ({type(e).__name__}: {e})", path=path) from e
    finally:
        _BUDGET.reset(token)
    if not isinstance(obj, dict | list | tuple):
        raise FormatError(path=path, field="top level", expected="a dict of arrays",
                          found=type(obj).__name__)
    found = _Found(limits, _consumed(fileobj))
    _collect(obj, path, "", found, 0, limits, budget)
    meta = obj.get(METADATA_KEY, {}) if isinstance(obj, dict) else {}
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise FormatError(path=path, field=METADATA_KEY, expected="a dict of strings",
                          found=type(meta).__name__)
    report_skipped(path, found.skipped, budget)
    total = 0
    for name, array in found.tensors.items():
        limits.check_tensor(path, name, array.nbytes, total)
        total += array.nbytes
    return found.tensors, {**found.values, **meta}


class _PickleSource(TensorSource):
    """An opened pickle: the arrays the file holds raw are read from their offsets on access."""

    def __init__(self, fileobj: IO[bytes], path: str, tensors: dict[str, Any],
                 metadata: dict[str, str]) -> None:
        super().__init__([TensorInfo(k, v.dtype, tuple(v.shape)) for k, v in tensors.items()],
                         metadata)
        self._raw = RawFile(fileobj, path)
        self._tensors = tensors
        # Lazy unless a long array had to be made on opening (its bytes were not raw).
        self.lazy = not any(isinstance(v, np.ndarray) and v.nbytes >= _LAZY_BYTES
                            for v in tensors.values())

    def read(self, name: str, *, mmap: bool = False) -> np.ndarray:
        found = self._tensors[name]
        if isinstance(found, np.ndarray):
            return found
        if mmap and self._raw.can_mmap:
            return self._raw.map_array(found.offset, found.dtype, found.shape,
                                       fortran=found.fortran).view(np.ndarray)
        return self._raw.read_array(found.offset, found.dtype, found.shape,
                                    fortran=found.fortran, field=f"tensor {name!r}")

    def close(self) -> None:
        self._tensors = {}
