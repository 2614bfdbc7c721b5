"""agent_runs (issue 18): recover never destroys what the log cannot rebuild, `telelake
replay` fills run_events in place, and logs written by other clients of spec 003 replay.

Every expectation is computed here from the rows written (plain Python) and every check
reads the database with plain sqlite3.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import telelake
from telelake.log import ndjson

T0 = "2026-01-02T03:04:05+00:00"
END = "2026-01-02T04:00:00+00:00"
DB = Path("db") / "telemetry.sqlite"


def run(run_id: str, status: str = "running", updated: str = T0, **kw: Any) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "schema_version": 3,
        "agent_name": "indexer",
        "start_time": T0,
        "status": status,
        "api_posted": 0,
        "api_retry_count": 0,
        "created_at": T0,
        "updated_at": updated,
        **kw,
    }


def event(run_id: str, n: int) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "event_type": "progress",
        "timestamp": f"2026-01-02T03:05:{n:02d}+00:00",
        "payload_json": json.dumps({"n": n}),
    }


def commit(n: int, run_id: str) -> dict[str, Any]:
    return {
        "commit_hash": f"{n:040x}",
        "run_id": run_id,
        "repo": "git@example.com:team/indexer.git",
        "branch": "main",
        "author": "bot",
        "message": f"change {n}: " + "x" * 200,
        "committed_at": T0,
        "files_changed": n % 7,
        "insertions": n,
        "deletions": n // 2,
    }


def fill(root: Path, runs: int = 3, events: int = 5, commits: int = 2) -> dict[str, Any]:
    """Runs with events and an end, plus commits (which the log never holds)."""
    with telelake.open(root, schema="agent_runs") as store:
        for r in range(runs):
            store.write("agent_runs", [run(f"r{r}")])
            for n in range(events):
                store.write("events", [event(f"r{r}", n)])
            store.write("agent_runs", [run(f"r{r}", "success", END, items_succeeded=7)])
        store.write("commits", [commit(n, f"r{n % runs}") for n in range(commits)])
    return {
        "runs": {f"r{r}": ("success", 7, END) for r in range(runs)},
        "events": {
            (f"r{r}", "progress", event(f"r{r}", n)["timestamp"])
            for r in range(runs)
            for n in range(events)
        },
        "commits": {tuple(commit(n, f"r{n % runs}").values()) for n in range(commits)},
    }


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def db_runs(path: Path) -> dict[str, tuple[Any, ...]]:
    rows = query(path, "SELECT run_id, status, items_succeeded, updated_at FROM agent_runs")
    return {r[0]: tuple(r[1:]) for r in rows}


def db_events(path: Path) -> set[tuple[Any, ...]]:
    return set(query(path, "SELECT run_id, event_type, timestamp FROM run_events"))


def db_commits(path: Path) -> set[tuple[Any, ...]]:
    return set(query(path, "SELECT * FROM commits"))


def dump(path: Path) -> list[list[tuple[Any, ...]]]:
    return [
        query(path, f"SELECT * FROM {t} ORDER BY 1")
        for t in ("agent_runs", "run_events", "commits")
    ]


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "telelake", *args, "--root", str(root), "--schema", "agent_runs"],
        capture_output=True,
        text=True,
    )


# -- 2. recover keeps what the log cannot rebuild ----------------------------------------


def test_recover_carries_over_the_tables_the_log_does_not_hold(tmp_path: Path) -> None:
    want = fill(tmp_path)
    assert db_commits(tmp_path / DB) == want["commits"]
    done = cli(tmp_path, "recover", "-q")
    assert done.returncode == 0, done.stderr
    assert "carried over from it: 3 agent_runs, 0 run_events, 2 commits" in done.stdout
    assert db_commits(tmp_path / DB) == want["commits"]  # was: 0 rows after recover
    assert db_runs(tmp_path / DB) == want["runs"]
    assert db_events(tmp_path / DB) == want["events"]
    assert "not saved" not in done.stderr


def test_recover_keeps_rows_only_the_old_database_has(tmp_path: Path) -> None:
    want = fill(tmp_path)
    # A run the log lost (its file deleted) and a newer state written by another program.
    log = sorted((tmp_path / "raw").glob("*.ndjson"))
    with sqlite3.connect(tmp_path / DB) as con:
        con.execute(
            "INSERT INTO agent_runs (run_id, schema_version, agent_name, start_time, status, "
            "api_posted, api_retry_count, created_at, updated_at) "
            "VALUES ('gone', 3, 'old', ?, 'success', 0, 0, ?, ?)",
            (T0, T0, T0),
        )
        later = "2026-01-03T00:00:00+00:00"
        con.execute(
            "UPDATE agent_runs SET status = 'archived', updated_at = ? WHERE run_id = 'r1'",
            (later,),
        )
    with telelake.open(tmp_path, schema="agent_runs") as store:
        report = store.recover()
    assert log == sorted((tmp_path / "raw").glob("*.ndjson"))
    runs = db_runs(tmp_path / DB)
    assert runs["gone"] == ("success", None, T0)
    assert runs["r1"] == ("archived", 7, later)  # newer than anything in the log
    assert runs["r0"] == want["runs"]["r0"]
    assert report.carried == {"agent_runs": 4, "run_events": 0, "commits": 2}
    assert report.rows == {"agent_runs": 6, "run_events": 15}
    assert report.rebuilt == ["agent_runs", "run_events"]
    assert report.not_saved == [] and report.problems == []


def test_recover_saves_what_a_damaged_database_still_holds(tmp_path: Path) -> None:
    # Many commits, written last: their pages fill the end of the file, which is cut off.
    want = fill(tmp_path, commits=400)
    db = tmp_path / DB
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = db.read_bytes()
    pages = len(data) // 4096
    cut = pages * 2 // 3 * 4096  # a bad disk area: the last third of the pages is garbage
    damaged = data[:cut] + b"\xff" * (len(data) - cut)
    db.write_bytes(damaged)
    done = cli(tmp_path, "recover", "-q")  # telelake.open() would refuse the damaged file
    assert done.returncode == 0, done.stderr
    # The log rebuilds its tables whatever happened to the file.
    assert db_runs(db) == want["runs"]
    assert db_events(db) == want["events"]
    saved = db_commits(db)
    assert saved < want["commits"]  # some, never garbage, never all: the file was cut
    assert f"{len(saved)} commits" in done.stdout and saved
    err = " ".join(done.stderr.split())
    assert "not saved: commits: telemetry.corrupted." in err
    assert "is damaged" in err and "those rows are lost" in err
    assert query(db, "PRAGMA integrity_check") == [("ok",)]  # the new one is sound
    assert query(db, "PRAGMA foreign_key_check") == []
    [aside] = (tmp_path / "db").glob("telemetry.corrupted.*.sqlite")
    assert aside.read_bytes() == damaged  # kept as it was, for forensics


def test_recover_names_a_database_it_cannot_read_at_all(tmp_path: Path) -> None:
    want = fill(tmp_path)
    db = tmp_path / DB
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.write_bytes(b"\0" * 100 + db.read_bytes()[100:])  # the header is gone
    done = cli(tmp_path, "recover", "-q")
    assert done.returncode == 0, done.stderr
    assert db_runs(db) == want["runs"] and db_events(db) == want["events"]
    assert db_commits(db) == set()
    err = " ".join(done.stderr.split())
    assert "not saved: commits: telemetry.corrupted." in err
    assert "not saved: agent_runs:" in err and "rebuilt from the log only" in err


def test_a_carried_row_the_schema_refuses_is_reported_not_fatal(tmp_path: Path) -> None:
    fill(tmp_path)
    with sqlite3.connect(tmp_path / DB) as con:  # written around telelake: invalid JSON
        con.execute("UPDATE agent_runs SET metrics_json = '{oops' WHERE run_id = 'r2'")
        con.execute("PRAGMA foreign_keys = OFF")
        con.execute("INSERT INTO commits (commit_hash, run_id) VALUES ('orphan', 'nobody')")
    with telelake.open(tmp_path, schema="agent_runs") as store:
        report = store.recover()
    old, orphan = report.problems
    assert "table 'agent_runs' row 3" in old and "column 'metrics_json'" in old
    assert "table 'commits' row 3" in orphan and "'nobody' has no row in agent_runs" in orphan
    # r2's bad row could not be carried, but the log has r2: it is rebuilt from there.
    assert db_runs(tmp_path / DB)["r2"] == ("success", 7, END)
    assert report.carried == {"agent_runs": 2, "run_events": 0, "commits": 2}


# -- 2. replay into the current database -------------------------------------------------


def test_replay_fills_run_events_in_place_and_twice_changes_nothing(tmp_path: Path) -> None:
    want = fill(tmp_path)
    db = tmp_path / DB
    before = dump(db)
    assert db_events(db) == set()
    done = cli(tmp_path, "replay", "-q")
    assert done.returncode == 0, done.stderr
    assert "new rows: 0 agent_runs, 15 run_events" in done.stdout
    assert db_events(db) == want["events"]
    assert db_runs(db) == want["runs"] and db_commits(db) == want["commits"]
    after = dump(db)
    assert after[0] == before[0] and after[2] == before[2]  # runs and commits untouched
    assert list((tmp_path / "db").glob("*corrupted*")) == []  # nothing moved aside
    again = cli(tmp_path, "replay", "-q")
    assert again.returncode == 0, again.stderr
    assert "new rows: 0 agent_runs, 0 run_events" in again.stdout
    assert dump(db) == after


def test_replay_restores_a_missing_run_and_keeps_newer_rows(tmp_path: Path) -> None:
    want = fill(tmp_path)
    db = tmp_path / DB
    later = "2026-01-05T00:00:00+00:00"
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA foreign_keys = ON")
        con.execute("DELETE FROM agent_runs WHERE run_id = 'r0'")  # its commit goes too
        con.execute(
            "UPDATE agent_runs SET status = 'archived', updated_at = ? WHERE run_id = 'r1'",
            (later,),
        )
    with telelake.open(tmp_path, schema="agent_runs") as store:
        report = store.replay()
    assert report.added == {"agent_runs": 1, "run_events": 15}
    runs = db_runs(db)
    assert runs["r0"] == want["runs"]["r0"]
    assert runs["r1"] == ("archived", 7, later)


def test_replay_of_a_damaged_database_says_to_recover(tmp_path: Path) -> None:
    fill(tmp_path)
    db = tmp_path / DB
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = db.read_bytes()
    db.write_bytes(data[:4096] + b"\xff" * (len(data) - 4096))  # every page but the first
    done = cli(tmp_path, "replay", "-q")
    assert done.returncode == 1
    assert "the database is damaged" in done.stderr and "telelake recover" in done.stderr
    assert db.read_bytes()[4096:] == b"\xff" * (len(data) - 4096)  # left as it was


AGENT = """
import sys, telelake
with telelake.open(sys.argv[1], schema="agent_runs") as store:
    run = store.run_client().start_run("indexer", run_id="killed")
    print("started", flush=True)
    n = 0
    while True:
        run.event("step", {"n": n})
        print(n, flush=True)  # acknowledged: event() returned, the line is fsynced
        n += 1
