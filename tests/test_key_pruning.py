"""Footer statistics rule out files that cannot hold a batch's keys (key dedup's shortcut).

The brute-force side reads every row of the file: whenever a file is ruled out, no row of
it may lie inside the batch's key bounds.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telelake.lake import parquet

keys = st.lists(
    st.tuples(st.integers(-50, 50), st.sampled_from(["a", "b", "c", "d"])), min_size=1, max_size=40
)


def write(path: Path, rows: list[tuple[int, str]], group: int) -> None:
    table = pa.table({"n": [r[0] for r in rows], "s": [r[1] for r in rows]})
    pq.write_table(table, path, row_group_size=group)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=keys, batch=keys, group=st.integers(1, 10))
def test_a_ruled_out_file_holds_no_row_inside_the_bounds(
    tmp_path: Path, rows: list[tuple[int, str]], batch: list[tuple[int, str]], group: int
) -> None:
    path = tmp_path / f"f{abs(hash((tuple(rows), group)))}.parquet"
    write(path, rows, group)
    bounds = {
        "n": (min(b[0] for b in batch), max(b[0] for b in batch)),
        "s": (min(b[1] for b in batch), max(b[1] for b in batch)),
    }
    inside = [
        r
        for r in rows
        if bounds["n"][0] <= r[0] <= bounds["n"][1] and bounds["s"][0] <= r[1] <= bounds["s"][1]
    ]
    ranges = parquet.column_ranges(path, ("n", "s"))
    assert ranges == {
        "n": (min(r[0] for r in rows), max(r[0] for r in rows)),
        "s": (min(r[1] for r in rows), max(r[1] for r in rows)),
    }
    if not parquet.may_overlap(ranges, bounds):
        assert inside == []
    if set(batch) & set(rows):  # a shared key can never be ruled out
        assert parquet.may_overlap(ranges, bounds)


def test_files_without_statistics_are_never_ruled_out(tmp_path: Path) -> None:
    path = tmp_path / "nostats.parquet"
    pq.write_table(pa.table({"n": [1, 2]}), path, write_statistics=False)
    assert parquet.column_ranges(path, ("n",)) is None
    assert parquet.may_overlap(None, {"n": (100, 200)})


def test_timestamps_compare_with_the_bounds_of_a_batch(tmp_path: Path) -> None:
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    path = tmp_path / "ts.parquet"
    pq.write_table(pa.table({"ts": pa.array([t0], pa.timestamp("us", tz="UTC"))}), path)
    ranges = parquet.column_ranges(path, ("ts",))
    later = t0 + dt.timedelta(hours=1)
    assert not parquet.may_overlap(ranges, {"ts": (later, later)})
    assert parquet.may_overlap(ranges, {"ts": (t0, later)})
