"""File formats at the edges: reading rows to write, and printing query results."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid
from collections.abc import Iterable, Sequence
from typing import IO, TYPE_CHECKING, Any, Protocol

from telelake.errors import ValidationError

if TYPE_CHECKING:
    from telelake.schema.model import Table

INPUT_FORMATS = ("ndjson", "csv", "parquet")
OUTPUT_FORMATS = ("table", "csv", "json")


class Printable(Protocol):
    """What the output formats print: column names and rows (a `Result`, or `Rows`)."""

    @property
    def columns(self) -> list[str]: ...

    def rows(self) -> list[tuple[Any, ...]]: ...


class Rows:
    """Rows made in Python to print like a query result (no Arrow needed)."""

    def __init__(self, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        self._columns = columns
        self._rows = rows

    @classmethod
    def from_columns(cls, data: dict[str, list[Any]]) -> Rows:
        """Rows from a dict of equally long columns."""
        return cls(list(data), list(zip(*data.values(), strict=True)))

    @classmethod
    def of(cls, items: Iterable[Any], fields: Sequence[str]) -> Rows:
        """Rows of `items` (dataclasses, named tuples), a column per attribute in `fields`."""
        return cls(list(fields), [tuple(getattr(i, f) for f in fields) for i in items])

    @property
    def columns(self) -> list[str]:
        return self._columns

    def rows(self) -> list[tuple[Any, ...]]:
        return self._rows


def read_rows(data: bytes, fmt: str, table: Table, source: str) -> Any:
    """Parse `data` in format `fmt` into something `Store.write` accepts."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if fmt == "ndjson":
        return read_ndjson(data, table, source)
    if fmt == "csv":
        # Typed conversion of plain columns; timestamps stay text for the validator,
        # which knows about offsets and refuses naive times.
        types = {
            c.name: c.type.arrow
            for c in table.columns
            if c.type.name not in ("timestamp", "json", "list<string>", "binary", "date")
        }
        try:
            return pacsv.read_csv(
                io.BytesIO(data),
                convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True),
            )
        except pa.ArrowInvalid as exc:
            raise ValidationError(
                f"{source}: cannot read CSV for table {table.name!r}: {exc}; nothing was written",
                table=table.name,
            ) from None
    if fmt == "parquet":
        try:
            return pq.read_table(io.BytesIO(data))
        except pa.ArrowInvalid as exc:
            raise ValidationError(
                f"{source}: not a Parquet file ({exc}); nothing was written", table=table.name
            ) from None
    raise ValueError(f"unknown input format {fmt!r} (one of {', '.join(INPUT_FORMATS)})")


def read_ndjson(data: bytes, table: Table, source: str) -> list[dict[str, Any]]:
    """The JSON objects of NDJSON `data`, one a line (blank lines skipped); a line that is
    not UTF-8, not JSON, not an object, spells NaN or Infinity (no JSON has them), or
    repeats a key (which value was meant?) is a ValidationError naming `source` and the
    line: nothing is written."""
    rows = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
            if not line.strip():
                continue
            row = _NDJSON.decode(line)
        except UnicodeDecodeError as exc:
            problem = f"is not UTF-8 (byte {exc.start + 1} of the line)"
        except json.JSONDecodeError as exc:
            problem = f"is not JSON ({exc.msg} at column {exc.colno})"
        except _Ambiguous as exc:
            problem = str(exc)
        except RecursionError:
            problem = "is JSON nested too deeply to read"
        else:
            if isinstance(row, dict):
                rows.append(row)
                continue
            problem = "is not a JSON object"
        raise ValidationError(
            f"{source}: line {number} {problem}; nothing was written", table=table.name
        )
    return rows


class _Ambiguous(ValueError):
    """A JSON line whose meaning is not one value (a repeated key, NaN)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Ambiguous(f"repeats the key {key!r} (which of its values is meant?)")
            seen.add(key)
    return out


def _no_constant(name: str) -> Any:
    raise _Ambiguous(f"spells {name}, which is not JSON (RFC 8259); use null")


_NDJSON = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_no_constant)


def _plain(v: Any) -> Any:
    """A JSON/CSV friendly version of one value."""
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.UTC)
            return v.isoformat().replace("+00:00", "Z")
        return v.isoformat()
    if isinstance(v, dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, float) and v != v:  # NaN has no JSON spelling
        return None
    if hasattr(v, "as_tuple"):  # Decimal
        return float(v)
    if isinstance(v, uuid.UUID):
        return str(v)
    return v


def write_csv(columns: list[str], rows: list[tuple[Any, ...]], out: IO[str]) -> None:
    """RFC 4180 CSV with a header row; lists and dicts are written as JSON text."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(_plain(v)) for v in row])


def _csv_cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, list | dict):
        return json.dumps(v)
    return v


def write_json(columns: list[str], rows: list[tuple[Any, ...]], out: IO[str]) -> None:
    """A JSON array of objects, one per row."""
    records = [{c: _plain(v) for c, v in zip(columns, row, strict=True)} for row in rows]
    json.dump(records, out, indent=2)
    out.write("\n")


def cell_text(v: Any) -> str:
    """How one value is shown in a terminal table."""
    v = _plain(v)
    if v is None:
        return "∅"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list | dict):
        return json.dumps(v)
    return str(v)
