"""Export one table of any schema to a file: CSV, Parquet, JSON or NDJSON.

`export_table(store, "audit", "csv")` reads the whole table (or the rows matching
`where`) and writes `<root>/exports/audit_20260115T143022Z.csv`, published atomically
(a hidden temp file, fsync, then a link to the final name that never replaces an
existing file: a name already taken gets `-2`, `-3`... before the extension).

Columns are exactly the table's declared columns, in declared order (a lake table's
partition levels that are not columns are left out). Rows come in key order, else in
time order when the table declares a time column, so two exports of the same rows are
byte-identical. Rows are read and written in batches of `BATCH_ROWS`: a lake table is
one DuckDB snapshot, a sql table one SQLite read transaction, so concurrent writers
never make an export see half a batch of theirs.

Formats (see `FORMATS`):

- `csv`: RFC 4180. A header row of column names, comma separators, CRLF after every
  record, UTF-8 without a byte order mark. A field is quoted when it holds a comma, a
  double quote, CR or LF, and its quotes are doubled. NULL is an empty *unquoted*
  field; an empty string is written `""`, so the two stay apart (the `csv` module
  reads both as ''; DuckDB keeps them apart with `allow_quoted_nulls = false`).
  Values: timestamps ISO 8601 in UTC with an explicit offset
  (`2026-01-15T14:30:22.123456+00:00`), dates `YYYY-MM-DD`, bools `true`/`false`,
  floats as Python's `repr` (the shortest text that reads back to the same float;
  also `nan`, `inf`, `-inf`), json columns as their text, `list<string>` columns as
  JSON arrays, binary as lowercase hex.
- `parquet`: the table's own Arrow schema (its logical types), zstd-compressed.
- `json`: one JSON array of objects, one object per row (keys in declared order), the
  simplest form for a person or a program that loads the whole file. Values as in CSV
  but typed: numbers, booleans, null; a json column stays its text (a string), so its
  exact spelling survives; NaN and infinities, which JSON cannot spell, become null.
- `ndjson`: the same objects, one per line (`\\n`), for tools that stream. Text is
  UTF-8; U+2028 and U+2029 are escaped, so no line splitter breaks a record.

Each tier has one reader function, `(store, table, where) -> batches`, registered in
`READERS`: one function per tier (lake, sql, log).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from telelake import durable, validate
from telelake._lazy import lazy
from telelake.errors import QueryError, StoreError
from telelake.log import ndjson
from telelake.schema.model import Column, Table
from telelake.sql.connection import read_only
from telelake.store import Store

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq
else:
    pa = lazy("pyarrow")
    pq = lazy("pyarrow.parquet")

__all__ = [
    "BATCH_ROWS",
    "EXTENSIONS",
    "FORMATS",
    "READERS",
    "ExportReport",
    "export_table",
    "read_batches",
]

FORMATS = ("csv", "parquet", "json", "ndjson")
EXTENSIONS = {"csv": ".csv", "parquet": ".parquet", "json": ".json", "ndjson": ".ndjson"}
BATCH_ROWS = 10_000  # rows held as Python values at once while writing text formats
EXPORTS_DIR = "exports"

Batches = Iterator["pa.RecordBatch"]
Reader = Callable[[Store, Table, str | None], Batches]


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote: the file, its rows and its size in bytes."""

    path: Path
    rows: int
    bytes: int


