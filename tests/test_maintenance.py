"""Spec 000 §5.2 defaults without a config file, and maintenance that runs by itself.

Expected rows are counted in plain Python from the rows the test wrote and the
retention cutoff; rows sit days away from any cutoff, so the real clock is safe.
conftest.py turns automatic maintenance off for every other test; these turn it on.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import telelake
import telelake.sql.tier
from opsdata import db_rows, random_events, setup_fleet, to_ms
from telelake import upkeep

HOST = "feedfacecafebeef"
TELELAKE = str(Path(sys.executable).parent / "telelake")
# Spec 000 §5.1 and §5.2, copied from the spec, not from the schema file.
SPEC_DAYS = {
    "runs": 90,
    "proc_samples": 30,
    "proc_features": 30,
    "proc_inference": 90,
    "outcomes": 365,
    "audit": 365,
}
NOW = dt.datetime.now(dt.UTC)
OLD_DAYS = (400, 420, 450, 500)  # audit rows this many days old have expired (365)
NEW_DAYS = (0, 3, 100, 300)  # these have not


def open_store(root: Path, **kw: Any) -> telelake.Store:
    return telelake.open(root, schema="process_triage", host_id=HOST, **kw)


def audit_rows(days_ago: tuple[int, ...], per_day: int, tag: str) -> list[dict[str, Any]]:
    return [
        {
            "audit_ts": NOW - dt.timedelta(days=d, minutes=i),
            "session_id": f"s-{d}",
            "event_type": "scan_start",
            "severity": "info",
            "actor": "system",
            "message": f"{tag} {d} {i}",
            "host_id": HOST,
        }
        for d in days_ago
        for i in range(per_day)
    ]


def messages(store: telelake.Store) -> Counter[str]:
    return Counter(m for (m,) in store.sql("SELECT message FROM audit").rows())


def kept(rows: list[dict[str, Any]], days: int, at: dt.datetime) -> Counter[str]:
    """The messages of `rows` a retention of `days` run at `at` keeps (plain Python)."""
    cutoff = at - dt.timedelta(days=days)
    return Counter(r["message"] for r in rows if r["audit_ts"] >= cutoff)


def seed(root: Path, per_day: int = 5, days: tuple[int, ...] = OLD_DAYS + NEW_DAYS) -> list[Any]:
    rows = audit_rows(days, per_day, "seed")
    with open_store(root, maintenance=False) as store:
        store.write("audit", rows)
    return rows


def age_last_run(root: Path, hours: float) -> None:
    """Make the recorded runs look `hours` older (as if the store sat unopened)."""
    path = root / "_metadata" / "maintenance.json"
    data = json.loads(path.read_text())
    for run in data["runs"]:
        for key in ("started", "finished"):
            when = dt.datetime.fromisoformat(run[key].replace("Z", "+00:00"))
            run[key] = upkeep.iso(when - dt.timedelta(hours=hours))
    path.write_text(json.dumps(data))


def recorded(root: Path) -> list[dict[str, Any]]:
    path = root / "_metadata" / "maintenance.json"
    if not path.exists():
        return []
    runs: list[dict[str, Any]] = json.loads(path.read_text())["runs"]
    return runs


def wait_for_look(store: telelake.Store, timeout: float = 60.0) -> upkeep.MaintenanceReport:
    background = store._upkeep
    assert background is not None, "no background maintenance was started"
    assert background.looked.wait(timeout), "background maintenance did not run in time"
    assert background.last is not None
    return background.last


def cli(*args: str, root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "TELELAKE_ROOT": str(root), "COLUMNS": "200", **env}
    return subprocess.run([TELELAKE, *args], capture_output=True, text=True, env=full, timeout=120)


def table_rows(text: str) -> dict[str, tuple[str, ...]]:
    """The rows of the rich tables in `text`: first cell -> the other cells."""
    out = {}
    for line in text.splitlines():
        if line.startswith("│"):
            cells = [c.strip() for c in line.strip("│").split("│")]
            out[cells[0]] = tuple(cells[1:])
    return out


# -- defaults -------------------------------------------------------------------------------


def test_a_fresh_store_without_config_has_the_spec_defaults(store_root: Path) -> None:
    with open_store(store_root, maintenance=False) as store:
        settings = store.retention()
    assert not (store_root / "config.json").exists()
    assert settings.days == SPEC_DAYS
    assert settings.max_disk_gb == 10
    assert settings.auto_compact is True
    assert settings.maintenance_interval == dt.timedelta(hours=1)
    assert settings.backups_keep is None
    for name in [*(f"{t}_days" for t in SPEC_DAYS), "max_disk_gb", "auto_compact"]:
        assert settings.source(name) == "schema process_triage", name
    assert settings.source("maintenance_interval") == "telelake default"

    out = cli("retention", "--dry-run", root=store_root)
    assert out.returncode == 0, out.stderr
    shown = table_rows(out.stdout)
    for table, days in SPEC_DAYS.items():
        assert shown[f"{table}_days"] == (str(days), "schema process_triage")
    assert shown["max_disk_gb"] == ("10", "schema process_triage")
    assert shown["auto_compact"] == ("true", "schema process_triage")
    assert shown["maintenance_interval"] == ("1h", "telelake default")
    assert "would remove 0 rows" in out.stdout


def test_config_json_overrides_each_default_and_says_so(store_root: Path) -> None:
    open_store(store_root, maintenance=False).close()
    config = {
        "audit_days": 7,
        "runs_days": None,  # kept forever
        "max_disk_gb": None,  # no budget
        "auto_compact": False,
        "maintenance_interval": "15m",
        "backups_keep": 3,
    }
    (store_root / "config.json").write_text(json.dumps({"telemetry_retention": config}))
    with open_store(store_root, maintenance=False) as store:
        settings = store.retention()
    want_days = {**SPEC_DAYS, "audit": 7}
    del want_days["runs"]
    assert settings.days == want_days
    assert settings.max_disk_gb is None
    assert settings.auto_compact is False
    assert settings.maintenance_interval == dt.timedelta(minutes=15)
    assert settings.backups_keep == 3
    for name in ("audit_days", "runs_days", *config):
        assert settings.source(name) == "config.json", name
    assert settings.source("outcomes_days") == "schema process_triage"

    out = cli("retention", "--dry-run", root=store_root)
    assert out.returncode == 0, out.stderr
    shown = table_rows(out.stdout)
    assert shown["audit_days"] == ("7", "config.json")
    assert shown["runs_days"] == ("forever", "config.json")
    assert shown["max_disk_gb"] == ("no budget", "config.json")
    assert shown["auto_compact"] == ("false", "config.json")
    assert shown["maintenance_interval"] == ("15m", "config.json")
    assert shown["backups_keep"] == ("3", "config.json")
    assert shown["outcomes_days"] == ("365", "schema process_triage")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("soon", "not an age"),
        ("0s", "no interval"),
        (3600, 'use a duration like "1h"'),
    ],
)
def test_a_bad_maintenance_interval_is_refused_naming_file_and_key(
    store_root: Path, value: Any, message: str
) -> None:
    with open_store(store_root, maintenance=False) as store:
        section = {"maintenance_interval": value}
        (store_root / "config.json").write_text(json.dumps({"telemetry_retention": section}))
        with pytest.raises(telelake.StoreError, match=message) as excinfo:
            store.retention()
    assert "config.json: telemetry_retention.maintenance_interval" in str(excinfo.value)


MINI = """
name = "mini"
version = "1.0.0"
{top}
[tables.events]
time = "ts"
retention_days = 5
columns = [
  {{ name = "ts", type = "timestamp", nullable = false }},
  {{ name = "n", type = "int64" }},
]
"""


def test_a_user_schema_chooses_its_own_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "plain.toml"
    plain.write_text(MINI.format(top=""))
    with telelake.open(tmp_path / "a", schema=plain, maintenance=False) as store:
        settings = store.retention()
    assert settings.days == {"events": 5}
    assert (settings.max_disk_gb, settings.auto_compact) == (None, False)
    assert settings.source("max_disk_gb") == "telelake default"

    own = tmp_path / "own.toml"
    top = """default_root = "mini/data"
