"""Reading log lines of other clients: numbers in strings are read only when lossless."""

from __future__ import annotations

import json
import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telelake.log.lenient import Reader, float_from_text, int_from_text
from telelake.schema.load import load_schema

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# Texts near the grammar: digits, signs, dots, exponents, spaces, underscores, letters.
NUMBERISH = st.text(alphabet="0123456789-+.eE _xabn\u0663", max_size=24)
JSON_NUMBERS = st.from_regex(r"\A-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,3})?\Z")


@given(INT64)
def test_every_integer_written_as_json_writes_it_is_read_back(n: int) -> None:
    assert int_from_text(str(n)) == n


@given(st.one_of(NUMBERISH, st.integers().map(str), JSON_NUMBERS))
def test_an_integer_read_from_text_round_trips_to_the_same_text(text: str) -> None:
    n = int_from_text(text)
    if n is not None:
        assert str(n) == text  # nothing was dropped: no "03", "+3", " 3", "3.0", "-0"
        assert json.loads(text) == n  # and it is what the unquoted JSON number means


@pytest.mark.parametrize("text", ["03", "+3", " 3", "3 ", "3.0", "1e3", "-0", "", "٣", "3_0"])
def test_texts_that_are_not_plainly_an_integer_are_refused(text: str) -> None:
    assert int_from_text(text) is None


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_float_written_as_python_writes_it_is_read_back(x: float) -> None:
    got = float_from_text(repr(x))
    assert got is not None and got == x and math.copysign(1, got) == math.copysign(1, x)


@given(st.one_of(NUMBERISH, JSON_NUMBERS))
def test_a_float_read_from_text_has_exactly_the_value_written(text: str) -> None:
    x = float_from_text(text)
    if x is not None:
        assert math.isfinite(x)
        assert Decimal(repr(x)) == Decimal(text)  # the value the text spells, no digit lost
        assert json.loads(text) == x  # the same number the unquoted text would be


@pytest.mark.parametrize(
    "text,ok",
    [
        ("1.5", True),
        ("1.50", True),
        ("1e3", True),
        ("0.1", True),
        ("-2", True),
        ("0.1000000000000000055511151231257827", False),  # more digits than a double holds
        ("1e400", False),  # infinity
        ("nan", False),
        ("Infinity", False),
        (".5", False),
        ("1_000", False),  # Python's float() would take it, JSON would not
        (" 1", False),
    ],
)
def test_float_texts(text: str, ok: bool) -> None:
    assert (float_from_text(text) is not None) == ok


def reader() -> Reader:
    schema = load_schema("agent_runs")
    assert schema.log is not None
    return Reader.of(schema.tables["agent_runs"], schema.log.records["run"])


def test_both_shapes_of_a_line_give_the_same_row() -> None:
    fields = {"run_id": "r", "agent_name": "a", "start_time": "t0", "status": "ok"}
    ignored: list[str] = []
    envelope, p1 = reader().row({"record_type": "run", "payload": dict(fields)}, ignored)
    top, p2 = reader().row({"record_type": "run", **fields}, ignored)
    assert p1 is None and p2 is None and ignored == []
    assert envelope == top
    # The spec's defaults, and the times taken from the record itself.
    assert top["api_posted"] == 0 and top["api_retry_count"] == 0
    assert top["schema_version"] == 3
    assert top["created_at"] == "t0" and top["updated_at"] == "t0"


def test_values_are_converted_only_when_nothing_is_lost() -> None:
    line = {
        "record_type": "run",
        "run_id": "r",
        "schema_version": "3",
        "api_posted": True,
        "items_failed": "12",
        "end_time": "t1",
        "start_time": "t0",
        "host_extra": "x",
    }
    ignored: list[str] = []
    row, problem = reader().row(line, ignored)
    assert problem is None
    assert row["schema_version"] == 3 and row["items_failed"] == 12
    assert row["api_posted"] == 1 and type(row["api_posted"]) is int
    assert row["updated_at"] == "t1"  # the end of the run, so the end record wins
    assert ignored == ["host_extra"]
    _, problem = reader().row({**line, "items_failed": "12.0"}, [])
    assert problem is not None and "'items_failed'" in problem and "'12.0'" in problem
    row, problem = reader().row({**line, "items_failed": True}, [])
    assert problem is None and row["items_failed"] is True  # not a 0/1 column: validation says


def test_an_event_payload_that_is_no_envelope_is_an_ignored_field() -> None:
    schema = load_schema("agent_runs")
    assert schema.log is not None
    events = Reader.of(schema.tables["run_events"], schema.log.records["event"])
    assert events.plain  # run_events' lines need no conversion: the fast path
    line = {
        "record_type": "event",
        "run_id": "r",
        "event_type": "x",
        "timestamp": "t",
        "payload": {"items": 3},  # the event's data, not telelake's envelope
    }
    ignored: list[str] = []
    row, problem = events.row(line, ignored)
    assert problem is None and ignored == ["payload"]
    assert row == {"run_id": "r", "event_type": "x", "timestamp": "t"}
