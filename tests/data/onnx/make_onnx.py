"""Make the ONNX fixtures with onnx itself (not with weightstore).

    python tests/data/onnx/make_onnx.py      (a venv with onnx, numpy, ml_dtypes)

model.onnx      a Gemm + Add graph whose initializers cover FLOAT, FLOAT16, BFLOAT16, DOUBLE,
                INT8, UINT8, INT16, UINT16, INT32, INT64, UINT32, UINT64 and BOOL, some as
                raw_data (numpy_helper.from_array) and some in the typed fields
                (helper.make_tensor with vals: float_data, int32_data, int64_data, ...),
                plus model metadata_props.
with_external.onnx   the same graph saved with onnx's external data (all tensors, one file
                with_external.bin beside it, offsets and lengths in each initializer).
expected.npz    every initializer as onnx.numpy_helper.to_array gives it (bfloat16 as its
                uint16 bits).
"""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent


def build() -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    rng = np.random.default_rng(21)
    W = rng.standard_normal((4, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    arrays = {
        "fc.weight": W, "fc.bias": b,
        "half": rng.standard_normal((2, 2)).astype(np.float16),
        "bf16": rng.standard_normal(5).astype(ml_dtypes.bfloat16),
        "double": np.array([0.1, -2.5, np.inf], np.float64),
        "u8": np.array([0, 255, 7], np.uint8), "u16": np.array([65535, 1], np.uint16),
        "u32": np.array([2**32 - 1], np.uint32), "u64": np.array([2**64 - 1, 3], np.uint64),
        "i16": np.array([-32768, 5], np.int16), "i32": np.array([[-1, 2]], np.int32),
        "i64": np.array([-(2**63), 2**53 + 1], np.int64),
        "flags": np.array([True, False, True]), "scalar": np.array(3.5, np.float32),
    }
    inits = [numpy_helper.from_array(a, name) for name, a in arrays.items()]
    # typed fields instead of raw_data: how some exporters store small tensors
    typed = {"typed.float": np.array([1.5, -0.25], np.float32),
             "typed.int8": np.array([-128, 0, 127], np.int8),
             "typed.int64": np.array([7, -7], np.int64),
             "typed.half": np.array([1.0, -2.0], np.float16)}
    inits.append(helper.make_tensor("typed.float", TensorProto.FLOAT, [2], [1.5, -0.25]))
    inits.append(helper.make_tensor("typed.int8", TensorProto.INT8, [3], [-128, 0, 127]))
    inits.append(helper.make_tensor("typed.int64", TensorProto.INT64, [2], [7, -7]))
    inits.append(helper.make_tensor("typed.half", TensorProto.FLOAT16, [2],
                                    np.array([1.0, -2.0], np.float16).view(np.uint16).tolist(),
                                    raw=False))
    arrays.update(typed)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["y"])],
                              "small", [x], [y], initializer=inits)
    model = helper.make_model(graph, producer_name="weightstore-fixture",
                              opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"author": "tests", "note": "héllo"})
    onnx.checker.check_model(model)
    return model, arrays


if __name__ == "__main__":
    model, arrays = build()
    onnx.save_model(model, HERE / "model.onnx")
    onnx.save_model(model, HERE / "with_external.onnx", save_as_external_data=True,
                    all_tensors_to_one_file=True, location="with_external.bin", size_threshold=0)
    loaded = onnx.load(HERE / "model.onnx")
    expected = {t.name: numpy_helper.to_array(t) for t in loaded.graph.initializer}
    np.savez(HERE / "expected.npz", **{k: (v.view(np.uint16) if v.dtype == ml_dtypes.bfloat16
                                           else v) for k, v in expected.items()})
    print({k: (v.dtype.name, v.shape) for k, v in expected.items()})
