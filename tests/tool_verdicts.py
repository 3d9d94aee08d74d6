"""What torch and Keras made of files weightstore writes: recorded once, checked in CI.

Neither tool is a dependency (torch is a ~200 MB download, Keras needs a backend), and CI
installs neither. So the check is split in two:

1. With the tool installed, a script (``tests/data/pytorch/torch_loads_ours.py``,
   ``tests/data/keras/keras_loads_ours.py``) writes our files through the cases below,
   has the real tool load them (``torch.load(weights_only=True)``, with and without
   ``mmap``; ``keras.saving.load_model``), asserts that the tool's tensors are the source's,
   bit for bit, and records in a JSON file beside it: the sha256 of every file written and
   what the tool loaded (each tensor's name, dtype, shape and the sha256 of its bytes).
2. ``tests/test_tool_verdicts.py`` (always run, no tool) writes the same files with
   today's writer and checks that they are byte-identical to the ones the tool loaded,
   and that the recorded tool view is today's source weights. A writer change that
   alters a byte fails there until the script is run again with the tool.

The live tests (``tests/test_pytorch_torch.py``, marker ``torch``;
``test_keras_itself_...``, marker ``keras``) still run the tools directly when asked for:
``python -m pytest -m "torch or keras"``; pyproject's addopts deselect them otherwise.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import weightstore as ws
from weightstore.model import dtype_name

TESTS = Path(__file__).resolve().parent
TORCH_DATA = TESTS / "data" / "pytorch"
KERAS_DATA = TESTS / "data" / "keras"
#: the corpus file torch verified; an input, so a change to corpus.py does not move it
TORCH_CORPUS = TORCH_DATA / "ours" / "corpus.pt"
TORCH_RECORD = TORCH_DATA / "ours" / "torch_loads_ours.json"
KERAS_RECORD = KERAS_DATA / "keras_loads_ours.json"


def digest(array: Any) -> list:
    """``[dtype, shape, sha256]`` of an array's values: little-endian C-order bytes, so
    NaN payloads and -0.0 count and byte order does not."""
    a = np.asarray(array)
    name = dtype_name(a.dtype) or str(a.dtype)
    if a.dtype.kind != "b" and a.dtype.itemsize > 1:
        a = a.astype(a.dtype.newbyteorder("<"))
    data = np.ascontiguousarray(a).tobytes()
    return [name, list(a.shape), hashlib.sha256(data).hexdigest()]


def view(tensors: Mapping[str, Any]) -> list[list]:
    """``[name, dtype, shape, sha256]`` per tensor, in the mapping's order."""
    return [[name, *digest(array)] for name, array in tensors.items()]


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Written:
    """Files weightstore wrote for one case and what a tool must load from them."""

    files: list[Path]  # every file written (the ones loaded, and an index)
    loads: list[Path]  # the files the tool loads, merged in this order
    source: Mapping[str, np.ndarray]  # the tensors they must give
    metadata: dict[str, str] = field(default_factory=dict)

    def hashes(self, root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): file_sha256(p) for p in sorted(self.files)}


def _book(out: Path, data: Path) -> Written:
    """The book's sample_weight.pkl converted to .pt (the reference data, not committed)."""
    target = out / "sample.pt"
    ws.convert(data / "sample_weight.pkl", target)
    with open(data / "sample_weight.pkl", "rb") as f:
        reference = ws.Weights(pickle.load(f))  # the book's own file, unpickled as it is
    return Written([target], [target], reference, reference.metadata)


def _corpus(out: Path, data: Path) -> Written:
    """Every dtype and layout of the codec corpus (and bfloat16), re-saved from the file
    torch verified."""
    source = ws.load(TORCH_CORPUS)
    target = out / "corpus.pt"
    ws.save(source, target)
    return Written([target], [target], source, source.metadata)


def _streamed(out: Path, data: Path) -> Written:
    """A torch-made checkpoint converted from a lazy source, one tensor at a time."""
    target = out / "from-open.pt"
    ws.convert(TORCH_DATA / "checkpoint.pt", target)
    source = ws.load(TORCH_DATA / "checkpoint.pt")
    return Written([target], [target], source, source.metadata)


def _sharded(out: Path, data: Path) -> Written:
    """A torch-made legacy file saved as Hugging Face shards of at most 200 bytes."""
    folder = out / "sharded"
    folder.mkdir()
    source = ws.load(TORCH_DATA / "legacy.pt")
    index = Path(ws.save(source, folder / "pytorch_model.bin", max_shard_size=200))
    shards = sorted(folder.glob("pytorch_model-*.bin"))
    return Written([index, *shards], shards, dict(source), {})


TORCH_CASES: dict[str, Callable[[Path, Path], Written]] = {
    "book": _book, "corpus": _corpus, "streamed": _streamed, "sharded": _sharded,
}


def _keras_legacy_gzip(out: Path, data: Path) -> Written:
    """Keras's own legacy .h5 file re-written by weightstore with gzip compression."""
    target = out / "gz.h5"
    ws.convert(KERAS_DATA / "legacy.h5", target, compression="gzip")
    with np.load(KERAS_DATA / "expected.npz") as z:  # Keras's weights when it made the file
        source = {k.split(":", 1)[1]: z[k] for k in sorted(z.files)}
    return Written([target], [target], source)


KERAS_CASES: dict[str, Callable[[Path, Path], Written]] = {"legacy_gzip": _keras_legacy_gzip}


def run_cases(cases: dict[str, Callable[[Path, Path], Written]], data: Path,
              judge: Callable[[str, Written], dict]) -> dict[str, dict]:
    """Each case's files written in a temporary folder: the sha256 of each, and what
    *judge* (the live tool, asserting as it goes) made of them, by case name."""
    recorded = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in cases.items():
            out = Path(tmp) / name
            out.mkdir()
            written = make(out, data)
            recorded[name] = {"files": written.hashes(out), **judge(name, written)}
    return recorded


def load_record(path: Path) -> dict:
    return json.loads(path.read_text("utf-8"))


def save_record(path: Path, record: dict) -> None:
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", "utf-8")
