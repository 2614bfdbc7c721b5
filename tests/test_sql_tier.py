"""The sql tier on real SQLite files: write modes, rejected batches, migrations, processes."""

from __future__ import annotations

import multiprocessing
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import telelake
from telelake.schema.load import builtin_path

DB = "frankensearch-ops.db"


def open_ops(root: Path, schema: str | Path = "search_ops") -> telelake.Store:
    return telelake.open(root, schema=schema)


def seed(store: telelake.Store, instances: int = 1) -> None:
    store.write("projects", [{"project_key": "p", "created_at_ms": 1, "updated_at_ms": 1}])
    store.write(
        "instances",
        [
            {
                "instance_id": f"i{n}",
                "project_key": "p",
                "first_seen_ms": 1,
                "last_heartbeat_ms": 1,
                "state": "started",
            }
            for n in range(instances)
        ],
    )


def event(n: int, **kw: Any) -> dict[str, Any]:
    row = {
        "event_id": f"e{n}",
        "project_key": "p",
        "instance_id": "i0",
        "correlation_id": f"c{n % 7}",
        "phase": "initial",
        "latency_us": 100 + n,
        "result_count": n % 4,
        "ts_ms": 1_700_000_000_000 + n * 1000,
    }
    return {**row, **kw}


def raw(root: Path, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(root / DB)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_a_retried_event_is_ignored_and_keeps_its_first_content(tmp_path: Path) -> None:
    with open_ops(tmp_path) as store:
        seed(store)
        store.write("search_events", [event(n) for n in range(10)])
        store.write("search_events", [event(3, latency_us=999_999), event(10)])  # a retry
    rows = raw(tmp_path, "SELECT event_id, latency_us FROM search_events ORDER BY ts_ms")
    assert [r[0] for r in rows] == [f"e{n}" for n in range(11)]
    assert dict(rows)["e3"] == 103


def test_upserts_follow_the_version_column_and_keep_first_seen(tmp_path: Path) -> None:
    def beat(at: int, state: str, first: int) -> dict[str, Any]:
        return {
            "instance_id": "i0",
            "project_key": "p",
            "first_seen_ms": first,
            "last_heartbeat_ms": at,
            "state": state,
        }

    with open_ops(tmp_path) as store:
        seed(store)
        store.write("instances", [beat(10, "healthy", 10)])
        store.write("instances", [beat(30, "degraded", 30)])
        store.write("instances", [beat(20, "healthy", 20)])  # late: must not win
        store.write(
            "projects",
            [{"project_key": "p", "display_name": "P", "created_at_ms": 99, "updated_at_ms": 5}],
        )
    assert raw(tmp_path, "SELECT first_seen_ms, last_heartbeat_ms, state FROM instances") == [
        (1, 30, "degraded")
    ]
    assert raw(tmp_path, "SELECT display_name, created_at_ms, updated_at_ms FROM projects") == [
        ("P", 1, 5)
    ]


def test_a_foreign_key_violation_rejects_the_whole_batch_naming_row_and_column(
    tmp_path: Path,
) -> None:
    with open_ops(tmp_path) as store:
        seed(store)
        batch = [event(0), event(1), event(2, instance_id="ghost"), event(3)]
        with pytest.raises(telelake.ValidationError) as err:
            store.write("search_events", batch)
        assert store.sql("SELECT count(*) FROM search_summaries").scalar() == 0
    e = err.value
    assert (e.table, e.row, e.column) == ("search_events", 2, "instance_id")
    for part in (
        "search_ops",
        "search_events",
        "row 2",
        "'ghost'",
        "instances.instance_id",
        "FOREIGN KEY",
        "nothing was written",
    ):
        assert part in str(e)
    assert raw(tmp_path, "SELECT count(*) FROM search_events") == [(0,)]


@pytest.mark.parametrize("bad", [5, 1500, 2499])  # first, second statement, remainder
def test_a_violation_deep_in_a_large_batch_names_its_row_and_writes_nothing(
    tmp_path: Path, bad: int
) -> None:
    # A batch goes to SQLite as statements of many rows: the row named must still be
    # the batch's own row number.
    with open_ops(tmp_path) as store:
        seed(store)
        batch = [event(n) for n in range(2500)]
        batch[bad] = event(bad, instance_id="ghost")
        with pytest.raises(telelake.ValidationError) as err:
            store.write("search_events", batch)
        assert (err.value.row, err.value.column) == (bad, "instance_id")
        assert raw(tmp_path, "SELECT count(*) FROM search_events") == [(0,)]
        batch[bad] = event(bad)
        assert store.write("search_events", batch) == 2500
    assert raw(tmp_path, "SELECT count(*), count(DISTINCT event_id) FROM search_events") == [
        (2500, 2500)
    ]


def test_bad_values_are_refused_before_sqlite_with_the_same_guarantees(tmp_path: Path) -> None:
    with open_ops(tmp_path) as store:
        seed(store)
        for bad, column in (
            (event(1, phase="final"), "phase"),  # CHECK (phase IN ...)
            (event(1, latency_us=None), "latency_us"),  # NOT NULL
            (event(1, event_id=None), "event_id"),  # a NULL key would never conflict
        ):
            with pytest.raises(telelake.ValidationError) as err:
                store.write("search_events", [event(0), bad])
            assert (err.value.column, err.value.row) == (column, 1), column
    assert raw(tmp_path, "SELECT count(*) FROM search_events") == [(0,)]


def test_snapshot_tables_ignore_a_retry_by_their_composite_unique(tmp_path: Path) -> None:
    sample = {"project_key": "p", "instance_id": "i0", "cpu_pct": 1.5, "ts_ms": 5}
    with open_ops(tmp_path) as store:
        seed(store)
        store.write("resource_samples", [sample, {**sample, "ts_ms": 6}])
        store.write("resource_samples", [{**sample, "cpu_pct": 9.0}])  # retried, no sample_id
    rows = raw(tmp_path, "SELECT sample_id, cpu_pct, ts_ms FROM resource_samples ORDER BY ts_ms")
    assert rows == [(1, 1.5, 5), (2, 1.5, 6)]


def _writer(root: str, start: int, count: int) -> None:
    with telelake.open(root, schema="search_ops") as store:
        for n in range(start, start + count, 25):
            store.write("search_events", [event(k) for k in range(n, n + 25)])


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    with open_ops(tmp_path) as store:
        seed(store)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), s, 500)) for s in (0, 500)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert raw(tmp_path, "SELECT count(*), count(DISTINCT event_id) FROM search_events") == [
        (1000, 1000)
    ]
    # Every event counted once in the rollup, whichever process wrote it.
    assert raw(tmp_path, "SELECT sum(search_count) FROM search_summaries WHERE window = '1w'") == [
        (1000,)
    ]


