"""agent_runs benchmarks (issue 6): the NDJSON raw log and recovery by replay.

1. `run.event()` with an fsync per entry against the raw peer: `os.write` of a 300-byte
   line to a file opened with O_APPEND, then `os.fsync`, in the same run, interleaved in
   rounds so both see the same disk. Target: event() >= 0.8x the raw rate.
2. `store.recover()` replaying 1,000,000 events (and their runs) from NDJSON against
   `executemany` of the same event rows (ready tuples) into run_events of a fresh
   database with the same DDL and pragmas. Report the ratio.
3. `store.replay()` (`telelake replay`) of the same log into the current database of
   another store: once into an empty run_events (the fill), once more with every row
   there already (the idempotent re-run), against the same executemany.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import telelake
from bench.report import INFO, Line, Progress, quiet, rate, ratio_line
from telelake.log import ndjson
from telelake.schema.load import load_schema
from telelake.sql.ddl import schema_up

EVENT_MIN = 0.8
EVENTS, QUICK_EVENTS = 6000, 400  # fsynced appends per side
ROUNDS = 20  # interleaved, so both sides see the same disk; more rounds, steadier ratio
REPLAY, QUICK_REPLAY = 1_000_000, 100_000
EVENTS_PER_RUN = 1000


@dataclass
class AgentRunsBench:
    """Both measurements."""

    appends: int
    raw_seconds: float
    event_seconds: float
    line_bytes: int
    replay_rows: int
    replay_seconds: float
    executemany_seconds: float
    replay_problems: int
    fill_seconds: float = 0.0
    rerun_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _payload(line_bytes: int) -> str:
    """A payload_json that makes the event's NDJSON line about `line_bytes` long."""
    probe = ndjson.encode(
        {
            "record_type": "event",
            "payload": {
                "run_id": "00000000-0000-0000-0000-000000000000",
                "event_type": "progress",
                "timestamp": "2026-01-01T00:00:00.000000+00:00",
                "payload_json": json.dumps({"note": ""}),
            },
        }
    )
    return json.dumps({"note": "x" * max(0, line_bytes - len(probe))})


