"""Schema loading: the built-in process_triage schema against spec 000, and every SchemaError.

The spec's markdown is parsed here, independently of the package, so the built-in
schema.toml cannot drift from the spec without this file noticing.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given
from hypothesis import strategies as st

from telelake.errors import SchemaError
from telelake.schema import builtin_names, load_schema
from telelake.schema.load import parse_size
from telelake.schema.model import Param, Schema

# Verbatim excerpts of spec 000 (§2.1, §3, §5.1), kept with the tests.
SPEC_PATH = Path(__file__).resolve().parent / "fixtures" / "spec_000_excerpt.md"

SPEC_TABLES = ("runs", "proc_samples", "proc_features", "proc_inference", "outcomes", "audit")

# Spec spelling -> canonical logical type name.
SPEC_TYPES = {
    "STRING": "string",
    "INT32": "int32",
    "INT16": "int16",
    "INT8": "int8",
    "INT64": "int64",
    "FLOAT": "float32",
    "BOOLEAN": "bool",
    "TIMESTAMP_MICROS": "timestamp",
    "LIST<STRING>": "list<string>",
}

_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


# -- parsing the spec -----------------------------------------------------------------------


def _spec_text() -> str:
    return SPEC_PATH.read_text(encoding="utf-8")


def _section(text: str, heading_re: str) -> str:
    """The body of the markdown section whose heading matches `heading_re`."""
    m = re.search(heading_re, text, re.MULTILINE)
    assert m, f"spec has no heading matching {heading_re!r}"
    rest = text[m.end() :]
    nxt = re.search(r"^#{2,3} ", rest, re.MULTILINE)
    return rest[: nxt.start()] if nxt else rest


def _spec_size(text: str) -> int:
    m = re.fullmatch(r"(\d+)\s*(B|KB|MB|GB)", text.strip())
    assert m, f"cannot read spec size {text!r}"
    return int(m.group(1)) * _SIZE_UNITS[m.group(2)]


def _parse_spec_table(body: str) -> dict[str, Any]:
    # Rows look like: | `name` | `TYPE` | Yes | description (may contain '|') |
    row_re = re.compile(r"^\|\s*`([a-z0-9_]+)`\s*\|\s*`([A-Z0-9_<>]+)`\s*\|\s*(Yes|No)\s*\|", re.M)
    columns = [(n, SPEC_TYPES[t], null == "Yes") for n, t, null in row_re.findall(body)]
    # Every column row must have matched: none may be skipped by an odd spelling.
    assert len(columns) == len(re.findall(r"^\|\s*`", body, re.MULTILINE))
    meta: dict[str, Any] = {}
    for key, value in re.findall(r"^- ([A-Za-z ]+):\s*(.+?)\s*$", body, re.MULTILINE):
        meta[key.strip()] = value
    return {"columns": columns, "meta": meta}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    text = _spec_text()
    tables: dict[str, Any] = {}
    for number, name in enumerate(SPEC_TABLES, start=1):
        body = _section(text, rf"^### 3\.{number} {name} Table\s*$")
        tables[name] = _parse_spec_table(body)

    retention: dict[str, int] = {}
    body = _section(text, r"^### 5\.1 Per-Table Retention\s*$")
    for name, days in re.findall(r"^\|\s*`([a-z_]+)`\s*\|\s*(\d+) days\s*\|", body, re.M):
        retention[name] = int(days)

    # §2.1's directory tree: which tables sit under host_id=, and their file prefixes.
    tree = _section(text, r"^### 2\.1 Telemetry Lake Structure\s*$")
    layout: dict[str, dict[str, Any]] = {}
    current: str | None = None
    for line in tree.splitlines():
        if m := re.search(r"[├└]── ([a-z_]+)/\s*$", line):
            current = m.group(1) if m.group(1) in SPEC_TABLES else None
            if current:
                layout[current] = {"levels": [], "prefix": None}
        elif current and (m := re.search(r"([a-z_]+)=[^/]*/", line)):
            layout[current]["levels"] += re.findall(r"([a-z_]+)=[^/]*/", line)
        elif current and (m := re.search(r"([a-z]+)_<timestamp>\.parquet", line)):
            layout[current]["prefix"] = m.group(1)
    return {"tables": tables, "retention": retention, "layout": layout}


@pytest.fixture(scope="module")
def builtin() -> Schema:
    return load_schema("process_triage")


# -- the built-in schema equals the spec ----------------------------------------------------


def test_spec_parse_sanity(spec: dict[str, Any]) -> None:
    # Guard the regexes: if they silently matched nothing, the comparisons would be vacuous.
    counts = {name: len(t["columns"]) for name, t in spec["tables"].items()}
    assert all(n >= 10 for n in counts.values()), counts
    assert set(spec["retention"]) == set(SPEC_TABLES)
    assert set(spec["layout"]) == set(SPEC_TABLES)
    # The description of p_abandoned contains a '|' inside the cell; it must still parse.
    names = [c[0] for c in spec["tables"]["proc_inference"]["columns"]]
    assert "p_abandoned" in names and "log_bayes_factor" in names


def test_builtin_has_exactly_the_spec_tables(builtin: Schema) -> None:
    assert builtin.name == "process_triage"
    assert builtin.version == "1.0.0"
    assert sorted(builtin.tables) == sorted(SPEC_TABLES)


@pytest.mark.parametrize("name", SPEC_TABLES)
def test_builtin_columns_equal_spec(spec: dict[str, Any], builtin: Schema, name: str) -> None:
    expected = spec["tables"][name]["columns"]
    table = builtin.table(name)
    actual = [(c.name, c.type.name, c.nullable) for c in table.columns]
    assert actual == expected


@pytest.mark.parametrize("name", SPEC_TABLES)
def test_builtin_parquet_layout_equals_spec(
    spec: dict[str, Any], builtin: Schema, name: str
) -> None:
    meta = spec["tables"][name]["meta"]
    parquet = builtin.table(name).parquet
    assert parquet is not None
    assert builtin.table(name).tier == "lake"
    if name == "audit":
        # The spec gives no Parquet notes for audit: only check the choices are coherent.
        assert meta == {}
        assert parquet.compression == "zstd"
        assert parquet.compression_level == 3
        assert set(parquet.dictionary) <= set(builtin.table(name).column_names)
        assert parquet.sort == ()
        return
    assert parquet.row_group_bytes == _spec_size(meta["Row group size"])
    comp = re.fullmatch(r"(\w+) level (\d+)", meta["Compression"])
    assert comp, meta["Compression"]
    assert parquet.compression == comp.group(1)
    assert parquet.compression_level == int(comp.group(2))
    assert list(parquet.dictionary) == [s.strip() for s in meta["Dictionary encoding"].split(",")]
    expected_sort = [s.strip() for s in meta["Sorting"].split(",")] if "Sorting" in meta else []
    assert list(parquet.sort) == expected_sort


def test_builtin_row_group_sizes_literal(builtin: Schema) -> None:
    # The brief's numbers, independent of the spec parser.
    layouts = {n: builtin.table(n).parquet for n in SPEC_TABLES}
    sizes = {n: p.row_group_bytes for n, p in layouts.items() if p is not None}
    assert sizes == {
        "runs": 64 * 1024,
        "proc_samples": 1024 * 1024,
        "proc_features": 512 * 1024,
        "proc_inference": 512 * 1024,
        "outcomes": 256 * 1024,
        "audit": 256 * 1024,  # not in the spec: the schema's own documented choice
    }
    samples = layouts["proc_samples"]
    assert samples is not None and samples.sort == ("session_id", "sample_seq", "pid")


@pytest.mark.parametrize("name", SPEC_TABLES)
def test_builtin_retention_equals_spec(spec: dict[str, Any], builtin: Schema, name: str) -> None:
    assert builtin.table(name).retention_days == spec["retention"][name]


@pytest.mark.parametrize("name", SPEC_TABLES)
def test_builtin_partitioning_equals_spec(spec: dict[str, Any], builtin: Schema, name: str) -> None:
    table = builtin.table(name)
    layout = spec["layout"][name]
    assert list(table.partition.names) == layout["levels"]
    assert table.partition.time == ("year", "month", "day")
    expected_keys = () if name == "audit" else ("host_id",)
    assert table.partition.keys == expected_keys
    assert table.time is not None and table.column(table.time).type.name == "timestamp"
    assert table.parquet is not None and table.parquet.file_prefix == layout["prefix"]


# -- SchemaError cases ----------------------------------------------------------------------


def _base() -> dict[str, Any]:
    """A small valid schema; each error case mutates a copy."""
    return {
        "name": "demo",
        "version": "1.2.3",
        "tables": {
            "events": {
                "tier": "lake",
                "time": "ts",
                "key": ["id"],
                "partition": {"time": ["year", "month", "day"], "keys": ["host_id"]},
                "parquet": {
                    "row_group_size": "64KB",
                    "compression": "zstd",
                    "compression_level": 3,
                    "dictionary": ["kind"],
                    "sort": ["id"],
                },
                "columns": [
                    {"name": "id", "type": "string", "nullable": False},
                    {"name": "ts", "type": "timestamp", "nullable": False},
                    {"name": "kind", "type": "string", "enum": ["a", "b"]},
                    {"name": "n", "type": "int32"},
                    {"name": "on_day", "type": "date"},
                ],
            }
        },
        "queries": {"q": {"sql": "SELECT 1"}},
    }


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "schema.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def _events(d: dict[str, Any]) -> dict[str, Any]:
    return d["tables"]["events"]  # type: ignore[no-any-return]


def _col(d: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in _events(d)["columns"] if c["name"] == name)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation setting `value` at a dotted path; segment 'col:<name>' selects a column."""

    def mutate(d: dict[str, Any]) -> None:
        parts = path.split(".")
        node: Any = d
        for part in parts[:-1]:
            node = _col(d, part[4:]) if part.startswith("col:") else node[part]
        node[parts[-1]] = value

    return mutate


