"""agent_runs ships frozen migrations (issue 18): a schema change is a new migration, and
every database made before keeps opening.

`fixtures/agent_runs_schema_3.0.0_generated.toml` is the schema file of the release
before migrations were frozen: its one migration was generated from it.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import telelake
from sqlshape import table_shape
from telelake.errors import SchemaError
from telelake.schema.load import builtin_path, load_schema
from telelake.sql import ddl, migrations

PREVIOUS = Path(__file__).parent / "fixtures" / "agent_runs_schema_3.0.0_generated.toml"
# What databases made by that release recorded for migration 1 (sha256 of its up SQL).
RECORDED = "255ba9279fc76d71f3bc5e7241d9e4bc76d9a0fa0c7612a8c0e1d5f93257d0eb"
DB = Path("db") / "telemetry.sqlite"
T0 = "2026-01-02T03:04:05+00:00"


def run(run_id: str, **kw: Any) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "schema_version": 3,
        "agent_name": "indexer",
        "start_time": T0,
        "status": "success",
        "host": "box",
        "api_posted": 0,
        "api_retry_count": 0,
        "created_at": T0,
        "updated_at": T0,
        **kw,
    }


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def seed(store: telelake.Store) -> None:
    store.write("agent_runs", [run("r1"), run("r2")])
    store.write("commits", [{"commit_hash": "c1", "run_id": "r1", "message": "one"}])


def test_the_shipped_first_migration_is_the_one_databases_recorded() -> None:
    shipped = builtin_path("agent_runs").parent / "migrations" / "0001_create_tables.up.sql"
    assert hashlib.sha256(shipped.read_bytes()).hexdigest() == RECORDED
    # ... and it is what the previous release generated, byte for byte.
    assert shipped.read_text(encoding="utf-8") == ddl.schema_up(load_schema(PREVIOUS))
    [first] = migrations.discover(load_schema("agent_runs"))
    assert (first.version, first.name, first.checksum) == (1, "create_tables", RECORDED)


def test_the_shipped_migrations_build_the_database_the_schema_declares(tmp_path: Path) -> None:
    # The guard for "a schema change adds a migration": schema.toml and migrations/ must
    # describe the same database.
    schema = load_schema("agent_runs")
    model = sqlite3.connect(tmp_path / "model.db")
    model.executescript(ddl.schema_up(schema))
    with telelake.open(tmp_path / "store", schema="agent_runs"):
        pass
    shipped = sqlite3.connect(tmp_path / "store" / DB)
    for table in ddl.sql_tables(schema):
        assert table_shape(shipped, table.name) == table_shape(model, table.name), table.name


def test_a_database_of_the_previous_release_opens_and_records_schema_v3(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with telelake.open(root, schema=str(PREVIOUS)) as store:
        seed(store)
    tracking = [r[1] for r in query(root / DB, "PRAGMA table_info(schema_migrations)")]
    assert "schema_version" not in tracking  # the old table
    with telelake.open(root, schema="agent_runs") as store:  # no "changed after applied"
        assert [(s.version, s.state, s.schema_version) for s in store.migration_status()] == [
            (1, "applied", 3)
        ]
        store.write("agent_runs", [run("r3")])
    rows = query(root / DB, "SELECT version, name, checksum, schema_version FROM schema_migrations")
    assert rows == [(1, "create_tables", RECORDED, 3)]
    assert query(root / DB, "SELECT run_id FROM agent_runs ORDER BY 1") == [
        ("r1",),
        ("r2",),
        ("r3",),
    ]


def test_a_new_database_records_schema_v3_next_to_migration_1(tmp_path: Path) -> None:
    with telelake.open(tmp_path, schema="agent_runs"):
        pass
    assert query(tmp_path / DB, "SELECT version, name, schema_version FROM schema_migrations") == [
        (1, "create_tables", 3)
    ]


NEXT_UP = """ALTER TABLE agent_runs ADD COLUMN cost_usd REAL;

CREATE INDEX idx_runs_host
    ON agent_runs(host);
