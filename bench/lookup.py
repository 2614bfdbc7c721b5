"""Session lookups (issue 17 part 6): one session out of 7, 30 and 90 days of data.

Stores holding 7, 30 and 90 days of `proc_samples` (the same rows per day, two hosts,
written in 100k-row batches as a collector's large writes would be) and one `runs` row
per session. A session is SESSION_ROWS consecutive samples of one host, and its id
`pt-YYYYMMDD-HHMMSS-xxxx` is its start time, as the collector makes it. Timed (median
of 5 warm runs) in each store, for a session of the newest day (present in every store):

- `SELECT count(*), avg(cpu_percent), max(rss_bytes) FROM proc_samples WHERE
  session_id = ?`; target: 90 days within 1.5x of 7 days, as for the time window of
  bench/lifecycle.py;
- `SELECT * FROM session_summary(?)` (runs LEFT JOIN outcomes); the same target;
- the first query with the value hidden from the planner (`session_id || '' = ?`, the
  same rows): every file is listed and opened, DuckDB skipping row groups by their
  statistics itself. Reported as the peer.

Before timing, the bench waits until the store's directories are a few seconds old
(`listing.QUIET_NS`), as those of any store holding days of data are: listings of
directories changed in the last seconds are not reused (see lake/listing.py).
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

import telelake
from bench import datagen
from bench.ingest import HOST_ID, SCHEMA, TABLE
from bench.report import MISSED, PASS, Line, Progress, quiet
from telelake.lake import listing
from telelake.schema.load import load_schema
from telelake.schema.model import Table

DAY_ROWS, QUICK_DAY_ROWS = 20_000, 2_000
SESSION_ROWS = 500
WINDOW_DAYS = (7, 30, 90)
HOSTS = (HOST_ID, "0badc0ffee0ddf00")
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
LOOKUP_MAX = 1.5
RUNS = 5

LOOKUP = "SELECT count(*), avg(cpu_percent), max(rss_bytes) FROM proc_samples WHERE session_id = ?"
HIDDEN = LOOKUP.replace("session_id = ?", "session_id || '' = ?")
SUMMARY = "SELECT * FROM session_summary(?)"


def _median(f: Callable[[], object], runs: int = RUNS) -> float:
    f()  # warm-up: footers read, views built
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def session_id(start_us: int, n: int) -> str:
    when = dt.datetime.fromtimestamp(start_us / 1e6, dt.UTC)
    return f"pt-{when:%Y%m%d-%H%M%S}-{n % 65536:04x}"


def samples(table: Table, days: int, day_rows: int) -> tuple[pa.Table, list[str], np.ndarray]:
    """`days` days of samples from START: rows, session ids and each session's start (µs)."""
    data = datagen.proc_samples(table, days * day_rows)
    n = data.num_rows
    step = days * 86_400_000_000 // n
    start_us = int(START.timestamp() * 1_000_000)
    ts = start_us + np.arange(n, dtype=np.int64) * step
    session = np.arange(n, dtype=np.int64) // SESSION_ROWS
    starts = ts[::SESSION_ROWS]
    ids = [session_id(int(s), i) for i, s in enumerate(starts)]
    cols = {
        "session_id": pa.array(ids, pa.string()).take(pa.array(session)),
        "sample_ts": pa.array(ts, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "sample_seq": pa.array(np.arange(n) % SESSION_ROWS // 50, pa.int16()),
    }
    for name, values in cols.items():
        data = data.set_column(data.schema.get_field_index(name), name, values)
    hosts = np.array(HOSTS)[session % len(HOSTS)]
    return data.append_column("host_id", pa.array(hosts, pa.string())), ids, starts


def runs_rows(ids: list[str], starts: np.ndarray) -> dict[str, list[Any]]:
    """One `runs` row per session."""
    n = len(ids)
    when = [dt.datetime.fromtimestamp(int(s) / 1e6, dt.UTC) for s in starts]
    return {
        "session_id": ids,
        "host_id": [HOSTS[i % len(HOSTS)] for i in range(n)],
        "mode": ["robot_plan"] * n,
        "deep_scan": [False] * n,
        "started_at": when,
        "duration_ms": [2_160_000] * n,
        "state": ["completed"] * n,
        "processes_scanned": [SESSION_ROWS // 10] * n,
        "candidates_found": [i % 7 for i in range(n)],
        "kills_attempted": [0] * n,
        "kills_successful": [0] * n,
        "spares": [0] * n,
        "pt_version": ["2.1.0"] * n,
        "pt_core_version": ["2.1.0"] * n,
        "schema_version": ["1.0.0"] * n,
        "os_family": ["linux"] * n,
        "arch": ["x86_64"] * n,
    }


def build(root: Path, table: Table, days: int, day_rows: int) -> str:
    """Write the store; returns the session looked up (mid newest day)."""
    data, ids, starts = samples(table, days, day_rows)
    with telelake.open(root, host_id=HOST_ID) as store:
        for i in range(0, data.num_rows, 100_000):
            store.write(TABLE, data.slice(i, 100_000))
        store.write("runs", runs_rows(ids, starts))
    newest = int((START + dt.timedelta(days=days - 1, hours=12)).timestamp() * 1_000_000)
    return ids[int(np.searchsorted(starts, newest))]


@dataclass
class LookupBench:
    lookup: dict[int, float] = field(default_factory=dict)
    summary: dict[int, float] = field(default_factory=dict)
    hidden: dict[int, float] = field(default_factory=dict)
    files: dict[int, int] = field(default_factory=dict)
    rows: dict[int, int] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "lookup_seconds": self.lookup,
            "session_summary_seconds": self.summary,
            "hidden_value_seconds": self.hidden,
            "proc_samples_files": self.files,
        }


def run(work: Path, quick: bool = False, progress: Progress = quiet) -> LookupBench:
    """Build the three stores under `work` and time the lookups in each."""
    table = load_schema(SCHEMA).tables[TABLE]
    day_rows = QUICK_DAY_ROWS if quick else DAY_ROWS
    bench = LookupBench(config={"day_rows": day_rows, "session_rows": SESSION_ROWS})
    for days in WINDOW_DAYS:
        root = work / f"days-{days}"
        start = time.perf_counter()
        sid = build(root, table, days, day_rows)
        progress(f"lookup: build {days}-day store (untimed)", time.perf_counter() - start, "")
        time.sleep(listing.QUIET_NS / 1e9 + 0.5)
        with telelake.open(root, host_id=HOST_ID) as store:
            bench.files[days] = len(store.files(TABLE))
            found = store.sql(LOOKUP, [sid]).rows()
            if found != store.sql(HIDDEN, [sid]).rows() or found[0][0] != SESSION_ROWS:
                raise RuntimeError(f"{days} days: the lookup of {sid} found {found}")
            summary = store.sql(SUMMARY, [sid]).rows()
            if len(summary) != 1 or summary[0][0] != sid:
                raise RuntimeError(f"{days} days: session_summary({sid}) gave {summary}")
            bench.rows[days] = int(found[0][0])
            bench.lookup[days] = _median(lambda s=store, v=sid: s.sql(LOOKUP, [v]))
            bench.summary[days] = _median(lambda s=store, v=sid: s.sql(SUMMARY, [v]))
            bench.hidden[days] = _median(lambda s=store, v=sid: s.sql(HIDDEN, [v]))
        progress(
            f"lookup: {days} days, {bench.files[days]} files",
            bench.lookup[days],
            f"(session_summary {bench.summary[days] * 1000:.1f} ms, "
            f"value hidden {bench.hidden[days] * 1000:.1f} ms)",
        )
    return bench


def lines(bench: LookupBench) -> list[Line]:
    first, last = WINDOW_DAYS[0], WINDOW_DAYS[-1]
    out = []
    for name, seconds in (
        ("session lookup (session_id = ?)", bench.lookup),
        ("session_summary(sid)", bench.summary),
    ):
        ratio = seconds[last] / seconds[first]
        out.append(
            Line(
                f"{name}, {last} vs {first} days stored",
                ", ".join(f"{d}d {seconds[d] * 1000:.1f} ms" for d in WINDOW_DAYS),
                f"value hidden, {last}d: {bench.hidden[last] * 1000:.1f} ms",
                ratio,
                f"<= {LOOKUP_MAX:.1f}x",
                PASS if ratio <= LOOKUP_MAX else MISSED,
                {"seconds": seconds, "hidden_seconds": bench.hidden, "files": bench.files},
            )
        )
    return out
