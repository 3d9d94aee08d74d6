"""The notes' ``str(network)`` text dump, written and read back.

:func:`text_dump` is what printing the network's dict gives (numpy printing every element);
:func:`parse_text_dump` recovers what a program that had only that text could.
"""

from __future__ import annotations

import re
import sys

import numpy as np

from ...model import Weights

__all__ = ["text_dump", "parse_text_dump"]


def text_dump(weights: Weights) -> str:
    """``str(network)`` with numpy printing every element: what the notes wrote to a file."""
    with np.printoptions(threshold=sys.maxsize):
        return str({k: np.asarray(v) for k, v in weights.items()})


_NUMBER = re.compile(rb"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|inf|nan)")


def parse_text_dump(text: str, like: Weights) -> Weights:
    """Read a :func:`text_dump` back into arrays shaped and typed like *like*: what a program
    that had only the text file could recover."""
    data = text.encode()
    out: dict[str, np.ndarray] = {}
    names = list(like)
    for i, name in enumerate(names):
        start = data.index(f"{name!r}: array(".encode())
        end = data.index(f"{names[i + 1]!r}: array(".encode()) if i + 1 < len(names) else len(data)
        body = data[start + len(f"{name!r}: array(".encode()):end]
        body = body[: body.rfind(b")")]
        body = re.sub(rb",\s*dtype=\w+\s*$", b"", body)
        numbers = np.array(_NUMBER.findall(body), dtype=np.float64)
        ref = like[name]
        out[name] = numbers.astype(ref.dtype).reshape(ref.shape)
    return Weights(out)
