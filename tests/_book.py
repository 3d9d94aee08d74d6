"""Shared by the interop tests: where the reference data is, and the book's forward pass."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

#: ../shared/data beside the checkout, as the data README says.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SAMPLE = SHARED_DATA / "sample_weight.pkl"
MNIST = SHARED_DATA / "mnist"
#: Accuracy of the book's weights on the 10,000 test images.
BOOK_ACCURACY = 0.9352

needs_book_data = pytest.mark.skipif(
    not (SAMPLE.is_file() and (MNIST / "t10k-images-idx3-ubyte.gz").is_file()),
    reason=f"reference data (sample_weight.pkl, MNIST test set) absent from {SHARED_DATA}",
)


def sigmoid(a: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-a))


def softmax(a: np.ndarray) -> np.ndarray:
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def forward(w: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The book's predict: x [N, 784] float32 -> y [N, 10], in float32 like the book."""
    p = {k: np.asarray(w[k], dtype=np.float32) for k in ("W1", "b1", "W2", "b2", "W3", "b3")}
    z1 = sigmoid(x @ p["W1"] + p["b1"])
    z2 = sigmoid(z1 @ p["W2"] + p["b2"])
    return softmax(z2 @ p["W3"] + p["b3"])


def mnist_inputs() -> tuple[np.ndarray, np.ndarray]:
    """The test images as float32 [N, 784] in [0, 1], and their labels."""
    from weightstore.interop.mnist import load_test_images, load_test_labels

    x = load_test_images(MNIST).reshape(-1, 784).astype(np.float32) / np.float32(255)
    return x, load_test_labels(MNIST)
