"""The Store facade: where stores live, which schemas they accept, version rules (spec 000
§4), validation errors and what they leave behind, SQL, named queries and results."""

from __future__ import annotations

import datetime as dt
import json
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import platformdirs
import pyarrow as pa
import pytest

import datagen
import telelake
import telelake.store
from conftest import TEST_HOST_ID

TABLE_NAMES = ("runs", "proc_samples", "proc_features", "proc_inference", "outcomes", "audit")


def mini_schema(
    path: Path, *, version: str = "1.0.0", name: str = "mini", extra_column: bool = False
) -> Path:
    """A small user schema: two lake tables, a named query and a macro."""
    note = '  { name = "note", type = "STRING", nullable = true },\n' if extra_column else ""
    path.write_text(
        f"""
name = "{name}"
version = "{version}"

[tables.events]
time = "ts"
partition = {{ time = ["year", "month", "day"], keys = ["site"] }}
parquet = {{ file_prefix = "events", compression = "zstd" }}
columns = [
  {{ name = "ts", type = "TIMESTAMP_MICROS", nullable = false }},
  {{ name = "kind", type = "STRING", nullable = false, enum = ["start", "stop"] }},
  {{ name = "value", type = "DOUBLE", nullable = true }},
{note}]

[tables.ticks]
time = "tick_at"
columns = [
  {{ name = "tick_at", type = "TIMESTAMP_MICROS", nullable = false, epoch_unit = "ms" }},
  {{ name = "n", type = "INT64", nullable = false }},
]

[queries.by_kind]
sql = '''SELECT kind, COUNT(*) AS n, SUM(value) AS total FROM events
         WHERE value >= $min GROUP BY 1 ORDER BY 1'''

[macros.kinds]
sql = "CREATE OR REPLACE MACRO kinds() AS TABLE SELECT DISTINCT kind FROM events ORDER BY 1"
""",
        encoding="utf-8",
    )
    return path


def files_under(root: Path) -> set[Path]:
    return {
        Path(d) / f
        for d, _, fs in os.walk(root)
        for f in fs
        if not {"_metadata", "_wal"} & set(Path(d).parts)
    }


def version_file(root: Path) -> dict[str, Any]:
    return json.loads((root / "_metadata" / "schema_version.json").read_text())


# -- where a store lives --------------------------------------------------------------------


def test_open_without_root_uses_env(tmp_path: Path) -> None:
    expected = (tmp_path / "default-root").resolve()
    rows = datagen.without(datagen.generate(1)["outcomes"], "host_id")
    with telelake.open(host_id=TEST_HOST_ID) as store:
        assert store.root == expected
        store.write("outcomes", rows)
    assert (expected / "_metadata" / "schema_version.json").is_file()
    assert any(p.suffix == ".parquet" for p in files_under(expected / "outcomes"))


def test_open_expands_user_in_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TELELAKE_ROOT", "~/lake")
    with telelake.open(host_id=TEST_HOST_ID) as store:
        assert store.root == (tmp_path / "home" / "lake").resolve()


def test_default_root_without_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """process_triage: spec 000 §2.1's ~/.local/share/process_triage/telemetry; other
    schemas: <user data dir>/telelake/<schema>."""
    monkeypatch.delenv("TELELAKE_ROOT")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    data = Path(platformdirs.user_data_dir())
    assert telelake.store.default_root("process_triage") == data / "process_triage/telemetry"
    assert telelake.store.default_root("search_ops") == Path(
        platformdirs.user_data_dir("telelake"), "search_ops"
    )
    # On Linux with no XDG override that is the spec's path; check it and that open()
    # really uses it, with HOME pointed at a temp dir.
    if data != tmp_path / "home/.local/share":
        pytest.skip("platformdirs does not follow XDG here")
    expected = tmp_path / "home" / ".local" / "share" / "process_triage" / "telemetry"
    with telelake.open(host_id=TEST_HOST_ID) as store:
        assert store.root == expected.resolve()
    assert (expected / "_metadata" / "schema_version.json").is_file()
    with telelake.open(schema="search_ops") as store:
        assert store.root == tmp_path / "home/.local/share/telelake/search_ops"
    # $TELELAKE_ROOT still wins.
    monkeypatch.setenv("TELELAKE_ROOT", str(tmp_path / "mine"))
    with telelake.open(host_id=TEST_HOST_ID) as store:
        assert store.root == (tmp_path / "mine").resolve()


