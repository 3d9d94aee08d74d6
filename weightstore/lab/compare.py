"""``weightstore diff --eval``: the accuracy two weight files give the book's network."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import api
from .evaluate import evaluate

__all__ = ["EvalDiff", "eval_diff"]


@dataclass(frozen=True)
class EvalDiff:
    """Both files' accuracy on the MNIST test set and how many predictions changed."""

    model_a: str
    model_b: str
    accuracy_a: float
    accuracy_b: float
    changed: int
    total: int

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {"model_a": self.model_a, "model_b": self.model_b,
                "accuracy_a": self.accuracy_a, "accuracy_b": self.accuracy_b,
                "changed": self.changed, "total": self.total}


def eval_diff(a: str | os.PathLike[str], b: str | os.PathLike[str], *,
              data_dir: str | os.PathLike[str] | None = None) -> EvalDiff:
    """Run the network each file holds (detected from its tensors; quantized files are
    dequantized) on the 10,000 test images and count the predictions that differ."""
    ea = evaluate(api.load(a), data_dir=data_dir)
    eb = evaluate(api.load(b), data_dir=data_dir)
    changed = int(np.count_nonzero(ea.predictions != eb.predictions))
    return EvalDiff(ea.model, eb.model, ea.accuracy, eb.accuracy, changed, ea.total)
