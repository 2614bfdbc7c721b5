"""The store's config file, `<root>/config.json`, in the shape of spec 000 §5.2.

    {"telemetry_retention": {"runs_days": 90, "proc_samples_days": 30,
                             "max_disk_gb": 10, "auto_compact": true, "backups_keep": 14}}

Every key is optional; `<table>_days` overrides the table's `retention_days` from the
schema. Unknown keys are refused (a typo must not silently keep data forever).

A second section sets redaction for this store (see `telelake.redact.policy`):

    {"telemetry_redaction": {"enabled": true,
                             "columns": {"proc_samples.cmdline": "hash",
                                         "processes.cwd": "off"}}}

`enabled: false` stores every column as written; `columns` overrides the schema's policy
of a column with another policy or `off`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from telelake.errors import StoreError

CONFIG_NAME = "config.json"
SECTION = "telemetry_retention"
REDACTION = "telemetry_redaction"
SECTIONS = (SECTION, REDACTION)


@dataclass(frozen=True)
class Retention:
    """Retention settings of a store."""

    days: dict[str, int] = field(default_factory=dict)  # per-table overrides
    max_disk_gb: float | None = None
    auto_compact: bool = False
    backups_keep: int | None = None  # `telelake backup` keeps this many (None: all)


def parse_retention(data: Any, tables: Iterable[str], where: str) -> Retention:
    """Validate the parsed JSON of a config file (pure; `where` names it in errors)."""
    _check_sections(data, where)
    section = data.get(SECTION, {})
    if not isinstance(section, dict):
        raise StoreError(f"{where}: {SECTION} must be an object")
    names = set(tables)
    days: dict[str, int] = {}
    max_disk_gb: float | None = None
    auto_compact = False
    backups_keep: int | None = None
    for key, value in section.items():
        at = f"{where}: {SECTION}.{key}"
        if key == "max_disk_gb":
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise StoreError(f"{at} must be a positive number of GB")
            max_disk_gb = float(value)
        elif key == "auto_compact":
            if not isinstance(value, bool):
                raise StoreError(f"{at} must be true or false")
            auto_compact = value
        elif key == "backups_keep":
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise StoreError(f"{at} must be a positive whole number of backups")
            backups_keep = value
        elif key.endswith("_days") and key[: -len("_days")] in names:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise StoreError(f"{at} must be a positive whole number of days")
            days[key[: -len("_days")]] = value
        else:
            known = ", ".join(sorted(f"{t}_days" for t in names))
            raise StoreError(
                f"{at}: unknown key (known: {known}, max_disk_gb, auto_compact, backups_keep)"
            )
    return Retention(days, max_disk_gb, auto_compact, backups_keep)


def _check_sections(data: Any, where: str) -> None:
    if not isinstance(data, dict):
        raise StoreError(f"{where}: expected a JSON object")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise StoreError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(SECTIONS)})")


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


def load_retention(root: Path, tables: Iterable[str]) -> Retention:
    """The retention settings of the store at `root` (defaults when there is no file)."""
    found = _read(root)
    return Retention() if found is None else parse_retention(found[0], tables, found[1])


def load_redaction(root: Path) -> Redaction:
    """The redaction settings of the store at `root` (defaults when there is no file)."""
    found = _read(root)
    return Redaction() if found is None else parse_redaction(*found)
