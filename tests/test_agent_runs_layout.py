"""agent_runs (spec 003): the directory layout, schema v3 and config/schema.sql."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import telelake
from sqlshape import database_shape

# Spec 003, "SQLite Schema (v3)", column groups of agent_runs, as the spec lists them.
SPEC_COLUMNS = [
    "run_id",
    "schema_version",
    "agent_name",
    "agent_owner",
    "job_type",
    "trigger_type",
    "start_time",
    "end_time",
    "status",
    "items_discovered",
    "items_succeeded",
    "items_failed",
    "duration_ms",
    "metrics_json",
    "input_summary",
    "output_summary",
    "error_summary",
    "insight_id",
    "product",
    "platform",
    "product_family",
    "subdomain",
    "git_repo",
    "git_branch",
    "git_run_tag",
    "host",
    "api_posted",
    "api_posted_at",
    "api_retry_count",
    "created_at",
    "updated_at",
]
SPEC_INDEXES = {
    "idx_runs_agent": "agent_runs",
    "idx_runs_status": "agent_runs",
    "idx_runs_start": "agent_runs",
    "idx_runs_api_posted": "agent_runs",
    "idx_runs_insight": "agent_runs",
    "idx_events_run": "run_events",
    "idx_commits_run": "commits",
}


def init(root: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "telelake", "init", "--root", str(root), "--schema", "agent_runs"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_init_creates_the_spec_layout_and_schema_v3(tmp_path: Path) -> None:
    root = tmp_path / "base"
    init(root)
    for folder in ("raw", "db", "reports", "exports", "config", "logs", "backups"):
        assert (root / folder).is_dir(), folder
    con = sqlite3.connect(root / "db" / "telemetry.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"agent_runs", "run_events", "commits", "schema_migrations"} <= tables
    columns = [r[1] for r in con.execute("PRAGMA table_info(agent_runs)")]
    assert columns == SPEC_COLUMNS
    assert [r[1] for r in con.execute("PRAGMA table_info(agent_runs)") if r[5]] == ["run_id"]
    assert [r[1] for r in con.execute("PRAGMA table_info(run_events)")] == [
        "id",
        "run_id",
        "event_type",
        "timestamp",
        "payload_json",
    ]
    indexes = dict(
        con.execute(
            "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' AND name LIKE 'idx_%'"
        )
    )
    assert indexes == SPEC_INDEXES
    versions = con.execute("SELECT version, checksum FROM schema_migrations").fetchall()
    assert [v for v, _ in versions] == [1] and len(versions[0][1]) == 64


def test_config_schema_sql_builds_the_same_database(tmp_path: Path) -> None:
    root = tmp_path / "base"
    init(root)
    fresh = sqlite3.connect(tmp_path / "fresh.db")
    fresh.executescript((root / "config" / "schema.sql").read_text())
    ours = database_shape(sqlite3.connect(root / "db" / "telemetry.sqlite"))
    del ours["schema_migrations"]  # bookkeeping, not part of schema.sql
    assert database_shape(fresh) == ours


def test_store_connections_wait_5_seconds_for_a_busy_database(tmp_path: Path) -> None:
    with telelake.open(tmp_path / "base", schema="agent_runs") as store:
        con = store.sql_tier.con
        assert con.execute("PRAGMA busy_timeout").fetchone() == (5000,)
        assert con.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL


def test_cli_backup_copies_the_database_and_keeps_the_newest(tmp_path: Path) -> None:
    root = tmp_path / "base"
    now = "2026-01-02T03:04:05Z"
    run = {
        "run_id": "r1",
        "schema_version": 3,
        "agent_name": "indexer",
        "start_time": now,
        "status": "running",
        "api_posted": 0,
        "api_retry_count": 0,
        "created_at": now,
        "updated_at": now,
    }
    with telelake.open(root, schema="agent_runs") as store:
        store.write("agent_runs", [run])
    cli = [sys.executable, "-m", "telelake", "backup", "--root", str(root)]
    for _ in range(2):
        done = subprocess.run(
            [*cli, "--schema", "agent_runs", "--keep", "1", "-q"], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert "integrity_check ok" in done.stdout
    copies = sorted((root / "backups").glob("telemetry.backup.*.sqlite"))
    assert len(copies) == 1
    con = sqlite3.connect(copies[0])
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert con.execute("SELECT run_id, agent_name, status FROM agent_runs").fetchall() == [
        ("r1", "indexer", "running")
    ]


def test_backups_keep_in_config_json_limits_the_backups(tmp_path: Path) -> None:
    root = tmp_path / "base"
    init(root)
    (root / "config.json").write_text('{"telemetry_retention": {"backups_keep": 2}}')
    import datetime as dt

    from telelake.sql import backup

    with telelake.open(root, schema="agent_runs") as store:
        for day in range(4):
            when = dt.datetime(2026, 1, 1 + day, tzinfo=dt.UTC)
            backup.backup_database(
                store.sql_tier.path,
                root / "backups",
                stem="telemetry",
                now=when,
                keep=store.retention().backups_keep,
            )
        store.backup()  # today's, with the configured default
    names = sorted(p.name for p in (root / "backups").glob("telemetry.backup.*.sqlite"))
    assert len(names) == 2 and names[0] == "telemetry.backup.20260104.sqlite"
    (root / "config.json").write_text('{"telemetry_retention": {"backups_keep": 0}}')
    with pytest.raises(telelake.StoreError, match="backups_keep must be a positive"):
        telelake.open(root, schema="agent_runs").backup()
