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
from hypothesis import given, settings
from hypothesis import strategies as st

import telelake

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


# -- the store's own schema -------------------------------------------------------------


def agent_run_row(run_id: str) -> dict[str, object]:
    return {
        "run_id": run_id,
        "schema_version": 3,
        "agent_name": "indexer",
        "start_time": "2026-02-01T10:00:00Z",
        "end_time": "2026-02-01T10:05:00Z",
        "status": "success",
        "api_posted": 0,
        "api_retry_count": 0,
        "created_at": "2026-02-01T10:00:00Z",
        "updated_at": "2026-02-01T10:05:00Z",
    }


def test_every_command_uses_the_schema_of_the_store_it_is_given(tmp_path: Path) -> None:
    """An agent_runs store at a root of its own: no command needs --schema (and
    $TELELAKE_ROOT points elsewhere, so each one really reads --root)."""
    store, elsewhere = tmp_path / "runs-store", tmp_path / "env-root"

    def tl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run(*args, "--root", str(store), root=elsewhere, stdin=stdin)

    def ok(*args: str, stdin: str | None = None) -> str:
        out = tl(*args, stdin=stdin)
        assert out.returncode == 0, (args, out.stdout, out.stderr)
        assert "process_triage" not in out.stdout + out.stderr, (args, out.stdout, out.stderr)
        return out.stdout

    assert "store agent_runs 3.0.0" in ok("init", "--schema", "agent_runs")
    assert "store agent_runs 3.0.0" in ok("init")
    row = json.dumps(agent_run_row("run-1")) + "\n"
    assert "wrote 1 row to agent_runs" in ok("write", "agent_runs", stdin=row)
    event = {"run_id": "run-1", "event_type": "step", "timestamp": "2026-02-01T10:01:00Z"}
    assert "wrote 1 row to events" in ok("write", "events", stdin=json.dumps(event) + "\n")
    out = ok("sql", "SELECT run_id, status FROM agent_runs", "-f", "json")
    assert json.loads(out) == [{"run_id": "run-1", "status": "success"}]
    stats = {r["table"]: r["rows"] for r in json.loads(ok("tables", "-f", "json"))}
    assert stats == {"events": 1, "agent_runs": 1, "run_events": 0, "commits": 0}
    columns = [c["column"] for c in json.loads(ok("describe", "commits", "-f", "json"))]
    assert columns[:2] == ["commit_hash", "run_id"]
    assert "checked" in ok("check")
    assert "folded 0 rows" in ok("fold")
    assert "would merge 0 files" in ok("compact", "--dry-run")
    assert "would remove 0 rows" in ok("retention", "--dry-run")
    assert "maintenance: ok" in ok("maintain", "--quiet")
    assert "store agent_runs 3.0.0" in ok("status")
    assert "nothing secret-looking found" in ok("redact", "scan", "--quiet")
    states = json.loads(ok("migrate", "status", "-f", "json"))
    assert states and {s["state"] for s in states} == {"applied"}
    assert "nothing to migrate, the store is at version 3.0.0" in ok("migrate", "up")
    assert "quick_check ok" in ok("backup", "--quiet")
    assert "replayed 1 file(s)" in ok("recover", "--quiet")
    assert "1 run_events" in ok("sql", "SELECT count(*) || ' run_events' FROM run_events")
    out = ok("export", "agent_runs", "--to", str(tmp_path / "out"), "--quiet")
    assert "exported 1 row of agent_runs" in out
    contract = tmp_path / "contract"
    written = [
        line.removeprefix("wrote ")
        for line in ok("contract", "export", "--out", str(contract)).splitlines()
    ]
    assert [Path(w).name for w in written] == [
        "agent_runs-storage-v3.schema.json",
        "agent_runs-storage-v3.json",
        "agent_runs-storage-invalid-missing-indexes-v3.json",
    ]
    assert ok("contract", "validate", written[1]).strip().endswith(": valid")
    out = tl("contract", "validate", written[2])
    assert out.returncode == 1 and "'indexes' is a required property" in out.stderr

    # A post that fails names the run it tried: the store's agent_runs table was read.
    out = tl("runs", "repost", "--api-url", "http://127.0.0.1:9/runs", "--attempts", "1")
    assert out.returncode == 1 and "1 failed again" in out.stdout, out.stdout + out.stderr
    # Not a command of another schema, though, and not the query of none.
    for args in (("collect", "--samples", "1"), ("report",), ("query", "fleet_stats")):
        out = tl(*args)
        assert out.returncode == 1, (args, out.stdout)
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "'agent_runs'" in lines[0], out.stderr
    assert "reverted sql migration 1" in ok("migrate", "down", "--dev")
    assert {s["state"] for s in json.loads(ok("migrate", "status", "-f", "json"))} == {"pending"}
    assert not elsewhere.exists()  # $TELELAKE_ROOT was never touched


