"""Lookup pruning: a query naming values of a lookup column (`session_id = ?`, `IN`, the
`session_summary` macro) lists only the files whose footer statistics can hold them, and
always returns exactly what a brute-force reading of every row says.

The store mixes everything pruning must not get wrong: files of several writes per
partition, rows still in a live writer's WAL (one of them repeating a key a Parquet file
holds: the first write wins, or the last in an upsert table), a file written without
statistics, and (in a store of its own) files of an older schema version that lack the
lookup column. The oracle is plain Python over the rows written.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import datagen
import telelake
from conftest import TEST_HOST_ID
from telelake.lake import layout, parquet, prune
from telelake.lake.tier import Durability
from telelake.planner import Planner
from telelake.schema.load import load_schema, parse_schema
from telelake.store import Store

UTC = dt.UTC
KEYS = {
    "proc_samples": ("session_id", "sample_seq", "pid"),
    "runs": ("session_id",),
    "outcomes": ("session_id", "pid", "start_id", "outcome_ts"),
}
TIMES = {"proc_samples": "sample_ts", "runs": "started_at", "outcomes": "outcome_ts"}
SUMMED = {"proc_samples": "pid", "runs": "processes_scanned", "outcomes": "pid"}
# A column of no key: a retried row with another value there must stay hidden.
CHANGED = {"proc_samples": "rss_bytes", "runs": "processes_scanned", "outcomes": "cmd"}


def utc(value: Any) -> dt.datetime:
    assert isinstance(value, dt.datetime)
    return value.astimezone(UTC)


def key_of(table: str, row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(utc(row[k]) if k.endswith("_ts") else row[k] for k in KEYS[table])


# -- the pure part: file statistics against lookup values -------------------------------------

texts = st.text(max_size=12) | st.text(min_size=4000, max_size=5000)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    values=st.lists(st.text(max_size=12), min_size=1, max_size=30),
    asked=st.lists(texts, min_size=1, max_size=4),
    group=st.integers(1, 10),
    long_value=st.booleans(),
)
def test_a_file_holding_a_wanted_value_is_never_ruled_out(
    tmp_path: Path, values: list[str], asked: list[str], group: int, long_value: bool
) -> None:
    if long_value:  # long strings: Parquet keeps no min/max for them
        values = [*values, "x" * 5000]
    path = tmp_path / f"f{abs(hash((tuple(values), group)))}.parquet"
    pq.write_table(pa.table({"session_id": values}), path, row_group_size=group)
    bounds = prune.Bounds(lookups={"session_id": frozenset(asked)})
    holds = bool(set(asked) & set(values))
    if holds:
        assert bounds.admits_file(path)
    if not bounds.admits_file(path):
        assert not holds
    # Byte order of UTF-8 is code point order: the statistics are Python's min and max.
    ranges = parquet.column_ranges(path, ("session_id",))
    if ranges is not None:
        assert ranges["session_id"] == (min(values), max(values))


def test_files_without_statistics_or_the_column_are_kept(tmp_path: Path) -> None:
    bare = tmp_path / "bare.parquet"
    pq.write_table(pa.table({"session_id": ["a", "b"]}), bare, write_statistics=False)
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"n": [1]}), other)
    bounds = prune.Bounds(lookups={"session_id": frozenset({"z"})})
    assert bounds.admits_file(bare) and bounds.admits_file(other)
    assert bounds.admits_file(tmp_path / "gone.parquet")  # whoever reads it next decides
    assert not bounds.admits_ranges({"session_id": ("a", "b")})
    assert not bounds.admits_ranges({})  # no non-empty row group: no rows at all


def test_footer_ranges_are_cached_per_set_of_columns(tmp_path: Path) -> None:
    """A lookup asks for session_id alone, key dedup for the whole key: neither may get
    the other's answer (a missing key column would rule a file out)."""
    path = tmp_path / "two.parquet"
    pq.write_table(pa.table({"session_id": ["a", "c"], "pid": [1, 9]}), path)
    assert parquet.column_ranges(path, ("session_id",)) == {"session_id": ("a", "c")}
    assert parquet.column_ranges(path, ("session_id", "pid")) == {
        "session_id": ("a", "c"),
        "pid": (1, 9),
    }


