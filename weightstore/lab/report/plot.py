"""The report drawn: size against error and against accuracy (the optional ``plot`` extra,
matplotlib, imported only when drawing)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from ...errors import MissingDependencyError
from .measure import Report, pareto

__all__ = ["check_plot_available", "plot"]


def check_plot_available() -> None:
    """Raise MissingDependencyError (naming the extra) when matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise MissingDependencyError("matplotlib", "plot", "--plot")


def plot(report: Report, path: str | os.PathLike[str]) -> None:
    """Size against error and against accuracy, one labelled point per row (matplotlib)."""
    check_plot_available()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(report.sections)
    fig, axes = plt.subplots(n, 2, figsize=(15, 6.5 * n), squeeze=False)
    for (h, rows), (ax_err, ax_acc) in zip(report.sections, axes, strict=True):
        floor = 1e-10
        for r in rows:
            err = max(r.max_rel_error, floor)
            color = "tab:green" if r.exact else "tab:red"
            ax_err.scatter(r.bytes, err, color=color)
            ax_err.annotate(r.label, (r.bytes, err), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
            ax_acc.scatter(r.bytes, r.accuracy, color=color)
            ax_acc.annotate(r.label, (r.bytes, r.accuracy), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
        front = pareto(rows)
        if front:
            xs = [r.bytes for r in front]
            ys = [r.accuracy for r in front]
            ax_acc.step(xs, ys, where="post", color="tab:blue", linewidth=1.2,
                        label="Pareto frontier: smallest file at each accuracy")
            ax_acc.scatter(xs, ys, s=90, facecolors="none", edgecolors="tab:blue", zorder=3)
            ax_acc.legend(loc="lower right", fontsize=8)
        text_err = max(h.text_max_rel_error, floor)
        ax_err.scatter(h.text_dump_bytes, text_err, color="tab:orange", marker="s")
        ax_err.annotate("str(network) text", (h.text_dump_bytes, text_err), fontsize=7)
        ax_acc.scatter(h.text_dump_bytes, h.text_accuracy, color="tab:orange", marker="s")
        ax_acc.annotate("str(network) text", (h.text_dump_bytes, h.text_accuracy), fontsize=7)
        name = Path(h.source).name
        ax_err.set(xscale="log", yscale="log", xlabel="file size (bytes)",
                   ylabel=f"max relative error (exact shown at {floor:g})",
                   title=f"{name}: size against precision lost")
        ax_acc.set(xscale="log", xlabel="file size (bytes)", ylabel="test accuracy",
                   title=f"{name}: size against accuracy kept")
        for ax in (ax_err, ax_acc):
            ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
