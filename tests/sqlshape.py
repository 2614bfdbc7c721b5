"""The shape of a SQLite database as SQLite itself reports it, for equivalence tests.

Everything comes from PRAGMAs (table_info, foreign_key_list, index_list, index_xinfo)
and, for what no PRAGMA shows (CHECK clauses, AUTOINCREMENT, the WHERE of a partial
index), from the SQL SQLite stored, with whitespace normalised.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any


def _norm(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).replace("( ", "(").replace(" )", ")").strip()


def _checks(sql: str) -> list[str]:
    out, i = [], 0
    while (m := re.search(r"CHECK\s*\(", sql[i:], re.IGNORECASE)) is not None:
        start = i + m.end()
        depth, j = 1, start
        while depth:
            depth += {"(": 1, ")": -1}.get(sql[j], 0)
            j += 1
        out.append(_norm(sql[start : j - 1]))
        i = j
    return sorted(out)


def table_shape(con: sqlite3.Connection, table: str) -> dict[str, Any]:
    """Columns, keys, foreign keys, CHECKs, uniques and indexes of one table."""
    (sql,) = con.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    columns = [tuple(r[1:]) for r in con.execute(f"PRAGMA table_info({table})")]
    fks = sorted(
        tuple(r[2:]) for r in con.execute(f"PRAGMA foreign_key_list({table})")
    )  # (parent, from, to, on_update, on_delete, match)
    indexes = {}
    for _, name, unique, origin, partial in con.execute(f"PRAGMA index_list({table})"):
        keys = tuple(
            (r[2], r[3], r[4]) for r in con.execute(f"PRAGMA index_xinfo({name})") if r[5]
        )  # (column, desc, collation) of the key columns
        where = None
        if partial:
            (isql,) = con.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
            ).fetchone()
            where = _norm(re.split(r"\bWHERE\b", isql, flags=re.IGNORECASE)[1])
        # Automatic indexes (PRIMARY KEY, UNIQUE) are named by position: key them by columns.
        label = name if origin == "c" else f"{origin}:{','.join(k[0] for k in keys)}"
        indexes[label] = (unique, origin, keys, where)
    return {
        "columns": columns,  # (name, type, notnull, default, pk position)
        "foreign_keys": fks,
        "checks": _checks(sql),
        "autoincrement": bool(re.search(r"\bAUTOINCREMENT\b", sql, re.IGNORECASE)),
        "indexes": indexes,
    }


def database_shape(con: sqlite3.Connection, skip_prefix: str = "_telelake_") -> dict[str, Any]:
    """table_shape() of every user table (SQLite's own and telelake's bookkeeping skipped)."""
    names = [
        r[0]
        for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        if not r[0].startswith("sqlite_") and not r[0].startswith(skip_prefix)
    ]
    return {n: table_shape(con, n) for n in names}
