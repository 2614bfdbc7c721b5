"""A damaged or emptied SQLite database (issue 19, items 3 and 10).

An empty (0-byte) database is damage, never a new store: opening refuses it, pointing
to `telelake recover`, and no backup is made of it nor removed for it. A database with
damaged pages makes `check`, `backup` and `sql` say which file, what failed and what to
run, never a Python traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import telelake
from telelake.sql.backup import backup_database, list_backups

TELELAKE = str(Path(sys.executable).parent / "telelake")
RUNS = 120


def tl(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TELELAKE_ROOT": str(root), "COLUMNS": "200"}
    return subprocess.run([TELELAKE, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def runs_store(tmp_path: Path) -> Path:
    """An agent_runs store with RUNS finished runs (in the database and the log) and
    one backup of that database."""
    root = tmp_path / "runs"
    with telelake.open(root, schema="agent_runs") as store:
        client = store.run_client()
        for i in range(RUNS):
            with client.start_run("indexer", run_id=f"r{i:03d}", job_type="x" * 300):
                pass
        store.backup()
    return root


def database(root: Path) -> Path:
    return root / "db" / "telemetry.sqlite"


def backups(root: Path) -> list[Path]:
    return list_backups(root / "backups", "telemetry")


def test_an_empty_database_is_damage_not_a_new_store(runs_store: Path) -> None:
    db = database(runs_store)
    kept = backups(runs_store)
    assert len(kept) == 1
    db.write_bytes(b"")  # a truncation (a full disk, a bad copy...)
    with pytest.raises(telelake.StoreError, match=r"telemetry\.sqlite.*empty.*telelake recover"):
        telelake.open(runs_store, schema="agent_runs")
    for args in (["check"], ["backup", "--keep", "1"], ["sql", "SELECT count(*) FROM agent_runs"]):
        out = tl(runs_store, *args)
        assert out.returncode != 0, args
        assert "Traceback" not in out.stderr, out.stderr
        assert str(db) in out.stderr and "telelake recover" in out.stderr, out.stderr
    assert db.stat().st_size == 0  # not re-created empty behind the user's back
    assert backups(runs_store) == kept  # the last good backup is still there
    with pytest.raises(telelake.StoreError, match="empty"):
        backup_database(db, runs_store / "backups", stem="telemetry", keep=1)
    assert backups(runs_store) == kept

    out = tl(runs_store, "recover", "--quiet")
    assert out.returncode == 0, out.stderr
    with telelake.open(runs_store, schema="agent_runs") as store:
        ids = [r for (r,) in store.sql("SELECT run_id FROM agent_runs ORDER BY run_id").rows()]
    assert ids == [f"r{i:03d}" for i in range(RUNS)]  # rebuilt from the log


def damage_data_pages(db: Path) -> None:
    """Overwrite the second half of the file's pages (table and index pages, past the
    schema on the first pages) with 0xFF, each page's first 100 bytes spared."""
    size = db.stat().st_size
    with db.open("r+b") as f:
        for page in range(size // 4096 // 2, size // 4096):
            f.seek(page * 4096 + 100)
            f.write(b"\xff" * 3000)


def test_damaged_pages_are_reported_not_a_traceback(runs_store: Path) -> None:
    db = database(runs_store)
    damage_data_pages(db)
    kept = backups(runs_store)
    # JSON: a terminal table wraps a long path across lines.
    out = tl(runs_store, "check", "--format", "json")
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
    (finding,) = [f for f in json.loads(out.stdout) if f["path"] == str(db)]
    said = f"{finding['problem']} {finding['repair']}"
    assert "integrity_check failed" in said and "telelake recover" in said, finding
    out = tl(runs_store, "backup", "--keep", "1")
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
    assert str(db) in out.stderr and "quick_check failed" in out.stderr
    assert "telelake recover" in out.stderr
    assert backups(runs_store) == kept
    with telelake.open(runs_store, schema="agent_runs") as store:
        with pytest.raises(telelake.QueryError, match=r"damaged.*telelake recover"):
            store.sql("SELECT max(job_type), count(*) FROM agent_runs NOT INDEXED")
        report = store.check()
    [finding] = report.findings
    assert finding.kind == "database" and finding.path == db
