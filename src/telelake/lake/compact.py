"""Compaction: merge the small Parquet files of a partition into one, atomically.

A compaction of partition P of a table runs under the table's fold lock (no fold
publishes into the table meanwhile, and key checks of folds never read a file that is
about to go) and goes:

  1. write the intent `compact-<token>.fold` naming the sources and the target, durably;
  2. write the target under its staged name (temp + fsync + link + directory fsync);
  3. rewrite the intent with committed=true, durably       <- the commit point;
  4. rename the sources to `*.parquet.retired` and the target to its name;
  5. after a grace period (`Durability.retire_after`), delete the retired sources, then
     the intent (done by whoever next holds the lock: a fold, a compaction, an open).

Readers ignore the target until the commit and the sources after it, so a query sees each
row once at every step, and so does an outside reader of the `**/*.parquet` glob (the
renames of step 4 take the sources out of it before the target enters it). A query that
listed the sources before the commit finds them gone and is retried on a fresh
snapshot. Recovery after a crash before the commit deletes the target and the intent;
after it, recovery finishes step 4. This is Delta Lake's scheme (files removed from the
log stay until VACUUM), in files.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from telelake import durable
from telelake._lazy import lazy
from telelake.lake import fold, layout, parquet
from telelake.schema.model import Table

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq
else:
    pa = lazy("pyarrow")
    pq = lazy("pyarrow.parquet")

COMPACT_PREFIX = "compact-"
SMALL_FILE_BYTES = 8 << 20  # a partition with 2+ files under this size is worth compacting
# auto_compact: a finished partition is merged once it holds this many small files.
AUTO_COMPACT_MIN_FILES = 16


@dataclass
class PartitionResult:
    """What compacting one partition did."""

    partition: str  # relative to the table directory, e.g. "year=2026/month=01/day=15/..."
    files_before: int
    files_after: int
    rows: int
    bytes_before: int
    bytes_after: int
    duplicates_removed: int


@dataclass
class CompactReport:
    """What `Store.compact` did (or, with dry_run, would do), partition by partition."""

    tables: dict[str, list[PartitionResult]] = field(default_factory=dict)

    @property
    def partitions(self) -> int:
        """How many partitions were (or would be) compacted."""
        return sum(len(v) for v in self.tables.values())

    def totals(self) -> tuple[int, int, int, int]:
        """(files before, files after, bytes before, bytes after) over every partition."""
        rs = [r for v in self.tables.values() for r in v]
        return (
            sum(r.files_before for r in rs),
            sum(r.files_after for r in rs),
            sum(r.bytes_before for r in rs),
            sum(r.bytes_after for r in rs),
        )


def partitions(table_dir: Path) -> Iterator[tuple[Path, list[Path]]]:
    """Each leaf directory below `table_dir` with its published data files (sorted)."""
    if not table_dir.is_dir():
        return
    for directory in sorted(p for p in table_dir.rglob("*") if p.is_dir()):
        rel = directory.relative_to(table_dir)
        if any(part.startswith((".", "_")) for part in rel.parts):
            continue
        files = data_files(directory)
        if files:
            yield directory, files


def data_files(directory: Path) -> list[Path]:
    """The published data files directly in `directory`, in name (= time) order."""
    return sorted(
        f
        for f in directory.iterdir()
        if f.suffix == ".parquet" and not f.name.startswith((".", "_")) and f.is_file()
    )


def due(
    table_dir: Path,
    directory: Path,
    files: list[Path],
    older_than: dt.datetime | None,
    small_bytes: int = SMALL_FILE_BYTES,
    min_files: int = 2,
) -> bool:
    """Is this partition worth compacting, and old enough?

    Worth it: at least `min_files` (and at least two) files smaller than `small_bytes`.
    Old enough: its time range ended before `older_than` (a partition without time
    levels: its newest file is older). A partition still being written is never due
    when `older_than` is given.
    """
    if len(files) < 2:
        return False
    sizes = [f.stat().st_size for f in files]
    if sum(1 for s in sizes if s < small_bytes) < max(2, min_files):
        return False
    if older_than is None:
        return True
    end = layout.partition_end(layout.parse_partition(directory.relative_to(table_dir)))
    if end is None:
        newest = max(f.stat().st_mtime for f in files)
        end = dt.datetime.fromtimestamp(newest, dt.UTC)
    return end <= older_than


def merge(table: Table, sources: list[Path]) -> tuple[pa.Table, int]:
    """The rows of `sources`, sorted by the layout, without repeated keys (first file wins).

    Files are read in name order (names start with the time they were written), so the
    first occurrence of a key is the oldest write. Returns (rows, duplicates removed).
    """
    assert table.parquet is not None
    rows = pa.concat_tables([read_as_table(f, table) for f in sources]).combine_chunks()
    duplicates = 0
    if table.key and rows.num_rows:
        positions = pa.array(range(rows.num_rows), pa.int64())
        keyed = rows.select(list(table.key)).append_column("__tl_pos", positions)
        first = keyed.group_by(list(table.key)).aggregate([("__tl_pos", "min")])
        if first.num_rows != rows.num_rows:
            duplicates = rows.num_rows - first.num_rows
            keep = first.column("__tl_pos_min").sort()
            rows = rows.take(keep)
    return rows, duplicates


def read_as_table(path: Path, table: Table) -> pa.Table:
    """A data file's rows with the table's columns and types; columns added by a later
    minor version (missing from the file) read as nulls."""
    # Data files hold only table columns: read them all. ParquetFile.read skips the
    # dataset machinery of pq.read_table (per-file discovery), which dominates small files.
    data = parquet.read_verified(path)
    present = set(data.column_names)
    columns = [
        data.column(c.name) if c.name in present else pa.nulls(data.num_rows, c.type.arrow)
        for c in table.columns
    ]
    return pa.Table.from_arrays(columns, schema=table.arrow_schema)


def compact_partition(
    root: Path,
    table: Table,
    directory: Path,
    sources: list[Path],
    wal_dir: Path,
    metadata: dict[bytes, bytes],
    token: str,
    stamp: dt.datetime,
    before_commit: Callable[[], None] = lambda: None,
) -> PartitionResult:
    """Replace `sources` (files of one partition) with one file; the caller holds the lock."""
    assert table.parquet is not None
    rows, duplicates = merge(table, sources)
    target = fold.target_path(table, directory, rows, stamp, set())
    bytes_before = sum(s.stat().st_size for s in sources)
    swap(root, table, sources, [(target, rows)], wal_dir, metadata, token, before_commit)
    return PartitionResult(
        partition=str(directory.relative_to(root / table.name)),
        files_before=len(sources),
        files_after=1,
        rows=int(rows.num_rows),
        bytes_before=bytes_before,
        bytes_after=target.stat().st_size,
        duplicates_removed=duplicates,
    )


def swap(
    root: Path,
    table: Table,
    sources: list[Path],
    targets: list[tuple[Path, pa.Table]],
    wal_dir: Path,
    metadata: dict[bytes, bytes],
    token: str,
    before_commit: Callable[[], None] = lambda: None,
    *,
    segment: str = "",
) -> None:
    """Atomically replace `sources` by `targets` (new files and their rows), maybe none;
    with `segment`, that WAL segment's rows are published by the same commit.

    The caller holds the table's fold lock. Compaction, retention, migrations and upsert
    folds all swap files this way (see lake/fold.py for the steps and what readers see).
    """
    assert sources, "a swap replaces files: without sources it is a plain fold"
    names = tuple(str(path.relative_to(root)) for path, _ in targets)
    intent = fold.Intent(segment, names, tuple(str(s.relative_to(root)) for s in sources))
    intent_path = wal_dir / f"{COMPACT_PREFIX}{token}{fold.INTENT_SUFFIX}"
    durable.ensure_dir(wal_dir)
    durable.write_bytes_durably(intent_path, intent.dump())
    try:
        fold.publish_targets(targets, table, metadata, stage=True)
        before_commit()
    except BaseException:
        fold.remove_targets(root, intent)
        intent_path.unlink(missing_ok=True)
        raise
    # The commit point: from here readers take the targets and ignore the sources (and
    # the segment); the renames that follow make outside readers of the files agree.
    committed = replace(intent, committed=True)
    durable.write_bytes_durably(intent_path, committed.dump())
    fold.roll_forward(root, committed, wal_dir)
