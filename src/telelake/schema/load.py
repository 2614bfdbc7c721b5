"""Load a schema TOML file into the model, checking everything a mistake could break.

Errors name the file, the table and the column, so a user can fix a typo without
reading our source. Unknown keys are errors too: a misspelt option that is silently
ignored is the worst kind of bug in a data definition.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from telelake.durations import parse_age, parse_interval
from telelake.errors import SchemaError
from telelake.limits import MAX_BACKUPS, MAX_DISK_GB, MAX_RETENTION_DAYS, range_problem
from telelake.redact.policy import JSON_KINDS, parse_policy
from telelake.schema import types
from telelake.schema.model import (
    EPOCH_UNITS,
    FK_ACTIONS,
    TIERS,
    TIME_LEVELS,
    WRITE_MODES,
    Aggregate,
    Column,
    Derivation,
    Index,
    LogRecord,
    LogSettings,
    Migration,
    Param,
    ParquetLayout,
    Partitioning,
    RetentionDefaults,
    Rollup,
    Schema,
    SqlObject,
    SqlSettings,
    Table,
)

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
_SEMVER = re.compile(r"^\d+\.\d+\.\d+$")
_SIZE = re.compile(r"^\s*(\d+)\s*(?:([kmg])i?)?b?\s*$", re.IGNORECASE)
_COMPRESSIONS = {
    "zstd": (1, 22),
    "gzip": (1, 9),
    "brotli": (0, 11),
    "snappy": None,
    "lz4": None,
    "none": None,
}
_MAX_ROW_GROUP = 1 << 30
# Why store names may not start with "_": the store keeps its own folders under such
# names, and Parquet readers skip files and folders named so (as hidden).
_UNDERSCORE = (
    "the store's own folders are named so (_metadata, _wal) and readers skip files "
    "and folders named so as hidden"
)
# Column names that start so are telelake's own (`__tl_at`, the WAL's write order).
_INTERNAL_PREFIX = "__"

_SCHEMA_KEYS = {
    "name",
    "version",
    "description",
    "tables",
    "views",
    "macros",
    "queries",
    "migrations",
    "rollups",
    "sql",
    "directories",
    "log",
    "retention",
    "default_root",
}
_RETENTION_KEYS = {"max_disk_gb", "auto_compact", "maintenance_interval", "backups_keep"}
_FSYNC = ("always", "batch", "interval", "off")
_TABLE_KEYS = {
    "fsync",
    "description",
    "tier",
    "columns",
    "key",
    "time",
    "partition",
    "parquet",
    "retention_days",
    "lookup",
}
_SQL_TABLE_KEYS = {
    "write",
    "version_column",
    "keep_on_update",
    "unique",
    "indexes",
    "retention_where",
}
_TABLE_KEYS |= _SQL_TABLE_KEYS
_COLUMN_KEYS = {
    "name",
    "type",
    "nullable",
    "description",
    "enum",
    "epoch_unit",
    "references",
    "on_delete",
    "autoincrement",
    "redact",
    "derive",
}
_SQL_COLUMN_KEYS = {"references", "on_delete", "autoincrement"}
_PARTITION_KEYS = {"time", "keys"}
_PARQUET_KEYS = {
    "file_prefix",
    "row_group_size",
    "compression",
    "compression_level",
    "dictionary",
    "sort",
    "session_column",
}
_SQL_KEYS = {"sql", "file", "description", "engine", "params", "ranges"}
_ROLLUP_KEYS = {"source", "time", "group", "windows", "window_column", "start_column", "aggregates"}
_AGGREGATE = re.compile(
    r"^\s*(count|sum|min|max|avg|p(\d{1,2}(?:\.\d+)?))\s*\(\s*(\*|[a-z_][a-z0-9_]*)\s*\)\s*$"
)


def builtin_names() -> list[str]:
    """Names of the schemas that ship inside the package."""
    root = resources.files("telelake") / "schemas"
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "schema.toml").is_file())


def builtin_path(name: str) -> Path:
    """The schema.toml of the built-in schema `name`."""
    return Path(str(resources.files("telelake") / "schemas" / name / "schema.toml"))


def load_schema(name_or_path: str | Path) -> Schema:
    """Load a built-in schema by name, or a user's schema from a TOML path."""
    text_name = str(name_or_path)
    if isinstance(name_or_path, Path) or text_name.endswith(".toml") or "/" in text_name:
        path = Path(name_or_path)
        if not path.is_file():
            raise SchemaError(f"schema file {path}: no such file")
    else:
        if text_name not in builtin_names():
            raise SchemaError(
                f"unknown schema {text_name!r}: built-in schemas are "
                f"{', '.join(builtin_names())}, or give a path to a .toml file"
            )
        path = builtin_path(text_name)
    return load_schema_text(_read_text(path, f"schema file {path}"), path)


