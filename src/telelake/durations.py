"""Ages given on the command line or to the API: `7d`, `12h`, `30m`, `2w`, `90s`."""

from __future__ import annotations

import datetime as dt
import re

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


def parse_age(value: str | dt.timedelta) -> dt.timedelta:
    """A timedelta from `7d`-style text (s, m, h, d, w); ValueError names what is wrong."""
    if isinstance(value, dt.timedelta):
        if value < dt.timedelta(0):
            raise ValueError(f"an age cannot be negative: {value}")
        return value
    match = _AGE.match(value)
    if match is None:
        raise ValueError(
            f"not an age: {value!r} (use a number and a unit: 90s, 30m, 12h, 7d or 2w)"
        )
    try:
        return dt.timedelta(seconds=float(match.group(1)) * _UNIT[match.group(2)])
    except OverflowError:
        longest = dt.timedelta.max.days
        raise ValueError(f"age too long: {value!r} (at most {longest} days)") from None


def before(when: dt.datetime, age: dt.timedelta) -> dt.datetime:
    """`when - age`, or the earliest instant a datetime holds when that is earlier (an
    age of centuries keeps everything, it does not crash)."""
    try:
        return when - age
    except OverflowError:
        return dt.datetime.min.replace(tzinfo=dt.UTC)


# The longest maintenance interval: longer is "off" (and a date that far on overflows).
MAX_INTERVAL = dt.timedelta(days=365)


def parse_interval(value: object) -> dt.timedelta:
    """A maintenance interval: `"1h"`-style text, or `"off"` (timedelta(0)); ValueError."""
    if value == "off":
        return dt.timedelta(0)
    if not isinstance(value, str):
        raise ValueError(f'use a duration like "1h" or "30m", or "off", not {value!r}')
    age = parse_age(value)
    if age <= dt.timedelta(0):
        raise ValueError(f'{value!r} is no interval: use a positive duration, or "off"')
    if age > MAX_INTERVAL:
        raise ValueError(f'{value!r} is too long: at most {MAX_INTERVAL.days} days, or "off"')
    return age


def format_age(value: dt.timedelta) -> str:
    """`7d`-style text for a timedelta: the largest unit that divides it (`90m`, `1h`)."""
    seconds = value.total_seconds()
    for unit in ("w", "d", "h", "m"):
        count = seconds / _UNIT[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    return f"{seconds:.6f}".rstrip("0").rstrip(".") + "s"  # never 1e+06s
