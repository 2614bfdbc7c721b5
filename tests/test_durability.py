"""The durability promise, tested from outside the writing process.

    A row is acknowledged when write() returns; an acknowledged row survives kill -9 of
    any process at any moment, exactly once, and is visible to queries from any process.
    Keyed tables never show a key twice; the first write of a key wins.

Every expectation comes from the writers' own side logs (attempted before write(),
acknowledged after it returned) or from keys the test chose, and rows are counted both
through a Store and, after everything is folded, by reading the Parquet files with
pyarrow alone. The un-keyed table `log` gets no deduplication, so a row folded twice
shows up there as a duplicate.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import telelake
import torture
from telelake import durable
from telelake.lake import fold, wal
from torture import HOST, TABLES, Model, judge, physical_rows, verify_store, write_schema

TORTURE = Path(torture.__file__).resolve()
BASE = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)


@pytest.fixture
def schema(tmp_path: Path) -> Path:
    return write_schema(tmp_path)


@pytest.fixture
def root(tmp_path: Path, schema: Path) -> Path:
    path = tmp_path / "store"
    telelake.open(path, schema=schema, host_id=HOST).close()
    return path


def open_store(root: Path, schema: Path, **kw: Any) -> telelake.Store:
    return telelake.open(root, schema=schema, host_id=HOST, **kw)


def rows3(keys: list[tuple[str, int]], version: int = 0) -> list[dict[str, Any]]:
    """`events` rows whose timestamps cover three days (so a fold publishes 3 files)."""
    return [
        {"ts": BASE + dt.timedelta(hours=s % 72), "writer": w, "seq": s, "payload": f"v{version}"}
        for w, s in keys
    ]


def log3(keys: list[tuple[str, int]]) -> list[dict[str, Any]]:
    """`log` rows (no payload column) over the same three days."""
    return [{"ts": BASE + dt.timedelta(hours=s % 72), "writer": w, "seq": s} for w, s in keys]


def keyed(store: telelake.Store, table: str = "events") -> Counter[tuple[str, int]]:
    return Counter((w, s) for w, s in store.sql(f"SELECT writer, seq FROM {table}").rows())


def payloads(store: telelake.Store) -> dict[tuple[str, int], str]:
    rows = store.sql("SELECT writer, seq, payload FROM events").rows()
    out = {(w, s): p for w, s, p in rows}
    assert len(out) == len(rows), "a key is shown twice"
    return out


def wal_files(root: Path, table: str, pattern: str) -> list[Path]:
    return sorted((root / "_wal" / table).glob(pattern))


def once(counter: Counter[tuple[str, int]], keys: list[tuple[str, int]]) -> None:
    """Each of `keys` exactly once, and no key at all more than once."""
    assert [k for k in keys if counter[k] != 1] == []
    assert [k for k, n in counter.items() if n > 1] == []


# -- kill -9 at random moments -----------------------------------------------------------


@pytest.mark.slow
def test_kill_9_torture_slice(tmp_path: Path) -> None:
    """25 kill -9 rounds against one store; `make torture` runs 200."""
    seed = int(os.environ.get("TORTURE_SEED", "20260501"))
    start = time.monotonic()
    report = torture.run(25, seed, tmp_path)
    print(report.summary(), f"\n{time.monotonic() - start:.1f}s, seed {seed}")
    assert report.problems == []
    assert report.kills == 25
    assert report.acked["events"] > 50 and report.acked["log"] > 10  # not vacuous
    assert report.observer_queries > 0


def test_damage_torture_slice(tmp_path: Path) -> None:
    """3 rounds of crashed writers whose segments are then damaged as a bad disk would
    (issue 19.1); `make torture` runs 30. Each round is one child process."""
    seed = int(os.environ.get("TORTURE_SEED", "20260501"))
    report = torture.damage_run(3, seed, tmp_path)
    assert report.problems == []
    assert report.kills == 3 and sum(report.leftovers.values()) == 9  # segments damaged
    assert report.acked["events"] > 20  # not vacuous


# -- concurrency -------------------------------------------------------------------------

WRITERS = 8  # of which CRASHERS are killed with SIGKILL now and then and replaced
CRASHERS = 2
RUN_SECONDS = 3.0


def start_role(*args: Any) -> subprocess.Popen[str]:
    cmd = [sys.executable, str(TORTURE), *(str(a) for a in args)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_ready(p: subprocess.Popen[str]) -> None:
    assert p.stdout is not None
    line = p.stdout.readline().strip()
    if line != "ready":
        p.kill()
        raise AssertionError(f"role did not start: {line!r} {p.communicate()[1][-3000:]}")


def last_json(out: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


@pytest.mark.slow
def test_writers_folder_and_querier_at_once(tmp_path: Path, schema: Path, root: Path) -> None:
    """8 writers (2 of them kill -9'd and replaced), a folder and a querier, ~4 s."""
    import random

    rng = random.Random(7)
    go, stop = tmp_path / "go", tmp_path / "stop"
    logs: list[Path] = []

    def writer(name: str) -> subprocess.Popen[str]:
        logs.append(tmp_path / f"{name}.jsonl")
        return start_role("writer", root, schema, logs[-1], name, len(logs), go, stop)

    steady = [writer(f"w{i}") for i in range(WRITERS - CRASHERS)]
    crashers = [writer(f"c{i}g0") for i in range(CRASHERS)]
    others = [start_role("folder", root, schema, go, stop)]
    others.append(start_role("querier", root, schema, go, stop))
    killed: list[subprocess.Popen[str]] = []
    generation = 0
    try:
        t0 = time.monotonic()
        for p in steady + crashers + others:
            wait_ready(p)
        print(f"startup {time.monotonic() - t0:.1f}s")
        go.touch()
        end = time.monotonic() + RUN_SECONDS
        kill_at = [time.monotonic() + rng.uniform(0.3, 1.2) for _ in crashers]
        # Run for RUN_SECONDS, and on until every crasher slot has been killed at least once
        # (a slow machine spends most of a short run starting processes).
        while time.monotonic() < end or len(killed) < CRASHERS:
            for i in range(CRASHERS):
                if time.monotonic() >= kill_at[i]:
                    crashers[i].send_signal(signal.SIGKILL)
                    crashers[i].communicate()
                    killed.append(crashers[i])
                    generation += 1
                    crashers[i] = writer(f"c{i}g{generation}")
                    wait_ready(crashers[i])
                    kill_at[i] = time.monotonic() + rng.uniform(0.3, 1.2)
            time.sleep(0.02)
        stop.touch()
        t0 = time.monotonic()
        outs = [p.communicate(timeout=120) for p in steady + crashers + others]
        print(f"shutdown {time.monotonic() - t0:.1f}s")
    finally:
        for p in steady + crashers + others:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(steady + crashers + others, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert all(p.returncode == -signal.SIGKILL for p in killed)
    stats = [last_json(out) for out, _ in outs[:WRITERS]]
    folder, querier = last_json(outs[WRITERS][0]), last_json(outs[WRITERS + 1][0])
    errors = sum(s["errors"] for s in stats)
    print("writers", stats, "killed", len(killed), "folder", folder, "querier", querier)
    if errors:  # see test_fresh_segment_claimed_by_a_concurrent_fold_does_not_fail_the_write
        print("write errors:", [e for _, e in outs[:WRITERS] if e])

    assert querier["problems"] == []  # never raised, never a row twice, never fewer rows
    assert querier["queries"] >= 4
    assert len(killed) >= 2

    model = Model()
    for log in logs:
        model.add_log(torture.read_side_log(log))
    assert len(model.acked("events")) > 100 and len(model.acked("log")) > 100
    with open_store(root, schema) as store:
        verdict = verify_store(store, root, model, "after the run")
        assert verdict.problems == []
        store.fold()
    for table in TABLES:
        found = physical_rows(root, table)
        v = judge(table, found, model, f"{table} Parquet files")
        assert v.problems == []
        keys = {(r[0], r[1]) for r in found}
        assert keys >= model.acked(table)
        assert wal_files(root, table, "*.wal") == [] and wal_files(root, table, "*.fold") == []
        # Rows beyond the acknowledged ones can only be the last attempt of a killed writer
        # (or a write that raised): at most one batch per such process.
        unacked = keys - model.acked(table)
        assert len(unacked) <= 20 * (len(killed) + errors)


# -- visibility from another process -----------------------------------------------------


@pytest.mark.parametrize("ending", ["close", "crash"])
def test_rows_are_visible_to_another_process_before_the_writer_closes(
    schema: Path, root: Path, ending: str
) -> None:
    n = 25
    keys = [("hold", i) for i in range(n)]
    with open_store(root, schema) as early:  # opened before the rows exist
        assert keyed(early) == Counter()
        proc = subprocess.Popen(
            [sys.executable, str(TORTURE), "hold", str(root), str(schema), str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None and proc.stdin is not None
            assert proc.stdout.readline().strip() == "written"
            # The writer is alive, holds its segment and has folded nothing.
            assert wal_files(root, "events", "*.wal")
            for table in TABLES:
                once(keyed(early, table), keys)
            with open_store(root, schema) as late:  # a store opened now sees them too
                for table in TABLES:
                    once(keyed(late, table), keys)
            proc.stdin.write(ending + "\n")
            proc.stdin.flush()
            proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0
        for table in TABLES:
            once(keyed(early, table), keys)  # folded or orphaned: still exactly once
    with open_store(root, schema) as store:
        for table in TABLES:
            once(keyed(store, table), keys)
    for table in TABLES:
        assert Counter((r[0], r[1]) for r in physical_rows(root, table)) == Counter(keys)


# -- kill -9 at named points --------------------------------------------------------------

CRASH_AT = textwrap.dedent(
    """
    import datetime as dt, os, pathlib, signal, sys
    import telelake
    from telelake import durable
    from telelake.lake import fold, parquet, tier, wal

    root, schema, point, first = sys.argv[1:5]
    base = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)

    def rows(table, keys):
        out = [{"ts": base + dt.timedelta(hours=s % 72), "writer": w, "seq": s} for w, s in keys]
        if table == "events":
            for r in out:
                r["payload"] = "v0"
        return out

    def die(what):
        print("reached", what, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    def say(*words):
        print(*words, flush=True)

    store = telelake.open(root, schema=schema, host_id="feedfacecafebeef", fold_bytes=1 << 30)
    tables = [first] + [t for t in ("log", "events") if t != first]
    keys_a = [("a", i) for i in range(60)]  # 60 hours: three day partitions
    keys_b = [("b", i) for i in range(60)]
    for t in tables:
        say("attempt", t, "a")
        store.write(t, rows(t, keys_a))
        say("acked", t, "a")

    calls = {"n": 0}
    real_write_table = parquet.write_table
    real_unlink = pathlib.Path.unlink
    real_publish = durable.publish

    def nth_target(n):
        def patched(path, data, spec):
            calls["n"] += 1
            if calls["n"] == n:
                die(f"target {n} about to be written")
            return real_write_table(path, data, spec)
        parquet.write_table = patched

    if point == "intent-written":
        def publish(*a, **k):
            die("intent written, nothing published")
        fold.publish_targets = publish
    elif point == "mid-temp-write":
        def half(path, data, spec):
            real_write_table(path, data, spec)
            size = os.path.getsize(path)
            os.truncate(path, size // 2)
            die("temp file half written")
        parquet.write_table = half
    elif point in ("last-target", "direct-last-target"):
        nth_target(3)
    elif point == "linked-not-unlinked":
        def publish(tmp, final, *, replace):
            if final.suffix == ".parquet":
                os.link(tmp, final)
                die("target linked, temp not unlinked")
            return real_publish(tmp, final, replace=replace)
        durable.publish = publish
    elif point in ("segment-unlinked", "intent-unlinked"):
        suffix = ".wal" if point == "segment-unlinked" else ".fold"
        def unlink(self, missing_ok=False):
            real_unlink(self, missing_ok=missing_ok)
            if self.suffix == suffix:
                die(f"{suffix} unlinked")
        pathlib.Path.unlink = unlink
    elif point == "mid-append":
        real_pwrite_all = wal.SegmentWriter._pwrite_all
        def pwrite_all(self, data, offset):
            real_pwrite_all(self, data[: len(data) // 2], offset)
            die("record half appended")
        wal.SegmentWriter._pwrite_all = pwrite_all
    elif point == "before-fdatasync":
        def fdatasync(fd):
            die("record appended, not yet synced")
        os.fdatasync = fdatasync
    elif point == "new-segment-no-header":
        store.fold()
        def write_all(self, data):
            die("segment created, header not written")
        wal.SegmentWriter._write_all = write_all
    else:
        raise SystemExit(f"unknown point {point}")

    say("attempt", first, "b")
    if point.startswith("direct"):
        with store.writer(first, flush_interval=None) as bw:
            bw.write_many(rows(first, keys_b))
    elif point in ("mid-append", "before-fdatasync", "new-segment-no-header"):
        store.write(first, rows(first, keys_b))
    else:
        store.fold()
    say("not reached")
    os._exit(3)
    """
)

RECOVER_AND_DIE = textwrap.dedent(
    """
    import os, pathlib, signal, sys
    import telelake
    real_unlink = pathlib.Path.unlink
    def unlink(self, missing_ok=False):
        real_unlink(self, missing_ok=missing_ok)
        if self.suffix == ".parquet":
            print("reached", "recovery removed one target", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    pathlib.Path.unlink = unlink
    telelake.open(sys.argv[1], schema=sys.argv[2], host_id="feedfacecafebeef")
    print("not reached", flush=True)
    """
)

A_KEYS = [("a", i) for i in range(60)]
B_KEYS = [("b", i) for i in range(60)]

# point -> what the crash must have left on disk (checked before any recovery).
CRASH_STATE = {
    "intent-written": "intent",
    "mid-temp-write": "temp",
    "last-target": "intent",
    "linked-not-unlinked": "temp",
    "segment-unlinked": "intent-without-segment",
    "intent-unlinked": "nothing",
    "direct-last-target": "intent",
    "mid-append": "torn",
    "before-fdatasync": "segment",
    "new-segment-no-header": "hidden-segment",
}


def run_crash(code: str, *args: Any) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", code, *(str(a) for a in args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == -signal.SIGKILL, out.stdout + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert any(line.startswith("reached") for line in lines), out.stdout
    return lines


def side_model(lines: list[str]) -> tuple[dict[str, set[tuple[str, int]]], set[tuple[str, str]]]:
    """From the child's stdout: acked keys per table, and (table, batch) attempted."""
    batches = {"a": A_KEYS, "b": B_KEYS}
    acked: dict[str, set[tuple[str, int]]] = {t: set() for t in TABLES}
    attempted = set()
    for line in lines:
        words = line.split()
        if words[0] == "acked":
            acked[words[1]] |= set(batches[words[2]])
        elif words[0] == "attempt":
            attempted.add((words[1], words[2]))
    return acked, attempted


def check_rows(
    store: telelake.Store,
    acked: dict[str, set[tuple[str, int]]],
    attempted: set[tuple[str, str]],
    where: str,
) -> dict[str, list[tuple[Any, ...]]]:
    batches = {"a": A_KEYS, "b": B_KEYS}
    got = {}
    for table in TABLES:
        rows = store.sql(f"SELECT * FROM {table} ORDER BY writer, seq").rows()
        counts = keyed(store, table)
        allowed = {k for t, b in attempted if t == table for k in batches[b]}
        assert [k for k, n in counts.items() if n > 1] == [], f"{where}: {table} doubled"
        assert sorted(acked[table] - counts.keys()) == [], f"{where}: {table} lost rows"
        assert sorted(counts.keys() - allowed) == [], f"{where}: {table} phantom rows"
        for f in torture.view_files(store, table):
            name = os.path.basename(f)
            assert not name.startswith(".") and ".tmp" not in name, f
        got[table] = rows
    return got


# Every point on the un-keyed table (a row applied twice shows there); a few on the keyed one.
NAMED_POINTS = [(p, "log") for p in CRASH_STATE] + [
    (p, "events") for p in ("last-target", "segment-unlinked", "direct-last-target")
]


@pytest.mark.parametrize(("point", "first"), NAMED_POINTS)
def test_kill_9_at_a_named_point(
    tmp_path: Path, schema: Path, root: Path, point: str, first: str
) -> None:
    with open_store(root, schema) as live:  # a reader that was open before the crash
        lines = run_crash(CRASH_AT, root, schema, point, first)
        acked, attempted = side_model(lines)
        assert acked[first] == set(A_KEYS)

        state = CRASH_STATE[point]
        temps = list(root.rglob("*.tmp"))
        intents = wal_files(root, first, "*.fold")
        segments = wal_files(root, first, "*.wal")
        if state == "intent":
            assert intents and segments
        elif state == "intent-without-segment":
            assert intents and not segments
        elif state == "temp":
            assert temps and intents
        elif state == "torn":
            assert wal.read_segment(segments[0]).problem is not None
        elif state == "hidden-segment":  # never named: no reader or folder can see it
            assert not segments
            assert wal_files(root, first, f".*{wal.SUFFIX}.*.tmp")
        elif state == "nothing":
            assert not intents and not segments

        # Before any recovery, a reader that was already open sees each row once.
        before = check_rows(live, acked, attempted, "live reader, before recovery")

    with open_store(root, schema) as store:  # recovery runs on open
        after = check_rows(store, acked, attempted, "after recovery")
        assert wal_files(root, first, "*.fold") == []
        assert wal_files(root, first, "*.wal") == []  # orphans folded on open
    # What a reader saw during the failure state does not change by recovering.
    assert after == before
    with open_store(root, schema) as store:  # recovering twice changes nothing
        assert check_rows(store, acked, attempted, "second recovery") == after
        # A client retries what it could not be sure of: still once per key.
        store.write("events", rows3(A_KEYS + B_KEYS))
        once(keyed(store), A_KEYS + B_KEYS)
    for table in TABLES:
        found = Counter((r[0], r[1]) for r in physical_rows(root, table))
        assert [k for k, n in found.items() if n > 1] == []
        assert acked[table] <= found.keys()


def test_kill_9_in_the_middle_of_recovery(tmp_path: Path, schema: Path, root: Path) -> None:
    with open_store(root, schema) as live:  # open before both crashes: it recovers nothing
        lines = run_crash(CRASH_AT, root, schema, "last-target", "log")
        acked, attempted = side_model(lines)
        assert len(list((root / "log").rglob("*.parquet"))) == 2  # two of three targets out
        lines2 = run_crash(RECOVER_AND_DIE, root, schema)
        assert len(list((root / "log").rglob("*.parquet"))) == 1
        assert "reached recovery removed one target" in lines2
        assert wal_files(root, "log", "*.fold")  # the crashed recovery left the intent
        before = check_rows(live, acked, attempted, "during the crashed recovery")
    with open_store(root, schema) as store:
        assert check_rows(store, acked, attempted, "after recovery") == before
    assert Counter((r[0], r[1]) for r in physical_rows(root, "log")) == Counter(A_KEYS)


# -- folds failing in a live process --------------------------------------------------


def test_publish_failing_after_the_first_target(
    schema: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = fold.publish_targets

    def first_then_fail(targets: Any, table: Any, meta: Any) -> None:
        real(targets[:1], table, meta)
        raise OSError(errno.EIO, "injected: disk went away after one target")

    with open_store(root, schema) as store, open_store(root, schema) as other:
        eager = open_store(root, schema, fold_bytes=1)  # folds after every write
        store.write("events", rows3(A_KEYS))
        store.write("log", log3(A_KEYS))
        monkeypatch.setattr(fold, "publish_targets", first_then_fail)
        with pytest.raises(OSError, match="injected"):
            store.fold()
        for s in (store, other):
            for table in TABLES:
                once(keyed(s, table), A_KEYS)
        assert wal_files(root, "events", "*.fold") == []  # the failed fold undid itself
        # A store whose segments are due folds after each write: the fold fails, the write
        # is still acknowledged (the fold is postponed, with a warning).
        with pytest.warns(UserWarning, match="fold postponed"):
            eager.write("events", rows3(B_KEYS))
        with pytest.warns(UserWarning, match="fold postponed"):
            eager.write("log", log3(B_KEYS))
        for s in (store, other, eager):
            once(keyed(s), A_KEYS + B_KEYS)
            once(keyed(s, "log"), A_KEYS + B_KEYS)
        monkeypatch.setattr(fold, "publish_targets", real)
        eager.close()
        store.fold()
        for s in (store, other):
            once(keyed(s), A_KEYS + B_KEYS)
            once(keyed(s, "log"), A_KEYS + B_KEYS)
    with open_store(root, schema) as store:
        once(keyed(store), A_KEYS + B_KEYS)
        once(keyed(store, "log"), A_KEYS + B_KEYS)
    found = Counter((r[0], r[1]) for r in physical_rows(root, "log"))
    assert found == Counter(A_KEYS + B_KEYS)
    for table in TABLES:
        assert wal_files(root, table, "*.wal") == wal_files(root, table, "*.fold") == []


def test_store_opens_and_reads_while_orphan_folds_fail(
    schema: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(TORTURE), "hold", str(root), str(schema), "20"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline().strip() == "written"
    proc.communicate("crash\n", timeout=60)  # leaves its segments behind, unfolded

    def full(*args: Any) -> None:
        raise OSError(errno.ENOSPC, "injected: no space left on device")

    monkeypatch.setattr(fold, "publish_targets", full)
    with open_store(root, schema) as store:
        once(keyed(store), [("hold", i) for i in range(20)])


def test_segment_unlink_failing_at_the_commit_point(
    schema: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_unlink = Path.unlink

    def refuse_segments(self: Path, missing_ok: bool = False) -> None:
        if self.suffix == wal.SUFFIX:
            raise PermissionError(errno.EACCES, "injected: cannot unlink", str(self))
        real_unlink(self, missing_ok=missing_ok)

    with open_store(root, schema) as store, open_store(root, schema) as other:
        store.write("log", log3(A_KEYS))
        monkeypatch.setattr(Path, "unlink", refuse_segments)
        with pytest.raises(PermissionError):
            store.fold()
        # Targets published, intent and segment still there: each row still once.
        assert wal_files(root, "log", "*.fold") and wal_files(root, "log", "*.wal")
        assert len(list((root / "log").rglob("*.parquet"))) == 3
        for s in (store, other):
            once(keyed(s, "log"), A_KEYS)
        monkeypatch.setattr(Path, "unlink", real_unlink)
        other.fold()  # folds the orphan: undoes the half-done fold first
        for s in (store, other):
            once(keyed(s, "log"), A_KEYS)
    assert Counter((r[0], r[1]) for r in physical_rows(root, "log")) == Counter(A_KEYS)
    assert wal_files(root, "log", "*") == [root / "_wal" / "log" / fold.LOCK_NAME]


# -- a query racing a fold --------------------------------------------------------------


@pytest.mark.parametrize("stage", ["published", "finished"])
def test_query_racing_a_fold_sees_each_row_once(
    schema: Path, root: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    """A reader lists the WAL directory; then, before it lists the Parquet files, another
    store's fold of a live segment either publishes its files and stops just before its
    commit point (resuming when the reader lists the WAL directory again), or runs to the
    end. The un-keyed table has no deduplication to hide a row read twice."""
    import threading

    from telelake.lake import tier

    wal_dir = root / "_wal" / "log"
    real_names = tier._wal_names
    real_unlink = Path.unlink
    at_commit, resume = threading.Event(), threading.Event()
    calls: list[str] = []

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self.suffix == wal.SUFFIX and threading.current_thread().name == "folder":
            at_commit.set()
            assert resume.wait(30)
        real_unlink(self, missing_ok=missing_ok)

    with open_store(root, schema) as writer, open_store(root, schema) as reader:
        writer.write("log", log3(A_KEYS))
        folder = threading.Thread(target=writer.fold, name="folder")

        def names(path: Path) -> set[str]:
            if path != wal_dir:
                return real_names(path)
            calls.append("list")
            got = real_names(path)
            if len(calls) == 1:  # the reader's first listing: now the fold runs
                folder.start()
                if stage == "published":
                    assert at_commit.wait(30)
                else:
                    resume.set()
                    folder.join(30)
            elif len(calls) == 2:  # the reader's second listing: let the fold commit
                resume.set()
                folder.join(30)
                got = real_names(path)
            return got

        monkeypatch.setattr(Path, "unlink", unlink)
        monkeypatch.setattr(tier, "_wal_names", names)
        seen = keyed(reader, "log")
        monkeypatch.undo()
        assert not folder.is_alive()
        assert wal_files(root, "log", "*.wal") == []  # the fold did commit
        once(seen, A_KEYS)
        assert sum(seen.values()) == len(A_KEYS)
        once(keyed(reader, "log"), A_KEYS)


# -- retries -----------------------------------------------------------------------------

RETRIER = textwrap.dedent(
    """
    import datetime as dt, sys
    import telelake
    root, schema, how, version = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    base = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    rows = [
        {"ts": base + dt.timedelta(hours=s % 72), "writer": "r", "seq": s, "payload": version}
        for s in range(40)
    ]
    with telelake.open(root, schema=schema, host_id="feedfacecafebeef") as store:
        for _ in range(5):
            if how == "write":
                store.write("events", rows)
            else:
                with store.writer("events", flush_interval=None) as w:
                    w.write_many(rows)
                    w.flush()
    """
)


def test_same_batch_five_times_from_two_processes_both_paths(schema: Path, root: Path) -> None:
    keys = [("r", s) for s in range(40)]
    procs = [
        subprocess.Popen([sys.executable, "-c", RETRIER, str(root), str(schema), how, "v0"])
        for how in ("write", "flush")
    ]
    with open_store(root, schema) as store:
        for _ in range(5):
            store.write("events", rows3(keys))
            with store.writer("events", flush_interval=None) as w:
                w.write_many(rows3(keys))
        assert [p.wait(timeout=120) for p in procs] == [0, 0]
        once(keyed(store), keys)
    with open_store(root, schema) as store:
        once(keyed(store), keys)
    assert Counter((r[0], r[1]) for r in physical_rows(root, "events")) == Counter(keys)


@pytest.mark.parametrize("fold_between", [False, True])
def test_different_value_retries_keep_the_first_write(
    schema: Path, root: Path, fold_between: bool
) -> None:
    keys = [("k", s) for s in range(30)]
    with open_store(root, schema) as store:
        for version in range(5):
            store.write("events", rows3(keys, version))
            assert set(payloads(store).values()) == {"v0"}
            if fold_between:
                store.fold()
    with open_store(root, schema) as store:
        assert set(payloads(store).values()) == {"v0"}
        assert len(payloads(store)) == len(keys)


def test_flush_first_then_write_retry_keeps_the_flushed_row(schema: Path, root: Path) -> None:
    keys = [("k", s) for s in range(30)]
    with open_store(root, schema) as store:
        with store.writer("events", flush_interval=None) as w:
            w.write_many(rows3(keys, 0))
        store.write("events", rows3(keys, 1))
        assert set(payloads(store).values()) == {"v0"}
    with open_store(root, schema) as store:
        assert set(payloads(store).values()) == {"v0"}


def test_retry_through_writer_flush_keeps_the_first_wal_write(schema: Path, root: Path) -> None:
    keys = [("k", s) for s in range(30)]
    with open_store(root, schema) as store:
        store.write("events", rows3(keys, 0))  # acknowledged, in the WAL
        assert set(payloads(store).values()) == {"v0"}
        with store.writer("events", flush_interval=None) as w:
            w.write_many(rows3(keys, 1))  # a retry with other values
        seen = set(payloads(store).values())
    with open_store(root, schema) as store:
        assert (seen, set(payloads(store).values())) == ({"v0"}, {"v0"})


def test_later_retry_from_another_process_does_not_replace_the_first(
    schema: Path, root: Path
) -> None:
    keys = [("r", s) for s in range(40)]
    with open_store(root, schema) as first:
        first.write("events", rows3(keys, 0))  # acknowledged; stays in first's WAL
        assert {p for p in payloads(first).values()} == {"v0"}
        subprocess.run(
            [sys.executable, "-c", RETRIER, str(root), str(schema), "write", "v1"],
            check=True,
            timeout=120,
        )  # a later retry with other values, acknowledged and folded at close
        seen = set(payloads(first).values())
    with open_store(root, schema) as store:
        assert (seen, set(payloads(store).values())) == ({"v0"}, {"v0"})


# -- a fresh segment mistaken for an orphan -------------------------------------------


class _FlockHook:
    """Stands in for the fcntl module inside telelake.durable (which makes and locks the
    temp file a segment starts as): runs `hook` once, just before the first flock, i.e.
    after SegmentWriter created its file but before it locked it. That moment exists in
    every real run; here another Store (exactly what a second process calling
    store.fold() does) acts in it deterministically."""

    def __init__(self, real: Any, hook: Any) -> None:
        self._real = real
        self._hook = hook
        self.LOCK_EX, self.LOCK_NB, self.LOCK_UN = real.LOCK_EX, real.LOCK_NB, real.LOCK_UN

    def flock(self, fd: int, op: int) -> None:
        hook, self._hook = self._hook, None
        if hook is not None:
            hook()
        self._real.flock(fd, op)


def test_fresh_segment_is_not_folded_away_by_a_concurrent_fold(
    schema: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [("f", s) for s in range(10)]
    with open_store(root, schema) as writer, open_store(root, schema) as folder:
        monkeypatch.setattr(durable, "fcntl", _FlockHook(durable.fcntl, folder.fold))
        writer.write("events", rows3(keys))  # acknowledged
        monkeypatch.undo()
        # The rows are acknowledged: both processes must see them, and they must be in a
        # segment that a crash would leave behind (none is listed: the file was unlinked).
        assert (keyed(writer), keyed(folder)) == (Counter(keys), Counter(keys))
        assert wal_files(root, "events", "*.wal")


def test_fresh_segment_claimed_by_a_concurrent_fold_does_not_fail_the_write(
    schema: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [("f", s) for s in range(10)]
    held: list[int] = []

    def claim_fresh_segment() -> None:  # a folder that has just locked it to read it
        for path in wal_files(root, "events", "*.wal"):
            fd = durable.claim(path)
            if fd is not None:
                held.append(fd)

    with open_store(root, schema) as writer:
        monkeypatch.setattr(durable, "fcntl", _FlockHook(durable.fcntl, claim_fresh_segment))
        try:
            writer.write("events", rows3(keys))
        finally:
            monkeypatch.undo()
            for fd in held:
                os.close(fd)
        once(keyed(writer), keys)
