"""Terminal tables that stay readable at the console's width (80 columns in a pipe or CI).

A header is never cut: each column is at least as wide as its header. Long text columns (sources,
descriptions) wrap onto several lines. When even that does not fit, whole columns are left out,
least important first, and the table's caption names them; a table of many equally important
columns (one per metric) is instead split into several tables that repeat the first column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich.table import Table
from rich.text import Text

Cell = str | Text
"""A table cell: a ``str`` is rich markup (``[red]no[/]``), a ``Text`` is shown as it is."""

WRAP_MIN = 16
"""Narrowest a wrapping column is made (fewer characters a line would hardly read)."""

_FRAME = 3  # per column: one space of padding each side and the border on its right


@dataclass(frozen=True)
class Column:
    """One column of a fitted table."""

    header: str
    justify: Literal["left", "right"] = "left"
    wrap: bool = False
    """Long text that may wrap onto several lines (else the column is as wide as its cells)."""
    keep: int = 1
    """Importance: when the table does not fit, columns with the lowest ``keep`` are left out
    first (the rightmost of equals first); columns with the highest ``keep`` are never."""


def _cell_len(cell: Cell) -> int:
    text = cell if isinstance(cell, Text) else Text.from_markup(cell)
    return max((len(line) for line in text.plain.splitlines()), default=0)


def _widest(columns: Sequence[Column], rows: Sequence[Sequence[Cell]]) -> list[int]:
    return [
        max([len(col.header)] + [_cell_len(row[i]) for row in rows])
        for i, col in enumerate(columns)
    ]


def min_widths(columns: Sequence[Column], rows: Sequence[Sequence[Cell]]) -> list[int]:
    """Each column's narrowest readable width: its header, and its widest cell unless it wraps
    (then at most :data:`WRAP_MIN`)."""
    return [
        max(len(col.header), min(widest, WRAP_MIN)) if col.wrap else widest
        for col, widest in zip(columns, _widest(columns, rows), strict=True)
    ]


def _widened(
    columns: Sequence[Column],
    widths: list[int],
    widest: Sequence[int],
    kept: Sequence[int],
    width: int,
) -> list[int]:
    """``widths`` with the room left in ``width`` given to the kept wrapping columns, most
    important first, up to their widest cell, so they wrap no more than they must."""
    out = list(widths)
    spare = width - table_width([widths[i] for i in kept])
    for i in sorted((i for i in kept if columns[i].wrap), key=lambda i: -columns[i].keep):
        grow = max(0, min(spare, widest[i] - out[i]))
        out[i] += grow
        spare -= grow
    return out


def table_width(widths: Sequence[int]) -> int:
    """Characters a table with columns of these content widths takes, borders included."""
    return 1 + sum(w + _FRAME for w in widths)


def kept_columns(columns: Sequence[Column], widths: Sequence[int], width: int) -> list[int]:
    """Indices of the columns to show within ``width``: all of them when they fit, else the
    least important are left out one by one (never those of the highest ``keep``)."""
    kept = list(range(len(columns)))
    top = max((c.keep for c in columns), default=0)
    while table_width([widths[i] for i in kept]) > width:
        droppable = [i for i in kept if columns[i].keep < top]
        if not droppable:
            break
        kept.remove(min(reversed(droppable), key=lambda i: columns[i].keep))
    return kept


def fitted_table(
    title: str, columns: Sequence[Column], rows: Sequence[Sequence[Cell]], width: int
) -> Table:
    """A table of ``rows`` that fits ``width`` characters, leaving out the least important
    columns if it must; its caption names those left out."""
    kept = kept_columns(columns, min_widths(columns, rows), width)
    widths = _widened(columns, min_widths(columns, rows), _widest(columns, rows), kept, width)
    left_out = [columns[i].header for i in range(len(columns)) if i not in kept]
    caption = f"left out at {width} columns: {', '.join(left_out)}" if left_out else None
    table = Table(title=title, caption=caption)
    for i in kept:
        col = columns[i]
        table.add_column(
            col.header,
            justify=col.justify,
            min_width=widths[i],
            overflow="fold" if col.wrap else "ellipsis",
            no_wrap=not col.wrap,
        )
    for row in rows:
        table.add_row(*(row[i] for i in kept))
    return table


def split_tables(
    title: str, columns: Sequence[Column], rows: Sequence[Sequence[Cell]], width: int
) -> list[Table]:
    """``rows`` as one table, or as several whose columns each fit ``width`` when one does not:
    every table repeats the first column (the row's name), the others are shared out in order."""
    widths = min_widths(columns, rows)
    groups: list[list[int]] = [[]]
    for i in range(1, len(columns)):
        if (
            groups[-1]
            and table_width([widths[0], *(widths[j] for j in groups[-1]), widths[i]]) > width
        ):
            groups.append([])
        groups[-1].append(i)
    tables = []
    for n, group in enumerate(groups):
        suffix = f" ({n + 1} of {len(groups)})" if len(groups) > 1 else ""
        chosen = [0, *group]
        sub_rows = [[row[i] for i in chosen] for row in rows]
        tables.append(fitted_table(title + suffix, [columns[i] for i in chosen], sub_rows, width))
    return tables
