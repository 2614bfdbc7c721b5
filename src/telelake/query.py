"""Queries: a DuckDB connection with a view per lake table and the schema's macros."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb

from telelake._lazy import lazy
from telelake.errors import QueryError
from telelake.formats import Rows
from telelake.lake.tier import LakeTier
from telelake.planner import Plan, Planner
from telelake.schema.model import Schema, SqlObject

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy("pyarrow")

_T = TypeVar("_T")
_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")  # SQLite's :name


class Result:
    """The rows of a query, materialised as an Arrow table."""

    def __init__(self, table: pa.Table) -> None:
        self._table = table

    @property
    def columns(self) -> list[str]:
        """Column names, in order."""
        return list(self._table.column_names)

    def __len__(self) -> int:
        return int(self._table.num_rows)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.rows())

    def to_arrow(self) -> pa.Table:
        """The result as a pyarrow Table."""
        return self._table

    def to_pandas(self) -> Any:
        """The result as a pandas DataFrame (needs pandas)."""
        return self._table.to_pandas()

    def rows(self) -> list[tuple[Any, ...]]:
        """The result as a list of tuples."""
        cols = [c.to_pylist() for c in self._table.columns]
        return list(zip(*cols, strict=True)) if cols else []

    def to_pylist(self) -> list[dict[str, Any]]:
        """The result as a list of dicts."""
        rows: list[dict[str, Any]] = self._table.to_pylist()
        return rows

    def scalar(self) -> Any:
        """The first column of the first row (None when there is no row)."""
        if self._table.num_rows == 0 or self._table.num_columns == 0:
            return None
        return self._table.column(0)[0].as_py()


def _integral_decimals_to_int(table: pa.Table) -> pa.Table:
    """DuckDB's SUM over integers is a 128-bit HUGEINT, which Arrow shows as
    decimal(38, 0); give Python users plain ints when every value fits in int64."""
    for i, field in enumerate(table.schema):
        if pa.types.is_decimal(field.type) and field.type.scale == 0:
            try:
                column = table.column(i).cast(pa.int64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
            table = table.set_column(i, pa.field(field.name, pa.int64()), column)
    return table


def _arrow(rel: duckdb.DuckDBPyRelation | None) -> pa.Table:
    table = rel.to_arrow_table() if rel is not None else pa.table({})
    return _integral_decimals_to_int(table)


def _python(rel: duckdb.DuckDBPyRelation | None) -> Rows:
    if rel is None:
        return Rows([], [])
    return Rows(list(rel.columns), rel.fetchall())


# A query retries while each failure names a file that is gone (a compaction or
# retention retired it after our snapshot listed it); this many times at most.
_RETRIES = 200
_MISSING_FILE = re.compile(r"No such file|No files found|does not exist", re.IGNORECASE)
_QUOTED = re.compile(r'"([^"]+)"')

# A confined engine runs reads only: SELECT (with DESCRIBE, SHOW, SUMMARIZE, FROM ...,
# VALUES), and EXPLAIN of one. Anything else (COPY, EXPORT, ATTACH, CREATE, SET, INSTALL,
# CALL, PRAGMA...) is refused before it runs.
_EXPLAIN = re.compile(r"^.*?\bEXPLAIN\b(?:\s+ANALY[SZ]E\b)?", re.IGNORECASE | re.DOTALL)
# How a confined DuckDB is set up, in this order (the DuckDB "securing" guide): the
# store's directories stay readable, nothing else on disk or the network; no extension
# is installed or loaded, no secret is stored, no Python variable is scanned; then the
# configuration is locked, so SQL cannot SET any of it back.
_CONFINE = (
    "SET enable_external_access = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET allow_community_extensions = false",
    "SET allow_persistent_secrets = false",
    "SET python_enable_replacements = false",
    "SET lock_configuration = true",
)
OPT_IN = "allow_external=True (CLI: --allow-external)"


def confine(con: duckdb.DuckDBPyConnection, directories: list[Path]) -> None:
    """Lock `con` down to reading the files under `directories` (and nothing else)."""
    allowed = sorted({os.path.join(str(d), "") for p in directories for d in (p, p.resolve())})
    con.execute("SET allowed_directories = $dirs", {"dirs": allowed})
    for setting in _CONFINE:
        con.execute(setting)


def refuse_unless(
    con: duckdb.DuckDBPyConnection, text: str, kinds: frozenset[duckdb.StatementType], why: str
) -> None:
    """QueryError unless every statement of `text` is of one of `kinds` (an EXPLAIN
    counts as the statement it explains)."""
    try:
        statements = con.extract_statements(text)
    except duckdb.Error:
        return  # running it reports the syntax error
    for statement in statements:
        kind = statement.type
        if kind == duckdb.StatementType.EXPLAIN and duckdb.StatementType.SELECT in kinds:
            inner = _EXPLAIN.sub("", statement.query, count=1)
            try:
                kinds_inside = {s.type for s in con.extract_statements(inner)}
            except duckdb.Error:
                kinds_inside = {kind}
            if kinds_inside and kinds_inside <= kinds:
                continue
        elif kind in kinds:
            continue
        first = statement.query.strip().split(None, 1)[0] if statement.query.strip() else ""
        raise QueryError(f"{why}; {first or kind.name} is not allowed")


_CHECKED = 256  # query texts whose read-only verdict is kept
_READS = frozenset({duckdb.StatementType.SELECT})
_DEFINITIONS = frozenset({duckdb.StatementType.CREATE})


class Engine:
    """One in-process DuckDB connection over a store's lake tables.

    Views are rebuilt before each query from a consistent snapshot of each table, so a
    query sees every acknowledged row, by this process or any other, exactly once.

    `confined` (the default) makes it read-only and confined to the store: queries are
    reads only (`refuse_unless`) and DuckDB reads no file but the lake tables' Parquet
    files (`confine`). Unconfined, it is DuckDB in full: any statement, any file.
    """

    def __init__(self, schema: Schema, lake: LakeTier, *, confined: bool = True) -> None:
        self.schema = schema
        self.lake = lake
        self.confined = confined
        self._con = duckdb.connect(":memory:")
        self._con.execute("SET TimeZone = 'UTC'")
        # Published files never change in place: their footers can be cached across queries.
        self._con.execute("SET parquet_metadata_cache = true")
        if confined:  # each lake table's Parquet files and view anchor, nothing else of
            # the store either (not its redaction key, config, logs or SQLite database)
            lake_tables = [t for t in schema.tables.values() if t.tier == "lake"]
            confine(
                self._con,
                [lake.table_dir(t) for t in lake_tables]
                + [lake.anchor_path(t).parent for t in lake_tables],
            )
        self._lock = threading.Lock()
        self._ready = False
        self._views: dict[str, str] = {}  # table -> SQL of its current view
        self._planner = Planner(schema, self._con)
        self._read_only: set[str] = set()  # query texts found to be reads only

    def close(self) -> None:
        """Close the DuckDB connection."""
        self._con.close()

    def _refresh(self, plan: Plan) -> None:
        # Views are rebuilt from a fresh snapshot before every query: the Parquet files
        # published so far (by any process) plus the live WAL rows of every writer.
        for table in self.schema.tables.values():
            if table.tier != "lake":
                continue
            if self._ready and plan.tables is not None and table.name not in plan.tables:
                continue  # the query does not read it
            bounds = plan.bounds.get(table.name)
            snap = self.lake.snapshot(table, bounds, footers=self._con)
            if bounds is not None and not self._planner.prunable(table, bounds, snap):
                snap = self.lake.snapshot(table, footers=self._con)
            relation = f"__tl_wal_{table.name}"
            if snap.wal is not None and snap.wal.num_rows:
                # Re-registering swaps the rows under a view that names the relation.
                self._con.register(relation, self.lake.wal_view_rows(table, snap.wal))
                sql = self.lake.view_sql(table, snap, relation)
            else:
                sql = self.lake.view_sql(table, snap, None)
            if self._views.get(table.name) != sql:  # binding a view costs: only on change
                self._con.execute(f'CREATE OR REPLACE VIEW "{table.name}" AS {sql}')
                self._views[table.name] = sql
        if not self._ready:
            where = f"query failed: schema {self.schema.name!r}"
            for view in self.schema.views.values():
                if self.confined:  # the schema's SQL is held to what queries may do
                    refuse_unless(self._con, view.sql, _READS, f"{where}, view {view.name!r}")
                self._con.execute(f'CREATE OR REPLACE VIEW "{view.name}" AS {view.sql}')
            for macro in self.schema.macros.values():
                if self.confined:  # a macro's SQL defines, never writes a file
                    why = f"{where}, macro {macro.name!r} may only CREATE"
                    refuse_unless(self._con, macro.sql, _DEFINITIONS, why)
                self._con.execute(macro.sql)
        self._ready = True

    def sql(self, text: str, params: Mapping[str, Any] | list[Any] | None = None) -> Result:
        """Run SQL (DuckDB dialect) with optional `$name` or `?` parameters."""
        return Result(self._fetch(text, params, _arrow))

    def rows(self, text: str, params: Mapping[str, Any] | list[Any] | None = None) -> Rows:
        """Like `sql`, the result as DuckDB's own Python values (no Arrow involved)."""
        return self._fetch(text, params, _python)

    def _fetch(
        self,
        text: str,
        params: Mapping[str, Any] | list[Any] | None,
        fetch: Callable[[duckdb.DuckDBPyRelation | None], _T],
    ) -> _T:
        with self._lock:
            if self.confined and text not in self._read_only:
                why = f"query failed: queries are read-only unless {OPT_IN}"
                refuse_unless(self._con, text, _READS, why)
                if len(self._read_only) >= _CHECKED:
                    self._read_only.clear()
                self._read_only.add(text)
            try:
                return self._run(text, params, fetch)
            except TimeoutError as exc:
                raise QueryError(f"query failed: {exc}") from exc
            except duckdb.Error as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if self.confined and isinstance(exc, duckdb.PermissionException):
                    first += f" (queries read the store's lake tables only unless {OPT_IN})"
                raise QueryError(f"query failed: {first}") from exc

    def _run(
        self,
        text: str,
        params: Mapping[str, Any] | list[Any] | None,
        fetch: Callable[[duckdb.DuckDBPyRelation | None], _T],
    ) -> _T:
        plan = self._planner.plan(text, params)
        for attempt in range(_RETRIES):
            try:
                self._refresh(plan)  # binding a view opens footers: it can race a swap too
                rel = self._con.sql(text, params=params) if params else self._con.sql(text)
                return fetch(rel)
            except duckdb.IOException as exc:
                # A compaction or retention removed a file between our snapshot and
                # DuckDB opening it: the rows live on elsewhere, so look again, as long
                # as each fresh snapshot has moved past the file that vanished.
                if attempt == _RETRIES - 1 or not _MISSING_FILE.search(str(exc)):
                    raise
                if any(os.path.exists(p) for p in _QUOTED.findall(str(exc))):
                    raise  # the file is there: something else is wrong
                time.sleep(min(0.001 * attempt, 0.02))  # let a busy swap get ahead
        raise AssertionError("unreachable")  # pragma: no cover

    def named(self, name: str, params: Mapping[str, Any]) -> Result:
        """Run the schema's named query `name` with `params`."""
        query = find_query(self.schema, name)
        if query.engine != "duckdb":
            raise QueryError(f"query {name!r} runs on {query.engine}, which this store lacks")
        bound = bind_params(query, params)
        return self.sql(query.sql, bound or None)


