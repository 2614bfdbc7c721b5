"""Maintenance that runs by itself: retention, then compaction (spec 000 §5).

A run folds the WAL segments of writers that are gone, enforces retention (each
table's days, then the disk budget `max_disk_gb`) and, with `auto_compact`, merges
finished partitions holding many small files. It uses `Store.enforce_retention` and
`Store.compact`, whose every step is crash-safe, so a run stopped anywhere (close(),
Ctrl-C, kill -9) loses and doubles nothing; the next run carries on.

- **When**: a store opened for writing starts a daemon thread that runs maintenance
  when the last run is older than `maintenance_interval` (config.json; default 1h), and
  again each interval while the store stays open. `write()` never waits for it: it
  takes a table's fold lock one partition at a time, as any compaction does, and leaves
  the store's own WAL segments to its writers. `close()` stops it after the step in
  progress (one partition's retention or compaction, one batch of a sql table's
  retention: sql tables lose their rows in batches of 5,000, spec 001's "hourly in
  bounded batches by table").
- **One process at a time**: a run holds `_metadata/maintenance.lock` (a non-blocking
  flock); another opener finding it held skips, and looks again later.
- **Recorded**: every run (not a skipped one) is appended durably to
  `_metadata/maintenance.json`: when, what retention removed and compaction merged per
  table, the bytes freed, errors. `telelake status` and `Store.status()` show it.
- **Off**: `telelake.open(..., maintenance=False)`, `$TELELAKE_MAINTENANCE=off` (every
  store of the process; the test suite does this), or `"maintenance_interval": "off"`
  in config.json. `telelake maintain [--every 1h]` runs it by hand or as a service.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from telelake import durable
from telelake.config import DEFAULT_INTERVAL, Retention
from telelake.durations import format_age
from telelake.errors import StoreError, TelelakeError
from telelake.lake.compact import AUTO_COMPACT_MIN_FILES, PartitionResult
from telelake.lake.retention import Step
from telelake.metadata import METADATA_DIR

if TYPE_CHECKING:
    from telelake.store import Store, TableStats

ENV = "TELELAKE_MAINTENANCE"
LOCK_NAME = "maintenance.lock"
KEEP_RUNS = 50  # runs kept in maintenance.json, newest last
BUSY_RETRY = 300.0  # seconds before looking again when another process holds the lock

BACKGROUND = "background"  # started by an open for writing
MANUAL = "manual"  # Store.maintain() / `telelake maintain`

OK = "ok"
FAILED = "failed"  # some step raised: see errors (what was done before it stands)
INTERRUPTED = "interrupted"  # stopped by close() or a signal; does not count as a run
SKIPPED = "skipped"  # did nothing: not due, or another process holds the lock (not recorded)

_OFF = ("off", "0", "false", "no")
_ON = ("", "on", "1", "true", "yes")


@dataclass
class Removed:
    """What retention removed from one table."""

    partitions: int = 0  # lake partitions expired, trimmed or dropped over budget
    files: int = 0
    rows: int = 0
    bytes: int = 0


@dataclass
class Merged:
    """What compaction merged in one table."""

    partitions: int = 0
    files_before: int = 0
    files_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0


@dataclass
class MaintenanceReport:
    """One maintenance run: when, what it removed and merged, what went wrong."""

    started: dt.datetime
    finished: dt.datetime | None = None
    trigger: str = MANUAL
    status: str = OK
    removed: dict[str, Removed] = field(default_factory=dict)
    merged: dict[str, Merged] = field(default_factory=dict)
    disk_bytes_before: int | None = None  # data files of lake tables, before retention
    disk_bytes_after: int | None = None
    errors: list[str] = field(default_factory=list)
    temp_files: int = 0  # temp files of killed writers removed
    temp_bytes: int = 0
    skipped: str | None = None  # why a skipped run did nothing
    busy: bool = False  # skipped because someone holds the maintenance lock
    host_id: str = ""
    pid: int = 0

    @property
    def seconds(self) -> float:
        """How long the run took."""
        end = self.finished or self.started
        return (end - self.started).total_seconds()

    @property
    def rows_removed(self) -> int:
        """Rows retention removed, every table."""
        return sum(r.rows for r in self.removed.values())

    @property
    def bytes_freed(self) -> int:
        """Bytes retention removed plus bytes compaction saved (files removed from
        queries at once, from disk after the grace period `retire_after`)."""
        merged = sum(max(0, m.bytes_before - m.bytes_after) for m in self.merged.values())
        return sum(r.bytes for r in self.removed.values()) + merged

    def to_json(self) -> dict[str, Any]:
        """The record kept in maintenance.json."""
        return {
            "started": iso(self.started),
            "finished": iso(self.finished) if self.finished else None,
            "seconds": round(self.seconds, 3),
            "trigger": self.trigger,
            "status": self.status,
            "host_id": self.host_id,
            "pid": self.pid,
            "retention": {t: asdict(r) for t, r in self.removed.items()},
            "compaction": {t: asdict(m) for t, m in self.merged.items()},
            "rows_removed": self.rows_removed,
            "bytes_freed": self.bytes_freed,
            "disk_bytes_before": self.disk_bytes_before,
            "disk_bytes_after": self.disk_bytes_after,
            "errors": list(self.errors),
            "temp_files": self.temp_files,
            "temp_bytes": self.temp_bytes,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MaintenanceReport:
        """A record of maintenance.json (ValueError/KeyError/TypeError if malformed)."""
        finished = data.get("finished")
        return cls(
            started=_parse_iso(str(data["started"])),
            finished=_parse_iso(str(finished)) if finished else None,
            trigger=str(data.get("trigger", MANUAL)),
            status=str(data.get("status", OK)),
            removed={t: Removed(**r) for t, r in dict(data.get("retention", {})).items()},
            merged={t: Merged(**m) for t, m in dict(data.get("compaction", {})).items()},
            disk_bytes_before=data.get("disk_bytes_before"),
            disk_bytes_after=data.get("disk_bytes_after"),
            errors=[str(e) for e in data.get("errors", [])],
            temp_files=int(data.get("temp_files", 0)),
            temp_bytes=int(data.get("temp_bytes", 0)),
            host_id=str(data.get("host_id", "")),
            pid=int(data.get("pid", 0)),
        )


@dataclass
class StoreStatus:
    """What `telelake status` prints: settings, maintenance and tables of a store."""

    root: Path
    schema: str
    version: str
    settings: Retention
    automatic: str  # "every 1h", or why maintenance does not run by itself
    last_run: MaintenanceReport | None  # the latest recorded run, whatever its status
    last_completed: MaintenanceReport | None  # the latest that was not interrupted
    next_due: dt.datetime | None  # None: no automatic runs
    running: int | None  # pid of the process running maintenance now, if any
    tables: list[TableStats]
    problems: list[str] = field(default_factory=list)  # an unreadable record, config

    def to_json(self) -> dict[str, Any]:
        """The status as plain JSON values."""
        return {
            "root": str(self.root),
            "schema": self.schema,
            "version": self.version,
            "settings": {
                name: {"value": value, "from": source}
                for name, value, source in settings_rows(self.settings, self.schema_tables)
            },
            "maintenance": {
                "automatic": self.automatic,
                "last_run": self.last_run.to_json() if self.last_run else None,
                "next_due": iso(self.next_due) if self.next_due else None,
                "running_pid": self.running,
            },
            "tables": [asdict(t) for t in self.tables],
            "problems": list(self.problems),
        }

    @property
    def schema_tables(self) -> list[str]:
        """The tables, in the schema's order (as `tables` lists them)."""
        return [t.table for t in self.tables]


