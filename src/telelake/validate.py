"""Turn user rows into an Arrow table of a table's exact schema, or say precisely why not.

Accepted inputs: a list of dicts, a dict of columns, a pyarrow Table or RecordBatch, or
a pandas DataFrame. The fast path lets Arrow's C++ converter infer the whole batch in one
pass, then checks each column's inferred type against the declared logical type and
casts it safely. Only when something is wrong do we walk values in Python, to name the
exact column and row. Checks are strict on purpose: a float is not an integer, 1 is not
True, and a timestamp without a time zone is refused rather than guessed.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

import orjson

from telelake._lazy import lazy
from telelake.errors import ValidationError
from telelake.redact.patterns import redact_text
from telelake.redact.policy import default_rules
from telelake.schema.types import (
    TIMESTAMP_MAX,
    TIMESTAMP_MAX_US,
    TIMESTAMP_MIN,
    TIMESTAMP_MIN_US,
    TIMESTAMP_RANGE,
    TYPES,
)

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc

    from telelake.schema.model import Column, Table
else:
    pa = lazy("pyarrow")
    pc = lazy("pyarrow.compute")

MICROS_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": None}  # None: 1/1000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NAIVE_HINT = (
    "naive datetimes are refused because their time zone is unknown; "
    "attach one (e.g. datetime.now(timezone.utc)) or pass an ISO-8601 string with an offset"
)
_FLOAT32_MAX = 3.4028234663852886e38
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Arrow's inference unifies some mixed Python types silently (bool into float, str into
# binary, datetime or int into date); for these kinds the Python types are checked first.
_LENIENT_KINDS = ("float32", "float64", "binary", "date")
_INT_LIMITS = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
}

# pyarrow ships no type stubs, so for mypy this is effectively Any.
ColumnData: TypeAlias = "pa.Array | pa.ChunkedArray | list[Any]"


def to_arrow(
    table: Table,
    data: Any,
    *,
    store: str = "",
    extra: Sequence[Column] = (),
) -> pa.Table:
    """Validate `data` against `table` and return it as an Arrow table.

    Columns come out in declared order, followed by any `extra` columns that were
    given (partition keys that are not table columns, e.g. `host_id`). Raises
    ValidationError naming the store, table, column and row of the first problem.
    """
    ctx = _Context(store, table.name)
    if type(data) is list and len(data) <= SMALL_ROWS:
        fast = _exact_rows(table, data, extra)
        if fast is not None:
            return fast
    # Arrow's inference would silently read naive datetimes as UTC and turn JSON objects
    # into structs, so these columns keep their Python values for the strict checks.
    python_cols = {c.name for c in table.columns if c.type.name in ("timestamp", "json")}
    columns, nrows = _columns_of(data, ctx, python_cols, table)
    allowed = {c.name: c for c in (*table.columns, *extra)}
    for name in columns:
        if name not in allowed:
            hint = ", ".join(table.column_names)
            raise ctx.error(f"unknown column (the table has: {hint})", column=name)
    arrays: list[pa.Array] = []
    fields: list[pa.Field] = []
    for col in (*table.columns, *extra):
        if col.name not in columns:
            if col in extra:
                continue
            values: ColumnData = pa.nulls(nrows, col.type.arrow)
        else:
            values = columns[col.name]
        try:
            arr = convert_column(col, values, ctx)
            _check_nulls(col, arr, ctx)
            _check_enum(col, arr, ctx)
        except ValidationError as exc:
            # Type, null and enum checks run one after the other; report whichever
            # problem comes first in the column.
            raise _earliest(col, values, ctx, exc) from None
        arrays.append(arr)
        fields.append(col.arrow_field)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


# -- the small-write fast path ------------------------------------------------------------

SMALL_ROWS = 256  # up to this many dict rows, try the fast path first


# Python types accepted as they are, per logical type. A value of exactly such a type
# converts to the column's Arrow type with no decision left to make; anything else
# sends the batch down the general path, which reports the first bad row.
_EXACT: dict[str, frozenset[type]] = {
    "string": frozenset({str}),
    "bool": frozenset({bool}),
    "int8": frozenset({int}),
    "int16": frozenset({int}),
    "int32": frozenset({int}),
    "int64": frozenset({int}),
    "float64": frozenset({float}),
    "timestamp": frozenset({dt.datetime}),  # and aware: checked value by value
}
_NONE = frozenset({type(None)})


@dataclass(frozen=True)
class _RowPlan:
    """How dict rows with one set of keys convert: checks per column, one struct type."""

    checks: tuple[tuple[str, frozenset[type], frozenset[Any] | None, bool], ...]
    struct: pa.StructType
    # The fields of the rows as `to_arrow` returns them plus the extra columns they
    # lack (filled by the caller): the same tuple object every time, for caching.
    fields: tuple[pa.Field, ...]
    missing: tuple[str, ...]
    absent: tuple[int, ...]  # positions in `struct` of nullable columns the rows lack
    # (position in `struct`, (low, high)) of the integer columns: Arrow checks their
    # range in the struct conversion, plain values must be checked by hand.
    int_limits: tuple[tuple[int, tuple[int, int]], ...]


_PLANS: dict[tuple[int, tuple[str, ...]], tuple[Table, _RowPlan | None]] = {}
_MAX_PLANS = 256


def _row_plan(table: Table, keys: tuple[str, ...], extra: Sequence[Column]) -> _RowPlan | None:
    """The plan for rows with exactly `keys` (cached per table); None if no fast path."""
    cache_key = (id(table), keys)
    hit = _PLANS.get(cache_key)
    if hit is not None and hit[0] is table:
        return hit[1]
    plan = _make_plan(table, keys, extra)
    if len(_PLANS) >= _MAX_PLANS:
        _PLANS.clear()
    _PLANS[cache_key] = (table, plan)
    return plan


def _make_plan(table: Table, keys: tuple[str, ...], extra: Sequence[Column]) -> _RowPlan | None:
    present = set(keys)
    if len(present) != len(keys):
        return None
    columns = [*table.columns, *(c for c in extra if c.name in present)]
    if not present <= {c.name for c in columns}:
        return None
    checks = []
    absent = []
    for position, col in enumerate(columns):
        if col.name not in present:
            if not col.nullable:
                return None
            absent.append(position)
            continue  # a missing nullable column: the struct conversion fills nulls
        exact = _EXACT.get(col.type.name)
        if exact is None:
            return None
        allowed = exact | _NONE if col.nullable else exact
        enum = frozenset(col.enum) if col.enum is not None else None
        checks.append((col.name, allowed, enum, col.type.name == "timestamp"))
    missing = tuple(c for c in extra if c.name not in present)
    fields = (*(c.arrow_field for c in columns), *(c.arrow_field for c in missing))
    struct = pa.struct([c.arrow_field for c in columns])
    names = tuple(c.name for c in missing)
    limits = tuple(
        (i, _INT_LIMITS[c.type.name]) for i, c in enumerate(columns) if c.type.name in _INT_LIMITS
    )
    return _RowPlan(tuple(checks), struct, fields, names, tuple(absent), limits)


def _exact_checked(
    table: Table, rows: list[Any], extra: Sequence[Column]
) -> tuple[_RowPlan, list[list[Any]]] | None:
    """The plan of a few exactly-typed dict rows and their values column by column (in
    plan order, timestamps as UTC microseconds); None if any doubt (a value of another
    type, a naive datetime, ...)."""
    if not rows or type(rows[0]) is not dict:
        return None
    first = rows[0]
    width = len(first)
    if not all(type(r) is dict and len(r) == width for r in rows):
        return None
    plan = _row_plan(table, tuple(first), extra)
    if plan is None:
        return None
    columns = []
    for name, allowed, enum, timestamp in plan.checks:
        try:  # the checks name every key of the first row: a row of as many keys that
            values = [r[name] for r in rows]  # has them all has exactly its keys
        except KeyError:
            return None
        if not set(map(type, values)) <= allowed:
            return None
        if enum is not None and not {v for v in values if v is not None} <= enum:
            return None
        if timestamp:  # as UTC microseconds; a naive datetime cannot be subtracted
            try:
                values = [None if v is None else (v - _EPOCH) // _MICRO for v in values]
            except TypeError:
                return None
            present = [v for v in values if v is not None]
            if present and (min(present) < TIMESTAMP_MIN_US or max(present) > TIMESTAMP_MAX_US):
                return None
        columns.append(values)
    return plan, columns


def _exact_rows(table: Table, rows: list[Any], extra: Sequence[Column]) -> pa.Table | None:
    """Convert a few exactly-typed dict rows without inference; None if any doubt.

    A write of a handful of rows is dominated by fixed costs: here the types are checked
    a column at a time with sets, and one struct conversion builds every column in C++
    (a plan per key set is cached). Integers out of range make that conversion fail, so
    they also take the general path.
    """
    checked = _exact_checked(table, rows, extra)
    if checked is None:
        return None
    try:
        return pa.Table.from_struct_array(pa.array(rows, type=checked[0].struct))
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, UnicodeEncodeError):
        return None  # (a lone surrogate: the general path names its row)


class PlainColumns(NamedTuple):
    """Valid rows as plain column lists: what a small WAL write stores without Arrow.

    `fields` are the Arrow fields of the same rows after `to_arrow` and the fill of the
    extra columns they lack; timestamps are UTC microseconds.
    """

    fields: tuple[pa.Field, ...]
    columns: list[list[Any]]
    num_rows: int


def exact_columns(
    table: Table, rows: Any, extra: Sequence[Column] = (), fills: Mapping[str, Any] = {}
) -> PlainColumns | None:
    """Check a few exactly-typed dict rows and return them as column lists, the extra
    columns they lack filled from `fills`; None if any doubt (the caller then takes
    `to_arrow`, which converts or names the bad row).

    Every value is checked here as Arrow's conversion would check it (type, enum, time
    zone, integer range), so reading the lists back into Arrow cannot fail.
    """
    if type(rows) is not list or len(rows) > SMALL_ROWS:
        return None
    checked = _exact_checked(table, rows, extra)
    if checked is None:
        return None
    plan, columns = checked
    for position in plan.absent:
        columns.insert(position, [None] * len(rows))
    for index, (lo, hi) in plan.int_limits:
        present = [v for v in columns[index] if v is not None]
        if present and (min(present) < lo or max(present) > hi):
            return None
    columns.extend([fills[name]] * len(rows) for name in plan.missing)
    return PlainColumns(plan.fields, columns, len(rows))


_MICRO = dt.timedelta(microseconds=1)


class _Context:
    """Where a problem is, for error messages."""

    def __init__(self, store: str, table: str) -> None:
        self.store = store
        self.table = table
        # The user's rows when given as dicts: errors must quote what the user wrote,
        # not Arrow's inferred version of it (one float makes a whole int column float).
        self.rows: list[Any] | None = None

    def error(
        self, reason: str, *, column: str | None = None, row: int | None = None
    ) -> ValidationError:
        parts = [f"store {self.store!r}" if self.store else "", f"table {self.table!r}"]
        if column is not None:
            parts.append(f"column {column!r}")
        if row is not None:
            parts.append(f"row {row}")
        where = ", ".join(p for p in parts if p)
        reason = redact_text(reason, default_rules())[0]  # never echo a secret
        return ValidationError(
            f"{where}: {reason}; nothing was written",
            store=self.store or None,
            table=self.table,
            column=column,
            row=row,
        )


def value_error(
    store: str, table: str, column: str, row: int | None, reason: str
) -> ValidationError:
    """The error for one bad value, worded (and redacted) as every validation error is."""
    return _Context(store, table).error(reason, column=column, row=row)


# -- input shapes -------------------------------------------------------------------------


def _columns_of(
    data: Any, ctx: _Context, python_cols: set[str], table: Table
) -> tuple[dict[str, ColumnData], int]:
    """Split any accepted input into named columns and a row count."""
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if isinstance(data, pa.Table):
        return {n: data.column(n) for n in data.column_names}, data.num_rows
    if _is_dataframe(data):
        # Python-checked columns (JSON objects, datetimes) are taken as Python values:
        # pandas-to-Arrow inference would merge the keys of JSON objects across rows.
        own = [str(c) for c in data.columns if str(c) in python_cols]
        try:
            tbl = pa.Table.from_pandas(data.drop(columns=own), preserve_index=False)
            columns: dict[str, ColumnData] = {n: tbl.column(n) for n in tbl.column_names}
        except (pa.ArrowException, TypeError, ValueError):
            # A column Arrow cannot take as it is (complex, sparse, text with a lone
            # surrogate...): every column as Python values, checked one by one, so the
            # error names the row (and a sparse column is read as the dense one).
            own = [str(c) for c in data.columns]
            columns = {}
        # pandas spells a missing value NaN or NaT (both unequal to themselves).
        columns.update({n: [None if _missing(v) else v for v in data[n].tolist()] for n in own})
        return columns, len(data)
    if isinstance(data, Mapping):
        return _columns_of_mapping(data, ctx)
    if isinstance(data, Iterable) and not isinstance(data, str | bytes):
        rows = data if isinstance(data, list) else list(data)
        return _columns_of_rows(rows, ctx, python_cols, _json_names(table))
    raise ctx.error(
        f"cannot write a {type(data).__name__}: pass a list of dicts, a dict of "
        "columns, an Arrow table or a DataFrame"
    )


def _missing(v: Any) -> bool:
    try:
        return v is None or bool(v != v)
    except (TypeError, ValueError):
        return False


def _is_dataframe(data: Any) -> bool:
    return type(data).__name__ == "DataFrame" and hasattr(data, "to_dict")


def _columns_of_mapping(
    data: Mapping[str, Any], ctx: _Context
) -> tuple[dict[str, ColumnData], int]:
    columns: dict[str, ColumnData] = {}
    lengths: dict[int, str] = {}
    for name, values in data.items():
        if isinstance(values, pa.Array | pa.ChunkedArray):
            columns[name] = values
        elif isinstance(values, list | tuple):
            columns[name] = list(values) if not isinstance(values, list) else values
        elif hasattr(values, "__array__"):  # numpy array or pandas Series: keep its dtype
            try:
                columns[name] = pa.array(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):
                columns[name] = list(values)
        else:
            raise ctx.error(
                "a dict of columns needs a list per column (to write one row, "
                "pass a list holding one dict)",
                column=str(name),
            )
        lengths.setdefault(len(columns[name]), str(name))
    if len(lengths) > 1:
        desc = ", ".join(f"{c!r} has {n}" for n, c in lengths.items())
        raise ctx.error(f"columns have different lengths ({desc})")
    return columns, next(iter(lengths), 0)


def _inferred(rows: list[Any]) -> pa.Array | None:
    """One C++ pass that infers every column (and reveals every key used in any row);
    None if some column mixes types Arrow cannot unify."""
    try:
        return pa.array(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, ValueError):
        return None


def _json_names(table: Table) -> tuple[str, ...]:
    return tuple(c.name for c in table.columns if c.type.name == "json")


def _columns_of_rows(
    rows: list[Any], ctx: _Context, python_cols: set[str], json_names: tuple[str, ...]
) -> tuple[dict[str, ColumnData], int]:
    ctx.rows = rows
    for index, row in enumerate(rows):
        if type(row) is not dict and not isinstance(row, Mapping):  # exact dict: fast path
            raise ctx.error(f"rows must be dicts, got {type(row).__name__}", row=index)
    if not rows:
        return {}, 0
    # JSON objects and arrays never meet Arrow's inference: it recurses into them with no
    # depth limit, and a deep enough one overflows the C stack (the process dies).
    nested = any(type(r.get(n)) in (dict, list) for n in json_names for r in rows)
    struct = None if nested else _inferred(rows)
    if struct is None:
        # Some column mixes types Arrow cannot unify, or holds JSON containers: go
        # column by column (which also finds the bad value).
        names: dict[str, None] = {}
        for row in rows:
            names.update(dict.fromkeys(row))
        return {n: [r.get(n) for r in rows] for n in names}, len(rows)
    if not pa.types.is_struct(struct.type):
        raise ctx.error("rows must be dicts")
    columns: dict[str, ColumnData] = {}
    for i in range(struct.type.num_fields):
        name = struct.type.field(i).name
        columns[name] = [r.get(name) for r in rows] if name in python_cols else struct.field(i)
    return columns, len(rows)


# -- one column ---------------------------------------------------------------------------


def convert_column(col: Column, values: ColumnData, ctx: _Context) -> pa.Array:
    """Convert one column's values to its Arrow type, raising on the first bad row."""
    kind = col.type.name
    if kind == "timestamp":
        return _convert_timestamp(col, values, ctx)
    if kind == "json":
        return _convert_json(col, values, ctx)
    pyvalues: list[Any] | None = None
    if kind in _LENIENT_KINDS and (ctx.rows is not None or isinstance(values, list)):
        pyvalues = _python_values(col.name, values, ctx)
        if not _python_types_ok(kind, pyvalues):
            raise _first_bad(col, values, ctx)
        if kind == "date":
            return _convert_dates(col, pyvalues, ctx)
    arr = _as_array(values)
    if arr is None and pyvalues is not None and kind.startswith("float"):
        # Python ints beyond int64 defeat Arrow's inference but are valid floats.
        arr = pa.array([None if v is None else float(v) for v in pyvalues], pa.float64())
    if arr is None or not _compatible(kind, arr.type):
        raise _first_bad(col, values, ctx)
    arr = _combine(arr)
    # Large integers into a float column lose precision like any float does: not an error.
    safe = not (kind.startswith("float") and pa.types.is_integer(arr.type))
    if arr.type == col.type.arrow:
        return arr  # already the column's type (e.g. an Arrow table): nothing to cast
    try:
        out = arr.cast(col.type.arrow, safe=safe)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise _first_bad(col, values, ctx, fallback=str(exc)) from exc
    if kind == "float32" and pc.any(pc.is_inf(out)).as_py():
        overflow = pc.and_(pc.is_inf(out), pc.invert(pc.is_inf(arr.cast(pa.float64()))))
        if pc.any(overflow).as_py():
            raise _first_bad(col, values, ctx)
    return out


