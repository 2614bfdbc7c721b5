"""The read API of spec 001 (search_latency_window, open_alerts, resource_timeline), its
CLI, and retention of the search_ops tables, each against a brute-force expectation.

Expected rows are computed in plain Python from what the test wrote (or, for the
summaries, from the table read with sqlite3 directly); retention cutoffs from `now` by
hand. Nothing is compared against the code under test.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import telelake
import telelake.sql.tier
from opsdata import (
    BASE_MS,
    MS_PER_DAY,
    WINDOWS,
    connect,
    db_rows,
    event_row,
    random_events,
    setup_fleet,
    to_ms,
)

FLEET = {"p1": ["i1", "i2"], "p2": ["i3"]}
GROUPS = [("p1", "i1"), ("p1", "i2"), ("p2", "i3")]
HOUR = 3_600_000
LATENCY_COLUMNS = [
    "window_start_ms",
    "p50_latency_us",
    "p95_latency_us",
    "p99_latency_us",
    "search_count",
]
ALERT_COLUMNS = [
    "alert_id",
    "severity",
    "category",
    "reason_code",
    "summary",
    "opened_at_ms",
    "updated_at_ms",
]
RESOURCE_COLUMNS = [
    "ts_ms",
    "cpu_pct",
    "rss_bytes",
    "io_read_bytes",
    "io_write_bytes",
    "queue_depth",
]


def open_ops(root: Path) -> telelake.Store:
    return telelake.open(root, schema="search_ops")


# -- data -------------------------------------------------------------------------------------


def alert_row(alert_id: str, project: str, state: str, opened: int, updated: int, **over: Any):
    row: dict[str, Any] = {
        "alert_id": alert_id,
        "project_key": project,
        "instance_id": None,
        "category": "latency",
        "severity": "warn",
        "reason_code": "p95_high",
        "summary": f"{alert_id} at {updated}",
        "state": state,
        "opened_at_ms": opened,
        "updated_at_ms": updated,
        "resolved_at_ms": updated if state == "resolved" else None,
    }
    row.update(over)
    return row


def alert_history(rng: random.Random, n: int) -> list[list[dict[str, Any]]]:
    """Upsert batches for n alerts: each moves open -> acknowledged -> resolved (or stops
    earlier) with increasing updated_at_ms; stale updates (older updated_at_ms) arrive
    later; some alerts end at the same updated_at_ms (ties)."""
    per_alert = []
    for k in range(n):
        aid = f"a{k:02d}"
        project = "p1" if k % 4 else "p2"
        opened = BASE_MS + rng.randrange(10 * MS_PER_DAY)
        states = ["open", "acknowledged", "resolved"][: rng.randint(1, 3)]
        t = opened
        updates = []
        for state in states:
            updates.append(
                alert_row(
                    aid,
                    project,
                    state,
                    opened,
                    t,
                    severity=rng.choice(["info", "warn", "error", "critical"]),
                    category=rng.choice(["latency", "index", "embedding"]),
                    reason_code=f"r{rng.randrange(5)}",
                )
            )
            t += rng.randint(1, 2 * HOUR)
        if k % 5 == 0:  # ties on the final updated_at_ms
            updates[-1] = dict(updates[-1], updated_at_ms=BASE_MS + 20 * MS_PER_DAY)
        stale = dict(updates[0], state="open", summary="stale", updated_at_ms=opened - 1)
        per_alert.append([*updates, stale] if rng.random() < 0.6 else updates)
    # Interleave the alerts' updates, each alert's own in order, into random batches.
    queue = [u for ups in per_alert for u in ups]
    order: list[dict[str, Any]] = []
    cursors = [0] * n
    while len(order) < len(queue):
        k = rng.randrange(n)
        if cursors[k] < len(per_alert[k]):
            order.append(per_alert[k][cursors[k]])
            cursors[k] += 1
    batches, i = [], 0
    while i < len(order):
        size = rng.randint(1, 8)
        batches.append(order[i : i + size])
        i += size
    return batches


def final_alerts(batches: list[list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The upsert rule of the schema: a write wins unless it is older (updated_at_ms)."""
    state: dict[str, dict[str, Any]] = {}
    for batch in batches:
        for row in batch:
            cur = state.get(row["alert_id"])
            if cur is None:
                state[row["alert_id"]] = dict(row)
            elif row["updated_at_ms"] >= cur["updated_at_ms"]:
                state[row["alert_id"]] = dict(row, opened_at_ms=cur["opened_at_ms"])
    return state


