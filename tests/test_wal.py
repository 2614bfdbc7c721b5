"""The WAL segment format: record framing, torn tails, byte flips, foreign files.

Expectations are built here from the payloads and offsets the test itself produced; the
decoder is never compared with itself. The last tests crash a real writer (a child that
exits without folding), damage its segment the way a crash or a bad disk would, and check
that a new Store folds exactly the complete records and carries on.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
import zlib
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import telelake
from telelake import durable
from telelake.lake import wal
from telelake.schema.model import Column, Table
from telelake.schema.types import TYPES
from telelake.validate import exact_columns
from torture import HOST, write_schema

payload_lists = st.lists(st.binary(max_size=300), min_size=1, max_size=12)
FAST = settings(max_examples=150, deadline=None)
FIXTURE_OK = [HealthCheck.function_scoped_fixture]  # tmp_path is fine: names are unique


def encode_all(payloads: list[bytes]) -> tuple[bytes, list[int]]:
    """The framed records and the offset where each one starts."""
    out, starts = b"", []
    for p in payloads:
        starts.append(len(out))
        out += wal.encode_record(p)
    return out, starts


# -- framing -----------------------------------------------------------------------


def test_record_layout_is_magic_length_crc_payload() -> None:
    rec = wal.encode_record(b"hello")
    assert rec[:4] == b"TLR1"
    assert int.from_bytes(rec[4:8], "little") == 5
    assert int.from_bytes(rec[8:12], "little") == zlib.crc32(rec[4:8] + b"hello")
    assert rec[12:] == b"hello"


@FAST
@given(payload_lists)
def test_encode_then_decode_gives_the_payloads_back(payloads: list[bytes]) -> None:
    buf, _ = encode_all(payloads)
    decoded = wal.decode_records(buf)
    assert decoded.payloads == payloads
    assert decoded.end == len(buf)
    assert decoded.problem is None


@FAST
@given(payload_lists, st.binary(min_size=1, max_size=16))
def test_decoding_starts_where_told(payloads: list[bytes], prefix: bytes) -> None:
    buf, _ = encode_all(payloads)
    decoded = wal.decode_records(prefix + buf, len(prefix))
    assert decoded.payloads == payloads
    assert decoded.end == len(prefix) + len(buf)


@FAST
@given(payload_lists)
def test_truncation_at_every_offset_of_the_last_record_keeps_the_others(
    payloads: list[bytes],
) -> None:
    buf, starts = encode_all(payloads)
    last = starts[-1]
    for cut in range(last, len(buf)):
        decoded = wal.decode_records(buf[:cut])
        assert decoded.payloads == payloads[:-1], cut
        assert decoded.end == last, cut
        if cut == last:
            assert decoded.problem is None  # a clean record boundary is not a problem
        else:
            assert decoded.problem is not None, cut


@FAST
@given(payload_lists, st.data())
def test_a_flipped_byte_loses_exactly_the_record_holding_it(
    payloads: list[bytes], data: st.DataObject
) -> None:
    """Damage followed by good records is a gap, not the end: every other record is kept
    (a torn tail only when the damaged record is the last)."""
    buf, starts = encode_all(payloads)
    pos = data.draw(st.integers(0, len(buf) - 1), label="pos")
    mask = data.draw(st.integers(1, 255), label="mask")
    damaged = bytearray(buf)
    damaged[pos] ^= mask
    hit = max(i for i, s in enumerate(starts) if s <= pos)  # the record holding the byte
    decoded = wal.decode_records(bytes(damaged))
    assert decoded.payloads == payloads[:hit] + payloads[hit + 1 :]  # never a wrong one
    if hit == len(payloads) - 1:
        assert (decoded.end, decoded.gaps) == (starts[hit], [])
        assert decoded.problem is not None
    else:
        assert decoded.gaps == [(starts[hit], starts[hit + 1])]
        assert (decoded.end, decoded.problem) == (len(buf), None)


@FAST
@given(payload_lists, st.data())
def test_damaged_blocks_lose_only_the_records_they_touch(
    payloads: list[bytes], data: st.DataObject
) -> None:
    """Several damaged spans (zeroed like a lost disk block, or random bytes): the records
    they do not touch all come back, in order, and nothing else."""
    buf, starts = encode_all(payloads)
    ends = [*starts[1:], len(buf)]
    damaged = bytearray(buf)
    for _ in range(data.draw(st.integers(1, 3), label="spans")):
        a = data.draw(st.integers(0, len(buf) - 1), label="start")
        b = data.draw(st.integers(a + 1, min(len(buf), a + 40)), label="end")
        zeros = data.draw(st.booleans(), label="zeros")
        damaged[a:b] = (
            bytes(b - a) if zeros else data.draw(st.binary(min_size=b - a, max_size=b - a))
        )
    intact = [damaged[s:e] == buf[s:e] for s, e in zip(starts, ends, strict=True)]
    decoded = wal.decode_records(bytes(damaged))
    assert decoded.payloads == [p for p, ok in zip(payloads, intact, strict=True) if ok]


nonzero_garbage = st.binary(min_size=1, max_size=64).filter(any)  # zeros are free space


@FAST
@given(payload_lists, st.integers(1, 5000))
def test_a_zero_tail_is_free_space_not_a_problem(payloads: list[bytes], free: int) -> None:
    """A live or crashed writer's segment ends in the zeros it preallocated."""
    buf, _ = encode_all(payloads)
    decoded = wal.decode_records(buf + bytes(free))
    assert decoded.payloads == payloads
    assert decoded.end == len(buf)
    assert decoded.problem is None


