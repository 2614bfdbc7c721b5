"""The Store: the one facade of telelake. It routes each call to the tier of the table."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import functools
import os
import threading
import time
import tomllib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import platformdirs

from telelake import derive, durable, formats, validate
from telelake._lazy import lazy
from telelake.config import (
    CONFIG_NAME,
    Retention,
    load_group_access,
    load_redaction,
    load_retention,
)
from telelake.durations import before, parse_age
from telelake.errors import (
    LockTimeoutError,
    StorageFullError,
    StoreError,
    TelelakeError,
    ValidationError,
)
from telelake.lake import layout, parquet, retention, wal
from telelake.lake.compact import CompactReport, PartitionResult
from telelake.lake.retention import RetentionReport, Step
from telelake.lake.tier import Durability, LakeTier, random_token
from telelake.lake.wal import FSYNC_POLICIES
from telelake.log import ndjson
from telelake.metadata import (
    METADATA_DIR,
    MetadataDir,
    VersionInfo,
    local_host_id,
    reconcile_version,
    utc_now_iso,
    version_key,
)
from telelake.query import Engine, Result, bind_params, find_query
from telelake.redact import policy
from telelake.schema.load import load_schema
from telelake.schema.model import Column, LogRecord, Rollup, Schema, Table
from telelake.schema.types import TYPES
from telelake.sql import ddl
from telelake.validate import PlainColumns

# Imported where they are used: a command that only reads pays for none of them.
if TYPE_CHECKING:
    import pyarrow as pa

    from telelake import upkeep
    from telelake.check import CheckReport
    from telelake.lake.migrate import MigrationReport
    from telelake.log.replay import ReplayReport
    from telelake.runs import RunClient
    from telelake.sql import migrations as sql_migrations
    from telelake.sql.backup import BackupReport
    from telelake.sql.tier import SqlTier
    from telelake.writer import BatchWriter
else:
    pa = lazy("pyarrow")

__version__ = "0.1.0"
ROOT_ENV = "TELELAKE_ROOT"
DEFAULT_SCHEMA = "process_triage"  # of a new store, when no schema is given


def default_root(schema: str | Path | Schema) -> Path:
    """`$TELELAKE_ROOT`, else the schema's `default_root` under the platform's user data
    directory (process_triage: `~/.local/share/process_triage/telemetry` on Linux, spec
    000 §2.1), else `.../telelake/<schema name>` there. `schema` is a Schema, or a
    built-in schema name or TOML path."""
    env = os.environ.get(ROOT_ENV)
    if env:
        return Path(env).expanduser()
    model = schema if isinstance(schema, Schema) else load_schema(schema)
    if model.default_root is not None:
        return Path(platformdirs.user_data_dir()) / model.default_root
    return Path(platformdirs.user_data_dir("telelake")) / model.name


def locate(
    root: str | Path | None, schema: str | Path | Schema | None, default: str = DEFAULT_SCHEMA
) -> tuple[Path, Schema]:
    """The root folder of a store and the schema it opens with.

    `schema` (a built-in name, a TOML path or a loaded Schema) when given; else the
    schema the store at `root` holds (`_metadata/`, see `MetadataDir.own_schema`); else,
    for a new store, `default`. `root` defaults to `$TELELAKE_ROOT`, else the schema's
    default root (of `default` when no schema is given).
    """
    if schema is not None:
        model = schema if isinstance(schema, Schema) else load_schema(schema)
        path = Path(root).expanduser() if root is not None else default_root(model)
        return path.resolve(), model
    path = (Path(root).expanduser() if root is not None else default_root(default)).resolve()
    own = MetadataDir(path).own_schema()
    return path, own if own is not None else load_schema(default)


@dataclass(frozen=True)
class TableStats:
    """Rows, files and bytes of one table."""

    table: str
    tier: str
    rows: int
    files: int
    bytes: int


class Store:
    """One store: a root folder holding every table of one schema.

    Open it with `telelake.open()`. It is a context manager; `close()` releases the
    query engine.
    """

    def __init__(
        self,
        root: Path,
        schema: Schema,
        *,
        host_id: str | None = None,
        durability: Durability | None = None,
        migrate: bool = False,
        plan_only: bool = False,
        on_migrated: Callable[[str], None] | None = None,
        reading: bool = False,
    ) -> None:
        self.root = root
        self.schema = schema
        self.host_id = host_id or local_host_id()
        try:  # before any file is made
            group = load_group_access(root)
        except StoreError:  # a broken config.json: private meanwhile; said where it is read
            group = False
        durable.set_group_access(root, group)
        self.read_only = False
        self.migration: MigrationReport | None = None  # set when this open migrated
        self._extras: dict[str, tuple[Column, ...]] = {}
        self._plain: dict[str, bool] = {}  # tables whose small dict writes skip Arrow
        self._meta = MetadataDir(root)
        # `reading`: the caller only reads (`telelake sql`...). If the store exists at this
        # schema's version, opening then writes nothing (metadata, folders, the tidying of
        # crashed writers' leftovers) and reads no more than the query will need.
        self.reading = reading
        old_version = self._open_metadata(migrate)  # (clears `reading` if it must write)
        self._create_key = not (self.read_only or plan_only)
        self._redactor_made: policy.Redactor | None = None
        if not self.reading:
            self._redactor_made = self._open_redaction(create_key=self._create_key)
        self._lake = LakeTier(root, schema, {"host_id": self.host_id}, durability)
        has_sql = any(t.tier == "sql" for t in schema.tables.values())
        self._sql: SqlTier | None = None
        if has_sql:
            from telelake.sql.tier import SqlTier

            self._sql = SqlTier(root, schema)
        if not self.read_only and not plan_only and not self.reading:
            for folder in schema.directories:  # the layout the schema promises
                durable.ensure_dir(root / folder)
        if self._sql is not None and not self.read_only and not plan_only:
            # Forward migrations apply on open (spec 001: only forward ones, automatically).
            self._sql.migrate_up()
            self._export_ddl()
        if old_version is not None and plan_only:  # `telelake migrate --dry-run`
            self.migration = self._migrate(old_version, dry_run=True)
            self.read_only = True
        elif old_version is not None:
            self.migration = self._migrate(old_version, dry_run=False, on_file=on_migrated)
            self._write_metadata(
                VersionInfo(schema.version, [schema.version], old_version, utc_now_iso())
            )
        if not self.read_only and not self.reading:
            with contextlib.suppress(OSError):  # best effort, as the tidying below
                self.remove_orphan_temps()  # a killed writer's half-written files
        if not self.read_only:
            for t in self._lake_tables():
                self._lake.ensure_anchor(t, only_missing=self.reading)
                if self.reading:
                    continue  # WAL rows are read wherever they are
                # Finish what crashed processes left: interrupted folds, orphan segments.
                # Tidying is best effort: rows are safe in the WAL and readable without it.
                try:
                    # Never waiting for the fold lock: its holder (a fold, a compaction,
                    # perhaps stopped) is alive, and will be done with what is there.
                    self._lake.recover(t, wait=False)
                    self._lake.fold_orphans(t, wait=False)
                except LockTimeoutError:
                    pass
                except OSError as exc:
                    warnings.warn(
                        f"table {t.name!r}: could not fold leftover WAL segments "
                        f"now ({exc}); their rows stay readable",
                        stacklevel=3,
                    )
        self._engine: Engine | None = None
        self._open_engine: Engine | None = None  # allow_external's, unconfined
        self._log_writer: ndjson.LogWriter | None = None  # kept open: one fsync per append
        self._log_day = -1
        self._log_lock = threading.Lock()
        self._upkeep: upkeep.Background | None = None  # started by open()
        if self._sql is not None and not self.read_only and not plan_only and not self.reading:
            # Windows a crashed writer marked but did not recompute.
            for t in self._lake_tables():
                self._refresh_rollups(self._lake_rollups(t))

    @property
    def _redactor(self) -> policy.Redactor:
        if self._redactor_made is None:  # (opened for reading: made when first needed)
            self._redactor_made = self._open_redaction(create_key=self._create_key)
        return self._redactor_made

    def _open_redaction(self, *, create_key: bool) -> policy.Redactor:
        """The redaction policies of this store (schema and config.json) and its key."""
        tables = list(self.schema.tables.values())
        settings = load_redaction(self.root)
        try:
            policies = policy.resolve(tables, settings, str(self.root / CONFIG_NAME))
        except ValueError as exc:
            raise StoreError(str(exc)) from None
        json_columns = frozenset(
            (t.name, c.name) for t in tables for c in t.columns if c.type.name == "json"
        )
        redactor = policy.Redactor(policies, json_columns=json_columns)
        if redactor.needs_key:
            from telelake.redact import key

            state = key.open_key(self.root, create=create_key)
            redactor.key, redactor.key_problem = state.key, state.problem
        return redactor

    def _export_ddl(self) -> None:
        """Keep `[sql] export_ddl` (e.g. config/schema.sql) equal to the schema's DDL."""
        target = self.schema.sql_settings.export_ddl
        if target is None:
            return
        text = (
            f"-- {self.schema.name} {self.schema.version}: the tables of this store's SQL "
            "database, written by telelake from the schema; do not edit.\n\n"
            + ddl.schema_up(self.schema)
        )
        path = self.root / target
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            durable.ensure_dir(path.parent)
            durable.write_bytes_durably(path, text.encode("utf-8"))

    def __repr__(self) -> str:
        return f"<telelake.Store {self.schema.name} {self.schema.version} at {self.root}>"

    # -- opening ------------------------------------------------------------------------

    def _open_metadata(self, migrate: bool = False) -> str | None:
        """Check and update `_metadata/`; the old version if a migration must run first."""
        info = self._meta.store_info()
        if info is not None and info.get("schema") != self.schema.name:
            raise StoreError(
                f"store {self.root} holds schema {info.get('schema')!r}, not "
                f"{self.schema.name!r}: open it without a schema to use its own, or use "
                "another root"
            )
        if (
            info is None
            and self.root.exists()
            # A config.json may come first: it can say how the first rows are redacted.
            and any(p.name[0] != "." and p.name != CONFIG_NAME for p in self.root.iterdir())
        ) and not (self.root / "_metadata").exists():
            raise StoreError(f"{self.root} is not empty and is not a telelake store")
        stored = self._meta.version_info()
        if migrate and stored is not None and self._older_major(stored.current_version):
            return stored.current_version  # metadata is written once the files are migrated
        version, read_only = reconcile_version(stored, self.schema.version, utc_now_iso())
        if stored is not None and not read_only:
            self._check_changes(stored.current_version)
        self.read_only = read_only
        if self.reading and not read_only:
            self.reading = self._meta.holds(self.schema, version)
        if read_only:
            warnings.warn(
                f"store {self.root} was written by schema version {version.current_version}, "
                f"newer than {self.schema.version}: opened read-only",
                stacklevel=3,
            )
            return None
        if not self.reading:
            self._write_metadata(version)
        return None

    def _write_metadata(self, version: VersionInfo) -> None:
        info = self._meta.store_info()
        if info is None:
            self._meta.write_store_info(self.schema, __version__)
        else:  # where its schema comes from now (a built-in, a file, the store's copy)
            self._meta.record_schema_source(info, self.schema)
        self._meta.write_version_info(version)
        self._meta.write_schema_copy(self.schema.text)
        self._meta.update_host_info(self.host_id)

    def _older_major(self, stored_version: str) -> bool:
        return version_key(stored_version)[0] < version_key(self.schema.version)[0]

    # -- migrations -----------------------------------------------------------------------

    def _migrate(
        self,
        old_version: str,
        *,
        dry_run: bool,
        on_file: Callable[[str], None] | None = None,
    ) -> MigrationReport:
        """Rewrite every file of an older major version into this schema's tables."""
        from telelake.lake import migrate as lake_migrate
        from telelake.schema.diff import diff_tables, tables_from_text

        old_major = version_key(old_version)[0]
        migration = self.schema.migrations.get(old_major)
        where = f"store {self.root}"
        if migration is None:
            raise StoreError(
                f"{where} holds version {old_version}; schema {self.schema.name!r} "
                f"{self.schema.version} declares no [migrations.from_{old_major}] to migrate it"
            )
        text = self._meta.schema_copy()
        old_tables = tables_from_text(text, self._meta.path / "schema.toml") if text else {}
        unmigrated = sorted(
            {
                c.table
                for c in diff_tables(old_tables, self.schema.tables)
                if c.breaking and c.table in self.schema.tables
            }
            - set(migration.tables)
        )
        if unmigrated:
            raise StoreError(
                f"{where}: migration from_{old_major} gives no SQL for table(s) "
                f"{', '.join(unmigrated)}, whose changes are breaking"
            )
        report = lake_migrate.MigrationReport(old_version, self.schema.version)
        tables = self._lake_tables()
        for t in tables:
            wal_dir = self._lake.wal_dir(t)
            if not dry_run:
                self._lake.recover(t)
            if wal_dir.is_dir() and any(wal_dir.glob("*" + wal.SUFFIX)):
                raise StoreError(
                    f"{where}: table {t.name!r} still has rows in WAL segments of version "
                    f"{old_version}; open the store with that schema and run `telelake "
                    "fold` first"
                )
        new_major = version_key(self.schema.version)[0]
        # Pass 1 validates every row; pass 2 writes. A bad row changes nothing.
        for write in (False, True) if not dry_run else (False,):
            for t in tables:
                sql = migration.tables.get(t.name)
                step = lake_migrate.TableMigration(
                    t.name, how="rewritten by SQL" if sql else "copied"
                )
                base = self._lake.table_dir(t)
                for _, files in self._lake.visible_partitions(t, usable_only=False):
                    for path in lake_migrate.stale_files(files, new_major):
                        rows = lake_migrate.migrate_rows(path, base, t, sql, self.schema.name)
                        step.files += 1
                        step.rows += rows.num_rows
                        if write:
                            with self._lake.table_lock(t):
                                lake_migrate.migrate_file(
                                    self.root,
                                    t,
                                    path,
                                    rows,
                                    self._lake.wal_dir(t),
                                    self._lake.defaults,
                                    {**self._lake.metadata, parquet.META_TABLE: t.name.encode()},
                                    random_token(8),
                                )
                            if on_file is not None:
                                on_file(t.name)
                report.tables[t.name] = step
        if not dry_run:
            self._meta.append_migration(lake_migrate.report_json(report))
        return report

    def _check_changes(self, stored_version: str) -> None:
        """Refuse table changes the version number does not allow (spec 000 §4.3)."""
        from telelake.schema.diff import diff_tables, tables_from_text

        if version_key(self.schema.version) < version_key(stored_version):
            return  # an older minor version reading a newer store: compatible by §4.2
        text = self._meta.schema_copy()
        if text == self.schema.text:
            return  # the schema the store was last opened with
        if not text or stored_version != self._meta_version_of(text):
            return  # no copy, or a copy from another version: nothing reliable to compare
        try:
            old = tables_from_text(text, self._meta.path / "schema.toml")
        except (ValueError, TelelakeError):
            return  # an unreadable copy is `check`'s business, not a reason to refuse
        changes = diff_tables(old, self.schema.tables)
        if not changes:
            return
        breaking = [c for c in changes if c.breaking]
        if breaking:
            listed = "; ".join(str(c) for c in breaking)
            raise StoreError(
                f"store {self.root}: schema {self.schema.name!r} {self.schema.version} makes "
                f"breaking changes to version {stored_version} ({listed}). A breaking change "
                "needs a new major version and a migration that rewrites the store's files; "
                "additive changes (new tables, new nullable columns) need a new minor version"
            )
        if self.schema.version == stored_version:
            listed = "; ".join(str(c) for c in changes)
            raise StoreError(
                f"store {self.root}: schema {self.schema.name!r} changes its tables ({listed}) "
                f"but keeps version {stored_version}; give additive changes a new minor "
                "version (e.g. 1.0.0 -> 1.1.0)"
            )

    @staticmethod
    def _meta_version_of(text: str) -> str | None:
        try:
            version = tomllib.loads(text).get("version")
        except tomllib.TOMLDecodeError:
            return None
        return version if isinstance(version, str) else None

    # -- tables -------------------------------------------------------------------------

    def table(self, name: str) -> Table:
        """The table called `name` (StoreError naming the known tables otherwise)."""
        try:
            return self.schema.tables[name]
        except KeyError:
            known = ", ".join(self.schema.tables)
            raise StoreError(
                f"store {self.schema.name!r} has no table {name!r} (tables: {known})"
            ) from None

    def _lake_tables(self) -> list[Table]:
        return [t for t in self.schema.tables.values() if t.tier == "lake"]

    def _extra_columns(self, table: Table) -> tuple[Column, ...]:
        """Partition keys that are not columns, as the string columns a write may carry."""
        extra = self._extras.get(table.name)
        if extra is None:  # built once: their Arrow fields are cached on the Column
            extra = tuple(Column(k, TYPES["string"], nullable=False) for k in table.virtual_keys)
            self._extras[table.name] = extra
        return extra

    def validate(self, table: str, rows: Any, *, derived: bool = True) -> pa.Table:
        """Check rows against `table` and return them as Arrow, writing nothing.

        Derived columns (`derive` in the schema) the rows leave empty are computed from
        the original values, before redaction; `derived=False` leaves them as given.
        """
        t = self.table(table)
        data = validate.to_arrow(t, rows, store=self.schema.name, extra=self._extra_columns(t))
        if derived:
            data = derive.arrow(t, data)
        # Partition keys that are not columns default to this store's value (its host_id),
        # so every validated batch of a table has the same columns.
        for key in t.virtual_keys:
            if key not in data.column_names:
                fill = pa.repeat(pa.scalar(self._lake.defaults[key], pa.string()), data.num_rows)
                data = data.append_column(pa.field(key, pa.string(), nullable=False), fill)
        # Redaction happens here, before any tier sees the rows: nothing unredacted is
        # ever written, not even to a WAL segment or a temp file.
        return self._redactor.table(t.name, data)

    def redaction(self, table: str) -> dict[str, str]:
        """The columns of `table` this store redacts, and how (schema and config.json)."""
        return {c: str(p) for c, p in self._redactor.columns(self.table(table).name).items()}

    def redacted(self, table: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Dict rows as this store would keep them: derived columns filled in, then the
        table's redaction policies applied.

        For data that leaves by another way than the store (an HTTP post, a log line).
        """
        t = self.table(table)
        return self._redactor.rows(t.name, derive.rows(t, rows))

    # -- writing ------------------------------------------------------------------------

    def write(self, table: str, rows: Any) -> int:
        """Validate and write rows to `table`; returns how many rows it stored.

        `rows` may be a list of dicts, a dict of columns, a pyarrow Table/RecordBatch
        or a pandas DataFrame. Nothing is written if any row is invalid. A table with a
        key keeps one row per key: under `write = "ignore"` the first write of a key
        wins and a repeat (in `rows`, or of a key already stored) is not stored nor
        counted; under `write = "upsert"` the last write wins and every row counts
        (inserted or replacing).
        """
        t = self.table(table)
        if t.tier == "log" and type(rows) is list and all(type(r) is dict for r in rows):
            return self._write_log_rows(t, rows)
        if self._plain_ok(t):
            plain = validate.exact_columns(t, rows, self._extra_columns(t), self._lake.defaults)
            if plain is not None:
                stored = self._write_plain(t, derive.plain(t, plain))
                if stored is not None:
                    return stored
        data = self.validate(table, rows)
        return self._write_arrow(t, data)

    def _write_log_rows(self, table: Table, rows: list[dict[str, Any]]) -> int:
        """Dict rows straight to the NDJSON log: checked, redacted and encoded one by one,
        with no trip through Arrow (a log's writes are one-row and latency-bound)."""
        checked = validate.plain_rows(table, rows, store=self.schema.name)
        clean = self._redactor.rows(table.name, derive.rows(table, checked))
        self._refuse_if_read_only()
        if clean:
            self._log(self._record(table), clean)
        return len(clean)

    def _refuse_if_read_only(self) -> None:
        """StoreError if this store may not be written (a newer schema wrote it)."""
        if self.read_only:
            raise StoreError(f"store {self.root} is read-only (written by a newer schema)")

    def _plain_ok(self, table: Table) -> bool:
        """True if small dict writes to `table` may skip Arrow: a lake table that is
        neither redacted nor the source of a rollup (both work on Arrow columns)."""
        ok = self._plain.get(table.name)
        if ok is None:
            redacted = bool(self._redactor.columns(table.name))
            ok = table.tier == "lake" and not redacted and not self._lake_rollups(table)
            self._plain[table.name] = ok
        return ok

    def _write_plain(self, table: Table, plain: PlainColumns) -> int | None:
        """A small write of checked plain values to the lake's WAL, with no Arrow on the
        way (see `wal.serialize_rows`): the rows stored, or None if it must take the
        Arrow path instead."""
        self._refuse_if_read_only()
        if plain.num_rows >= self._lake.durability.direct_rows:
            return None
        try:
            return self._lake.write_plain(table, plain.fields, plain.columns, plain.num_rows)
        except (OSError, ValueError) as exc:
            mapped = self._lake_error(table, exc)
            if mapped is None:
                raise
            raise mapped from exc

    def _record(self, table: Table) -> LogRecord:
        record = self.schema.log.record_of(table.name) if self.schema.log else None
        assert record is not None  # the loader requires one for every log table
        return record

    def _write_arrow(self, table: Table, data: pa.Table, *, direct: bool = False) -> int:
        self._refuse_if_read_only()
        if data.num_rows == 0:
            return 0
        if table.tier == "sql":
            record = self.schema.log.record_of(table.name) if self.schema.log else None
            if record is None:
                return self.sql_tier.write(table, data)
            return self._write_sql_logged(table, data, record)
        if table.tier == "log":
            self._log(self._record(table), data.to_pylist())
            return int(data.num_rows)
        rollups = self._lake_rollups(table)
        if rollups:
            from telelake.rollup import windows
        for rollup in rollups:
            self.sql_tier.mark_dirty(rollup, windows.touched(rollup, data))
        try:
            self._lake.check_partition_values(table, data)
            stored = self._lake.write(table, data, direct=direct)
        except (OSError, ValueError) as exc:
            mapped = self._lake_error(table, exc)
            if mapped is None:
                raise
            raise mapped from exc
        self._refresh_rollups(rollups)
        return stored

    def _write_sql_logged(self, table: Table, data: pa.Table, record: LogRecord) -> int:
        """Write a batch to the database and its NDJSON log line, both or neither.

        The line is appended once the batch passed its constraints, just before COMMIT
        (a crash in between is repaired by replaying the log). When the COMMIT fails
        (a full disk), the line is taken back, so the error's "nothing was written"
        holds; if it cannot be (another process appended after it), the error says
        that the batch is logged and what applies it.
        """
        logged: list[tuple[ndjson.LogWriter, tuple[int, int]]] = []

        def log_batch() -> None:
            logged.append(self._log(record, data.to_pylist()))

        try:
            return self.sql_tier.write(table, data, log_batch)
        except BaseException as exc:
            if not logged or logged[0][0].take_back(logged[0][1]):
                raise
            writer = logged[0][0]
            cause = exc.__cause__ or exc
            raise StoreError(
                f"{self.sql_tier.where}, table {table.name!r}: the database did not take "
                f"the batch ({cause}), but its line stays in the log {writer.path}: "
                "`telelake replay` applies it once the database can be written"
            ) from exc

    def _lake_error(self, table: Table, exc: OSError | ValueError) -> TelelakeError | None:
        """A lake write's failure as the error that says what happened to the rows (None:
        raise it as it is)."""
        if isinstance(exc, layout.KeyValueError):
            return validate.value_error(self.schema.name, table.name, exc.key, exc.row, str(exc))
        if isinstance(exc, ValueError):  # (a partition key given no value)
            return ValidationError(
                f"store {self.schema.name!r}, table {table.name!r}: {exc}; nothing was written",
                store=self.schema.name,
                table=table.name,
            )
        return _storage_full(
            exc,
            f"store {self.root}, table {table.name!r}",
            "this write was not acknowledged, earlier rows are safe; free space and write again",
        )

    def _log(
        self, record: LogRecord, rows: list[dict[str, Any]]
    ) -> tuple[ndjson.LogWriter, tuple[int, int]]:
        """Append rows to today's NDJSON log: one line each, under a lock, fsynced;
        returns the writer and the lines' span (for `take_back`)."""
        settings = self.schema.log
        assert settings is not None
        day = int(time.time() // 86_400)  # the UTC day: cheaper than a datetime per event
        log = self._log_writer
        if log is None or self._log_day != day or log.closed or not log.owned:
            with self._log_lock:  # threads of one store share one writer
                log = self._log_writer
                if log is None or self._log_day != day or log.closed or not log.owned:
                    directory = self.root / settings.directory
                    now = dt.datetime.now(dt.UTC)
                    path = ndjson.daily_path(directory, now, settings.prefix)
                    if log is not None and log.owned:  # a new day: close yesterday's file
                        log.close()
                    durable.ensure_dir(directory)
                    log = self._log_writer = ndjson.LogWriter(path, fsync=settings.fsync)
                    self._log_day = day
        lines = [{"record_type": record.record_type, "payload": row} for row in rows]
        return log, log.append_undoable(lines)

    def _lake_rollups(self, table: Table) -> list[Rollup]:
        if table.tier != "lake":
            return []
        return [r for r in self.schema.rollups.values() if r.source == table.name]

    def _refresh_rollups(self, rollups: list[Rollup]) -> None:
        """Recompute the dirty windows of lake-source rollups from the lake (idempotent)."""
        from telelake.rollup import windows

        for rollup in rollups:
            keys = self.sql_tier.dirty(rollup)
            if not keys:
                continue
            starts = {label: length for label, length in rollup.windows}
            low = min(k[-1] for k in keys)
            high = max(k[-1] + starts[k[-2]] for k in keys)
            source = self.table(rollup.source)
            needed = sorted(
                {*rollup.group, rollup.time, *(a.column for a in rollup.aggregates if a.column)}
            )
            epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
            rows = self.engine.sql(
                f'SELECT {", ".join(needed)} FROM "{source.name}" '
                f"WHERE {rollup.time} >= $low AND {rollup.time} < $high",
                {
                    "low": epoch + dt.timedelta(milliseconds=low),
                    "high": epoch + dt.timedelta(milliseconds=high),
                },
            ).to_arrow()
            rows = rows.cast(pa.schema([source.column(n).arrow_field for n in needed]))
            states = windows.aggregate(rollup, rows) if rows.num_rows else None
            wanted = set(keys)
            keep = [i for i, k in enumerate(states.keys) if k in wanted] if states else []
            self.sql_tier.replace_windows(rollup, windows.select(states, keep), keys)

    def writer(
        self, table: str, batch_size: int = 1000, flush_interval: float | None = 30.0
    ) -> BatchWriter:
        """A batched writer for `table` (spec 000 §7.1); use it as a context manager."""
        from telelake.writer import BatchWriter

        t = self.table(table)
        return BatchWriter(
            lambda rows: self.validate(table, rows),
            lambda data: self._write_arrow(t, data, direct=True),
            table,
            batch_size=batch_size,
            flush_interval=flush_interval,
        )

    # -- reading ------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The DuckDB engine, read-only and confined to the store (created on first use)."""
        if self._engine is None:
            self._engine = Engine(self.schema, self._lake)
        return self._engine

    def _duckdb(self, allow_external: bool) -> Engine:
        """The confined engine, or with `allow_external` DuckDB in full (its own connection)."""
        if not allow_external:
            return self.engine
        if self._open_engine is None:
            self._open_engine = Engine(self.schema, self._lake, confined=False)
        return self._open_engine

    def _engine_for(self, engine: str | None, allow_external: bool) -> str:
        """The engine a query runs on (by default DuckDB when there are lake tables)."""
        engine = engine or ("duckdb" if self._lake_tables() or self._sql is None else "sqlite")
        if engine not in ("duckdb", "sqlite"):
            raise StoreError(f"engine must be duckdb or sqlite, not {engine!r}")
        if engine == "sqlite" and allow_external:
            raise StoreError("allow_external is for the duckdb engine; sqlite is read-only")
        return engine

    @property
    def sql_tier(self) -> SqlTier:
        """The store's SQL database (StoreError if the schema has no sql tables)."""
        if self._sql is None:
            raise StoreError(f"schema {self.schema.name!r} has no sql tables")
        return self._sql

    def sql(
        self,
        text: str,
        params: Any = None,
        *,
        engine: str | None = None,
        allow_external: bool = False,
    ) -> Result:
        """Run SQL: DuckDB over the lake tables, views and macros, or read-only SQLite.

        `engine` is "duckdb" or "sqlite"; by default DuckDB when the schema has lake
        tables, else SQLite. Queries are read-only and read the store's files only;
        `allow_external=True` gives DuckDB in full (COPY TO, ATTACH, CREATE, SET, any
        file): for the store's owner, never for SQL from someone else.
        """
        if self._engine_for(engine, allow_external) == "sqlite":
            return Result(self.sql_tier.query(text, params))
        return self._duckdb(allow_external).sql(text, params)

    def sql_rows(
        self,
        text: str,
        params: Any = None,
        *,
        engine: str | None = None,
        allow_external: bool = False,
    ) -> formats.Printable:
        """`sql()` for printing: `.columns` and `.rows()` as DuckDB's own Python values,
        with no Arrow table in between (what `telelake sql` shows; Arrow's import alone
        costs more than a small query). SQLite results are `sql()`'s."""
        if self._engine_for(engine, allow_external) == "duckdb":
            return self._duckdb(allow_external).rows(text, params)
        return self.sql(text, params, engine=engine)

    def query(self, name: str, **params: Any) -> Result:
        """Run one of the schema's named queries (on the engine it declares)."""
        query = find_query(self.schema, name)
        if query.engine == "sqlite":
            return Result(self.sql_tier.query(query.sql, bind_params(query, params)))
        return self.engine.named(name, params)

    @property
    def queries(self) -> QueryNamespace:
        """The schema's named queries as methods: `store.queries.open_alerts("p", 10)`."""
        return QueryNamespace(self)

    # -- sql migrations -----------------------------------------------------------------

    def migrate_sql(
        self, direction: str = "up", target: int | None = None, *, confirm: bool = False
    ) -> list[int]:
        """Apply (`up`) or revert (`down` to `target`) SQL migrations; versions done.

        Reverting can drop data, so `down` needs `confirm=True`: the operator's explicit
        confirmation of a rollback (spec 001; the CLI's `--dev` / `--confirm-rollback`).
        """
        if direction == "up":
            return [m.version for m in self.sql_tier.migrate_up(target)]
        if direction == "down":
            if confirm is not True:  # exactly True: not any truthy value passed by mistake
                raise StoreError(
                    f"store {self.root}: migrate_sql('down') reverts schema changes and can "
                    "drop data; confirm the rollback with migrate_sql('down', target, "
                    "confirm=True)"
                )
            if target is None:
                applied = [s.version for s in self.migration_status() if s.state == "applied"]
                target = applied[-2] if len(applied) > 1 else 0
            return [m.version for m in self.sql_tier.migrate_down(target)]
        raise StoreError(f"direction must be up or down, not {direction!r}")

    def migration_status(self) -> list[sql_migrations.Status]:
        """Every SQL migration of the schema and whether it is applied."""
        return self.sql_tier.migration_status()

    def remove_orphan_temps(self) -> tuple[int, int]:
        """Delete the temp files that killed writers left (a Parquet file or metadata
        being published, a WAL segment being made): only those whose writer is gone.
        Returns how many and their bytes. Runs on open and in maintenance."""
        count, size = durable.remove_orphan_temps(self.root / METADATA_DIR)
        for t in self._lake_tables():
            n, b = self._lake.remove_orphan_temps(t)
            count, size = count + n, size + b
        return count, size

    def fold(self, *, own: bool = True) -> int:
        """Fold WAL rows into Parquet: this store's segments and any orphaned ones
        (`own=False`: orphaned ones only, leaving this store's writers undisturbed).

        Returns the rows published. Queries see WAL rows before and after; folding only
        changes where they live.
        """
        if self.read_only:
            return 0
        done = self._lake.fold_own() if own else 0
        for t in self._lake_tables():
            self._lake.recover(t)
            done += self._lake.fold_orphans(t)
        return done

    def compact(
        self,
        table: str | None = None,
        older_than: str | dt.timedelta | None = None,
        *,
        dry_run: bool = False,
        on_partition: Callable[[str, PartitionResult], None] | None = None,
        now: dt.datetime | None = None,
        min_files: int = 2,
    ) -> CompactReport:
        """Merge the small files of each partition into one file (spec 000 §5.3).

        `table` None means every lake table. With `older_than` (`"7d"` or a timedelta)
        only partitions whose time range ended that long before `now` (default: the
        current time) are touched, so the partitions being written are left alone.
        Repeated keys are removed (the oldest write wins). Each partition is swapped
        atomically: a query running meanwhile sees every row exactly once. With
        `dry_run`, nothing changes and the report says what would be merged. Only
        partitions holding `min_files` or more files are touched.
        """
        if not dry_run:
            self._refuse_if_read_only()
        try:
            age = None if older_than is None else parse_age(older_than)
        except ValueError as exc:
            raise StoreError(f"compact: {exc}") from None
        cutoff = None if age is None else before(now or dt.datetime.now(dt.UTC), age)
        tables = [self.table(table)] if table is not None else self._lake_tables()
        report = CompactReport()
        for t in tables:
            if t.tier != "lake":
                raise StoreError(f"table {t.name!r} is in the {t.tier} tier: nothing to compact")

            def tell(result: PartitionResult, name: str = t.name) -> None:
                if on_partition is not None:
                    on_partition(name, result)

            report.tables[t.name] = self._lake.compact(
                t, cutoff, dry_run=dry_run, on_partition=tell, min_files=min_files
            )
        return report

    def retention(self) -> Retention:
        """This store's retention settings: the schema's (each table's `retention_days`,
        its `[retention]`), overridden by `config.json`; `.sources` says which is which."""
        return load_retention(self.root, self.schema)

    def maintain(
        self,
        *,
        if_older_than: str | dt.timedelta | None = None,
        stop: threading.Event | None = None,
        on_step: Callable[[str], None] | None = None,
    ) -> upkeep.MaintenanceReport:
        """Run maintenance now: retention (days, then `max_disk_gb`), then with
        `auto_compact` the compaction of finished partitions with many small files.

        One process at a time: if another holds the maintenance lock, nothing is done
        and the report says so (`status` "skipped"). With `if_older_than` ("1h"), only
        if the last run finished longer ago. The run is recorded in
        `_metadata/maintenance.json`; errors are reported, not raised.
        """
        self._refuse_if_read_only()
        try:
            age = None if if_older_than is None else parse_age(if_older_than)
        except ValueError as exc:
            raise StoreError(f"maintain: {exc}") from None
        from telelake import upkeep

        return upkeep.run(self, if_older_than=age, stop=stop, on_step=on_step)

    def status(self) -> upkeep.StoreStatus:
        """Settings (and where each came from), the last maintenance run and the next,
        and every table's rows, files and bytes."""
        from telelake import upkeep

        return upkeep.status(self)

    def enforce_retention(
        self,
        *,
        dry_run: bool = False,
        now: dt.datetime | None = None,
        on_step: Callable[[Step], None] | None = None,
        fold_own: bool = True,
        on_batch: Callable[[str, int], None] | None = None,
    ) -> RetentionReport:
        """Remove rows older than each table's retention, then keep under `max_disk_gb`.

        Whole partitions go where the time levels allow it; the partition holding the
        cutoff is rewritten without its older rows. Over the disk budget, the oldest
        partitions go first across tables (on equal age, in the schema's table order),
        never one whose time range has not ended yet; a warning names them. Removed
        files are hidden from new queries at once and deleted after `retire_after`
        seconds. With `dry_run`, nothing changes and the report says what would go.
        WAL rows are folded first (with `fold_own=False`, orphaned segments only).
        Sql tables lose their rows in batches of 5,000, one transaction each;
        `on_batch(table, rows)` is called after each (it may raise to stop in between).
        """
        if not dry_run:
            self._refuse_if_read_only()
        settings = self.retention()
        now = now or dt.datetime.now(dt.UTC)
        if not dry_run:
            # Rows still in WAL segments are expired like any others. (Background
            # maintenance leaves this store's own segments to their writers: folding
            # them takes the lock `write()` needs.)
            self.fold(own=fold_own)
        report = RetentionReport()
        # Children before parents: a child's own expired rows are counted as its own,
        # not removed unseen by a parent's ON DELETE CASCADE.
        for t in reversed(list(self.schema.tables.values())):
            days = settings.days.get(t.name)
            if t.tier != "sql" or days is None:
                continue
            rows = self.sql_tier.expire(
                t,
                now,
                days,
                dry_run=dry_run,
                days_of=settings.days,
                on_batch=None if on_batch is None else functools.partial(on_batch, t.name),
            )
            step = Step(t.name, f"rows older than {days} days", "delete", 0, rows, 0)
            report.steps.append(step)
            if on_step is not None:
                on_step(step)
        tables = self._lake_tables()
        usage = {t.name: self._lake_bytes(t) for t in tables}
        report.disk_bytes_before = sum(usage.values())
        done: set[tuple[str, str]] = set()
        for t in tables:
            days = settings.days.get(t.name)
            if days is None:
                continue
            cutoff = before(now, dt.timedelta(days=days))
            for step in self._lake.expire(t, cutoff, dry_run=dry_run):
                report.steps.append(step)
                done.add((t.name, step.partition))
                if on_step is not None:
                    on_step(step)
        if settings.max_disk_gb is not None:
            self._enforce_budget(settings.max_disk_gb, report, done, now, dry_run, on_step)
        if not dry_run:
            for t in tables:
                self._lake.recover(t)  # retires files whose grace period is over
        removed = sum(s.bytes for s in report.steps)
        report.disk_bytes_after = (
            report.disk_bytes_before - removed
            if dry_run
            else sum(self._lake_bytes(t) for t in tables)
        )
        return report

    def _enforce_budget(
        self,
        max_disk_gb: float,
        report: RetentionReport,
        done: set[tuple[str, str]],
        now: dt.datetime,
        dry_run: bool,
        on_step: Callable[[Step], None] | None,
    ) -> None:
        """Drop the oldest finished partitions until the store fits in `max_disk_gb`."""
        tables = self._lake_tables()
        budget = int(max_disk_gb * 1e9)
        report.budget_bytes = budget
        used = report.disk_bytes_before - sum(s.bytes for s in report.steps)
        if not dry_run:
            used = sum(self._lake_bytes(t) for t in tables)
        candidates = []
        for i, t in enumerate(tables):
            base = self._lake.table_dir(t)
            for directory, files in self._lake.visible_partitions(t):
                rel = directory.relative_to(base)
                end = layout.partition_end(layout.parse_partition(rel))
                if end is None or end > now or (t.name, str(rel)) in done:
                    continue  # never the partition being written now
                size = sum(f.stat().st_size for f in files)
                candidates.append(retention.Candidate((end, i), t.name, directory, size))
        dropped = []
        for c in retention.over_budget(candidates, used, budget):
            t = self.table(c.table)
            drop = self._lake.remove_rows(
                t, c.directory, retention.OVER_BUDGET, None, dry_run=dry_run
            )
            if drop is not None:
                report.steps.append(drop)
                dropped.append(f"{drop.table}/{drop.partition}")
                used -= drop.bytes
                if on_step is not None:
                    on_step(drop)
        if dropped and not dry_run:
            warnings.warn(
                f"store {self.root} was over its disk budget of {max_disk_gb:g} GB: "
                f"dropped {len(dropped)} partition(s), oldest first: {', '.join(dropped[:10])}"
                + (f" and {len(dropped) - 10} more" if len(dropped) > 10 else ""),
                stacklevel=3,
            )
        if used > budget:
            warnings.warn(
                f"store {self.root} is still over its disk budget of "
                f"{max_disk_gb:g} GB ({used:,} bytes): only partitions being "
                "written now are left",
                stacklevel=3,
            )

    def _lake_bytes(self, table: Table) -> int:
        """Bytes of the data files queries read now (retired files excluded)."""
        return sum(
            f.stat().st_size for _, files in self._lake.visible_partitions(table) for f in files
        )

    def backup(
        self,
        directory: str | Path | None = None,
        *,
        keep: int | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        name_style: str = "dated",
    ) -> BackupReport:
        """Copy the store's SQL database with SQLite's online backup API.

        Safe while other processes write. `PRAGMA quick_check` runs before and
        `integrity_check` on the copy; a failed check raises StoreError and leaves no
        file that looks like a good backup. The copy is
        `<directory>/<database stem>.backup.YYYYMMDD.sqlite` (`..._HHMMSS` when that
        day has one already), or with `name_style="timestamped"` spec 003's other name,
        `<database stem>_backup_YYYYMMDD_HHMMSS.sqlite`; `directory` defaults to
        `<root>/backups`. With `keep` (default: `backups_keep` in config.json, else
        all), only the newest remain, whatever their style.
        """
        from telelake.sql.backup import backup_database

        if keep is None:
            keep = self.retention().backups_keep
        path = self.sql_tier.path
        folder = Path(directory) if directory is not None else self.root / "backups"
        return backup_database(
            path,
            folder,
            stem=path.stem,
            keep=keep,
            on_progress=on_progress,
            name_style=name_style,
            fix=self.sql_tier.fix,
        )

    def recover(self, on_file: Callable[[Path], None] | None = None) -> ReplayReport:
        """Rebuild the SQL database from the NDJSON log, keeping what the log lacks.

        The current database (and its -wal/-shm files) is first moved aside as
        `<stem>.corrupted.<UTC timestamp><suffix>` and the schema's current version is
        created. Every table is filled from the database moved aside as far as it can be
        read (`report.carried`, `report.not_saved`), then the log is replayed over it
        (`report.rows`). Unusable lines or rows are skipped and listed in
        `report.problems`; see `telelake.sql.recover`.
        """
        from telelake.sql import recover as sql_recover

        self._refuse_if_read_only()
        return sql_recover.rebuild(
            self.sql_tier, self.schema, self.root, self._replay_write, self._export_ddl, on_file
        )

    def replay(self, on_file: Callable[[Path], None] | None = None) -> ReplayReport:
        """Replay the NDJSON log into the current database, moving nothing aside.

        Fills the tables the log feeds (agent_runs' `run_events`) and restores the rows
        they miss; a logged update replaces a row only if it is at least as new.
        Idempotent; `report.added` says how many rows each table gained.
        """
        from telelake.sql import recover as sql_recover

        self._refuse_if_read_only()
        return sql_recover.replay_into(
            self.sql_tier, self.schema, self.root, self._replay_write, on_file
        )

    def _replay_write(self, table: str, rows: list[dict[str, Any]]) -> None:
        # Logged (or carried) rows are stored rows, redacted: nothing is derived again.
        self.sql_tier.write(self.table(table), self.validate(table, rows, derived=False))

    def check(self, repair: bool = False, *, deep: bool = False) -> CheckReport:
        """Read every data file, WAL segment and metadata file; report what is wrong.

        With `repair=True`, bad files move to `_quarantine/` with a reason file and the
        good records of damaged WAL segments are folded, so queries work again. With
        `deep=True`, every page of every data file is read and checked against its
        checksum (slow: it reads all the data).
        """
        from telelake.check import check_store

        return check_store(self, repair=repair and not self.read_only, deep=deep)

    def files(self, table: str) -> list[Path]:
        """The data files queries of a lake table read now (retired ones excluded)."""
        t = self.table(table)
        hidden = self._lake.hidden_files(t)
        return [f for f in self._lake.files(t) if f not in hidden]

    def stats(self) -> list[TableStats]:
        """Rows, files and bytes on disk per table."""
        out = []
        for t in self.schema.tables.values():
            if t.tier == "sql":
                size = self.sql_tier.path.stat().st_size if self.sql_tier.path.exists() else 0
                out.append(TableStats(t.name, t.tier, self.sql_tier.count(t), 1, size))
                continue
            if t.tier == "log":
                out.append(self._log_stats(t))
                continue
            files = list(self._lake.files(t))
            rows = self.sql(f'SELECT COUNT(*) FROM "{t.name}"', engine="duckdb").scalar()
            out.append(
                TableStats(
                    t.name, t.tier, int(rows), len(files), sum(f.stat().st_size for f in files)
                )
            )
        return out

    def _log_stats(self, table: Table) -> TableStats:
        """Records of a log table's type in the NDJSON files (the files are shared)."""
        settings = self.schema.log
        record = settings.record_of(table.name) if settings else None
        assert settings is not None and record is not None
        paths = ndjson.files(self.root / settings.directory, settings.prefix)
        rows = sum(
            1
            for p in paths
            for line in ndjson.scan(p)
            if line.record is not None and line.record.get("record_type") == record.record_type
        )
        return TableStats(
            table.name, table.tier, rows, len(paths), sum(p.stat().st_size for p in paths)
        )

    def run_client(
        self,
        api_url: str | None = None,
        *,
        api_token: str | None = None,
        attempts: int = 3,
        backoff: float = 0.5,
    ) -> RunClient:
        """A client recording agent runs (schema agent_runs): see docs/agent_runs.md.

        With `api_url`, each finished run is posted there as JSON, `attempts` times at
        most with exponential `backoff`; the outcome lands in the api_* columns.
        """
        from telelake.runs import Poster, RunClient

        poster = Poster(api_url, api_token, attempts, backoff) if api_url else None
        return RunClient(self, poster)

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Stop background maintenance (after its step in progress), fold this store's
        WAL rows into Parquet and release the query engine."""
        if self._upkeep is not None:
            self._upkeep.stop()
            self._upkeep = None
        try:
            if not self.read_only:
                self._lake.close()
        except OSError as exc:
            # The rows stay in the WAL (acknowledged, read by every query); the next
            # open folds them. Everything else is still released.
            mapped = _storage_full(
                exc,
                f"store {self.root}",
                "WAL rows could not be folded into Parquet on close; they are safe in "
                "the WAL and the next open folds them once there is space",
            )
            if mapped is None:
                raise
            raise mapped from exc
        finally:
            self._release()

    def _release(self) -> None:
        """Release the query engine, the SQL database and the log file."""
        for engine in (self._engine, self._open_engine):
            if engine is not None:
                engine.close()
        self._engine = self._open_engine = None
        if self._sql is not None:
            self._sql.close()
        if self._log_writer is not None:
            self._log_writer.close()
            self._log_writer = None

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _storage_full(exc: OSError, where: str, consequence: str) -> StorageFullError | None:
    """`exc` as StorageFullError if it says the disk (or a size limit) is full, else None."""
    if exc.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return None
    return StorageFullError(f"{where}: no space left ({exc.strerror}); {consequence}")


class QueryNamespace:
    """The schema's named queries as methods taking their declared parameters in order."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Callable[..., Result]:
        query = find_query(self._store.schema, name)
        order = [p.name for p in query.params]

        def call(*args: Any, **kwargs: Any) -> Result:
            if len(args) > len(order):
                raise TypeError(f"{name}() takes {len(order)} parameters: {', '.join(order)}")
            return self._store.query(name, **dict(zip(order, args, strict=False)), **kwargs)

        call.__name__ = name
        call.__doc__ = query.description
        return call

    def __dir__(self) -> list[str]:
        return sorted(self._store.schema.queries)


def open(
    root: str | Path | None = None,
    schema: str | Path | Schema | None = None,
    *,
    host_id: str | None = None,
    fsync: str = "always",
    fold_bytes: int = Durability.fold_bytes,
    fold_rows: int = Durability.fold_rows,
    fold_age: float = Durability.fold_age,
    retire_after: float = Durability.retire_after,
    lock_timeout: float = Durability.lock_timeout,
    migrate: bool = False,
    maintenance: bool | None = None,
) -> Store:
    """Open (creating if needed) the store at `root` holding `schema`.

    `schema` is a built-in schema name or a path to a schema TOML file. Without it, an
    existing store opens with its own schema (the one `_metadata/` records; a store
    made from a schema file keeps a copy of it) and a new one is made with
    process_triage. A store holding another schema than the one given is an error
    naming both. `root` defaults to `$TELELAKE_ROOT`, else the schema's default (see
    `default_root`: process_triage's is `~/.local/share/process_triage/telemetry` on
    Linux).

    Small writes go to a write-ahead log first. `fsync` says when an append reaches
    the disk: "always" (before write() returns; the default), "batch" (the same, with
    concurrent threads sharing one sync), "interval" (every second, in the
    background) or "off". A WAL segment is folded into Parquet (where readers of the
    files themselves see its rows) once it is `fold_age` seconds old (spec 000 §7.1's
    30 s) or holds `fold_rows` rows (100,000; on a background thread), at once
    when it holds `fold_bytes`, and when the store closes. Files that
    a compaction replaced are deleted `retire_after` seconds after it (queries that
    started before it may still be reading them).

    Folds, direct writes and compactions of a table take its fold lock; one held by
    another process (a compaction, perhaps stopped with Ctrl-Z) is waited for at most
    `lock_timeout` seconds, then LockTimeoutError names that process. Opening a store
    and reading it never wait for the lock.

    A store of an older major version opens only with `migrate=True`, which rewrites
    its files with the schema's `[migrations.from_N]` first (see docs/lifecycle.md);
    `store.migration` then says what was done.

    Maintenance (retention, disk budget, auto_compact) runs by itself in a background
    thread when it is due (`maintenance_interval`, default 1h; one process at a time;
    see `telelake.upkeep`). `maintenance=False` turns that off for this store, `True`
    turns it on whatever `$TELELAKE_MAINTENANCE` or `maintenance_interval` say.
    """
    path, model = locate(root, schema)
    if fsync not in FSYNC_POLICIES:
        raise StoreError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}, not {fsync!r}")
    durability = Durability(
        fsync=fsync,
        fold_bytes=fold_bytes,
        fold_rows=fold_rows,
        fold_age=fold_age,
        retire_after=retire_after,
        lock_timeout=lock_timeout,
    )
    store = Store(path, model, host_id=host_id, durability=durability, migrate=migrate)
    try:
        if maintenance is not False:  # (upkeep.start(store, False) starts nothing)
            from telelake import upkeep

            store._upkeep = upkeep.start(store, maintenance)
    except BaseException:
        store.close()
        raise
    return store
