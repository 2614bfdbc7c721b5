"""Rollup arithmetic, column-wise: window starts, per-window partial states, merge, finalize.

A *state* is what a window must remember to be updated later without its raw rows: the
row count, per column (count, sum, min, max), and per percentile column a sketch (see
sketch.py) plus, while the window holds at most EXACT_UP_TO values of it, those values
themselves. States merge by addition (and by concatenating the kept values), so a late
event, or a window whose raw rows retention already removed, is updated exactly.

A percentile is the nearest-rank percentile (sketch.py): exact, from the kept values,
while a window holds at most EXACT_UP_TO values; beyond that, from the sketch (within
sketch.ALPHA). Either way it is clamped to the window's exact min and max, so ten events
of 1,000 µs report p50 = p95 = p99 = 1,000 µs. Everything is computed for all touched
windows at once with Arrow and NumPy (a batch touches thousands of 1-minute windows;
a Python loop per window would cost more than writing the rows). Nothing here touches
a database.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from telelake._lazy import lazy
from telelake.rollup import sketch
from telelake.schema.model import Rollup, Table

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    np = lazy("numpy")
    pa = lazy("pyarrow")
    pc = lazy("pyarrow.compute")

# Windows are aligned like TimescaleDB's time_bucket: from Monday 2000-01-03 00:00 UTC,
# so weeks start on Mondays and every shorter window at a whole multiple of itself.
ORIGIN_MS = 946_857_600_000

Key = tuple[Any, ...]  # group values..., window label, window start (ms)

# A window keeps the raw values of a percentile column while it holds at most this many
# (non-null) of them: its percentiles are then exact. 64 values cost 512 bytes a window
# at most; a window holding more has a sketch that is small whatever its size.
EXACT_UP_TO = 64


def epoch_ms(times: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Epoch milliseconds (as float64, floored) of integer-ms or timestamp values."""
    if pa.types.is_timestamp(times.type):
        micros = pc.cast(pc.cast(times, pa.timestamp("us", tz="UTC")), pa.int64())
        return pc.floor(pc.divide(pc.cast(micros, pa.float64()), 1000.0))
    return pc.cast(times, pa.float64())


def touched(rollup: Rollup, rows: pa.Table) -> set[Key]:
    """The windows `rows` fall into: (group values..., window label, window start)."""
    return {key for keys, _ in _windows(rollup, rows) for key in keys}


def _windows(rollup: Rollup, rows: pa.Table) -> Iterator[tuple[list[Key], np.ndarray]]:
    """Per window length: the windows `rows` fall into, and each row's window index."""
    if rows.num_rows == 0:
        return
    # Group values are encoded once; per window length only the window index changes.
    groups: list[Key] = [()]
    ginverse = np.zeros(rows.num_rows, np.int64)
    if rollup.group:
        gcode, gdicts = _codes([rows.column(g) for g in rollup.group])
        gunique, ginverse = np.unique(gcode, return_inverse=True)
        groups = [key[:-2] for key in _decode_keys(gunique, [*gdicts, [None]], "")]
    millis = np.asarray(epoch_ms(rows.column(rollup.time)).to_numpy(zero_copy_only=False))
    for label, length in rollup.windows:
        index = np.floor((millis - ORIGIN_MS) / length).astype(np.int64)
        low = int(index.min())
        span = int(index.max()) - low + 1
        code = ginverse.astype(np.int64) * span + (index - low)
        uniq, inverse = unique_codes(code, len(groups) * span)
        starts = ((uniq % span + low) * length + ORIGIN_MS).tolist()
        owners = (uniq // span).tolist()
        keys: list[Key] = [
            (*groups[g], label, start) for g, start in zip(owners, starts, strict=True)
        ]
        yield keys, inverse


def stat_columns(rollup: Rollup) -> list[str]:
    """Columns that need count/sum/min/max: every aggregated column (a percentile column
    needs its count and extremes: its exact values are kept up to a count, and every
    percentile is clamped to the extremes)."""
    return sorted({a.column for a in rollup.aggregates if a.column})


def sketch_columns(rollup: Rollup) -> list[str]:
    """Columns that need a percentile sketch."""
    return sorted({a.column for a in rollup.aggregates if a.column and a.func == "quantile"})


@dataclass
class States:
    """Partial states of K windows, one row each.

    `stats[c]` is a K x 4 float array: non-null count, sum, min, max (NaN when empty;
    -inf/+inf when unknown: states stored before extremes were kept for percentile-only
    columns); `sketches[c]` are three arrays (window index, bucket, count) sorted by
    window, bucket; `exact[c]` two arrays (window index, value) sorted by window, value:
    every value of each window holding at most EXACT_UP_TO of them, none of the others.
    """

    keys: list[Key]
    rows: np.ndarray
    stats: dict[str, np.ndarray]
    sketches: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    exact: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.keys)


