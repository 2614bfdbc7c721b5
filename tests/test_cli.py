"""The `telelake` command through its real entry point (the installed console script)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

TELELAKE = str(Path(sys.executable).parent / "telelake")


def run(*args: str, root: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TELELAKE_ROOT": str(root), "COLUMNS": "200"}
    return subprocess.run(
        [TELELAKE, *args], input=stdin, capture_output=True, text=True, env=env, timeout=120
    )


def audit_row(i: int, **over: object) -> dict[str, object]:
    row: dict[str, object] = {
        "audit_ts": f"2026-01-{10 + i % 3:02d}T12:00:{i % 60:02d}Z",
        "session_id": f"s{i % 4}",
        "event_type": "scan_start",
        "severity": ["info", "warning", "error"][i % 3],
        "actor": "user",
        "message": f'message {i}, with a comma and "quotes"',
        "host_id": "hostA",
    }
    row.update(over)
    return row


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "cli-store"


def test_init_creates_store_and_reports_it(root: Path) -> None:
    out = run("init", root=root)
    assert out.returncode == 0, out.stderr
    assert "process_triage" in out.stdout
    assert (root / "_metadata" / "schema_version.json").is_file()


def test_write_ndjson_from_stdin_then_query_as_csv_and_json(root: Path) -> None:
    rows = [audit_row(i) for i in range(25)]
    text = "\n".join(json.dumps(r) for r in rows) + "\n"
    out = run("write", "audit", "-", "--format", "ndjson", root=root, stdin=text)
    assert out.returncode == 0, out.stderr
    assert "wrote 25 rows" in out.stdout

    out = run(
        "sql",
        "SELECT severity, COUNT(*) AS n FROM audit GROUP BY 1 ORDER BY 1",
        "--format",
        "csv",
        root=root,
    )
    assert out.returncode == 0, out.stderr
    got = list(csv.DictReader(io.StringIO(out.stdout)))
    expected: dict[str, int] = {}
    for r in rows:
        expected[str(r["severity"])] = expected.get(str(r["severity"]), 0) + 1
    assert {g["severity"]: int(g["n"]) for g in got} == expected

    out = run(
        "sql",
        "SELECT message, audit_ts FROM audit ORDER BY audit_ts, message",
        "-f",
        "json",
        root=root,
    )
    assert out.returncode == 0, out.stderr
    records = json.loads(out.stdout)
    want = sorted((str(r["audit_ts"]), str(r["message"])) for r in rows)
    assert [(r["audit_ts"], r["message"]) for r in records] == want


def test_write_csv_and_parquet_files(root: Path, tmp_path: Path) -> None:
    rows = [audit_row(i, target_pid=i) for i in range(10)]
    csv_file = tmp_path / "in.csv"
    with csv_file.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert run("write", "audit", str(csv_file), "-f", "csv", root=root).returncode == 0

    pq_file = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist([audit_row(i + 100) for i in range(5)]), pq_file)
    out = run("write", "audit", str(pq_file), "-f", "parquet", root=root)
    assert out.returncode == 0, out.stderr

    out = run(
        "sql", "SELECT COUNT(*) AS n, SUM(target_pid) AS s FROM audit", "-f", "json", root=root
    )
    assert json.loads(out.stdout) == [{"n": 15, "s": sum(range(10))}]


def test_invalid_input_is_one_line_error_and_writes_nothing(root: Path) -> None:
    good = json.dumps(audit_row(1))
    bad = json.dumps(audit_row(2, severity="catastrophic"))
    out = run("write", "audit", "-", root=root, stdin=good + "\n" + bad + "\n")
    assert out.returncode == 1
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert "'severity'" in lines[0] and "row 1" in lines[0] and "catastrophic" in lines[0]
    assert list(root.glob("audit/**/*.parquet")) == []


@pytest.mark.parametrize(
    "args",
    [
        ("sql", "SELEC 1"),
        ("query", "no_such_query"),
        ("describe", "no_such_table"),
        ("query", "fleet_stats", "--param", "x=1"),
        ("sql", "SELECT 1", "--format", "xml"),
        ("write", "audit", "/no/such/file.ndjson"),
    ],
)
def test_errors_exit_non_zero_with_one_line(root: Path, args: tuple[str, ...]) -> None:
    out = run(*args, root=root)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), out.stderr


def test_tables_and_describe(root: Path) -> None:
    run("write", "audit", "-", root=root, stdin=json.dumps(audit_row(0)) + "\n")
    out = run("tables", "-f", "json", root=root)
    assert out.returncode == 0, out.stderr
    stats = {r["table"]: r for r in json.loads(out.stdout)}
    assert set(stats) == {
        "runs",
        "proc_samples",
        "proc_features",
        "proc_inference",
        "outcomes",
        "audit",
    }
    assert stats["audit"]["rows"] == 1 and stats["audit"]["files"] == 1
    on_disk = sum(p.stat().st_size for p in (root / "audit").rglob("*.parquet"))
    assert stats["audit"]["bytes"] == on_disk
    assert stats["runs"]["rows"] == 0

    out = run("describe", "proc_inference", "-f", "json", root=root)
    cols = {c["column"]: c for c in json.loads(out.stdout)}
    assert cols["evidence_tags"]["type"] == "list<string>"
    assert cols["evidence_deep"]["nullable"] is True
    assert cols["score"]["nullable"] is False

    out = run("describe", "proc_samples", "-f", "json", root=root)
    redact = {c["column"]: c["redact"] for c in json.loads(out.stdout) if c["redact"]}
    assert redact == {"cmdline": "pattern", "exe": "normalize", "cwd": "truncate:3"}


def test_query_with_params_runs_named_query(root: Path, tmp_path: Path) -> None:
    schema = tmp_path / "s.toml"
    schema.write_text(
        'name = "mini"\nversion = "1.0.0"\n'
        '[tables.t]\ntime = "ts"\ncolumns = [\n'
        '  { name = "ts", type = "timestamp", nullable = false },\n'
        '  { name = "v", type = "int64" },\n]\n'
        '[queries.above]\nsql = "SELECT COUNT(*) AS n FROM t WHERE v > $min"\n'
    )
    rows = "".join(json.dumps({"ts": "2026-02-01T00:00:00Z", "v": v}) + "\n" for v in range(10))
    assert run("write", "t", "-", "--schema", str(schema), root=root, stdin=rows).returncode == 0
    out = run(
        "query", "above", "--param", "min=6", "--schema", str(schema), "-f", "json", root=root
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"n": sum(1 for v in range(10) if v > 6)}]


def test_cli_reference_is_generated_from_the_cli() -> None:
    from telelake.clidoc import reference

    text = reference()
    for command in ("init", "write", "sql", "query", "tables", "describe", "collect"):
        assert f"## `telelake {command}`" in text
    assert "--root" in text and "--format" in text


def test_compact_dry_run_then_merge_then_nothing_left(root: Path) -> None:
    rows = [audit_row(i) for i in range(12)]
    for i in range(0, 12, 3):  # four writes: four files in each of the three day partitions
        text = "\n".join(json.dumps(r) for r in rows[i : i + 3]) + "\n"
        out = run("write", "audit", "-", "--format", "ndjson", root=root, stdin=text)
        assert out.returncode == 0, out.stderr
    days = sorted((root / "audit").rglob("day=*"))
    files = {d: len(list(d.glob("*.parquet"))) for d in days}
    assert len(days) == 3 and all(n > 1 for n in files.values())

    out = run("compact", "--dry-run", root=root)
    assert out.returncode == 0, out.stderr
    assert f"would merge {sum(files.values())} files into 3 in 3 partition(s)" in out.stdout
    assert {d: len(list(d.glob("*.parquet"))) for d in days} == files  # nothing changed

    out = run("compact", "--table", "audit", "--quiet", root=root)
    assert out.returncode == 0, out.stderr
    assert f"merged {sum(files.values())} files into 3 in 3 partition(s)" in out.stdout
    out = run("sql", "SELECT count(*) AS n FROM audit", "--format", "csv", root=root)
    assert out.stdout.splitlines() == ["n", "12"]

    out = run("compact", "--older-than", "soon", root=root)
    assert out.returncode != 0 and "not an age: 'soon'" in out.stderr
