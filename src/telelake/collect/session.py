"""One collection session: snapshots -> proc_samples, proc_features, runs and audit rows.

Each snapshot is written as soon as it is taken (a crash keeps what was sampled), the
features and the session's `runs` row at the end, and the audit trail in one write at
the end, or when the session fails (then the `runs` row says `state="failed"`, or
"interrupted" on Ctrl-C, an error-severity `scan_failed` event is added, and the error
is re-raised).
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import math
import os
import platform
import secrets
import socket
import string
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import telelake
from telelake.collect import features, sampler
from telelake.schema.model import Table
from telelake.store import Store

Row = dict[str, Any]
Clock = Callable[[], dt.datetime]
_BASE36 = string.digits + string.ascii_lowercase
MAX_SAMPLES = 2**15 - 1  # sample_seq is an INT16


def utc_now() -> dt.datetime:
    """The current time, timezone-aware UTC (the default clock)."""
    return dt.datetime.now(dt.UTC)


def new_session_id(when: dt.datetime) -> str:
    """`pt-YYYYMMDD-HHMMSS-xxxx` (spec 000 §3.1): UTC time and 4 random base36 chars."""
    suffix = "".join(secrets.choice(_BASE36) for _ in range(4))
    return f"pt-{when.astimezone(dt.UTC):%Y%m%d-%H%M%S}-{suffix}"


@dataclass(frozen=True)
class CollectResult:
    """What one `collect()` wrote."""

    session_id: str
    samples: int  # snapshots taken
    processes: int  # distinct (pid, start_id) seen
    rows: Mapping[str, int] = field(default_factory=dict)  # rows written per table


def collect(
    store: Store,
    samples: int = 3,
    interval: float = 1.0,
    *,
    on_sample: Callable[[int, int], None] | None = None,
    clock: Clock = utc_now,
    sleep: Callable[[float], None] = time.sleep,
) -> CollectResult:
    """Sample every process of this host `samples` times, `interval` seconds apart.

    Writes each snapshot to `proc_samples` (sample_seq 0, 1, ...), then one
    `proc_features` row per process, one `runs` row (mode "collect") and the audit
    trail (scan_start, one sample_taken per snapshot, scan_complete). `on_sample(done,
    total)` is called after each snapshot with done = 1..total (drive a progress bar
    with it). `clock` gives aware UTC datetimes; `sleep` waits between snapshots
    (both injectable for tests). Snapshots are paced on a monotonic clock, so the time
    a snapshot takes is not added to the interval.
    """
    if not 1 <= samples <= MAX_SAMPLES:
        raise ValueError(f"samples must be between 1 and {MAX_SAMPLES}, got {samples}")
    if not (math.isfinite(interval) and interval >= 0):
        raise ValueError(f"interval must be a finite number >= 0, got {interval}")
    started = _aware(clock())
    session_id = new_session_id(started)
    run = _Run(store, session_id, started, clock)
    run.audit("scan_start", f"collection started: {samples} samples, {interval}s apart")
    try:
        host = sampler.host_context()
        smp = sampler.Sampler(host)
        samples_table = store.table("proc_samples")
        all_rows: list[Row] = []
        t0 = time.monotonic()
        for seq in range(samples):
            if seq:
                sleep(max(0.0, t0 + seq * interval - time.monotonic()))
            rows = smp.snapshot(session_id, seq, _aware(clock()))
            rows, nulled = _fit(rows, samples_table)
            run.count("proc_samples", store.write("proc_samples", rows))
            all_rows.extend(rows)
            run.seen.update((r["pid"], r["start_id"]) for r in rows)
            run.audit(
                "sample_taken",
                f"sample {seq + 1}/{samples}: {len(rows)} processes",
                {
                    "sample_seq": seq,
                    "processes": len(rows),
                    "vanished": smp.skipped,
                    "out_of_range_nulled": nulled,
                },
            )
            if on_sample is not None:
                on_sample(seq + 1, samples)
        feats = features.derive_features(
            all_rows, cores=host.cores, memory_bytes=host.memory_bytes, clk_tck=host.clk_tck
        )
        run.count("proc_features", store.write("proc_features", feats))
        processes = len(run.seen)
        run.finish("completed", processes, host, samples, interval)
        run.audit(
            "scan_complete",
            f"collection complete: {processes} processes in {samples} samples",
            {"processes": processes, "samples": samples, "rows": dict(run.rows)},
        )
        run.flush_audit()
        return CollectResult(session_id, samples, processes, dict(run.rows))
    except BaseException as exc:
        run.fail(exc, samples, interval)
        raise


def _aware(when: dt.datetime) -> dt.datetime:
    if when.tzinfo is None:
        raise ValueError("clock() must return a timezone-aware datetime")
    return when.astimezone(dt.UTC)


def _fit(rows: list[Row], table: Table) -> tuple[list[Row], int]:
    """Null out-of-range nullable ints; drop the (never seen) rows that cannot be fit."""
    kept, nulled = [], 0
    for row in rows:
        try:
            nulled += sampler.fit_ints([row], table)
        except ValueError:
            continue
        kept.append(row)
    return kept, nulled


class _Run:
    """The session's bookkeeping: rows written, audit events, the final `runs` row."""

    def __init__(self, store: Store, session_id: str, started: dt.datetime, clock: Clock) -> None:
        self.store = store
        self.session_id = session_id
        self.started = started
        self.clock = clock
        self.rows: dict[str, int] = {}
        self._audit: list[Row] = []
        self.seen: set[tuple[int, str]] = set()  # (pid, start_id) of every process sampled
        self._done = False

    def count(self, table: str, n: int) -> None:
        self.rows[table] = self.rows.get(table, 0) + n

    def audit(
        self,
        event: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        severity: str = "info",
    ) -> None:
        self._audit.append(
            {
                "audit_ts": _aware(self.clock()),
                "session_id": self.session_id,
                "event_type": event,
                "severity": severity,
                "actor": "system",
                "target_pid": None,
                "target_start_id": None,
                "message": message,
                "details_json": json.dumps(details, sort_keys=True) if details else None,
                "host_id": self.store.host_id,
            }
        )

    def flush_audit(self) -> None:
        if self._audit:
            self.count("audit", self.store.write("audit", self._audit))
            self._audit = []

    def finish(
        self,
        state: str,
        processes: int,
        host: sampler.HostContext | None,
        samples: int,
        interval: float,
    ) -> None:
        ended = _aware(self.clock())
        row = run_row(
            self.store,
            self.session_id,
            started=self.started,
            ended=ended,
            state=state,
            processes=processes,
            host=host,
            config={"samples": samples, "interval": interval},
        )
        self.count("runs", self.store.write("runs", [row]))
        self._done = True

    def fail(self, exc: BaseException, samples: int, interval: float) -> None:
        """Record the failure (best effort: the original error is what the caller sees)."""
        try:
            if not self._done:
                state = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                self.finish(state, len(self.seen), None, samples, interval)
            self.audit(
                "scan_failed",
                f"collection failed: {type(exc).__name__}: {exc}"[:500],
                {"error": type(exc).__name__},
                severity="error",
            )
            self.flush_audit()
        except Exception:
            pass  # never mask the original error