def _codes(columns: list[pa.Array | pa.ChunkedArray]) -> tuple[np.ndarray, list[list[Any]]]:
    """Dense int codes of the distinct value combinations of `columns`, and the values."""
    n = len(columns[0])
    code = np.zeros(n, dtype=np.int64)
    dictionaries = []
    for col in columns:
        encoded = (
            pc.dictionary_encode(col).combine_chunks()
            if isinstance(col, pa.ChunkedArray)
            else pc.dictionary_encode(col)
        )
        dictionaries.append(encoded.dictionary.to_pylist())
        size = max(len(encoded.dictionary), 1)
        code = code * size + encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return code, dictionaries


def aggregate(rollup: Rollup, rows: pa.Table) -> States:
    """The state each touched window gains from `rows` (new source rows only)."""
    stats_cols, sketch_cols = stat_columns(rollup), sketch_columns(rollup)
    values = {c: _floats(rows.column(c)) for c in stats_cols}
    buckets = {}
    for c in sketch_cols:
        arr = sketch.buckets_of(rows.column(c))
        valid = np.asarray(pc.is_valid(arr).to_numpy(zero_copy_only=False), dtype=bool)
        filled = np.asarray(pc.fill_null(arr, 0).to_numpy(zero_copy_only=False), np.int64)
        buckets[c] = (filled, valid)
    parts = []
    for keys, inverse in _windows(rollup, rows):
        k = len(keys)
        count = np.bincount(inverse, minlength=k).astype(np.int64)
        stats = {c: _stats(inverse, values[c], k) for c in stats_cols}
        sketches = {
            c: _pack(inverse[ok], b[ok], np.ones(int(ok.sum()), np.int64))
            for c, (b, ok) in buckets.items()
        }
        exact = {
            c: _keep_exact(inverse[ok], values[c][ok], stats[c][:, 0])
            for c, (_, ok) in buckets.items()
        }
        parts.append(States(keys, count, stats, sketches, exact))
    return _stack(parts)