def sample_row(project: str, instance: str, ts: int, rng: random.Random) -> dict[str, Any]:
    def maybe(v: Any) -> Any:
        return None if rng.random() < 0.15 else v

    return {
        "project_key": project,
        "instance_id": instance,
        "cpu_pct": maybe(round(rng.uniform(0, 400), 3)),
        "rss_bytes": maybe(rng.randrange(10**10)),
        "io_read_bytes": maybe(rng.randrange(10**9)),
        "io_write_bytes": maybe(rng.randrange(10**9)),
        "queue_depth": maybe(rng.randrange(100)),
        "ts_ms": ts,
    }


class Fleet:
    """A search_ops store filled once per module, and what was written to it."""

    def __init__(self, root: Path) -> None:
        rng = random.Random(2024)
        self.root = root
        self.events = random_events(rng, 700, GROUPS, BASE_MS - HOUR, 12 * MS_PER_DAY, "e")
        self.alert_batches = alert_history(rng, 24)
        self.samples: list[list[dict[str, Any]]] = []
        for _ in range(3):
            batch = [
                sample_row(p, i, BASE_MS + rng.randrange(0, 2 * MS_PER_DAY, 1000), rng)
                for _ in range(60)
                for p, i in [rng.choice(GROUPS)]
            ]
            self.samples.append(batch)
        # Retried samples (same project, instance, ts_ms) with other values: ignored.
        retries = [
            sample_row(r["project_key"], r["instance_id"], r["ts_ms"], rng)
            for r in self.samples[0][:10]
        ]
        self.samples.append(retries)
        with open_ops(root) as store:
            setup_fleet(store, FLEET)
            for k in range(0, len(self.events), 150):
                store.write("search_events", self.events[k : k + 150])
            for batch in self.alert_batches:
                store.write("alerts_timeline", batch)
            for batch in self.samples:
                store.write("resource_samples", batch)

    def kept_samples(self) -> dict[tuple[str, str, int], dict[str, Any]]:
        kept: dict[tuple[str, str, int], dict[str, Any]] = {}
        for batch in self.samples:
            for r in batch:
                kept.setdefault((r["project_key"], r["instance_id"], r["ts_ms"]), r)
        return kept


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return Fleet(tmp_path_factory.mktemp("read-api") / "ops")


@pytest.fixture(scope="module")
def store(fleet: Fleet) -> Iterator[telelake.Store]:
    with open_ops(fleet.root) as s:
        yield s


def summaries_table(root: Path) -> list[dict[str, Any]]:
    con = connect(root)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM search_summaries")]
    finally:
        con.close()


# -- search_latency_window --------------------------------------------------------------------


def expected_latency(
    table: list[dict[str, Any]], project: str, instance: str, window: str, start: int, end: int
) -> list[tuple[Any, ...]]:
    rows = [
        r
        for r in table
        if r["project_key"] == project
        and r["instance_id"] == instance
        and r["window"] == window
        and start <= r["window_start_ms"] <= end
    ]
    rows.sort(key=lambda r: r["window_start_ms"])
    return [tuple(r[c] for c in LATENCY_COLUMNS) for r in rows]


