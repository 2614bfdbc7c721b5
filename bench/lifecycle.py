"""Lifecycle benchmarks (issue 4): compaction, partition pruning, retention.

- small files: 10,000 `proc_samples` files of 100 rows (10 day partitions), written
  directly with the table's layout and telelake's metadata (a store that folded every
  write would look like this). A `command_category_stats`-like aggregation (per `cmd`:
  count, mean CPU, max RSS) before vs after `store.compact()` (median of 3 warm runs;
  target: >= 5x faster after), and compaction throughput in MB of source files per
  second vs plain pyarrow doing the same work on a copy (read every file of a
  partition, concatenate, sort, write one file with the same layout; target >= 0.8x);
- pruning: stores holding 7, 30 and 90 days of `proc_samples` (the same rows per day,
  two hosts): a 1-day, 1-host window query (median of 5 warm runs); target: 90 days
  within 1.5x of 7 days;
- retention: removing the oldest day of the 90-day store (`enforce_retention`) vs a
  `DELETE` of the same rows from one DuckDB table holding the 90 days (+ CHECKPOINT);
  the ratio is reported.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import telelake
from bench import datagen
from bench.ingest import HOST_ID, SCHEMA, TABLE, _settle, write_like_telelake
from bench.report import INFO, MISSED, PASS, Line, Progress, quiet
from telelake.lake import compact, layout, parquet
from telelake.schema.load import load_schema
from telelake.schema.model import Table

SMALL_FILES, QUICK_SMALL_FILES = 10_000, 1_000
ROWS_PER_FILE = 100
SMALL_PARTITIONS = 10
DAY_ROWS, QUICK_DAY_ROWS = 20_000, 2_000
WINDOW_DAYS = (7, 30, 90)
HOSTS = (HOST_ID, "0badc0ffee0ddf00")
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

COMPACT_QUERY_MIN = 5.0
COMPACT_RATE_MIN = 0.8
PRUNING_MAX = 1.5

AGGREGATE = (
    "SELECT cmd, count(*) AS n, avg(cpu_percent) AS cpu, max(rss_bytes) AS rss "
    "FROM proc_samples GROUP BY cmd ORDER BY n DESC, cmd"
)


def _median(f: Callable[[], object], runs: int) -> float:
    f()  # warm-up: footers read, views built
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def spread_over_days(data: pa.Table, days: int, hosts: tuple[str, ...]) -> pa.Table:
    """Give the rows timestamps spread evenly over `days` days from START, and hosts."""
    n = data.num_rows
    step = days * 86_400_000_000 // max(n, 1)
    start_us = int(START.timestamp() * 1_000_000)
    ts = pa.array([start_us + i * step for i in range(n)], pa.int64())
    ts = ts.cast(pa.timestamp("us", tz="UTC"))
    out = data.set_column(data.schema.get_field_index("sample_ts"), "sample_ts", ts)
    host = pa.array([hosts[i % len(hosts)] for i in range(n)], pa.string())
    return out.append_column("host_id", host)


# -- small files and compaction ------------------------------------------------------------


def write_small_files(root: Path, table: Table, data: pa.Table) -> int:
    """One Parquet file per ROWS_PER_FILE rows, laid out as telelake would; returns bytes."""
    assert table.parquet is not None
    meta = {
        parquet.META_SCHEMA: SCHEMA.encode(),
        parquet.META_VERSION: load_schema(SCHEMA).version.encode(),
        parquet.META_TABLE: table.name.encode(),
    }
    total = 0
    stamp = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    for i in range(0, data.num_rows, ROWS_PER_FILE):
        part = data.slice(i, ROWS_PER_FILE)
        day = pc.min(part.column("sample_ts")).as_py()
        values = (("year", f"{day:%Y}"), ("month", f"{day:%m}"), ("day", f"{day:%d}"))
        directory = root / table.name / layout.partition_path((*values, ("host_id", HOST_ID)))
        directory.mkdir(parents=True, exist_ok=True)
        rows = parquet.sort_rows(part.select(list(table.column_names)), table.parquet.sort)
        rows = rows.replace_schema_metadata(meta)
        path = directory / layout.file_name(table.parquet.file_prefix, stamp, f"f{i:09d}")
        parquet.write_table(path, rows, table.parquet)
        total += path.stat().st_size
    return total


def pyarrow_compaction(root: Path, table: Table) -> float:
    """Plain pyarrow doing compaction's work on a copy: seconds."""
    assert table.parquet is not None
    start = time.perf_counter()
    for directory, files in compact.partitions(root / table.name):
        rows = pa.concat_tables([pq.read_table(f) for f in files]).combine_chunks()
        write_like_telelake(rows, directory / "merged.parquet", table.parquet)
        for f in files:
            f.unlink()
    return time.perf_counter() - start


