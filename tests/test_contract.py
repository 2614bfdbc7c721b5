"""The storage contract of search_ops (spec 001, "Validation Artifacts").

The committed files under schemas/ must equal freshly generated ones, the spec's two
`jsonschema` commands must behave as written, each of the spec's three invariants must
reject a document that breaks it, and the document must agree with the spec's own SQL
as SQLite reads it (not as our generator writes it).
"""

from __future__ import annotations

import copy
import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telelake.schema.contract import (
    MIGRATION_COLUMNS,
    ContractError,
    artifact_texts,
    contract_document,
    contract_schema,
    invalid_stem,
    load_json,
    main,
    validate_document,
    write_artifacts,
)
from telelake.schema.load import load_schema
from telelake.schema.model import Schema
from telelake.sql.migrations import tracking_ddl

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = REPO / "schemas"
STEM = "ops-telemetry-storage-v1"
SCHEMA_FILE = f"schemas/{STEM}.schema.json"
VALID_FILE = f"schemas/fixtures/{STEM}.json"
INVALID_FILE = "schemas/fixtures-invalid/ops-telemetry-storage-invalid-missing-indexes-v1.json"
SPEC_SQL = REPO / "tests" / "fixtures" / "search_ops_spec.sql"


@pytest.fixture(scope="module")
def ops() -> Schema:
    return load_schema("search_ops")


@pytest.fixture(scope="module")
def contract(ops: Schema) -> dict[str, Any]:
    return contract_schema(ops)


@pytest.fixture
def document(ops: Schema) -> dict[str, Any]:
    return contract_document(ops)


def _column(document: dict[str, Any], table: str, name: str) -> dict[str, Any]:
    [col] = [c for c in document["tables"][table]["columns"] if c["name"] == name]
    return col


# --- the committed artifacts ----------------------------------------------------------


def test_committed_artifacts_match_generated(ops: Schema) -> None:
    texts = artifact_texts(ops, STEM)
    assert sorted(texts) == sorted(
        [
            f"{STEM}.schema.json",
            f"fixtures/{STEM}.json",
            "fixtures-invalid/ops-telemetry-storage-invalid-missing-indexes-v1.json",
        ]
    )
    for relative, text in texts.items():
        committed = SCHEMAS / relative
        assert committed.is_file(), f"{committed} is missing: regenerate (docs/contract.md)"
        assert json.loads(committed.read_text(encoding="utf-8")) == json.loads(text), relative
        assert committed.read_bytes() == text.encode("utf-8"), f"{relative} differs in bytes"


def test_write_artifacts_writes_the_spec_paths(ops: Schema, tmp_path: Path) -> None:
    written = write_artifacts(ops, tmp_path, STEM)
    assert written.schema == tmp_path / f"{STEM}.schema.json"
    assert written.fixture == tmp_path / "fixtures" / f"{STEM}.json"
    assert written.invalid_fixture == (
        tmp_path / "fixtures-invalid" / "ops-telemetry-storage-invalid-missing-indexes-v1.json"
    )
    for path in written:
        assert path.read_bytes() == (SCHEMAS / path.relative_to(tmp_path)).read_bytes()
    # The invalid fixture is the valid one minus `indexes`, and nothing else.
    valid = load_json(written.fixture)
    invalid = load_json(written.invalid_fixture)
    assert "indexes" not in invalid
    assert invalid == {k: v for k, v in valid.items() if k != "indexes"}


def test_generation_is_deterministic(ops: Schema) -> None:
    assert artifact_texts(ops, STEM) == artifact_texts(load_schema("search_ops"), STEM)
    for text in artifact_texts(ops, STEM).values():
        assert text.endswith("}\n") and not text.endswith("\n\n")


def test_module_check_mode(tmp_path: Path) -> None:
    args = ["--schema", "search_ops", "--out", str(tmp_path), "--stem", STEM]
    assert main([*args, "--check"]) == 1  # nothing written yet
    assert main(args) == 0
    assert main([*args, "--check"]) == 0
    (tmp_path / "fixtures" / f"{STEM}.json").write_text("{}\n", encoding="utf-8")
    assert main([*args, "--check"]) == 1


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("ops-telemetry-storage-v1", "ops-telemetry-storage-invalid-missing-indexes-v1"),
        ("x-v12", "x-invalid-missing-indexes-v12"),
        ("storage", "storage-invalid-missing-indexes"),
        ("storage-v1beta", "storage-v1beta-invalid-missing-indexes"),
        ("v1", "v1-invalid-missing-indexes"),
    ],
)
def test_invalid_stem(stem: str, expected: str) -> None:
    assert invalid_stem(stem) == expected