def test_search_latency_window_edges(fleet: Fleet, store: telelake.Store) -> None:
    table = summaries_table(fleet.root)
    assert len(table) > 100
    for window in WINDOWS:
        starts = sorted(
            {
                r["window_start_ms"]
                for r in table
                if r["window"] == window and r["instance_id"] == "i1"
            }
        )
        assert starts
        lo, hi = starts[0], starts[-1]
        mid = starts[len(starts) // 2]
        ranges = [(lo, hi), (lo, lo), (hi, hi), (lo + 1, hi - 1), (mid, mid), (mid + 1, mid + 1)]
        ranges += [(0, 2**62), (lo - 1, lo - 1), (hi + 1, hi + 1)]
        for start, end in ranges:
            if start > end:
                continue
            result = store.queries.search_latency_window("p1", "i1", window, start, end)
            assert result.columns == LATENCY_COLUMNS
            assert result.rows() == expected_latency(table, "p1", "i1", window, start, end)
        # Every window of the range, inclusive at both ends.
        full = store.queries.search_latency_window("p1", "i1", window, lo, hi).rows()
        assert [r[0] for r in full] == starts


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_search_latency_window_property(
    fleet: Fleet, store: telelake.Store, data: st.DataObject
) -> None:
    table = summaries_table(fleet.root)
    starts = sorted({r["window_start_ms"] for r in table})
    point = st.one_of(
        st.sampled_from(starts),
        st.sampled_from(starts).map(lambda s: s - 1),
        st.sampled_from(starts).map(lambda s: s + 1),
        st.integers(BASE_MS - 30 * MS_PER_DAY, BASE_MS + 30 * MS_PER_DAY),
    )
    a, b = sorted((data.draw(point), data.draw(point)))
    project, instance = data.draw(st.sampled_from([*GROUPS, ("p2", "i1"), ("zz", "i1")]))
    window = data.draw(st.sampled_from(list(WINDOWS)))
    result = store.queries.search_latency_window(project, instance, window, a, b)
    assert result.columns == LATENCY_COLUMNS
    assert result.rows() == expected_latency(table, project, instance, window, a, b)
    # Keyword parameters through store.query() give the same rows.
    same = store.query(
        "search_latency_window",
        project_key=project,
        instance_id=instance,
        window=window,
        start_ms=a,
        end_ms=b,
    )
    assert same.rows() == result.rows()


# -- open_alerts --------------------------------------------------------------------------------


def test_open_alerts_latest_update_wins_sorted_and_limited(
    fleet: Fleet, store: telelake.Store
) -> None:
    final = final_alerts(fleet.alert_batches)
    stored = {r[0]: r for r in db_rows(fleet.root, "SELECT * FROM alerts_timeline")}
    assert set(stored) == set(final)
    # The stale updates did not win: every stored row is the newest update of its alert.
    for aid, row in final.items():
        assert stored[aid][7] == row["state"] and stored[aid][9] == row["updated_at_ms"]
    assert any(r["state"] == "resolved" for r in final.values())
    assert any(r["state"] == "acknowledged" for r in final.values())
    for project in ("p1", "p2", "nobody"):
        unresolved = sorted(
            (r for r in final.values() if r["project_key"] == project and r["state"] != "resolved"),
            key=lambda r: (-r["updated_at_ms"], r["alert_id"]),
        )
        if project == "p1":
            ties = [r["updated_at_ms"] for r in unresolved]
            assert len(ties) > len(set(ties)), "the data should hold ties"
        for limit in (0, 1, 3, 5, 1000):
            result = store.queries.open_alerts(project, limit)
            assert result.columns == ALERT_COLUMNS
            want = [tuple(r[c] for c in ALERT_COLUMNS) for r in unresolved[:limit]]
            assert result.rows() == want


def test_open_alerts_stale_update_does_not_reopen(tmp_path: Path) -> None:
    with open_ops(tmp_path / "ops") as s:
        setup_fleet(s, FLEET)
        s.write("alerts_timeline", [alert_row("x", "p1", "open", 100, 100)])
        s.write("alerts_timeline", [alert_row("y", "p1", "open", 100, 150)])
        s.write("alerts_timeline", [alert_row("x", "p1", "acknowledged", 100, 200)])
        s.write("alerts_timeline", [alert_row("x", "p1", "resolved", 100, 300)])
        s.write("alerts_timeline", [alert_row("y", "p1", "acknowledged", 100, 600)])
        # Late deliveries of older updates, alone and in one batch with a newer one.
        s.write("alerts_timeline", [alert_row("x", "p1", "open", 100, 250, summary="stale")])
        s.write(
            "alerts_timeline",
            [
                alert_row("y", "p1", "open", 100, 550, summary="stale"),
                alert_row("z", "p1", "open", 100, 400),
            ],
        )
        rows = s.queries.open_alerts("p1", 10).rows()
    assert [(r[0], r[4], r[6]) for r in rows] == [("y", "y at 600", 600), ("z", "z at 400", 400)]


# -- resource_timeline --------------------------------------------------------------------------


def test_resource_timeline_ordered_inclusive_and_retries_ignored(
    fleet: Fleet, store: telelake.Store
) -> None:
    kept = fleet.kept_samples()
    assert db_rows(fleet.root, "SELECT count(*) FROM resource_samples") == [(len(kept),)]
    rng = random.Random(5)
    for project, instance in [*GROUPS, ("p2", "i1")]:
        times = sorted(ts for (p, i, ts) in kept if (p, i) == (project, instance))
        ranges = [(0, 2**62), (BASE_MS, BASE_MS + MS_PER_DAY)]
        if times:
            ranges += [(times[0], times[-1]), (times[1], times[1]), (times[0] + 1, times[-1] - 1)]
            ranges += [tuple(sorted(rng.sample(times, 2))) for _ in range(5)]
        for start, end in ranges:
            result = store.queries.resource_timeline(project, instance, start, end)
            assert result.columns == RESOURCE_COLUMNS
            want = [
                tuple(r[c] for c in RESOURCE_COLUMNS)
                for (p, i, ts), r in sorted(kept.items(), key=lambda kv: kv[0][2])
                if (p, i) == (project, instance) and start <= ts <= end
            ]
            assert result.rows() == want


# -- errors ---------------------------------------------------------------------------------------


def test_invalid_window_and_reversed_ranges_name_the_parameter(store: telelake.Store) -> None:
    with pytest.raises(telelake.QueryError, match=r"\bwindow\b.*'2m'|'2m'.*\bwindow\b"):
        store.queries.search_latency_window("p1", "i1", "2m", 0, 10)
    with pytest.raises(telelake.QueryError, match=r"\bstart_ms\b"):
        store.queries.search_latency_window("p1", "i1", "1h", 11, 10)
    with pytest.raises(telelake.QueryError, match=r"\bstart_ms\b"):
        store.queries.resource_timeline("p1", "i1", 11, 10)
    # An empty range (start == end) is valid.
    assert store.queries.resource_timeline("p1", "i1", 10, 10).rows() == []


def test_unknown_query_name(store: telelake.Store) -> None:
    with pytest.raises(telelake.QueryError, match="no_such_query"):
        store.queries.no_such_query("p1")
    with pytest.raises(telelake.QueryError, match="no_such_query"):
        store.query("no_such_query")


# -- the CLI ----------------------------------------------------------------------------


def run_main(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str, str]:
    """`telelake ARGS` in this process, through the same main() as `python -m telelake`
    (saves a second of interpreter start-up per call): (exit code, stdout, stderr)."""
    from telelake.cli import main

    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["telelake", *args])
    monkeypatch.setenv("COLUMNS", "200")
    code: Any = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return int(code or 0), out, err


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "telelake", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_cli_query_json_and_csv_equal_the_api(
    fleet: Fleet,
    store: telelake.Store,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    start, end = BASE_MS, BASE_MS + 5 * MS_PER_DAY
    api = store.queries.search_latency_window("p1", "i1", "1h", start, end)
    assert len(api) > 10
    common = ["--root", str(fleet.root), "--schema", "search_ops"]
    params = ["--param", "project_key=p1", "--param", "instance_id=i1", "--param", "window=1h"]
    params += ["--param", f"start_ms={start}", "--param", f"end_ms={end}"]
    out = run_cli("query", "search_latency_window", *common, *params, "--format", "json")
    assert out.returncode == 0, out.stderr
    records = json.loads(out.stdout)
    assert [list(r) for r in records] == [LATENCY_COLUMNS] * len(records)
    assert [tuple(r.values()) for r in records] == api.rows()

    code, text, err = run_main(
        capsys, monkeypatch, "query", "search_latency_window", *common, *params, "-f", "csv"
    )
    assert code == 0, err
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0] == LATENCY_COLUMNS
    assert lines[1:] == [[str(v) for v in row] for row in api.rows()]

    for name, args, result in [
        ("open_alerts", ["project_key=p1", "limit=4"], store.queries.open_alerts("p1", 4)),
        (
            "resource_timeline",
            ["project_key=p1", "instance_id=i2", "start_ms=0", f"end_ms={2**62}"],
            store.queries.resource_timeline("p1", "i2", 0, 2**62),
        ),
    ]:
        assert len(result) > 2
        flags = [x for a in args for x in ("-p", a)]
        code, text, err = run_main(
            capsys, monkeypatch, "query", name, *common, *flags, "-f", "json"
        )
        assert code == 0, err
        assert json.loads(text) == result.to_pylist()