def _python_values(name: str, values: ColumnData, ctx: _Context) -> list[Any]:
    """The column as the user gave it, as Python values."""
    if ctx.rows is not None:
        return [r.get(name) for r in ctx.rows]
    if isinstance(values, list):
        return values
    return list(_combine(values).to_pylist())


_ALLOWED_PY_TYPES: dict[str, tuple[type, ...]] = {
    "float32": (int, float),
    "float64": (int, float),
    "binary": (bytes, bytearray, memoryview),
    "date": (dt.date, str),
}


def _python_types_ok(kind: str, values: list[Any]) -> bool:
    allowed = _ALLOWED_PY_TYPES[kind]
    for t in set(map(type, values)):
        if t is type(None):
            continue
        if t is bool or not issubclass(t, allowed) or (kind == "date" and t is dt.datetime):
            return False
        if kind == "date" and issubclass(t, dt.datetime):
            return False
    return True


def _convert_dates(col: Column, values: list[Any], ctx: _Context) -> pa.Array:
    out: list[dt.date | None] = []
    for row, v in enumerate(values):
        if isinstance(v, str):
            problem = value_problem(col, v)
            if problem:
                raise ctx.error(problem, column=col.name, row=row)
            v = dt.date.fromisoformat(v)
        out.append(v)
    return pa.array(out, type=pa.date32())