@dataclass
class SmallFiles:
    files: int
    bytes: int
    query_before: float
    query_after: float
    compact_seconds: float
    pyarrow_seconds: float
    files_after: int
    info: dict[str, Any] = field(default_factory=dict)


def small_files(work: Path, n_files: int, progress: Progress) -> SmallFiles:
    table = load_schema(SCHEMA).tables[TABLE]
    root = work / "small"
    telelake.open(root, host_id=HOST_ID).close()
    data = datagen.proc_samples(table, n_files * ROWS_PER_FILE)
    data = spread_over_days(data, SMALL_PARTITIONS, (HOST_ID,))
    start = time.perf_counter()
    size = write_small_files(root, table, data)
    progress("lifecycle: write small files (untimed)", time.perf_counter() - start, "")
    copy = work / "small-copy"
    shutil.copytree(root / table.name, copy / table.name)
    with telelake.open(root, host_id=HOST_ID) as store:
        before_rows = store.sql(AGGREGATE).rows()
        query_before = _median(lambda: store.sql(AGGREGATE), 3)
        _settle()
        start = time.perf_counter()
        report = store.compact(table=TABLE)
        compact_seconds = time.perf_counter() - start
        after_rows = store.sql(AGGREGATE).rows()
        query_after = _median(lambda: store.sql(AGGREGATE), 3)
        files_after = sum(len(fs) for _, fs in store._lake.visible_partitions(table))
    if after_rows != before_rows:
        raise RuntimeError("compaction changed the aggregation's result")
    _settle()
    pyarrow_seconds = pyarrow_compaction(copy, table)
    progress(
        "lifecycle: compaction of small files",
        compact_seconds,
        f"({n_files} -> {files_after} files; pyarrow {pyarrow_seconds:.2f}s)",
    )
    return SmallFiles(
        n_files,
        size,
        query_before,
        query_after,
        compact_seconds,
        pyarrow_seconds,
        files_after,
        {"partitions": report.partitions, "rows": data.num_rows},
    )


# -- pruning and retention -------------------------------------------------------------------


def window_query(day: dt.datetime, levels: bool = False) -> str:
    """The 1-day, 1-host query; with `levels`, also filtered on the partition columns."""
    end = day + dt.timedelta(days=1)
    extra = f" AND year = {day.year} AND month = {day.month} AND day = {day.day}"
    return (
        "SELECT count(*), avg(cpu_percent), max(rss_bytes) FROM proc_samples "
        f"WHERE host_id = '{HOST_ID}' AND sample_ts >= TIMESTAMPTZ '{day.isoformat()}' "
        f"AND sample_ts < TIMESTAMPTZ '{end.isoformat()}'" + (extra if levels else "")
    )


def build_days(root: Path, table: Table, days: int, day_rows: int) -> pa.Table:
    data = datagen.proc_samples(table, days * day_rows)
    data = spread_over_days(data, days, HOSTS)
    with telelake.open(root, host_id=HOST_ID) as store:
        for i in range(0, data.num_rows, 100_000):
            store.write(TABLE, data.slice(i, 100_000))
    return data


@dataclass
class Pruning:
    seconds: dict[int, float]
    rows: dict[int, int]
    with_levels: dict[int, float]  # the same query also filtered on year/month/day


def pruning(work: Path, day_rows: int, progress: Progress) -> tuple[Pruning, Path]:
    table = load_schema(SCHEMA).tables[TABLE]
    seconds, rows, with_levels = {}, {}, {}
    for days in WINDOW_DAYS:
        root = work / f"days-{days}"
        start = time.perf_counter()
        build_days(root, table, days, day_rows)
        progress(f"lifecycle: build {days}-day store (untimed)", time.perf_counter() - start, "")
        day = START + dt.timedelta(days=days - 1)  # the newest day: in every store
        day = day.replace(hour=0, minute=0, second=0, microsecond=0)
        query = window_query(day)
        with telelake.open(root, host_id=HOST_ID) as store:
            rows[days] = int(store.sql(query).rows()[0][0])
            if store.sql(window_query(day, levels=True)).rows() != store.sql(query).rows():
                raise RuntimeError("the partition-column filter changed the result")
            seconds[days] = _median(lambda s=store, q=query: s.sql(q), 5)
            pruned = window_query(day, levels=True)
            with_levels[days] = _median(lambda s=store, q=pruned: s.sql(q), 5)
    if len(set(rows.values())) != 1 or not rows[WINDOW_DAYS[0]]:
        raise RuntimeError(f"the same day holds different rows per store: {rows}")
    return Pruning(seconds, rows, with_levels), work / f"days-{WINDOW_DAYS[-1]}"


@dataclass
class Retention:
    telelake_seconds: float
    duckdb_seconds: float
    rows_removed: int


