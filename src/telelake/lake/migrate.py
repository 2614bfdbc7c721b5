"""Migrations: rewrite the files of an older major version into the new tables.

A file at a time: its rows (with the partition values of its directory), run through the
table's SELECT from the schema's `[migrations.from_N]` (or copied when the table's change
is additive), validated against the new table like any write, and swapped in atomically
(lake/compact.py `swap`). Files already written by the new major version are skipped, so
a migration interrupted at any point is finished by running it again. Everything is
first computed and validated without writing (a bad row stops the migration before any
file changes), then written.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from telelake import validate
from telelake._lazy import lazy
from telelake.errors import ValidationError
from telelake.lake import compact, fold, layout, parquet
from telelake.schema.model import Column, Table
from telelake.schema.types import TYPES

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq
else:
    pa = lazy("pyarrow")
    pq = lazy("pyarrow.parquet")


@dataclass
class TableMigration:
    """What a migration does to one table."""

    table: str
    files: int = 0
    rows: int = 0
    how: str = "copied"  # "copied" (additive change) or "rewritten by SQL"


@dataclass
class MigrationReport:
    """What a migration did (or, with dry_run, would do)."""

    from_version: str
    to_version: str
    tables: dict[str, TableMigration] = field(default_factory=dict)


def major_of(version: bytes | str | None) -> int | None:
    """The major version in file metadata (`b"1.2.0"` -> 1), None if absent."""
    if not version:
        return None
    text = version.decode() if isinstance(version, bytes) else version
    return int(text.split(".")[0])


def stale_files(files: list[Path], major: int) -> list[Path]:
    """The files written by an older major version than `major`."""
    out = []
    for f in files:
        meta = pq.read_metadata(f).metadata or {}
        file_major = major_of(meta.get(parquet.META_VERSION))
        if file_major is None or file_major < major:
            out.append(f)
    return out


def migrate_rows(
    path: Path, table_dir: Path, table: Table, sql: str | None, store: str
) -> pa.Table:
    """One old file's rows as validated rows of the new `table` (partition keys included)."""
    old = parquet.read_verified(path)
    old = old.replace_schema_metadata(None)
    # Partition keys that are not columns (host_id) live in the directory names.
    values = dict(layout.parse_partition(path.parent.relative_to(table_dir)))
    for key in table.virtual_keys:
        if key not in old.column_names and key in values:
            old = old.append_column(key, pa.repeat(pa.scalar(values[key]), old.num_rows))
    if sql is None:
        new = old.select([n for n in old.column_names if table.has_column(n) or n in values])
    else:
        con = duckdb.connect(":memory:")
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.register("old", old)
            new = con.sql(sql).to_arrow_table()
        except duckdb.Error as exc:
            raise ValidationError(
                f"store {store!r}, table {table.name!r}: the migration's SQL failed on {path}: "
                f"{str(exc).splitlines()[0]}; nothing was written",
                store=store,
                table=table.name,
            ) from exc
        finally:
            con.close()
        for key in table.virtual_keys:
            if key not in new.column_names and key in old.column_names:
                new = new.append_column(key, old.column(key))
    extra = tuple(Column(k, TYPES["string"], nullable=False) for k in table.virtual_keys)
    try:
        return validate.to_arrow(table, new, store=store, extra=extra)
    except ValidationError as exc:
        raise ValidationError(
            f"{exc} (migrating {path})",
            store=exc.store,
            table=exc.table,
            column=exc.column,
            row=exc.row,
        ) from None


def migrate_file(
    root: Path,
    table: Table,
    path: Path,
    rows: pa.Table,
    wal_dir: Path,
    defaults: dict[str, str],
    metadata: dict[bytes, bytes],
    token: str,
) -> None:
    """Swap one old file for the new files of its migrated rows (caller holds the lock)."""
    targets = fold.plan_targets(root, table, rows, defaults, dt.datetime.now(dt.UTC))
    compact.swap(root, table, [path], targets, wal_dir, metadata, token)


def report_json(report: MigrationReport) -> dict[str, object]:
    """A migration's entry in `_metadata/migrations.json`."""
    return {
        "from_version": report.from_version,
        "to_version": report.to_version,
        "at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tables": {
            t.table: {"files": t.files, "rows": t.rows, "how": t.how}
            for t in report.tables.values()
        },
    }