def _as_array(values: ColumnData) -> pa.Array | pa.ChunkedArray | None:
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, ValueError):
        return None


def _combine(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        return arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr


def _compatible(kind: str, t: pa.DataType) -> bool:
    """May an array inferred (or given) as `t` be cast to logical type `kind`?"""
    if pa.types.is_null(t):
        return True
    if pa.types.is_dictionary(t):
        return _compatible(kind, t.value_type)
    if kind == "string":
        return bool(pa.types.is_string(t) or pa.types.is_large_string(t))
    if kind == "bool":
        return bool(pa.types.is_boolean(t))
    if kind.startswith("int"):
        return bool(pa.types.is_integer(t))
    if kind.startswith("float"):
        return bool(pa.types.is_integer(t) or pa.types.is_floating(t))
    if kind == "date":
        return bool(pa.types.is_date(t) or pa.types.is_string(t))
    if kind == "binary":
        return bool(pa.types.is_binary(t) or pa.types.is_large_binary(t))
    if kind == "list<string>":
        return bool(
            (pa.types.is_list(t) or pa.types.is_large_list(t))
            and (pa.types.is_string(t.value_type) or pa.types.is_null(t.value_type))
        )
    return False


def _convert_timestamp(col: Column, values: ColumnData, ctx: _Context) -> pa.Array:
    if isinstance(values, pa.Array | pa.ChunkedArray):
        arr = _combine(values)
        t = arr.type
        if pa.types.is_timestamp(t):
            if t.tz is None:
                raise ctx.error(f"timestamps have no time zone: {_NAIVE_HINT}", column=col.name)
            _check_timestamp_range(col, arr, ctx)
            return arr.cast(TYPES["timestamp"].arrow)
        if pa.types.is_null(t):
            return arr.cast(TYPES["timestamp"].arrow)
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_string(t)):
            raise ctx.error(f"expected timestamps, got Arrow type {t}", column=col.name)
        values = arr.to_pylist()
    # Python values: datetimes (aware), ISO-8601 strings, or epoch numbers.
    types_seen = set(map(type, values))
    if types_seen <= {dt.datetime, type(None)}:
        zones = {v.tzinfo for v in values if v is not None}
        # A tzinfo whose utcoffset() is None makes a datetime naive, just like no tzinfo.
        if None in zones or any(z.utcoffset(None) is None for z in zones if z is not None):
            row = next(i for i, v in enumerate(values) if v is not None and v.utcoffset() is None)
            raise ctx.error(f"datetime has no time zone: {_NAIVE_HINT}", column=col.name, row=row)
        out_us = pa.array(values, type=TYPES["timestamp"].arrow)
        try:
            _check_timestamp_range(col, out_us, ctx)
        except ValidationError as exc:  # say it with the datetime the user gave
            assert exc.row is not None
            raise ctx.error(
                f"{values[exc.row].isoformat()} {_OUT_OF_RANGE}", column=col.name, row=exc.row
            ) from None
        return out_us
    out: list[int | None] = []
    for row, v in enumerate(values):
        try:
            out.append(timestamp_micros(v, col.epoch_unit))
        except ValueError as exc:
            raise ctx.error(str(exc), column=col.name, row=row) from None
    return pa.array(out, type=pa.int64()).cast(TYPES["timestamp"].arrow)


