"""Upsert lake tables (`write = "upsert"`): the last acknowledged write of a key wins.

Each WAL record carries its acknowledgement time (`fold.AT`, µs); rows of one segment
are in the order their writer acknowledged them. Versions of a key are ordered by
(acknowledgement time, segment name, position): a total order that agrees with real
time for writes that do not overlap, across processes (one host's clock).

What stays true at every moment, so that a reader resolves a key with one rule:

- Parquet files hold at most one version of each key (a fold that publishes a key
  rewrites the files that held it: copy-on-write, in the same atomic swap);
- every live WAL version of a key is newer than its Parquet version, except versions
  marked dead: when a fold publishes a key while another live segment holds an older
  version of it, it first writes a *dead marker* for that segment (`<segment>.<token>.dead`,
  the key and acknowledgement time of each record it outdates).

So a reader takes, for each key, the newest live WAL version that is not marked dead,
else the Parquet row (see `LakeTier.view_sql`). A fold drops its rows that are marked
dead or that another live segment holds a newer version of (that one wins when it is
folded). A write that lands after a fold looked at the segments is concurrent with or
later than the versions that fold saw, so it may win over them: writes that overlap in
time have no order of their own.

Everything here is pure (Arrow in, Arrow out); `LakeTier.commit` does the I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from telelake._lazy import lazy
from telelake.lake.fold import AT
from telelake.schema.model import Table

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    np = lazy("numpy")
    pa = lazy("pyarrow")
    pc = lazy("pyarrow.compute")

DEAD_SUFFIX = ".dead"
_POS = "__tl_pos"
_SEG = "__tl_seg"


def dead_marker_segment(name: str) -> str:
    """The segment a dead marker file (`<segment>.<token>.dead`) belongs to."""
    return name.rsplit(".", 2)[0]


def drop_dead(table: Table, rows: pa.Table, dead: pa.Table | None) -> pa.Table:
    """`rows` (with `AT`) without the records `dead` names by key and acknowledgement time."""
    if dead is None or dead.num_rows == 0 or rows.num_rows == 0:
        return rows
    cols = [*table.key, AT]
    keyed = rows.select(cols).append_column(_POS, _positions(rows.num_rows))
    gone = keyed.join(dead.select(cols), keys=cols, join_type="left semi")
    if gone.num_rows == 0:
        return rows
    mask = np.ones(rows.num_rows, dtype=bool)
    mask[gone.column(_POS).to_numpy()] = False
    return rows.filter(pa.array(mask))


def last_per_key(table: Table, rows: pa.Table) -> pa.Table:
    """The last row of each key of `rows` (rows in acknowledgement order), in row order."""
    if rows.num_rows == 0:
        return rows
    keyed = rows.select(list(table.key)).append_column(_POS, _positions(rows.num_rows))
    last = keyed.group_by(list(table.key), use_threads=False).aggregate([(_POS, "max")])
    if last.num_rows == rows.num_rows:
        return rows
    return rows.take(pa.array(np.sort(last.column(f"{_POS}_max").to_numpy())))


def resolve(
    table: Table, rows: pa.Table, me: str, others: list[tuple[str, pa.Table]]
) -> tuple[pa.Table, dict[str, pa.Table]]:
    """Which of `rows` (one version per key, with `AT`, from segment `me`) a fold
    publishes, and which records of the other live segments they outdate.

    `others` holds (segment name, its live records' key columns and `AT`). A row is
    dropped when another segment holds a newer version of its key; the older versions
    of the kept rows are returned per segment, to be marked dead before the commit.
    """
    parts = [
        t.select([*table.key, AT]).append_column(_SEG, _repeat(n, t.num_rows))
        for n, t in others
        if t.num_rows
    ]
    if not parts or rows.num_rows == 0:
        return rows, {}
    other = pa.concat_tables(parts)
    keyed = rows.select([*table.key, AT]).append_column(_POS, _positions(rows.num_rows))
    pairs = keyed.join(other, keys=list(table.key), join_type="inner", right_suffix="_o")
    if pairs.num_rows == 0:
        return rows, {}
    mine, theirs = pairs.column(AT), pairs.column(f"{AT}_o")
    seg = pairs.column(_SEG)
    newer = pc.or_(
        pc.greater(theirs, mine),
        pc.and_(pc.equal(theirs, mine), pc.greater(seg, pa.scalar(me))),
    )
    beaten = np.unique(pairs.filter(newer).column(_POS).to_numpy())
    keep = np.ones(rows.num_rows, dtype=bool)
    keep[beaten] = False
    outdated = pairs.filter(pc.invert(newer))
    if beaten.size:
        still = pa.array(keep[outdated.column(_POS).to_numpy()])
        outdated = outdated.filter(still)
    dead: dict[str, pa.Table] = {}
    if outdated.num_rows:
        names = outdated.column(_SEG)
        for name in pc.unique(names).to_pylist():
            sel = outdated.filter(pc.equal(names, pa.scalar(name)))
            cols = [sel.column(k) for k in table.key] + [sel.column(f"{AT}_o")]
            dead[str(name)] = pa.table(cols, names=[*table.key, AT])
    published = rows if keep.all() else rows.filter(pa.array(keep))
    return published, dead


def replaced(table: Table, file_keys: pa.Table, keys: pa.Table) -> np.ndarray:
    """Positions of the rows of a file (its key columns, `file_keys`) whose key is in
    `keys`: the older versions a fold replaces."""
    cols = list(table.key)
    keyed = file_keys.select(cols).append_column(_POS, _positions(file_keys.num_rows))
    hit = keyed.join(keys.select(cols), keys=cols, join_type="left semi")
    return np.sort(hit.column(_POS).to_numpy())


def _positions(n: int) -> pa.Array:
    return pa.array(np.arange(n, dtype=np.int64))


def _repeat(text: str, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(text, pa.string()), n)


# -- `ignore` tables: which rows of a write are new --------------------------------------

LexBounds = tuple[tuple[object, ...], tuple[object, ...]]


def lex_bounds(table: Table, rows: pa.Table) -> LexBounds | None:
    """The smallest and largest key of `rows` in lexicographic order; None when a key
    column holds nulls (nothing can be ruled out then) or there are no rows.

    Rows usually arrive sorted by key (keys grow with time, spec §3.2 sorts samples by
    theirs): a vectorised check finds that, and the first and last rows are the bounds.
    """
    if rows.num_rows == 0 or any(rows.column(k).null_count for k in table.key):
        return None
    keys = rows.select(list(table.key)).combine_chunks()
    last = rows.num_rows - 1
    if not _sorted(keys):
        order = pc.sort_indices(keys, sort_keys=[(k, "ascending") for k in table.key])
        first_pos, last_pos = order[0].as_py(), order[last].as_py()
    else:
        first_pos, last_pos = 0, last
    lo = tuple(keys.column(k)[first_pos].as_py() for k in table.key)
    hi = tuple(keys.column(k)[last_pos].as_py() for k in table.key)
    return lo, hi


def _sorted(keys: pa.Table) -> bool:
    """True if the rows of `keys` are in ascending lexicographic order (ties allowed)."""
    n = keys.num_rows
    if n < 2:
        return True
    ok: pa.Array | None = None  # per adjacent pair: already in order on the columns so far
    tie: pa.Array | None = None  # per adjacent pair: equal on the columns so far
    for col in keys.columns:
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        a, b = arr.slice(0, n - 1), arr.slice(1)
        gt, eq = pc.greater(b, a), pc.equal(b, a)
        if ok is None or tie is None:
            ok, tie = gt, eq
        else:
            ok = pc.or_(ok, pc.and_(tie, gt))
            tie = pc.and_(tie, eq)
    assert ok is not None and tie is not None
    return bool(pc.all(pc.or_(ok, tie)).as_py())


def merge_bounds(a: LexBounds | None, b: LexBounds | None) -> LexBounds | None:
    """The bounds of two sets of rows together (None, unknown, absorbs)."""
    if a is None or b is None:
        return None
    try:
        return min(a[0], b[0]), max(a[1], b[1])
    except TypeError:
        return None


def may_share_keys(a: LexBounds | None, b: LexBounds | None) -> bool:
    """Could rows within bounds `a` and rows within bounds `b` have a key in common?"""
    if a is None or b is None:
        return True
    try:
        return bool(a[0] <= b[1] and b[0] <= a[1])
    except TypeError:
        return True


def new_key_count(table: Table, keys: pa.Table, held: list[pa.Table]) -> int:
    """How many distinct keys of `keys` none of the `held` key tables holds."""
    distinct = keys.group_by(list(table.key), use_threads=False).aggregate([])
    if not held or distinct.num_rows == 0:
        return int(distinct.num_rows)
    existing = pa.concat_tables(held)
    return int(distinct.join(existing, keys=list(table.key), join_type="left anti").num_rows)
