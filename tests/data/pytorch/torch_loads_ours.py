"""Have REAL TORCH load the .pt files weightstore writes, and record what it loaded.

Run from the checkout, in a private venv holding torch 2.13.0 (CPU), ml_dtypes and
weightstore's dependencies, with the book's data beside the checkout (../shared/data)::

    PYTHONPATH=. /work/venv-torch/bin/python tests/data/pytorch/torch_loads_ours.py

For each case of tests/tool_verdicts.py (TORCH_CASES) it writes our files, loads each
with ``torch.load(weights_only=True)`` and with ``mmap=True``, asserts that torch's
tensors (names, order, dtypes, shapes, bits) and ``__metadata__`` are the source's, and
writes ``ours/torch_loads_ours.json``: torch's version, the sha256 of every file written and
torch's view. ``ours/corpus.pt`` (the codec corpus plus bfloat16) is written first: it is
an input of the "corpus" case, committed so that a change to tests/corpus.py does not
change what torch verified. tests/test_tool_verdicts.py checks the record without torch.
Run it again whenever that test says the writer's bytes changed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import torch

TESTS = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS.parent))

import tool_verdicts as tv  # noqa: E402
from conftest import shared_data_dir  # noqa: E402
from corpus import corpus  # noqa: E402

import weightstore as ws  # noqa: E402


def _numpy(t: torch.Tensor) -> np.ndarray:
    if t.dtype == torch.bfloat16:
        return t.contiguous().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.contiguous().numpy()


def torch_view(paths: list[Path]) -> tuple[dict, list[list]]:
    """torch's ``__metadata__`` and tensors from *paths* (merged), identical with and
    without mmap."""
    seen = []
    for mmap in (False, True):
        merged: dict = {}
        metadata: dict = {}
        for p in paths:
            got = torch.load(p, weights_only=True, mmap=mmap)
            metadata.update(got.pop("__metadata__", {}))
            assert all(isinstance(t, torch.Tensor) for t in got.values()), p
            merged.update({k: _numpy(t) for k, t in got.items()})
        seen.append((metadata, tv.view(merged)))
    assert seen[0] == seen[1], "torch.load with and without mmap differ"
    return seen[0]


def main() -> None:
    data = shared_data_dir()
    if data is None:
        raise SystemExit("the book's data (../shared/data or $WEIGHTSTORE_DATA) is needed")
    tensors, metadata = corpus()
    tensors["dtypes/bfloat16"] = np.array([1.5, -2, np.inf], dtype=ml_dtypes.bfloat16)
    tv.TORCH_CORPUS.parent.mkdir(exist_ok=True)
    ws.save(ws.Weights(tensors, metadata), tv.TORCH_CORPUS)
    assert tv.view(ws.load(tv.TORCH_CORPUS)) == tv.view(tensors)

    def judge(name: str, written: tv.Written) -> dict:
        torch_metadata, tensors_seen = torch_view(written.loads)
        assert tensors_seen == tv.view(written.source), name
        assert torch_metadata == written.metadata, name
        print(f"{name}: torch loaded {len(tensors_seen)} tensors identically")
        return {"metadata": torch_metadata, "tensors": tensors_seen}

    record = {"tool": f"torch {torch.__version__}",
              "loaded_with": "torch.load(path, weights_only=True, mmap=False and True)",
              "made_by": "tests/data/pytorch/torch_loads_ours.py",
              "cases": tv.run_cases(tv.TORCH_CASES, data, judge)}
    tensors_from_corpus = record["cases"]["corpus"]["tensors"]
    assert tensors_from_corpus == tv.view(tensors), "corpus.pt is not the corpus"
    tv.save_record(tv.TORCH_RECORD, record)
    print(f"wrote {tv.TORCH_RECORD}")


if __name__ == "__main__":
    main()