_KILLED = """
import sys, telelake
sys.path.insert(0, {tests!r})
from test_sql_tier import event, seed
store = telelake.open({root!r}, schema="search_ops")
seed(store)
n = 0
while True:
    store.write("search_events", [event(k) for k in range(n, n + 10)])
    n += 10
    print(n, flush=True)  # acknowledged
"""


def test_acknowledged_rows_survive_kill_9(tmp_path: Path) -> None:
    script = _KILLED.format(tests=str(Path(__file__).parent), root=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    acked = 0
    for line in proc.stdout:
        acked = int(line)
        if acked >= 300:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (count,) = raw(tmp_path, "SELECT count(*) FROM search_events")[0]
    assert count >= acked
    with open_ops(tmp_path) as store:  # and the database opens and takes writes again
        store.write("search_events", [event(100_000)])
        assert store.sql("SELECT count(*) FROM search_events").scalar() == count + 1


# -- migrations ---------------------------------------------------------------------------


def schema_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "schema"
    shutil.copytree(builtin_path("search_ops").parent, folder)
    return folder / "schema.toml"


def test_migrations_apply_once_and_record_the_spec_columns(tmp_path: Path) -> None:
    for _ in range(3):
        with open_ops(tmp_path / "store"):
            pass
    rows = raw(
        tmp_path / "store", "SELECT version, name, checksum, reversible FROM ops_schema_migrations"
    )
    assert [(v, n, r) for v, n, _, r in rows] == [(1, "create_tables", 1)]
    import hashlib

    shipped = builtin_path("search_ops").parent / "migrations" / "0001_create_tables.up.sql"
    assert rows[0][2] == hashlib.sha256(shipped.read_bytes()).hexdigest()


def test_a_changed_migration_stops_everything_with_a_clear_error(tmp_path: Path) -> None:
    schema = schema_copy(tmp_path)
    with open_ops(tmp_path / "store", schema):
        pass
    up = schema.parent / "migrations" / "0001_create_tables.up.sql"
    up.write_text(up.read_text() + "\n-- an innocent comment\n")
    (schema.parent / "migrations" / "0002_more.up.sql").write_text(
        "CREATE INDEX ix_x ON projects(display_name);\n"
    )
    (schema.parent / "migrations" / "0002_more.down.sql").write_text("DROP INDEX ix_x;\n")
    with pytest.raises(
        telelake.StoreError, match=r"migration 1 \(create_tables\) changed after it was applied"
    ):
        open_ops(tmp_path / "store", schema)
    assert raw(tmp_path / "store", "SELECT count(*) FROM ops_schema_migrations") == [(1,)]
    assert raw(tmp_path / "store", "SELECT count(*) FROM sqlite_master WHERE name = 'ix_x'") == [
        (0,)
    ]


def test_a_new_migration_applies_on_open_and_reverts_only_when_allowed(tmp_path: Path) -> None:
    schema = schema_copy(tmp_path)
    root = tmp_path / "store"
    with open_ops(root, schema):
        pass
    mig = schema.parent / "migrations"
    (mig / "0002_display_index.up.sql").write_text(
        "CREATE INDEX ix_pr_name ON projects(display_name);\n"
    )
    (mig / "0002_display_index.down.sql").write_text("DROP INDEX ix_pr_name;\n")
    with open_ops(root, schema) as store:
        assert [(s.version, s.state) for s in store.migration_status()] == [
            (1, "applied"),
            (2, "applied"),
        ]
    index = "SELECT count(*) FROM sqlite_master WHERE name = 'ix_pr_name'"
    assert raw(root, index) == [(1,)]
    cli = [
        sys.executable,
        "-m",
        "telelake",
        "migrate",
        "down",
        "--root",
        str(root),
        "--schema",
        str(schema),
    ]
    refused = subprocess.run(cli, capture_output=True, text=True)
    assert refused.returncode != 0 and "--confirm-rollback" in refused.stderr
    assert raw(root, index) == [(1,)]
    done = subprocess.run([*cli, "--dev"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "reverted sql migration 2" in done.stdout
    assert raw(root, index) == [(0,)]
    assert raw(root, "SELECT version FROM ops_schema_migrations") == [(1,)]
    status = subprocess.run(
        [
            sys.executable,
            "-m",
            "telelake",
            "migrate",
            "status",
            "--root",
            str(root),
            "--schema",
            str(schema),
            "--format",
            "csv",
        ],
        capture_output=True,
        text=True,
    )
    assert ",pending," in status.stdout.splitlines()[2]


@pytest.mark.parametrize("down", [None, "", "-- nothing to undo\n"])
def test_a_migration_without_down_sql_is_refused_when_migrations_load(
    tmp_path: Path, down: str | None
) -> None:
    """Spec 001: every migration ships explicit down SQL. A missing (or empty) down file
    stops the open itself, before anything is applied, naming the migration's files."""
    schema = schema_copy(tmp_path)
    root = tmp_path / "store"
    with open_ops(root, schema):
        pass
    folder = schema.parent / "migrations"
    (folder / "0002_forward_only.up.sql").write_text(
        "CREATE INDEX ix_fwd ON projects(display_name);\n"
    )
    if down is not None:
        (folder / "0002_forward_only.down.sql").write_text(down)
    up_file = str(folder / "0002_forward_only.up.sql")
    with pytest.raises(telelake.StoreError, match="ships no down SQL") as caught:
        open_ops(root, schema)
    assert up_file in str(caught.value)
    assert "0002_forward_only.down.sql" in str(caught.value)
    assert raw(root, "SELECT version FROM ops_schema_migrations") == [(1,)]
    assert raw(root, "SELECT count(*) FROM sqlite_master WHERE name = 'ix_fwd'") == [(0,)]
    # A new store with that schema is refused just the same: nothing is created.
    with pytest.raises(telelake.StoreError, match="ships no down SQL"):
        open_ops(tmp_path / "fresh", schema)
    assert raw(tmp_path / "fresh", "SELECT name FROM sqlite_master") == []


def test_a_built_in_migration_without_down_sql_is_refused(tmp_path: Path) -> None:
    schema = schema_copy(tmp_path)  # the built-in search_ops, as shipped
    (schema.parent / "migrations" / "0001_create_tables.down.sql").unlink()
    with pytest.raises(telelake.StoreError, match=r"0001_create_tables\.down\.sql is missing"):
        open_ops(tmp_path / "store", schema)


@pytest.mark.parametrize("confirm", [None, False, 1, "yes"])
def test_reverting_from_python_needs_an_explicit_confirmation(tmp_path: Path, confirm: Any) -> None:
    root = tmp_path / "store"
    with open_ops(root) as store:
        seed(store)
        kwargs = {} if confirm is None else {"confirm": confirm}
        with pytest.raises(telelake.StoreError, match=r"confirm=True") as caught:
            store.migrate_sql("down", 0, **kwargs)
        assert str(root) in str(caught.value)
        assert raw(root, "SELECT count(*) FROM projects") == [(1,)]
        assert store.migrate_sql("down", 0, confirm=True) == [1]
    tables = "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'projects'"
    assert raw(root, tables) == []
    assert raw(root, "SELECT count(*) FROM ops_schema_migrations") == [(0,)]


def test_check_reports_rows_whose_parent_is_gone(tmp_path: Path) -> None:
    with open_ops(tmp_path) as store:
        seed(store)
        assert store.check().findings == []
    con = sqlite3.connect(tmp_path / DB)  # a tool that bypassed foreign keys
    con.execute("DELETE FROM projects")
    con.commit()
    con.close()
    with open_ops(tmp_path) as store:
        problems = [f.problem for f in store.check().findings]
    assert problems == ["table 'instances' row 1 references a missing row of 'projects'"]


_MINI = """
name = "mini"
version = "1.0.0"
[sql]
database = "{database}"
[tables.notes]
tier = "sql"
key = ["id"]
columns = [{{ name = "id", type = "string" }}, {{ name = "body", type = "string" }}]
"""


def test_the_database_may_live_in_a_subfolder_but_never_outside_the_store(
    tmp_path: Path,
) -> None:
    good = tmp_path / "good.toml"
    good.write_text(_MINI.format(database="db/telemetry.sqlite"))
    with telelake.open(tmp_path / "store", schema=good) as store:
        store.write("notes", [{"id": "a", "body": "x"}, {"id": "a", "body": "retry"}])
    con = sqlite3.connect(tmp_path / "store" / "db" / "telemetry.sqlite")
    assert con.execute("SELECT id, body FROM notes").fetchall() == [("a", "x")]
    for bad in ("../escape.db", "/abs.db", "db/../../x.db", ".hidden.db"):
        path = tmp_path / "bad.toml"
        path.write_text(_MINI.format(database=bad))
        with pytest.raises(telelake.SchemaError, match="relative path inside the store"):
            telelake.open(tmp_path / "other", schema=path)
