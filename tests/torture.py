"""kill -9 torture for telelake's durability promise.

    A row is acknowledged when write() returns; an acknowledged row survives kill -9 of
    any process at any moment, exactly once, and is visible to queries from any process.
    Keyed tables never show a key twice; the first write of a key wins.

The parent runs rounds against ONE store root. Each round starts a child that opens the
store with a tiny `fold_bytes` (so it folds all the time), writes small batches, sometimes
retries the previous batch (same keys, same or new payload), and is killed with SIGKILL
after a random delay. The child logs every attempt BEFORE its write and every
acknowledgement AFTER write()/flush() returns, as JSON lines appended with one os.write
each (kill -9 keeps the page cache, so the log survives). The parent's expectations come
only from that log, never from telelake:

- every acknowledged key is present exactly once, in every table;
- no key is ever present twice (the un-keyed table `log` is never retried, so a duplicate
  there can only be a fold that was applied twice);
- every key present was attempted;
- the payload of a key comes from an attempt no later than its first acknowledged one
  (first write wins; an unacknowledged earlier attempt may or may not have landed);
- the views name only published files (no dot or .tmp names), every `*.parquet` under
  the table directories is readable by pyarrow, and while the child runs a reader in the
  parent never sees a row twice nor sees the row count go down.

Usage:
    python tests/torture.py [--kills 200] [--damage 30] [--seed 1] [--root DIR]
    python tests/torture.py child ROOT SCHEMA LOG WRITER SEED [RETRY_JSON]
    python tests/torture.py {writer,folder,querier,hold} ...   (roles for test_durability)

Batched-writer flushes (direct Parquet commits) are used for new batches and for retries,
with the same or changed values: a flush must never replace a row acknowledged earlier
in a WAL segment (see test_durability.py,
test_retry_through_writer_flush_keeps_the_first_wal_write).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

import telelake

HERE = Path(__file__).resolve()
HOST = "feedfacecafebeef"
BASE = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
TABLES = ("events", "log")
SCHEMA = """\
name = "durability"
version = "1.0.0"

[tables.events]
tier = "lake"
time = "ts"
key = ["writer", "seq"]
partition = { time = ["year", "month", "day"] }
columns = [
  { name = "ts", type = "timestamp", nullable = false },
  { name = "writer", type = "string", nullable = false },
  { name = "seq", type = "int64", nullable = false },
  { name = "payload", type = "string", nullable = true },
]

[tables.log]
tier = "lake"
time = "ts"
partition = { time = ["year", "month", "day"] }
columns = [
  { name = "ts", type = "timestamp", nullable = false },
  { name = "writer", type = "string", nullable = false },
  { name = "seq", type = "int64", nullable = false },
]
"""

Key = tuple[str, int]


def write_schema(directory: Path) -> Path:
    """Write the test schema to `directory/durability.toml` and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "durability.toml"
    path.write_text(SCHEMA)
    return path


def payload(writer: str, seq: int, version: int) -> str:
    """The payload of one attempt: says which key and which attempt it came from."""
    return f"{writer}:{seq}:v{version}"


def event_rows(keys: Iterable[Key], version: int) -> list[dict[str, Any]]:
    """Rows for `events`, spread over three days so folds publish several files."""
    return [
        {
            "ts": BASE + dt.timedelta(hours=seq % 72, seconds=seq),
            "writer": w,
            "seq": seq,
            "payload": payload(w, seq, version),
        }
        for w, seq in keys
    ]


def log_rows(keys: Iterable[Key]) -> list[dict[str, Any]]:
    """Rows for the un-keyed table `log`."""
    return [{"ts": BASE + dt.timedelta(hours=s % 48), "writer": w, "seq": s} for w, s in keys]


