"""Durability benchmarks (issue 3): what acknowledged, crash-safe writes cost.

- latency: a raw 4 KiB `os.write` + `os.fdatasync` on a file in the same temp directory
  (the physical floor of this disk) vs `store.write` of 10 rows with fsync="always"
  (list of dicts; the same rows as an Arrow table as an extra, informative line), each
  side timed op by op, interleaved (rotating which goes first) so all see the same load;
- concurrency: acknowledged rows/s of 10-row writes by 1, 4 and 8 writer processes (each
  its own `telelake.open` of one root, fsync="always") vs SQLite in WAL mode with
  synchronous=FULL, one commit per 10-row write, each process its own connection to one
  database file (busy_timeout set). Spawned processes meet at a barrier, write for a
  fixed time, and the rate is every acknowledged row over the wall time from the first
  start to the last acknowledgement. The same processes doing only a 4 KiB append +
  fdatasync per write, to a file each, give the disk's floor (informative lines). The
  fold of what each telelake writer acknowledged runs in its `store.close()`, after the
  window; an informative line counts it in (rows over window + slowest close);
- WAL vs direct: the same proc_samples rows written in 10,000-row chunks (below the
  50,000-row direct threshold: WAL appends, folds when a segment is full, and the final
  fold in `store.close()`, which is timed) vs 100,000-row chunks (straight to Parquet),
  interleaved by 100,000-row block;
- key dedup: the same rows into a user schema's proc_samples with its key vs an identical
  schema without it, 100,000-row chunks, interleaved; plus the peak RSS of a fresh child
  that does only the keyed ingest (measured as `bench.ingest.peak_rss` does), and of one
  doing the unkeyed ingest for comparison.

Every figure is a report; only the latency, 1- and 8-writer and WAL-vs-direct lines
carry targets. The load average is sampled around each benchmark (another job on the
machine shows up there).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import multiprocessing as mp
import os
import queue
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

import telelake
from bench import datagen
from bench.ingest import (
    HOST_ID,
    SCHEMA,
    TABLE,
    Run,
    _settle,
    chunks,
    run_rss_child,
    write_ipc,
)
from bench.report import INFO, MISSED, PASS, Line, Progress, mib, quiet, rate, ratio_line
from telelake.schema.load import builtin_path, load_schema

EVENTS = "events"
BATCH_ROWS = 10  # rows per acknowledged write in the latency and concurrency benchmarks
PAYLOAD_CHARS = 320  # 10 rows of this make a WAL record of about 4 KiB
RAW_RECORD = 4096
LATENCY_OPS = 2_000
QUICK_LATENCY_OPS = 500
WARMUP_OPS = 50
WRITERS = (1, 4, 8)
CONCURRENT_SECONDS = 5.0
QUICK_CONCURRENT_SECONDS = 1.5
WAL_CHUNK_ROWS = 10_000
DIRECT_CHUNK_ROWS = 100_000
BARRIER_TIMEOUT_S = 180.0

LATENCY_MAX_RATIO = 2.0
MIN_RATIO_1_WRITER = 1.0
MIN_RATIO_8_WRITERS = 2.0
WAL_MIN_RATIO = 0.7

EVENTS_TOML = """\
name = "bench_durability"
version = "1.0.0"
description = "Small acknowledged writes (bench.durability)."

[tables.events]
time = "ts"
parquet = { file_prefix = "events" }
columns = [
  { name = "ts", type = "timestamp", nullable = false },
  { name = "writer", type = "string", nullable = false },
  { name = "seq", type = "int64", nullable = false },
  { name = "payload", type = "string", nullable = false },
]
"""

SQLITE_DDL = "CREATE TABLE events (ts INTEGER NOT NULL, writer TEXT NOT NULL, " + (
    "seq INTEGER NOT NULL, payload TEXT NOT NULL)"
)
SQLITE_INSERT = (
    "INSERT INTO events (ts, writer, seq, payload) VALUES (:ts, :writer, :seq, :payload)"
)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICRO = dt.timedelta(microseconds=1)


def _load() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


def load_text(load: Sequence[float]) -> str:
    """`0.52/0.97/1.40`: a load average triple."""
    return "/".join(f"{x:.2f}" for x in load)


def _load_note() -> str:
    return f"load {load_text(_load())}"


# -- schemas ------------------------------------------------------------------------------------


def write_events_schema(directory: Path) -> Path:
    """The small user schema of the latency and concurrency benchmarks."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "events.toml"
    path.write_text(EVENTS_TOML, encoding="utf-8")
    return path