[retention]
max_disk_gb = 0.5
auto_compact = false
maintenance_interval = "30m"
backups_keep = 2
"""
    own.write_text(MINI.format(top=top))
    with telelake.open(tmp_path / "b", schema=own, maintenance=False) as store:
        settings = store.retention()
    assert (settings.max_disk_gb, settings.auto_compact) == (0.5, False)
    assert settings.maintenance_interval == dt.timedelta(minutes=30)
    assert settings.backups_keep == 2
    assert settings.source("max_disk_gb") == "schema mini"
    monkeypatch.delenv("TELELAKE_ROOT")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    import platformdirs

    assert telelake.store.default_root(own) == Path(platformdirs.user_data_dir(), "mini/data")


@pytest.mark.parametrize(
    ("top", "message"),
    [
        ('[retention]\nmax_disk_gb = "10"', "max_disk_gb must be a positive number"),
        ("[retention]\nmax_disk_gb = 0", "max_disk_gb must be a positive number"),
        ("[retention]\nauto_compact = 1", "auto_compact must be true or false"),
        ('[retention]\nmaintenance_interval = "soon"', "maintenance_interval: not an age"),
        ("[retention]\nmax_disk = 10", "unknown setting 'max_disk'"),
        ("[retention]\naudit_days = 10", "unknown setting 'audit_days'"),
        ('default_root = "../elsewhere"', "default_root must be a relative path"),
    ],
)
def test_schema_retention_mistakes_are_refused(tmp_path: Path, top: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(MINI.format(top=top))
    with pytest.raises(telelake.SchemaError, match=message) as excinfo:
        telelake.open(tmp_path / "s", schema=path)
    assert str(path) in str(excinfo.value)


# -- maintenance by itself ------------------------------------------------------------------


def test_maintenance_runs_in_the_background_when_due_and_keeps_every_new_row(
    store_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = seed(store_root)
    with open_store(store_root, maintenance=False) as store:
        first = store.maintain()  # the store's first run: expired rows go
    assert first.status == "ok" and first.trigger == "manual"
    assert first.removed["audit"].rows == len(rows) - sum(kept(rows, 365, first.started).values())

    # More expired rows arrive (copied in from an old host, say) while the last run is
    # recent: opening does not run maintenance again before the interval is over.
    old_again = audit_rows(OLD_DAYS, 5, "late")
    with open_store(store_root, maintenance=False) as store:
        store.write("audit", old_again)
    monkeypatch.delenv("TELELAKE_MAINTENANCE")  # the default: on
    with open_store(store_root) as store:
        look = wait_for_look(store)
        assert look.status == "skipped" and look.skipped and "not due" in look.skipped
        assert messages(store) == kept(rows, 365, NOW) + Counter(r["message"] for r in old_again)
    assert len(recorded(store_root)) == 1

    # An hour and more later, the next open for writing runs it in the background,
    # while this process keeps writing new rows.
    age_last_run(store_root, hours=1.5)
    new_rows: list[dict[str, Any]] = []
    with open_store(store_root) as store:
        background = store._upkeep
        assert background is not None
        i = 0
        while not background.looked.is_set() and i < 2000:
            row = audit_rows((0,), 1, f"new {i}")[0]
            store.write("audit", [row])
            new_rows.append(row)
            i += 1
        report = wait_for_look(store)
        assert report.status == "ok" and report.trigger == "background"
        got = messages(store)
    want = kept(rows, 365, NOW) + Counter(r["message"] for r in new_rows)
    assert got == want  # every new row once, no expired row
    assert report.removed["audit"].rows == len(old_again)
    assert report.removed["audit"].bytes > 0
    assert report.bytes_freed >= report.removed["audit"].bytes

    # The record survives reopening, and status shows it.
    with open_store(store_root, maintenance=False) as store:
        st = store.status()
    assert st.last_run is not None
    assert st.last_run.to_json() == report.to_json()
    assert [r["trigger"] for r in recorded(store_root)] == ["manual", "background"]
    assert st.next_due is not None and st.last_run.finished is not None
    assert st.next_due == st.last_run.finished + dt.timedelta(hours=1)
    audit = next(t for t in st.tables if t.table == "audit")
    assert audit.rows == sum(want.values())


def test_maintenance_can_be_turned_off(store_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(store_root, per_day=1)
    monkeypatch.delenv("TELELAKE_MAINTENANCE")
    with open_store(store_root, maintenance=False) as store:
        assert store._upkeep is None
    monkeypatch.setenv("TELELAKE_MAINTENANCE", "off")
    with open_store(store_root) as store:
        assert store._upkeep is None
        assert store.status().automatic == "off ($TELELAKE_MAINTENANCE=off)"
    monkeypatch.delenv("TELELAKE_MAINTENANCE")
    section = {"maintenance_interval": "off"}
    (store_root / "config.json").write_text(json.dumps({"telemetry_retention": section}))
    with open_store(store_root) as store:
        assert store._upkeep is None
        assert store.status().automatic.startswith("off (maintenance_interval = off")
        assert store.status().next_due is None
    assert recorded(store_root) == []
    with open_store(store_root, maintenance=True) as store:  # True overrides them
        assert wait_for_look(store).status == "ok"
    monkeypatch.setenv("TELELAKE_MAINTENANCE", "sometimes")
    with pytest.raises(telelake.StoreError, match="TELELAKE_MAINTENANCE"):
        open_store(store_root)


def test_no_background_maintenance_without_work(tmp_path: Path) -> None:
    # agent_runs declares no retention, disk budget or auto_compact: nothing to do.
    with telelake.open(tmp_path / "runs", schema="agent_runs", maintenance=True) as store:
        assert store._upkeep is None
        assert "nothing to do" in store.status().automatic


HOLD_LOCK = textwrap.dedent(
    """
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\\n".encode())
    print("locked", flush=True)
    sys.stdin.read()
    """
)


def test_one_process_at_a_time(store_root: Path) -> None:
    rows = seed(store_root, per_day=2)
    lock = store_root / "_metadata" / "maintenance.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with open_store(store_root, maintenance=True) as store:
            look = wait_for_look(store)  # due (never run), but another process holds it
            assert look.status == "skipped" and look.busy
            assert look.skipped == f"another process is maintaining this store (pid {holder.pid})"
            assert store.status().running == holder.pid
            assert store.maintain().status == "skipped"
            assert messages(store) == Counter(r["message"] for r in rows)  # nothing removed
        out = cli("maintain", root=store_root)
        assert out.returncode == 0, out.stderr
        assert f"skipped: another process is maintaining this store (pid {holder.pid})" in (
            out.stdout
        )
        assert f"running now: pid {holder.pid}" in cli("status", root=store_root).stdout
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    assert recorded(store_root) == []
    with open_store(store_root, maintenance=False) as store:
        assert store.status().running is None
        report = store.maintain()
        assert report.status == "ok"
        assert messages(store) == kept(rows, 365, report.started)


OPENER = textwrap.dedent(
    """
    import sys, telelake
    barrier = sys.stdin.readline()  # every opener starts together
    with telelake.open(sys.argv[1], host_id=sys.argv[2], maintenance=True) as store:
        assert store._upkeep is not None and store._upkeep.looked.wait(60)
        print(store._upkeep.last.status)
    """
)


def test_openers_at_once_run_maintenance_once(store_root: Path) -> None:
    rows = seed(store_root, per_day=20)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, str(store_root), HOST],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outs = []
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(out.strip())
    assert outs.count("ok") == 1, outs  # the others found it locked or not due any more
    assert set(outs) <= {"ok", "skipped"}
    runs = recorded(store_root)
    assert len(runs) == 1 and runs[0]["status"] == "ok"
    with open_store(store_root, maintenance=False) as store:
        assert messages(store) == kept(rows, 365, NOW)


def test_close_stops_a_run_between_steps_and_the_next_run_finishes(
    store_root: Path,
) -> None:
    rows = seed(store_root, per_day=50, days=tuple(range(380, 420)) + NEW_DAYS)
    store = open_store(store_root, maintenance=True)
    time.sleep(0.05)
    store.close()  # stops the run after its step in progress
    assert store._upkeep is None
    runs = recorded(store_root)
    assert len(runs) <= 1 and all(r["status"] in ("ok", "interrupted") for r in runs)
    with open_store(store_root, maintenance=False) as check:
        got = messages(check)
        # Whatever was removed was removed whole and once: nothing doubled, no new row lost.
        assert all(n == 1 for n in got.values())
        assert set(got) >= set(kept(rows, 365, NOW))
        report = check.maintain()
        assert report.status == "ok"
        assert messages(check) == kept(rows, 365, report.started)
        runs, _ = upkeep.read_runs(check)
    # An interrupted run does not count as one: the interval runs from this one.
    last = upkeep.last_completed(runs)
    assert last is not None and last.to_json() == report.to_json()


# -- the command line ---------------------------------------------------------------------


def test_cli_maintain_then_status(store_root: Path) -> None:
    rows = seed(store_root, per_day=3)
    old = len(rows) - sum(kept(rows, 365, NOW).values())
    out = cli("maintain", root=store_root)
    assert out.returncode == 0, out.stderr
    assert "maintenance: ok (manual)" in out.stdout
    assert f"retention removed: audit {old} rows" in out.stdout
    record = recorded(store_root)[-1]
    assert record["retention"]["audit"]["rows"] == old
    assert f"bytes freed: {record['bytes_freed']:,}" in out.stdout

    out = cli("status", root=store_root)
    assert out.returncode == 0, out.stderr
    assert "automatic maintenance: off ($TELELAKE_MAINTENANCE=off)" in out.stdout
    assert f"last run: ok (manual), started {record['started']}" in out.stdout
    assert f"retention removed: audit {old} rows" in out.stdout
    assert re.search(r"│ audit\s+│ lake\s+│ " + str(len(rows) - old) + r"\s", out.stdout)
    assert re.search(r"max_disk_gb\W+10\W+schema process_triage", out.stdout)

    out = cli("status", "--format", "json", root=store_root, TELELAKE_MAINTENANCE="on")
    assert out.returncode == 0, out.stderr
    st = json.loads(out.stdout)
    assert st["maintenance"]["last_run"] == record
    assert st["maintenance"]["automatic"] == "every 1h (telelake default)"
    finished = dt.datetime.fromisoformat(record["finished"].replace("Z", "+00:00"))
    assert st["maintenance"]["next_due"] == upkeep.iso(finished + dt.timedelta(hours=1))
    audit = next(t for t in st["tables"] if t["table"] == "audit")
    assert audit["rows"] == len(rows) - old
    assert st["settings"]["max_disk_gb"] == {"value": 10.0, "from": "schema process_triage"}


def test_cli_maintain_every_keeps_running_until_interrupted(store_root: Path) -> None:
    seed(store_root, per_day=1)
    env = {**os.environ, "TELELAKE_ROOT": str(store_root), "COLUMNS": "200"}
    proc = subprocess.Popen(
        [TELELAKE, "maintain", "--every", "1s", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while len(recorded(store_root)) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out.rstrip().endswith("stopped")
    runs = recorded(store_root)
    assert len(runs) >= 3
    assert {r["trigger"] for r in runs} == {"manual"}
    starts = [dt.datetime.fromisoformat(r["started"].replace("Z", "+00:00")) for r in runs]
    finishes = [dt.datetime.fromisoformat(r["finished"].replace("Z", "+00:00")) for r in runs]
    for before, after in zip(finishes, starts[1:], strict=False):
        assert after - before >= dt.timedelta(seconds=1)  # --every 1s: not sooner


def test_cli_maintain_refuses_a_bad_interval(store_root: Path) -> None:
    out = cli("maintain", "--every", "often", root=store_root)
    assert out.returncode == 1
    assert "--every: not an age: 'often'" in out.stderr


def test_search_ops_retention_runs_by_itself_hourly_in_bounded_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spec 001: "Retention cleanup runs hourly in bounded batches by table". A search_ops
    store opened for writing runs it in the background (maintenance_interval 1h by
    default), deleting batch by batch, and records what each table lost."""
    root = tmp_path / "ops"
    now_ms = to_ms(NOW)
    rng = random.Random(3)
    groups = [("p", "i")]
    events = random_events(rng, 60, groups, now_ms - 20 * 86_400_000, 10 * 86_400_000, "old")
    events += random_events(rng, 40, groups, now_ms - 3 * 86_400_000, 86_400_000, "new")
    with telelake.open(root, schema="search_ops", maintenance=False) as store:
        setup_fleet(store, {"p": ["i"]})
        store.write("search_events", events)
    cut = now_ms - 7 * 86_400_000  # rows sit days away from it: the real clock is safe
    expired = {e["event_id"] for e in events if e["ts_ms"] < cut}
    assert len(expired) == 60
    # No summary is older than 90 days: only search_events loses rows, in 9 batches.
    monkeypatch.setattr(telelake.sql.tier, "RETENTION_BATCH", 7)
    monkeypatch.delenv("TELELAKE_MAINTENANCE")  # the default: on
    with telelake.open(root, schema="search_ops") as store:
        report = wait_for_look(store)
        assert store.status().automatic.startswith("every 1h")
    assert report.status == "ok" and report.trigger == "background"
    assert {t: r.rows for t, r in report.removed.items()} == {"search_events": 60}
    left = {r[0] for r in db_rows(root, "SELECT event_id FROM search_events")}
    assert left == {e["event_id"] for e in events} - expired
    assert recorded(root)[-1]["retention"]["search_events"]["rows"] == 60