class SideLog:
    """JSON lines appended with one os.write each: what a client knows it did."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def put(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        os.write(self.fd, line.encode())

    def close(self) -> None:
        os.close(self.fd)


def read_side_log(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a side log (a line torn by the kill is dropped)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    out = []
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i != len(lines) - 1:  # only the very last line may be torn
                raise
    return out


# -- the model: what the side logs say --------------------------------------------------


@dataclass
class Attempt:
    version: int
    acked: bool = False


@dataclass
class Model:
    """Every attempt and acknowledgement, per table and key, in the order they happened."""

    attempts: dict[str, dict[Key, list[Attempt]]] = field(
        default_factory=lambda: {t: {} for t in TABLES}
    )

    def add_log(self, records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
        """Fold one side log in; returns its last `events` attempt (for a retry)."""
        by_id: dict[str, list[Attempt]] = {}
        last_events = None
        for rec in records:
            if rec["op"] == "attempt":
                table = rec["table"]
                group = []
                for w, s in rec["keys"]:
                    att = Attempt(rec["version"])
                    self.attempts[table].setdefault((w, s), []).append(att)
                    group.append(att)
                by_id[rec["id"]] = group
                if table == "events":
                    last_events = rec
            elif rec["op"] == "ack":
                for att in by_id[rec["id"]]:
                    att.acked = True
        return last_events

    def acked(self, table: str) -> set[Key]:
        return {k for k, atts in self.attempts[table].items() if any(a.acked for a in atts)}

    def allowed_payloads(self, table: str, key: Key) -> set[str]:
        """Payloads the key may show: attempts up to and including the first acked one."""
        out = set()
        for att in self.attempts[table].get(key, []):
            out.add(payload(key[0], key[1], att.version))
            if att.acked:
                break
        return out


@dataclass
class Verdict:
    rows: int = 0
    acked: int = 0
    duplicates: int = 0
    lost: int = 0
    phantom: int = 0
    wrong_payload: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, other: Verdict) -> None:
        self.rows += other.rows
        self.acked += other.acked
        self.duplicates += other.duplicates
        self.lost += other.lost
        self.phantom += other.phantom
        self.wrong_payload += other.wrong_payload
        self.problems += other.problems


def judge(table: str, rows: Sequence[tuple[Any, ...]], model: Model, where: str) -> Verdict:
    """Compare the rows found (writer, seq[, payload]) with the side logs."""
    v = Verdict(rows=len(rows))
    counts = Counter((r[0], r[1]) for r in rows)
    acked = model.acked(table)
    v.acked = len(acked)
    dups = sorted(k for k, n in counts.items() if n > 1)
    lost = sorted(acked - counts.keys())
    phantom = sorted(k for k in counts if k not in model.attempts[table])
    v.duplicates, v.lost, v.phantom = len(dups), len(lost), len(phantom)
    if dups:
        v.problems.append(f"{where}: {table}: {len(dups)} keys twice, e.g. {dups[:3]}")
    if lost:
        v.problems.append(f"{where}: {table}: {len(lost)} acknowledged keys lost, e.g. {lost[:3]}")
    if phantom:
        v.problems.append(f"{where}: {table}: {len(phantom)} never-attempted keys: {phantom[:3]}")
    if table == "events":
        wrong = []
        for w, s, p in rows:
            if (w, s) in model.attempts[table] and p not in model.allowed_payloads(table, (w, s)):
                wrong.append((w, s, p, sorted(model.allowed_payloads(table, (w, s)))))
        v.wrong_payload = len(wrong)
        if wrong:
            v.problems.append(
                f"{where}: events: {len(wrong)} payloads not first-write: {wrong[:3]}"
            )
    return v


# -- looking at a store from outside ------------------------------------------------------


def query_rows(store: telelake.Store, table: str) -> list[tuple[Any, ...]]:
    cols = "writer, seq, payload" if table == "events" else "writer, seq"
    return store.sql(f"SELECT {cols} FROM {table}").rows()


def view_files(store: telelake.Store, table: str) -> list[str]:
    """The files the DuckDB view of `table` reads, taken from the view's SQL text."""
    sql = store.sql(
        "SELECT sql FROM duckdb_views() WHERE view_name = $name", {"name": table}
    ).scalar()
    assert sql, f"no view for {table}"
    return re.findall(r"'([^']+\.parquet)'", sql)


