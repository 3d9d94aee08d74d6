"""Which of the book's networks a set of weights belongs to, and building it.

:data:`MODELS` maps a model name to its :class:`ModelInfo`:

==================  ==========================================================  ================
name                network                                                     parameters
==================  ==========================================================  ================
``mlp``             ch. 3 three-layer net 784-50-100-10 (``net.mlp``)           ``W1 b1 .. W3 b3``
``simple_convnet``  ch. 7 ``SimpleConvNet`` (:class:`net.convnet.SimpleConvNet`)  ``W1 b1 .. W3 b3``
``deep_convnet``    ch. 8 ``DeepConvNet`` (:class:`net.convnet.DeepConvNet`)      ``W1 b1 .. W8 b8``
==================  ==========================================================  ================

:func:`detect_model` recognises the network from tensor names and shapes alone (no values are
read), :func:`build_model` returns the network object ready for ``predict`` and ``accuracy``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from net.convnet import DeepConvNet, SimpleConvNet, WeightProblem, check_weights
from net.errors import ModelError, OptionError
from net.mlp import ThreeLayerNet

__all__ = [
    "MLP_SHAPES",
    "ModelInfo",
    "MODELS",
    "detect_model",
    "build_model",
    "multiply_adds_per_image",
]

#: Parameter shapes of the book's ch. 3 network (``sample_weight.pkl``): 784-50-100-10.
MLP_SHAPES: dict[str, tuple[int, ...]] = {
    "W1": (784, 50),
    "b1": (50,),
    "W2": (50, 100),
    "b2": (100,),
    "W3": (100, 10),
    "b3": (10,),
}


def _affine_multiply_adds(shapes: Mapping[str, tuple[int, ...]]) -> int:
    return sum(s[0] * s[1] for s in shapes.values() if len(s) == 2)


def _build_mlp(weights: Mapping[str, Any]) -> Any:
    return ThreeLayerNet.from_weights(weights)


@dataclass(frozen=True)
class ModelInfo:
    """One known network: its name, expected parameter shapes, cost, and how to build it."""

    name: str
    description: str
    _shapes: Callable[[], dict[str, tuple[int, ...]]]
    _multiply_adds: Callable[[], int]
    _build: Callable[[Mapping[str, Any]], Any]

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Expected tensor name -> shape."""
        return dict(self._shapes())

    def multiply_adds_per_image(self) -> int:
        """Multiply-adds of one image's forward pass, computed from the shapes."""
        return self._multiply_adds()

    def check(self, weights: Mapping[str, Any]) -> list[WeightProblem]:
        """Every way ``weights`` fails to fit this network; empty when it fits."""
        return check_weights(self.param_shapes(), weights)

    def build(self, weights: Mapping[str, Any]) -> Any:
        """The network built from ``weights``; :class:`ModelError` if they do not fit."""
        problems = self.check(weights)
        if problems:
            raise problems[0].error(self.name, problems[1:])
        return self._build(weights)


MODELS: dict[str, ModelInfo] = {
    "mlp": ModelInfo(
        "mlp",
        "ch. 3 three-layer network 784-50-100-10, sigmoid (net.mlp.ThreeLayerNet)",
        lambda: MLP_SHAPES,
        lambda: _affine_multiply_adds(MLP_SHAPES),
        _build_mlp,
    ),
    "simple_convnet": ModelInfo(
        "simple_convnet",
        "ch. 7 SimpleConvNet: conv 30x5x5 - relu - pool - affine 100 - relu - affine 10",
        SimpleConvNet.param_shapes,
        SimpleConvNet.multiply_adds_per_image,
        SimpleConvNet.from_weights,
    ),
    "deep_convnet": ModelInfo(
        "deep_convnet",
        "ch. 8 DeepConvNet: six 3x3 convs, three pools, affine 50 - affine 10, dropout",
        DeepConvNet.param_shapes,
        DeepConvNet.multiply_adds_per_image,
        DeepConvNet.from_weights,
    ),
}


def _model_info(name: str) -> ModelInfo:
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise OptionError(
            field="model", expected=f"one of {', '.join(MODELS)}", found=name
        ) from None


def detect_model(weights: Mapping[str, Any]) -> str:
    """Name of the network in :data:`MODELS` whose tensor names and shapes ``weights`` match.

    Raises :class:`ModelError` when none matches, saying for each candidate what did not fit,
    e.g. ``not mlp: W1 has shape (30, 1, 5, 5), expected shape (784, 50); not deep_convnet:
    missing W4 ...``.
    """
    reasons = []
    for name, info in MODELS.items():
        problems = info.check(weights)
        if not problems:
            return name
        listed = ", ".join(str(p) for p in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        reasons.append(f"not {name}: {listed}{more}")
    raise ModelError("the weights fit no known network: " + "; ".join(reasons))


def build_model(weights: Mapping[str, Any], model: str | None = None) -> Any:
    """The network for ``weights``: ``model`` if given (a key of :data:`MODELS`), else detected.

    Raises :class:`OptionError` for an unknown ``model`` and :class:`ModelError` when the
    weights do not fit.
    """
    info = _model_info(detect_model(weights) if model is None else model)
    return info.build(weights)


def multiply_adds_per_image(model_name: str) -> int:
    """Multiply-adds of one image's forward pass through ``model_name``, from its shapes."""
    return _model_info(model_name).multiply_adds_per_image()