@FAST
@given(payload_lists, st.integers(1, 5000), st.data())
def test_a_record_torn_into_preallocated_space_is_still_a_problem(
    payloads: list[bytes], free: int, data: st.DataObject
) -> None:
    """A crash mid-write leaves part of the last record, then zeros."""
    buf, starts = encode_all(payloads)
    cut = data.draw(st.integers(starts[-1] + 1, len(buf) - 1), label="cut")
    decoded = wal.decode_records(buf[:cut] + bytes(len(buf) - cut + free))
    if not any(buf[cut:]):  # the bytes that never arrived were zeros anyway: no loss
        assert (decoded.payloads, decoded.end, decoded.problem) == (payloads, len(buf), None)
        return
    assert decoded.payloads == payloads[:-1]
    assert decoded.end == starts[-1]
    assert decoded.problem is not None


@FAST
@given(payload_lists, nonzero_garbage)
def test_garbage_after_the_records_is_ignored_and_reported(
    payloads: list[bytes], garbage: bytes
) -> None:
    buf, _ = encode_all(payloads)
    decoded = wal.decode_records(buf + garbage)
    assert decoded.payloads == payloads
    assert decoded.end == len(buf)
    assert decoded.problem is not None


# -- real segments -----------------------------------------------------------------

SCHEMA = pa.schema([("n", pa.int64()), ("s", pa.string())])


def make_batches(sizes: list[int]) -> list[pa.RecordBatch]:
    out, n = [], 0
    for size in sizes:
        out.append(
            pa.record_batch(
                [
                    pa.array(range(n, n + size), pa.int64()),
                    pa.array([f"r{i}" for i in range(size)]),
                ],
                schema=SCHEMA,
            )
        )
        n += size
    return out


def write_segment(path: Path, batches: list[pa.RecordBatch]) -> list[int]:
    """A real segment; returns the file size after the header and after each batch."""
    seg = wal.SegmentWriter(path, SCHEMA, "always")
    ends = [seg.size]
    for b in batches:
        ends.append(seg.append(b))
    seg.close()
    assert path.stat().st_size == ends[-1]
    return ends


def rows_of(contents: wal.SegmentContents) -> list[dict[str, object]]:
    return [r for b in contents.batches for r in b.to_pylist()]


def expected_rows(batches: list[pa.RecordBatch]) -> list[dict[str, object]]:
    return [r for b in batches for r in b.to_pylist()]


sizes_strategy = st.lists(st.integers(1, 30), min_size=1, max_size=6)


@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURE_OK)
@given(sizes_strategy, st.binary(min_size=1, max_size=200).filter(any))
def test_segment_with_garbage_tail_reads_every_batch(
    tmp_path: Path, sizes: list[int], garbage: bytes
) -> None:
    path = tmp_path / f"seg-{os.urandom(4).hex()}.wal"
    batches = make_batches(sizes)
    ends = write_segment(path, batches)
    with path.open("ab") as fh:
        fh.write(garbage)
    contents = wal.read_segment(path)
    assert contents.schema is not None and contents.schema.equals(SCHEMA)
    assert rows_of(contents) == expected_rows(batches)
    assert contents.valid_bytes == ends[-1]
    assert contents.total_bytes == ends[-1] + len(garbage)
    assert contents.problem is not None


