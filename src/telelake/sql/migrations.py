"""Versioned, checksummed migrations of a store's SQL database (spec 001 "Migration Strategy").

A migration is a pair of files shipped with the schema, `NNNN_name.up.sql` and
`NNNN_name.down.sql`. Every migration ships its down SQL (spec 001: "every migration must
include explicit `down` SQL"): a migration without it is refused when the migrations are
loaded, that is on every open, not only when one is reverted. Applied migrations are
recorded in the schema's tracking table (`ops_schema_migrations` for search_ops) with the
SHA-256 of their up SQL. Before anything new is applied, every recorded checksum is
compared with the files: an edited migration stops everything with a clear error, as in
Flyway or sqlx.
A schema without a migrations folder has one implicit migration: its tables, generated.
Built-in schemas ship theirs as files, frozen: a schema change is a new migration.

A schema may also say which version its spec gives the schema after each migration
(`[sql] schema_versions`, agent_runs: migration 1 makes spec 003's "v3"): the tracking
table then has a `schema_version` column next to the migration's version, added (and
filled in) on the next open of a database made before it existed.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass

from telelake.errors import StoreError
from telelake.schema.model import Schema
from telelake.sql import ddl
from telelake.sql.connection import immediate

_FILE = re.compile(r"^(\d+)_([a-z0-9_]+)\.(up|down)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One migration: its version, name, SQL both ways, and the checksum of `up`."""

    version: int
    name: str
    up: str
    down: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the up SQL: what was applied must never change."""
        return hashlib.sha256(self.up.encode("utf-8")).hexdigest()

    @property
    def reversible(self) -> bool:
        """Always True: discover() refuses a migration without down SQL. (The tracking
        table's `reversible` column keeps the spec's shape; rows written by older telelake
        versions may say 0.)"""
        return True


@dataclass(frozen=True)
class Applied:
    """One row of the tracking table."""

    version: int
    name: str
    applied_at_ms: int
    checksum: str
    reversible: bool
    schema_version: int | None = None  # only in tables of schemas with schema_versions


@dataclass(frozen=True)
class Status:
    """A migration and whether it is applied (and unchanged since)."""

    version: int
    name: str
    state: str  # applied | pending | changed | missing
    applied_at_ms: int | None
    reversible: bool
    schema_version: int | None = None  # the spec's schema version after this migration


SCHEMA_VERSION = "schema_version"  # the tracking table's column for the spec's version


def tracking_ddl(table: str, schema_versions: bool = False) -> str:
    """The tracking table, exactly as spec 001 writes it (plus `schema_version` for a
    schema that declares the versions of its spec)."""
    extra = f",\n    {SCHEMA_VERSION} INTEGER" if schema_versions else ""
    return (
        f"CREATE TABLE IF NOT EXISTS {table} (\n"
        "    version INTEGER PRIMARY KEY,\n"
        "    name TEXT NOT NULL,\n"
        "    applied_at_ms INTEGER NOT NULL,\n"
        "    checksum TEXT NOT NULL,\n"
        f"    reversible INTEGER NOT NULL CHECK (reversible IN (0,1)){extra}\n"
        ");"
    )


def schema_version(schema: Schema, version: int) -> int | None:
    """The spec's schema version once migration `version` is applied: the one declared
    for it, else that of the nearest earlier migration declaring one (None: none does)."""
    found = None
    for migration, spec_version in schema.sql_settings.schema_versions.items():
        if migration <= version:
            found = spec_version
    return found


def _has_column(con: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in con.execute(f"PRAGMA table_info({table})"))


def ensure_tracking(con: sqlite3.Connection, schema: Schema) -> None:
    """Create the tracking table; for a schema with schema_versions, add the column to a
    table made without it and fill it in for the migrations applied (inside the caller's
    transaction)."""
    table = schema.sql_settings.migrations_table
    versions = bool(schema.sql_settings.schema_versions)
    con.execute(tracking_ddl(table, versions))
    if not versions:
        return
    if not _has_column(con, table, SCHEMA_VERSION):
        con.execute(f"ALTER TABLE {table} ADD COLUMN {SCHEMA_VERSION} INTEGER")
    missing = con.execute(f"SELECT version FROM {table} WHERE {SCHEMA_VERSION} IS NULL")
    for (version,) in missing.fetchall():
        value = schema_version(schema, int(version))
        if value is not None:
            con.execute(
                f"UPDATE {table} SET {SCHEMA_VERSION} = ? WHERE version = ?", (value, version)
            )


def _tracking_current(con: sqlite3.Connection, schema: Schema) -> bool:
    """True when ensure_tracking() has nothing to do (checked without writing)."""
    table = schema.sql_settings.migrations_table
    if not applied_exists(con, table):
        return False
    if not schema.sql_settings.schema_versions:
        return True
    if not _has_column(con, table, SCHEMA_VERSION):
        return False
    nulls = con.execute(f"SELECT version FROM {table} WHERE {SCHEMA_VERSION} IS NULL")
    return all(schema_version(schema, int(v)) is None for (v,) in nulls)


def discover(schema: Schema) -> list[Migration]:
    """The schema's migrations in version order; errors name the offending file."""
    folder = schema.sql_settings.migrations_dir
    if folder is None:
        return [Migration(1, "create_tables", ddl.schema_up(schema), ddl.schema_down(schema))]
    found: dict[int, dict[str, str]] = {}
    names: dict[int, str] = {}
    stems: dict[int, str] = {}  # "0002_run_cost", as the files spell it
    for path in sorted(folder.iterdir()):
        if path.suffix != ".sql":
            continue
        m = _FILE.match(path.name)
        if m is None:
            raise StoreError(f"migration file {path}: name it NNNN_name.up.sql or .down.sql")
        version, name, direction = int(m.group(1)), m.group(2), m.group(3)
        if names.setdefault(version, name) != name:
            raise StoreError(
                f"migration {version} in {folder} has two names: {names[version]}, {name}"
            )
        found.setdefault(version, {})[direction] = path.read_text(encoding="utf-8")
        stems.setdefault(version, path.name[: -len(f".{direction}.sql")])
    out = []
    for version in sorted(found):
        stem = folder / stems[version]
        sql = found[version]
        if "up" not in sql:
            raise StoreError(f"migration {version} ({names[version]}) in {folder} has no up SQL")
        if not _strip_comments(sql.get("down", "")).strip():
            missing = "is empty" if "down" in sql else "is missing"
            raise StoreError(
                f"migration {stem}.up.sql ships no down SQL ({stem.name}.down.sql {missing}): "
                "every migration must include explicit down SQL (spec 001); write the SQL "
                "that reverts it"
            )
        out.append(Migration(version, names[version], sql["up"], sql["down"]))
    if out and out[0].version < 1:
        raise StoreError(f"migration versions in {folder} start at 1")
    return out


