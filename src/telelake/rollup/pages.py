"""How rollup states are stored: windows packed into pages, columns side by side.

A batch of telemetry touches thousands of 1-minute windows. Stored one row per window,
their states cost more to write than the summaries themselves (a B-tree entry, a page
split now and then, and a WAL frame each). So the windows of one group and one window
length are packed into *pages* spanning `max(length, PAGE_MS)` of time: sixty 1m windows,
four 15m windows, or a single window of an hour or more. A write rewrites the pages it
touches, whole.

A page's blob holds its windows' states column by column, so it is cut out of and read
back into `States` with NumPy slices, never a loop over windows (little-endian):

    u32 format (1)   u32 n windows   u32 sketch columns
    i64 starts[n]    f64 head[n x width]  (rows, then count/sum/min/max per stat column)
    per sketch column: i32 sizes[n]  i32 buckets[m]  i64 counts[m]  (m = sum of sizes)

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
FORMAT = 1
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
        if np.any(window[1:] < window[:-1]):  # States keep them sorted; be sure
            by_window = np.argsort(window, kind="stable")
            window, bucket, count = window[by_window], bucket[by_window], count[by_window]
        # Each window's buckets are one sorted run: move whole runs into page order.
        sizes = np.bincount(window, minlength=len(states))
        run_start = np.cumsum(sizes) - sizes
        moved = sizes[order]
        offset = np.cumsum(moved) - moved
        take = np.arange(int(moved.sum())) + np.repeat(run_start[order] - offset, moved)
        cuts = np.append(offset, int(moved.sum()))[bounds]
        sketches.append(
            (moved.astype("<i4"), bucket[take].astype("<i4"), count[take].astype("<i8"), cuts)
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
        for sizes, bucket, count, cuts in sketches:
            a, b = int(cuts[p]), int(cuts[p + 1])
            parts += [sizes[lo:hi].tobytes(), bucket[a:b].tobytes(), count[a:b].tobytes()]
        stop = first + span_of(lengths[label])
        pages.append(Page(grp, label, first, stop, b"".join(parts)))
    return pages


def _head(rollup: Rollup, states: States) -> np.ndarray:
    """Row counts and per-column stats of each window, as one float64 matrix."""
    columns = [states.rows.astype(np.float64)[:, None]]
    columns += [states.stats[c] for c in stat_columns(rollup)]
    return np.hstack(columns)


def decode(rollup: Rollup, pages: Iterable[tuple[str, str, bytes]]) -> States:
    """The windows held by pages given as (group text, label, blob): the inverse of encode."""
    stats_cols, sketch_cols = stat_columns(rollup), sketch_columns(rollup)
    width = 1 + 4 * len(stats_cols)
    keys: list[Key] = []
    heads: list[np.ndarray] = []
    pieces: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {
        c: [] for c in sketch_cols
    }
    groups: dict[str, list[Any]] = {}
    for grp, label, blob in pages:
        fmt, n, columns = _HEADER.unpack_from(blob)
        if fmt != FORMAT or columns != len(sketch_cols):
            raise ValueError(f"rollup {rollup.name!r}: unreadable state page (format {fmt})")
        at = _HEADER.size
        starts = np.frombuffer(blob, "<i8", n, at)
        at += 8 * n
        heads.append(np.frombuffer(blob, "<f8", n * width, at).reshape(n, width))
        at += 8 * n * width
        offset = len(keys)
        for c in sketch_cols:
            sizes = np.frombuffer(blob, "<i4", n, at)
            m = int(sizes.sum())
            at += 4 * n
            bucket = np.frombuffer(blob, "<i4", m, at).astype(np.int64)
            count = np.frombuffer(blob, "<i8", m, at + 4 * m).astype(np.int64)
            at += 12 * m
            window = np.repeat(np.arange(offset, offset + n, dtype=np.int64), sizes)
            pieces[c].append((window, bucket, count))
        group = groups.get(grp)
        if group is None:
            group = groups[grp] = json.loads(grp)
        keys += [(*group, label, s) for s in starts.tolist()]
    head = np.vstack(heads) if heads else np.zeros((0, width))
    empty = np.zeros(0, np.int64)
    return States(
        keys,
        head[:, 0].astype(np.int64),
        {c: head[:, 1 + 4 * j : 5 + 4 * j].copy() for j, c in enumerate(stats_cols)},
        {
            c: (
                np.concatenate([p[0] for p in pieces[c]]) if pieces[c] else empty,
                np.concatenate([p[1] for p in pieces[c]]) if pieces[c] else empty,
                np.concatenate([p[2] for p in pieces[c]]) if pieces[c] else empty,
            )
            for c in sketch_cols
        },
    )


def decode_window(rollup: Rollup, keys: list[Key], blobs: list[bytes]) -> States:
    """States stored one blob per window (telelake before pages, for the upgrade):
    f64 head[width], then per sketch column i64 m, i64 buckets[m], i64 counts[m]."""
    stats_cols, sketch_cols = stat_columns(rollup), sketch_columns(rollup)
    width = 1 + 4 * len(stats_cols)
    pages = []
    for key, blob in zip(keys, blobs, strict=True):
        at = width * 8
        parts = [_HEADER.pack(FORMAT, 1, len(sketch_cols)), struct.pack("<q", key[-1]), blob[:at]]
        for _ in sketch_cols:
            (m,) = struct.unpack_from("<q", blob, at)
            bucket = np.frombuffer(blob, "<i8", m, at + 8)
            parts += [struct.pack("<i", m), bucket.astype("<i4").tobytes()]
            parts.append(blob[at + 8 + 8 * m : at + 8 + 16 * m])
            at += 8 + 16 * m
        pages.append((group_text(key[:-2]), key[-2], b"".join(parts)))
    return decode(rollup, pages)
