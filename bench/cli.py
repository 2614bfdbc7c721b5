"""Start-up of the command line (issue 18 part 7): what a one-shot command costs.

A small process_triage store (AUDIT_ROWS audit rows over a few days, folded into
Parquet). Each command runs as a fresh process, as a user runs it; wall time from
start to exit, the median of RUNS runs after one warm-up, the two commands of a
comparison in turn (A B A B ...) so that drift in the machine's speed hits both:

- `telelake sql "SELECT count(*) FROM audit" --root R` (the terminal table) against
  `python -c "import duckdb; duckdb.sql(... read_parquet('R/audit/**/*.parquet') ...)"`,
  the same count over the same files with nothing but DuckDB. The ratio is the median
  of the pairs' ratios; target <= 2.5x. The same with `--format csv` (no terminal
  table) is reported for information;
- `telelake --help`: target < 0.3 s.

`telelake` runs as `python -m telelake` with the package this bench imports. The
package's modules are byte-compiled first (an installed package is): with
PYTHONDONTWRITEBYTECODE set and no bytecode, every run would compile them again.
"""

from __future__ import annotations

import compileall
import datetime as dt
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import telelake
from bench.report import INFO, MISSED, PASS, Line, Progress, quiet

AUDIT_ROWS = 200
RUNS, QUICK_RUNS = 11, 5
RATIO_MAX = 2.5
HELP_MAX = 0.3
COUNT = "SELECT count(*) FROM audit"


@dataclass
class Timing:
    """Wall seconds of each run of one command."""

    command: list[str]
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def as_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "median_s": round(self.median, 4),
            "min_s": round(min(self.seconds), 4),
            "max_s": round(max(self.seconds), 4),
            "runs_s": [round(s, 4) for s in self.seconds],
        }


@dataclass
class Pair:
    """Two commands timed in turn; `ratio` is the median of the runs' A/B ratios."""

    a: Timing
    b: Timing

    @property
    def ratio(self) -> float:
        return statistics.median(x / y for x, y in zip(self.a.seconds, self.b.seconds, strict=True))

    def as_dict(self) -> dict[str, Any]:
        return {"telelake": self.a.as_dict(), "peer": self.b.as_dict(), "ratio": self.ratio}


@dataclass
class CliBench:
    sql: Pair
    sql_csv: Pair
    help: Timing
    python: Timing  # the interpreter alone: the floor of every command
    compiled: bool
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "audit_rows": AUDIT_ROWS,
            "sql": self.sql.as_dict(),
            "sql_csv": self.sql_csv.as_dict(),
            "help": self.help.as_dict(),
            "python_startup": self.python.as_dict(),
            "bytecode_compiled": self.compiled,
        }


def make_store(root: Path) -> None:
    """AUDIT_ROWS audit rows over five days, written in five batches and folded."""
    start = dt.datetime(2026, 1, 10, tzinfo=dt.UTC)
    rows = [
        {
            "audit_ts": start + dt.timedelta(minutes=36 * i),
            "session_id": f"pt-2026011{i % 5}-120000-{i % 7:04d}",
            "event_type": "scan_start",
            "severity": ("info", "warning", "error")[i % 3],
            "actor": "user",
            "message": f"event {i}",
            "host_id": "feedfacecafebeef",
        }
        for i in range(AUDIT_ROWS)
    ]
    with telelake.open(root, maintenance=False) as store:
        for k in range(5):
            store.write("audit", rows[k::5])


def _run(command: list[str], env: dict[str, str], expect: str) -> float:
    start = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    seconds = time.perf_counter() - start
    if out.returncode != 0 or expect not in out.stdout:
        raise RuntimeError(f"{' '.join(command)} failed: {out.stdout[-500:]} {out.stderr[-500:]}")
    return seconds


def _pair(a: list[str], b: list[str], env: dict[str, str], expect: str, runs: int) -> Pair:
    pair = Pair(Timing(a), Timing(b))
    _run(a, env, expect), _run(b, env, expect)  # warm-up: the OS's file cache
    for _ in range(runs):
        pair.a.seconds.append(_run(a, env, expect))
        pair.b.seconds.append(_run(b, env, expect))
    return pair


def _alone(command: list[str], env: dict[str, str], expect: str, runs: int) -> Timing:
    timing = Timing(command)
    _run(command, env, expect)
    for _ in range(runs):
        timing.seconds.append(_run(command, env, expect))
    return timing


def run(work: Path, quick: bool = False, progress: Progress = quiet) -> CliBench:
    runs = QUICK_RUNS if quick else RUNS
    package = Path(telelake.__file__).resolve().parent
    compiled = compileall.compile_dir(str(package), quiet=1)
    root = work / "store"
    start = time.perf_counter()
    make_store(root)
    progress("small store (audit rows, folded)", time.perf_counter() - start, f"{AUDIT_ROWS} rows")
    env = {k: v for k, v in os.environ.items() if k != "TELELAKE_ROOT"}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(package.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    env["TELELAKE_MAINTENANCE"] = "off"
    telelake_cmd = [sys.executable, "-m", "telelake"]
    peer = [
        sys.executable,
        "-c",
        'import duckdb; print(duckdb.sql("SELECT count(*) FROM read_parquet('
        f"'{root}/audit/**/*.parquet', hive_partitioning = true)\").fetchall())",
    ]
    expect = str(AUDIT_ROWS)

    start = time.perf_counter()
    sql = _pair([*telelake_cmd, "sql", COUNT, "--root", str(root)], peer, env, expect, runs)
    progress("telelake sql vs python+duckdb", time.perf_counter() - start, f"{sql.ratio:.2f}x")
    start = time.perf_counter()
    csv = _pair(
        [*telelake_cmd, "sql", COUNT, "--root", str(root), "-f", "csv"], peer, env, expect, runs
    )
    progress(
        "telelake sql -f csv vs python+duckdb", time.perf_counter() - start, f"{csv.ratio:.2f}x"
    )
    start = time.perf_counter()
    help_ = _alone([*telelake_cmd, "--help"], env, "recover", runs)
    python = _alone([sys.executable, "-c", "print('ok')"], env, "ok", runs)
    progress("telelake --help", time.perf_counter() - start, f"{help_.median * 1000:.0f} ms")
    warnings = [] if compiled else ["could not byte-compile telelake: start-up includes compiling"]
    return CliBench(sql, csv, help_, python, bool(compiled), warnings)


def lines(result: CliBench) -> list[Line]:
    sql, csv, help_ = result.sql, result.sql_csv, result.help
    return [
        Line(
            "telelake sql one-shot (count, table output)",
            f"{sql.a.median * 1000:,.0f} ms",
            f"python+duckdb: {sql.b.median * 1000:,.0f} ms",
            sql.ratio,
            f"<= {RATIO_MAX:.1f}x",
            PASS if sql.ratio <= RATIO_MAX else MISSED,
            sql.as_dict(),
        ),
        Line(
            "telelake sql one-shot (count, --format csv)",
            f"{csv.a.median * 1000:,.0f} ms",
            f"python+duckdb: {csv.b.median * 1000:,.0f} ms",
            csv.ratio,
            status=INFO,
            details=csv.as_dict(),
        ),
        Line(
            "telelake --help",
            f"{help_.median * 1000:,.0f} ms",
            f"python alone: {result.python.median * 1000:,.0f} ms",
            target=f"< {HELP_MAX * 1000:.0f} ms",
            status=PASS if help_.median < HELP_MAX else MISSED,
            details={"help": help_.as_dict(), "python": result.python.as_dict()},
        ),
    ]