def _read_text(path: Path, where: str) -> str:
    """The UTF-8 text of a schema's file, or a SchemaError saying why it has none."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SchemaError(
            f"{where}: not UTF-8 text (byte {exc.start}); a schema and its SQL files are text"
        ) from None
    except OSError as exc:
        raise SchemaError(f"{where}: cannot read: {exc.strerror}") from None


def load_schema_text(text: str, path: Path, *, base: Path | None = None) -> Schema:
    """Load the schema TOML `text` of file `path`; the SQL files and folders it names
    are looked up under `base` (default: the file's folder)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SchemaError(f"schema file {path}: not valid TOML: {exc}") from exc
    return parse_schema(data, path, text, base=base)


def parse_schema(
    data: dict[str, Any], path: Path, text: str = "", *, base: Path | None = None
) -> Schema:
    """Build and validate a Schema from the decoded TOML `data` of file `path` (SQL
    files it names are under `base`, by default the file's folder)."""
    where = f"schema file {path}"
    _no_unknown(data, _SCHEMA_KEYS, where)
    name = _require(data, "name", str, where)
    if not _IDENT.match(name):
        raise SchemaError(f"{where}: name {name!r} must be lower_snake_case")
    version = _require(data, "version", str, where)
    if not _SEMVER.match(version):
        raise SchemaError(f"{where}: version {version!r} is not semantic (MAJOR.MINOR.PATCH)")
    raw_tables = data.get("tables", {})
    if not isinstance(raw_tables, dict) or not raw_tables:
        raise SchemaError(f"{where}: needs at least one [tables.<name>] section")
    tables = {tname: parse_table(tname, tdata, where) for tname, tdata in raw_tables.items()}
    base = path.parent if base is None else base
    _check_references(tables, where)
    return Schema(
        name=name,
        version=version,
        description=str(data.get("description", "")),
        tables=tables,
        views=_parse_sql_objects(data.get("views", {}), "view", base, where),
        macros=_parse_sql_objects(data.get("macros", {}), "macro", base, where),
        queries=_parse_sql_objects(data.get("queries", {}), "query", base, where),
        migrations=_parse_migrations(data.get("migrations", {}), version, tables, where),
        rollups=_parse_rollups(data.get("rollups", {}), tables, where),
        log=_parse_log(data.get("log"), tables, where),
        directories=tuple(
            _relative(d, f"{where}: directories")
            for d in _str_list(data.get("directories", []), f"{where}: directories")
        ),
        sql_settings=_parse_sql_settings(data.get("sql"), base, tables, where),
        retention=_parse_retention(data.get("retention"), where),
        default_root=_parse_default_root(data.get("default_root"), where),
        source=path,
        text=text,
    )


def parse_table(name: str, data: Any, file_where: str) -> Table:
    where = f"{file_where}: table {name!r}"
    if not _IDENT.match(name):
        raise SchemaError(f"{where}: table names must be lower_snake_case")
    if name.startswith("_"):
        raise SchemaError(f"{where}: table names may not start with '_' ({_UNDERSCORE})")
    if not isinstance(data, dict):
        raise SchemaError(f"{where}: must be a table of settings")
    _no_unknown(data, _TABLE_KEYS, where)
    tier = data.get("tier", "lake")
    if tier not in TIERS:
        raise SchemaError(f"{where}: unknown tier {tier!r} (one of {', '.join(TIERS)})")
    lake_options = {"write"} if tier == "lake" else set()
    if tier != "sql":
        for option in sorted((_SQL_TABLE_KEYS - lake_options) & set(data)):
            raise SchemaError(f"{where}: {option!r} applies to sql tables only")
    raw_columns = data.get("columns")
    if not isinstance(raw_columns, list) or not raw_columns:
        raise SchemaError(f"{where}: needs a non-empty 'columns' list")
    columns: list[Column] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_columns):
        col = _parse_column(raw, f"{where}, column #{index + 1}", tier)
        if col.name in seen:
            raise SchemaError(f"{where}, column {col.name!r}: duplicate column")
        seen.add(col.name)
        columns.append(col)
    _check_derived(columns, where)

    key = tuple(_str_list(data.get("key", []), f"{where}: key"))
    for k in key:
        if k not in seen:
            raise SchemaError(f"{where}, column {k!r}: key column does not exist")
        # (A sql table's key refuses NULL values when rows are written, as SQLite
        # would store them: its columns keep the nullability of the spec's DDL.)
        if tier == "lake" and next(c for c in columns if c.name == k).nullable:
            raise SchemaError(
                f"{where}, column {k!r}: a key column must be nullable = false (rows "
                "with a NULL key would all count as one key)"
            )
    time = data.get("time")
    if time is not None:
        if time not in seen:
            raise SchemaError(f"{where}, column {time!r}: time column does not exist")
        tcol = next(c for c in columns if c.name == time)
        epoch_int = types.is_integer(tcol.type) and tcol.epoch_unit is not None
        if tcol.type.name not in ("timestamp", "date") and not epoch_int:
            raise SchemaError(
                f"{where}, column {time!r}: time column must be timestamp, date or an "
                f"integer with an epoch_unit, not {tcol.type.name}"
            )
        if epoch_int and tier == "lake":
            raise SchemaError(f"{where}, column {time!r}: a lake table's time must be a timestamp")

    partition = _parse_partition(data.get("partition"), tier, time, where)
    for level in partition.time:
        if level in seen:
            raise SchemaError(
                f"{where}, column {level!r}: the table is partitioned by {level}, so a "
                f"column of that name would read back the folder's {level}, not its value; "
                "rename the column"
            )
    parquet = None
    if tier == "lake":
        parquet = _parse_parquet(data.get("parquet", {}), name, seen, where)
        session = parquet.session_column
        if (
            session is not None
            and next(c for c in columns if c.name == session).type.name != "string"
        ):
            raise SchemaError(
                f"{where}, column {session!r}: parquet.session_column must be a string"
            )
    elif "parquet" in data:
        raise SchemaError(f"{where}: 'parquet' applies to lake tables only")
    retention = data.get("retention_days")
    problem = range_problem(retention, MAX_RETENTION_DAYS, "days", whole=True)
    if problem:
        raise SchemaError(f"{where}: retention_days {problem} (leave it out: kept forever)")
    fsync = data.get("fsync")
    if fsync is not None and fsync not in _FSYNC:
        raise SchemaError(f"{where}: fsync must be one of {', '.join(_FSYNC)}")
    if tier == "sql":
        sql_options = _parse_sql_table(data, columns, key, where)
    elif tier == "lake":
        sql_options = {"write": _lake_write_mode(data, key, where)}
    else:
        sql_options = {}
    lookup = _parse_lookup(data, tier, columns, partition, where)
    return Table(
        **sql_options,
        lookup=lookup,
        fsync=fsync,
        name=name,
        columns=tuple(columns),
        tier=tier,
        description=str(data.get("description", "")),
        key=key,
        time=time,
        partition=partition,
        parquet=parquet,
        retention_days=retention,
    )


