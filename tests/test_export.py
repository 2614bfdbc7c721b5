"""`telelake export`: real files read back by independent readers.

The truth is what the store holds, read without telelake: a lake table's Parquet files
with pyarrow.parquet, a sql table's rows with sqlite3. Expected CSV/JSON text is made
here from those values by the rules of the issue (RFC 4180, ISO 8601 with offset,
`true`/`false`, repr floats, NULL an empty unquoted field, '' written `""`). The CSV is
read back three ways: a strict RFC 4180 parser below (which also tells NULL from ''),
the `csv` module and DuckDB's read_csv.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import telelake
from telelake.export import ExportReport, export_table

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
TELELAKE = str(Path(sys.executable).parent / "telelake")
OPS_DB = "frankensearch-ops.db"

TRICKY = [
    "plain",
    "a,b",
    'say "hi"',
    '"',
    '""',
    "cr\ronly",
    "lf\nonly",
    "crlf\r\nboth",
    "trailing newline\n",
    "ünïcødé 日本語 🎉 \u2028",
    "  spaces kept  ",
    "tab\there",
    ",",
    "x" * 300,
]
FLOATS = [
    0.1 + 0.2,
    1 / 3,
    2.0**-1074,  # the smallest subnormal
    1.7976931348623157e308,
    -123456789.12345679,
    1e-7,
    2.0**53 + 2,
    0.0,
]
AUDIT_COLUMNS = [
    "audit_ts",
    "session_id",
    "event_type",
    "severity",
    "actor",
    "target_pid",
    "target_start_id",
    "message",
    "details_json",
    "host_id",
]


# -- independent readers and formatters -------------------------------------------------


def parse_rfc4180(data: bytes) -> list[list[str | None]]:
    """A strict RFC 4180 reader: CRLF after every record, quotes only around whole fields,
    unquoted fields free of quotes, CR and LF. An empty unquoted field is None (NULL), a
    quoted one ''. Fails on anything else."""
    text = data.decode("utf-8")  # strict: invalid UTF-8 fails
    assert not text.startswith("\ufeff"), "no byte order mark"
    records: list[list[str | None]] = []
    i, n = 0, len(text)
    while i < n:
        record: list[str | None] = []
        while True:
            if text.startswith('"', i):
                j, parts = i + 1, []
                while True:
                    k = text.index('"', j)
                    parts.append(text[j:k])
                    if text.startswith('"', k + 1):
                        parts.append('"')
                        j = k + 2
                        continue
                    i = k + 1
                    break
                record.append("".join(parts))
            else:
                j = i
                while j < n and text[j] not in ',"\r\n':
                    j += 1
                assert j == n or text[j] != '"', f"bare quote at {j}"
                record.append(text[i:j] or None)
                i = j
            if text.startswith(",", i):
                i += 1
                continue
            assert text.startswith("\r\n", i), (
                f"record must end in CRLF at {i}: {text[i : i + 5]!r}"
            )
            i += 2
            break
        records.append(record)
    return records


def csv_module_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def iso(v: dt.datetime | dt.date) -> str:
    if isinstance(v, dt.datetime):
        assert v.utcoffset() == dt.timedelta(0)
        return v.astimezone(UTC).isoformat()
    return v.isoformat()


def text_of(v: Any) -> str | None:
    """The CSV text the issue asks for, for one Python value."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, dt.date):
        return iso(v)
    if isinstance(v, list):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, bytes):
        return v.hex()
    return str(v)


def json_of(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dt.date):
        return iso(v)
    if isinstance(v, bytes):
        return v.hex()
    return v


def parquet_rows(root: Path, table: str, columns: list[str]) -> list[dict[str, Any]]:
    """Every row of a lake table, straight from its Parquet files."""
    files = [
        p
        for p in sorted((root / table).rglob("*.parquet"))
        if not any(part.startswith((".", "_")) for part in p.relative_to(root).parts)
    ]
    assert files, "the store folded its rows into Parquet"
    rows: list[dict[str, Any]] = []
    for f in files:
        rows += pq.read_table(f, columns=columns).to_pylist()
    return rows


def sqlite_rows(db: Path, sql: str) -> list[dict[str, Any]]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(sql)]
    finally:
        con.close()


