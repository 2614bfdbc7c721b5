"""The search_ops database equals spec 001's DDL, table by table and index by index."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import telelake
from sqlshape import database_shape, table_shape
from telelake.schema.load import load_schema
from telelake.sql import ddl

SPEC_SQL = Path(__file__).parent / "fixtures" / "search_ops_spec.sql"


def spec_database(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path)
    con.executescript(SPEC_SQL.read_text())
    return con


def test_telelake_init_creates_exactly_the_spec_database(tmp_path: Path) -> None:
    spec = database_shape(spec_database(tmp_path / "spec.db"))
    root = tmp_path / "store"
    done = subprocess.run(
        [sys.executable, "-m", "telelake", "init", "--root", str(root), "--schema", "search_ops"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    ours = database_shape(sqlite3.connect(root / "frankensearch-ops.db"))
    assert sorted(ours) == sorted(spec)  # the same tables, no more, no less
    for table in spec:
        assert ours[table] == spec[table], table
    # Every ix_* of the index plan is there with its columns, order and WHERE.
    ix = {n for shape in ours.values() for n in shape["indexes"] if n.startswith("ix_")}
    assert len(ix) == 11
    where = ours["alerts_timeline"]["indexes"]["ix_at_open"][3]
    assert where == "state != 'resolved'"


def test_the_comparison_notices_a_difference(tmp_path: Path) -> None:
    # The comparator must see each kind of change the spec cares about.
    base = SPEC_SQL.read_text()
    changes = {
        "type": ("latency_us INTEGER NOT NULL", "latency_us REAL NOT NULL"),
        "not null": ("phase TEXT NOT NULL CHECK", "phase TEXT CHECK"),
        "on delete": (
            "alert_id TEXT NOT NULL REFERENCES alerts_timeline(alert_id) ON DELETE CASCADE",
            "alert_id TEXT NOT NULL REFERENCES alerts_timeline(alert_id)",
        ),
        "check": ("'stale','stopped'", "'stopped'"),
        "unique": ("UNIQUE (alert_id, evidence_uri)", "UNIQUE (evidence_uri, alert_id)"),
        "index order": (
            "ON search_events(project_key, ts_ms DESC)",
            "ON search_events(project_key, ts_ms)",
        ),
        "partial": ("WHERE state != 'resolved'", "WHERE state = 'open'"),
        "autoincrement": ("PRIMARY KEY AUTOINCREMENT", "PRIMARY KEY"),
    }
    spec = database_shape(spec_database(tmp_path / "spec.db"))
    for i, (what, (old, new)) in enumerate(changes.items()):
        assert old in base, what
        con = sqlite3.connect(tmp_path / f"changed{i}.db")
        con.executescript(base.replace(old, new))
        assert database_shape(con) != spec, what


def test_the_shipped_migration_matches_the_schema_model(tmp_path: Path) -> None:
    # schema.toml and migrations/0001 must describe the same database.
    schema = load_schema("search_ops")
    con = sqlite3.connect(tmp_path / "model.db")
    con.executescript(ddl.schema_up(schema))
    with telelake.open(tmp_path / "store", schema="search_ops"):
        pass
    shipped = sqlite3.connect(tmp_path / "store" / "frankensearch-ops.db")
    for table in ddl.sql_tables(schema):
        assert table_shape(shipped, table.name) == table_shape(con, table.name), table.name


@pytest.mark.parametrize("pragma,value", [("journal_mode", "wal"), ("foreign_keys", 1)])
def test_connections_use_wal_and_foreign_keys(tmp_path: Path, pragma: str, value: object) -> None:
    with telelake.open(tmp_path / "store", schema="search_ops") as store:
        got = store.sql_tier.con.execute(f"PRAGMA {pragma}").fetchone()[0]
        sync = store.sql_tier.con.execute("PRAGMA synchronous").fetchone()[0]
    assert got == value
    assert sync == 1  # NORMAL
