"""Partition pruning: which partitions of a lake table a query can need (pure functions).

A query that names a time range (`sample_ts >= ... AND sample_ts < ...`) or a partition
key (`host_id = '...'`) cannot see a row of the partitions outside it, so the view it
reads lists only the others: the snapshot walks fewer directories and DuckDB opens fewer
footers, and a 1-day query costs about the same over 7 or 90 days of data. A query that
names values of a lookup column (`session_id = '...'`) cannot see a row of a file whose
footer statistics put every value of that column outside them, so only the files that
may hold one are listed.

DuckDB parses the query (`json_serialize_sql`); `scan` reads that tree and is careful:

- a table is pruned only where the query reads it exactly once, as the only FROM item
  of a SELECT, and only by the top-level AND terms of that SELECT's WHERE clause that
  compare the time column or a partition column with an expression free of columns,
  subqueries and volatile functions (`now()` and friends bound from below only: the
  query runs a moment after the bound is computed);
- a call of a table macro whose definition the caller knows is replaced by the macro's
  body (`expand_macros`), so `session_summary('pt-...')` is planned like the SELECTs
  it runs;
- anything it cannot see through (a view or another macro, which may read any table; a
  table function; an unknown name; a statement DuckDB cannot serialise) makes the whole
  query opaque: every table is refreshed and none is pruned.

The bound expressions themselves are evaluated by DuckDB (the caller's job), so casts,
parameters and interval arithmetic mean exactly what they mean in the query.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from telelake.lake import layout, listing, parquet
from telelake.lake.layout import PartitionValues

Node = dict[str, Any]

# Comparison node types, as `column op value` when the column is on the left.
_OPS = {
    "COMPARE_EQUAL": "=",
    "COMPARE_GREATERTHAN": ">",
    "COMPARE_GREATERTHANOREQUALTO": ">=",
    "COMPARE_LESSTHAN": "<",
    "COMPARE_LESSTHANOREQUALTO": "<=",
}
_FLIPPED = {"=": "=", ">": "<", ">=": "<=", "<": ">", "<=": ">="}
# Names DuckDB binds to the clock when no column has them (`current_timestamp`).
CLOCK_NAMES = frozenset({"current_timestamp", "current_date", "current_time", "localtimestamp"})
# An IN list longer than this bounds nothing: evaluating it would cost more than it saves.
MAX_IN_VALUES = 64
# Table functions that cannot read a table of ours.
_HARMLESS_TABLE_FUNCTIONS = {"range", "generate_series", "unnest"}

CONSISTENT, WITHIN_QUERY = "CONSISTENT", "CONSISTENT_WITHIN_QUERY"


@dataclass(frozen=True)
class Term:
    """`column op value(s)` from a WHERE clause, for one lake table.

    `values` are DuckDB expression nodes (one, or several for IN); `clocked` says they
    read the clock, so the term may only bound the column from below.
    """

    table: str
    column: str
    op: str  # "=", ">", ">=", "<", "<=", "in"
    values: tuple[Node, ...]
    clocked: bool = False


@dataclass
class Scan:
    """What a query reads: the lake tables it names (None: cannot tell) and its terms."""

    tables: frozenset[str] | None
    terms: list[Term] = field(default_factory=list)


OPAQUE = Scan(None)


@dataclass(frozen=True)
class Bounds:
    """The partitions of one table a query can need.

    Times are epoch microseconds (UTC): the rows the query sees have
    `lower <= time <= upper` (either may be None). `keys` and `levels` limit partition
    key values (`host_id`) and time levels (`year`) to the sets given; `lookups` limit
    the values of lookup columns (`session_id`), which files' footer statistics can
    rule out (see `admits_file`).
    """

    lower: int | None = None
    upper: int | None = None
    keys: Mapping[str, frozenset[str]] = field(default_factory=dict)
    levels: Mapping[str, frozenset[int]] = field(default_factory=dict)
    lookups: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @property
    def restricts(self) -> bool:
        """True when some partition or file may fall outside these bounds."""
        return (
            self.lower is not None
            or self.upper is not None
            or bool(self.keys or self.levels or self.lookups)
        )

    @property
    def restricts_partitions(self) -> bool:
        """True when some partition directory may fall outside these bounds (lookups
        rule out files, never directories)."""
        return self.lower is not None or self.upper is not None or bool(self.keys or self.levels)

    def columns(self, time: str | None) -> set[str]:
        """The table columns these bounds restrict (time levels count as the time column)."""
        out = set(self.keys) | set(self.lookups)
        if time is not None and (self.lower is not None or self.upper is not None or self.levels):
            out.add(time)
        return out

    def admits(self, values: PartitionValues) -> bool:
        """Could the partition (or the directory prefix of one) hold a row we need?"""
        for name, text in values:
            if name in self.keys and text not in self.keys[name]:
                return False
            if name in self.levels and _int(text) not in self.levels[name]:
                return False
        if self.lower is None and self.upper is None:
            return True
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            return False  # an empty range: no partition holds a row of it
        try:
            start, end = layout.partition_start(values), layout.partition_end(values)
        except ValueError:
            return True  # not a partition directory we understand: keep it
        if start is None or end is None:
            return True
        if self.lower is not None and _micros(end) <= self.lower:
            return False
        return self.upper is None or _micros(start) <= self.upper

    def admits_ranges(self, ranges: parquet.Ranges | None) -> bool:
        """Could a file whose lookup columns span `ranges` (its footer statistics, None
        when unknown) hold a row we need? Some value of each lookup must lie in range."""
        if not self.lookups or ranges is None:
            return True
        for name, values in self.lookups.items():
            span = ranges.get(name)
            if span is None:
                return False  # the file has no non-empty row group: no row at all
            low, high = span
            try:
                for v in values:
                    if low <= v <= high:  # type: ignore[operator]
                        break
                else:
                    return False
            except TypeError:
                return True  # statistics of another type (should not happen): keep it
        return True

    @cached_property
    def _lookup_columns(self) -> tuple[str, ...]:
        return tuple(sorted(self.lookups))

    def admitted(self, directory: str, names: list[str]) -> list[str]:
        """The data files `names` of `directory` that `admits_file` admits.

        The union of their statistics is kept with the directory's listing (see
        lake/listing.py), so while a partition's files stay the same one comparison
        rules all of them out and none is looked at.
        """
        if not names or not self.lookups:
            return names
        columns = self._lookup_columns
        memo = listing.memo(directory)
        key = ("ranges", columns, tuple(names))
        if memo is not None and key in memo:
            summary = memo[key]
        else:
            summary = _union(directory, names, columns)
            if memo is not None:
                memo[key] = summary
        if not self.admits_ranges(summary):
            return []
        return [n for n in names if self.admits_file(Path(directory) / n)]

    def admits_file(self, path: Path) -> bool:
        """`admits_ranges` of a Parquet file, from its footer (cached per inode).

        A file whose footer cannot be read, or lacks statistics or the column (an
        older version's file), is admitted: whoever reads it next decides.
        """
        if not self.lookups:
            return True
        try:
            ranges = parquet.column_ranges(path, self._lookup_columns)
        except (OSError, ValueError):  # gone, or damaged (pyarrow's errors are ValueErrors)
            return True
        return self.admits_ranges(ranges)


def _union(directory: str, names: list[str], columns: tuple[str, ...]) -> parquet.Ranges | None:
    """The (min, max) of `columns` over the files `names` of `directory` (None if one
    file's are unknown: no statistics, not readable)."""
    out: parquet.Ranges = {}
    for name in names:
        try:
            ranges = parquet.column_ranges(Path(directory) / name, columns)
        except (OSError, ValueError):
            return None
        if ranges is None:
            return None
        for column, (low, high) in ranges.items():
            if column in out:
                old_low, old_high = out[column]
                try:
                    out[column] = (min(old_low, low), max(old_high, high))  # type: ignore[call-overload]
                except TypeError:
                    return None
            else:
                out[column] = (low, high)
    return out


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _micros(when: Any) -> int:
    return int(when.timestamp()) * 1_000_000 + int(when.microsecond)


# -- reading DuckDB's parse tree --------------------------------------------------------------


def scan(
    ast: Node,
    times: Mapping[str, str | None],
    partitions: Mapping[str, tuple[str, ...]],
    functions: Mapping[str, str],
    clocks: frozenset[str] = CLOCK_NAMES,
) -> Scan:
    """The lake tables a parsed query reads and the WHERE terms that bound them.

    `times` maps each lake table to its time column, `partitions` to the other columns
    that may bound it (partition levels and keys, lookup columns); `functions` maps
    DuckDB's built-in function names to their stability (`duckdb_functions()`);
    `clocks` are the bare names DuckDB reads as the clock (`current_date`): the caller
    leaves out any a table has as a column, since a column of that name would win.
    Returns OPAQUE when unsure.
    """
    statements = ast.get("statements") if not ast.get("error") else None
    if not isinstance(statements, list) or len(statements) != 1:
        return OPAQUE
    ctes = {str(name).lower() for name in _cte_names(statements[0])}
    if ctes & set(times):
        return OPAQUE  # a CTE shadows a table: too clever to follow
    reads: dict[str, list[tuple[Node, Node | None]]] = {}
    called: set[int] = set()  # the FUNCTION nodes naming a table function
    for node, select in _walk(statements[0], None):
        kind = node.get("type")
        if kind == "BASE_TABLE":
            name = _table_name(node)
            if name is None:
                return OPAQUE
            if name in ctes:
                continue
            if name not in times:
                return OPAQUE  # a view, or a table we do not know: it may read anything
            sole = select if select is not None and select.get("from_table") is node else None
            reads.setdefault(name, []).append((node, sole))
        elif kind == "TABLE_FUNCTION":
            function = node.get("function") or {}
            called.add(id(function))
            if str(function.get("function_name", "")).lower() not in _HARMLESS_TABLE_FUNCTIONS:
                return OPAQUE
        elif node.get("class") == "FUNCTION" and id(node) not in called:  # noqa: SIM102
            if str(node.get("function_name", "")).lower() not in functions:
                return OPAQUE  # a macro (ours or the user's) may read any table
    terms: list[Term] = []
    for name, found in reads.items():
        if len(found) != 1 or found[0][1] is None:
            continue
        ref, select = found[0]
        assert select is not None
        if ref.get("column_name_alias") or ref.get("sample") or select.get("sample"):
            continue  # renamed columns; a sample would draw from fewer rows
        aliases = {str(ref.get("alias") or name).lower()}
        columns = {c.lower(): c for c in partitions[name]}
        time = times[name]
        if time is not None:
            columns[time.lower()] = time
        for term in _conjuncts(select.get("where_clause")):
            terms.extend(_terms(name, term, aliases, columns, (functions, clocks)))
    return Scan(frozenset(reads), terms)


def _walk(node: Any, select: Node | None) -> Iterator[tuple[Node, Node | None]]:
    """Every dict node with the SELECT node it sits in."""
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, select)
        return
    if not isinstance(node, dict):
        return
    if node.get("type") == "SELECT_NODE":
        select = node
    yield node, select
    for value in node.values():
        if isinstance(value, dict | list):
            yield from _walk(value, select)


def _cte_names(statement: Node) -> Iterator[str]:
    for node, _ in _walk(statement, None):
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            for entry in cte_map.get("map") or []:
                yield str(entry.get("key", ""))


def _table_name(ref: Node) -> str | None:
    if ref.get("schema_name") not in ("", "main", None):
        return None
    if ref.get("catalog_name") not in ("", "memory", None):
        return None
    return str(ref.get("table_name", "")).lower()


def _conjuncts(node: Any) -> Iterator[Node]:
    if not isinstance(node, dict):
        return
    if node.get("type") == "CONJUNCTION_AND":
        for child in node.get("children") or []:
            yield from _conjuncts(child)
    else:
        yield node


def _terms(
    table: str,
    node: Node,
    aliases: set[str],
    columns: Mapping[str, str],
    names: tuple[Mapping[str, str], frozenset[str]],
) -> list[Term]:
    """The `column op value` terms one WHERE conjunct gives (none if it is anything else)."""

    def column(expr: Any) -> str | None:
        if not isinstance(expr, dict) or expr.get("class") != "COLUMN_REF":
            return None
        parts = [str(p).lower() for p in expr.get("column_names") or []]
        if len(parts) == 2 and parts[0] in aliases:
            parts = parts[1:]
        return columns.get(parts[0]) if len(parts) == 1 else None

    def term(col: str, op: str, values: list[Any]) -> list[Term]:
        kinds = [_stability(v, *names) for v in values]
        if None in kinds or len(values) > MAX_IN_VALUES:
            return []
        return [Term(table, col, op, tuple(values), WITHIN_QUERY in kinds)]

    kind = node.get("class")
    if kind == "COMPARISON" and node.get("type") in _OPS:
        op = _OPS[str(node["type"])]
        left, right = node.get("left"), node.get("right")
        if (col := column(left)) is not None:
            return term(col, op, [right])
        if (col := column(right)) is not None:
            return term(col, _FLIPPED[op], [left])
    elif kind == "BETWEEN" and (col := column(node.get("input"))) is not None:
        return term(col, ">=", [node.get("lower")]) + term(col, "<=", [node.get("upper")])
    elif kind == "OPERATOR" and node.get("type") == "COMPARE_IN":
        children = node.get("children") or []
        if children and (col := column(children[0])) is not None:
            return term(col, "in", list(children[1:]))
    return []


def _stability(expr: Any, functions: Mapping[str, str], clocks: frozenset[str]) -> str | None:
    """CONSISTENT or WITHIN_QUERY for an expression free of columns and subqueries, else None."""
    if not isinstance(expr, dict):
        return None
    kind = expr.get("class")
    if kind in ("CONSTANT", "PARAMETER"):
        return CONSISTENT
    if kind == "CAST":
        return _stability(expr.get("child"), functions, clocks)
    if kind == "COLUMN_REF":
        names = [str(p).lower() for p in expr.get("column_names") or []]
        return WITHIN_QUERY if len(names) == 1 and names[0] in clocks else None
    if kind == "FUNCTION":
        found = functions.get(str(expr.get("function_name", "")).lower())
        if found not in (CONSISTENT, WITHIN_QUERY) or expr.get("filter") or expr.get("distinct"):
            return None
        result = found
        for argument in expr.get("arguments") or []:
            inner = _stability((argument or {}).get("expression"), functions, clocks)
            if inner is None:
                return None
            if inner == WITHIN_QUERY:
                result = WITHIN_QUERY
        return result
    return None


# -- from evaluated terms to bounds ---------------------------------------------------------------


def value_expressions(terms: list[Term]) -> list[Node]:
    """Every value expression of `terms`, in order (what the caller evaluates)."""
    return [value for term in terms for value in term.values]


def rename_parameters(expr: Node, prefix: str) -> tuple[Node, dict[str, str]]:
    """A copy of `expr` whose parameters are named `$<prefix>_N`: {new name: old identifier}.

    The query's own names (`$since`, or `?` numbered from 1) may clash across the
    expressions evaluated together; fresh names cannot.
    """
    out = copy.deepcopy(expr)
    names: dict[str, str] = {}
    for node, _ in _walk(out, None):
        if node.get("class") == "PARAMETER":
            name = f"{prefix}_{len(names)}"
            names[name] = str(node.get("identifier", ""))
            node["identifier"] = name
    return out, names


def parameter_value(params: Mapping[str, Any] | list[Any] | None, identifier: str) -> Any:
    """The value the query's parameter `identifier` is bound to (KeyError if none)."""
    if isinstance(params, Mapping):
        return params[identifier]
    if isinstance(params, list) and identifier.isdigit() and 0 < int(identifier) <= len(params):
        return params[int(identifier) - 1]
    raise KeyError(identifier)


def bounds(
    terms: list[Term],
    evaluated: Mapping[int, Any],
    time: str | None,
    keys: tuple[str, ...],
    lookups: tuple[str, ...] = (),
) -> Bounds:
    """Combine one table's terms into Bounds.

    `evaluated` maps `id(value node)` to its value: epoch microseconds for the time
    column, the Python value for partition and lookup columns; a missing or None value
    drops the term (it bounds nothing we can use), and so does a lookup value that is
    not text (DuckDB would compare it after a cast: `session_id = 1`).
    """
    lower: int | None = None
    upper: int | None = None
    key_sets: dict[str, frozenset[str]] = {}
    level_sets: dict[str, frozenset[int]] = {}
    lookup_sets: dict[str, frozenset[str]] = {}
    for term in terms:
        values: list[Any] = [evaluated.get(id(v)) for v in term.values]
        if term.column == time:
            if not all(isinstance(v, int) for v in values):
                continue  # NULL, or a type DuckDB would not compare as a time
            low, high = min(values), max(values)
            if term.op in ("=", "in", ">", ">="):
                lower = low if lower is None else max(lower, low)
            if term.op in ("=", "in", "<", "<=") and not term.clocked:
                upper = high if upper is None else min(upper, high)
        elif term.op not in ("=", "in"):
            continue
        elif term.column in keys and all(isinstance(v, str) for v in values):
            allowed = frozenset(str(v) for v in values)
            key_sets[term.column] = key_sets.get(term.column, allowed) & allowed
        elif term.column in lookups:
            if all(isinstance(v, str) for v in values):
                allowed = frozenset(values)
                lookup_sets[term.column] = lookup_sets.get(term.column, allowed) & allowed
        elif term.column in layout.TIME_LEVELS and all(_is_int(v) for v in values):
            levels = frozenset(int(v) for v in values)
            level_sets[term.column] = level_sets.get(term.column, levels) & levels
    return Bounds(lower, upper, key_sets, level_sets, lookup_sets)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- table macros ---------------------------------------------------------------------------

# Macros calling macros: deeper than this, a call stays a table function (opaque).
MAX_MACRO_DEPTH = 8


@dataclass(frozen=True)
class Macro:
    """A table macro the planner sees through: its parameters (lower case) and the
    parse tree of its body (a query node: SELECT_NODE, SET_OPERATION_NODE...)."""

    params: tuple[str, ...]
    body: Node


def macro_calls(ast: Node) -> set[str]:
    """The names (lower case) of the table functions a parsed query calls, but those
    that cannot read a table (`range`...)."""
    out = set()
    for node, _ in _walk(ast, None):
        if node.get("type") == "TABLE_FUNCTION":
            name = str((node.get("function") or {}).get("function_name", "")).lower()
            if name not in _HARMLESS_TABLE_FUNCTIONS:
                out.add(name)
    return out


def macro(params: list[str], body_ast: Node, columns: Mapping[str, frozenset[str]]) -> Macro | None:
    """A table macro from its parameter names and its parsed body (`json_serialize_sql`
    of the body's SELECT), or None when the planner should not see through it.

    `columns` maps each lake table (lower case) to its column names (lower case). A call
    is replaced by the body with each bare reference to a parameter replaced by the
    call's argument, which is what DuckDB does; a parameter named like a column of a
    table the body reads, or like any alias or CTE in it, could be read otherwise by
    some DuckDB version, so such a macro is not seen through.
    """
    statements = body_ast.get("statements") if not body_ast.get("error") else None
    if not isinstance(statements, list) or len(statements) != 1:
        return None
    body = statements[0].get("node")
    names = [str(p).lower() for p in params]
    if not isinstance(body, dict) or len(set(names)) != len(names):
        return None
    taken = {name.lower() for name in _cte_names(statements[0])}
    for node, _ in _walk(body, None):
        if node.get("alias"):
            taken.add(str(node["alias"]).lower())
        taken.update(str(a).lower() for a in node.get("column_name_alias") or [])
        if node.get("type") == "BASE_TABLE":
            taken |= columns.get(str(node.get("table_name", "")).lower(), frozenset())
    if taken & set(names):
        return None
    return Macro(tuple(names), body)


def expand_macros(node: Any, macros: Mapping[str, Macro], depth: int = 0) -> Any:
    """A copy of the parse tree `node` with each call of one of `macros` in a FROM clause
    replaced by a subquery: the macro's body with its parameters replaced by the call's
    arguments. A call with named arguments, or as many arguments as the macro has no
    parameters, stays as it is (a table function: the scan finds the query opaque)."""
    if isinstance(node, list):
        return [expand_macros(item, macros, depth) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("type") == "TABLE_FUNCTION" and depth < MAX_MACRO_DEPTH:
        function = node.get("function") or {}
        found = macros.get(str(function.get("function_name", "")).lower())
        arguments = function.get("arguments") or []
        if (
            found is not None
            and not function.get("schema")
            and not function.get("catalog")
            and len(arguments) == len(found.params)
            and all(not (a or {}).get("name") for a in arguments)
        ):
            values = [expand_macros((a or {}).get("expression"), macros, depth) for a in arguments]
            body = _substitute(found.body, dict(zip(found.params, values, strict=True)))
            return {
                "type": "SUBQUERY",
                "alias": node.get("alias") or "",
                "sample": node.get("sample"),
                "column_name_alias": node.get("column_name_alias") or [],
                "subquery": {"node": expand_macros(body, macros, depth + 1)},
            }
    return {key: expand_macros(value, macros, depth) for key, value in node.items()}


def _substitute(node: Any, values: Mapping[str, Any]) -> Any:
    """A copy of `node` with each one-part COLUMN_REF named in `values` replaced by a copy
    of its value (each occurrence its own copy: terms are told apart by `id()`)."""
    if isinstance(node, list):
        return [_substitute(item, values) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("class") == "COLUMN_REF":
        parts = node.get("column_names") or []
        if len(parts) == 1 and str(parts[0]).lower() in values:
            return copy.deepcopy(values[str(parts[0]).lower()])
    return {key: _substitute(value, values) for key, value in node.items()}
