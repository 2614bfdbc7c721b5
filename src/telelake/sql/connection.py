"""SQLite connections of the sql tier: their settings and the one way to run a transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def read_only(
    path: Path, busy_timeout_ms: int, *, check_same_thread: bool = True
) -> sqlite3.Connection:
    """A connection that cannot change the database (`mode=ro` and `query_only`).

    What queries, exports and backups read through: user SQL can never write, and
    opening never creates the file. Waits `busy_timeout_ms` for a busy database.
    """
    con = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro",
        uri=True,
        isolation_level=None,
        check_same_thread=check_same_thread,
    )
    con.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    con.execute("PRAGMA query_only = ON")
    return con


@contextmanager
def immediate(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error.

    IMMEDIATE takes the write lock at once, so two writers never both read and then
    fail to upgrade; the busy timeout makes the second one wait instead.
    """
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
