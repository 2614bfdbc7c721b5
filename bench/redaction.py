"""Redaction benchmarks (issue 7).

1. Pattern redaction of 1,000,000 realistic command lines (the generator's proc_samples
   command lines, with 1 in 100 replaced by a secret-bearing example from rules.toml):
   lines/s of what a store runs (each distinct line once; one RE2 pass with every rule
   as an alternation, then the rules one by one on the lines that hold anything),
   against the one-string path (`redact_text`: an RE2 check, then Python's `re` on
   the lines that hold anything) called line by line on a 50,000-line slice.
2. proc_samples ingest with the built-in redaction (cmdline pattern, exe normalize, cwd
   truncate:3) against the same store with `telemetry_redaction.enabled = false`: the same
   100k-row Arrow chunks, alternating between the two stores chunk by chunk so both see
   the same machine. Target: redacted ingest >= 0.7x of the unredacted.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

import telelake
from bench import datagen
from bench.report import INFO, Line, Progress, quiet, rate, ratio_line
from telelake.redact import policy
from telelake.redact.patterns import load_rules, redact_array, redact_text
from telelake.schema.load import builtin_path, load_schema

INGEST_MIN = 0.7
LINES, QUICK_LINES = 1_000_000, 200_000
PYTHON_LINES = 50_000
INGEST_ROWS, QUICK_INGEST_ROWS = 1_000_000, 200_000
CHUNK = 100_000
SECRET_EVERY = 100
HOST_ID = "bench-host-01"


@dataclass
class RedactionBench:
    """Both measurements."""

    lines: int
    secret_lines: int
    engine_seconds: float
    python_lines: int
    python_seconds: float
    ingest_rows: int
    redacted_seconds: float
    plain_seconds: float
    redacted_lines_changed: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def with_secrets(samples: pa.Table) -> pa.Table:
    """`samples` with every SECRET_EVERY-th command line replaced by a rule example."""
    examples = [e.text for r in load_rules() for e in r.examples]
    cmdlines = samples.column("cmdline").to_pylist()
    for k, i in enumerate(range(0, len(cmdlines), SECRET_EVERY)):
        cmdlines[i] = examples[k % len(examples)]
    index = samples.schema.get_field_index("cmdline")
    return samples.set_column(index, samples.schema.field(index), pa.array(cmdlines, pa.string()))


def generate(n: int) -> pa.Table:
    table = load_schema(builtin_path("process_triage")).tables["proc_samples"]
    return with_secrets(datagen.proc_samples(table, n))


def pattern_speed(n: int, progress: Progress) -> tuple[float, float, int, int]:
    """(engine seconds for n lines, Python seconds for PYTHON_LINES, lines changed, secrets)."""
    rules = tuple(load_rules())  # as the store holds them (policy.default_rules)
    cmdlines = generate(n).column("cmdline").combine_chunks()
    start = time.perf_counter()
    out = policy.apply(policy.Policy("pattern"), cmdlines, b"")  # what a store runs
    engine = time.perf_counter() - start
    if not out.equals(redact_array(cmdlines, rules)):
        raise RuntimeError("redacting each distinct line once changed the result")
    changed = int(pc.sum(pc.fill_null(pc.not_equal(out, cmdlines), False)).as_py() or 0)
    progress("redaction: RE2 engine", engine, f"{n:,} command lines, {changed:,} redacted")
    head = cmdlines.slice(0, PYTHON_LINES).to_pylist()
    start = time.perf_counter()
    python = [None if v is None else redact_text(v, rules)[0] for v in head]
    python_s = time.perf_counter() - start
    if python != out.slice(0, PYTHON_LINES).to_pylist():
        raise RuntimeError("the RE2 and Python engines disagree on the benchmark lines")
    progress("redaction: redact_text, line by line", python_s, f"{len(head):,} lines")
    return engine, python_s, changed, len(range(0, n, SECRET_EVERY))


def ingest(work: Path, n: int, progress: Progress) -> tuple[float, float]:
    """(redacted seconds, unredacted seconds) for the same chunks, alternating."""
    data = generate(n)
    plain_root = work / "plain"
    plain_root.mkdir()
    (plain_root / "config.json").write_text(
        json.dumps({"telemetry_redaction": {"enabled": False}}), encoding="utf-8"
    )
    seconds = {"redacted": 0.0, "plain": 0.0}
    with (
        telelake.open(work / "redacted", host_id=HOST_ID) as redacted,
        telelake.open(plain_root, host_id=HOST_ID) as plain,
    ):
        stores = {"redacted": redacted, "plain": plain}
        for k, offset in enumerate(range(0, n, CHUNK)):
            chunk = data.slice(offset, CHUNK)
            order = ("redacted", "plain") if k % 2 == 0 else ("plain", "redacted")
            for name in order:
                start = time.perf_counter()
                stores[name].write("proc_samples", chunk)
                seconds[name] += time.perf_counter() - start
        for name, store in stores.items():
            stored = store.sql("SELECT COUNT(*) FROM proc_samples").scalar()
            if stored != n:
                raise RuntimeError(f"{name} store holds {stored} rows, not {n}")
        leaked = redacted.sql(
            "SELECT COUNT(*) FROM proc_samples WHERE cmdline LIKE '%ghp_%'"
        ).scalar()
        if leaked:
            raise RuntimeError(f"{leaked} GitHub tokens were stored unredacted")
    progress("redaction: ingest redacted", seconds["redacted"], f"{n:,} rows")
    progress("redaction: ingest unredacted", seconds["plain"], f"{n:,} rows")
    return seconds["redacted"], seconds["plain"]


def run(work: Path, quick: bool = False, progress: Progress = quiet) -> RedactionBench:
    """Both benchmarks under `work`."""
    n_lines = QUICK_LINES if quick else LINES
    n_rows = QUICK_INGEST_ROWS if quick else INGEST_ROWS
    engine, python_s, changed, secrets = pattern_speed(n_lines, progress)
    redacted, plain = ingest(work, n_rows, progress)
    return RedactionBench(
        n_lines,
        secrets,
        engine,
        min(PYTHON_LINES, n_lines),
        python_s,
        n_rows,
        redacted,
        plain,
        changed,
    )


def lines(b: RedactionBench) -> list[Line]:
    """The rows of the final table."""
    details = b.as_dict()
    return [
        Line(
            f"pattern redaction, {b.lines:,} command lines (1 in {SECRET_EVERY} with a secret)",
            rate(b.lines / b.engine_seconds, "lines"),
            f"redact_text, line by line: {rate(b.python_lines / b.python_seconds, 'lines')}",
            (b.lines / b.engine_seconds) / (b.python_lines / b.python_seconds),
            status=INFO,
            details=details,
        ),
        ratio_line(
            f"proc_samples ingest, redaction on ({b.ingest_rows:,} rows)",
            b.ingest_rows / b.redacted_seconds,
            "redaction off",
            b.ingest_rows / b.plain_seconds,
            INGEST_MIN,
            details,
        ),
    ]
