"""`check` and `check --repair`: damaged files are found, quarantined, and queries recover."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import telelake

SCHEMA = """
name = "chk"
version = "1.0.0"
[tables.events]
time = "ts"
key = ["writer", "seq"]
columns = [
  { name = "ts", type = "timestamp", nullable = false },
  { name = "writer", type = "string", nullable = false },
  { name = "seq", type = "int64", nullable = false },
  { name = "payload", type = "string" },
]
"""


def rows(writer: str, n: int, day: int = 1) -> list[dict[str, object]]:
    base = dt.datetime(2026, 3, day, tzinfo=dt.UTC)
    return [
        {"ts": base + dt.timedelta(seconds=i), "writer": writer, "seq": i, "payload": f"p{i}"}
        for i in range(n)
    ]


@pytest.fixture
def schema(tmp_path: Path) -> Path:
    path = tmp_path / "chk.toml"
    path.write_text(SCHEMA)
    return path


def count(store: telelake.Store) -> int:
    return int(store.sql("SELECT COUNT(*) FROM events").scalar())


def test_clean_store_checks_ok(store_root: Path, schema: Path) -> None:
    with telelake.open(store_root, schema) as store:
        store.write("events", rows("a", 10))
        store.fold()
        report = store.check()
    assert report.ok and report.findings == []
    assert report.checked["parquet"] == 1 and report.checked["metadata"] >= 3


def test_damaged_files_are_reported_then_quarantined(store_root: Path, schema: Path) -> None:
    with telelake.open(store_root, schema) as store:
        store.write("events", rows("good", 20, day=1))
        store.write("events", rows("trunc", 5, day=2))
        store.write("events", rows("zero", 5, day=3))
        store.fold()
    files = {p.parent.name: p for p in (store_root / "events").rglob("*.parquet")}
    truncated, zero = files["day=02"], files["day=03"]
    truncated.write_bytes(truncated.read_bytes()[:-30])
    zero.write_bytes(b"")
    foreign_dir = store_root / "events" / "year=2026" / "month=03" / "day=04"
    foreign_dir.mkdir(parents=True)
    foreign = foreign_dir / "other_20260304T000000Z_abcd.parquet"
    pq.write_table(pa.table({"something": [1, 2, 3]}), foreign)
    stale = files["day=01"].parent / ".events_x.parquet.1234.tmp"
    stale.write_bytes(b"half")
    old = time.time() - 3600
    os.utime(stale, (old, old))

    from telelake.store import Store, locate

    with Store(*locate(store_root, schema), reading=True) as reader:  # as `telelake check`
        assert stale in {f.path for f in reader.check().findings}
    with pytest.warns(UserWarning), telelake.open(store_root, schema) as store:
        assert not stale.exists()  # a killed writer's temp: gone when a writer opens
        assert count(store) == 20  # damaged files are skipped, never fatal
        report = store.check()
        bad = {f.path for f in report.findings}
        assert {truncated, zero, foreign} <= bad
        assert not report.ok
        assert all(f.action == "" for f in report.findings)
        assert truncated.exists()  # a plain check changes nothing

        repaired = store.check(repair=True)
        assert repaired.ok
        for path in (truncated, zero, foreign):
            assert not path.exists()
        quarantined = list((store_root / "_quarantine").rglob("*.reason.txt"))
        assert len(quarantined) == 3
        assert any("foreign" in q.read_text() for q in quarantined)
        assert count(store) == 20
        assert store.check().findings == []


def test_torn_wal_segment_keeps_its_complete_records(store_root: Path, schema: Path) -> None:
    # A child writes and dies without folding: its segment is left behind, then torn.
    code = (
        "import sys, telelake, datetime as dt\n"
        f"s = telelake.open({str(store_root)!r}, {str(schema)!r})\n"
        "base = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)\n"
        "for i in range(7):\n"
        "    s.write('events', [{'ts': base, 'writer': 'w', 'seq': i, 'payload': 'x'}])\n"
        "import os; os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    (segment,) = (store_root / "_wal" / "events").glob("*.wal")
    with segment.open("ab") as fh:
        fh.write(b"TLR1\xff\xff\x00\x00garbage")
    # Opening folds orphans; use check first on a store that has not folded it yet:
    from telelake.lake import wal

    contents = wal.read_segment(segment)
    assert contents.rows == 7 and contents.problem
    with telelake.open(store_root, schema) as store:
        # The opener folded the orphan's 7 complete records already.
        assert count(store) == 7
        assert not segment.exists()
        assert store.check().ok


def test_torn_segment_found_by_check_is_folded_by_repair(store_root: Path, schema: Path) -> None:
    with telelake.open(store_root, schema) as store:
        store.write("events", rows("a", 3))
        seg = next((store_root / "_wal" / "events").glob("*.wal"))
        # Simulate a segment left by a dead writer: copy it under a new name.
        orphan = seg.with_name("20260101T000000Z-1-zzzzzzzz.wal")
        data = seg.read_bytes()
        orphan.write_bytes(data + b"TLR1\x10\x00")  # torn header at the end
        report = store.check()
        torn = [f for f in report.findings if f.path == orphan]
        assert torn and "3 rows readable" in torn[0].problem
        # The orphan repeats the same keys: after repair they are still there once.
        fixed = store.check(repair=True)
        assert fixed.ok
        assert not orphan.exists()
        assert count(store) == 3
        assert list((store_root / "_quarantine").rglob("*.wal"))


def test_unreadable_segment_and_intent_are_quarantined(store_root: Path, schema: Path) -> None:
    with telelake.open(store_root, schema) as store:
        store.write("events", rows("a", 4))
        store.fold()
    wal_dir = store_root / "_wal" / "events"
    (wal_dir / "20260101T000000Z-1-badbadba.wal").write_bytes(b"not a segment at all")
    (wal_dir / "20260101T000000Z-1-badbadbb.wal").write_bytes(b"")
    (wal_dir / "direct-qqqqqqqq.fold").write_text("{not json")
    with pytest.warns(UserWarning, match="badbadbb.wal is damaged") as caught:
        store = telelake.open(store_root, schema)
    with store:
        # A named segment is never empty (its header is on disk before it gets its name):
        # an empty one was cut by damage. The opener keeps it in _quarantine and warns;
        # check reports it until repair marks it seen. The foreign one is left for check.
        assert not (wal_dir / "20260101T000000Z-1-badbadbb.wal").exists()
        (kept,) = (store_root / "_quarantine").rglob("*badbadbb.wal")
        assert kept.read_bytes() == b""
        assert "_quarantine" in str(caught[0].message)
        assert count(store) == 4
        report = store.check()
        assert sorted(f.kind for f in report.findings) == ["intent", "wal", "wal"]
        assert not report.ok
        assert [f.path for f in report.findings if "lost on open" in f.problem] == [kept]
        assert store.check(repair=True).ok
        assert store.check().findings == []
        assert count(store) == 4


def test_unreadable_host_info_is_rebuilt(store_root: Path, schema: Path) -> None:
    with telelake.open(store_root, schema) as store:
        (store_root / "_metadata" / "host_info.json").write_text("{broken")
        report = store.check()
        assert [f.kind for f in report.findings] == ["metadata"]
        assert store.check(repair=True).ok
        info = json.loads((store_root / "_metadata" / "host_info.json").read_text())
        assert info["host_id"] == store.host_id


def test_cli_check_exit_codes(store_root: Path, schema: Path) -> None:
    with telelake.open(store_root, schema) as store:
        store.write("events", rows("a", 4))
        store.fold()
    (path,) = (store_root / "events").rglob("*.parquet")
    path.write_bytes(b"PAR1 nope")
    exe = str(Path(sys.executable).parent / "telelake")
    env = {**os.environ, "COLUMNS": "200"}
    args = [exe, "check", "--root", str(store_root), "--schema", str(schema)]
    first = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 1 and "--repair" in first.stderr
    fixed = subprocess.run([*args, "--repair"], capture_output=True, text=True, env=env,
                           timeout=120)  # fmt: skip
    assert fixed.returncode == 0, fixed.stderr
    again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0


def flip_in_last_page(path: Path, column: str) -> None:
    """Flip one byte inside the last data page of `column` (row group 0): the footer and
    every other page stay as they were."""
    meta = pq.read_metadata(path)
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    chunk = meta.row_group(0).column(names.index(column))
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data = bytearray(path.read_bytes())
    data[start + chunk.total_compressed_size - 3] ^= 0x40
    path.write_bytes(bytes(data))


def test_deep_check_finds_bit_rot_in_a_data_page(store_root: Path, schema: Path) -> None:
    """Issue 19.17: a flipped byte in a data page changed query results while `check`,
    reading only footers, said all was well. Files carry page checksums now; `check
    --deep` reads every page, names the file, and repair quarantines it; a compaction
    refuses to copy the damaged page into a new file with fresh checksums."""
    with telelake.open(store_root, schema) as store:
        store.write("events", rows("a", 300, day=1))
        store.fold()
        store.write("events", rows("b", 300, day=1))
        store.fold()
    damaged, healthy = sorted((store_root / "events").rglob("*.parquet"))
    for path in (damaged, healthy):  # written with a CRC on every page (pyarrow checks)
        assert pq.ParquetFile(path, page_checksum_verification=True).read().num_rows == 300
    flip_in_last_page(damaged, "seq")
    with pytest.raises(OSError, match="CRC"):
        pq.ParquetFile(damaged, page_checksum_verification=True).read()

    with telelake.open(store_root, schema) as store:
        assert store.check().findings == []  # the footer is intact: a plain check is fooled
        deep = store.check(deep=True)
        assert [f.path for f in deep.findings] == [damaged]
        assert "damaged" in deep.findings[0].problem and not deep.ok
        with pytest.raises(telelake.StoreError, match=str(damaged)):
            store.compact(min_files=2)
        assert sorted((store_root / "events").rglob("*.parquet")) == [damaged, healthy]
        assert store.check(deep=True, repair=True).ok
        assert not damaged.exists()
        assert list((store_root / "_quarantine").rglob(damaged.name)) != []
        assert store.check(deep=True).findings == []
        assert count(store) == 300
