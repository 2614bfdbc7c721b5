"""The built-in collector: a real collection of this host, checked independently, plus unit
tests of the pure feature and /proc parsing functions."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.table import Table as RichTable

import telelake
from conftest import TEST_HOST_ID
from telelake import validate
from telelake.collect import CollectResult, collect, render, summary
from telelake.collect import features as F
from telelake.collect import sampler as S
from telelake.collect import session as session_mod
from telelake.schema.load import load_schema

SCHEMA = load_schema("process_triage")
AGE_ENUM = list(SCHEMA.tables["proc_features"].column("age_bucket").enum or ())
MEM_ENUM = list(SCHEMA.tables["proc_features"].column("mem_bucket").enum or ())
MIB = 2**20
HOUR, DAY = 3600, 86400
LINUX = sys.platform.startswith("linux") and Path("/proc/self/stat").exists()


# -- a real collection ---------------------------------------------------------------------


@pytest.fixture
def collected(store: telelake.Store) -> Iterator[tuple[telelake.Store, CollectResult]]:
    """Two real snapshots of this host, 0.2 s apart, in a fresh store."""
    calls: list[tuple[int, int]] = []
    result = collect(store, samples=2, interval=0.2, on_sample=lambda i, n: calls.append((i, n)))
    assert calls == [(1, 2), (2, 2)]
    yield store, result


def _samples(store: telelake.Store, sid: str) -> list[dict[str, Any]]:
    return store.sql(
        "SELECT * FROM proc_samples WHERE session_id = $sid ORDER BY sample_seq, pid", {"sid": sid}
    ).to_pylist()


def test_result_matches_what_was_written(collected: tuple[telelake.Store, CollectResult]) -> None:
    store, result = collected
    assert re.fullmatch(r"pt-\d{8}-\d{6}-[0-9a-z]{4}", result.session_id)
    assert result.samples == 2
    for table, n in result.rows.items():
        count = store.sql(
            f'SELECT COUNT(*) FROM "{table}" WHERE session_id = $sid', {"sid": result.session_id}
        ).scalar()
        assert count == n, table
    assert set(result.rows) == {"proc_samples", "proc_features", "runs", "audit"}
    seqs = store.sql("SELECT DISTINCT sample_seq FROM proc_samples ORDER BY 1").rows()
    assert seqs == [(0,), (1,)]
    # host_id is the store's, taken from the partition path.
    hosts = store.sql("SELECT DISTINCT host_id FROM proc_samples").rows()
    assert hosts == [(TEST_HOST_ID,)]


def test_own_process_is_sampled_truthfully(collected: tuple[telelake.Store, CollectResult]) -> None:
    store, result = collected
    mine = [r for r in _samples(store, result.session_id) if r["pid"] == os.getpid()]
    assert [r["sample_seq"] for r in mine] == [0, 1]
    for r in mine:
        assert r["ppid"] == os.getppid()
        assert r["uid"] == os.getuid()
        assert r["euid"] == os.geteuid()
        argv0 = Path("/proc/self/cmdline").read_bytes().split(b"\0")[0].decode()
        assert r["cmdline"].startswith(argv0)
        assert r["cmdline_hash"] == hashlib.sha256(r["cmdline"].encode()).hexdigest()
        assert r["sample_ts"].utcoffset() == dt.timedelta(0)
        assert r["state"] in {"R", "S", "D"}
        assert r["rss_bytes"] > 0
        assert r["pgid"] == os.getpgid(0) and r["sid"] == os.getsid(0)
        assert r["cwd"] == os.getcwd()
    # A first snapshot has no interval to measure CPU over; the second has.
    assert mine[0]["cpu_percent"] is None
    assert mine[1]["cpu_percent"] is not None and mine[1]["cpu_percent"] >= 0
    assert mine[1]["utime_ticks"] + mine[1]["stime_ticks"] >= (
        mine[0]["utime_ticks"] + mine[0]["stime_ticks"]
    )
    if LINUX:
        # Read our own /proc entries here, independently of the sampler's parser.
        stat = Path("/proc/self/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        start_ticks = int(fields[22 - 3])
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        btime = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        age = time.time() - (btime + start_ticks / os.sysconf("SC_CLK_TCK"))
        for r in mine:
            assert r["start_time_boot"] == start_ticks
            assert r["start_id"] == f"{boot_id}:{start_ticks}"
            assert abs(r["age_s"] - age) <= 5
            assert r["oom_score_adj"] == int(Path("/proc/self/oom_score_adj").read_text())


def test_every_sample_row_is_well_formed(collected: tuple[telelake.Store, CollectResult]) -> None:
    store, result = collected
    rows = _samples(store, result.session_id)
    assert len({r["pid"] for r in rows}) > 1
    by_seq: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_seq[r["sample_seq"]].append(r)
        assert r["cmd"]
        assert (r["cmdline"] is None) == (r["cmdline_hash"] is None)
        assert r["exe"] != "" and r["cwd"] != ""
        assert r["start_id"].endswith(f":{r['start_time_boot']}")
        assert r["age_s"] >= 0
        if r["wchan"] is not None:
            assert r["wchan"] not in ("", "0")
        if r["systemd_unit"] is not None:
            assert r["systemd_unit"].endswith((".service", ".scope"))
            assert r["systemd_unit"] in r["cgroup_path"].split("/")
    for seq_rows in by_seq.values():
        kids = Counter(r["ppid"] for r in seq_rows)
        for r in seq_rows:
            assert r["child_count"] == kids.get(r["pid"], 0)


def _age_bucket(age: int) -> str:
    # Written out independently of features.AGE_BUCKETS.
    if age <= 3600:
        return "1h"
    if age <= 6 * 3600:
        return "6h"
    if age <= 86400:
        return "1d"
    if age <= 3 * 86400:
        return "3d"
    if age <= 7 * 86400:
        return "7d"
    if age <= 14 * 86400:
        return "14d"
    return "30d"


def _mem_bucket(rss: int) -> str:
    mb = rss / 2**20
    if mb < 10:
        return "tiny"
    if mb < 100:
        return "small"
    if mb < 1024:
        return "medium"
    if mb < 4096:
        return "large"
    return "huge"


def test_features_equal_a_brute_force_recomputation(
    collected: tuple[telelake.Store, CollectResult],
) -> None:
    store, result = collected
    samples = _samples(store, result.session_id)
    feats = store.sql(
        "SELECT * FROM proc_features WHERE session_id = $sid", {"sid": result.session_id}
    ).to_pylist()
    groups: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for s in samples:
        groups[(s["pid"], s["start_id"])].append(s)
    assert sorted((f["pid"], f["start_id"]) for f in feats) == sorted(groups)
    for f in feats:
        group = sorted(groups[(f["pid"], f["start_id"])], key=lambda s: s["sample_seq"])
        first, last = group[0], group[-1]
        kids = sum(
            1 for s in samples if s["sample_seq"] == last["sample_seq"] and s["ppid"] == f["pid"]
        )
        assert f["feature_ts"] == last["sample_ts"]
        assert f["age_s"] == last["age_s"]
        assert f["age_bucket"] == _age_bucket(last["age_s"])
        assert f["mem_bucket"] == _mem_bucket(last["rss_bytes"])
        assert f["mem_mb"] == pytest.approx(last["rss_bytes"] / 2**20, rel=1e-6)
        assert f["mem_pct"] == pytest.approx(last["mem_percent"], rel=1e-6)
        assert f["is_orphan"] == (last["ppid"] == 1)
        assert f["is_zombie"] == (last["state"] == "Z")
        assert f["is_stopped"] == (last["state"] in ("T", "t"))
        assert f["is_sleeping"] == (last["state"] == "S")
        assert f["is_running"] == (last["state"] == "R")
        assert f["has_tty"] == (last["tty"] is not None)
        assert f["has_children"] == (kids > 0)
        if last["tcp_listen_count"] is None:
            assert f["is_listener"] is None and f["has_network"] is None
        else:
            assert f["is_listener"] == (last["tcp_listen_count"] > 0)
            assert f["has_network"] == (last["tcp_listen_count"] + last["tcp_estab_count"] > 0)
        assert 0 < f["proc_type_conf"] <= 1
        assert f["age_ratio"] >= 0
        assert not re.search(r"\d", f["cmd_pattern"])
        for col in ("cpu_spinning", "tty_active", "tty_dead", "children_active"):
            assert f[col] is None
        cpu = [s["cpu_percent"] for s in group if s["cpu_percent"] is not None]
        if len(group) == 1:
            for col in ("cpu_delta_ticks", "cpu_stalled", "mem_growth_rate", "io_read_rate"):
                assert f[col] is None, col
            assert f["cpu_pct_instant"] == 0.0
            assert f["cpu_pct_avg"] is None
            continue
        elapsed = (last["sample_ts"] - first["sample_ts"]).total_seconds()
        delta = (last["utime_ticks"] + last["stime_ticks"]) - (
            first["utime_ticks"] + first["stime_ticks"]
        )
        assert f["cpu_delta_ticks"] == delta
        assert f["cpu_stalled"] == (delta == 0)
        assert f["cpu_pct_avg"] == pytest.approx(sum(cpu) / len(cpu), rel=1e-5)
        assert f["cpu_pct_instant"] == pytest.approx(last["cpu_percent"], rel=1e-5)
        growth = (last["rss_bytes"] - first["rss_bytes"]) / elapsed
        assert f["mem_growth_rate"] == pytest.approx(growth, rel=1e-5, abs=1e-3)
        if first["io_read_bytes"] is not None and last["io_read_bytes"] is not None:
            rate = (last["io_read_bytes"] - first["io_read_bytes"]) / elapsed
            assert f["io_read_rate"] == pytest.approx(rate, rel=1e-5, abs=1e-3)
            assert f["io_active"] == ((f["io_read_rate"] or 0) > 0 or (f["io_write_rate"] or 0) > 0)
            assert f["io_idle"] == (not f["io_active"])


def test_runs_row(collected: tuple[telelake.Store, CollectResult]) -> None:
    store, result = collected
    runs = store.sql(
        "SELECT * FROM runs WHERE session_id = $sid", {"sid": result.session_id}
    ).to_pylist()
    assert len(runs) == 1
    run = runs[0]
    distinct = store.sql(
        "SELECT COUNT(*) FROM (SELECT DISTINCT pid, start_id FROM proc_samples "
        "WHERE session_id = $sid)",
        {"sid": result.session_id},
    ).scalar()
    assert run["processes_scanned"] == distinct == result.processes
    assert run["mode"] == "collect" and run["state"] == "completed"
    assert run["deep_scan"] is False
    for col in ("candidates_found", "kills_attempted", "kills_successful", "spares"):
        assert run[col] == 0
    assert run["pt_version"] == run["pt_core_version"] == telelake.__version__
    assert run["schema_version"] == store.schema.version
    assert run["host_id"] == store.host_id == TEST_HOST_ID
    assert run["uid"] == os.getuid()
    assert run["cores"] == os.cpu_count()
    assert run["memory_bytes"] and run["memory_bytes"] > 0
    assert run["os_family"] == platform.system().lower()
    assert run["kernel_version"] == platform.release()
    first_ts = store.sql(
        "SELECT MIN(sample_ts) FROM proc_samples WHERE session_id = $sid",
        {"sid": result.session_id},
    ).scalar()
    assert run["started_at"] <= first_ts <= run["ended_at"]
    took = (run["ended_at"] - run["started_at"]).total_seconds() * 1000
    assert abs(run["duration_ms"] - took) <= 1
    assert run["duration_ms"] >= 200  # two samples, 0.2 s apart
    assert run["started_at"].strftime("pt-%Y%m%d-%H%M%S-") == result.session_id[:-4]


def test_audit_trail(collected: tuple[telelake.Store, CollectResult]) -> None:
    store, result = collected
    rows = store.sql(
        "SELECT * FROM audit WHERE session_id = $sid ORDER BY audit_ts", {"sid": result.session_id}
    ).to_pylist()
    assert [r["event_type"] for r in rows] == [
        "scan_start",
        "sample_taken",
        "sample_taken",
        "scan_complete",
    ]
    assert {(r["severity"], r["actor"], r["host_id"]) for r in rows} == {
        ("info", "system", TEST_HOST_ID)
    }
    assert all(r["message"] for r in rows)


def test_summary_and_render(collected: tuple[telelake.Store, CollectResult]) -> None:
    store, result = collected
    out = summary(store, limit=3)  # no session id: the latest, i.e. this one
    assert {"top_cpu", "top_rss", "tables"} <= set(out)
    assert out["session"].scalar() == result.session_id
    assert 1 <= len(out["top_cpu"]) <= 3 and 1 <= len(out["top_rss"]) <= 3
    rss = [r["rss_mb"] for r in out["top_rss"].to_pylist()]
    assert rss == sorted(rss, reverse=True)
    biggest = store.sql(
        "SELECT MAX(rss_bytes) FROM proc_samples WHERE session_id = $sid AND sample_seq = 1",
        {"sid": result.session_id},
    ).scalar()
    assert rss[0] == pytest.approx(biggest / MIB, abs=0.06)
    tables = {r["table"]: r for r in out["tables"].to_pylist()}
    for stat in store.stats():
        assert tables[stat.table]["rows"] == stat.rows
        assert tables[stat.table]["files"] == stat.files
    rendered = render(out)
    assert len(rendered) == len(out) and all(isinstance(t, RichTable) for t in rendered)
    assert summary(store, "pt-19700101-000000-none")["top_cpu"].rows() == []


def test_empty_store_summary(store: telelake.Store) -> None:
    out = summary(store)
    assert len(out["top_cpu"]) == 0 and len(out["session"]) == 0
    assert {r["rows"] for r in out["tables"].to_pylist()} == {0}


# -- the session with an injected clock, and its failure path ----------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 1, 15, 14, 30, 22, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(milliseconds=250)
        return self.now


def test_injected_clock_and_sleep(store: telelake.Store) -> None:
    waits: list[float] = []
    result = collect(store, samples=3, interval=5.0, clock=FakeClock(), sleep=waits.append)
    assert result.session_id.startswith("pt-20260115-143022-")
    assert len(waits) == 2 and all(0 < w <= 10.0 for w in waits)  # paced, never slept for real
    stamps = store.sql("SELECT DISTINCT sample_ts FROM proc_samples ORDER BY 1").rows()
    assert len(stamps) == 3 and stamps[0][0].year == 2026


def test_failure_is_recorded_and_raised(
    store: telelake.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = S.Sampler.snapshot

    def flaky(self: S.Sampler, session_id: str, seq: int, ts: dt.datetime) -> list[Any]:
        if seq == 1:
            raise RuntimeError("boom")
        return real(self, session_id, seq, ts)

    monkeypatch.setattr(S.Sampler, "snapshot", flaky)
    with pytest.raises(RuntimeError, match="boom"):
        collect(store, samples=2, interval=0.0)
    run = store.sql("SELECT state, processes_scanned FROM runs").to_pylist()
    assert len(run) == 1 and run[0]["state"] == "failed" and run[0]["processes_scanned"] > 0
    events = store.sql("SELECT event_type, severity FROM audit ORDER BY audit_ts").rows()
    assert events[0] == ("scan_start", "info") and events[-1] == ("scan_failed", "error")


@pytest.mark.parametrize("samples", [0, -1, 2**15])
def test_bad_arguments(store: telelake.Store, samples: int) -> None:
    with pytest.raises(ValueError):
        collect(store, samples=samples)
    for interval in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            collect(store, samples=1, interval=interval)
    assert store.stats() and all(s.rows == 0 for s in store.stats())  # nothing written


def test_session_id_form() -> None:
    when = dt.datetime(2026, 1, 15, 15, 30, 22, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    sid = session_mod.new_session_id(when)
    assert re.fullmatch(r"pt-20260115-143022-[0-9a-z]{4}", sid)


# -- features: hand-built samples ---------------------------------------------------------------

T0 = dt.datetime(2026, 1, 15, 12, 0, 0, tzinfo=dt.UTC)


def sample(seq: int = 0, **over: Any) -> dict[str, Any]:
    """A minimal proc_samples row for features (seq n is taken 10 s after seq n-1)."""
    row: dict[str, Any] = {
        "session_id": "pt-20260115-120000-test",
        "sample_ts": T0 + dt.timedelta(seconds=10 * seq),
        "sample_seq": seq,
        "pid": 4242,
        "ppid": 4000,
        "start_id": "boot:1000",
        "age_s": 100 + 10 * seq,
        "cmd": "python3",
        "cmdline": "python3 -u /srv/app/worker_12.py --port 8080",
        "state": "S",
        "utime_ticks": 100,
        "stime_ticks": 0,
        "rss_bytes": 100 * MIB,
        "mem_percent": 1.5,
        "cpu_percent": None,
        "io_read_bytes": 0,
        "io_write_bytes": 0,
        "tty": None,
        "tcp_listen_count": 0,
        "tcp_estab_count": 0,
        "child_count": 0,
        "systemd_unit": None,
    }
    row.update(over)
    return row


@pytest.mark.parametrize(
    ("age", "bucket"),
    [
        (0, "1h"),
        (HOUR, "1h"),
        (HOUR + 1, "6h"),
        (6 * HOUR, "6h"),
        (DAY, "1d"),
        (DAY + 1, "3d"),
        (3 * DAY, "3d"),
        (7 * DAY, "7d"),
        (14 * DAY, "14d"),
        (14 * DAY + 1, "30d"),
        (400 * DAY, "30d"),
    ],
)
def test_age_bucket_boundaries(age: int, bucket: str) -> None:
    assert F.age_bucket(age) == bucket == _age_bucket(age)


@pytest.mark.parametrize(
    ("rss", "bucket"),
    [
        (0, "tiny"),
        (10 * MIB - 1, "tiny"),
        (10 * MIB, "small"),
        (100 * MIB - 1, "small"),
        (100 * MIB, "medium"),
        (1024 * MIB - 1, "medium"),
        (1024 * MIB, "large"),
        (4096 * MIB - 1, "large"),
        (4096 * MIB, "huge"),
    ],
)
def test_mem_bucket_boundaries(rss: int, bucket: str) -> None:
    assert F.mem_bucket(rss) == bucket == _mem_bucket(rss)


@given(st.integers(min_value=0, max_value=10**10), st.integers(min_value=0, max_value=10**10))
def test_age_bucket_total_and_monotonic(a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    assert F.age_bucket(lo) in AGE_ENUM and F.age_bucket(hi) in AGE_ENUM
    assert AGE_ENUM.index(F.age_bucket(lo)) <= AGE_ENUM.index(F.age_bucket(hi))


@given(st.integers(min_value=0, max_value=2**50), st.integers(min_value=0, max_value=2**50))
def test_mem_bucket_total_and_monotonic(a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    assert F.mem_bucket(lo) in MEM_ENUM and F.mem_bucket(hi) in MEM_ENUM
    assert MEM_ENUM.index(F.mem_bucket(lo)) <= MEM_ENUM.index(F.mem_bucket(hi))


def test_rates_with_two_samples() -> None:
    rows = [
        sample(0),
        sample(
            1,
            utime_ticks=130,
            stime_ticks=20,
            rss_bytes=110 * MIB,
            io_read_bytes=5000,
            io_write_bytes=0,
            cpu_percent=50.0,
            tcp_listen_count=1,
        ),
    ]
    (f,) = F.derive_features(rows, cores=4, clk_tck=100)
    assert f["feature_ts"] == T0 + dt.timedelta(seconds=10)
    assert f["cpu_delta_ticks"] == 50
    assert f["cpu_pct_instant"] == 50.0 and f["cpu_pct_avg"] == 50.0
    assert f["cpu_utilization"] == pytest.approx(50.0 / 400)
    assert f["cpu_stalled"] is False
    assert f["mem_growth_rate"] == pytest.approx(MIB)  # 10 MiB over 10 s
    assert f["io_read_rate"] == 500.0 and f["io_write_rate"] == 0.0
    assert f["io_active"] is True and f["io_idle"] is False
    assert f["is_listener"] is True and f["has_network"] is True
    assert f["mem_bucket"] == "medium" and f["mem_mb"] == 110.0
    assert f["age_s"] == 110 and f["age_bucket"] == "1h"
    assert f["cmd_pattern"] == "pythonN worker_N.py"


def test_cpu_instant_derived_from_ticks_when_no_percent() -> None:
    rows = [sample(0), sample(1, utime_ticks=150)]  # 50 ticks over 10 s = 5 % of a core
    (f,) = F.derive_features(rows, clk_tck=100)
    assert f["cpu_pct_instant"] == pytest.approx(5.0)
    assert f["cpu_pct_avg"] is None and f["cpu_utilization"] is None


def test_idle_process_is_stalled() -> None:
    (f,) = F.derive_features([sample(0), sample(1)])
    assert f["cpu_delta_ticks"] == 0 and f["cpu_stalled"] is True
    assert f["io_active"] is False and f["io_idle"] is True
    assert f["mem_growth_rate"] == 0.0


def test_single_sample_leaves_deltas_null() -> None:
    (f,) = F.derive_features([sample(0, cpu_percent=None, io_read_bytes=None)])
    for col in (
        "cpu_pct_avg",
        "cpu_delta_ticks",
        "cpu_utilization",
        "cpu_stalled",
        "mem_growth_rate",
        "io_read_rate",
        "io_write_rate",
        "io_active",
        "io_idle",
    ):
        assert f[col] is None, col
    assert f["cpu_pct_instant"] == 0.0


def test_unknown_io_and_network_stay_null() -> None:
    rows = [
        sample(0, io_read_bytes=None, tcp_listen_count=None, tcp_estab_count=None),
        sample(1, io_read_bytes=None, tcp_listen_count=None, tcp_estab_count=None),
    ]
    (f,) = F.derive_features(rows)
    assert f["io_read_rate"] is None and f["io_active"] is None and f["io_idle"] is None
    assert f["has_network"] is None and f["is_listener"] is None


def test_identity_is_pid_and_start_id() -> None:
    # pid 4242 reused by a new process within the session: two feature rows.
    rows = [sample(0), sample(1, start_id="boot:2000", age_s=1), sample(1, pid=1, ppid=0)]
    feats = F.derive_features(rows)
    assert [(f["pid"], f["start_id"]) for f in feats] == [
        (1, "boot:1000"),
        (4242, "boot:1000"),
        (4242, "boot:2000"),
    ]
    assert feats[1]["feature_ts"] == T0  # the old one's latest sample is seq 0


def test_state_flags_and_children() -> None:
    rows = [
        sample(0, pid=10, ppid=1, state="Z", child_count=None),
        sample(0, pid=11, ppid=10, state="t", tty="/dev/pts/3"),
        sample(0, pid=12, ppid=10, state="R"),
    ]
    by_pid = {f["pid"]: f for f in F.derive_features(rows)}
    z, t, r = by_pid[10], by_pid[11], by_pid[12]
    assert z["is_zombie"] and z["is_orphan"] and not z["is_sleeping"]
    assert z["has_children"] is True  # counted from the snapshot when child_count is null
    assert t["is_stopped"] and t["has_tty"] and not t["is_orphan"]
    assert r["is_running"] and not r["has_children"]


def test_mem_pct_falls_back_to_host_memory() -> None:
    (f,) = F.derive_features([sample(0, mem_percent=None)], memory_bytes=1000 * MIB)
    assert f["mem_pct"] == pytest.approx(10.0)
    with pytest.raises(ValueError):
        F.derive_features([sample(0, mem_percent=None)])


@pytest.mark.parametrize(
    ("cmd", "cmdline", "pid", "ppid", "unit", "expected"),
    [
        ("pytest", "/venv/bin/python /venv/bin/pytest tests -q", 50, 40, None, "test"),
        ("python3", "python3 -m pytest -x", 50, 40, None, "test"),
        ("cargo", "cargo test --all", 50, 40, None, "test"),
        ("node", "node /usr/bin/npm run test", 50, 40, None, "test"),
        ("node", "node /app/node_modules/.bin/vite --port 5173", 50, 40, None, "dev_server"),
        ("python", "python manage.py runserver 0.0.0.0:8000", 50, 40, None, "dev_server"),
        ("uvicorn", "/venv/bin/uvicorn app:main --reload", 50, 40, None, "dev_server"),
        ("node", "node /usr/bin/npm run dev", 50, 40, None, "dev_server"),
        ("uvicorn", "/venv/bin/uvicorn app:main", 50, 1, None, "daemon"),
        ("claude", "claude --resume", 50, 40, None, "agent"),
        ("node", "node /usr/local/bin/codex exec", 50, 40, None, "agent"),
        ("-bash", "-bash", 50, 40, None, "shell"),
        ("zsh", None, 50, 1, None, "shell"),
        ("kworker/0:1", None, 77, 2, None, "kernel"),
        ("kthreadd", None, 2, 0, None, "kernel"),
        ("systemd", "/sbin/init", 1, 0, None, "daemon"),
        ("nginx", "nginx: worker process", 900, 899, "nginx.service", "daemon"),
        ("vim", "vim notes.txt", 50, 40, "session-3.scope", "unknown"),
        ("grep", "grep -r pytest /var/log/syslog /tmp /etc", 50, 40, None, "unknown"),
    ],
)
def test_classify(
    cmd: str, cmdline: str | None, pid: int, ppid: int, unit: str | None, expected: str
) -> None:
    rule = F.classify(cmd, cmdline, pid=pid, ppid=ppid, systemd_unit=unit)
    assert rule.proc_type == expected
    assert rule in F.RULES


def test_cmd_pattern_and_protection() -> None:
    assert F.cmd_pattern("kworker/12:3-events", None) == "kworker/N:N-events"
    assert F.cmd_pattern("node", "node --inspect /srv/app/server.js 3000") == "node server.js"
    assert F.cmd_pattern("sleep", "sleep 3600") == "sleep N"
    assert F.is_protected("systemd", pid=1, ppid=0)
    assert F.is_protected("kworker/0:1", pid=99, ppid=2)
    assert F.is_protected("sshd", pid=500, ppid=1)
    assert F.is_protected("systemd-journald", pid=300, ppid=1)
    assert not F.is_protected("python3", pid=4242, ppid=4000)


@given(st.text(max_size=40), st.one_of(st.none(), st.text(max_size=200)))
def test_cmd_pattern_has_no_digits(cmd: str, cmdline: str | None) -> None:
    pattern = F.cmd_pattern(cmd, cmdline)
    assert not re.search(r"[0-9]", pattern) and len(pattern) <= F.CMD_PATTERN_MAX


_opt_int = st.one_of(st.none(), st.integers(min_value=0, max_value=2**40))


@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "pid": st.integers(min_value=1, max_value=6),
                "ppid": st.integers(min_value=0, max_value=6),
                "state": st.sampled_from(list("RSDZTtIX")),
                "age_s": st.integers(min_value=0, max_value=10**9),
                "rss_bytes": st.integers(min_value=0, max_value=2**40),
                "utime_ticks": st.integers(min_value=0, max_value=10**6),
                "cpu_percent": st.one_of(st.none(), st.floats(min_value=0, max_value=800)),
                "io_read_bytes": _opt_int,
                "tcp_listen_count": st.one_of(st.none(), st.integers(0, 5)),
                "child_count": st.one_of(st.none(), st.integers(0, 5)),
                "cmdline": st.one_of(st.none(), st.text(max_size=60)),
            }
        ),
        min_size=1,
        max_size=12,
    ),
    st.integers(min_value=1, max_value=3),
)
def test_derived_rows_always_fit_the_table(overrides: list[dict[str, Any]], seqs: int) -> None:
    rows = []
    for i, over in enumerate(overrides):
        row = sample(i % seqs, **over)
        row["tcp_estab_count"] = None if over["tcp_listen_count"] is None else 0
        rows.append(row)
    feats = F.derive_features(rows, cores=2, memory_bytes=2**34)
    assert len(feats) == len({(r["pid"], r["start_id"]) for r in rows})
    # Every non-null column gets a value of the declared type: validation passes.
    data = validate.to_arrow(SCHEMA.tables["proc_features"], feats)
    assert data.num_rows == len(feats)


# -- sampler: /proc parsing and range fitting -------------------------------------------------


def test_parse_proc_stat_with_awkward_comm() -> None:
    tail = " ".join(str(n) for n in range(4, 53))  # fields 4.. hold their own number
    stat = S.parse_proc_stat(f"123 (a) (b c)) S {tail}\n")
    assert stat.comm == "a) (b c)"
    assert stat.state == "S" and stat.ppid == 4 and stat.pgrp == 5 and stat.session == 6
    assert (stat.utime, stat.stime, stat.cutime, stat.cstime) == (14, 15, 16, 17)
    assert stat.priority == 18 and stat.nice == 19 and stat.num_threads == 20
    assert stat.starttime == 22 and stat.vsize == 23 and stat.rss_pages == 24
    with pytest.raises(ValueError):
        S.parse_proc_stat("123 (x) S 1 2")


@pytest.mark.skipif(not LINUX, reason="needs /proc")
def test_parse_own_proc_stat() -> None:
    stat = S.parse_proc_stat(Path("/proc/self/stat").read_text())
    assert stat.ppid == os.getppid() and stat.pgrp == os.getpgid(0)


def test_cgroup_unit_and_container() -> None:
    v2 = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-vte-42.scope\n"
    path = S.cgroup_path_of(v2)
    assert path == "/user.slice/user-1000.slice/user@1000.service/app.slice/app-vte-42.scope"
    assert S.systemd_unit_of(path) == "app-vte-42.scope"
    assert S.systemd_unit_of("/system.slice/nginx.service") == "nginx.service"
    assert S.systemd_unit_of("/") is None and S.systemd_unit_of(None) is None
    v1 = "12:memory:/foo\n1:name=systemd:/system.slice/cron.service\n"
    assert S.cgroup_path_of(v1) == "/system.slice/cron.service"
    assert S.cgroup_path_of("garbage") is None
    cid = "a" * 63 + "b"
    assert S.container_id_of(f"/system.slice/docker-{cid}.scope") == cid
    assert S.container_id_of(f"/kubepods/besteffort/pod1/cri-containerd-{cid}.scope") == cid
    assert S.container_id_of(f"/docker/{cid}") == cid
    assert S.container_id_of(f"/user.slice/{cid}") is None  # no runtime named
    assert S.container_id_of("/system.slice/docker.service") is None


def test_small_proc_readers() -> None:
    assert S.wchan_of("0") is None and S.wchan_of("") is None and S.wchan_of(None) is None
    assert S.wchan_of("do_epoll_wait\n") == "do_epoll_wait"
    assert S.int_or_none("-1000\n") == -1000 and S.int_or_none("x") is None
    assert S.cmdline_fields([]) == (None, None) and S.cmdline_fields(None) == (None, None)
    text, digest = S.cmdline_fields(["python", "-c", "pass"])
    assert text == "python -c pass"
    assert digest == hashlib.sha256(b"python -c pass").hexdigest()
    # An undecodable argv byte is stored as U+FFFD; the hash is over the original bytes.
    raw = b"cat \xff"
    text, digest = S.cmdline_fields(["cat", os.fsdecode(b"\xff")])
    assert text == "cat \ufffd" and digest == hashlib.sha256(raw).hexdigest()


def test_fit_ints_nulls_out_of_range_values() -> None:
    table = SCHEMA.tables["proc_samples"]
    rows = [{"fd_count": 40_000, "nice": -20, "oom_score_adj": -1000, "pid": 7}]
    assert S.fit_ints(rows, table) == 1
    assert rows[0] == {"fd_count": None, "nice": -20, "oom_score_adj": -1000, "pid": 7}
    with pytest.raises(ValueError):
        S.fit_ints([{"sample_seq": 2**15}], table)
