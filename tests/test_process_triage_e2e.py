"""End to end over the process_triage schema: write all six tables, read every row back,
and check every named query and macro against a brute-force computation in plain Python.

The expected answers below never ask telelake: they are computed from the generated rows
with the SQL semantics spelled out by hand (inner joins, NULL in CASE WHEN going to ELSE,
ISO Monday weeks and days in UTC, float32 storage of FLOAT columns).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

import datagen
import redaction_oracle
import telelake
from conftest import TEST_HOST_ID
from datagen import HOST_PARTITIONED, SPEC_COLUMNS, TABLES, TIME_COLUMN, f32

SEED = 20260115
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
REL = 1e-6


def micros(value: Any) -> int:
    """A timestamp (aware datetime or ISO string with offset) as UTC microseconds."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert value.tzinfo is not None
    return (value - EPOCH) // dt.timedelta(microseconds=1)


def as_utc(value: Any) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=micros(value))


def norm(spec_type: str, value: Any) -> Any:
    """One value as comparable across the write and the read."""
    if value is None:
        return None
    if spec_type == "TIMESTAMP_MICROS":
        return micros(value)
    if spec_type == "FLOAT":
        return f32(value)
    if spec_type == "LIST<STRING>":
        return tuple(value)
    return value


def norm_row(table: str, row: Mapping[str, Any], *, with_host: bool = True) -> tuple[Any, ...]:
    values = [norm(t, row[name]) for name, t, _ in SPEC_COLUMNS[table]]
    if with_host and table not in ("runs", "audit"):
        values.append(row["host_id"])
    return tuple(values)


def monday_utc(value: Any) -> dt.datetime:
    """DATE_TRUNC('week', ts) with the session time zone UTC: Monday 00:00 UTC."""
    d = as_utc(value).date()
    monday = d - dt.timedelta(days=d.weekday())
    return dt.datetime(monday.year, monday.month, monday.day, tzinfo=dt.UTC)


def day_utc(value: Any) -> dt.datetime:
    d = as_utc(value).date()
    return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC)


# -- the store, written once for the module ---------------------------------------------


@pytest.fixture(scope="module")
def data() -> dict[str, list[dict[str, Any]]]:
    rows = datagen.generate(SEED)
    # The generator's promises this file relies on, so a datagen change cannot hollow
    # out the checks below.
    assert all(rows[t] for t in TABLES)
    assert len({r["host_id"] for r in rows["runs"]}) == 3
    assert len({as_utc(r["started_at"]).date() for r in rows["runs"]}) >= 5
    assert any(r["user_feedback"] is None for r in rows["outcomes"])
    assert any(r["action_successful"] is None for r in rows["outcomes"])
    assert {r["decision"] for r in rows["outcomes"]} == {"kill", "spare", "defer"}
    scores = [r["score"] for r in rows["proc_inference"]]
    assert min(scores) >= 0 and max(scores) <= 110 and any(s >= 100 for s in scores)
    outcome_sessions = {r["session_id"] for r in rows["outcomes"]}
    assert any(r["session_id"] not in outcome_sessions for r in rows["runs"])
    # Joins: some keys repeat (the join multiplies them), some outcomes match nothing.
    for table in ("proc_features", "proc_inference", "outcomes"):
        keys = Counter((r["session_id"], r["pid"]) for r in rows[table])
        assert any(n > 1 for n in keys.values()), table
    for table in ("proc_features", "proc_inference"):
        keys = {(r["session_id"], r["pid"]) for r in rows[table]}
        assert any((o["session_id"], o["pid"]) not in keys for o in rows["outcomes"]), table
    return rows


# Spec 000 §9.1: the columns process_triage redacts, and how.
SPEC_REDACTION = {
    "runs": {"hostname": "hash", "username": "hash"},
    "proc_samples": {"cmdline": "pattern", "exe": "normalize", "cwd": "truncate:3"},
}


