"""SQL through the read API is read-only and confined to the store (issue 19, item 13).

Every escape attempt (writing a file, attaching a database, reading a file outside the
store, changing a setting, installing an extension) fails, leaves no file anywhere, and
leaves the lock-down settings as they were; the store's own rows (Parquet files and live
WAL rows) stay readable; `allow_external=True` / `--allow-external` gives DuckDB in full.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import telelake
from conftest import TEST_HOST_ID
from telelake.schema.load import builtin_path

TELELAKE = str(Path(sys.executable).parent / "telelake")


def audit_row(i: int) -> dict[str, object]:
    return {
        "audit_ts": f"2026-01-{10 + i % 3:02d}T12:00:{i % 60:02d}Z",
        "session_id": f"s{i % 4}",
        "event_type": "scan_start",
        "severity": "info",
        "actor": "user",
        "message": f"message {i}",
        "host_id": "hostA",
    }


def every_file(top: Path) -> set[str]:
    """Every path under `top` (files and directories), relative to it."""
    out = set()
    for dirpath, dirs, files in os.walk(top):
        for name in dirs + files:
            out.add(os.path.relpath(os.path.join(dirpath, name), top))
    return out


@pytest.fixture
def lake_store(tmp_path: Path) -> Iterator[tuple[telelake.Store, Path]]:
    """A process_triage store with 30 audit rows: 20 in Parquet, 10 live in the WAL;
    beside it, a file outside the store that no query may read."""
    root = tmp_path / "store"
    with telelake.open(root, schema="process_triage", host_id=TEST_HOST_ID) as s:
        s.write("audit", [audit_row(i) for i in range(20)])  # folded on close
    (tmp_path / "secret.csv").write_text("secret\nhunter2\n")
    with telelake.open(root, schema="process_triage", host_id=TEST_HOST_ID) as s:
        s.write("audit", [audit_row(i) for i in range(20, 30)])
        yield s, tmp_path


def escapes(tmp: Path, root: Path) -> list[str]:
    out = tmp / "out"
    return [
        f"COPY (SELECT 1 AS a) TO '{out}.csv'",
        f"COPY (SELECT 1 AS a) TO '{root}/_metadata/evil.parquet'",  # inside the store too
        f"COPY audit TO '{out}.parquet' (FORMAT parquet)",
        f"EXPORT DATABASE '{out}-db'",
        f"ATTACH '{out}.duckdb' AS other",
        f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{out}-explained.csv'",
        f"SELECT 1; COPY (SELECT 1) TO '{out}-second.csv'",
        "CREATE TABLE t AS SELECT 1 AS a",
        "CREATE OR REPLACE VIEW audit AS SELECT 1 AS a",
        "DROP VIEW audit",
        "CREATE MACRO m() AS 1",
        f"SELECT * FROM read_csv('{tmp}/secret.csv')",
        "SELECT * FROM read_csv('/etc/passwd')",
        f"SELECT * FROM read_blob('{root}/_metadata/redaction.key')",  # the store's secret
        f"SELECT * FROM read_text('{root}/_metadata/store.json')",
        "SELECT * FROM glob('/*')",
        f"SELECT * FROM read_parquet('{root}/../**/*.parquet')",
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "RESET enable_external_access",
        "SET allowed_directories = ['/']",
        "INSTALL httpfs",
        "LOAD httpfs",
        "CHECKPOINT",
        "PRAGMA enable_profiling",
    ]


SETTINGS = (
    "SELECT current_setting('enable_external_access'), current_setting('lock_configuration'), "
    "current_setting('autoload_known_extensions'), current_setting('autoinstall_known_extensions')"
)


def test_every_escape_fails_and_leaves_no_file(lake_store: tuple[telelake.Store, Path]) -> None:
    store, tmp = lake_store
    before = every_file(tmp)
    for text in escapes(tmp, store.root):
        with pytest.raises(telelake.QueryError) as err:
            store.sql(text)
        assert "hunter2" not in str(err.value) and "root:" not in str(err.value)
        assert every_file(tmp) == before, text
        assert store.sql(SETTINGS).rows() == [(False, True, False, False)], text
        assert store.sql("SELECT count(*) FROM audit").scalar() == 30, text


def test_a_refusal_says_what_and_how_to_opt_in(lake_store: tuple[telelake.Store, Path]) -> None:
    store, tmp = lake_store
    with pytest.raises(telelake.QueryError, match=r"read-only.*allow_external.*COPY"):
        store.sql(f"COPY (SELECT 1) TO '{tmp}/x.csv'")
    with pytest.raises(telelake.QueryError, match=r"secret\.csv.*store's lake tables only"):
        store.sql(f"SELECT * FROM read_csv('{tmp}/secret.csv')")


def test_reads_of_the_store_still_work(lake_store: tuple[telelake.Store, Path]) -> None:
    store, _ = lake_store
    expected = sorted(f"message {i}" for i in range(30))
    got = store.sql("SELECT message FROM audit ORDER BY message").rows()
    assert [m for (m,) in got] == expected
    assert [tuple(r) for r in store.sql_rows("SELECT count(*) FROM audit").rows()] == [(30,)]
    files = sorted(str(p) for p in (store.root / "audit").rglob("*.parquet"))
    assert files
    direct = store.sql(f"SELECT count(*) FROM read_parquet({files!r})").scalar()
    assert direct == 20  # the folded rows; the live ones are in the WAL
    for text in ("DESCRIBE audit", "SHOW TABLES", "EXPLAIN SELECT count(*) FROM audit"):
        assert len(store.sql(text)) > 0, text
    # The schema's macros and named queries run on the confined engine.
    assert store.sql("SELECT count(*) FROM recent_sessions(5)").scalar() == 0


def test_allow_external_is_duckdb_in_full(lake_store: tuple[telelake.Store, Path]) -> None:
    store, tmp = lake_store
    out = tmp / "audit.csv"
    store.sql(f"COPY (SELECT message FROM audit ORDER BY message) TO '{out}'", allow_external=True)
    lines = out.read_text().splitlines()
    assert lines == ["message", *sorted(f"message {i}" for i in range(30))]
    secret = store.sql(f"SELECT * FROM read_csv('{tmp}/secret.csv')", allow_external=True)
    assert secret.rows() == [("hunter2",)]
    with pytest.raises(telelake.QueryError):  # the default engine stays confined
        store.sql(f"SELECT * FROM read_csv('{tmp}/secret.csv')")


def test_a_schema_macro_cannot_write_a_file(tmp_path: Path) -> None:
    builtin = builtin_path("process_triage").parent
    target = tmp_path / "written-by-macro.csv"
    evil = f"CREATE MACRO evil() AS 1; COPY (SELECT 1) TO '{target}'"
    text = (builtin / "schema.toml").read_text() + f'\n[macros.evil]\nsql = "{evil}"\n'
    own = tmp_path / "own.toml"
    own.write_text(text)
    for name in ("macros", "queries"):
        shutil.copytree(builtin / name, tmp_path / name)
    refused = pytest.raises(telelake.QueryError, match=r"macro 'evil' may only CREATE.*COPY")
    with telelake.open(tmp_path / "store", schema=own, host_id=TEST_HOST_ID) as store, refused:
        store.sql("SELECT 1")
    assert not target.exists()


@pytest.fixture
def sql_store(tmp_path: Path) -> Iterator[tuple[telelake.Store, Path]]:
    with telelake.open(tmp_path / "ops", schema="search_ops") as s:
        s.sql_tier.migrate_up()
        yield s, tmp_path


def test_the_sqlite_engine_refuses_attach_and_writes(
    sql_store: tuple[telelake.Store, Path],
) -> None:
    store, tmp = sql_store
    before = every_file(tmp)
    for text in (
        f"ATTACH '{tmp}/other.db' AS other",
        "CREATE TABLE t (a)",
        "CREATE TEMP TABLE t (a)",
        "DELETE FROM projects",
        "PRAGMA query_only = OFF",
        "PRAGMA journal_mode = DELETE",
        f"VACUUM INTO '{tmp}/copy.db'",
    ):
        with pytest.raises(telelake.QueryError, match="read-only"):
            store.sql(text, engine="sqlite")
        assert every_file(tmp) == before, text
    names = {r[1] for r in store.sql("PRAGMA table_info(projects)", engine="sqlite").rows()}
    assert names == {"project_key", "display_name", "created_at_ms", "updated_at_ms"}
    assert store.sql("SELECT count(*) FROM projects", engine="sqlite").scalar() == 0
    with pytest.raises(telelake.StoreError, match="allow_external"):
        store.sql("SELECT 1", engine="sqlite", allow_external=True)


def test_cli_sql_is_confined_unless_allow_external(tmp_path: Path) -> None:
    root = tmp_path / "cli-store"
    env = {**os.environ, "TELELAKE_ROOT": str(root)}
    target = tmp_path / "one.csv"
    copy = f"COPY (SELECT 42 AS answer) TO '{target}'"

    def tl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [TELELAKE, *args], capture_output=True, text=True, env=env, timeout=120
        )

    assert tl("init").returncode == 0
    refused = tl("sql", copy)
    assert refused.returncode != 0 and "--allow-external" in refused.stderr
    assert "Traceback" not in refused.stderr and not target.exists()
    done = tl("sql", "--allow-external", copy)
    assert done.returncode == 0, done.stderr
    assert target.read_text().splitlines() == ["answer", "42"]
