"""The optional torch group: what we write, loaded by torch itself.

Why optional: torch is a ~200 MB (CPU) to multi-GB download that the project does not
depend on, and CI does not install it. Everything that can be checked without torch is
in test_pytorch.py, against files torch wrote (tests/data/pytorch), and always runs.
These tests add the other direction: torch.load(weights_only=True) and
torch.load(mmap=True) of files weightstore writes.

CI checks the same without torch: tests/data/pytorch/torch_loads_ours.py had torch load
these files and recorded what it loaded; tests/test_tool_verdicts.py checks that our
writer still writes those very bytes and that the record is the source's tensors.

They are marked ``torch`` and deselected by default (pyproject addopts), so that no run
skips them: ask for them where torch is installed. Without torch they are skipped with
this reason (a failure in CI); set ``WEIGHTSTORE_REQUIRE_TORCH=1`` to make a missing torch
a failure anywhere::

    /work/venv-torch/bin/pip install torch==2.13.0 -e '.[test]'
    WEIGHTSTORE_REQUIRE_TORCH=1 /work/venv-torch/bin/python -m pytest -m torch \
        tests/test_pytorch_torch.py
"""

from __future__ import annotations

import importlib.util
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from corpus import corpus

import weightstore as ws
from weightstore.model import arrays_identical

DATA = Path(__file__).resolve().parent / "data" / "pytorch"
HAVE_TORCH = importlib.util.find_spec("torch") is not None

if not HAVE_TORCH and os.environ.get("WEIGHTSTORE_REQUIRE_TORCH") == "1":
    raise RuntimeError("WEIGHTSTORE_REQUIRE_TORCH=1 but torch is not importable")

pytestmark = [
    pytest.mark.torch,
    pytest.mark.skipif(not HAVE_TORCH, reason="optional torch group: torch is not installed "
                       "(CI runs test_pytorch.py without it; see this module's docstring)"),
]


def _numpy(t) -> np.ndarray:  # noqa: ANN001
    import torch

    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.contiguous().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.contiguous().numpy()


def _torch_loads(path: Path, want: ws.Weights) -> None:
    import torch

    for mmap in (False, True):
        got = torch.load(path, weights_only=True, mmap=mmap)
        meta = got.pop("__metadata__", {})
        assert meta == want.metadata
        assert list(got) == list(want), mmap
        for name, array in want.items():
            assert tuple(got[name].shape) == array.shape, name
            assert arrays_identical(array, _numpy(got[name])), (name, mmap)


def test_book_weights_to_pt_load_identically_in_torch(sample_weight_path: Path,
                                                      tmp_path: Path) -> None:
    """Done-when: sample_weight.pkl -> .pt -> torch.load(weights_only=True) is identical."""
    out = tmp_path / "sample.pt"
    ws.convert(sample_weight_path, out)
    with open(sample_weight_path, "rb") as f:
        reference = pickle.load(f)
    _torch_loads(out, ws.Weights(reference))


def test_every_dtype_and_layout_loads_in_torch(tmp_path: Path) -> None:
    import ml_dtypes

    tensors, metadata = corpus()
    tensors["dtypes/bfloat16"] = np.array([1.5, -2, np.inf], dtype=ml_dtypes.bfloat16)
    weights = ws.Weights(tensors, metadata)
    out = tmp_path / "corpus.pt"
    ws.save(weights, out)
    _torch_loads(out, weights)


def _flat(obj, prefix: str, out: dict) -> dict:  # noqa: ANN001
    """torch's loaded object as weightstore names its tensors."""
    import torch

    if isinstance(obj, dict):
        for k, v in obj.items():
            _flat(v, f"{prefix}/{k}" if prefix else str(k), out)
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            _flat(v, f"{prefix}/{i}" if prefix else str(i), out)
    elif isinstance(obj, torch.Tensor):
        out[prefix] = obj
    return out


def test_torch_files_read_as_torch_reads_them() -> None:
    import torch

    for name in ("checkpoint.pt", "legacy.pt", "bigendian.pt", "uint16.pt"):
        ours = ws.load(DATA / name)
        flat = _flat(torch.load(DATA / name, weights_only=True), "", {})
        assert list(ours) == list(flat), name
        for k, t in flat.items():
            assert arrays_identical(_numpy(t), ours[k]), (name, k)


def test_streamed_and_sharded_writes_load_in_torch(tmp_path: Path) -> None:
    import torch

    out = tmp_path / "from-open.pt"
    ws.convert(DATA / "checkpoint.pt", out)  # from a lazy source, one tensor at a time
    _torch_loads(out, ws.load(DATA / "checkpoint.pt"))
    index = ws.save(ws.load(DATA / "legacy.pt"), tmp_path / "pytorch_model.bin",
                    max_shard_size=200)
    assert Path(index).name == "pytorch_model.bin.index.json"
    merged = {}
    for shard in sorted(tmp_path.glob("pytorch_model-*.bin")):
        merged.update(torch.load(shard, weights_only=True))
    want = ws.load(DATA / "legacy.pt")
    assert set(merged) == set(want)
    for k in want:
        assert arrays_identical(want[k], _numpy(merged[k])), k
