"""Reading log lines as every client of a spec writes them, not only telelake.

Spec 003 says a line is "a JSON object with `record_type`: `run` -> RunRecord payload
(fields match SQLite agent_runs table)". telelake writes the fields under `payload`
(`{"record_type": "run", "payload": {...}}`); another client may write them at the top
level of the line (`{"record_type": "run", "run_id": ...}`). Both are read:

- `payload` is an object holding at least one column of the table: the record is that
  object (telelake's shape; other keys of the line are the envelope's own).
- otherwise the record is the line itself, `record_type` aside.

Values are then made what the table wants, when that loses nothing:

- a number written as a string (`"schema_version": "3"`) becomes the number, only if the
  text is the number as JSON would write it: `"3"` and `"-12"` for integers (never
  `"03"`, `"3.0"`, `" 3"`, `"1e3"`); for floats, any JSON number that reads back with
  the value written: the float's shortest form is the same number (`"1.5"`, `"1e3"`,
  `"0.1"`; not `"0.1000000000000000055511"`, more digits than a double keeps);
- `true`/`false` become 1/0 in an integer column whose values are 0 and 1 (`api_posted`);
- a column the line leaves out (or sets to null) takes the record type's `defaults`,
  or the first non-null of its `defaults_from` columns.

Anything else is left to validation, which names the column; the caller reports the
line by file and number.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from telelake.schema.model import LogRecord, Table

_INT_KINDS = frozenset({"int8", "int16", "int32", "int64"})
_FLOAT_KINDS = frozenset({"float32", "float64"})
# JSON's number grammar, ASCII digits only. An integer has no fraction, no exponent, no
# leading zero and no "-0": exactly what str(int) writes.
_INT_TEXT = re.compile(r"0|-?[1-9][0-9]*")
_NUMBER_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_MAX_TEXT = 64  # longer texts are no number a column holds (int64 needs 20 characters)


def int_from_text(text: str) -> int | None:
    """The integer `text` spells, if `str()` of it gives `text` back; None otherwise."""
    if len(text) > _MAX_TEXT or not _INT_TEXT.fullmatch(text):
        return None
    return int(text)


def float_from_text(text: str) -> float | None:
    """The float `text` spells, if it is a JSON number and the float's shortest repr is
    the same number (no digit lost: `"1.50"` yes, 30 significant digits no); else None."""
    if len(text) > _MAX_TEXT or not _NUMBER_TEXT.fullmatch(text):
        return None
    value = float(text)
    if not math.isfinite(value):
        return None
    try:
        same = Decimal(repr(value)) == Decimal(text)
    except InvalidOperation:  # pragma: no cover - the grammar above is Decimal's subset
        return None
    return value if same else None


@dataclass(frozen=True)
class Reader:
    """How the lines of one record type become rows of the table it replays into."""

    table: str
    names: tuple[str, ...]  # the table's columns, in order
    columns: frozenset[str]
    ints: tuple[str, ...]  # integer columns
    flags: frozenset[str]  # integer columns holding 0/1: booleans read as 0/1
    floats: tuple[str, ...]
    withheld: frozenset[str]  # redacted columns: their values are never quoted
    defaults: tuple[tuple[str, Any], ...]
    defaults_from: tuple[tuple[str, tuple[str, ...]], ...]

    @classmethod
    def of(cls, table: Table, record: LogRecord) -> Reader:
        """The reader of `record`'s lines into `table` (its replay table)."""
        # Not autoincrement keys: no log line should carry one (run_events' id), and a
        # table of plain text columns then reads its lines with no conversion at all.
        ints = tuple(
            c.name for c in table.columns if c.type.name in _INT_KINDS and not c.autoincrement
        )
        flags = frozenset(
            c.name
            for c in table.columns
            if c.name in ints and c.enum is not None and set(c.enum) <= {0, 1}
        )
        return cls(
            table.name,
            tuple(table.column_names),
            frozenset(table.column_names),
            ints,
            flags,
            tuple(c.name for c in table.columns if c.type.name in _FLOAT_KINDS),
            frozenset(c.name for c in table.columns if c.redact),
            tuple(record.defaults.items()),
            tuple(record.defaults_from.items()),
        )

    @property
    def plain(self) -> bool:
        """True when rows need no conversion and no default (run_events' lines)."""
        return not (self.ints or self.floats or self.defaults or self.defaults_from)

    def row(self, line: dict[str, Any], ignored: list[str]) -> tuple[dict[str, Any], str | None]:
        """(row, problem): the row to write, or why the line cannot be one. Fields that
        are no column of the table are appended to `ignored`."""
        return self.row_function()(line, ignored)

    def row_function(
        self,
    ) -> Callable[[dict[str, Any], list[str]], tuple[dict[str, Any], str | None]]:
        """`row` as a plain function with everything it needs bound: it runs once per
        line of the log, and a closure reads its settings faster than attributes."""
        names, columns, convert = self.names, self.columns, None if self.plain else self._convert

        def row(line: dict[str, Any], ignored: list[str]) -> tuple[dict[str, Any], str | None]:
            payload = line.get("payload")
            # telelake's envelope: an object holding columns; else the line itself.
            if type(payload) is dict and not columns.isdisjoint(payload):
                fields, top = payload, False
            else:
                fields, top = line, True
            row = {c: fields[c] for c in names if c in fields}
            if len(row) + top != len(fields):  # keys that are no column (but record_type)
                ignored.extend(
                    k for k in fields if k not in columns and not (top and k == "record_type")
                )
            return (row, None) if convert is None else convert(row)

        return row

    def _convert(self, row: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        for name in self.ints:
            value = row.get(name)
            if isinstance(value, str):
                number = int_from_text(value)
                if number is None:
                    return row, self._not_number(name, value, "a whole number")
                row[name] = number
            elif isinstance(value, bool) and name in self.flags:
                row[name] = int(value)
        for name in self.floats:
            value = row.get(name)
            if isinstance(value, str):
                real = float_from_text(value)
                if real is None:
                    return row, self._not_number(name, value, "a number")
                row[name] = real
        for name, default in self.defaults:
            if row.get(name) is None:
                row[name] = default
        for name, sources in self.defaults_from:
            if row.get(name) is None:
                for source in sources:
                    if row.get(source) is not None:
                        row[name] = row[source]
                        break
        return row, None

    def _not_number(self, column: str, text: str, what: str) -> str:
        shown = "text" if column in self.withheld else repr(text[:40])
        return (
            f"table {self.table!r}, column {column!r}: {shown} is not {what} written as "
            "JSON writes it (a number in a string is read only when that loses nothing)"
        )
