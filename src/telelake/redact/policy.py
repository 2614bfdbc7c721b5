"""Column redaction policies, and the store-wide settings that decide which apply.

A policy is declared per column in the schema (``redact = "pattern"``) and may be
overridden per store (``config.json``). Every policy works on an Arrow string array, so
the lake, sql and log tiers all redact through :func:`apply` (the log tier's one-row fast
path wraps its values in a tiny array rather than keeping a second implementation):

- ``hash``: the value becomes ``[REDACTED:hash:<12 hex>]``, an HMAC-SHA256 keyed with the
  store's secret key: equal values give equal markers within a store (joins and
  group-bys still work), and short values cannot be recovered by hashing guesses.
- ``pattern``: secret-looking substrings become ``[REDACTED:pattern:<rule>]`` (the rules
  of :mod:`telelake.redact.patterns`), the rest of the text stays.
- ``truncate:N``: a path keeps its first N components, then ``/…``.
- ``normalize``: a path's home directory becomes ``~`` and dotted version numbers
  ``<v>`` (``/home/ann/.pyenv/versions/3.11.7/bin/python3.11`` →
  ``~/.pyenv/versions/<v>/bin/python<v>``).
- ``drop``: the value is not kept at all (null).

A ``json`` column takes ``pattern`` or ``drop``: the pattern rules then apply to every
string inside the document (keys and values, and each ``"key": "value"`` pair, for rules
that look at the key), which is parsed and written back only when something was
redacted, so a redacted document is still valid JSON.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Any

import orjson

from telelake._lazy import lazy
from telelake.errors import RedactionKeyError
from telelake.redact.patterns import (
    Rule,
    any_match,
    hash_marker,
    load_rules,
    pattern_marker,
    patterns_of,
    redact_array,
    redact_text,
)

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    pa = lazy("pyarrow")
    pc = lazy("pyarrow.compute")

if TYPE_CHECKING:  # the schema model imports Policy from here
    from telelake.config import Redaction
    from telelake.schema.model import Table

KINDS = ("hash", "pattern", "truncate", "normalize", "drop")
JSON_KINDS = ("pattern", "drop")  # the policies that keep a json column valid JSON
OFF = "off"  # a store setting: this column is stored as written
TRUNCATED = "/…"
HASHED = re.compile(r"\[REDACTED:hash:[0-9a-f]{6,64}\]")
VERSION = "<v>"
# RE2 patterns (pyarrow.compute), applied in this order by `normalize`.
_HOME = (r"^/(?:(?:home|Users)/[^/]+|root)(/|$)", r"~\1")  # /home/ann, /Users/ann, /root
_VERSIONS = (r"[0-9]+(?:\.[0-9]+)+", VERSION)


@dataclass(frozen=True)
class Policy:
    """How one column is redacted."""

    kind: str
    keep: int = 0  # truncate: path components kept

    def __str__(self) -> str:
        return f"truncate:{self.keep}" if self.kind == "truncate" else self.kind


def parse_policy(text: object) -> Policy:
    """``"hash"``, ``"pattern"``, ``"truncate:N"``, ``"normalize"`` or ``"drop"``.

    Raises ValueError with a message that lists what is allowed.
    """
    allowed = 'one of "hash", "pattern", "truncate:N" (N >= 1), "normalize", "drop"'
    if not isinstance(text, str):
        raise ValueError(f"redact must be {allowed}")
    kind, _, arg = text.partition(":")
    if kind == "truncate":
        if not arg.isdigit() or int(arg) < 1:
            raise ValueError(f'redact = "truncate:N" needs a whole number N >= 1, not {text!r}')
        return Policy("truncate", int(arg))
    if kind not in KINDS or arg:
        raise ValueError(f"redact must be {allowed}, not {text!r}")
    return Policy(kind)


@functools.cache
def default_rules() -> tuple[Rule, ...]:
    """The packaged secret-pattern rules (loaded and checked once per process)."""
    return tuple(load_rules())


def apply(policy: Policy, arr: pa.Array, key: bytes) -> pa.Array:
    """Redact a string array by `policy`; nulls stay null, the type stays string.

    Telemetry repeats itself (the same process sampled every second has the same
    command line, exe and cwd), so each distinct value is redacted once.
    """
    if policy.kind == "drop":
        return pa.nulls(len(arr), arr.type)
    encoded = arr.dictionary_encode()
    if 2 * len(encoded.dictionary) > len(arr):  # mostly distinct: nothing to gain
        return _apply(policy, arr, key)
    return pc.take(_apply(policy, encoded.dictionary, key), encoded.indices)


def _apply(policy: Policy, arr: pa.Array, key: bytes) -> pa.Array:
    if policy.kind == "pattern":
        return redact_array(arr, default_rules())
    if policy.kind == "hash":
        # A value that already is a marker stays (replaying a redacted log is idempotent).
        markers = [
            v if v is None or HASHED.fullmatch(v) else hash_marker(v, key) for v in arr.to_pylist()
        ]
        return pa.array(markers, arr.type)
    if policy.kind == "truncate":
        keep = policy.keep - 1
        pattern = rf"^(/?[^/]+(?:/[^/]+){{{keep}}})/(?s:.+)$"  # (?s): a newline is text too
        return pc.replace_substring_regex(arr, pattern, r"\1" + TRUNCATED)
    if policy.kind == "normalize":
        for pattern, replacement in (_HOME, _VERSIONS):
            arr = pc.replace_substring_regex(arr, pattern, replacement)
        return arr
    raise ValueError(f"unknown redaction policy {policy}")  # pragma: no cover


def apply_values(
    policy: Policy, values: list[str | None], key: bytes, *, is_json: bool = False
) -> list[str | None]:
    """:func:`apply` (or :func:`redact_json`) for a list of Python values."""
    if is_json:
        if policy.kind == "drop":
            return [None] * len(values)
        out = []
        for start in range(0, len(values), JSON_SCAN_CHUNK):
            out.extend(redact_json_values(values[start : start + JSON_SCAN_CHUNK]))
        return out
    redacted: list[str | None] = apply(policy, pa.array(values, pa.string()), key).to_pylist()
    return redacted


JSON_SCAN_CHUNK = 1000  # documents whose strings are scanned together


def redact_json_values(values: Sequence[str | None]) -> list[str | None]:
    """:func:`redact_json` for many documents (None stays None): the strings of all of
    them are scanned at once first, and usually nothing matches, so nothing else runs."""
    texts: list[str] = []
    try:
        for v in values:
            if v is not None:
                _scanned_texts(orjson.loads(v), texts)
    except orjson.JSONDecodeError:
        pass  # one of them needs the careful reading: take the per-document way
    else:
        if not any_match(texts, patterns_of(default_rules())):
            return list(values)
    return [None if v is None else redact_json(v) for v in values]


def redact_json(text: str) -> str:
    """A JSON document with the pattern rules applied to every string in it."""
    rules = default_rules()
    try:
        # orjson reads the strings json.loads reads, five times faster; what it refuses
        # (a lone surrogate escape, a number beyond a double) json.loads decides.
        texts = _scanned_texts(orjson.loads(text), [])
    except orjson.JSONDecodeError:
        try:
            texts = _scanned_texts(json.loads(text), [])
        except ValueError:  # not JSON after all (the column was declared json): as text
            return redact_text(text, rules)[0]
    if not any_match(texts, patterns_of(rules)):
        return text  # the usual case: one scan of every string the walk below would see
    # The rewrite keeps every number exactly as json reads it (orjson rounds big ints).
    return _redact_doc(json.loads(text), text, rules)


def _scanned_texts(node: Any, out: list[str]) -> list[str]:
    """Every text :func:`_redact_doc` scans: strings, keys, and `{"key": "value"}` pairs."""
    if isinstance(node, str):
        out.append(node)
    elif isinstance(node, list):
        for v in node:
            _scanned_texts(v, out)
    elif isinstance(node, dict):
        for k, v in node.items():
            out.append(k)
            _scanned_texts(v, out)
            if isinstance(v, str):  # exactly json.dumps({k: v}, ensure_ascii=False)
                out.append("{" + encode_basestring(k) + ": " + encode_basestring(v) + "}")
    return out


def _redact_doc(doc: Any, text: str, rules: Sequence[Rule]) -> str:
    changed = False

    def walk(node: Any) -> Any:
        nonlocal changed
        if isinstance(node, str):
            clean, fired = redact_text(node, rules)
            changed = changed or bool(fired)
            return clean
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                key, value = walk(k), walk(v)
                if isinstance(value, str):  # rules that need the key: {"token": "..."}
                    value = keyed(key, value)
                out[key] = value
            return out
        return node

    def keyed(key: str, value: str) -> str:
        nonlocal changed
        pair = json.dumps({key: value}, ensure_ascii=False)
        clean, fired = redact_text(pair, rules)
        if not fired:
            return value
        changed = True
        try:
            back = json.loads(clean)
        except ValueError:
            back = None
        if isinstance(back, dict) and list(back) == [key] and isinstance(back[key], str):
            return str(back[key])
        return pattern_marker(fired[0])

    doc = walk(doc)
    return json.dumps(doc, ensure_ascii=False) if changed else text


def resolve(
    tables: Sequence[Table], settings: Redaction, where: str
) -> dict[str, dict[str, Policy]]:
    """Each table's column policies: the schema's, with a store's settings applied.

    Raises ValueError naming `where` (the config file) for an unknown table or column,
    a column that is not text, or a policy that does not parse.
    """
    out = {t.name: {c.name: c.redact for c in t.columns if c.redact} for t in tables}
    by_name = {t.name: t for t in tables}
    for target, text in settings.columns.items():
        table_name, _, column_name = target.partition(".")
        table = by_name.get(table_name)
        column = next((c for c in table.columns if c.name == column_name), None) if table else None
        at = f"{where}: telemetry_redaction.columns[{target!r}]"
        if column is None:
            raise ValueError(f'{at}: no such column (write "table.column")')
        if column.type.name not in ("string", "json"):
            raise ValueError(f"{at}: only string and json columns can be redacted")
        if text == OFF:
            out[table_name].pop(column_name, None)
            continue
        try:
            chosen = parse_policy(text)
        except ValueError as exc:
            raise ValueError(f'{at}: {exc} (or "off")') from None
        if column.type.name == "json" and chosen.kind not in JSON_KINDS:
            raise ValueError(f"{at}: a json column takes {' or '.join(JSON_KINDS)}")
        out[table_name][column_name] = chosen
    if not settings.enabled:
        return {}
    return {name: cols for name, cols in out.items() if cols}


@dataclass
class Redactor:
    """The policies of one store and its key: applied to every write, on every tier."""

    policies: dict[str, dict[str, Policy]] = field(default_factory=dict)
    key: bytes = b""
    json_columns: frozenset[tuple[str, str]] = frozenset()  # (table, column) of json type
    key_problem: str | None = None  # why `key` must not be used (see telelake.redact.key)

    @property
    def needs_key(self) -> bool:
        """True if some column is hashed (the store's key must exist)."""
        return any(p.kind == "hash" for cols in self.policies.values() for p in cols.values())

    def columns(self, table: str) -> dict[str, Policy]:
        """The redacted columns of `table` and their policies."""
        return self.policies.get(table, {})

    def _check_key(self, table: str) -> None:
        """RedactionKeyError if `table` hashes a column and the store's key is not usable."""
        if self.key_problem is not None and any(
            p.kind == "hash" for p in self.columns(table).values()
        ):
            raise RedactionKeyError(f"table {table!r}: {self.key_problem}")

    def table(self, table: str, data: pa.Table) -> pa.Table:
        """`data` with the redacted columns of `table` redacted."""
        self._check_key(table)
        for name, policy in self.columns(table).items():
            index = data.schema.get_field_index(name)
            if index < 0:
                continue
            column = data.column(index)
            if (table, name) in self.json_columns:
                values = apply_values(policy, column.to_pylist(), self.key, is_json=True)
                chunks = [pa.array(values, column.type)]
            else:
                chunks = [apply(policy, chunk, self.key) for chunk in column.chunks]
            data = data.set_column(
                index, data.schema.field(index), pa.chunked_array(chunks, column.type)
            )
        return data

    def rows(self, table: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Plain dict rows (the log tier's fast path) with the columns of `table` redacted."""
        policies = self.columns(table)
        if not policies:
            return rows
        self._check_key(table)
        out = [dict(r) for r in rows]
        for name, policy in policies.items():
            if (table, name) in self.json_columns:  # one value at a time: no lists to build
                drop = policy.kind == "drop"
                for row in out:
                    v = row.get(name)
                    row[name] = None if v is None or drop else redact_json(v)
                continue
            values = apply_values(policy, [r.get(name) for r in out], self.key)
            for row, value in zip(out, values, strict=True):
                row[name] = value
        return out
