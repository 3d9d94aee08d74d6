"""Run the book's networks on the MNIST test set: the accuracy a weight file keeps.

The network (:mod:`net.models`) is recognised from the tensors' names and shapes (or named
with ``model=``); the 10,000 test images come from the reference-data resolver
(:mod:`net.data`), read once per process. Errors from :mod:`net` arrive as the
:mod:`weightstore.errors` class of the same name.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from net import mnist, models

from ..model import Weights
from ._neterrors import net_errors

__all__ = ["Evaluation", "evaluate", "build_network", "test_set", "detect_model"]


class Network(Protocol):
    """What evaluation needs of a network."""

    def predict(self, x: np.ndarray, batch_size: int = ...) -> np.ndarray: ...


@dataclass(frozen=True)
class Evaluation:
    """The outcome of running a network over the test set."""

    model: str
    accuracy: float
    correct: int
    total: int
    seconds: float
    predictions: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json`` (predictions left out)."""
        return {"model": self.model, "accuracy": self.accuracy, "correct": self.correct,
                "total": self.total, "seconds": self.seconds}


@functools.lru_cache(maxsize=4)
def _cached_test_set(data_dir: str | None, flatten: bool) -> tuple[np.ndarray, np.ndarray]:
    x, t = mnist.load_test_set(data_dir, flatten=flatten)
    x.setflags(write=False)
    t.setflags(write=False)
    return x, t


@net_errors()
def test_set(data_dir: str | os.PathLike[str] | None = None, *,
             flatten: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The MNIST test images (float32, /255) and labels, read and verified once per process."""
    return _cached_test_set(os.fspath(data_dir) if data_dir is not None else None, flatten)


@net_errors()
def detect_model(weights: Weights) -> str:
    """The name of the book's network these weights fit (``mlp``, ``simple_convnet``, ...)."""
    return models.detect_model(weights)


@net_errors()
def build_network(weights: Weights, model: str | None = None) -> tuple[str, Network]:
    """The network (and its name) for *weights*: *model* (a key of :data:`net.models.MODELS`)
    or the one detected; raises ModelError when they do not fit.

    The network is :mod:`net`'s object, whose own methods raise :mod:`net.errors` classes;
    :func:`evaluate` turns those into weightstore errors too.
    """
    name = model or models.detect_model(weights)
    return name, models.build_model(weights, name)


def evaluate(
    weights: Weights,
    *,
    model: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    batch_size: int | None = None,
) -> Evaluation:
    """Accuracy of *weights* on the 10,000 MNIST test images."""
    name, network = build_network(weights, model)
    x, t = test_set(data_dir, flatten=name == "mlp")
    kwargs = {"batch_size": batch_size} if batch_size else {}
    start = time.perf_counter()
    with net_errors():
        scores = network.predict(x, **kwargs)
    seconds = time.perf_counter() - start
    predictions = np.argmax(scores, axis=1)
    correct = int((predictions == t).sum())
    return Evaluation(name, correct / len(t), correct, len(t), seconds, predictions)
