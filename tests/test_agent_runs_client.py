"""The run client: runs and events, API posting against a real local HTTP server, repost."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import telelake
from telelake import runs


class Api:
    """A real HTTP server on 127.0.0.1 that fails the first `fail` requests with 500."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.received: list[dict[str, Any]] = []
        self.requests = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                api.requests += 1
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if api.requests <= api.fail:
                    self.send_response(500)
                else:
                    api.received.append(body)
                    self.send_response(201)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/runs"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api() -> Iterator[Api]:
    server = Api()
    yield server
    server.close()


def db_row(root: Path, run_id: str) -> dict[str, Any]:
    con = sqlite3.connect(root / "db" / "telemetry.sqlite")
    con.row_factory = sqlite3.Row
    return dict(con.execute("SELECT * FROM agent_runs WHERE run_id = ?", (run_id,)).fetchone())


def test_a_run_with_events_ends_in_the_database_and_the_log(tmp_path: Path) -> None:
    with telelake.open(tmp_path, schema="agent_runs") as store:
        client = store.run_client()
        with client.start_run("indexer", job_type="nightly", run_id="r1") as run:
            run.event("fetched", {"items": 3})
            run.event("done")
        with pytest.raises(ZeroDivisionError), client.start_run("indexer", run_id="r2"):
            raise ZeroDivisionError("division by zero")
    one, two = db_row(tmp_path, "r1"), db_row(tmp_path, "r2")
    assert (one["status"], one["job_type"], one["api_posted"]) == ("success", "nightly", 0)
    assert one["end_time"] >= one["start_time"] and one["duration_ms"] >= 0
    assert (two["status"], two["error_summary"]) == (
        "failure",
        "ZeroDivisionError: division by zero",
    )
    lines = [
        json.loads(x)
        for f in (tmp_path / "raw").glob("*.ndjson")
        for x in f.read_text().splitlines()
    ]
    events = [x["payload"] for x in lines if x["record_type"] == "event"]
    assert [(e["run_id"], e["event_type"], e["payload_json"]) for e in events] == [
        ("r1", "fetched", '{"items": 3}'),
        ("r1", "done", None),
    ]


def log_events(root: Path) -> list[dict[str, Any]]:
    lines = [
        json.loads(x) for f in (root / "raw").glob("*.ndjson") for x in f.read_text().splitlines()
    ]
    return [x["payload"] for x in lines if x["record_type"] == "event"]


def test_payloads_json_cannot_hold_are_refused_naming_the_column(tmp_path: Path) -> None:
    at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    with telelake.open(tmp_path, schema="agent_runs") as store:
        run = store.run_client().start_run("indexer", run_id="r1")
        run.event("dated", {"at": at, "day": at.date()})
        for bad in ({"x": object()}, {"p": float("nan")}, {(1, 2): "tuple key"}):
            with pytest.raises(telelake.ValidationError) as info:
                run.event("bad", bad)
            assert (info.value.table, info.value.column) == ("events", "payload_json")
            assert "agent_runs" in str(info.value) and "nothing was written" in str(info.value)
        with pytest.raises(telelake.ValidationError) as info:
            run.end("success", metrics={"f": float("inf")})
        assert (info.value.table, info.value.column) == ("agent_runs", "metrics_json")
        assert not run.ended
    events = log_events(tmp_path)
    assert [(e["event_type"], json.loads(e["payload_json"])) for e in events] == [
        ("dated", {"at": "2026-01-02T03:04:05+00:00", "day": "2026-01-02"})
    ]
    assert db_row(tmp_path, "r1")["status"] == "running"


def test_end_posts_the_run_and_records_it(tmp_path: Path, api: Api) -> None:
    with telelake.open(tmp_path, schema="agent_runs") as store:
        run = store.run_client(api.url, backoff=0.01).start_run("indexer", run_id="r1")
        run.end("success", items_succeeded=5, metrics={"pages": 12})
    row = db_row(tmp_path, "r1")
    assert (row["api_posted"], row["api_retry_count"]) == (1, 0)
    assert row["api_posted_at"] is not None
    assert [
        (r["run_id"], r["items_succeeded"], json.loads(r["metrics_json"])) for r in api.received
    ] == [("r1", 5, {"pages": 12})]


