"""Query plans: which lake tables a query reads, and which of their partitions it can need.

The pure reading of DuckDB's parse tree lives in `lake/prune.py`; this module is its
DuckDB edge: it asks DuckDB to parse the query, and to evaluate the bound expressions
(so `'2026-01-02'::TIMESTAMPTZ`, `$since` or `now() - INTERVAL 1 DAY` mean exactly
what they mean in the query). The parse is cached per query text; the bounds are
evaluated for every run, since parameters and the clock change.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from telelake.lake import prune
from telelake.lake.tier import Snapshot
from telelake.schema.model import Schema, Table

# What DuckDB compares with a TIMESTAMPTZ column by casting it to TIMESTAMPTZ.
_TIME_TYPES = ", ".join(
    f"'{t}'"
    for t in (
        "VARCHAR",
        "DATE",
        "TIMESTAMP",
        "TIMESTAMP WITH TIME ZONE",
        "TIMESTAMP_S",
        "TIMESTAMP_MS",
        "TIMESTAMP_NS",
    )
)
_CACHED = 256  # query texts whose parse is kept

Params = Mapping[str, Any] | list[Any] | None


@dataclass(frozen=True)
class Plan:
    """What one query reads: the lake tables it names (None: maybe any) and their bounds."""

    tables: frozenset[str] | None
    bounds: Mapping[str, prune.Bounds]


EVERYTHING = Plan(None, {})


@dataclass(frozen=True)
class _Parsed:
    """The part of a plan that depends on the query text only."""

    tables: frozenset[str] | None
    terms: list[prune.Term]
    values: str  # SELECT of every term value (time values as epoch µs); "" if none
    parameters: Mapping[str, str]  # our parameter name -> the query's identifier


class Planner:
    """Plans queries of `schema`'s lake tables on the DuckDB connection `con`."""

    def __init__(self, schema: Schema, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self._lake = {t.name.lower(): t for t in schema.tables.values() if t.tier == "lake"}
        self._times = {name: _time_column(t) for name, t in self._lake.items()}
        self._partitions = {
            name: (*t.partition.time, *t.partition.keys) for name, t in self._lake.items()
        }
        # A column named like the clock (`current_date`) would win over the clock.
        columns = {c.lower() for t in schema.tables.values() for c in t.column_names}
        self._clocks = prune.CLOCK_NAMES - columns
        self._functions: dict[str, str] | None = None
        self._select_one_json: str | None = None
        self._parsed: OrderedDict[str, _Parsed] = OrderedDict()

    def plan(self, text: str, params: Params) -> Plan:
        """The plan of `text` run with `params` (EVERYTHING when unsure)."""
        parsed = self._parsed.get(text)
        if parsed is None:
            parsed = self._parse(text)
            self._parsed[text] = parsed
            if len(self._parsed) > _CACHED:
                self._parsed.popitem(last=False)
        else:
            self._parsed.move_to_end(text)
        if parsed.tables is None:
            return EVERYTHING
        tables = frozenset(self._lake[n].name for n in parsed.tables)
        if not parsed.values:
            return Plan(tables, {})
        values = self._evaluate(parsed, params)
        out: dict[str, prune.Bounds] = {}
        for key, table in self._lake.items():
            mine = [t for t in parsed.terms if t.table == key]
            if mine:
                bounds = prune.bounds(mine, values, table.time, table.partition.keys)
                if bounds.restricts:
                    out[table.name] = bounds
        return Plan(tables, out)

    @staticmethod
    def prunable(table: Table, bounds: prune.Bounds, snap: Snapshot) -> bool:
        """May `snap`, taken with `bounds`, stand for the whole table in this query?

        Live rows of a keyed table are kept only when no Parquet row has their key;
        that check needs every file that may hold the key, so with live rows pruning
        is safe only when the key includes each column the bounds restrict.
        """
        if snap.wal is None or not snap.wal.num_rows or not table.key:
            return True
        return bounds.columns(table.time) <= set(table.key)

    # -- DuckDB's side ----------------------------------------------------------------------

    def _parse(self, text: str) -> _Parsed:
        try:
            ast = json.loads(self._one("SELECT json_serialize_sql(?)", [text])[0])
        except (duckdb.Error, ValueError, IndexError):
            return _Parsed(None, [], "", {})
        found = prune.scan(ast, self._times, self._partitions, self.functions(), self._clocks)
        if found.tables is None or not found.terms:
            return _Parsed(found.tables, [], "", {})
        select: list[dict[str, Any]] = []
        outer: list[str] = []
        parameters: dict[str, str] = {}
        for term in found.terms:
            for value in term.values:
                alias = f"v{len(select)}"
                expr, names = prune.rename_parameters(value, f"tl_{alias}")
                parameters.update(names)
                expr["alias"] = alias
                select.append(expr)
                if term.column == self._times.get(term.table):
                    outer.append(
                        f"CASE WHEN typeof({alias}) IN ({_TIME_TYPES}) "
                        f"THEN epoch_us(TRY_CAST({alias} AS TIMESTAMPTZ)) END"
                    )
                else:
                    outer.append(alias)
        try:
            template = json.loads(self._select_one())
            template["statements"][0]["node"]["select_list"] = select
            inner = self._one("SELECT json_deserialize_sql(?)", [json.dumps(template)])[0]
        except (duckdb.Error, ValueError, IndexError, KeyError):
            return _Parsed(found.tables, [], "", {})
        return _Parsed(
            found.tables, found.terms, f"SELECT {', '.join(outer)} FROM ({inner})", parameters
        )

    def _evaluate(self, parsed: _Parsed, params: Params) -> dict[int, Any]:
        """Every term value, by `id()` of its expression node ({} when they do not evaluate)."""
        try:
            bound = {
                name: prune.parameter_value(params, ident)
                for name, ident in parsed.parameters.items()
            }
            row = self._one(parsed.values, bound or None)
        except (duckdb.Error, KeyError, IndexError, TypeError, ValueError):
            return {}  # the query itself will say what is wrong; here: no pruning
        nodes = prune.value_expressions(parsed.terms)
        return {id(node): value for node, value in zip(nodes, row, strict=False)}

    def functions(self) -> dict[str, str]:
        """DuckDB's built-in functions and how stable each is (read once).

        CONSISTENT or CONSISTENT_WITHIN_QUERY when every overload is; anything else
        (volatile, or a built-in macro) may not bound a partition, but is still a name
        a query may use without hiding a table read.
        """
        if self._functions is None:
            rows = self._con.execute(
                "SELECT lower(function_name), list(DISTINCT coalesce(stability, 'MACRO')) "
                "FROM duckdb_functions() WHERE internal "
                "AND function_type IN ('scalar', 'aggregate', 'window', 'macro') GROUP BY 1"
            ).fetchall()
            self._functions = {name: _stability(set(kinds)) for name, kinds in rows}
        return self._functions

    def _select_one(self) -> str:
        """`SELECT 1` as DuckDB's parse tree (JSON): the frame bound values are put in."""
        if self._select_one_json is None:
            self._select_one_json = str(self._one("SELECT json_serialize_sql('SELECT 1')")[0])
        return self._select_one_json

    def _one(self, sql: str, params: Any = None) -> tuple[Any, ...]:
        # fetchall: a half-read result keeps DuckDB's connection busy.
        rows = self._con.execute(sql, params).fetchall()
        return tuple(rows[0]) if rows else ()


def _stability(kinds: set[str]) -> str:
    if kinds == {prune.CONSISTENT}:
        return prune.CONSISTENT
    if kinds <= {prune.CONSISTENT, prune.WITHIN_QUERY}:
        return prune.WITHIN_QUERY
    return "OTHER"


def _time_column(table: Table) -> str | None:
    """The table's time column if it holds timestamps (what partitions are cut by)."""
    if table.time is None or not pa.types.is_timestamp(table.column(table.time).type.arrow):
        return None
    return table.time