def export_table(
    store: Store,
    table: str,
    fmt: str = "csv",
    *,
    directory: Path | str | None = None,
    where: str | None = None,
    now: dt.datetime | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> ExportReport:
    """Write every row of `table` (or those matching `where`) to a new file.

    `fmt` is one of `FORMATS`. The file goes to `directory` (default `<root>/exports`)
    as `<table>_<YYYYMMDDTHHMMSSZ>.<ext>`, stamped with `now` (default: the current
    UTC time), never overwriting a file. `where` is an SQL condition in the dialect of
    the table's tier (DuckDB for lake tables, SQLite for sql tables). `on_rows` is
    called with the number of rows written so far after each batch.
    """
    t = store.table(table)
    if fmt not in FORMATS:
        raise StoreError(f"unknown export format {fmt!r} (one of {', '.join(FORMATS)})")
    target = _target_dir(store, directory)
    batches = read_batches(store, t, where)  # an unreadable tier fails before any file
    stamp = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    durable.ensure_dir(target)
    tmp = durable.temp_path_for(target / f"{t.name}{EXTENSIONS[fmt]}")
    try:
        rows = _WRITERS[fmt](tmp, t, batches, on_rows)
        if tmp.resolve().is_relative_to(store.root.resolve()):
            durable.restrict(tmp)  # the store's file mode; a folder elsewhere: the umask's
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        path = _publish_new(tmp, target, f"{t.name}_{stamp}", EXTENSIONS[fmt])
    finally:
        if tmp.exists():
            tmp.unlink()
    return ExportReport(path, rows, path.stat().st_size)


def _target_dir(store: Store, directory: Path | str | None) -> Path:
    target = (
        Path(directory).expanduser().resolve()
        if directory is not None
        else store.root / EXPORTS_DIR
    )
    # A lake table's directory is read by glob: an exported Parquet file there would
    # become part of the table.
    for t in store.schema.tables.values():
        if t.tier == "lake" and target.is_relative_to(store.root / t.name):
            raise StoreError(
                f"cannot export into {target}: it is the data directory of lake table "
                f"{t.name!r}; choose another directory"
            )
    return target


def _publish_new(tmp: Path, directory: Path, stem: str, ext: str) -> Path:
    """Publish `tmp` as `stem + ext`, or `stem-2 + ext`... whichever name is free."""
    n = 1
    while True:
        final = directory / f"{stem}{'' if n == 1 else f'-{n}'}{ext}"
        try:
            durable.publish(tmp, final, replace=False)
        except FileExistsError:
            n += 1
            continue
        return final


# -- readers: one per tier ----------------------------------------------------------------


def read_batches(store: Store, table: Table, where: str | None = None) -> Batches:
    """The rows of `table` as record batches of its Arrow schema, in export order."""
    reader = READERS.get(table.tier)
    if reader is None:
        raise StoreError(
            f"table {table.name!r} is in the {table.tier} tier, which export cannot "
            f"read yet (readers: {', '.join(READERS)} tiers)"
        )
    return reader(store, table, where)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _select(table: Table, where: str | None) -> str:
    cols = ", ".join(_ident(c) for c in table.column_names)
    sql = f"SELECT {cols} FROM {_ident(table.name)}"
    if where is not None and where.strip():
        sql += f" WHERE ({where})"
    order = table.key or ((table.time,) if table.time else ())
    if order:
        sql += " ORDER BY " + ", ".join(_ident(c) for c in order)
    return sql


def _read_lake(store: Store, table: Table, where: str | None) -> Batches:
    """A lake table through DuckDB: one snapshot of its files and live WAL rows."""
    data = store.sql(_select(table, where), engine="duckdb").to_arrow()
    data = data.cast(table.arrow_schema)
    yield from data.to_batches(max_chunksize=BATCH_ROWS)


def _read_sql(store: Store, table: Table, where: str | None) -> Batches:
    """A sql table from SQLite: one read-only statement (one snapshot), fetched in batches."""
    path = store.sql_tier.path
    if not path.exists():
        raise StoreError(f"store {store.root}: the sql database {path} does not exist")
    con = read_only(path, store.schema.sql_settings.busy_timeout_ms)
    try:
        try:
            cursor = con.execute(_select(table, where))
        except sqlite3.Error as exc:
            raise QueryError(f"export of {table.name!r} failed ({path}): {exc}") from exc
        while True:
            rows = cursor.fetchmany(BATCH_ROWS)
            if not rows:
                return
            columns = list(zip(*rows, strict=True))
            yield pa.RecordBatch.from_arrays(
                [_from_sqlite(c, list(v)) for c, v in zip(table.columns, columns, strict=True)],
                schema=table.arrow_schema,
            )
    finally:
        con.close()


def _from_sqlite(column: Column, values: list[Any]) -> pa.Array:
    """Stored SQLite values of `column` as Arrow (see `sql.tier.python_columns`)."""
    kind = column.type.name
    if kind == "timestamp":  # epoch microseconds
        return pa.array(values, pa.int64()).cast(column.type.arrow)
    if kind == "bool":
        return pa.array([None if v is None else bool(v) for v in values], pa.bool_())
    if kind == "date":
        return pa.array(values, pa.string()).cast(pa.date32())
    if kind == "list<string>":
        return pa.array([None if v is None else json.loads(v) for v in values], column.type.arrow)
    return pa.array(values, column.type.arrow)


def _read_log(store: Store, table: Table, where: str | None) -> Batches:
    """A log table from the NDJSON files: its records in log order (torn lines skipped)."""
    if where is not None and where.strip():
        raise StoreError(f"table {table.name!r} is a log table: --where needs a sql or lake table")
    settings = store.schema.log
    record = settings.record_of(table.name) if settings else None
    if settings is None or record is None:
        raise StoreError(f"table {table.name!r} has no record type in [log]")
    pending: list[dict[str, Any]] = []
    for path in ndjson.files(store.root / settings.directory, settings.prefix):
        for line in ndjson.scan(path):
            if line.record is None or line.record.get("record_type") != record.record_type:
                continue
            payload = line.record.get("payload")
            if isinstance(payload, dict):
                pending.append({c: payload.get(c) for c in table.column_names})
            if len(pending) >= BATCH_ROWS:
                yield from validate.to_arrow(table, pending, store=store.schema.name).to_batches()
                pending = []
    if pending:
        yield from validate.to_arrow(table, pending, store=store.schema.name).to_batches()


READERS: dict[str, Reader] = {"lake": _read_lake, "sql": _read_sql, "log": _read_log}


# -- writers: one per format --------------------------------------------------------------

Writer = Callable[[Path, Table, Batches, Callable[[int], None] | None], int]


def _write_parquet(
    path: Path, table: Table, batches: Batches, on_rows: Callable[[int], None] | None
) -> int:
    rows = 0
    with pq.ParquetWriter(path, table.arrow_schema, compression="zstd") as writer:
        for batch in batches:
            writer.write_batch(batch)
            rows += batch.num_rows
            if on_rows is not None:
                on_rows(rows)
    return rows


def _write_text(
    path: Path,
    batches: Batches,
    on_rows: Callable[[int], None] | None,
    encode: Callable[[pa.RecordBatch], str],
    head: str = "",
    tail: Callable[[int], str] = lambda _rows: "",
) -> int:
    rows = 0
    with path.open("wb") as f:
        f.write(head.encode("utf-8"))
        for batch in batches:
            if batch.num_rows:
                f.write(encode(batch).encode("utf-8"))
                rows += batch.num_rows
                if on_rows is not None:
                    on_rows(rows)
        f.write(tail(rows).encode("utf-8"))
    return rows


# CSV ----------------------------------------------------------------------------------

_NEEDS_QUOTES = re.compile(r'[",\r\n]')


def csv_field(text: str | None) -> str:
    """One RFC 4180 field: None is empty, '' is `""`, special characters are quoted."""
    if text is None:
        return ""
    if text == "" or _NEEDS_QUOTES.search(text):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_record(fields: list[str | None]) -> str:
    """One CSV record with its CRLF."""
    return ",".join(csv_field(f) for f in fields) + "\r\n"


def _csv_texts(column: Column, values: list[Any]) -> list[str | None]:
    """The CSV text of each value of `column` (None stays None: NULL)."""
    kind = column.type.name
    if kind == "bool":
        return [None if v is None else ("true" if v else "false") for v in values]
    if kind in ("float32", "float64"):
        return [None if v is None else repr(float(v)) for v in values]
    if kind == "list<string>":
        return [None if v is None else json.dumps(v, ensure_ascii=False) for v in values]
    if kind == "binary":
        return [None if v is None else v.hex() for v in values]
    if kind in ("timestamp", "date"):
        return [None if v is None else _iso(v) for v in values]
    return [None if v is None else str(v) for v in values]


def _iso(value: dt.date) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    return value.isoformat()


def _write_csv(
    path: Path, table: Table, batches: Batches, on_rows: Callable[[int], None] | None
) -> int:
    def encode(batch: pa.RecordBatch) -> str:
        columns = [_csv_texts(c, batch.column(i).to_pylist()) for i, c in enumerate(table.columns)]
        return "".join(csv_record(list(row)) for row in zip(*columns, strict=True))

    return _write_text(path, batches, on_rows, encode, head=csv_record(list(table.column_names)))


# JSON ---------------------------------------------------------------------------------


def _json_values(column: Column, values: list[Any]) -> list[Any]:
    """JSON-ready values of `column`: as in CSV, but numbers and booleans stay typed."""
    kind = column.type.name
    if kind in ("float32", "float64"):
        return [None if v is None or not math.isfinite(v) else float(v) for v in values]
    if kind == "binary":
        return [None if v is None else v.hex() for v in values]
    if kind in ("timestamp", "date"):
        return [None if v is None else _iso(v) for v in values]
    return values


def _json_lines(table: Table, batch: pa.RecordBatch) -> list[str]:
    names = table.column_names
    columns = [_json_values(c, batch.column(i).to_pylist()) for i, c in enumerate(table.columns)]
    return [
        json.dumps(dict(zip(names, row, strict=True)), ensure_ascii=False, allow_nan=False)
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
        for row in zip(*columns, strict=True)
    ]


def _write_json(
    path: Path, table: Table, batches: Batches, on_rows: Callable[[int], None] | None
) -> int:
    first = True

    def encode(batch: pa.RecordBatch) -> str:
        nonlocal first
        text = ("\n" if first else ",\n") + ",\n".join(_json_lines(table, batch))
        first = False
        return text

    return _write_text(
        path, batches, on_rows, encode, head="[", tail=lambda rows: "\n]\n" if rows else "]\n"
    )


def _write_ndjson(
    path: Path, table: Table, batches: Batches, on_rows: Callable[[int], None] | None
) -> int:
    def encode(batch: pa.RecordBatch) -> str:
        return "".join(line + "\n" for line in _json_lines(table, batch))

    return _write_text(path, batches, on_rows, encode)


_WRITERS: dict[str, Writer] = {
    "csv": _write_csv,
    "parquet": _write_parquet,
    "json": _write_json,
    "ndjson": _write_ndjson,
}
