"""Folding: turning rows (from a WAL segment, or a large write) into Parquet files.

A fold of segment S runs while its folder holds S's lock, and goes:

  1. write the intent `S.fold` (JSON: the Parquet files it will publish), durably;
  2. publish each target file (temp + fsync + link + directory fsync);
  3. unlink S and fsync the directory          <- the commit point;
  4. unlink the intent.

Readers treat the targets of an intent whose segment still exists as not yet there
(they read S instead), so a query sees each row once at every step. A crash before 3
leaves S and the intent: recovery deletes the targets that were published and the
intent, and S is folded again later. A crash after 3 leaves only the intent, which
recovery deletes. Either way no row is lost or doubled.

Folds of one table are serialised by the table's fold lock, so deduplication of keys
against the Parquet files already there sees a stable set of files.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from telelake import durable
from telelake.lake import layout, parquet
from telelake.schema.model import Table

INTENT_SUFFIX = ".fold"
LOCK_NAME = "fold.lock"


@dataclass(frozen=True)
class Intent:
    """A fold in progress: which segment, and which files it publishes."""

    segment: str
    targets: tuple[str, ...]  # paths relative to the store root
    # Files a compaction replaces (relative paths), and whether it has committed: the
    # intent is rewritten with committed=true once its targets are durable. Before
    # that readers ignore the targets; after it they ignore the sources, which stay on
    # disk for a grace period (queries that listed them can still read them).
    sources: tuple[str, ...] = ()
    committed: bool = False

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
        the intent exists; a compaction's until it commits, and its sources after that.
        """
        if self.sources:
            names = self.sources if self.committed else self.targets
        elif not self.segment or self.segment in live_segments:
            names = self.targets
        else:
            names = ()
        return {root / n for n in names}


@contextmanager
def table_lock(wal_dir: Path) -> Iterator[None]:
    """Hold the table's fold lock (blocking; released if the process dies)."""
    durable.ensure_dir(wal_dir)
    fd = os.open(wal_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


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
            [str(f) for f in files], columns=key, filters=_within(bounds), partitioning=None
        )
        first = first.join(existing, keys=key, join_type="left anti")
    return pa.array(np.sort(first.column("__tl_pos_min").to_numpy()))


def _within(bounds: parquet.Ranges) -> pc.Expression:
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
    root: Path, table: Table, data: pa.Table, defaults: dict[str, str], stamp: str, suffix: str
) -> list[tuple[Path, pa.Table]]:
    """The files a fold will publish: one per partition, named from the segment."""
    assert table.parquet is not None
    out = []
    for values, rows in layout.split_by_partition(table, data, defaults):
        directory = root / table.name / layout.partition_path(values)
        name = f"{table.parquet.file_prefix}_{stamp}_{suffix}.parquet"
        out.append((directory / name, rows.select(list(table.column_names))))
    return out


def publish_targets(
    targets: list[tuple[Path, pa.Table]], table: Table, metadata: dict[bytes, bytes]
) -> None:
    """Write every planned target file (they must not exist yet)."""
    assert table.parquet is not None
    spec = table.parquet
    for path, rows in targets:
        rows = parquet.sort_rows(rows, spec.sort)
        rows = rows.replace_schema_metadata({**(rows.schema.metadata or {}), **metadata})

        def fill(tmp: Path, rows: pa.Table = rows) -> None:
            parquet.write_table(tmp, rows, spec)

        durable.write_durably(path, fill, replace=False)


def recover(root: Path, intent: Intent, wal_dir: Path) -> bool:
    """Undo the work of an intent whose writer is gone; False if it must stay for now.

    A fold whose segment still exists, a direct write, and an uncommitted compaction
    are undone (their targets deleted); a committed fold needs nothing. A committed
    compaction is kept: its sources go when their grace period ends (`retire`).
    """
    if intent.sources and intent.committed:
        return False
    if intent.sources or not intent.segment or (wal_dir / intent.segment).exists():
        remove_files(root, intent.targets)
    return True


def retire(root: Path, intent: Intent) -> None:
    """Delete the sources of a committed compaction (its grace period is over)."""
    assert intent.committed
    remove_files(root, intent.sources)


def remove_targets(root: Path, intent: Intent) -> None:
    """Delete the published targets of an unfinished fold."""
    remove_files(root, intent.targets)


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
