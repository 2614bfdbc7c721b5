"""Pure rollup arithmetic: window starts, per-window partial states, merge, finalize.

A *state* is what a window must remember to be updated later without its raw rows:
the row count, per column (count, sum, min, max), and a sketch per percentile column.
States merge by addition, so a late event, or a window whose raw rows retention has
already removed, is updated exactly. Nothing here touches a database.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from telelake.rollup import sketch
from telelake.schema.model import Rollup, Table

# Windows are aligned like TimescaleDB's time_bucket: from Monday 2000-01-03 00:00 UTC,
# so weeks start on Mondays and every shorter window at a whole multiple of itself.
ORIGIN_MS = 946_857_600_000

Key = tuple[Any, ...]  # group values..., window label, window start (ms)


@dataclass
class State:
    """What a window remembers: counts, sums, extremes and sketches per column."""

    rows: int = 0
    stats: dict[str, list[Any]] = field(default_factory=dict)  # col -> [n, sum, min, max]
    sketches: dict[str, dict[int, int]] = field(default_factory=dict)  # col -> bucket -> n

    def merge(self, other: State) -> None:
        """Add `other` into this state."""
        self.rows += other.rows
        for col, (n, total, low, high) in other.stats.items():
            mine = self.stats.setdefault(col, [0, 0, None, None])
            mine[0] += n
            mine[1] += total
            mine[2] = low if mine[2] is None else (mine[2] if low is None else min(mine[2], low))
            mine[3] = high if mine[3] is None else (mine[3] if high is None else max(mine[3], high))
        for col, counts in other.sketches.items():
            mine_sk = self.sketches.setdefault(col, {})
            for bucket, n in counts.items():
                mine_sk[bucket] = mine_sk.get(bucket, 0) + n

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (sketch buckets as string keys)."""
        return {
            "rows": self.rows,
            "stats": self.stats,
            "sketches": {c: {str(b): n for b, n in s.items()} for c, s in self.sketches.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> State:
        """The inverse of to_json()."""
        return cls(
            int(data["rows"]),
            {c: list(v) for c, v in data["stats"].items()},
            {c: {int(b): int(n) for b, n in s.items()} for c, s in data["sketches"].items()},
        )


def epoch_ms(times: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Epoch milliseconds (as float64, floored) of integer-ms or timestamp values."""
    if pa.types.is_timestamp(times.type):
        micros = pc.cast(pc.cast(times, pa.timestamp("us", tz="UTC")), pa.int64())
        return pc.floor(pc.divide(pc.cast(micros, pa.float64()), 1000.0))
    return pc.cast(times, pa.float64())


def window_starts(times: pa.Array | pa.ChunkedArray, length_ms: int) -> pa.Array:
    """The start (epoch ms) of the window of each time. Exact: ms times fit in a double."""
    offset = pc.subtract(epoch_ms(times), float(ORIGIN_MS))
    index = pc.floor(pc.divide(offset, float(length_ms)))
    return pc.cast(pc.add(pc.multiply(index, float(length_ms)), float(ORIGIN_MS)), pa.int64())


def touched(rollup: Rollup, rows: pa.Table) -> set[Key]:
    """The windows `rows` fall into: (group values..., window label, window start)."""
    out: set[Key] = set()
    for label, length in rollup.windows:
        table = pa.table(
            {
                **{g: rows.column(g) for g in rollup.group},
                "__start": window_starts(rows.column(rollup.time), length),
            }
        )
        keys = table.group_by([*rollup.group, "__start"], use_threads=False).aggregate([])
        cols = [keys.column(g).to_pylist() for g in rollup.group]
        starts = keys.column("__start").to_pylist()
        for i, start in enumerate(starts):
            out.add((*(c[i] for c in cols), label, start))
    return out


def stat_columns(rollup: Rollup) -> list[str]:
    """Columns that need count/sum/min/max."""
    return sorted({a.column for a in rollup.aggregates if a.column and a.func != "quantile"})


def sketch_columns(rollup: Rollup) -> list[str]:
    """Columns that need a percentile sketch."""
    return sorted({a.column for a in rollup.aggregates if a.column and a.func == "quantile"})


def partials(rollup: Rollup, rows: pa.Table) -> dict[Key, State]:
    """The state each touched window gains from `rows` (new source rows only)."""
    out: dict[Key, State] = {}
    if rows.num_rows == 0:
        return out
    group = list(rollup.group)
    stats, sketched = stat_columns(rollup), sketch_columns(rollup)
    buckets = {c: sketch.buckets_of(rows.column(c)) for c in sketched}
    for label, length in rollup.windows:
        table = rows.append_column("__start", window_starts(rows.column(rollup.time), length))
        keys = [*group, "__start"]
        specs: list[tuple[str, str]] = [(rollup.time, "count")]
        for c in stats:
            specs += [(c, "count"), (c, "sum"), (c, "min"), (c, "max")]
        agg = table.group_by(keys, use_threads=False).aggregate(specs)
        cols = {name: agg.column(name).to_pylist() for name in agg.column_names}
        for i in range(agg.num_rows):
            key = (*(cols[g][i] for g in group), label, cols["__start"][i])
            state = out.setdefault(key, State())
            state.rows += cols[f"{rollup.time}_count"][i]
            for c in stats:
                n = cols[f"{c}_count"][i]
                total = cols[f"{c}_sum"][i] if n else 0
                state.stats[c] = [n, total, cols[f"{c}_min"][i], cols[f"{c}_max"][i]]
        for c in sketched:
            with_bucket = table.append_column("__bucket", buckets[c]).filter(
                pc.is_valid(rows.column(c))
            )
            counted = with_bucket.group_by([*keys, "__bucket"], use_threads=False).aggregate(
                [("__bucket", "count")]
            )
            ccols = {name: counted.column(name).to_pylist() for name in counted.column_names}
            for i in range(counted.num_rows):
                key = (*(ccols[g][i] for g in group), label, ccols["__start"][i])
                out[key].sketches.setdefault(c, {})[ccols["__bucket"][i]] = ccols["__bucket_count"][
                    i
                ]
    return out


def finalize(rollup: Rollup, target: Table, key: Key, state: State) -> dict[str, Any]:
    """The target row of one window: group values, window, start and each aggregate."""
    row: dict[str, Any] = dict(zip(rollup.group, key[: len(rollup.group)], strict=True))
    row[rollup.window_column] = key[-2]
    row[rollup.start_column] = key[-1]
    for agg in rollup.aggregates:
        value: Any
        if agg.func == "count" and agg.column is None:
            value = state.rows
        elif agg.func == "quantile":
            assert agg.column is not None and agg.q is not None
            value = sketch.quantile(state.sketches.get(agg.column, {}), agg.q)
        else:
            assert agg.column is not None
            n, total, low, high = state.stats.get(agg.column, [0, 0, None, None])
            value = {
                "count": n,
                "sum": total if n else None,
                "min": low,
                "max": high,
                "avg": total / n if n else None,
            }[agg.func]
        row[agg.output] = _as_column_type(target, agg.output, value)
    return row


def _as_column_type(target: Table, column: str, value: Any) -> Any:
    """Round to an integer column's type (sketch values are floats)."""
    if value is None:
        return None
    if target.column(column).type.name.startswith("int"):
        return round(value)
    return value


def merge_all(states: Iterable[tuple[Key, State]]) -> dict[Key, State]:
    """Merge states that share a key."""
    out: dict[Key, State] = {}
    for key, state in states:
        if key in out:
            out[key].merge(state)
        else:
            out[key] = state
    return out
