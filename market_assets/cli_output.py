"""What the CLI prints: tables that fit the terminal without hiding a column or a value.

An 80-column terminal gets every column of a table, in as many side-by-side slices as it
takes, each slice repeating the key columns (dataset, or ts and symbol) so a row can be read
across slices; wider terminals get fewer slices. Cells are never truncated with an ellipsis.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import polars as pl
from rich import box
from rich.console import Console
from rich.table import Table

CELL_PADDING = 2  # one space either side of every cell
MAX_CELL = 60  # longer values wrap inside their cell
PREVIEW_ROWS = 10  # a table shows this many first and last rows of a longer frame


def text(value: Any) -> str:
    """A cell's text: floats without trailing noise, timestamps to the second, None as -."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return f"{value:,.6f}".rstrip("0").rstrip(".") if abs(value) < 1e15 else f"{value:.6g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, dt.datetime):
        stamp = value.strftime("%Y-%m-%d %H:%M:%S")
        return stamp[:-3] if stamp.endswith(":00") else stamp
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def column_slices(widths: Sequence[int], keys: int, width: int) -> list[list[int]]:
    """Column indexes of each slice: the `keys` first columns, then as many others as fit."""
    key_columns = list(range(min(keys, len(widths))))
    used = sum(min(widths[i], MAX_CELL) + CELL_PADDING for i in key_columns)
    slices: list[list[int]] = []
    current: list[int] = []
    taken = used
    for index in range(len(key_columns), len(widths)):
        need = min(widths[index], MAX_CELL) + CELL_PADDING
        if current and taken + need > width:
            slices.append(key_columns + current)
            current, taken = [], used
        current.append(index)
        taken += need
    if current or not slices:
        slices.append(key_columns + current)
    return slices


def fitted_tables(
    title: str,
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    width: int,
    *,
    keys: int = 1,
    right: Iterable[str] = (),
) -> list[Table]:
    """One or more tables holding every column of `rows`, each at most `width` wide."""
    cells = [[text(value) for value in row] for row in rows]
    widths = [
        max([*(len(line) for line in header.split("\n")), *(len(row[i]) for row in cells)])
        for i, header in enumerate(headers)
    ]
    right_aligned = set(right)
    slices = column_slices(widths, keys, width)
    tables = []
    for number, indexes in enumerate(slices, start=1):
        suffix = f" ({number}/{len(slices)})" if len(slices) > 1 else ""
        table = Table(
            title=f"{title}{suffix}" if title else None,
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            padding=(0, 1),
            collapse_padding=True,
            show_edge=False,
        )
        for index in indexes:
            table.add_column(
                headers[index],
                justify="right" if headers[index] in right_aligned else "left",
                overflow="fold",
                max_width=MAX_CELL,
            )
        for row in cells:
            table.add_row(*(row[index] for index in indexes))
        tables.append(table)
    return tables


def print_tables(console: Console, tables: Sequence[Table]) -> None:
    for table in tables:
        console.print(table)


def frame_tables(
    frame: pl.DataFrame, width: int, title: str = "", keys: Sequence[str] = ("ts", "symbol")
) -> list[Table]:
    """Every column of `frame` (key columns first), first and last rows of a long frame."""
    ordered = [c for c in keys if c in frame.columns] + [c for c in frame.columns if c not in keys]
    shown = frame.select(ordered)
    rows = list(shown.head(PREVIEW_ROWS).iter_rows())
    if shown.height > 2 * PREVIEW_ROWS:
        rows.append(tuple("..." for _ in ordered))
        rows += list(shown.tail(PREVIEW_ROWS).iter_rows())
    else:
        rows = list(shown.iter_rows())
    headers = [f"{name} (UTC)" if frame.schema[name] == pl.Datetime("us", "UTC") else name
               for name in ordered]
    numeric = {
        header
        for header, name in zip(headers, ordered, strict=True)
        if frame.schema[name].is_numeric()
    }
    key_count = len([c for c in keys if c in frame.columns])
    return fitted_tables(title, headers, rows, width, keys=key_count, right=numeric)


def json_lines(records: Iterable[Mapping[str, Any]]) -> str:
    """One JSON object per line (JSON Lines), dates as ISO strings."""
    return "".join(json.dumps(dict(record), default=_jsonable) + "\n" for record in records)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return str(value)
