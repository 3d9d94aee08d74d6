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
from collections import OrderedDict
from typing import IO, Any

import numpy as np

from ..codec import DEFAULT_LIMITS, Codec, Limits, Option
from ..errors import FormatError, UnsafeFileError, WeightsError
from ..model import Weights, to_storage
from ..registry import register

#: The key under which metadata is stored in the top-level dict.
METADATA_KEY = "__metadata__"

# (module, name) pairs a weight pickle may reference, and nothing else.
_ALLOWED: dict[tuple[str, str], Any] = {}


def _allowed() -> dict[tuple[str, str], Any]:
    if not _ALLOWED:
        try:
            from numpy._core import multiarray, numeric
        except ImportError:  # numpy < 2
            from numpy.core import multiarray, numeric  # type: ignore[no-redef]
        real_reconstruct = multiarray._reconstruct

        def reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> np.ndarray:
            # numpy pickles an array as _reconstruct(ndarray, (0,), b"b") followed by
            # __setstate__ with the real shape and bytes, which numpy checks against each
            # other. Anything else would let a small file allocate a huge array.
            if subtype is not _NDARRAY or tuple(shape) != (0,):
                raise UnsafeFileError(
                    field="global numpy.core.multiarray._reconstruct",
                    expected="_reconstruct(numpy.ndarray, (0,), ...)",
                    found=f"_reconstruct({subtype!r}, {shape!r}, ...)",
                )
            return real_reconstruct(np.ndarray, (0,), dtype_code)

        scalar = multiarray.scalar
        frombuffer = numeric._frombuffer
        for core in ("numpy.core", "numpy._core"):
            _ALLOWED[(f"{core}.multiarray", "_reconstruct")] = reconstruct
            _ALLOWED[(f"{core}.multiarray", "scalar")] = scalar
            _ALLOWED[(f"{core}.numeric", "_frombuffer")] = frombuffer
        _ALLOWED[("numpy", "ndarray")] = _NDARRAY
        _ALLOWED[("numpy", "dtype")] = np.dtype
        _ALLOWED[("collections", "OrderedDict")] = OrderedDict
        try:  # bfloat16 arrays pickle their scalar type; a plain type, safe to name
            import ml_dtypes

            _ALLOWED[("ml_dtypes", "bfloat16")] = ml_dtypes.bfloat16
        except ImportError:
            pass
        # Protocol 2 stores bytes as _codecs.encode(str, "latin1"); only that use is allowed.
        _ALLOWED[("_codecs", "encode")] = _latin1_encode
    return _ALLOWED


class _NdarrayToken:
    """Stands for numpy.ndarray inside a pickle: only _reconstruct may use it."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsafeFileError(field="global numpy.ndarray",
                              expected="use only as the type given to _reconstruct",
                              found="a direct call")

    def __repr__(self) -> str:
        return "numpy.ndarray"


_NDARRAY = _NdarrayToken()


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding != "latin1":
        raise UnsafeFileError(
            field="global _codecs.encode", expected="encode(str, 'latin1')",
            found=f"encode({type(text).__name__}, {encoding!r})",
        )
    return text.encode("latin1")


def _dtype_of(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise UnsafeFileError(field="numpy dtype", expected="a numeric dtype", found=str(dtype))
    return dtype


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
        if obj is np.dtype:
            return _dtype_of
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeFileError(path=self._path, field="persistent id",
                              expected="none in a weight file", found=pid)


def _collect(obj: Any, path: str, prefix: str, out: dict[str, Any], depth: int,
             limits: Limits) -> None:
    if depth > limits.max_depth:
        raise FormatError(path=path, field=prefix or "top level",
                          expected=f"nesting within {limits.max_depth} levels")
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise FormatError(path=path, field=f"key in {prefix or 'top-level dict'}",
                                  expected="a string", found=key)
            name = f"{prefix}/{key}" if prefix else key
            if not prefix and key == METADATA_KEY:
                continue
            _collect(value, path, name, out, depth + 1, limits)
        return
    if isinstance(obj, np.generic):
        obj = np.asarray(obj)
    if not isinstance(obj, np.ndarray):
        raise FormatError(path=path, field=repr(prefix) if prefix else "top level",
                          expected="a numpy array or a dict of them",
                          found=type(obj).__name__)
    out[prefix] = obj


@register
class PickleCodec(Codec):
    """The book's format: a pickled dict of numpy arrays, loaded with a restricted unpickler."""

    name = "pickle"
    extensions = (".pkl", ".pickle")
    description = "Python pickle of a dict of numpy arrays (the book's format), read safely"
    options = (
        Option("protocol", int, 4, "pickle protocol to write (2 to 5)", min=2,
               max=pickle.HIGHEST_PROTOCOL),
    )

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5

    def write(self, weights: Weights, fileobj: IO[bytes], *, path: str) -> None:
        nested: dict[str, Any] = Weights(
            ((k, to_storage(v) if v.dtype.byteorder == ">" else v) for k, v in weights.items())
        ).to_nested()
        if weights.metadata:
            if METADATA_KEY in nested:
                raise WeightsError(path=path, field=f"tensor {METADATA_KEY!r}",
                                   expected="no tensor under the metadata key")
            nested[METADATA_KEY] = dict(weights.metadata)
        pickle.dump(nested, fileobj, protocol=self.protocol)  # type: ignore[attr-defined]

    def read(self, fileobj: IO[bytes], *, path: str, limits: Limits = DEFAULT_LIMITS) -> Weights:
        try:
            obj = _RestrictedUnpickler(fileobj, path).load()
        except UnsafeFileError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
                IndexError, KeyError, MemoryError, OverflowError, RecursionError,
                io.UnsupportedOperation) as e:
            raise FormatError(f"not a valid pickle ({type(e).__name__}: {e})", path=path) from e
        if not isinstance(obj, dict):
            raise FormatError(path=path, field="top level", expected="a dict of arrays",
                              found=type(obj).__name__)
        tensors: dict[str, Any] = {}
        _collect(obj, path, "", tensors, 0, limits)
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
        try:
            return Weights(tensors, metadata=meta)
        except WeightsError as e:
            raise FormatError(f"holds invalid weights: {e}", path=path) from e