def test_retries_with_backoff_then_posts(tmp_path: Path) -> None:
    server = Api(fail=2)
    try:
        with telelake.open(tmp_path, schema="agent_runs") as store:
            store.run_client(server.url, backoff=0.01, attempts=3).start_run("a", run_id="r1").end()
    finally:
        server.close()
    row = db_row(tmp_path, "r1")
    assert (row["api_posted"], row["api_retry_count"], server.requests) == (1, 2, 3)


def test_a_failed_post_keeps_the_run_and_repost_sends_it_later(tmp_path: Path, api: Api) -> None:
    down = "http://127.0.0.1:9/runs"  # the discard port: nothing listens
    with telelake.open(tmp_path, schema="agent_runs") as store:
        store.run_client(down, backoff=0.01, attempts=2).start_run("a", run_id="r1").end()
        store.run_client(down, backoff=0.01, attempts=2).start_run("a", run_id="r2")  # running
    row = db_row(tmp_path, "r1")
    assert (row["status"], row["api_posted"], row["api_retry_count"]) == ("success", 0, 2)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "telelake",
            "runs",
            "repost",
            "--api-url",
            api.url,
            "--root",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "posted 1 run(s)" in done.stdout
    assert [r["run_id"] for r in api.received] == ["r1"]  # r2 has not ended: not posted
    row = db_row(tmp_path, "r1")
    assert (row["api_posted"], row["api_retry_count"]) == (1, 2)


def test_posting_markers_survive_recovery(tmp_path: Path, api: Api) -> None:
    with telelake.open(tmp_path, schema="agent_runs") as store:
        store.run_client(api.url).start_run("a", run_id="r1").end()
        before = db_row(tmp_path, "r1")
        store.recover()
    assert db_row(tmp_path, "r1") == before


def test_threads_of_one_store_append_whole_lines(tmp_path: Path) -> None:
    with telelake.open(tmp_path, schema="agent_runs") as store:
        client = store.run_client()
        runs = [client.start_run("t", run_id=f"r{i}") for i in range(4)]

        def work(run: Any) -> None:
            for n in range(50):
                run.event("tick", {"n": n, "pad": "y" * 500})

        threads = [threading.Thread(target=work, args=(r,)) for r in runs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    files = list((tmp_path / "raw").glob("*.ndjson"))
    assert len(files) == 1  # one writer, one file
    events = [json.loads(x)["payload"] for x in files[0].read_text().splitlines()]
    events = [e for e in events if e.get("event_type") == "tick"]
    for i in range(4):
        mine = [json.loads(e["payload_json"])["n"] for e in events if e["run_id"] == f"r{i}"]
        assert mine == list(range(50))


def test_what_is_posted_is_the_redacted_record(tmp_path: Path, api: Api) -> None:
    token = "ghp_" + "A1b2C3d4E5" * 4  # a GitHub token shape
    with telelake.open(tmp_path / "s", schema="agent_runs") as store:
        run = store.run_client(api.url, backoff=0.01).start_run(
            "indexer", run_id="r1", git_repo=f"https://x:{token}@github.com/o/r.git"
        )
        run.end("failure", error_summary=f"push failed with GH_TOKEN={token}")
    (posted,) = api.received
    assert token not in json.dumps(posted)
    assert "[REDACTED:pattern:" in posted["git_repo"]
    assert "[REDACTED:pattern:" in posted["error_summary"]
    assert db_row(tmp_path / "s", "r1")["error_summary"] == posted["error_summary"]


@settings(max_examples=300, deadline=None)
@given(
    at=st.datetimes(
        min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59, 999999)
    ),
    before=st.integers(min_value=-(10**6), max_value=10**6),
)
def test_event_timestamps_are_what_datetime_isoformat_writes(at: dt.datetime, before: int) -> None:
    # iso_utc remembers the last second it formatted: format a nearby time first.
    epoch = dt.datetime(1970, 1, 1)
    micros = (at - epoch) // dt.timedelta(microseconds=1)
    near = max(micros + before, (dt.datetime(1, 1, 1) - epoch) // dt.timedelta(microseconds=1))
    for m in (near, micros):
        expected = (epoch + dt.timedelta(microseconds=m)).replace(tzinfo=dt.UTC)
        assert runs.iso_utc(m) == expected.isoformat(timespec="microseconds")