# -- user schemas -----------------------------------------------------------------------------


@pytest.mark.parametrize("as_str", [False, True])
def test_user_schema_file_works_like_a_builtin(tmp_path: Path, as_str: bool) -> None:
    schema = mini_schema(tmp_path / "mini.toml")
    base = dt.datetime(2026, 3, 1, 23, 30, tzinfo=dt.UTC)
    rows = [
        {
            "ts": base + dt.timedelta(minutes=20 * i),
            "kind": ("start", "stop")[i % 2],
            "value": None if i % 5 == 4 else float(i),
            "site": ("north", "south")[i % 3 == 0],
        }
        for i in range(12)
    ]
    with telelake.open(tmp_path / "s", str(schema) if as_str else schema) as store:
        assert store.schema.name == "mini"
        assert store.write("events", rows) == 12
        assert store.write("ticks", {"tick_at": [1_767_225_600_000], "n": [5]}) == 1
        got = store.sql("SELECT ts, kind, value, site FROM events").rows()
        assert Counter(got) == Counter((r["ts"], r["kind"], r["value"], r["site"]) for r in rows)
        for minimum in (0.0, 5.0):
            expected = {}
            for r in rows:
                if r["value"] is not None and r["value"] >= minimum:
                    n, total = expected.get(r["kind"], (0, 0.0))
                    expected[r["kind"]] = (n + 1, total + r["value"])
            res = store.query("by_kind", min=minimum)
            assert res.rows() == [(k, n, t) for k, (n, t) in sorted(expected.items())]
        assert store.sql("SELECT * FROM kinds()").rows() == [("start",), ("stop",)]
        assert store.sql("SELECT tick_at FROM ticks").scalar() == dt.datetime(
            2026, 1, 1, tzinfo=dt.UTC
        )
    # Partition levels: time, then the schema's own key; days are UTC days.
    dirs = {p.parent.relative_to(tmp_path / "s" / "events") for p in files_under(tmp_path / "s")
            if "events" in p.parts}  # fmt: skip
    expected_dirs = {
        Path(
            f"year={r['ts'].year}", f"month={r['ts'].month:02d}", f"day={r['ts'].day:02d}",
            f"site={r['site']}",
        )
        for r in rows
    }  # fmt: skip
    assert dirs == expected_dirs


def test_different_schema_name_is_refused_naming_both(tmp_path: Path) -> None:
    root = tmp_path / "s"
    telelake.open(root, host_id=TEST_HOST_ID).close()
    with pytest.raises(telelake.StoreError) as err:
        telelake.open(root, mini_schema(tmp_path / "mini.toml"))
    assert "process_triage" in str(err.value) and "mini" in str(err.value)