class Stopped(Exception):
    """Raised inside a run to stop it between two steps."""


# -- settings -----------------------------------------------------------------------------


def env_setting() -> bool | None:
    """$TELELAKE_MAINTENANCE: False for off, None when unset or on (StoreError if odd)."""
    value = os.environ.get(ENV)
    if value is None:
        return None
    word = value.strip().lower()
    if word in _OFF:
        return False
    if word in _ON:
        return None
    raise StoreError(f"${ENV}={value!r}: use off (no automatic maintenance) or on")


def has_work(store: Store, settings: Retention) -> bool:
    """True if maintenance has anything to do in this store: a lake or sql table with a
    retention, or lake tables and a disk budget or auto_compact."""
    tiers = {t.name: t.tier for t in store.schema.tables.values()}
    if any(tiers.get(name) in ("lake", "sql") for name in settings.days):
        return True
    lake = "lake" in tiers.values()
    return lake and (settings.max_disk_gb is not None or settings.auto_compact)


def automatic(store: Store, settings: Retention) -> str:
    """How maintenance runs by itself in this store: "every 1h", or why it does not."""
    if not has_work(store, settings):
        return "off (nothing to do: no retention, disk budget or auto_compact)"
    interval = settings.maintenance_interval
    if interval is None:
        return f"off (maintenance_interval = off, {settings.source('maintenance_interval')})"
    try:
        env = env_setting()
    except StoreError as exc:
        return f"off ({exc})"
    if env is False:
        return f"off (${ENV}={os.environ.get(ENV)})"
    return f"every {format_age(interval)} ({settings.source('maintenance_interval')})"