def check_files(root: Path, store: telelake.Store | None, where: str) -> list[str]:
    """No hidden/temp file in any view; every *.parquet under the tables is readable."""
    problems = []
    if store is not None:
        for table in TABLES:
            for f in view_files(store, table):
                name = os.path.basename(f)
                if name.startswith(".") or name.endswith(".tmp") or ".tmp" in name:
                    problems.append(f"{where}: view {table} reads a temp file {f}")
                elif not os.path.exists(f):
                    problems.append(f"{where}: view {table} reads a missing file {f}")
    for table in TABLES:
        for path in sorted((root / table).rglob("*.parquet")):
            try:
                pq.read_metadata(path)
            except Exception as exc:
                problems.append(f"{where}: unreadable {path}: {exc}")
    return problems


def physical_rows(root: Path, table: str) -> list[tuple[Any, ...]]:
    """Rows of every published Parquet file of `table`, read with pyarrow alone."""
    cols = ["writer", "seq", "payload"] if table == "events" else ["writer", "seq"]
    out: list[tuple[Any, ...]] = []
    for path in sorted((root / table).rglob("*.parquet")):
        if path.name.startswith((".", "_")):
            continue
        t = pq.read_table(path, columns=cols)
        out += list(zip(*(t.column(c).to_pylist() for c in cols), strict=True))
    return out


def crash_leftovers(root: Path) -> dict[str, int]:
    """What a crash left behind before recovery: intents, segments, temp files."""
    from telelake.lake import wal

    out = {"intents": 0, "torn segments": 0, "segments": 0, "temp files": 0}
    for table in TABLES:
        wal_dir = root / "_wal" / table
        if wal_dir.is_dir():
            out["intents"] += len(list(wal_dir.glob("*.fold")))
            for seg in wal_dir.glob("*.wal"):
                out["segments"] += 1
                if wal.read_segment(seg).problem:
                    out["torn segments"] += 1
    out["temp files"] = sum(1 for p in root.rglob("*.tmp"))
    return out


# -- the torture child ----------------------------------------------------------------


def child(root: str, schema: str, log_path: str, writer: str, seed: int, retry: str) -> None:
    """Write until killed. Every write is logged as an attempt first, then as acked."""
    rng = random.Random(seed)
    log = SideLog(Path(log_path))
    print("imported", flush=True)
    store = telelake.open(
        root,
        schema=schema,
        host_id=HOST,
        fold_bytes=rng.choice([1024, 2048, 4096]),
        fold_age=rng.choice([0.1, 60.0]),
    )
    print("opened", flush=True)
    n = 0

    def attempt(table: str, keys: list[Key], version: int, via: str) -> None:
        nonlocal n
        n += 1
        rid = f"{writer}.{n}"
        log.put({"op": "attempt", "id": rid, "table": table, "keys": keys, "version": version})
        rows = event_rows(keys, version) if table == "events" else log_rows(keys)
        if via == "write":
            store.write(table, rows)
        else:
            with store.writer(table, batch_size=1 << 20, flush_interval=None) as bw:
                bw.write_many(rows)
                bw.flush()
        log.put({"op": "ack", "id": rid})

    last: tuple[list[Key], int] | None = None  # (keys, version of the latest attempt)
    if retry:  # the previous round's last batch: the client does not know if it landed
        rec = json.loads(retry)
        keys = [(w, s) for w, s in rec["keys"]]
        version = rec["version"] + rng.choice([0, 1])
        attempt("events", keys, version, "write")
        last = (keys, version)
    seq = 0
    log_seq = 0
    for _ in range(100_000):
        if last is not None and rng.random() < 0.25:
            keys, version = last
            r = rng.random()
            if r < 0.35:
                attempt("events", keys, version, "write")  # the same values again
            elif r < 0.6:  # through a flush (a direct commit), same or changed values
                version += rng.choice([0, 1])
                attempt("events", keys, version, "flush")
            else:
                version += 1
                attempt("events", keys, version, "write")
            last = (keys, version)
        else:
            size = rng.randint(1, 20)
            keys = [(writer, seq + i) for i in range(size)]
            seq += size
            attempt("events", keys, 0, "flush" if rng.random() < 0.1 else "write")
            last = (keys, 0)
        if rng.random() < 0.5:
            size = rng.randint(1, 10)
            attempt("log", [(writer, log_seq + i) for i in range(size)], 0, "write")
            log_seq += size
        if rng.random() < 0.03:
            store.fold()
    os._exit(0)  # not killed in time: leave like a crash, without folding