# --- the spec's two commands ----------------------------------------------------------


def _jsonschema_cli(instance: str, schema: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "jsonschema"
    return subprocess.run(
        [str(exe), "-i", instance, schema],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_spec_command_valid_fixture_passes() -> None:
    result = _jsonschema_cli(VALID_FILE, SCHEMA_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_spec_command_invalid_fixture_fails_on_indexes() -> None:
    result = _jsonschema_cli(INVALID_FILE, SCHEMA_FILE)
    assert result.returncode != 0
    assert "'indexes' is a required property" in result.stdout + result.stderr


def test_committed_files_validate_as_expected() -> None:
    schema_json = load_json(REPO / SCHEMA_FILE)
    assert validate_document(schema_json, load_json(REPO / VALID_FILE)) == []
    assert validate_document(schema_json, load_json(REPO / INVALID_FILE)) == [
        "$: 'indexes' is a required property"
    ]


# --- each invariant bites -------------------------------------------------------------


def test_valid_document_passes(contract: dict[str, Any], document: dict[str, Any]) -> None:
    assert validate_document(contract, document) == []


@pytest.mark.parametrize("field", ["contract", "version", "database", "tables", "migrations"])
def test_every_root_field_is_required(
    contract: dict[str, Any], document: dict[str, Any], field: str
) -> None:
    del document[field]
    assert validate_document(contract, document) == [f"$: {field!r} is a required property"]


def test_missing_table(contract: dict[str, Any], document: dict[str, Any]) -> None:
    del document["tables"]["evidence_links"]
    assert validate_document(contract, document) == [
        "$.tables: 'evidence_links' is a required property"
    ]


def test_missing_column(contract: dict[str, Any], document: dict[str, Any]) -> None:
    columns = document["tables"]["search_events"]["columns"]
    columns.remove(_column(document, "search_events", "correlation_id"))
    assert validate_document(contract, document) == [
        "$.tables.search_events.columns: missing column 'correlation_id'"
    ]


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("instances", "state"),
        ("alerts_timeline", "state"),
        ("search_events", "phase"),
        ("search_summaries", "window"),
        ("index_inventory_snapshots", "is_stale"),
        ("alerts_timeline", "severity"),
    ],
)
def test_enum_check_must_be_exact(
    contract: dict[str, Any], document: dict[str, Any], table: str, column: str
) -> None:
    col = _column(document, table, column)
    original = list(col["check"]["in"])
    col["check"] = {"in": original[:-1]}  # one value short
    [error] = validate_document(contract, document)
    assert error.startswith(f"$.tables.{table}.columns[{column}].check: ")
    assert error.endswith("was expected")
    col["check"] = {"in": [*original, "extra"]}  # one value too many
    assert len(validate_document(contract, document)) == 1
    del col["check"]
    assert validate_document(contract, document) == [
        f"$.tables.{table}.columns[{column}]: 'check' is a required property"
    ]


def test_state_check_of_another_table_does_not_pass(
    contract: dict[str, Any], document: dict[str, Any]
) -> None:
    # The two `state` columns have different enums: each is pinned to its own table.
    instances = _column(document, "instances", "state")
    alerts = _column(document, "alerts_timeline", "state")
    instances["check"], alerts["check"] = alerts["check"], instances["check"]
    errors = validate_document(contract, document)
    assert [e.split(":")[0] for e in errors] == [
        "$.tables.alerts_timeline.columns[state].check",
        "$.tables.instances.columns[state].check",
    ]


def test_migration_column_missing(contract: dict[str, Any], document: dict[str, Any]) -> None:
    document["migrations"]["columns"].remove("reversible")
    assert validate_document(contract, document) == [
        "$.migrations.columns: missing migration column 'reversible'"
    ]


def test_migration_columns_are_exactly_the_set(
    contract: dict[str, Any], document: dict[str, Any]
) -> None:
    columns = document["migrations"]["columns"]
    columns.reverse()  # order is free...
    assert validate_document(contract, document) == []
    columns.append("extra")  # ...extras are not...
    assert validate_document(contract, document) == [
        f"$.migrations.columns[5]: 'extra' is not one of {list(MIGRATION_COLUMNS)!r}"
    ]
    columns[5] = "version"  # ...and neither are repeats
    [error] = validate_document(contract, document)
    assert "non-unique" in error


def test_migrations_table_name(contract: dict[str, Any], document: dict[str, Any]) -> None:
    document["migrations"]["table"] = "schema_migrations"
    assert validate_document(contract, document) == [
        "$.migrations.table: 'ops_schema_migrations' was expected"
    ]


def test_missing_index(contract: dict[str, Any], document: dict[str, Any]) -> None:
    del document["indexes"]["ix_el_aid"]
    assert validate_document(contract, document) == [
        "$.indexes: 'ix_el_aid' is a required property"
    ]


def test_index_definition_is_pinned(contract: dict[str, Any], document: dict[str, Any]) -> None:
    document["indexes"]["ix_at_open"]["where"] = None
    document["indexes"]["ix_el_aid"]["columns"][1]["order"] = "ASC"
    errors = validate_document(contract, document)
    assert [e.split(":")[0] for e in errors] == [
        "$.indexes.ix_at_open.where",
        "$.indexes.ix_el_aid.columns",
    ]


def test_extra_tables_and_indexes_must_be_well_formed(
    contract: dict[str, Any], document: dict[str, Any]
) -> None:
    document["tables"]["extra"] = copy.deepcopy(document["tables"]["projects"])
    document["indexes"]["ix_extra"] = copy.deepcopy(document["indexes"]["ix_el_aid"])
    assert validate_document(contract, document) == []
    del document["tables"]["extra"]["columns"][0]["nullable"]
    document["indexes"]["ix_extra"]["columns"][0]["order"] = "down"
    assert validate_document(contract, document) == [
        "$.indexes.ix_extra.columns[alert_id].order: 'down' is not one of ['ASC', 'DESC']",
        "$.tables.extra.columns[project_key]: 'nullable' is a required property",
    ]


def test_major_version_is_kept(contract: dict[str, Any], document: dict[str, Any]) -> None:
    document["version"] = "1.4.2"
    assert validate_document(contract, document) == []
    document["version"] = "2.0.0"
    [error] = validate_document(contract, document)
    assert error.startswith("$.version: '2.0.0' does not match")


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_removing_any_required_names_fails(data: st.DataObject) -> None:
    ops = load_schema("search_ops")
    contract = contract_schema(ops)
    document = contract_document(ops)
    indexes = data.draw(st.sets(st.sampled_from(sorted(document["indexes"]))), label="indexes")
    tables = data.draw(st.sets(st.sampled_from(sorted(document["tables"]))), label="tables")
    for name in indexes:
        del document["indexes"][name]
    for name in tables:
        del document["tables"][name]
    errors = validate_document(contract, document)
    expected = [f"$.indexes: {n!r} is a required property" for n in indexes]
    expected += [f"$.tables: {n!r} is a required property" for n in tables]
    assert errors == sorted(expected)


# --- agreement with the spec's SQL ----------------------------------------------------


@pytest.fixture(scope="module")
def spec_db() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.executescript(SPEC_SQL.read_text(encoding="utf-8"))
    return db


def _spec_tables(db: sqlite3.Connection) -> list[str]:
    rows = db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY rowid"
    )
    return [name for (name,) in rows]