def settings_rows(settings: Retention, tables: list[str]) -> list[tuple[str, Any, str]]:
    """(setting, value, where it came from) for every setting, tables first."""
    rows: list[tuple[str, Any, str]] = [
        (f"{t}_days", settings.days.get(t), settings.source(f"{t}_days")) for t in tables
    ]
    interval = settings.maintenance_interval
    for name, value in (
        ("max_disk_gb", settings.max_disk_gb),
        ("auto_compact", settings.auto_compact),
        ("maintenance_interval", format_age(interval) if interval is not None else "off"),
        ("backups_keep", settings.backups_keep),
    ):
        rows.append((name, value, settings.source(name)))
    return rows


# -- the record and the lock --------------------------------------------------------------


def read_runs(store: Store) -> tuple[list[MaintenanceReport], str | None]:
    """The recorded runs, oldest first, and a problem if the record is unreadable."""
    try:
        raw = store._meta.maintenance_runs()
    except StoreError as exc:
        return [], str(exc)
    runs, problem = [], None
    for entry in raw:
        try:
            runs.append(MaintenanceReport.from_json(entry))
        except (KeyError, TypeError, ValueError) as exc:
            problem = f"{store._meta.path / 'maintenance.json'}: a malformed run ({exc!r})"
    return runs, problem


def last_completed(runs: list[MaintenanceReport]) -> MaintenanceReport | None:
    """The latest run that was not interrupted (what the interval counts from)."""
    for run in reversed(runs):
        if run.status != INTERRUPTED and run.finished is not None:
            return run
    return None


def next_due(runs: list[MaintenanceReport], interval: dt.timedelta) -> dt.datetime:
    """When maintenance is due next: the last completed run's end plus `interval`
    (a store never maintained is due at once)."""
    last = last_completed(runs)
    if last is None or last.finished is None:
        return dt.datetime.fromtimestamp(0, dt.UTC)
    return last.finished + interval


def _record(store: Store, report: MaintenanceReport) -> None:
    """Append `report` to maintenance.json (the caller holds the maintenance lock)."""
    try:
        raw = store._meta.maintenance_runs()
    except StoreError:
        raw = []  # unreadable: it only records the past, so it starts again
    raw.append(report.to_json())
    store._meta.write_maintenance_runs(raw[-KEEP_RUNS:])


def lock_holder(store: Store) -> int | None:
    """The pid of the process running maintenance of this store now, or None."""
    path = store.root / METADATA_DIR / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        return None
    finally:
        os.close(fd)


