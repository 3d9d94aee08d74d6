"""Presentation helpers shared by the lab's reports and the command line (no I/O)."""

from __future__ import annotations

__all__ = ["table", "markdown_table"]


def table(rows: list[list[str]], header: list[str], right: set[int] | None = None) -> str:
    """A plain text table with aligned columns (*right*: indexes aligned right)."""
    right = right or set()
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def markdown_table(rows: list[list[str]], header: list[str]) -> str:
    """A GitHub-flavoured Markdown table (``|`` in cells escaped)."""
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header)] + [line(r) for r in rows])
