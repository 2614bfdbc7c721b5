"""The ranges a store's numeric settings take, in a schema's `[retention]` and in
`config.json` alike (docs/lifecycle.md), and the one check of them."""

from __future__ import annotations

from typing import Any

# Retention periods (`retention_days`, `<table>_days`) are at most this many days, about
# 1000 years: longer means forever, which null (no setting) says.
MAX_RETENTION_DAYS = 365_000
MAX_DISK_GB = 1_000_000  # a petabyte: more is a typo
MAX_BACKUPS = 1_000_000


def range_problem(value: Any, most: int, unit: str, *, whole: bool = False) -> str | None:
    """None if `value` is null or a number with 0 < value <= `most` (a whole one with
    `whole`), else what it must be. (NaN, infinities and booleans never are: JSON's
    reader takes NaN, Infinity and 1e400 as floats, TOML has nan and inf.)"""
    kind = int if whole else int | float
    if value is None or (
        not isinstance(value, bool) and isinstance(value, kind) and 0 < value <= most
    ):
        return None
    what = "whole number" if whole else "number"
    return f"must be a positive {what} of {unit} up to {most}, or null, not {value!r}"
