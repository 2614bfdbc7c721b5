"""Where a lake table's rows go: partition directories and file names (pure functions).

The layout of spec 000 §2.1: `<table>/year=YYYY/month=MM/day=DD/<key>=<value>/`, files
named `<prefix>_<YYYYMMDDTHHMMSSZ>_<session_suffix>.parquet` (§2.3, §7.3).

Naming rule (docs/process_triage.md): a table whose Parquet layout names a
`session_column` writes the rows of each session of a partition to files of their own,
named after the session: `pt-20260115-143022-a7xq` gives `..._20260115T143022Z_a7xq`.
A session id of another shape gives the time of its earliest row and a suffix made of its
last `-`-separated part (lowercase letters and digits; a hash when none is left). When a
partition's rows hold more than `SESSION_SPLIT_MAX` sessions (a bulk import), they share
one file named after the earliest session, as does a compacted file. Tables without a
session column are named after their earliest row and a random token. A name already
taken in the directory gets a uniqueness tail `-2`, `-3`...
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import string
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from telelake._lazy import lazy
from telelake.schema.model import Table

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    pa = lazy("pyarrow")
    pc = lazy("pyarrow.compute")

_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.:@+-]{1,128}$")
_WIDTH = {"year": 4, "month": 2, "day": 2, "hour": 2}
TIME_LEVELS = tuple(_WIDTH)  # the time levels a table may partition by, coarsest first

PartitionValues = tuple[tuple[str, str], ...]
# More sessions than this in one partition of one write share a file (see above): a file
# per session would make hundreds of tiny files of a bulk import.
SESSION_SPLIT_MAX = 8
_SESSION_ID = re.compile(r"^(?:.*-)?(\d{8})-(\d{6})-([A-Za-z0-9]+)$")
_TOKEN_ALPHABET = string.ascii_lowercase + string.digits
# Names a swap or retirement gives a file for a while: a new file must not take the name
# a retired or staged file stands for.
_SHADOW_SUFFIXES = (".staged", ".retired")


def file_name(prefix: str, when: dt.datetime, suffix: str, attempt: int = 0) -> str:
    """`<prefix>_<YYYYMMDDTHHMMSSZ>_<suffix>.parquet`; `attempt` N > 0 adds `-N` to the
    suffix (the uniqueness tail)."""
    w = when.astimezone(dt.UTC)  # (strftime's %Y would not pad a year below 1000)
    stamp = f"{w.year:04d}{w.month:02d}{w.day:02d}T{w.hour:02d}{w.minute:02d}{w.second:02d}Z"
    tail = suffix if attempt == 0 else f"{suffix}-{attempt}"
    return f"{prefix}_{stamp}_{tail}.parquet"


def file_name_pattern(prefix: str) -> re.Pattern[str]:
    """A regex matching the names `file_name` produces for `prefix`."""
    return re.compile(rf"^{re.escape(prefix)}_\d{{8}}T\d{{6}}Z_[a-z0-9]+(-\d+)?\.parquet$")


def session_name(session: str) -> tuple[dt.datetime | None, str]:
    """The time stamp and suffix a session id gives its files' names (see the module
    docstring); the time is None when the id holds none."""
    match = _SESSION_ID.match(session)
    if match:
        try:
            when = dt.datetime.strptime(match[1] + match[2], "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
            return when, match[3].lower()
        except ValueError:
            pass  # digits that are no date: named like any other id
    suffix = re.sub(r"[^a-z0-9]", "", session.rsplit("-", 1)[-1].lower())[:16]
    return None, suffix or hashlib.sha256(session.encode()).hexdigest()[:8]


def name_for(table: Table, rows: pa.Table, now: dt.datetime) -> tuple[dt.datetime, str]:
    """(time stamp, suffix) of the file holding `rows` (see the module docstring)."""
    assert table.parquet is not None
    when = _earliest(table, rows) or now
    column = table.parquet.session_column
    if column is None or rows.num_rows == 0:
        return when, "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(8))
    first = pc.min(rows.column(column)).as_py()  # the earliest session, when several
    if first is None:
        return when, "nosession"
    stamp, suffix = session_name(str(first))
    return stamp or when, suffix


def _earliest(table: Table, rows: pa.Table) -> dt.datetime | None:
    if table.time is None or rows.num_rows == 0:
        return None
    column = rows.column(table.time)
    if pa.types.is_timestamp(column.type):
        # As microseconds: a row written before the accepted range was enforced may lie
        # beyond what a Python datetime holds; its file is named after the nearest one.
        micros = pc.min(column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())).as_py()
        if micros is None:
            return None
        return _EPOCH + dt.timedelta(microseconds=min(max(micros, _MIN_US), _MAX_US))
    value = pc.min(column).as_py()
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    return None


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MIN_US = (dt.datetime.min.replace(tzinfo=dt.UTC) - _EPOCH) // dt.timedelta(microseconds=1)
_MAX_US = (dt.datetime.max.replace(tzinfo=dt.UTC) - _EPOCH) // dt.timedelta(microseconds=1)
# Where the time range of the last partition Python can name ends: after every instant.
END_OF_TIME = dt.datetime.max.replace(tzinfo=dt.UTC)


def by_session(table: Table, rows: pa.Table) -> list[pa.Table]:
    """The rows of one partition as the files they go to: one per session, unless
    there are more than `SESSION_SPLIT_MAX` sessions (then one)."""
    assert table.parquet is not None
    column = table.parquet.session_column
    if column is None or rows.num_rows == 0:
        return [rows]
    sessions = pc.unique(rows.column(column))
    if len(sessions) == 1 or len(sessions) > SESSION_SPLIT_MAX:
        return [rows]
    col = rows.column(column)
    return [
        rows.filter(pc.is_null(col) if s.as_py() is None else pc.equal(col, s))
        for s in sessions.sort()
    ]


def free_path(
    directory: Path, prefix: str, when: dt.datetime, suffix: str, taken: set[Path]
) -> Path:
    """`directory/<prefix>_<stamp>_<suffix>.parquet`, with a uniqueness tail when that
    name is in use (a file, a staged or retired one, or a path in `taken`), which is
    added to `taken`. The caller holds the table's fold lock: no one else names files."""
    for attempt in range(100_000):
        path = directory / file_name(prefix, when, suffix, attempt + 1 if attempt else 0)
        if path in taken or path.exists():
            continue
        if any(path.with_name(path.name + s).exists() for s in _SHADOW_SUFFIXES):
            continue
        taken.add(path)
        return path
    raise RuntimeError(f"no free file name in {directory}")  # pragma: no cover