def _check_timestamp_range(col: Column, arr: pa.Array, ctx: _Context) -> None:
    """Refuse the first value of an Arrow timestamp array (any unit) outside the accepted
    range (`TIMESTAMP_RANGE`), or finer than the microsecond a column stores."""
    unit = arr.type.unit
    ints = arr.cast(pa.int64())
    per = MICROS_PER_UNIT[unit]
    if per is None:  # nanoseconds
        lo, hi = TIMESTAMP_MIN_US * 1000, TIMESTAMP_MAX_US * 1000
    else:  # the whole units inside the range
        lo, hi = -(-TIMESTAMP_MIN_US // per), TIMESTAMP_MAX_US // per
    low, high = pc.min_max(ints).values()
    outside = low.is_valid and (low.as_py() < lo or high.as_py() > hi)
    # (nanoseconds that are not whole microseconds: x != x / 1000 * 1000)
    finer = pc.not_equal(pc.multiply(pc.divide(ints, 1000), 1000), ints) if per is None else None
    if not outside and not (finer is not None and pc.any(finer).as_py()):
        return
    bad = pc.or_(pc.less(ints, lo), pc.greater(ints, hi))
    if finer is not None:
        bad = pc.or_(bad, finer)
    row = pc.index(bad, True).as_py()
    value = ints[row].as_py()
    if lo <= value <= hi:
        reason = f"{value} ns since the epoch {_SUBMICRO}"
    else:
        reason = f"{value} {unit} since the epoch {_OUT_OF_RANGE}"
    raise ctx.error(reason, column=col.name, row=row)


_OUT_OF_RANGE = f"is outside the accepted range {TIMESTAMP_RANGE}"
_SUBMICRO = (
    "has a fraction of a microsecond, which a timestamp column cannot store; "
    "round it first (e.g. Series.dt.floor('us'))"
)


def timestamp_micros(v: Any, epoch_unit: str | None) -> int | None:
    """Microseconds since the epoch (UTC) for one accepted timestamp value; ValueError
    for a value outside `TIMESTAMP_RANGE` or finer than a microsecond."""
    if v is None:
        return None
    if isinstance(v, dt.datetime):
        if v.tzinfo is None or v.tzinfo.utcoffset(v) is None:
            raise ValueError(f"datetime has no time zone: {_NAIVE_HINT}")
        if getattr(v, "nanosecond", 0):  # a pandas Timestamp
            raise ValueError(f"{v.isoformat()} {_SUBMICRO}")
        if not TIMESTAMP_MIN <= v <= TIMESTAMP_MAX:
            raise ValueError(f"{v.isoformat()} {_OUT_OF_RANGE}")
        delta = v - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(v, str):
        try:
            parsed = dt.datetime.fromisoformat(v)
        except ValueError:
            raise ValueError(f"not an ISO-8601 timestamp: {v[:40]!r}") from None
        if parsed.tzinfo is None:
            raise ValueError(
                f"ISO-8601 timestamp without offset: {v[:40]!r}; add 'Z' or "
                "'+HH:MM' (local times are ambiguous)"
            )
        return timestamp_micros(parsed, None)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"expected a timestamp, got {type(v).__name__}")
    if epoch_unit is None:
        raise ValueError(
            "got a number for a timestamp but the column declares no epoch_unit "
            "(s, ms, us or ns); pass a datetime or ISO-8601 string instead"
        )
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"timestamp is not finite: {v}")
    factor = MICROS_PER_UNIT[epoch_unit]
    micros = int(v) // 1000 if factor is None else v * factor
    if not TIMESTAMP_MIN_US <= micros <= TIMESTAMP_MAX_US:
        raise ValueError(f"{v} {epoch_unit} since the epoch {_OUT_OF_RANGE}")
    return round(micros)