def proc_samples_toml(name: str, keyed: bool) -> str:
    """A user schema holding only the built-in proc_samples table, with or without its key.

    Cut from the built-in schema text, so both copies are the built-in table exactly
    (columns, partitioning, Parquet layout) but for the `key` line.
    """
    text = builtin_path(SCHEMA).read_text(encoding="utf-8")
    match = re.search(rf"^\[tables\.{TABLE}\]\n(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
    if match is None:
        raise RuntimeError(f"no [tables.{TABLE}] section in the built-in schema")
    body = match.group(0)
    if not re.search(r"^key\s*=", body, re.MULTILINE):
        raise RuntimeError(f"the built-in {TABLE} table has no key")
    if not keyed:
        body = re.sub(r"^key\s*=.*\n", "", body, flags=re.MULTILINE)
    return f'name = "{name}"\nversion = "1.0.0"\n\n{body}'


def write_proc_samples_schemas(directory: Path) -> tuple[Path, Path]:
    """(keyed, unkeyed) schema files, identical but for the key."""
    directory.mkdir(parents=True, exist_ok=True)
    keyed = directory / "keyed.toml"
    unkeyed = directory / "unkeyed.toml"
    keyed.write_text(proc_samples_toml("bench_keyed", True), encoding="utf-8")
    unkeyed.write_text(proc_samples_toml("bench_unkeyed", False), encoding="utf-8")
    k, u = load_schema(keyed).tables[TABLE], load_schema(unkeyed).tables[TABLE]
    if not k.key or u.key or k.columns != u.columns or k.parquet != u.parquet:
        raise RuntimeError("keyed and unkeyed proc_samples schemas differ in more than the key")
    return keyed, unkeyed


# -- rows ----------------------------------------------------------------------------------------


def _payload(writer: str) -> str:
    return (writer + ":" + "x" * PAYLOAD_CHARS)[:PAYLOAD_CHARS]


def event_rows(writer: str, seq: int, payload: str) -> list[dict[str, Any]]:
    """One 10-row write: the same timestamp, consecutive sequence numbers."""
    now = dt.datetime.now(dt.UTC)
    return [
        {"ts": now, "writer": writer, "seq": seq + i, "payload": payload} for i in range(BATCH_ROWS)
    ]


def event_table(rows: list[dict[str, Any]]) -> pa.Table:
    """The same rows as an Arrow table of the table's exact types."""
    return pa.table(
        {
            "ts": pa.array([r["ts"] for r in rows], pa.timestamp("us", tz="UTC")),
            "writer": pa.array([r["writer"] for r in rows], pa.string()),
            "seq": pa.array([r["seq"] for r in rows], pa.int64()),
            "payload": pa.array([r["payload"] for r in rows], pa.string()),
        }
    )


def _adapt_timestamp(value: dt.datetime) -> int:
    """SQLite side: INTEGER microseconds since the epoch, as telelake stores them."""
    return (value - _EPOCH) // _MICRO


# -- 1. latency ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    """Per-operation latencies of one side, in seconds."""

    samples: list[float]

    def pct(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.samples), q))

    @property
    def p50(self) -> float:
        return self.pct(50)

    @property
    def p99(self) -> float:
        return self.pct(99)

    def as_dict(self) -> dict[str, Any]:
        a = np.asarray(self.samples) * 1000
        return {
            "ops": len(self.samples),
            "p50_ms": round(float(np.percentile(a, 50)), 4),
            "p90_ms": round(float(np.percentile(a, 90)), 4),
            "p99_ms": round(float(np.percentile(a, 99)), 4),
            "p999_ms": round(float(np.percentile(a, 99.9)), 4),
            "max_ms": round(float(a.max()), 4),
            "mean_ms": round(float(a.mean()), 4),
        }

    def short(self) -> str:
        return f"p99 {self.p99 * 1000:.3f}, p50 {self.p50 * 1000:.3f} ms"


