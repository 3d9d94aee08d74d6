"""The progress bar: tqdm on stderr, for operations that last more than a second.

Shown only when stderr is a terminal and ``--quiet`` is not given; the library
reports through its ``progress=`` callback and never prints itself.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from tqdm import tqdm

from ..progress import ProgressCallback

#: Seconds an operation runs before the bar appears.
DELAY = 1.0


@contextlib.contextmanager
def progress_bar(desc: str, *, quiet: bool = False) -> Iterator[ProgressCallback | None]:
    """A ``progress(done, total)`` callback drawing a bar, or None when there is no bar."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    bar = tqdm(total=0, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
               delay=DELAY, file=sys.stderr, leave=False, dynamic_ncols=True)

    def update(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        bar.close()
