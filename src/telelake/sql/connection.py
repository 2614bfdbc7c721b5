"""SQLite connections of the sql tier: their settings and the one way to run a transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# What a read-only connection's SQL may do (its authorizer): read tables, call
# functions, run transactions, and read (never set) a few pragmas. Everything else,
# ATTACH and DETACH first of all, is denied before the statement runs.
_READ_ACTIONS = frozenset(
    {
        sqlite3.SQLITE_SELECT,
        sqlite3.SQLITE_READ,
        sqlite3.SQLITE_FUNCTION,
        sqlite3.SQLITE_RECURSIVE,
        sqlite3.SQLITE_TRANSACTION,
        sqlite3.SQLITE_SAVEPOINT,
    }
)
# Pragmas whose argument names what to read (a table, an index, a limit).
_PRAGMAS_WITH_ARGUMENT = frozenset(
    {
        "integrity_check",
        "quick_check",
        "foreign_key_check",
        "foreign_key_list",
        "table_info",
        "table_xinfo",
        "table_list",
        "index_list",
        "index_info",
        "index_xinfo",
    }
)
# Pragmas read without an argument (with one, most would change a setting).
_READ_PRAGMAS = _PRAGMAS_WITH_ARGUMENT | {
    "application_id",
    "collation_list",
    "compile_options",
    "data_version",
    "database_list",
    "encoding",
    "freelist_count",
    "function_list",
    "journal_mode",
    "module_list",
    "page_count",
    "page_size",
    "pragma_list",
    "schema_version",
    "user_version",
}


def _reads_only(action: int, arg1: str | None, arg2: str | None, *_: str | None) -> int:
    """SQLite authorizer: allow what reads, deny everything else (ATTACH, writes...)."""
    if action in _READ_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA and arg1 is not None:
        name = arg1.lower()
        if name in _READ_PRAGMAS and (arg2 is None or name in _PRAGMAS_WITH_ARGUMENT):
            return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def read_only(
    path: Path, busy_timeout_ms: int, *, check_same_thread: bool = True
) -> sqlite3.Connection:
    """A connection that cannot change the database (`mode=ro` and `query_only`) nor
    reach another file (an authorizer denies ATTACH and anything but reads).

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
    con.set_authorizer(_reads_only)
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
