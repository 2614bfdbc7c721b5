"""DDL from the schema model: CREATE TABLE and CREATE INDEX in the spec's own layout.

The statements read like hand-written DDL (one column a line, constraints inline) so
that a generated migration is easy to review, and so that `tests/test_search_ops_ddl.py`
can prove the result equivalent to a spec's SQL.
"""

from __future__ import annotations

from telelake.schema.model import Schema, Table
from telelake.sql.dialect import SQLITE, Dialect, literal


def create_table(table: Table, dialect: Dialect = SQLITE) -> str:
    """`CREATE TABLE` for a sql table: columns, keys, foreign keys, CHECKs, uniques."""
    q = dialect.ident
    single_key = table.key[0] if len(table.key) == 1 else None
    lines = []
    for col in table.columns:
        parts = [q(col.name), dialect.column_type(col)]
        if col.name == single_key:
            parts.append(dialect.autoincrement_key() if col.autoincrement else "PRIMARY KEY")
        if not col.nullable:
            parts.append("NOT NULL")
        if col.references:
            target, column = col.references.split(".")
            parts.append(f"REFERENCES {q(target)}({q(column)})")
            if col.on_delete:
                parts.append(f"ON DELETE {col.on_delete.upper()}")
        if col.enum is not None:
            values = ",".join(literal(v) for v in col.enum)
            parts.append(f"CHECK ({q(col.name)} IN ({values}))")
        lines.append(" ".join(parts))
    if len(table.key) > 1:
        lines.append(f"PRIMARY KEY ({', '.join(q(k) for k in table.key)})")
    for unique in table.unique:
        lines.append(f"UNIQUE ({', '.join(q(c) for c in unique)})")
    body = ",\n    ".join(lines)
    return f"CREATE TABLE {q(table.name)} (\n    {body}\n);"


def create_indexes(table: Table, dialect: Dialect = SQLITE) -> list[str]:
    """`CREATE INDEX` for each declared index of `table`, in declared order."""
    q = dialect.ident
    out = []
    for index in table.indexes:
        cols = ", ".join(q(c) + (" DESC" if desc else "") for c, desc in index.columns)
        kind = "UNIQUE INDEX" if index.unique else "INDEX"
        sql = f"CREATE {kind} {q(index.name)}\n    ON {q(table.name)}({cols})"
        if index.where:
            sql += f"\n    WHERE {index.where}"
        out.append(sql + ";")
    return out


def sql_tables(schema: Schema) -> list[Table]:
    """The schema's sql tables in declared order (parents before children)."""
    return [t for t in schema.tables.values() if t.tier == "sql"]


def schema_up(schema: Schema, dialect: Dialect = SQLITE) -> str:
    """Every sql table, then every index: the first migration of a schema."""
    tables = sql_tables(schema)
    statements = [create_table(t, dialect) for t in tables]
    statements += [sql for t in tables for sql in create_indexes(t, dialect)]
    return "\n\n".join(statements) + "\n"


def schema_down(schema: Schema, dialect: Dialect = SQLITE) -> str:
    """Drop every sql table, children first (their indexes go with them)."""
    tables = sql_tables(schema)
    return "".join(f"DROP TABLE IF EXISTS {dialect.ident(t.name)};\n" for t in reversed(tables))
