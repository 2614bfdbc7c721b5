"""Compaction: the same rows before and after, fewer files, atomic under crashes and races.

Expectations come from the rows the test generated (datagen) and from reading the Parquet
files with pyarrow, never from telelake's own answers alone.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import redaction_oracle
import telelake
from datagen import TABLES, generate, without
from telelake.lake import compact, layout

HOST = "feedfacecafebeef"
QUERIES = {
    "calibration_curve": {},
    "command_category_stats": {},
}


def open_store(root: Path, **kw: Any) -> telelake.Store:
    return telelake.open(root, schema="process_triage", host_id=HOST, **kw)


def fill(root: Path, chunk: int = 7) -> dict[str, list[dict[str, Any]]]:
    """Write generated rows in small chunks, each folded at once: many small files."""
    rows = generate(3, n_sessions=10, days=4)
    with open_store(root, fold_bytes=1) as store:
        for table in TABLES:
            data = rows[table] if table in ("runs", "audit") else without(rows[table], "host_id")
            for i in range(0, len(data), chunk):
                store.write(table, data[i : i + chunk])
    return rows


def everything(store: telelake.Store) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for table in TABLES:
        out[table] = store.sql(f"SELECT * FROM {table} ORDER BY ALL").to_arrow()
    for name, params in QUERIES.items():
        out[name] = store.query(name, **params).to_arrow()
    return out


def parquet_rows(root: Path, table: str) -> Counter[tuple[Any, ...]]:
    """Every row of every published file, read by pyarrow alone."""
    found: Counter[tuple[Any, ...]] = Counter()
    for f in sorted((root / table).rglob("*.parquet")):
        if f.name.startswith("."):
            continue
        for r in pq.read_table(f).to_pylist():
            found[tuple(sorted((k, repr(v)) for k, v in r.items()))] += 1
    return found


def file_count(root: Path, table: str) -> int:
    return sum(1 for f in (root / table).rglob("*.parquet") if not f.name.startswith("."))


def test_compaction_keeps_every_row_and_answer_with_one_file_per_partition(
    store_root: Path,
) -> None:
    fill(store_root)
    before_files = {t: file_count(store_root, t) for t in TABLES}
    before_rows = {t: parquet_rows(store_root, t) for t in TABLES}
    with open_store(store_root, retire_after=0) as store:
        before = everything(store)
        report = store.compact()
        after = everything(store)
    assert report.partitions > 0
    for name, table in before.items():
        assert after[name].equals(table), name  # identical query results
    for t in TABLES:
        assert parquet_rows(store_root, t) == before_rows[t], t  # same rows on disk
        for directory, files in compact.partitions(store_root / t):
            assert len(files) == 1, directory
        assert file_count(store_root, t) <= before_files[t]
    assert sum(file_count(store_root, t) for t in TABLES) < sum(before_files.values())
    files_before, files_after, _, _ = report.totals()
    assert files_before - files_after == sum(before_files.values()) - sum(
        file_count(store_root, t) for t in TABLES
    )
    with open_store(store_root) as store:  # nothing left to do: idempotent
        assert store.compact().partitions == 0
        assert store.check().ok


def test_a_compacted_file_keeps_the_layout(store_root: Path) -> None:
    fill(store_root)
    with open_store(store_root, retire_after=0) as store:
        store.compact(table="proc_samples")
        spec = store.table("proc_samples").parquet
    assert spec is not None
    for _, files in compact.partitions(store_root / "proc_samples"):
        meta = pq.read_metadata(files[0])
        kv = meta.metadata
        assert kv[b"telelake.schema"] == b"process_triage"
        assert kv[b"telelake.table"] == b"proc_samples"
        rows = pq.read_table(files[0]).select(list(spec.sort)).to_pylist()
        keys = [tuple(r[c] for c in spec.sort) for r in rows]
        assert keys == sorted(keys)  # sorted by the layout's sort order
        assert meta.row_group(0).column(0).compression.lower() == spec.compression


def test_repeated_keys_in_two_files_keep_the_oldest_write(store_root: Path) -> None:
    rows = generate(5, n_sessions=2, days=1)["runs"][:1]
    with open_store(store_root) as store:
        store.write("runs", rows)
        store.fold()
    (first,) = [f for f in (store_root / "runs").rglob("*.parquet")]
    # A later file holding the same key with another value (e.g. copied in by hand).
    later = first.with_name(first.name.replace("_20", "_29", 1))
    table = pq.read_table(first)
    changed = table.set_column(
        table.schema.get_field_index("hostname"), "hostname", pa.array(["changed"])
    )
    pq.write_table(changed.replace_schema_metadata(table.schema.metadata), later)
    with open_store(store_root) as store:
        assert store.sql("SELECT count(*) FROM runs").scalar() == 2
        report = store.compact(table="runs")
        assert report.tables["runs"][0].duplicates_removed == 1
        key = redaction_oracle.store_key(store_root)  # hostname is stored hashed
        want = redaction_oracle.expected("hash", rows[0]["hostname"], key)
        assert store.sql("SELECT hostname FROM runs").rows() == [(want,)]


def test_older_than_leaves_recent_partitions_alone(store_root: Path) -> None:
    fill(store_root)
    days = sorted(
        {d.relative_to(store_root / "audit") for d, _ in compact.partitions(store_root / "audit")}
    )
    assert len(days) >= 3
    # A synthetic clock: "now" is two days after the start of the third day.
    third = layout.partition_end(layout.parse_partition(days[2]))
    assert third is not None
    now = third + dt.timedelta(days=1)
    before = {d: len(compact.data_files(store_root / "audit" / d)) for d in days}
    with open_store(store_root, retire_after=0) as store:
        report = store.compact(table="audit", older_than="2d", now=now)
    done = {r.partition for r in report.tables["audit"]}
    for d in days:
        end = layout.partition_end(layout.parse_partition(d))
        assert end is not None
        old_enough = end <= now - dt.timedelta(days=2)
        after = len(compact.data_files(store_root / "audit" / d))
        if old_enough and before[d] > 1:
            assert str(d) in done and after == 1
        else:
            assert str(d) not in done and after == before[d]


def test_dry_run_changes_nothing_and_says_what_it_would_do(store_root: Path) -> None:
    fill(store_root)
    listing = sorted(str(p) for p in store_root.rglob("*"))
    with open_store(store_root) as store:
        report = store.compact(dry_run=True)
    assert sorted(str(p) for p in store_root.rglob("*")) == listing
    expected = sum(
        1 for t in TABLES for _, files in compact.partitions(store_root / t) if len(files) > 1
    )
    assert report.partitions == expected
    for table, results in report.tables.items():
        for r in results:
            files = compact.data_files(store_root / table / r.partition)
            assert r.files_before == len(files) > 1
            assert r.rows == sum(pq.read_metadata(f).num_rows for f in files)


@pytest.mark.parametrize("bad", ["7", "7y", "-1d", "soon"])
def test_bad_ages_are_refused(store_root: Path, bad: str) -> None:
    with open_store(store_root) as store, pytest.raises(telelake.StoreError, match="age"):
        store.compact(older_than=bad)


# -- crashes --------------------------------------------------------------------------------

CRASH = textwrap.dedent(
    """
    import os, pathlib, signal, sys
    import telelake
    from telelake import durable
    from telelake.lake import compact, fold

    point = sys.argv[3]
    def die(*a, **k):
        print("reached", point, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "intent-written":
        fold.publish_targets = die
    elif point == "target-published":
        real = compact.compact_partition
        def wrapped(*a, **k):
            return real(*a, **k, before_commit=die)
        compact.compact_partition = wrapped
    elif point == "committed":
        fold.roll_forward = die
    elif point == "first-source-retired":
        real_rename = os.rename
        def rename(src, dst):
            real_rename(src, dst)
            if str(dst).endswith(fold.RETIRED_SUFFIX):
                die()
        os.rename = rename
    elif point == "rolled-forward":
        fold.retire = die
    store = telelake.open(
        sys.argv[1], schema="process_triage", host_id=sys.argv[2], retire_after=0
    )
    store.compact(table="audit")
    print("not reached", flush=True)
    """
)


@pytest.mark.parametrize(
    ("point", "committed"),
    [
        ("intent-written", False),
        ("target-published", False),
        ("committed", True),
        ("first-source-retired", True),
        ("rolled-forward", True),
    ],
)
def test_kill_9_during_compaction_loses_and_doubles_nothing(
    store_root: Path, point: str, committed: bool
) -> None:
    fill(store_root)
    expected = parquet_rows(store_root, "audit")
    sources = sorted(compact.partitions(store_root / "audit"))[0][1]
    wal_dir = store_root / "_wal" / "audit"
    with open_store(store_root) as live:  # a reader open before the crash
        before = everything(live)
        out = subprocess.run(
            [sys.executable, "-c", CRASH, str(store_root), HOST, point],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "reached" in out.stdout, out.stderr[-2000:]
        assert len(list(wal_dir.glob("compact-*.fold"))) == 1
        # Without any recovery, the open reader sees every row once.
        assert everything(live)["audit"].equals(before["audit"])
    with open_store(store_root) as store:  # recovery on open, within the grace period
        assert everything(store)["audit"].equals(before["audit"])
    left = list(wal_dir.glob("compact-*.fold"))
    if not committed:  # rolled back: the sources are the data, no target, no intent
        assert left == [] and all(s.exists() for s in sources)
        assert parquet_rows(store_root, "audit") == expected
    else:  # rolled forward: the sources wait for their grace period with the intent
        assert len(left) == 1
    with open_store(store_root, retire_after=0) as store:  # the grace period is over
        assert everything(store)["audit"].equals(before["audit"])
    assert list(wal_dir.glob("compact-*.fold")) == []
    if committed:
        assert not any(s.exists() for s in sources)
    assert parquet_rows(store_root, "audit") == expected
    with open_store(store_root, retire_after=0) as store:  # compaction still works
        store.compact(table="audit")
        assert everything(store)["audit"].equals(before["audit"])
    assert parquet_rows(store_root, "audit") == expected


# -- races ------------------------------------------------------------------------------------


def test_compaction_racing_a_writer_and_a_reader(store_root: Path) -> None:
    """A writer adds rows, a compactor loops, a reader never sees a row twice or fewer rows."""
    rows = generate(11, n_sessions=16, days=3)["audit"]
    half = len(rows) // 2
    with open_store(store_root, fold_bytes=1) as store:
        for i in range(0, half, 5):
            store.write("audit", rows[i : min(i + 5, half)])
    stop = threading.Event()
    problems: list[str] = []
    counts: list[int] = []

    def writer() -> None:
        with open_store(store_root, fold_bytes=1) as w:
            for i in range(half, len(rows), 5):
                w.write("audit", rows[i : i + 5])

    def compactor() -> None:
        with open_store(store_root) as c:
            while not stop.is_set():
                c.compact(table="audit")

    def reader() -> None:
        with open_store(store_root) as r:
            last = 0
            while not stop.is_set() or len(counts) < 5:  # at least a few looks, however fast
                got = r.sql("SELECT session_id, audit_ts, message FROM audit").rows()
                if len(got) != len(set(got)):
                    problems.append(f"a row twice: {len(got)} rows, {len(set(got))} distinct")
                if len(got) < last:
                    problems.append(f"rows went from {last} down to {len(got)}")
                last = len(got)
                counts.append(len(got))

    threads = [threading.Thread(target=f) for f in (compactor, reader)]
    for t in threads:
        t.start()
    w = threading.Thread(target=writer)
    w.start()
    w.join()
    stop.set()
    for t in threads:
        t.join()
    assert problems == []
    assert len(counts) > 3
    with open_store(store_root, retire_after=0) as store:
        store.compact(table="audit")
        got = Counter(store.sql("SELECT session_id, audit_ts, message FROM audit").rows())
    assert parquet_rows(store_root, "audit").total() == len(rows)  # sources retired
    want = Counter((r["session_id"], r["audit_ts"], r["message"]) for r in rows)
    assert got == want


def test_auto_compact_merges_finished_partitions_with_many_small_files(store_root: Path) -> None:
    """auto_compact is done by maintenance (on by default for process_triage, spec §5.2)."""
    rows = generate(4, n_sessions=20, days=2)["audit"]  # ~25 rows on each of two days
    with open_store(store_root, fold_bytes=1) as store:
        for r in rows:  # one file per row
            store.write("audit", [r])
    crowded = {
        d: len(fs)
        for d, fs in compact.partitions(store_root / "audit")
        if len(fs) >= compact.AUTO_COMPACT_MIN_FILES
    }
    assert crowded  # the test needs at least one partition over the threshold
    forever = {f"{t}_days": None for t in TABLES}  # retention must not get in the way
    config = store_root / "config.json"
    config.write_text(json.dumps({"telemetry_retention": {**forever, "auto_compact": False}}))
    with open_store(store_root) as store:
        assert store.maintain().merged == {}
    assert {d: len(compact.data_files(d)) for d in crowded} == crowded  # off: untouched
    config.write_text(json.dumps({"telemetry_retention": forever}))  # the schema's default
    with open_store(store_root, retire_after=0) as store:
        assert store.retention().auto_compact
        before = store.sql("SELECT * FROM audit ORDER BY ALL").to_arrow()
        report = store.maintain()
    assert report.merged["audit"].partitions == len(crowded)
    assert report.merged["audit"].files_before == sum(crowded.values())
    for d, fs in compact.partitions(store_root / "audit"):
        expected = 1 if d in crowded else len(fs)
        assert len(fs) == expected, d
    with open_store(store_root) as store:
        assert store.sql("SELECT * FROM audit ORDER BY ALL").to_arrow().equals(before)


# -- a stopped compaction (issue 19.6) -------------------------------------------------

HOLD_FOLD_LOCK = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from telelake.lake import fold
    with fold.table_lock(Path(sys.argv[1])):  # what a compaction holds, partition by partition
        print("locked", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)  # Ctrl-Z
    """
)