def _parse_lookup(
    data: dict[str, Any], tier: str, columns: list[Column], partition: Partitioning, where: str
) -> tuple[str, ...]:
    """`lookup = ["session_id"]`: string columns a query may name values of."""
    if "lookup" not in data:
        return ()
    if tier != "lake":
        raise SchemaError(f"{where}: 'lookup' applies to lake tables only")
    names = _str_list(data["lookup"], f"{where}: lookup")
    by_name = {c.name: c for c in columns}
    for name in names:
        col = by_name.get(name)
        at = f"{where}, column {name!r}: lookup"
        if col is None:
            raise SchemaError(f"{at} names no column")
        if col.type.name != "string":
            raise SchemaError(f"{at} columns must be strings, not {col.type.name}")
        if name in partition.names:
            raise SchemaError(f"{at}: a partition column prunes by its directories already")
    if len(set(names)) != len(names):
        raise SchemaError(f"{where}: lookup lists a column twice")
    return tuple(names)


def _parse_column(raw: Any, where: str, tier: str = "lake") -> Column:
    if not isinstance(raw, dict):
        raise SchemaError(f"{where}: must be a table like {{ name = ..., type = ... }}")
    name = _require(raw, "name", str, where)
    where = where.rsplit(", column", 1)[0] + f", column {name!r}"
    _no_unknown(raw, _COLUMN_KEYS, where)
    if not _IDENT.match(name):
        raise SchemaError(f"{where}: column names must be lower_snake_case")
    if name.startswith(_INTERNAL_PREFIX):
        raise SchemaError(
            f"{where}: column names starting with {_INTERNAL_PREFIX!r} are reserved for "
            "telelake's own bookkeeping columns"
        )
    type_name = _require(raw, "type", str, where)
    ltype = types.resolve(type_name)
    if ltype is None:
        raise SchemaError(f"{where}: unknown type {type_name!r} (known: {', '.join(types.TYPES)})")
    nullable = raw.get("nullable", True)
    if not isinstance(nullable, bool):
        raise SchemaError(f"{where}: nullable must be true or false")
    enum = raw.get("enum")
    if enum is not None:
        if ltype.name == "string":
            values: list[Any] = _str_list(enum, f"{where}: enum")
        elif types.is_integer(ltype):
            if not isinstance(enum, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in enum
            ):
                raise SchemaError(f"{where}: enum of an integer column must list integers")
            values = list(enum)
        else:
            raise SchemaError(
                f"{where}: enum is only allowed on string and integer columns, not {ltype.name}"
            )
        if not values or len(set(values)) != len(values):
            raise SchemaError(f"{where}: enum must list distinct values")
        enum = tuple(values)
    unit = raw.get("epoch_unit")
    if unit is not None:
        if ltype.name != "timestamp" and not types.is_integer(ltype):
            raise SchemaError(f"{where}: epoch_unit applies to timestamp and integer columns only")
        if unit not in EPOCH_UNITS:
            raise SchemaError(f"{where}: epoch_unit must be one of {', '.join(EPOCH_UNITS)}")
    if tier != "sql":
        for option in sorted(_SQL_COLUMN_KEYS & set(raw)):
            raise SchemaError(f"{where}: {option!r} applies to sql tables only")
    references = raw.get("references")
    if references is not None and (
        not isinstance(references, str)
        or not re.fullmatch(r"[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*", references)
    ):
        raise SchemaError(f'{where}: references must look like "table.column"')
    on_delete = raw.get("on_delete")
    if on_delete is not None:
        if references is None:
            raise SchemaError(f"{where}: on_delete needs references")
        if not isinstance(on_delete, str) or on_delete.lower() not in FK_ACTIONS:
            raise SchemaError(f"{where}: on_delete must be one of {', '.join(FK_ACTIONS)}")
        on_delete = on_delete.lower()
    autoincrement = raw.get("autoincrement", False)
    if not isinstance(autoincrement, bool):
        raise SchemaError(f"{where}: autoincrement must be true or false")
    if autoincrement and ltype.name != "int64":
        raise SchemaError(f"{where}: autoincrement needs an int64 column")
    redact = None
    if "redact" in raw:
        if ltype.name not in ("string", "json"):
            raise SchemaError(f"{where}: redact applies to string and json columns only")
        try:
            redact = parse_policy(raw["redact"])
        except ValueError as exc:
            raise SchemaError(f"{where}: {exc}") from None
        if ltype.name == "json" and redact.kind not in JSON_KINDS:
            raise SchemaError(f"{where}: a json column takes redact = {' or '.join(JSON_KINDS)}")
    return Column(
        name=name,
        type=ltype,
        nullable=nullable,
        description=str(raw.get("description", "")),
        enum=enum,
        epoch_unit=unit,
        references=references,
        on_delete=on_delete,
        autoincrement=autoincrement,
        redact=redact,
        derive=_parse_derive(raw["derive"], where) if "derive" in raw else None,
    )


def _lake_write_mode(data: dict[str, Any], key: tuple[str, ...], where: str) -> str:
    """How a lake table's write meets an existing key: "ignore" (the first write of a
    key is kept: retries never duplicate it) or "upsert" (the last write wins)."""
    write = data.get("write", "ignore" if key else "insert")
    if write not in WRITE_MODES:
        raise SchemaError(f"{where}: write must be one of {', '.join(WRITE_MODES)}")
    if key and write == "insert":
        raise SchemaError(
            f'{where}: a lake table with a key takes write = "ignore" or "upsert" '
            "(its key always keeps one row per key)"
        )
    if write != "insert" and not key:
        raise SchemaError(f"{where}: write = {write!r} needs a key")
    return str(write)


