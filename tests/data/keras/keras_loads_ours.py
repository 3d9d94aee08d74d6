"""Have REAL KERAS load the HDF5 file weightstore writes from Keras's legacy.h5, and
record what it loaded.

Run from the checkout, in a private venv with keras and torch==2.13.0 (CPU build)::

    KERAS_BACKEND=torch PYTHONPATH=. /work/venv-gguf/bin/python \\
        tests/data/keras/keras_loads_ours.py

For each case of tests/tool_verdicts.py (KERAS_CASES) it writes our file, loads it with
``keras.saving.load_model(path, compile=False)`` (compile=True fails on Keras's own file
as well), asserts that the model's weights (paths, order, bits) are those of Keras's own
legacy.h5 loaded the same way (recorded too) and, in order, the values of expected.npz
(whose names differ for the nested block: Keras names it differently when it loads),
and writes ``keras_loads_ours.json``: Keras's version, the sha256 of the file written
and Keras's view.
tests/test_tool_verdicts.py checks the record without keras.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402

TESTS = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS.parent))

import tool_verdicts as tv  # noqa: E402


def keras_view(path: Path) -> list[list]:
    model = keras.saving.load_model(path, compile=False)
    return tv.view({w.path: np.asarray(w.numpy()) for w in model.weights})


def main() -> None:
    reference = keras_view(tv.KERAS_DATA / "legacy.h5")
    def judge(name: str, written: tv.Written) -> dict:
        (loaded,) = written.loads
        seen = keras_view(loaded)
        assert seen == reference, name  # paths too: Keras renames a nested block
        assert [t[1:] for t in seen] == [t[1:] for t in tv.view(written.source)], name
        print(f"{name}: keras loaded {len(seen)} weights identically")
        return {"metadata": {}, "tensors": seen, "keras_own_file": reference}

    record = {"tool": f"keras {keras.__version__} ({keras.backend.backend()} backend)",
              "loaded_with": "keras.saving.load_model(path, compile=False)",
              "made_by": "tests/data/keras/keras_loads_ours.py",
              "cases": tv.run_cases(tv.KERAS_CASES, tv.KERAS_DATA, judge)}
    tv.save_record(tv.KERAS_RECORD, record)
    print(f"wrote {tv.KERAS_RECORD}")


if __name__ == "__main__":
    main()