# -- reading queries ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect()
    yield c
    c.close()


def scan(con: duckdb.DuckDBPyConnection, sql: str) -> prune.Scan:
    schema = load_schema("process_triage")
    planner = Planner(schema, con)
    ast = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])
    ast = prune.expand_macros(ast, planner._table_macros())
    lake = {n: t for n, t in schema.tables.items() if t.tier == "lake"}
    times = {n: t.time for n, t in lake.items()}
    parts = {n: (*t.partition.names, *t.lookup) for n, t in lake.items()}
    return prune.scan(ast, times, parts, planner.functions())


def described(found: prune.Scan) -> set[tuple[str, str, str]]:
    return {(t.table, t.column, t.op) for t in found.terms}


def test_every_process_triage_table_looks_up_session_id() -> None:
    schema = load_schema("process_triage")
    assert {n: t.lookup for n, t in schema.tables.items()} == dict.fromkeys(
        schema.tables, ("session_id",)
    )


def test_lookup_terms_and_the_session_summary_macro(con: duckdb.DuckDBPyConnection) -> None:
    found = scan(
        con,
        "SELECT * FROM proc_samples p WHERE p.session_id = ? AND session_id IN ('a', 'b') "
        "AND session_id LIKE 'pt-%' AND (session_id = 'c' OR pid = 1)",
    )
    assert described(found) == {
        ("proc_samples", "session_id", "="),
        ("proc_samples", "session_id", "in"),
    }
    summary = scan(con, "SELECT * FROM session_summary($sid) s WHERE s.mode = 'x'")
    assert summary.tables == {"runs", "outcomes"}
    assert described(summary) == {("runs", "session_id", "="), ("outcomes", "session_id", "=")}
    # The argument stands for the parameter in each term (each a copy of its own).
    values = prune.value_expressions(summary.terms)
    assert [v["class"] for v in values] == ["PARAMETER", "PARAMETER"]
    assert values[0] is not values[1]
    for sql in (  # named or missing arguments: the call stays opaque
        "SELECT * FROM session_summary(sid := 'x')",
        "SELECT * FROM session_summary()",
        "SELECT * FROM recent_sessions(3) WHERE session_id = 'x'",  # reads runs unbounded
    ):
        found = scan(con, sql)
        assert found.tables is None or not found.terms, sql


def test_a_macro_parameter_named_like_a_column_it_may_read_is_not_followed() -> None:
    columns = {"runs": frozenset({"session_id", "mode"})}

    def body(sql: str) -> dict[str, Any]:
        c = duckdb.connect()
        try:
            return dict(json.loads(c.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0]))
        finally:
            c.close()

    assert prune.macro(["sid"], body("SELECT * FROM runs WHERE session_id = sid"), columns)
    assert (
        prune.macro(["mode"], body("SELECT * FROM runs WHERE session_id = mode"), columns) is None
    )
    aliased = body("SELECT * FROM (SELECT 1 AS sid) t, runs WHERE session_id = sid")
    assert prune.macro(["sid"], aliased, columns) is None
    assert prune.macro(["a", "b"], body("SELECT 1; SELECT 2"), columns) is None


def test_lookup_values_that_are_not_text_bound_nothing() -> None:
    term = prune.Term("runs", "session_id", "in", ({"n": 1}, {"n": 2}))
    nodes = prune.value_expressions([term])
    bounds = prune.bounds([term], {id(nodes[0]): "a", id(nodes[1]): 7}, None, (), ("session_id",))
    assert not bounds.restricts
    both = [term, prune.Term("runs", "session_id", "=", ({"n": 3},))]
    nodes = prune.value_expressions(both)
    evaluated = {id(nodes[0]): "a", id(nodes[1]): "b", id(nodes[2]): "b"}
    assert prune.bounds(both, evaluated, None, (), ("session_id",)).lookups == {
        "session_id": frozenset({"b"})
    }


