"""search_ops benchmarks (the sql tier on SQLite, spec 001): ingest and the rollup's payoff.

- ingest: 1,000,000 `search_events` (quick: 100,000) in 50,000-row pyarrow Tables through
  `store.write` into (a) the real search_ops schema, whose rollup updates
  `search_summaries` (7 windows, p50/p95/p99 sketches) in the same transaction, and (b)
  the same schema without `[rollups.search_summaries]`; vs raw `sqlite3` `executemany`
  of `INSERT OR IGNORE` with the same rows as tuples (converted from the batch outside
  the timed section), one transaction per batch, into a fresh database made with the
  same DDL (`schema_up`) and pragmas (the sql tier's PRAGMAS: WAL, foreign_keys=ON,
  synchronous=NORMAL, a 64 MiB page cache). The three are interleaved batch by batch
  (rotating which goes first), after an `os.sync()`, so that all see the same machine
  and databases of the same size. Target:
  store rows/s >= 0.8x raw, for (b) and (a); "rollup maintenance overhead" is
  time(a) / time(b) - 1.
- latency window: 10,000,000 events (quick: 200,000) written through the store with
  its rollup, then `store.queries.search_latency_window(project, instance, "1m", day)`
  for one instance and one whole day (1,440 windows) vs the same answer computed from
  the raw events by plain SQLite SQL (below, RAW_WINDOW_SQL): per 1m window, count(*)
  and nearest-rank p50/p95/p99 (rank ceil(q*n), the k-th smallest latency, by
  row_number() over the window's latencies sorted; ceil in integer arithmetic). Each
  is timed 50 times, interleaved, after one warm-up each; the p95 of the 50 timings is
  reported, and raw / rollup as the ratio. The counts must agree window by window and
  the rollup's percentiles lie within the sketch's 0.5% (+1 µs of rounding) of the
  exact ones; a warning is printed otherwise.

Data: 4 projects x 5 instances; ts_ms spread evenly over 6 days from a Monday 00:00 UTC
with up to 5 s of jitter (so a few events arrive late), written in time order as a
collector would send them. Ids are time-ordered like UUIDv7 (a 48-bit ms prefix), so
index inserts stay near the end of each B-tree for every side alike. Searches come as
an `initial` event and a `refined` (85%) or `failed` (15%) one sharing a correlation id;
latency_us is lognormal (median ~2 ms, failed ones slower), result_count a Poisson count
(null for failures and 3% of the others), query_hash from 50,000 distinct queries.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
import statistics
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import tomli_w

import telelake
from bench.ingest import _settle
from bench.report import INFO, MISSED, PASS, Line, Progress, quiet, rate, ratio_line
from telelake.rollup import sketch
from telelake.rollup.windows import ORIGIN_MS
from telelake.schema.load import builtin_path, load_schema
from telelake.sql.ddl import schema_up
from telelake.sql.tier import PRAGMAS

SCHEMA = "search_ops"
TABLE = "search_events"
PROJECTS, INSTANCES_PER_PROJECT = 4, 5
SPAN_DAYS = 6
DAY_MS = 86_400_000
MINUTE_MS = 60_000
START_MS = int(dt.datetime(2026, 1, 5, tzinfo=dt.UTC).timestamp() * 1000)  # a Monday
JITTER_MS = 5_000
BATCH_ROWS = 50_000
INGEST_ROWS, QUICK_INGEST_ROWS = 1_000_000, 100_000
# Quick: 200,000, not 1,000,000: the store with its rollup ingests ~10,000 events/s here,
# and --quick must stay under a minute (200,000 leaves some 1m windows empty).
WINDOW_EVENTS, QUICK_WINDOW_EVENTS = 10_000_000, 200_000
REPEATS = 50
INGEST_MIN = 0.8
SEED = 20260105

COLUMNS = (
    "event_id",
    "project_key",
    "instance_id",
    "correlation_id",
    "query_hash",
    "query_class",
    "phase",
    "latency_us",
    "result_count",
    "memory_bytes",
    "ts_ms",
)
RAW_INSERT = (
    f"INSERT OR IGNORE INTO {TABLE} ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in COLUMNS)})"
)
RAW_PRAGMAS = PRAGMAS  # the sql tier's own: WAL, foreign keys, NORMAL sync, 64 MiB cache

# The latency window computed from raw events: nearest-rank percentiles (rank ceil(q*n),
# as the rollup's sketch defines them) from each window's latencies sorted by
# row_number(); ceil(q*n) in integers: (n+1)/2, (19n+19)/20, (99n+99)/100.
RAW_WINDOW_SQL = f"""
WITH e AS (
    SELECT (ts_ms - {ORIGIN_MS}) / {MINUTE_MS} AS m, latency_us
    FROM search_events
    WHERE project_key = :project_key AND instance_id = :instance_id
      AND ts_ms >= :start_ms AND ts_ms < :end_ms
), r AS (
    SELECT m, latency_us,
           row_number() OVER (PARTITION BY m ORDER BY latency_us) AS rn,
           count(*) OVER (PARTITION BY m) AS n
    FROM e
)
SELECT m * {MINUTE_MS} + {ORIGIN_MS} AS window_start_ms,
       max(CASE WHEN rn = (n + 1) / 2 THEN latency_us END) AS p50_latency_us,
       max(CASE WHEN rn = (19 * n + 19) / 20 THEN latency_us END) AS p95_latency_us,
       max(CASE WHEN rn = (99 * n + 99) / 100 THEN latency_us END) AS p99_latency_us,
       count(*) AS search_count