def retention(root: Path, work: Path, progress: Progress) -> Retention:
    """Drop the oldest of 90 days: telelake vs DuckDB DELETE on one table."""
    days = WINDOW_DAYS[-1]
    cutoff = START + dt.timedelta(days=1)
    db = work / "retention.duckdb"
    con = duckdb.connect(str(db))
    try:
        files = [str(f) for f in (root / TABLE).rglob("*.parquet")]
        con.execute(
            "CREATE TABLE proc_samples AS SELECT * FROM read_parquet($files, "
            "hive_partitioning = true)",
            {"files": files},
        )
        con.execute("CHECKPOINT")
        _settle()
        start = time.perf_counter()
        con.execute(
            f"DELETE FROM proc_samples WHERE sample_ts < TIMESTAMPTZ '{cutoff.isoformat()}'"
        )
        con.execute("CHECKPOINT")
        duckdb_seconds = time.perf_counter() - start
    finally:
        con.close()
    (root / "config.json").write_text(
        json.dumps({"telemetry_retention": {f"{TABLE}_days": days - 1}}), encoding="utf-8"
    )
    with telelake.open(root, host_id=HOST_ID) as store:
        _settle()
        start = time.perf_counter()
        report = store.enforce_retention(now=START + dt.timedelta(days=days))
        telelake_seconds = time.perf_counter() - start
    removed = sum(s.rows for s in report.steps)
    progress("lifecycle: retention of 1 day out of 90", telelake_seconds, f"({removed} rows)")
    return Retention(telelake_seconds, duckdb_seconds, removed)


# -- the whole part ------------------------------------------------------------------------


@dataclass
class LifecycleBench:
    small: SmallFiles
    pruning: Pruning
    retention: Retention
    config: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"config": self.config}


def run(work: Path, quick: bool = False, progress: Progress = quiet) -> LifecycleBench:
    """The three lifecycle benchmarks, under `work` (left for the caller to remove)."""
    n_files = QUICK_SMALL_FILES if quick else SMALL_FILES
    day_rows = QUICK_DAY_ROWS if quick else DAY_ROWS
    small = small_files(work, n_files, progress)
    prune, root90 = pruning(work, day_rows, progress)
    ret = retention(root90, work, progress)
    config = {"small_files": n_files, "rows_per_file": ROWS_PER_FILE, "day_rows": day_rows}
    return LifecycleBench(small, prune, ret, config)


def lines(bench: LifecycleBench) -> list[Line]:
    s, p, r = bench.small, bench.pruning, bench.retention
    speedup = s.query_before / s.query_after
    mb = s.bytes / 1e6
    rate_ratio = (mb / s.compact_seconds) / (mb / s.pyarrow_seconds)
    ratio_90 = p.seconds[WINDOW_DAYS[-1]] / p.seconds[WINDOW_DAYS[0]]
    times = ", ".join(f"{d}d {p.seconds[d] * 1000:.1f} ms" for d in WINDOW_DAYS)
    return [
        Line(
            f"aggregation, {s.files:,} small files: after/before compaction",
            f"after {s.query_after * 1000:,.0f} ms",
            f"before {s.query_before * 1000:,.0f} ms",
            speedup,
            f">= {COMPACT_QUERY_MIN:.1f}x",
            PASS if speedup >= COMPACT_QUERY_MIN else MISSED,
            {"files_after": s.files_after, **s.info},
        ),
        Line(
            "compaction throughput",
            f"{mb / s.compact_seconds:,.1f} MB/s",
            f"pyarrow read+write: {mb / s.pyarrow_seconds:,.1f} MB/s",
            rate_ratio,
            f">= {COMPACT_RATE_MIN:.1f}x",
            PASS if rate_ratio >= COMPACT_RATE_MIN else MISSED,
            {"bytes": s.bytes, "telelake_s": s.compact_seconds, "pyarrow_s": s.pyarrow_seconds},
        ),
        Line(
            "1-day 1-host window, 90 vs 7 days stored",
            times,
            f"{p.rows[WINDOW_DAYS[0]]:,} rows each",
            ratio_90,
            f"<= {PRUNING_MAX:.1f}x",
            PASS if ratio_90 <= PRUNING_MAX else MISSED,
            {"seconds": p.seconds},
        ),
        Line(
            "  same, also WHERE year/month/day",
            ", ".join(f"{d}d {p.with_levels[d] * 1000:.1f} ms" for d in WINDOW_DAYS),
            "hive partition pruning",
            p.with_levels[WINDOW_DAYS[-1]] / p.with_levels[WINDOW_DAYS[0]],
            details={"seconds": p.with_levels},
        ),
        Line(
            "retention: 1 day of 90",
            f"{r.telelake_seconds * 1000:,.0f} ms",
            f"duckdb DELETE: {r.duckdb_seconds * 1000:,.0f} ms",
            r.duckdb_seconds / r.telelake_seconds,
            status=INFO,
            details={"rows_removed": r.rows_removed},
        ),
    ]
