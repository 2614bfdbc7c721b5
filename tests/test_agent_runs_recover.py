"""agent_runs: the NDJSON raw log, and `telelake recover` rebuilding the database from it."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import telelake

T0 = "2026-01-02T03:04:05+00:00"


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
        "payload_json": json.dumps({"n": n, "text": 'a "quoted",\nline'}),
    }


def fill(root: Path) -> tuple[dict[str, tuple[Any, ...]], set[tuple[Any, ...]]]:
    """Write 3 runs with events and an end; return what the database must hold."""
    with telelake.open(root, schema="agent_runs") as store:
        for r in ("r1", "r2", "r3"):
            store.write("agent_runs", [run(r)])
            for n in range(5):
                store.write("events", [event(r, n)])
            store.write(
                "agent_runs",
                [run(r, "success", "2026-01-02T04:00:00+00:00", items_succeeded=7)],
            )
        store.write("agent_runs", [run("r1", "running", "2026-01-02T03:30:00+00:00")])  # late
    runs = {r: ("success", 7, "2026-01-02T04:00:00+00:00") for r in ("r1", "r2", "r3")}
    events = {(r, "progress", event(r, n)["timestamp"]) for r in runs for n in range(5)}
    return runs, events


def db_runs(path: Path) -> dict[str, tuple[Any, ...]]:
    con = sqlite3.connect(path)
    rows = con.execute("SELECT run_id, status, items_succeeded, updated_at FROM agent_runs")
    return {r[0]: tuple(r[1:]) for r in rows}


def db_events(path: Path) -> set[tuple[Any, ...]]:
    con = sqlite3.connect(path)
    return set(con.execute("SELECT run_id, event_type, timestamp FROM run_events"))


def log_lines(root: Path) -> list[dict[str, Any]]:
    return [
        json.loads(x)
        for f in sorted((root / "raw").glob("*.ndjson"))
        for x in f.read_text().splitlines()
    ]


def test_runs_go_to_log_and_database_events_to_the_log_only(tmp_path: Path) -> None:
    runs, _ = fill(tmp_path)
    db = tmp_path / "db" / "telemetry.sqlite"
    assert db_runs(db) == runs
    assert db_events(db) == set()  # NDJSON-only by design
    lines = log_lines(tmp_path)
    kinds = [x["record_type"] for x in lines]
    assert kinds.count("run") == 7 and kinds.count("event") == 15
    assert lines[1]["payload"] == event("r1", 0)


def test_a_rejected_run_is_neither_stored_nor_logged(tmp_path: Path) -> None:
    with (
        telelake.open(tmp_path, schema="agent_runs") as store,
        pytest.raises(telelake.ValidationError),
    ):
        store.write("agent_runs", [run("r1", api_posted=2)])  # CHECK (api_posted IN (0,1))
    assert log_lines(tmp_path) == []


@pytest.mark.parametrize("damage", ["truncate", "header"])
def test_recover_rebuilds_a_corrupt_database_from_the_log(tmp_path: Path, damage: str) -> None:
    runs, events = fill(tmp_path)
    db = tmp_path / "db" / "telemetry.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3] if damage == "truncate" else b"\0" * 100 + data[100:])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "telelake",
            "recover",
            "--root",
            str(tmp_path),
            "--schema",
            "agent_runs",
            "-q",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "moved the old database aside" in done.stdout
    assert db_runs(db) == runs
    assert db_events(db) == events
    aside = list((tmp_path / "db").glob("telemetry.corrupted.*.sqlite"))
    damaged = data[: len(data) // 3] if damage == "truncate" else b"\0" * 100 + data[100:]
    assert [p.read_bytes() for p in aside] == [damaged]  # kept as it was, for forensics


def test_replaying_twice_gives_the_same_database_and_skips_a_torn_line(tmp_path: Path) -> None:
    runs, events = fill(tmp_path)
    log = sorted((tmp_path / "raw").glob("*.ndjson"))[-1]
    with log.open("ab") as f:
        f.write(b'{"record_type": "event", "payload": {"run_id": "r1", "ev')  # killed mid-append
    dumps = []
    for _ in range(2):
        with telelake.open(tmp_path, schema="agent_runs") as store:
            report = store.recover()
        assert report.problems == [f"{log.name} line 23: truncated last line (no newline)"]
        con = sqlite3.connect(tmp_path / "db" / "telemetry.sqlite")
        dumps.append(
            [
                list(con.execute(f"SELECT * FROM {t} ORDER BY 1"))
                for t in ("agent_runs", "run_events", "commits")
            ]
        )
    assert dumps[0] == dumps[1]
    assert db_runs(tmp_path / "db" / "telemetry.sqlite") == runs
    assert db_events(tmp_path / "db" / "telemetry.sqlite") == events


def bad_line_numbers(path: Path) -> list[int]:
    """The numbers of the non-blank lines of `path` that are not JSON objects."""
    out = []
    for number, text in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not text.strip():
            continue
        try:
            ok = isinstance(json.loads(text), dict)
        except ValueError:
            ok = False
        if not ok:
            out.append(number)
    return out


def test_check_reports_the_logs_torn_lines_and_recover_exits_3(tmp_path: Path) -> None:
    runs, events = fill(tmp_path)
    log = sorted((tmp_path / "raw").glob("*.ndjson"))[-1]
    with log.open("ab") as f:
        f.write(b"[1, 2]\n")  # JSON, but not a record
        f.write(b'{"record_type": "event", "payload": {"run_id": "r1", "ev')  # killed mid-append
    with telelake.open(tmp_path, schema="agent_runs") as store:
        report = store.check()
    found = [(f.path, f.problem.split(":")[0]) for f in report.findings if f.kind == "log"]
    assert found == [(log, f"line {n}") for n in bad_line_numbers(log)]
    assert len(found) == 2 and not report.ok

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        root = ["--root", str(tmp_path), "--schema", "agent_runs"]
        command = [sys.executable, "-m", "telelake", *args, *root]
        return subprocess.run(command, capture_output=True, text=True)

    checked = cli("check")
    assert checked.returncode == 1 and "2 problem(s) found" in checked.stderr
    assert "--repair" not in checked.stderr  # it would not change the log
    done = cli("recover", "-q")
    assert done.returncode == 3, done.stderr
    assert "skipped" in done.stderr and "Traceback" not in done.stderr
    db = tmp_path / "db" / "telemetry.sqlite"
    assert db_runs(db) == runs and db_events(db) == events  # rebuilt all the same
