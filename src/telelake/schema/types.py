"""Logical column types and their one mapping to Arrow, DuckDB, SQLite and PostgreSQL.

Every other module asks this table; nothing else spells a physical type.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from telelake._lazy import lazy

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy("pyarrow")


# The instants a timestamp column accepts (UTC), whole years: all of them fit every tier
# (Parquet and DuckDB microseconds, SQLite's INTEGER microseconds, PostgreSQL's
# timestamptz) and every form a value leaves in: a Python datetime in any time zone
# (years 1..9999, so an offset or a partition's end a day later never overflows) and a
# pandas datetime64[ns] (1677-09-21..2262-04-11). See docs/concepts.md.
TIMESTAMP_MIN = dt.datetime(1678, 1, 1, tzinfo=dt.UTC)
TIMESTAMP_MAX = dt.datetime(2261, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
TIMESTAMP_MIN_US = (TIMESTAMP_MIN - _EPOCH) // dt.timedelta(microseconds=1)
TIMESTAMP_MAX_US = (TIMESTAMP_MAX - _EPOCH) // dt.timedelta(microseconds=1)
TIMESTAMP_RANGE = "1678-01-01T00:00:00Z .. 2261-12-31T23:59:59.999999Z"


@dataclass(frozen=True)
class LogicalType:
    """One logical type and its physical spelling in each engine."""

    name: str
    duckdb: str
    sqlite: str
    postgres: str

    @property
    def arrow(self) -> pa.DataType:
        """The Arrow type (made on first use: Arrow is imported only when needed)."""
        return _arrow_types()[self.name]


@functools.cache
def _arrow_types() -> dict[str, pa.DataType]:
    return {
        "string": pa.string(),
        "bool": pa.bool_(),
        "int8": pa.int8(),
        "int16": pa.int16(),
        "int32": pa.int32(),
        "int64": pa.int64(),
        "float32": pa.float32(),
        "float64": pa.float64(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "date": pa.date32(),
        "json": pa.string(),
        "list<string>": pa.list_(pa.string()),
        "binary": pa.binary(),
    }


_TYPES: tuple[LogicalType, ...] = (
    LogicalType("string", "VARCHAR", "TEXT", "TEXT"),
    LogicalType("bool", "BOOLEAN", "INTEGER", "BOOLEAN"),
    LogicalType("int8", "TINYINT", "INTEGER", "SMALLINT"),
    LogicalType("int16", "SMALLINT", "INTEGER", "SMALLINT"),
    LogicalType("int32", "INTEGER", "INTEGER", "INTEGER"),
    LogicalType("int64", "BIGINT", "INTEGER", "BIGINT"),
    LogicalType("float32", "FLOAT", "REAL", "REAL"),
    LogicalType("float64", "DOUBLE", "REAL", "DOUBLE PRECISION"),
    LogicalType("timestamp", "TIMESTAMPTZ", "INTEGER", "TIMESTAMPTZ"),
    LogicalType("date", "DATE", "TEXT", "DATE"),
    # JSON is kept as its text so every engine can read it; DuckDB and PostgreSQL parse it.
    LogicalType("json", "JSON", "TEXT", "JSONB"),
    LogicalType("list<string>", "VARCHAR[]", "TEXT", "TEXT[]"),
    LogicalType("binary", "BLOB", "BLOB", "BYTEA"),
)

TYPES: dict[str, LogicalType] = {t.name: t for t in _TYPES}

# Spellings accepted in schema files besides the canonical names (spec 000 writes
# STRING, INT32, TIMESTAMP_MICROS, FLOAT, LIST<STRING>...).
ALIASES: dict[str, str] = {
    "str": "string",
    "text": "string",
    "varchar": "string",
    "boolean": "bool",
    "tinyint": "int8",
    "smallint": "int16",
    "int": "int32",
    "integer": "int32",
    "bigint": "int64",
    "float": "float32",
    "real": "float32",
    "double": "float64",
    "timestamp_micros": "timestamp",
    "timestamptz": "timestamp",
    "bytes": "binary",
    "blob": "binary",
    "list<str>": "list<string>",
}


def resolve(name: str) -> LogicalType | None:
    """Return the logical type spelled `name` (case-insensitive, aliases allowed)."""
    key = name.strip().lower().replace(" ", "")
    key = ALIASES.get(key, key)
    return TYPES.get(key)


def is_integer(t: LogicalType) -> bool:
    """True for the int8..int64 family."""
    return t.name in ("int8", "int16", "int32", "int64")