def appends(work: Path, n: int, progress: Progress) -> tuple[float, float, int]:
    """Seconds for n raw appends+fsync and n run.event() calls, interleaved by rounds."""
    payload = json.loads(_payload(300))
    line = b"x" * 299 + b"\n"
    raw_path = work / "raw.ndjson"
    fd = os.open(raw_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    raw = event = 0.0
    with telelake.open(work / "store", schema="agent_runs") as store:
        run = store.run_client().start_run("bench")
        run.event("warm-up", payload)
        per_round = max(1, n // ROUNDS)
        for r in range(ROUNDS):
            order = (0, 1) if r % 2 == 0 else (1, 0)
            for side in order:
                start = time.perf_counter()
                if side == 0:
                    for _ in range(per_round):
                        os.write(fd, line)
                        os.fsync(fd)
                    raw += time.perf_counter() - start
                else:
                    for _ in range(per_round):
                        run.event("progress", payload)
                    event += time.perf_counter() - start
        run.end()
        logs = ndjson.files(work / "store" / "raw")
        sizes = [len(x) for x in logs[-1].read_bytes().splitlines()]
    os.close(fd)
    progress("agent_runs: appends", raw + event, f"{per_round * ROUNDS:,} each")
    return raw, event, int(sorted(sizes)[len(sizes) // 2]) + 1


def replay(work: Path, n: int, progress: Progress) -> tuple[float, float, int, float, float]:
    """Seconds to recover() n events from NDJSON, to executemany the same rows, and to
    replay() them into a current database (filling it, then again); problems seen."""
    root = work / "replay"
    with telelake.open(root, schema="agent_runs"):
        pass
    start_time = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    runs, events = [], []
    for r in range(max(1, n // EVENTS_PER_RUN)):
        at = (start_time + dt.timedelta(minutes=r)).isoformat(timespec="microseconds")
        run_id = f"run-{r:07d}"
        runs.append(
            {
                "run_id": run_id,
                "schema_version": 3,
                "agent_name": "bench",
                "start_time": at,
                "status": "success",
                "api_posted": 0,
                "api_retry_count": 0,
                "created_at": at,
                "updated_at": at,
            }
        )
        for e in range(EVENTS_PER_RUN):
            stamp = (start_time + dt.timedelta(minutes=r, milliseconds=e)).isoformat(
                timespec="microseconds"
            )
            events.append((run_id, "progress", stamp, json.dumps({"i": e})))
    events = events[:n]
    log = ndjson.daily_path(root / "raw", start_time)
    with ndjson.LogWriter(log) as writer:
        for r, run in enumerate(runs):
            writer.append_many(
                [{"record_type": "run", "payload": run}]
                + [
                    {
                        "record_type": "event",
                        "payload": dict(
                            zip(
                                ("run_id", "event_type", "timestamp", "payload_json"),
                                e,
                                strict=True,
                            )
                        ),
                    }
                    for e in events[r * EVENTS_PER_RUN : (r + 1) * EVENTS_PER_RUN]
                ]
            )
    with telelake.open(root, schema="agent_runs") as store:
        start = time.perf_counter()
        report = store.recover()
        replay_seconds = time.perf_counter() - start
    # Another store reading the same log file (linked, not copied) with an empty database.
    other = work / "replay_current"
    with telelake.open(other, schema="agent_runs") as store:
        os.link(log, other / "raw" / log.name)
        start = time.perf_counter()
        filled = store.replay()
        fill_seconds = time.perf_counter() - start
        start = time.perf_counter()
        again = store.replay()
        rerun_seconds = time.perf_counter() - start
    assert filled.added["run_events"] == len(events) and again.added["run_events"] == 0
    peer = sqlite3.connect(work / "peer.sqlite", isolation_level=None)
    for pragma in ("journal_mode = WAL", "foreign_keys = ON", "synchronous = NORMAL"):
        peer.execute(f"PRAGMA {pragma}")
    peer.executescript(schema_up(load_schema("agent_runs")))
    names = list(runs[0])
    peer.execute("BEGIN")
    peer.executemany(
        f"INSERT INTO agent_runs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
        [tuple(r[k] for k in names) for r in runs],
    )
    peer.execute("COMMIT")
    start = time.perf_counter()
    for i in range(0, len(events), 5000):
        peer.execute("BEGIN")
        peer.executemany(
            "INSERT OR IGNORE INTO run_events (run_id, event_type, timestamp, payload_json) "
            "VALUES (?, ?, ?, ?)",
            events[i : i + 5000],
        )
        peer.execute("COMMIT")
    peer_seconds = time.perf_counter() - start
    peer.close()
    progress("agent_runs: replay", replay_seconds + fill_seconds, f"{len(events):,} events")
    problems = len(report.problems) + len(filled.problems) + len(again.problems)
    return replay_seconds, peer_seconds, problems, fill_seconds, rerun_seconds


def run(work: Path, quick: bool = False, progress: Progress = quiet) -> AgentRunsBench:
    """Both benchmarks under `work`."""
    n_app = QUICK_EVENTS if quick else EVENTS
    n_rep = QUICK_REPLAY if quick else REPLAY
    (work / "appends").mkdir()
    raw, event, size = appends(work / "appends", n_app, progress)
    replay_s, peer_s, problems, fill_s, rerun_s = replay(work, n_rep, progress)
    per_round = max(1, n_app // ROUNDS) * ROUNDS
    return AgentRunsBench(
        per_round, raw, event, size, n_rep, replay_s, peer_s, problems, fill_s, rerun_s
    )


def lines(b: AgentRunsBench) -> list[Line]:
    """The rows of the final table."""
    details = b.as_dict()
    return [
        ratio_line(
            f"run.event() with fsync per entry (~{b.line_bytes} B lines)",
            b.appends / b.event_seconds,
            "raw append+fsync, 300 B",
            b.appends / b.raw_seconds,
            EVENT_MIN,
            details,
        ),
        Line(
            f"recover: replay {b.replay_rows:,} events from NDJSON",
            rate(b.replay_rows / b.replay_seconds),
            f"executemany: {rate(b.replay_rows / b.executemany_seconds)}",
            b.executemany_seconds / b.replay_seconds,
            status=INFO,
            details=details,
        ),
        Line(
            f"replay into the current database: {b.replay_rows:,} events, then again",
            f"{rate(b.replay_rows / b.fill_seconds)}; "
            f"again (all there): {rate(b.replay_rows / b.rerun_seconds)}",
            f"executemany: {rate(b.replay_rows / b.executemany_seconds)}",
            b.executemany_seconds / b.fill_seconds,
            status=INFO,
            details=details,
        ),
    ]
