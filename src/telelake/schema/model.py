"""The schema model: plain frozen dataclasses, built by `schema.load` and read everywhere.

A schema names tables; a table names columns, a tier, a partitioning and a Parquet
layout. The model knows nothing about files: that keeps it easy to test and to reuse
for the sql and log tiers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pyarrow as pa

from telelake.schema.types import LogicalType

TIERS = ("lake", "sql", "log")
TIME_LEVELS = ("year", "month", "day", "hour")
EPOCH_UNITS = ("s", "ms", "us", "ns")


@dataclass(frozen=True)
class Column:
    """One column: a name, a logical type, nullability and an optional enum."""

    name: str
    type: LogicalType
    nullable: bool = True
    description: str = ""
    enum: tuple[str, ...] | None = None
    # Unit of plain numbers written to a timestamp column; None refuses numbers.
    epoch_unit: str | None = None

    @cached_property
    def arrow_field(self) -> pa.Field:
        """The Arrow field this column is stored as."""
        return pa.field(self.name, self.type.arrow, nullable=self.nullable)


@dataclass(frozen=True)
class Partitioning:
    """How a lake table splits into directories: time levels, then extra keys."""

    time: tuple[str, ...] = ("year", "month", "day")
    keys: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Every partition level, outermost first."""
        return self.time + self.keys


@dataclass(frozen=True)
class ParquetLayout:
    """How a lake table's Parquet files are written."""

    file_prefix: str
    row_group_bytes: int = 1024 * 1024
    compression: str = "zstd"
    compression_level: int | None = 3
    dictionary: tuple[str, ...] = ()
    sort: tuple[str, ...] = ()


@dataclass(frozen=True)
class Table:
    """A table of a schema: its columns and where and how its rows live."""

    name: str
    columns: tuple[Column, ...]
    tier: str = "lake"
    description: str = ""
    key: tuple[str, ...] = ()
    time: str | None = None
    partition: Partitioning = field(default_factory=Partitioning)
    parquet: ParquetLayout | None = None
    retention_days: int | None = None
    # WAL fsync policy of this table; None uses the store's (see docs/durability.md).
    fsync: str | None = None

    def column(self, name: str) -> Column:
        """The column called `name` (KeyError if there is none)."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def column_names(self) -> tuple[str, ...]:
        """Column names in declared order."""
        return tuple(c.name for c in self.columns)

    def has_column(self, name: str) -> bool:
        """True if the table declares a column called `name`."""
        return name in self._names

    @cached_property
    def _names(self) -> frozenset[str]:
        return frozenset(c.name for c in self.columns)

    @cached_property
    def virtual_keys(self) -> tuple[str, ...]:
        """Partition keys that are not columns (their value comes from the store)."""
        return tuple(k for k in self.partition.keys if not self.has_column(k))

    @cached_property
    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema of the table's rows, in declared order."""
        return pa.schema([c.arrow_field for c in self.columns])


@dataclass(frozen=True)
class SqlObject:
    """A named piece of SQL shipped with a schema: a view, a macro or a named query."""

    name: str
    sql: str
    description: str = ""
    engine: str = "duckdb"
    params: tuple[str, ...] = ()


@dataclass(frozen=True)
class Migration:
    """How to rewrite a store of an older major version into this schema's tables.

    `tables` maps a table to a DuckDB SELECT over `old` (the rows of one old file, with
    the old columns) that returns the new columns. Tables without an entry are copied
    as they are (their change, if any, must be additive).
    """

    from_major: int
    description: str = ""
    tables: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Schema:
    """A whole schema: versioned tables plus views, macros and named queries."""

    name: str
    version: str
    tables: dict[str, Table]
    description: str = ""
    views: dict[str, SqlObject] = field(default_factory=dict)
    macros: dict[str, SqlObject] = field(default_factory=dict)
    queries: dict[str, SqlObject] = field(default_factory=dict)
    migrations: dict[int, Migration] = field(default_factory=dict)  # by old major version
    source: Path | None = None
    text: str = ""

    @property
    def major(self) -> int:
        """The major part of the semantic version."""
        return int(self.version.split(".")[0])

    def table(self, name: str) -> Table:
        """The table called `name` (KeyError if there is none)."""
        return self.tables[name]