def _convert_json(col: Column, values: ColumnData, ctx: _Context) -> pa.Array:
    if isinstance(values, pa.Array | pa.ChunkedArray):
        values = _combine(values).to_pylist()
    out: list[str | None] = []
    for row, v in enumerate(values):
        try:
            out.append(json_text(v))
        except ValueError as exc:
            raise ctx.error(str(exc), column=col.name, row=row) from None
    return pa.array(out, type=pa.string())


def json_text(v: Any) -> str | None:
    """The JSON text stored for one value: strings must already be JSON, others are dumped."""
    if v is None:
        return None
    if isinstance(v, str):
        try:
            orjson.loads(v)  # a fast yes: orjson accepts no text the json module refuses
            return v
        except orjson.JSONDecodeError as exc:
            _refuse_depth(exc)  # else json decides: it also reads numbers beyond a double
        problem = None if v.isascii() else text_problem(v)
        if problem:
            raise ValueError(problem)
        try:
            _JSON_CHECK.decode(v)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON text ({exc.msg} at position {exc.pos})") from None
        except RecursionError:
            raise ValueError(_TOO_DEEP) from None
        return v
    try:
        text = json.dumps(v, allow_nan=False, separators=(",", ":"), default=json_default)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot store as JSON: {exc}") from None
    except RecursionError:
        raise ValueError(_TOO_DEEP) from None
    if len(text) > 2 * MAX_JSON_DEPTH:  # (shorter text cannot be that deep)
        try:
            orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            _refuse_depth(exc)  # (other complaints, e.g. an int beyond 64 bits, are fine)
    return text


