"""Folding: turning rows (from a WAL segment, or a large write) into Parquet files.

A plain fold of segment S (no Parquet file changes) runs while its folder holds the
table's fold lock, and goes:

  1. write the intent `S.fold` (JSON: the Parquet files it will publish), durably;
  2. publish each target file (temp + fsync + link + directory fsync);
  3. unlink S and fsync the directory          <- the commit point;
  4. unlink the intent.

Readers treat the targets of an intent whose segment still exists as not yet there
(they read S instead), so a query sees each row once at every step. A crash before 3
leaves S and the intent: recovery deletes the targets that were published and the
intent, and S is folded again later. A crash after 3 leaves only the intent, which
recovery deletes. Either way no row is lost or doubled. Outside readers of the files
(a `**/*.parquet` glob) never see WAL rows, so they see each row at most once too.

A *swap* replaces published files (`sources`): compaction, retention, migrations, and
a fold into an upsert table that rewrites the files holding older versions of its keys.
It goes:

  1. write the intent (sources, targets, committed=false), durably;
  2. write each target under its staged name `<name>.parquet.staged` (no glob matches);
  3. rewrite the intent with committed=true, durably          <- the commit point;
  4. roll forward: rename each source to `<name>.parquet.retired`, each staged target
     to its name, unlink the folded segment (if any), fsync the directories;
  5. after a grace period, delete the retired sources, then the intent.

So at the commit point the replaced files leave the documented glob and the new ones
enter it: an outside reader never counts a row twice (for the instant between the two
renames it may count it zero times, or find a listed file gone: it should retry, as
telelake's own queries do). A crash before 3 is undone (staged targets deleted); a
crash after 3 is rolled forward by whoever next takes the lock.

Folds of one table are serialised by the table's fold lock, so deduplication of keys
against the Parquet files already there sees a stable set of files.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import functools
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from telelake import durable
from telelake._lazy import lazy
from telelake.errors import LockTimeoutError
from telelake.lake import layout, parquet
from telelake.schema.model import Table

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
else:
    np = lazy("numpy")
    pa = lazy("pyarrow")
    pc = lazy("pyarrow.compute")
    pq = lazy("pyarrow.parquet")

INTENT_SUFFIX = ".fold"
LOCK_NAME = "fold.lock"
STAGED_SUFFIX = ".staged"  # a swap's target before its commit
RETIRED_SUFFIX = ".retired"  # a swap's source after its commit, until the grace period ends


def staged(path: Path) -> Path:
    """Where a swap writes target `path` before it commits (outside every `*.parquet` glob)."""
    return path.with_name(path.name + STAGED_SUFFIX)


def retired(path: Path) -> Path:
    """Where a swap moves source `path` at its commit (outside every `*.parquet` glob)."""
    return path.with_name(path.name + RETIRED_SUFFIX)


@dataclass(frozen=True)
class Intent:
    """A fold in progress: which segment, and which files it publishes."""

    segment: str
    targets: tuple[str, ...]  # paths relative to the store root
    # Files a swap replaces (relative paths), and whether it has committed: the intent
    # is rewritten with committed=true once its (staged) targets are durable. Before
    # that readers ignore the targets; after it they ignore the sources (and the
    # segment, if the swap folds one), which are retired for a grace period.
    sources: tuple[str, ...] = ()
    committed: bool = False

    @property
    def is_swap(self) -> bool:
        """True for an intent that replaces published files (see the module docstring)."""
        return bool(self.sources)

    @property
    def folded_segment(self) -> str | None:
        """The segment whose rows this committed swap published (readers skip it)."""
        return self.segment if self.is_swap and self.committed and self.segment else None

    def dump(self) -> bytes:
        """The intent's JSON text."""
        data: dict[str, object] = {"segment": self.segment, "targets": list(self.targets)}
        if self.sources:
            data["sources"] = list(self.sources)
            data["committed"] = self.committed
        return json.dumps(data).encode()

    @staticmethod
    def load(path: Path) -> Intent:
        """Read an intent file (ValueError when it is not one)."""
        data = json.loads(path.read_text(encoding="utf-8"))
        return Intent(
            str(data["segment"]),
            tuple(str(t) for t in data["targets"]),
            tuple(str(s) for s in data.get("sources", ())),
            bool(data.get("committed", False)),
        )

    def hidden(self, root: Path, live_segments: set[str]) -> set[Path]:
        """The files a reader must not read while this intent exists.

        A fold's targets stay hidden while its segment exists; a direct write's while
        the intent exists; a swap's until it commits, and its sources after that.
        """
        if self.is_swap:
            names = self.sources if self.committed else self.targets
        elif not self.segment or self.segment in live_segments:
            names = self.targets
        else:
            names = ()
        return {root / n for n in names}


