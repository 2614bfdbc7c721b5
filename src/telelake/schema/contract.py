"""The storage contract of a schema, as a JSON document and a JSON Schema that checks it.

`contract_document` describes how a schema is stored: its tables with column metadata
(types, nullability, keys, foreign keys, CHECKs), the migrations table and the query
indexes. `contract_schema` turns the same schema into a JSON Schema (draft 2020-12)
that any such document must satisfy, so a description written by another tool (or by
hand) can be checked against the schema with a stock `jsonschema` validator.

`write_artifacts` writes the three files of spec 001's "Validation Artifacts": the
contract schema, a valid fixture and an invalid fixture (the fixture without its
`indexes`). Run `python -m telelake.schema.contract --help` to regenerate them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jsonschema  # type: ignore[import-untyped]

from telelake.errors import TelelakeError
from telelake.schema.load import load_schema
from telelake.schema.model import FK_ACTIONS, TIERS, Column, Schema, Table
from telelake.sql.dialect import SQLITE

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

# Columns of the migrations table, in the order of spec 001's DDL ("Schema Tracking") as
# `sql.migrations.tracking_ddl` creates it (tests/test_contract.py keeps the two equal).
MIGRATION_COLUMNS = ("version", "name", "applied_at_ms", "checksum", "reversible")

ROOT_FIELDS = ("contract", "version", "database", "tables", "migrations", "indexes")

INVALID_SUFFIX = "-invalid-missing-indexes"
_VERSION_SUFFIX = re.compile(r"^(?P<base>.+?)(?P<version>-v\d+)$")


class ContractError(TelelakeError):
    """A contract file cannot be read, or a contract schema is not a valid JSON Schema."""


class Artifacts(NamedTuple):
    """The three files `write_artifacts` writes."""

    schema: Path
    fixture: Path
    invalid_fixture: Path


# --- the document ---------------------------------------------------------------------


def contract_document(schema: Schema) -> dict[str, Any]:
    """The storage description of `schema`: the valid fixture of its contract.

    Tables, indexes and columns keep their declared order (parents before children, as
    the DDL creates them). `database` and `migrations` are null for a schema without sql
    tables: nothing of it lives in a database.
    """
    has_sql = any(t.tier == "sql" for t in schema.tables.values())
    return {
        "contract": _contract_name(schema),
        "version": schema.version,
        "database": schema.sql_settings.database if has_sql else None,
        "tables": {t.name: _table_document(t) for t in schema.tables.values()},
        "migrations": (
            {"table": schema.sql_settings.migrations_table, "columns": list(MIGRATION_COLUMNS)}
            if has_sql
            else None
        ),
        "indexes": {
            index.name: {
                "table": table.name,
                "columns": [
                    {"name": name, "order": "DESC" if desc else "ASC"}
                    for name, desc in index.columns
                ],
                "where": index.where,
                "unique": index.unique,
            }
            for table in schema.tables.values()
            for index in table.indexes
        },
    }


def _contract_name(schema: Schema) -> str:
    return f"{schema.name}-storage"


def _table_document(table: Table) -> dict[str, Any]:
    return {
        "tier": table.tier,
        "columns": [_column_document(table, col) for col in table.columns],
        # sql tier: the PRIMARY KEY; lake and log tiers: the deduplication key.
        "primary_key": list(table.key),
        "unique": [list(u) for u in table.unique],
    }


def _column_document(table: Table, col: Column) -> dict[str, Any]:
    # sql columns show the type their DDL declares, so the document reads like the
    # database; other tiers have no DDL and show the logical type.
    out: dict[str, Any] = {
        "name": col.name,
        "type": SQLITE.column_type(col) if table.tier == "sql" else col.type.name,
        "nullable": col.nullable,
        "primary_key": col.name in table.key,
    }
    if col.autoincrement:
        out["autoincrement"] = True
    if col.references:
        out["references"] = col.references
        if col.on_delete:
            out["on_delete"] = col.on_delete.upper()
    if col.enum is not None:
        out["check"] = {"in": list(col.enum)}
    return out


# --- the JSON Schema ------------------------------------------------------------------


def contract_schema(schema: Schema, title: str | None = None) -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) that the storage description of `schema` satisfies.

    It enforces spec 001's invariants: every table present with its columns (and each
    enum column's CHECK exactly), the migrations table's exact column set, and every
    declared index. It also pins each table's tier and keys and each index's definition.
    Extra tables and indexes are allowed if well formed: a later minor version may add
    some. `version` must keep the schema's major version.
    """
    document = contract_document(schema)
    database = document["database"]
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": title or f"{schema.name} storage contract v{schema.major}",
        "description": (
            f"Storage contract of telelake schema {schema.name!r} {schema.version}, "
            "generated by telelake.schema.contract: do not edit by hand."
        ),
        "type": "object",
        "required": list(ROOT_FIELDS),
        "additionalProperties": False,
        "properties": {
            "contract": {"const": document["contract"]},
            "version": {"type": "string", "pattern": rf"^{schema.major}\.\d+\.\d+$"},
            "database": {"const": database},
            "tables": {
                "type": "object",
                "required": list(schema.tables),
                "properties": {t.name: _table_rules(t) for t in schema.tables.values()},
                "additionalProperties": {"$ref": "#/$defs/table"},
            },
            "migrations": _migrations_rules(document["migrations"]),
            "indexes": {
                "type": "object",
                "required": list(document["indexes"]),
                "properties": {
                    name: {
                        "$ref": "#/$defs/index",
                        "properties": {key: {"const": value} for key, value in index.items()},
                    }
                    for name, index in document["indexes"].items()
                },
                "additionalProperties": {"$ref": "#/$defs/index"},
            },
        },
        "$defs": _DEFS,
    }