def test_a_stopped_compaction_blocks_no_reader_and_writers_name_it(tmp_path: Path) -> None:
    """A process stopped while it holds a table's fold lock: opening the store, queries,
    `telelake sql` and `check` go on; a writer that needs the lock gives up after its
    bound with an error naming the holder, and loses nothing."""
    import os

    from torture import HOST as T_HOST
    from torture import event_rows, write_schema

    schema = write_schema(tmp_path)
    root = tmp_path / "store"
    with telelake.open(root, schema=schema, host_id=T_HOST) as store:
        store.write("events", event_rows([("a", i) for i in range(5)], 0))
    wal_dir = root / "_wal" / "events"
    # What a crashed direct write leaves: the opener has something to recover.
    (wal_dir / "direct-aaaaaaaa.fold").write_text('{"segment": "", "targets": []}')
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_FOLD_LOCK, str(wal_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        _, status = os.waitpid(holder.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status)
        done: list[int] = []

        def reader() -> None:  # in a thread: the old code waited here forever
            with telelake.open(root, schema=schema, host_id=T_HOST) as s:
                done.append(s.sql("SELECT count(*) FROM events").scalar())

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        thread.join(120)
        assert done == [5]
        cli = subprocess.run(
            [str(Path(sys.executable).parent / "telelake"), "sql", "--root", str(root),
             "SELECT count(*) AS n FROM events", "--format", "csv"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert cli.returncode == 0, cli.stderr
        assert cli.stdout.split() == ["n", "5"]
        with telelake.open(root, schema=schema, host_id=T_HOST, lock_timeout=0.2) as store:
            assert store.check().findings == []  # a reader: it does not wait either
            store.write("events", event_rows([("b", i) for i in range(3)], 0))
            with pytest.raises(telelake.LockTimeoutError) as caught:
                store.fold()
            assert caught.value.pid == holder.pid
            assert f"process {holder.pid} (stopped)" in str(caught.value)
            assert f"kill -CONT {holder.pid}" in str(caught.value)
            assert store.sql("SELECT count(*) FROM events").scalar() == 8  # nothing lost
            holder.kill()
            holder.wait()
            store.fold()  # the holder is gone: its lock with it
            assert not (wal_dir / "direct-aaaaaaaa.fold").exists()
        with telelake.open(root, schema=schema, host_id=T_HOST) as store:
            assert store.sql("SELECT count(*) FROM events").scalar() == 8
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
