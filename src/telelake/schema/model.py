"""The schema model: plain frozen dataclasses, built by `schema.load` and read everywhere.

A schema names tables; a table names columns, a tier, a partitioning and a Parquet
layout. The model knows nothing about files: that keeps it easy to test and to reuse
for the sql and log tiers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from telelake._lazy import lazy
from telelake.redact.policy import Policy
from telelake.schema.types import LogicalType

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy("pyarrow")

TIERS = ("lake", "sql", "log")
WRITE_MODES = ("insert", "ignore", "upsert")
FK_ACTIONS = ("cascade", "restrict", "set null", "set default", "no action")
TIME_LEVELS = ("year", "month", "day", "hour")
EPOCH_UNITS = ("s", "ms", "us", "ns")


@dataclass(frozen=True)
class Derivation:
    """How a column's value is computed from another column of the same row when a
    writer leaves it out (`derive = "sha256:cmdline"`); see `telelake/derive.py`."""

    function: str
    source: str

    def __str__(self) -> str:
        return f"{self.function}:{self.source}"


@dataclass(frozen=True)
class Column:
    """One column: a name, a logical type, nullability and an optional enum."""

    name: str
    type: LogicalType
    nullable: bool = True
    description: str = ""
    enum: tuple[str, ...] | tuple[int, ...] | None = None
    # Unit of plain numbers written to a timestamp column; None refuses numbers. On an
    # integer column it says the column holds epoch time (so it can be a `time` column).
    epoch_unit: str | None = None
    # sql tier only: `"table.column"` this column references, and the ON DELETE action.
    references: str | None = None
    on_delete: str | None = None
    # sql tier only: an INTEGER PRIMARY KEY AUTOINCREMENT that the database assigns.
    autoincrement: bool = False
    # How the value is redacted before it is stored (string and json columns only).
    redact: Policy | None = None
    # Computed from another column of the row, before redaction, when the writer gives
    # no value (None or left out); a given value is kept.
    derive: Derivation | None = None

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
    # The string column whose value names a file (spec 000 §2.3's session suffix):
    # each session's rows get files of their own (see lake/layout.py).
    session_column: str | None = None


@dataclass(frozen=True)
class Index:
    """A secondary index of a sql table: columns (with their order) and a WHERE."""

    name: str
    columns: tuple[tuple[str, bool], ...]  # (column, descending)
    where: str | None = None
    unique: bool = False


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
    # How a write meets an existing key: "insert" (no key; sql: a clash is an error),
    # "ignore" (the first write of a key wins) or "upsert" (the last write wins); see
    # docs/sql-tier.md and docs/concepts.md. sql tier only: the column whose larger
    # value wins an upsert, and columns an upsert never changes.
    write: str = "insert"
    version_column: str | None = None
    keep_on_update: tuple[str, ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()
    indexes: tuple[Index, ...] = ()
    # sql tier: retention only removes rows that also match this SQL condition.
    retention_where: str | None = None
    # lake tier: string columns looked up by value (`session_id = ?`); a query naming
    # values of one reads only the files whose footer statistics can hold them.
    lookup: tuple[str, ...] = ()

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
    def derived(self) -> tuple[Column, ...]:
        """The columns whose value the store derives from another column (`derive`)."""
        return tuple(c for c in self.columns if c.derive is not None)

    @cached_property
    def virtual_keys(self) -> tuple[str, ...]:
        """Partition keys that are not columns (their value comes from the store)."""
        return tuple(k for k in self.partition.keys if not self.has_column(k))

    @cached_property
    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema of the table's rows, in declared order."""
        return pa.schema([c.arrow_field for c in self.columns])


