"""Ingest benchmarks: telelake's two write paths and their peers, plus peak RSS.

- columnar: `store.write(table, <100k-row pyarrow Table>)` vs `pyarrow.parquet.write_table`
  of the same chunks with the same layout (sort, rows per row group as telelake computes
  it, zstd level, dictionary columns, sorting metadata, statistics), interleaved chunk
  by chunk so that both see the same machine;
- rows: `store.writer(...).write_many(<100k dicts>)` vs sqlite3 `executemany` of the same
  dicts (named parameters) into a WAL table, synchronous=NORMAL, one transaction;
- RSS: a fresh child process that only imports telelake and ingests the rows in 100k
  chunks read one at a time from an Arrow IPC file (`python -m bench.ingest rss-child`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import telelake
from telelake.lake.layout import rows_per_group
from telelake.schema.model import ParquetLayout, Table

SCHEMA = "process_triage"
TABLE = "proc_samples"
HOST_ID = "bench-host-01"
CHUNK_ROWS = 100_000
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Run:
    """One timed ingest: wall seconds for `rows` rows, and what it left on disk."""

    seconds: float
    rows: int
    files: int = 0
    bytes: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 4),
            "rows": self.rows,
            "rows_per_s": round(self.rows_per_s, 1),
            "files": self.files,
            "bytes": self.bytes,
            **self.info,
        }


def report_rate(run: Run) -> str:
    """`(123,456 rows/s)` for progress lines."""
    return f"({run.rows_per_s:,.0f} rows/s, {run.files} files, {run.bytes / 2**20:,.0f} MiB)"


def chunks(data: pa.Table, size: int = CHUNK_ROWS) -> list[pa.Table]:
    """Zero-copy slices of `data`, `size` rows each."""
    return [data.slice(start, size) for start in range(0, data.num_rows, size)]


def _settle() -> None:
    """Flush dirty pages before a timed section so one run's writeback never bills the next."""
    os.sync()


def _parquet_info(files: Sequence[Path]) -> dict[str, Any]:
    if not files:  # e.g. rows still in a write-ahead log, not yet in Parquet files
        return {}
    meta = pq.ParquetFile(files[0]).metadata
    return {
        "row_groups_first_file": meta.num_row_groups,
        "rows_per_row_group_first_file": meta.row_group(0).num_rows,
    }


# -- columnar ---------------------------------------------------------------------------------


