"""The lab's boundary: net's errors come out as weightstore's, with the same message."""

from __future__ import annotations

import numpy as np
import pytest

import net.errors
import weightstore.errors
from net.models import detect_model
from weightstore import Weights
from weightstore.lab._neterrors import CLASSES, net_errors, translate
from weightstore.lab.evaluate import build_network


def test_every_net_error_has_a_weightstore_twin_of_the_same_name() -> None:
    net_classes = {c for c in vars(net.errors).values()
                   if isinstance(c, type) and issubclass(c, net.errors.NetError)
                   and c is not net.errors.NetError}
    assert set(CLASSES) == net_classes
    for src, dst in CLASSES.items():
        assert src.__name__ == dst.__name__
        assert issubclass(dst, weightstore.errors.WeightstoreError)


@pytest.mark.parametrize("cls", sorted(CLASSES, key=lambda c: c.__name__))
def test_translation_keeps_the_parts_and_the_message(cls) -> None:
    error = cls("cut short", path="f.gz", field="magic", expected=2051, found=2049, hint="h")
    got = translate(error)
    assert type(got) is CLASSES[cls]
    assert str(got) == str(error) == "f.gz: magic: cut short (expected 2051, found 2049); h"
    assert (got.path, got.field, got.expected, got.found, got.hint) == (
        "f.gz", "magic", 2051, 2049, "h")


def test_the_context_manager_chains_the_original() -> None:
    with pytest.raises(weightstore.errors.DataError) as info, net_errors():
        raise net.errors.DataError("missing", path="x.pkl")
    assert isinstance(info.value.__cause__, net.errors.DataError)
    assert str(info.value) == "x.pkl: missing"


def test_a_misfit_through_the_lab_is_a_weightstore_error_with_nets_message() -> None:
    weights = Weights({"W1": np.zeros((3, 3), np.float32)})
    with pytest.raises(net.errors.ModelError) as direct:
        detect_model(weights)
    with pytest.raises(weightstore.errors.ModelError) as through_lab:
        build_network(weights)
    assert str(through_lab.value) == str(direct.value)
    assert not isinstance(through_lab.value, net.errors.NetError)