@dataclass
class LatencyBench:
    raw: Latency
    dicts: Latency
    arrow: Latency
    info: dict[str, Any] = field(default_factory=dict)


def latency(work: Path, schema_path: Path, ops: int) -> LatencyBench:
    """Raw 4 KiB append+fdatasync vs 10-row `store.write` (dicts, and Arrow), interleaved.

    The two telelake sides use two stores (two WAL segments) so that each side's
    segment holds what one writer of ~2,000 such writes would hold.
    """
    work.mkdir(parents=True, exist_ok=True)
    raw_path = work / "raw-append.bin"
    fd = os.open(raw_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    record = os.urandom(RAW_RECORD)
    payload = _payload("w0")
    dict_store = telelake.open(work / "dicts", schema=schema_path, host_id=HOST_ID, fsync="always")
    arrow_store = telelake.open(work / "arrow", schema=schema_path, host_id=HOST_ID, fsync="always")
    wal_record = len(event_table(event_rows("w0", 0, payload)).to_batches()[0].serialize())
    samples: dict[str, list[float]] = {"raw": [], "dicts": [], "arrow": []}
    sides = ("raw", "dicts", "arrow")
    load_start = _load()
    try:
        _settle()
        for i in range(-WARMUP_OPS, ops):
            rows = event_rows("w0", (i + WARMUP_OPS) * BATCH_ROWS, payload)
            table = event_table(rows)
            k = i % 3
            for side in sides[k:] + sides[:k]:
                start = time.perf_counter()
                if side == "raw":
                    os.write(fd, record)
                    os.fdatasync(fd)
                elif side == "dicts":
                    dict_store.write(EVENTS, rows)
                else:
                    arrow_store.write(EVENTS, table)
                elapsed = time.perf_counter() - start
                if i >= 0:
                    samples[side].append(elapsed)
        load_end = _load()
        counts = {}
        for name, store in (("dicts", dict_store), ("arrow", arrow_store)):
            counts[name] = int(store.sql(f"SELECT COUNT(*) FROM {EVENTS}").scalar())
            # Two writers of ~2,000 records of ~4 KiB each stay under fold_bytes (64 MiB).
            counts[f"{name}_parquet_files_before_close"] = len(store.files(EVENTS))
    finally:
        os.close(fd)
        dict_store.close()
        arrow_store.close()
    expected = (ops + WARMUP_OPS) * BATCH_ROWS
    if counts["dicts"] != expected or counts["arrow"] != expected:
        raise RuntimeError(f"latency: stored {counts}, expected {expected} rows per store")
    return LatencyBench(
        Latency(samples["raw"]),
        Latency(samples["dicts"]),
        Latency(samples["arrow"]),
        {
            "raw_record_bytes": RAW_RECORD,
            "wal_record_bytes_10_rows": wal_record,
            "rows_per_write": BATCH_ROWS,
            "warmup_ops_per_side": WARMUP_OPS,
            "fsync": "always",
            "load_start": load_start,
            "load_end": load_end,
            **counts,
        },
    )


# -- 2. concurrency --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriterResult:
    """What one writer process acknowledged inside the timed window."""

    writer: int
    ops: int
    start: float  # time.monotonic(): one clock for every process on the host
    end: float
    warmup_rows: int
    p50_ms: float
    p99_ms: float
    cpu_seconds: float  # user + system CPU time of the process inside the window
    error: str = ""
    # telelake only: its `store.close()` after the window, which folds what the writer
    # acknowledged (converting rows records to Arrow and writing Parquet)
    fold_seconds: float = 0.0
    fold_cpu_seconds: float = 0.0


def _failed(writer: int, exc: BaseException) -> WriterResult:
    return WriterResult(writer, 0, 0.0, 0.0, 0, 0.0, 0.0, 0.0, repr(exc))


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _window(
    write: Callable[[list[dict[str, Any]]], object], writer: int, seconds: float, barrier: Barrier
) -> WriterResult:
    """Warm up, wait for every writer, then write 10-row batches for `seconds`."""
    name = f"w{writer}"
    payload = _payload(name)
    write(event_rows(name, 0, payload))  # warm-up: segment or connection ready, imports done
    seq = BATCH_ROWS
    lat: list[float] = []
    barrier.wait()
    cpu = _cpu()
    start = time.monotonic()
    deadline = start + seconds
    end = start
    while True:
        rows = event_rows(name, seq, payload)
        t0 = time.monotonic()
        if t0 >= deadline:
            break
        write(rows)
        end = time.monotonic()
        lat.append(end - t0)
        seq += BATCH_ROWS
    cpu = _cpu() - cpu
    a = np.asarray(lat or [0.0]) * 1000
    return WriterResult(
        writer,
        len(lat),
        start,
        end,
        BATCH_ROWS,
        round(float(np.percentile(a, 50)), 4),
        round(float(np.percentile(a, 99)), 4),
        round(cpu, 3),
    )


def _telelake_worker(
    root: str, schema: str, writer: int, seconds: float, barrier: Barrier, out: Queue[Any]
) -> None:
    try:
        store = telelake.open(root, schema=schema, host_id=HOST_ID, fsync="always")
        try:
            result = _window(lambda rows: store.write(EVENTS, rows), writer, seconds, barrier)
        finally:
            cpu, start = _cpu(), time.monotonic()
            store.close()  # folds this writer's segment; outside the timed window
        fold = time.monotonic() - start
        out.put(dataclasses.replace(result, fold_seconds=fold, fold_cpu_seconds=_cpu() - cpu))
    except BaseException as exc:
        barrier.abort()
        out.put(_failed(writer, exc))


def _sqlite_worker(
    path: str, writer: int, seconds: float, barrier: Barrier, out: Queue[Any]
) -> None:
    try:
        sqlite3.register_adapter(dt.datetime, _adapt_timestamp)
        con = sqlite3.connect(path, isolation_level=None, timeout=60.0)
        try:
            con.execute("PRAGMA busy_timeout=60000")
            con.execute("PRAGMA synchronous=FULL")

            def write(rows: list[dict[str, Any]]) -> None:
                con.execute("BEGIN IMMEDIATE")
                con.executemany(SQLITE_INSERT, rows)
                con.execute("COMMIT")

            result = _window(write, writer, seconds, barrier)
        finally:
            con.close()
        out.put(result)
    except BaseException as exc:
        barrier.abort()
        out.put(_failed(writer, exc))


def _raw_worker(path: str, writer: int, seconds: float, barrier: Barrier, out: Queue[Any]) -> None:
    """The floor: each 10-row write replaced by one 4 KiB append + fdatasync of its file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        record = os.urandom(RAW_RECORD)

        def write(rows: list[dict[str, Any]]) -> None:
            os.write(fd, record)
            os.fdatasync(fd)

        try:
            result = _window(write, writer, seconds, barrier)
        finally:
            os.close(fd)
        out.put(result)
    except BaseException as exc:
        barrier.abort()
        out.put(_failed(writer, exc))


def _run_workers(
    target: Callable[..., None], args: Callable[[int], tuple[Any, ...]], n: int
) -> list[WriterResult]:
    """Spawn `n` workers sharing one barrier; their results (raises if one failed)."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(n, timeout=BARRIER_TIMEOUT_S)
    out: Queue[Any] = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args(i), barrier, out)) for i in range(n)]
    for p in procs:
        p.start()
    results: list[WriterResult] = []
    try:
        while len(results) < n:
            try:
                results.append(out.get(timeout=BARRIER_TIMEOUT_S * 2))
            except queue.Empty:
                raise RuntimeError("a writer process did not report in time") from None
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
                p.join()
    errors = [r.error for r in results if r.error]
    if errors:
        raise RuntimeError(f"writer process failed: {errors[0]}")
    return sorted(results, key=lambda r: r.writer)