def partition_path(values: PartitionValues) -> Path:
    """`year=2026/month=01/...` for partition values in level order."""
    return Path(*(f"{k}={v}" for k, v in values)) if values else Path()


# The folder name Hive (and DuckDB's hive_partitioning) reads as NULL.
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


class KeyValueError(ValueError):
    """A partition key value that cannot name a folder: the key, and the row holding
    the value when the caller knows it."""

    def __init__(self, message: str, key: str, row: int | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.row = row


def check_key_value(key: str, value: object) -> str:
    """A partition key value as a directory-safe string, or KeyValueError."""
    text = str(value)
    if value is None or not _SAFE_VALUE.match(text) or text in (".", ".."):
        raise KeyValueError(
            f"partition key {key!r} value {text[:40]!r} is not usable in a path "
            "(letters, digits and _ . : @ + - only, 1 to 128 characters)",
            key,
        )
    if text.upper() == HIVE_NULL:
        raise KeyValueError(
            f"partition key {key!r} value {text!r} is reserved: readers of "
            "partitioned folders take it for NULL",
            key,
        )
    return text


def split_by_partition(
    table: Table, data: pa.Table, defaults: Mapping[str, str]
) -> list[tuple[PartitionValues, pa.Table]]:
    """Split validated rows into (partition values, rows) groups.

    Time levels come from the table's time column (UTC). A key is taken from the column
    of that name when the rows have it, else from `defaults` (e.g. this host's host_id).
    Raises ValueError when a key value is not path-safe.
    """
    if data.num_rows == 0:
        return []
    level_arrays: list[tuple[str, pa.Array]] = []
    if table.partition.time:
        assert table.time is not None
        ts = data.column(table.time)
        for level in table.partition.time:
            fn = {"year": pc.year, "month": pc.month, "day": pc.day, "hour": pc.hour}[level]
            level_arrays.append((level, fn(ts)))
    for key in table.partition.keys:
        if key in data.column_names:
            level_arrays.append((key, data.column(key)))
        elif key in defaults:
            fill = pa.scalar(defaults[key], pa.string())
            level_arrays.append((key, pa.repeat(fill, data.num_rows)))
        else:
            raise ValueError(f"no value for partition key {key!r}")
    if not level_arrays:
        return [((), data)]
    # Group on the distinct combinations; telemetry batches usually hit one or two.
    combos = pa.table(dict(level_arrays))
    distinct = combos.group_by(combos.column_names).aggregate([]).to_pylist()
    out: list[tuple[PartitionValues, pa.Table]] = []
    for combo in distinct:
        values = tuple((name, _render(name, combo[name])) for name, _ in level_arrays)
        if len(distinct) == 1:
            out.append((values, data))
            continue
        mask = None
        for name, _ in level_arrays:
            col = combos.column(name)
            cond = pc.is_null(col) if combo[name] is None else pc.equal(col, combo[name])
            mask = cond if mask is None else pc.and_(mask, cond)
        out.append((values, data.filter(mask)))
    return out


def _render(name: str, value: object) -> str:
    if name in _WIDTH:
        return f"{int(value):0{_WIDTH[name]}d}"  # type: ignore[call-overload]
    return check_key_value(name, value)


def rows_per_group(data: pa.Table, target_bytes: int) -> int:
    """Rows per Parquet row group so a group holds about `target_bytes` of Arrow data."""
    if data.num_rows == 0:
        return 1
    per_row = max(1, int(data.nbytes) // int(data.num_rows))
    return max(1, target_bytes // per_row)


def parse_partition(relative: Path) -> PartitionValues:
    """The partition values of a directory below the table dir (`year=2026/month=01`)."""
    out = []
    for part in relative.parts:
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"not a partition directory: {relative}")
        out.append((key, value))
    return tuple(out)


def partition_end(values: PartitionValues) -> dt.datetime | None:
    """When the time range of a partition ends (UTC), or None without a year level.

    `year=2026/month=01` ends at 2026-02-01T00:00Z; key levels (host_id) do not matter.
    """
    start = partition_start(values)
    if start is None:
        return None
    levels = {k for k, _ in values}
    try:
        if "hour" in levels:
            return start + dt.timedelta(hours=1)
        if "day" in levels:
            return start + dt.timedelta(days=1)
        if "month" in levels:
            return (start + dt.timedelta(days=32)).replace(day=1)
        return start.replace(year=start.year + 1)
    except (OverflowError, ValueError):  # the partition of year 9999's end
        return END_OF_TIME


def partition_start(values: PartitionValues) -> dt.datetime | None:
    """When the time range of a partition starts (UTC), or None without a year level."""
    levels = {k: int(v) for k, v in values if k in _WIDTH}
    if "year" not in levels:
        return None
    return dt.datetime(
        levels["year"],
        levels.get("month", 1),
        levels.get("day", 1),
        levels.get("hour", 0),
        tzinfo=dt.UTC,
    )
