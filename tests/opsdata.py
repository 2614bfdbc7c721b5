"""Rows for the search_ops schema and brute-force recomputations of what telelake derives.

Everything here is independent of the code under test: window starts are integer
arithmetic from our own origin, ranks are exact (Fraction) nearest ranks over the sorted
raw values, retention cutoffs are computed from `now` by hand. Only the sketch's
bucket_of/value_of are imported, as the *definition* of the percentile reported for a
window of more than EXACT_UP_TO values (docs/rollups.md: the exact nearest-rank value up
to that many, else value_of(bucket_of(exact)), clamped to the window's min and max).
"""

from __future__ import annotations

import datetime as dt
import math
import random
import sqlite3
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from telelake.rollup.sketch import bucket_of, value_of

DB_NAME = "frankensearch-ops.db"
MS_PER_DAY = 86_400_000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# Monday 2000-01-03 00:00 UTC, computed here rather than imported.
ORIGIN_MS = (dt.datetime(2000, 1, 3, tzinfo=dt.UTC) - EPOCH) // dt.timedelta(milliseconds=1)
WINDOWS: dict[str, int] = {
    "1m": 60_000,
    "15m": 15 * 60_000,
    "1h": 3_600_000,
    "6h": 6 * 3_600_000,
    "24h": MS_PER_DAY,
    "3d": 3 * MS_PER_DAY,
    "1w": 7 * MS_PER_DAY,
}
QUANTILES = {
    "p50_latency_us": Fraction(1, 2),
    "p95_latency_us": Fraction(19, 20),
    "p99_latency_us": Fraction(99, 100),
}
SUMMARY_VALUES = (
    "search_count",
    "p50_latency_us",
    "p95_latency_us",
    "p99_latency_us",
    "avg_result_count",
)
# A Monday well after the origin, 2023-11-13 00:00 UTC, as a base time for events.
BASE_MS = (dt.datetime(2023, 11, 13, tzinfo=dt.UTC) - EPOCH) // dt.timedelta(milliseconds=1)

SummaryKey = tuple[str, str, str, int]  # project_key, instance_id, window, window_start_ms
# docs/rollups.md: a window keeps up to this many values of a percentile column, exactly
# (copied from the documentation, not imported; a test checks the two agree).
EXACT_UP_TO = 64


def to_ms(when: dt.datetime) -> int:
    """Epoch milliseconds of an aware datetime (floor)."""
    return (when - EPOCH) // dt.timedelta(milliseconds=1)


def window_start(ts_ms: int, length_ms: int) -> int:
    """Start of the window holding ts_ms: Python's floor division, from ORIGIN_MS."""
    return ORIGIN_MS + (ts_ms - ORIGIN_MS) // length_ms * length_ms


# -- rows ---------------------------------------------------------------------------------


def project_row(key: str, at: int = 1) -> dict[str, Any]:
    return {
        "project_key": key,
        "display_name": f"Project {key}",
        "created_at_ms": at,
        "updated_at_ms": at,
    }


def instance_row(instance_id: str, project_key: str, at: int = 1) -> dict[str, Any]:
    return {
        "instance_id": instance_id,
        "project_key": project_key,
        "host_name": "host",
        "pid": 42,
        "version": "1.0",
        "first_seen_ms": at,
        "last_heartbeat_ms": at,
        "state": "healthy",
    }


def setup_fleet(store: Any, fleet: dict[str, Sequence[str]]) -> None:
    """Write projects and their instances (FK parents of everything else)."""
    store.write("projects", [project_row(p) for p in fleet])
    store.write("instances", [instance_row(i, p) for p, ids in fleet.items() for i in ids])


def event_row(
    event_id: str,
    project_key: str,
    instance_id: str,
    ts_ms: int,
    latency_us: int,
    result_count: int | None,
    phase: str = "initial",
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "project_key": project_key,
        "instance_id": instance_id,
        "correlation_id": f"corr-{event_id}",
        "query_hash": None,
        "query_class": "lexical",
        "phase": phase,
        "latency_us": latency_us,
        "result_count": result_count,
        "memory_bytes": None,
        "ts_ms": ts_ms,
    }


def random_latency(rng: random.Random) -> int:
    """Latencies with ties, zeros, tiny values and a long log-uniform tail."""
    kind = rng.random()
    if kind < 0.15:
        return rng.randint(0, 5)
    if kind < 0.3:
        return rng.choice([100, 250, 1000, 1001, 999])
    return int(math.exp(rng.uniform(0, math.log(5e9))))


def random_events(
    rng: random.Random,
    n: int,
    groups: Sequence[tuple[str, str]],
    start_ms: int,
    span_ms: int,
    prefix: str,
) -> list[dict[str, Any]]:
    """n events with unique ids `prefix-k`, spread over [start_ms, start_ms + span_ms)."""
    out = []
    for k in range(n):
        project, instance = rng.choice(groups)
        ts = start_ms + rng.randrange(span_ms)
        result = None if rng.random() < 0.3 else rng.randint(0, 500)
        phase = rng.choice(["initial", "refined", "failed"])
        out.append(
            event_row(
                f"{prefix}-{k}", project, instance, ts, random_latency(rng), result, phase=phase
            )
        )
    return out


