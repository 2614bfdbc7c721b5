"""Schemas: the model, the TOML loader and the logical type mapping."""

from telelake.schema.load import builtin_names, load_schema
from telelake.schema.model import Column, ParquetLayout, Partitioning, Schema, SqlObject, Table

__all__ = [
    "Column",
    "ParquetLayout",
    "Partitioning",
    "Schema",
    "SqlObject",
    "Table",
    "builtin_names",
    "load_schema",
]
