"""Many rows per INSERT: `VALUES (...), (...), ...` instead of one statement per row.

`executemany` runs its statement once per row: bind, step, reset, and back through
Python in between. One statement holding a few hundred rows does the same inserts, row
by row and with the same conflict handling, in one step: 1.3x faster than executemany
for `search_events` (11 columns, 4 indexes), measured on the benchmark's batches.

A statement's SQL is built by the caller for any number of rows (`statement(k)`), so
the write modes (`ON CONFLICT DO NOTHING`, upserts) are written once, in `insert_sql`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

ROWS_PER_STATEMENT = 1000  # the gain flattens past a few hundred rows (1.30x at 500)


def values_sql(width: int, rows: int, mark: str = "?") -> str:
    """The VALUES groups of `rows` rows of `width` values: `(?, ?), (?, ?)`."""
    group = "(" + ", ".join([mark] * width) + ")"
    return ", ".join([group] * rows)


def rows_per_statement(con: sqlite3.Connection, width: int) -> int:
    """How many rows of `width` values one statement may bind on this connection."""
    limit = con.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)  # 999 before SQLite 3.32
    return max(1, min(ROWS_PER_STATEMENT, limit // max(width, 1)))


def insert_many(
    con: sqlite3.Connection, statement: Callable[[int], str], columns: Sequence[Sequence[Any]]
) -> int:
    """Insert the rows held column by column in `columns` with `statement(k)`, the SQL of
    an INSERT of k rows; returns the rows SQLite changed (inserted, or updated by an
    upsert). No row tuples are made: each statement's values are laid out by slices."""
    width = len(columns)
    n = len(columns[0]) if columns else 0
    k = rows_per_statement(con, width)
    full = n - n % k
    changed = 0
    if full:
        chunks = (_values(columns, lo, lo + k) for lo in range(0, full, k))
        changed += con.executemany(statement(k), chunks).rowcount
    if full < n:
        changed += con.execute(statement(n - full), _values(columns, full, n)).rowcount
    return changed


def _values(columns: Sequence[Sequence[Any]], lo: int, hi: int) -> list[Any]:
    """Rows lo..hi as one flat list, row after row (what a k-row VALUES binds)."""
    width = len(columns)
    flat: list[Any] = [None] * ((hi - lo) * width)
    for j, column in enumerate(columns):
        flat[j::width] = column[lo:hi]
    return flat
