"""The lake tier: how a table's rows become Parquet files and how DuckDB reads them back."""

from __future__ import annotations

import os
import secrets
import string
from collections.abc import Iterator, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from telelake import durable
from telelake.lake import layout, parquet
from telelake.schema.model import Schema, Table

_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits


def session_suffix() -> str:
    """Four random characters that tell this writer's files apart (spec §2.3, §7.3)."""
    return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(4))


def sql_literal(text: str) -> str:
    """A single-quoted SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


class LakeTier:
    """Append-only, hive-partitioned Parquet files under `<root>/<table>/`."""

    def __init__(self, root: Path, schema: Schema, defaults: Mapping[str, str]) -> None:
        self.root = root
        self.schema = schema
        self.defaults = dict(defaults)
        self.suffix = session_suffix()

    def table_dir(self, table: Table) -> Path:
        """The directory holding every file of `table`."""
        return self.root / table.name

    def write(self, table: Table, data: pa.Table) -> list[Path]:
        """Write validated rows: one new file per partition touched. Returns the files."""
        assert table.parquet is not None
        metadata = {
            parquet.META_SCHEMA: self.schema.name.encode(),
            parquet.META_VERSION: self.schema.version.encode(),
            parquet.META_TABLE: table.name.encode(),
        }
        written = []
        for values, rows in layout.split_by_partition(table, data, self.defaults):
            stored = rows.select(list(table.column_names))  # virtual keys live in the path
            directory = self.table_dir(table) / layout.partition_path(values)
            written.append(
                parquet.publish_file(
                    directory,
                    table.parquet.file_prefix,
                    self.suffix,
                    stored,
                    table.parquet,
                    metadata,
                )
            )
        return written

    def files(self, table: Table) -> Iterator[Path]:
        """Every published data file of `table` (hidden and temp files excluded)."""
        base = self.table_dir(table)
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
            for name in sorted(filenames):
                if name.endswith(".parquet") and not name.startswith((".", "_")):
                    yield Path(dirpath) / name

    def anchor_path(self, table: Table) -> Path:
        """A zero-row file with the table's current schema, listed first in every view.

        DuckDB takes a view's columns from the first file it reads. Listing this tiny,
        always-valid file first means one damaged data file cannot break the binding
        of every query, and a filtered query opens only the partitions it needs.
        """
        levels = [(lvl, "0") for lvl in table.partition.time]
        levels += [(k, "_") for k in table.partition.keys]
        return (
            self.root
            / "_metadata"
            / "anchors"
            / table.name
            / layout.partition_path(tuple(levels))
            / f"{table.name}.parquet"
        )

    def ensure_anchor(self, table: Table) -> None:
        """Write the anchor file when it is missing or its schema is not the table's."""
        path = self.anchor_path(table)
        schema = table.arrow_schema.with_metadata(
            {
                parquet.META_SCHEMA: self.schema.name.encode(),
                parquet.META_VERSION: self.schema.version.encode(),
                parquet.META_TABLE: table.name.encode(),
            }
        )
        if path.exists():
            try:
                if pq.read_schema(path).equals(schema, check_metadata=True):
                    return
            except (OSError, ValueError):
                pass  # damaged anchor: rewrite it
        durable.write_durably(path, lambda tmp: pq.write_table(schema.empty_table(), tmp))

    def has_files(self, table: Table) -> bool:
        """True as soon as one data file exists."""
        return next(self.files(table), None) is not None

    def partition_columns(self, table: Table) -> list[tuple[str, str]]:
        """(name, DuckDB type) of the partition levels a view adds to the file columns."""
        cols = [(level, "INTEGER") for level in table.partition.time]
        cols += [(k, "VARCHAR") for k in table.virtual_keys]
        return cols

    def view_sql(self, table: Table) -> str:
        """The SELECT behind the DuckDB view of `table` (spec 000 §6.1).

        Columns come out in declared order, then the partition levels (year, month,
        day, then keys that are not columns), whatever order the files store them in.
        """
        parts = self.partition_columns(table)
        sources = [sql_literal(str(self.anchor_path(table)))]
        if self.has_files(table):
            sources.append(sql_literal(str(self.table_dir(table)) + "/**/*.parquet"))
        names = [*table.column_names, *(n for n, _ in parts)]
        select = ", ".join(f'"{n}"' for n in names)
        options = ""
        if table.partition.names:
            types = ", ".join(f"{sql_literal(n)}: {t}" for n, t in parts)
            options = ", hive_partitioning = true" + (
                f", hive_types = {{{types}}}" if types else ""
            )
        return f"SELECT {select} FROM read_parquet([{', '.join(sources)}]{options})"
