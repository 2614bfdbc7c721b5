"""Load a schema TOML file into the model, checking everything a mistake could break.

Errors name the file, the table and the column, so a user can fix a typo without
reading our source. Unknown keys are errors too: a misspelt option that is silently
ignored is the worst kind of bug in a data definition.
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from telelake.errors import SchemaError
from telelake.schema import types
from telelake.schema.model import (
    EPOCH_UNITS,
    TIERS,
    TIME_LEVELS,
    Column,
    Migration,
    ParquetLayout,
    Partitioning,
    Schema,
    SqlObject,
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

_SCHEMA_KEYS = {
    "name",
    "version",
    "description",
    "tables",
    "views",
    "macros",
    "queries",
    "migrations",
}
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
}
_COLUMN_KEYS = {"name", "type", "nullable", "description", "enum", "epoch_unit"}
_PARTITION_KEYS = {"time", "keys"}
_PARQUET_KEYS = {
    "file_prefix",
    "row_group_size",
    "compression",
    "compression_level",
    "dictionary",
    "sort",
}
_SQL_KEYS = {"sql", "file", "description", "engine", "params"}


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
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SchemaError(f"schema file {path}: not valid TOML: {exc}") from exc
    return parse_schema(data, path, text)


def parse_schema(data: dict[str, Any], path: Path, text: str = "") -> Schema:
    """Build and validate a Schema from the decoded TOML `data` of file `path`."""
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
    base = path.parent
    return Schema(
        name=name,
        version=version,
        description=str(data.get("description", "")),
        tables=tables,
        views=_parse_sql_objects(data.get("views", {}), "view", base, where),
        macros=_parse_sql_objects(data.get("macros", {}), "macro", base, where),
        queries=_parse_sql_objects(data.get("queries", {}), "query", base, where),
        migrations=_parse_migrations(data.get("migrations", {}), version, tables, where),
        source=path,
        text=text,
    )


def parse_table(name: str, data: Any, file_where: str) -> Table:
    where = f"{file_where}: table {name!r}"
    if not _IDENT.match(name):
        raise SchemaError(f"{where}: table names must be lower_snake_case")
    if not isinstance(data, dict):
        raise SchemaError(f"{where}: must be a table of settings")
    _no_unknown(data, _TABLE_KEYS, where)
    tier = data.get("tier", "lake")
    if tier not in TIERS:
        raise SchemaError(f"{where}: unknown tier {tier!r} (one of {', '.join(TIERS)})")
    raw_columns = data.get("columns")
    if not isinstance(raw_columns, list) or not raw_columns:
        raise SchemaError(f"{where}: needs a non-empty 'columns' list")
    columns: list[Column] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_columns):
        col = _parse_column(raw, f"{where}, column #{index + 1}")
        if col.name in seen:
            raise SchemaError(f"{where}, column {col.name!r}: duplicate column")
        seen.add(col.name)
        columns.append(col)

    key = tuple(_str_list(data.get("key", []), f"{where}: key"))
    for k in key:
        if k not in seen:
            raise SchemaError(f"{where}, column {k!r}: key column does not exist")
    time = data.get("time")
    if time is not None:
        if time not in seen:
            raise SchemaError(f"{where}, column {time!r}: time column does not exist")
        ttype = next(c.type.name for c in columns if c.name == time)
        if ttype not in ("timestamp", "date"):
            raise SchemaError(
                f"{where}, column {time!r}: time column must be timestamp or date, not {ttype}"
            )

    partition = _parse_partition(data.get("partition"), tier, time, where)
    parquet = None
    if tier == "lake":
        parquet = _parse_parquet(data.get("parquet", {}), name, seen, where)
    elif "parquet" in data:
        raise SchemaError(f"{where}: 'parquet' applies to lake tables only")
    retention = data.get("retention_days")
    if retention is not None and (
        isinstance(retention, bool) or not isinstance(retention, int) or retention <= 0
    ):
        raise SchemaError(f"{where}: retention_days must be a positive integer")
    fsync = data.get("fsync")
    if fsync is not None and fsync not in _FSYNC:
        raise SchemaError(f"{where}: fsync must be one of {', '.join(_FSYNC)}")
    return Table(
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


def _parse_column(raw: Any, where: str) -> Column:
    if not isinstance(raw, dict):
        raise SchemaError(f"{where}: must be a table like {{ name = ..., type = ... }}")
    name = _require(raw, "name", str, where)
    where = where.rsplit(", column", 1)[0] + f", column {name!r}"
    _no_unknown(raw, _COLUMN_KEYS, where)
    if not _IDENT.match(name):
        raise SchemaError(f"{where}: column names must be lower_snake_case")
    type_name = _require(raw, "type", str, where)
    ltype = types.resolve(type_name)
    if ltype is None:
        raise SchemaError(f"{where}: unknown type {type_name!r} (known: {', '.join(types.TYPES)})")
    nullable = raw.get("nullable", True)
    if not isinstance(nullable, bool):
        raise SchemaError(f"{where}: nullable must be true or false")
    enum = raw.get("enum")
    if enum is not None:
        if ltype.name != "string":
            raise SchemaError(f"{where}: enum is only allowed on string columns, not {ltype.name}")
        values = _str_list(enum, f"{where}: enum")
        if not values or len(set(values)) != len(values):
            raise SchemaError(f"{where}: enum must list distinct values")
        enum = tuple(values)
    unit = raw.get("epoch_unit")
    if unit is not None:
        if ltype.name != "timestamp":
            raise SchemaError(f"{where}: epoch_unit applies to timestamp columns only")
        if unit not in EPOCH_UNITS:
            raise SchemaError(f"{where}: epoch_unit must be one of {', '.join(EPOCH_UNITS)}")
    return Column(
        name=name,
        type=ltype,
        nullable=nullable,
        description=str(raw.get("description", "")),
        enum=enum,
        epoch_unit=unit,
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
        if not _IDENT.match(k) or k in TIME_LEVELS:
            raise SchemaError(f"{where}: partition key {k!r} is not a valid key name")
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
    return ParquetLayout(
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
    for name, body in raw.items():
        owhere = f"{where}: {kind} {name!r}"
        if not _IDENT.match(name):
            raise SchemaError(f"{owhere}: names must be lower_snake_case")
        if not isinstance(body, dict):
            raise SchemaError(f"{owhere}: must be a table with 'sql' or 'file'")
        _no_unknown(body, _SQL_KEYS, owhere)
        if ("sql" in body) == ("file" in body):
            raise SchemaError(f"{owhere}: give exactly one of 'sql' or 'file'")
        if "file" in body:
            file = base / str(body["file"])
            if not file.is_file():
                raise SchemaError(f"{owhere}: SQL file {file} does not exist")
            sql = file.read_text(encoding="utf-8")
        else:
            sql = str(body["sql"])
        engine = str(body.get("engine", "duckdb"))
        if engine not in ("duckdb", "sqlite", "postgres"):
            raise SchemaError(f"{owhere}: unknown engine {engine!r}")
        out[name] = SqlObject(
            name=name,
            sql=sql.strip(),
            description=str(body.get("description", "")),
            engine=engine,
            params=tuple(_str_list(body.get("params", []), f"{owhere}: params")),
        )
    return out


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


def _str_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SchemaError(f"{where}: must be a list of strings")
    return list(value)