@settings(max_examples=15, deadline=None, suppress_health_check=FIXTURE_OK)
@given(sizes_strategy)
def test_segment_truncated_anywhere_in_its_last_record_reads_the_others(
    tmp_path: Path, sizes: list[int]
) -> None:
    path = tmp_path / f"seg-{os.urandom(4).hex()}.wal"
    batches = make_batches(sizes)
    ends = write_segment(path, batches)
    full = path.read_bytes()
    step = max(1, (ends[-1] - ends[-2]) // 97)  # about 100 offsets per record
    for cut in [*range(ends[-2] + 1, ends[-1], step), ends[-1] - 1]:
        path.write_bytes(full[:cut])
        contents = wal.read_segment(path)
        assert rows_of(contents) == expected_rows(batches[:-1]), cut
        assert contents.valid_bytes == ends[-2]
        assert contents.problem is not None


@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURE_OK)
@given(sizes_strategy, st.data())
def test_segment_cache_reading_a_growing_segment_matches_a_full_read(
    tmp_path: Path, sizes: list[int], data: st.DataObject
) -> None:
    """A reader polling a segment while its owner appends (torn records included)."""
    src = tmp_path / f"src-{os.urandom(4).hex()}.wal"
    batches = make_batches(sizes)
    ends = write_segment(src, batches)
    full = src.read_bytes()
    path = tmp_path / f"grow-{os.urandom(4).hex()}.wal"
    cache = wal.SegmentCache()
    written = ends[0]  # readers only look at segments whose header is written
    path.write_bytes(full[:written])
    while written < len(full):
        written = min(len(full), written + data.draw(st.integers(1, 400)))
        with path.open("ab") as fh:
            fh.write(full[len(path.read_bytes()) : written])
        got = cache.read(path)
        complete = [i for i, e in enumerate(ends) if e <= written][-1]  # batches fully written
        assert rows_of(got) == expected_rows(batches[:complete]), written
        assert got.valid_bytes == ends[complete]


def test_an_open_segment_is_preallocated_and_reads_cleanly_as_it_grows(tmp_path: Path) -> None:
    """The owner writes into space reserved ahead; readers see every record, no problem."""
    path = tmp_path / "live.wal"
    seg = wal.SegmentWriter(path, SCHEMA, "always")
    cache = wal.SegmentCache()
    batches = make_batches([3, 1, 7, 2])
    try:
        for i, batch in enumerate(batches):
            end = seg.append(batch)
            seg.wait_durable(end)
            assert path.stat().st_size >= end + wal.PREALLOCATE // 2  # reserved ahead
            for contents in (cache.read(path), wal.read_segment(path)):
                assert rows_of(contents) == expected_rows(batches[: i + 1])
                assert contents.valid_bytes == end
                assert contents.problem is None
    finally:
        seg.close()
    assert path.stat().st_size == end  # closing gives the reserved space back


@settings(max_examples=20, deadline=None, suppress_health_check=FIXTURE_OK)
@given(st.lists(st.lists(st.integers(1, 40), min_size=1, max_size=3), min_size=1, max_size=5))
def test_a_cache_reading_in_small_chunks_sees_every_appended_record(
    tmp_path: Path, rounds: list[list[int]]
) -> None:
    """Reads stop at free space after the records, however the chunks fall."""
    path = tmp_path / f"live-{os.urandom(4).hex()}.wal"
    seg = wal.SegmentWriter(path, SCHEMA, "off")
    cache = wal.SegmentCache()
    written: list[pa.RecordBatch] = []
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(wal, "READ_CHUNK", 64)  # records straddle many chunk ends
            for sizes in rounds:  # several appends between two reads
                for batch in make_batches(sizes):
                    seg.append(batch)
                    written.append(batch)
                assert rows_of(cache.read(path)) == expected_rows(written)
                assert cache.read(path).problem is None
    finally:
        seg.close()


def test_zero_length_segment_has_no_schema_and_says_its_header_is_torn(tmp_path: Path) -> None:
    path = tmp_path / "empty.wal"
    path.write_bytes(b"")
    contents = wal.read_segment(path)
    assert contents.schema is None
    assert contents.batches == []
    assert contents.problem == wal.HEADER_TORN
    assert contents.damage is not None  # a named segment is never empty: kept, reported