FROM r GROUP BY m ORDER BY m
"""


# -- data ------------------------------------------------------------------------------------


def instances() -> list[tuple[str, str]]:
    """(project_key, instance_id) of every instance."""
    return [
        (f"proj-{p}", f"proj-{p}-inst-{i}")
        for p in range(PROJECTS)
        for i in range(INSTANCES_PER_PROJECT)
    ]


def write_parents(store: telelake.Store) -> None:
    """The projects and instances search_events refer to (FKs)."""
    projects = sorted({p for p, _ in instances()})
    store.write(
        "projects",
        [
            {
                "project_key": p,
                "display_name": p.replace("-", " ").title(),
                "created_at_ms": START_MS - DAY_MS,
                "updated_at_ms": START_MS - DAY_MS,
            }
            for p in projects
        ],
    )
    store.write(
        "instances",
        [
            {
                "instance_id": i,
                "project_key": p,
                "first_seen_ms": START_MS - DAY_MS,
                "last_heartbeat_ms": START_MS,
                "state": "healthy",
            }
            for p, i in instances()
        ],
    )


def events(n: int, lo: int, hi: int) -> pa.Table:
    """Events lo..hi-1 of an n-event data set (the same rows on every call)."""
    rng = np.random.default_rng([SEED, n, lo])
    k = hi - lo
    index = np.arange(lo, hi, dtype=np.int64)
    span = SPAN_DAYS * DAY_MS
    ts = START_MS + index * span // n + rng.integers(0, JITTER_MS, k)
    ts = np.minimum(ts, START_MS + span - 1)
    pairs = instances()
    search = index // 2  # two events per search: initial, then refined or failed
    inst = _per_search(n, search, len(pairs))
    second = index % 2 == 1
    failed = second & (rng.random(k) < 0.15)
    phase = np.where(second, np.where(failed, "failed", "refined"), "initial")
    latency = rng.lognormal(np.log(2_000), 0.8, k) * np.where(failed, 3.0, 1.0)
    results = rng.poisson(20, k)
    no_results = failed | (rng.random(k) < 0.03)
    classes = np.array(["lexical", "semantic", "hybrid", "filter"])
    query = _per_search(n, search, 50_000, salt=2)
    corr_rand = _per_search(n, search, 2**40, salt=3)
    ts_list = ts.tolist()
    search_ts = (START_MS + (search * 2) * span // n).tolist()
    return pa.table(
        {
            "event_id": [
                f"{t:012x}-{i:012x}" for t, i in zip(ts_list, index.tolist(), strict=True)
            ],
            "project_key": [pairs[j][0] for j in inst.tolist()],
            "instance_id": [pairs[j][1] for j in inst.tolist()],
            "correlation_id": [
                f"{t:012x}-{r:010x}" for t, r in zip(search_ts, corr_rand.tolist(), strict=True)
            ],
            "query_hash": [f"{q * 2654435761 % 2**64:016x}" for q in query.tolist()],
            "query_class": classes[_per_search(n, search, 4, salt=4)],
            "phase": phase,
            "latency_us": pa.array(np.maximum(latency, 1).astype(np.int64)),
            "result_count": pa.array(results, pa.int64(), mask=no_results),
            "memory_bytes": pa.array(rng.lognormal(np.log(2**20), 1.0, k).astype(np.int64)),
            "ts_ms": pa.array(ts, pa.int64()),
        }
    )


def _per_search(n: int, search: np.ndarray, high: int, salt: int = 1) -> np.ndarray:
    """A value in [0, high) per search, the same for both of its events (a hash)."""
    x = (search.astype(np.uint64) + np.uint64(salt * 1_000_003 + n)) * np.uint64(0x9E3779B97F4A7C15)
    x ^= x >> np.uint64(29)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(32)
    return (x % np.uint64(high)).astype(np.int64)


def batches(n: int) -> Iterator[pa.Table]:
    """The n events in time order, BATCH_ROWS at a time."""
    for lo in range(0, n, BATCH_ROWS):
        yield events(n, lo, min(lo + BATCH_ROWS, n))


def as_tuples(batch: pa.Table) -> list[tuple[Any, ...]]:
    return list(zip(*(batch.column(c).to_pylist() for c in COLUMNS), strict=True))


# -- the three databases ---------------------------------------------------------------------


def schema_without_rollup(work: Path) -> Path:
    """search_ops with `[rollups.search_summaries]` removed, next to its migrations/queries."""
    source = builtin_path(SCHEMA)
    data = tomllib.loads(source.read_text(encoding="utf-8"))
    del data["rollups"]
    out = work / "search_ops-no-rollup"
    out.mkdir()
    (out / "schema.toml").write_text(tomli_w.dumps(data), encoding="utf-8")
    for folder in ("migrations", "queries"):
        shutil.copytree(source.parent / folder, out / folder)
    return out / "schema.toml"


def raw_database(path: Path) -> sqlite3.Connection:
    """A fresh SQLite database with the schema's DDL, pragmas and parent rows."""
    con = sqlite3.connect(path, isolation_level=None)
    for pragma in RAW_PRAGMAS:
        con.execute(pragma)
    con.executescript(schema_up(load_schema(SCHEMA)))
    projects = sorted({p for p, _ in instances()})
    con.execute("BEGIN")
    con.executemany(
        "INSERT INTO projects VALUES (?, ?, ?, ?)",
        [(p, p, START_MS - DAY_MS, START_MS - DAY_MS) for p in projects],
    )
    con.executemany(
        "INSERT INTO instances (instance_id, project_key, first_seen_ms, last_heartbeat_ms, "
        "state) VALUES (?, ?, ?, ?, 'healthy')",
        [(i, p, START_MS - DAY_MS, START_MS) for p, i in instances()],
    )
    con.execute("COMMIT")
    return con


