"""How rollup states are stored: windows packed into pages, columns side by side.

A batch of telemetry touches thousands of 1-minute windows. Stored one row per window,
their states cost more to write than the summaries themselves (a B-tree entry, a page
split now and then, and a WAL frame each). So the windows of one group and one window
length are packed into *pages* spanning `max(length, PAGE_MS)` of time: sixty 1m windows,
four 15m windows, or a single window of an hour or more. A write rewrites the pages it
touches, whole.

A page's blob holds its windows' states column by column, so it is cut out of and read
back into `States` with NumPy slices, never a loop over windows (little-endian):

    u32 format (2)   u32 n windows   u32 sketch columns
    i64 starts[n]    f64 head[n x width]  (rows, then count/sum/min/max per stat column)
    per sketch column: i32 sizes[n]  i32 buckets[m]  i64 counts[m]  (m = sum of sizes)
                       i32 kept[n]   f64 values[v]   (v = sum of kept: the exact values)

Format 1 (telelake before exact percentiles) had no kept values, and its stat columns
were only those of non-percentile aggregates. decode() reads it: its windows keep no
values (their percentiles come from the sketch) and a percentile-only column's extremes
are unknown (-inf, +inf: no clamp). The first open of such a store rewrites its pages in
format 2 (SqlTier._upgrade_pages).

Nothing here touches a database.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telelake._lazy import lazy
from telelake.rollup.windows import ORIGIN_MS, Key, States, sketch_columns, stat_columns
from telelake.schema.model import Rollup

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy("numpy")

PAGE_MS = 3_600_000  # windows shorter than an hour share a page of an hour
FORMAT = 2
OLD_FORMAT = 1  # before exact percentiles: read, never written
_HEADER = struct.Struct("<III")


@dataclass(frozen=True)
class Page:
    """One stored page: its group (as JSON text), window label, span and blob."""

    grp: str
    window: str
    start: int  # ms, the page's first instant
    stop: int  # ms, exclusive: every window of the page starts before it
    state: bytes


def group_text(group: Sequence[Any]) -> str:
    """The group values of a window as JSON: how telelake's rollup tables store them
    (state pages and the dirty marks of lake-source rollups)."""
    return json.dumps(list(group))


def span_of(length: int) -> int:
    """The time a page of windows of `length` ms spans."""
    return max(length, PAGE_MS)


def page_ids(rollup: Rollup, keys: Sequence[Key]) -> list[tuple[str, str, int]]:
    """(group text, label, page start) of each window key; a page starts at a whole
    multiple of its span from ORIGIN_MS."""
    spans = {label: span_of(length) for label, length in rollup.windows}
    g = len(rollup.group)
    texts: dict[tuple[Any, ...], str] = {}  # few groups, many windows: encode each once
    out = []
    for key in keys:  # runs for every window of a batch: no calls inside
        group, label, start = key[:g], key[g], key[g + 1]
        text = texts.get(group)
        if text is None:
            text = texts[group] = group_text(group)
        out.append((text, label, start - (start - ORIGIN_MS) % spans[label]))
    return out


def encode(rollup: Rollup, states: States) -> list[Page]:
    """The pages holding exactly the windows of `states`, each page whole."""
    if not len(states):
        return []
    ids = page_ids(rollup, states.keys)
    number: dict[tuple[str, str, int], int] = {}
    page = np.array([number.setdefault(i, len(number)) for i in ids], np.int64)
    starts = np.array([k[-1] for k in states.keys], np.int64)
    order = np.lexsort((starts, page))  # by page, then start
    bounds = np.searchsorted(page[order], np.arange(len(number) + 1))
    head = np.ascontiguousarray(_head(rollup, states)[order], "<f8")
    starts = np.ascontiguousarray(starts[order], "<i8")
    sketches = []
    for c in sketch_columns(rollup):
        window, bucket, count = states.sketches[c]
        # Each window's buckets (and kept values) are one sorted run: whole runs move.
        sizes, cuts, (bucket, count) = _runs(window, len(states), order, bounds, bucket, count)
        window, value = states.exact.get(c, (np.zeros(0, np.int64), np.zeros(0)))
        kept, kept_cuts, (value,) = _runs(window, len(states), order, bounds, value)
        sketches.append(
            (
                (sizes, cuts, bucket.astype("<i4"), count.astype("<i8")),
                (kept, kept_cuts, value.astype("<f8")),
            )
        )
    lengths = dict(rollup.windows)
    pages = []
    for (grp, label, first), p in number.items():
        lo, hi = int(bounds[p]), int(bounds[p + 1])
        parts = [
            _HEADER.pack(FORMAT, hi - lo, len(sketches)),
            starts[lo:hi].tobytes(),
            head[lo:hi].tobytes(),
        ]
        for (sizes, cuts, bucket, count), (kept, kept_cuts, value) in sketches:
            a, b = int(cuts[p]), int(cuts[p + 1])
            parts += [sizes[lo:hi].tobytes(), bucket[a:b].tobytes(), count[a:b].tobytes()]
            a, b = int(kept_cuts[p]), int(kept_cuts[p + 1])
            parts += [kept[lo:hi].tobytes(), value[a:b].tobytes()]
        stop = first + span_of(lengths[label])
        pages.append(Page(grp, label, first, stop, b"".join(parts)))
    return pages


def _runs(
    window: np.ndarray,
    k: int,
    order: np.ndarray,
    bounds: np.ndarray,
    *arrays: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """Per-window runs (a sketch's buckets, a window's kept values) moved into page
    order: each window's run size (i32), where each page's runs start, and the arrays."""
    if np.any(window[1:] < window[:-1]):  # States keep them sorted; be sure
        by_window = np.argsort(window, kind="stable")
        window, arrays = window[by_window], tuple(a[by_window] for a in arrays)
    sizes = np.bincount(window, minlength=k)
    run_start = np.cumsum(sizes) - sizes
    moved = sizes[order]
    offset = np.cumsum(moved) - moved
    take = np.arange(int(moved.sum())) + np.repeat(run_start[order] - offset, moved)
    cuts = np.append(offset, int(moved.sum()))[bounds]
    return moved.astype("<i4"), cuts, tuple(a[take] for a in arrays)


def _head(rollup: Rollup, states: States) -> np.ndarray:
    """Row counts and per-column stats of each window, as one float64 matrix."""
    columns = [states.rows.astype(np.float64)[:, None]]
    columns += [states.stats[c] for c in stat_columns(rollup)]
    return np.hstack(columns)


def _old_stat_columns(rollup: Rollup) -> list[str]:
    """The stat columns of format 1: those of non-percentile aggregates only."""
    return sorted({a.column for a in rollup.aggregates if a.column and a.func != "quantile"})


def decode(rollup: Rollup, pages: Iterable[tuple[str, str, bytes]]) -> States:
    """The windows held by pages given as (group text, label, blob): the inverse of encode
    (format 1 pages too, see the module's docstring)."""
    stats_cols, sketch_cols = stat_columns(rollup), sketch_columns(rollup)
    old_cols = _old_stat_columns(rollup)
    width = 1 + 4 * len(stats_cols)
    keys: list[Key] = []
    heads: list[np.ndarray] = []
    pieces: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {
        c: [] for c in sketch_cols
    }
    kept: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {c: [] for c in sketch_cols}
    groups: dict[str, list[Any]] = {}
    for grp, label, blob in pages:
        fmt, n, columns = _HEADER.unpack_from(blob)
        if fmt not in (FORMAT, OLD_FORMAT) or columns != len(sketch_cols):
            raise ValueError(f"rollup {rollup.name!r}: unreadable state page (format {fmt})")
        cols = stats_cols if fmt == FORMAT else old_cols
        at = _HEADER.size
        starts = np.frombuffer(blob, "<i8", n, at)
        at += 8 * n
        stored = np.frombuffer(blob, "<f8", n * (1 + 4 * len(cols)), at).reshape(n, -1)
        at += stored.nbytes
        offset = len(keys)
        head = stored
        if fmt == OLD_FORMAT:
            head = np.empty((n, width))
            head[:, 0] = stored[:, 0]
            place = {c: j for j, c in enumerate(cols)}
            for j, c in enumerate(stats_cols):
                if c in place:
                    i = place[c]
                    head[:, 1 + 4 * j : 5 + 4 * j] = stored[:, 1 + 4 * i : 5 + 4 * i]
                else:  # a percentile-only column: counted below, extremes unknown
                    head[:, 1 + 4 * j : 5 + 4 * j] = (0.0, np.nan, -np.inf, np.inf)
        for c in sketch_cols:
            sizes = np.frombuffer(blob, "<i4", n, at)
            m = int(sizes.sum())
            at += 4 * n
            bucket = np.frombuffer(blob, "<i4", m, at).astype(np.int64)
            count = np.frombuffer(blob, "<i8", m, at + 4 * m).astype(np.int64)
            at += 12 * m
            local = np.repeat(np.arange(n, dtype=np.int64), sizes)
            pieces[c].append((local + offset, bucket, count))
            if fmt == FORMAT:
                held = np.frombuffer(blob, "<i4", n, at)
                v = int(held.sum())
                at += 4 * n
                value = np.frombuffer(blob, "<f8", v, at).copy()
                at += 8 * v
                window = np.repeat(np.arange(offset, offset + n, dtype=np.int64), held)
                kept[c].append((window, value))
            elif c not in old_cols:
                j = stats_cols.index(c)
                total = np.bincount(local, weights=count, minlength=n)
                head[:, 1 + 4 * j] = total
                head[total == 0, 3 + 4 * j : 5 + 4 * j] = np.nan  # no value: empty extremes
        heads.append(head)
        group = groups.get(grp)
        if group is None:
            group = groups[grp] = json.loads(grp)
        keys += [(*group, label, s) for s in starts.tolist()]
    head = np.vstack(heads) if heads else np.zeros((0, width))
    empty = np.zeros(0, np.int64)

    def joined(parts: Sequence[tuple[np.ndarray, ...]], i: int, none: np.ndarray) -> np.ndarray:
        return np.concatenate([p[i] for p in parts]) if parts else none

    return States(
        keys,
        head[:, 0].astype(np.int64),
        {c: head[:, 1 + 4 * j : 5 + 4 * j].copy() for j, c in enumerate(stats_cols)},
        {
            c: (
                joined(pieces[c], 0, empty),
                joined(pieces[c], 1, empty),
                joined(pieces[c], 2, empty),
            )
            for c in sketch_cols
        },
        {c: (joined(kept[c], 0, empty), joined(kept[c], 1, np.zeros(0))) for c in sketch_cols},
    )


def decode_window(rollup: Rollup, keys: list[Key], blobs: list[bytes]) -> States:
    """States stored one blob per window (telelake before pages, for the upgrade):
    f64 head[width], then per sketch column i64 m, i64 buckets[m], i64 counts[m] (the
    stat columns and the sketches of format 1)."""
    stats_cols, sketch_cols = _old_stat_columns(rollup), sketch_columns(rollup)
    width = 1 + 4 * len(stats_cols)
    pages = []
    for key, blob in zip(keys, blobs, strict=True):
        at = width * 8
        head = [_HEADER.pack(OLD_FORMAT, 1, len(sketch_cols)), struct.pack("<q", key[-1])]
        parts = [*head, blob[:at]]
        for _ in sketch_cols:
            (m,) = struct.unpack_from("<q", blob, at)
            bucket = np.frombuffer(blob, "<i8", m, at + 8)
            parts += [struct.pack("<i", m), bucket.astype("<i4").tobytes()]
            parts.append(blob[at + 8 + 8 * m : at + 8 + 16 * m])
            at += 8 + 16 * m
        pages.append((group_text(key[:-2]), key[-2], b"".join(parts)))
    return decode(rollup, pages)
