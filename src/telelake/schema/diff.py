"""What changed between two versions of a schema's tables, and whether it breaks (spec 000 §4.3).

Additive (a minor version): a new table, a new nullable column, a non-null column made
nullable. Breaking (a major version): a removed table or column, a changed type, a new or
tightened required column, a changed time column, key or partitioning. Pure functions.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from telelake.schema.load import parse_table
from telelake.schema.model import Table


@dataclass(frozen=True)
class Change:
    """One difference between the old and the new tables."""

    table: str
    column: str | None
    breaking: bool
    text: str

    def __str__(self) -> str:
        where = f"table {self.table!r}" + (f" column {self.column!r}" if self.column else "")
        return f"{where}: {self.text}"


def tables_from_text(text: str, where: Path) -> dict[str, Table]:
    """The tables of a schema file's text (its SQL objects are not needed to compare)."""
    data = tomllib.loads(text)
    raw = data.get("tables", {})
    return {name: parse_table(name, t, f"schema file {where}") for name, t in raw.items()}


def diff_tables(old: Mapping[str, Table], new: Mapping[str, Table]) -> list[Change]:
    """Every change from `old` to `new`, in table then column order."""
    out: list[Change] = []
    for name in old:
        if name not in new:
            out.append(Change(name, None, True, "removed"))
    for name, table in new.items():
        if name not in old:
            out.append(Change(name, None, False, "added"))
            continue
        out += _diff_table(old[name], table)
    return out


def _diff_table(old: Table, new: Table) -> list[Change]:
    out: list[Change] = []
    t = new.name
    for attr, label in (("time", "time column"), ("key", "key"), ("partition", "partitioning")):
        if getattr(old, attr) != getattr(new, attr):
            text = f"{label} changed from {getattr(old, attr)} to {getattr(new, attr)}"
            out.append(Change(t, None, True, text))
    if old.tier != new.tier:
        out.append(Change(t, None, True, f"tier changed from {old.tier} to {new.tier}"))
    for col in old.columns:
        if not new.has_column(col.name):
            out.append(Change(t, col.name, True, "removed"))
    for col in new.columns:
        if not old.has_column(col.name):
            if col.nullable:
                out.append(Change(t, col.name, False, "added (nullable)"))
            else:
                out.append(Change(t, col.name, True, "added as a required (non-null) column"))
            continue
        was = old.column(col.name)
        if was.type.name != col.type.name:
            out.append(
                Change(t, col.name, True, f"type changed from {was.type.name} to {col.type.name}")
            )
        if was.nullable and not col.nullable:
            out.append(Change(t, col.name, True, "made required (non-null)"))
        elif not was.nullable and col.nullable:
            out.append(Change(t, col.name, False, "made nullable"))
    return out
