"""Named-query latency over generated triage data (no peer, no target: a report).

proc_features, proc_inference and outcomes each get `n_rows` rows, one per
(session_id, pid), written through `store.write` in blocks; then `calibration_curve`
(proc_inference JOIN outcomes) and `command_category_stats` (proc_features JOIN
outcomes) run twice each through `store.query`. Both joins match every row exactly
once, which the benchmark checks from the results' `n` column.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import telelake
from bench import datagen
from bench.ingest import HOST_ID, SCHEMA
from bench.report import Progress, quiet

QUERIES = ("calibration_curve", "command_category_stats")
BLOCK_ROWS = 500_000
TABLES = ("proc_features", "proc_inference", "outcomes")


@dataclass
class QueryRun:
    """How one named query did: every latency measured, and its result's shape."""

    name: str
    seconds: list[float]
    result_rows: int
    joined_rows: int

    @property
    def best(self) -> float:
        return min(self.seconds)

    def as_dict(self) -> dict[str, Any]:
        return {
            "best_seconds": round(self.best, 4),
            "first_seconds": round(self.seconds[0], 4),
            "all_seconds": [round(s, 4) for s in self.seconds],
            "result_rows": self.result_rows,
            "joined_rows": self.joined_rows,
        }


@dataclass
class QueryBench:
    """The whole query benchmark: data preparation figures and each query's run."""

    rows_per_table: int
    generate_seconds: float = 0.0
    ingest_seconds: dict[str, float] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    runs: dict[str, QueryRun] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_per_table": self.rows_per_table,
            "generate_seconds": round(self.generate_seconds, 3),
            "ingest_seconds": {k: round(v, 3) for k, v in self.ingest_seconds.items()},
            "ingest_rows_per_s": {
                k: round(self.rows_per_table / v, 1) for k, v in self.ingest_seconds.items() if v
            },
            "files": self.files,
            "bytes": self.bytes,
            "queries": {k: v.as_dict() for k, v in self.runs.items()},
        }


def run(
    n_rows: int,
    root: Path,
    repeats: int = 2,
    block_rows: int = BLOCK_ROWS,
    progress: Progress = quiet,
) -> QueryBench:
    """Generate and ingest the triage tables under `root`, then time the named queries."""
    bench = QueryBench(n_rows, ingest_seconds=dict.fromkeys(TABLES, 0.0))
    with telelake.open(root, schema=SCHEMA, host_id=HOST_ID) as store:
        tables = [store.table(name) for name in TABLES]
        blocks = datagen.triage_blocks(*tables, n_rows=n_rows, block_rows=block_rows)
        while True:
            start = time.perf_counter()
            block = next(blocks, None)
            bench.generate_seconds += time.perf_counter() - start
            if block is None:
                break
            for name, data in zip(TABLES, block, strict=True):
                start = time.perf_counter()
                store.write(name, data)
                bench.ingest_seconds[name] += time.perf_counter() - start
            del block
        ingest_total = sum(bench.ingest_seconds.values())
        progress("query data: generate (untimed)", bench.generate_seconds, "")
        progress("query data: store.write of 3 tables", ingest_total, f"({n_rows * 3:,} rows)")
        for name in TABLES:
            files = store.files(name)
            bench.files[name] = len(files)
            bench.bytes[name] = sum(f.stat().st_size for f in files)
            count = store.sql(f"SELECT COUNT(*) FROM {name}").scalar()
            if count != n_rows:
                raise RuntimeError(f"{name}: stored {count} rows, expected {n_rows}")
        for query in QUERIES:
            seconds = []
            result = None
            for _ in range(repeats):
                start = time.perf_counter()
                result = store.query(query)
                seconds.append(time.perf_counter() - start)
            assert result is not None
            table = result.to_arrow()
            joined = int(sum(v for v in table.column("n").to_pylist() if v is not None))
            if joined != n_rows:
                raise RuntimeError(f"{query}: the join matched {joined} rows, expected {n_rows}")
            bench.runs[query] = QueryRun(query, seconds, table.num_rows, joined)
            progress(
                f"query {query}", min(seconds), f"(runs: {', '.join(f'{x:.2f}s' for x in seconds)})"
            )
    return bench
