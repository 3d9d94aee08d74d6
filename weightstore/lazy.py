"""Random access to a weight file: :class:`LazyWeights`, what :func:`weightstore.open` returns.

Opening reads what the format's header says (names, dtypes, shapes, metadata) and
nothing else where the format allows it; each tensor is read when it is asked
for. Formats storing raw bytes (npz without compression, contiguous HDF5
datasets) give memory maps of the file; compressed ones are decoded one tensor
at a time; formats without a header to read alone (JSON, CSV, pickle) are read
whole on opening (:attr:`LazyWeights.lazy` is then False).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

from .codec import DEFAULT_LIMITS, Budget, Limits, TensorSource
from .errors import FileAccessError, FormatError, WeightsError, translating_faults
from .model import TensorInfo, Weights, _check_groups, _check_name, grouped_names
from .progress import ProgressCallback

__all__ = ["LazyWeights", "StreamingWarning"]


class StreamingWarning(UserWarning):
    """A large model is about to be held in memory whole: a format on one side of the
    operation cannot read or write one tensor at a time."""


class LazyWeights(Mapping[str, np.ndarray]):
    """A weight file opened for reading one tensor at a time: a read-only mapping.

    ``with weightstore.open("model.h5") as w: w.info("fc/W")`` tells the dtype and
    shape from the header; ``w["fc/W"]`` reads that tensor (a read-only memory map
    where the format stores raw bytes and *mmap* is on, else a new array). Each access
    reads again; nothing is cached. Names, infos and metadata stay available after
    :meth:`close`; tensors do not.
    """

    def __init__(self, source: TensorSource, *, path: str, format: str, mmap: bool = True,
                 closers: Sequence[Callable[[], None]] = (),
                 files: Sequence[str] = ()) -> None:
        self._source = source
        self._metas: dict[str, TensorInfo] = {}
        for meta in source.tensors:
            try:
                _check_name(meta.name)
            except WeightsError as e:
                raise FormatError(f"holds invalid weights: {e}", path=path) from e
            if meta.name in self._metas:
                raise FormatError(path=path, field=f"tensor name {meta.name!r}",
                                  expected="unique names", found="twice")
            self._metas[meta.name] = meta
        try:
            _check_groups(self._metas)
        except WeightsError as e:
            raise FormatError(f"holds invalid weights: {e}", path=path) from e
        #: The file's string metadata.
        self.metadata: dict[str, str] = dict(source.metadata)
        #: The path or URL opened (an index file for a sharded model).
        self.path = path
        #: The codec's name (``"npz"``, ``"zstd(json)"``).
        self.format = format
        #: Every file the model is read from (the index and its shards, when sharded).
        self.files: list[str] = list(files) or [path]
        self._mmap = mmap
        self._closers = list(closers)
        self._closed = False

    # --- the mapping ---------------------------------------------------------------

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._metas:
            raise KeyError(name)
        if self._closed:
            raise FileAccessError(path=self.path, field=f"tensor {name!r}",
                                  expected="an open file", found="it closed",
                                  hint="weightstore.open it again")
        with translating_faults(self.path, self.format):
            return self._source.read(name, mmap=self._mmap)

    def __iter__(self) -> Iterator[str]:
        return iter(self._metas)

    def __len__(self) -> int:
        return len(self._metas)

    def __contains__(self, name: object) -> bool:
        return name in self._metas

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (f"<LazyWeights {self.path!r} {self.format}, {len(self)} tensors, "
                f"{self.nbytes:,} bytes, {state}>")

    # --- header information -----------------------------------------------------------

    @property
    def lazy(self) -> bool:
        """True when opening read only the header (tensors are read on access)."""
        return self._source.lazy

    def info(self, name: str) -> TensorInfo:
        """:class:`~weightstore.TensorInfo` (name, dtype, shape, count) of tensor *name*,
        from the header alone."""
        return self._metas[name]

    def grouped_order(self) -> list[str]:
        """The names as nesting formats give them back (:meth:`Weights.grouped_order`)."""
        return grouped_names(self)

    def dtype(self, name: str) -> np.dtype:
        """The numpy dtype tensor *name* is read as."""
        return self._metas[name].dtype

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of tensor *name*."""
        return self._metas[name].shape

    def tensor_nbytes(self, name: str) -> int:
        """Bytes tensor *name* takes in memory."""
        return self._metas[name].nbytes

    @property
    def nbytes(self) -> int:
        """Bytes all tensors take in memory."""
        return sum(m.nbytes for m in self._metas.values())

    @property
    def total_values(self) -> int:
        """Number of values across all tensors."""
        return sum(m.count for m in self._metas.values())

    # --- reading everything ---------------------------------------------------------

    def load(self, *, limits: Limits | None = None,
             progress: ProgressCallback | None = None,
             budget: Budget | None = None) -> Weights:
        """Every tensor in memory as :class:`Weights` (new arrays, not memory maps),
        charged to *budget* (the operation's :class:`~weightstore.codec.Budget`) first."""
        limits = limits or DEFAULT_LIMITS
        total = 0
        for meta in self._metas.values():
            limits.check_tensor(self.path, meta.name, meta.nbytes, total)
            total += meta.nbytes
        if self._source.lazy:  # a source read whole on opening was charged then
            Budget.of(budget, limits).take(total, path=self.path, field="tensors")
        saved, self._mmap = self._mmap, False
        try:
            done = 0
            tensors = []
            for name, meta in self._metas.items():
                tensors.append((name, self[name]))
                done += meta.nbytes
                if progress is not None:
                    progress(done, total)
        finally:
            self._mmap = saved
        try:
            return Weights(tensors, metadata=self.metadata)
        except WeightsError as e:
            raise FormatError(f"holds invalid weights: {e}", path=self.path) from e

    # --- lifetime -------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Close the file (memory maps already handed out stay valid)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._source.close()
        finally:
            for close in self._closers:
                with contextlib.suppress(OSError, ValueError):
                    close()

    def __enter__(self) -> LazyWeights:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