# -- the torture parent --------------------------------------------------------------


@dataclass
class Report:
    kills: int = 0
    acked: dict[str, int] = field(default_factory=dict)
    found: dict[str, int] = field(default_factory=dict)
    totals: Verdict = field(default_factory=Verdict)  # summed over every check
    observer_queries: int = 0
    temp_files: int = 0
    leftovers: Counter[str] = field(default_factory=Counter)

    def absorb(self, v: Verdict) -> None:
        self.totals.add(v)

    @property
    def problems(self) -> list[str]:
        return self.totals.problems

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        found = ", ".join(f"{t} {self.found.get(t, 0)}" for t in TABLES)
        acked = ", ".join(f"{t} {self.acked.get(t, 0)}" for t in TABLES)
        left = ", ".join(f"{k} {v}" for k, v in sorted(self.leftovers.items()))
        return (
            f"kills: {self.kills}\nacknowledged rows: {acked}\nrows found: {found}\n"
            f"duplicates: {self.totals.duplicates}\nlost: {self.totals.lost}\n"
            f"phantom: {self.totals.phantom}\nwrong payloads: {self.totals.wrong_payload}\n"
            f"observer queries: {self.observer_queries}\n"
            f"rounds that left, before recovery: {left}\n"
            f"temp files left over at the end: {self.temp_files}\n"
            f"problems: {len(self.problems)}"
        )


def verify_store(store: telelake.Store, root: Path, model: Model, where: str) -> Verdict:
    total = Verdict()
    for table in TABLES:
        total.add(judge(table, query_rows(store, table), model, where))
    total.problems += check_files(root, store, where)
    return total


def wait_for_ack(log: Path, proc: subprocess.Popen[str], limit: float = 60.0) -> None:
    """Until the child's side log holds an acknowledgement (or it died, or `limit` s)."""
    end = time.monotonic() + limit
    while time.monotonic() < end and proc.poll() is None:
        if any(rec["op"] == "ack" for rec in read_side_log(log)):
            return
        time.sleep(0.01)


def spawn_child(
    root: Path, schema: Path, log: Path, writer: str, seed: int, retry: dict[str, Any] | None
) -> subprocess.Popen[str]:
    args = [sys.executable, str(HERE), "child", str(root), str(schema), str(log), writer]
    args += [str(seed), json.dumps(retry) if retry else ""]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "imported":
        proc.kill()
        _, err = proc.communicate()
        raise RuntimeError(f"torture child did not start: {line!r} {err[-2000:]}")
    return proc


class Observer:
    """A long-lived reader in the parent: never a row twice, never fewer rows than before."""

    def __init__(self, root: Path, schema: Path) -> None:
        self.store = telelake.open(root, schema=schema, host_id=HOST)
        self.last = {t: 0 for t in TABLES}
        self.queries = 0
        self.problems: list[str] = []

    def look(self, where: str) -> None:
        for table in TABLES:
            try:
                n, distinct = self.store.sql(
                    f"SELECT COUNT(*), COUNT(DISTINCT (writer, seq)) FROM {table}"
                ).rows()[0]
            except Exception as exc:
                self.problems.append(f"{where}: observer query of {table} raised {exc!r}")
                continue
            self.queries += 1
            if n != distinct:
                self.problems.append(f"{where}: observer saw {n} {table} rows, {distinct} keys")
            if n < self.last[table]:
                self.problems.append(
                    f"{where}: observer saw {table} shrink from {self.last[table]} to {n}"
                )
            self.last[table] = n

    def close(self) -> None:
        self.store.close()


def new_store(root: Path) -> tuple[Path, Path, Path]:
    """A new store under `root`: its schema file, its root, and a folder for side logs."""
    schema = write_schema(root)
    store_root = root / "store"
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    telelake.open(store_root, schema=schema, host_id=HOST).close()
    return schema, store_root, logs


