"""The report drawn: size against error and against accuracy lost (the optional ``plot``
extra, matplotlib, imported only when drawing).

Each row is a numbered point; the key beside the plots names the numbers, so that no
label runs into another. The numbers are placed greedily around their point (at growing
distances, with a leader line) where they overlap no number or point already drawn. The
accuracy axis shows the accuracy *lost* against the source, in test images, on a
symmetric log scale: exact and near-exact rows (0, 1, 2 images) stay apart however far an
outlier (int2: thousands of images) lies.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from typing import Any

from ...errors import MissingDependencyError
from .measure import Report, Row

__all__ = ["check_plot_available", "plot", "place_labels"]

#: Offsets (in points) tried around a point, at growing distances.
_DIRECTIONS = [(1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1),
               (0.3, 1), (-0.3, 1), (0.3, -1), (-0.3, -1)]
_RADII = (4, 9, 15, 22, 30, 40, 52, 66, 82, 100, 120, 145, 175, 210)


def check_plot_available() -> None:
    """Raise MissingDependencyError (naming the extra) when matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise MissingDependencyError("matplotlib", "plot", "--plot")


#: Pixels kept free around each label (on every side).
_LABEL_GAP_PX = 3.0


def _overlaps(a: Any, b: Any) -> bool:
    return not (a.x1 <= b.x0 or b.x1 <= a.x0 or a.y1 <= b.y0 or b.y1 <= a.y0)


def _text_box(label: Any, renderer: Any) -> Any:
    """An annotation's text box alone (its own extent includes the leader line)."""
    from matplotlib.text import Text  # the optional extra, imported when drawing

    label.update_positions(renderer)
    return Text.get_window_extent(label, renderer)