@pytest.mark.parametrize(
    "setting,message",
    [
        ('lookup = ["nope"]', "names no column"),
        ('lookup = ["n"]', "must be strings, not int64"),
        ('lookup = ["host"]', "partition column"),
        ('lookup = ["s", "s"]', "twice"),
        ('lookup = "s"', "list of strings"),
        ('tier = "sql"\nlookup = ["s"]', "lake tables only"),
    ],
)
def test_bad_lookup_settings_are_schema_errors(setting: str, message: str) -> None:
    text = f"""
name = "d"
version = "1.0.0"
[tables.t]
{setting}
time = "ts"
partition = {{ keys = ["host"] }}
columns = [
  {{ name = "ts", type = "timestamp", nullable = false }},
  {{ name = "s", type = "string" }},
  {{ name = "n", type = "int64" }},
  {{ name = "host", type = "string" }},
]
"""
    if "sql" in setting:
        text = text.replace('partition = { keys = ["host"] }\n', "")
    with pytest.raises(telelake.SchemaError, match=message):
        parse_schema(tomllib.loads(text), Path("d.toml"))


# -- end to end, against brute force ------------------------------------------------------------


class Lake:
    """A store, the rows each table shows (the oracle's input), and a live writer."""

    def __init__(
        self,
        root: Path,
        visible: dict[str, list[dict[str, Any]]],
        writer: Store,
        filed: set[str],
    ) -> None:
        self.root = root
        self.visible = visible
        self.writer = writer
        self.filed = filed  # sessions with rows in the files the store's writes folded


