"""`7d`-style ages: every number-and-unit parses to the same span computed by hand."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telelake.durations import format_age, parse_age, parse_interval

SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@given(n=st.integers(0, 10_000), unit=st.sampled_from(sorted(SECONDS)), pad=st.booleans())
def test_number_and_unit(n: int, unit: str, pad: bool) -> None:
    text = f" {n} {unit} " if pad else f"{n}{unit}"
    assert parse_age(text) == dt.timedelta(seconds=n * SECONDS[unit])


def test_fractions_and_timedeltas() -> None:
    assert parse_age("1.5h") == dt.timedelta(minutes=90)
    assert parse_age(dt.timedelta(days=2)) == dt.timedelta(days=2)


@pytest.mark.parametrize("bad", ["", "7", "d", "7y", "-1d", "1e3s", "7 days", "soon"])
def test_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not an age"):
        parse_age(bad)


def test_negative_timedelta_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_age(dt.timedelta(seconds=-1))


@given(seconds=st.integers(1, 10**8))
def test_format_age_reads_back_as_the_same_span(seconds: int) -> None:
    span = dt.timedelta(seconds=seconds)
    assert parse_age(format_age(span)) == span


@pytest.mark.parametrize(
    ("span", "text"),
    [(3600, "1h"), (5400, "90m"), (86400, "1d"), (604800, "1w"), (90, "90s"), (1.5, "1.5s")],
)
def test_format_age_picks_the_largest_whole_unit(span: float, text: str) -> None:
    assert format_age(dt.timedelta(seconds=span)) == text


def test_intervals() -> None:
    assert parse_interval("1h") == dt.timedelta(hours=1)
    assert parse_interval("off") == dt.timedelta(0)
    for bad, message in (("0m", "no interval"), (60, "use a duration"), ("1 hour", "not an age")):
        with pytest.raises(ValueError, match=message):
            parse_interval(bad)
