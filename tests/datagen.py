"""Deterministic generator of realistic, valid rows for the six process_triage tables.

`generate(seed)` returns `{table: [row dict, ...]}` for runs, proc_samples, proc_features,
proc_inference, outcomes and audit. The rows of one seed share session_id/pid keys, so the
spec's joins (inference x outcomes, features x outcomes, runs x outcomes) have matches;
they spread over several days (crossing a year and ISO-week boundary) and 3 hosts; nullable
columns are sometimes null and enums take only the spec's values.

Every row carries a `host_id` key: a real column of `runs` and `audit`, and the partition
key of the other tables (the store accepts it as an extra column there). Use
`without(rows, "host_id")` to get rows the way a single-host writer would send them.

`SPEC_COLUMNS` is copied by hand from the spec's section 3 tables (name, spec type,
nullable); tests use it as the independent source of truth for the table definitions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import random
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

UTC = dt.UTC
TABLES = ("runs", "proc_samples", "proc_features", "proc_inference", "outcomes", "audit")
TIME_COLUMN = {
    "runs": "started_at",
    "proc_samples": "sample_ts",
    "proc_features": "feature_ts",
    "proc_inference": "inference_ts",
    "outcomes": "outcome_ts",
    "audit": "audit_ts",
}
# Tables whose files sit under a host_id=<id> directory (all but audit, spec 2.1).
HOST_PARTITIONED = ("runs", "proc_samples", "proc_features", "proc_inference", "outcomes")
DEFAULT_HOSTS = ("a1b2c3d4e5f60718", "0f1e2d3c4b5a6978", "9988776655443322")
# Saturday 2025-12-27: 12 days from here cross a month, a year and two ISO weeks.
DEFAULT_START = dt.datetime(2025, 12, 27, 0, 0, tzinfo=UTC)

SPEC_COLUMNS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "runs": (
        ("session_id", "STRING", False),
        ("host_id", "STRING", False),
        ("hostname", "STRING", True),
        ("username", "STRING", True),
        ("uid", "INT32", True),
        ("mode", "STRING", False),
        ("deep_scan", "BOOLEAN", False),
        ("started_at", "TIMESTAMP_MICROS", False),
        ("ended_at", "TIMESTAMP_MICROS", True),
        ("duration_ms", "INT64", True),
        ("state", "STRING", False),
        ("processes_scanned", "INT32", False),
        ("candidates_found", "INT32", False),
        ("kills_attempted", "INT32", False),
        ("kills_successful", "INT32", False),
        ("spares", "INT32", False),
        ("pt_version", "STRING", False),
        ("pt_core_version", "STRING", False),
        ("schema_version", "STRING", False),
        ("capabilities_hash", "STRING", True),
        ("config_snapshot", "STRING", True),
        ("os_family", "STRING", False),
        ("os_version", "STRING", True),
        ("kernel_version", "STRING", True),
        ("arch", "STRING", False),
        ("cores", "INT16", True),
        ("memory_bytes", "INT64", True),
    ),
    "proc_samples": (
        ("session_id", "STRING", False),
        ("sample_ts", "TIMESTAMP_MICROS", False),
        ("sample_seq", "INT16", False),
        ("pid", "INT32", False),
        ("ppid", "INT32", False),
        ("pgid", "INT32", True),
        ("sid", "INT32", True),
        ("uid", "INT32", False),
        ("euid", "INT32", True),
        ("start_time_boot", "INT64", False),
        ("start_id", "STRING", False),
        ("age_s", "INT64", False),
        ("cmd", "STRING", False),
        ("cmdline", "STRING", True),
        ("cmdline_hash", "STRING", True),
        ("exe", "STRING", True),
        ("cwd", "STRING", True),
        ("tty", "STRING", True),
        ("state", "STRING", False),
        ("utime_ticks", "INT64", False),
        ("stime_ticks", "INT64", False),
        ("cutime_ticks", "INT64", True),
        ("cstime_ticks", "INT64", True),
        ("rss_bytes", "INT64", False),
        ("vsize_bytes", "INT64", True),
        ("shared_bytes", "INT64", True),
        ("text_bytes", "INT64", True),
        ("data_bytes", "INT64", True),
        ("nice", "INT8", True),
        ("priority", "INT16", True),
        ("num_threads", "INT16", True),
        ("cpu_percent", "FLOAT", True),
        ("mem_percent", "FLOAT", True),
        ("io_read_bytes", "INT64", True),
        ("io_write_bytes", "INT64", True),
        ("io_read_ops", "INT64", True),
        ("io_write_ops", "INT64", True),
        ("voluntary_ctxt_switches", "INT64", True),
        ("nonvoluntary_ctxt_switches", "INT64", True),
        ("wchan", "STRING", True),
        ("oom_score", "INT16", True),
        ("oom_score_adj", "INT16", True),
        ("cgroup_path", "STRING", True),
        ("systemd_unit", "STRING", True),
        ("container_id", "STRING", True),
        ("ns_pid", "INT64", True),
        ("ns_mnt", "INT64", True),
        ("fd_count", "INT16", True),
        ("tcp_listen_count", "INT16", True),
        ("tcp_estab_count", "INT16", True),
        ("child_count", "INT16", True),
    ),
    "proc_features": (
        ("session_id", "STRING", False),
        ("pid", "INT32", False),
        ("start_id", "STRING", False),
        ("feature_ts", "TIMESTAMP_MICROS", False),
        ("proc_type", "STRING", False),
        ("proc_type_conf", "FLOAT", False),
        ("age_s", "INT64", False),
        ("age_ratio", "FLOAT", False),
        ("age_bucket", "STRING", False),
        ("cpu_pct_instant", "FLOAT", False),
        ("cpu_pct_avg", "FLOAT", True),
        ("cpu_delta_ticks", "INT64", True),
        ("cpu_utilization", "FLOAT", True),
        ("cpu_stalled", "BOOLEAN", True),
        ("cpu_spinning", "BOOLEAN", True),
        ("mem_mb", "FLOAT", False),
        ("mem_pct", "FLOAT", False),
        ("mem_growth_rate", "FLOAT", True),
        ("mem_bucket", "STRING", False),
        ("io_read_rate", "FLOAT", True),
        ("io_write_rate", "FLOAT", True),
        ("io_active", "BOOLEAN", True),
        ("io_idle", "BOOLEAN", True),
        ("is_orphan", "BOOLEAN", False),
        ("is_zombie", "BOOLEAN", False),
        ("is_stopped", "BOOLEAN", False),
        ("is_sleeping", "BOOLEAN", False),
        ("is_running", "BOOLEAN", False),
        ("has_tty", "BOOLEAN", False),
        ("tty_active", "BOOLEAN", True),
        ("tty_dead", "BOOLEAN", True),
        ("has_network", "BOOLEAN", True),
        ("is_listener", "BOOLEAN", True),
        ("has_children", "BOOLEAN", False),
        ("children_active", "BOOLEAN", True),
        ("cmd_pattern", "STRING", False),
        ("cmd_category", "STRING", False),
        ("is_protected", "BOOLEAN", False),
        ("prior_decision", "STRING", True),
        ("prior_decision_count", "INT32", True),
    ),
    "proc_inference": (
        ("session_id", "STRING", False),
        ("pid", "INT32", False),
        ("start_id", "STRING", False),
        ("inference_ts", "TIMESTAMP_MICROS", False),
        ("p_abandoned", "FLOAT", False),
        ("p_legitimate", "FLOAT", False),
        ("p_uncertain", "FLOAT", False),
        ("log_bayes_factor", "FLOAT", False),
        ("bayes_factor_interpretation", "STRING", False),
        ("score", "FLOAT", False),
        ("confidence", "STRING", False),
        ("recommendation", "STRING", False),
        ("evidence_prior", "FLOAT", False),
        ("evidence_age", "FLOAT", False),
        ("evidence_cpu", "FLOAT", False),
        ("evidence_memory", "FLOAT", False),
        ("evidence_io", "FLOAT", False),
        ("evidence_state", "FLOAT", False),
        ("evidence_network", "FLOAT", False),
        ("evidence_children", "FLOAT", False),
        ("evidence_history", "FLOAT", False),
        ("evidence_deep", "FLOAT", True),
        ("evidence_tags", "LIST<STRING>", False),
        ("evidence_ledger_json", "STRING", True),
        ("passed_safety_gates", "BOOLEAN", False),
        ("blocked_by_gate", "STRING", True),
        ("safety_gate_details", "STRING", True),
    ),
    "outcomes": (
        ("session_id", "STRING", False),
        ("outcome_ts", "TIMESTAMP_MICROS", False),
        ("pid", "INT32", False),
        ("start_id", "STRING", False),
        ("recommendation", "STRING", False),
        ("decision", "STRING", False),
        ("decision_source", "STRING", False),
        ("action_type", "STRING", True),
        ("action_attempted", "BOOLEAN", False),
        ("action_successful", "BOOLEAN", True),
        ("signal_sent", "STRING", True),
        ("signal_response", "STRING", True),
        ("verified_identity", "BOOLEAN", True),
        ("pid_at_action", "INT32", True),
        ("start_id_matched", "BOOLEAN", True),
        ("process_state_after", "STRING", True),
        ("memory_freed_bytes", "INT64", True),
        ("error_message", "STRING", True),
        ("user_feedback", "STRING", True),
        ("feedback_ts", "TIMESTAMP_MICROS", True),
        ("feedback_note", "STRING", True),
        ("cmd", "STRING", False),
        ("cmdline_hash", "STRING", True),
        ("score", "FLOAT", False),
        ("proc_type", "STRING", False),
    ),
    "audit": (
        ("audit_ts", "TIMESTAMP_MICROS", False),
        ("session_id", "STRING", False),
        ("event_type", "STRING", False),
        ("severity", "STRING", False),
        ("actor", "STRING", False),
        ("target_pid", "INT32", True),
        ("target_start_id", "STRING", True),
        ("message", "STRING", False),
        ("details_json", "STRING", True),
        ("host_id", "STRING", False),
    ),
}

# Spec enums (section 3 descriptions).
MODES = ("interactive", "robot_plan", "robot_apply", "daemon", "dry_run")
RUN_STATES = ("completed", "aborted", "failed", "partial")
PROC_STATES = ("R", "S", "D", "Z", "T")
AGE_BUCKETS = ("1h", "6h", "1d", "3d", "7d", "14d", "30d")
MEM_BUCKETS = ("tiny", "small", "medium", "large", "huge")
PRIOR_DECISIONS = ("kill", "spare", "unknown")
BF_INTERPRETATIONS = ("strong_kill", "moderate_kill", "weak", "moderate_spare", "strong_spare")
CONFIDENCES = ("high", "medium", "low")
RECOMMENDATIONS = ("KILL", "REVIEW", "SPARE")
DECISIONS = ("kill", "spare", "defer")
DECISION_SOURCES = ("user", "auto", "timeout", "default")
ACTION_TYPES = ("kill", "spare", "pause", "resume")
SIGNALS = ("TERM", "KILL", "STOP", "CONT")
SIGNAL_RESPONSES = ("died", "ignored", "not_found")
FEEDBACK = ("correct", "incorrect", "unsure")
SEVERITIES = ("info", "warning", "error")
ACTORS = ("user", "system", "daemon")
EVENT_TYPES = ("scan_start", "scan_complete", "inference_complete", "kill_sent", "spare_recorded")
PROC_TYPES = ("test", "dev_server", "agent", "build", "shell", "daemon")
# (cmd, category, cmdline pattern)
COMMANDS = (
    ("pytest", "test_runner", "python -m pytest {}"),
    ("jest", "test_runner", "node jest {}"),
    ("node", "dev_server", "node server.js --port {}"),
    ("vite", "dev_server", "vite --port {}"),
    ("cargo", "build_tool", "cargo build --jobs {}"),
    ("make", "build_tool", "make -j{}"),
    ("bash", "shell", "bash -c sleep {}"),
    ("claude", "agent", "claude --session {}"),
    ("postgres", "database", "postgres -D /var/lib/pg{}"),
)
EVIDENCE_TAGS = ("orphan", "stuck", "idle_io", "old", "no_tty", "high_mem", "zombie", "listener")
OFFSETS = (0, 0, 0, 330, -480, 60, 600)  # minutes east of UTC, for tz-aware datetimes


def f32(x: float) -> float:
    """`x` rounded to the nearest float32 (what a FLOAT column stores)."""
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def utc(value: dt.datetime) -> dt.datetime:
    """The same instant in UTC."""
    return value.astimezone(UTC)


def without(rows: Iterable[Mapping[str, Any]], *keys: str) -> list[dict[str, Any]]:
    """Copies of `rows` without `keys`."""
    return [{k: v for k, v in r.items() if k not in keys} for r in rows]


def columns_of(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Rows as a dict of columns (keys of the first row, in order)."""
    names = list(rows[0]) if rows else []
    return {n: [r.get(n) for r in rows] for n in names}


