"""Rollups whose source is a lake table: the same windows and percentile method."""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

import telelake
from opsdata import ORIGIN_MS, reported_percentile, to_ms, window_start

SCHEMA = """
name = "svc"
version = "1.0.0"

[tables.requests]
tier = "lake"
time = "ts"
key = ["request_id"]
partition = { time = ["year", "month", "day"] }
columns = [
  { name = "request_id", type = "string", nullable = false },
  { name = "service", type = "string", nullable = false },
  { name = "ts", type = "timestamp", nullable = false },
  { name = "latency_ms", type = "float64" },
]

[tables.request_stats]
tier = "sql"
key = ["service", "window", "window_start_ms"]
write = "upsert"
columns = [
  { name = "service", type = "string", nullable = false },
  { name = "window", type = "string", nullable = false },
  { name = "window_start_ms", type = "int64", nullable = false, epoch_unit = "ms" },
  { name = "n", type = "int64", nullable = false },
  { name = "p90", type = "float64" },
  { name = "slowest", type = "float64" },
]

[rollups.request_stats]
source = "requests"
group = ["service"]
windows = ["5m", "1h"]
aggregates = { n = "count(*)", p90 = "p90(latency_ms)", slowest = "max(latency_ms)" }
"""
WINDOWS = {"5m": 300_000, "1h": 3_600_000}
BASE = dt.datetime(2025, 3, 3, 12, tzinfo=dt.UTC)


@pytest.fixture
def schema(tmp_path: Path) -> Path:
    path = tmp_path / "svc.toml"
    path.write_text(SCHEMA)
    return path


def request(rng: random.Random, n: int) -> dict[str, Any]:
    return {
        "request_id": f"r{n}",
        "service": rng.choice(["api", "web"]),
        "ts": BASE + dt.timedelta(seconds=rng.randrange(0, 3 * 3600)),
        "latency_ms": None if rng.random() < 0.1 else round(rng.lognormvariate(3, 1), 3),
    }


def expected(rows: dict[str, dict[str, Any]]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows.values():
        for label, length in WINDOWS.items():
            key = (r["service"], label, window_start(to_ms(r["ts"]), length))
            groups.setdefault(key, []).append(r)
    out = {}
    for key, members in groups.items():
        values = sorted(m["latency_ms"] for m in members if m["latency_ms"] is not None)
        p90 = reported_percentile(values, Fraction(9, 10)) if values else None
        out[key] = (len(members), p90, max(values) if values else None)
    return out


def stored(root: Path) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    con = sqlite3.connect(root / "telelake.db")
    rows = con.execute(
        "SELECT service, window, window_start_ms, n, p90, slowest FROM request_stats"
    )
    return {tuple(r[:3]): tuple(r[3:]) for r in rows}


def same(got: dict[Any, tuple[Any, ...]], want: dict[Any, tuple[Any, ...]]) -> bool:
    return got.keys() == want.keys() and all(
        g == w or (w is not None and g == pytest.approx(w, rel=1e-12))
        for k in want
        for g, w in zip(got[k], want[k], strict=True)
    )


def test_a_lake_source_keeps_its_rollup_equal_to_brute_force(tmp_path: Path, schema: Path) -> None:
    rng = random.Random(7)
    truth: dict[str, dict[str, Any]] = {}
    with telelake.open(tmp_path / "store", schema=schema, fold_bytes=4096) as store:
        for batch in range(6):
            rows = [request(rng, batch * 40 + i) for i in range(40)]
            rows += [{**request(rng, 3), "latency_ms": 1e6}]  # a retry with other values
            for r in rows:
                truth.setdefault(r["request_id"], r)  # the lake keeps the first write
            store.write("requests", rows)
            assert same(stored(tmp_path / "store"), expected(truth)), batch
    assert ORIGIN_MS % WINDOWS["1h"] == 0


def test_windows_marked_before_a_crash_are_recomputed_on_open(
    tmp_path: Path, schema: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(3)
    first = [request(rng, n) for n in range(30)]
    later = [request(rng, n) for n in range(30, 60)]
    with telelake.open(tmp_path / "store", schema=schema) as store:
        store.write("requests", first)

        def crash(self: Any, rollups: Any) -> None:
            raise KeyboardInterrupt  # the process dies after the WAL append

        monkeypatch.setattr(telelake.Store, "_refresh_rollups", crash)
        with pytest.raises(KeyboardInterrupt):
            store.write("requests", later)
        monkeypatch.undo()
        assert not same(
            stored(tmp_path / "store"), expected({r["request_id"]: r for r in first + later})
        )
    with telelake.open(tmp_path / "store", schema=schema):
        pass
    assert same(stored(tmp_path / "store"), expected({r["request_id"]: r for r in first + later}))