def _parse_derive(raw: Any, where: str) -> Derivation:
    """`derive = "<function>:<source column>"` (the source is checked by the table)."""
    from telelake.derive import FUNCTIONS as DERIVE_FUNCTIONS  # (derive imports the model)

    known = ", ".join(sorted(DERIVE_FUNCTIONS))
    shape = f'derive must look like "<function>:<column>" (functions: {known})'
    if not isinstance(raw, str) or raw.count(":") != 1:
        raise SchemaError(f"{where}: {shape}, not {raw!r}")
    function, source = (part.strip() for part in raw.split(":"))
    if function not in DERIVE_FUNCTIONS:
        raise SchemaError(f"{where}: derive: unknown function {function!r} (known: {known})")
    if not _IDENT.match(source):
        raise SchemaError(f"{where}: {shape}, not {raw!r}")
    return Derivation(function, source)


def _check_derived(columns: list[Column], where: str) -> None:
    """A derived column is a nullable string computed from another string column."""
    by_name = {c.name: c for c in columns}
    for col in columns:
        if col.derive is None:
            continue
        at = f"{where}, column {col.name!r}: derive = {str(col.derive)!r}"
        source = by_name.get(col.derive.source)
        if source is None:
            raise SchemaError(f"{at}: the table has no column {col.derive.source!r}")
        if source is col:
            raise SchemaError(f"{at}: a column cannot be derived from itself")
        if source.derive is not None:
            raise SchemaError(f"{at}: {source.name!r} is derived itself; derive from its source")
        if col.type.name != "string":
            raise SchemaError(f"{at}: a derived column must be a string, not {col.type.name}")
        if source.type.name != "string":
            raise SchemaError(
                f"{at}: {col.derive.function} takes a string column, "
                f"{source.name!r} is {source.type.name}"
            )
        if not col.nullable:
            raise SchemaError(f"{at}: a derived column must be nullable (a null source gives null)")


def _parse_sql_table(
    data: dict[str, Any], columns: list[Column], key: tuple[str, ...], where: str
) -> dict[str, Any]:
    """The sql-only settings of a table: write mode, uniques, indexes."""
    names = {c.name for c in columns}

    def known(cols: list[str], what: str) -> tuple[str, ...]:
        for c in cols:
            if c not in names:
                raise SchemaError(f"{where}, column {c!r}: {what} names no column")
        return tuple(cols)

    auto = [c.name for c in columns if c.autoincrement]
    if auto and key != (auto[0],):
        raise SchemaError(f"{where}, column {auto[0]!r}: autoincrement must be the whole key")
    unique = tuple(
        known(_str_list(u, f"{where}: unique"), "unique")
        for u in _list(data.get("unique", []), f"{where}: unique")
    )
    default_mode = "ignore" if (key and not auto) or unique else "insert"
    write = data.get("write", default_mode)
    if write not in WRITE_MODES:
        raise SchemaError(f"{where}: write must be one of {', '.join(WRITE_MODES)}")
    if write != "insert" and not ((key and not auto) or unique):
        raise SchemaError(f"{where}: write = {write!r} needs a key or a unique constraint")
    version = data.get("version_column")
    if version is not None:
        if write != "upsert":
            raise SchemaError(f'{where}: version_column applies to write = "upsert" only')
        known([str(version)], "version_column")
    keep = known(
        _str_list(data.get("keep_on_update", []), f"{where}: keep_on_update"), "keep_on_update"
    )
    raw_indexes = data.get("indexes", {})
    if not isinstance(raw_indexes, dict):
        raise SchemaError(f"{where}: indexes must be a table of index name = {{ columns = [...] }}")
    indexes = []
    shape = "{ columns = [...], where = ... }"
    for iname, body, iwhere in _sections(
        raw_indexes, "index", where, {"columns", "where", "unique"}, shape
    ):
        cols = []
        for spec in _str_list(body.get("columns", []), f"{iwhere}: columns"):
            parts = spec.split()
            if len(parts) not in (1, 2) or (
                len(parts) == 2 and parts[1].upper() not in ("ASC", "DESC")
            ):
                raise SchemaError(f"{iwhere}: {spec!r} is not 'column' or 'column DESC'")
            known([parts[0]], f"index {iname!r}")
            cols.append((parts[0], len(parts) == 2 and parts[1].upper() == "DESC"))
        if not cols:
            raise SchemaError(f"{iwhere}: needs at least one column")
        cond = body.get("where")
        if cond is not None and not isinstance(cond, str):
            raise SchemaError(f"{iwhere}: where must be SQL text")
        indexes.append(Index(iname, tuple(cols), cond, bool(body.get("unique", False))))
    cond = data.get("retention_where")
    if cond is not None and not isinstance(cond, str):
        raise SchemaError(f"{where}: retention_where must be SQL text")
    return {
        "write": write,
        "version_column": version,
        "keep_on_update": keep,
        "unique": unique,
        "indexes": tuple(indexes),
        "retention_where": cond,
    }


def _check_references(tables: dict[str, Table], where: str) -> None:
    """Every `references` names a column of a sql table of this schema."""
    for t in tables.values():
        for c in t.columns:
            if c.references is None:
                continue
            target, column = c.references.split(".")
            other = tables.get(target)
            if other is None or other.tier != "sql" or not other.has_column(column):
                raise SchemaError(
                    f"{where}: table {t.name!r}, column {c.name!r}: references "
                    f"{c.references}, which is no column of a sql table here"
                )


