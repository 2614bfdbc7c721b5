"""The store's config file, `<root>/config.json`, in the shape of spec 000 §5.2.

    {"telemetry_retention": {"runs_days": 90, "proc_samples_days": 30,
                             "max_disk_gb": 10, "auto_compact": true, "backups_keep": 14}}

Every key is optional and overrides the schema's default: `<table>_days` the table's
`retention_days`, the others the schema's `[retention]` section (process_triage: spec
000 §5.2, so a store without this file has a 10 GB budget and auto_compact on).
`maintenance_interval` ("1h", "30m", or "off") says how often maintenance runs by itself.
Unknown keys are refused (a typo must not silently keep data forever).

A second section sets redaction for this store (see `telelake.redact.policy`):

    {"telemetry_redaction": {"enabled": true,
                             "columns": {"proc_samples.cmdline": "hash",
                                         "processes.cwd": "off"}}}

`enabled: false` stores every column as written; `columns` overrides the schema's policy
of a column with another policy or `off`.

`{"group_access": true}` makes the directories and files telelake creates in the store
0750 and 0640 (its group may read), instead of 0700 and 0600 (`telelake.durable`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from telelake.durations import parse_interval
from telelake.errors import StoreError
from telelake.limits import MAX_BACKUPS, MAX_DISK_GB, MAX_RETENTION_DAYS, range_problem
from telelake.schema.model import Schema

CONFIG_NAME = "config.json"
SECTION = "telemetry_retention"
REDACTION = "telemetry_redaction"
GROUP_ACCESS = "group_access"
SECTIONS = (SECTION, REDACTION, GROUP_ACCESS)  # the keys config.json may hold


DEFAULT_INTERVAL = dt.timedelta(hours=1)  # automatic maintenance, unless a setting says
CONFIG = CONFIG_NAME  # the source of a setting config.json gives
DEFAULT = "telelake default"  # the source of a setting nobody gives


@dataclass(frozen=True)
class Retention:
    """Retention settings of a store, and where each came from (`sources`)."""

    days: dict[str, int] = field(default_factory=dict)  # per table (absent: kept forever)
    max_disk_gb: float | None = None
    auto_compact: bool = False
    backups_keep: int | None = None  # `telelake backup` keeps this many (None: all)
    # How often maintenance runs by itself (None: never; `telelake maintain` still runs).
    maintenance_interval: dt.timedelta | None = DEFAULT_INTERVAL
    # Setting name (`max_disk_gb`, `<table>_days`, ...) -> "config.json", "schema <name>"
    # or "telelake default".
    sources: dict[str, str] = field(default_factory=dict)

    def source(self, setting: str) -> str:
        """Where `setting` came from."""
        return self.sources.get(setting, DEFAULT)


def parse_retention(data: Any, tables: Iterable[str], where: str) -> dict[str, Any]:
    """Validate the parsed JSON of a config file (pure; `where` names it in errors).

    Returns the settings it gives, by name (`max_disk_gb`, `<table>_days`, ...); null
    for `max_disk_gb`, `backups_keep` or `<table>_days` means none (no budget, every
    backup, kept forever).
    """
    _check_sections(data, where)
    section = data.get(SECTION, {})
    if not isinstance(section, dict):
        raise StoreError(f"{where}: {SECTION} must be an object")
    names = set(tables)
    out: dict[str, Any] = {}
    for key, value in section.items():
        at = f"{where}: {SECTION}.{key}"
        if key == "max_disk_gb":
            out[key] = None if value is None else float(_number(value, at, MAX_DISK_GB, "GB"))
        elif key == "auto_compact":
            if not isinstance(value, bool):
                raise StoreError(f"{at} must be true or false, not {value!r}")
            out[key] = value
        elif key == "backups_keep":
            out[key] = _number(value, at, MAX_BACKUPS, "backups", whole=True)
        elif key == "maintenance_interval":
            try:
                interval = parse_interval(value)
            except ValueError as exc:
                raise StoreError(f"{at}: {exc}") from None
            out[key] = interval or None  # "off": no automatic runs
        elif key.endswith("_days") and key[: -len("_days")] in names:
            out[key] = _number(value, at, MAX_RETENTION_DAYS, "days", whole=True)
        else:
            known = ", ".join(sorted(f"{t}_days" for t in names))
            raise StoreError(
                f"{at}: unknown key (known: {known}, max_disk_gb, auto_compact, "
                "maintenance_interval, backups_keep)"
            )
    return out


def _number(value: Any, at: str, most: int, unit: str, *, whole: bool = False) -> Any:
    """`value` if `limits.range_problem` finds none, else a StoreError naming it."""
    problem = range_problem(value, most, unit, whole=whole)
    if problem:
        raise StoreError(f"{at} {problem}")
    return value


def resolve_retention(schema: Schema, given: dict[str, Any]) -> Retention:
    """The settings in force: telelake's defaults, then the schema's (each table's
    `retention_days` and its `[retention]`), then `given` (config.json's)."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    by_schema = f"schema {schema.name}"
    for t in schema.tables.values():
        if t.retention_days is not None:
            values[f"{t.name}_days"] = t.retention_days
            sources[f"{t.name}_days"] = by_schema
    d = schema.retention
    declared: dict[str, Any] = {
        k: v
        for k, v in (
            ("max_disk_gb", d.max_disk_gb),
            ("auto_compact", d.auto_compact),
            ("backups_keep", d.backups_keep),
        )
        if v is not None
    }
    if d.maintenance_interval is not None:
        declared["maintenance_interval"] = d.maintenance_interval or None  # 0: "off"
    for key, value in declared.items():
        values[key] = value
        sources[key] = by_schema
    for key, value in given.items():
        values[key] = value
        sources[key] = CONFIG
    days = {t: values[f"{t}_days"] for t in schema.tables if values.get(f"{t}_days") is not None}
    return Retention(
        days=days,
        max_disk_gb=values.get("max_disk_gb"),
        auto_compact=bool(values.get("auto_compact", False)),
        backups_keep=values.get("backups_keep"),
        maintenance_interval=values.get("maintenance_interval", DEFAULT_INTERVAL),
        sources=sources,
    )


def _check_sections(data: Any, where: str) -> None:
    if not isinstance(data, dict):
        raise StoreError(f"{where}: expected a JSON object")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise StoreError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(SECTIONS)})")
    if not isinstance(data.get(GROUP_ACCESS, False), bool):
        raise StoreError(f"{where}: {GROUP_ACCESS} must be true or false")