def test_tables_match_spec(spec_db: sqlite3.Connection, document: dict[str, Any]) -> None:
    spec = _spec_tables(spec_db)
    assert "ops_schema_migrations" in spec
    assert list(document["tables"]) == [t for t in spec if t != "ops_schema_migrations"]


def test_indexes_match_spec(spec_db: sqlite3.Connection, document: dict[str, Any]) -> None:
    names = set()
    for table in _spec_tables(spec_db):
        for _, name, unique, origin, partial in spec_db.execute(f"PRAGMA index_list({table})"):
            if name.startswith("ix_"):
                names.add(name)
                index = document["indexes"][name]
                assert index["table"] == table
                assert index["unique"] == bool(unique)
                assert (index["where"] is not None) == bool(partial)
                key = [r for r in spec_db.execute(f"PRAGMA index_xinfo({name})") if r[5]]
                assert index["columns"] == [
                    {"name": r[2], "order": "DESC" if r[3] else "ASC"} for r in key
                ]
            else:
                assert origin in ("pk", "u")  # implicit: PRIMARY KEY or UNIQUE
    assert "ix_el_aid" in names
    assert set(document["indexes"]) == names


def test_columns_match_spec(spec_db: sqlite3.Connection, document: dict[str, Any]) -> None:
    for table, described in document["tables"].items():
        info = list(spec_db.execute(f"PRAGMA table_info({table})"))
        assert [c["name"] for c in described["columns"]] == [r[1] for r in info]
        for col, (_, name, decl, notnull, _default, pk) in zip(
            described["columns"], info, strict=True
        ):
            assert (col["type"], col["nullable"], col["primary_key"]) == (
                decl,
                not notnull,
                pk > 0,
            ), f"{table}.{name}"
        assert described["primary_key"] == [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]]
        fks = {
            r[3]: (f"{r[2]}.{r[4]}", r[6])
            for r in spec_db.execute(f"PRAGMA foreign_key_list({table})")
        }
        assert {
            c["name"]: (c["references"], c["on_delete"])
            for c in described["columns"]
            if "references" in c
        } == fks, table