@dataclass(frozen=True)
class Param:
    """A parameter of a named query: its name, optional logical type and enum."""

    name: str
    type: LogicalType | None = None
    enum: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SqlObject:
    """A named piece of SQL shipped with a schema: a view, a macro or a named query."""

    name: str
    sql: str
    description: str = ""
    engine: str = "duckdb"
    params: tuple[Param, ...] = ()
    # Pairs of parameters (low, high) that must come in order: a reversed range is an error.
    ranges: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Aggregate:
    """One output column of a rollup: `func(column)`; `q` is the quantile of pNN."""

    output: str
    func: str  # count, sum, min, max, avg, quantile
    column: str | None = None  # None for count(*)
    q: float | None = None


@dataclass(frozen=True)
class Rollup:
    """A declared aggregate of a table over time windows, kept up to date on write.

    The rollup's rows live in the sql table of the same name, keyed by the group
    columns, the window label and the window start.
    """

    name: str
    source: str
    time: str
    group: tuple[str, ...]
    windows: tuple[tuple[str, int], ...]  # (label, length in ms), shortest first
    window_column: str
    start_column: str
    aggregates: tuple[Aggregate, ...]


@dataclass(frozen=True)
class LogRecord:
    """One record type of the NDJSON log: the table its payload belongs to, and the sql
    table `telelake recover` replays it into (the table itself when it is a sql table)."""

    record_type: str
    table: str
    replay_into: str | None = None
    # For lines other clients of the spec wrote: values of columns a line leaves out (or
    # null), and columns taken from other columns of the same line (first non-null).
    defaults: dict[str, Any] = field(default_factory=dict, hash=False)
    defaults_from: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class LogSettings:
    """Where the NDJSON raw log lives and which record types it holds."""

    directory: str = "raw"
    prefix: str = "events"
    fsync: bool = True
    records: dict[str, LogRecord] = field(default_factory=dict)  # by record_type

    def record_of(self, table: str) -> LogRecord | None:
        """The record type that logs `table`, if any."""
        return self._by_table.get(table)

    @cached_property
    def _by_table(self) -> dict[str, LogRecord]:
        # The first record type of a table wins, as a scan in declared order would find.
        out: dict[str, LogRecord] = {}
        for record in self.records.values():
            out.setdefault(record.table, record)
        return out


@dataclass(frozen=True)
class SqlSettings:
    """Where a schema's sql tables live and how their migrations are kept."""

    database: str = "telelake.db"
    migrations_table: str = "telelake_schema_migrations"
    migrations_dir: Path | None = None
    busy_timeout_ms: int = 30_000
    # Where to keep a copy of the schema's DDL inside the store (e.g. config/schema.sql).
    export_ddl: str | None = None
    # The version a spec gives its schema after each migration (agent_runs: {1: 3}, "v3");
    # a migration not listed keeps the version of the one before. Recorded in the
    # migrations table next to the migration's own version.
    schema_versions: dict[int, int] = field(default_factory=dict, hash=False)


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
class RetentionDefaults:
    """`[retention]`: a schema's own defaults for the store-wide settings of
    `config.json` (spec 000 §5.2); None means the schema says nothing (telelake's
    default applies). `config.json` overrides each of them."""

    max_disk_gb: float | None = None
    auto_compact: bool | None = None
    maintenance_interval: dt.timedelta | None = None  # timedelta(0): "off"
    backups_keep: int | None = None


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
    rollups: dict[str, Rollup] = field(default_factory=dict)
    log: LogSettings | None = None
    # Folders the store creates under its root (a layout some tools expect).
    directories: tuple[str, ...] = ()
    sql_settings: SqlSettings = field(default_factory=SqlSettings)
    retention: RetentionDefaults = field(default_factory=RetentionDefaults)
    # The store's default root under the user data directory (None: `telelake/<name>`).
    default_root: str | None = None
    source: Path | None = None
    text: str = ""

    @property
    def major(self) -> int:
        """The major part of the semantic version."""
        return int(self.version.split(".")[0])

    def table(self, name: str) -> Table:
        """The table called `name` (KeyError if there is none)."""
        return self.tables[name]
