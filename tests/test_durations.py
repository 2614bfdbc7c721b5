"""`7d`-style ages: every number-and-unit parses to the same span computed by hand."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telelake.durations import parse_age

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