def test_checks_match_spec(spec_db: sqlite3.Connection, document: dict[str, Any]) -> None:
    # SQLite keeps CHECKs only in the CREATE text: read `col IN (...)` from there.
    check = re.compile(r"CHECK \((\w+) IN \(([^)]*)\)\)")
    for table, described in document["tables"].items():
        [(sql,)] = spec_db.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,))
        spec = {
            col: [json.loads(v.replace("'", '"')) for v in values.split(",")]
            for col, values in check.findall(sql)
        }
        assert {c["name"]: c["check"]["in"] for c in described["columns"] if "check" in c} == spec


def test_migration_columns_match_spec(
    spec_db: sqlite3.Connection, document: dict[str, Any]
) -> None:
    info = spec_db.execute("PRAGMA table_info(ops_schema_migrations)")
    assert document["migrations"] == {
        "table": "ops_schema_migrations",
        "columns": [r[1] for r in info],
    }


def test_migration_columns_match_the_tracking_table() -> None:
    # MIGRATION_COLUMNS restates the table the migration runner creates: keep them equal.
    db = sqlite3.connect(":memory:")
    db.execute(tracking_ddl("ops_schema_migrations"))
    info = db.execute("PRAGMA table_info(ops_schema_migrations)")
    assert tuple(r[1] for r in info) == MIGRATION_COLUMNS


# --- any schema -----------------------------------------------------------------------


def test_lake_only_schema(tmp_path: Path) -> None:
    triage = load_schema("process_triage")
    document = contract_document(triage)
    assert document["database"] is None and document["migrations"] is None
    assert document["indexes"] == {}
    assert set(document["tables"]) == set(triage.tables)
    runs = document["tables"]["runs"]
    assert runs["tier"] == "lake"
    assert runs["columns"][0]["type"] == triage.tables["runs"].columns[0].type.name
    contract = contract_schema(triage, title="triage")
    assert contract["title"] == "triage"
    assert validate_document(contract, document) == []
    del document["tables"]["runs"]
    assert validate_document(contract, document) == ["$.tables: 'runs' is a required property"]


# --- files and errors -----------------------------------------------------------------


def test_load_json_errors(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="cannot read"):
        load_json(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1,\n}', encoding="utf-8")
    with pytest.raises(ContractError, match=r"bad\.json is not valid JSON: line 2 column 1"):
        load_json(bad)
    bad.write_text("[1]", encoding="utf-8")
    with pytest.raises(ContractError, match="expected a JSON object, found list"):
        load_json(bad)


def test_invalid_json_schema_is_an_error(document: dict[str, Any]) -> None:
    with pytest.raises(ContractError, match="not a valid JSON Schema"):
        validate_document({"type": "nonsense"}, document)
