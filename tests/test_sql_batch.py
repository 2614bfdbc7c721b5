"""Many rows per INSERT (`sql/batch.py`) against executemany of one row per statement."""

from __future__ import annotations

import sqlite3
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from telelake.sql import batch

DDL = (
    "CREATE TABLE t (k INTEGER PRIMARY KEY, v INTEGER NOT NULL, note TEXT, "
    "version INTEGER NOT NULL)"
)
# The write modes of `insert_sql`: skip known keys, or update unless the version goes back.
TAILS = {
    "ignore": " ON CONFLICT DO NOTHING",
    "upsert": " ON CONFLICT (k) DO UPDATE SET v = excluded.v, note = excluded.note, "
    "version = excluded.version WHERE excluded.version >= t.version",
}


def statement(tail: str, k: int) -> str:
    return "INSERT INTO t (k, v, note, version) VALUES " + ", ".join(["(?, ?, ?, ?)"] * k) + tail


def database(limit: int) -> sqlite3.Connection:
    con = sqlite3.connect(":memory:", isolation_level=None)
    con.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)
    con.execute(DDL)
    return con


rows = st.lists(
    st.tuples(
        st.integers(0, 30),  # few keys: conflicts within and across statements
        st.integers(-5, 5),
        st.none() | st.text(max_size=3),
        st.integers(0, 3),
    ),
    max_size=120,
)


@settings(max_examples=200, deadline=None)
@given(
    first=rows,
    second=rows,
    mode=st.sampled_from(sorted(TAILS)),
    limit=st.sampled_from([4, 8, 13, 400, 32766]),  # 1, 2, 3, 100 or 500 rows a statement
)
def test_insert_many_changes_what_executemany_changes(
    first: list[tuple[Any, ...]], second: list[tuple[Any, ...]], mode: str, limit: int
) -> None:
    tail = TAILS[mode]
    reference, chunked = database(32766), database(limit)
    for batch_rows in (first, second):
        expected = reference.executemany(statement(tail, 1), batch_rows).rowcount
        columns = [list(c) for c in zip(*batch_rows, strict=True)] if batch_rows else []
        got = batch.insert_many(chunked, lambda k: statement(tail, k), columns)
        assert got == expected
        query = "SELECT * FROM t ORDER BY k"
        assert chunked.execute(query).fetchall() == reference.execute(query).fetchall()


def test_a_statement_binds_no_more_values_than_the_connection_allows() -> None:
    con = database(10)
    assert batch.rows_per_statement(con, 4) == 2
    assert batch.rows_per_statement(con, 11) == 1  # one row is always possible
    assert batch.rows_per_statement(database(32766), 11) == batch.ROWS_PER_STATEMENT