def _parse_partition(raw: Any, tier: str, time: str | None, where: str) -> Partitioning:
    if raw is None:
        levels: tuple[str, ...] = ("year", "month", "day") if (tier == "lake" and time) else ()
        return Partitioning(time=levels, keys=())
    if tier != "lake":
        raise SchemaError(f"{where}: 'partition' applies to lake tables only")
    if not isinstance(raw, dict):
        raise SchemaError(f"{where}: partition must be a table {{ time = [...], keys = [...] }}")
    _no_unknown(raw, _PARTITION_KEYS, f"{where}: partition")
    levels = tuple(_str_list(raw.get("time", []), f"{where}: partition.time"))
    if levels != TIME_LEVELS[: len(levels)]:
        raise SchemaError(
            f"{where}: partition.time must be a prefix of {list(TIME_LEVELS)}, got {list(levels)}"
        )
    if levels and time is None:
        raise SchemaError(f"{where}: time partitioning needs a 'time' column")
    keys = tuple(_str_list(raw.get("keys", []), f"{where}: partition.keys"))
    for k in keys:
        if not _IDENT.match(k) or k in TIME_LEVELS or k.startswith(_INTERNAL_PREFIX):
            raise SchemaError(
                f"{where}: partition key {k!r} is not a valid key name (lower_snake_case, "
                f"not a time level, not starting with {_INTERNAL_PREFIX!r})"
            )
    if len(set(keys)) != len(keys):
        raise SchemaError(f"{where}: partition keys repeat")
    return Partitioning(time=levels, keys=keys)


def _parse_parquet(raw: Any, table: str, columns: set[str], where: str) -> ParquetLayout:
    if not isinstance(raw, dict):
        raise SchemaError(f"{where}: parquet must be a table of settings")
    pwhere = f"{where}: parquet"
    _no_unknown(raw, _PARQUET_KEYS, pwhere)
    size = parse_size(raw.get("row_group_size", "1MB"), f"{pwhere}.row_group_size")
    compression = str(raw.get("compression", "zstd")).lower()
    if compression not in _COMPRESSIONS:
        raise SchemaError(
            f"{pwhere}: unknown compression {compression!r} (one of {', '.join(_COMPRESSIONS)})"
        )
    level = raw.get("compression_level", 3 if compression == "zstd" else None)
    bounds = _COMPRESSIONS[compression]
    if level is not None:
        if bounds is None:
            raise SchemaError(f"{pwhere}: {compression} takes no compression_level")
        if (
            isinstance(level, bool)
            or not isinstance(level, int)
            or not (bounds[0] <= level <= bounds[1])
        ):
            raise SchemaError(
                f"{pwhere}: compression_level for {compression} must be in {bounds[0]}..{bounds[1]}"
            )
    lists = {}
    for option in ("dictionary", "sort"):
        names = _str_list(raw.get(option, []), f"{pwhere}.{option}")
        for col in names:
            if col not in columns:
                raise SchemaError(f"{where}, column {col!r}: parquet.{option} names no column")
        lists[option] = tuple(names)
    prefix = raw.get("file_prefix", table)
    if not isinstance(prefix, str) or not _IDENT.match(prefix):
        raise SchemaError(f"{pwhere}: file_prefix must be lower_snake_case")
    if prefix.startswith("_"):
        raise SchemaError(f"{pwhere}: file_prefix may not start with '_' ({_UNDERSCORE})")
    session = raw.get("session_column")
    if session is not None and (not isinstance(session, str) or session not in columns):
        raise SchemaError(f"{where}, column {session!r}: parquet.session_column names no column")
    return ParquetLayout(
        session_column=session,
        file_prefix=prefix,
        row_group_bytes=size,
        compression=compression,
        compression_level=level,
        dictionary=lists["dictionary"],
        sort=lists["sort"],
    )


def parse_size(value: Any, where: str) -> int:
    """Parse a byte size such as 65536, "64KB" or "1 MiB" (units are powers of 1024)."""
    if isinstance(value, bool):
        raise SchemaError(f"{where}: not a size: {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        unit = (m.group(2) or "").lower()
        size = int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit]
    else:
        raise SchemaError(f'{where}: not a size: {value!r} (use e.g. 65536 or "64KB")')
    if not 0 < size <= _MAX_ROW_GROUP:
        raise SchemaError(f"{where}: {value!r} must be between 1 byte and 1GB")
    return size


def _parse_sql_objects(raw: Any, kind: str, base: Path, where: str) -> dict[str, SqlObject]:
    if not isinstance(raw, dict):
        raise SchemaError(f"{where}: [{kind}s] must be a table")
    out: dict[str, SqlObject] = {}
    for name, body, owhere in _sections(
        raw, kind, where, _SQL_KEYS, "a table with 'sql' or 'file'"
    ):
        if ("sql" in body) == ("file" in body):
            raise SchemaError(f"{owhere}: give exactly one of 'sql' or 'file'")
        if "file" in body:
            file = _inside(base, body["file"], f"{owhere}: file")
            if not file.is_file():
                raise SchemaError(f"{owhere}: SQL file {file} does not exist")
            sql = _read_text(file, f"{owhere}: SQL file {file}")
        else:
            sql = str(body["sql"])
        engine = str(body.get("engine", "duckdb"))
        if engine not in ("duckdb", "sqlite", "postgres"):
            raise SchemaError(f"{owhere}: unknown engine {engine!r}")
        params = _parse_params(body.get("params", []), f"{owhere}: params")
        names = {p.name for p in params}
        ranges = []
        for pair in _list(body.get("ranges", []), f"{owhere}: ranges"):
            low_high = _str_list(pair, f"{owhere}: ranges")
            if len(low_high) != 2 or not set(low_high) <= names:
                raise SchemaError(f"{owhere}: each range is [low, high] of declared params")
            ranges.append((low_high[0], low_high[1]))
        out[name] = SqlObject(
            name=name,
            sql=sql.strip(),
            description=str(body.get("description", "")),
            engine=engine,
            params=params,
            ranges=tuple(ranges),
        )
    return out


