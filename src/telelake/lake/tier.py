"""The lake tier: WAL segments for small writes, Parquet files for everything folded.

Write path (one Store instance = one writer):
    small batch -> append to this writer's segment of the table (fsync per policy)
    large batch -> committed straight to Parquet (deduplicated, intent-protected)
    segment large or old, or store closing -> folded into Parquet (see fold.py)

Read path: a snapshot per table = the Parquet files (minus the targets of folds still
in progress) plus the complete records of every live segment; see `snapshot`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import string
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from telelake import durable, quarantine
from telelake._lazy import lazy
from telelake.errors import LockTimeoutError, StoreError
from telelake.lake import compact, fold, layout, listing, parquet, prune, retention, upsert, wal
from telelake.schema.model import Schema, Table

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

_ALPHABET = string.ascii_lowercase + string.digits
WAL_DIR = "_wal"
# Names in a WAL directory that only `recover` (under the fold lock) deals with.
_LEFTOVERS = (fold.INTENT_SUFFIX, upsert.DEAD_SUFFIX)


def random_token(n: int) -> str:
    """`n` random lowercase letters and digits."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def session_suffix() -> str:
    """Four random characters that tell this writer's files apart (spec §2.3, §7.3)."""
    return random_token(4)


def sql_literal(text: str) -> str:
    """A single-quoted SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class Durability:
    """When WAL appends reach the disk, and when segments are folded.

    fsync: "always" (fdatasync before each write is acknowledged), "batch" (the same,
    with concurrent writes of a process sharing one fdatasync), "interval" (a
    background fdatasync every `interval` seconds), "off" (never; the OS decides).
    """

    fsync: str = "always"
    interval: float = 1.0
    # 64 MiB of Arrow data makes Parquet files of ~110k rows of proc_samples, about what
    # a large direct write makes (100k): few folds (each costs fsyncs and a key check)
    # and few files, for at most 64 MiB of memory per table and writer (a segment's
    # batches are kept for its fold).
    fold_bytes: int = 64 << 20
    # Rows reach Parquet (where readers of the files themselves see them) within
    # `fold_age` seconds, spec 000 §7.1's flush interval, or sooner after `fold_rows`
    # rows. Such folds run on a background thread: write() never waits for them. Not
    # §7.1's 1,000 rows: that is its in-memory writer's batch (`store.writer`'s
    # batch_size); a file per 1,000 WAL rows cut 8 writer processes' acknowledged
    # throughput to a third here and makes a file a second per busy writer.
    fold_rows: int = 100_000
    fold_age: float = 30.0
    direct_rows: int = 50_000
    # Files replaced by a compaction stay on disk this long after it commits (hidden
    # from new queries), so a query that listed them before still finds them.
    retire_after: float = 120.0
    # How long a writer (a fold, a direct write, a compaction) waits for a table's fold
    # lock held by another process before it gives up with LockTimeoutError. Readers
    # never wait for it.
    lock_timeout: float = 60.0


@dataclass
class Snapshot:
    """What a query of one table reads: Parquet files plus live WAL rows."""

    files: list[Path]
    wal: pa.Table | None
    wal_problems: list[str]


class LakeTier:
    """Append-only, hive-partitioned Parquet files under `<root>/<table>/`, fed by a WAL."""

    def __init__(
        self,
        root: Path,
        schema: Schema,
        defaults: Mapping[str, str],
        durability: Durability | None = None,
    ) -> None:
        self.root = root
        self.schema = schema
        self.defaults = dict(defaults)
        self.durability = durability or Durability()
        self.suffix = session_suffix()
        self._segments: dict[str, wal.SegmentWriter] = {}
        self._opened_at: dict[str, float] = {}
        self._lock = threading.RLock()
        self._cache = wal.SegmentCache()
        self._plain_schemas: dict[
            int, tuple[tuple[pa.Field, ...], pa.Schema, tuple[tuple[int, str], ...]]
        ] = {}
        self._checked: dict[tuple[Path, int], str | None] = {}
        self._bounds: dict[Path, tuple[int, upsert.LexBounds | None]] = {}
        self._lacking: dict[tuple[Path, int], bool] = {}
        self._stop = threading.Event()
        self._fold_lock = threading.Lock()  # one fold of this writer's segments at a time
        self._fold_wanted = threading.Event()
        self._folder: threading.Thread | None = None
        self._syncer: threading.Thread | None = None
        if self.durability.fsync == "interval":
            self._syncer = threading.Thread(
                target=self._sync_loop, daemon=True, name="telelake-wal-sync"
            )
            self._syncer.start()

    # -- places -------------------------------------------------------------------------

    def table_dir(self, table: Table) -> Path:
        """The directory holding every Parquet file of `table`."""
        return self.root / table.name

    def wal_dir(self, table: Table) -> Path:
        """The directory holding the WAL segments and fold intents of `table`."""
        return self.root / WAL_DIR / table.name

    @property
    def metadata(self) -> dict[bytes, bytes]:
        """Key-value metadata of every Parquet file this store writes."""
        return {
            parquet.META_SCHEMA: self.schema.name.encode(),
            parquet.META_VERSION: self.schema.version.encode(),
        }

    # -- writing ------------------------------------------------------------------------

    def check_partition_values(self, table: Table, data: pa.Table) -> None:
        """ValueError unless every partition key value of `data` is usable in a path.

        Checked before anything is written, so a bad value rejects the whole call
        instead of failing later, when its WAL rows are folded.
        """
        for key in table.partition.keys:
            if key in data.column_names:
                column = data.column(key)
                # (distinct values in order of first appearance: the first bad one
                # is the one of the first bad row)
                for value in pc.unique(column).to_pylist():
                    try:
                        layout.check_key_value(key, value)
                    except layout.KeyValueError as exc:
                        where = pc.is_null(column) if value is None else pc.equal(column, value)
                        exc.row = pc.index(where, True).as_py()
                        raise

    def write(self, table: Table, data: pa.Table, *, direct: bool = False) -> int:
        """Write validated rows; they are acknowledged (durable per policy) on return.
        Large writes (or `direct`) go straight to Parquet, small ones to the WAL.

        Returns the rows stored: all of them, but under `write = "ignore"` the repeats
        of a key (in `data`, or already held) that the first write of it outlives.
        """
        if direct or data.num_rows >= self.durability.direct_rows:
            stored = self.commit(table, data)
            return data.num_rows if table.write == "upsert" else stored
        now = time.time_ns() // 1000
        data = data.append_column(fold.AT, pa.repeat(pa.scalar(now, pa.int64()), data.num_rows))
        with self._lock:
            stored = self._stored(table, data)
            segment = self._segment(table, data.schema)
            end = 0
            try:
                for batch in data.to_batches():
                    end = segment.append(batch)
            except OSError:
                self._abandon(table, segment)
                raise
        self._acknowledge(table, segment, end)
        return stored

    def _stored(self, table: Table, data: pa.Table) -> int:
        """How many rows of a write about to be appended will be stored (see `write`).

        For `ignore` tables: its distinct keys that no live segment and no published
        file holds. Sources whose key bounds cannot meet the write's are not read (keys
        usually grow with time: a new write's keys lie past everything held)."""
        if table.write != "ignore":
            return int(data.num_rows)
        key = list(table.key)
        keys = data.select(key)
        bounds = upsert.lex_bounds(table, keys)
        held: list[pa.Table] = []
        # Segments before files: a fold publishes its files before its segment goes, so
        # a key moving from one to the other is seen in one place at least.
        for path, contents in self._live_segments(table):
            if upsert.may_share_keys(self._segment_bounds(table, path, contents), bounds):
                held.append(contents.table().select(key))
        box = fold.key_bounds(table, keys)
        files = [
            f
            for f in self.files(table)
            if parquet.may_overlap(parquet.column_ranges(f, table.key), box)
        ]
        if files:
            held.append(
                pq.read_table(
                    [str(f) for f in files],
                    columns=key,
                    filters=fold.within(box),
                    partitioning=None,
                )
            )
        return upsert.new_key_count(table, keys, held)

    def _segment_bounds(
        self, table: Table, path: Path, contents: wal.SegmentContents
    ) -> upsert.LexBounds | None:
        """The key bounds of a segment's records, kept up to date batch by batch."""
        seen, bounds = self._bounds.get(path, (0, None))
        if seen > len(contents.batches):
            seen, bounds = 0, None  # a new segment under an old name
        for batch in contents.batches[seen:]:
            part = upsert.lex_bounds(table, pa.Table.from_batches([batch]))
            bounds = part if seen == 0 else upsert.merge_bounds(bounds, part)
            seen += 1
        self._bounds[path] = (seen, bounds)
        return bounds

    def write_plain(
        self, table: Table, fields: tuple[pa.Field, ...], columns: list[list[Any]], rows: int
    ) -> int | None:
        """`write` for a few rows given as checked plain column values (of `fields`, in
        order), stored as one rows record; acknowledged on return like `write`, and
        returning the rows stored as `write` does.

        Returns None, having written nothing, if a string cannot be stored (a lone
        surrogate): the Arrow path then reports it. ValueError for a partition key value
        that cannot be a path, as `check_partition_values` raises.
        """
        schema, keys = self._plain_schema(table, fields)
        for index, name in keys:
            for value in dict.fromkeys(columns[index]):  # in order: the first bad row
                try:
                    layout.check_key_value(name, value)
                except layout.KeyValueError as exc:
                    exc.row = columns[index].index(value)
                    raise
        with self._lock:
            stored = rows
            if table.write == "ignore":
                try:
                    stored = self._stored(table, _plain_keys(table, fields, columns))
                except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeEncodeError):
                    return None  # the Arrow path checks these values and says why
            segment = self._segment(table, schema)
            try:
                end = segment.append_rows(time.time_ns() // 1000, columns, rows)
            except UnicodeEncodeError:
                return None  # raised before a byte was written
            except OSError:
                self._abandon(table, segment)
                raise
        self._acknowledge(table, segment, end)
        return stored

    def _plain_schema(
        self, table: Table, fields: tuple[pa.Field, ...]
    ) -> tuple[pa.Schema, tuple[tuple[int, str], ...]]:
        """The WAL schema of plain rows of `fields`, and which of them are partition keys
        (position, name). Callers pass the same tuple for the same columns (validate
        caches it per plan), so both are worked out once."""
        hit = self._plain_schemas.get(id(fields))
        if hit is not None and hit[0] is fields:
            return hit[1], hit[2]
        schema = pa.schema([*fields, pa.field(fold.AT, pa.int64())])
        keys = tuple((i, f.name) for i, f in enumerate(fields) if f.name in table.partition.keys)
        self._plain_schemas[id(fields)] = (fields, schema, keys)  # `fields` keeps its id
        return schema, keys

    def _acknowledge(self, table: Table, segment: wal.SegmentWriter, end: int) -> None:
        """Wait until a write that ends at `end` is durable (per policy), then fold if due."""
        try:
            segment.wait_durable(end)
        except OSError:
            with self._lock:
                self._abandon(table, segment)
            raise
        if segment.data_bytes >= self.durability.fold_bytes:
            self._fold_now(table, stacklevel=6)
        elif self._due_soon(table, segment):
            self._fold_soon()

    def _fold_now(self, table: Table, stacklevel: int = 2) -> None:
        """Fold this writer's segment of `table` and any orphans; a failure is a warning
        (the rows are acknowledged, in the WAL: the segment waits for a later fold)."""
        try:
            self.fold_own(table)
            self.fold_orphans(table)  # a long-lived writer tidies up after dead ones
        except (OSError, LockTimeoutError) as exc:
            warnings.warn(f"table {table.name!r}: fold postponed: {exc}", stacklevel=stacklevel)

    def _fold_soon(self) -> None:
        """Wake the background folder."""
        self._start_folder()
        self._fold_wanted.set()

    def _start_folder(self) -> None:
        """Start the background folder, once: when this writer opens its first segment."""
        with self._lock:
            if self._folder is None and not self._stop.is_set():
                self._folder = threading.Thread(
                    target=self._fold_loop, daemon=True, name="telelake-fold"
                )
                self._folder.start()

    def _fold_loop(self) -> None:
        """Fold segments that are due by rows or age, until the tier closes. Wakes when
        a write asks and every so often, so an idle writer's rows reach Parquet too."""
        period = max(0.05, min(1.0, self.durability.fold_age / 4))
        while not self._stop.is_set():
            self._fold_wanted.wait(period)
            self._fold_wanted.clear()
            if self._stop.is_set():
                return
            with self._lock:
                due = [
                    self.schema.tables[name]
                    for name, seg in self._segments.items()
                    if not seg.closed and self._due_soon(self.schema.tables[name], seg)
                ]
            for table in due:
                self._fold_now(table)

    def _segment(self, table: Table, schema: pa.Schema) -> wal.SegmentWriter:
        seg = self._segments.get(table.name)
        if seg is None or seg.closed:
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
            name = f"{stamp}-{os.getpid()}-{random_token(8)}{wal.SUFFIX}"
            policy = table.fsync or self.durability.fsync
            seg = wal.SegmentWriter(self.wal_dir(table) / name, schema, policy)
            self._segments[table.name] = seg
            self._opened_at[table.name] = time.monotonic()
            self._start_folder()  # folds it once it is `fold_age` old, writes or not
        elif seg.schema is not schema and not seg.schema.equals(schema):
            raise ValueError(f"table {table.name!r}: rows do not match the WAL segment schema")
        return seg

    def _abandon(self, table: Table, segment: wal.SegmentWriter) -> None:
        # The segment keeps its complete records and is folded later as an orphan.
        segment.abandon()
        if self._segments.get(table.name) is segment:
            del self._segments[table.name]

    def _due_soon(self, table: Table, segment: wal.SegmentWriter) -> bool:
        """Is this writer's segment of `table` due for a background fold (rows or age)?"""
        return (
            segment.rows >= self.durability.fold_rows
            or self._age(table) >= self.durability.fold_age
        )

    def _age(self, table: Table) -> float:
        """Seconds since this writer's segment of `table` was opened."""
        return time.monotonic() - self._opened_at.get(table.name, time.monotonic())

    def commit(
        self, table: Table, data: pa.Table, segment: Path | None = None, *, wait: bool = True
    ) -> int:
        """Fold rows into Parquet atomically; with `segment`, retire that segment.

        Runs under the table's fold lock (waiting for it up to `lock_timeout`, or, without
        `wait`, not at all: LockTimeoutError); the caller holds the segment's lock. Returns
        the rows published: under `ignore`, keys that already exist are dropped (the
        first write wins); under `upsert`, each key's newest version replaces the
        older ones (see lake/upsert.py).
        """
        # A segment's rows come as one chunk per acknowledged write: thousands of tiny
        # chunks make every later step (partition split, sizing, encoding) crawl.
        data = data.combine_chunks()
        with self.table_lock(table, wait=wait):
            self._recover_locked(table)
            if segment is not None and not segment.exists():
                return 0  # a swap that committed before a crash published it: rolled forward
            if table.write == "upsert":
                return self._commit_upsert(table, data, segment)
            existing = []
            if table.key:
                # Files a compaction or retention retired (in their grace period) hold
                # no rows any more: a key only they hold is free to be written again.
                hidden = self.hidden_files(table)
                existing = [f for f in self.files(table) if f not in hidden]
            others = self._other_segments(table, segment) if table.key else None
            rows = fold.drop_existing_keys(table, data, existing, others)
            self._publish(table, rows, segment)
            return int(rows.num_rows)

    def _publish(self, table: Table, rows: pa.Table, segment: Path | None) -> None:
        """A plain fold (no published file changes): the rows' files appear, then the
        segment goes (the commit point), or the intent does for a direct write."""
        wal_dir = self.wal_dir(table)
        if segment is not None:
            seg_name = segment.name
            intent_path = wal_dir / (seg_name + fold.INTENT_SUFFIX)
        else:
            seg_name = ""
            intent_path = wal_dir / f"direct-{random_token(8)}{fold.INTENT_SUFFIX}"
        now = dt.datetime.now(dt.UTC)
        targets = fold.plan_targets(self.root, table, rows, self.defaults, now)
        intent = fold.Intent(seg_name, tuple(str(p.relative_to(self.root)) for p, _ in targets))
        durable.write_bytes_durably(intent_path, intent.dump())
        try:
            fold.publish_targets(targets, table, self._file_metadata(table))
        except BaseException:
            # Fail closed: undo what was published; the rows stay where they were
            # (the segment, or the caller's hands) and nothing half-done is visible.
            with contextlib.suppress(OSError):
                fold.remove_targets(self.root, intent)
                intent_path.unlink()
            raise
        if segment is not None:
            segment.unlink()  # the commit point of a segment fold
        intent_path.unlink()  # the commit point of a direct write
        durable.fsync_dir(wal_dir)

    def _file_metadata(self, table: Table) -> dict[bytes, bytes]:
        return {**self.metadata, parquet.META_TABLE: table.name.encode()}

    def _commit_upsert(self, table: Table, data: pa.Table, segment: Path | None) -> int:
        """Fold rows into an upsert table: each key's newest version wins (the caller
        holds the fold lock). Files holding older versions of the published keys are
        rewritten without them in the same swap, so Parquet keeps one row per key."""
        if fold.AT not in data.column_names:  # a direct write: acknowledged now
            now = pa.scalar(time.time_ns() // 1000, pa.int64())
            data = data.append_column(fold.AT, pa.repeat(now, data.num_rows))
        me = segment.name if segment is not None else ""
        if segment is not None:
            data = upsert.drop_dead(table, data, self._dead_records(table, me))
        data = upsert.last_per_key(table, data)
        data, outdated = upsert.resolve(table, data, me, self._live_records(table, segment))
        for name, records in outdated.items():
            self._mark_dead(table, name, records)  # durable before the commit
        taken: set[Path] = set()
        sources, rewritten = self._without_keys(table, data, taken)
        if not sources:
            self._publish(table, data, segment)
            return int(data.num_rows)
        now = dt.datetime.now(dt.UTC)
        targets = fold.plan_targets(self.root, table, data, self.defaults, now, taken)
        compact.swap(
            self.root,
            table,
            sources,
            targets + rewritten,
            self.wal_dir(table),
            self._file_metadata(table),
            random_token(8),
            segment=me,
        )
        return int(data.num_rows)

    def _without_keys(
        self, table: Table, rows: pa.Table, taken: set[Path]
    ) -> tuple[list[Path], list[tuple[Path, pa.Table]]]:
        """The published files holding a key of `rows`, and each rewritten without those
        keys (None of them when it held nothing else). Footer statistics of the key
        columns rule most files out unread."""
        assert table.parquet is not None
        if rows.num_rows == 0:
            return [], []
        bounds = fold.key_bounds(table, rows)
        keys = rows.select(list(table.key))
        hidden = self.hidden_files(table)
        sources: list[Path] = []
        rewritten: list[tuple[Path, pa.Table]] = []
        now = dt.datetime.now(dt.UTC)
        for path in self.files(table):
            if path in hidden or not self._usable(table, path):
                continue
            if not parquet.may_overlap(parquet.column_ranges(path, table.key), bounds):
                continue
            file_keys = parquet.read_verified(path, list(table.key))
            drop = upsert.replaced(table, file_keys, keys)
            if drop.size == 0:
                continue
            if not self.rewritable(table, path):
                raise StoreError(
                    f"table {table.name!r}: {path} holds an older version of a key being "
                    "written, but a newer minor version of the schema wrote it: write "
                    "with that version"
                )
            full = compact.read_as_table(path, table)
            keep = np.ones(full.num_rows, dtype=bool)
            keep[drop] = False
            sources.append(path)
            if keep.any():
                rest = full.filter(pa.array(keep))
                target = fold.target_path(table, path.parent, rest, now, taken)
                rewritten.append((target, rest))
        return sources, rewritten

    def _live_segments(
        self, table: Table, exclude: Path | None = None
    ) -> Iterator[tuple[Path, wal.SegmentContents]]:
        """Every live segment of `table` (but `exclude`) holding records, read so far."""
        for path in sorted(self.wal_dir(table).glob("*" + wal.SUFFIX)):
            if path == exclude:
                continue
            try:
                contents = self._cache.read(path)
            except FileNotFoundError:
                continue
            if contents.schema is not None and contents.batches:
                yield path, contents

    def _live_records(self, table: Table, exclude: Path | None) -> list[tuple[str, pa.Table]]:
        """(segment name, key columns and acknowledgement times) of every live segment
        of `table` but `exclude`, without records marked dead."""
        out = []
        for path, contents in self._live_segments(table, exclude):
            records = contents.table().select([*table.key, fold.AT])
            if table.write == "upsert":
                records = upsert.drop_dead(table, records, self._dead_records(table, path.name))
            out.append((path.name, records))
        return out

    def _dead_records(self, table: Table, segment: str) -> pa.Table | None:
        """The records of `segment` that dead markers name (None if there are none)."""
        markers = sorted(self.wal_dir(table).glob(f"{segment}.*{upsert.DEAD_SUFFIX}"))
        return self._read_markers(table, markers)

    def _read_markers(self, table: Table, markers: list[Path]) -> pa.Table | None:
        parts = []
        for path in markers:
            try:
                parts.append(pq.read_table(path).select([*table.key, fold.AT]))
            except FileNotFoundError:
                continue
        return pa.concat_tables(parts) if parts else None

    def _mark_dead(self, table: Table, segment: str, records: pa.Table) -> None:
        """Durably mark records (key columns and acknowledgement times) of `segment` as
        outdated: readers and its fold skip them from now on."""
        path = self.wal_dir(table) / f"{segment}.{random_token(8)}{upsert.DEAD_SUFFIX}"
        durable.write_durably(path, lambda tmp: pq.write_table(records, tmp), replace=False)

    def _other_segments(self, table: Table, exclude: Path | None) -> pa.Table | None:
        """The records of every live segment of `table` but `exclude` (for key dedup)."""
        parts = [records for _, records in self._live_records(table, exclude)]
        return pa.concat_tables(parts) if parts else None

    def fold_own(self, table: Table | None = None) -> int:
        """Fold this writer's segments (all tables, or one); returns rows published.

        The segments are taken under the writer's lock (later writes start new ones)
        and folded outside it, so writes of other threads do not wait for the fold.
        """
        done = 0
        with self._fold_lock:
            with self._lock:
                names = [table.name] if table is not None else list(self._segments)
                taken = [(n, self._segments.pop(n, None)) for n in names]
            for i, (name, seg) in enumerate(taken):
                if seg is None or seg.closed:
                    continue
                folded = False
                try:
                    seg.sync()
                    if seg.rows:
                        data = seg.table()
                        done += self.commit(self.schema.tables[name], data, seg.path)
                    else:
                        seg.path.unlink()
                        durable.fsync_dir(seg.path.parent)
                    folded = True
                finally:
                    if folded:
                        seg.release()  # its file is gone: nothing to truncate or sync
                    else:
                        seg.close()
                        self._give_back(taken[i + 1 :])
        return done

    def _give_back(self, untouched: list[tuple[str, wal.SegmentWriter | None]]) -> None:
        """Segments a failed `fold_own` did not get to: their writer keeps them (or, if
        it has started a new one meanwhile, they are closed, for a later orphan fold)."""
        with self._lock:
            for name, seg in untouched:
                if seg is None or seg.closed:
                    continue
                if name in self._segments:
                    seg.close()
                else:
                    self._segments[name] = seg

    def fold_orphans(self, table: Table, *, reported: bool = False, wait: bool = True) -> int:
        """Fold segments whose owner is gone (crashed or closed without folding).

        A damaged segment (records lost before good ones, see lake/wal.py) is first
        copied to `_quarantine/`, then its good records are folded; the loss is a
        warning, and a problem for `check` until it reports it (`reported`: the caller
        reports it itself). Without `wait`, LockTimeoutError at once if another process
        holds the fold lock.
        """
        done = 0
        wal_dir = self.wal_dir(table)
        if not wal_dir.is_dir():
            return 0
        for path in sorted(wal_dir.glob("*" + wal.SUFFIX)):
            owned = self._segments.get(table.name)
            if owned is not None and owned.path == path:
                continue
            claimed = durable.claim(path)
            if claimed is None:
                continue  # its owner is alive, or someone else is folding it
            try:
                contents = wal.read_segment(path, self.wal_schemas(table))
                if contents.damage is not None:
                    self._keep_damaged(table, contents, reported)
                    if contents.schema is None or not contents.batches:
                        path.unlink()  # nothing readable: the copy kept is all there is
                        durable.fsync_dir(wal_dir)
                        continue
                elif contents.schema is None:
                    continue  # not a segment of ours: left for `check --repair` to quarantine
                done += self.commit(table, contents.table(), path, wait=wait)
            finally:
                os.close(claimed)
        return done

    def _keep_damaged(self, table: Table, contents: wal.SegmentContents, reported: bool) -> None:
        """Copy a damaged segment to `_quarantine/` before its good records are folded."""
        reason = (
            f"table {table.name!r}: WAL segment {contents.path.name} is damaged "
            f"({contents.damage}); {contents.rows} rows in its good records were kept, "
            "the damaged records are lost"
        )
        kept = quarantine.keep_copy(
            self.root, contents.path, reason, quarantine.new_stamp(), reported=reported
        )
        if not reported:
            warnings.warn(
                f"{reason}; a copy is in {kept.relative_to(self.root)}; see `telelake check`",
                stacklevel=4,
            )

    def wal_schemas(self, table: Table) -> list[pa.Schema]:
        """Schemas the batches of a segment of `table` may have, for one whose own schema
        record is lost: the table's columns and the acknowledgement time (what every
        write that names no extra column has)."""
        return [table.arrow_schema.append(pa.field(fold.AT, pa.int64()))]

    def table_lock(
        self, table: Table, *, wait: bool = True
    ) -> contextlib.AbstractContextManager[None]:
        """The fold lock of `table`, waited for up to `lock_timeout` (or not at all)."""
        return fold.table_lock(self.wal_dir(table), self.durability.lock_timeout if wait else 0)

    def recover(self, table: Table, *, wait: bool = True) -> None:
        """Finish or undo folds that a crash interrupted (intent files left behind), and
        remove what dead writers left. Takes the fold lock only when there is something
        to do (waiting as `commit` does)."""
        try:
            names = os.listdir(self.wal_dir(table))
        except FileNotFoundError:
            return
        if not any(n.endswith(_LEFTOVERS) for n in names):
            return
        with self.table_lock(table, wait=wait):
            self._recover_locked(table)

    def _recover_locked(self, table: Table) -> None:
        # Under the fold lock no fold is running, so every intent is a crashed one.
        wal_dir = self.wal_dir(table)
        for intent_path in sorted(wal_dir.glob("*" + fold.INTENT_SUFFIX)):
            try:
                intent = fold.Intent.load(intent_path)
            except (OSError, ValueError, KeyError):
                continue  # unreadable intent: reported by `check`
            if not fold.recover(self.root, intent, wal_dir):
                # A committed compaction: its sources stay while queries may read them.
                age = time.time() - intent_path.stat().st_mtime
                if age < self.durability.retire_after:
                    continue
                fold.retire(self.root, intent)
            intent_path.unlink(missing_ok=True)
            durable.fsync_dir(wal_dir)
        names = set(os.listdir(wal_dir))
        for name in names:
            # A dead marker outlives its segment only until here: nothing reads it then.
            if name.endswith(upsert.DEAD_SUFFIX) and upsert.dead_marker_segment(name) not in names:
                (wal_dir / name).unlink(missing_ok=True)

    def remove_orphan_temps(self, table: Table) -> tuple[int, int]:
        """Delete temp files killed writers left in the table's folders (a Parquet file
        being published, a segment being made); returns how many and their bytes."""
        count = size = 0
        for base in (self.table_dir(table), self.wal_dir(table)):
            n, b = durable.remove_orphan_temps(base)
            count, size = count + n, size + b
        return count, size

    def sync(self) -> None:
        """fdatasync every open segment of this writer."""
        with self._lock:
            segments = list(self._segments.values())
        for seg in segments:
            if not seg.closed:
                seg.sync()

    def _sync_loop(self) -> None:
        while not self._stop.wait(self.durability.interval):
            # A failure here resurfaces at the next sync of a write or at close.
            with contextlib.suppress(OSError):
                self.sync()

    def close(self) -> None:
        """Stop the background threads and fold this writer's segments."""
        self._stop.set()
        self._fold_wanted.set()
        folder = self._folder
        if folder is not None and folder is not threading.current_thread():
            folder.join()
        try:
            self.fold_own()
        except LockTimeoutError as exc:
            # The segments stay, closed, for the next fold: their rows are safe and read.
            warnings.warn(f"rows left in the WAL, not folded: {exc}", stacklevel=3)

    # -- compaction ---------------------------------------------------------------------

    def compact(
        self,
        table: Table,
        older_than: dt.datetime | None = None,
        *,
        dry_run: bool = False,
        on_partition: Callable[[compact.PartitionResult], None] | None = None,
        min_files: int = 2,
    ) -> list[compact.PartitionResult]:
        """Merge the small files of each due partition into one (see lake/compact.py).

        Each partition is swapped atomically under the table's fold lock, so writers
        wait at most for one partition's merge, and queries see every row once.
        """
        base = self.table_dir(table)
        results = []
        hidden = self.hidden_files(table)
        for directory, files in compact.partitions(base):
            files = [f for f in files if f not in hidden and self._usable(table, f)]
            if not all(self.rewritable(table, f) for f in files):
                continue  # a newer minor version's columns would be lost: leave it to it
            if not compact.due(base, directory, files, older_than, min_files=min_files):
                continue
            if dry_run:
                result = compact.PartitionResult(
                    str(directory.relative_to(base)),
                    len(files),
                    1,
                    sum(pq.read_metadata(f).num_rows for f in files),
                    sum(f.stat().st_size for f in files),
                    0,
                    0,
                )
            else:
                with self.table_lock(table):
                    self._recover_locked(table)
                    # Listed again under the lock: what is there now is what we replace.
                    # (Sources of earlier compactions in their grace period excluded.)
                    hidden = self.hidden_files(table)
                    files = [
                        f
                        for f in compact.data_files(directory)
                        if f not in hidden and self._usable(table, f)
                    ]
                    if len(files) < 2:
                        continue
                    result = compact.compact_partition(
                        self.root,
                        table,
                        directory,
                        files,
                        self.wal_dir(table),
                        self._file_metadata(table),
                        random_token(8),
                        dt.datetime.now(dt.UTC),
                    )
            results.append(result)
            if on_partition is not None:
                on_partition(result)
        if not dry_run:
            self.recover(table)  # retires sources whose grace period is over
        return results

    # -- retention ----------------------------------------------------------------------

    def visible_partitions(
        self, table: Table, *, usable_only: bool = True
    ) -> Iterator[tuple[Path, list[Path]]]:
        """Each partition directory with the files queries read now.

        With usable_only=False, files whose columns do not fit the table (an older
        major version's, before a migration) are listed too.
        """
        hidden = self.hidden_files(table)
        for directory, files in compact.partitions(self.table_dir(table)):
            files = [
                f for f in files if f not in hidden and (not usable_only or self._usable(table, f))
            ]
            if files:
                yield directory, files

    def expire(
        self, table: Table, cutoff: dt.datetime, *, dry_run: bool = False
    ) -> list[retention.Step]:
        """Remove the rows of `table` older than `cutoff`: whole partitions where the time
        levels allow it, else by rewriting the partition (see lake/retention.py)."""
        if table.time is None:
            return []
        base = self.table_dir(table)
        steps = []
        for directory, _ in list(self.visible_partitions(table)):
            action = retention.verdict(directory.relative_to(base), cutoff)
            if action is not None:
                step = self.remove_rows(table, directory, action, cutoff, dry_run=dry_run)
                if step is not None:
                    steps.append(step)
        return steps

    def remove_rows(
        self,
        table: Table,
        directory: Path,
        action: str,
        cutoff: dt.datetime | None,
        *,
        dry_run: bool = False,
    ) -> retention.Step | None:
        """Remove a partition's rows older than `cutoff` (all of them when None)."""
        assert table.parquet is not None and table.time is not None
        lock = contextlib.nullcontext() if dry_run else self.table_lock(table)
        with lock:
            if not dry_run:
                self._recover_locked(table)
            hidden = self.hidden_files(table)
            files = [
                f
                for f in compact.data_files(directory)
                if f not in hidden and self._usable(table, f)
            ]
            if not files:
                return None
            size = sum(f.stat().st_size for f in files)
            total = sum(pq.read_metadata(f).num_rows for f in files)
            target = None
            if action == retention.TRIMMED and cutoff is not None:
                if not all(self.rewritable(table, f) for f in files):
                    return None  # a newer minor version's columns would be lost
                rows, _ = compact.merge(table, files)
                time_col = rows.column(table.time)
                keep = rows.filter(pc.greater_equal(time_col, pa.scalar(cutoff, time_col.type)))
                if keep.num_rows == total:
                    return None
                if keep.num_rows:
                    now = dt.datetime.now(dt.UTC)
                    target = (fold.target_path(table, directory, keep, now, set()), keep)
                else:
                    action = retention.EXPIRED
                removed = total - keep.num_rows
            else:
                removed = total
            if not dry_run:
                compact.swap(
                    self.root,
                    table,
                    files,
                    [target] if target is not None else [],
                    self.wal_dir(table),
                    self._file_metadata(table),
                    random_token(8),
                )
        rel = str(directory.relative_to(self.table_dir(table)))
        return retention.Step(table.name, rel, action, len(files), removed, size)

    def hidden_files(self, table: Table) -> set[Path]:
        """Files on disk that readers ignore now (see `fold.Intent.hidden`)."""
        wal_dir = self.wal_dir(table)
        names = set(_wal_names(wal_dir))
        out: set[Path] = set()
        for name in names:
            if name.endswith(fold.INTENT_SUFFIX):
                try:
                    out |= fold.Intent.load(wal_dir / name).hidden(self.root, names)
                except (OSError, ValueError, KeyError):
                    continue
        return out

    # -- reading ------------------------------------------------------------------------

    def files(self, table: Table, bounds: prune.Bounds | None = None) -> Iterator[Path]:
        """Every published data file of `table` (hidden and temp files excluded).

        With `bounds`, only the partition directories they admit are walked, and only
        the files whose lookup column statistics they admit are listed.
        """
        base = self.table_dir(table)
        if not base.is_dir():
            return
        pruned = bounds is not None and bounds.restricts_partitions
        # Every directory: one walk, reused while none of them changes (lake/listing.py).
        walked = listing.walk(str(base)) if pruned else listing.tree(str(base))
        for dirpath, dirnames, filenames in walked:
            if bounds is not None and pruned:  # (a tree leaves hidden directories out itself)
                dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
                here = Path(dirpath).relative_to(base)
                dirnames[:] = [d for d in dirnames if bounds.admits(_partition(here / d))]
            names = [n for n in filenames if n.endswith(".parquet") and n[0] not in "._"]
            if bounds is not None:
                names = bounds.admitted(dirpath, names)
            for name in sorted(names):
                yield Path(dirpath) / name

    def has_files(self, table: Table) -> bool:
        """True as soon as one data file exists."""
        return next(self.files(table), None) is not None

    def snapshot(
        self,
        table: Table,
        bounds: prune.Bounds | None = None,
        attempts: int = 200,
        *,
        footers: duckdb.DuckDBPyConnection | None = None,
    ) -> Snapshot:
        """A consistent view of a table: no row missing, none counted twice.

        The WAL directory is listed before and after reading; if a fold started or
        committed in between, the snapshot is taken again. With `bounds`, only the
        Parquet files of the partitions they admit are listed (live WAL rows are
        always all there). With `footers`, a DuckDB connection, the files are first
        vetted through it (see `vet`).
        """
        wal_dir = self.wal_dir(table)
        base = self.table_dir(table)
        for attempt in range(attempts):
            if attempt >= 5:
                # A writer folding each write beside a compaction renaming files: give
                # them a moment to get ahead (as a query's retry does).
                time.sleep(min(0.001 * attempt, 0.02))
            before = _wal_names(wal_dir)
            files = list(self.files(table, bounds))
            pending: set[Path] = set()
            published: set[Path] = set()  # targets of committed swaps
            folded: set[str] = set()  # segments whose rows a committed swap published
            segments: list[Path] = []
            markers: dict[str, list[Path]] = {}
            for name in sorted(before):
                if name.endswith(fold.INTENT_SUFFIX):
                    try:
                        intent = fold.Intent.load(wal_dir / name)
                    except (OSError, ValueError, KeyError):
                        continue
                    pending.update(intent.hidden(self.root, set(before)))
                    if intent.is_swap and intent.committed:
                        # Named explicitly: a directory listing racing the swap's renames
                        # could have missed a target (or found it still staged).
                        published.update(self.root / t for t in intent.targets)
                        folded.add(intent.folded_segment or "")
                elif name.endswith(wal.SUFFIX):
                    segments.append(wal_dir / name)
                elif name.endswith(upsert.DEAD_SUFFIX):
                    markers.setdefault(upsert.dead_marker_segment(name), []).append(wal_dir / name)
            segments = [p for p in segments if p.name not in folded]
            try:
                tables, problems = self._read_segments(table, segments, markers)
            except FileNotFoundError:
                continue  # a segment was folded while we read: look again
            listed = set(files)
            published = {q for p in published - listed if (q := _current(p)) is not None}
            if bounds is not None and bounds.restricts:
                published = {
                    p
                    for p in published
                    if bounds.admits(_partition(p.parent, base)) and bounds.admits_file(p)
                }
            files += sorted(published)
            keys = {f: _inode_key(f) for f in files if f not in pending}
            if any(key is None for key in keys.values()):
                # A file went after the listing (a swap that committed since, retention):
                # its rows may be in a file the listing missed. Look again.
                continue
            inodes = {f: key for f, key in keys.items() if key is not None}
            if footers is not None:
                self.vet(table, inodes, footers)
            verdicts = {f: self._judge(table, f, key) for f, key in inodes.items()}
            if None in verdicts.values():
                continue  # a file went while it was read (a staged target renamed): again
            # Last: a swap that commits after this listing renames files only after its
            # commit, which changes the listing; one that committed before it was seen.
            after = _wal_names(wal_dir)
            if _changed(before, after):
                continue
            self._cache.forget_missing(set(segments))
            live = pa.concat_tables(tables, promote_options="default") if tables else None
            good = [f for f, usable in verdicts.items() if usable]
            return Snapshot(good, live, problems)
        raise TimeoutError(f"table {table.name!r}: its WAL and files kept changing; try again")

    def file_problem(self, table: Table, path: Path) -> str | None:
        """Why a data file cannot be read as part of `table`, or None if it can."""
        try:
            meta = pq.read_metadata(path)
        except (OSError, ValueError) as exc:
            return f"unreadable Parquet file: {exc}"
        kv = meta.metadata or {}
        if (
            kv.get(parquet.META_SCHEMA) != self.schema.name.encode()
            or kv.get(parquet.META_TABLE, table.name.encode()) != table.name.encode()
        ):
            return "foreign file: not written by telelake for this schema and table"
        # The version is not judged here: a file is usable when its columns are (a store
        # of a newer major version opened read-only must still be readable).
        file_schema = meta.schema.to_arrow_schema()
        newer = _newer_minor(kv.get(parquet.META_VERSION), self.schema.version)
        for field in file_schema:
            if not table.has_column(field.name):
                if newer:
                    continue  # a column a newer minor version added: not ours to read
                return f"foreign file: unknown column {field.name!r}"
            want = table.column(field.name).type.arrow
            if not field.type.equals(want):
                return f"column {field.name!r} is {field.type}, not {want}"
        return None

    def vet(
        self,
        table: Table,
        files: Mapping[Path, tuple[Path, int]],
        con: duckdb.DuckDBPyConnection,
    ) -> None:
        """Judge the files not judged yet by their footers' telelake metadata, which DuckDB
        reads for all of them at once: a file that this schema's table wrote at the
        schema's current version is usable and holds every column (the writer wrote the
        table's own Arrow schema). Any other file, or all of them if one footer is
        unreadable, is left to `file_problem`, which reads its schema with Arrow and says
        what is wrong. (A one-shot query so needs no Arrow, and opens each footer once.)
        """
        todo = {str(f): key for f, key in files.items() if key not in self._checked}
        if not todo:
            return
        wanted = {
            parquet.META_SCHEMA: self.schema.name.encode(),
            parquet.META_TABLE: table.name.encode(),
            parquet.META_VERSION: self.schema.version.encode(),
        }
        keys = ", ".join(sql_literal(k.decode()) + "::BLOB" for k in wanted)
        try:
            found = con.cursor().execute(
                f"SELECT file_name, key, value FROM parquet_kv_metadata(?) WHERE key IN ({keys})",
                [list(todo)],
            )
            rows = found.fetchall()
        except duckdb.Error:
            return  # a footer DuckDB cannot read: each file is judged on its own
        kv: dict[str, dict[bytes, bytes]] = {}
        for name, key, value in rows:
            kv.setdefault(name, {})[bytes(key)] = bytes(value)
        for name, inode in todo.items():
            if kv.get(name) == wanted:
                self._checked[inode] = None
                self._lacking[inode] = False

    def rewritable(self, table: Table, path: Path) -> bool:
        """May this process rewrite the file (compaction, a trim) without losing data?

        Not when a newer minor version wrote it with columns this schema does not know.
        """
        return set(pq.read_schema(path).names) <= set(table.column_names)

    def lacks_columns(self, table: Table, path: Path) -> bool:
        """True if the data file has fewer columns than the table (an older version's)."""
        key = _inode_key(path)
        if key is None:
            return False
        if key not in self._lacking:
            names = set(pq.read_schema(path).names)
            self._lacking[key] = not set(table.column_names) <= names
        return self._lacking[key]

    def _usable(self, table: Table, path: Path) -> bool:
        key = _inode_key(path)
        return key is not None and bool(self._judge(table, path, key))

    def _judge(self, table: Table, path: Path, key: tuple[Path, int]) -> bool | None:
        """Is the file usable (False: a warning says why)? None if it went while it was
        read: no verdict then, the caller looks again.

        Published files never change in place (they are replaced by rename), so a
        verdict is remembered per inode: each footer is read once per process.
        """
        if key not in self._checked:
            problem = self.file_problem(table, path)
            if problem is not None and _inode_key(path) != key:
                return None
            self._checked[key] = problem
            if problem:
                warnings.warn(
                    f"skipping {path}: {problem}; run `telelake check --repair`", stacklevel=4
                )
        return self._checked[key] is None

    def _read_segments(
        self, table: Table, segments: list[Path], markers: dict[str, list[Path]]
    ) -> tuple[list[pa.Table], list[str]]:
        tables, problems = [], []
        for path in segments:
            contents = self._cache.read(path, self.wal_schemas(table))
            if contents.damage is not None:
                problems.append(f"{path}: {contents.damage}")
            if contents.schema is None:
                problems.append(f"{path}: {contents.problem}")
                continue
            if contents.batches:
                rows = contents.table()
                if path.name in markers:
                    rows = upsert.drop_dead(
                        table, rows, self._read_markers(table, markers[path.name])
                    )
                tables.append(rows)
        return tables, problems

    def wal_view_rows(self, table: Table, rows: pa.Table) -> pa.Table:
        """Live WAL rows with the view's columns: declared columns, then partitions."""
        cols = {name: rows.column(name) for name in table.column_names}
        if table.partition.time:
            assert table.time is not None
            ts = rows.column(table.time)
            for level in table.partition.time:
                fn = {"year": pc.year, "month": pc.month, "day": pc.day, "hour": pc.hour}[level]
                cols[level] = fn(ts).cast(pa.int32())
        for key in table.virtual_keys:
            cols[key] = (
                rows.column(key)
                if key in rows.column_names
                else pa.repeat(pa.scalar(self.defaults.get(key, ""), pa.string()), rows.num_rows)
            )
        cols["__tl_seq"] = pa.array(range(rows.num_rows), pa.int64())
        cols[fold.AT] = rows.column(fold.AT)  # orders versions of a key across writers
        return pa.table(cols)

    # -- DuckDB views -------------------------------------------------------------------

    def anchor_path(self, table: Table) -> Path:
        """A zero-row file with the table's current schema, listed first in every view.

        DuckDB takes a view's columns from the first file it reads. Listing this tiny,
        always-valid file first means one damaged data file cannot break the binding
        of every query, and a filtered query opens only the partitions it needs.
        """
        levels = [(lvl, "0") for lvl in table.partition.time]
        levels += [(k, "_") for k in table.partition.keys]
        return (
            self.root
            / "_metadata"
            / "anchors"
            / table.name
            / layout.partition_path(tuple(levels))
            / f"{table.name}.parquet"
        )

    def ensure_anchor(self, table: Table, *, only_missing: bool = False) -> None:
        """Write the anchor file when it is missing or its schema is not the table's
        (`only_missing`: when it is missing; reading its schema costs Arrow's import)."""
        path = self.anchor_path(table)
        if only_missing and path.exists():
            return
        schema = table.arrow_schema.with_metadata(self._file_metadata(table))
        if path.exists():
            try:
                if pq.read_schema(path).equals(_as_read_back(schema), check_metadata=True):
                    return
            except (OSError, ValueError):
                pass  # damaged anchor: rewrite it
        durable.write_durably(path, lambda tmp: pq.write_table(schema.empty_table(), tmp))

    def partition_columns(self, table: Table) -> list[tuple[str, str]]:
        """(name, DuckDB type) of the partition levels a view adds to the file columns."""
        cols = [(level, "INTEGER") for level in table.partition.time]
        cols += [(k, "VARCHAR") for k in table.virtual_keys]
        return cols

    def view_sql(self, table: Table, snap: Snapshot, wal_relation: str | None) -> str:
        """The SELECT behind the DuckDB view of `table` (spec 000 §6.1).

        Columns come out in declared order, then the partition levels. Parquet rows come
        from the snapshot's explicit file list (a glob would see files published after
        the snapshot); live WAL rows are added from `wal_relation`, without keys that
        the Parquet files or earlier WAL rows already hold.
        """
        parts = self.partition_columns(table)
        sources = [sql_literal(str(self.anchor_path(table)))]
        sources += [sql_literal(str(f)) for f in snap.files]
        names = [*table.column_names, *(n for n, _ in parts)]
        select = ", ".join(f'"{n}"' for n in names)
        options = ""
        if table.partition.names:
            types = ", ".join(f"{sql_literal(n)}: {t}" for n, t in parts)
            options = ", hive_partitioning = true" + (
                f", hive_types = {{{types}}}" if types else ""
            )
        if any(self.lacks_columns(table, f) for f in snap.files):
            # Files written before a minor version added a column: match columns by
            # name, the missing ones read as NULL (spec 000 §4.3). Only then, as it
            # makes DuckDB open every file's footer before reading.
            options += ", union_by_name = true"
        lake = f"SELECT {select} FROM read_parquet([{', '.join(sources)}]{options})"
        if wal_relation is None:
            return lake
        live = f"SELECT {select} FROM {wal_relation}"
        if table.key and table.write == "upsert":
            # The newest live version of each key wins, and hides the Parquet row of
            # its key (Parquet holds at most one version per key; see lake/upsert.py).
            keys = ", ".join(f'"{k}"' for k in table.key)
            live = (
                f"SELECT {select} FROM (SELECT *, row_number() OVER (PARTITION BY {keys} "
                f"ORDER BY __tl_at DESC, __tl_seq DESC) AS __tl_rank FROM {wal_relation}) "
                "WHERE __tl_rank = 1"
            )
            if snap.files:
                newer = f"SELECT {keys} FROM {wal_relation}"
                lake = f"SELECT * FROM ({lake}) ANTI JOIN ({newer}) USING ({keys})"
        elif table.key:
            keys = ", ".join(f'"{k}"' for k in table.key)
            live = (
                f"SELECT {select} FROM (SELECT *, row_number() OVER (PARTITION BY {keys} "
                f"ORDER BY __tl_at, __tl_seq) AS __tl_rank FROM {wal_relation}) WHERE __tl_rank = 1"
            )
            if snap.files:
                live = f"SELECT * FROM ({live}) ANTI JOIN ({lake}) USING ({keys})"
        return f"{lake} UNION ALL BY NAME {live}"


def _as_read_back(schema: pa.Schema) -> pa.Schema:
    """`schema` as Parquet gives it back: a list's values are called "element" there (the
    compliant nested type), not "item" (without this every open rewrote the anchor of a
    table with a list column)."""

    def field(f: pa.Field) -> pa.Field:
        if pa.types.is_list(f.type):
            values = field(f.type.value_field).with_name("element")
            return f.with_type(pa.list_(values))
        return f

    return pa.schema([field(f) for f in schema], metadata=schema.metadata)


def _plain_keys(table: Table, fields: tuple[pa.Field, ...], columns: list[list[Any]]) -> pa.Table:
    """The key columns of a plain write as an Arrow table."""
    where = {f.name: i for i, f in enumerate(fields)}
    if not all(k in where for k in table.key):
        raise pa.ArrowInvalid("a key column is missing")
    return pa.table(
        [pa.array(columns[where[k]], type=fields[where[k]].type) for k in table.key],
        names=list(table.key),
    )


def _newer_minor(file_version: bytes | None, version: str) -> bool:
    """Was the file written by a newer minor version of this schema's major version?"""
    if not file_version:
        return False
    theirs = tuple(int(p) for p in file_version.decode().split("."))
    ours = tuple(int(p) for p in version.split("."))
    return theirs[0] == ours[0] and theirs > ours


def _partition(directory: Path, base: Path | None = None) -> layout.PartitionValues:
    """The partition values of a directory (relative to `base` when given); () if none."""
    try:
        return layout.parse_partition(directory.relative_to(base) if base else directory)
    except ValueError:
        return ()  # not below the table dir, or not `key=value`: admitted by every bound


def _current(target: Path) -> Path | None:
    """Where a committed swap's target is: its name, or its staged name until the swap's
    rename (atomic: one of the two exists at every instant, so three looks, name, staged
    name, name, find it even when the rename falls between them). None once retired."""
    for path in (target, fold.staged(target), target):
        if path.exists():
            return path
    return None


def _inode_key(path: Path) -> tuple[Path, int] | None:
    """(path, inode): names a published file's content (None if it is gone)."""
    try:
        return (path, path.stat().st_ino)
    except FileNotFoundError:
        return None


def _wal_names(wal_dir: Path) -> dict[str, int]:
    """The names in a WAL directory with their inodes (an intent rewritten at a swap's
    commit keeps its name but not its inode)."""
    try:
        with os.scandir(wal_dir) as entries:
            return {e.name: e.inode() for e in entries}
    except FileNotFoundError:
        return {}


def _changed(before: dict[str, int], after: dict[str, int]) -> bool:
    """Did a fold or swap start, commit or finish between two listings of a WAL dir?"""
    gone = {n for n in before if n.endswith(wal.SUFFIX)} - after.keys()
    intents = fold.INTENT_SUFFIX
    return bool(gone) or {(n, i) for n, i in before.items() if n.endswith(intents)} != {
        (n, i) for n, i in after.items() if n.endswith(intents)
    }