def test_a_schema_that_is_not_the_stores_is_an_error_naming_both(root: Path) -> None:
    assert run("init", "--schema", "agent_runs", root=root).returncode == 0
    for args in (
        ("sql", "SELECT 1", "--schema", "process_triage"),
        ("init", "--schema", "search_ops"),
    ):
        out = run(*args, root=root)
        assert out.returncode == 1
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, out.stderr
        assert str(root) in lines[0] and "'agent_runs'" in lines[0] and f"'{args[-1]}'" in lines[0]


MINI_SCHEMA = """name = "mini"
version = "1.0.0"
[tables.t]
time = "ts"
columns = [
  { name = "ts", type = "timestamp", nullable = false },
  { name = "v", type = "int64" },
]
[queries.above]
sql = "SELECT COUNT(*) AS n FROM t WHERE v > $min"
"""


def test_a_store_made_from_a_schema_file_opens_without_the_file(root: Path, tmp_path: Path) -> None:
    schema = tmp_path / "defs" / "mini.toml"
    schema.parent.mkdir()
    schema.write_text(MINI_SCHEMA)
    assert run("init", "--schema", str(schema), root=root).returncode == 0
    schema.unlink()
    schema.parent.rmdir()

    rows = "".join(json.dumps({"ts": "2026-02-01T00:00:00Z", "v": v}) + "\n" for v in range(10))
    out = run("write", "t", root=root, stdin=rows)
    assert out.returncode == 0, out.stderr
    out = run("query", "above", "--param", "min=6", "-f", "json", root=root)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"n": 3}]
    out = run("describe", "t", "-f", "json", root=root)
    assert [c["column"] for c in json.loads(out.stdout)] == ["ts", "v"]

    import telelake

    with telelake.open(root) as store:  # the Python API does the same
        assert store.schema.name == "mini"
        assert store.sql("SELECT sum(v) FROM t").scalar() == sum(range(10))


def test_a_schema_file_naming_sql_files_needs_them_where_they_were(
    root: Path, tmp_path: Path
) -> None:
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "above.sql").write_text("SELECT COUNT(*) AS n FROM t WHERE v > $min")
    text = MINI_SCHEMA.replace(
        'sql = "SELECT COUNT(*) AS n FROM t WHERE v > $min"', 'file = "above.sql"'
    )
    (defs / "mini.toml").write_text(text)
    assert run("init", "--schema", str(defs / "mini.toml"), root=root).returncode == 0
    (defs / "mini.toml").unlink()  # the schema itself is kept in the store; its SQL file is not
    out = run("query", "above", "--param", "min=0", "-f", "csv", root=root)
    assert out.returncode == 0 and out.stdout.splitlines() == ["n", "0"], out.stderr

    defs.rename(tmp_path / "moved")
    out = run("query", "above", "--param", "min=0", root=root)
    assert out.returncode == 1
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert f"store {root}" in lines[0] and "'mini'" in lines[0] and "above.sql" in lines[0]
    assert "--schema" in lines[0]
    # Given again, from where it is now: the store remembers that place.
    (tmp_path / "moved" / "mini.toml").write_text(text)
    out = run(
        "query",
        "above",
        "--param",
        "min=0",
        "--schema",
        str(tmp_path / "moved" / "mini.toml"),
        "-f",
        "csv",
        root=root,
    )
    assert out.returncode == 0 and out.stdout.splitlines() == ["n", "0"], out.stderr
    (tmp_path / "moved" / "mini.toml").unlink()
    out = run("query", "above", "--param", "min=0", "-f", "csv", root=root)
    assert out.returncode == 0 and out.stdout.splitlines() == ["n", "0"], out.stderr


# -- start-up: what a command loads and writes --------------------------------------------

HEAVY = ("pyarrow", "numpy", "pandas", "re2", "rich", "duckdb", "jsonschema")