def _parse_params(raw: Any, where: str) -> tuple[Param, ...]:
    """Query parameters: names, or tables `{ name, type, enum }`."""
    out = []
    for item in _list(raw, where):
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict):
            raise SchemaError(f"{where}: each parameter is a name or {{ name, type, enum }}")
        _no_unknown(item, {"name", "type", "enum"}, where)
        name = _require(item, "name", str, where)
        ltype = None
        if "type" in item:
            ltype = types.resolve(str(item["type"]))
            if ltype is None:
                raise SchemaError(f"{where}: parameter {name!r}: unknown type {item['type']!r}")
        enum = item.get("enum")
        out.append(
            Param(name, ltype, tuple(_str_list(enum, f"{where}: {name}.enum")) if enum else None)
        )
    return tuple(out)


def _parse_rollups(raw: Any, tables: dict[str, Table], where: str) -> dict[str, Rollup]:
    """`[rollups.<target>]`: a source table aggregated into the sql table <target>."""
    if not isinstance(raw, dict):
        raise SchemaError(f"{where}: [rollups] must be a table")
    out: dict[str, Rollup] = {}
    for name, body in raw.items():
        rwhere = f"{where}: rollup {name!r}"
        if not isinstance(body, dict):
            raise SchemaError(f"{rwhere}: must be a table")
        _no_unknown(body, _ROLLUP_KEYS, rwhere)
        target = tables.get(name)
        if target is None or target.tier != "sql":
            raise SchemaError(f"{rwhere}: its rows need a sql table called {name!r}")
        source_name = _require(body, "source", str, rwhere)
        source = tables.get(source_name)
        if source is None:
            raise SchemaError(f"{rwhere}: source {source_name!r} is no table of this schema")
        if source.tier == "log" or source.write == "upsert":
            # Upserts would change rows already counted.
            raise SchemaError(
                f"{rwhere}: source {source_name!r} must be a lake or sql table "
                'written with write = "insert" or "ignore", not an NDJSON log or an upsert table'
            )
        time = str(body.get("time", source.time or ""))
        if not source.has_column(time) or not (
            (source.column(time).epoch_unit == "ms" and types.is_integer(source.column(time).type))
            or source.column(time).type.name == "timestamp"
        ):
            raise SchemaError(
                f"{rwhere}: time {time!r} must be a timestamp column of {source_name!r} or "
                'an integer one holding epoch milliseconds (epoch_unit = "ms")'
            )
        group = tuple(_str_list(body.get("group", []), f"{rwhere}: group"))
        windows = []
        for label in _str_list(body.get("windows", []), f"{rwhere}: windows"):
            try:
                ms = int(parse_age(label).total_seconds() * 1000)
            except ValueError as exc:
                raise SchemaError(f"{rwhere}: window {exc}") from None
            windows.append((label, ms))
        if not windows:
            raise SchemaError(f"{rwhere}: needs at least one window")
        window_column = str(body.get("window_column", "window"))
        start_column = str(body.get("start_column", "window_start_ms"))
        raw_aggs = body.get("aggregates", {})
        if not isinstance(raw_aggs, dict) or not raw_aggs:
            raise SchemaError(f'{rwhere}: aggregates must map output columns to e.g. "p95(x)"')
        aggregates = []
        for output, text in raw_aggs.items():
            m = _AGGREGATE.match(str(text))
            if m is None:
                raise SchemaError(
                    f"{rwhere}: aggregate {output!r} = {text!r}: use count(*), count(x), "
                    "sum(x), min(x), max(x), avg(x) or pNN(x)"
                )
            func, pct, arg = m.group(1), m.group(2), m.group(3)
            column = None if arg == "*" else arg
            if column is not None and not source.has_column(column):
                raise SchemaError(
                    f"{rwhere}: aggregate {output!r}: {source_name!r} has no {column!r}"
                )
            if column is None and func != "count":
                raise SchemaError(f"{rwhere}: aggregate {output!r}: only count takes *")
            q = None
            if pct is not None:
                q = float(pct) / 100
                if not 0 < q < 1:
                    raise SchemaError(f"{rwhere}: aggregate {output!r}: pNN needs 0 < NN < 100")
                func = "quantile"
            aggregates.append(Aggregate(output, func, column, q))
        wanted = [*group, window_column, start_column, *(a.output for a in aggregates)]
        for col in wanted:
            if not target.has_column(col):
                raise SchemaError(f"{rwhere}: table {name!r} has no column {col!r}")
        for col in group:
            if not source.has_column(col):
                raise SchemaError(f"{rwhere}: group column {col!r} is not in {source_name!r}")
        if set(target.key) != {*group, window_column, start_column}:
            raise SchemaError(
                f"{rwhere}: table {name!r} must be keyed by its group, window and start columns"
            )
        out[name] = Rollup(
            name=name,
            source=source_name,
            time=time,
            group=group,
            windows=tuple(sorted(windows, key=lambda w: w[1])),
            window_column=window_column,
            start_column=start_column,
            aggregates=tuple(aggregates),
        )
    return out


