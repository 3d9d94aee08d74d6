"""ONNX initializers made by onnx.helper in each typed field (not raw_data), float8, sparse
and external ones: read exactly, or refused naming the tensor and the field."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import weightstore as ws

onnx = pytest.importorskip("onnx", reason="the ONNX codec needs the 'onnx' extra")
from onnx import TensorProto, helper  # noqa: E402


def _model(path: Path, initializers: list, sparse: list | None = None) -> Path:
    graph = helper.make_graph([], "g", [], [], initializer=initializers,
                              sparse_initializer=sparse or [])
    path.write_bytes(helper.make_model(graph).SerializeToString())
    return path


@pytest.mark.parametrize(("onnx_type", "values", "dtype"), [
    (TensorProto.FLOAT, [1.5, -0.0, np.inf], np.float32),  # float_data
    (TensorProto.DOUBLE, [1 / 3, -2.0, np.nan], np.float64),  # double_data
    (TensorProto.INT64, [-(2**63), 2**63 - 1, 0], np.int64),  # int64_data
    (TensorProto.UINT32, [0, 2**32 - 1, 7], np.uint32),  # uint64_data
    (TensorProto.UINT64, [0, 2**64 - 1, 7], np.uint64),
    (TensorProto.INT8, [-128, 127, 0], np.int8),  # int32_data
    (TensorProto.UINT16, [0, 65535, 1], np.uint16),
    (TensorProto.BOOL, [True, False, True], np.bool_),
    (TensorProto.FLOAT16, [1.5, -2.0, 65504.0], np.float16),  # int32_data bit patterns
])
def test_typed_fields_read_exactly(tmp_path: Path, onnx_type: int, values: list,
                                   dtype: type) -> None:
    want = np.array(values, dtype=dtype)
    path = _model(tmp_path / "m.onnx", [helper.make_tensor("t", onnx_type, [3], values,
                                                           raw=False)])
    got = ws.load(path)["t"]
    assert got.dtype == want.dtype
    assert np.array_equal(got.view(f"u{got.itemsize}") if got.dtype.kind == "f" else got,
                          want.view(f"u{want.itemsize}") if want.dtype.kind == "f" else want)


def _int32_field(name: str, onnx_type: int, ints: list[int], dims: list[int]):  # type: ignore[no-untyped-def]
    t = TensorProto(name=name, data_type=onnx_type, dims=dims)
    t.int32_data.extend(ints)
    return t


@pytest.mark.parametrize(("tensor", "message"), [
    (_int32_field("t", TensorProto.INT8, [1, 300], [2]),
     "tensor 't' int32_data: expected values within int8, found 300"),
    (_int32_field("t", TensorProto.FLOAT16, [1, 70000], [2]),
     "tensor 't' int32_data: expected FLOAT16 bit patterns, found 70000"),
    (_int32_field("t", TensorProto.INT16, [1, 2, 3], [2]),
     "tensor 't' int32_data: expected 2 values for its dims, found 3"),
    (helper.make_tensor("f8", TensorProto.FLOAT8E4M3FN, [2], [1.0, 2.0]),
     "tensor 'f8': expected a type weightstore holds .*found FLOAT8E4M3FN"),
])
def test_values_outside_their_type_are_refused_naming_the_field(tmp_path: Path, tensor,
                                                                message: str) -> None:
    with pytest.raises((ws.FormatError, ws.UnsupportedError), match=message):
        ws.load(_model(tmp_path / "m.onnx", [tensor]))


def test_float8_is_known_by_ml_dtypes_but_not_held() -> None:
    assert np.dtype(ml_dtypes.float8_e4m3fn).itemsize == 1  # what the reader resolves first


def test_sparse_initializers_and_too_many_initializers_are_refused(tmp_path: Path) -> None:
    values = helper.make_tensor("sp", TensorProto.FLOAT, [1], [1.0])
    indices = helper.make_tensor("sp_idx", TensorProto.INT64, [1], [0])
    sparse = helper.make_sparse_tensor(values, indices, [4])
    with pytest.raises(ws.UnsupportedError, match="sparse initializer 'sp': expected dense"):
        ws.load(_model(tmp_path / "s.onnx", [], [sparse]))
    many = _model(tmp_path / "m.onnx", [helper.make_tensor(f"t{i}", TensorProto.FLOAT, [1],
                                                           [1.0]) for i in range(3)])
    with pytest.raises(ws.LimitError, match="initializers: expected at most 2"):
        ws.load(many, limits=ws.Limits(max_tensors=2))
    with pytest.raises(ws.LimitError, match="file size: expected at most"):
        ws.load(many, limits=ws.Limits(max_total_bytes=1, max_header_bytes=1))


def _external(path: Path, info: dict[str, str]) -> Path:
    t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2])
    t.data_location = TensorProto.EXTERNAL
    for k, v in info.items():
        entry = t.external_data.add()
        entry.key, entry.value = k, v
    return _model(path, [t])


def test_external_data_faults_name_the_tensor(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(np.float32([1, 2]).tobytes())
    good = _external(tmp_path / "good.onnx", {"location": "w.bin"})
    assert np.array_equal(ws.load(good)["w"], [1, 2])
    bad = _external(tmp_path / "a.onnx", {"location": "w.bin", "offset": "x"})
    with pytest.raises(ws.FormatError, match="tensor 'w' external data: expected integer "
                                             "offset and length"):
        ws.load(bad)
    bad = _external(tmp_path / "b.onnx", {"location": "w.bin", "length": "4"})
    with pytest.raises(ws.FormatError, match="expected 8 bytes at offset 0 of the 8-byte "
                                             "data file, found offset 0, length 4"):
        ws.load(bad)
    bad = _external(tmp_path / "c.onnx", {"location": "missing.bin"})
    with pytest.raises(ws.FileAccessError, match="cannot open the external data"):
        ws.load(bad)
    (tmp_path / "fifo").mkdir()
    bad = _external(tmp_path / "d.onnx", {"location": "fifo"})
    with pytest.raises((ws.FileAccessError, ws.UnsafeFileError), match="tensor 'w' external"):
        ws.load(bad)
