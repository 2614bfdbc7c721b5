"""Upsert benchmarks (issue 17): what `write = "upsert"` costs on a lake table.

1. Ingest: the same proc_samples rows, 100k-row Arrow chunks, into a copy of the built-in
   table with its key and `write = "upsert"` vs an identical copy without a key,
   interleaved chunk by chunk (the final fold in `close()` is timed). Target: upsert
   >= 0.7x of the unkeyed table. Peak RSS of a fresh child doing each ingest (report).
2. Merge on read: 1% of the rows written again with a changed value, as 1,000-row writes
   that stay in the WAL (fold thresholds out of reach), then an aggregate over the whole
   table on the upsert store (its view drops the outdated Parquet rows of the 1% keys)
   vs the same aggregate on the unkeyed store (report). The answer is checked against a
   plain NumPy computation. Then the fold of those updates (copy-on-write: the files
   holding older versions are rewritten; report) and the aggregate again (report).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import telelake
from bench import datagen
from bench.durability import HOST_ID, proc_samples_toml
from bench.ingest import _settle, chunks, run_rss_child, write_ipc
from bench.report import INFO, Line, Progress, mib, quiet, ratio_line
from telelake.schema.load import load_schema

TABLE = "proc_samples"
INGEST_MIN = 0.7
ROWS, QUICK_ROWS = 1_000_000, 200_000
CHUNK = 100_000
UPDATE_FRACTION = 0.01
UPDATE_WRITE_ROWS = 1000
QUERY = f"SELECT count(*) AS n, sum(rss_bytes) AS rss FROM {TABLE}"
QUERY_RUNS = 7


@dataclass
class UpsertBench:
    """Every figure of one run."""

    rows: int
    upsert_seconds: float
    unkeyed_seconds: float
    rss_upsert: int
    rss_unkeyed: int
    updated_rows: int
    update_write_seconds: float
    query_upsert_wal_ms: float
    query_unkeyed_ms: float
    fold_seconds: float
    files_rewritten: int
    query_upsert_folded_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def schemas(directory: Path) -> tuple[Path, Path]:
    """(upsert, unkeyed) copies of the built-in proc_samples table."""
    directory.mkdir(parents=True, exist_ok=True)
    upsert = directory / "upsert.toml"
    text = proc_samples_toml("bench_upsert", True)
    upsert.write_text(text.replace("\nkey = ", '\nwrite = "upsert"\nkey = ', 1), encoding="utf-8")
    unkeyed = directory / "unkeyed.toml"
    unkeyed.write_text(proc_samples_toml("bench_unkeyed", False), encoding="utf-8")
    if load_schema(upsert).tables[TABLE].write != "upsert":
        raise RuntimeError("the upsert copy of proc_samples is not an upsert table")
    return upsert, unkeyed


def ingest(data: pa.Table, roots: dict[str, tuple[Path, Path]]) -> dict[str, float]:
    """Seconds per side for the same chunks, alternating which side goes first."""
    stores = {n: telelake.open(r, schema=s, host_id=HOST_ID) for n, (r, s) in roots.items()}
    seconds = dict.fromkeys(roots, 0.0)
    try:
        for i, part in enumerate(chunks(data, CHUNK)):
            for name in list(roots) if i % 2 == 0 else list(roots)[::-1]:
                _settle()
                start = time.perf_counter()
                stores[name].write(TABLE, part)
                seconds[name] += time.perf_counter() - start
        for name in list(stores):
            _settle()
            start = time.perf_counter()
            stores.pop(name).close()
            seconds[name] += time.perf_counter() - start
    finally:
        for store in stores.values():
            store.close()
    return seconds


def timed_query(store: telelake.Store) -> tuple[float, tuple[int, int]]:
    """Median ms of `QUERY` over `QUERY_RUNS` runs, and its answer."""
    times, answer = [], (0, 0)
    for _ in range(QUERY_RUNS):
        start = time.perf_counter()
        row = store.sql(QUERY).rows()[0]
        times.append((time.perf_counter() - start) * 1000)
        answer = (int(row[0]), int(row[1]))
    return float(np.median(times)), answer


def run(work: Path, quick: bool = False, progress: Progress = quiet) -> UpsertBench:
    """Both benchmarks under `work`."""
    n = QUICK_ROWS if quick else ROWS
    upsert_schema, unkeyed_schema = schemas(work / "schemas")
    table = load_schema(upsert_schema).tables[TABLE]
    data = datagen.proc_samples(table, n)
    roots = {
        "upsert": (work / "upsert", upsert_schema),
        "unkeyed": (work / "unkeyed", unkeyed_schema),
    }
    seconds = ingest(data, roots)
    progress(
        "upsert: ingest, upsert vs unkeyed table",
        seconds["upsert"] + seconds["unkeyed"],
        f"({n / seconds['upsert']:,.0f} vs {n / seconds['unkeyed']:,.0f} rows/s)",
    )
    ipc = work / "rows.arrow"
    write_ipc(data, ipc, CHUNK)
    rss = {}
    for name, (_, schema) in roots.items():
        rss[name] = int(run_rss_child(ipc, work / f"rss-{name}", schema)["peak_rss_bytes"])
    ipc.unlink()

    # 1% of the keys get a new version (rss_bytes + 1): expected sum computed by NumPy.
    rng = np.random.default_rng(17)
    picked = np.sort(rng.choice(n, size=max(1, int(n * UPDATE_FRACTION)), replace=False))
    updates = data.take(pa.array(picked))
    updates = updates.set_column(
        updates.schema.get_field_index("rss_bytes"),
        "rss_bytes",
        pc.add(updates.column("rss_bytes"), pa.scalar(1, pa.int64())),
    )
    rss_bytes = data.column("rss_bytes").to_numpy()
    expected = (n, int(rss_bytes.sum()) + len(picked))
    never = 1 << 40
    root, schema = roots["upsert"]
    with (
        telelake.open(root, schema=schema, host_id=HOST_ID, fold_rows=never, fold_age=1e9) as store,
        telelake.open(roots["unkeyed"][0], schema=unkeyed_schema, host_id=HOST_ID) as plain,
    ):
        start = time.perf_counter()
        for part in chunks(updates, UPDATE_WRITE_ROWS):
            store.write(TABLE, part)
        update_seconds = time.perf_counter() - start
        wal_ms, answer = timed_query(store)
        if answer != expected:
            raise RuntimeError(f"upsert store answered {answer}, expected {expected}")
        plain_ms, plain_answer = timed_query(plain)
        if plain_answer != (n, int(rss_bytes.sum())):
            raise RuntimeError(f"unkeyed store answered {plain_answer}")
        before = set(store.files(TABLE))
        start = time.perf_counter()
        store.fold()
        fold_seconds = time.perf_counter() - start
        rewritten = len(before - set(store.files(TABLE)))
        folded_ms, answer = timed_query(store)
        if answer != expected:
            raise RuntimeError(
                f"upsert store answered {answer} after the fold, expected {expected}"
            )
    progress(
        "upsert: 1% updates, merge-on-read query, copy-on-write fold",
        update_seconds + fold_seconds,
        "",
    )
    return UpsertBench(
        n,
        seconds["upsert"],
        seconds["unkeyed"],
        rss["upsert"],
        rss["unkeyed"],
        len(picked),
        update_seconds,
        wal_ms,
        plain_ms,
        fold_seconds,
        rewritten,
        folded_ms,
    )


def lines(b: UpsertBench) -> list[Line]:
    """The rows of the final table."""
    details = b.as_dict()
    return [
        ratio_line(
            f"proc_samples ingest into an upsert table ({b.rows:,} rows, 100k chunks)",
            b.rows / b.upsert_seconds,
            "no key",
            b.rows / b.unkeyed_seconds,
            INGEST_MIN,
            details,
        ),
        Line(
            "peak RSS, upsert ingest vs no key",
            mib(b.rss_upsert),
            mib(b.rss_unkeyed),
            b.rss_upsert / b.rss_unkeyed,
            status=INFO,
            details=details,
        ),
        Line(
            f"aggregate with {b.updated_rows:,} updated keys (1%) in the WAL: merge on read",
            f"{b.query_upsert_wal_ms:.1f} ms",
            f"no key, no updates: {b.query_unkeyed_ms:.1f} ms",
            b.query_unkeyed_ms / b.query_upsert_wal_ms,
            status=INFO,
            details=details,
        ),
        Line(
            f"fold of the 1% updates (copy-on-write: {b.files_rewritten} files rewritten)",
            f"{b.fold_seconds:.2f} s",
            f"writing them to the WAL: {b.update_write_seconds:.2f} s",
            status=INFO,
            details=details,
        ),
        Line(
            "aggregate after that fold",
            f"{b.query_upsert_folded_ms:.1f} ms",
            f"no key: {b.query_unkeyed_ms:.1f} ms",
            b.query_unkeyed_ms / b.query_upsert_folded_ms,
            status=INFO,
            details=details,
        ),
    ]