def _concurrent_run(results: list[WriterResult], stored: int, warmup: int) -> Run:
    acked_rows = sum(r.ops for r in results) * BATCH_ROWS
    if stored != acked_rows + warmup:
        raise RuntimeError(f"stored {stored} rows, acknowledged {acked_rows} + warm-up {warmup}")
    wall = max(r.end for r in results) - min(r.start for r in results)
    ops = [r.ops for r in results]
    cpu = sum(r.cpu_seconds for r in results)
    return Run(
        wall,
        acked_rows,
        info={
            "writers": len(results),
            "ops_per_writer": ops,
            "p50_ms_per_writer": [r.p50_ms for r in results],
            "p99_ms_per_writer": [r.p99_ms for r in results],
            # CPU (user + system, all writers) per acknowledged 10-row write
            "cpu_ms_per_write": round(cpu / max(sum(ops), 1) * 1000, 4),
            "start_spread_ms": round(
                (max(r.start for r in results) - min(r.start for r in results)) * 1000, 3
            ),
            "fold_seconds_max": round(max(r.fold_seconds for r in results), 4),
            "fold_cpu_ms_per_write": round(
                sum(r.fold_cpu_seconds for r in results) / max(sum(ops), 1) * 1000, 4
            ),
        },
    )


def concurrent_telelake(work: Path, schema_path: Path, n: int, seconds: float) -> Run:
    """`n` processes, each its own Store on one root, 10-row writes for `seconds`."""
    root = work / f"telelake-{n}"
    telelake.open(root, schema=schema_path, host_id=HOST_ID).close()  # create it once
    _settle()
    results = _run_workers(_telelake_worker, lambda i: (str(root), str(schema_path), i, seconds), n)
    with telelake.open(root, schema=schema_path, host_id=HOST_ID) as store:
        stored = int(store.sql(f"SELECT COUNT(*) FROM {EVENTS}").scalar())
        files = len(store.files(EVENTS))
    run = _concurrent_run(results, stored, sum(r.warmup_rows for r in results))
    return Run(run.seconds, run.rows, files, 0, run.info)