def columnar_pair(data: pa.Table, root: Path, out_dir: Path, table: Table) -> tuple[Run, Run]:
    """telelake `store.write` and the pyarrow peer on the same 100k-row chunks, interleaved.

    Chunk by chunk, alternating which goes first, with dirty pages flushed (untimed)
    before each write: on a shared machine both then see the same load, and neither is
    billed for the other's writeback. Each side's time is the sum of its own writes.
    """
    assert table.parquet is not None
    spec = table.parquet
    parts = chunks(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    tl_seconds = pq_seconds = 0.0
    with telelake.open(root, schema=SCHEMA, host_id=HOST_ID) as store:
        for i, part in enumerate(parts):
            for side in ("tl", "pq") if i % 2 == 0 else ("pq", "tl"):
                _settle()
                start = time.perf_counter()
                if side == "tl":
                    store.write(table.name, part)
                    tl_seconds += time.perf_counter() - start
                else:
                    write_like_telelake(part, out_dir / f"part-{i:05d}.parquet", spec)
                    pq_seconds += time.perf_counter() - start
        tl_files = store.files(table.name)
        count = store.sql(f'SELECT COUNT(*) FROM "{table.name}"').scalar()
    if count != data.num_rows:
        raise RuntimeError(f"telelake stored {count} rows, expected {data.num_rows}")
    pq_files = sorted(out_dir.glob("*.parquet"))
    runs = []
    for seconds, files in ((tl_seconds, tl_files), (pq_seconds, pq_files)):
        size = sum(f.stat().st_size for f in files)
        runs.append(Run(seconds, data.num_rows, len(files), size, _parquet_info(files)))
    return runs[0], runs[1]


def write_like_telelake(part: pa.Table, path: Path, spec: ParquetLayout) -> None:
    """Plain pyarrow: sort, then `pq.write_table` with the layout telelake would use."""
    if spec.sort:
        part = part.take(pc.sort_indices(part, sort_keys=[(c, "ascending") for c in spec.sort]))
    sorting = [pq.SortingColumn(part.schema.get_field_index(c)) for c in spec.sort] or None
    pq.write_table(
        part,
        path,
        row_group_size=rows_per_group(part, spec.row_group_bytes),
        compression=spec.compression,
        compression_level=spec.compression_level,
        use_dictionary=list(spec.dictionary) if spec.dictionary else False,
        sorting_columns=sorting,
        write_statistics=True,
    )


# -- rows ---------------------------------------------------------------------------------------


def rows_telelake(rows: list[dict[str, Any]], root: Path, chunk: int = CHUNK_ROWS) -> Run:
    """`store.writer(...).write_many` of the dicts in `chunk`-row lists."""
    with telelake.open(root, schema=SCHEMA, host_id=HOST_ID) as store:
        _settle()
        start = time.perf_counter()
        with store.writer(TABLE, batch_size=chunk, flush_interval=None) as writer:
            for i in range(0, len(rows), chunk):
                writer.write_many(rows[i : i + chunk])
        seconds = time.perf_counter() - start
        files = store.files(TABLE)
        count = store.sql(f"SELECT COUNT(*) FROM {TABLE}").scalar()
    if count != len(rows):
        raise RuntimeError(f"telelake stored {count} rows, expected {len(rows)}")
    size = sum(f.stat().st_size for f in files)
    return Run(seconds, len(rows), len(files), size, _parquet_info(files))


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICRO = dt.timedelta(microseconds=1)


def _adapt_timestamp(value: dt.datetime) -> int:
    """telelake's SQLite mapping of a timestamp: INTEGER microseconds since the epoch."""
    return (value - _EPOCH) // _MICRO


def sqlite_ddl(table: Table) -> str:
    cols = ", ".join(
        f'"{c.name}" {c.type.sqlite}{"" if c.nullable else " NOT NULL"}' for c in table.columns
    )
    return f'CREATE TABLE "{table.name}" ({cols})'


def rows_sqlite(rows: list[dict[str, Any]], path: Path, table: Table) -> Run:
    """The peer: one `executemany` of the dicts (named parameters), WAL, synchronous=NORMAL."""
    sqlite3.register_adapter(dt.datetime, _adapt_timestamp)
    con = sqlite3.connect(path, isolation_level=None)
    try:
        mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute(sqlite_ddl(table))
        names = table.column_names
        insert = (
            f'INSERT INTO "{table.name}" ({", ".join(names)}) '
            f"VALUES ({', '.join(':' + n for n in names)})"
        )
        _settle()
        start = time.perf_counter()
        con.execute("BEGIN")
        con.executemany(insert, rows)
        con.execute("COMMIT")
        seconds = time.perf_counter() - start
        count = con.execute(f'SELECT COUNT(*) FROM "{table.name}"').fetchone()[0]
    finally:
        con.close()
    if count != len(rows):
        raise RuntimeError(f"sqlite stored {count} rows, expected {len(rows)}")
    files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
    size = sum(p.stat().st_size for p in files)
    return Run(seconds, len(rows), len(files), size, {"journal_mode": mode})


# -- peak RSS -------------------------------------------------------------------------------------


def _maxrss_bytes() -> int:
    """ru_maxrss of this process in bytes (Linux reports KiB, macOS bytes)."""
    raw = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(raw) if sys.platform == "darwin" else int(raw) * 1024


def _vm_hwm_bytes() -> int | None:
    """Peak RSS of this process image from /proc (Linux), a cross-check of ru_maxrss."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


def write_ipc(data: pa.Table, path: Path, chunk: int = CHUNK_ROWS) -> None:
    """`data` as an Arrow IPC file of `chunk`-row record batches (the child's input)."""
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, data.schema) as writer:
        writer.write_table(data, max_chunksize=chunk)


def peak_rss(data: pa.Table, workdir: Path) -> dict[str, Any]:
    """Run the ingest of `data` in 100k chunks in a fresh child; its RSS figures."""
    ipc = workdir / "proc_samples.arrow"
    write_ipc(data, ipc)
    result = run_rss_child(ipc, workdir / "store", SCHEMA)
    if result["rows"] != data.num_rows:
        raise RuntimeError(f"rss child wrote {result['rows']} rows, expected {data.num_rows}")
    ipc.unlink()
    return result


def run_rss_child(ipc: Path, root: Path, schema: str | Path) -> dict[str, Any]:
    """Ingest the IPC file's record batches into `schema` at `root` in a fresh child.

    Returns the child's RSS figures (see `_rss_child`).
    """
    child = [sys.executable, "-m", "bench.ingest", "rss-child", str(ipc), str(root), str(schema)]
    # Linux keeps ru_maxrss across execve, and a child exec'd straight from this (large)
    # process starts with our high-water mark. A shell that forks (the command is not its
    # last, so it cannot exec it) gives the child a fresh mm and an honest ru_maxrss.
    cmd = ["/bin/sh", "-c", '"$@"; exit $?', "sh", *child]
    # `-m` puts the working directory (the repo root) first on sys.path, so `bench` imports.
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"rss child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _rss_child(ipc: Path, root: Path, schema: str) -> None:
    """Child body: report RSS after imports, then ingest the IPC file chunk by chunk."""
    baseline = _maxrss_bytes()  # telelake, pyarrow, pyarrow.parquet and duckdb are imported
    store = telelake.open(root, schema=schema, host_id=HOST_ID)
    after_open = _maxrss_bytes()
    rows = 0
    start = time.perf_counter()
    with pa.OSFile(str(ipc), "rb") as source:
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            part = pa.Table.from_batches([reader.get_batch(i)])
            rows += store.write(TABLE, part)
            del part
    seconds = time.perf_counter() - start
    store.close()
    out = {
        "schema": schema,
        "baseline_rss_bytes": baseline,
        "after_open_rss_bytes": after_open,
        "peak_rss_bytes": _maxrss_bytes(),
        "peak_vm_hwm_bytes": _vm_hwm_bytes(),
        "rows": rows,
        "seconds": round(seconds, 4),
        "pyarrow_pool": pa.default_memory_pool().backend_name,
        "pyarrow_pool_max_bytes": pa.default_memory_pool().max_memory(),
    }
    print(json.dumps(out))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest")
    sub = parser.add_subparsers(dest="command", required=True)
    child = sub.add_parser("rss-child", help="ingest an Arrow IPC file and print RSS as JSON")
    child.add_argument("ipc", type=Path)
    child.add_argument("root", type=Path)
    child.add_argument("schema", nargs="?", default=SCHEMA, help="built-in name or TOML path")
    args = parser.parse_args(argv)
    if args.command == "rss-child":
        _rss_child(args.ipc, args.root, args.schema)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