@dataclass(frozen=True)
class Redaction:
    """Redaction settings of a store: on or off, and per-column overrides."""

    enabled: bool = True
    columns: dict[str, str] = field(default_factory=dict)  # "table.column" -> policy | "off"


def parse_redaction(data: Any, where: str) -> Redaction:
    """Validate the redaction section's shape (pure; the store checks the names)."""
    _check_sections(data, where)
    section = data.get(REDACTION, {})
    if not isinstance(section, dict):
        raise StoreError(f"{where}: {REDACTION} must be an object")
    unknown = sorted(set(section) - {"enabled", "columns"})
    if unknown:
        raise StoreError(
            f"{where}: {REDACTION}.{unknown[0]}: unknown key (known: enabled, columns)"
        )
    enabled = section.get("enabled", True)
    if not isinstance(enabled, bool):
        raise StoreError(f"{where}: {REDACTION}.enabled must be true or false")
    columns = section.get("columns", {})
    if not isinstance(columns, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in columns.items()
    ):
        raise StoreError(
            f'{where}: {REDACTION}.columns must map "table.column" to a policy or "off"'
        )
    return Redaction(enabled, dict(columns))


def _read(root: Path) -> tuple[Any, str] | None:
    """The parsed config file of the store at `root`, and its path; None if absent."""
    path = root / CONFIG_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        return json.loads(text), str(path)
    except json.JSONDecodeError as exc:
        raise StoreError(f"{path}: not valid JSON: {exc}") from exc


def load_retention(root: Path, schema: Schema) -> Retention:
    """The retention settings of the store at `root` holding `schema`: the schema's
    defaults, overridden by its config file if there is one."""
    found = _read(root)
    if found is None:
        return resolve_retention(schema, {})
    parse_redaction(*found)  # the whole file is checked, whichever part is asked for
    return resolve_retention(schema, parse_retention(found[0], schema.tables, found[1]))


def load_redaction(root: Path) -> Redaction:
    """The redaction settings of the store at `root` (defaults when there is no file)."""
    found = _read(root)
    return Redaction() if found is None else parse_redaction(*found)


def load_group_access(root: Path) -> bool:
    """Does the store at `root` give its group read access (`"group_access": true`)?"""
    found = _read(root)
    if found is None:
        return False
    data, where = found
    _check_sections(data, where)
    return bool(data.get(GROUP_ACCESS, False))
