"""Plain-text output of the ``drytorch`` command."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

__all__ = ['print_json', 'print_table', 'printable']


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Print rows as left-aligned columns; the first row is the header.

    Cells come from run records, which anyone may edit: control characters
    are escaped, so that a cell cannot move the cursor or recolour the terminal.
    """
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = zip(row, widths, strict=True)
        print('  '.join(cell.ljust(width) for cell, width in cells).rstrip())


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON."""
    print(json.dumps(data, indent=2, default=str))


def printable(text: object) -> str:
    """Return ``text`` with control characters escaped, safe to print."""
    return ''.join(
        c if c.isprintable() else c.encode('unicode_escape').decode('ascii')
        for c in str(text)
    )