def run(
    kills: int,
    seed: int,
    root: Path,
    *,
    delay: tuple[float, float] = (0.05, 0.6),
    progress: bool = False,
) -> Report:
    """Run `kills` kill rounds against one store under `root`; return what was found."""
    rng = random.Random(seed)
    schema, store_root, logs = new_store(root)
    model = Model()
    report = Report()
    retry: dict[str, Any] | None = None
    observer: Observer | None = None
    for rnd in range(kills):
        where = f"round {rnd}"
        # Half the rounds run with a reader open in this process, half with no Store here.
        if observer is None and rng.random() < 0.5:
            observer = Observer(store_root, schema)
        log = logs / f"{rnd:04d}.jsonl"
        proc = spawn_child(store_root, schema, log, f"r{rnd}", rng.randrange(1 << 30), retry)
        # Most rounds start the clock once the child has opened the store, so that even a
        # slow machine acknowledges rows; the others may kill it during open's recovery.
        # (The child says "imported" first: read up to "opened".) A third of those rounds
        # also wait for the first acknowledgement, so that a loaded machine (CI running
        # tests in parallel) still acknowledges rows in every run.
        if rng.random() < 0.7:
            assert proc.stdout is not None
            while proc.stdout.readline() not in ("opened\n", ""):
                pass
            if rng.random() < 0.33:
                wait_for_ack(log, proc)
        deadline = time.monotonic() + rng.uniform(*delay)
        while time.monotonic() < deadline:
            if observer is not None:
                observer.look(where)
            time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
        report.kills += 1
        if proc.returncode != -signal.SIGKILL:
            report.problems.append(f"{where}: child ended with {proc.returncode}: {err[-2000:]}")
        retry = model.add_log(read_side_log(log)) or retry
        report.leftovers.update(k for k, v in crash_leftovers(store_root).items() if v)
        # Check right away (no recovery: the reader that was open before the crash),
        # with a fresh Store (recovery on open), or not at all (the next child recovers).
        mode = rng.choice(["fresh", "fresh", "none"] + (["observer"] if observer else []))
        if observer is not None:
            observer.look(where + " after kill")
        if mode == "observer" and observer is not None:
            report.absorb(verify_store(observer.store, store_root, model, where + " (live)"))
        elif mode == "fresh":
            with telelake.open(store_root, schema=schema, host_id=HOST) as store:
                report.absorb(verify_store(store, store_root, model, where + " (reopened)"))
        if observer is not None and rng.random() < 0.5:
            observer.close()
            report.problems.extend(observer.problems)
            report.observer_queries += observer.queries
            observer = None
        if progress and (rnd + 1) % 10 == 0:
            print(f"{rnd + 1} kills, {len(model.acked('events'))} events acked", flush=True)
    if observer is not None:
        observer.close()
        report.problems.extend(observer.problems)
        report.observer_queries += observer.queries
    # Final: recover, fold everything, close; then read the Parquet files with pyarrow alone.
    with telelake.open(store_root, schema=schema, host_id=HOST) as store:
        final = verify_store(store, store_root, model, "final")
        store.fold()
        report.absorb(verify_store(store, store_root, model, "final after fold"))
    report.absorb(final)
    report.temp_files = sum(1 for _ in store_root.rglob("*.tmp"))
    for table in TABLES:
        left = list((store_root / "_wal" / table).glob("*.wal"))
        left += list((store_root / "_wal" / table).glob("*.fold"))
        if left:
            report.problems.append(f"final: {table}: not folded after close: {left[:3]}")
        rows = physical_rows(store_root, table)
        v = judge(table, rows, model, "final, Parquet files read by pyarrow")
        report.absorb(v)
        report.acked[table] = v.acked
        report.found[table] = v.rows
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "child":
        root, schema, log, writer, seed = args[1:6]
        child(root, schema, log, writer, int(seed), args[6] if len(args) > 6 else "")
        return 0
    if args and args[0] in ROLES:
        return ROLES[args[0]](args[1:])
    if args and args[0] == "damage-child":
        damage_child(*args[1:7])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--damage", type=int, default=0, help="damage rounds after the kills")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--root", type=Path, default=None, help="keep the store here")
    ns = parser.parse_args(args)
    start = time.monotonic()
    print(f"torture: {ns.kills} kills, seed {ns.seed} (rerun: --seed {ns.seed})", flush=True)
    if ns.root is not None:
        report = run(ns.kills, ns.seed, ns.root, progress=True)
    else:
        with tempfile.TemporaryDirectory(prefix="telelake-torture-") as tmp:
            report = run(ns.kills, ns.seed, Path(tmp), progress=True)
    print(report.summary())
    ok = report.ok
    for problem in report.problems[:50]:
        print("PROBLEM:", problem)
    if ns.damage:
        print(f"damage: {ns.damage} rounds, seed {ns.seed}", flush=True)
        with tempfile.TemporaryDirectory(prefix="telelake-damage-") as tmp:
            damaged = damage_run(ns.damage, ns.seed, Path(tmp))
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(damaged.leftovers.items()))
        acked, found = damaged.acked["events"], damaged.found["events"]
        print(f"damaged segments: {kinds}; acknowledged events {acked}, in Parquet {found}")
        for problem in damaged.problems[:50]:
            print("PROBLEM:", problem)
        ok = ok and damaged.ok
    print(f"{'OK' if ok else 'FAILED'} in {time.monotonic() - start:.1f}s")
    return 0 if ok else 1


