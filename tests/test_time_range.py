"""The instants a timestamp column accepts (issue 19): 1678-01-01 to 2261-12-31 UTC.

Values outside the range, in any input form, are a ValidationError naming the row;
rows at both edges round-trip through every tier, a fold, time-filtered queries,
retention and the CLI. The range is spelt here from docs/concepts.md, not imported.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
from hypothesis import example, given, settings
from hypothesis import strategies as st

import telelake
from telelake.errors import ValidationError
from telelake.schema.model import Column, Table
from telelake.schema.types import TYPES
from telelake.validate import plain_rows, to_arrow, value_problem

LOW = dt.datetime(1678, 1, 1, tzinfo=dt.UTC)
HIGH = dt.datetime(2261, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
PER_MICRO = {"s": 1_000_000, "ms": 1_000, "us": 1}


def micros(when: dt.datetime) -> int:
    return (when - EPOCH) // dt.timedelta(microseconds=1)


def table(unit: str = "us") -> Table:
    ts = Column("ts", TYPES["timestamp"], nullable=False, epoch_unit=unit)
    return Table("ev", (ts, Column("n", TYPES["int64"])), time="ts")


def refused(data: Any, unit: str = "us") -> ValidationError | None:
    try:
        to_arrow(table(unit), data, store="s")
    except ValidationError as exc:
        return exc
    return None


# Instants near both edges, and anywhere a datetime can be.
EDGE = st.sampled_from([LOW, HIGH]).flatmap(
    lambda edge: st.integers(-3_000_000, 3_000_000).map(
        lambda d: edge + dt.timedelta(microseconds=d)
    )
)
ANY_TIME = st.datetimes(timezones=st.just(dt.UTC)) | EDGE


@settings(max_examples=150, deadline=None)
@given(when=ANY_TIME, row=st.integers(0, 3))
@example(when=dt.datetime(9999, 12, 31, tzinfo=dt.UTC), row=0)
@example(when=dt.datetime(1, 1, 1, tzinfo=dt.UTC), row=1)
def test_every_input_form_accepts_exactly_the_range(when: dt.datetime, row: int) -> None:
    ok = LOW <= when <= HIGH
    others = [{"ts": LOW + dt.timedelta(days=i), "n": i} for i in range(3)]
    values: dict[str, Any] = {"datetime": when, "iso": when.isoformat(), "epoch us": micros(when)}
    if when.year > 1:  # the same instant in another zone (not before year 1)
        values["other zone"] = when.astimezone(dt.timezone(dt.timedelta(hours=-5)))
    forms: dict[str, Any] = {}
    for name, value in values.items():
        rows: list[dict[str, Any]] = [dict(r) for r in others]
        rows.insert(row, {"ts": value, "n": 9})
        forms[name] = rows
        forms[name + " columns"] = {"ts": [r["ts"] for r in rows], "n": [r["n"] for r in rows]}
    arrow_ts = pa.array([r["ts"] for r in forms["datetime"]], pa.timestamp("us", tz="UTC"))
    forms["arrow us"] = pa.table({"ts": arrow_ts})
    if ok:  # nanoseconds since the epoch hold the accepted range (not years 1 or 9999)
        forms["arrow ns"] = pa.table({"ts": arrow_ts.cast(pa.timestamp("ns", tz="UTC"))})
        forms["dataframe"] = pd.DataFrame({"ts": arrow_ts.to_pandas()})
    for name, data in forms.items():
        error = refused(data)
        if ok:
            assert error is None, (name, error)
        else:
            assert error is not None, name
            assert (error.column, error.row) == ("ts", row), (name, str(error))
            assert "1678-01-01" in str(error) and "2261-12-31" in str(error)
    # The per-value definition and the log tier's validator say the same.
    problem = value_problem(table().column("ts"), when)
    assert (problem is None) == ok
    try:
        plain_rows(table(), forms["datetime"], store="s")
        assert ok
    except ValidationError as exc:
        assert not ok and exc.row == row


@settings(max_examples=200, deadline=None)
@given(
    unit=st.sampled_from(["s", "ms", "us", "ns"]),
    n=st.integers(-(2**70), 2**70) | st.integers(-(10**19), 10**19),
)
def test_epoch_numbers_and_arrow_units_accept_exactly_the_range(unit: str, n: int) -> None:
    # A number of `unit` since the epoch is this many µs (nanoseconds: floored).
    us = n // 1000 if unit == "ns" else n * PER_MICRO[unit]
    ok = micros(LOW) <= us <= micros(HIGH)
    error = refused([{"ts": n}], unit)
    assert (error is None) == ok, (unit, n, error)
    if -(2**63) <= n < 2**63:  # what an Arrow timestamp array of that unit can hold
        exact = ok and (unit != "ns" or n % 1000 == 0)  # Arrow's ns: no fraction of a µs
        arrow = pa.table({"ts": pa.array([n], pa.timestamp(unit, tz="UTC"))})
        error = refused(arrow)
        assert (error is None) == exact, (unit, n, error)
        if error is not None:
            assert (error.column, error.row) == ("ts", 0)


def test_pandas_nanoseconds_are_refused_not_truncated() -> None:
    stamps = pd.Series(
        pd.to_datetime(["2026-01-01T00:00:00.000001Z", "2026-01-01T00:00:00.000001500Z"])
    )
    error = refused(pd.DataFrame({"ts": stamps}))
    assert error is not None and error.row == 1
    assert "fraction of a microsecond" in str(error)
    error = refused(pa.table({"ts": pa.Array.from_pandas(stamps)}))
    assert error is not None and error.row == 1
    # Whole microseconds in nanosecond form are fine.
    out = to_arrow(table(), pd.DataFrame({"ts": stamps.dt.floor("us")}))
    assert out.column("ts").to_pylist()[1] == dt.datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=dt.UTC)


SCHEMA = """
name = "edges"
version = "1.0.0"