def concurrent_raw(work: Path, n: int, seconds: float) -> Run:
    """`n` processes appending 4 KiB + fdatasync to a file each: what the disk allows."""
    directory = work / f"raw-{n}"
    directory.mkdir(parents=True)
    _settle()
    results = _run_workers(_raw_worker, lambda i: (str(directory / f"w{i}.bin"), i, seconds), n)
    # One 4 KiB record stands for one 10-row write.
    stored = sum((directory / f"w{r.writer}.bin").stat().st_size for r in results) // RAW_RECORD
    run = _concurrent_run(results, stored * BATCH_ROWS, sum(r.warmup_rows for r in results))
    return Run(run.seconds, run.rows, n, stored * RAW_RECORD, run.info)


def concurrent_sqlite(work: Path, n: int, seconds: float) -> Run:
    """`n` processes, each its own connection to one WAL-mode database, one commit per write."""
    path = work / f"sqlite-{n}" / "events.db"
    path.parent.mkdir(parents=True)
    con = sqlite3.connect(path, isolation_level=None)
    try:
        mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        con.execute(SQLITE_DDL)
    finally:
        con.close()
    _settle()
    results = _run_workers(_sqlite_worker, lambda i: (str(path), i, seconds), n)
    con = sqlite3.connect(path)
    try:
        stored = int(con.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    finally:
        con.close()
    run = _concurrent_run(results, stored, sum(r.warmup_rows for r in results))
    info = {**run.info, "journal_mode": mode, "synchronous": "FULL"}
    return Run(run.seconds, run.rows, 1, 0, info)


# -- 3. WAL vs direct, 4. key dedup ---------------------------------------------------------


def _store_files(root: Path, schema: str | Path) -> tuple[int, int, int]:
    """(rows, files, bytes) of proc_samples in the store at `root`."""
    with telelake.open(root, schema=schema, host_id=HOST_ID) as store:
        rows = int(store.sql(f"SELECT COUNT(*) FROM {TABLE}").scalar())
        files = store.files(TABLE)
    return rows, len(files), sum(f.stat().st_size for f in files)


def _paired_ingest(
    data: pa.Table,
    sides: dict[str, tuple[Path, str | Path, int]],
    block_rows: int = DIRECT_CHUNK_ROWS,
) -> dict[str, Run]:
    """Ingest `data` into one store per side, interleaved by `block_rows` block.

    Each side is (root, schema, chunk rows): a block is written as `chunk`-row
    `store.write` calls. Dirty pages are flushed (untimed) before each side's turn, the
    order alternates, and `store.close()` (the final fold) is part of the timed work.
    """
    names = list(sides)
    stores = {
        n: telelake.open(root, schema=s, host_id=HOST_ID) for n, (root, s, _) in sides.items()
    }
    seconds = dict.fromkeys(names, 0.0)
    close_seconds = dict.fromkeys(names, 0.0)
    load_start = _load()
    try:
        for i, block in enumerate(chunks(data, block_rows)):
            for name in names if i % 2 == 0 else names[::-1]:
                parts = chunks(block, sides[name][2])
                _settle()
                start = time.perf_counter()
                for part in parts:
                    stores[name].write(TABLE, part)
                seconds[name] += time.perf_counter() - start
        for name in names:
            _settle()
            start = time.perf_counter()
            stores.pop(name).close()
            close_seconds[name] = time.perf_counter() - start
    finally:
        for store in stores.values():
            store.close()
    load_end = _load()
    out = {}
    for name in names:
        root, schema, chunk = sides[name]
        rows, files, size = _store_files(root, schema)
        if rows != data.num_rows:
            raise RuntimeError(f"{name}: stored {rows} rows, expected {data.num_rows}")
        total = seconds[name] + close_seconds[name]
        info = {
            "chunk_rows": chunk,
            "write_seconds": round(seconds[name], 4),
            "close_seconds": round(close_seconds[name], 4),
            "load_start": load_start,
            "load_end": load_end,
        }
        out[name] = Run(total, data.num_rows, files, size, info)
    return out


def wal_vs_direct(data: pa.Table, work: Path) -> tuple[Run, Run]:
    """The same rows through the WAL (10k chunks, then close folds) and direct (100k)."""
    runs = _paired_ingest(
        data,
        {
            "wal": (work / "wal", SCHEMA, WAL_CHUNK_ROWS),
            "direct": (work / "direct", SCHEMA, DIRECT_CHUNK_ROWS),
        },
    )
    return runs["wal"], runs["direct"]


def keyed_vs_unkeyed(data: pa.Table, work: Path, keyed: Path, unkeyed: Path) -> tuple[Run, Run]:
    """The same rows, 100k chunks, into the keyed and the unkeyed copy of proc_samples."""
    runs = _paired_ingest(
        data,
        {
            "keyed": (work / "keyed", keyed, DIRECT_CHUNK_ROWS),
            "unkeyed": (work / "unkeyed", unkeyed, DIRECT_CHUNK_ROWS),
        },
    )
    return runs["keyed"], runs["unkeyed"]


# -- the whole part --------------------------------------------------------------------------------


@dataclass
class DurabilityBench:
    """Every durability figure of one run."""

    latency: LatencyBench
    concurrent: dict[int, tuple[Run, Run, Run]]  # writers -> (telelake, sqlite, raw floor)
    wal: Run
    direct: Run
    keyed: Run
    unkeyed: Run
    rss_keyed: dict[str, Any]
    rss_unkeyed: dict[str, Any]
    config: dict[str, Any]
    load: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"config": self.config, "load_average": self.load}


