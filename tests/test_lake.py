"""The lake on disk: directory layout (spec 000 §2), metadata files (§4.1, §10.2), the
Parquet files' settings (§3 "Parquet metadata"), partition pruning (§8.1) and atomic,
concurrent writes (§7.2, §7.3). Everything is checked by looking at the files themselves
with os and pyarrow.parquet, not by asking telelake."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import platform
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import datagen
import telelake
from conftest import TEST_HOST_ID
from datagen import HOST_PARTITIONED, SPEC_COLUMNS, TABLES, TIME_COLUMN

PREFIX = {
    "runs": "runs",
    "proc_samples": "samples",
    "proc_features": "features",
    "proc_inference": "inference",
    "outcomes": "outcomes",
    "audit": "audit",
}
# Spec §3 "Dictionary encoding" lists; audit has none in the spec, these are the schema's.
DICTIONARY = {
    "runs": {"session_id", "mode", "state", "os_family", "arch"},
    "proc_samples": {"session_id", "cmd", "state", "tty", "wchan", "systemd_unit"},
    "proc_features": {"session_id", "proc_type", "age_bucket", "mem_bucket", "cmd_category"},
    "proc_inference": {"session_id", "confidence", "recommendation", "bayes_factor_interpretation"},
    "outcomes": {
        "session_id",
        "recommendation",
        "decision",
        "decision_source",
        "action_type",
        "signal_sent",
    },
    "audit": {"session_id", "event_type", "severity", "actor"},
}
ARROW_TYPE = {
    "STRING": pa.string(),
    "BOOLEAN": pa.bool_(),
    "INT8": pa.int8(),
    "INT16": pa.int16(),
    "INT32": pa.int32(),
    "INT64": pa.int64(),
    "FLOAT": pa.float32(),
    "TIMESTAMP_MICROS": pa.timestamp("us", tz="UTC"),
    "LIST<STRING>": pa.list_(pa.string()),
}
# (Parquet physical type, logical type JSON "Type", extra logical fields) per spec type.
PARQUET_TYPE: dict[str, tuple[str, set[str], dict[str, Any]]] = {
    "STRING": ("BYTE_ARRAY", {"String"}, {}),
    "BOOLEAN": ("BOOLEAN", {"None"}, {}),
    "INT8": ("INT32", {"Int"}, {"bitWidth": 8, "isSigned": True}),
    "INT16": ("INT32", {"Int"}, {"bitWidth": 16, "isSigned": True}),
    "INT32": ("INT32", {"None", "Int"}, {}),
    "INT64": ("INT64", {"None", "Int"}, {}),
    "FLOAT": ("FLOAT", {"None"}, {}),
    "TIMESTAMP_MICROS": (
        "INT64",
        {"Timestamp"},
        {"isAdjustedToUTC": True, "timeUnit": "microseconds"},
    ),
    "LIST<STRING>": ("BYTE_ARRAY", {"String"}, {}),
}
NAME_RE = re.compile(
    r"^(?P<prefix>[a-z_]+)_(?P<stamp>\d{8}T\d{6}Z)_(?P<suffix>[a-z0-9]+(-\d+)?)\.parquet$"
)
TESTS_DIR = Path(__file__).resolve().parent
PYTHON = str(Path(sys.executable))


def utc_day(value: Any) -> dt.date:
    return value.astimezone(dt.UTC).date()


def partition_of(path: Path, root: Path, table: str) -> dict[str, str]:
    """The key=value directory levels between <root>/<table>/ and the file."""
    rel = path.relative_to(root / table)
    levels = rel.parts[:-1]
    out = {}
    for level in levels:
        key, _, value = level.partition("=")
        out[key] = value
    return out


def all_files(root: Path) -> list[Path]:
    return [Path(d) / f for d, _, fs in os.walk(root) for f in fs]


WRITE_WINDOW: list[dt.datetime] = []  # when full_lake wrote its files


@pytest.fixture(scope="module")
def full_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[dict]]]:
    """A store holding one generated data set in all six tables."""
    data = datagen.generate(7)
    root = tmp_path_factory.mktemp("lake") / "store"
    WRITE_WINDOW.append(dt.datetime.now(dt.UTC).replace(microsecond=0))
    with telelake.open(root, host_id=TEST_HOST_ID) as store:
        for table in TABLES:
            store.write(table, data[table])
    WRITE_WINDOW.append(dt.datetime.now(dt.UTC))
    return root, data


# -- layout §2.1 ------------------------------------------------------------------------------


@pytest.mark.parametrize("table", TABLES)
def test_partition_directories_follow_spec_layout(
    full_lake: tuple[Path, dict[str, list[dict]]], table: str
) -> None:
    root, data = full_lake
    files = [p for p in all_files(root / table)]
    assert files, table
    expected_dirs = set()
    for r in data[table]:
        d = utc_day(r[TIME_COLUMN[table]])
        parts = [f"year={d.year:04d}", f"month={d.month:02d}", f"day={d.day:02d}"]
        if table in HOST_PARTITIONED:
            parts.append(f"host_id={r['host_id']}")
        expected_dirs.add(Path(root, table, *parts))
    assert {p.parent for p in files} == expected_dirs
    for path in files:
        levels = path.relative_to(root / table).parts[:-1]
        want = ["year", "month", "day"] + (["host_id"] if table in HOST_PARTITIONED else [])
        assert [lv.split("=")[0] for lv in levels] == want, path
        assert re.fullmatch(r"year=\d{4}", levels[0])
        assert re.fullmatch(r"month=\d{2}", levels[1])
        assert re.fullmatch(r"day=\d{2}", levels[2])
        # Every row of a file belongs to the partition its directory names (UTC date).
        part = partition_of(path, root, table)
        stored = pq.read_table(path)
        for ts in stored.column(TIME_COLUMN[table]).to_pylist():
            day = utc_day(ts)
            assert (day.year, day.month, day.day) == (
                int(part["year"]),
                int(part["month"]),
                int(part["day"]),
            )
        if table == "runs":
            assert set(stored.column("host_id").to_pylist()) == {part["host_id"]}


def test_audit_has_no_host_level_but_keeps_its_host_column(
    full_lake: tuple[Path, dict[str, list[dict]]],
) -> None:
    root, _ = full_lake
    for path in all_files(root / "audit"):
        assert "host_id=" not in str(path.relative_to(root))
    stored = pq.read_table(all_files(root / "audit")[0])
    assert "host_id" in stored.column_names


def test_virtual_host_id_is_not_stored_inside_the_files(
    full_lake: tuple[Path, dict[str, list[dict]]],
) -> None:
    root, _ = full_lake
    for table in ("proc_samples", "proc_features", "proc_inference", "outcomes"):
        for path in all_files(root / table):
            names = pq.ParquetFile(path).schema_arrow.names
            assert names == datagen.spec_column_names(table), path


def test_rows_without_host_id_go_under_the_stores_host(store: telelake.Store) -> None:
    data = datagen.generate(3)
    rows = datagen.without(data["proc_samples"], "host_id")
    store.write("proc_samples", rows)
    store.fold()  # small writes sit in the WAL until folded into Parquet
    hosts = {
        partition_of(p, store.root, "proc_samples")["host_id"] for p in store.files("proc_samples")
    }
    assert hosts == {TEST_HOST_ID}
    got = store.sql("SELECT DISTINCT host_id FROM proc_samples").rows()
    assert got == [(TEST_HOST_ID,)]


def test_runs_go_under_their_own_host_id(store: telelake.Store) -> None:
    data = datagen.generate(4)
    runs = data["runs"]
    store.write("runs", runs)
    store.fold()
    dirs = {partition_of(p, store.root, "runs")["host_id"] for p in store.files("runs")}
    assert dirs == {r["host_id"] for r in runs}
    assert TEST_HOST_ID not in dirs
    assert not (store.root / "proc_samples").exists()


def test_file_names_have_prefix_utc_stamp_and_suffix(
    full_lake: tuple[Path, dict[str, list[dict]]],
) -> None:
    root, _ = full_lake
    for table in TABLES:
        files = all_files(root / table)
        assert files
        for path in files:
            m = NAME_RE.match(path.name)
            assert m, path.name
            assert m["prefix"] == PREFIX[table]
            # Spec §2.3: named after the session its rows belong to (the generator's
            # session ids are pt-YYYYMMDD-HHMMSS-xxxx), not after when it was written.
            sessions = set(pq.read_table(path, columns=["session_id"])["session_id"].to_pylist())
            first = min(sessions)
            date, clock, suffix = first.split("-")[1:]
            assert m["stamp"] == f"{date}T{clock}Z"
            assert m["suffix"].split("-")[0] == suffix
            if len(sessions) > 1:  # a bulk write of many sessions: one file for them
                assert len(sessions) > 8


def test_metadata_files_have_exactly_the_spec_keys(store: telelake.Store) -> None:
    meta = store.root / "_metadata"
    version = json.loads((meta / "schema_version.json").read_text())
    assert set(version) == {
        "current_version",
        "compatible_versions",
        "upgrade_from",
        "last_checked",
    }
    assert version["current_version"] == "1.0.0"
    assert version["compatible_versions"] == ["1.0.0"]
    assert version["upgrade_from"] is None
    checked = dt.datetime.strptime(version["last_checked"], "%Y-%m-%dT%H:%M:%SZ")
    assert abs(checked.replace(tzinfo=dt.UTC) - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)

    host = json.loads((meta / "host_info.json").read_text())
    assert set(host) == {"host_id", "hostname_hash", "first_seen", "last_seen", "os_family", "arch"}
    assert host["host_id"] == TEST_HOST_ID
    assert host["os_family"] == platform.system().lower()
    assert host["arch"] == platform.machine()
    assert re.fullmatch(r"[0-9a-f]{8,64}", host["hostname_hash"])
    # The hostname itself is not written anywhere in the metadata (it is hashed).
    text = (meta / "host_info.json").read_text()
    assert socket.gethostname() not in text
    for key in ("first_seen", "last_seen"):
        dt.datetime.strptime(host[key], "%Y-%m-%dT%H:%M:%SZ")


def test_host_info_keeps_first_seen_and_moves_last_seen(store_root: Path) -> None:
    telelake.open(store_root, host_id=TEST_HOST_ID).close()
    path = store_root / "_metadata" / "host_info.json"
    info = json.loads(path.read_text())
    info["first_seen"] = info["last_seen"] = "2026-01-01T00:00:00Z"
    path.write_text(json.dumps(info))
    telelake.open(store_root, host_id=TEST_HOST_ID).close()
    again = json.loads(path.read_text())
    assert again["first_seen"] == "2026-01-01T00:00:00Z"
    assert again["last_seen"] > "2026-01-01T00:00:00Z"


def test_default_host_id_hashes_hostname_and_machine_id(store_root: Path) -> None:
    machine_file = Path("/etc/machine-id")
    if not machine_file.is_file() or not machine_file.read_text().strip():
        pytest.skip("no /etc/machine-id on this machine")
    machine = machine_file.read_text().strip()
    expected = hashlib.sha256(f"{socket.gethostname()}:{machine}".encode()).hexdigest()[:16]
    with telelake.open(store_root) as store:
        assert store.host_id == expected
        rows = datagen.without(datagen.generate(1)["outcomes"], "host_id")
        store.write("outcomes", rows)
        store.fold()
        hosts = {
            partition_of(p, store_root, "outcomes")["host_id"] for p in store.files("outcomes")
        }
    assert hosts == {expected}
    info = json.loads((store_root / "_metadata" / "host_info.json").read_text())
    assert info["host_id"] == expected


# -- Parquet settings §3 -----------------------------------------------------------------------


@pytest.mark.parametrize("table", TABLES)
def test_parquet_compression_dictionary_and_metadata(
    full_lake: tuple[Path, dict[str, list[dict]]], table: str
) -> None:
    root, _ = full_lake
    for path in all_files(root / table):
        pf = pq.ParquetFile(path)
        md = pf.metadata
        kv = md.metadata
        assert kv[b"telelake.schema"] == b"process_triage"
        assert kv[b"telelake.schema_version"] == b"1.0.0"
        for g in range(md.num_row_groups):
            rg = md.row_group(g)
            for c in range(rg.num_columns):
                col = rg.column(c)
                name = col.path_in_schema.split(".")[0]
                assert col.compression == "ZSTD", (path, name)
                dict_encoded = bool({"PLAIN_DICTIONARY", "RLE_DICTIONARY"} & set(col.encodings))
                assert dict_encoded == (name in DICTIONARY[table]), (table, name, col.encodings)


@pytest.mark.parametrize("table", TABLES)
def test_parquet_column_types_are_the_spec_types(
    full_lake: tuple[Path, dict[str, list[dict]]], table: str
) -> None:
    root, _ = full_lake
    spec = SPEC_COLUMNS[table]
    for path in all_files(root / table):
        pf = pq.ParquetFile(path)
        arrow = pf.schema_arrow
        assert arrow.names == [n for n, _, _ in spec]
        for name, spec_type, nullable in spec:
            field = arrow.field(name)
            assert field.type == ARROW_TYPE[spec_type], (table, name, field.type)
            assert field.nullable == nullable, (table, name)
        # The Parquet-level types, independent of the embedded Arrow schema.
        leaves = {pf.schema.column(i).path: pf.schema.column(i) for i in range(len(pf.schema))}
        for name, spec_type, nullable in spec:
            leaf = leaves[f"{name}.list.element" if spec_type == "LIST<STRING>" else name]
            physical, logical_types, fields = PARQUET_TYPE[spec_type]
            assert leaf.physical_type == physical, (table, name)
            logical = json.loads(leaf.logical_type.to_json())
            assert logical["Type"] in logical_types, (table, name, logical)
            for k, v in fields.items():
                assert logical[k] == v, (table, name, logical)
            if spec_type != "LIST<STRING>":
                assert leaf.max_definition_level == (1 if nullable else 0), (table, name)


@pytest.fixture(scope="module")
def big_samples(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[Any]]]:
    cols = datagen.bulk_samples(11, 50_000)
    root = tmp_path_factory.mktemp("big") / "store"
    with telelake.open(root, host_id=TEST_HOST_ID) as store:
        assert store.write("proc_samples", cols) == 50_000
        files = store.files("proc_samples")
    assert len(files) == 1
    return files[0], cols


def test_row_groups_are_about_one_mebibyte(big_samples: tuple[Path, Any]) -> None:
    path, _ = big_samples
    md = pq.ParquetFile(path).metadata
    assert md.num_rows == 50_000
    assert md.num_row_groups >= 3
    sizes = [md.row_group(i).total_byte_size for i in range(md.num_row_groups)]
    for size in sizes[:-1]:
        assert (1 << 20) / 2 <= size <= (1 << 20) * 2, sizes
    assert sizes[-1] <= (1 << 20) * 2


def test_samples_are_sorted_and_say_so(big_samples: tuple[Path, Any]) -> None:
    path, cols = big_samples
    pf = pq.ParquetFile(path)
    stored = pf.read(columns=["session_id", "sample_seq", "pid"]).to_pylist()
    keys = [(r["session_id"], r["sample_seq"], r["pid"]) for r in stored]
    assert keys == sorted(keys)
    given = list(zip(cols["session_id"], cols["sample_seq"], cols["pid"], strict=True))
    assert keys != given  # the input was shuffled, so sorting really happened
    assert Counter(keys) == Counter(given)
    names = pf.schema_arrow.names
    want = [names.index("session_id"), names.index("sample_seq"), names.index("pid")]
    for g in range(pf.metadata.num_row_groups):
        sorting = pf.metadata.row_group(g).sorting_columns
        assert [s.column_index for s in sorting] == want
        assert not any(s.descending for s in sorting)


def test_samples_other_columns_travel_with_their_keys(big_samples: tuple[Path, Any]) -> None:
    path, cols = big_samples
    stored = pq.read_table(
        path, columns=["session_id", "sample_seq", "pid", "cmdline", "rss_bytes"]
    )
    got = {
        (r["session_id"], r["sample_seq"], r["pid"]): (r["cmdline"], r["rss_bytes"])
        for r in stored.to_pylist()
    }
    for i in range(0, 50_000, 997):
        key = (cols["session_id"][i], cols["sample_seq"][i], cols["pid"][i])
        assert got[key] == (cols["cmdline"][i], cols["rss_bytes"][i])


# -- predicate pushdown §8.1 -------------------------------------------------------------------

GOOD_HOST = "aaaa000000000001"
BAD_HOST = "zzzz000000000002"


def _write_days(store: telelake.Store, days: list[int], host: str, n: int) -> None:
    rows = datagen.without(datagen.generate(9)["proc_samples"][:n], "host_id")
    for day in days:
        base = dt.datetime(2026, 1, day, 12, tzinfo=dt.UTC)
        batch = [
            # Distinct keys per day and host: a repeated key would be a retry (deduplicated).
            {
                **r,
                "sample_ts": base + dt.timedelta(seconds=i),
                "host_id": host,
                # One session per day and host: one file each (spec §2.3 names files
                # after their session).
                "session_id": f"pt-202601{day:02d}-120000-{host[:4].lower()}",
                "sample_seq": i,
            }
            for i, r in enumerate(rows)
        ]
        store.write("proc_samples", batch)
    store.fold()


def _corrupt(store: telelake.Store, keep: str) -> int:
    n = 0
    for path in store.files("proc_samples"):
        if keep not in str(path):
            path.write_bytes(b"not a parquet file " * 50)
            n += 1
    return n


# A store reads each file's footer once and then trusts it (published files never change
# in place). Corrupting files in place after a first query therefore makes any query that
# opens them fail: exactly what shows that a filtered query does not open them.


def test_partition_filter_skips_corrupt_days(store_root: Path) -> None:
    with telelake.open(store_root, host_id=TEST_HOST_ID) as store:
        _write_days(store, [10, 11, 12], GOOD_HOST, 40)
        assert store.sql("SELECT COUNT(*) FROM proc_samples").scalar() == 120
        assert _corrupt(store, "day=10/") == 2
        q = "SELECT COUNT(*) FROM proc_samples WHERE year = 2026 AND month = 1 AND day = 10"
        assert store.sql(q).scalar() == 40
        with pytest.raises(telelake.QueryError):
            store.sql("SELECT COUNT(*) FROM proc_samples")


def test_partition_filter_on_host_id_skips_corrupt_hosts(store_root: Path) -> None:
    with telelake.open(store_root, host_id=TEST_HOST_ID) as store:
        _write_days(store, [10, 11, 12], GOOD_HOST, 30)
        _write_days(store, [10, 11, 12], BAD_HOST, 20)
        assert store.sql("SELECT COUNT(*) FROM proc_samples").scalar() == 150
        assert _corrupt(store, f"host_id={GOOD_HOST}/") == 3
        n = store.sql("SELECT COUNT(*) FROM proc_samples WHERE host_id = ?", [GOOD_HOST]).scalar()
        assert n == 90
        with pytest.raises(telelake.QueryError):
            store.sql("SELECT COUNT(*) FROM proc_samples")


def test_partition_filter_skips_corrupt_days_before_the_good_one(store_root: Path) -> None:
    with telelake.open(store_root, host_id=TEST_HOST_ID) as store:
        _write_days(store, [10, 11, 12], GOOD_HOST, 40)
        assert store.sql("SELECT COUNT(*) FROM proc_samples").scalar() == 120
        assert _corrupt(store, "day=12/") == 2
        q = "SELECT COUNT(*) FROM proc_samples WHERE year = 2026 AND month = 1 AND day = 12"
        assert store.sql(q).scalar() == 40


def test_queries_recover_once_a_bad_file_is_gone(store_root: Path) -> None:
    with telelake.open(store_root, host_id=TEST_HOST_ID) as store:
        _write_days(store, [10], GOOD_HOST, 10)
        (good,) = store.files("proc_samples")
        assert store.sql("SELECT COUNT(*) FROM proc_samples").scalar() == 10
        saved = good.read_bytes()
        good.write_bytes(b"garbage" * 20)
        with pytest.raises(telelake.QueryError):
            store.sql("SELECT COUNT(*) FROM proc_samples")
        good.write_bytes(saved)  # the file is fine again (e.g. it was being replaced)
        assert store.sql("SELECT COUNT(*) FROM proc_samples").scalar() == 10


# -- atomicity and concurrency §7.2, §7.3 ---------------------------------------------------


def test_no_temp_or_hidden_files_remain_after_writes(
    full_lake: tuple[Path, dict[str, list[dict]]],
) -> None:
    root, _ = full_lake
    leftovers = [p for p in all_files(root) if p.name.startswith(".") or p.name.endswith(".tmp")]
    assert leftovers == []
    parquet = [p for p in all_files(root) if p.suffix == ".parquet"]
    for p in parquet:
        pq.ParquetFile(p)  # every published file is complete


def test_failed_write_leaves_nothing_behind(
    store: telelake.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import telelake.lake.parquet as lake_parquet

    real = lake_parquet.write_table

    def half_write(path: Path, data: pa.Table, spec: Any) -> None:
        Path(path).write_bytes(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(lake_parquet, "write_table", half_write)
    rows = datagen.without(datagen.generate(2)["outcomes"], "host_id")
    writer = store.writer("outcomes", batch_size=10_000, flush_interval=None)
    writer.write_many(rows)
    with pytest.raises(OSError):
        writer.flush()  # a flush commits straight to Parquet
    leftovers = [
        p
        for p in all_files(store.root)
        if p.suffix == ".tmp" or (p.suffix == ".parquet" and "anchors" not in p.parts)
    ]
    assert leftovers == []
    assert store.sql("SELECT COUNT(*) FROM outcomes").scalar() == 0
    monkeypatch.setattr(lake_parquet, "write_table", real)
    assert writer.flush() == len(rows)  # the rows stayed buffered
    writer.close()
    assert store.sql("SELECT COUNT(*) FROM outcomes").scalar() == len(rows)


def test_same_store_writing_twice_in_one_second_keeps_both_files(store: telelake.Store) -> None:
    rows = datagen.generate(2)["audit"]
    day = [{**r, "audit_ts": dt.datetime(2026, 1, 15, 1, i, tzinfo=dt.UTC),
            "session_id": "pt-20260115-010000-a7xq"} for i, r in enumerate(rows[:20])]  # fmt: skip
    with store.writer("audit", flush_interval=None) as writer:
        for _ in range(3):
            writer.write_many(day)
            writer.flush()  # each flush publishes one file
    files = store.files("audit")
    assert len(files) == 3 and len({f.name for f in files}) == 3
    # Named after the session (spec §2.3), with a uniqueness tail where names collide.
    assert sorted(f.name for f in files) == [
        "audit_20260115T010000Z_a7xq-2.parquet",
        "audit_20260115T010000Z_a7xq-3.parquet",
        "audit_20260115T010000Z_a7xq.parquet",
    ]
    assert store.sql("SELECT COUNT(*) FROM audit").scalar() == 60


_CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
import datagen, telelake
root, host, tag = sys.argv[1], sys.argv[2], sys.argv[3]
cols = datagen.bulk_samples(int(tag), 400, n_sessions=5)
cols["session_id"] = [f"p{{tag}}-" + s for s in cols["session_id"]]
store = telelake.open(root, host_id=host)
print("ready", flush=True)
target = float(sys.stdin.readline())
time.sleep(max(0.0, target - time.time()))
store.write("proc_samples", cols)
store.close()
print("done", flush=True)
"""


