"""weightstore.model.dtype_name: the canonical names, the same whether asked once or again
(its answers are kept per dtype), and a bounded memory of them."""

from __future__ import annotations

import numpy as np
import pytest

from weightstore import model
from weightstore.model import dtype_name


@pytest.mark.parametrize(("dtype", "name"), [
    ("<f4", "float32"), (">f4", "float32"), ("=f4", "float32"), (np.float16, "float16"),
    ("<i8", "int64"), (">u2", "uint16"), (bool, "bool"), ("u1", "uint8"),
    ("c8", None), ("S4", None), ("<M8[s]", None), ([("a", "<f4")], None),
    (("<f4", (2,)), None), ("O", None), ("f8", "float64"),
])
def test_names_are_the_same_asked_again(dtype, name) -> None:  # type: ignore[no-untyped-def]
    model._NAMES.clear()
    assert dtype_name(np.dtype(dtype)) == name  # computed
    assert dtype_name(np.dtype(dtype)) == name  # kept
    assert dtype_name(dtype) == name  # not a dtype object: converted, same answer


def test_bfloat16_is_named_when_ml_dtypes_is_there() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")  # in the 'test' extra
    assert dtype_name(np.dtype(ml_dtypes.bfloat16)) == "bfloat16"
    assert dtype_name(np.dtype(ml_dtypes.bfloat16)) == "bfloat16"


def test_the_names_kept_are_bounded() -> None:
    model._NAMES.clear()
    for i in range(model._NAMES_KEPT + 50):  # strangers' files can hold many struct types
        assert dtype_name(np.dtype([(f"f{i}", "<f4")])) is None
    assert len(model._NAMES) == model._NAMES_KEPT
    assert dtype_name(np.dtype("<f4")) == "float32"  # past the bound: still answered