@pytest.mark.parametrize(
    "data",
    [wal.MAGIC[:3], wal.MAGIC, wal.MAGIC + wal.encode_record(b"x" * 40)[:20]],
    ids=["magic-prefix", "magic-only", "schema-record-torn"],
)
def test_segment_torn_inside_its_header(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "torn.wal"
    path.write_bytes(data)
    contents = wal.read_segment(path)
    assert contents.schema is None
    assert contents.problem == wal.HEADER_TORN
    assert contents.damage is not None


@pytest.mark.parametrize(
    "data",
    [b"PAR1" + b"\0" * 100, b"hello, this is not a WAL segment at all\n", b"TLWAL02\n" + b"x" * 9],
    ids=["parquet", "text", "other-version"],
)
def test_foreign_file_has_no_schema_and_a_problem(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "foreign.wal"
    path.write_bytes(data)
    contents = wal.read_segment(path)
    assert contents.schema is None
    assert contents.batches == []
    assert contents.problem is not None
    assert contents.problem != wal.HEADER_TORN  # it is foreign, not a crashed writer's
    assert contents.damage is None  # left for check to quarantine, nothing to salvage


def test_only_unlocked_old_hidden_segments_are_removed(tmp_path: Path) -> None:
    """A writer that died before naming its segment leaves a hidden file; a live one's stays."""
    schema = pa.schema([("x", pa.int64())])
    live = wal.SegmentWriter(tmp_path / "live.wal", schema)
    os.rename(live.path, tmp_path / ".live.wal.00000000.tmp")  # as if still being made
    dead = tmp_path / ".dead.wal.11111111.tmp"
    dead.write_bytes(wal.MAGIC)
    young = tmp_path / ".young.wal.22222222.tmp"
    young.write_bytes(b"")
    old = 1_000_000_000.0
    for p in (dead, tmp_path / ".live.wal.00000000.tmp"):
        os.utime(p, (old, old))
    assert durable.remove_orphan_temps(tmp_path)[0] == 1
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [".live.wal.00000000.tmp", ".young.wal.22222222.tmp"]
    live.close()


def test_checksummed_record_that_is_not_arrow_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "odd.wal"
    path.write_bytes(wal.MAGIC + wal.encode_record(b"definitely not an arrow schema"))
    contents = wal.read_segment(path)
    assert contents.schema is None
    assert contents.problem is not None


# -- a crashed writer's torn segment, then a new Store -----------------------------------

CRASHING_WRITER = textwrap.dedent(
    """
    import datetime as dt, os, sys
    import telelake
    root, schema, batches, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    store = telelake.open(root, schema=schema, host_id="feedfacecafebeef", fold_bytes=1 << 30)
    base = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
    for b in range(batches):
        rows = [
            {"ts": base + dt.timedelta(hours=s), "writer": "crash", "seq": s, "payload": "p"}
            for s in range(b * size, (b + 1) * size)
        ]
        store.write("events", rows)
    os._exit(0)  # like kill -9: no close, no fold
    """
)
BATCHES, SIZE = 6, 7


@pytest.fixture(scope="module")
def crashed_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A store whose only writer died after acknowledging BATCHES batches of SIZE rows."""
    base = tmp_path_factory.mktemp("crashed")
    schema = write_schema(base)
    root = base / "store"
    subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, str(root), str(schema), str(BATCHES), str(SIZE)],
        check=True,
        timeout=120,
    )
    return root, schema


def only_segment(root: Path) -> Path:
    (segment,) = (root / "_wal" / "events").glob("*.wal")
    return segment


def record_starts(segment: Path) -> tuple[list[int], int]:
    """Offsets of each record after the magic, and where the records end.

    Found by walking the length fields; a crashed writer's segment then holds only
    zeros (the space it had preallocated).
    """
    data = segment.read_bytes()
    pos, starts = len(wal.MAGIC), []
    while pos < len(data) and data[pos : pos + 4] == wal.RECORD_MAGIC:
        starts.append(pos)
        pos += 12 + int.from_bytes(data[pos + 4 : pos + 8], "little")
    assert set(data[pos:]) <= {0}
    return starts, pos


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip", "none"])
def test_new_store_folds_the_complete_records_of_a_torn_segment(
    crashed_root: tuple[Path, Path], tmp_path: Path, damage: str
) -> None:
    src, schema = crashed_root
    root = tmp_path / "store"
    shutil.copytree(src, root)
    segment = only_segment(root)
    starts, end = record_starts(segment)
    assert len(starts) == 1 + BATCHES  # the schema record, then one per write
    data = bytearray(segment.read_bytes())
    last = starts[-1]
    if damage == "truncate":
        data = data[: last + (end - last) // 2]
    elif damage == "garbage":  # over the free space after the records
        garbage = wal.RECORD_MAGIC + b"\xff" * 30
        data[end : end + len(garbage)] = garbage
    elif damage == "flip":
        data[last + 12 + (end - last - 12) // 2] ^= 0x5A
    segment.write_bytes(bytes(data))
    kept = BATCHES if damage in ("garbage", "none") else BATCHES - 1
    want = [("crash", s) for s in range(kept * SIZE)]

    with telelake.open(root, schema=schema, host_id=HOST) as store:
        got = store.sql("SELECT writer, seq FROM events ORDER BY seq").rows()
        assert got == want
        assert list((root / "_wal" / "events").glob("*.wal")) == []  # folded on open
        more = [
            {"ts": dt.datetime(2026, 4, 2, tzinfo=dt.UTC), "writer": "after", "seq": i}
            for i in range(5)
        ]
        store.write("events", more)
        assert store.sql("SELECT COUNT(*) FROM events").scalar() == len(want) + 5
    with telelake.open(root, schema=schema, host_id=HOST) as store:
        rows = store.sql("SELECT writer, seq FROM events").rows()
        assert sorted(rows) == sorted([*want, *(("after", i) for i in range(5))])


def copy_crashed(
    crashed_root: tuple[Path, Path], tmp_path: Path
) -> tuple[Path, Path, Path, list[int], bytearray]:
    """A copy of the crashed store: its root, schema, segment, record offsets and bytes."""
    src, schema = crashed_root
    root = tmp_path / "store"
    shutil.copytree(src, root)
    segment = only_segment(root)
    starts, _ = record_starts(segment)
    return root, schema, segment, starts, bytearray(segment.read_bytes())


@pytest.mark.parametrize("damage", ["record 3", "records 2-3", "schema record", "bad magic"])
def test_damage_before_good_records_loses_only_the_damaged_records(
    crashed_root: tuple[Path, Path], tmp_path: Path, damage: str
) -> None:
    """Issue 19.1: one flipped byte in the middle of a segment used to cost every record
    after it, silently. Now the records after it are folded, the damaged segment is kept
    in _quarantine/, the opener warns, and check reports the loss until repair."""
    root, schema, segment, starts, data = copy_crashed(crashed_root, tmp_path)
    lost: set[int] = set()  # which writes (batches) are damaged
    if damage == "record 3":
        data[starts[3] + 20] ^= 0x01  # the third write: record 0 is the schema
        lost = {2}
    elif damage == "records 2-3":  # a zeroed span, like a lost block
        data[starts[2] + 5 : starts[4] - 3] = bytes(starts[4] - 3 - starts[2] - 5)
        lost = {1, 2}
    elif damage == "schema record":  # read with the table's schema instead
        data[starts[0] + 30] ^= 0xFF
    else:
        data[0:4] = b"XXXX"
    segment.write_bytes(bytes(data))
    want = [
        ("crash", s)
        for b in range(BATCHES)
        if b not in lost
        for s in range(b * SIZE, (b + 1) * SIZE)
    ]

    with pytest.warns(UserWarning, match="is damaged") as caught:
        store = telelake.open(root, schema=schema, host_id=HOST)
    with store:
        assert store.sql("SELECT writer, seq FROM events ORDER BY seq").rows() == want
        assert not segment.exists()
        (kept,) = (root / "_quarantine").rglob("*.wal")
        assert kept.read_bytes() == bytes(data)  # the damaged segment as it was found
        assert str(kept.relative_to(root)) in str(caught[0].message)
        report = store.check()
        assert not report.ok
        assert [f.path for f in report.findings] == [kept]
        assert store.check(repair=True).ok
        assert store.check().findings == []
        assert kept.exists()


def test_check_reports_a_damaged_segment_before_any_open_folds_it(
    crashed_root: tuple[Path, Path], tmp_path: Path
) -> None:
    """A read-only look (what `telelake sql` and `check` do) reads the good records after
    the damage and says what was lost; repair folds them and keeps the segment."""
    root, schema, segment, starts, data = copy_crashed(crashed_root, tmp_path)
    data[starts[1] + 15] ^= 0x10
    segment.write_bytes(bytes(data))
    contents = wal.read_segment(segment)
    assert contents.rows == (BATCHES - 1) * SIZE and contents.damage
    from telelake.store import Store, locate

    path, model = locate(root, schema)
    with Store(path, model, reading=True) as reader:  # how `telelake sql` opens
        assert reader.sql("SELECT count(*) FROM events").scalar() == (BATCHES - 1) * SIZE
        report = reader.check()
        (finding,) = report.findings
        assert finding.path == segment and "damaged bytes" in finding.problem
        assert "35 rows readable" in finding.problem
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # repair reports it itself: no warning
        with Store(path, model, reading=True) as store:
            fixed = store.check(repair=True)
    assert fixed.ok and not segment.exists()
    (kept,) = (root / "_quarantine").rglob("*.wal")
    assert kept.read_bytes() == bytes(data)
    with telelake.open(root, schema=schema, host_id=HOST) as store:
        assert store.sql("SELECT count(*) FROM events").scalar() == (BATCHES - 1) * SIZE
        assert store.check().findings == []


def big_batch(start: int, rows: int) -> pa.RecordBatch:
    """A batch over the compression threshold, repetitive like real telemetry."""
    return pa.record_batch(
        [
            pa.array(range(start, start + rows), pa.int64()),
            pa.array(
                [None if i % 97 == 0 else f"/usr/bin/worker --id {i % 50}" for i in range(rows)]
            ),
        ],
        schema=SCHEMA,
    )


def test_big_batches_are_compressed_and_read_back_exactly(tmp_path: Path) -> None:
    path = tmp_path / "mixed.wal"
    big = big_batch(1000, 20_000)
    assert big.nbytes >= wal.COMPRESS_FROM
    batches = [*make_batches([3]), big, *make_batches([5])]
    ends = write_segment(path, batches)
    contents = wal.read_segment(path)
    assert contents.problem is None
    assert rows_of(contents) == expected_rows(batches)
    # The big record takes far fewer bytes than its plain IPC form; small ones are plain.
    assert ends[2] - ends[1] < len(big.serialize()) // 2
    assert ends[1] - ends[0] == len(wal.encode_record(batches[0].serialize()))
    # A tear inside the compressed record keeps the record before it, nothing after.
    full = path.read_bytes()
    for cut in (ends[1] + 20, (ends[1] + ends[2]) // 2, ends[2] - 1):
        path.write_bytes(full[:cut])
        torn = wal.read_segment(path)
        assert rows_of(torn) == expected_rows(batches[:1]) and torn.problem is not None


def test_a_small_slice_of_a_big_table_counts_as_small() -> None:
    # A slice shares its parent's buffers: judged by its own rows, not theirs, it is
    # written plain and counts for its own bytes towards `fold_bytes`.
    parent = big_batch(0, 50_000)
    piece = parent.slice(100, 10)
    payload, data_bytes = wal.serialize_batch(piece)
    assert payload.size == piece.serialize().size
    assert data_bytes < 4096 < parent.nbytes
    read = pa.ipc.read_record_batch(payload, SCHEMA)
    assert read.to_pylist() == piece.to_pylist()
    big_payload, big_bytes = wal.serialize_batch(parent)
    assert big_bytes == parent.nbytes and big_payload.size < parent.nbytes // 2


# -- rows records: small writes of plain values --------------------------------------

ROW_TABLE = Table(
    "r",
    (
        Column("i8", TYPES["int8"]),
        Column("i32", TYPES["int32"], nullable=False),
        Column("i64", TYPES["int64"]),
        Column("f", TYPES["float64"]),
        Column("s", TYPES["string"], nullable=False),
        Column("e", TYPES["string"], enum=("a", "b")),
        Column("b", TYPES["bool"]),
        Column("ts", TYPES["timestamp"]),
    ),
)
HOST_COLUMN = Column("host_id", TYPES["string"], nullable=False)
ZONES = st.sampled_from(
    [dt.UTC, dt.timezone(dt.timedelta(hours=2)), dt.timezone(dt.timedelta(hours=-9, minutes=-30))]
)
GOOD: dict[str, st.SearchStrategy[object]] = {
    "i8": st.none() | st.integers(-128, 127),
    "i32": st.integers(-(2**31), 2**31 - 1),
    "i64": st.none() | st.integers(-(2**63), 2**63 - 1),
    "f": st.none() | st.floats(),
    "s": st.text(max_size=6),
    "e": st.none() | st.sampled_from(["a", "b"]),
    "b": st.none() | st.booleans(),
    "ts": st.none()
    | st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2200, 1, 1), timezones=ZONES),
}
BAD: dict[str, st.SearchStrategy[object]] = {
    "i8": st.sampled_from([-129, 128, 1.5]),
    "i32": st.sampled_from([-(2**31) - 1, 2**31, True, None]),
    "i64": st.sampled_from([-(2**63) - 1, 2**63, 1.0]),
    "f": st.sampled_from([1, "1.5"]),
    "s": st.sampled_from(["\udcff", None, b"x"]),
    "e": st.just("c"),
    "b": st.sampled_from([0, 1]),
    "ts": st.datetimes(dt.datetime(1990, 1, 1), dt.datetime(2030, 1, 1)),  # naive: refused
}


@st.composite
def dict_rows(draw: st.DrawFn) -> list[dict[str, object]]:
    """Rows with one key set (some nullable columns left out), values good or (in one
    draw of four) perhaps not."""
    keys = [n for n in GOOD if n in ("i32", "s") or draw(st.booleans())]
    dirty = draw(st.integers(0, 3)) == 0
    cell = {k: (GOOD[k] | BAD[k]) if dirty else GOOD[k] for k in keys}
    return [{k: draw(cell[k]) for k in keys} for _ in range(draw(st.integers(1, 6)))]


def plain_value(column: Column, value: object) -> object:
    """What the table must hold for one accepted value (computed here, not by telelake)."""
    if value is None:
        return None
    if column.type.name == "timestamp":
        assert isinstance(value, dt.datetime)
        return value.astimezone(dt.UTC)
    return value


def same(got: list[object], want: list[object]) -> bool:
    """Equal lists, NaN equal to NaN."""
    return len(got) == len(want) and all(
        g == w or (g != g and w != w) for g, w in zip(got, want, strict=True)
    )


def valid(column: Column, value: object) -> bool:
    kind = column.type.name
    if value is None:
        return column.nullable
    if kind.startswith("int"):
        bits = int(kind[3:])
        return type(value) is int and -(2 ** (bits - 1)) <= value < 2 ** (bits - 1)
    if kind == "float64":
        return type(value) is float
    if kind == "string":
        return type(value) is str and (column.enum is None or value in column.enum)
    if kind == "bool":
        return type(value) is bool
    return isinstance(value, dt.datetime) and value.utcoffset() is not None


@settings(max_examples=300, deadline=None, suppress_health_check=FIXTURE_OK)
@given(dict_rows(), st.booleans())
def test_plain_small_writes_read_back_as_the_rows_written(
    tmp_path: Path, rows: list[dict[str, object]], with_host: bool
) -> None:
    """exact_columns takes only rows it can store exactly (else the Arrow path decides),
    and a rows record reads back as exactly those rows, in the schema `to_arrow` gives."""
    if with_host:
        rows = [{**r, "host_id": "h1"} for r in rows]
    plain = exact_columns(ROW_TABLE, rows, (HOST_COLUMN,), {"host_id": "store-host"})
    every_valid = all(valid(c, r.get(c.name)) for c in ROW_TABLE.columns for r in rows)
    assert (plain is not None) == every_valid  # doubt sends only bad rows to the Arrow path
    if plain is None:
        return  # the general path converts or names the bad row (tests/test_validate.py)
    schema = pa.schema([*plain.fields, pa.field("__tl_at", pa.int64())])
    path = tmp_path / f"plain-{os.urandom(4).hex()}.wal"
    seg = wal.SegmentWriter(path, schema, "off")
    try:
        seg.append_rows(1234, plain.columns, plain.num_rows)
    except UnicodeEncodeError:  # a lone surrogate: nothing was written, Arrow path next
        assert any(r.get("s") == "\udcff" for r in rows)
        assert seg.rows == 0 and wal.read_segment(path).batches == []
        seg.close()
        return
    seg.close()
    got = wal.read_segment(path).table()
    declared = [c.arrow_field for c in ROW_TABLE.columns]
    host = pa.field("host_id", pa.string(), nullable=False)
    assert got.schema.equals(pa.schema([*declared, host, pa.field("__tl_at", pa.int64())]))
    for c in ROW_TABLE.columns:
        want = [plain_value(c, r.get(c.name)) for r in rows]
        assert same(got.column(c.name).to_pylist(), want), c.name
    assert got.column("host_id").to_pylist() == ["h1" if with_host else "store-host"] * len(rows)
    assert got.column("__tl_at").to_pylist() == [1234] * len(rows)


HOSTED_SCHEMA = """\
name = "plain"
version = "1.0.0"

[tables.events]
time = "ts"
partition = { time = ["year", "month", "day"], keys = ["host_id"] }
columns = [
  { name = "ts", type = "timestamp", nullable = false },
  { name = "seq", type = "int32", nullable = false },
  { name = "note", type = "string" },
]
"""


def payload_kinds(segment: Path) -> list[str]:
    """'rows' or 'arrow' for each batch record of a segment, read off its bytes."""
    decoded = wal.decode_records(segment.read_bytes(), len(wal.MAGIC))
    return ["rows" if p.startswith(b"TLROWS1\n") else "arrow" for p in decoded.payloads[1:]]


def test_dict_rows_and_arrow_tables_share_a_segment_and_read_the_same(tmp_path: Path) -> None:
    """Small dict writes skip Arrow (rows records), Arrow tables do not; a reader, a fold
    and the host_id filled in from the store make no difference between the two."""
    (tmp_path / "s.toml").write_text(HOSTED_SCHEMA)
    base = dt.datetime(2026, 5, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    rows = [
        {"ts": base + dt.timedelta(minutes=i), "seq": i, "note": None if i % 3 else f"n{i}"}
        for i in range(30)
    ]
    arrow_rows = [{**r, "ts": r["ts"].astimezone(dt.UTC)} for r in rows[10:20]]
    as_table = pa.table(
        {
            "ts": pa.array([r["ts"] for r in arrow_rows], pa.timestamp("us", tz="UTC")),
            "seq": pa.array([r["seq"] for r in arrow_rows], pa.int32()),
            "note": pa.array([r["note"] for r in arrow_rows], pa.string()),
        }
    )
    want = sorted((r["ts"].astimezone(dt.UTC), r["seq"], r["note"], "store-host") for r in rows)
    query = "SELECT ts, seq, note, host_id FROM events ORDER BY ts"
    root = tmp_path / "root"
    with telelake.open(root, schema=tmp_path / "s.toml", host_id="store-host") as store:
        store.write("events", rows[:10])
        store.write("events", as_table)
        for r in rows[20:]:
            store.write("events", [r])
        (segment,) = (root / "_wal" / "events").glob("*.wal")
        assert payload_kinds(segment) == ["rows", "arrow", *["rows"] * 10]
        live = store.sql(query).rows()
        assert [(ts, seq, note, h) for ts, seq, note, h in live] == want
    with telelake.open(root, schema=tmp_path / "s.toml", host_id="other-host") as store:
        assert store.sql(query).rows() == want  # folded on close: the same rows
        assert list((root / "_wal" / "events").glob("*.wal")) == []


def test_small_dict_writes_the_plain_path_refuses_take_the_arrow_path(tmp_path: Path) -> None:
    """Values the plain path doubts are judged by the general path: errors name the row,
    and a refused write leaves no record behind."""
    (tmp_path / "s.toml").write_text(HOSTED_SCHEMA)
    ts = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    root = tmp_path / "root"
    with telelake.open(root, schema=tmp_path / "s.toml", host_id="h") as store:
        store.write("events", [{"ts": ts, "seq": 1}])
        with pytest.raises(telelake.ValidationError, match=r"column 'seq', row 1"):
            store.write("events", [{"ts": ts, "seq": 2}, {"ts": ts, "seq": 2**31}])
        with pytest.raises(telelake.ValidationError, match=r"column 'ts', row 0"):
            store.write("events", [{"ts": ts.replace(tzinfo=None), "seq": 3}])
        with pytest.raises(telelake.ValidationError, match=r"column 'note', row 0: .*surrogate"):
            store.write("events", [{"ts": ts, "seq": 4, "note": "\udcff"}])
        with pytest.raises(telelake.ValidationError, match="host_id"):
            store.write("events", [{"ts": ts, "seq": 5, "host_id": "../up"}])
        assert store.sql("SELECT seq FROM events").rows() == [(1,)]
        (segment,) = (root / "_wal" / "events").glob("*.wal")
        assert payload_kinds(segment) == ["rows"]


def test_a_checksummed_rows_record_that_does_not_decode_is_a_problem(tmp_path: Path) -> None:
    schema = pa.schema([pa.field("n", pa.int64()), pa.field("__tl_at", pa.int64())])
    good = wal.serialize_rows(7, [[1, 2]])
    for bad in (
        b"TLROWS1\n\xc1",
        wal.serialize_rows(7, [[1], [2]]),
        wal.serialize_rows(7, [["x"]]),
    ):
        path = tmp_path / f"bad-{os.urandom(4).hex()}.wal"
        body = wal.encode_record(schema.serialize().to_pybytes())
        path.write_bytes(wal.MAGIC + body + wal.encode_record(good) + wal.encode_record(bad))
        contents = wal.read_segment(path)
        assert contents.schema is None and contents.problem is not None
        assert "unreadable batch" in contents.problem
        cached = wal.SegmentCache()
        path.write_bytes(wal.MAGIC + body + wal.encode_record(good))
        assert cached.read(path).table().column("n").to_pylist() == [1, 2]
        path.write_bytes(path.read_bytes() + wal.encode_record(bad))  # appended later
        assert cached.read(path).problem is not None