def test_background_thread_does_not_outlive_close(store_root: Path) -> None:
    seed(store_root, per_day=1)
    with open_store(store_root, maintenance=True) as store:
        background = store._upkeep
        assert background is not None
        wait_for_look(store)
        assert background.thread.is_alive()  # waits for the next due time
    assert not background.thread.is_alive()
    assert not [t for t in threading.enumerate() if t.name.startswith("telelake-maintenance")]


def test_a_failed_run_is_recorded_and_reported(store_root: Path) -> None:
    rows = seed(store_root, per_day=1)
    bad = {"telemetry_retention": {"audit_dayz": 30}}
    (store_root / "config.json").write_text(json.dumps(bad))
    with open_store(store_root, maintenance=False) as store:
        report = store.maintain()
        assert report.status == "failed"
        assert len(report.errors) == 1 and "audit_dayz: unknown key" in report.errors[0]
        assert messages(store) == Counter(r["message"] for r in rows)  # nothing removed
    assert recorded(store_root)[-1]["status"] == "failed"
    out = cli("maintain", root=store_root)
    assert out.returncode == 1
    assert "maintenance: failed (manual)" in out.stdout
    assert "error: " in out.stdout and "audit_dayz: unknown key" in out.stdout
    st = cli("status", root=store_root)
    assert st.returncode == 1
    assert "last run: failed (manual)" in st.stdout
    assert "audit_dayz: unknown key" in st.stderr  # the settings cannot be read either
    assert table_rows(st.stdout)["audit"][1] == str(len(rows))  # the tables are shown


