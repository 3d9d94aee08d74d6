"""Presentation helpers shared by the lab's reports and the command line (no I/O)."""

from __future__ import annotations

__all__ = ["table", "table_line", "markdown_table", "markdown_line"]


def table_line(cells: list[str], widths: list[int], right: set[int] | frozenset[int]) -> str:
    """One line of a plain text table: *cells* padded to *widths*, two spaces apart
    (*right*: indexes aligned right). A cell wider than its column pushes the rest along."""
    return "  ".join(
        str(c).rjust(w) if i in right else str(c).ljust(w)
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    ).rstrip()


def table(rows: list[list[str]], header: list[str], right: set[int] | None = None) -> str:
    """A plain text table with aligned columns (*right*: indexes aligned right)."""
    right = right or set()
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join(table_line(r, widths, right) for r in lines)


def markdown_line(cells: list[str]) -> str:
    """One row of a Markdown table (``|`` in cells escaped)."""
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def markdown_table(rows: list[list[str]], header: list[str]) -> str:
    """A GitHub-flavoured Markdown table (``|`` in cells escaped)."""
    return "\n".join([markdown_line(header), "|" + "---|" * len(header)]
                     + [markdown_line(r) for r in rows])