def loaded_by(args: list[str], root: Path) -> tuple[str, set[str]]:
    """Run `telelake ARGS` in a fresh interpreter: (its stdout, the heavy modules it loaded)."""
    code = (
        "import sys\n"
        "from telelake.cli import app\n"
        "try:\n"
        f"    app.run({args!r})\n"
        "finally:\n"
        "    sys.stdout.flush()\n"
        f"    print('LOADED', *sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    env = {**os.environ, "TELELAKE_ROOT": str(root), "COLUMNS": "200"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    text, _, loaded = out.stdout.rpartition("LOADED")
    return text, set(loaded.split())


def test_help_loads_none_of_the_heavy_libraries(root: Path) -> None:
    text, loaded = loaded_by(["--help"], root)
    for command in ("init", "sql", "query", "migrate", "recover", "contract", "report"):
        assert f"    {command}" in text
    assert loaded == set()


def test_sql_on_a_quiet_store_needs_neither_arrow_nor_rich(root: Path) -> None:
    rows = "".join(json.dumps(audit_row(i)) + "\n" for i in range(9))
    assert run("write", "audit", root=root, stdin=rows).returncode == 0
    text, loaded = loaded_by(["sql", "SELECT count(*) AS n FROM audit", "-f", "csv"], root)
    assert text.splitlines() == ["n", "9"]
    assert loaded == {"duckdb"}
    text, loaded = loaded_by(["sql", "SELECT count(*) AS n FROM audit"], root)
    assert "│ 9 " in text
    assert loaded == {"duckdb", "rich"}  # the terminal table


def files_of(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_reading_commands_change_nothing_in_the_store(root: Path) -> None:
    rows = "".join(json.dumps(audit_row(i)) + "\n" for i in range(6))
    assert run("write", "audit", root=root, stdin=rows).returncode == 0
    before = files_of(root)
    for args in (
        ("sql", "SELECT count(*) FROM audit"),
        ("sql", "SELECT * FROM proc_inference", "-f", "json"),
        ("query", "fleet_stats"),
        ("tables",),
        ("describe", "proc_inference"),
        ("status",),
    ):
        out = run(*args, root=root)
        assert out.returncode == 0, (args, out.stderr)
        assert files_of(root) == before, args


def test_sql_prints_what_the_api_returns_for_every_type(root: Path, tmp_path: Path) -> None:
    import datetime as dt

    import telelake

    schema = tmp_path / "types.toml"
    schema.write_text(
        'name = "types"\nversion = "1.0.0"\n[tables.t]\ntime = "ts"\ncolumns = [\n'
        '  { name = "ts", type = "timestamp", nullable = false },\n'
        '  { name = "on_day", type = "date" },\n'
        '  { name = "flag", type = "bool" },\n'
        '  { name = "i8", type = "int8" },\n'
        '  { name = "i64", type = "int64" },\n'
        '  { name = "f32", type = "float32" },\n'
        '  { name = "f64", type = "float64" },\n'
        '  { name = "tags", type = "list<string>" },\n'
        '  { name = "blob", type = "binary" },\n'
        '  { name = "doc", type = "json" },\n'
        '  { name = "text", type = "string" },\n]\n'
    )
    utc = dt.UTC
    with telelake.open(root, schema=schema) as store:
        store.write(
            "t",
            [
                {
                    "ts": dt.datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=utc),
                    "on_day": dt.date(2026, 3, 1),
                    "flag": True,
                    "i8": -7,
                    "i64": 2**62,
                    "f32": 0.1,
                    "f64": 1 / 3,
                    "tags": ["a", "b,c", 'd"e'],
                    "blob": b"\x00\xff",
                    "doc": {"k": [1, 2]},
                    "text": 'comma, "quote"\nnewline',
                },
                {"ts": dt.datetime(2026, 3, 2, tzinfo=utc)},
            ],
        )
        queries = [
            "SELECT * FROM t ORDER BY ts",
            "SELECT sum(i64) AS s, avg(f64) AS a, count(*) AS n, max(ts) AS m FROM t",
            "SELECT ts::DATE AS d, list_value(1, 2) AS l, {'x': 1} AS st FROM t ORDER BY ts",
        ]
        expected = {q: store.sql(q) for q in queries}
    from telelake import formats

    for q, result in expected.items():
        for fmt, write in (("json", formats.write_json), ("csv", formats.write_csv)):
            out = run("sql", q, "-f", fmt, root=root)
            assert out.returncode == 0, out.stderr
            want = io.StringIO(newline="")
            write(result.columns, result.rows(), want)
            # (text mode reads the CSV's CRLF line ends as "\n")
            assert out.stdout == want.getvalue().replace("\r\n", "\n"), (q, fmt)


def test_sql_sees_rows_a_live_writer_keeps_in_its_wal(root: Path) -> None:
    import telelake

    with telelake.open(root, fold_rows=10**6, fold_age=3600) as store:
        store.write("audit", [audit_row(i) for i in range(4)])
        assert list(root.glob("audit/**/*.parquet")) == []  # still in the WAL
        out = run("sql", "SELECT count(*) AS n FROM audit", "-f", "csv", root=root)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == ["n", "4"]
    out = run("sql", "SELECT count(*) AS n FROM audit", "-f", "csv", root=root)
    assert out.stdout.splitlines() == ["n", "4"]


def test_sql_skips_a_file_that_is_not_the_tables_and_says_so(root: Path) -> None:
    rows = "".join(json.dumps(audit_row(i)) + "\n" for i in range(3))
    assert run("write", "audit", root=root, stdin=rows).returncode == 0
    day = next(root.glob("audit/year=*/month=*/day=*"))
    stray = day / "audit_20260110T000000Z_zzzz.parquet"
    pq.write_table(pa.Table.from_pylist([audit_row(9)]), stray)  # not written by telelake
    out = run("sql", "SELECT count(*) AS n FROM audit", "-f", "csv", root=root)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["n", "3"]
    assert f"skipping {stray}" in out.stderr and "foreign file" in out.stderr


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (b'{"severity": "info", "severity": "error"}', "repeats the key 'severity'"),
        (b'{"message": NaN}', "NaN"),
        (b'{"message": "caf\xe9"}', "not UTF-8"),
        (b'{"message": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    ],
    ids=["duplicate-key", "nan", "bad-utf8", "deep"],
)
def test_bad_ndjson_lines_are_refused_naming_file_and_line(
    root: Path, tmp_path: Path, line: bytes, says: str
) -> None:
    # Issue 19: NaN was accepted, a repeated key kept its last value, bad UTF-8 named no
    # file or line, and deep nesting was a RecursionError traceback.
    path = tmp_path / "in.ndjson"
    good = json.dumps(audit_row(1)).encode()
    path.write_bytes(good + b"\n\n" + line + b"\n" + good + b"\n")
    out = run("write", "audit", str(path), root=root)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    lines = [x for x in out.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, out.stderr
    assert f"{path}: line 3 " in lines[0] and says in lines[0], lines[0]
    assert list(root.glob("audit/**/*.parquet")) == []


# Lines of known verdict: (bytes, None if fine else what the error says).
NDJSON_LINES = st.sampled_from(
    [
        (b'{"a": 1, "b": [1, {"c": null}]}', None),
        (b'  {"a": "\\u00e9t\\u00e9"}\r', None),
        ('{"a": "\u2028 caf\u00e9"}'.encode(), None),  # U+2028 inside a string: one line
        (b"", None),
        (b"   ", None),
        (b'{"a": 1, "a": 1}', "repeats the key 'a'"),
        (b'{"a": {"b": 1, "b": 2}}', "repeats the key 'b'"),
        (b'{"a": NaN}', "NaN"),
        (b'{"a": -Infinity}', "-Infinity"),
        (b'{"a": "\xff"}', "not UTF-8"),
        (b'{"a": 1', "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
    ]
)


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(NDJSON_LINES, max_size=8))
def test_ndjson_reader_refuses_the_first_bad_line_by_number(
    lines: list[tuple[bytes, str | None]],
) -> None:
    from telelake import formats
    from telelake.schema import load_schema

    table = load_schema("process_triage").table("audit")
    data = b"\n".join(line for line, _ in lines)
    first_bad = next((i for i, (_, says) in enumerate(lines) if says is not None), None)
    if first_bad is None:
        rows = formats.read_ndjson(data, table, "in.ndjson")
        assert len(rows) == sum(1 for line, _ in lines if line.strip())
        return
    with pytest.raises(telelake.ValidationError) as err:
        formats.read_ndjson(data, table, "in.ndjson")
    assert str(err.value).startswith(f"in.ndjson: line {first_bad + 1} ")
    assert str(lines[first_bad][1]) in str(err.value)