def _del(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        parts = path.split(".")
        node: Any = d
        for part in parts[:-1]:
            node = node[part]
        del node[parts[-1]]

    return mutate


def _add_column(col: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        _events(d)["columns"].append(col)

    return mutate


def _rename_table(new: str) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        d["tables"][new] = d["tables"].pop("events")

    return mutate


def _sql_tier(d: dict[str, Any]) -> None:
    ev = _events(d)
    ev["tier"] = "sql"
    del ev["partition"]


T = "table 'events'"

# (id, mutation, fragments the message must contain besides the file path)
ERROR_CASES: list[tuple[str, Callable[[dict[str, Any]], None], tuple[str, ...]]] = [
    ("missing-name", _del("name"), ("missing required setting 'name'",)),
    ("missing-version", _del("version"), ("missing required setting 'version'",)),
    ("version-not-semver", _set("version", "1.0"), ("'1.0'", "not semantic")),
    ("version-v-prefix", _set("version", "v1.0.0"), ("'v1.0.0'", "not semantic")),
    ("unknown-top-setting", _set("tabels", {}), ("unknown setting 'tabels'",)),
    (
        "unknown-table-setting",
        _set("tables.events.retention_day", 30),
        (T, "unknown setting 'retention_day'", "retention_days"),
    ),
    (
        "unknown-column-setting",
        _set("tables.events.col:n.nullabel", True),
        (T, "column 'n'", "unknown setting 'nullabel'"),
    ),
    (
        "unknown-type",
        _set("tables.events.col:n.type", "int128"),
        (T, "column 'n'", "unknown type 'int128'", "known:", "int64", "list<string>"),
    ),
    (
        "duplicate-column",
        _add_column({"name": "n", "type": "int64"}),
        (T, "column 'n'", "duplicate"),
    ),
    (
        "key-missing-column",
        _set("tables.events.key", ["id", "nope"]),
        (T, "column 'nope'", "key column does not exist"),
    ),
    (
        "time-missing-column",
        _set("tables.events.time", "when"),
        (T, "column 'when'", "time column does not exist"),
    ),
    (
        "time-not-timestamp",
        _set("tables.events.time", "n"),
        (T, "column 'n'", "must be timestamp, date or an integer with an epoch_unit", "int32"),
    ),
    (
        "enum-on-int",
        _set("tables.events.col:n.enum", ["1", "2"]),
        (T, "column 'n'", "enum of an integer column must list integers"),
    ),
    ("enum-empty", _set("tables.events.col:kind.enum", []), (T, "column 'kind'", "distinct")),
    (
        "enum-duplicate",
        _set("tables.events.col:kind.enum", ["a", "a"]),
        (T, "column 'kind'", "distinct"),
    ),
    (
        "enum-not-strings",
        _set("tables.events.col:kind.enum", [1, 2]),
        (T, "column 'kind'", "list of strings"),
    ),
    (
        "epoch-unit-on-string",
        _set("tables.events.col:kind.epoch_unit", "s"),
        (T, "column 'kind'", "epoch_unit applies to timestamp and integer columns only"),
    ),
    (
        "lake-time-epoch-int",
        lambda d: (
            _set("tables.events.col:n.epoch_unit", "ms")(d),
            _set("tables.events.time", "n")(d),
        ),
        (T, "column 'n'", "a lake table's time must be a timestamp"),
    ),
    (
        "epoch-unit-bad",
        _set("tables.events.col:ts.epoch_unit", "min"),
        (T, "column 'ts'", "epoch_unit must be one of", "s, ms, us, ns"),
    ),
    (
        "nullable-not-bool",
        _set("tables.events.col:n.nullable", "yes"),
        (T, "column 'n'", "nullable must be true or false"),
    ),
    (
        "row-group-zero",
        _set("tables.events.parquet.row_group_size", 0),
        (T, "row_group_size", "between 1 byte and 1GB"),
    ),
    (
        "row-group-negative",
        _set("tables.events.parquet.row_group_size", -5),
        (T, "row_group_size", "between 1 byte and 1GB"),
    ),
    (
        "row-group-words",
        _set("tables.events.parquet.row_group_size", "lots"),
        (T, "row_group_size", "not a size", "'lots'"),
    ),
    (
        "row-group-negative-text",
        _set("tables.events.parquet.row_group_size", "-5KB"),
        (T, "row_group_size", "not a size"),
    ),
    (
        "row-group-over-1gb",
        _set("tables.events.parquet.row_group_size", (1 << 30) + 1),
        (T, "row_group_size", "between 1 byte and 1GB"),
    ),
    (
        "row-group-2gb-text",
        _set("tables.events.parquet.row_group_size", "2GB"),
        (T, "row_group_size", "between 1 byte and 1GB"),
    ),
    (
        "row-group-bool",
        _set("tables.events.parquet.row_group_size", True),
        (T, "row_group_size", "not a size"),
    ),
    (
        "row-group-float",
        _set("tables.events.parquet.row_group_size", 65536.0),
        (T, "row_group_size", "not a size"),
    ),
    (
        "unknown-compression",
        _set("tables.events.parquet.compression", "zip"),
        (T, "unknown compression 'zip'", "zstd", "snappy"),
    ),
    (
        "zstd-level-too-high",
        _set("tables.events.parquet.compression_level", 23),
        (T, "compression_level for zstd must be in 1..22"),
    ),
    (
        "zstd-level-zero",
        _set("tables.events.parquet.compression_level", 0),
        (T, "compression_level for zstd must be in 1..22"),
    ),
    (
        "gzip-level-too-high",
        _set("tables.events.parquet", {"compression": "gzip", "compression_level": 10}),
        (T, "compression_level for gzip must be in 1..9"),
    ),
    (
        "snappy-with-level",
        _set("tables.events.parquet", {"compression": "snappy", "compression_level": 1}),
        (T, "snappy takes no compression_level"),
    ),
    (
        "dictionary-missing-column",
        _set("tables.events.parquet.dictionary", ["kind", "ghost"]),
        (T, "column 'ghost'", "parquet.dictionary names no column"),
    ),
    (
        "sort-missing-column",
        _set("tables.events.parquet.sort", ["ghost"]),
        (T, "column 'ghost'", "parquet.sort names no column"),
    ),
    (
        "unknown-parquet-setting",
        _set("tables.events.parquet.row_group_bytes", 10),
        (T, "parquet", "unknown setting 'row_group_bytes'"),
    ),
    (
        "bad-file-prefix",
        _set("tables.events.parquet.file_prefix", "Bad-Prefix"),
        (T, "file_prefix must be lower_snake_case"),
    ),
    (
        "partition-month-only",
        _set("tables.events.partition.time", ["month"]),
        (T, "partition.time must be a prefix of", "['month']"),
    ),
    (
        "partition-year-day",
        _set("tables.events.partition.time", ["year", "day"]),
        (T, "partition.time must be a prefix of", "['year', 'day']"),
    ),
    (
        "partition-key-is-time-level",
        _set("tables.events.partition.keys", ["month"]),
        (T, "partition key 'month' is not a valid key name"),
    ),
    (
        "partition-key-bad-ident",
        _set("tables.events.partition.keys", ["Host-Id"]),
        (T, "partition key 'Host-Id' is not a valid key name"),
    ),
    (
        "partition-key-repeat",
        _set("tables.events.partition.keys", ["host_id", "host_id"]),
        (T, "partition keys repeat"),
    ),
    (
        "partition-time-without-time-column",
        _del("tables.events.time"),
        (T, "time partitioning needs a 'time' column"),
    ),
    (
        "unknown-partition-setting",
        _set("tables.events.partition.level", ["year"]),
        (T, "partition", "unknown setting 'level'"),
    ),
    ("parquet-on-sql-tier", _sql_tier, (T, "'parquet' applies to lake tables only")),
    ("unknown-tier", _set("tables.events.tier", "warehouse"), (T, "unknown tier 'warehouse'")),
    (
        "retention-zero",
        _set("tables.events.retention_days", 0),
        (T, "retention_days must be a positive whole number of days"),
    ),
    (
        "retention-text",
        _set("tables.events.retention_days", "30"),
        (T, "retention_days must be a positive whole number of days"),
    ),
    ("no-tables", _set("tables", {}), ("needs at least one [tables.<name>] section",)),
    ("empty-columns", _set("tables.events.columns", []), (T, "non-empty 'columns' list")),
    (
        "query-sql-and-file",
        _set("queries.q", {"sql": "SELECT 1", "file": "q.sql"}),
        ("query 'q'", "exactly one of 'sql' or 'file'"),
    ),
    ("query-neither", _set("queries.q", {"description": "x"}), ("query 'q'", "exactly one of")),
    (
        "query-file-missing",
        _set("queries.q", {"file": "queries/missing.sql"}),
        ("query 'q'", "missing.sql", "does not exist"),
    ),
    (
        "query-unknown-engine",
        _set("queries.q", {"sql": "SELECT 1", "engine": "oracle"}),
        ("query 'q'", "unknown engine 'oracle'"),
    ),
    (
        "query-unknown-setting",
        _set("queries.q", {"sql": "SELECT 1", "params_": []}),
        ("query 'q'", "unknown setting 'params_'"),
    ),
    (
        "query-bad-name",
        _set("queries", {"Bad": {"sql": "SELECT 1"}}),
        ("query 'Bad'", "lower_snake_case"),
    ),
    (
        "view-unknown-engine",
        _set("views", {"v": {"sql": "SELECT 1", "engine": "mysql"}}),
        ("view 'v'", "unknown engine 'mysql'"),
    ),
    ("schema-name-bad", _set("name", "Demo"), ("name 'Demo'", "lower_snake_case")),
    ("table-name-bad", _rename_table("Runs"), ("table 'Runs'", "lower_snake_case")),
    (
        "column-name-bad",
        _add_column({"name": "bad-name", "type": "string"}),
        (T, "column 'bad-name'", "lower_snake_case"),
    ),
    (
        "column-missing-type",
        _add_column({"name": "untyped"}),
        (T, "column 'untyped'", "missing required setting 'type'"),
    ),
    (
        "column-missing-name",
        _add_column({"type": "string"}),
        (T, "column #6", "missing required setting 'name'"),
    ),
    # Issue 19: names the store keeps for itself, refused with the reason.
    *(
        (
            f"table-{name}",
            _rename_table(name),
            (f"table {name!r}", "may not start with '_'", "_wal"),
        )
        for name in ("_x", "_wal", "_metadata")
    ),
    (
        "file-prefix-underscore",
        _set("tables.events.parquet.file_prefix", "_x"),
        (T, "file_prefix may not start with '_'", "hidden"),
    ),
    (
        "column-internal-name",
        _add_column({"name": "__tl_at", "type": "int64"}),
        (T, "column '__tl_at'", "reserved"),
    ),
    *(
        (
            f"column-named-{level}",
            _add_column({"name": level, "type": "int32"}),
            (T, f"column {level!r}", f"partitioned by {level}", "rename"),
        )
        for level in ("year", "month", "day")
    ),
    (
        "retention-days-too-long",
        _set("tables.events.retention_days", 365_001),
        (T, "retention_days must be a positive whole number of days up to 365000"),
    ),
    (
        "retention-max-disk-gb-nan",
        _set("retention", {"max_disk_gb": float("nan")}),
        ("[retention]: max_disk_gb must be a positive number of GB up to", "not nan"),
    ),
    (
        "retention-interval-too-long",
        _set("retention", {"maintenance_interval": "99999999999d"}),
        ("[retention]: maintenance_interval", "too long"),
    ),
    (
        "key-nullable",
        _set(
            "tables.events.columns",
            [
                {"name": "id", "type": "string"},
                {"name": "ts", "type": "timestamp", "nullable": False},
                {"name": "kind", "type": "string"},
            ],
        ),
        (T, "column 'id'", "key column must be nullable = false", "NULL key"),
    ),
]


@pytest.mark.parametrize(
    ("mutate", "fragments"),
    [pytest.param(m, f, id=i) for i, m, f in ERROR_CASES],
)
def test_schema_errors(
    tmp_path: Path, mutate: Callable[[dict[str, Any]], None], fragments: tuple[str, ...]
) -> None:
    data = copy.deepcopy(_base())
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(SchemaError) as excinfo:
        load_schema(path)
    message = str(excinfo.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_base_schema_is_valid(tmp_path: Path) -> None:
    # The error cases only mean something if the unmutated base loads.
    (tmp_path / "queries").mkdir()
    (tmp_path / "queries" / "top.sql").write_text("  SELECT 2  \n", encoding="utf-8")
    data = _base()
    data["queries"]["top"] = {"file": "queries/top.sql", "engine": "duckdb", "params": ["n"]}
    path = _write(tmp_path, data)
    schema = load_schema(path)
    events = schema.table("events")
    assert schema.source == path
    assert schema.major == 1
    assert events.column_names == ("id", "ts", "kind", "n", "on_day")
    assert events.column("kind").enum == ("a", "b")
    assert events.partition.names == ("year", "month", "day", "host_id")
    assert events.virtual_keys == ("host_id",)
    assert events.parquet is not None
    assert events.parquet.row_group_bytes == 65536
    assert events.parquet.file_prefix == "events"
    assert schema.queries["top"].sql == "SELECT 2"
    assert schema.queries["top"].params == (Param("n"),)
    assert schema.queries["q"].sql == "SELECT 1"


def test_defaults(tmp_path: Path) -> None:
    data = {
        "name": "mini",
        "version": "0.1.0",
        "tables": {
            "t": {"time": "ts", "columns": [{"name": "ts", "type": "TIMESTAMP_MICROS"}]},
            "kv": {"tier": "sql", "columns": [{"name": "k", "type": "TEXT"}]},
        },
    }
    schema = load_schema(_write(tmp_path, data))
    t = schema.table("t")
    assert t.tier == "lake"
    assert t.partition.time == ("year", "month", "day") and t.partition.keys == ()
    assert t.parquet is not None
    assert (t.parquet.row_group_bytes, t.parquet.compression) == (1 << 20, "zstd")
    assert t.parquet.compression_level == 3
    assert t.column("ts").nullable is True
    kv = schema.table("kv")
    assert kv.parquet is None and kv.partition.names == ()
    assert kv.column("k").type.name == "string"


def test_invalid_toml_names_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('name = "demo"\nversion = \n[tables.x\n', encoding="utf-8")
    with pytest.raises(SchemaError, match="not valid TOML") as excinfo:
        load_schema(path)
    assert str(path) in str(excinfo.value)


def test_missing_file_names_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(SchemaError, match="no such file") as excinfo:
        load_schema(path)
    assert str(path) in str(excinfo.value)


def test_unknown_builtin_lists_builtins() -> None:
    assert "process_triage" in builtin_names()
    with pytest.raises(SchemaError) as excinfo:
        load_schema("no_such_schema")
    message = str(excinfo.value)
    assert "'no_such_schema'" in message
    for name in builtin_names():
        assert name in message


def test_builtin_by_path_equals_builtin_by_name(builtin: Schema) -> None:
    assert builtin.source is not None
    by_path = load_schema(builtin.source)
    assert by_path.tables == builtin.tables
    assert set(by_path.queries) == set(builtin.queries) and by_path.macros == builtin.macros


# -- bugs found -----------------------------------------------------------------------------


def test_a_column_named_like_an_unused_time_level_is_fine(tmp_path: Path) -> None:
    data = _base()
    _events(data)["partition"]["time"] = ["year", "month"]
    _events(data)["columns"].append({"name": "day", "type": "int32"})
    assert "day" in load_schema(_write(tmp_path, data)).table("events").column_names


@pytest.mark.parametrize("where", ["query", "migrations"])
@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_a_schema_cannot_name_a_file_outside_its_folder(
    tmp_path: Path, where: str, how: str
) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "passwd").write_text("SELECT 'root:x:0:0'", encoding="utf-8")
    folder = tmp_path / "schema"
    folder.mkdir()
    target = secret / "passwd" if where == "query" else secret
    if how == "symlink":
        (folder / "link").symlink_to(target)
        named = "link"
    else:
        named = str(target) if how == "absolute" else f"../secret{'/passwd' * (where == 'query')}"
    data = _base()
    if where == "query":
        data["queries"]["leak"] = {"file": named}
    else:
        data["tables"]["kv"] = {"tier": "sql", "columns": [{"name": "k", "type": "string"}]}
        data["sql"] = {"migrations": named}
    path = folder / "schema.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    with pytest.raises(SchemaError, match="leaves the schema's folder") as excinfo:
        load_schema(path)
    assert str(path) in str(excinfo.value) and repr(named) in str(excinfo.value)


def test_a_file_inside_a_subfolder_is_read(tmp_path: Path) -> None:
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "a.sql").write_text("SELECT 3", encoding="utf-8")
    data = _base()
    data["queries"]["a"] = {"file": "q/../q/a.sql"}  # `..` that stays inside is fine
    assert load_schema(_write(tmp_path, data)).queries["a"].sql == "SELECT 3"


def test_a_binary_schema_or_sql_file_is_a_schema_error(tmp_path: Path) -> None:
    path = tmp_path / "schema.toml"
    path.write_bytes(b'name = "x"\n\xff\xfe\x00binary')
    with pytest.raises(SchemaError, match="not UTF-8 text") as excinfo:
        load_schema(path)
    assert str(path) in str(excinfo.value)
    (tmp_path / "bin.sql").write_bytes(b"SELECT \xff")
    data = _base()
    data["queries"]["b"] = {"file": "bin.sql"}
    with pytest.raises(SchemaError, match="not UTF-8 text") as excinfo:
        load_schema(_write(tmp_path, data))
    assert "query 'b'" in str(excinfo.value) and "bin.sql" in str(excinfo.value)


def test_compression_level_bool_refused(tmp_path: Path) -> None:
    data = _base()
    _events(data)["parquet"]["compression_level"] = True
    with pytest.raises(SchemaError, match="compression_level"):
        load_schema(_write(tmp_path, data))


def test_retention_days_bool_refused(tmp_path: Path) -> None:
    data = _base()
    _events(data)["retention_days"] = True
    with pytest.raises(SchemaError, match="retention_days"):
        load_schema(_write(tmp_path, data))


@pytest.mark.parametrize("text", ["5iB", "5i", "5ib"])
def test_parse_size_unit_without_prefix_is_schema_error(text: str) -> None:
    with pytest.raises(SchemaError, match="not a size"):
        parse_size(text, "here")


# -- parse_size -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (65536, 65536),
        ("65536", 65536),
        ("64KB", 65536),
        ("64 KiB", 65536),
        ("64kb", 65536),
        ("64K", 65536),
        ("1MB", 1 << 20),
        ("1mb", 1 << 20),
        ("1 MiB", 1 << 20),
        ("1GB", 1 << 30),
        ("512B", 512),
        (" 2 kb ", 2048),
    ],
)
def test_parse_size_accepts(value: Any, expected: int) -> None:
    assert parse_size(value, "here") == expected


@pytest.mark.parametrize("value", [0, -1, "0KB", True, False, 1.5, "lots", "", "1 TB", None])
def test_parse_size_refuses(value: Any) -> None:
    with pytest.raises(SchemaError) as excinfo:
        parse_size(value, "the-where")
    assert str(excinfo.value).startswith("the-where: ")


@given(n=st.integers(min_value=1, max_value=2**30), unit=st.sampled_from(["B", "KB", "MB"]))
def test_parse_size_property(n: int, unit: str) -> None:
    factor = _SIZE_UNITS[unit]
    if n * factor <= 2**30:
        assert parse_size(f"{n}{unit}", "w") == n * factor
        assert parse_size(f"{n} {unit.lower()}", "w") == n * factor
    else:
        with pytest.raises(SchemaError, match="between 1 byte and 1GB"):
            parse_size(f"{n}{unit}", "w")