def spec_column_names(table: str) -> list[str]:
    """The spec's column names of `table`, in order."""
    return [name for name, _, _ in SPEC_COLUMNS[table]]


class _Gen:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self._used_us: set[int] = set()

    def maybe(self, value: Any, p_null: float = 0.25) -> Any:
        return None if self.r.random() < p_null else value

    def local(self, when: dt.datetime) -> dt.datetime:
        """`when` (UTC) expressed in a random fixed offset: same instant, other wall time."""
        minutes = self.r.choice(OFFSETS)
        return when.astimezone(dt.timezone(dt.timedelta(minutes=minutes)))

    def instant(self, start: dt.datetime, span_s: float) -> dt.datetime:
        """A random instant in [start, start+span) with a microsecond no one else used."""
        while True:
            us = int(start.timestamp() * 1_000_000) + self.r.randrange(int(span_s * 1_000_000))
            if us not in self._used_us:
                self._used_us.add(us)
                return dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(microseconds=us)

    def score(self) -> float:
        # Exact bucket edges sometimes, else two decimals (never a hair below an edge).
        if self.r.random() < 0.12:
            return float(self.r.choice((0, 10, 20, 50, 90, 100, 110)))
        return round(self.r.uniform(0, 110), 2)


def generate(
    seed: int = 0,
    *,
    n_sessions: int = 24,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    start: dt.datetime = DEFAULT_START,
    days: int = 12,
) -> dict[str, list[dict[str, Any]]]:
    """Rows for all six tables, deterministic from `seed` (see the module docstring)."""
    g = _Gen(seed)
    r = g.r
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLES}
    span = days * 86_400.0
    # Edge instants for outcomes: a Monday 00:00 UTC, the microsecond before it, midnights.
    edges = [
        dt.datetime(2025, 12, 29, 0, 0, tzinfo=UTC),
        dt.datetime(2025, 12, 28, 23, 59, 59, 999_999, tzinfo=UTC),
        dt.datetime(2026, 1, 4, 23, 59, 59, 999_999, tzinfo=UTC),
        dt.datetime(2026, 1, 5, 0, 0, tzinfo=UTC),
        dt.datetime(2026, 1, 1, 0, 0, tzinfo=UTC),
    ]
    for s in range(n_sessions):
        host = hosts[s % len(hosts)]
        started = g.instant(start, span - 3600)
        suffix = hashlib.sha256(f"{seed}:{s}".encode()).hexdigest()[:4]
        sid = f"pt-{started:%Y%m%d-%H%M%S}-{suffix}"
        boot_id = hashlib.sha256(f"boot:{host}".encode()).hexdigest()[:8]
        # One session in eight scans nothing at all (no process rows, no outcomes).
        n_procs = 0 if s % 8 == 5 else r.randint(2, 8)
        pids = r.sample(range(300, 60_000), n_procs)
        duration_ms = r.randint(2_000, 1_800_000)
        ended = started + dt.timedelta(milliseconds=duration_ms)
        kills_attempted = r.randint(0, n_procs)
        out["runs"].append(
            {
                "session_id": sid,
                "host_id": host,
                "hostname": g.maybe(f"host-{hosts.index(host)}.example", 0.3),
                "username": g.maybe(r.choice(("alice", "bob", "[REDACTED:hash:abc123]")), 0.3),
                "uid": g.maybe(r.choice((0, 1000, 1001)), 0.3),
                "mode": r.choice(MODES),
                "deep_scan": r.random() < 0.3,
                "started_at": g.local(started),
                "ended_at": g.maybe(g.local(ended), 0.2),
                "duration_ms": g.maybe(duration_ms, 0.2),
                "state": r.choice(RUN_STATES),
                "processes_scanned": r.randint(n_procs, 900),
                "candidates_found": n_procs,
                "kills_attempted": kills_attempted,
                "kills_successful": r.randint(0, kills_attempted),
                "spares": r.randint(0, n_procs),
                "pt_version": "2.1.0",
                "pt_core_version": r.choice(("2.1.0", "2.1.1")),
                "schema_version": "1.0.0",
                "capabilities_hash": g.maybe(hashlib.sha256(host.encode()).hexdigest(), 0.3),
                "config_snapshot": g.maybe(json.dumps({"deep": False, "max_kills": 5}), 0.4),
                "os_family": "linux",
                "os_version": g.maybe("Ubuntu 24.04", 0.3),
                "kernel_version": g.maybe("6.8.0-45-generic", 0.3),
                "arch": r.choice(("x86_64", "aarch64")),
                "cores": g.maybe(r.choice((4, 8, 16, 64)), 0.2),
                "memory_bytes": g.maybe(r.choice((8, 16, 64)) * 1024**3, 0.2),
            }
        )
        for p, pid in enumerate(pids):
            cmd, category, pattern = r.choice(COMMANDS)
            start_ticks = r.randint(1_000, 90_000_000)
            start_id = f"{boot_id}:{start_ticks}"
            age_s = r.randint(30, 40 * 86_400)
            state = r.choice(PROC_STATES)
            cmdline = pattern.format(r.randint(1, 9000))
            cmdline_hash = hashlib.sha256(cmdline.encode()).hexdigest()
            rss = r.randint(1, 8000) * 1024 * 1024
            tty = g.maybe(f"pts/{r.randint(0, 9)}", 0.4)
            for seq in range(r.randint(1, 3)):
                out["proc_samples"].append(
                    _sample(g, sid, host, started, seq, p, pid, start_ticks, start_id, age_s,
                            cmd, cmdline, cmdline_hash, tty, state, rss)
                )  # fmt: skip
            score = g.score()
            recommendation = "KILL" if score >= 70 else ("REVIEW" if score >= 40 else "SPARE")
            feature_ts = started + dt.timedelta(seconds=5 + p)
            if r.random() < 0.85:
                for extra in range(2 if r.random() < 0.12 else 1):
                    out["proc_features"].append(
                        _features(g, sid, host, pid, start_id,
                                  feature_ts + dt.timedelta(seconds=extra),
                                  age_s, state, rss, tty, cmd, category)
                    )  # fmt: skip
            if r.random() < 0.9:
                for extra in range(2 if r.random() < 0.12 else 1):
                    inf_score = score if extra == 0 else g.score()
                    out["proc_inference"].append(
                        _inference(g, sid, host, pid, start_id,
                                   feature_ts + dt.timedelta(seconds=1 + extra),
                                   inf_score, recommendation)
                    )  # fmt: skip
            if r.random() < 0.8:
                n_outcomes = 2 if r.random() < 0.08 else 1
                for _ in range(n_outcomes):
                    if r.random() < 0.1:
                        when = r.choice(edges)
                    else:
                        when = started + dt.timedelta(seconds=r.randint(10, 7 * 86_400))
                    out["outcomes"].append(
                        _outcome(g, sid, host, pid, start_id, when, score, recommendation, cmd,
                                 cmdline_hash)
                    )  # fmt: skip
        for e in range(r.randint(2, 5)):
            target = r.choice(pids) if pids and r.random() < 0.6 else None
            when = started + dt.timedelta(seconds=e * 3, microseconds=r.randint(0, 999_999))
            out["audit"].append(
                {
                    "audit_ts": g.local(when),
                    "session_id": sid,
                    "event_type": r.choice(EVENT_TYPES),
                    "severity": r.choice(SEVERITIES),
                    "actor": r.choice(ACTORS),
                    "target_pid": target,
                    "target_start_id": None if target is None else f"{boot_id}:{target * 7}",
                    "message": f"event {e} of {sid}",
                    "details_json": g.maybe(json.dumps({"step": e}), 0.5),
                    "host_id": host,
                }
            )
    return out