def test_non_empty_non_store_dir_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    (root / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(telelake.StoreError) as err:
        telelake.open(root, host_id=TEST_HOST_ID)
    assert str(root) in str(err.value)
    assert sorted(p.name for p in root.iterdir()) == ["cat.jpg"]


def test_empty_existing_dir_becomes_a_store(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    (root / ".hidden").write_text("x")
    with telelake.open(root, host_id=TEST_HOST_ID) as store:
        assert store.write("audit", datagen.generate(1)["audit"][:3]) == 3


# -- versions §4 -----------------------------------------------------------------------------


def test_minor_upgrade_updates_schema_version_json(tmp_path: Path) -> None:
    root = tmp_path / "s"
    telelake.open(root, mini_schema(tmp_path / "v1.toml")).close()
    assert version_file(root)["current_version"] == "1.0.0"
    with telelake.open(root, mini_schema(tmp_path / "v11.toml", version="1.1.0")) as store:
        assert not store.read_only
    info = version_file(root)
    assert info["current_version"] == "1.1.0"
    assert info["upgrade_from"] == "1.0.0"
    assert set(info["compatible_versions"]) == {"1.0.0", "1.1.0"}
    # Reopening with the old minor keeps the newer version recorded (it is compatible).
    with telelake.open(root, mini_schema(tmp_path / "v1.toml")) as store:
        assert not store.read_only
    assert version_file(root)["current_version"] == "1.1.0"


def test_minor_upgrade_with_new_column_reads_old_and_new_rows(tmp_path: Path) -> None:
    root = tmp_path / "s"
    old = {"ts": dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "kind": "start", "value": 1.0, "site": "a"}
    new = {**old, "ts": dt.datetime(2026, 1, 1, 1, tzinfo=dt.UTC), "note": "hi", "site": "a"}
    with telelake.open(root, mini_schema(tmp_path / "v1.toml")) as store:
        store.write("events", [old])
    schema = mini_schema(tmp_path / "v11.toml", version="1.1.0", extra_column=True)
    with telelake.open(root, schema) as store:
        store.write("events", [new])
        got = store.sql("SELECT kind, note FROM events ORDER BY ts").rows()
        assert got == [("start", None), ("start", "hi")]
        store.fold()
        # Compaction merges the old file (no `note`) with the new one: nulls, not errors.
        assert store.compact().partitions == 1  # the same day: two files, one schema each
        assert store.sql("SELECT kind, note FROM events ORDER BY ts").rows() == got
    with telelake.open(root, schema) as store:
        assert store.sql("SELECT kind, note FROM events ORDER BY ts").rows() == got


def test_newer_major_store_opens_read_only(tmp_path: Path) -> None:
    root = tmp_path / "s"
    row = {"ts": dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "kind": "stop", "value": 2.5, "site": "x"}
    with telelake.open(root, mini_schema(tmp_path / "v2.toml", version="2.0.0")) as store:
        store.write("events", [row])
    before = version_file(root)
    files_before = files_under(root)
    with pytest.warns(UserWarning, match="read-only"):
        store = telelake.open(root, mini_schema(tmp_path / "v1.toml"))
    with store:
        assert store.read_only
        with pytest.raises(telelake.StoreError, match="read-only"):
            store.write("events", [row])
        assert store.sql("SELECT kind, value FROM events").rows() == [("stop", 2.5)]
    assert version_file(root) == before
    assert files_under(root) == files_before


def test_older_major_store_with_newer_major_schema_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "s"
    telelake.open(root, mini_schema(tmp_path / "v1.toml")).close()
    before = version_file(root)
    with pytest.raises(telelake.StoreError) as err:
        telelake.open(root, mini_schema(tmp_path / "v2.toml", version="2.0.0"))
    assert "1.0.0" in str(err.value) and "2.0.0" in str(err.value)
    assert version_file(root) == before


# -- validation --------------------------------------------------------------------------------


@pytest.fixture
def seeded(store: telelake.Store) -> tuple[telelake.Store, list[dict[str, Any]]]:
    """A store with some outcomes already written, and fresh valid outcome rows."""
    data = datagen.generate(21)
    rows = datagen.without(data["outcomes"], "host_id")
    store.write("outcomes", rows[:10])
    return store, rows[10:20]


def _assert_rejected(
    store: telelake.Store,
    rows: Any,
    *,
    column: str,
    row: int | None,
    says: tuple[str, ...] = (),
    table: str = "outcomes",
) -> telelake.ValidationError:
    files = files_under(store.root)
    count = store.sql(f"SELECT COUNT(*) FROM {table}").scalar()
    with pytest.raises(telelake.ValidationError) as err:
        store.write(table, rows)
    e = err.value
    assert e.table == table
    assert e.column == column
    assert e.row == row
    assert e.store == store.schema.name
    msg = str(e)
    assert repr(store.schema.name) in msg
    assert repr(table) in msg
    assert repr(column) in msg
    if row is not None:
        assert f"row {row}" in msg
    for word in says:
        assert word in msg, msg
    assert "\n" not in msg
    assert files_under(store.root) == files
    assert store.sql(f"SELECT COUNT(*) FROM {table}").scalar() == count
    return e


def test_wrong_type_is_refused(seeded: tuple[telelake.Store, list[dict[str, Any]]]) -> None:
    store, rows = seeded
    rows[3]["pid"] = "1234"
    _assert_rejected(store, rows, column="pid", row=3, says=("int32", "str"))


def test_float_for_int_is_refused_at_its_row(
    seeded: tuple[telelake.Store, list[dict[str, Any]]],
) -> None:
    store, rows = seeded
    rows[5]["pid"] = 12.5
    _assert_rejected(store, rows, column="pid", row=5, says=("12.5",))


def test_float_for_int_is_refused(seeded: tuple[telelake.Store, list[dict[str, Any]]]) -> None:
    store, rows = seeded
    rows[5]["pid"] = 12.5
    files = files_under(store.root)
    with pytest.raises(telelake.ValidationError) as err:
        store.write("outcomes", rows)
    assert err.value.column == "pid"
    assert files_under(store.root) == files


def test_int_for_bool_is_refused(seeded: tuple[telelake.Store, list[dict[str, Any]]]) -> None:
    store, rows = seeded
    rows[6]["action_attempted"] = 1
    _assert_rejected(store, rows, column="action_attempted", row=6)


def test_integer_overflow_is_refused(store: telelake.Store) -> None:
    rows = datagen.without(datagen.generate(2)["proc_samples"][:8], "host_id")
    rows[7]["sample_seq"] = 40_000  # INT16
    _assert_rejected(store, rows, column="sample_seq", row=7, says=("int16",), table="proc_samples")


def test_missing_non_null_is_refused(seeded: tuple[telelake.Store, list[dict[str, Any]]]) -> None:
    store, rows = seeded
    absent = [dict(r) for r in rows]
    del absent[2]["decision"]
    _assert_rejected(store, absent, column="decision", row=2, says=("missing",))
    explicit = [dict(r) for r in rows]
    explicit[4]["cmd"] = None
    _assert_rejected(store, explicit, column="cmd", row=4, says=("missing",))


def test_unknown_column_is_refused(seeded: tuple[telelake.Store, list[dict[str, Any]]]) -> None:
    store, rows = seeded
    rows[1]["colour"] = "blue"
    e = _assert_rejected(store, rows, column="colour", row=None, says=("unknown",))
    assert "decision" in str(e)  # the message lists the table's columns


def test_enum_violation_is_refused(seeded: tuple[telelake.Store, list[dict[str, Any]]]) -> None:
    store, rows = seeded
    rows[4]["decision"] = "maybe"
    _assert_rejected(store, rows, column="decision", row=4, says=("'maybe'", "kill", "spare"))


def test_naive_datetime_is_refused_and_says_why(
    seeded: tuple[telelake.Store, list[dict[str, Any]]],
) -> None:
    store, rows = seeded
    rows[1]["outcome_ts"] = dt.datetime(2026, 1, 15, 10, 0)
    _assert_rejected(store, rows, column="outcome_ts", row=1, says=("time zone",))


def test_iso_string_without_offset_is_refused(
    seeded: tuple[telelake.Store, list[dict[str, Any]]],
) -> None:
    store, rows = seeded
    rows[6]["outcome_ts"] = "2026-01-15T10:00:00"
    _assert_rejected(store, rows, column="outcome_ts", row=6, says=("offset",))


def test_iso_strings_with_offset_are_accepted(store: telelake.Store) -> None:
    rows = datagen.without(datagen.generate(2)["outcomes"][:3], "host_id")
    rows[0]["outcome_ts"] = "2026-01-15T01:30:00+02:00"  # 2026-01-14 23:30 UTC
    rows[1]["outcome_ts"] = "2026-01-15T10:00:00Z"
    rows[2]["outcome_ts"] = "2026-01-15T10:00:00.250-05:00"
    assert store.write("outcomes", rows) == 3
    got = store.sql("SELECT outcome_ts, year, month, day FROM outcomes ORDER BY outcome_ts").rows()
    utc = dt.UTC
    assert got == [
        (dt.datetime(2026, 1, 14, 23, 30, tzinfo=utc), 2026, 1, 14),
        (dt.datetime(2026, 1, 15, 10, 0, tzinfo=utc), 2026, 1, 15),
        (dt.datetime(2026, 1, 15, 15, 0, 0, 250_000, tzinfo=utc), 2026, 1, 15),
    ]


def test_epoch_numbers_need_an_epoch_unit(
    seeded: tuple[telelake.Store, list[dict[str, Any]]],
) -> None:
    store, rows = seeded
    rows[0]["outcome_ts"] = 1_768_471_200
    _assert_rejected(store, rows, column="outcome_ts", row=0, says=("epoch_unit",))


def test_epoch_numbers_accepted_with_declared_unit(tmp_path: Path) -> None:
    with telelake.open(tmp_path / "s", mini_schema(tmp_path / "mini.toml")) as store:
        store.write("ticks", [{"tick_at": 1_768_471_200_123, "n": 1}, {"tick_at": 0, "n": 2}])
        got = store.sql("SELECT tick_at, n FROM ticks ORDER BY n").rows()
    assert got == [
        (dt.datetime(2026, 1, 15, 10, 0, 0, 123_000, tzinfo=dt.UTC), 1),
        (dt.datetime(1970, 1, 1, tzinfo=dt.UTC), 2),
    ]


def test_errors_point_at_the_row_for_every_input_form(store: telelake.Store) -> None:
    rows = datagen.without(datagen.generate(2)["outcomes"][:12], "host_id")
    rows[9]["decision"] = "nope"
    _assert_rejected(store, datagen.columns_of(rows), column="decision", row=9)
    _assert_rejected(store, pd.DataFrame(rows), column="decision", row=9)
    arrow = pa.Table.from_pylist(rows)
    _assert_rejected(store, arrow, column="decision", row=9)
    _assert_rejected(store, arrow.to_batches()[0], column="decision", row=9)


def test_unsafe_partition_value_rejects_the_whole_call(store: telelake.Store) -> None:
    data = datagen.generate(2)
    host = data["proc_features"][0]["host_id"]
    rows = [r for r in data["proc_features"] if r["host_id"] == host][:10]
    assert len(rows) == 10
    rows[8] = {**rows[8], "host_id": "../../etc"}
    files = files_under(store.root)
    with pytest.raises(telelake.ValidationError) as err:
        store.write("proc_features", rows)
    assert "host_id" in str(err.value)
    assert files_under(store.root) == files
    assert not (store.root.parent / "etc").exists()


def test_unknown_table_lists_tables(store: telelake.Store) -> None:
    with pytest.raises(telelake.StoreError) as err:
        store.write("processes", [{"pid": 1}])
    for name in TABLE_NAMES:
        assert name in str(err.value)
    assert "processes" in str(err.value)


# -- SQL and results ---------------------------------------------------------------------------


@pytest.fixture
def with_runs(store: telelake.Store) -> tuple[telelake.Store, list[dict[str, Any]]]:
    runs = datagen.generate(31)["runs"]
    store.write("runs", runs)
    return store, runs


def test_sql_with_named_and_positional_params(
    with_runs: tuple[telelake.Store, list[dict[str, Any]]],
) -> None:
    store, runs = with_runs
    host = runs[0]["host_id"]
    expected = sorted(r["session_id"] for r in runs if r["host_id"] == host and r["spares"] >= 2)
    q1 = "SELECT session_id FROM runs WHERE host_id = $h AND spares >= $s ORDER BY 1"
    got1 = store.sql(q1, {"h": host, "s": 2}).rows()
    q2 = "SELECT session_id FROM runs WHERE host_id = ? AND spares >= ? ORDER BY 1"
    got2 = store.sql(q2, [host, 2]).rows()
    assert [g[0] for g in got1] == expected
    assert got2 == got1
    assert expected  # the filter keeps something


def test_result_conversions(with_runs: tuple[telelake.Store, list[dict[str, Any]]]) -> None:
    store, runs = with_runs
    ordered = sorted(runs, key=lambda r: r["session_id"])
    res = store.sql("SELECT session_id, cores, deep_scan FROM runs ORDER BY session_id")
    expected = [(r["session_id"], r["cores"], r["deep_scan"]) for r in ordered]
    assert res.columns == ["session_id", "cores", "deep_scan"]
    assert len(res) == len(runs)
    assert res.rows() == expected
    assert list(res) == expected
    assert res.to_pylist() == [
        {"session_id": s, "cores": c, "deep_scan": d} for s, c, d in expected
    ]
    table = res.to_arrow()
    assert isinstance(table, pa.Table)
    assert table.schema.field("cores").type == pa.int16()
    assert table.column("session_id").to_pylist() == [e[0] for e in expected]
    df = res.to_pandas()
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["session_id", "cores", "deep_scan"]
    assert list(df["session_id"]) == [e[0] for e in expected]
    assert df["cores"].isna().sum() == sum(1 for e in expected if e[1] is None)
    assert store.sql("SELECT COUNT(*) FROM runs").scalar() == len(runs)
    empty = store.sql("SELECT session_id FROM runs WHERE false")
    assert empty.rows() == [] and empty.to_pylist() == [] and empty.scalar() is None


def test_stats_count_rows_and_files(with_runs: tuple[telelake.Store, list[dict[str, Any]]]) -> None:
    store, runs = with_runs
    stats = {s.table: s for s in store.stats()}
    assert set(stats) == set(TABLE_NAMES)
    assert stats["runs"].rows == len(runs)
    runs_files = [p for p in files_under(store.root / "runs") if p.suffix == ".parquet"]
    assert stats["runs"].files == len(runs_files)
    assert stats["runs"].bytes == sum(p.stat().st_size for p in runs_files)
    assert stats["audit"].rows == stats["audit"].files == stats["audit"].bytes == 0


def test_empty_tables_can_be_queried(store: telelake.Store) -> None:
    for name in TABLE_NAMES:
        assert store.sql(f"SELECT COUNT(*) FROM {name}").scalar() == 0
    assert store.query("calibration_curve").rows() == []
    # Columns exist with their types before any file does.
    cols = store.sql("SELECT * FROM outcomes").columns
    assert cols[: len(datagen.spec_column_names("outcomes"))] == datagen.spec_column_names(
        "outcomes"
    )


def test_bad_sql_is_a_one_line_query_error(store: telelake.Store) -> None:
    for text in ("SELEC 1", "SELECT nope FROM runs", "SELECT * FROM no_such_table"):
        with pytest.raises(telelake.QueryError) as err:
            store.sql(text)
        assert "\n" not in str(err.value)
        assert str(err.value)


def test_named_query_errors(store: telelake.Store, tmp_path: Path) -> None:
    with pytest.raises(telelake.QueryError) as err:
        store.query("kill_list")
    assert "kill_list" in str(err.value) and "calibration_curve" in str(err.value)
    with pytest.raises(telelake.QueryError) as err:
        store.query("fleet_stats", host="x")
    assert "host" in str(err.value)
    with telelake.open(tmp_path / "m", mini_schema(tmp_path / "mini.toml")) as mini:
        with pytest.raises(telelake.QueryError) as err:
            mini.query("by_kind")
        assert "min" in str(err.value)


def test_every_error_is_a_telelake_error(store: telelake.Store, tmp_path: Path) -> None:
    for cls in (
        telelake.StoreError,
        telelake.QueryError,
        telelake.ValidationError,
        telelake.SchemaError,
    ):
        assert issubclass(cls, telelake.TelelakeError)
    attempts = [
        lambda: store.write("nope", []),
        lambda: store.write("audit", [{"bogus": 1}]),
        lambda: store.sql("SELEC"),
        lambda: store.query("nope"),
        lambda: telelake.open(tmp_path / "x", "no_such_schema"),
        lambda: telelake.open(tmp_path / "y", tmp_path / "missing.toml"),
    ]
    for attempt in attempts:
        with pytest.raises(telelake.TelelakeError):
            attempt()


def test_warnings_are_not_raised_for_normal_opens(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        telelake.open(tmp_path / "s", host_id=TEST_HOST_ID).close()
        telelake.open(tmp_path / "s", host_id=TEST_HOST_ID).close()


def test_open_without_a_schema_uses_the_stores_own(tmp_path: Path) -> None:
    with telelake.open(tmp_path / "new") as store:  # a new store: process_triage
        assert store.schema.name == "process_triage"
    telelake.open(tmp_path / "runs", schema="agent_runs").close()
    with telelake.open(tmp_path / "runs") as store:
        assert store.schema.name == "agent_runs"
    with telelake.open(tmp_path / "runs", schema="agent_runs") as store:
        assert store.schema.name == "agent_runs"
    with pytest.raises(telelake.StoreError) as err:
        telelake.open(tmp_path / "runs", schema="process_triage")
    message = str(err.value)
    assert str(tmp_path / "runs") in message
    assert "'agent_runs'" in message and "'process_triage'" in message


def test_sql_rows_are_the_rows_of_sql(store: telelake.Store) -> None:
    rows = datagen.generate(3, n_sessions=4)["audit"]
    store.write("audit", rows)
    for text in (
        "SELECT * FROM audit ORDER BY audit_ts, session_id, message",
        "SELECT session_id, count(*) AS n, sum(target_pid) AS s, max(audit_ts) AS m "
        "FROM audit GROUP BY 1 ORDER BY 1",
        "SELECT 1 AS x WHERE false",
    ):
        plain, arrow = store.sql_rows(text), store.sql(text)
        assert plain.columns == arrow.columns
        assert plain.rows() == arrow.rows()
        assert [tuple(map(type, r)) for r in plain.rows()] == [
            tuple(map(type, r)) for r in arrow.rows()
        ]


@pytest.mark.parametrize("value", ["__HIVE_DEFAULT_PARTITION__", "__hive_default_partition__"])
def test_a_partition_value_readers_take_for_null_is_refused(
    store: telelake.Store, value: str
) -> None:
    # Issue 19: DuckDB's hive partitioning reads a folder `host_id=__HIVE_DEFAULT_PARTITION__`
    # as NULL, so the row would read back without its host.
    rows = datagen.generate(3)["runs"][:2]
    rows[1]["host_id"] = value
    for data in (rows, rows * 200):  # the plain (small) path and the Arrow path
        with pytest.raises(telelake.ValidationError) as err:
            store.write("runs", data)
        assert (err.value.table, err.value.column, err.value.row) == ("runs", "host_id", 1)
        assert "reserved" in str(err.value) and "NULL" in str(err.value)
        assert "row 1" in str(err.value)
    assert store.sql("SELECT count(*) FROM runs").scalar() == 0


TIERS_SCHEMA = """
name = "tiers"
version = "1.0.0"

[tables.lk]
time = "ts"
columns = [
  { name = "ts", type = "timestamp", nullable = false },
  { name = "s", type = "string" },
  { name = "j", type = "json" },
]

[tables.sq]
tier = "sql"
columns = [{ name = "s", type = "string" }, { name = "j", type = "json" }]

[tables.lg]
tier = "log"
columns = [{ name = "s", type = "string" }, { name = "j", type = "json" }]

[log.records.lg]
table = "lg"
"""


def test_surrogates_and_deep_json_are_validation_errors_in_every_tier(tmp_path: Path) -> None:
    # Issue 19: these were UnicodeEncodeError and RecursionError tracebacks (and a JSON
    # array 20000 levels deep crashed the process in Arrow's inference).
    schema = tmp_path / "tiers.toml"
    schema.write_text(TIERS_SCHEMA, encoding="utf-8")
    deep: Any = 1
    for _ in range(20_000):
        deep = [deep]
    ts = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with telelake.open(tmp_path / "store", schema=str(schema)) as store:
        for table in ("lk", "sq", "lg"):
            base = {"ts": ts} if table == "lk" else {}
            for column, bad, says in (
                ("s", "caf\udce9", "lone surrogate"),
                ("j", deep, "nested more than 1024 levels"),
                ("j", "[" * 5000 + "]" * 5000, "nested more than 1024 levels"),
            ):
                rows = [{**base, "s": "ok", "j": {"a": 1}} for _ in range(3)]
                rows[2][column] = bad
                with pytest.raises(telelake.ValidationError) as err:
                    store.write(table, rows)
                assert (err.value.table, err.value.column, err.value.row) == (table, column, 2)
                assert says in str(err.value)
        assert store.sql("SELECT count(*) FROM lk").scalar() == 0