def _table_rules(table: Table) -> dict[str, Any]:
    # Presence of each column is a `contains`; its title names the column in errors.
    columns: dict[str, Any] = {
        "allOf": [
            {"title": f"column {col.name!r}", "contains": _named(col.name)} for col in table.columns
        ]
    }
    checks = [
        {
            "if": _named(col.name),
            "then": {"required": ["check"], "properties": {"check": {"const": {"in": list(enum)}}}},
        }
        for col in table.columns
        if (enum := col.enum) is not None
    ]
    if checks:
        # An if/then per enum column: a wrong CHECK is reported on that column, rather
        # than as a missing column.
        columns["items"] = {"allOf": checks}
    return {
        "$ref": "#/$defs/table",
        "properties": {
            "tier": {"const": table.tier},
            "columns": columns,
            "primary_key": {"const": list(table.key)},
            "unique": {"const": [list(u) for u in table.unique]},
        },
    }


def _named(name: str) -> dict[str, Any]:
    return {"properties": {"name": {"const": name}}, "required": ["name"]}


def _migrations_rules(migrations: dict[str, Any] | None) -> dict[str, Any]:
    if migrations is None:
        return {"const": None}
    # Exactly this set, in any order: only known names, no repeats, each one present.
    return {
        "type": "object",
        "required": ["table", "columns"],
        "additionalProperties": False,
        "properties": {
            "table": {"const": migrations["table"]},
            "columns": {
                "type": "array",
                "items": {"enum": list(MIGRATION_COLUMNS)},
                "uniqueItems": True,
                "allOf": [
                    {"title": f"migration column {name!r}", "contains": {"const": name}}
                    for name in MIGRATION_COLUMNS
                ],
            },
        },
    }


# The shape of every table, column and index, pinned or not.
_DEFS: dict[str, Any] = {
    "table": {
        "type": "object",
        "required": ["tier", "columns", "primary_key", "unique"],
        "additionalProperties": False,
        "properties": {
            "tier": {"enum": list(TIERS)},
            "columns": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/column"}},
            "primary_key": {"$ref": "#/$defs/names"},
            "unique": {"type": "array", "items": {"$ref": "#/$defs/names", "minItems": 1}},
        },
    },
    "column": {
        "type": "object",
        "required": ["name", "type", "nullable", "primary_key"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "type": {"type": "string", "minLength": 1},
            "nullable": {"type": "boolean"},
            "primary_key": {"type": "boolean"},
            "autoincrement": {"type": "boolean"},
            "references": {"type": "string", "pattern": r"^[^.]+\.[^.]+$"},
            "on_delete": {"enum": [a.upper() for a in FK_ACTIONS]},
            "check": {
                "type": "object",
                "required": ["in"],
                "additionalProperties": False,
                "properties": {
                    "in": {"type": "array", "minItems": 1, "items": {"type": ["string", "integer"]}}
                },
            },
        },
    },
    "index": {
        "type": "object",
        "required": ["table", "columns", "where", "unique"],
        "additionalProperties": False,
        "properties": {
            "table": {"type": "string", "minLength": 1},
            "columns": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["name", "order"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "order": {"enum": ["ASC", "DESC"]},
                    },
                },
            },
            "where": {"type": ["string", "null"]},
            "unique": {"type": "boolean"},
        },
    },
    "names": {"type": "array", "items": {"type": "string", "minLength": 1}},
}