def _sample(
    g: _Gen,
    sid: str,
    host: str,
    started: dt.datetime,
    seq: int,
    p: int,
    pid: int,
    start_ticks: int,
    start_id: str,
    age_s: int,
    cmd: str,
    cmdline: str,
    cmdline_hash: str,
    tty: str | None,
    state: str,
    rss: int,
) -> dict[str, Any]:
    r = g.r
    m = g.maybe
    ts = started + dt.timedelta(seconds=seq * 2, microseconds=p * 1_000 + r.randint(0, 999))
    return {
        "session_id": sid,
        "sample_ts": g.local(ts),
        "sample_seq": seq,
        "pid": pid,
        "ppid": r.choice((1, r.randint(2, 5000))),
        "pgid": m(pid),
        "sid": m(r.randint(1, 5000)),
        "uid": r.choice((0, 1000)),
        "euid": m(r.choice((0, 1000))),
        "start_time_boot": start_ticks,
        "start_id": start_id,
        "age_s": age_s + seq * 2,
        "cmd": cmd,
        "cmdline": m(cmdline),
        "cmdline_hash": m(cmdline_hash),
        "exe": m(f"/opt/{cmd}/1.{len(cmd)}.0/bin/{cmd}"),  # normalized: /opt/x/<v>/bin/x
        "cwd": m(f"/home/dev/project{r.randint(0, 5)}/src"),  # truncated to 3 components
        "tty": tty,
        "state": state,
        "utime_ticks": r.randint(0, 10**7),
        "stime_ticks": r.randint(0, 10**6),
        "cutime_ticks": m(r.randint(0, 10**5)),
        "cstime_ticks": m(r.randint(0, 10**5)),
        "rss_bytes": rss,
        "vsize_bytes": m(rss * 4),
        "shared_bytes": m(rss // 8),
        "text_bytes": m(r.randint(1, 100) * 4096),
        "data_bytes": m(rss // 2),
        "nice": m(r.randint(-20, 19)),
        "priority": m(r.randint(0, 139)),
        "num_threads": m(r.randint(1, 200)),
        "cpu_percent": m(round(r.uniform(0, 100), 3)),
        "mem_percent": m(round(r.uniform(0, 30), 3)),
        "io_read_bytes": m(r.randint(0, 10**10)),
        "io_write_bytes": m(r.randint(0, 10**10)),
        "io_read_ops": m(r.randint(0, 10**6)),
        "io_write_ops": m(r.randint(0, 10**6)),
        "voluntary_ctxt_switches": m(r.randint(0, 10**6)),
        "nonvoluntary_ctxt_switches": m(r.randint(0, 10**5)),
        "wchan": m(r.choice(("do_wait", "ep_poll", "futex_wait_queue", "0"))),
        "oom_score": m(r.randint(0, 1000)),
        "oom_score_adj": m(r.randint(-1000, 1000)),
        "cgroup_path": m(f"/user.slice/user-1000.slice/session-{r.randint(1, 9)}.scope"),
        "systemd_unit": m(r.choice(("session-2.scope", "postgresql.service")), 0.5),
        "container_id": m(hashlib.sha256(sid.encode()).hexdigest()[:12], 0.8),
        "ns_pid": m(4_026_531_836),
        "ns_mnt": m(4_026_531_841),
        "fd_count": m(r.randint(3, 1000)),
        "tcp_listen_count": m(r.randint(0, 3)),
        "tcp_estab_count": m(r.randint(0, 20)),
        "child_count": m(r.randint(0, 10)),
        "host_id": host,
    }


def _features(
    g: _Gen,
    sid: str,
    host: str,
    pid: int,
    start_id: str,
    when: dt.datetime,
    age_s: int,
    state: str,
    rss: int,
    tty: str | None,
    cmd: str,
    category: str,
) -> dict[str, Any]:
    r = g.r
    m = g.maybe
    mem_mb = rss / (1024 * 1024)
    age_bucket = next(
        (b for b, lim in zip(AGE_BUCKETS, (3600, 6 * 3600, 86_400, 3 * 86_400, 7 * 86_400,
                                          14 * 86_400), strict=False) if age_s < lim),
        "30d",
    )  # fmt: skip
    mem_bucket = MEM_BUCKETS[min(4, int(math.log10(max(mem_mb, 1))))]
    return {
        "session_id": sid,
        "pid": pid,
        "start_id": start_id,
        "feature_ts": g.local(when),
        "proc_type": r.choice(PROC_TYPES),
        "proc_type_conf": round(r.random(), 3),
        "age_s": age_s,
        "age_ratio": round(r.uniform(0, 20), 3),
        "age_bucket": age_bucket,
        "cpu_pct_instant": round(r.uniform(0, 100), 3),
        "cpu_pct_avg": m(round(r.uniform(0, 100), 3)),
        "cpu_delta_ticks": m(r.randint(0, 10_000)),
        "cpu_utilization": m(round(r.random(), 4)),
        "cpu_stalled": m(r.random() < 0.5),
        "cpu_spinning": m(r.random() < 0.1),
        "mem_mb": round(mem_mb, 2),
        "mem_pct": round(r.uniform(0, 30), 3),
        "mem_growth_rate": m(round(r.uniform(-1e5, 1e6), 1)),
        "mem_bucket": mem_bucket,
        "io_read_rate": m(round(r.uniform(0, 1e6), 1)),
        "io_write_rate": m(round(r.uniform(0, 1e6), 1)),
        "io_active": m(r.random() < 0.5),
        "io_idle": m(r.random() < 0.5),
        "is_orphan": r.random() < 0.3,
        "is_zombie": state == "Z",
        "is_stopped": state == "T",
        "is_sleeping": state == "S",
        "is_running": state == "R",
        "has_tty": tty is not None,
        "tty_active": m(tty is not None and r.random() < 0.5),
        "tty_dead": m(r.random() < 0.2),
        "has_network": m(r.random() < 0.4),
        "is_listener": m(r.random() < 0.2),
        "has_children": r.random() < 0.3,
        "children_active": m(r.random() < 0.2),
        "cmd_pattern": f"{cmd} *",
        "cmd_category": category,
        "is_protected": cmd == "postgres",
        "prior_decision": m(r.choice(PRIOR_DECISIONS), 0.4),
        "prior_decision_count": m(r.randint(0, 50), 0.4),
        "host_id": host,
    }


def _inference(
    g: _Gen,
    sid: str,
    host: str,
    pid: int,
    start_id: str,
    when: dt.datetime,
    score: float,
    recommendation: str,
) -> dict[str, Any]:
    r = g.r
    m = g.maybe
    pa_, pl = r.random(), r.random()
    total = pa_ + pl + 0.2
    tags = r.sample(EVIDENCE_TAGS, r.randint(0, 4))
    gate = m(r.choice(("protected_pattern", "recent_activity", "root_owned")), 0.7)
    return {
        "session_id": sid,
        "pid": pid,
        "start_id": start_id,
        "inference_ts": g.local(when),
        "p_abandoned": round(pa_ / total, 4),
        "p_legitimate": round(pl / total, 4),
        "p_uncertain": round(0.2 / total, 4),
        "log_bayes_factor": round(r.uniform(-8, 8), 3),
        "bayes_factor_interpretation": r.choice(BF_INTERPRETATIONS),
        "score": score,
        "confidence": r.choice(CONFIDENCES),
        "recommendation": recommendation,
        "evidence_prior": round(r.uniform(-2, 2), 3),
        "evidence_age": round(r.uniform(-2, 4), 3),
        "evidence_cpu": round(r.uniform(-2, 2), 3),
        "evidence_memory": round(r.uniform(-2, 2), 3),
        "evidence_io": round(r.uniform(-2, 2), 3),
        "evidence_state": round(r.uniform(-2, 2), 3),
        "evidence_network": round(r.uniform(-2, 2), 3),
        "evidence_children": round(r.uniform(-2, 2), 3),
        "evidence_history": round(r.uniform(-2, 2), 3),
        "evidence_deep": m(round(r.uniform(-1, 1), 3), 0.6),
        "evidence_tags": tags,
        "evidence_ledger_json": m(json.dumps({"tags": tags, "score": score}), 0.3),
        "passed_safety_gates": gate is None,
        "blocked_by_gate": gate,
        "safety_gate_details": None if gate is None else json.dumps({"gate": gate}),
        "host_id": host,
    }


def _outcome(
    g: _Gen,
    sid: str,
    host: str,
    pid: int,
    start_id: str,
    when: dt.datetime,
    score: float,
    recommendation: str,
    cmd: str,
    cmdline_hash: str,
) -> dict[str, Any]:
    r = g.r
    m = g.maybe
    decision = r.choice(DECISIONS)
    attempted = decision == "kill" and r.random() < 0.9
    successful = m(r.random() < 0.8, 0.3) if attempted else m(False, 0.6)
    feedback = r.choice((None, None, *FEEDBACK, "incorrect"))
    return {
        "session_id": sid,
        "outcome_ts": g.local(when),
        "pid": pid,
        "start_id": start_id,
        "recommendation": recommendation,
        "decision": decision,
        "decision_source": r.choice(DECISION_SOURCES),
        "action_type": m({"kill": "kill", "spare": "spare", "defer": "pause"}[decision], 0.2),
        "action_attempted": attempted,
        "action_successful": successful,
        "signal_sent": r.choice(("TERM", "KILL")) if attempted else m(r.choice(SIGNALS), 0.8),
        "signal_response": m(r.choice(SIGNAL_RESPONSES), 0.4) if attempted else None,
        "verified_identity": m(r.random() < 0.95),
        "pid_at_action": m(pid) if attempted else None,
        "start_id_matched": m(r.random() < 0.95),
        "process_state_after": m(r.choice(("gone", "Z", "S")), 0.5),
        "memory_freed_bytes": m(r.randint(0, 2 * 1024**3), 0.5) if attempted else None,
        "error_message": m("EPERM: operation not permitted", 0.85),
        "user_feedback": feedback,
        "feedback_ts": None if feedback is None else g.local(when + dt.timedelta(minutes=5)),
        "feedback_note": m("looked stuck", 0.8) if feedback else None,
        "cmd": cmd,
        "cmdline_hash": m(cmdline_hash, 0.3),
        "score": score,
        "proc_type": r.choice(PROC_TYPES),
        "host_id": host,
    }


def bulk_samples(seed: int, n_rows: int, *, n_sessions: int = 20) -> dict[str, list[Any]]:
    """`n_rows` proc_samples rows as a dict of columns (fast; for volume tests).

    Rows come in a shuffled order, carry no host_id, and all fall on 2026-01-15 UTC.
    """
    r = random.Random(seed)
    base_us = int(dt.datetime(2026, 1, 15, 8, 0, tzinfo=UTC).timestamp() * 1_000_000)
    sessions = [f"pt-20260115-{80000 + i:06d}-{i:04x}" for i in range(n_sessions)]
    cmds = [c for c, _, _ in COMMANDS]
    keys = set()
    while len(keys) < n_rows:
        keys.add((r.choice(sessions), r.randint(0, 30), r.randint(300, 60_000)))
    ordered = list(keys)
    r.shuffle(ordered)
    cols: dict[str, list[Any]] = {name: [] for name in spec_column_names("proc_samples")}
    epoch = dt.datetime(1970, 1, 1, tzinfo=UTC)
    for sid, seq, pid in ordered:
        cmd = cmds[pid % len(cmds)]
        x = r.getrandbits(64)  # one draw per row; the columns below slice it
        row = {
            "session_id": sid,
            "sample_ts": epoch + dt.timedelta(microseconds=base_us + seq * 2_000_000 + pid),
            "sample_seq": seq,
            "pid": pid,
            "ppid": 1 if pid % 3 == 0 else pid // 2,
            "pgid": pid,
            "sid": None if pid % 5 == 0 else pid // 3,
            "uid": 1000,
            "euid": 1000,
            "start_time_boot": pid * 977,
            "start_id": f"b00t{pid % 7}:{pid * 977}",
            "age_s": 30 + x % 1_000_000,
            "cmd": cmd,
            "cmdline": f"{cmd} --worker {x % 999_983}",
            "cmdline_hash": f"{x:016x}{pid:08x}",
            "exe": f"/usr/bin/{cmd}",
            "cwd": f"/home/dev/p{pid % 11}",
            "tty": None if pid % 4 else f"pts/{pid % 9}",
            "state": PROC_STATES[pid % 5],
            "utime_ticks": x % 10**7,
            "stime_ticks": (x >> 8) % 10**6,
            "cutime_ticks": (x >> 16) % 10**5,
            "cstime_ticks": None,
            "rss_bytes": 1 + (x >> 4) % 10**10,
            "vsize_bytes": 1 + (x >> 6) % 10**11,
            "shared_bytes": 1 + (x >> 10) % 10**8,
            "text_bytes": 1 + (x >> 12) % 10**7,
            "data_bytes": 1 + (x >> 14) % 10**9,
            "nice": pid % 20 - 10,
            "priority": 20,
            "num_threads": 1 + x % 64,
            "cpu_percent": (x % 10_000) / 100,
            "mem_percent": ((x >> 20) % 1_000) / 100,
            "io_read_bytes": (x >> 3) % 10**10,
            "io_write_bytes": (x >> 5) % 10**10,
            "io_read_ops": (x >> 7) % 10**6,
            "io_write_ops": (x >> 9) % 10**6,
            "voluntary_ctxt_switches": (x >> 11) % 10**6,
            "nonvoluntary_ctxt_switches": (x >> 13) % 10**5,
            "wchan": ("do_wait", "ep_poll", None)[pid % 3],
            "oom_score": (x >> 15) % 1000,
            "oom_score_adj": 0,
            "cgroup_path": f"/user.slice/session-{pid % 6}.scope",
            "systemd_unit": None if pid % 2 else "session-2.scope",
            "container_id": None,
            "ns_pid": 4_026_531_836,
            "ns_mnt": 4_026_531_841,
            "fd_count": 3 + (x >> 17) % 1000,
            "tcp_listen_count": pid % 3,
            "tcp_estab_count": (x >> 19) % 20,
            "child_count": (x >> 21) % 10,
        }
        for name, value in row.items():
            cols[name].append(value)
    return cols