def find_query(schema: Schema, name: str) -> SqlObject:
    """The named query `name` of `schema` (QueryError listing the known ones)."""
    query = schema.queries.get(name)
    if query is None:
        known = ", ".join(sorted(schema.queries)) or "none"
        raise QueryError(f"schema {schema.name!r} has no query {name!r} (known: {known})")
    return query


def bind_params(query: SqlObject, params: Mapping[str, Any]) -> dict[str, Any]:
    """Check `params` against the query: names, declared types and enums, ranges."""
    name = query.name
    pattern = _PARAM if query.engine == "duckdb" else _NAMED
    used = set(pattern.findall(query.sql)) | {p.name for p in query.params}
    unknown = sorted(set(params) - used)
    if unknown:
        raise QueryError(
            f"query {name!r} takes no parameter {unknown[0]!r}"
            f" (parameters: {', '.join(sorted(used)) or 'none'})"
        )
    missing = sorted(used - set(params))
    if missing:
        raise QueryError(f"query {name!r} needs parameter {missing[0]!r}")
    bound = dict(params)
    for p in query.params:
        value = bound[p.name]
        if p.type is not None and p.type.name.startswith("int"):
            if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise QueryError(f"query {name!r}: {p.name} must be an integer, not {value!r}")
        elif p.type is not None and p.type.name == "string" and not isinstance(value, str):
            raise QueryError(f"query {name!r}: {p.name} must be text, not {value!r}")
        if p.enum is not None and value not in p.enum:
            raise QueryError(
                f"query {name!r}: {p.name} {value!r} is not one of {', '.join(p.enum)}"
            )
        bound[p.name] = value
    for low, high in query.ranges:
        if bound[low] > bound[high]:
            raise QueryError(
                f"query {name!r}: {low} ({bound[low]}) is after {high} ({bound[high]}); "
                "give the range oldest first"
            )
    return bound
