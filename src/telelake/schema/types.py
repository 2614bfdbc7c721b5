"""Logical column types and their one mapping to Arrow, DuckDB, SQLite and PostgreSQL.

Every other module asks this table; nothing else spells a physical type.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class LogicalType:
    """One logical type and its physical spelling in each engine."""

    name: str
    arrow: pa.DataType
    duckdb: str
    sqlite: str
    postgres: str


_TYPES: tuple[LogicalType, ...] = (
    LogicalType("string", pa.string(), "VARCHAR", "TEXT", "TEXT"),
    LogicalType("bool", pa.bool_(), "BOOLEAN", "INTEGER", "BOOLEAN"),
    LogicalType("int8", pa.int8(), "TINYINT", "INTEGER", "SMALLINT"),
    LogicalType("int16", pa.int16(), "SMALLINT", "INTEGER", "SMALLINT"),
    LogicalType("int32", pa.int32(), "INTEGER", "INTEGER", "INTEGER"),
    LogicalType("int64", pa.int64(), "BIGINT", "INTEGER", "BIGINT"),
    LogicalType("float32", pa.float32(), "FLOAT", "REAL", "REAL"),
    LogicalType("float64", pa.float64(), "DOUBLE", "REAL", "DOUBLE PRECISION"),
    LogicalType("timestamp", pa.timestamp("us", tz="UTC"), "TIMESTAMPTZ", "INTEGER", "TIMESTAMPTZ"),
    LogicalType("date", pa.date32(), "DATE", "TEXT", "DATE"),
    # JSON is kept as its text so every engine can read it; DuckDB and PostgreSQL parse it.
    LogicalType("json", pa.string(), "JSON", "TEXT", "JSONB"),
    LogicalType("list<string>", pa.list_(pa.string()), "VARCHAR[]", "TEXT", "TEXT[]"),
    LogicalType("binary", pa.binary(), "BLOB", "BLOB", "BYTEA"),
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
    return bool(pa.types.is_integer(t.arrow))