# How deeply JSON may nest (orjson's limit): deeper values are refused by name, in text
# or as Python objects, however deep the caller's stack or high its recursion limit.
MAX_JSON_DEPTH = 1024
_TOO_DEEP = f"JSON nested more than {MAX_JSON_DEPTH} levels deep"


def _refuse_depth(exc: orjson.JSONDecodeError) -> None:
    if exc.msg.startswith("depth limit"):
        raise ValueError(_TOO_DEEP) from None


def text_problem(v: str) -> str | None:
    """Why a string cannot be stored (it has no UTF-8 form: a lone surrogate), or None."""
    try:
        v.encode("utf-8")
    except UnicodeEncodeError as exc:
        lone = v[exc.start]
        return f"text with a lone surrogate {lone!r} at position {exc.start} has no UTF-8 form"
    return None


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259); DuckDB and PostgreSQL refuse them.
    raise json.JSONDecodeError(f"{name} is not valid JSON", name, 0)


# Built once: json.loads with any option builds a new decoder per call (2 µs of 3).
_JSON_CHECK = json.JSONDecoder(parse_constant=_refuse_constant)


def json_default(v: Any) -> Any:
    """What JSON columns store for the non-JSON values they accept: dates and datetimes
    as ISO 8601 (a `default=` for json.dumps); anything else is a TypeError."""
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    raise TypeError(f"{type(v).__name__} is not JSON serializable")