def run(
    data_rows: int, work: Path, quick: bool = False, progress: Progress = quiet
) -> DurabilityBench:
    """All four durability benchmarks, in order, under `work` (left for the caller to remove)."""
    ops = QUICK_LATENCY_OPS if quick else LATENCY_OPS
    seconds = QUICK_CONCURRENT_SECONDS if quick else CONCURRENT_SECONDS
    load: dict[str, tuple[float, float, float]] = {"start": _load()}
    events = write_events_schema(work / "schemas")
    keyed_schema, unkeyed_schema = write_proc_samples_schemas(work / "schemas")

    start = time.perf_counter()
    lat = latency(work / "latency", events, ops)
    progress(
        "durability: append+fdatasync latency",
        time.perf_counter() - start,
        f"(raw {lat.raw.short()}; store.write {lat.dicts.short()}; {_load_note()})",
    )
    load["after_latency"] = _load()

    concurrent: dict[int, tuple[Run, Run, Run]] = {}
    for n in WRITERS:
        start = time.perf_counter()
        tl = concurrent_telelake(work / "concurrent", events, n, seconds)
        sq = concurrent_sqlite(work / "concurrent", n, seconds)
        raw = concurrent_raw(work / "concurrent", n, seconds)
        concurrent[n] = (tl, sq, raw)
        progress(
            f"durability: {n} writer process(es): telelake, sqlite, raw appends",
            time.perf_counter() - start,
            f"({tl.rows_per_s:,.0f}, {sq.rows_per_s:,.0f}, {raw.rows_per_s:,.0f} rows/s; CPU ms "
            f"per write {tl.info['cpu_ms_per_write']}, {sq.info['cpu_ms_per_write']}, "
            f"{raw.info['cpu_ms_per_write']}; {_load_note()})",
        )
    load["after_concurrent"] = _load()

    start = time.perf_counter()
    table = load_schema(SCHEMA).tables[TABLE]
    data = datagen.proc_samples(table, data_rows)
    progress("durability: generate proc_samples (untimed)", time.perf_counter() - start, "")

    wal, direct = wal_vs_direct(data, work / "wal-vs-direct")
    progress("durability: ingest via WAL (10k chunks + fold)", wal.seconds, _rate_note(wal))
    progress("durability: ingest direct (100k chunks)", direct.seconds, _rate_note(direct))
    load["after_wal_vs_direct"] = _load()

    keyed, unkeyed = keyed_vs_unkeyed(data, work / "dedup", keyed_schema, unkeyed_schema)
    progress("durability: ingest, keyed table", keyed.seconds, _rate_note(keyed))
    progress("durability: ingest, unkeyed table", unkeyed.seconds, _rate_note(unkeyed))

    start = time.perf_counter()
    ipc = work / "proc_samples.arrow"
    write_ipc(data, ipc, DIRECT_CHUNK_ROWS)
    del data
    rss: dict[str, dict[str, Any]] = {}
    for name, schema in (("keyed", keyed_schema), ("unkeyed", unkeyed_schema)):
        (work / f"rss-{name}").mkdir()
        rss[name] = run_rss_child(ipc, work / f"rss-{name}" / "store", schema)
        if rss[name]["rows"] != data_rows:
            raise RuntimeError(f"rss child ({name}) wrote {rss[name]['rows']} rows")
    ipc.unlink()
    progress(
        "durability: peak RSS children (keyed, unkeyed)",
        time.perf_counter() - start,
        f"({mib(rss['keyed']['peak_rss_bytes'])} vs {mib(rss['unkeyed']['peak_rss_bytes'])})",
    )
    load["end"] = _load()
    config = {
        "latency_ops": ops,
        "warmup_ops": WARMUP_OPS,
        "rows_per_write": BATCH_ROWS,
        "payload_chars": PAYLOAD_CHARS,
        "writers": list(WRITERS),
        "concurrent_seconds": seconds,
        "rows": data_rows,
        "wal_chunk_rows": WAL_CHUNK_ROWS,
        "direct_chunk_rows": DIRECT_CHUNK_ROWS,
    }
    return DurabilityBench(
        lat, concurrent, wal, direct, keyed, unkeyed, rss["keyed"], rss["unkeyed"], config, load
    )


