"""Write modes of lake tables: `upsert` (the last acknowledged write of a key wins) and
`ignore` (the first one does), through the public API.

Expectations come from a plain-Python dict that replays the same operations in the order
they were acknowledged, never from telelake; files are also read with plain DuckDB the
way spec 000 §6.1 reads them (outside readers), which must agree once rows are folded.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import telelake
from telelake.errors import SchemaError

HOST = "feedfacecafebeef"
DAY = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)

SCHEMA = """
name = "modes"
version = "1.0.0"

[tables.items]
tier = "lake"
time = "ts"
key = ["k"]
write = "{mode}"
partition = {{ time = ["year", "month", "day"], keys = ["host_id"] }}
parquet = {{ file_prefix = "items", sort = ["k"] }}
columns = [
  {{ name = "k", type = "INT64", nullable = false }},
  {{ name = "ts", type = "TIMESTAMP_MICROS", nullable = false }},
  {{ name = "v", type = "STRING", nullable = false }},
  {{ name = "host_id", type = "STRING", nullable = false }},
]
"""


def schema_file(directory: Path, mode: str) -> Path:
    path = directory / f"modes_{mode}.toml"
    path.write_text(SCHEMA.format(mode=mode), encoding="utf-8")
    return path


def row(k: int, v: str, day: int = 0) -> dict[str, Any]:
    return {"k": k, "ts": DAY + dt.timedelta(days=day, seconds=k), "v": v, "host_id": HOST}


def seen(store: telelake.Store) -> dict[int, str]:
    rows = store.sql("SELECT k, v FROM items").rows()
    out = dict(rows)
    assert len(out) == len(rows), f"a key shows twice: {sorted(rows)}"
    return out


def outside(root: Path, table: str = "items") -> list[tuple[Any, ...]]:
    """The spec §6.1 view, with plain DuckDB: no telelake code involved."""
    glob = f"{root}/{table}/**/*.parquet"
    if not list((root / table).rglob("*.parquet")):
        return []
    con = duckdb.connect()
    try:
        return con.sql(f"SELECT * FROM read_parquet('{glob}', hive_partitioning=true)").fetchall()
    finally:
        con.close()


def open_modes(root: Path, schema: Path, **kw: Any) -> telelake.Store:
    return telelake.open(root, schema=schema, host_id=HOST, **kw)


# -- the scenario on process_triage ---------------------------------------------------


def run_row(state: str, **changes: Any) -> dict[str, Any]:
    started = dt.datetime(2026, 1, 15, 14, 30, 22, tzinfo=dt.UTC)
    base = {
        "session_id": "pt-20260115-143022-a7xq",
        "host_id": HOST,
        "hostname": None,
        "username": None,
        "uid": 1000,
        "mode": "interactive",
        "deep_scan": False,
        "started_at": started,
        "ended_at": None,
        "duration_ms": None,
        "state": state,
        "processes_scanned": 0,
        "candidates_found": 0,
        "kills_attempted": 0,
        "kills_successful": 0,
        "spares": 0,
        "pt_version": "1.0",
        "pt_core_version": "1.0",
        "schema_version": "1.0.0",
        "capabilities_hash": None,
        "config_snapshot": None,
        "os_family": "linux",
        "os_version": None,
        "kernel_version": None,
        "arch": "x86_64",
        "cores": 2,
        "memory_bytes": 1 << 30,
    }
    return {**base, **changes}


FINAL = {"ended_at": dt.datetime(2026, 1, 15, 14, 31, tzinfo=dt.UTC), "processes_scanned": 120}


@pytest.mark.parametrize("between", ["nothing", "fold", "fold+compact"])
def test_a_sessions_final_row_wins_in_process_triage(store_root: Path, between: str) -> None:
    with telelake.open(store_root, host_id=HOST, retire_after=0) as s:
        assert s.write("runs", [run_row("running")]) == 1
        if between != "nothing":
            s.fold()
        if between == "fold+compact":
            s.write("runs", [run_row("running", session_id="pt-20260115-143500-b8yr")])
            s.fold()
            s.compact("runs")
        assert s.write("runs", [run_row("completed", **FINAL)]) == 1
        got = s.sql("SELECT state, processes_scanned FROM runs WHERE session_id LIKE '%a7xq'")
        assert got.rows() == [("completed", 120)]
    with telelake.open(store_root, host_id=HOST) as s:  # folded at close
        assert s.sql("SELECT state FROM runs WHERE session_id LIKE '%a7xq'").rows() == [
            ("completed",)
        ]
    con = duckdb.connect()
    rows = con.sql(
        f"SELECT session_id, state FROM read_parquet('{store_root}/runs/**/*.parquet', "
        "hive_partitioning=true) ORDER BY 1"
    ).fetchall()
    expected = [("pt-20260115-143022-a7xq", "completed")]
    if between == "fold+compact":
        expected.append(("pt-20260115-143500-b8yr", "running"))
    assert rows == expected


def test_feedback_on_an_outcome_replaces_it(store_root: Path) -> None:
    import datagen

    outcome = datagen.generate(3)["outcomes"][0]
    with telelake.open(store_root, host_id=HOST) as s:
        s.write("outcomes", [{**outcome, "user_feedback": None, "feedback_ts": None}])
        s.fold()
        later = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
        s.write("outcomes", [{**outcome, "user_feedback": "incorrect", "feedback_ts": later}])
        got = s.sql("SELECT user_feedback, feedback_ts FROM outcomes").rows()
    assert got == [("incorrect", later)]


def test_a_second_process_writes_the_final_row(store_root: Path) -> None:
    with telelake.open(store_root, host_id=HOST) as s:
        s.write("runs", [run_row("running")])
        code = textwrap.dedent(
            f"""
            import datetime as dt, sys
            sys.path.insert(0, {str(Path(__file__).parent)!r})
            import telelake, test_upsert as t
            with telelake.open({str(store_root)!r}, host_id=t.HOST) as s:
                print(s.write("runs", [t.run_row("completed", **t.FINAL)]))
            """
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.stdout.strip() == "1", out.stderr[-2000:]
        # The other process folded its version at close; ours is still in our WAL,
        # older, and marked dead by that fold.
        assert s.sql("SELECT state FROM runs").rows() == [("completed",)]
    with telelake.open(store_root, host_id=HOST) as s:
        assert s.sql("SELECT state FROM runs").rows() == [("completed",)]
    assert len(outside(store_root, "runs")) == 1


KILL = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, sys.argv[2])
    import telelake, test_upsert as t
    s = telelake.open(sys.argv[1], host_id=t.HOST)
    s.write("runs", [t.run_row("running")])
    if sys.argv[3] == "fold-between":
        s.fold()
    s.write("runs", [t.run_row("completed", **t.FINAL)])
    print("acknowledged", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.parametrize("how", ["wal-only", "fold-between"])
def test_kill_9_after_the_final_rows_acknowledgement(store_root: Path, how: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", KILL, str(store_root), str(Path(__file__).parent), how],
        capture_output=True,
        text=True,
    )
    assert "acknowledged" in out.stdout, out.stderr[-2000:]
    assert out.returncode == -signal.SIGKILL
    with telelake.open(store_root, host_id=HOST) as s:
        assert s.sql("SELECT state, processes_scanned FROM runs").rows() == [("completed", 120)]
        s.fold()
        assert s.sql("SELECT state FROM runs").rows() == [("completed",)]
    assert len(outside(store_root, "runs")) == 1


# -- write modes on a user schema -------------------------------------------------------------


def test_an_older_version_in_another_writers_wal_never_comes_back(tmp_path: Path) -> None:
    schema = schema_file(tmp_path, "upsert")
    root = tmp_path / "store"
    with open_modes(root, schema) as a, open_modes(root, schema) as b:
        a.write("items", [row(1, "a1"), row(2, "a2")])  # stays in a's WAL
        b.write("items", [row(1, "b1")])  # newer version of key 1
        assert seen(a) == {1: "b1", 2: "a2"}
        b.fold()  # publishes b1, marks a's a1 dead
        assert seen(a) == seen(b) == {1: "b1", 2: "a2"}
        a.fold()  # a's fold skips the dead a1
        assert seen(a) == {1: "b1", 2: "a2"}
    assert sorted((r[0], r[2]) for r in outside(root)) == [(1, "b1"), (2, "a2")]
    assert not list((root / "_wal" / "items").glob("*.dead"))  # gone with their segment


def test_a_newer_version_in_another_wal_wins_over_a_fold(tmp_path: Path) -> None:
    schema = schema_file(tmp_path, "upsert")
    root = tmp_path / "store"
    with open_modes(root, schema) as a, open_modes(root, schema) as b:
        a.write("items", [row(1, "a1")])
        b.write("items", [row(1, "b1")])
        a.fold()  # a's version is older than b's live one: not published
        assert seen(a) == {1: "b1"}
        assert outside(root) == []
    assert sorted((r[0], r[2]) for r in outside(root)) == [(1, "b1")]


def test_a_key_that_moves_to_another_partition(tmp_path: Path) -> None:
    schema = schema_file(tmp_path, "upsert")
    root = tmp_path / "store"
    with open_modes(root, schema) as s:
        s.write("items", [row(7, "old", day=0)])
        s.fold()
        s.write("items", [row(7, "new", day=3)])
        s.fold()
        assert seen(s) == {7: "new"}
        day = s.sql("SELECT day FROM items").rows()
        assert day == [(4,)]
    assert [(r[0], r[2]) for r in outside(root)] == [(7, "new")]


@pytest.mark.parametrize("mode", ["ignore", "upsert"])
def test_write_returns_the_rows_it_stored(tmp_path: Path, mode: str) -> None:
    schema = schema_file(tmp_path, mode)
    with open_modes(tmp_path / "store", schema, fold_bytes=1 << 30) as s:
        batch = [row(1, "x"), row(2, "x"), row(1, "y")]
        assert s.write("items", batch) == (2 if mode == "ignore" else 3)
        assert s.write("items", batch) == (0 if mode == "ignore" else 3)  # a retry
        s.fold()
        assert s.write("items", batch) == (0 if mode == "ignore" else 3)  # against Parquet
        assert s.write("items", [row(3, "z")]) == 1
        big = [row(k, "big") for k in range(60_000)]  # straight to Parquet
        assert s.write("items", big) == (60_000 - 3 if mode == "ignore" else 60_000)
        expected = {k: "big" for k in range(60_000)}
        if mode == "ignore":
            expected.update({1: "x", 2: "x", 3: "z"})
        assert seen(s) == expected


def test_schema_refuses_write_modes_that_cannot_hold(tmp_path: Path) -> None:
    text = SCHEMA.format(mode="upsert").replace('key = ["k"]\n', "")
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SchemaError, match="needs a key"):
        telelake.open(tmp_path / "s1", schema=path)
    path.write_text(SCHEMA.format(mode="insert"), encoding="utf-8")
    with pytest.raises(SchemaError, match=r"takes write = \"ignore\" or \"upsert\""):
        telelake.open(tmp_path / "s2", schema=path)
    path.write_text(SCHEMA.format(mode="merge"), encoding="utf-8")
    with pytest.raises(SchemaError, match="write must be one of"):
        telelake.open(tmp_path / "s3", schema=path)


# -- random interleavings against a dict oracle -------------------------------------------------

OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("write"),
            st.sampled_from("ab"),
            st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2)), min_size=1, max_size=4),
        ),
        st.tuples(st.just("fold"), st.sampled_from("ab"), st.just([])),
        st.tuples(st.just("compact"), st.sampled_from("ab"), st.just([])),
        st.tuples(st.just("reopen"), st.sampled_from("ab"), st.just([])),
    ),
    min_size=1,
    max_size=12,
)


@pytest.mark.parametrize("mode", ["upsert", "ignore"])
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=OPS)
def test_interleavings_match_a_dict(
    tmp_path_factory: pytest.TempPathFactory, mode: str, ops: list[Any]
) -> None:
    base = tmp_path_factory.mktemp("modes")
    schema = schema_file(base, mode)
    root = base / "store"
    stores = {w: open_modes(root, schema, retire_after=0) for w in "ab"}
    oracle: dict[int, str] = {}
    try:
        for step, (op, who, items) in enumerate(ops):
            s = stores[who]
            if op == "write":
                batch = [row(k, f"{who}{step}.{i}", day) for i, (k, day) in enumerate(items)]
                expected = 0
                for r in batch:
                    if mode == "upsert" or r["k"] not in oracle:
                        oracle[r["k"]] = r["v"]
                        expected += 1
                assert s.write("items", batch) == expected
            elif op == "fold":
                s.fold()
            elif op == "compact":
                s.compact("items")
            else:
                s.close()
                stores[who] = open_modes(root, schema, retire_after=0)
            for reader in stores.values():
                assert seen(reader) == oracle
    finally:
        for s in stores.values():
            s.close()
    folded = outside(root)
    assert sorted((r[0], r[2]) for r in folded) == sorted(oracle.items())


# -- outside readers during compaction and retention ------------------------------------------


def test_outside_readers_never_count_a_row_twice(tmp_path: Path) -> None:
    """Plain DuckDB runs the spec §6.1 view in a loop while compaction and retention
    rewrite files: no answer ever exceeds the folded row count (an answer may fail with a
    file that vanished between DuckDB's listing and its read: it is asked again; one
    listed in the microseconds between a swap's renames may come up short)."""
    import threading

    schema = schema_file(tmp_path, "ignore")
    root = tmp_path / "store"
    with open_modes(root, schema, retire_after=0) as s:
        for day in range(4):
            for part in range(6):
                s.write("items", [row(1000 * day + 10 * part + i, "x", day) for i in range(10)])
                s.fold()
    total = 4 * 6 * 10
    expired = 6 * 10  # the oldest day
    answers: list[int] = []
    stop = threading.Event()
    errors: list[str] = []

    def reader() -> None:
        con = duckdb.connect()
        glob = f"{root}/items/**/*.parquet"
        while not stop.is_set():
            try:
                n = con.execute(
                    f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning=true)"
                ).fetchone()
            except duckdb.IOException as exc:
                if "No such file" not in str(exc) and "No files found" not in str(exc):
                    errors.append(str(exc))
                continue
            assert n is not None
            answers.append(int(n[0]))
        con.close()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        with open_modes(root, schema, retire_after=0) as s:
            s.compact("items")
            cfg = {"telemetry_retention": {"items_days": 3}}
            (root / "config.json").write_text(__import__("json").dumps(cfg))
            s.enforce_retention(now=DAY + dt.timedelta(days=3, hours=1))
            s.compact("items")
    finally:
        stop.set()
        thread.join()
    assert not errors
    assert answers
    assert max(answers) <= total  # never a row twice
    short = [a for a in answers if a not in (total, total - expired)]
    assert len(short) <= max(1, len(answers) // 20), sorted(set(answers))
    assert len(outside(root)) == total - expired
    leftover = [p for p in root.rglob("*") if p.name.endswith((".staged", ".retired"))]
    assert leftover == []


def test_sources_of_a_compaction_leave_the_glob_at_once(tmp_path: Path) -> None:
    schema = schema_file(tmp_path, "ignore")
    root = tmp_path / "store"
    with open_modes(root, schema) as s:  # the default grace period: 120 s
        for part in range(3):
            s.write("items", [row(10 * part + i, "x") for i in range(10)])
            s.fold()
        s.compact("items")
        assert len(outside(root)) == 30
        retired = [p for p in root.rglob("*.retired")]
        assert len(retired) == 3  # kept for the grace period, outside the glob
        assert len(list((root / "items").rglob("*.parquet"))) == 1
    assert os.path.exists(retired[0])


@pytest.mark.parametrize("trigger", ["rows", "age"])
def test_an_idle_writers_rows_reach_the_files(tmp_path: Path, trigger: str) -> None:
    """Spec §7.1: rows reach Parquet after `fold_rows` rows or `fold_age` seconds, on a
    background thread, while the writer stays open and idle."""
    import time

    schema = schema_file(tmp_path, "ignore")
    root = tmp_path / "store"
    knobs = {"fold_rows": 5, "fold_age": 3600.0} if trigger == "rows" else {"fold_age": 0.3}
    with open_modes(root, schema, **knobs) as s:
        s.write("items", [row(k, "x") for k in range(3)])
        if trigger == "rows":
            assert outside(root) == []  # 3 rows: not due yet
            s.write("items", [row(k, "x") for k in range(3, 6)])
        deadline = time.monotonic() + 30
        while len(outside(root)) < 6 if trigger == "rows" else len(outside(root)) < 3:
            assert time.monotonic() < deadline, "the rows never reached the files"
            time.sleep(0.05)
        assert seen(s) == {k: "x" for k in range(6 if trigger == "rows" else 3)}
