"""The logical type table: every type maps to every engine, and the mappings really work.

The property tests write values of each logical type to a real Parquet file with the
mapped Arrow type, read it back with DuckDB and check DuckDB's column type and values;
simple types also go through a real (STRICT) SQLite table.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telelake.schema import types
from telelake.schema.types import ALIASES, TYPES, LogicalType

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
PROPERTY_SETTINGS = settings(max_examples=30, deadline=None)

INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
}

# Fixed UTC offsets (minute precision), so every generated datetime is unambiguous.
OFFSETS = st.builds(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes)),
    st.integers(min_value=-14 * 60, max_value=14 * 60),
)

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)

STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "string": st.text(max_size=20),
    "bool": st.booleans(),
    **{name: st.integers(lo, hi) for name, (lo, hi) in INT_RANGES.items()},
    "float32": st.floats(width=32, allow_nan=False),
    "float64": st.floats(allow_nan=False),
    "timestamp": st.datetimes(
        min_value=dt.datetime(1900, 1, 1),
        max_value=dt.datetime(2200, 12, 31, 23, 59, 59, 999999),
        timezones=OFFSETS,
    ),
    "date": st.dates(),
    "json": st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=5),
    "list<string>": st.lists(st.text(max_size=10), max_size=5),
    "binary": st.binary(max_size=20),
}

SQLITE_SIMPLE = (
    "string",
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "float32",
    "float64",
    "binary",
)


# -- the table itself -----------------------------------------------------------------------


def test_every_type_has_a_strategy() -> None:
    # A new logical type must come with a round-trip property here.
    assert set(STRATEGIES) == set(TYPES)


@pytest.mark.parametrize("name", list(TYPES))
def test_every_type_has_all_four_mappings(name: str) -> None:
    t = TYPES[name]
    assert isinstance(t, LogicalType)
    assert t.name == name
    assert isinstance(t.arrow, pa.DataType)
    for spelling in (t.duckdb, t.sqlite, t.postgres):
        assert isinstance(spelling, str) and spelling.strip() == spelling and spelling
    # DuckDB must understand its spelling.
    duckdb.sqltype(t.duckdb)
    # SQLite spellings are the STRICT-table storage classes, so affinity is exact.
    assert t.sqlite in ("INTEGER", "REAL", "TEXT", "BLOB")


def test_integer_family() -> None:
    assert {n for n, t in TYPES.items() if types.is_integer(t)} == set(INT_RANGES)
    for name, (lo, hi) in INT_RANGES.items():
        bits = TYPES[name].arrow.bit_width
        assert (lo, hi) == (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


def test_aliases_point_at_types() -> None:
    assert set(ALIASES.values()) <= set(TYPES)
    assert not set(ALIASES) & set(TYPES)
    for alias in ALIASES:
        assert alias == alias.lower()


SPELLINGS = sorted({*TYPES, *ALIASES})


@given(name=st.sampled_from(SPELLINGS), flips=st.lists(st.booleans(), min_size=20, max_size=20))
def test_resolve_is_case_insensitive(name: str, flips: list[bool]) -> None:
    spelled = "".join(c.upper() if f else c.lower() for c, f in zip(name, flips, strict=False))
    expected = TYPES[ALIASES.get(name, name)]
    assert types.resolve(spelled) is expected
    assert types.resolve(f"  {spelled} ") is expected


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("STRING", "string"),
        ("INT32", "int32"),
        ("INT16", "int16"),
        ("INT8", "int8"),
        ("INT64", "int64"),
        ("FLOAT", "float32"),
        ("DOUBLE", "float64"),
        ("BOOLEAN", "bool"),
        ("TIMESTAMP_MICROS", "timestamp"),
        ("TimestampTZ", "timestamp"),
        ("LIST<STRING>", "list<string>"),
        ("list < string >", "list<string>"),
        ("List<Str>", "list<string>"),
        ("Blob", "binary"),
        ("JSON", "json"),
        ("Date", "date"),
    ],
)
def test_resolve_spec_spellings(spelling: str, expected: str) -> None:
    assert types.resolve(spelling) is TYPES[expected]


@pytest.mark.parametrize("spelling", ["", "int128", "uuid", "list<int>", "map", "float16"])
def test_resolve_unknown(spelling: str) -> None:
    assert types.resolve(spelling) is None


# -- Parquet -> DuckDB round trip -----------------------------------------------------------


def _micros(v: dt.datetime) -> int:
    return (v - EPOCH) // dt.timedelta(microseconds=1)


def _to_arrow_value(name: str, v: Any) -> Any:
    if v is None:
        return None
    if name == "json":
        return json.dumps(v, allow_nan=False, separators=(",", ":"))
    return v


@pytest.fixture(scope="module")
def duck() -> Iterator[duckdb.DuckDBPyConnection]:
    # One connection for the module: connecting costs more than a whole round trip.
    con = duckdb.connect()
    yield con
    con.close()


def _duckdb_roundtrip(con: duckdb.DuckDBPyConnection, t: LogicalType, values: list[Any]) -> None:
    arr = pa.array([_to_arrow_value(t.name, v) for v in values], type=t.arrow)
    assert arr.type == t.arrow
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "values.parquet"
        pq.write_table(pa.table({"c": arr}), path)
        rel = con.sql(f"SELECT c FROM read_parquet('{path}')")
        actual_type = rel.types[0]
        if t.name == "json":
            # Documented exception: Parquet carries JSON as plain text, so DuckDB reads
            # VARCHAR; the JSON spelling applies where telelake declares the column.
            assert t.duckdb == "JSON"
            assert actual_type == duckdb.sqltype("VARCHAR")
        else:
            assert actual_type == duckdb.sqltype(t.duckdb), (actual_type, t.duckdb)

        if t.name == "timestamp":
            # Instants as UTC microseconds (DuckDB's own conversion, no Python tz needed).
            got = [r[0] for r in con.sql(f"SELECT epoch_us(c) FROM '{path}'").fetchall()]
            assert got == [None if v is None else _micros(v) for v in values]
            # And as Python datetimes through Arrow: aware, same instants.
            table = con.sql(f"SELECT c FROM '{path}'").arrow().read_all()
            back = table.column("c").to_pylist()
            assert back == values  # aware datetimes compare as instants
            assert all(b is None or b.utcoffset() == dt.timedelta(0) for b in back)
            return

        got = [r[0] for r in rel.fetchall()]
        if t.name == "json":
            assert got == [_to_arrow_value("json", v) for v in values]
            assert [None if g is None else json.loads(g) for g in got] == values
            valid = con.sql(f"SELECT json_valid(c) FROM '{path}'").fetchall()
            assert all(r[0] in (True, None) for r in valid)
        elif t.name == "binary":
            assert [None if g is None else bytes(g) for g in got] == values
        else:
            assert got == values


def _values(name: str) -> st.SearchStrategy[list[Any]]:
    return st.lists(st.none() | STRATEGIES[name], max_size=8)


@pytest.mark.parametrize("name", list(TYPES))
@PROPERTY_SETTINGS
@given(data=st.data())
def test_parquet_duckdb_roundtrip(
    duck: duckdb.DuckDBPyConnection, name: str, data: st.DataObject
) -> None:
    values = data.draw(_values(name), label="values")
    _duckdb_roundtrip(duck, TYPES[name], values)


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("int8", [-128, 127, None, 0]),
        ("int64", [-(2**63), 2**63 - 1]),
        ("float32", [3.4028234663852886e38, -0.0, float("inf"), 1.401298464324817e-45]),
        ("string", ["", "a\x00b", "日本語", "😀"]),
        ("timestamp", [dt.datetime(1900, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=14)))]),
        ("timestamp", [dt.datetime(2200, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)]),
        ("date", [dt.date(1, 1, 1), dt.date(9999, 12, 31)]),
        ("list<string>", [[], [""], ["a", "b"]]),
        ("json", [{}, {"a": [1, 2.5, None, True, {"b": "c"}]}]),
        ("binary", [b"", b"\x00\xff"]),
    ],
)
def test_parquet_duckdb_edges(
    duck: duckdb.DuckDBPyConnection, name: str, values: list[Any]
) -> None:
    _duckdb_roundtrip(duck, TYPES[name], values)


# -- SQLite round trip (simple types) -------------------------------------------------------


def _sqlite_roundtrip(t: LogicalType, values: list[Any]) -> None:
    con = sqlite3.connect(":memory:")
    try:
        # STRICT makes SQLite enforce the declared type instead of converting silently.
        con.execute(f"CREATE TABLE t (i INTEGER PRIMARY KEY, c {t.sqlite}) STRICT")
        con.executemany("INSERT INTO t (i, c) VALUES (?, ?)", list(enumerate(values)))
        got = [r[0] for r in con.execute("SELECT c FROM t ORDER BY i")]
        types_seen = {r[0] for r in con.execute("SELECT typeof(c) FROM t WHERE c IS NOT NULL")}
    finally:
        con.close()
    if t.name == "bool":
        assert got == [None if v is None else int(v) for v in values]
    else:
        assert got == values
    storage = {"INTEGER": "integer", "REAL": "real", "TEXT": "text", "BLOB": "blob"}[t.sqlite]
    assert types_seen <= {storage}


@pytest.mark.parametrize("name", SQLITE_SIMPLE)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_sqlite_roundtrip(name: str, data: st.DataObject) -> None:
    values = data.draw(_values(name), label="values")
    _sqlite_roundtrip(TYPES[name], values)


def test_sqlite_strict_refuses_wrong_type() -> None:
    # The mapping is meaningful: a STRICT INTEGER column refuses text.
    con = sqlite3.connect(":memory:")
    con.execute(f"CREATE TABLE t (c {TYPES['int32'].sqlite}) STRICT")
    with pytest.raises(sqlite3.IntegrityError):
        con.execute("INSERT INTO t VALUES ('x')")
    con.close()


def test_the_timestamp_range_fits_every_tier_and_every_output_form() -> None:
    # docs/concepts.md: 1678-01-01 .. 2261-12-31 UTC, whole years.
    low = dt.datetime(1678, 1, 1, tzinfo=dt.UTC)
    high = dt.datetime(2261, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC)
    assert (low, high) == (types.TIMESTAMP_MIN, types.TIMESTAMP_MAX)
    import pandas as pd

    # pandas datetime64[ns] holds both edges (and so does any wider form).
    ns = pd.Series(pa.array([low, high], TYPES["timestamp"].arrow).to_pandas())
    assert ns.astype("datetime64[ns, UTC]").tolist() == [pd.Timestamp(low), pd.Timestamp(high)]
    # A Python datetime holds a day on either side: any offset, any partition's end.
    assert dt.datetime.min.replace(tzinfo=dt.UTC) < low - dt.timedelta(days=1)
    assert high + dt.timedelta(days=1) < dt.datetime.max.replace(tzinfo=dt.UTC)
    # Parquet (timestamp[us, UTC]) and DuckDB's TIMESTAMPTZ read both edges back.
    arr = pa.array([low, high], TYPES["timestamp"].arrow)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    with tempfile.TemporaryDirectory() as tmp:
        pq.write_table(pa.table({"t": arr}), f"{tmp}/t.parquet")
        assert pq.read_table(f"{tmp}/t.parquet").column("t").to_pylist() == [low, high]
        got = con.execute(f"SELECT t FROM '{tmp}/t.parquet' ORDER BY t").fetchall()
    assert [r[0] for r in got] == [low, high]
    con.close()