def raw_write(con: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    raw_write_sql(con, RAW_INSERT, rows)


def raw_write_sql(con: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    con.execute("BEGIN")
    con.executemany(sql, rows)
    con.execute("COMMIT")


# -- ingest ------------------------------------------------------------------------------------


@dataclass
class Ingest:
    rows: int
    raw_seconds: float
    plain_seconds: float  # store, schema without the rollup
    rollup_seconds: float  # store, the real search_ops schema
    summaries: int
    summaries_seconds: float = 0.0  # raw sqlite writing the final summary rows, once each

    def rows_per_s(self, seconds: float) -> float:
        return self.rows / seconds

    @property
    def overhead(self) -> float:
        return self.rollup_seconds / self.plain_seconds - 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "batch_rows": BATCH_ROWS,
            "raw_seconds": round(self.raw_seconds, 3),
            "store_no_rollup_seconds": round(self.plain_seconds, 3),
            "store_rollup_seconds": round(self.rollup_seconds, 3),
            "search_summaries_rows": self.summaries,
            "raw_summaries_seconds": round(self.summaries_seconds, 3),
        }


def ingest(work: Path, n: int, progress: Progress) -> Ingest:
    """The same batches into raw SQLite, the store without and with its rollup."""
    plain_schema = schema_without_rollup(work)
    raw = raw_database(work / "raw.db")
    plain = telelake.open(work / "store-plain", schema=plain_schema)
    full = telelake.open(work / "store-rollup", schema=SCHEMA)
    seconds = {"raw": 0.0, "plain": 0.0, "rollup": 0.0}
    try:
        write_parents(plain)
        write_parents(full)
        order = ("raw", "plain", "rollup")
        for i, batch in enumerate(batches(n)):
            rows = as_tuples(batch)  # untimed: raw SQLite is handed ready tuples
            for side in order[i % 3 :] + order[: i % 3]:
                _settle()
                start = time.perf_counter()
                if side == "raw":
                    raw_write(raw, rows)
                elif side == "plain":
                    plain.write(TABLE, batch)
                else:
                    full.write(TABLE, batch)
                seconds[side] += time.perf_counter() - start
        counts = {
            "raw": raw.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0],
            "plain": plain.sql(f"SELECT count(*) FROM {TABLE}").scalar(),
            "rollup": full.sql(f"SELECT count(*) FROM {TABLE}").scalar(),
        }
        summed = full.sql(
            "SELECT sum(search_count) FROM search_summaries WHERE window = '1m'"
        ).scalar()
        summaries = full.sql("SELECT count(*) FROM search_summaries").scalar()
        summary_seconds = raw_summaries(raw, full, n // BATCH_ROWS)
    finally:
        raw.close()
        plain.close()
        full.close()
    if set(counts.values()) != {n} or summed != n:
        raise RuntimeError(f"expected {n} events everywhere: {counts}, 1m windows sum {summed}")
    out = Ingest(
        n, seconds["raw"], seconds["plain"], seconds["rollup"], int(summaries), summary_seconds
    )
    progress(
        f"search_ops: ingest {n:,} events, raw sqlite",
        out.raw_seconds,
        f"({out.rows_per_s(out.raw_seconds):,.0f} rows/s)",
    )
    progress(
        "search_ops: ingest, store without rollup",
        out.plain_seconds,
        f"({out.rows_per_s(out.plain_seconds):,.0f} rows/s)",
    )
    progress(
        "search_ops: ingest, store with rollup",
        out.rollup_seconds,
        f"({out.rows_per_s(out.rollup_seconds):,.0f} rows/s, {out.summaries:,} summaries)",
    )
    return out


def raw_summaries(raw: sqlite3.Connection, store: telelake.Store, parts: int) -> float:
    """Seconds for raw SQLite to insert the store's final search_summaries rows into its
    database (after the events), once each, oldest first, in `parts` transactions: what
    any rollup kept in the same database must at least write, without any arithmetic."""
    result = store.sql("SELECT * FROM search_summaries ORDER BY window_start_ms")
    rows = result.rows()
    sql = (
        f"INSERT INTO search_summaries ({', '.join(result.columns)}) "
        f"VALUES ({', '.join('?' for _ in result.columns)})"
    )
    step = -(-len(rows) // max(parts, 1))
    seconds = 0.0
    for lo in range(0, len(rows), step):
        _settle()
        start = time.perf_counter()
        raw_write_sql(raw, sql, rows[lo : lo + step])
        seconds += time.perf_counter() - start
    return seconds


# -- latency window ----------------------------------------------------------------------------


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[sketch.nearest_rank(q, len(ordered)) - 1]


@dataclass
class Window:
    events: int
    ingest_seconds: float
    windows: int
    day_events: int
    rollup_times: list[float]
    raw_times: list[float]
    count_mismatches: int
    percentile_mismatches: int
    warnings: list[str] = field(default_factory=list)

    @property
    def rollup_p95(self) -> float:
        return nearest_rank(self.rollup_times, 0.95)

    @property
    def raw_p95(self) -> float:
        return nearest_rank(self.raw_times, 0.95)

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "ingest_seconds": round(self.ingest_seconds, 3),
            "ingest_rows_per_s": round(self.events / self.ingest_seconds, 1),
            "windows": self.windows,
            "day_events": self.day_events,
            "repeats": len(self.rollup_times),
            "rollup_p95_ms": round(self.rollup_p95 * 1000, 3),
            "rollup_median_ms": round(statistics.median(self.rollup_times) * 1000, 3),
            "raw_p95_ms": round(self.raw_p95 * 1000, 3),
            "raw_median_ms": round(statistics.median(self.raw_times) * 1000, 3),
            "count_mismatches": self.count_mismatches,
            "percentile_mismatches": self.percentile_mismatches,
            "warnings": self.warnings,
        }


def window(work: Path, n: int, progress: Progress) -> Window:
    """Ingest n events through the store, then one day of 1m windows: rollup vs raw SQL."""
    root = work / "window"
    every = max(BATCH_ROWS, n // 10 // BATCH_ROWS * BATCH_ROWS)
    with telelake.open(root, schema=SCHEMA) as store:
        write_parents(store)
        start = time.perf_counter()
        done = 0
        for batch in batches(n):
            store.write(TABLE, batch)
            done += batch.num_rows
            if done % every == 0 or done == n:
                elapsed = time.perf_counter() - start
                progress(
                    f"search_ops: window store, {done:,} of {n:,} events written",
                    elapsed,
                    f"({done / elapsed:,.0f} rows/s)",
                )
        ingest_seconds = time.perf_counter() - start

        project, instance = instances()[0]
        day = START_MS + 2 * DAY_MS  # a whole day in the middle of the data
        params = {
            "project_key": project,
            "instance_id": instance,
            "start_ms": day,
            "end_ms": day + DAY_MS,
        }
        last = day + DAY_MS - MINUTE_MS  # BETWEEN is inclusive: 1440 window starts

        def rollup() -> Any:
            return store.queries.search_latency_window(project, instance, "1m", day, last)

        raw = sqlite3.connect(f"file:{store.sql_tier.path}?mode=ro", uri=True)
        try:

            def on_the_fly() -> list[tuple[Any, ...]]:
                return raw.execute(RAW_WINDOW_SQL, params).fetchall()

            summary = rollup().rows()
            exact = on_the_fly()
            rollup_times, raw_times = [], []
            for _ in range(REPEATS):
                start = time.perf_counter()
                rollup()
                rollup_times.append(time.perf_counter() - start)
                start = time.perf_counter()
                on_the_fly()
                raw_times.append(time.perf_counter() - start)
        finally:
            raw.close()

    counts_bad, pct_bad, warnings = compare(summary, exact)
    out = Window(
        n,
        ingest_seconds,
        len(summary),
        sum(r[-1] for r in exact),
        rollup_times,
        raw_times,
        counts_bad,
        pct_bad,
        warnings,
    )
    progress(
        "search_ops: search_latency_window, 1 day of 1m windows",
        out.rollup_p95,
        f"(p95 of {REPEATS}: {out.rollup_p95 * 1000:,.2f} ms; raw SQL on the fly p95 "
        f"{out.raw_p95 * 1000:,.1f} ms, "
        f"{out.windows} windows, {out.day_events:,} events)",
    )
    return out


def compare(
    summary: list[tuple[Any, ...]], exact: list[tuple[Any, ...]]
) -> tuple[int, int, list[str]]:
    """Window-by-window checks: counts equal, percentiles within the sketch's accuracy."""
    warnings = []
    rolled = {r[0]: r for r in summary}  # window_start_ms, p50, p95, p99, search_count
    truth = {r[0]: r for r in exact}
    if set(rolled) != set(truth):
        warnings.append(
            f"windows differ: {len(rolled)} in search_summaries, {len(truth)} from raw events"
        )
    counts_bad = sum(1 for w in truth if w not in rolled or rolled[w][4] != truth[w][4])
    pct_bad = 0
    for w, t in truth.items():
        r = rolled.get(w)
        if r is None:
            continue
        for got, want in zip(r[1:4], t[1:4], strict=True):
            if got is None or abs(got - want) > sketch.ALPHA * want + 1:
                pct_bad += 1
    if counts_bad:
        warnings.append(
            f"search_count differs from the raw count(*) in {counts_bad} of {len(truth)} windows"
        )
    if pct_bad:
        warnings.append(
            f"{pct_bad} percentiles off the exact nearest-rank value by more than "
            f"{sketch.ALPHA:.1%} + 1 us"
        )
    return counts_bad, pct_bad, warnings


# -- the whole part ------------------------------------------------------------------------------


@dataclass
class SearchOpsBench:
    ingest: Ingest
    window: Window
    config: dict[str, Any]

    @property
    def warnings(self) -> list[str]:
        return self.window.warnings

    def as_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "ingest": self.ingest.as_dict(),
            "window": self.window.as_dict(),
        }


def run(work: Path, quick: bool = False, progress: Progress = quiet) -> SearchOpsBench:
    """Both search_ops benchmarks, under `work` (left for the caller to remove)."""
    n_ingest = QUICK_INGEST_ROWS if quick else INGEST_ROWS
    n_window = QUICK_WINDOW_EVENTS if quick else WINDOW_EVENTS
    (work / "ingest").mkdir()
    ing = ingest(work / "ingest", n_ingest, progress)
    shutil.rmtree(work / "ingest")
    win = window(work, n_window, progress)
    config = {
        "ingest_rows": n_ingest,
        "window_events": n_window,
        "batch_rows": BATCH_ROWS,
        "instances": PROJECTS * INSTANCES_PER_PROJECT,
        "span_days": SPAN_DAYS,
        "repeats": REPEATS,
    }
    return SearchOpsBench(ing, win, config)


def lines(bench: SearchOpsBench) -> list[Line]:
    i, w = bench.ingest, bench.window
    raw_rate = i.rows_per_s(i.raw_seconds)
    details = {"raw": round(raw_rate, 1), **i.as_dict()}
    checks_ok = not (w.count_mismatches or w.percentile_mismatches)
    return [
        ratio_line(
            f"search_events ingest, {i.rows:,} rows: store without rollup",
            i.rows_per_s(i.plain_seconds),
            "sqlite executemany",
            raw_rate,
            INGEST_MIN,
            details,
        ),
        ratio_line(
            "  same, store with its rollup (search_ops)",
            i.rows_per_s(i.rollup_seconds),
            "sqlite executemany",
            raw_rate,
            INGEST_MIN,
            details,
        ),
        Line(
            "  rollup maintenance overhead",
            f"{i.overhead:+.0%} time",
            f"{i.summaries:,} summary rows",
            details={"overhead": round(i.overhead, 4)},
        ),
        Line(
            "  raw sqlite also writing the final summaries once (executemany)",
            f"{i.summaries_seconds / i.raw_seconds:+.0%} time over raw events",
            f"{i.summaries_seconds:,.1f} s for {i.summaries:,} rows",
            i.raw_seconds / (i.raw_seconds + i.summaries_seconds),
            details={"summaries_seconds": round(i.summaries_seconds, 3)},
        ),
        Line(
            f"search_latency_window, 1 day x 1m, {w.events:,} events",
            f"p95 {w.rollup_p95 * 1000:,.2f} ms",
            f"raw SQL on the fly: p95 {w.raw_p95 * 1000:,.1f} ms",
            w.raw_p95 / w.rollup_p95,
            status=INFO,
            details=w.as_dict(),
        ),
        Line(
            f"  {w.windows:,} windows vs raw: counts, percentiles",
            f"{w.windows - w.count_mismatches:,} counts equal",
            f"{w.day_events:,} events that day",
            target="all equal",
            status=PASS if checks_ok else MISSED,
            details={"count_mismatches": w.count_mismatches, "pct": w.percentile_mismatches},
        ),
        Line(
            f"  ingest of the {w.events:,} events (store, rollup)",
            rate(w.events / w.ingest_seconds),
            f"{w.ingest_seconds:,.0f} s",
        ),
    ]