# -- checks -------------------------------------------------------------------------------


def _check_nulls(col: Column, arr: pa.Array, ctx: _Context) -> None:
    if col.nullable or arr.null_count == 0:
        return
    row = pc.index(pc.is_null(arr), True).as_py()
    raise ctx.error("missing value in a non-null column", column=col.name, row=row)


def _check_enum(col: Column, arr: pa.Array, ctx: _Context) -> None:
    if col.enum is None or len(arr) == 0:
        return
    ok = pc.or_kleene(pc.is_in(arr, value_set=pa.array(col.enum)), pc.is_null(arr))
    if pc.all(ok).as_py():
        return
    row = pc.index(ok, False).as_py()
    raise ctx.error(
        f"{arr[row].as_py()!r} is not one of {list(col.enum)}", column=col.name, row=row
    )


def _first_bad(
    col: Column, values: ColumnData, ctx: _Context, fallback: str = ""
) -> ValidationError:
    """Find the first row whose value this column refuses (error path only)."""
    pyvalues = _python_values(col.name, values, ctx)
    for row, v in enumerate(pyvalues):
        reason = value_problem(col, v)
        if reason:
            return ctx.error(reason, column=col.name, row=row)
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return ctx.error(f"expected {col.type.name}, got Arrow type {values.type}", column=col.name)
    return ctx.error(fallback or f"values cannot be stored as {col.type.name}", column=col.name)


def _earliest(
    col: Column, values: ColumnData, ctx: _Context, found: ValidationError
) -> ValidationError:
    """The first bad row of a column, whichever check noticed a problem first."""
    if isinstance(values, pa.Array | pa.ChunkedArray) and pa.types.is_timestamp(values.type):
        return found  # (its values may not be Python datetimes: the range check said)
    first = _first_bad(col, values, ctx)
    if first.row is not None and (found.row is None or first.row < found.row):
        return first
    return found


def plain_rows(
    table: Table, rows: list[dict[str, Any]], *, store: str = ""
) -> list[dict[str, Any]]:
    """Validate dict rows one value at a time and return them as plain dicts.

    For tables whose rows never become Arrow (the NDJSON log tier): the same rules as
    to_arrow() (value_problem() is their definition), at a fraction of the cost for the
    one-row writes a log sees. JSON values come back as their text, timestamps as aware
    datetimes, columns in declared order (missing ones as None).
    """
    names, plan = _plain_plan(table)
    for index, row in enumerate(rows):
        if not names.issuperset(row):
            unknown = next(k for k in row if k not in names)
            hint = ", ".join(table.column_names)
            ctx = _Context(store, table.name)
            raise ctx.error(f"unknown column (the table has: {hint})", column=unknown, row=index)
    # Column by column, like to_arrow(), so both report the same first problem.
    for col, free, _ in plan:
        for index, row in enumerate(rows):
            v = row.get(col.name)
            if (type(v) in free and (type(v) is not str or v.isascii())) or (
                v is None and col.nullable
            ):
                continue  # valid whatever the value: no range, no enum, no parse
            problem = value_problem(col, v)
            if problem is not None:
                raise _Context(store, table.name).error(problem, column=col.name, row=index)
    out = []
    for row in rows:
        clean: dict[str, Any] = {}
        for col, _, kind in plan:
            v = row.get(col.name)
            if v is not None and kind is not None:
                if kind == "json":
                    if not isinstance(v, str):
                        v = json_text(v)  # JSON text was checked above and is kept as given
                else:
                    micros = timestamp_micros(v, col.epoch_unit)
                    assert micros is not None
                    v = _EPOCH + dt.timedelta(microseconds=micros)
            clean[col.name] = v
        out.append(clean)
    return out


