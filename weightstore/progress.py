"""Progress of long reads and writes: a callback told the bytes handled so far.

``progress(done, total)`` is called with the bytes of tensor data handled so far out of
*total*. Readers call it as they read each tensor (:meth:`LazyWeights.load`); writers are
handed :func:`reporting`'s mapping, which calls it as the writer takes each tensor. The
command line turns the calls into a progress bar; the library draws nothing itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from .model import TensorInfo, info_of

__all__ = ["ProgressCallback", "reporting", "nbytes_of"]

#: ``progress(done, total)``: bytes of tensor data handled so far, out of *total*.
ProgressCallback = Callable[[int, int], None]


def nbytes_of(weights: Mapping[str, Any]) -> int:
    """Bytes of tensor data in *weights*, from a lazy mapping's header where it has one."""
    return sum(info_of(weights, name).nbytes for name in weights)


class _Reporting(Mapping[str, np.ndarray]):
    """A mapping that reports the bytes of each tensor handed out, for writers."""

    def __init__(self, weights: Mapping[str, np.ndarray], total: int,
                 progress: ProgressCallback) -> None:
        self._weights, self._total, self._progress = weights, total, progress
        self.metadata: dict[str, str] = dict(getattr(weights, "metadata", {}))
        self.nbytes = total
        self._done = 0

    def __getitem__(self, name: str) -> np.ndarray:
        array = self._weights[name]
        self._done += int(array.nbytes)
        self._progress(min(self._done, self._total), self._total)
        return array

    def __iter__(self) -> Iterator[str]:
        return iter(self._weights)

    def __len__(self) -> int:
        return len(self._weights)

    def info(self, name: str) -> TensorInfo:
        """Tensor *name*'s header, without reporting it as written."""
        return info_of(self._weights, name)


def reporting(weights: Mapping[str, np.ndarray],
              progress: ProgressCallback | None) -> Mapping[str, np.ndarray]:
    """*weights* itself, or wrapped to call *progress* as a writer takes each tensor."""
    if progress is None:
        return weights
    return _Reporting(weights, nbytes_of(weights), progress)