def statements(script: str) -> Iterator[str]:
    """Split a SQL script into statements (sqlite3's executescript would commit)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer.strip()
            buffer = ""
    if _strip_comments(buffer).strip():
        raise StoreError(f"migration SQL ends in an unfinished statement: {buffer.strip()[:80]!r}")


def _strip_comments(text: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in text.splitlines())


def applied_exists(con: sqlite3.Connection, table: str) -> bool:
    """True if the tracking table exists."""
    found = con.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return found is not None


def applied(con: sqlite3.Connection, table: str) -> list[Applied]:
    """The tracking table's rows, oldest version first (none if it does not exist)."""
    if not applied_exists(con, table):
        return []
    spec = SCHEMA_VERSION if _has_column(con, table, SCHEMA_VERSION) else "NULL"
    rows = con.execute(
        f"SELECT version, name, applied_at_ms, checksum, reversible, {spec} FROM {table} "
        "ORDER BY version"
    ).fetchall()
    return [
        Applied(int(v), str(n), int(a), str(c), bool(r), None if sv is None else int(sv))
        for v, n, a, c, r, sv in rows
    ]


def verify(done: list[Applied], files: list[Migration], where: str) -> None:
    """Every applied migration still exists unchanged; otherwise stop, naming it."""
    by_version = {m.version: m for m in files}
    for row in done:
        m = by_version.get(row.version)
        if m is None:
            raise StoreError(
                f"{where}: migration {row.version} ({row.name}) was applied but its files are "
                "gone; this telelake is older than the database, or a migration was deleted"
            )
        if m.checksum != row.checksum:
            raise StoreError(
                f"{where}: migration {row.version} ({row.name}) changed after it was applied "
                f"(checksum {row.checksum[:12]}… in the database, {m.checksum[:12]}… in the "
                "files); restore the original file and put the change in a new migration"
            )


