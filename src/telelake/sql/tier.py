"""The sql tier on SQLite: one database file per store, written in whole-batch transactions.

Connections use WAL mode (readers never block the writer), `foreign_keys=ON`, a busy
timeout (writers of other processes queue instead of failing) and `synchronous=NORMAL`
(a committed batch survives a crashed or killed process; SQLite's WAL makes it durable
at the next checkpoint against power loss). A batch is one transaction: any rejected
row writes nothing, and the error names the store, table, row, column and constraint.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
import struct
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from telelake import durable
from telelake._lazy import lazy
from telelake.errors import QueryError, StoreError, ValidationError
from telelake.rollup import pages, windows
from telelake.schema.model import Rollup, Schema, Table
from telelake.sql import backup, batch, migrations
from telelake.sql.connection import immediate, read_only
from telelake.sql.dialect import SQLITE, Dialect
from telelake.validate import MICROS_PER_UNIT, timestamp_micros

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    pa = lazy("pyarrow")
    pc = lazy("pyarrow.compute")

PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA synchronous = NORMAL",
    # 64 MiB, not the default 2: a batch walks the indexes of its table, of a rollup's
    # target and of the state pages at once; with 2 MiB they evict one another (about
    # 7% of a 50,000-row write, measured). Only pages really read take memory.
    "PRAGMA cache_size = -65536",
)
_DAMAGE = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)  # "malformed", "not a database"
RETENTION_BATCH = 5000  # rows per retention transaction: writers wait for one batch at most
NO_CUTOFF = -(2**63)  # the cutoff of a table kept forever: no row is older
PAGE_TABLE = "_telelake_rollup_pages"  # telelake's own bookkeeping, not part of the schema
OLD_STATE_TABLE = "_telelake_rollup_state"  # one row per window, before pages
FORMAT_TABLE = "_telelake_rollup_format"  # the page format every page is in (one row)
UPGRADE_PAGES = 1000  # old-format pages rewritten per transaction
DIRTY_TABLE = "_telelake_rollup_dirty"  # windows of lake-source rollups awaiting a refresh


def insert_sql(
    table: Table, columns: Sequence[str], dialect: Dialect = SQLITE, rows: int = 1
) -> str:
    """The INSERT of `rows` rows, per the table's write mode (one builder for every
    backend; `batch.insert_many` runs it for a whole batch).

    `ignore` skips rows whose key or unique columns exist (ON CONFLICT DO NOTHING: unlike
    INSERT OR IGNORE it never hides a NOT NULL or CHECK violation); `upsert` updates the
    other columns, except `keep_on_update`, and only when `version_column` does not go
    backwards, so a retried or late update never undoes a newer one. SQLite applies the
    rows of one statement in order, so a key twice in a batch ends as the later row.
    """
    q = dialect.ident
    names = ", ".join(q(c) for c in columns)
    marks = batch.values_sql(len(columns), rows, dialect.placeholder)
    sql = f"INSERT INTO {q(table.name)} ({names}) VALUES {marks}"
    if table.write == "ignore":
        return sql + " ON CONFLICT DO NOTHING"
    if table.write == "upsert":
        keep = {*table.key, *table.keep_on_update}
        sets = ", ".join(f"{q(c)} = excluded.{q(c)}" for c in columns if c not in keep)
        sql += f" ON CONFLICT ({', '.join(q(k) for k in table.key)}) DO UPDATE SET {sets}"
        if table.version_column:
            v = q(table.version_column)
            sql += f" WHERE excluded.{v} >= {q(table.name)}.{v}"
    return sql


def python_columns(data: pa.Table, table: Table) -> list[list[Any]]:
    """Arrow columns as lists of values SQLite stores (timestamps as epoch µs)."""
    columns = []
    for name in data.column_names:
        arr = data.column(name)
        kind = table.column(name).type.name
        if kind == "timestamp":
            arr = pc.cast(arr, pa.int64())
        elif kind == "date":
            arr = pc.cast(arr, pa.string())
        elif kind == "list<string>":
            columns.append([None if v is None else json.dumps(v) for v in arr.to_pylist()])
            continue
        columns.append(arr.to_pylist())
    return columns


class SqlTier:
    """The store's SQLite database: migrations, batched writes, rollups, retention."""

    def __init__(self, root: Path, schema: Schema) -> None:
        self.path = root / schema.sql_settings.database
        self.schema = schema
        self.where = f"store {schema.name!r} ({self.path})"
        self._con: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._rollups: dict[str, list[Rollup]] = {}
        for r in schema.rollups.values():
            self._rollups.setdefault(r.source, []).append(r)

    # -- connections --------------------------------------------------------------------

    @property
    def con(self) -> sqlite3.Connection:
        """The writing connection (opened on first use)."""
        if self._con is None:
            durable.ensure_dir(self.path.parent)
            if not self.path.exists():
                self._create()
            elif self.path.stat().st_size == 0:
                raise self.damaged("it is empty (0 bytes), and a database telelake made never is")
            con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            # The busy timeout first: switching to WAL needs a lock another process may hold.
            con.execute(f"PRAGMA busy_timeout = {self.schema.sql_settings.busy_timeout_ms}")
            for pragma in PRAGMAS:
                con.execute(pragma)
            self._con = con
        return self._con

    def _read_con(self) -> sqlite3.Connection:
        """A read-only connection for queries: user SQL can never change the data."""
        if self._reader is None:
            self.con  # noqa: B018 - creates the file and its WAL settings first
            self._reader = read_only(
                self.path, self.schema.sql_settings.busy_timeout_ms, check_same_thread=False
            )
        return self._reader

    def _create(self) -> None:
        """Make a new database that appears whole under its name: header written, WAL
        mode set, the store's file mode (its -wal and -shm files take it). So an empty
        file at the path is damage (a truncation), never a database being made."""
        tmp = durable.temp_path_for(self.path)
        con = sqlite3.connect(tmp, isolation_level=None)
        try:
            durable.restrict(tmp)
            con.execute("PRAGMA journal_mode = WAL")
        finally:
            con.close()
        try:
            durable.publish(tmp, self.path, replace=False)
        except FileExistsError:
            tmp.unlink()  # another process made it first

    def close(self) -> None:
        """Close both connections."""
        with self._lock:
            for con in (self._con, self._reader):
                if con is not None:
                    con.close()
            self._con = self._reader = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""
        with self._lock, immediate(self.con) as con:
            yield con

    # -- migrations ---------------------------------------------------------------------

    def migrate_up(self, target: int | None = None) -> list[migrations.Migration]:
        """Apply pending migrations (validating applied checksums first)."""
        with self._lock:
            try:
                done = migrations.up(self.con, self.schema, self.where, target)
            except sqlite3.DatabaseError as exc:
                if type(exc) is not sqlite3.DatabaseError:
                    raise  # locked, constraint...: not damage
                raise self.damaged(exc) from exc
            if self.schema.rollups:
                self.con.execute(
                    f"CREATE TABLE IF NOT EXISTS {PAGE_TABLE} (rollup TEXT NOT NULL, "
                    "grp TEXT NOT NULL, window TEXT NOT NULL, start INTEGER NOT NULL, "
                    "stop INTEGER NOT NULL, state BLOB NOT NULL, "
                    "PRIMARY KEY (rollup, grp, window, start)) WITHOUT ROWID"
                )
                self._upgrade_states()
                self._upgrade_pages()
                self.con.execute(
                    f"CREATE TABLE IF NOT EXISTS {DIRTY_TABLE} (rollup TEXT NOT NULL, "
                    "grp TEXT NOT NULL, window TEXT NOT NULL, start INTEGER NOT NULL, "
                    "PRIMARY KEY (rollup, grp, window, start)) WITHOUT ROWID"
                )
            return done

    @property
    def fix(self) -> str:
        """What to run when the database is damaged."""
        if self.schema.log is not None:
            return "`telelake recover` rebuilds it from the NDJSON log and what can still be read"
        return "restore it from a backup (`telelake recover` starts it over, keeping what it can)"

    def damaged(self, exc: sqlite3.Error | str) -> StoreError:
        """The error for a file SQLite cannot use ("malformed", "not a database", empty)."""
        return StoreError(f"{self.where}: the database is damaged ({exc}); {self.fix}")

    def _upgrade_states(self) -> None:
        """Move states stored one row per window (before pages) into pages, once."""
        exists = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        if self.con.execute(exists, (OLD_STATE_TABLE,)).fetchone() is None:
            return
        with self.transaction() as con:
            if con.execute(exists, (OLD_STATE_TABLE,)).fetchone() is None:  # done meanwhile
                return
            for rollup in self.schema.rollups.values():
                rows = con.execute(
                    f"SELECT grp, window, start, state FROM {OLD_STATE_TABLE} WHERE rollup = ?",
                    (rollup.name,),
                ).fetchall()
                keys = [(*json.loads(g), w, start) for g, w, start, _ in rows]
                states = pages.decode_window(rollup, keys, [blob for *_, blob in rows])
                self._write_pages(con, rollup, states)
            con.execute(f"DROP TABLE {OLD_STATE_TABLE}")

    def _upgrade_pages(self) -> None:
        """Rewrite pages of an older format (pages.OLD_FORMAT) in the current one, once.

        A store whose pages are all current says so in FORMAT_TABLE, so an open costs
        one lookup. Otherwise the old pages are rewritten a batch per transaction (a
        crash in between leaves pages of both formats, which decode() reads alike) and
        the table is filled in last.
        """
        exists = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        if self.con.execute(exists, (FORMAT_TABLE,)).fetchone() is not None:
            return
        old = struct.pack("<I", pages.OLD_FORMAT)
        for rollup in self.schema.rollups.values():
            while True:
                with self.transaction() as con:
                    found = con.execute(
                        f"SELECT grp, window, start, state FROM {PAGE_TABLE} WHERE rollup = ? "
                        f"AND substr(state, 1, 4) = ? LIMIT {UPGRADE_PAGES}",
                        (rollup.name, old),
                    ).fetchall()
                    self._rewrite_pages(con, rollup, found)
                if len(found) < UPGRADE_PAGES:
                    break
        with self.transaction() as con:
            con.execute(f"CREATE TABLE IF NOT EXISTS {FORMAT_TABLE} (format INTEGER NOT NULL)")
            if con.execute(f"SELECT 1 FROM {FORMAT_TABLE}").fetchone() is None:
                con.execute(f"INSERT INTO {FORMAT_TABLE} VALUES (?)", (pages.FORMAT,))

    def migrate_down(self, target: int) -> list[migrations.Migration]:
        """Revert migrations newer than `target`."""
        with self._lock:
            return migrations.down(self.con, self.schema, self.where, target)

    def migration_status(self) -> list[migrations.Status]:
        """Every migration and whether it is applied."""
        with self._lock:
            return migrations.status(self.con, self.schema)

    # -- writing ------------------------------------------------------------------------

    def write(
        self, table: Table, data: pa.Table, before_commit: Callable[[], None] | None = None
    ) -> int:
        """Write one validated batch in one transaction; returns the rows given.

        `before_commit` runs once every constraint has passed, before COMMIT (the store
        appends the batch to its NDJSON log there: a rejected batch is never logged, and
        a crash after logging is repaired by replaying the log).
        """
        values = python_columns(data, table)
        self._check_keys(table, data)
        rollups = self._rollups.get(table.name, [])
        try:
            with self.transaction() as con:
                if not rollups:
                    self._insert(con, table, data.column_names, values)
                else:
                    new = self._insert_capturing(con, table, values, data)
                    for rollup in rollups:
                        self._update_rollup(con, rollup, new)
                if before_commit is not None:
                    before_commit()
        except sqlite3.IntegrityError as exc:
            rows = list(zip(*values, strict=True))
            sql = insert_sql(table, data.column_names)
            raise self._explain(table, sql, rows, data.column_names, exc) from None
        except sqlite3.OperationalError as exc:
            raise StoreError(
                f"{self.where}, table {table.name!r}: {exc}; nothing was written"
            ) from exc
        return int(data.num_rows)

    def _check_keys(self, table: Table, data: pa.Table) -> None:
        # SQLite lets a TEXT PRIMARY KEY hold NULL, and NULLs never conflict: a retried
        # row with a NULL key would be stored twice. Keys are required here.
        for k in table.key:
            if table.column(k).autoincrement or k not in data.column_names:
                continue
            nulls = data.column(k).null_count
            if nulls:
                row = pc.index(pc.is_null(data.column(k)), True).as_py()
                raise ValidationError(
                    f"store {self.schema.name!r}, table {table.name!r}, column {k!r}, row "
                    f"{row}: missing value in a key column; nothing was written",
                    store=self.schema.name,
                    table=table.name,
                    column=k,
                    row=row,
                )

    def _explain(
        self,
        table: Table,
        sql: str,
        rows: list[tuple[Any, ...]],
        columns: Sequence[str],
        exc: sqlite3.IntegrityError,
    ) -> ValidationError:
        """Find the first row SQLite refuses and say which constraint, in our words."""
        where = f"store {self.schema.name!r}, table {table.name!r}"
        with self._lock:
            con = self.con
            con.execute("BEGIN IMMEDIATE")
            try:  # replay row by row, then roll everything back
                for i, row in enumerate(rows):
                    try:
                        con.execute(sql, row)
                    except sqlite3.IntegrityError as one:
                        values = dict(zip(columns, row, strict=True))
                        column, why = self._constraint(con, table, values, one)
                        at = f", column {column!r}" if column else ""
                        return ValidationError(
                            f"{where}, row {i}{at}: {why}; nothing was written",
                            store=self.schema.name,
                            table=table.name,
                            column=column,
                            row=i,
                        )
            finally:
                con.execute("ROLLBACK")
        return ValidationError(
            f"{where}: {exc}; nothing was written", store=self.schema.name, table=table.name
        )

    def _constraint(
        self,
        con: sqlite3.Connection,
        table: Table,
        row: dict[str, Any],
        exc: sqlite3.IntegrityError,
    ) -> tuple[str | None, str]:
        text = str(exc)
        if text.startswith("FOREIGN KEY"):
            for col in table.columns:
                value = row.get(col.name)
                if col.references is None or value is None:
                    continue
                parent, pcol = col.references.split(".")
                found = con.execute(
                    f"SELECT 1 FROM {parent} WHERE {pcol} = ? LIMIT 1", (value,)
                ).fetchone()
                if found is None:
                    return col.name, (
                        f"{value!r} has no row in {parent}.{pcol} (FOREIGN KEY "
                        f"{col.name} REFERENCES {parent}({pcol}))"
                    )
            return None, f"FOREIGN KEY constraint failed ({text})"
        if m := re.match(r"(NOT NULL|UNIQUE) constraint failed: (.+)", text):
            cols = [c.split(".", 1)[-1] for c in m.group(2).split(", ")]
            values = ", ".join(f"{c}={row.get(c)!r}" for c in cols)
            return cols[0], f"{m.group(1)} constraint on ({', '.join(cols)}) failed: {values}"
        if m := re.match(r"CHECK constraint failed: (.+)", text):
            expr = m.group(1)
            column = next(
                (c.name for c in table.columns if re.match(rf"\s*{c.name}\b", expr)), None
            )
            shown = f"{row.get(column)!r} " if column else ""
            return column, f"{shown}violates CHECK ({expr})"
        return None, text

    # -- rollups ------------------------------------------------------------------------

    @staticmethod
    def _insert(
        con: sqlite3.Connection,
        table: Table,
        names: Sequence[str],
        values: Sequence[Sequence[Any]],
    ) -> int:
        """Insert the columns `names` (their `values`, column by column) per the table's
        write mode; returns the rows changed."""
        return batch.insert_many(con, lambda k: insert_sql(table, names, rows=k), values)

    def _insert_capturing(
        self,
        con: sqlite3.Connection,
        table: Table,
        values: list[list[Any]],
        data: pa.Table,
    ) -> pa.Table:
        """Insert a batch and return the rows really inserted, for the rollups.

        Usually every row is new (SQLite's change count says so) and the batch itself
        is the answer. When some were retries that ON CONFLICT skipped, the batch is
        inserted again under a TEMP trigger recording the rowid of each row inserted,
        so a rollup counts every event exactly once.
        """
        con.execute("SAVEPOINT tl_batch")
        if self._insert(con, table, data.column_names, values) == data.num_rows:
            con.execute("RELEASE tl_batch")
            return data
        con.execute("ROLLBACK TO tl_batch")
        new = f"temp.__tl_new_{table.name}"
        con.execute(f"CREATE TEMP TABLE IF NOT EXISTS __tl_new_{table.name} (id INTEGER)")
        con.execute(
            f"CREATE TEMP TRIGGER __tl_capture_{table.name} AFTER INSERT ON main.{table.name} "
            f"BEGIN INSERT INTO __tl_new_{table.name} VALUES (new.rowid); END"
        )
        try:
            self._insert(con, table, data.column_names, values)
        finally:
            con.execute(f"DROP TRIGGER temp.__tl_capture_{table.name}")
        con.execute("RELEASE tl_batch")
        needed = sorted(
            {
                c
                for r in self._rollups[table.name]
                for c in (*r.group, r.time, *(a.column for a in r.aggregates if a.column))
            }
        )
        fetched = con.execute(
            f"SELECT {', '.join(needed)} FROM main.{table.name} "
            f"WHERE rowid IN (SELECT id FROM {new})"
        ).fetchall()
        con.execute(f"DELETE FROM {new}")
        columns = list(zip(*fetched, strict=True)) if fetched else [() for _ in needed]
        return pa.table(
            {
                n: pa.array(list(v), table.column(n).type.arrow)
                for n, v in zip(needed, columns, strict=True)
            }
        )

    def _update_rollup(self, con: sqlite3.Connection, rollup: Rollup, rows: pa.Table) -> None:
        """Merge new rows into exactly the windows they touch, in the same transaction."""
        if rows.num_rows == 0:
            return
        gained = windows.aggregate(rollup, rows)
        # The pages already holding touched windows: one index range per group and
        # window length (a batch covers a time span), then only the pages really touched.
        wanted = set(pages.page_ids(rollup, gained.keys))
        spans: dict[tuple[str, str], list[int]] = {}
        for grp, label, start in wanted:
            span = spans.setdefault((grp, label), [start, start])
            span[0], span[1] = min(span[0], start), max(span[1], start)
        found = [
            (grp, label, blob)
            for (grp, label), (low, high) in spans.items()
            for start, blob in con.execute(
                f"SELECT start, state FROM {PAGE_TABLE} WHERE rollup = ? AND grp = ? "
                "AND window = ? AND start BETWEEN ? AND ?",
                (rollup.name, grp, label, low, high),
            )
            if (grp, label, start) in wanted
        ]
        touched, every = windows.merge(gained, pages.decode(rollup, found))
        self._write_pages(con, rollup, every)
        self._write_windows(con, rollup, touched)

    def _write_pages(self, con: sqlite3.Connection, rollup: Rollup, states: windows.States) -> None:
        """Store the states of whole pages (every window each page holds)."""
        head = f"INSERT OR REPLACE INTO {PAGE_TABLE} (rollup, grp, window, start, stop, state) "
        stored = pages.encode(rollup, states)
        batch.insert_many(
            con,
            lambda k: head + "VALUES " + batch.values_sql(6, k),
            [
                [rollup.name] * len(stored),
                [p.grp for p in stored],
                [p.window for p in stored],
                [p.start for p in stored],
                [p.stop for p in stored],
                [p.state for p in stored],
            ],
        )

    def _write_windows(
        self, con: sqlite3.Connection, rollup: Rollup, states: windows.States
    ) -> None:
        target = self.schema.tables[rollup.name]
        finals = windows.finalize(rollup, target, states)
        names = list(finals)
        self._insert(con, target, names, [finals[n] for n in names])

    # Lake sources: their rows reach the lake through the WAL, not this database, so
    # their windows are marked dirty *before* the rows are written and recomputed from
    # the lake afterwards. A crash in between leaves a mark, never a stale window.

    def mark_dirty(self, rollup: Rollup, keys: set[windows.Key]) -> None:
        """Record windows a lake write is about to touch (committed before the write)."""
        group = len(rollup.group)
        with self.transaction() as con:
            con.executemany(
                f"INSERT OR IGNORE INTO {DIRTY_TABLE} (rollup, grp, window, start) "
                "VALUES (?, ?, ?, ?)",
                [(rollup.name, pages.group_text(k[:group]), k[-2], k[-1]) for k in keys],
            )

    def dirty(self, rollup: Rollup) -> list[windows.Key]:
        """Windows of `rollup` awaiting a refresh."""
        with self._lock:
            rows = self.con.execute(
                f"SELECT grp, window, start FROM {DIRTY_TABLE} WHERE rollup = ?", (rollup.name,)
            ).fetchall()
        return [(*json.loads(g), w, s) for g, w, s in rows]

    def replace_windows(
        self, rollup: Rollup, states: windows.States, keys: list[windows.Key]
    ) -> None:
        """Write the recomputed windows `keys` (gone if no state) and clear their marks."""
        group = len(rollup.group)
        with self.transaction() as con:
            if len(states):
                self._write_windows(con, rollup, states)
            present = set(states.keys)
            where = " AND ".join(
                f"{c} = ?" for c in [*rollup.group, rollup.window_column, rollup.start_column]
            )
            con.executemany(
                f"DELETE FROM {rollup.name} WHERE {where}", [k for k in keys if k not in present]
            )
            con.executemany(
                f"DELETE FROM {DIRTY_TABLE} WHERE rollup = ? AND grp = ? AND window = ? "
                "AND start = ?",
                [(rollup.name, pages.group_text(k[:group]), k[-2], k[-1]) for k in keys],
            )

    # -- reading ------------------------------------------------------------------------

    def query(self, text: str, params: Any = None) -> pa.Table:
        """Run read-only SQL (SQLite dialect); `:name` or `?` parameters."""
        with self._lock:
            try:
                cursor = self._read_con().execute(text, params if params is not None else ())
                fetched = cursor.fetchall()
            except sqlite3.Error as exc:
                if exc.sqlite_errorcode & 0xFF in _DAMAGE:  # damage, not the SQL
                    raise QueryError(f"query failed: {self.damaged(exc)}") from exc
                why = str(exc)
                # The authorizer's denial (SQLITE_AUTH, or SQLITE_SCHEMA on a re-prepare).
                if why == "not authorized" or exc.sqlite_errorcode == sqlite3.SQLITE_AUTH:
                    why = "queries are read-only (no ATTACH, no writes, no pragma settings)"
                raise QueryError(f"query failed ({self.where}): {why}") from exc
        names = [d[0] for d in cursor.description or ()]
        columns = list(zip(*fetched, strict=True)) if fetched else [() for _ in names]
        return pa.table({n: pa.array(list(v)) for n, v in zip(names, columns, strict=True)})

    def count(self, table: Table) -> int:
        """Rows in `table`."""
        return int(self.query(f"SELECT count(*) AS n FROM {table.name}").column(0)[0].as_py())

    def integrity_problems(self) -> list[str]:
        """`PRAGMA integrity_check`'s messages ([] for a sound file; damage that stops
        the check is one message too)."""
        return [r for r in backup.integrity_check(self._read_con()) if r != "ok"]

    def foreign_key_problems(self) -> list[str]:
        """`PRAGMA foreign_key_check`, as readable lines."""
        try:
            return [
                f"table {table!r} row {rowid} references a missing row of {parent!r}"
                for table, rowid, parent, _ in self._read_con().execute("PRAGMA foreign_key_check")
            ]
        except sqlite3.DatabaseError as exc:
            return [f"foreign_key_check failed: {exc}"]

    # -- retention ------------------------------------------------------------------------

    def expire(
        self,
        table: Table,
        now: dt.datetime,
        days: int,
        *,
        dry_run: bool = False,
        on_batch: Callable[[int], None] | None = None,
        days_of: Mapping[str, int] | None = None,
    ) -> int:
        """Delete rows older than `days` (and matching `retention_where`) in small batches.

        Each batch of RETENTION_BATCH rows is its own transaction, so writers of other
        processes wait for one batch at most; `on_batch(rows)` is called after each (it
        may raise to stop between two batches). Returns the rows removed.
        `days_of` gives the retention of the other tables, for `retention_where`.
        """
        if table.time is None:
            raise StoreError(f"{self.where}, table {table.name!r} has no time column for retention")
        # `retention_where` may use :cutoff (this table's cutoff, in its time unit) and
        # :<table>_cutoff, any sql table's (NO_CUTOFF, older than any row, if kept forever).
        days_of = days_of or {}
        params = {
            f"{t.name}_cutoff": self._cutoff(t, now, days_of[t.name])
            if t.name in days_of
            else NO_CUTOFF
            for t in self.schema.tables.values()
            if t.tier == "sql" and t.time is not None
        }
        cutoff = params["cutoff"] = self._cutoff(table, now, days)
        cond = f"{table.time} < :cutoff" + (
            f" AND ({table.retention_where})" if table.retention_where else ""
        )
        if dry_run:
            found = self.query(f"SELECT count(*) FROM {table.name} WHERE {cond}", params)
            return int(found.column(0)[0].as_py())
        removed = 0
        while True:
            with self.transaction() as con:
                n = con.execute(
                    f"DELETE FROM {table.name} WHERE rowid IN (SELECT rowid FROM {table.name} "
                    f"WHERE {cond} LIMIT {RETENTION_BATCH})",
                    params,
                ).rowcount
            removed += n
            if on_batch is not None:
                on_batch(n)
            if n < RETENTION_BATCH:
                break
        if table.name in self.schema.rollups:  # its merge states go with its rows
            self._expire_pages(self.schema.rollups[table.name], cutoff)
        return removed

    def _expire_pages(self, rollup: Rollup, cutoff: int) -> None:
        """Forget the states of windows starting before `cutoff` (ms): whole pages, and
        the old windows of the page the cutoff falls in."""
        with self.transaction() as con:
            con.execute(
                f"DELETE FROM {PAGE_TABLE} WHERE rollup = ? AND stop <= ?", (rollup.name, cutoff)
            )
            split = con.execute(
                f"SELECT grp, window, start, state FROM {PAGE_TABLE} "
                "WHERE rollup = ? AND start < ?",
                (rollup.name, cutoff),
            ).fetchall()
            self._rewrite_pages(con, rollup, split, lambda key: key[-1] >= cutoff)

    def _rewrite_pages(
        self,
        con: sqlite3.Connection,
        rollup: Rollup,
        found: list[tuple[str, str, int, bytes]],
        keep: Callable[[windows.Key], bool] | None = None,
    ) -> None:
        """Replace the pages `found` (grp, window, start, state): their windows (those
        `keep` accepts) written again, in the current format."""
        if not found:
            return
        states = pages.decode(rollup, [(g, w, blob) for g, w, _, blob in found])
        if keep is not None:
            states = windows.select(states, [i for i, k in enumerate(states.keys) if keep(k)])
        con.executemany(
            f"DELETE FROM {PAGE_TABLE} WHERE rollup = ? AND grp = ? AND window = ? AND start = ?",
            [(rollup.name, g, w, start) for g, w, start, _ in found],
        )
        self._write_pages(con, rollup, states)

    @staticmethod
    def _cutoff(table: Table, now: dt.datetime, days: int) -> int:
        """`now - days` in the unit of the table's time column (timestamps: epoch µs)."""
        assert table.time is not None
        col = table.column(table.time)
        micros = timestamp_micros(now, None)
        assert micros is not None
        cutoff = micros - days * 86_400_000_000
        unit = "us" if col.type.name == "timestamp" else (col.epoch_unit or "us")
        per = MICROS_PER_UNIT[unit]
        return cutoff * 1000 if per is None else cutoff // per  # None: nanoseconds