def test_cli_query_text_parameters_that_look_like_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """project_key and instance_id are text: '2024' must not turn into a number."""
    root = tmp_path / "ops"
    with open_ops(root) as s:
        setup_fleet(s, {"2024": ["7"]})
        s.write("search_events", [event_row("e", "2024", "7", BASE_MS, 1000, 3)])
        api = s.queries.search_latency_window("2024", "7", "1m", 0, 2**62).rows()
    assert len(api) == 1
    code, text, err = run_main(
        capsys, monkeypatch,
        "query", "search_latency_window", "--root", str(root), "--schema", "search_ops",
        "--param", "project_key=2024", "--param", "instance_id=7", "--param", "window=1m",
        "--param", "start_ms=0", "--param", f"end_ms={2**62}", "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    assert [tuple(r.values()) for r in json.loads(text)] == api


def test_cli_unknown_query_fails_naming_it(
    fleet: Fleet, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run_main(
        capsys, monkeypatch, "query", "no_such_query", "--root", str(fleet.root),
        "--schema", "search_ops",
    )  # fmt: skip
    assert code != 0
    assert "no_such_query" in err


# -- retention --------------------------------------------------------------------------

NOW = dt.datetime(2024, 3, 20, 12, 34, 56, 789_123, tzinfo=dt.UTC)
NOW_MS = to_ms(NOW)
DAYS = {
    "search_events": 7,
    "embedding_job_snapshots": 7,
    "index_inventory_snapshots": 7,
    "resource_samples": 7,
    "search_summaries": 90,
    "alerts_timeline": 7,  # spec 001: "timeline snapshots: default 7 days" (resolved ones)
    "evidence_links": 90,
}
TIME = {
    "search_events": "ts_ms",
    "embedding_job_snapshots": "ts_ms",
    "index_inventory_snapshots": "ts_ms",
    "resource_samples": "ts_ms",
    "search_summaries": "window_start_ms",
    "alerts_timeline": "updated_at_ms",
    "evidence_links": "created_at_ms",
}
ALL_TABLES = ["projects", "instances", *DAYS]


def cutoff(days: int) -> int:
    return NOW_MS - days * MS_PER_DAY


def fill_for_retention(root: Path, now_ms: int, seed: int = 0) -> None:
    """Rows of every table with times on both sides of each cutoff (and on it)."""
    rng = random.Random(seed)
    c7, c90 = now_ms - 7 * MS_PER_DAY, now_ms - 90 * MS_PER_DAY

    def times(n: int, lo: int, hi: int, edge: int) -> list[int]:
        return [edge, edge - 1, edge + 1, *(rng.randrange(lo, hi) for _ in range(n - 3))]

    with open_ops(root) as s:
        setup_fleet(s, FLEET)
        events = random_events(rng, 150, GROUPS, now_ms - 12 * MS_PER_DAY, 12 * MS_PER_DAY, "n")
        events += random_events(rng, 40, GROUPS, now_ms - 100 * MS_PER_DAY, 20 * MS_PER_DAY, "o")
        events += [event_row(f"edge{k}", "p1", "i1", c7 + k, 5, 1) for k in (-1, 0, 1)]
        s.write("search_events", events)
        span = (now_ms - 12 * MS_PER_DAY, now_ms + HOUR, c7)
        s.write(
            "embedding_job_snapshots",
            [
                {
                    "snapshot_id": f"ej{k}",
                    "project_key": p,
                    "instance_id": i,
                    "embedder_id": "m",
                    "pending_jobs": k,
                    "processing_jobs": 1,
                    "completed_jobs": 2,
                    "failed_jobs": 0,
                    "retried_jobs": 0,
                    "batch_latency_us": None,
                    "ts_ms": ts,
                }
                for k, ts in enumerate(times(60, *span))
                for p, i in [GROUPS[k % 3]]
            ],
        )
        s.write(
            "index_inventory_snapshots",
            [
                {
                    "snapshot_id": f"ix{k}",
                    "project_key": p,
                    "instance_id": i,
                    "index_name": "v",
                    "index_type": "hnsw",
                    "record_count": k,
                    "file_size_bytes": 10,
                    "file_hash": None,
                    "is_stale": k % 2,
                    "ts_ms": ts,
                }
                for k, ts in enumerate(times(60, *span))
                for p, i in [GROUPS[k % 3]]
            ],
        )
        s.write(
            "resource_samples",
            [
                sample_row(*GROUPS[k % 3], ts, rng)
                for k, ts in enumerate(sorted(set(times(80, *span))))
            ],
        )
        # Alerts: resolved ones on both sides of the 7-day and the 90-day cutoff (the
        # links' one); open and acknowledged ones far older than them, which must stay.
        alerts = []
        updates = times(40, now_ms - 200 * MS_PER_DAY, now_ms, c90)
        updates += times(20, now_ms - 14 * MS_PER_DAY, now_ms, c7)
        for k, upd in enumerate(updates):
            state = (
                ["resolved", "resolved", "open", "acknowledged"][k % 4] if k >= 3 else "resolved"
            )
            alerts.append(alert_row(f"al{k}", "p1" if k % 3 else "p2", state, upd - HOUR, upd))
        s.write("alerts_timeline", alerts)
        # Evidence links, each created before its alert's last update (when evidence is
        # gathered), on both sides of the 90-day cutoff.
        links = []
        for k, a in enumerate(alerts):
            for j in range(3):
                before = rng.randrange(0, 30 * MS_PER_DAY) if j else 0
                created = a["updated_at_ms"] - before
                links.append(
                    {
                        "link_id": f"l{k}-{j}",
                        "project_key": a["project_key"],
                        "alert_id": a["alert_id"],
                        "evidence_type": "jsonl",
                        "evidence_uri": f"file:///e/{k}/{j}",
                        "evidence_hash": None,
                        "created_at_ms": created,
                    }
                )
        links[0]["created_at_ms"] = c90  # on the cutoff: kept
        s.write("evidence_links", links)


def dump(root: Path) -> dict[str, list[dict[str, Any]]]:
    con = connect(root)
    con.row_factory = sqlite3.Row
    try:
        return {
            t: sorted((dict(r) for r in con.execute(f"SELECT * FROM {t}")), key=repr)
            for t in ALL_TABLES
        }
    finally:
        con.close()


def expected_after(
    before: dict[str, list[dict[str, Any]]], days: dict[str, int], now_ms: int
) -> dict[str, list[dict[str, Any]]]:
    """Brute force: rows older than their table's cutoff go, except unresolved alerts and
    alerts an evidence link younger than the links' cutoff points at."""
    out = {}
    links_cut = now_ms - days["evidence_links"] * MS_PER_DAY
    linked = {r["alert_id"] for r in before["evidence_links"] if r["created_at_ms"] >= links_cut}
    for table, rows in before.items():
        if table not in days:
            out[table] = rows
            continue
        cut = now_ms - days[table] * MS_PER_DAY
        keep = [r for r in rows if r[TIME[table]] >= cut]
        if table == "alerts_timeline":
            keep = [
                r
                for r in rows
                if r[TIME[table]] >= cut or r["state"] != "resolved" or r["alert_id"] in linked
            ]
        out[table] = keep
    alive = {r["alert_id"] for r in out["alerts_timeline"]}
    out["evidence_links"] = [r for r in out["evidence_links"] if r["alert_id"] in alive]
    return out


def step_rows(report: Any) -> dict[str, int]:
    return {s.table: s.rows for s in report.steps}


def removed(before: dict[str, list[Any]], after: dict[str, list[Any]]) -> dict[str, int]:
    return {t: len(before[t]) - len(after[t]) for t in DAYS}


def test_retention_removes_exactly_the_old_rows(tmp_path: Path) -> None:
    root = tmp_path / "ops"
    fill_for_retention(root, NOW_MS)
    before = dump(root)
    want = expected_after(before, DAYS, NOW_MS)
    # The data straddles every cutoff, and old unresolved alerts exist.
    for table, rows in before.items():
        if table in DAYS:
            assert 0 < len(want[table]) < len(rows), table
    assert any(
        r["state"] != "resolved" and r["updated_at_ms"] < cutoff(90)
        for r in before["alerts_timeline"]
    )
    # Resolved alerts past their 7 days both go and stay (a link younger than 90 days).
    resolved_old = [
        r["alert_id"]
        for r in before["alerts_timeline"]
        if r["state"] == "resolved" and r["updated_at_ms"] < cutoff(7)
    ]
    kept = {r["alert_id"] for r in want["alerts_timeline"]}
    assert {a in kept for a in resolved_old} == {True, False}
    # An alert goes only when its links are all past their 90 days: links keep to the
    # plain rule.
    links_by_time = [r for r in before["evidence_links"] if r["created_at_ms"] >= cutoff(90)]
    assert sorted(links_by_time, key=repr) == want["evidence_links"]

    with open_ops(root) as s:
        plan = s.enforce_retention(now=NOW, dry_run=True)
        assert dump(root) == before  # a dry run changes nothing
        report = s.enforce_retention(now=NOW)
    after = dump(root)
    assert after == want
    assert step_rows(plan) == removed(before, want)
    assert {t: n for t, n in step_rows(report).items() if t != "evidence_links"} == {
        t: n for t, n in removed(before, want).items() if t != "evidence_links"
    }  # evidence_links: see test_retention_report_counts_the_rows_removed
    # Idempotent: a second run at the same `now` removes nothing.
    with open_ops(root) as s:
        again = s.enforce_retention(now=NOW)
    assert set(step_rows(again).values()) == {0}
    assert dump(root) == want


def test_retention_report_counts_the_rows_removed(tmp_path: Path) -> None:
    """The report (and a dry run's) says how many rows each table lost: evidence links
    that go with their expired alert (ON DELETE CASCADE) are removed rows too."""
    root = tmp_path / "ops"
    fill_for_retention(root, NOW_MS, seed=3)
    before = dump(root)
    with open_ops(root) as s:
        plan = s.enforce_retention(now=NOW, dry_run=True)
        report = s.enforce_retention(now=NOW)
    lost = removed(before, dump(root))
    assert step_rows(plan) == lost
    assert step_rows(report) == lost


def test_retention_keeps_evidence_links_newer_than_90_days(tmp_path: Path) -> None:
    """A link added after its alert was resolved (a post-mortem) is younger than the
    alert's last update; evidence links are kept 90 days from their own creation."""
    with open_ops(tmp_path / "ops") as s:
        setup_fleet(s, FLEET)
        s.write("alerts_timeline", [alert_row("old", "p1", "resolved", 0, cutoff(90) - 10)])
        link = {
            "link_id": "pm",
            "project_key": "p1",
            "alert_id": "old",
            "evidence_type": "doc",
            "evidence_uri": "file:///postmortem.md",
            "evidence_hash": None,
            "created_at_ms": NOW_MS - MS_PER_DAY,
        }
        s.write("evidence_links", [link])
        s.enforce_retention(now=NOW)
    assert db_rows(tmp_path / "ops", "SELECT link_id FROM evidence_links") == [("pm",)]


def test_retention_config_override(tmp_path: Path) -> None:
    root = tmp_path / "ops"
    fill_for_retention(root, NOW_MS, seed=1)
    (root / "config.json").write_text(
        json.dumps({"telemetry_retention": {"search_events_days": 3}})
    )
    before = dump(root)
    days = {**DAYS, "search_events": 3}
    want = expected_after(before, days, NOW_MS)
    assert len(want["search_events"]) < len(expected_after(before, DAYS, NOW_MS)["search_events"])
    with open_ops(root) as s:
        s.enforce_retention(now=NOW)
    assert dump(root) == want


def test_links_kept_forever_keep_their_resolved_alerts(tmp_path: Path) -> None:
    """With evidence_links kept forever (null), a resolved alert with any link stays past
    its 7 days (the cascade would remove the link); one without links goes."""
    root = tmp_path / "ops"
    fill_for_retention(root, NOW_MS, seed=4)
    (root / "config.json").write_text(
        json.dumps({"telemetry_retention": {"evidence_links_days": None}})
    )
    before = dump(root)
    with open_ops(root) as s:
        s.write("alerts_timeline", [alert_row("lonely", "p1", "resolved", 0, cutoff(7) - 1)])
        s.enforce_retention(now=NOW)
    after = dump(root)
    linked = {r["alert_id"] for r in before["evidence_links"]}
    gone = {r["alert_id"] for r in before["alerts_timeline"]} - {
        r["alert_id"] for r in after["alerts_timeline"]
    }
    old_resolved = {
        r["alert_id"]
        for r in before["alerts_timeline"]
        if r["state"] == "resolved" and r["updated_at_ms"] < cutoff(7)
    }
    assert old_resolved & linked  # past their 7 days, and linked: they stay
    assert after["evidence_links"] == before["evidence_links"]
    assert not gone & linked
    assert "lonely" not in {r["alert_id"] for r in after["alerts_timeline"]}


def test_retention_stops_between_two_batches_and_carries_on_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """on_batch may raise: what the finished batches removed is gone, nothing else; the
    next run removes the rest."""
    root = tmp_path / "ops"
    fill_for_retention(root, NOW_MS, seed=5)
    before = dump(root)
    want = expected_after(before, DAYS, NOW_MS)
    monkeypatch.setattr(telelake.sql.tier, "RETENTION_BATCH", 7)
    seen: list[tuple[str, int]] = []

    class Enough(Exception):
        pass

    def two_batches(table: str, rows: int) -> None:
        seen.append((table, rows))
        if len(seen) == 2:
            raise Enough

    with open_ops(root) as s, pytest.raises(Enough):
        s.enforce_retention(now=NOW, on_batch=two_batches)
    first = seen[0][0]  # children first: the last table of the schema with rows to lose
    assert seen == [(first, 7), (first, 7)]
    middle = dump(root)
    assert len(middle[first]) == len(before[first]) - 14
    assert all(r in middle[first] for r in want[first])  # only expired rows went
    assert {t: middle[t] for t in DAYS if t != first} == {t: before[t] for t in DAYS if t != first}
    with open_ops(root) as s:
        s.enforce_retention(now=NOW)
    assert dump(root) == want


def test_retention_in_small_batches_gives_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big, small = tmp_path / "big", tmp_path / "small"
    fill_for_retention(big, NOW_MS, seed=2)
    fill_for_retention(small, NOW_MS, seed=2)
    before = dump(small)
    assert before == dump(big)
    want = expected_after(before, DAYS, NOW_MS)
    assert max(removed(before, want).values()) > 3 * 7  # several batches per table

    with open_ops(big) as s:
        one_batch = s.enforce_retention(now=NOW)
    transactions = 0
    real = telelake.sql.tier.SqlTier.transaction

    def counting(self: Any) -> Any:
        nonlocal transactions
        transactions += 1
        return real(self)

    monkeypatch.setattr(telelake.sql.tier, "RETENTION_BATCH", 7)
    monkeypatch.setattr(telelake.sql.tier.SqlTier, "transaction", counting)
    with open_ops(small) as s:
        report = s.enforce_retention(now=NOW)
    assert dump(small) == want == dump(big)
    assert step_rows(report) == step_rows(one_batch)
    # At least one transaction per 7 rows, plus the last (short) one per table (evidence
    # links whose alert expired go with it, by cascade, not in batches of their own).
    direct = {t: n for t, n in removed(before, want).items() if t != "evidence_links"}
    assert transactions >= sum(n // 7 + 1 for n in direct.values())


def test_retention_cli_dry_run_then_real(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "ops"
    now_ms = to_ms(dt.datetime.now(dt.UTC))  # the CLI has no --now: times far from the cutoff
    with open_ops(root) as s:
        setup_fleet(s, FLEET)
        s.write(
            "search_events",
            [
                event_row(f"old{k}", "p1", "i1", now_ms - (20 + k) * MS_PER_DAY, 9, 1)
                for k in range(4)
            ]
            + [event_row(f"new{k}", "p1", "i1", now_ms - k * HOUR, 9, 1) for k in range(5)],
        )
        s.write(
            "resource_samples", [sample_row("p1", "i1", now_ms - 30 * MS_PER_DAY, random.Random())]
        )
    before = dump(root)
    common = ["--root", str(root), "--schema", "search_ops"]
    code, out, err = run_main(capsys, monkeypatch, "retention", *common, "--dry-run")
    assert code == 0, err
    assert re.search(r"would remove 5 rows\b", out), out
    assert dump(root) == before
    code, out, err = run_main(capsys, monkeypatch, "retention", *common, "--quiet")
    assert code == 0, err
    assert re.search(r"\bremoved 5 rows\b", out), out
    after = dump(root)
    assert sorted(r["event_id"] for r in after["search_events"]) == [f"new{k}" for k in range(5)]
    assert after["resource_samples"] == []
    assert after["search_summaries"] == before["search_summaries"]