def duckdb_rows(path: Path, types: dict[str, str]) -> list[dict[str, Any]]:
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        cols = ", ".join(f"'{k}': '{v}'" for k, v in types.items())
        rel = con.sql(
            f"SELECT * FROM read_csv('{path}', header = true, delim = ',', quote = '\"', "
            f"escape = '\"', allow_quoted_nulls = false, columns = {{{cols}}})"
        )
        rows: list[dict[str, Any]] = rel.to_arrow_table().to_pylist()
        return rows
    finally:
        con.close()


def same(a: Any, b: Any) -> bool:
    """Equality that also holds for NaN and tells -0.0 from 0.0."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) and type(a) is type(b)


def check_csv(report: ExportReport, columns: list[str], expected: list[list[str | None]]) -> None:
    """The file is RFC 4180 with a header and holds `expected`, read two ways."""
    data = report.path.read_bytes()
    assert report.bytes == len(data)
    assert data.startswith((",".join(columns) + "\r\n").encode())
    assert data.endswith(b"\r\n")
    records = parse_rfc4180(data)
    assert records[0] == columns
    assert records[1:] == expected
    assert report.rows == len(expected)
    assert csv_module_rows(report.path) == [columns] + [
        ["" if v is None else v for v in row] for row in expected
    ]


# -- a lake table: process_triage audit -------------------------------------------------


def audit_rows() -> list[dict[str, Any]]:
    base = dt.datetime(2026, 1, 14, 23, 59, 58, tzinfo=UTC)
    rows = []
    for i, text in enumerate(TRICKY):
        rows.append(
            {
                "audit_ts": base + dt.timedelta(seconds=i, microseconds=i * 37),  # crosses a day
                "session_id": f"s{i % 3}",
                "event_type": text,
                "severity": ["info", "warning", "error"][i % 3],
                "actor": "user",
                "target_pid": None if i % 2 else i * 1000,
                "target_start_id": [None, ""][i % 2],  # NULL and the empty string
                "message": text,
                "details_json": None if i % 3 == 0 else json.dumps({"i": i, "t": text}),
                "host_id": "hostA",
            }
        )
    return rows


@pytest.fixture
def audit_store(tmp_path: Path) -> Path:
    root = tmp_path / "lake"
    with telelake.open(root, schema="process_triage") as store:
        store.write("audit", audit_rows())
    return root  # closed: WAL rows are folded into Parquet


def test_lake_table_csv_round_trips_through_rfc4180_csv_module_and_duckdb(
    audit_store: Path,
) -> None:
    source = parquet_rows(audit_store, "audit", AUDIT_COLUMNS)
    source.sort(key=lambda r: r["audit_ts"])
    assert len(source) == len(TRICKY)
    assert [r["message"] for r in source] == TRICKY  # the store kept what we wrote

    with telelake.open(audit_store, schema="process_triage") as store:
        report = export_table(store, "audit", "csv")
    assert report.path.parent == audit_store / "exports"
    assert report.path.name.startswith("audit_") and report.path.suffix == ".csv"
    expected = [[text_of(r[c]) for c in AUDIT_COLUMNS] for r in source]  # time order
    check_csv(report, AUDIT_COLUMNS, expected)
    # NULL vs '' in the raw bytes: target_start_id alternates None and "".
    records = parse_rfc4180(report.path.read_bytes())[1:]
    assert [r[6] for r in records] == [[None, ""][i % 2] for i in range(len(TRICKY))]
    assert b'\r\n"crlf\r\nboth"' not in report.path.read_bytes()  # quoted in place, not split
    assert b'"crlf\r\nboth"' in report.path.read_bytes()

    types = {
        "audit_ts": "TIMESTAMPTZ",
        "session_id": "VARCHAR",
        "event_type": "VARCHAR",
        "severity": "VARCHAR",
        "actor": "VARCHAR",
        "target_pid": "INTEGER",
        "target_start_id": "VARCHAR",
        "message": "VARCHAR",
        "details_json": "VARCHAR",
        "host_id": "VARCHAR",
    }
    assert duckdb_rows(report.path, types) == source


def test_lake_table_parquet_json_and_ndjson_round_trip(audit_store: Path) -> None:
    source = parquet_rows(audit_store, "audit", AUDIT_COLUMNS)
    source.sort(key=lambda r: r["audit_ts"])
    with telelake.open(audit_store, schema="process_triage") as store:
        reports = {f: export_table(store, "audit", f) for f in ("parquet", "json", "ndjson")}

    back = pq.read_table(reports["parquet"].path)
    assert back.schema.names == AUDIT_COLUMNS  # no partition columns (year, month, day)
    assert back.schema.field("audit_ts").type == pa.timestamp("us", tz="UTC")
    assert back.schema.field("target_pid").type == pa.int32()
    assert pq.ParquetFile(reports["parquet"].path).metadata.row_group(0).column(0).compression == (
        "ZSTD"
    )
    assert back.to_pylist() == source

    want = [{c: json_of(r[c]) for c in AUDIT_COLUMNS} for r in source]
    text = reports["json"].path.read_text(encoding="utf-8")
    assert json.loads(text) == want
    assert [list(o) for o in json.loads(text)] == [AUDIT_COLUMNS] * len(want)  # declared order
    lines = reports["ndjson"].path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # every line ends in \n, raw newlines in text are escaped
    assert [json.loads(line) for line in lines[:-1]] == want
    assert all(r.rows == len(want) for r in reports.values())


# -- sql tables: search_ops -------------------------------------------------------------


def seed_ops(store: telelake.Store) -> None:
    store.write("projects", [{"project_key": "p", "created_at_ms": 1, "updated_at_ms": 1}])
    store.write(
        "instances",
        [
            {
                "instance_id": "i0",
                "project_key": "p",
                "first_seen_ms": 1,
                "last_heartbeat_ms": 1,
                "state": "started",
            }
        ],
    )
    store.write(
        "alerts_timeline",
        [
            {
                "alert_id": f"a{i:02d}",
                "project_key": "p",
                "instance_id": [None, "", "i0"][i % 3],
                "category": text,
                "severity": "warn",
                "reason_code": text[::-1] or "r",
                "summary": None if i % 4 == 0 else text,
                "state": "open",
                "opened_at_ms": 1_700_000_000_000 + i,
                "updated_at_ms": 1_700_000_000_000 + i,
                "resolved_at_ms": None,
            }
            for i, text in enumerate(TRICKY)
        ],
    )
    store.write(
        "resource_samples",
        [
            {
                "project_key": "p",
                "instance_id": "i0",
                "cpu_pct": v,
                "rss_bytes": None if i % 2 else 2**62 + i,
                "ts_ms": 1_700_000_000_000 + i * 1000,
            }
            for i, v in enumerate([*FLOATS, None])
        ],
    )


@pytest.fixture
def ops_store(tmp_path: Path) -> Path:
    root = tmp_path / "ops"
    with telelake.open(root, schema="search_ops") as store:
        seed_ops(store)
    return root


@pytest.mark.parametrize(
    ("table", "order", "types"),
    [
        (
            "alerts_timeline",
            "alert_id",
            {
                "alert_id": "VARCHAR",
                "project_key": "VARCHAR",
                "instance_id": "VARCHAR",
                "category": "VARCHAR",
                "severity": "VARCHAR",
                "reason_code": "VARCHAR",
                "summary": "VARCHAR",
                "state": "VARCHAR",
                "opened_at_ms": "BIGINT",
                "updated_at_ms": "BIGINT",
                "resolved_at_ms": "BIGINT",
            },
        ),
        (
            "resource_samples",
            "sample_id",
            {
                "sample_id": "BIGINT",
                "project_key": "VARCHAR",
                "instance_id": "VARCHAR",
                "cpu_pct": "DOUBLE",
                "rss_bytes": "BIGINT",
                "io_read_bytes": "BIGINT",
                "io_write_bytes": "BIGINT",
                "queue_depth": "BIGINT",
                "ts_ms": "BIGINT",
            },
        ),
    ],
)
def test_sql_table_round_trips_in_every_format(
    ops_store: Path, table: str, order: str, types: dict[str, str]
) -> None:
    columns = list(types)
    source = sqlite_rows(
        ops_store / OPS_DB, f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}"
    )
    assert len(source) in (len(TRICKY), len(FLOATS) + 1)
    with telelake.open(ops_store, schema="search_ops") as store:
        reports = {f: export_table(store, table, f) for f in ("csv", "parquet", "json", "ndjson")}

    check_csv(reports["csv"], columns, [[text_of(r[c]) for c in columns] for r in source])
    got = duckdb_rows(reports["csv"].path, types)
    assert all(same(a, b) for a, b in zip(got, source, strict=True))

    back = pq.read_table(reports["parquet"].path)
    assert back.schema.names == columns
    assert all(same(a, b) for a, b in zip(back.to_pylist(), source, strict=True))

    want = [{c: json_of(r[c]) for c in columns} for r in source]
    assert json.loads(reports["json"].path.read_text(encoding="utf-8")) == want
    text = reports["ndjson"].path.read_text(encoding="utf-8")
    assert "\u2028" not in text  # escaped: even str.splitlines() keeps records whole
    assert [json.loads(line) for line in text.splitlines()] == want


def test_floats_are_written_with_full_precision(ops_store: Path) -> None:
    with telelake.open(ops_store, schema="search_ops") as store:
        report = export_table(store, "resource_samples", "csv")
    cells = [r[3] for r in parse_rfc4180(report.path.read_bytes())[1:]]
    assert cells[:-1] == [repr(v) for v in FLOATS]
    assert cells[-1] is None
    assert [float(str(c)) for c in cells[:-1]] == FLOATS  # bit-exact, not 6 significant digits
    assert "0.30000000000000004" in cells and "5e-324" in cells


# -- every logical type, in both tiers --------------------------------------------------

KINDS = {
    "id": ("int64", "BIGINT"),
    "ts": ("timestamp", "TIMESTAMPTZ"),
    "s": ("string", "VARCHAR"),
    "b": ("bool", "BOOLEAN"),
    "i8": ("int8", "TINYINT"),
    "f32": ("float32", "FLOAT"),
    "f64": ("float64", "DOUBLE"),
    "d": ("date", "DATE"),
    "j": ("json", "VARCHAR"),
    "l": ("list<string>", "VARCHAR"),
    "bin": ("binary", "VARCHAR"),
}


def kinds_schema(path: Path) -> Path:
    cols = "".join(
        f'  {{ name = "{n}", type = "{t}"{", nullable = false" if n in ("id", "ts") else ""} }},\n'
        for n, (t, _) in KINDS.items()
    )
    path.write_text(
        'name = "kinds"\nversion = "1.0.0"\n\n'
        '[tables.lk]\ntier = "lake"\ntime = "ts"\nkey = ["id"]\n'
        'partition = { time = ["year", "month"], keys = ["host_id"] }\n'
        f"columns = [\n{cols}]\n\n"
        '[tables.sq]\ntier = "sql"\ntime = "ts"\nkey = ["id"]\n'
        f"columns = [\n{cols}]\n"
    )
    return path


def kinds_rows() -> list[dict[str, Any]]:
    t0 = dt.datetime(2025, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    return [
        {
            "id": 1,
            "ts": t0,
            "s": 'a,"b"\r\n',
            "b": True,
            "i8": -128,
            "f32": 0.1,
            "f64": 0.1 + 0.2,
            "d": dt.date(2024, 2, 29),
            "j": '{"k": [1, 2.5, "x,y"], "n": null}',
            "l": ["x", "y,z", 'q"uote', None, ""],
            "bin": b"\x00\xff\r\n",
        },
        {
            "id": 2,
            "ts": t0 + dt.timedelta(microseconds=1),
            "s": "",
            "b": False,
            "i8": None,
            "f32": None,
            "f64": -1e300,
            "d": None,
            "j": "[]",
            "l": [],
            "bin": b"",
        },
        {
            "id": 3,
            "ts": dt.datetime(1969, 7, 20, 20, 17, 40, tzinfo=UTC),
            "s": None,
            "b": None,
            "i8": 127,
            "f32": 2.5,
            "f64": float("inf"),
            "d": dt.date(1, 1, 1),
            "j": None,
            "l": None,
            "bin": None,
        },
    ]


def kinds_source(root: Path, table: str) -> list[dict[str, Any]]:
    names = list(KINDS)
    if table == "lk":
        return sorted(parquet_rows(root, "lk", names), key=lambda r: r["id"])
    out = []
    for r in sqlite_rows(root / "telelake.db", f"SELECT {', '.join(names)} FROM sq ORDER BY id"):
        # Stored forms, decoded here by hand: epoch µs, 0/1, ISO dates, JSON text lists.
        r["ts"] = EPOCH + dt.timedelta(microseconds=r["ts"])
        r["b"] = None if r["b"] is None else bool(r["b"])
        r["d"] = None if r["d"] is None else dt.date.fromisoformat(r["d"])
        r["l"] = None if r["l"] is None else json.loads(r["l"])
        out.append(r)
    return out


@pytest.mark.parametrize("table", ["lk", "sq"])
def test_every_logical_type_in_both_tiers(tmp_path: Path, table: str) -> None:
    schema = kinds_schema(tmp_path / "kinds.toml")
    root = tmp_path / "kinds"
    with telelake.open(root, schema=schema, host_id="h1") as store:
        store.write(table, kinds_rows())
    source = kinds_source(root, table)
    assert [r["s"] for r in source] == ['a,"b"\r\n', "", None]
    with telelake.open(root, schema=schema, host_id="h1") as store:
        reports = {f: export_table(store, table, f) for f in ("csv", "parquet", "json")}
    names = list(KINDS)

    check_csv(reports["csv"], names, [[text_of(r[c]) for c in names] for r in source])
    cells = parse_rfc4180(reports["csv"].path.read_bytes())[1]
    assert cells[1] == "2025-12-31T23:59:59.999999+00:00"
    assert cells[3] == "true" and cells[7] == "2024-02-29" and cells[10] == "00ff0d0a"
    assert json.loads(cells[9] or "") == ["x", "y,z", 'q"uote', None, ""]

    got = duckdb_rows(reports["csv"].path, {n: d for n, (_, d) in KINDS.items()})
    for a, b in zip(got, source, strict=True):
        b = {**b, "l": text_of(b["l"]), "bin": text_of(b["bin"])}  # text columns in DuckDB
        assert same(a, b), (a, b)

    back = pq.read_table(reports["parquet"].path)
    assert back.schema.names == names  # not the host_id / year / month partition levels
    assert [f.type for f in back.schema] == [
        pa.int64(),
        pa.timestamp("us", tz="UTC"),
        pa.string(),
        pa.bool_(),
        pa.int8(),
        pa.float32(),
        pa.float64(),
        pa.date32(),
        pa.string(),
        pa.list_(pa.string()),  # list equality ignores the item field's name
        pa.binary(),
    ]
    assert all(same(a, b) for a, b in zip(back.to_pylist(), source, strict=True))

    want = [{c: json_of(r[c]) for c in names} for r in source]
    assert json.loads(reports["json"].path.read_text(encoding="utf-8")) == want
    assert want[2]["f64"] is None  # infinity has no JSON spelling


# -- files, filters and errors ----------------------------------------------------------


def test_names_never_collide_and_no_temp_file_is_left(audit_store: Path, tmp_path: Path) -> None:
    when = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    out = tmp_path / "out"
    with telelake.open(audit_store, schema="process_triage") as store:
        first = export_table(store, "audit", "csv", directory=out, now=when)
        second = export_table(store, "audit", "csv", directory=out, now=when)
        third = export_table(store, "audit", "csv", directory=out, now=when)
    assert first.path == out / "audit_20260304T050607Z.csv"
    assert second.path == out / "audit_20260304T050607Z-2.csv"
    assert third.path == out / "audit_20260304T050607Z-3.csv"
    assert first.path.read_bytes() == second.path.read_bytes() == third.path.read_bytes()
    assert {p.name for p in out.iterdir()} == {first.path.name, second.path.name, third.path.name}


def test_where_filters_rows_and_an_empty_result_is_still_a_valid_file(
    audit_store: Path, ops_store: Path
) -> None:
    with telelake.open(audit_store, schema="process_triage") as store:
        some = export_table(store, "audit", "csv", where="severity = 'error'")
        none = {
            f: export_table(store, "audit", f, where="false") for f in ("csv", "json", "parquet")
        }
    expected = sum(1 for i in range(len(TRICKY)) if i % 3 == 2)
    assert some.rows == expected == len(parse_rfc4180(some.path.read_bytes())) - 1
    assert none["csv"].path.read_bytes() == (",".join(AUDIT_COLUMNS) + "\r\n").encode()
    assert json.loads(none["json"].path.read_text()) == []
    empty = pq.read_table(none["parquet"].path)
    assert empty.num_rows == 0 and empty.schema.names == AUDIT_COLUMNS
    with telelake.open(ops_store, schema="search_ops") as store:
        r = export_table(store, "alerts_timeline", "json", where="summary IS NULL")
    assert [o["alert_id"] for o in json.loads(r.path.read_text())] == [
        f"a{i:02d}" for i in range(len(TRICKY)) if i % 4 == 0
    ]


def test_unknown_table_format_and_lake_directories_are_refused(audit_store: Path) -> None:
    with telelake.open(audit_store, schema="process_triage") as store:
        with pytest.raises(telelake.StoreError, match="no table 'nope'"):
            export_table(store, "nope", "csv")
        with pytest.raises(telelake.StoreError, match="unknown export format 'xml'"):
            export_table(store, "audit", "xml")
        with pytest.raises(telelake.StoreError, match="data directory of lake table 'audit'"):
            export_table(store, "audit", "parquet", directory=audit_store / "audit")
    assert not (audit_store / "exports").exists()


def test_a_log_table_exports_its_records_in_log_order(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    written = [
        {
            "run_id": "r1",
            "event_type": kind,
            "timestamp": f"2026-01-02T03:04:0{n}+00:00",
            "payload_json": None if n % 2 else json.dumps({"text": 'a,"b"\r\nc'}),
        }
        for n, kind in enumerate(["start", "fetch", "parse", "done"])
    ]
    with telelake.open(root, schema="agent_runs") as store:
        for row in written:
            store.write("events", [row])
        log = sorted((root / "raw").glob("*.ndjson"))[-1]
        with log.open("ab") as f:  # a writer killed mid-append
            f.write(b'{"record_type": "event", "payload": {"run_')
        report = export_table(store, "events", "csv", directory=tmp_path / "out")
        with pytest.raises(telelake.StoreError, match="log table"):
            export_table(store, "events", "csv", directory=tmp_path / "out", where="1 = 1")
    assert report.rows == 4
    with report.path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["run_id", "event_type", "timestamp", "payload_json"]
    assert rows[1:] == [[r[k] or "" for k in rows[0]] for r in written]


# -- the command line -------------------------------------------------------------------


def run(*args: str, root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TELELAKE_ROOT": str(root), "COLUMNS": "400"}
    return subprocess.run(
        [TELELAKE, "export", *args, "--root", str(root), "-q"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_cli_exports_and_reports_path_and_rows(ops_store: Path, tmp_path: Path) -> None:
    out = run(
        "alerts_timeline", "--schema", "search_ops", "--to", str(tmp_path / "x"), root=ops_store
    )
    assert out.returncode == 0, out.stderr
    files = list((tmp_path / "x").iterdir())
    assert len(files) == 1 and files[0].suffix == ".csv"
    assert f"exported {len(TRICKY)} rows of alerts_timeline" in out.stdout
    assert str(files[0]) in out.stdout.replace("\n", "")
    assert len(parse_rfc4180(files[0].read_bytes())) == len(TRICKY) + 1

    out = run("resource_samples", "--schema", "search_ops", "--format", "parquet", root=ops_store)
    assert out.returncode == 0, out.stderr
    (written,) = (ops_store / "exports").glob("resource_samples_*.parquet")
    assert pq.read_table(written).num_rows == len(FLOATS) + 1

    for args, message in (
        (("alerts_timeline", "--schema", "search_ops", "--format", "xml"), "unknown format 'xml'"),
        (("nope", "--schema", "search_ops"), "no table 'nope'"),
    ):
        out = run(*args, root=ops_store)
        assert out.returncode == 1
        assert message in out.stderr and "Traceback" not in out.stderr
