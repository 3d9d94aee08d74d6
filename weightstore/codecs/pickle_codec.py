"""pickle: the book's format, read with a restricted unpickler.

Reading admits only what a weight file needs: dicts (plain or ``OrderedDict``),
lists, tuples, numpy arrays, dtypes and scalars, from pickle protocols 2 to 5,
whether numpy pickled them under ``numpy.core`` (numpy 1.x) or ``numpy._core``
(numpy 2.x). Any other global (``os.system``, ``builtins.eval``,
``subprocess.Popen``, ...) is refused with :class:`~weightstore.errors.UnsafeFileError`
naming it, before anything from the file runs. Arrays of dtype ``object`` are
refused as well.

Writing gives a plain dict of arrays (nested dicts for ``/`` in names) that
``pickle.load`` returns as is, as the book's code expects. Metadata, when there is
any, is stored under the key ``"__metadata__"`` as a dict of strings.
"""

from __future__ import annotations

import io
import pickle
import re
from collections import OrderedDict
from typing import IO, Any

import numpy as np

from ..codec import DEFAULT_LIMITS, Codec, Limits, Option, warn_if_regrouped
from ..errors import FormatError, LimitError, UnsafeFileError, WeightsError, WeightstoreError
from ..model import Weights, canonical_dtype, to_storage, weights_from_file
from ..sniffing import is_pickle
from ._unpickle import Frozen

#: The key under which metadata is stored in the top-level dict.
METADATA_KEY = "__metadata__"

# (module, name) pairs a weight pickle may reference, and nothing else.
_ALLOWED: dict[tuple[str, str], Any] = {}

#: dtype codes numpy writes for the core dtypes ("f4", "<i8", "b1", ...).
_DTYPE_CODE = re.compile(r"[<>=|]?(?:b1|\?|[iu][1248]|f[248])")
#: Most dimensions numpy allows.
_MAX_DIMS = 64


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

    __slots__ = ("dtype",)

    def __init__(self, code: Any, align: Any = False, copy: Any = True) -> None:
        if code is _BFLOAT16:
            self.dtype = canonical_dtype("bfloat16")  # needs ml_dtypes, else says so
        elif isinstance(code, str) and _DTYPE_CODE.fullmatch(code):
            self.dtype = np.dtype(code)
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


def _raw_bytes(value: Any, where: str) -> bytes | bytearray:
    if isinstance(value, str):  # written by Python 2: bytes were str, read as latin-1
        return value.encode("latin1")
    if isinstance(value, bytes | bytearray):
        return value
    if isinstance(value, pickle.PickleBuffer):
        return bytes(value.raw())
    raise _refuse(where, "bytes", type(value).__name__)


def _build_array(shape: Any, dtype: Any, fortran: Any, raw: Any, where: str) -> np.ndarray:
    """An array of *shape* and *dtype* holding a copy of *raw*, after checking each."""
    if (not isinstance(shape, tuple) or len(shape) > _MAX_DIMS
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                       for d in shape)):
        raise _refuse(f"{where} shape", f"a tuple of at most {_MAX_DIMS} non-negative ints",
                      shape)
    dt = _dtype(dtype, f"{where} dtype")
    if not isinstance(fortran, bool | int):
        raise _refuse(f"{where} order", "a flag", fortran)
    data = _raw_bytes(raw, f"{where} data")
    count = 1
    for d in shape:
        count *= d
    if len(data) != count * dt.itemsize:
        raise _refuse(f"{where} data", f"{count * dt.itemsize:,} bytes for shape {shape} "
                      f"{dt.name}", f"{len(data):,} bytes")
    flat = np.frombuffer(data, dtype=dt)
    array = flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
    return array.copy(order="K")  # writable and owning its data, as numpy's unpickling gives


class _ArraySpec:
    """What ``_reconstruct(ndarray, (0,), b"b")`` builds: filled in by its state."""

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

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


