"""The data model: an ordered set of named numpy arrays plus a string metadata map.

Names are non-empty strings; ``/`` separates groups (nested dicts in a pickle,
groups in HDF5). A name may not be both a tensor and a group (``"a"`` and
``"a/b"``), because neither nested dicts nor HDF5 can hold that. Order is kept.

The library never mutates the caller's arrays: :class:`Weights` keeps references
to what it is given and every codec writes from normalised copies or views.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import FormatError, MissingDependencyError, WeightsError

__all__ = ["Weights", "TensorInfo", "DTYPES", "canonical_dtype", "dtype_name", "as_weights",
           "grouped_names", "info_of", "arrays_identical", "MAX_NDIM"]

#: numpy's own limit on dimensions; every reader refuses a header claiming more.
MAX_NDIM = 64

#: Every dtype the core supports, by canonical name. Stored little-endian.
DTYPES: dict[str, np.dtype] = {
    name: np.dtype(name).newbyteorder("<") if np.dtype(name).itemsize > 1 else np.dtype(name)
    for name in (
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
    )
}


@functools.cache
def _extension_dtypes() -> dict[str, np.dtype]:
    """Dtypes from optional packages (bfloat16 through ml_dtypes, extra 'bfloat16') when
    installed. Imported on first need: ml_dtypes alone takes longer to import than numpy."""
    try:
        import ml_dtypes
    except ImportError:
        return {}
    return {"bfloat16": np.dtype(ml_dtypes.bfloat16)}


#: dtype_name's answers by dtype (a few kinds per process; bounded for strangers' files).
_NAMES: dict[np.dtype, str | None] = {}
_NAMES_KEPT = 256


def dtype_name(dtype: np.dtype) -> str | None:
    """The canonical name of *dtype* (``"float32"``), or ``None`` if unsupported."""
    try:
        return _NAMES[dtype]  # ~0.1 us against ~2 us: headers of many tensors ask often
    except (KeyError, TypeError):
        pass
    dtype = np.dtype(dtype)
    name: str | None = None
    if dtype.kind in "biuf" and dtype.names is None and dtype.subdtype is None:
        native = dtype.newbyteorder("=").name
        if native in DTYPES:
            name = native
    if name is None and dtype.name == "bfloat16":
        name = "bfloat16"
    if len(_NAMES) < _NAMES_KEPT:
        _NAMES[dtype] = name  # a dtype hashes whatever its metadata holds
    return name


def canonical_dtype(name: str) -> np.dtype:
    """The numpy dtype for a canonical name, raising :class:`WeightsError` if unknown."""
    if name in DTYPES:
        return DTYPES[name]
    extra = _extension_dtypes()
    if name in extra:
        return extra[name]
    if name == "bfloat16":
        raise MissingDependencyError("ml_dtypes", "bfloat16", "the bfloat16 dtype")
    raise WeightsError(
        field="dtype", expected=f"one of {', '.join(DTYPES)}", found=name
    )


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as a header describes it, without its values: what reading it gives.

    The one header type of the library: codecs' :class:`~weightstore.codec.TensorSource`
    lists them, :meth:`weightstore.LazyWeights.info` and :func:`weightstore.inspect` return
    them. ``dtype`` is a numpy dtype (it compares equal to its name: ``info.dtype ==
    "float32"``); :attr:`dtype_name` is the canonical name.
    """

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def count(self) -> int:
        """Number of values."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes the tensor takes in memory."""
        return self.count * self.dtype.itemsize

    @property
    def dtype_name(self) -> str:
        """The canonical dtype name (``"float32"``, ``"bfloat16"``)."""
        return dtype_name(self.dtype) or str(self.dtype)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for ``--json`` output."""
        return {"name": self.name, "dtype": self.dtype_name, "shape": list(self.shape),
                "count": self.count}

    @classmethod
    def of(cls, name: str, array: np.ndarray) -> TensorInfo:
        """The header of *array* held as *name*."""
        return cls(name, array.dtype, tuple(array.shape))


def info_of(weights: Mapping[str, Any], name: str) -> TensorInfo:
    """:class:`TensorInfo` of tensor *name* of *weights*, from a lazy mapping's header
    where it has one (``weights.info``), else from the array."""
    info = getattr(weights, "info", None)
    if callable(info):
        found = info(name)
        if isinstance(found, TensorInfo):
            return found
    return TensorInfo.of(name, np.asarray(weights[name]))


def grouped_names(names: Iterable[str]) -> list[str]:
    """*names* with each group's together, groups where their first name is: the order in
    which nesting formats (a dict of dicts, HDF5 groups) give tensors back."""
    root: dict[str, Any] = {}
    for name in names:
        *groups, leaf = name.split("/")
        node = root
        for group in groups:
            node = node.setdefault(group, {})
        node[leaf] = name
    out: list[str] = []
    stack = [iter(root.values())]
    while stack:  # iterative: a name of many '/' parts must not exhaust the recursion limit
        for value in stack[-1]:
            if isinstance(value, dict):
                stack.append(iter(value.values()))
                break
            out.append(value)
        else:
            stack.pop()
    return out


def _check_name(name: Any) -> str:
    if not isinstance(name, str):
        raise WeightsError(field="tensor name", expected="a string", found=name)
    if not name or name.startswith("/") or name.endswith("/") or "//" in name:
        raise WeightsError(
            field=f"tensor name {name!r}",
            expected="non-empty '/'-separated parts (no leading, trailing or doubled '/')",
        )
    if "\x00" in name:
        raise WeightsError(field=f"tensor name {name!r}", expected="no NUL character")
    return name


class Weights(Mapping[str, np.ndarray]):
    """An ordered, read-only mapping of tensor name to numpy array, with metadata.

    ``Weights({"W1": w1, "b1": b1}, metadata={"source": "book"})``. Nested dicts
    are flattened with ``/`` (``{"fc": {"W": w}}`` holds ``"fc/W"``). Numpy scalars
    become 0-d arrays. Arrays are kept by reference, never modified.
    """

    __slots__ = ("_tensors", "metadata")

    def __init__(
        self,
        tensors: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        items = tensors.items() if isinstance(tensors, Mapping) else tensors
        flat: dict[str, np.ndarray] = {}
        for name, value in items:
            _flatten_into(flat, _check_name(name), value)
        _check_groups(flat)
        self._tensors = flat
        meta: dict[str, str] = {}
        for key, value in (metadata or {}).items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise WeightsError(
                    field="metadata", expected="string keys and string values",
                    found=f"{key!r}: {type(value).__name__}",
                )
            meta[key] = value
        self.metadata: dict[str, str] = meta

    def __getitem__(self, name: str) -> np.ndarray:
        return self._tensors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}: {v.dtype}{list(v.shape)}" for k, v in self._tensors.items())
        return f"Weights({{{inner}}}, metadata={self.metadata!r})"

    @property
    def total_values(self) -> int:
        """Number of values across all tensors."""
        return sum(int(a.size) for a in self._tensors.values())

    @property
    def nbytes(self) -> int:
        """Bytes the values take in memory."""
        return sum(int(a.nbytes) for a in self._tensors.values())

    def to_nested(self) -> dict[str, Any]:
        """Nested dicts of arrays, one level per ``/`` in the names."""
        out: dict[str, Any] = {}
        for name, array in self._tensors.items():
            *groups, leaf = name.split("/")
            node = out
            for group in groups:
                node = node.setdefault(group, {})
            node[leaf] = array
        return out

    def grouped_order(self) -> list[str]:
        """The names in the order nested formats give them back: each group's tensors
        together, groups where their first tensor is (the order of :meth:`to_nested`)."""
        return grouped_names(self._tensors)

    def info(self, name: str) -> TensorInfo:
        """:class:`TensorInfo` of tensor *name*."""
        return TensorInfo.of(name, self._tensors[name])

    def equal(self, other: Mapping[str, np.ndarray]) -> bool:
        """True if *other* holds the same names, in order, with bit-identical arrays."""
        if list(self) != list(other):
            return False
        return all(arrays_identical(self[k], other[k]) for k in self)


def arrays_identical(a: np.ndarray, b: np.ndarray) -> bool:
    """Same canonical dtype, shape and bits (NaN payloads and -0.0 included)."""
    a, b = np.asarray(a), np.asarray(b)
    if dtype_name(a.dtype) != dtype_name(b.dtype) or a.shape != b.shape:
        return False
    if a.dtype.kind == "b":
        return bool(np.array_equal(a, b))
    view = np.dtype(f"u{a.dtype.itemsize}")
    return bool(
        np.array_equal(
            np.ascontiguousarray(a).astype(a.dtype.newbyteorder("=")).view(view),
            np.ascontiguousarray(b).astype(b.dtype.newbyteorder("=")).view(view),
        )
    )


def _flatten_into(out: dict[str, np.ndarray], name: str, value: Any) -> None:
    if isinstance(value, Mapping):
        if not value:
            raise WeightsError(field=f"group {name!r}", expected="at least one tensor", found="{}")
        for key, sub in value.items():
            _flatten_into(out, _check_name(f"{name}/{_check_name(key)}"), sub)
        return
    if isinstance(value, np.generic):
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        raise WeightsError(
            field=f"tensor {name!r}", expected="a numpy array", found=type(value).__name__
        )
    if dtype_name(value.dtype) is None:
        raise WeightsError(
            field=f"tensor {name!r} dtype",
            expected="bool, (u)int8-64, float16/32/64 or bfloat16",
            found=str(value.dtype),
        )
    if name in out:
        raise WeightsError(field=f"tensor name {name!r}", expected="unique names", found="twice")
    out[name] = value


def _check_groups(flat: Iterable[str]) -> None:
    """Refuse a name that is also another name's group (``a`` beside ``a/b``).

    Linear in the total length of the names: each name walks a tree of its parts once
    (slicing every prefix of a name of many ``/`` parts would be quadratic).
    """
    root: dict[str, Any] = {}
    leaf = object()  # marks a node that is a tensor
    for name in flat:
        node = root
        parts = name.split("/")
        for i, part in enumerate(parts):
            child = node.get(part)
            last = i == len(parts) - 1
            if child is leaf or (last and child is not None):
                prefix = name if last else "/".join(parts[: i + 1])
                other = prefix if child is leaf else f"{prefix}/..."
                raise WeightsError(
                    field=f"tensor name {name!r}" if child is leaf else f"tensor name {prefix!r}",
                    expected=f"{prefix!r} to be a group, not also a tensor",
                    found=other if child is not leaf else None,
                )
            if last:
                node[part] = leaf
            else:
                if child is None:
                    child = node[part] = {}
                node = child


def weights_from_file(
    tensors: Mapping[str, Any] | Iterable[tuple[str, Any]],
    metadata: Mapping[str, str] | None,
    path: str,
) -> Weights:
    """:class:`Weights` read from *path*; invalid names or metadata are the file's fault,
    so they raise :class:`~weightstore.errors.FormatError` naming it."""
    try:
        return Weights(tensors, metadata=metadata)
    except WeightsError as e:
        raise FormatError(f"holds invalid weights: {e}", path=path) from e


def as_weights(obj: Mapping[str, Any] | Weights) -> Weights:
    """*obj* as :class:`Weights` (no copy when it already is one)."""
    if isinstance(obj, Weights):
        return obj
    if isinstance(obj, Mapping):
        return Weights(obj)
    raise WeightsError(field="weights", expected="a mapping of names to arrays", found=type(obj))


def little_endian(array: np.ndarray) -> np.ndarray:
    """*array* itself when its bytes are little-endian, else a little-endian copy."""
    if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and np.little_endian is False):
        return array.astype(array.dtype.newbyteorder("<"))
    return array


def to_storage(array: np.ndarray) -> np.ndarray:
    """A little-endian, C-contiguous view or copy of *array* (never the caller's buffer mutated)."""
    name = dtype_name(array.dtype)
    target = canonical_dtype(name) if name != "bfloat16" else array.dtype
    return np.asarray(array, dtype=target, order="C")  # keeps 0-d arrays 0-d
