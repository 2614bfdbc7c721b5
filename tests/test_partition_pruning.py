"""Partition pruning: a query that bounds time or a partition key reads only the partitions
it can need, and always returns exactly what DuckDB would over every row.

The oracle is plain Python over the rows written. To show that pruning happens (what a
user notices: a 1-day query costs the same over 90 days, and an old damaged file does not
break it), a file outside the window is truncated in place: the pruned query still
answers, the same query without a usable bound fails.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import zoneinfo
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import datagen
import telelake
from conftest import TEST_HOST_ID
from telelake.lake import layout, prune
from telelake.planner import Planner
from telelake.schema.load import builtin_path, load_schema

UTC = dt.UTC
HOSTS = datagen.DEFAULT_HOSTS
START = datagen.DEFAULT_START
TIMES = {"proc_samples": "sample_ts", "runs": "started_at"}
PARTS = {
    "proc_samples": ("year", "month", "day", "host_id"),
    "runs": ("year", "month", "day", "host_id"),
}


# -- the pure part: partitions against bounds ---------------------------------------------


def micros(when: dt.datetime) -> int:
    return int(when.timestamp()) * 1_000_000 + when.microsecond


instants = st.integers(0, 40 * 86_400 * 1_000_000).map(
    lambda us: START + dt.timedelta(microseconds=us)
)


@settings(max_examples=300, deadline=None)
@given(
    row=instants,
    lower=st.none() | instants,
    upper=st.none() | instants,
    host=st.sampled_from(HOSTS),
    allowed=st.none() | st.sets(st.sampled_from(HOSTS), min_size=1),
    hourly=st.booleans(),
)
def test_a_partition_holding_a_wanted_row_is_always_admitted(
    row: dt.datetime,
    lower: dt.datetime | None,
    upper: dt.datetime | None,
    host: str,
    allowed: set[str] | None,
    hourly: bool,
) -> None:
    levels = ("year", "month", "day", "hour") if hourly else ("year", "month", "day")
    widths = {"year": 4, "month": 2, "day": 2, "hour": 2}
    values = tuple((lvl, f"{getattr(row, lvl):0{widths[lvl]}d}") for lvl in levels)
    values += (("host_id", host),)
    bounds = prune.Bounds(
        None if lower is None else micros(lower),
        None if upper is None else micros(upper),
        {} if allowed is None else {"host_id": frozenset(allowed)},
    )
    wanted = (
        (lower is None or row >= lower)
        and (upper is None or row <= upper)
        and (allowed is None or host in allowed)
    )
    # Brute force: does any instant of the partition fall inside the bounds?
    start = layout.partition_start(values)
    end = layout.partition_end(values)
    assert start is not None and end is not None
    lo = start if lower is None else max(start, lower)
    last = end - dt.timedelta(microseconds=1)  # a partition is [start, end)
    hi = last if upper is None else min(last, upper)
    could = lo <= hi and (allowed is None or host in allowed)
    for n in range(len(values) + 1):  # every directory on the way down agrees
        if wanted or could:
            assert bounds.admits(values[:n])
    if not could:
        assert not bounds.admits(values)


# -- reading DuckDB's parse tree -----------------------------------------------------------


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect()
    yield c
    c.close()


def scan(
    con: duckdb.DuckDBPyConnection, sql: str, clocks: frozenset[str] = prune.CLOCK_NAMES
) -> prune.Scan:
    ast = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])
    functions = Planner(load_schema("process_triage"), con).functions()
    return prune.scan(ast, TIMES, PARTS, functions, clocks)


def described(found: prune.Scan) -> set[tuple[str, str, str, bool]]:
    return {(t.table, t.column, t.op, t.clocked) for t in found.terms}


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM recent_sessions(3) WHERE started_at > '2026-01-01'",  # a table macro
        "SELECT * FROM query_table('proc_samples') WHERE sample_ts > '2026-01-01'",
        "SELECT * FROM read_parquet('x.parquet')",
        "SELECT * FROM some_view WHERE sample_ts > '2026-01-01'",  # unknown: maybe a view
        "SELECT session_summary('x') FROM proc_samples WHERE sample_ts > '2026-01-01'",
        "WITH proc_samples AS (SELECT 1) SELECT * FROM proc_samples",  # a CTE shadows it
        "SELECT 1; SELECT 2",
        "CREATE VIEW v AS SELECT * FROM proc_samples",
        "SELECT * FROM other.proc_samples WHERE sample_ts > '2026-01-01'",
        "this is not SQL",
    ],
)
def test_queries_it_cannot_see_through_are_opaque(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    assert scan(con, sql).tables is None


def test_bounds_come_only_from_the_top_level_where_of_a_single_read(
    con: duckdb.DuckDBPyConnection,
) -> None:
    found = scan(
        con,
        "SELECT count(*) FROM proc_samples p WHERE p.sample_ts >= '2026-01-02' "
        "AND '2026-01-03'::TIMESTAMPTZ > sample_ts AND host_id IN ('a', 'b') "
        "AND (sample_ts < '2000-01-01' OR cpu_percent > 1) AND year = 2026",
    )
    assert found.tables == {"proc_samples"}
    assert described(found) == {
        ("proc_samples", "sample_ts", ">=", False),
        ("proc_samples", "sample_ts", "<", False),  # flipped: the column was on the right
        ("proc_samples", "host_id", "in", False),
        ("proc_samples", "year", "=", False),
    }
    between = scan(con, "SELECT * FROM runs WHERE started_at BETWEEN $a AND $b")
    assert described(between) == {
        ("runs", "started_at", ">=", False),
        ("runs", "started_at", "<=", False),
    }
    clocked = scan(con, "SELECT * FROM runs WHERE started_at > now() - INTERVAL 1 DAY")
    assert described(clocked) == {("runs", "started_at", ">", True)}
    today = "SELECT * FROM runs WHERE started_at >= current_date - 1"
    assert described(scan(con, today)) == {("runs", "started_at", ">=", True)}
    # A table with a column called current_date: the name is that column, not the clock.
    assert not scan(con, today, prune.CLOCK_NAMES - {"current_date"}).terms
    hosts = ", ".join(f"'h{i}'" for i in range(prune.MAX_IN_VALUES + 1))
    assert not scan(con, f"SELECT * FROM runs WHERE host_id IN ({hosts})").terms
    # Read twice (a self join, a union), inside a join, or bounded by a column, a
    # subquery or a volatile function: the table is read, but not pruned.
    for sql in (
        "SELECT * FROM runs a JOIN runs b USING (session_id) WHERE a.started_at > '2026-01-01'",
        "SELECT * FROM runs WHERE started_at > '2026-01-01' UNION ALL SELECT * FROM runs",
        "SELECT * FROM runs JOIN proc_samples USING (session_id) WHERE sample_ts > '2026-01-01'",
        "SELECT * FROM runs WHERE started_at > ended_at",
        "SELECT * FROM runs WHERE started_at > (SELECT max(sample_ts) FROM proc_samples)",
        "SELECT * FROM runs WHERE started_at > now() - random() * INTERVAL 1 DAY",
        "SELECT * FROM runs WHERE NOT started_at > '2026-01-01'",
        "SELECT * FROM runs r WHERE other.started_at > '2026-01-01'",
        "SELECT * FROM runs r(host_id, started_at) WHERE started_at = 'h1'",  # renamed
        "SELECT * FROM runs WHERE started_at > '2026-01-01' USING SAMPLE 10% (bernoulli, 7)",
        "SELECT * FROM runs TABLESAMPLE 5 ROWS WHERE started_at > '2026-01-01'",
    ):
        found = scan(con, sql)
        assert found.tables is not None and "runs" in found.tables, sql
        assert not [t for t in found.terms if t.table == "runs"], sql


# -- end to end, against brute force --------------------------------------------------------


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    root = tmp_path_factory.mktemp("pruning") / "store"
    rows = datagen.generate(7, n_sessions=30, days=12)["proc_samples"]
    with telelake.open(root, schema="process_triage", host_id=TEST_HOST_ID) as store:
        store.write("proc_samples", rows)
    return root, rows


def day(n: int) -> dt.datetime:
    return START + dt.timedelta(days=n)


NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
# (SQL WHERE clause, params, which rows it keeps): the oracle is the lambda.
CASES: list[tuple[str, Any, Callable[[dict[str, Any]], bool]]] = [
    (
        "sample_ts >= TIMESTAMPTZ '2025-12-30 00:00:00+00' AND sample_ts < '2025-12-31'",
        None,
        lambda r: day(3) <= r["sample_ts"] < day(4),
    ),
    (
        "sample_ts BETWEEN $lo AND $hi AND host_id = $host",
        {"lo": day(2) + dt.timedelta(hours=5), "hi": day(5), "host": HOSTS[1]},
        lambda r: (
            day(2) + dt.timedelta(hours=5) <= r["sample_ts"] <= day(5) and r["host_id"] == HOSTS[1]
        ),
    ),
    (
        "sample_ts > ? AND host_id IN (?, ?)",
        [day(9).isoformat(), HOSTS[0], HOSTS[2]],
        lambda r: r["sample_ts"] > day(9) and r["host_id"] in (HOSTS[0], HOSTS[2]),
    ),
    (  # a DATE and date arithmetic
        "sample_ts >= DATE '2026-01-01' AND sample_ts <= DATE '2026-01-01' + INTERVAL 36 HOUR",
        None,
        lambda r: day(5) <= r["sample_ts"] <= day(6) + dt.timedelta(hours=12),
    ),
    (  # a naive TIMESTAMP: read in the session's time zone (UTC)
        "sample_ts < TIMESTAMP '2025-12-28 06:00' AND year = 2025 AND day IN (27, 28)",
        None,
        lambda r: r["sample_ts"] < day(1) + dt.timedelta(hours=6),
    ),
    (  # a conjunct that is no term, and a bound that is NULL: nothing to prune by
        "sample_ts > '2026-01-03' AND (sample_ts < TRY_CAST('x' AS TIMESTAMPTZ)) IS NULL",
        None,
        lambda r: r["sample_ts"] > day(7),
    ),
    ("sample_ts > TRY_CAST('x' AS TIMESTAMPTZ)", None, lambda r: False),
    ("sample_ts > now() - INTERVAL 20000 DAY", None, lambda r: True),
    ("sample_ts > now()", None, lambda r: False),
    ("sample_ts = ?", [day(4)], lambda r: r["sample_ts"] == day(4)),
    ("host_id = 'nobody'", None, lambda r: False),
]


def oracle(rows: list[dict[str, Any]], keep: Callable[[dict[str, Any]], bool]) -> tuple[int, int]:
    kept = [r for r in rows if keep(r)]
    return len(kept), sum(r["sample_seq"] for r in kept)


@pytest.mark.parametrize("where,params,keep", CASES)
def test_pruned_queries_return_what_brute_force_says(
    filled: tuple[Path, list[dict[str, Any]]],
    where: str,
    params: Any,
    keep: Callable[[dict[str, Any]], bool],
) -> None:
    root, rows = filled
    sql = f"SELECT count(*), coalesce(sum(sample_seq), 0) FROM proc_samples WHERE {where}"
    with telelake.open(root, schema="process_triage", host_id=TEST_HOST_ID) as store:
        for _ in range(2):  # the second run uses the cached parse
            assert tuple(store.sql(sql, params).rows()[0]) == oracle(rows, keep)


def test_time_zone_of_the_session_is_the_one_the_bounds_use(
    filled: tuple[Path, list[dict[str, Any]]],
) -> None:
    root, rows = filled
    with telelake.open(root, schema="process_triage", host_id=TEST_HOST_ID) as store:
        store.sql("SET TimeZone = 'America/New_York'", allow_external=True)
        local = dt.datetime(2026, 1, 2, 21, 0, tzinfo=NEW_YORK)  # 02:00Z on the 3rd
        got = store.sql(
            "SELECT count(*), coalesce(sum(sample_seq), 0) FROM proc_samples "
            "WHERE sample_ts >= TIMESTAMP '2026-01-02 21:00' AND sample_ts < ?",
            [local + dt.timedelta(hours=10)],
            allow_external=True,  # the session whose TimeZone was SET
        ).rows()[0]
    assert tuple(got) == oracle(
        rows, lambda r: local <= r["sample_ts"] < local + dt.timedelta(hours=10)
    )


def test_a_query_of_one_day_never_opens_the_files_of_other_days(
    filled: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    src, rows = filled
    root = tmp_path / "copy"
    shutil.copytree(src, root)
    old = sorted((root / "proc_samples").glob("year=2025/month=12/day=27/*/*.parquet"))
    assert old
    with telelake.open(root, schema="process_triage", host_id=TEST_HOST_ID) as store:
        window = "sample_ts >= '2026-01-05' AND sample_ts < '2026-01-06'"
        sql = f"SELECT count(*), coalesce(sum(sample_seq), 0) FROM proc_samples WHERE {window}"
        expected = oracle(rows, lambda r: day(9) <= r["sample_ts"] < day(10))
        assert store.sql("SELECT count(*) FROM proc_samples").scalar() == len(rows)
        assert tuple(store.sql(sql).rows()[0]) == expected
        for path in old:  # damage them in place: same inode, so no re-check skips them
            with path.open("r+b") as f:
                f.truncate(20)
        assert tuple(store.sql(sql).rows()[0]) == expected
        with pytest.raises(telelake.QueryError):
            store.sql("SELECT count(*) FROM proc_samples WHERE cpu_percent >= 0")


def test_a_pruned_view_never_leaks_into_a_query_through_a_macro(
    store_root: Path,
) -> None:
    data = datagen.generate(3, n_sessions=12)
    with telelake.open(store_root, schema="process_triage", host_id=TEST_HOST_ID) as store:
        store.write("runs", data["runs"])  # folded into Parquet files on close
    with telelake.open(store_root, schema="process_triage", host_id=TEST_HOST_ID) as store:
        recent = store.sql("SELECT count(*) FROM runs WHERE started_at >= '2026-01-06'")
        assert recent.scalar() == sum(r["started_at"] >= day(10) for r in data["runs"])
        every = store.sql("SELECT count(*) FROM recent_sessions(1000)").scalar()
        assert every == len(data["runs"])


def test_a_scalar_macro_reading_a_table_never_sees_a_pruned_view(
    store_root: Path, tmp_path: Path
) -> None:
    """A function the query calls that is not a built-in may read any table: the
    planner must see every macro, the schema's from the start and the user's once a
    statement may have made one (DuckDB's catalog is read only then)."""
    data = datagen.generate(3, n_sessions=12)
    with telelake.open(store_root, schema="process_triage", host_id=TEST_HOST_ID) as store:
        store.write("runs", data["runs"])
    recent = "SELECT count(*) FROM runs WHERE started_at >= '2026-01-06'"
    n_recent = sum(r["started_at"] >= day(10) for r in data["runs"])
    with telelake.open(store_root, schema="process_triage", host_id=TEST_HOST_ID) as store:
        # The runs view, pruned to the window; the user's CREATE needs DuckDB in full.
        assert store.sql(recent, allow_external=True).scalar() == n_recent
        store.sql("CREATE MACRO all_runs() AS (SELECT count(*) FROM runs)", allow_external=True)
        got = store.sql(
            "SELECT all_runs() FROM runs WHERE started_at >= '2026-01-06' LIMIT 1",
            allow_external=True,
        )
        assert got.scalar() == len(data["runs"])

    builtin = builtin_path("process_triage").parent
    text = (builtin / "schema.toml").read_text()
    text += '\n[macros.all_runs]\nsql = "CREATE MACRO all_runs() AS (SELECT count(*) FROM runs)"\n'
    own = tmp_path / "own.toml"
    own.write_text(text)
    for name in ("macros", "queries"):
        shutil.copytree(builtin / name, tmp_path / name)
    copy = tmp_path / "copy"
    shutil.copytree(store_root, copy)
    with telelake.open(copy, schema=own, host_id=TEST_HOST_ID) as store:
        assert store.sql(recent).scalar() == n_recent
        got = store.sql("SELECT all_runs() FROM runs WHERE started_at >= '2026-01-06' LIMIT 1")
        assert got.scalar() == len(data["runs"])


def test_live_rows_lose_to_a_parquet_row_of_another_day_with_their_key(
    store_root: Path,
) -> None:
    """First write wins: a live row whose key a Parquet file of another day holds stays
    hidden, even when the query's window prunes that day away.

    Two writers take the same key at once (each checks the files published so far);
    the first folds its row into a Parquet file, the second still holds its row live.
    """
    row = datagen.without(datagen.generate(5)["proc_samples"][:1], "host_id")[0]
    first = {**row, "sample_ts": day(1)}
    second = {**row, "sample_ts": day(6), "cpu_percent": 99.0}
    opened = telelake.open(store_root, schema="process_triage", host_id=TEST_HOST_ID)
    opened.write("proc_samples", [first])
    with telelake.open(store_root, schema="process_triage", host_id=TEST_HOST_ID) as store:
        store.write("proc_samples", [second])  # stays in this writer's WAL
        opened.close()  # folds the first row into a Parquet file
        assert list((store_root / "proc_samples").glob("year=2025/**/*.parquet"))
        assert store.sql("SELECT count(*) FROM proc_samples").scalar() == 1
        window = "sample_ts >= '2026-01-02' AND sample_ts < '2026-01-03'"
        assert store.sql(f"SELECT count(*) FROM proc_samples WHERE {window}").scalar() == 0