def _rate_note(run: Run) -> str:
    return f"({run.rows_per_s:,.0f} rows/s, {run.files} files; {_load_note()})"


def lines(bench: DurabilityBench) -> list[Line]:
    """The durability rows of the results table."""
    out: list[Line] = []
    lat = bench.latency
    ratio = lat.dicts.p99 / lat.raw.p99
    out.append(
        Line(
            "10-row write latency, fsync=always",
            lat.dicts.short(),
            f"raw 4 KiB {lat.raw.short()}",
            ratio,
            f"<= {LATENCY_MAX_RATIO:.1f}x",
            PASS if ratio <= LATENCY_MAX_RATIO else MISSED,
            {"telelake": lat.dicts.as_dict(), "peer": lat.raw.as_dict(), **lat.info},
        )
    )
    out.append(
        Line(
            "  same rows as an Arrow table",
            lat.arrow.short(),
            f"raw 4 KiB {lat.raw.short()}",
            lat.arrow.p99 / lat.raw.p99,
            details={"telelake": lat.arrow.as_dict(), "peer": lat.raw.as_dict()},
        )
    )
    targets = {1: MIN_RATIO_1_WRITER, 8: MIN_RATIO_8_WRITERS}
    for n, (tl, sq, raw) in bench.concurrent.items():
        name = f"acked rows/s, 10-row writes, {n} proc"
        details = {"telelake": tl.as_dict(), "peer": sq.as_dict()}
        peer = "sqlite WAL FULL"
        if n in targets:
            out.append(ratio_line(name, tl.rows_per_s, peer, sq.rows_per_s, targets[n], details))
        else:
            out.append(
                Line(
                    name,
                    rate(tl.rows_per_s),
                    f"{peer}: {rate(sq.rows_per_s)}",
                    tl.rows_per_s / sq.rows_per_s,
                    details=details,
                )
            )
        with_fold = tl.rows / (tl.seconds + tl.info["fold_seconds_max"])
        out.append(
            Line(
                f"  with the fold at close, {n} proc",
                rate(with_fold),
                f"{peer}: {rate(sq.rows_per_s)}",
                with_fold / sq.rows_per_s,
                details={"telelake": tl.as_dict(), "peer": sq.as_dict()},
            )
        )
        out.append(
            Line(
                f"  raw append floor, {n} proc",
                rate(tl.rows_per_s),
                f"4 KiB+fdatasync: {rate(raw.rows_per_s)}",
                tl.rows_per_s / raw.rows_per_s,
                details={"telelake": tl.as_dict(), "peer": raw.as_dict()},
            )
        )
    out.append(
        ratio_line(
            "bulk ingest via WAL (10k + folds)",
            bench.wal.rows_per_s,
            "direct 100k",
            bench.direct.rows_per_s,
            WAL_MIN_RATIO,
            {"telelake": bench.wal.as_dict(), "peer": bench.direct.as_dict()},
        )
    )
    out.append(
        Line(
            "ingest with key dedup (100k chunks)",
            rate(bench.keyed.rows_per_s),
            f"no key: {rate(bench.unkeyed.rows_per_s)}",
            bench.keyed.rows_per_s / bench.unkeyed.rows_per_s,
            details={"telelake": bench.keyed.as_dict(), "peer": bench.unkeyed.as_dict()},
        )
    )
    keyed_peak = bench.rss_keyed["peak_rss_bytes"]
    unkeyed_peak = bench.rss_unkeyed["peak_rss_bytes"]
    out.append(
        Line(
            "peak RSS, keyed ingest (child)",
            mib(keyed_peak),
            f"no key: {mib(unkeyed_peak)}",
            keyed_peak / unkeyed_peak,
            status=INFO,
            details={"telelake": bench.rss_keyed, "peer": bench.rss_unkeyed},
        )
    )
    start, end = bench.load["start"], bench.load["end"]
    out.append(
        Line(
            "load avg 1/5/15 (durability)",
            f"end {load_text(end)}",
            f"start {load_text(start)}",
            details={"load_average": bench.load, "cpus": os.cpu_count()},
        )
    )
    return out