def _parse_log(raw: Any, tables: dict[str, Table], where: str) -> LogSettings | None:
    """`[log]`: the NDJSON raw log's folder and file prefix, and `[log.records.<type>]`."""
    logged = [t.name for t in tables.values() if t.tier == "log"]
    if raw is None:
        if logged:
            raise SchemaError(f"{where}: table {logged[0]!r} is a log table but there is no [log]")
        return None
    lwhere = f"{where}: [log]"
    if not isinstance(raw, dict):
        raise SchemaError(f"{lwhere} must be a table")
    _no_unknown(raw, {"directory", "prefix", "fsync", "records"}, lwhere)
    directory = _relative(str(raw.get("directory", "raw")), f"{lwhere} directory")
    prefix = str(raw.get("prefix", "events"))
    if not _IDENT.match(prefix):
        raise SchemaError(f"{lwhere}: prefix must be lower_snake_case")
    fsync = raw.get("fsync", True)
    if not isinstance(fsync, bool):
        raise SchemaError(f"{lwhere}: fsync must be true or false")
    records: dict[str, LogRecord] = {}
    for record_type, body in dict(raw.get("records", {})).items():
        rwhere = f"{lwhere} record {record_type!r}"
        if not isinstance(body, dict):
            raise SchemaError(f"{rwhere}: must be {{ table = ..., replay_into = ... }}")
        _no_unknown(body, {"table", "replay_into", "defaults", "defaults_from"}, rwhere)
        table = tables.get(str(body.get("table")))
        if table is None or table.tier not in ("log", "sql"):
            raise SchemaError(f"{rwhere}: table must name a log or sql table of this schema")
        replay = body.get("replay_into", table.name if table.tier == "sql" else None)
        defaults: dict[str, Any] = {}
        defaults_from: dict[str, tuple[str, ...]] = {}
        if replay is not None:
            target = tables.get(str(replay))
            if target is None or target.tier != "sql":
                raise SchemaError(f"{rwhere}: replay_into must name a sql table")
            missing = [
                c.name
                for c in target.columns
                if not c.nullable and not c.autoincrement and not table.has_column(c.name)
            ]
            if missing:
                raise SchemaError(f"{rwhere}: {table.name!r} lacks {missing[0]!r} of {replay!r}")
            defaults, defaults_from = _parse_replay_defaults(body, target, rwhere)
        elif "defaults" in body or "defaults_from" in body:
            raise SchemaError(f"{rwhere}: defaults apply to replayed records; add replay_into")
        records[record_type] = LogRecord(record_type, table.name, replay, defaults, defaults_from)
    unlogged = [t for t in logged if not any(r.table == t for r in records.values())]
    if unlogged:
        raise SchemaError(f"{lwhere}: log table {unlogged[0]!r} has no record type")
    return LogSettings(directory, prefix, fsync, records)


def _parse_replay_defaults(
    body: dict[str, Any], target: Table, where: str
) -> tuple[dict[str, Any], dict[str, tuple[str, ...]]]:
    """`defaults = { col = value }` and `defaults_from = { col = ["other", ...] }` of a
    record type: how a replayed line that leaves a column out (or null) fills it."""
    from telelake.validate import value_problem  # validate imports the model, not load

    raw = body.get("defaults", {})
    if not isinstance(raw, dict):
        raise SchemaError(f"{where}: defaults must be a table {{ column = value }}")
    defaults: dict[str, Any] = {}
    for name, value in raw.items():
        if not target.has_column(name):
            raise SchemaError(f"{where}: defaults: {target.name!r} has no column {name!r}")
        problem = value_problem(target.column(name), value)
        if problem is not None or value is None:
            raise SchemaError(f"{where}: defaults: column {name!r}: {problem or 'null'}")
        defaults[name] = value
    raw_from = body.get("defaults_from", {})
    if not isinstance(raw_from, dict):
        raise SchemaError(f"{where}: defaults_from must be a table {{ column = [columns] }}")
    defaults_from: dict[str, tuple[str, ...]] = {}
    for name, sources in raw_from.items():
        sources = [sources] if isinstance(sources, str) else sources
        if not target.has_column(name) or name in defaults:
            raise SchemaError(
                f"{where}: defaults_from: {name!r} must be a column of {target.name!r} "
                "without a value in defaults"
            )
        if not isinstance(sources, list) or not sources:
            raise SchemaError(f"{where}: defaults_from: {name!r} needs a list of columns")
        for source in sources:
            if not isinstance(source, str) or not target.has_column(source):
                raise SchemaError(
                    f"{where}: defaults_from: {name!r}: {target.name!r} has no column {source!r}"
                )
            if target.column(source).type.name != target.column(name).type.name:
                raise SchemaError(
                    f"{where}: defaults_from: {name!r} and {source!r} have different types"
                )
        defaults_from[name] = tuple(sources)
    return defaults, defaults_from


def _parse_sql_settings(raw: Any, base: Path, tables: dict[str, Table], where: str) -> SqlSettings:
    """`[sql]`: the database file name, the migrations table and folder."""
    if raw is None:
        return SqlSettings()
    if not isinstance(raw, dict):
        raise SchemaError(f"{where}: [sql] must be a table")
    swhere = f"{where}: [sql]"
    _no_unknown(
        raw,
        {
            "database",
            "migrations_table",
            "migrations",
            "busy_timeout_ms",
            "export_ddl",
            "schema_versions",
        },
        swhere,
    )
    database = _relative(str(raw.get("database", SqlSettings.database)), f"{swhere}: database")
    export = raw.get("export_ddl")
    if export is not None:
        export = _relative(str(export), f"{swhere}: export_ddl")
    busy = raw.get("busy_timeout_ms", SqlSettings.busy_timeout_ms)
    if isinstance(busy, bool) or not isinstance(busy, int) or busy < 0:
        raise SchemaError(f"{swhere}: busy_timeout_ms must be a whole number of milliseconds")
    table = str(raw.get("migrations_table", SqlSettings.migrations_table))
    if not _IDENT.match(table) or table in tables:
        raise SchemaError(
            f"{swhere}: migrations_table {table!r} must be a free lower_snake_case name"
        )
    folder = None
    if "migrations" in raw:
        folder = _inside(base, raw["migrations"], f"{swhere}: migrations")
        if not folder.is_dir():
            raise SchemaError(f"{swhere}: migrations folder {folder} does not exist")
    versions: dict[int, int] = {}
    raw_versions = raw.get("schema_versions", {})
    if not isinstance(raw_versions, dict):
        raise SchemaError(f"{swhere}: schema_versions must be a table {{ migration = version }}")
    for key, value in raw_versions.items():
        if not str(key).isdigit() or int(key) < 1:
            raise SchemaError(f"{swhere}: schema_versions: {key!r} is not a migration version")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SchemaError(
                f"{swhere}: schema_versions: migration {key} needs a whole version >= 1, "
                f"not {value!r}"
            )
        versions[int(key)] = value
    return SqlSettings(database, table, folder, busy, export, dict(sorted(versions.items())))