def _keep_exact(
    window: np.ndarray, value: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The values of the windows that hold them all and at most EXACT_UP_TO (`counts`:
    each window's number of values), sorted by window, then value."""
    held = np.bincount(window, minlength=len(counts))
    keep = ((held == counts) & (counts <= EXACT_UP_TO))[window]
    window, value = window[keep], value[keep]
    order = np.lexsort((value, window))
    return window[order].astype(np.int64), value[order].astype(np.float64)


def _stack(parts: list[States]) -> States:
    """States of disjoint windows, one after the other (no key appears twice)."""
    parts = [p for p in parts if len(p)] or parts[:1]
    offsets = np.cumsum([0, *(len(p) for p in parts)])
    sketches = {}
    for c in parts[0].sketches:
        sketches[c] = (
            np.concatenate([p.sketches[c][0] + offsets[i] for i, p in enumerate(parts)]),
            np.concatenate([p.sketches[c][1] for p in parts]),
            np.concatenate([p.sketches[c][2] for p in parts]),
        )
    exact = {
        c: (
            np.concatenate([p.exact[c][0] + offsets[i] for i, p in enumerate(parts)]),
            np.concatenate([p.exact[c][1] for p in parts]),
        )
        for c in parts[0].exact
    }
    return States(
        list(itertools.chain.from_iterable(p.keys for p in parts)),
        np.concatenate([p.rows for p in parts]),
        {c: np.concatenate([p.stats[c] for p in parts]) for c in parts[0].stats},
        sketches,
        exact,
    )


def _floats(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A column as float64 with NaN for nulls."""
    arr = pc.cast(col, pa.float64())
    return np.asarray(pc.fill_null(arr, math.nan).to_numpy(zero_copy_only=False))


def _decode_keys(codes: np.ndarray, dicts: list[list[Any]], label: str) -> list[Key]:
    sizes = [max(len(d), 1) for d in dicts]
    parts: list[list[Any]] = []
    rest = codes.copy()
    for d, size in zip(reversed(dicts), reversed(sizes), strict=True):
        parts.append([d[i] for i in (rest % size).tolist()])
        rest //= size
    parts.reverse()
    *groups, starts = parts
    return [(*(g[i] for g in groups), label, starts[i]) for i in range(len(codes))]


def _stats(inverse: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    valid = ~np.isnan(values)
    out = np.empty((k, 4))
    idx, v = inverse[valid], values[valid]
    out[:, 0] = np.bincount(idx, minlength=k)
    out[:, 1] = np.bincount(idx, weights=v, minlength=k)
    low = np.full(k, np.inf)
    high = np.full(k, -np.inf)
    np.minimum.at(low, idx, v)
    np.maximum.at(high, idx, v)
    empty = out[:, 0] == 0
    out[:, 2] = np.where(empty, np.nan, low)
    out[:, 3] = np.where(empty, np.nan, high)
    return out


def _pack(
    window: np.ndarray, bucket: np.ndarray, count: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum counts of equal (window, bucket) pairs; sorted by window, then bucket."""
    if not len(window):
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    low = int(bucket.min())
    width = int(bucket.max()) - low + 1
    combined = window.astype(np.int64) * width + (bucket - low)
    uniq, inverse = unique_codes(combined, (int(window.max()) + 1) * width)
    summed = np.bincount(inverse, weights=count, minlength=len(uniq)).astype(np.int64)
    return uniq // width, uniq % width + low, summed


def unique_codes(codes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(codes, return_inverse=True)` for int codes in [0, size): by counting,
    with no sort, when the range is small next to the number of codes (a batch's
    windows of one length, or their buckets: a sort per window length was a third of
    the aggregation)."""
    if size <= 8 * len(codes) + 4096:
        present = np.bincount(codes, minlength=size) > 0
        rank = np.cumsum(present) - 1
        return np.flatnonzero(present), rank[codes]
    return np.unique(codes, return_inverse=True)


def merge(gained: States, old: States) -> tuple[States, States]:
    """Add `old` states into `gained`: (the gained windows, updated; every window).

    A batch written in time order shares few windows with earlier ones, so only those
    go through concat(); the others are stacked as they are.
    """
    earlier = {k: i for i, k in enumerate(old.keys)}
    shared = [i for i, k in enumerate(gained.keys) if k in earlier]
    if not shared:
        return gained, _stack([gained, old])
    partners = [earlier[gained.keys[i]] for i in shared]
    both = concat([select(gained, shared), select(old, partners)])
    mine, theirs = set(shared), set(partners)
    rest_gained = select(gained, [i for i in range(len(gained)) if i not in mine])
    rest_old = select(old, [i for i in range(len(old)) if i not in theirs])
    touched = _stack([both, rest_gained])
    return touched, _stack([touched, rest_old])


def concat(parts: list[States]) -> States:
    """Merge states; windows that appear in several parts are added together."""
    keys = [k for p in parts for k in p.keys]
    index: dict[Key, int] = {}
    new_id = np.array([index.setdefault(k, len(index)) for k in keys], dtype=np.int64)
    k = len(index)
    first = parts[0] if parts else None
    offsets = np.cumsum([0, *(len(p) for p in parts)])
    rows = np.zeros(k, np.int64)
    np.add.at(rows, new_id, np.concatenate([p.rows for p in parts]) if parts else [])
    stats = {}
    for c in first.stats if first else {}:
        joined = np.concatenate([p.stats[c] for p in parts])
        out = np.zeros((k, 4))
        np.add.at(out[:, 0], new_id, joined[:, 0])
        np.add.at(out[:, 1], new_id, joined[:, 1])
        low, high = np.full(k, np.inf), np.full(k, -np.inf)
        np.fmin.at(low, new_id, joined[:, 2])
        np.fmax.at(high, new_id, joined[:, 3])
        empty = out[:, 0] == 0
        out[:, 2] = np.where(empty, np.nan, low)
        out[:, 3] = np.where(empty, np.nan, high)
        stats[c] = out
    sketches = {}
    for c in first.sketches if first else {}:
        windows = np.concatenate(
            [new_id[offsets[i] + p.sketches[c][0]] for i, p in enumerate(parts)]
        )
        buckets = np.concatenate([p.sketches[c][1] for p in parts])
        counts = np.concatenate([p.sketches[c][2] for p in parts])
        sketches[c] = _pack(windows, buckets, counts)
    exact = {}
    for c in first.exact if first else {}:
        windows = np.concatenate(
            [new_id[offsets[i] + p.exact[c][0]] for i, p in enumerate(parts)]
        ).astype(np.int64)
        values = np.concatenate([p.exact[c][1] for p in parts])
        exact[c] = _keep_exact(windows, values, stats[c][:, 0])
    ordered = [key for key, _ in sorted(index.items(), key=lambda kv: kv[1])]
    return States(ordered, rows, stats, sketches, exact)


def finalize(rollup: Rollup, target: Table, states: States) -> dict[str, list[Any]]:
    """The target rows of the windows, column by column."""
    g = len(rollup.group)
    out: dict[str, list[Any]] = {
        name: [key[i] for key in states.keys] for i, name in enumerate(rollup.group)
    }
    out[rollup.window_column] = [key[g] for key in states.keys]
    out[rollup.start_column] = [key[g + 1] for key in states.keys]
    for agg in rollup.aggregates:
        values: np.ndarray
        if agg.func == "count" and agg.column is None:
            values = states.rows.astype(np.float64)
        elif agg.func == "quantile":
            assert agg.column is not None and agg.q is not None
            values = _quantiles(states, agg.column, agg.q)
        else:
            assert agg.column is not None
            n, total, low, high = states.stats[agg.column].T
            with np.errstate(invalid="ignore", divide="ignore"):
                values = {
                    "count": n,
                    "sum": np.where(n > 0, total, np.nan),
                    "min": low,
                    "max": high,
                    "avg": np.where(n > 0, total / np.where(n > 0, n, 1), np.nan),
                }[agg.func]
        out[agg.output] = _python_values(values, target.column(agg.output).type.name)
    return out


def _python_values(values: np.ndarray, kind: str) -> list[Any]:
    """Floats as the column's Python values: NaN is None; integer columns are rounded
    half to even (np.rint, as round() does)."""
    missing = np.isnan(values)
    listed: list[Any] = (
        np.rint(np.where(missing, 0, values)).astype(np.int64).tolist()
        if kind.startswith("int")
        else values.tolist()
    )
    if missing.any():
        for i in np.flatnonzero(missing).tolist():
            listed[i] = None
    return listed


def _quantiles(states: States, column: str, q: float) -> np.ndarray:
    """The nearest-rank q-quantile of `column` in each window (NaN for an empty one):
    exact where the window kept its values, else its sketch's; clamped to [min, max]."""
    k = len(states)
    out = _sketch_quantiles(states.sketches[column], k, q)
    window, value = states.exact.get(column, (np.zeros(0, np.int64), np.zeros(0)))
    if len(window):
        held = np.bincount(window, minlength=k)
        first = np.searchsorted(window, np.arange(k), side="left")
        has = held > 0
        rank = _ranks(q, held)
        out[has] = value[(first + rank - 1)[has]]
    _, _, low, high = states.stats[column].T
    known = ~np.isnan(out)
    out[known] = np.clip(out[known], low[known], high[known])
    return out


def _ranks(q: float, n: np.ndarray) -> np.ndarray:
    """sketch.nearest_rank() of every count in `n`, in exact integer arithmetic."""
    fraction = Fraction(q).limit_denominator(10**6)  # 0.95 is 19/20, not 0.9499999...
    a, b = fraction.numerator, fraction.denominator
    return np.asarray(np.maximum(1, (a * n + b - 1) // b), np.int64)


def _sketch_quantiles(
    packed: tuple[np.ndarray, np.ndarray, np.ndarray], k: int, q: float
) -> np.ndarray:
    """The nearest-rank q-quantile of each window's sketch (NaN for an empty one)."""
    window, bucket, count = packed
    out = np.full(k, np.nan)
    if len(window) == 0:
        return out
    cum = np.cumsum(count)
    total = np.bincount(window, weights=count, minlength=k).astype(np.int64)
    first = np.searchsorted(window, np.arange(k), side="left")
    has = total > 0
    rank = _ranks(q, total)
    start = np.where(
        has, cum[np.minimum(first, len(cum) - 1)] - count[np.minimum(first, len(cum) - 1)], 0
    )
    at = np.searchsorted(cum, start + rank, side="left")
    chosen = bucket[np.minimum(at, len(bucket) - 1)]
    distinct, inverse = np.unique(chosen, return_inverse=True)  # few buckets, many windows
    values = np.array([sketch.value_of(v) for v in distinct.tolist()], np.float64)[inverse]
    out[has] = values[has]
    return out


def select(states: States | None, keep: list[int]) -> States:
    """The windows at positions `keep` of `states` (an empty States for None)."""
    if states is None or not keep:
        empty = np.zeros(0, np.int64)
        return States([], empty, {}, {})
    chosen = np.asarray(keep, np.int64)
    remap = np.full(len(states), -1, np.int64)
    remap[chosen] = np.arange(len(chosen))
    sketches = {}
    for c, (window, bucket, count) in states.sketches.items():
        mask = remap[window] >= 0
        sketches[c] = (remap[window[mask]], bucket[mask], count[mask])
    exact = {}
    for c, (window, value) in states.exact.items():
        mask = remap[window] >= 0
        exact[c] = (remap[window[mask]], value[mask])
    return States(
        list(map(states.keys.__getitem__, keep)),
        states.rows[chosen],
        {c: v[chosen] for c, v in states.stats.items()},
        sketches,
        exact,
    )