def run_row(
    store: Store,
    session_id: str,
    *,
    started: dt.datetime,
    ended: dt.datetime,
    state: str,
    processes: int,
    host: sampler.HostContext | None,
    config: Mapping[str, Any],
) -> Row:
    """The `runs` row of one collect session (spec 000 §3.1)."""
    cores = host.cores if host else os.cpu_count()
    version = telelake.__version__
    return {
        "session_id": session_id,
        "host_id": store.host_id,
        "hostname": _maybe(socket.gethostname),
        "username": _maybe(getpass.getuser),
        "uid": os.getuid() if hasattr(os, "getuid") else None,
        "mode": "collect",
        "deep_scan": False,
        "started_at": started,
        "ended_at": ended,
        "duration_ms": round((ended - started).total_seconds() * 1000),
        "state": state,
        "processes_scanned": processes,
        "candidates_found": 0,
        "kills_attempted": 0,
        "kills_successful": 0,
        "spares": 0,
        "pt_version": version,
        "pt_core_version": version,
        "schema_version": store.schema.version,
        "capabilities_hash": None,
        "config_snapshot": json.dumps(dict(config), sort_keys=True),
        "os_family": platform.system().lower() or "unknown",
        "os_version": _os_version(),
        "kernel_version": platform.release() or None,
        "arch": platform.machine() or "unknown",
        "cores": cores if cores is not None and cores < 2**15 else None,
        "memory_bytes": host.memory_bytes if host else None,
    }


def _maybe(fn: Callable[[], str]) -> str | None:
    try:
        return fn() or None
    except (OSError, KeyError, ImportError):  # getuser() fails without a passwd entry
        return None


def _os_version() -> str | None:
    """The distribution's PRETTY_NAME on Linux, else platform's version string."""
    try:
        pretty = platform.freedesktop_os_release().get("PRETTY_NAME")
        if pretty:
            return pretty
    except OSError:
        pass
    if platform.system() == "Darwin":
        return platform.mac_ver()[0] or None
    return platform.version() or None