@contextmanager
def _locked(store: Store) -> Iterator[bool]:
    """Hold maintenance.lock if nobody does (yields True), else yield False at once."""
    path = store.root / METADATA_DIR / LOCK_NAME
    fd = durable.open_file(path, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # who holds it, for `status`
        yield True
    finally:
        os.close(fd)  # releases the flock


# -- a run --------------------------------------------------------------------------------


def run(
    store: Store,
    *,
    trigger: str = MANUAL,
    if_older_than: dt.timedelta | None = None,
    stop: threading.Event | None = None,
    on_step: Callable[[str], None] | None = None,
) -> MaintenanceReport:
    """One maintenance run, if no other process is running one (and, with
    `if_older_than`, if the last completed run finished longer ago than that).

    Every run is recorded, interrupted ones included; skipped ones (no run) are not.
    `stop` set stops the run after the step in progress (status "interrupted");
    `on_step` is told each step ("retention audit/year=2026/...", "compaction ...").
    """
    now = _now()
    report = MaintenanceReport(started=now, trigger=trigger, host_id=store.host_id)
    report.pid = os.getpid()
    if store.read_only:
        return _skip(report, f"store {store.root} is read-only")
    with _locked(store) as mine:
        if not mine:
            holder = lock_holder(store)
            report.busy = True
            if holder == os.getpid():
                return _skip(report, "this process is maintaining this store already")
            who = f" (pid {holder})" if holder and holder > 0 else ""
            return _skip(report, f"another process is maintaining this store{who}")
        if if_older_than is not None:
            runs, _ = read_runs(store)
            due = next_due(runs, if_older_than)
            if due > now:
                return _skip(report, f"not due until {iso(due)}")
        try:
            _work(store, report, stop, on_step)
        except Stopped:
            report.status = INTERRUPTED
        report.finished = _now()
        if report.errors and report.status == OK:
            report.status = FAILED
        _record(store, report)
    return report


def _skip(report: MaintenanceReport, why: str) -> MaintenanceReport:
    report.status, report.skipped, report.finished = SKIPPED, why, report.started
    return report


def _work(
    store: Store,
    report: MaintenanceReport,
    stop: threading.Event | None,
    on_step: Callable[[str], None] | None,
) -> None:
    def check() -> None:
        if stop is not None and stop.is_set():
            raise Stopped

    try:
        settings = store.retention()
    except StoreError as exc:
        report.errors.append(str(exc))
        return
    tiers = {t.name: t.tier for t in store.schema.tables.values()}
    lake = "lake" in tiers.values()
    check()
    try:
        report.temp_files, report.temp_bytes = store.remove_orphan_temps()
    except OSError as exc:
        report.errors.append(f"temp files: {_error(exc)}")
    if report.temp_files and on_step is not None:
        on_step(f"removed {report.temp_files} temp file(s) of killed writers")
    check()
    if any(tiers.get(t) in ("lake", "sql") for t in settings.days) or (
        lake and settings.max_disk_gb is not None
    ):

        def batch(table: str, rows: int) -> None:
            # Sql tables are counted batch by batch: a run stopped between two batches
            # still records what the first removed.
            if rows:
                report.removed.setdefault(table, Removed()).rows += rows
            check()

        def removed(step: Step) -> None:
            if tiers.get(step.table) == "sql":  # its rows were counted by batch()
                if step.rows and on_step is not None:
                    on_step(f"retention {step.table}: {step.rows:,} {step.partition}")
            elif step.rows or step.files:
                r = report.removed.setdefault(step.table, Removed())
                r.partitions += 1 if step.files else 0
                r.files += step.files
                r.rows += step.rows
                r.bytes += step.bytes
                if on_step is not None:
                    on_step(f"retention {step.table}/{step.partition}: {step.action}")
            check()

        try:
            # Orphaned WAL segments are folded first; this store's own are left to its
            # writers (folding them takes the lock write() needs).
            done = store.enforce_retention(on_step=removed, fold_own=False, on_batch=batch)
        except Stopped:
            raise
        except Exception as exc:  # recorded: the next interval tries again
            report.errors.append(f"retention: {_error(exc)}")
        else:
            report.disk_bytes_before = done.disk_bytes_before
            report.disk_bytes_after = done.disk_bytes_after
    check()
    if lake and settings.auto_compact:

        def merged(table: str, result: PartitionResult) -> None:
            m = report.merged.setdefault(table, Merged())
            m.partitions += 1
            m.files_before += result.files_before
            m.files_after += result.files_after
            m.bytes_before += result.bytes_before
            m.bytes_after += result.bytes_after
            if on_step is not None:
                on_step(f"compaction {table}/{result.partition}")
            check()

        try:
            # Finished partitions only (their time range has ended), as auto_compact says.
            store.compact(
                older_than=dt.timedelta(0), min_files=AUTO_COMPACT_MIN_FILES, on_partition=merged
            )
        except Stopped:
            raise
        except Exception as exc:  # recorded: the next interval tries again
            report.errors.append(f"compaction: {_error(exc)}")


def _error(exc: Exception) -> str:
    """An error as a line of the record: telelake's own as they are, others typed."""
    if isinstance(exc, TelelakeError | OSError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


# -- in the background --------------------------------------------------------------------


class Background:
    """The daemon thread of a store opened for writing: maintenance whenever it is due."""

    def __init__(self, store: Store, interval: dt.timedelta, *, forced: bool = False) -> None:
        self.store = store
        self.interval = interval
        self.forced = forced  # maintenance=True: runs even if maintenance_interval is "off"
        self.stopping = threading.Event()
        self.looked = threading.Event()  # set after each look (a run, or a skip)
        self.last: MaintenanceReport | None = None  # what the latest look did
        self.thread = threading.Thread(
            target=self._loop, name=f"telelake-maintenance {store.root}", daemon=True
        )

    def start(self) -> None:
        """Start the thread (it runs at once if maintenance is due)."""
        self.thread.start()

    def stop(self) -> None:
        """Stop after the step in progress, and wait for the thread to end."""
        self.stopping.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join()

    def _loop(self) -> None:
        wait = 0.0
        while not self.stopping.wait(wait):
            wait = self._once()
            self.looked.set()
        self.looked.set()

    def _once(self) -> float:
        """Run if due; seconds until it should look again."""
        interval = self._interval()
        if interval is None:
            self.stopping.set()  # config.json turned automatic maintenance off
            return 0.0
        try:
            report = self.last = run(
                self.store, trigger=BACKGROUND, if_older_than=interval, stop=self.stopping
            )
        except Exception as exc:  # a daemon thread has nobody to raise to
            warnings.warn(
                f"store {self.store.root}: automatic maintenance failed: {exc!r}", stacklevel=1
            )
            return interval.total_seconds()
        if report.busy:
            return min(interval.total_seconds(), BUSY_RETRY)
        if report.status == FAILED:
            warnings.warn(
                f"store {self.store.root}: automatic maintenance: {'; '.join(report.errors)}",
                stacklevel=1,
            )
        runs, _ = read_runs(self.store)
        due = next_due(runs, interval)
        return max(1.0, (due - dt.datetime.now(dt.UTC)).total_seconds())

    def _interval(self) -> dt.timedelta | None:
        """The interval now (config.json may have changed since the store opened)."""
        try:
            interval = self.store.retention().maintenance_interval
        except StoreError:
            return self.interval  # a broken config.json: the run records the error
        return self.interval if interval is None and self.forced else interval


def start(store: Store, requested: bool | None) -> Background | None:
    """Start background maintenance for a store just opened, if it should run: opened
    for writing, not turned off (`requested` False, $TELELAKE_MAINTENANCE,
    maintenance_interval "off"; `requested` True overrides the last two) and with
    something to do."""
    if store.read_only or requested is False:
        return None
    if requested is None and env_setting() is False:
        return None
    try:
        settings = store.retention()
    except StoreError as exc:
        warnings.warn(f"automatic maintenance off: {exc}", stacklevel=3)
        return None
    interval = settings.maintenance_interval
    if interval is None:
        if not requested:
            return None
        interval = DEFAULT_INTERVAL
    if not has_work(store, settings):
        return None
    background = Background(store, interval, forced=bool(requested))
    background.start()
    return background


def status(store: Store) -> StoreStatus:
    """Settings, the last maintenance run, the next one, and every table's size."""
    problems = []
    try:
        settings = store.retention()
    except StoreError as exc:
        problems.append(str(exc))
        settings = Retention()
    runs, problem = read_runs(store)
    if problem:
        problems.append(problem)
    interval = settings.maintenance_interval
    auto = automatic(store, settings)
    due = next_due(runs, interval) if interval is not None and auto.startswith("every") else None
    return StoreStatus(
        root=store.root,
        schema=store.schema.name,
        version=store.schema.version,
        settings=settings,
        automatic=auto,
        last_run=runs[-1] if runs else None,
        last_completed=last_completed(runs),
        next_due=due,
        running=lock_holder(store),
        tables=store.stats(),
        problems=problems,
    )


# -- text ---------------------------------------------------------------------------------


def describe(report: MaintenanceReport) -> list[str]:
    """Lines saying what a run removed, merged and freed."""
    lines = []
    if report.removed:
        parts = [
            f"{t} {r.rows:,} rows ({r.partitions} partition(s), {r.files} file(s), "
            f"{r.bytes:,} bytes)"
            for t, r in report.removed.items()
        ]
        lines.append("retention removed: " + "; ".join(parts))
    else:
        lines.append("retention removed nothing")
    if report.merged:
        parts = [
            f"{t} {m.partitions} partition(s), {m.files_before} -> {m.files_after} files "
            f"({m.bytes_before:,} -> {m.bytes_after:,} bytes)"
            for t, m in report.merged.items()
        ]
        lines.append("compaction merged: " + "; ".join(parts))
    else:
        lines.append("compaction merged nothing")
    if report.temp_files:
        lines.append(
            f"temp files of killed writers removed: {report.temp_files} "
            f"({report.temp_bytes:,} bytes)"
        )
    lines.append(f"bytes freed: {report.bytes_freed:,}")
    if report.disk_bytes_before is not None and report.disk_bytes_after is not None:
        lines.append(
            f"lake data files: {report.disk_bytes_before:,} -> {report.disk_bytes_after:,} bytes"
        )
    lines.extend(f"error: {e}" for e in report.errors)
    return lines


def _now() -> dt.datetime:
    """Now, to the millisecond (as the record keeps it, so a report reads back equal)."""
    now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def iso(when: dt.datetime) -> str:
    """A time as maintenance.json writes it: `2026-01-15T14:30:00.123Z`."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _parse_iso(text: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def sleep_until(stop: threading.Event, when: dt.datetime) -> bool:
    """Wait until `when` or `stop`; True if stopped."""
    return stop.wait(max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds()))