[tables.ev]
time = "ts"
retention_days = 1
columns = [
  { name = "ts", type = "timestamp", nullable = false },
  { name = "n", type = "int64" },
]

[tables.kv]
tier = "sql"
time = "ts"
retention_days = 1
columns = [
  { name = "ts", type = "timestamp", nullable = false },
  { name = "n", type = "int64" },
]
"""


def test_rows_at_both_edges_round_trip_through_every_step(tmp_path: Path) -> None:
    schema = tmp_path / "edges.toml"
    schema.write_text(SCHEMA)
    root = tmp_path / "store"
    rows = [{"ts": LOW, "n": 1}, {"ts": HIGH, "n": 2}]
    queries = {
        "SELECT n FROM {t} ORDER BY n": [1, 2],
        "SELECT n FROM {t} WHERE ts >= TIMESTAMPTZ '2261-12-31 23:59:59.999999+00'": [2],
        "SELECT n FROM {t} WHERE ts <= TIMESTAMPTZ '1678-01-01 00:00:00+00'": [1],
        "SELECT n FROM {t} WHERE ts > TIMESTAMPTZ '9999-12-31 00:00:00+00'": [],
        "SELECT n FROM {t} WHERE ts < TIMESTAMPTZ '0001-01-02 00:00:00+00'": [],
        "SELECT n FROM {t} WHERE ts BETWEEN TIMESTAMPTZ '1000-01-01 00:00+00' AND "
        "TIMESTAMPTZ '9999-01-01 00:00+00' ORDER BY n": [1, 2],
    }
    with telelake.open(root, schema=str(schema)) as store:
        for t in ("ev", "kv"):
            store.write(t, rows)
        store.fold()
        assert store.sql("SELECT ts FROM ev ORDER BY ts").rows() == [(LOW,), (HIGH,)]
        for text, expected in queries.items():
            assert [r[0] for r in store.sql(text.format(t="ev")).rows()] == expected, text
        # The sql tier keeps epoch microseconds (SQLite INTEGER).
        kv = store.sql("SELECT ts, n FROM kv ORDER BY n", engine="sqlite").rows()
        assert kv == [(micros(LOW), 1), (micros(HIGH), 2)]
        at_high = f"SELECT n FROM kv WHERE ts >= {micros(HIGH)}"
        assert store.sql(at_high, engine="sqlite").rows() == [(2,)]
    # The CLI prints both edges, and its retention removes the old edge only.
    out = cli(root, "sql", "SELECT ts, n FROM ev ORDER BY n", "-f", "json")
    assert json.loads(out) == [
        {"ts": "1678-01-01T00:00:00Z", "n": 1},
        {"ts": "2261-12-31T23:59:59.999999Z", "n": 2},
    ]
    cli(root, "retention", "-q")
    with telelake.open(root, schema=str(schema)) as store:
        assert store.sql("SELECT n FROM ev").rows() == [(2,)]
        assert store.sql("SELECT n FROM kv", engine="sqlite").rows() == [(2,)]


def cli(root: Path, *args: str, stdin: str | None = None) -> str:
    telelake_cmd = str(Path(sys.executable).parent / "telelake")
    env = {**os.environ, "TELELAKE_ROOT": str(root)}
    done = subprocess.run(
        [telelake_cmd, *args], input=stdin, capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_cli_writes_the_edges_and_refuses_beyond_them(tmp_path: Path) -> None:
    root = tmp_path / "store"
    row = {
        "session_id": "s",
        "event_type": "scan_start",
        "severity": "info",
        "actor": "user",
        "message": "m",
        "host_id": "h",
    }
    rows = [
        {**row, "audit_ts": "1678-01-01T00:00:00Z"},
        {**row, "audit_ts": "2261-12-31T23:59:59.999999Z"},
    ]
    text = "\n".join(json.dumps(r) for r in rows)
    assert "wrote 2 rows" in cli(root, "write", "audit", "-", stdin=text)
    beyond = text + "\n" + json.dumps({**rows[0], "audit_ts": "9999-12-31T00:00:00Z"})
    telelake_cmd = str(Path(sys.executable).parent / "telelake")
    env = {**os.environ, "TELELAKE_ROOT": str(root)}
    done = subprocess.run(
        [telelake_cmd, "write", "audit", "-"], input=beyond, capture_output=True, text=True, env=env
    )
    assert done.returncode != 0
    assert "row 2" in done.stderr and "outside the accepted range" in done.stderr
    assert "Traceback" not in done.stderr
    out = cli(root, "sql", "SELECT audit_ts FROM audit ORDER BY 1", "-f", "json")
    assert [r["audit_ts"] for r in json.loads(out)] == [
        "1678-01-01T00:00:00Z",
        "2261-12-31T23:59:59.999999Z",
    ]


def test_a_partition_of_year_9999_left_by_an_older_version_breaks_no_query(
    tmp_path: Path,
) -> None:
    # Before the range was enforced, a row dated 9999-12-31 was folded into
    # ev/year=9999/month=12/day=31: every time-filtered query and retention then failed
    # computing when that partition ends.
    schema = tmp_path / "edges.toml"
    schema.write_text(SCHEMA)
    root = tmp_path / "store"
    with telelake.open(root, schema=str(schema)) as store:
        store.write("ev", [{"ts": HIGH, "n": 2}, {"ts": dt.datetime.now(dt.UTC), "n": 3}])
        store.fold()
    (root / "ev" / "year=2261").rename(root / "ev" / "year=9999")
    with telelake.open(root, schema=str(schema)) as store:
        after_2000 = "SELECT n FROM ev WHERE ts > TIMESTAMPTZ '2000-01-01 00:00:00+00' ORDER BY n"
        assert store.sql(after_2000).rows() == [(2,), (3,)]
        store.enforce_retention()
        assert store.sql(after_2000).rows() == [(2,), (3,)]