def _parse_retention(raw: Any, where: str) -> RetentionDefaults:
    """`[retention]`: the schema's defaults for the store-wide settings of config.json."""
    if raw is None:
        return RetentionDefaults()
    rwhere = f"{where}: [retention]"
    if not isinstance(raw, dict):
        raise SchemaError(f"{rwhere} must be a table")
    _no_unknown(raw, _RETENTION_KEYS, rwhere)
    gb, keep = raw.get("max_disk_gb"), raw.get("backups_keep")
    for key, problem in (
        ("max_disk_gb", range_problem(gb, MAX_DISK_GB, "GB")),
        ("backups_keep", range_problem(keep, MAX_BACKUPS, "backups", whole=True)),
    ):
        if problem:
            raise SchemaError(f"{rwhere}: {key} {problem}")
    auto = raw.get("auto_compact")
    if auto is not None and not isinstance(auto, bool):
        raise SchemaError(f"{rwhere}: auto_compact must be true or false, not {auto!r}")
    interval = None
    if "maintenance_interval" in raw:
        try:
            interval = parse_interval(raw["maintenance_interval"])
        except ValueError as exc:
            raise SchemaError(f"{rwhere}: maintenance_interval: {exc}") from None
    return RetentionDefaults(
        max_disk_gb=None if gb is None else float(gb),
        auto_compact=auto,
        maintenance_interval=interval,
        backups_keep=keep,
    )


def _parse_default_root(raw: Any, where: str) -> str | None:
    """`default_root`: the store's folder under the user data directory."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise SchemaError(f"{where}: default_root must be a string")
    return _relative(raw, f"{where}: default_root")


def _parse_migrations(
    raw: Any, version: str, tables: dict[str, Table], where: str
) -> dict[int, Migration]:
    """`[migrations.from_1]` sections: description and `tables.<name> = "SELECT ..."`."""
    if not isinstance(raw, dict):
        raise SchemaError(f"{where}: [migrations] must be a table")
    major = int(version.split(".")[0])
    out: dict[int, Migration] = {}
    for name, body in raw.items():
        mwhere = f"{where}: migration {name!r}"
        match = re.fullmatch(r"from_(\d+)", name)
        if match is None:
            raise SchemaError(f"{mwhere}: name it from_<old major version>, e.g. from_1")
        old_major = int(match.group(1))
        if old_major >= major:
            raise SchemaError(f"{mwhere}: must come from a major version below {major}")
        if not isinstance(body, dict):
            raise SchemaError(f"{mwhere}: must be a table")
        _no_unknown(body, {"description", "tables"}, mwhere)
        sqls = body.get("tables", {})
        if not isinstance(sqls, dict) or not all(isinstance(v, str) for v in sqls.values()):
            raise SchemaError(f"{mwhere}: tables must map table names to SELECT statements")
        unknown = sorted(set(sqls) - set(tables))
        if unknown:
            raise SchemaError(f"{mwhere}: no table {unknown[0]!r} in this schema")
        out[old_major] = Migration(old_major, str(body.get("description", "")), dict(sqls))
    return out


def _sections(
    raw: dict[str, Any], kind: str, where: str, allowed: set[str], shape: str
) -> Iterator[tuple[str, dict[str, Any], str]]:
    """Named sub-tables (`[queries.<name>]`, `indexes.<name>`): checked names and keys."""
    for name, body in raw.items():
        at = f"{where}: {kind} {name!r}"
        if not _IDENT.match(name):
            raise SchemaError(f"{at}: names must be lower_snake_case")
        if not isinstance(body, dict):
            raise SchemaError(f"{at}: must be {shape}")
        _no_unknown(body, allowed, at)
        yield name, body, at


def _no_unknown(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SchemaError(
            f"{where}: unknown setting {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})"
        )


def _require(data: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in data:
        raise SchemaError(f"{where}: missing required setting {key!r}")
    value = data[key]
    if not isinstance(value, kind):
        raise SchemaError(f"{where}: {key!r} must be a {kind.__name__}")
    return value


def _relative(path: str, where: str) -> str:
    """A path inside the store: relative, no `..`, no hidden parts."""
    parts = path.split("/")
    if path.startswith("/") or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise SchemaError(
            f"{where} must be a relative path inside the store, like "
            f'"ops.db" or "db/telemetry.sqlite", got {path!r}'
        )
    return path


def _inside(base: Path, raw: Any, where: str) -> Path:
    """`base / raw` for a path a schema names (an SQL file, its migrations folder): it
    must stay inside the schema's folder, even through symbolic links, so a schema
    cannot make telelake read a file of the system."""
    if not isinstance(raw, str) or not raw:
        raise SchemaError(f"{where}: must be a path relative to the schema's folder")
    path = base / raw
    root = base.resolve()
    if Path(raw).is_absolute() or not path.resolve().is_relative_to(root):
        raise SchemaError(
            f"{where}: {raw!r} leaves the schema's folder {base}; files a schema "
            "names must be inside it"
        )
    return path


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise SchemaError(f"{where}: must be a list")
    return value


def _str_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SchemaError(f"{where}: must be a list of strings")
    return list(value)
