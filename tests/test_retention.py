"""Retention by days and by disk budget, with synthetic clocks (no sleeping).

Expected rows are computed from the generated rows and the cutoff in plain Python; the
budget's choice is recomputed from the partitions on disk.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import telelake
from datagen import TABLES, TIME_COLUMN, generate, without
from telelake.config import parse_retention
from telelake.lake import compact, layout

HOST = "feedfacecafebeef"
START = dt.datetime(2025, 12, 27, tzinfo=dt.UTC)
DAYS = {"runs": 90, "proc_samples": 30, "proc_features": 30, "proc_inference": 90}
DAYS |= {"outcomes": 365, "audit": 365}  # the schema's (spec 000 §5.1)


def open_store(root: Path, **kw: Any) -> telelake.Store:
    return telelake.open(root, schema="process_triage", host_id=HOST, **kw)


def fill(root: Path) -> dict[str, list[dict[str, Any]]]:
    rows = generate(21, n_sessions=12, days=10, start=START)
    with open_store(root) as store:
        for table in TABLES:
            data = rows[table] if table in ("runs", "audit") else without(rows[table], "host_id")
            store.write(table, data)
    return rows


def configure(root: Path, **section: Any) -> None:
    (root / "config.json").write_text(json.dumps({"telemetry_retention": section}))


def keys(store: telelake.Store, table: str) -> Counter[tuple[Any, ...]]:
    col = TIME_COLUMN[table]
    return Counter(store.sql(f"SELECT session_id, {col} FROM {table}").rows())


def expected(rows: list[dict[str, Any]], table: str, cutoff: dt.datetime) -> Counter[Any]:
    col = TIME_COLUMN[table]
    return Counter((r["session_id"], r[col]) for r in rows if r[col] >= cutoff)


def test_rows_older_than_each_tables_retention_are_gone_and_no_others(store_root: Path) -> None:
    rows = fill(store_root)
    now = START + dt.timedelta(days=8, hours=7, minutes=30)  # cutoffs fall inside a day
    days = {**DAYS, "audit": 3, "proc_samples": 5}
    configure(store_root, audit_days=3, proc_samples_days=5)
    with open_store(store_root, retire_after=0) as store:
        assert store.retention().days == days  # the schema's, overridden by config.json
        report = store.enforce_retention(now=now)
        for table in TABLES:
            cutoff = now - dt.timedelta(days=days[table])
            assert keys(store, table) == expected(rows[table], table, cutoff), table
        actions = Counter((s.table, s.action) for s in report.steps)
    assert actions[("audit", "expired")] > 0 and actions[("audit", "trimmed")] > 0
    assert {t for t, _ in actions} == {"audit", "proc_samples"}
    # Expired partitions are gone from disk once retired; the rest read back by pyarrow.
    cutoff = now - dt.timedelta(days=3)
    for directory, files in compact.partitions(store_root / "audit"):
        end = layout.partition_end(
            layout.parse_partition(directory.relative_to(store_root / "audit"))
        )
        assert end is not None and end > cutoff, directory
        for f in files:
            ts = pq.read_table(f, columns=["audit_ts"]).column(0).to_pylist()
            assert min(ts) >= cutoff
    removed = sum(s.rows for s in report.steps if s.table == "audit")
    assert removed == len(rows["audit"]) - sum(expected(rows["audit"], "audit", cutoff).values())


def test_dry_run_says_what_would_go_and_changes_nothing(store_root: Path) -> None:
    rows = fill(store_root)
    now = START + dt.timedelta(days=8, hours=7)
    configure(store_root, audit_days=4, runs_days=6)
    listing = sorted(str(p) for p in store_root.rglob("*"))
    with open_store(store_root) as store:
        report = store.enforce_retention(now=now, dry_run=True)
        for table in TABLES:
            assert keys(store, table) == Counter(
                (r["session_id"], r[TIME_COLUMN[table]]) for r in rows[table]
            )
    assert sorted(str(p) for p in store_root.rglob("*")) == listing
    for table, days in (("audit", 4), ("runs", 6)):
        cutoff = now - dt.timedelta(days=days)
        want = len(rows[table]) - sum(expected(rows[table], table, cutoff).values())
        assert sum(s.rows for s in report.steps if s.table == table) == want


def partitions_by_age(root: Path) -> list[tuple[dt.datetime, int, Path, int]]:
    out = []
    for i, table in enumerate(TABLES):  # the schema declares them in this order
        for directory, files in compact.partitions(root / table):
            end = layout.partition_end(layout.parse_partition(directory.relative_to(root / table)))
            assert end is not None
            out.append((end, i, directory, sum(f.stat().st_size for f in files)))
    return sorted(out, key=lambda x: (x[0], x[1], str(x[2])))


def test_over_the_disk_budget_the_oldest_partitions_go_first(store_root: Path) -> None:
    fill(store_root)
    parts = partitions_by_age(store_root)
    total = sum(p[3] for p in parts)
    budget = int(total * 0.6)
    now = START + dt.timedelta(days=30)  # every partition has ended; no table's days passed
    # Brute force: drop from the oldest until the rest fits.
    used, want = total, []
    for _end, _, directory, size in parts:
        if used <= budget:
            break
        want.append(directory)
        used -= size
    configure(store_root, max_disk_gb=budget / 1e9)
    with open_store(store_root, retire_after=0) as store:
        with pytest.warns(UserWarning, match="over its disk budget") as caught:
            report = store.enforce_retention(now=now)
        assert report.disk_bytes_after <= budget
    dropped = [store_root / s.table / s.partition for s in report.steps]
    assert dropped == want
    assert {s.action for s in report.steps} == {"over budget"}
    text = str(caught[0].message)
    assert f"dropped {len(report.steps)} partition(s)" in text
    assert all(f"{s.table}/{s.partition}" in text for s in report.steps[:10])
    assert all(not compact.data_files(d) for d in want if d.exists())


def test_the_partition_being_written_is_never_dropped(store_root: Path) -> None:
    fill(store_root)
    parts = partitions_by_age(store_root)
    last_end = parts[-1][0]
    now = last_end - dt.timedelta(hours=1)  # inside the newest day
    configure(store_root, max_disk_gb=1e-9)  # one byte: nothing can fit
    with open_store(store_root, retire_after=0) as store:
        with pytest.warns(UserWarning) as caught:
            store.enforce_retention(now=now)
        messages = [str(w.message) for w in caught]
        assert any("still over its disk budget" in m for m in messages)
        assert any("was over its disk budget" in m for m in messages)
        left = {d for _, _, d, _ in partitions_by_age(store_root)}
    assert left == {d for end, _, d, _ in parts if end > now}
    assert left


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"telemetry_retention": {"audit_dayz": 3}}, "audit_dayz: unknown key"),
        ({"telemetry_retention": {"audit_days": 0}}, "audit_days must be a positive"),
        ({"telemetry_retention": {"audit_days": True}}, "audit_days must be a positive"),
        ({"telemetry_retention": {"max_disk_gb": "10"}}, "max_disk_gb must be a positive"),
        ({"telemetry_retention": {"auto_compact": 1}}, "auto_compact must be true or false"),
        ({"retention": {}}, "unknown key 'retention'"),
        # Issue 19: an OverflowError, and an error naming neither file nor key.
        ({"telemetry_retention": {"audit_days": 99999999999}}, "audit_days .* up to 365000"),
        ({"telemetry_retention": {"max_disk_gb": float("nan")}}, "max_disk_gb .* not nan"),
        ({"telemetry_retention": {"max_disk_gb": float("inf")}}, "max_disk_gb .* up to"),
        ({"telemetry_retention": {"maintenance_interval": "9999999d"}}, "at most 365 days"),
    ],
)
def test_config_mistakes_are_refused_naming_file_and_key(
    store_root: Path, config: dict[str, Any], message: str
) -> None:
    with open_store(store_root) as store:
        (store_root / "config.json").write_text(json.dumps(config))
        with pytest.raises(telelake.StoreError, match=message) as excinfo:
            store.enforce_retention()
    assert "config.json" in str(excinfo.value)


def test_cli_retention_dry_run_then_for_real(store_root: Path) -> None:
    rows = fill(store_root)
    # Against the real clock: every audit row has expired, no other row has.
    configure(store_root, audit_days=1, **{f"{t}_days": 36500 for t in TABLES if t != "audit"})
    env = {**os.environ, "TELELAKE_ROOT": str(store_root), "COLUMNS": "200"}
    cli = [sys.executable, "-m", "telelake"]
    dry = subprocess.run([*cli, "retention", "--dry-run"], capture_output=True, text=True, env=env)
    assert dry.returncode == 0, dry.stderr
    assert f"would remove {len(rows['audit'])} rows" in dry.stdout, dry.stdout
    with open_store(store_root) as store:
        assert store.sql("SELECT count(*) FROM audit").scalar() == len(rows["audit"])
    real = subprocess.run([*cli, "retention", "-q"], capture_output=True, text=True, env=env)
    assert real.returncode == 0, real.stderr
    assert f"removed {len(rows['audit'])} rows" in real.stdout
    with open_store(store_root) as store:
        assert store.sql("SELECT count(*) FROM audit").scalar() == 0
        assert store.sql("SELECT count(*) FROM runs").scalar() == len(rows["runs"])


def test_a_key_removed_by_retention_can_be_written_again_at_once(store_root: Path) -> None:
    rows = generate(8, n_sessions=3, days=2, start=START)["runs"]  # runs has a key
    now = START + dt.timedelta(days=400)
    with open_store(store_root) as store:  # the default grace period: files linger
        store.write("runs", rows)
        store.fold()
        store.enforce_retention(now=now)  # 90 days: every run expires
        assert store.sql("SELECT count(*) FROM runs").scalar() == 0
        store.write("runs", rows[:1])  # the same key again, while the old file lingers
        store.fold()  # the fold's key check must not count the retired file
        got = store.sql("SELECT session_id FROM runs").rows()
    assert got == [(rows[0]["session_id"],)]


def test_queries_running_during_retention_never_fail_nor_see_rows_come_back(
    store_root: Path,
) -> None:
    import threading

    rows = fill(store_root)
    now = START + dt.timedelta(days=8, hours=7)
    configure(store_root, audit_days=3)
    total = len(rows["audit"])
    left = sum(expected(rows["audit"], "audit", now - dt.timedelta(days=3)).values())
    seen: list[int] = []
    errors: list[str] = []
    done = threading.Event()

    def reader() -> None:
        with open_store(store_root) as r:
            while not done.is_set() or len(seen) < 5:
                try:
                    seen.append(int(r.sql("SELECT count(*) FROM audit").scalar()))
                except telelake.TelelakeError as exc:
                    errors.append(str(exc))

    t = threading.Thread(target=reader)
    t.start()
    with open_store(store_root, retire_after=0) as store:
        store.enforce_retention(now=now)
    done.set()
    t.join()
    assert errors == []
    assert all(left <= n <= total for n in seen)
    assert seen == sorted(seen, reverse=True)  # removed rows never come back
    assert seen[-1] == left


SETTING_VALUES = (
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=3)
)


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(["max_disk_gb", "audit_days", "backups_keep"]), value=SETTING_VALUES)
def test_numeric_settings_accept_exactly_their_range(key: str, value: Any) -> None:
    # The documented ranges (docs/lifecycle.md), spelt out independently of config.py.
    if value is None:
        ok = True
    elif isinstance(value, bool) or not isinstance(value, int | float):
        ok = False
    elif key == "max_disk_gb":
        ok = value == value and 0 < value <= 1_000_000
    else:
        ok = isinstance(value, int) and 1 <= value <= (365_000 if key == "audit_days" else 10**6)
    where = "/some/store/config.json"
    try:
        got = parse_retention({"telemetry_retention": {key: value}}, ["audit"], where)
    except telelake.StoreError as exc:
        assert not ok, (key, value, str(exc))
        assert str(exc).startswith(f"{where}: telemetry_retention.{key} must be")
        assert "up to" in str(exc)
    else:
        assert ok, (key, value)
        assert got[key] == value