# -- damage rounds: crashed writers' segments damaged as a bad disk would ---------------

DAMAGES = ("flip", "zeroed span", "schema record", "torn tail", "empty")


def damage_child(root: str, schema: str, log_path: str, name: str, writers: str, seed: str) -> None:
    """Open WRITERS stores (one segment each), write a few batches through each, print
    {writer: segment path} and die without folding (like kill -9)."""
    rng = random.Random(int(seed))
    log = SideLog(Path(log_path))
    segments = {}
    for w in range(int(writers)):
        writer = f"{name}w{w}"
        store = telelake.open(root, schema=schema, host_id=HOST, fold_bytes=1 << 30,
                              fold_age=3600, maintenance=False)  # fmt: skip
        seq = 0
        for n in range(rng.randint(2, 9)):
            keys = [(writer, seq + i) for i in range(rng.randint(1, 6))]
            seq += len(keys)
            rid = f"{writer}.{n}"
            log.put({"op": "attempt", "id": rid, "table": "events", "keys": keys, "version": 0})
            rows = event_rows(keys, 0)
            if rng.random() < 0.5:  # columns: an Arrow IPC record, not a rows record
                store.write("events", {c: [r[c] for r in rows] for c in rows[0]})
            else:
                store.write("events", rows)
            log.put({"op": "ack", "id": rid, "writer": writer})
        segments[writer] = str(store._lake._segments["events"].path)
    print(json.dumps(segments), flush=True)
    os._exit(0)