def _race(root: Path, script: str) -> set[str]:
    """Two child processes write 400 rows each at the start of the same second."""
    telelake.open(root, host_id=TEST_HOST_ID).close()
    procs = [
        subprocess.Popen(
            [PYTHON, "-c", script, str(root), TEST_HOST_ID, str(tag)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for tag in (1, 2)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        now = time.time()
        target = math.floor(now) + 1 + 0.02
        if target - now < 0.3:
            target += 1
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(f"{target}\n")
            p.stdin.flush()
        for p in procs:
            assert p.wait(timeout=60) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    files = all_files(root / "proc_samples")
    assert len({f.name for f in files}) == len(files)
    return {f.name for f in files}


def test_two_processes_writing_the_same_sessions_at_once(tmp_path: Path) -> None:
    """Both children write rows of sessions whose ids give the same file names (spec
    §2.3), at the start of the same second: every row lands, no file clobbers another,
    and the second file of a name carries a uniqueness tail."""
    script = _CHILD.format(tests=str(TESTS_DIR))
    expected: Counter[tuple[str, int, int]] = Counter()
    for tag in (1, 2):
        cols = datagen.bulk_samples(tag, 400, n_sessions=5)
        for s, q, pid in zip(cols["session_id"], cols["sample_seq"], cols["pid"], strict=True):
            expected[(f"p{tag}-" + s, q, pid)] += 1
    root = tmp_path / "store"
    names = _race(root, script)
    with telelake.open(root, host_id=TEST_HOST_ID) as store:
        got = store.sql("SELECT session_id, sample_seq, pid FROM proc_samples").rows()
    assert len(got) == 800
    assert Counter(got) == expected
    # One file per session and process; p1-pt-20260115-080000-0000 and
    # p2-pt-20260115-080000-0000 both name theirs ..._20260115T080000Z_0000.
    bases: Counter[str] = Counter()
    for name in names:
        m = NAME_RE.match(name)
        assert m, name
        bases[f"{m['stamp']}_{m['suffix'].split('-')[0]}"] += 1
    assert len(names) == 10
    assert sorted(bases.values()) == [2] * 5
    assert sum(1 for n in names if re.search(r"-2\.parquet$", n)) == 5


def test_a_bad_file_is_skipped_with_a_warning_not_fatal(store_root: Path) -> None:
    with telelake.open(store_root, host_id=TEST_HOST_ID) as store:
        _write_days(store, [10, 11, 12], GOOD_HOST, 25)
    day11 = next(p for p in (store_root / "proc_samples").rglob("*.parquet") if "day=11" in str(p))
    day11.write_bytes(day11.read_bytes()[:100])  # truncated: footer gone
    with (
        pytest.warns(UserWarning, match="skipping .*day=11"),
        telelake.open(store_root, host_id=TEST_HOST_ID) as store,
    ):
        assert store.sql("SELECT COUNT(*) FROM proc_samples").scalar() == 50
        assert store.sql("SELECT DISTINCT day FROM proc_samples ORDER BY 1").rows() == [
            (10,),
            (12,),
        ]


def test_a_sessions_files_are_found_by_name(store: telelake.Store) -> None:
    """Spec §2.3/§7.3: `<prefix>_<YYYYMMDDTHHMMSSZ>_<session_suffix>.parquet` names the
    session, so its files are found with a glob, in every table, and hold its rows only."""
    data = datagen.generate(5)
    sessions = sorted({r["session_id"] for r in data["proc_samples"]})
    assert len(sessions) > 1  # a few sessions a day: one file each (lake/layout.py)
    for table in ("runs", "proc_samples", "audit"):
        store.write(table, data[table])
    store.fold()
    for session in sessions:
        _, date, clock, suffix = session.split("-")
        for table in ("runs", "proc_samples", "audit"):
            prefix = PREFIX[table]
            found = sorted(
                (store.root / table).rglob(f"{prefix}_{date}T{clock}Z_{suffix}*.parquet")
            )
            expected = sum(1 for r in data[table] if r["session_id"] == session)
            got = pq.read_table(found, columns=["session_id"], partitioning=None) if found else None
            if expected == 0:
                assert not found
                continue
            assert got is not None
            assert set(got["session_id"].to_pylist()) == {session}
            assert got.num_rows == expected
