"""Logical column types and their one mapping to Arrow, DuckDB, SQLite and PostgreSQL.

Every other module asks this table; nothing else spells a physical type.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from telelake._lazy import lazy

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy("pyarrow")


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