def record_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each record of an intact segment, by walking the length fields
    (the test's own reading of the format: magic, then `TLR1 | length | crc | payload`)."""
    pos, spans = 8, []
    while pos + 12 <= len(data) and data[pos : pos + 4] == b"TLR1":
        end = pos + 12 + int.from_bytes(data[pos + 4 : pos + 8], "little")
        spans.append((pos, end))
        pos = end
    assert not any(data[pos:]), "a crashed writer's segment ends in zeros"
    return spans


def damage(data: bytes, kind: str, rng: random.Random) -> tuple[bytes, set[int], bool]:
    """`data` damaged as `kind` says; which writes (0-based, record 1 is write 0) lose
    their rows, and whether the segment must be kept in `_quarantine/`."""
    spans = record_spans(data)
    out = bytearray(data[: spans[-1][1]])  # (the free space after the records goes too)
    if kind == "empty":
        return b"", set(range(len(spans) - 1)), True
    if kind == "torn tail":
        start, end = spans[-1]
        return bytes(out[: rng.randint(start + 1, end - 1)]), {len(spans) - 2}, False
    if kind == "schema record":
        start, end = spans[0]
        out[rng.randrange(start, end)] ^= 1 << rng.randrange(8)
    elif kind == "flip":
        start, end = spans[rng.randrange(1, len(spans) - 1)]  # with good records after it
        out[rng.randrange(start, end)] ^= 1 << rng.randrange(8)
    else:  # a zeroed span, like a block the disk lost, ending before the last record
        a = rng.randrange(spans[1][0], spans[-1][0])
        b = min(spans[-1][0], a + rng.randint(1, 64))
        out[a:b] = bytes(b - a)
    lost = {i - 1 for i, (s, e) in enumerate(spans) if i and out[s:e] != data[s:e]}
    return bytes(out), lost, out != bytearray(data[: spans[-1][1]])


def damage_run(rounds: int, seed: int, root: Path, *, writers: int = 3) -> Report:
    """`rounds` times: crash `writers` writers, damage each segment at random, open the
    store (which salvages), then judge: every acknowledged row outside the damaged
    records there exactly once, none of the damaged ones, each damaged segment kept in
    `_quarantine/` byte for byte, a warning per loss, and `check` failing until repair."""
    import warnings

    rng = random.Random(seed)
    schema, store_root, logs = new_store(root)
    model = Model()
    report = Report()
    lost_keys: set[Key] = set()
    for rnd in range(rounds):
        where = f"damage round {rnd}"
        log = logs / f"damage-{rnd:04d}.jsonl"
        args = [sys.executable, str(HERE), "damage-child", str(store_root), str(schema)]
        args += [str(log), f"d{rnd}", str(writers), str(rng.randrange(1 << 30))]
        done = subprocess.run(args, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            report.problems.append(f"{where}: child failed: {done.stderr[-2000:]}")
            continue
        segments = json.loads(done.stdout.strip().splitlines()[-1])
        records = read_side_log(log)
        model.add_log(records)
        keys_of: dict[str, list[list[Key]]] = {}  # writer -> keys of each write, in order
        for rec in records:
            if rec["op"] == "attempt":
                writer = rec["keys"][0][0]
                keys_of.setdefault(writer, []).append([(w, q) for w, q in rec["keys"]])
        expect_kept: dict[str, bytes] = {}
        for writer, seg in sorted(segments.items()):
            path = Path(seg)
            kind = rng.choice(DAMAGES)
            data, lost, kept = damage(path.read_bytes(), kind, rng)
            path.write_bytes(data)
            report.leftovers[kind] += 1
            for i in lost:
                lost_keys.update(keys_of[writer][i])
            if kept:
                expect_kept[path.name] = data
        for key in lost_keys:  # a lost row must stay lost: never guessed, never phantom
            model.attempts["events"].pop(key, None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            store = telelake.open(store_root, schema=schema, host_id=HOST, maintenance=False)
        with store:
            report.absorb(verify_store(store, store_root, model, where))
            told = " ".join(str(w.message) for w in caught)
            for name, data in expect_kept.items():
                copies = list((store_root / "_quarantine").rglob(name))
                if [c.read_bytes() for c in copies] != [data]:
                    report.problems.append(f"{where}: {name} not kept as found: {copies}")
                if name not in told:
                    report.problems.append(f"{where}: no warning about {name}")
            found = {f.path.name for f in store.check().findings}
            if found != set(expect_kept):
                report.problems.append(f"{where}: check reported {found}, not {set(expect_kept)}")
            if not store.check(repair=True).ok or store.check().findings:
                report.problems.append(f"{where}: check not clean after repair")
        report.kills += 1
    report.acked["events"] = len(model.acked("events"))
    report.found["events"] = len(physical_rows(store_root, "events"))
    return report


# -- roles for test_durability.py (each a separate process) ---------------------------


def _until(path: str) -> None:
    while not os.path.exists(path):
        time.sleep(0.01)


def role_writer(args: Sequence[str]) -> int:
    """writer ROOT SCHEMA LOG NAME SEED GO STOP: write keyed+unkeyed batches until STOP."""
    root, schema, log_path, name, seed, go, stop = args
    rng = random.Random(int(seed))
    store = telelake.open(root, schema=schema, host_id=HOST, fold_bytes=16 << 10)
    log = SideLog(Path(log_path))
    print("ready", flush=True)
    _until(go)
    seq = log_seq = n = errors = 0
    last: list[Key] | None = None
    while not os.path.exists(stop):
        n += 1
        if last is not None and rng.random() < 0.2:
            keys = last  # a retry, same payload
        else:
            keys = [(name, seq + i) for i in range(rng.randint(1, 8))]
            seq += len(keys)
        via = "flush" if rng.random() < 0.1 else "write"
        rid = f"{name}.{n}"
        log.put({"op": "attempt", "id": rid, "table": "events", "keys": keys, "version": 0})
        try:
            if via == "write":
                store.write("events", event_rows(keys, 0))
            else:
                with store.writer("events", batch_size=1 << 20, flush_interval=None) as bw:
                    bw.write_many(event_rows(keys, 0))
        except OSError as exc:  # not acknowledged; retried by the next round of the loop
            errors += 1
            print(f"write error: {exc!r}", file=sys.stderr, flush=True)
            last = keys
            continue
        log.put({"op": "ack", "id": rid})
        last = keys
        lkeys = [(name, log_seq + i) for i in range(rng.randint(1, 5))]
        log_seq += len(lkeys)
        rid = f"{name}.{n}.log"
        log.put({"op": "attempt", "id": rid, "table": "log", "keys": lkeys, "version": 0})
        try:
            store.write("log", log_rows(lkeys))
        except OSError as exc:  # never retried: an un-keyed retry may double a row
            errors += 1
            print(f"write error: {exc!r}", file=sys.stderr, flush=True)
            continue
        log.put({"op": "ack", "id": rid})
    store.close()
    print(json.dumps({"errors": errors, "batches": n}), flush=True)
    return 0


def role_folder(args: Sequence[str]) -> int:
    """folder ROOT SCHEMA GO STOP: store.fold() in a loop."""
    root, schema, go, stop = args
    store = telelake.open(root, schema=schema, host_id=HOST)
    print("ready", flush=True)
    _until(go)
    folds = rows = 0
    while not os.path.exists(stop):
        rows += store.fold()
        folds += 1
        time.sleep(0.005)  # leave the writers some CPU on small machines
    store.close()
    print(json.dumps({"folds": folds, "rows": rows}), flush=True)
    return 0


def role_querier(args: Sequence[str]) -> int:
    """querier ROOT SCHEMA GO STOP: count rows in a loop; report anomalies as JSON."""
    root, schema, go, stop = args
    store = telelake.open(root, schema=schema, host_id=HOST)
    print("ready", flush=True)
    _until(go)
    last = {t: 0 for t in TABLES}
    queries, problems = 0, []
    while not os.path.exists(stop):
        for table in TABLES:
            try:
                n, distinct = store.sql(
                    f"SELECT COUNT(*), COUNT(DISTINCT (writer, seq)) FROM {table}"
                ).rows()[0]
            except Exception as exc:
                problems.append(f"{table}: query raised {exc!r}")
                continue
            queries += 1
            if n != distinct:
                problems.append(f"{table}: {n} rows but {distinct} keys")
            if n < last[table]:
                problems.append(f"{table}: count went down from {last[table]} to {n}")
            last[table] = n
    store.close()
    print(json.dumps({"queries": queries, "problems": problems[:20], "last": last}), flush=True)
    return 0


def role_hold(args: Sequence[str]) -> int:
    """hold ROOT SCHEMA N: write N keyed rows, say so, wait on stdin, then close or crash."""
    root, schema, n = args
    store = telelake.open(root, schema=schema, host_id=HOST)
    keys = [("hold", i) for i in range(int(n))]
    store.write("events", event_rows(keys, 0))
    store.write("log", log_rows(keys))
    print("written", flush=True)
    how = sys.stdin.readline().strip()
    if how == "crash":
        os._exit(0)
    store.close()
    print("closed", flush=True)
    return 0


ROLES = {
    "writer": role_writer,
    "folder": role_folder,
    "querier": role_querier,
    "hold": role_hold,
}


if __name__ == "__main__":
    sys.exit(main())
