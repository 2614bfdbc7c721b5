"""Retention: which partitions of a table have expired, and which disk budget drops go first.

Pure functions; `LakeTier.expire` and `Store.enforce_retention` do the I/O. Removing a
partition uses the same swap as compaction (lake/compact.py): its files are retired,
hidden at once from new queries and deleted after the grace period.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from telelake.lake import layout

EXPIRED = "expired"  # the whole partition is older than the retention period
TRIMMED = "trimmed"  # the partition straddles the cutoff: its older rows are removed
OVER_BUDGET = "over budget"  # dropped, oldest first, to bring the store under max_disk_gb


@dataclass
class Step:
    """One partition that retention removes (or trims)."""

    table: str
    partition: str  # relative to the table directory
    action: str
    files: int
    rows: int  # rows removed
    bytes: int  # bytes removed (for a trim: the bytes of the files it replaces)


@dataclass
class RetentionReport:
    """What `Store.enforce_retention` did, or with dry_run would do."""

    steps: list[Step] = field(default_factory=list)
    disk_bytes_before: int = 0
    disk_bytes_after: int = 0
    budget_bytes: int | None = None

    def totals(self) -> tuple[int, int, int]:
        """(partitions, rows, bytes) removed."""
        return (
            len(self.steps),
            sum(s.rows for s in self.steps),
            sum(s.bytes for s in self.steps),
        )


def verdict(relative: Path, cutoff: dt.datetime) -> str | None:
    """EXPIRED, TRIMMED or None (kept) for a partition directory, given the cutoff.

    A partition without time levels holds rows of any age: it is trimmed (its rows
    are filtered by time), never dropped whole.
    """
    values = layout.parse_partition(relative)
    start, end = layout.partition_start(values), layout.partition_end(values)
    if end is not None and end <= cutoff:
        return EXPIRED
    if start is None or start < cutoff:
        return TRIMMED
    return None


@dataclass(frozen=True)
class Candidate:
    """A partition that the disk budget may drop."""

    order: tuple[dt.datetime, int]  # (end of its time range, table position in the schema)
    table: str
    directory: Path
    bytes: int


def over_budget(candidates: list[Candidate], used: int, budget: int) -> list[Candidate]:
    """The partitions to drop, oldest first, until `used` bytes fit in `budget`."""
    out = []
    for c in sorted(candidates, key=lambda c: (c.order, str(c.directory))):
        if used <= budget:
            break
        out.append(c)
        used -= c.bytes
    return out
