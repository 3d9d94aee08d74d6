"""Make the Keras fixtures with Keras 3 itself (torch backend), not with weightstore.

    KERAS_BACKEND=torch python tests/data/keras/make_keras.py

(in a private venv with keras and torch==2.13.0, the CPU build). Writes:

small.weights.h5   model.save_weights: the Keras 3 layout (layers/<name>/vars/<i>)
small.keras        model.save: a zip of metadata.json, config.json, model.weights.h5
legacy.h5          model.save("legacy.h5"): the legacy Keras 2 HDF5 layout that Keras 3
                   still writes for a .h5 name (model_weights/<layer>/<layer>/<weight>,
                   layer_names / weight_names attributes, model_config). It is Keras 3's
                   writer of that layout, not TensorFlow's Keras 2 (tf-keras needs
                   TensorFlow, which is not installed for this).
expected.npz       every weight by the name Keras gives it (variable.path), in the
                   model's order (model.weights), to compare against.

The model: Dense, a BatchNormalization, a Dropout (no weights) and a nested Sequential
block, so names nest, a layer has non-trainable weights and one has none.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent


def model() -> keras.Model:
    keras.utils.set_random_seed(5)
    block = keras.Sequential([keras.layers.Dense(4, activation="relu", name="inner_dense")],
                             name="block")
    m = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(5, name="dense"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.Dropout(0.1, name="drop"),
        block,
        keras.layers.Dense(3, name="head"),
    ], name="small")
    x = np.random.default_rng(0).standard_normal((16, 6)).astype("float32")
    m.compile(optimizer="sgd", loss="mse")
    m.fit(x, np.zeros((16, 3), "float32"), epochs=1, verbose=0)  # moves the BN statistics
    return m


if __name__ == "__main__":
    m = model()
    m.save_weights(HERE / "small.weights.h5")
    m.save(HERE / "small.keras")
    m.save(HERE / "legacy.h5")
    np.savez(HERE / "expected.npz", **{f"{i:02d}:{w.path}": np.asarray(w.numpy())
                                       for i, w in enumerate(m.weights)})
    print([w.path for w in m.weights])