"""


def next_release(tmp_path: Path) -> Path:
    """The built-in schema with one more column and index: version 3.1.0, migration 2."""
    folder = tmp_path / "next"
    shutil.copytree(builtin_path("agent_runs").parent, folder)
    path = folder / "schema.toml"
    text = path.read_text(encoding="utf-8")
    updated = (
        '  { name = "updated_at", type = "string", nullable = false, '
        'description = "ISO 8601 UTC" },\n'
    )
    assert text.count(updated) == 1 and text.count('version = "3.0.0"') == 1
    text = text.replace('version = "3.0.0"', 'version = "3.1.0"')
    text = text.replace(
        updated,
        updated + '  { name = "cost_usd", type = "float64", description = "API cost" },\n',
    )
    text = text.replace(
        'indexes.idx_runs_insight = { columns = ["insight_id"] }\n',
        'indexes.idx_runs_insight = { columns = ["insight_id"] }\n'
        'indexes.idx_runs_host = { columns = ["host"] }\n',
    )
    path.write_text(text, encoding="utf-8")
    (folder / "migrations" / "0002_run_cost.up.sql").write_text(NEXT_UP, encoding="utf-8")
    (folder / "migrations" / "0002_run_cost.down.sql").write_text(
        "DROP INDEX idx_runs_host;\nALTER TABLE agent_runs DROP COLUMN cost_usd;\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize("made_by", ["previous", "current"])
def test_the_next_release_migrates_existing_databases(tmp_path: Path, made_by: str) -> None:
    schema = next_release(tmp_path)
    root = tmp_path / "store"
    with telelake.open(root, schema=str(PREVIOUS) if made_by == "previous" else "agent_runs") as s:
        seed(s)
    with telelake.open(root, schema=str(schema)) as store:
        store.write("agent_runs", [run("r3", cost_usd=0.25)])
    assert query(root / DB, "SELECT run_id, host, cost_usd FROM agent_runs ORDER BY 1") == [
        ("r1", "box", None),
        ("r2", "box", None),
        ("r3", "box", 0.25),
    ]
    assert query(root / DB, "SELECT commit_hash, run_id, message FROM commits") == [
        ("c1", "r1", "one")
    ]
    plan = query(root / DB, "EXPLAIN QUERY PLAN SELECT * FROM agent_runs WHERE host = 'box'")
    assert any("idx_runs_host" in str(row[-1]) for row in plan)
    rows = query(root / DB, "SELECT version, name, checksum, schema_version FROM schema_migrations")
    up = hashlib.sha256(NEXT_UP.encode()).hexdigest()
    assert rows == [(1, "create_tables", RECORDED, 3), (2, "run_cost", up, 3)]
    # The migrated database is the one the next schema declares.
    model = sqlite3.connect(tmp_path / "model.db")
    model.executescript(ddl.schema_up(load_schema(schema)))
    migrated = sqlite3.connect(root / DB)
    for table in ("agent_runs", "run_events", "commits"):
        assert table_shape(migrated, table) == table_shape(model, table), table
    status = subprocess.run(
        [
            sys.executable,
            "-m",
            "telelake",
            "migrate",
            "status",
            "--format",
            "csv",
            "--root",
            str(root),
            "--schema",
            str(schema),
        ],
        capture_output=True,
        text=True,
    )
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].split(",")[-1] == "schema_version"
    assert [(x.split(",")[0], x.split(",")[2], x.split(",")[-1]) for x in lines[1:]] == [
        ("1", "applied", "3"),
        ("2", "applied", "3"),
    ]


def test_editing_the_shipped_migration_instead_is_refused(tmp_path: Path) -> None:
    schema = next_release(tmp_path)
    (schema.parent / "migrations" / "0002_run_cost.up.sql").unlink()
    (schema.parent / "migrations" / "0002_run_cost.down.sql").unlink()
    first = schema.parent / "migrations" / "0001_create_tables.up.sql"
    first.write_text(ddl.schema_up(load_schema(schema)), encoding="utf-8")  # regenerated
    root = tmp_path / "store"
    with telelake.open(root, schema="agent_runs") as store:
        seed(store)
    with pytest.raises(telelake.StoreError, match=r"migration 1 \(create_tables\) changed"):
        telelake.open(root, schema=str(schema))


@pytest.mark.parametrize(
    "setting,message",
    [
        ("schema_versions = { x = 3 }", "is not a migration version"),
        ("schema_versions = { 1 = 0 }", "needs a whole version >= 1"),
        ("schema_versions = { 1 = true }", "needs a whole version >= 1"),
    ],
)
def test_bad_schema_versions_are_refused(tmp_path: Path, setting: str, message: str) -> None:
    folder = tmp_path / "s"
    shutil.copytree(builtin_path("agent_runs").parent, folder)
    path = folder / "schema.toml"
    path.write_text(
        path.read_text().replace("schema_versions = { 1 = 3 }", setting), encoding="utf-8"
    )
    with pytest.raises(SchemaError, match=message):
        load_schema(path)


@pytest.mark.parametrize(
    "defaults,message",
    [
        ("defaults = { nope = 1 }", "has no column 'nope'"),
        ('defaults = { api_posted = "0" }', "column 'api_posted': expected int64"),
        ("defaults = { api_posted = 2 }", "2 is not one of"),
        ('defaults_from = { created_at = ["duration_ms"] }', "have different types"),
        ('defaults_from = { created_at = ["nope"] }', "has no column 'nope'"),
    ],
)
def test_bad_replay_defaults_are_refused(tmp_path: Path, defaults: str, message: str) -> None:
    folder = tmp_path / "s"
    shutil.copytree(builtin_path("agent_runs").parent, folder)
    path = folder / "schema.toml"
    text = path.read_text()
    start = text.index("defaults = {")
    end = text.index("\n", text.index("defaults_from = {"))
    path.write_text(text[:start] + defaults + text[end:], encoding="utf-8")
    with pytest.raises(SchemaError, match=message):
        load_schema(path)