def place_labels(ax: Any, points: list[tuple[float, float, str]], renderer: Any,
                 taken: list[Any] | None = None) -> list[Any]:
    """Write each ``(x, y, text)`` near its point where it overlaps no label placed before
    nor any point's marker; returns the labels' boxes (display coordinates)."""
    from matplotlib.transforms import Bbox  # the optional extra, imported when drawing

    taken = list(taken or [])
    frame = ax.get_window_extent(renderer)
    legend = ax.get_legend()
    if legend is not None:
        taken.append(legend.get_window_extent(renderer))
    to_px = ax.transData.transform
    half = 3.5  # a marker's half size in pixels, about
    markers = []
    for x, y, _ in points:
        px, py = to_px((x, y))
        markers.append(Bbox([[px - half, py - half], [px + half, py + half]]))
    boxes: list[Any] = []
    for i, (x, y, text) in enumerate(points):
        label = None
        for radius in _RADII:
            for dx, dy in _DIRECTIONS:
                norm = math.hypot(dx, dy)
                off = (dx * radius / norm, dy * radius / norm)
                ha = "left" if dx > 0 else "right" if dx < 0 else "center"
                va = "bottom" if dy > 0 else "top" if dy < 0 else "center"
                label = ax.annotate(text, (x, y), xytext=off, textcoords="offset points",
                                    fontsize=7, ha=ha, va=va,
                                    arrowprops={"arrowstyle": "-", "lw": 0.4,
                                                "color": "0.4"} if radius > 4 else None)
                # a few pixels of room on every side, so that neighbouring labels never
                # touch ("13" beside "9" read as "139")
                box = _text_box(label, renderer).padded(_LABEL_GAP_PX)
                inside = (frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0
                          and box.y1 <= frame.y1)
                clash = not inside or any(_overlaps(box, b) for b in taken + boxes) or any(
                    _overlaps(box, m) for j, m in enumerate(markers) if j != i)
                if not clash:
                    boxes.append(box)
                    break
                label.remove()
                label = None
            if label is not None:
                break
        if label is None:  # crowded beyond every try: put it at the farthest place anyway
            label = ax.annotate(text, (x, y), xytext=(_RADII[-1] + 12, 0),
                                textcoords="offset points", fontsize=7,
                                arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.4"})
            boxes.append(_text_box(label, renderer))
    return boxes


def _lost(r: Row, total: int, source_accuracy: float) -> float:
    return round((source_accuracy - r.accuracy) * total)


def plot(report: Report, path: str | os.PathLike[str]) -> list[list[Any]]:
    """Size against error and against accuracy lost, one numbered point per row, with the
    key beside them (matplotlib). Returns each axis's label boxes (for tests)."""
    check_plot_available()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(report.sections)
    fig, axes = plt.subplots(n, 3, figsize=(19, 7 * n), squeeze=False,
                             gridspec_kw={"width_ratios": [5, 5, 2.2]})
    placed: list[list[Any]] = []
    jobs = []
    for (h, rows), (ax_err, ax_acc, ax_key) in zip(report.sections, axes, strict=True):
        floor = 1e-10
        total = 10_000
        front = {id(r) for r in rows if r.pareto}
        evaluated = not h.not_evaluated
        err_points, acc_points = [], []
        for i, r in enumerate(rows, 1):
            err = max(r.max_rel_error, floor)
            color = "tab:green" if r.exact else "tab:red"
            ax_err.scatter(r.bytes, err, color=color, s=14, zorder=2)
            err_points.append((r.bytes, err, str(i)))
            if evaluated:
                lost = _lost(r, total, h.accuracy)
                ax_acc.scatter(r.bytes, lost, color=color, s=14, zorder=2)
                if id(r) in front:
                    ax_acc.scatter(r.bytes, lost, s=80, facecolors="none",
                                   edgecolors="tab:blue", zorder=3)
                acc_points.append((r.bytes, lost, str(i)))
        if not h.text_skipped:  # the text dump's point, where it was measured
            text_err = max(h.text_max_rel_error, floor)
            ax_err.scatter(h.text_dump_bytes, text_err, color="tab:orange", marker="s")
            err_points.append((h.text_dump_bytes, text_err, "T"))
            if evaluated:
                text_lost = round((h.accuracy - h.text_accuracy) * total)
                ax_acc.scatter(h.text_dump_bytes, text_lost, color="tab:orange", marker="s")
                acc_points.append((h.text_dump_bytes, text_lost, "T"))
        if not evaluated:
            ax_acc.text(0.5, 0.5, "accuracy not measured:\nthe weights are none of the "
                        "book's networks", ha="center", va="center", transform=ax_acc.transAxes)
        fr = [r for r in rows if id(r) in front]
        if fr:
            fr.sort(key=lambda r: r.bytes)
            ax_acc.step([r.bytes for r in fr], [_lost(r, total, h.accuracy) for r in fr],
                        where="post", color="tab:blue", linewidth=1.0,
                        label=f"frontier: smallest file at each accuracy within "
                        f"{h.accept_points:g} points of the source's (circled)")
            ax_acc.legend(loc="upper right", fontsize=8)
        name = Path(h.source).name
        errs = [p[1] for p in err_points]
        ax_err.set_ylim(floor / 10, max(errs) * 50)
        ax_err.set(xscale="log", yscale="log", xlabel="file size (bytes)",
                   ylabel=f"max relative error (exact shown at {floor:g})",
                   title=f"{name}: size against precision lost")
        ax_acc.set_yscale("symlog", linthresh=1, linscale=0.6)
        ax_acc.set(xscale="log", xlabel="file size (bytes)",
                   ylabel=f"test images lost against the source's {h.accuracy:.4f} "
                   "(symlog: 0, 1, 2 ... apart)",
                   title=f"{name}: size against accuracy lost (lower is better)")
        top = max([p[1] for p in acc_points] + [1])
        low = min([p[1] for p in acc_points] + [0])
        ax_acc.set_ylim(low * 4 - 0.5 if low < 0 else -0.5, top * 4)
        for ax in (ax_err, ax_acc):
            ax.grid(True, which="both", alpha=0.3)
        key = [f"{i:>2}  {r.label}" for i, r in enumerate(rows, 1)] + ["  T  str(network) text"]
        ax_key.axis("off")
        ax_key.text(0, 1, "\n".join(key), va="top", ha="left", family="monospace", fontsize=7,
                    transform=ax_key.transAxes)
        ax_key.set_title("key (green: exact, red: lossy)", fontsize=9, loc="left")
        jobs += [(ax_err, err_points), (ax_acc, acc_points)] if evaluated else \
            [(ax_err, err_points)]
    fig.tight_layout()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax, points in jobs:
        placed.append(place_labels(ax, points, renderer))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return placed