# --- validation -----------------------------------------------------------------------


def validate_document(schema_json: dict[str, Any], document: dict[str, Any]) -> list[str]:
    """Every way `document` breaks `schema_json`, as `path: message` lines; [] if valid.

    Paths name list items by their `name` when they have one (`columns[state]`), so an
    error says which column is wrong rather than its position.
    """
    cls = jsonschema.validators.validator_for(schema_json)
    try:
        cls.check_schema(schema_json)
    except jsonschema.exceptions.SchemaError as exc:
        raise ContractError(f"not a valid JSON Schema: {exc.message}") from exc
    errors = list(cls(schema_json).iter_errors(document))
    lines = {f"{_path(document, list(e.absolute_path))}: {_message(e)}" for e in errors}
    return sorted(lines)


def _path(document: Any, keys: Sequence[str | int]) -> str:
    out = "$"
    node = document
    for key in keys:
        if isinstance(key, int):
            item = node[key]
            name = item.get("name") if isinstance(item, dict) else None
            out += f"[{name}]" if isinstance(name, str) else f"[{key}]"
        else:
            out += f".{key}"
        node = node[key]
    return out


def _message(error: Any) -> str:
    # A failed `contains` would print the whole list; our titles say what is missing.
    title = error.schema.get("title") if isinstance(error.schema, dict) else None
    if error.validator == "contains" and isinstance(title, str):
        return f"missing {title}"
    return str(error.message)


def load_json(path: Path | str) -> dict[str, Any]:
    """Read a JSON object from `path`; ContractError says why if it cannot."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ContractError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ContractError(
            f"{path} is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    if not isinstance(value, dict):
        raise ContractError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


# --- files ----------------------------------------------------------------------------


def invalid_stem(stem: str) -> str:
    """The invalid fixture's stem: `-invalid-missing-indexes` before a `-vN` suffix."""
    match = _VERSION_SUFFIX.match(stem)
    if match is None:
        return stem + INVALID_SUFFIX
    return match["base"] + INVALID_SUFFIX + match["version"]


def dump_json(value: Any) -> str:
    """Deterministic JSON text: 2-space indent, a trailing newline.

    Keys keep the order they are built in (fixed by the code and the schema's declared
    order), which reads better than sorted keys: `name` first, `$schema` on top.
    """
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def artifact_texts(schema: Schema, stem: str, title: str | None = None) -> dict[str, str]:
    """The text of each artifact by its path relative to the output folder."""
    document = contract_document(schema)
    invalid = {k: v for k, v in document.items() if k != "indexes"}
    return {
        f"{stem}.schema.json": dump_json(contract_schema(schema, title)),
        f"fixtures/{stem}.json": dump_json(document),
        f"fixtures-invalid/{invalid_stem(stem)}.json": dump_json(invalid),
    }


def write_artifacts(schema: Schema, folder: Path, stem: str, title: str | None = None) -> Artifacts:
    """Write the contract schema, its valid fixture and its invalid fixture under `folder`."""
    paths = []
    for relative, text in artifact_texts(schema, stem, title).items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return Artifacts(*paths)


def stale_artifacts(
    schema: Schema, folder: Path, stem: str, title: str | None = None
) -> list[Path]:
    """Artifacts under `folder` that are missing or differ from freshly generated ones."""
    stale = []
    for relative, text in artifact_texts(schema, stem, title).items():
        path = folder / relative
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(path)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or with --check, verify) the contract artifacts of a schema."""
    parser = argparse.ArgumentParser(
        prog="python -m telelake.schema.contract",
        description="Write the storage contract of a schema: JSON Schema and fixtures.",
    )
    parser.add_argument("--schema", required=True, help="built-in schema name or TOML path")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--stem", required=True, help="file stem, e.g. ops-telemetry-storage-v1")
    parser.add_argument("--title", help="title of the JSON Schema")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is out of date"
    )
    args = parser.parse_args(argv)
    try:
        schema = load_schema(args.schema)
    except TelelakeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        stale = stale_artifacts(schema, args.out, args.stem, args.title)
        for path in stale:
            print(f"out of date: {path}", file=sys.stderr)
        return 1 if stale else 0
    for path in write_artifacts(schema, args.out, args.stem, args.title):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