def _scalar(dtype: Any, raw: Any = None) -> np.generic:
    """``numpy.core.multiarray.scalar(dtype, bytes)``: a numpy scalar of a core dtype."""
    return _build_array((), dtype, False, raw, "numpy scalar")[()]


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
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


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], path: str) -> None:
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        obj = _allowed().get((module, name))
        if obj is None:
            raise UnsafeFileError(
                "refused to load: the pickle references a global a weight file never needs, "
                "and loading it could run code",
                path=self._path, field=f"global {module}.{name}",
                expected="only numpy arrays, dtypes, scalars and dicts",
            )
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeFileError(path=self._path, field="persistent id",
                              expected="none in a weight file", found=pid)


def _collect(obj: Any, path: str, prefix: str, out: dict[str, Any], depth: int,
             limits: Limits, visits: list[int]) -> None:
    """The arrays in *obj* by their ``/``-joined names, into *out*.

    *visits* counts the dicts and arrays walked: a pickle may refer to one dict from
    many places, so that a small file describes a tree with billions of paths.
    """
    if depth > limits.max_depth:
        raise FormatError(path=path, field=prefix or "top level",
                          expected=f"nesting within {limits.max_depth} levels")
    visits[0] += 1
    if visits[0] > 2 * limits.max_tensors + 1:
        raise LimitError(path=path, field="dicts and arrays",
                         expected=f"at most {limits.max_tensors:,} tensors "
                         "(Limits.max_tensors)", found=f"more than {visits[0] - 1:,} entries")
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise FormatError(path=path, field=f"key in {prefix or 'top-level dict'}",
                                  expected="a string", found=key)
            name = f"{prefix}/{key}" if prefix else key
            if not prefix and key == METADATA_KEY:
                continue
            _collect(value, path, name, out, depth + 1, limits, visits)
        return
    if isinstance(obj, _ArraySpec):
        if obj.array is None:
            raise FormatError(path=path, field=repr(prefix) if prefix else "top level",
                              expected="a numpy array with its state", found="no state")
        obj = obj.array
    if isinstance(obj, np.generic):
        obj = np.asarray(obj)
    if not isinstance(obj, np.ndarray):
        raise FormatError(path=path, field=repr(prefix) if prefix else "top level",
                          expected="a numpy array or a dict of them",
                          found=type(obj).__name__)
    out[prefix] = obj


class PickleCodec(Codec):
    """The book's format: a pickled dict of numpy arrays, loaded with a restricted unpickler."""

    name = "pickle"
    extensions = (".pkl", ".pickle")
    groups_together = True
    description = "Python pickle of a dict of numpy arrays (the book's format), read safely"
    options = (
        Option("protocol", int, 4, "pickle protocol to write (2 to 5)", min=2,
               max=pickle.HIGHEST_PROTOCOL),
    )
    protocol: int

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return is_pickle(head)

    def write(self, weights: Weights, fileobj: IO[bytes], *, path: str) -> None:
        warn_if_regrouped(weights, path, self.name)
        nested: dict[str, Any] = Weights(
            ((k, to_storage(v) if v.dtype.byteorder == ">" else v) for k, v in weights.items())
        ).to_nested()
        if weights.metadata:
            if METADATA_KEY in nested:
                raise WeightsError(path=path, field=f"tensor {METADATA_KEY!r}",
                                   expected="no tensor under the metadata key")
            nested[METADATA_KEY] = dict(weights.metadata)
        pickle.dump(nested, fileobj, protocol=self.protocol)

    def read(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS,
             verify: bool = True) -> Weights:
        try:
            obj = _RestrictedUnpickler(fileobj, path).load()
        except WeightstoreError:  # refused by a builder above
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
                IndexError, KeyError, MemoryError, OverflowError, RecursionError,
                io.UnsupportedOperation) as e:
            raise FormatError(f"not a valid pickle ({type(e).__name__}: {e})", path=path) from e
        if not isinstance(obj, dict):
            raise FormatError(path=path, field="top level", expected="a dict of arrays",
                              found=type(obj).__name__)
        tensors: dict[str, Any] = {}
        _collect(obj, path, "", tensors, 0, limits, [0])
        meta = obj.get(METADATA_KEY, {})
        if not isinstance(meta, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
        ):
            raise FormatError(path=path, field=METADATA_KEY, expected="a dict of strings",
                              found=type(meta).__name__)
        total = 0
        for name, array in tensors.items():
            limits.check_tensor(path, name, array.nbytes, total)
            total += array.nbytes
        return weights_from_file(tensors, meta, path)