@pytest.fixture(scope="module")
def stored(
    data: dict[str, list[dict[str, Any]]], lake: telelake.Store
) -> dict[str, list[dict[str, Any]]]:
    """The rows as the store must hold them: redacted by the oracle, with the store's key."""
    key = redaction_oracle.store_key(lake.root)
    out = dict(data)
    for table, policies in SPEC_REDACTION.items():
        out[table] = [
            {**r, **{c: redaction_oracle.expected(p, r[c], key) for c, p in policies.items()}}
            for r in data[table]
        ]
    # §3.2: cmdline_hash is the SHA-256 of the original cmdline; a row that leaves it out
    # gets it from the store (computed before redaction).
    out["proc_samples"] = [
        {**r, "cmdline_hash": original["cmdline_hash"] or sha256_or_none(original["cmdline"])}
        for r, original in zip(out["proc_samples"], data["proc_samples"], strict=True)
    ]
    return out


def sha256_or_none(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()


def test_the_schema_redacts_the_columns_of_spec_section_9_1(lake: telelake.Store) -> None:
    declared = {
        t.name: {c.name: str(c.redact) for c in t.columns if c.redact}
        for t in lake.schema.tables.values()
    }
    assert {t: cols for t, cols in declared.items() if cols} == SPEC_REDACTION


def test_redaction_changed_something_in_the_generated_data(
    data: dict[str, list[dict[str, Any]]], stored: dict[str, list[dict[str, Any]]]
) -> None:
    """Guards the row comparisons below from comparing unredacted data with itself.

    (Generated command lines hold no secrets: that policy is exercised in
    test_redaction.py.)
    """
    for table, column in (
        ("runs", "hostname"),
        ("runs", "username"),
        ("proc_samples", "cwd"),
        ("proc_samples", "exe"),
    ):
        before = [r[column] for r in data[table]]
        after = [r[column] for r in stored[table]]
        assert before != after, (table, column)


@pytest.fixture(scope="module")
def lake(
    data: dict[str, list[dict[str, Any]]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[telelake.Store]:
    root: Path = tmp_path_factory.mktemp("e2e") / "store"
    with telelake.open(root, host_id=TEST_HOST_ID) as store:
        # runs: a list of dicts, ended_at given as ISO-8601 strings with an offset.
        runs = [
            {**r, "ended_at": None if r["ended_at"] is None else r["ended_at"].isoformat()}
            for r in data["runs"]
        ]
        assert store.write("runs", runs) == len(runs)
        # proc_samples: a pyarrow Table (Arrow infers the types).
        samples = pa.Table.from_pylist(data["proc_samples"])
        assert store.write("proc_samples", samples) == samples.num_rows
        # proc_features: a dict of columns.
        feats = datagen.columns_of(data["proc_features"])
        assert store.write("proc_features", feats) == len(data["proc_features"])
        # proc_inference: a pandas DataFrame.
        inf = pd.DataFrame(data["proc_inference"])
        assert store.write("proc_inference", inf) == len(inf)
        # outcomes: lists of dicts, in three calls.
        out = data["outcomes"]
        third = len(out) // 3
        for part in (out[:third], out[third : 2 * third], out[2 * third :]):
            assert store.write("outcomes", part) == len(part)
        # audit: a DataFrame with a nullable integer column.
        audit = pd.DataFrame(data["audit"]).astype({"target_pid": "Int32"})
        assert store.write("audit", audit) == len(audit)
        yield store


# -- round trip ----------------------------------------------------------------------------


@pytest.mark.parametrize("table", TABLES)
def test_every_row_reads_back_equal(
    lake: telelake.Store, stored: dict[str, list[dict[str, Any]]], table: str
) -> None:
    names = [n for n, _, _ in SPEC_COLUMNS[table]]
    if table not in ("runs", "audit"):
        names.append("host_id")
    got = lake.sql(f"SELECT {', '.join(names)} FROM {table}").to_pylist()
    got_rows = Counter(norm_row(table, r) for r in got)
    expected = Counter(norm_row(table, r) for r in stored[table])
    assert len(got) == len(stored[table])
    assert got_rows == expected


@pytest.mark.parametrize("table", TABLES)
def test_partition_columns_equal_utc_date_and_host(
    lake: telelake.Store, data: dict[str, list[dict[str, Any]]], table: str
) -> None:
    tcol = TIME_COLUMN[table]
    host = ", host_id" if table in HOST_PARTITIONED else ""
    got = lake.sql(f"SELECT {tcol}, year, month, day{host} FROM {table}").rows()
    expected = Counter()
    for r in data[table]:
        d = as_utc(r[tcol])
        key: tuple[Any, ...] = (micros(r[tcol]), d.year, d.month, d.day)
        if table in HOST_PARTITIONED:
            key += (r["host_id"],)
        expected[key] += 1
    assert Counter((micros(g[0]), *g[1:]) for g in got) == expected
    # The data crosses a year boundary, so year/month really vary.
    assert len({(g[1], g[2]) for g in got}) >= 2


def test_partition_columns_have_usable_types(
    lake: telelake.Store, data: dict[str, list[dict[str, Any]]]
) -> None:
    # year/month/day compare as numbers (month=1, not '01'); host_id as text.
    n = lake.sql("SELECT COUNT(*) FROM runs WHERE year = 2026 AND month = 1").scalar()
    jan = [r for r in data["runs"] if as_utc(r["started_at"]).strftime("%Y-%m") == "2026-01"]
    assert 0 < n == len(jan)
    host = data["runs"][0]["host_id"]
    n = lake.sql("SELECT COUNT(*) FROM proc_samples WHERE host_id = ?", [host]).scalar()
    assert n == sum(1 for r in data["proc_samples"] if r["host_id"] == host)
    assert lake.sql("SELECT COUNT(*) FROM outcomes WHERE host_id = ?", [TEST_HOST_ID]).scalar() == 0


# -- named queries -------------------------------------------------------------------------


def _join(
    left: list[dict[str, Any]], right: list[dict[str, Any]]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Inner join USING (session_id, pid), brute force."""
    return [
        (a, b)
        for a in left
        for b in right
        if a["session_id"] == b["session_id"] and a["pid"] == b["pid"]
    ]


def test_calibration_curve(lake: telelake.Store, data: dict[str, list[dict[str, Any]]]) -> None:
    groups: dict[float, list[dict[str, Any]]] = defaultdict(list)
    for i, o in _join(data["proc_inference"], data["outcomes"]):
        groups[math.floor(f32(i["score"]) / 10) * 10.0].append(o)
    expected = [
        (
            bucket,
            len(outs),
            sum(1.0 if o["decision"] == "kill" else 0.0 for o in outs) / len(outs),
            # NULL action_successful is not TRUE: the CASE falls to ELSE 0.0.
            sum(1.0 if o["action_successful"] is True else 0.0 for o in outs) / len(outs),
        )
        for bucket, outs in sorted(groups.items())
    ]
    res = lake.query("calibration_curve")
    assert res.columns == ["score_bucket", "n", "kill_rate", "success_rate"]
    got = res.rows()
    assert [g[0] for g in got] == pytest.approx([e[0] for e in expected])
    assert [g[1] for g in got] == [e[1] for e in expected]
    assert [g[2] for g in got] == pytest.approx([e[2] for e in expected], rel=REL)
    assert [g[3] for g in got] == pytest.approx([e[3] for e in expected], rel=REL)
    # The join multiplies duplicate (session, pid) rows: the total must match that too.
    assert sum(g[1] for g in got) == len(_join(data["proc_inference"], data["outcomes"]))
    assert 110.0 in [g[0] for g in got] or 100.0 in [g[0] for g in got]


def test_fdr_over_time(lake: telelake.Store, data: dict[str, list[dict[str, Any]]]) -> None:
    weeks: dict[dt.datetime, list[str]] = defaultdict(list)
    for o in data["outcomes"]:
        if o["decision"] == "kill" and o["user_feedback"] is not None:
            weeks[monday_utc(o["outcome_ts"])].append(o["user_feedback"])
    expected = [
        (week, len(fb), fb.count("incorrect"), fb.count("incorrect") / len(fb))
        for week, fb in sorted(weeks.items())
    ]
    assert len(expected) >= 2
    res = lake.query("fdr_over_time")
    assert res.columns == ["week", "total_kills", "false_discoveries", "fdr"]
    got = res.rows()
    assert [g[0] for g in got] == [e[0] for e in expected]
    assert all(g[0].weekday() == 0 and g[0].utcoffset() == dt.timedelta(0) for g in got)
    assert [int(g[1]) for g in got] == [e[1] for e in expected]
    assert [int(g[2]) for g in got] == [e[2] for e in expected]
    # fdr is cast to FLOAT (float32) by the spec's SQL.
    assert [g[3] for g in got] == pytest.approx([e[3] for e in expected], rel=1e-6)


def test_fdr_week_boundaries_are_utc_mondays(lake: telelake.Store) -> None:
    # Outcomes at Sunday 23:59:59.999999 UTC and Monday 00:00 UTC fall in different weeks,
    # whatever offset they were written with.
    got = lake.sql(
        "SELECT outcome_ts, DATE_TRUNC('week', outcome_ts) FROM outcomes "
        "WHERE outcome_ts IN ('2025-12-28 23:59:59.999999+00', '2025-12-29 00:00:00+00')"
    ).rows()
    assert got, "the generator puts outcomes on these edges"
    for ts, week in got:
        assert week == monday_utc(ts)


def test_command_category_stats(
    lake: telelake.Store, data: dict[str, list[dict[str, Any]]]
) -> None:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f, o in _join(data["proc_features"], data["outcomes"]):
        groups[f["cmd_category"]].append(o)
    expected = {
        cat: (
            len(outs),
            sum(f32(o["score"]) for o in outs) / len(outs),
            sum(o["decision"] == "kill" for o in outs),
            sum(o["decision"] == "spare" for o in outs),
        )
        for cat, outs in groups.items()
    }
    res = lake.query("command_category_stats")
    assert res.columns == ["cmd_category", "n", "avg_score", "kills", "spares"]
    got = res.rows()
    assert [g[1] for g in got] == sorted((g[1] for g in got), reverse=True)
    assert {g[0] for g in got} == set(expected)
    for cat, n, avg, kills, spares in got:
        e = expected[cat]
        assert (n, int(kills), int(spares)) == (e[0], e[2], e[3]), cat
        assert avg == pytest.approx(e[1], rel=REL), cat


def test_fleet_stats(lake: telelake.Store, data: dict[str, list[dict[str, Any]]]) -> None:
    groups: dict[tuple[str, dt.datetime], list[int]] = defaultdict(list)
    for r in data["runs"]:
        groups[(r["host_id"], day_utc(r["started_at"]))].append(r["kills_successful"])
    expected = [(h, d, len(k), sum(k)) for (h, d), k in sorted(groups.items())]
    res = lake.query("fleet_stats")
    assert res.columns == ["host_id", "day", "sessions", "total_kills"]
    got = [(h, d, int(n), int(k)) for h, d, n, k in res.rows()]
    assert got == expected


# -- macros ----------------------------------------------------------------------------------


def test_session_summary_every_session(
    lake: telelake.Store, data: dict[str, list[dict[str, Any]]]
) -> None:
    empty_seen = False
    for r in data["runs"]:
        sid = r["session_id"]
        pids = {o["pid"] for o in data["outcomes"] if o["session_id"] == sid}
        empty_seen |= not pids
        expected = (
            sid,
            r["mode"],
            micros(r["started_at"]),
            r["duration_ms"],
            r["candidates_found"],
            r["kills_successful"],
            len(pids),
        )
        res = lake.sql("SELECT * FROM session_summary(?)", [sid])
        assert res.columns == [
            "session_id",
            "mode",
            "started_at",
            "duration_ms",
            "candidates_found",
            "kills_successful",
            "outcomes_recorded",
        ]
        rows = res.rows()
        assert len(rows) == 1, sid
        got = rows[0]
        assert (*got[:2], micros(got[2]), *got[3:]) == expected
    assert empty_seen, "a session without outcomes must report outcomes_recorded = 0"


def test_session_summary_unknown_session_is_empty(lake: telelake.Store) -> None:
    assert lake.sql("SELECT * FROM session_summary($sid)", {"sid": "pt-nope"}).rows() == []


@pytest.mark.parametrize("n", [0, 1, 5, 24, 100])
def test_recent_sessions(
    lake: telelake.Store, stored: dict[str, list[dict[str, Any]]], n: int
) -> None:
    ordered = sorted(stored["runs"], key=lambda r: micros(r["started_at"]), reverse=True)
    expected = [norm_row("runs", r) for r in ordered[:n]]
    names = ", ".join(datagen.spec_column_names("runs"))
    got = lake.sql(f"SELECT {names} FROM recent_sessions({n})").to_pylist()
    assert [norm_row("runs", g) for g in got] == expected
