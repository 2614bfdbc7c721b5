"""`telelake recover`'s side of the database: move the old one aside, carry over its rows.

Recovery rebuilds the database from the NDJSON log, but the log does not hold every
table (agent_runs' `commits` are never logged), and a log file may be gone. So before
the log is replayed, every table of the new database is filled from the database moved
aside, table by table, as far as it can be read:

- the old file is opened read-only (`mode=ro`): the copy kept for forensics never changes
  (SQLite only rebuilds the `-shm` index of a WAL file next to it);
- `PRAGMA integrity_check(<table>)` runs first on each table; a damaged table is still
  read, and the rows read before SQLite gives up are kept (the report says so);
- rows go through the same validation and writes as the log's (a row the new schema
  refuses is reported by table and row, never fatal); columns the current schema
  dropped are named in the report.

The log is replayed after that, over the carried rows: a logged row wins unless the
old database held a newer version of it (upserts keep the latest `updated_at`; events
are unique). Rollup tables are not carried: they are derived from their source.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from telelake import durable
from telelake.errors import QueryError, StoreError
from telelake.log import replay
from telelake.log.replay import BATCH, Item, ReplayReport, Sink, Write
from telelake.schema.model import LogSettings, Schema
from telelake.sql import ddl
from telelake.sql.backup import integrity_check
from telelake.sql.connection import read_only
from telelake.sql.tier import SqlTier

SIDECARS = ("-wal", "-shm")
SHOWN = 3  # check messages quoted per table


def _log_settings(schema: Schema) -> LogSettings:
    if schema.log is None:
        raise StoreError(f"schema {schema.name!r} keeps no NDJSON log to replay")
    return schema.log


def rebuild(
    tier: SqlTier,
    schema: Schema,
    root: Path,
    write: Write,
    created: Callable[[], None],
    on_file: Callable[[Path], None] | None = None,
) -> ReplayReport:
    """`telelake recover`: move the database aside, create the current schema (then call
    `created()`), carry the old rows over and replay the log over them, all through
    `write(table, rows)`; the report says what came from where and what was lost."""
    settings = _log_settings(schema)
    tier.close()
    report = ReplayReport()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    report.moved_aside = move_aside(tier.path, stamp)
    tier.migrate_up()
    created()
    sink = Sink(write, report)
    fed = set(replay.table_order(settings))
    if report.moved_aside is not None:
        timeout = schema.sql_settings.busy_timeout_ms
        carry_over(report.moved_aside, schema, sink, report, fed=fed, busy_timeout_ms=timeout)
    replay.replay(schema, settings, root / settings.directory, write, report, on_file, sink)
    sink.finish([t.name for t in ddl.sql_tables(schema)])
    return report


def replay_into(
    tier: SqlTier,
    schema: Schema,
    root: Path,
    write: Write,
    on_file: Callable[[Path], None] | None = None,
) -> ReplayReport:
    """`telelake replay`: the log replayed into the current database, which is otherwise
    left as it is; `report.added` counts the rows each table the log feeds gained."""
    settings = _log_settings(schema)
    fed = replay.table_order(settings)
    report = ReplayReport()
    try:
        before = {t: tier.count(schema.tables[t]) for t in fed}
        replay.replay(schema, settings, root / settings.directory, write, report, on_file)
        report.added = {t: tier.count(schema.tables[t]) - n for t, n in before.items()}
    except (sqlite3.DatabaseError, QueryError) as exc:
        raise StoreError(
            f"{tier.where}: cannot replay the log into this database ({exc}); if it is "
            "damaged, `telelake recover` rebuilds it from the log and what can be read"
        ) from exc
    return report


def move_aside(path: Path, stamp: str) -> Path | None:
    """Rename the database and its -wal/-shm to `<stem>.corrupted.<stamp><suffix>`."""
    if not path.exists():
        return None
    aside = path.with_name(f"{path.stem}.corrupted.{stamp}{path.suffix}")
    for extra in SIDECARS:
        side = Path(str(path) + extra)
        if side.exists():
            side.rename(Path(str(aside) + extra))
    path.rename(aside)
    durable.fsync_dir(path.parent)
    return aside


def _short(messages: list[str]) -> str:
    shown = [m for m in messages if not m.startswith("*** ")] or messages
    more = len(shown) - SHOWN
    return "; ".join(shown[:SHOWN]) + (f" (and {more} more)" if more > 0 else "")


def carry_over(
    old: Path,
    schema: Schema,
    sink: Sink,
    report: ReplayReport,
    *,
    fed: set[str],
    busy_timeout_ms: int = 5000,
) -> None:
    """Copy the rows of every sql table of `schema` from the database `old` through
    `sink`, counting them in `report.carried` and naming in `report.not_saved` what
    could not be read. `fed`: the tables the log rebuilds (a loss there is not final)."""
    tables = [t for t in ddl.sql_tables(schema) if t.name not in schema.rollups]
    label = old.name
    try:
        con = read_only(old, busy_timeout_ms)
    except sqlite3.Error as exc:
        _unreadable(tables, fed, report, f"{label} cannot be opened ({exc})")
        return
    try:
        try:
            present = {
                str(name)
                for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
        except sqlite3.DatabaseError as exc:
            _unreadable(tables, fed, report, f"{label} cannot be read ({exc})")
            return
        for table in tables:
            report.carried.setdefault(table.name, 0)
            if table.name not in present:
                continue  # an older database without this table: nothing to keep
            _carry_table(con, table.name, table.column_names, label, sink, report, fed)
    finally:
        con.close()


def _unreadable(tables: list[Any], fed: set[str], report: ReplayReport, why: str) -> None:
    for table in tables:
        report.carried.setdefault(table.name, 0)
        tail = "rebuilt from the log only" if table.name in fed else "not saved"
        report.not_saved.append(f"{table.name}: {why}; {tail}")


def _carry_table(
    con: sqlite3.Connection,
    name: str,
    wanted: tuple[str, ...] | list[str],
    label: str,
    sink: Sink,
    report: ReplayReport,
    fed: set[str],
) -> None:
    where = f"{label} table {name!r}"
    tail = "the log rebuilds what it holds" if name in fed else "those rows are lost"
    try:
        old_columns = [str(r[1]) for r in con.execute(f'PRAGMA table_info("{name}")')]
    except sqlite3.DatabaseError as exc:
        report.not_saved.append(f"{name}: cannot be read from {label} ({exc}); {tail}")
        return
    dropped = [c for c in old_columns if c not in wanted]
    if dropped:
        report.not_saved.append(
            f"{name}: column(s) {', '.join(dropped)} of {label} are not in the current "
            "schema and were not carried over"
        )
    columns = [c for c in wanted if c in old_columns]
    if not columns:
        return
    checked = integrity_check_table(con, name)
    damaged = checked != ["ok"]
    read = 0
    failed: str | None = None
    quoted = ", ".join(f'"{c}"' for c in columns)
    group: list[Item] = []
    rows: Iterator[tuple[Any, ...]]
    try:
        # NOT INDEXED: read the table itself, never a (possibly damaged) covering index.
        rows = iter(con.execute(f'SELECT {quoted} FROM "{name}" NOT INDEXED'))
    except sqlite3.DatabaseError as exc:
        failed, rows = str(exc), iter(())
    while True:
        # Row by row: on a damaged page, the rows read before it are kept.
        try:
            values = next(rows)
        except StopIteration:
            break
        except sqlite3.DatabaseError as exc:
            failed = str(exc)
            break
        read += 1
        group.append(Item(name, dict(zip(columns, values, strict=True)), where, read, "row"))
        if len(group) >= BATCH:
            sink.put(name, group, report.carried)
            group = []
    if group:
        sink.put(name, group, report.carried)
    if damaged or failed:
        why = f"integrity_check: {_short(checked)}" if damaged else ""
        if failed:
            why += ("; " if why else "") + f"reading stopped after {read:,} rows: {failed}"
        report.not_saved.append(
            f"{name}: {label} is damaged ({why}); {read:,} rows could be read and were "
            f"carried over, others may be missing: {tail}"
        )


def integrity_check_table(con: sqlite3.Connection, table: str) -> list[str]:
    """`PRAGMA integrity_check(<table>)`: the table and its indexes only (["ok"] if sound)."""
    try:
        lines = [
            line
            for (text,) in con.execute(f'PRAGMA integrity_check("{table}")')
            for line in str(text).splitlines()
            if line.strip()
        ]
    except sqlite3.DatabaseError:
        return integrity_check(con)  # the per-table form failed: check everything
    return lines or ["ok"]