# -- temp files of killed writers (issue 19.19) ------------------------------------------


def test_temp_files_of_killed_writers_go_on_open_and_in_maintenance(tmp_path: Path) -> None:
    """A writer killed mid-publish leaves its hidden temp file (up to a Parquet file's
    size). Files nobody holds are removed by the next open and by maintenance; a live
    writer's (it holds the temp's lock) stays, however old."""
    import fcntl

    root = tmp_path / "store"
    with open_store(root, maintenance=False) as store:
        store.write("audit", audit_rows((3,), 5, "a"))
        store.fold()
    (data_file,) = (root / "audit").rglob("*.parquet")
    old = time.time() - 3600

    def killed_writer_temp(final: Path, size: int) -> Path:
        tmp = final.with_name(f".{final.name}.deadbeef.tmp")  # as durable.temp_path_for names it
        tmp.write_bytes(os.urandom(size))  # nobody holds its lock: its writer is gone
        os.utime(tmp, (old, old))
        return tmp

    dead = [
        killed_writer_temp(data_file.with_name("audit_x.parquet"), 5 << 20),
        killed_writer_temp(root / "_wal" / "audit" / "20260101T000000Z-1-x.wal", 100),
        killed_writer_temp(root / "_metadata" / "host_info.json", 10),
    ]
    live = killed_writer_temp(data_file.with_name("audit_live.parquet"), 100)
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a live writer holds its temp file (durable.owned_temp)
    try:
        os.utime(live, (old, old))
        with open_store(root, maintenance=False) as store:
            assert [p for p in dead if p.exists()] == []
            assert live.exists()
            assert store.sql("SELECT count(*) FROM audit").scalar() == 5
            later = killed_writer_temp(data_file.with_name("audit_y.parquet"), 1000)
            report = store.maintain()
            assert not later.exists() and live.exists()
            assert (report.temp_files, report.temp_bytes) == (1, 1000)
            assert store.check().findings == []  # a live writer's temp is no problem
    finally:
        os.close(fd)
    assert live.exists()  # (a test's own temp: gone once a store opens after its "death")
    with open_store(root, maintenance=False):
        assert not live.exists()