# -- brute force --------------------------------------------------------------------------


def first_wins(batches: Iterable[Iterable[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The events kept when batches are written in order: a retried event_id is ignored."""
    kept: dict[str, dict[str, Any]] = {}
    for batch in batches:
        for row in batch:
            kept.setdefault(row["event_id"], row)
    return kept


def nearest_rank_value(sorted_values: Sequence[float], q: Fraction) -> float:
    """The exact nearest-rank q-quantile: the ceil(q*n)-th smallest value (rank >= 1)."""
    n = len(sorted_values)
    k = max(1, math.ceil(q * n))
    return sorted_values[k - 1]


def reported_percentile(sorted_values: Sequence[float], q: Fraction) -> float:
    """The percentile a rollup reports for a window's values: exact up to EXACT_UP_TO
    values, else the sketch's, clamped to the window's min and max."""
    exact = nearest_rank_value(sorted_values, q)
    if len(sorted_values) <= EXACT_UP_TO:
        return exact
    return min(max(value_of(bucket_of(exact)), sorted_values[0]), sorted_values[-1])


def expected_summaries(events: Iterable[dict[str, Any]]) -> dict[SummaryKey, tuple[Any, ...]]:
    """search_summaries recomputed from raw events: (count, p50, p95, p99, avg_result)."""
    groups: dict[SummaryKey, list[dict[str, Any]]] = {}
    for e in events:
        for label, length in WINDOWS.items():
            key = (e["project_key"], e["instance_id"], label, window_start(e["ts_ms"], length))
            groups.setdefault(key, []).append(e)
    out: dict[SummaryKey, tuple[Any, ...]] = {}
    for key, rows in groups.items():
        latencies = sorted(r["latency_us"] for r in rows)
        pcts = [round(reported_percentile(latencies, q)) for q in QUANTILES.values()]
        results = [r["result_count"] for r in rows if r["result_count"] is not None]
        avg = float(Fraction(sum(results), len(results))) if results else None
        out[key] = (len(rows), *pcts, avg)
    return out


def exact_percentiles(
    events: Iterable[dict[str, Any]],
) -> dict[SummaryKey, tuple[int, int, int]]:
    """The exact (unbucketed) nearest-rank p50/p95/p99 latency of each window."""
    groups: dict[SummaryKey, list[int]] = {}
    for e in events:
        for label, length in WINDOWS.items():
            key = (e["project_key"], e["instance_id"], label, window_start(e["ts_ms"], length))
            groups.setdefault(key, []).append(e["latency_us"])
    out = {}
    for key, values in groups.items():
        values.sort()
        p50, p95, p99 = (nearest_rank_value(values, q) for q in QUANTILES.values())
        out[key] = (p50, p95, p99)
    return out


# -- reading the database directly --------------------------------------------------------


def connect(root: Path) -> sqlite3.Connection:
    return sqlite3.connect(root / DB_NAME)


def db_summaries(root: Path) -> dict[SummaryKey, tuple[Any, ...]]:
    """Every row of search_summaries, read with sqlite3 (not through telelake)."""
    con = connect(root)
    try:
        rows = con.execute(
            "SELECT project_key, instance_id, window, window_start_ms, "
            + ", ".join(SUMMARY_VALUES)
            + " FROM search_summaries"
        ).fetchall()
    finally:
        con.close()
    return {(r[0], r[1], r[2], r[3]): tuple(r[4:]) for r in rows}


def db_rows(root: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    con = connect(root)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def db_events(root: Path) -> dict[str, dict[str, Any]]:
    con = connect(root)
    con.row_factory = sqlite3.Row
    try:
        return {r["event_id"]: dict(r) for r in con.execute("SELECT * FROM search_events")}
    finally:
        con.close()


def assert_summaries_match(root: Path, events: Iterable[dict[str, Any]]) -> None:
    """search_summaries equals the brute force over `events`, row for row, and every
    reported percentile is within 0.5% (+1 for rounding) of the exact nearest rank."""
    events = list(events)
    got = db_summaries(root)
    want = expected_summaries(events)
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    assert not missing, f"{len(missing)} summary rows missing, e.g. {missing[:3]}"
    assert not extra, f"{len(extra)} summary rows that no event explains, e.g. {extra[:3]}"
    wrong = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    assert not wrong, f"{len(wrong)} rows differ (got, want), e.g. {list(wrong.items())[:3]}"
    for key, exact in exact_percentiles(events).items():
        for reported, value in zip(got[key][1:4], exact, strict=True):
            assert abs(reported - value) <= 0.005 * abs(value) + 1, (key, reported, value)
