"""Helpers shared by the CLI commands: JSON output, rich tables, coefficient loading."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from distlaw.compute import size_warning
from distlaw.io import to_jsonable

# soft_wrap: a line (a path, a message) is never broken at the terminal's width, so that it can be
# copied and parsed; tables still fit the width.
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def print_json(obj: Any) -> None:
    """Print plain JSON on stdout (no rich markup), for scripts."""
    print(json.dumps(to_jsonable(obj), indent=2))


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for c in columns:
        table.add_column(c, justify="right" if c != columns[0] else "left")
    for row in rows:
        table.add_row(*[fmt(v) for v in row])
    console.print(table)


def fmt(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if v.is_integer() and abs(v) < 1e5:
            return str(int(v))
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.4g}"
        return f"{v:.4f}"
    return str(value)


def print_warnings(messages: list[str]) -> None:
    """Each warning as one ``warning:`` line on stderr (rich markup in the message is shown as is)."""
    for message in messages:
        err_console.print(f"[bold yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def warn_size(requested: float | None, built: int) -> None:
    """A one-line ``warning:`` on stderr when a model misses its parameter target by more than 10 %."""
    note = size_warning(requested, built) if requested is not None else None
    if note is not None:
        print_warnings([note])