@contextmanager
def table_lock(wal_dir: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold the table's fold lock (released if the process dies).

    Waits at most `timeout` seconds (None: as long as it takes; 0: not at all), then
    raises LockTimeoutError naming the process that holds it (each holder writes its
    pid into the lock file) and whether it is stopped. Only writers take this lock:
    readers never wait for a fold or a compaction.
    """
    durable.ensure_dir(wal_dir)
    path = wal_dir / LOCK_NAME
    fd = durable.open_file(path, os.O_RDWR)
    try:
        _acquire(fd, path, timeout)
        mark = f"{os.getpid()}\n".encode()
        os.pwrite(fd, mark, 0)
        os.ftruncate(fd, len(mark))
        yield
    finally:
        os.close(fd)


def _acquire(fd: int, path: Path, timeout: float | None) -> None:
    if timeout is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _busy(path, timeout) from None
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.1)


def _busy(path: Path, timeout: float) -> LockTimeoutError:
    """The error for a fold lock held longer than `timeout`: who holds it, what to do."""
    try:
        pid: int | None = int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        pid = None
    who = "another process"
    advice = "wait for it to finish, or end it"
    if pid is not None:
        who = f"process {pid}"
        try:  # Linux: the state letter after the command name; T is stopped (Ctrl-Z)
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            state = ""
        if state in ("T", "t"):
            who += " (stopped)"
            advice = f"resume it (`kill -CONT {pid}`, or `fg` in its shell) or end it"
        else:
            advice = f"wait for it to finish, or end it (`kill {pid}`)"
    return LockTimeoutError(
        f"the fold lock {path} is held by {who}, which is folding or compacting this "
        f"table, for more than {timeout:g}s; {advice}, then try again (nothing of this "
        "call was written)",
        pid=pid,
    )


AT = "__tl_at"  # acknowledgement time (µs) of each WAL record: orders writes across writers
_NEVER = 2**63 - 1


def drop_existing_keys(
    table: Table, data: pa.Table, files: list[Path], others: pa.Table | None = None
) -> pa.Table:
    """Rows of `data` whose key nobody wrote first; first write wins (INSERT OR IGNORE).

    A row is dropped when its key is in one of the Parquet `files`, earlier in `data`,
    or in `others` (the records of other live WAL segments) with an earlier
    acknowledgement time; rows without a time (direct writes) come after every WAL row.
    Only key columns, times and row positions are compared; existing files are read with
    a filter on the batch's key range, so Parquet row-group statistics skip most of them.
    """
    if not table.key or data.num_rows == 0:
        return data
    bounds = key_bounds(table, data)
    # Most files cannot hold any of the batch's keys (keys grow with time): their footer
    # statistics rule them out without DuckDB opening them.
    files = [f for f in files if parquet.may_overlap(parquet.column_ranges(f, table.key), bounds)]
    if not files and (others is None or others.num_rows == 0) and _unique(data, table.key):
        return data  # the common case: new keys only, nothing to compare with
    if others is None or others.num_rows == 0:
        kept = _first_new(table, data, files, bounds)
    else:
        kept = _first_new_across_writers(table, data, files, bounds, others)
    if len(kept) == data.num_rows:
        return data  # the common case: nothing to drop, no copy
    return data.take(kept)


def _first_new(table: Table, data: pa.Table, files: list[Path], bounds: parquet.Ranges) -> pa.Array:
    """Positions (ascending) of the rows to keep when no other live writer can hold a
    key: the first row of each key, unless an existing file has it. Arrow only: a
    hash group-by and an anti-join, about a third of the cost of the same in DuckDB."""
    key = list(table.key)
    positions = pa.array(np.arange(data.num_rows, dtype=np.int64))
    incoming = data.select(key).append_column("__tl_pos", positions)
    first = incoming.group_by(key, use_threads=False).aggregate([("__tl_pos", "min")])
    if files:
        existing = pq.read_table(
            [str(f) for f in files], columns=key, filters=within(bounds), partitioning=None
        )
        first = first.join(existing, keys=key, join_type="left anti")
    return pa.array(np.sort(first.column("__tl_pos_min").to_numpy()))


def within(bounds: parquet.Ranges) -> pc.Expression:
    """`lo <= column <= hi` for every key column: row groups outside are never read."""
    out: pc.Expression | None = None
    for name, (low, high) in bounds.items():
        term = (pc.field(name) >= low) & (pc.field(name) <= high)
        out = term if out is None else out & term
    assert out is not None
    return out


def _first_new_across_writers(
    table: Table, data: pa.Table, files: list[Path], bounds: parquet.Ranges, others: pa.Table
) -> pa.Array:
    """Like `_first_new`, also dropping rows whose key another live WAL segment
    acknowledged earlier (`others`); DuckDB, for the time-ordered anti-join."""
    keys = ", ".join(f'"{k}"' for k in table.key)
    at = data.column(AT) if AT in data.column_names else pa.repeat(pa.scalar(_NEVER), data.num_rows)
    incoming = (
        data.select(list(table.key))
        .append_column("__tl_pos", pa.array(np.arange(data.num_rows, dtype=np.int64)))
        .append_column(AT, at)
    )
    con = _scratch().cursor()  # its own connection: registrations stay local
    try:
        con.register("incoming", incoming)
        keep = f"SELECT min(__tl_pos) AS __tl_pos FROM incoming GROUP BY {keys}"
        keep = f"SELECT i.* FROM incoming i JOIN ({keep}) USING (__tl_pos)"
        params: dict[str, object] = {}
        con.register("others", others.select([*table.key, AT]))
        same = " AND ".join(f'k."{k}" = o."{k}"' for k in table.key)
        keep = f"SELECT k.* FROM ({keep}) k ANTI JOIN others o ON {same} AND o.{AT} < k.{AT}"
        if files:
            ranges = " AND ".join(
                f'"{k}" BETWEEN $lo{i} AND $hi{i}' for i, k in enumerate(table.key)
            )
            for i, k in enumerate(table.key):
                params[f"lo{i}"], params[f"hi{i}"] = bounds[k]
            listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
            existing = f"SELECT {keys} FROM read_parquet([{listed}]) WHERE {ranges}"
            keep = f"SELECT * FROM ({keep}) ANTI JOIN ({existing}) USING ({keys})"
        query = f"SELECT __tl_pos FROM ({keep}) ORDER BY 1"
        positions = con.sql(query, params=params) if params else con.sql(query)
        kept: pa.Array = positions.to_arrow_table().column(0).combine_chunks()
    finally:
        con.close()
    return kept


@functools.cache
def _scratch() -> duckdb.DuckDBPyConnection:
    # Opening an in-memory database costs ~30 ms, about a quarter of a key check: one per
    # process, with a cursor (a cheap connection to it) per check.
    return duckdb.connect(":memory:")


def key_bounds(table: Table, data: pa.Table) -> parquet.Ranges:
    """(min, max) of each key column of `data` (via Arrow: DuckDB would need pytz)."""
    out: parquet.Ranges = {}
    for k in table.key:
        mm = pc.min_max(data.column(k))
        out[k] = (mm["min"].as_py(), mm["max"].as_py())
    return out


def _unique(data: pa.Table, key: tuple[str, ...]) -> bool:
    """True if no key occurs twice in `data` (Arrow's hash group-by, no copy of rows)."""
    return bool(data.select(list(key)).group_by(list(key)).aggregate([]).num_rows == data.num_rows)


def plan_targets(
    root: Path,
    table: Table,
    data: pa.Table,
    defaults: dict[str, str],
    now: dt.datetime,
    taken: set[Path] | None = None,
) -> list[tuple[Path, pa.Table]]:
    """The files a fold will publish: per partition, one per session (or one for
    them all), named as lake/layout.py says. The caller holds the table's fold lock."""
    assert table.parquet is not None
    taken = set() if taken is None else taken
    out = []
    for values, rows in layout.split_by_partition(table, data, defaults):
        directory = root / table.name / layout.partition_path(values)
        for part in layout.by_session(table, rows):
            path = target_path(table, directory, part, now, taken)
            out.append((path, part.select(list(table.column_names))))
    return out


def target_path(
    table: Table, directory: Path, rows: pa.Table, now: dt.datetime, taken: set[Path]
) -> Path:
    """A free name in `directory` for a new file holding `rows` (see lake/layout.py)."""
    assert table.parquet is not None
    when, suffix = layout.name_for(table, rows, now)
    return layout.free_path(directory, table.parquet.file_prefix, when, suffix, taken)


def publish_targets(
    targets: list[tuple[Path, pa.Table]],
    table: Table,
    metadata: dict[bytes, bytes],
    *,
    stage: bool = False,
) -> None:
    """Write every planned target file (they must not exist yet); with `stage`, under
    its staged name (a swap's targets, renamed into place at its commit)."""
    assert table.parquet is not None
    spec = table.parquet
    for path, rows in targets:
        rows = parquet.sort_rows(rows, spec.sort)
        rows = rows.replace_schema_metadata({**(rows.schema.metadata or {}), **metadata})

        def fill(tmp: Path, rows: pa.Table = rows) -> None:
            parquet.write_table(tmp, rows, spec)

        durable.write_durably(staged(path) if stage else path, fill, replace=False)


def recover(root: Path, intent: Intent, wal_dir: Path) -> bool:
    """Undo or finish the work of an intent whose writer is gone; False if the intent
    must stay for now.

    A fold whose segment still exists, a direct write, and an uncommitted swap are
    undone (their targets deleted); a committed fold needs nothing. A committed swap is
    rolled forward and kept: its sources go when their grace period ends (`retire`).
    """
    if intent.is_swap and intent.committed:
        roll_forward(root, intent, wal_dir)
        return False
    if intent.is_swap or not intent.segment or (wal_dir / intent.segment).exists():
        remove_targets(root, intent)
    return True


def roll_forward(root: Path, intent: Intent, wal_dir: Path) -> None:
    """Step 4 of a committed swap (idempotent): sources out of the glob, targets in, the
    folded segment gone. Sources go first, so no reader ever counts a row twice."""
    assert intent.is_swap and intent.committed
    dirs: set[Path] = set()
    for rel in intent.sources:
        path = root / rel
        try:
            os.rename(path, retired(path))
            dirs.add(path.parent)
        except FileNotFoundError:
            pass
    for rel in intent.targets:
        path = root / rel
        try:
            os.rename(staged(path), path)
            dirs.add(path.parent)
        except FileNotFoundError:
            pass
    if intent.segment:
        try:
            (wal_dir / intent.segment).unlink()
            dirs.add(wal_dir)
        except FileNotFoundError:
            pass
    for d in dirs:
        durable.fsync_dir(d)


def published_path(root: Path, rel: str) -> Path:
    """Where a committed swap's target is now: its name, or still its staged name."""
    path = root / rel
    return path if path.exists() else staged(path)


def retire(root: Path, intent: Intent) -> None:
    """Delete the retired sources of a committed swap (its grace period is over)."""
    assert intent.committed
    remove_files(root, tuple(str(retired(Path(s))) for s in intent.sources))


def remove_targets(root: Path, intent: Intent) -> None:
    """Delete the published (or staged) targets of an unfinished fold or swap."""
    remove_files(root, intent.targets)
    remove_files(root, tuple(str(staged(Path(t))) for t in intent.targets))


def remove_files(root: Path, relative: tuple[str, ...]) -> None:
    """Delete files (paths relative to `root`) that may or may not exist, durably."""
    dirs = set()
    for rel in relative:
        path = root / rel
        try:
            path.unlink()
            dirs.add(path.parent)
        except FileNotFoundError:
            pass
    for d in dirs:
        durable.fsync_dir(d)
