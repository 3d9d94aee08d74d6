"""Export the book's 3-layer network as an ONNX model whose initializers are the weights.

The graph is the book's ``predict`` exactly, one ONNX node per step::

    a1 = MatMul(x, W1) + b1    z1 = Sigmoid(a1)
    a2 = MatMul(z1, W2) + b2   z2 = Sigmoid(a2)
    a3 = MatMul(z2, W3) + b3   y  = Softmax(a3, axis=-1)

Input ``x``: float32 ``[N, 784]`` (``N`` is symbolic, any batch size), pixels as
``uint8 / 255``. Output ``y``: float32 ``[N, 10]``, each row summing to 1. The
layer sizes are taken from the weights (784-50-100-10 for the book's), so other
sizes of the same network export too.

The default opset is :data:`DEFAULT_OPSET` (17, which ONNX Runtime 1.13 and later
run); any opset from 13 (where Softmax took its current per-axis meaning) up to
the installed ``onnx`` package's newest is accepted. The model declares the
lowest IR version its opset allows, so older runtimes read it too.

Run it with ONNX Runtime::

    import onnxruntime as ort
    session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": images.reshape(-1, 784).astype("float32") / 255})
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ... import __version__
from ...errors import MissingDependencyError, ModelError, OptionError
from ...fileio import atomic_write

__all__ = ["export_mlp", "DEFAULT_OPSET", "MIN_OPSET", "PARAM_NAMES", "INPUT", "OUTPUT"]

#: Opset written unless another is asked for.
DEFAULT_OPSET = 17
#: Oldest opset accepted (Softmax before 13 flattened its input to 2-D first).
MIN_OPSET = 13
#: The tensors the network needs, in the order they are used.
PARAM_NAMES = ("W1", "b1", "W2", "b2", "W3", "b3")
#: Name of the graph's input and output.
INPUT, OUTPUT = "x", "y"


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as e:
        raise MissingDependencyError("onnx", "onnx", "ONNX export") from e
    return onnx


def _check_params(weights: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The six parameters as float32 arrays, with shapes that chain, or :class:`ModelError`."""
    missing = [name for name in PARAM_NAMES if name not in weights]
    if missing:
        raise ModelError(field="weights", expected=f"tensors {', '.join(PARAM_NAMES)}",
                         found=f"{', '.join(missing)} missing")
    params: dict[str, np.ndarray] = {}
    for name in PARAM_NAMES:
        array = np.asarray(weights[name])
        if array.dtype.kind != "f" and array.dtype.name != "bfloat16":
            raise ModelError(field=f"tensor {name!r}", expected="a floating-point dtype",
                             found=str(array.dtype))
        params[name] = np.ascontiguousarray(array.astype(np.float32))
    previous = None
    for i in (1, 2, 3):
        w, b = params[f"W{i}"], params[f"b{i}"]
        if w.ndim != 2 or (previous is not None and w.shape[0] != previous):
            raise ModelError(field=f"tensor 'W{i}' shape",
                             expected=f"[{previous if previous is not None else 'inputs'}, "
                             "outputs]", found=list(w.shape))
        if b.shape != (w.shape[1],):
            raise ModelError(field=f"tensor 'b{i}' shape", expected=[w.shape[1]],
                             found=list(b.shape))
        previous = w.shape[1]
    return params


def export_mlp(
    weights: Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write the book's 3-layer network with *weights* (``W1 b1 W2 b2 W3 b3``) to *path*.

    Weights of any float dtype are stored as float32 (the network's arithmetic type).
    ``weights.metadata``, when present, becomes the model's ``metadata_props``. The model
    is checked with ``onnx.checker`` before it is written (atomically). Returns *path*.
    Raises :class:`ModelError` for missing or mis-shaped tensors, :class:`OptionError`
    for an opset out of range, :class:`MissingDependencyError` without ``onnx``.
    """
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise OptionError(field="opset", expected=f"an integer from {MIN_OPSET} to {newest} "
                          f"(the installed onnx {onnx.__version__} knows up to {newest})",
                          found=opset)
    params = _check_params(weights)
    n_in, n_out = params["W1"].shape[0], params["W3"].shape[1]

    nodes = []
    layer_input = INPUT
    for i in (1, 2, 3):
        nodes.append(helper.make_node("MatMul", [layer_input, f"W{i}"], [f"x_W{i}"],
                                      name=f"matmul{i}"))
        nodes.append(helper.make_node("Add", [f"x_W{i}", f"b{i}"], [f"a{i}"], name=f"add{i}"))
        if i < 3:
            nodes.append(helper.make_node("Sigmoid", [f"a{i}"], [f"z{i}"], name=f"sigmoid{i}"))
            layer_input = f"z{i}"
    nodes.append(helper.make_node("Softmax", ["a3"], [OUTPUT], name="softmax", axis=-1))

    graph = helper.make_graph(
        nodes,
        "three_layer_mlp",
        inputs=[helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", n_in])],
        outputs=[helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", n_out])],
        initializer=[numpy_helper.from_array(params[name], name=name) for name in PARAM_NAMES],
        doc_string="y = softmax(sigmoid(sigmoid(x W1 + b1) W2 + b2) W3 + b3)",
    )
    opset_id = helper.make_opsetid("", opset)
    model = helper.make_model(
        graph,
        opset_imports=[opset_id],
        ir_version=helper.find_min_ir_version_for([opset_id]),
        producer_name="weightstore",
        producer_version=__version__,
        doc_string="The 3-layer MNIST network of 'Deep Learning from Scratch', chapter 3.",
    )
    metadata = getattr(weights, "metadata", None) or {}
    if metadata:
        helper.set_model_props(model, dict(metadata))
    onnx.checker.check_model(model, full_check=True)
    with atomic_write(path) as f:
        f.write(model.SerializeToString())
    return Path(path)