def status(con: sqlite3.Connection, schema: Schema) -> list[Status]:
    """Every migration known to the files or the database, with its state."""
    table = schema.sql_settings.migrations_table
    files = {m.version: m for m in discover(schema)}
    done = {a.version: a for a in applied(con, table)}
    out = []
    for version in sorted(set(files) | set(done)):
        m, a = files.get(version), done.get(version)
        declared = schema_version(schema, version)
        if a is None and m is not None:
            out.append(Status(version, m.name, "pending", None, m.reversible, declared))
        elif a is not None and m is None:
            recorded = a.schema_version
            out.append(Status(version, a.name, "missing", a.applied_at_ms, a.reversible, recorded))
        elif a is not None and m is not None:
            state = "applied" if a.checksum == m.checksum else "changed"
            recorded = a.schema_version if a.schema_version is not None else declared
            out.append(Status(version, a.name, state, a.applied_at_ms, a.reversible, recorded))
    return out


def up(
    con: sqlite3.Connection, schema: Schema, where: str, target: int | None = None
) -> list[Migration]:
    """Apply pending migrations (up to `target`), each in its own transaction."""
    table = schema.sql_settings.migrations_table
    files = discover(schema)
    done_now: list[Migration] = []
    if not _tracking_current(con, schema):
        with immediate(con):
            ensure_tracking(con, schema)
    spec_versions = bool(schema.sql_settings.schema_versions)
    for m in files:
        if target is not None and m.version > target:
            break
        with immediate(con):  # one migrator at a time; others wait, then skip
            ensure_tracking(con, schema)
            done = applied(con, table)
            verify(done, files, where)
            versions = {a.version for a in done}
            if m.version in versions:
                continue
            if versions and m.version < max(versions):
                raise StoreError(
                    f"{where}: migration {m.version} ({m.name}) is older than applied "
                    f"migration {max(versions)}; versions must be applied in order"
                )
            for statement in statements(m.up):
                con.execute(statement)
            row = (m.version, m.name, int(time.time() * 1000), m.checksum, int(m.reversible))
            if spec_versions:
                con.execute(
                    f"INSERT INTO {table} (version, name, applied_at_ms, checksum, reversible, "
                    f"{SCHEMA_VERSION}) VALUES (?, ?, ?, ?, ?, ?)",
                    (*row, schema_version(schema, m.version)),
                )
            else:
                con.execute(
                    f"INSERT INTO {table} (version, name, applied_at_ms, checksum, reversible) "
                    "VALUES (?, ?, ?, ?, ?)",
                    row,
                )
        done_now.append(m)
    return done_now


def down(con: sqlite3.Connection, schema: Schema, where: str, target: int) -> list[Migration]:
    """Revert applied migrations newer than `target`, newest first."""
    table = schema.sql_settings.migrations_table
    files = {m.version: m for m in discover(schema)}
    undone: list[Migration] = []
    done = applied(con, table)
    verify(done, list(files.values()), where)
    for row in reversed(done):
        if row.version <= target:
            break
        m = files[row.version]
        with immediate(con):
            for statement in statements(m.down):
                con.execute(statement)
            con.execute(f"DELETE FROM {table} WHERE version = ?", (m.version,))
        undone.append(m)
    return undone
