"""Terminal tables fit their width: whole headers, wrapped text, the least important columns
left out (and named), or a table of many metrics split into several."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from gpusim.cli.tables import Column, fitted_table, split_tables


def _render(*tables: Table, width: int = 80) -> list[str]:
    console = Console(width=width, record=True, file=io.StringIO())
    for table in tables:
        console.print(table)
    return console.export_text().splitlines()


COLUMNS = (
    Column("case", keep=3),
    Column("source", wrap=True, keep=0),
    Column("metric", wrap=True, keep=2),
    Column("expected value", "right", keep=3),
    Column("predicted value", "right", keep=3),
)
ROWS = [
    ["SK-1", "a long source text " * 6, "metrics.launch_latency_s", "2260 ns", "2261 ns"],
    ["FM-2", "another paper, figure 1c", "metrics.forward_latency_s", "4.2 ms", "1.066 ms"],
]


def test_a_table_that_fits_keeps_every_column_and_wraps_text() -> None:
    lines = _render(fitted_table("t", COLUMNS, ROWS, 100), width=100)
    assert max(len(line) for line in lines) <= 100
    assert all(h in "".join(lines) for h in ("source", "expected value", "predicted value"))
    assert not any("left out" in line for line in lines)


def test_a_narrow_table_leaves_out_the_least_important_columns_and_says_so() -> None:
    lines = _render(fitted_table("t", COLUMNS, ROWS, 60), width=60)
    assert max(len(line) for line in lines) <= 60
    text = "\n".join(lines)
    assert "expected value" in text and "predicted value" in text  # headers whole
    assert "left out at 60 columns: source" in text
    assert "FM-2" in text and "1.066 ms" in text


def test_many_metric_columns_split_into_tables_that_each_fit() -> None:
    columns = [Column("gpu"), *(Column(f"metric_number_{i}_s", "right") for i in range(9))]
    rows = [[f"gpu{g}", *(f"{i}.5 ms" for i in range(9))] for g in range(2)]
    tables = split_tables("per GPU", columns, rows, 80)
    assert len(tables) > 1
    lines = _render(*tables)
    assert max(len(line) for line in lines) <= 80
    text = "\n".join(lines)
    assert all(f"metric_number_{i}_s" in text for i in range(9))  # nothing lost, headers whole
    assert text.count("gpu1") == len(tables)  # the row names repeat in every part