def bare_file(store: Store, table: str, rows: list[dict[str, Any]]) -> Path:
    """Rows of one day written as a valid telelake file without footer statistics."""
    t = store.table(table)
    assert t.parquet is not None
    data = store.validate(table, [{**r, "host_id": TEST_HOST_ID} for r in rows])
    data = data.select(list(t.column_names))
    day = utc(rows[0][t.time])
    values = (("year", f"{day:%Y}"), ("month", f"{day:%m}"), ("day", f"{day:%d}"))
    directory = store.root / table / layout.partition_path((*values, ("host_id", TEST_HOST_ID)))
    directory.mkdir(parents=True, exist_ok=True)
    meta = {
        parquet.META_SCHEMA: b"process_triage",
        parquet.META_VERSION: store.schema.version.encode(),
        parquet.META_TABLE: table.encode(),
    }
    path = directory / layout.file_name(t.parquet.file_prefix, day, "bare")
    pq.write_table(data.replace_schema_metadata(meta), path, write_statistics=False)
    return path


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    root = tmp_path_factory.mktemp("lookup") / "store"
    data = datagen.generate(17, n_sessions=48, days=12)
    visible: dict[str, list[dict[str, Any]]] = {t: [] for t in KEYS}
    parts: dict[str, list[list[dict[str, Any]]]] = {}
    for table in KEYS:
        rows = data[table]
        n = len(rows)
        parts[table] = [rows[: n * 6 // 10], rows[n * 6 // 10 : n * 9 // 10], rows[n * 9 // 10 :]]
    for i in range(2):  # two writes folded at close: two files in many partitions
        with telelake.open(root, schema="process_triage", host_id=TEST_HOST_ID) as store:
            for table in KEYS:
                store.write(table, parts[table][i])
                visible[table] += parts[table][i]
    extra = datagen.generate(23, n_sessions=10, days=12)
    with telelake.open(root, schema="process_triage", host_id=TEST_HOST_ID) as store:
        for table in KEYS:  # one day of other sessions, in a file without statistics
            column = TIMES[table]
            first = utc(extra[table][0][column]).date()
            rows = [r for r in extra[table] if utc(r[column]).date() == first]
            bare_file(store, table, rows)
            visible[table] += [{**r, "host_id": TEST_HOST_ID} for r in rows]
    writer = telelake.open(
        root, schema="process_triage", host_id=TEST_HOST_ID, fold_age=1e9, fold_bytes=1 << 40
    )
    for table in KEYS:
        live = parts[table][2]
        # A retry of a row a Parquet file holds, with other values: under write = "ignore"
        # the first write wins, under "upsert" (runs, outcomes) the retry replaces it.
        twin = {**parts[table][0][0], CHANGED[table]: parts[table][0][1][CHANGED[table]]}
        writer.write(table, [*live, twin])
        visible[table] += live
        if writer.table(table).write == "upsert":
            same = key_of(table, twin)
            visible[table] = [twin if key_of(table, r) == same else r for r in visible[table]]
    filed = {r["session_id"] for table in KEYS for part in parts[table][:2] for r in part}
    yield Lake(root, visible, writer, filed)
    writer.close()


def session_ids(lake: Lake) -> list[str]:
    return sorted({r["session_id"] for rows in lake.visible.values() for r in rows})


def oracle(
    lake: Lake, table: str, sids: list[str], since: dt.datetime | None, host: str | None
) -> tuple[int, int]:
    kept = [
        r
        for r in lake.visible[table]
        if r["session_id"] in sids
        and (since is None or utc(r[TIMES[table]]) >= since)
        and (host is None or r["host_id"] == host)
    ]
    return len(kept), sum(r[SUMMED[table]] for r in kept)


@pytest.fixture(scope="module")
def reader(lake: Lake) -> Iterator[Store]:
    with telelake.open(lake.root, schema="process_triage", host_id=TEST_HOST_ID) as store:
        yield store


def test_the_store_has_what_the_cases_need(lake: Lake, reader: Store) -> None:
    for table in KEYS:
        visible = lake.visible[table]
        assert reader.sql(f"SELECT count(*) FROM {table}").scalar() == len(visible)
        assert len({key_of(table, r) for r in visible}) == len(visible)
        assert len(reader.files(table)) >= 20


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_lookups_return_what_brute_force_says(
    lake: Lake, reader: Store, data: st.DataObject
) -> None:
    known = session_ids(lake)
    table = data.draw(st.sampled_from(sorted(KEYS)))
    near = st.sampled_from(["", "pt-", "pt-2026", "pt-20251227-000000-0000", "zz"])
    sids = data.draw(st.lists(st.sampled_from(known) | near, min_size=1, max_size=3))
    since = data.draw(st.none() | st.integers(0, 12))
    host = data.draw(st.none() | st.sampled_from([*datagen.DEFAULT_HOSTS, TEST_HOST_ID]))
    when = None if since is None else datagen.DEFAULT_START + dt.timedelta(days=since)
    where = "session_id = ?" if len(sids) == 1 else f"session_id IN ({', '.join('?' * len(sids))})"
    params: list[Any] = list(sids)
    if when is not None:
        where += f" AND {TIMES[table]} >= ?"
        params.append(when)
    if host is not None:
        where += " AND host_id = ?"
        params.append(host)
    sql = f"SELECT count(*), coalesce(sum({SUMMED[table]}), 0) FROM {table} WHERE {where}"
    assert tuple(reader.sql(sql, params).rows()[0]) == oracle(lake, table, sids, when, host)


def test_a_lookup_lists_only_the_files_that_can_hold_the_session(lake: Lake, reader: Store) -> None:
    samples = reader.table("proc_samples")
    filed = [r["session_id"] for r in lake.visible["proc_samples"]]
    sid = next(s for s in filed if s in lake.filed)
    planner = reader.engine._planner
    plan = planner.plan("SELECT * FROM proc_samples WHERE session_id = ?", [sid])
    snap = reader._lake.snapshot(samples, plan.bounds["proc_samples"])
    every = reader._lake.snapshot(samples)
    assert 0 < len(snap.files) < len(every.files) / 3
    for f in snap.files:
        ranges = parquet.column_ranges(f, ("session_id",))
        assert ranges is None or ranges["session_id"][0] <= sid <= ranges["session_id"][1]
    assert snap.wal is not None and every.wal is not None
    assert snap.wal.num_rows == every.wal.num_rows  # live rows are never pruned


def test_a_lookup_never_opens_the_files_of_other_sessions(lake: Lake, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(lake.root, root)
    sid = min(r["session_id"] for r in lake.visible["proc_samples"])  # the oldest session
    newest = max(
        (f for f in (root / "proc_samples").rglob("*.parquet")),
        key=lambda f: (parquet.column_ranges(f, ("session_id",)) or {"session_id": ("", "")})[
            "session_id"
        ][0],
    )
    ranges = parquet.column_ranges(newest, ("session_id",))
    assert ranges is not None and sid < ranges["session_id"][0]
    with telelake.open(root, schema="process_triage", host_id=TEST_HOST_ID) as store:
        sql = "SELECT count(*), coalesce(sum(pid), 0) FROM proc_samples WHERE session_id = ?"
        expected = oracle(lake, "proc_samples", [sid], None, None)
        assert store.sql("SELECT count(*) FROM proc_samples").scalar() == len(
            lake.visible["proc_samples"]
        )
        assert tuple(store.sql(sql, [sid]).rows()[0]) == expected
        # Damage its data pages in place, footer, size and mtime kept: a reader that
        # opens it fails; one that trusts the footer's statistics never opens it.
        st_ = newest.stat()
        data = bytearray(newest.read_bytes())
        footer = int.from_bytes(data[-8:-4], "little")
        data[4 : len(data) - 8 - footer] = bytes(len(data) - 12 - footer)
        newest.write_bytes(bytes(data))
        os.utime(newest, ns=(st_.st_atime_ns, st_.st_mtime_ns))
        assert tuple(store.sql(sql, [sid]).rows()[0]) == expected
        with pytest.raises(telelake.QueryError):
            store.sql("SELECT count(*) FROM proc_samples WHERE cpu_percent >= 0")


def summary_oracle(lake: Lake, sid: str) -> list[tuple[Any, ...]]:
    runs = [r for r in lake.visible["runs"] if r["session_id"] == sid]
    pids = {r["pid"] for r in lake.visible["outcomes"] if r["session_id"] == sid}
    return [(r["session_id"], r["mode"], r["candidates_found"], len(pids)) for r in runs]


def test_session_summary_reads_only_its_session_and_equals_brute_force(
    lake: Lake, reader: Store
) -> None:
    live = lake.visible["runs"][-1]["session_id"]  # a run still in the WAL
    for sid in [*session_ids(lake)[::5], live, "pt-none"]:
        got = reader.sql(
            "SELECT session_id, mode, candidates_found, outcomes_recorded FROM session_summary(?)",
            [sid],
        ).rows()
        assert [tuple(r) for r in got] == summary_oracle(lake, sid), sid
    plan = reader.engine._planner.plan("SELECT * FROM session_summary(?)", [live])
    assert plan.tables == {"runs", "outcomes"}
    assert set(plan.bounds) == {"runs", "outcomes"}


def test_a_redefined_macro_is_planned_by_its_new_body(lake: Lake) -> None:
    sids = sorted({r["session_id"] for r in lake.visible["proc_samples"]})
    a, b = sids[0], sids[-1]
    with telelake.open(lake.root, schema="process_triage", host_id=TEST_HOST_ID) as store:
        count = "SELECT count(*) FROM proc_samples WHERE session_id = ?"
        assert (
            store.sql(count, [a], allow_external=True).scalar()
            == oracle(lake, "proc_samples", [a], None, None)[0]
        )
        store.sql(
            "CREATE OR REPLACE MACRO session_summary(x) AS TABLE "
            "SELECT count(*) AS n FROM proc_samples WHERE session_id = x",
            allow_external=True,  # a CREATE: DuckDB in full
        )
        # The proc_samples view was last pruned to session a: it must be rebuilt for b.
        query = "SELECT n FROM session_summary(?)"
        assert (
            store.sql(query, [b], allow_external=True).scalar()
            == oracle(lake, "proc_samples", [b], None, None)[0]
        )
        plan = store._duckdb(True)._planner.plan(query, [b])
        assert plan.tables == {"proc_samples"} and set(plan.bounds) == {"proc_samples"}


def test_a_default_collation_turns_text_pruning_off(lake: Lake) -> None:
    sid = next(r["session_id"] for r in lake.visible["proc_samples"])
    with telelake.open(lake.root, schema="process_triage", host_id=TEST_HOST_ID) as store:
        store.sql("SET default_collation = 'nocase'", allow_external=True)
        shouted = store.sql(
            "SELECT count(*) FROM proc_samples WHERE session_id = ?",
            [sid.upper()],
            allow_external=True,
        ).scalar()
        assert shouted == oracle(lake, "proc_samples", [sid], None, None)[0]


OLD = """
name = "tags"
version = "1.0.0"
[tables.events]
time = "ts"
key = ["id"]
columns = [
  { name = "ts", type = "timestamp", nullable = false },
  { name = "id", type = "string", nullable = false },
]
"""
NEW = (
    OLD.replace('version = "1.0.0"', 'version = "1.1.0"')
    .replace('key = ["id"]', 'key = ["id"]\nlookup = ["tag"]')
    .replace(
        '{ name = "id", type = "string", nullable = false },',
        '{ name = "id", type = "string", nullable = false },\n  { name = "tag", type = "string" },',
    )
)


def test_files_of_an_older_version_without_the_column_are_read_right(tmp_path: Path) -> None:
    root = tmp_path / "store"
    old, new = tmp_path / "old.toml", tmp_path / "new.toml"
    old.write_text(OLD, encoding="utf-8")
    new.write_text(NEW, encoding="utf-8")
    start = dt.datetime(2026, 1, 1, tzinfo=UTC)
    with telelake.open(root, schema=old) as store:
        store.write(
            "events", [{"ts": start + dt.timedelta(days=i), "id": f"o{i}"} for i in range(3)]
        )
    rows = [
        {"ts": start + dt.timedelta(days=i, hours=1), "id": f"n{i}", "tag": "ab"[i % 2]}
        for i in range(6)
    ]
    with telelake.open(root, schema=new) as store:
        store.write("events", rows)
    with telelake.open(root, schema=new) as store:
        for tag, want in (("a", 3), ("b", 3), ("c", 0)):
            assert store.sql("SELECT count(*) FROM events WHERE tag = ?", [tag]).scalar() == want
        assert store.sql("SELECT count(*) FROM events WHERE tag IS NULL").scalar() == 3


def test_quiet_partitions_still_show_new_and_compacted_files(tmp_path: Path) -> None:
    """Old partitions' listings (and the statistics kept with them) are reused; a file
    published into one later, or a compaction of it, is seen by the next query."""
    root = tmp_path / "store"
    rows = datagen.without(datagen.generate(5, n_sessions=12)["proc_samples"], "host_id")
    half = len(rows) // 2
    with telelake.open(root, schema="process_triage", host_id=TEST_HOST_ID) as store:
        store.write("proc_samples", rows[:half])
    when = time.time() - 3600
    for dirpath, _, _ in os.walk(root / "proc_samples"):
        os.utime(dirpath, (when, when))

    def count(store: Store, sid: str) -> int:
        sql = "SELECT count(*) FROM proc_samples WHERE session_id = ?"
        return int(store.sql(sql, [sid]).scalar())

    sids = sorted({r["session_id"] for r in rows})
    with telelake.open(root, schema="process_triage", host_id=TEST_HOST_ID) as store:
        for sid in sids:  # listings and statistics remembered now
            assert count(store, sid) == sum(r["session_id"] == sid for r in rows[:half])
        durability = Durability(fsync="off", direct_rows=1)
        writer = Store(
            root, load_schema("process_triage"), host_id=TEST_HOST_ID, durability=durability
        )
        try:
            for row in rows[half:]:  # each a file of its own, in the old partitions too
                writer.write("proc_samples", [row])
        finally:
            writer.close()
        for sid in sids:
            assert count(store, sid) == sum(r["session_id"] == sid for r in rows)
        store.compact("proc_samples")
        for sid in sids:
            assert count(store, sid) == sum(r["session_id"] == sid for r in rows)
