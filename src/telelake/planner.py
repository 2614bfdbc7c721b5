"""Query plans: which lake tables a query reads, and which of their partitions it can need.

The pure reading of DuckDB's parse tree lives in `lake/prune.py`; this module is its
DuckDB edge: it asks DuckDB to parse the query, and to evaluate the bound expressions
(so `'2026-01-02'::TIMESTAMPTZ`, `$since` or `now() - INTERVAL 1 DAY` mean exactly
what they mean in the query). The parse is cached per query text; the bounds are
evaluated for every run, since parameters and the clock change.

Table macros are seen through: the schema's macros (the engine creates them before the
first query runs) are parsed from the schema; once a statement that may define or
replace one has run (anything but a SELECT), the definitions are read from DuckDB's
catalog (`duckdb_functions()`) the next time a query calls a table macro.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb

from telelake._lazy import lazy
from telelake.lake import prune
from telelake.lake.tier import Snapshot
from telelake.schema.model import Schema, Table

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy("pyarrow")

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
# `CREATE [OR REPLACE] MACRO name(a, b) AS TABLE <body>`, after leading comments.
_TABLE_MACRO = re.compile(
    r"CREATE\s+(?:OR\s+REPLACE\s+)?MACRO\s+([A-Za-z_][A-Za-z0-9_]*)\s*"
    r"\(([^()]*)\)\s*AS\s+TABLE\s+(.*?)[\s;]*",
    re.IGNORECASE | re.DOTALL,
)
_LEADING_COMMENTS = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.DOTALL)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MACRO_NAME = re.compile(
    r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMP(?:ORARY)?\s+)?MACRO\s+(?:[\w\"]+\.)*\"?(\w+)",
    re.IGNORECASE,
)

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
    # Not a SELECT: it may define or replace a macro (so macros are read again).
    defines: bool = False
    # The generation of macro definitions the parse used (None: it calls no macro).
    macros: int | None = None


class Planner:
    """Plans queries of `schema`'s lake tables on the DuckDB connection `con`."""

    def __init__(self, schema: Schema, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self._lake = {t.name.lower(): t for t in schema.tables.values() if t.tier == "lake"}
        self._times = {name: _time_column(t) for name, t in self._lake.items()}
        self._partitions = {
            name: (*t.partition.time, *t.partition.keys, *t.lookup)
            for name, t in self._lake.items()
        }
        self._columns = {
            name: frozenset(c.lower() for c in (*t.column_names, *t.partition.names))
            for name, t in self._lake.items()
        }
        self._schema_macros = [m.sql for m in schema.macros.values()]
        self._macros: dict[str, prune.Macro] | None = None  # by name; None: not read yet
        self._macros_from_catalog = False
        self._macro_generation = 0
        # A column named like the clock (`current_date`) would win over the clock.
        columns = {c.lower() for t in schema.tables.values() for c in t.column_names}
        self._clocks = prune.CLOCK_NAMES - columns
        self._functions: dict[str, str] = {}  # the built-ins looked up so far
        self._own_macros = {
            m.lower() for sql in self._schema_macros for m in _MACRO_NAME.findall(sql)
        }
        self._looked_up: set[str] | None = set()  # the names looked up; None: all of them
        self._select_one_json: str | None = None
        self._parsed: OrderedDict[str, _Parsed] = OrderedDict()

    def plan(self, text: str, params: Params) -> Plan:
        """The plan of `text` run with `params` (EVERYTHING when unsure)."""
        parsed = self._parsed.get(text)
        if parsed is None or parsed.macros not in (None, self._macro_generation):
            parsed = self._parse(text)
            self._parsed[text] = parsed
            if len(self._parsed) > _CACHED:
                self._parsed.popitem(last=False)
        else:
            self._parsed.move_to_end(text)
        if parsed.defines:
            self.forget_macros()
        if parsed.tables is None:
            return EVERYTHING
        tables = frozenset(self._lake[n].name for n in parsed.tables)
        if not parsed.values:
            return Plan(tables, {})
        values, collated = self._evaluate(parsed, params)
        out: dict[str, prune.Bounds] = {}
        for key, table in self._lake.items():
            mine = [t for t in parsed.terms if t.table == key]
            if collated:  # text compares by a collation: text bounds are not exact
                textual = {*table.partition.keys, *table.lookup}
                mine = [t for t in mine if t.column not in textual]
            if mine:
                bounds = prune.bounds(mine, values, table.time, table.partition.keys, table.lookup)
                if bounds.restricts:
                    out[table.name] = bounds
        return Plan(tables, out)

    def forget_macros(self) -> None:
        """Read table macro definitions from DuckDB's catalog from now on (a statement
        may have created, replaced or dropped one)."""
        self._macros = None
        self._macros_from_catalog = True
        self._macro_generation += 1

    @staticmethod
    def prunable(table: Table, bounds: prune.Bounds, snap: Snapshot) -> bool:
        """May `snap`, taken with `bounds`, stand for the whole table in this query?

        Live rows of a keyed table are kept only when no Parquet row has their key;
        that check needs every file that may hold the key, so with live rows pruning
        is safe only when the key includes each column the bounds restrict (lookup
        columns too: `session_id` is part of every process_triage key).
        """
        if snap.wal is None or not snap.wal.num_rows or not table.key:
            return True
        return bounds.columns(table.time) <= set(table.key)

    # -- DuckDB's side ----------------------------------------------------------------------

    def _parse(self, text: str) -> _Parsed:
        try:
            ast = json.loads(self._one("SELECT json_serialize_sql(?)", [text])[0])
        except (duckdb.Error, ValueError, IndexError):
            return _Parsed(None, [], "", {}, defines=True)
        if not isinstance(ast, dict) or ast.get("error"):
            return _Parsed(None, [], "", {}, defines=True)
        generation = None
        if prune.macro_calls(ast):
            generation = self._macro_generation
            ast = prune.expand_macros(ast, self._table_macros())
        found = prune.scan(ast, self._times, self._partitions, _Builtins(self), self._clocks)
        if found.tables is None or not found.terms:
            return _Parsed(found.tables, [], "", {}, macros=generation)
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
        # Text values compare by the session's default collation (`nocase` would make
        # 'A' = 'a'): pruning by text is exact only with none.
        outer.append("current_setting('default_collation')")
        try:
            template = json.loads(self._select_one())
            template["statements"][0]["node"]["select_list"] = select
            inner = self._one("SELECT json_deserialize_sql(?)", [json.dumps(template)])[0]
        except (duckdb.Error, ValueError, IndexError, KeyError):
            return _Parsed(found.tables, [], "", {}, macros=generation)
        return _Parsed(
            found.tables,
            found.terms,
            f"SELECT {', '.join(outer)} FROM ({inner})",
            parameters,
            macros=generation,
        )

    def _evaluate(self, parsed: _Parsed, params: Params) -> tuple[dict[int, Any], bool]:
        """Every term value, by `id()` of its expression node ({} when they do not
        evaluate), and whether text compares by a collation in this session."""
        try:
            bound = {
                name: prune.parameter_value(params, ident)
                for name, ident in parsed.parameters.items()
            }
            row = self._one(parsed.values, bound or None)
        except (duckdb.Error, KeyError, IndexError, TypeError, ValueError):
            return {}, False  # the query itself will say what is wrong; here: no pruning
        if not row:
            return {}, False
        nodes = prune.value_expressions(parsed.terms)
        values = {id(node): value for node, value in zip(nodes, row[:-1], strict=False)}
        return values, row[-1] not in ("", None)

    def _table_macros(self) -> dict[str, prune.Macro]:
        """The table macros queries may call, by name (lower case): the schema's until a
        statement may have changed them, then DuckDB's catalog (read once per change)."""
        if self._macros is not None:
            return self._macros
        found: dict[str, list[tuple[list[str], str]]] = {}
        if self._macros_from_catalog:
            rows = self._con.execute(
                "SELECT lower(function_name), parameters, macro_definition "
                "FROM duckdb_functions() WHERE function_type = 'table_macro' AND NOT internal"
            ).fetchall()
            for name, params, body in rows:
                found.setdefault(str(name), []).append((list(params or []), str(body or "")))
        else:
            for sql in self._schema_macros:
                head = _LEADING_COMMENTS.match(sql)
                match = _TABLE_MACRO.fullmatch(sql, head.end() if head else 0)
                if match is None:
                    continue
                params = [p.strip() for p in match.group(2).split(",") if p.strip()]
                if all(_IDENTIFIER.fullmatch(p) for p in params):
                    found.setdefault(match.group(1).lower(), []).append((params, match.group(3)))
        macros: dict[str, prune.Macro] = {}
        for name, definitions in found.items():
            if len(definitions) != 1:
                continue  # overloads, or a temporary macro beside ours: not followed
            params, body = definitions[0]
            try:
                ast = json.loads(self._one("SELECT json_serialize_sql(?)", [body])[0])
            except (duckdb.Error, ValueError, IndexError):
                continue
            seen = prune.macro(params, ast, self._columns) if isinstance(ast, dict) else None
            if seen is not None:
                macros[name] = seen
        self._macros = macros
        return macros

    def functions(self, names: set[str] | None = None) -> dict[str, str]:
        """DuckDB's built-in functions and how stable each is: those called `names` (lower
        case) that are built-ins, or all of them; each is read from DuckDB once.

        CONSISTENT or CONSISTENT_WITHIN_QUERY when every overload is; anything else
        (volatile, or a built-in macro) may not bound a partition, but is still a name
        a query may use without hiding a table read. (Reading DuckDB's whole catalog of
        functions costs more than a one-shot query itself: a query reads its own.)
        """
        if self._looked_up is None:
            return self._functions
        wanted = None if names is None else sorted(names - self._looked_up)
        if wanted is None or wanted:
            only = "" if wanted is None else "AND lower(function_name) IN (SELECT unnest(?)) "
            rows = self._con.execute(
                "SELECT lower(function_name), list(DISTINCT coalesce(stability, 'MACRO')) "
                "FROM duckdb_functions() WHERE internal "
                f"AND function_type IN ('scalar', 'aggregate', 'window', 'macro') {only}"
                "GROUP BY 1",
                None if wanted is None else [wanted],
            ).fetchall()
            self._functions.update({name: _stability(set(kinds)) for name, kinds in rows})
            if wanted is None:
                self._looked_up = None
            else:
                self._looked_up.update(wanted)
        if names is None:
            return self._functions
        return {n: self._functions[n] for n in names if n in self._functions}

    def _select_one(self) -> str:
        """`SELECT 1` as DuckDB's parse tree (JSON): the frame bound values are put in."""
        if self._select_one_json is None:
            self._select_one_json = str(self._one("SELECT json_serialize_sql('SELECT 1')")[0])
        return self._select_one_json

    def _one(self, sql: str, params: Any = None) -> tuple[Any, ...]:
        # fetchall: a half-read result keeps DuckDB's connection busy.
        rows = self._con.execute(sql, params).fetchall()
        return tuple(rows[0]) if rows else ()


class _Builtins(Mapping[str, str]):
    """DuckDB's built-in functions and their stability, as `prune.scan` asks about them,
    read from DuckDB's catalog only for what the answer needs: reading the catalog costs
    more than a one-shot query itself.

    Is a name a built-in (else a macro, which may read any table)? On a connection where
    no statement may have defined one, the only macros are the schema's: any other name
    is a built-in, or one DuckDB refuses when it binds the query. After such a statement
    (`forget_macros`), the catalog says. A stability is always the catalog's.
    """

    def __init__(self, planner: Planner) -> None:
        self._planner = planner

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        planner = self._planner
        if not planner._macros_from_catalog:
            return name not in planner._own_macros
        return name in planner.functions({name})

    def __getitem__(self, name: str) -> str:
        return self._planner.functions({name})[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._planner.functions())

    def __len__(self) -> int:
        return len(self._planner.functions())


def _stability(kinds: set[str]) -> str:
    if kinds == {prune.CONSISTENT}:
        return prune.CONSISTENT
    if kinds <= {prune.CONSISTENT, prune.WITHIN_QUERY}:
        return prune.WITHIN_QUERY
    return "OTHER"


def _time_column(table: Table) -> str | None:
    """The table's time column if it holds timestamps (what partitions are cut by)."""
    if table.time is None or table.column(table.time).type.name != "timestamp":
        return None
    return table.time