# Per table: its column names, and per column the types valid whatever the value and
# the conversion plain_rows applies ("json", "timestamp" or None). Built once per table.
_PlainPlan: TypeAlias = (
    "tuple[frozenset[str], tuple[tuple[Column, frozenset[type], str | None], ...]]"
)
_PLAIN_PLANS: dict[int, tuple[Table, _PlainPlan]] = {}


def _plain_plan(table: Table) -> _PlainPlan:
    hit = _PLAIN_PLANS.get(id(table))
    if hit is not None and hit[0] is table:
        return hit[1]
    plan = tuple(
        (
            c,
            _ANY_VALUE.get(c.type.name, _NO_TYPES) if c.enum is None else _NO_TYPES,
            c.type.name if c.type.name in ("json", "timestamp") else None,
        )
        for c in table.columns
    )
    built = (frozenset(table.column_names), plan)
    if len(_PLAIN_PLANS) >= 256:
        _PLAIN_PLANS.clear()
    _PLAIN_PLANS[id(table)] = (table, built)  # holding `table` keeps its id unique
    return built


# Types valid for a logical type whatever the value: no range, no parse, no time zone.
_ANY_VALUE = {
    "string": frozenset({str}),
    "bool": frozenset({bool}),
    "float64": frozenset({float, int}),
}
_NO_TYPES: frozenset[type] = frozenset()


def value_problem(col: Column, v: Any) -> str | None:
    """Why one Python value is not acceptable for `col`, or None if it is.

    This is the per-value definition of validity; the columnar fast path must agree
    with it (a property test checks that).
    """
    if v is None:
        return None if col.nullable else "missing value in a non-null column"
    kind = col.type.name
    got = type(v).__name__
    if kind in ("string",):
        ok = isinstance(v, str)
        if ok and not v.isascii():
            problem = text_problem(v)
            if problem:
                return problem
    elif kind == "bool":
        ok = isinstance(v, bool)
    elif kind in _INT_LIMITS:
        if isinstance(v, int) and not isinstance(v, bool):
            lo, hi = _INT_LIMITS[kind]
            if not lo <= v <= hi:
                return f"{v} does not fit in {kind} ({lo}..{hi})"
            ok = True
        else:
            ok = False
    elif kind.startswith("float"):
        ok = isinstance(v, int | float) and not isinstance(v, bool)
        if ok and kind == "float32" and math.isfinite(v) and abs(v) > _FLOAT32_MAX:
            return f"{v} does not fit in float32"
    elif kind == "timestamp":
        try:
            timestamp_micros(v, col.epoch_unit)
            ok = True
        except ValueError as exc:
            return str(exc)
    elif kind == "date":
        if isinstance(v, str):
            try:
                if not _ISO_DATE.match(v):
                    raise ValueError(v)
                dt.date.fromisoformat(v)
                ok = True
            except ValueError:
                return f"not an ISO date (YYYY-MM-DD): {v[:40]!r}"
        else:
            ok = isinstance(v, dt.date) and not isinstance(v, dt.datetime)
    elif kind == "json":
        try:
            json_text(v)
            ok = True
        except ValueError as exc:
            return str(exc)
    elif kind == "list<string>":
        ok = isinstance(v, list | tuple) and all(isinstance(x, str) or x is None for x in v)
        if not ok:
            return "expected a list of strings"
        for x in v:
            problem = None if x is None or x.isascii() else text_problem(x)
            if problem:
                return problem
    elif kind == "binary":
        ok = isinstance(v, bytes | bytearray | memoryview)
    else:  # pragma: no cover - every logical type is handled above
        ok = False
    if not ok:
        shown = "(value withheld: the column is redacted)" if col.redact else _short(v)
        return f"expected {kind}, got {got} {shown}"
    if col.enum is not None and v not in col.enum:
        return f"{v!r} is not one of {list(col.enum)}"
    return None


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."