"""


def test_events_acknowledged_before_kill_9_are_all_replayed(tmp_path: Path) -> None:
    agent = subprocess.Popen(
        [sys.executable, "-c", AGENT, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert agent.stdout is not None
    acknowledged = []
    assert agent.stdout.readline().strip() == "started"
    deadline = time.monotonic() + 60
    while len(acknowledged) < 50 and time.monotonic() < deadline:
        acknowledged.append(int(agent.stdout.readline()))
    os.kill(agent.pid, signal.SIGKILL)
    agent.wait()
    acknowledged += [int(x) for x in agent.stdout.read().split()]  # printed before the kill
    with telelake.open(tmp_path, schema="agent_runs") as store:
        report = store.replay()
    got = query(tmp_path / DB, "SELECT payload_json FROM run_events WHERE run_id = 'killed'")
    numbers = {json.loads(p)["n"] for (p,) in got}
    assert set(acknowledged) <= numbers  # every acknowledged event, maybe one more
    assert numbers <= set(range(max(acknowledged) + 2))
    assert db_runs(tmp_path / DB)["killed"][0] == "running"
    assert all("truncated last line" in p for p in report.problems)


# -- 3. logs of other clients of spec 003 --------------------------------------------------


def other_client_log(raw: Path) -> dict[str, Any]:
    """Lines as another spec-003 client may write them: fields at the top level, numbers
    in strings, booleans, columns left out; events in a file sorting before their runs."""
    with telelake.open(raw.parent, schema="agent_runs"):
        pass  # an empty store: its folders
    runs = [
        {  # the run's start, then its end: the end must win
            "record_type": "run",
            "run_id": "o1",
            "schema_version": "3",
            "agent_name": "crawler",
            "start_time": "2026-02-01T00:00:00Z",
            "status": "running",
            "host": "box",
        },
        {
            "record_type": "run",
            "run_id": "o1",
            "schema_version": "3",
            "agent_name": "crawler",
            "start_time": "2026-02-01T00:00:00Z",
            "end_time": "2026-02-01T00:10:00Z",
            "status": "success",
            "items_discovered": "120",
            "duration_ms": 600000,
            "api_posted": True,
            "api_retry_count": "2",
            "host": "box",
        },
        {  # telelake's own shape, in the same file
            "record_type": "run",
            "payload": run("o2", "success", END, items_succeeded=4),
        },
    ]
    events = [
        {
            "record_type": "event",
            "run_id": "o1",
            "event_type": "fetched",
            "timestamp": f"2026-02-01T00:0{n}:00Z",
            "payload_json": json.dumps({"n": n}),
        }
        for n in range(3)
    ]
    # "activity..." sorts before "runs...": its events arrive before their run exists.
    (raw / "activity.ndjson").write_text("".join(json.dumps(e) + "\n" for e in events))
    (raw / "runs.ndjson").write_text("".join(json.dumps(r) + "\n" for r in runs))
    return {
        "o1": (
            "2026-02-01T00:00:00Z",  # created_at: the start
            "2026-02-01T00:10:00Z",  # updated_at: the end
            3,
            "success",
            120,
            1,
            2,
        ),
        "o2": (T0, END, 3, "success", None, 0, 0),
        "events": {("o1", "fetched", e["timestamp"], e["payload_json"]) for e in events},
    }


def test_a_log_written_by_another_client_of_the_spec_replays(tmp_path: Path) -> None:
    want = other_client_log(tmp_path / "raw")
    done = cli(tmp_path, "recover", "-q")
    assert done.returncode == 0, done.stderr
    assert "skipped" not in done.stderr
    assert "also replayed: activity.ndjson, runs.ndjson" in done.stdout
    rows = query(
        tmp_path / DB,
        "SELECT run_id, created_at, updated_at, schema_version, status, items_discovered, "
        "api_posted, api_retry_count FROM agent_runs",
    )
    assert {r[0]: r[1:] for r in rows} == {"o1": want["o1"], "o2": want["o2"]}
    events = query(
        tmp_path / DB, "SELECT run_id, event_type, timestamp, payload_json FROM run_events"
    )
    assert set(events) == want["events"]
    types = query(
        tmp_path / DB, "SELECT typeof(schema_version), typeof(api_posted) FROM agent_runs"
    )
    assert set(types) == {("integer", "integer")}


def test_unusable_lines_are_named_by_file_line_and_reason(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    with telelake.open(tmp_path, schema="agent_runs"):
        pass
    good = {"record_type": "run", **{k: v for k, v in run("ok").items()}}
    lines = [
        good,
        {**good, "run_id": "a", "schema_version": "3.0"},  # not lossless for an integer
        {**good, "run_id": "b", "api_posted": "yes"},
        {k: v for k, v in {**good, "run_id": "c"}.items() if k != "status"},  # no default
        {"record_type": "event", "payload": "not an object"},
        {"record_type": "audit", "x": 1},
        {**good, "run_id": "d", "api_posted": 2},  # enum [0, 1]
    ]
    (raw / "events_20260102.ndjson").write_text(
        "".join(json.dumps(x) + "\n" for x in lines) + '{"record_type": "run", "ru'
    )
    (raw / ".partial.ndjson").write_text(json.dumps(good) + "\n")
    (raw / "dir.ndjson").mkdir()
    with telelake.open(tmp_path, schema="agent_runs") as store:
        report = store.replay()
    assert db_runs(tmp_path / DB) == {"ok": ("running", None, T0)}
    f = "events_20260102.ndjson"
    by_line = {p.split(":", 1)[0]: p for p in report.problems}
    assert sorted(by_line) == [f"{f} line {n}" for n in (2, 3, 4, 5, 6, 7, 8)]
    assert "column 'schema_version': '3.0' is not a whole number" in by_line[f"{f} line 2"]
    assert "column 'api_posted'" in by_line[f"{f} line 3"]
    assert "column 'status', row 0: missing value" in by_line[f"{f} line 4"]
    # An event whose payload is no object is read as a top-level line: no run_id.
    assert "column 'run_id'" in by_line[f"{f} line 5"]
    assert "unknown record_type 'audit'" in by_line[f"{f} line 6"]
    assert "column 'api_posted', row 0: 2 is not one of [0, 1]" in by_line[f"{f} line 7"]
    assert "truncated last line" in by_line[f"{f} line 8"]
    assert report.skipped_files == [
        ".partial.ndjson: hidden (a temp file), not replayed",
        "dir.ndjson: not a regular file, not replayed",
    ]
    assert report.ignored_fields == {"event.payload": 1}  # the audit line is not read at all


def test_an_unreadable_log_file_is_reported_and_the_others_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(tmp_path)
    locked = tmp_path / "raw" / "zz_other.ndjson"
    locked.write_text(json.dumps({"record_type": "run", **run("z")}) + "\n")
    real_open = open

    def no_permission(path: Any, *args: Any, **kw: Any) -> Any:  # as chmod 0 (tests run as root)
        if Path(path).name == locked.name:
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kw)

    monkeypatch.setattr(ndjson, "open", no_permission, raising=False)
    with telelake.open(tmp_path, schema="agent_runs") as store:
        report = store.replay()
    assert report.added == {"agent_runs": 0, "run_events": 15}
    assert report.problems == [f"zz_other.ndjson: log {locked}: cannot read (Permission denied)"]
