"""How rollup states are stored: pages of windows (rollup/pages.py), their upgrade from
one row per window, and their retention.

The round trip is checked against plain-Python dicts of what each window remembers; the
upgrade against an old-format state table written by hand here, byte by byte; both end
to end against the brute force of tests/opsdata.py.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import sqlite3
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import telelake
from opsdata import (
    BASE_MS,
    DB_NAME,
    MS_PER_DAY,
    WINDOWS,
    db_rows,
    db_summaries,
    event_row,
    exact_percentiles,
    expected_summaries,
    random_events,
    setup_fleet,
    to_ms,
    window_start,
)
from telelake.rollup import pages, sketch, windows
from telelake.rollup.windows import States
from telelake.schema.load import load_schema

ROLLUP = load_schema("search_ops").rollups["search_summaries"]
FLEET = {"p1": ["i1", "i2"], "p2": ["i3"]}
GROUPS = [("p1", "i1"), ("p1", "i2"), ("p2", "i3")]
HOUR = 3_600_000

# What one window remembers, in plain Python: rows, (count, sum, min, max) of
# result_count and of latency_us, latency_us's sketch {bucket: count} and the latency
# values it keeps (sorted).
Stats = tuple[float, float, float, float]
STAT_COLUMNS = ("result_count", "latency_us")
Memory = tuple[int, Stats, Stats, dict[int, int], tuple[float, ...]]


def states_of(memory: dict[tuple[Any, ...], Memory]) -> States:
    """A States holding exactly `memory` (windows in the dict's order)."""
    keys = list(memory)
    windows, buckets, counts, kept_windows, kept = [], [], [], [], []
    for i, (_, _, _, sk, values) in enumerate(memory.values()):
        for bucket in sorted(sk):
            windows.append(i)
            buckets.append(bucket)
            counts.append(sk[bucket])
        kept_windows += [i] * len(values)
        kept += values
    return States(
        keys,
        np.array([m[0] for m in memory.values()], np.int64),
        {
            "result_count": np.array([m[1] for m in memory.values()], np.float64).reshape(-1, 4),
            "latency_us": np.array([m[2] for m in memory.values()], np.float64).reshape(-1, 4),
        },
        {
            "latency_us": (
                np.array(windows, np.int64),
                np.array(buckets, np.int64),
                np.array(counts, np.int64),
            )
        },
        {"latency_us": (np.array(kept_windows, np.int64), np.array(kept, np.float64))},
    )


def memory_of(states: States) -> dict[tuple[Any, ...], Memory]:
    out: dict[tuple[Any, ...], Memory] = {}
    window, bucket, count = states.sketches["latency_us"]
    kept_window, kept = states.exact["latency_us"]
    for i, key in enumerate(states.keys):
        sk = {int(b): int(c) for w, b, c in zip(window, bucket, count, strict=True) if int(w) == i}
        values = tuple(float(v) for w, v in zip(kept_window, kept, strict=True) if int(w) == i)
        rc, lat = (tuple(float(v) for v in states.stats[c][i]) for c in STAT_COLUMNS)
        out[key] = (int(states.rows[i]), rc, lat, sk, values)  # type: ignore[assignment]
    return out


def _equal(x: float, y: float) -> bool:
    return x == y or (math.isnan(x) and math.isnan(y))


def same(a: dict[tuple[Any, ...], Memory], b: dict[tuple[Any, ...], Memory]) -> bool:
    """Equal, NaN equal to NaN (empty stats)."""
    if a.keys() != b.keys():
        return False
    for k in a:
        (ra, sa, la, ka, va), (rb, sb, lb, kb, vb) = a[k], b[k]
        if ra != rb or ka != kb or va != vb:
            return False
        if not all(_equal(x, y) for x, y in zip((*sa, *la), (*sb, *lb), strict=True)):
            return False
    return True


def memories() -> st.SearchStrategy[dict[tuple[Any, ...], Memory]]:
    starts = st.integers(BASE_MS // 60_000 - 20_000, BASE_MS // 60_000 + 20_000)
    key = st.builds(
        lambda g, label, minute: (*g, label, window_start(minute * 60_000, WINDOWS[label])),
        st.sampled_from(GROUPS),
        st.sampled_from(list(WINDOWS)),
        starts,
    )
    stats = st.one_of(
        st.just((0.0, 0.0, math.nan, math.nan)),
        st.tuples(
            st.integers(1, 10**6).map(float),
            st.floats(-1e12, 1e12),
            st.floats(-1e6, 1e6),
            st.floats(-1e6, 1e6),
        ),
    )
    buckets = st.integers(-(1 << 21), 1 << 21)
    sketches = st.dictionaries(buckets, st.integers(1, 2**40), max_size=12)
    kept = st.lists(st.floats(-1e15, 1e15), max_size=8).map(lambda v: tuple(sorted(v)))
    return st.dictionaries(
        key, st.tuples(st.integers(1, 2**40), stats, stats, sketches, kept), max_size=60
    )


@settings(max_examples=200, deadline=None)
@given(memories())
def test_pages_round_trip_every_window(memory: dict[tuple[Any, ...], Memory]) -> None:
    stored = pages.encode(ROLLUP, states_of(memory))
    for page in stored:  # the layout: one group and label per page, an hour or a window
        length = WINDOWS[page.window]
        assert page.stop - page.start == max(length, HOUR)
        assert (page.start - window_start(page.start, length)) == 0
    back = pages.decode(ROLLUP, [(p.grp, p.window, p.state) for p in stored])
    assert same(memory_of(back), memory)
    for page in stored:
        held = pages.decode(ROLLUP, [(page.grp, page.window, page.state)])
        assert held.keys, "an empty page was stored"
        for key in held.keys:
            assert list(key[:2]) == json.loads(page.grp)
            assert key[2] == page.window and page.start <= key[3] < page.stop


# -- upgrades: states stored one row per window (before pages), pages of format 1 ----------


def by_window(events: list[dict[str, Any]]) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    out: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for e in events:
        for label, length in WINDOWS.items():
            key = (e["project_key"], e["instance_id"], label, window_start(e["ts_ms"], length))
            out.setdefault(key, []).append(e)
    return out


def old_head(events: list[dict[str, Any]]) -> tuple[float, ...]:
    """f64 rows, count, sum, min, max of result_count: a window's head before exact
    percentiles (no stats for latency_us, a percentile-only column)."""
    results = [e["result_count"] for e in events if e["result_count"] is not None]
    stats = (
        (len(results), sum(results), min(results), max(results))
        if results
        else (0, 0.0, math.nan, math.nan)  # as telelake kept empty stats: sum 0
    )
    return (len(events), *stats)


def old_sketch(events: list[dict[str, Any]]) -> tuple[list[int], list[int]]:
    sk = Counter(sketch.bucket_of(e["latency_us"]) for e in events)
    order = sorted(sk)
    return order, [sk[b] for b in order]


def old_blob(events: list[dict[str, Any]]) -> bytes:
    """A window's state in the per-window format, from its raw events: the old head;
    then i64 m, i64 buckets[m], i64 counts[m] of latency_us."""
    buckets, counts = old_sketch(events)
    return (
        struct.pack("<5d", *old_head(events))
        + struct.pack("<q", len(buckets))
        + struct.pack(f"<{len(buckets)}q", *buckets)
        + struct.pack(f"<{len(counts)}q", *counts)
    )


def format1_pages(events: list[dict[str, Any]]) -> list[tuple[str, str, int, int, bytes]]:
    """Pages as telelake wrote them before exact percentiles, byte by byte: (grp, window,
    start, stop, blob). u32 format 1, n, 1 sketch column; i64 starts[n]; the old heads;
    i32 sizes[n], i32 buckets, i64 counts."""
    paged: dict[tuple[str, str, int], list[tuple[int, list[dict[str, Any]]]]] = {}
    for (project, instance, label, start), evs in by_window(events).items():
        span = max(WINDOWS[label], HOUR)
        grp = json.dumps([project, instance])
        paged.setdefault((grp, label, window_start(start, span)), []).append((start, evs))
    out = []
    for (grp, label, first), members in paged.items():
        members.sort(key=lambda m: m[0])
        sketches = [old_sketch(evs) for _, evs in members]
        blob = struct.pack("<III", 1, len(members), 1)
        blob += struct.pack(f"<{len(members)}q", *(start for start, _ in members))
        for _, evs in members:
            blob += struct.pack("<5d", *old_head(evs))
        blob += struct.pack(f"<{len(members)}i", *(len(b) for b, _ in sketches))
        for buckets, _ in sketches:
            blob += struct.pack(f"<{len(buckets)}i", *buckets)
        for _, counts in sketches:
            blob += struct.pack(f"<{len(counts)}q", *counts)
        out.append((grp, label, first, first + max(WINDOWS[label], HOUR), blob))
    return out


def expected_after_upgrade(
    before: list[dict[str, Any]], late: list[dict[str, Any]]
) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """The summaries once `late` events are written into a store upgraded while holding
    `before`: a window that held old events kept no values and knew no latency extremes,
    so when late events update it its percentiles are the sketch's, unclamped. Windows
    late events do not touch keep the rows the test's first write gave them (today's
    rule: the test replaced only their states); new windows follow today's rule."""
    want = expected_summaries([*before, *late])
    rewritten = by_window(before).keys() & by_window(late).keys()
    for key, exact in exact_percentiles([*before, *late]).items():
        if key in rewritten:
            sketched = (round(sketch.value_of(sketch.bucket_of(v))) for v in exact)
            want[key] = (want[key][0], *sketched, want[key][4])
    return want


def store_with_events(root: Path, rng: random.Random, days: int) -> list[dict[str, Any]]:
    """A search_ops store holding 300 random events over `days` days from BASE_MS."""
    events = random_events(rng, 300, GROUPS, BASE_MS, days * MS_PER_DAY, "a")
    with telelake.open(root, schema="search_ops") as store:
        setup_fleet(store, FLEET)
        store.write("search_events", events)
    return events


def test_states_of_an_older_store_are_upgraded_to_pages(tmp_path: Path) -> None:
    rng = random.Random(5)
    root = tmp_path / "ops"
    first = store_with_events(root, rng, 3)
    # Rewrite the states as an older telelake kept them: one row per window.
    con = sqlite3.connect(root / DB_NAME)
    with con:
        con.execute("DROP TABLE _telelake_rollup_pages")
        con.execute("DROP TABLE _telelake_rollup_format")
        con.execute(
            "CREATE TABLE _telelake_rollup_state (rollup TEXT NOT NULL, grp TEXT NOT NULL, "
            "window TEXT NOT NULL, start INTEGER NOT NULL, state BLOB NOT NULL, "
            "PRIMARY KEY (rollup, grp, window, start)) WITHOUT ROWID"
        )
        con.executemany(
            "INSERT INTO _telelake_rollup_state VALUES ('search_summaries', ?, ?, ?, ?)",
            [
                (f'["{k[0]}", "{k[1]}"]', k[2], k[3], old_blob(evs))
                for k, evs in by_window(first).items()
            ],
        )
    con.close()
    # Late events into the same windows: right only if every old state was carried over.
    late = random_events(rng, 200, GROUPS, BASE_MS, 3 * MS_PER_DAY, "late")
    with telelake.open(root, schema="search_ops") as store:
        store.write("search_events", late)
    assert db_summaries(root) == expected_after_upgrade(first, late)
    con = sqlite3.connect(root / DB_NAME)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    con.close()
    assert "_telelake_rollup_state" not in tables and "_telelake_rollup_pages" in tables


def test_pages_of_format_1_are_rewritten_on_the_first_open(tmp_path: Path) -> None:
    """A store written before exact percentiles: its pages (format 1, written here by
    hand) are rewritten once, on the first open; its windows keep working (counts and
    averages exact, percentiles the sketch's), new windows are exact."""
    rng = random.Random(11)
    root = tmp_path / "ops"
    first = store_with_events(root, rng, 2)
    old = format1_pages(first)
    con = sqlite3.connect(root / DB_NAME)
    with con:
        con.execute("DROP TABLE _telelake_rollup_format")
        con.execute("DELETE FROM _telelake_rollup_pages")
        con.executemany(
            "INSERT INTO _telelake_rollup_pages VALUES ('search_summaries', ?, ?, ?, ?, ?)", old
        )
    con.close()
    # Late events into old windows, and events of a later day into windows of their own.
    late = random_events(rng, 150, GROUPS, BASE_MS, 2 * MS_PER_DAY, "late")
    late += random_events(rng, 150, GROUPS, BASE_MS + 8 * MS_PER_DAY, MS_PER_DAY, "new")
    with telelake.open(root, schema="search_ops") as store:
        formats = db_rows(root, "SELECT DISTINCT substr(state, 1, 4) FROM _telelake_rollup_pages")
        assert formats == [(struct.pack("<I", 2),)]  # every page rewritten, none lost:
        assert db_rows(root, "SELECT count(*) FROM _telelake_rollup_pages") == [(len(old),)]
        assert db_rows(root, "SELECT format FROM _telelake_rollup_format") == [(2,)]
        store.write("search_events", late)
    want = expected_after_upgrade(first, late)
    assert db_summaries(root) == want
    new_windows = [k for k in want if k not in by_window(first)]
    assert new_windows and all(
        want[k] == expected_summaries(late)[k] for k in new_windows
    )  # the later day's windows are exact (and clamped), as in a new store


# -- retention: states go with the summaries, window by window ------------------------------


def test_retention_forgets_exactly_the_expired_windows_of_a_page(tmp_path: Path) -> None:
    now = dt.datetime(2024, 3, 1, 12, 30, 15, tzinfo=dt.UTC)
    cutoff = to_ms(now) - 90 * MS_PER_DAY  # search_summaries keep 90 days; 12:30:15 UTC
    minute = 60_000
    before = window_start(cutoff, minute) - 5 * minute  # same hour page, expired
    after = window_start(cutoff, minute) + 5 * minute  # same hour page, kept
    assert window_start(before, HOUR) == window_start(after, HOUR)
    events = [
        event_row(f"e{start}-{n}", "p1", "i1", start + n * 1000, 1000 + 37 * n, n % 3)
        for start in (before, after)
        for n in range(6)
    ]
    root = tmp_path / "ops"
    with telelake.open(root, schema="search_ops") as store:
        setup_fleet(store, FLEET)
        store.write("search_events", events)
        store.enforce_retention(now=now)
        got = db_summaries(root)
        assert all(k[3] >= cutoff for k in got), "a summary older than 90 days is left"
        late = [
            event_row("late-before", "p1", "i1", before + 30_000, 5_000, 7),
            event_row("late-after", "p1", "i1", after + 30_000, 6_000, None),
        ]
        store.write("search_events", late)
    got = db_summaries(root)
    expired = ("p1", "i1", "1m", before)
    kept = ("p1", "i1", "1m", after)
    # The expired window starts over from the late event alone; the kept one remembers all.
    assert got[expired] == expected_summaries(late[:1])[expired]
    in_kept = [e for e in events if window_start(e["ts_ms"], minute) == after]
    assert got[kept] == expected_summaries([*in_kept, late[1]])[kept]


@settings(max_examples=200, deadline=None)
@given(
    codes=st.lists(st.integers(0, 5000), max_size=300),
    extra=st.sampled_from([0, 10, 10**6]),  # a range small or large next to the codes
)
def test_unique_codes_agree_with_numpy_unique(codes: list[int], extra: int) -> None:
    arr = np.array(codes, dtype=np.int64)
    size = (max(codes) + 1 if codes else 0) + extra
    uniq, inverse = windows.unique_codes(arr, size)
    expected_uniq, expected_inverse = np.unique(arr, return_inverse=True)
    assert uniq.tolist() == expected_uniq.tolist()
    assert inverse.tolist() == expected_inverse.tolist()
