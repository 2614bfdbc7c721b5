"""The WAL fsync policies: when fdatasync happens, per store and per table."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from pathlib import Path

import pytest

import telelake


def schema_file(tmp_path: Path, table_fsync: str | None = None) -> Path:
    extra = f'fsync = "{table_fsync}"\n' if table_fsync else ""
    path = tmp_path / "f.toml"
    path.write_text(
        'name = "f"\nversion = "1.0.0"\n[tables.t]\ntime = "ts"\n' + extra + "columns = [\n"
        '  { name = "ts", type = "timestamp", nullable = false },\n'
        '  { name = "n", type = "int64", nullable = false },\n]\n'
    )
    return path


def row(n: int) -> list[dict[str, object]]:
    return [{"ts": dt.datetime(2026, 5, 1, tzinfo=dt.UTC), "n": n}]


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    return calls


def test_always_syncs_before_each_write_returns(tmp_path: Path, syncs: list[int]) -> None:
    with telelake.open(tmp_path / "s", schema_file(tmp_path)) as store:
        store.write("t", row(0))  # creates the segment
        before = len(syncs)
        for i in range(1, 6):
            store.write("t", row(i))
            assert len(syncs) == before + i
        assert store.sql("SELECT COUNT(*) FROM t").scalar() == 6


def test_table_policy_overrides_the_store(tmp_path: Path, syncs: list[int]) -> None:
    with telelake.open(tmp_path / "s", schema_file(tmp_path, "off"), fsync="always") as store:
        store.write("t", row(0))
        before = len(syncs)
        for i in range(1, 20):
            store.write("t", row(i))
        assert len(syncs) == before
        assert store.sql("SELECT COUNT(*) FROM t").scalar() == 20


def test_interval_syncs_in_the_background(tmp_path: Path, syncs: list[int]) -> None:
    with telelake.open(tmp_path / "s", schema_file(tmp_path), fsync="interval") as store:
        store.write("t", row(0))
        before = len(syncs)
        store.write("t", row(1))
        assert len(syncs) == before  # the write did not wait for a sync
        deadline = time.monotonic() + 5
        while len(syncs) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(syncs) > before


def test_batch_shares_syncs_between_threads(tmp_path: Path, syncs: list[int]) -> None:
    with telelake.open(tmp_path / "s", schema_file(tmp_path), fsync="batch") as store:
        store.write("t", row(-1))
        before = len(syncs)
        threads = [
            threading.Thread(
                target=lambda k=k: [store.write("t", row(k * 100 + i)) for i in range(25)]
            )
            for k in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(syncs) - before <= 150  # never more than one sync per write
        assert store.sql("SELECT COUNT(DISTINCT n) FROM t").scalar() == 151


def test_bad_policies_are_refused(tmp_path: Path) -> None:
    with pytest.raises(telelake.SchemaError, match=r"table 't'.*fsync"):
        telelake.open(tmp_path / "s", schema_file(tmp_path, "sometimes"))
    with pytest.raises(telelake.StoreError, match="fsync"):
        telelake.open(tmp_path / "s2", schema_file(tmp_path), fsync="never")
