"""Derived columns: values the store computes from another column of the same row.

A column declares `derive = "<function>:<source column>"` in the schema
(`cmdline_hash` has `derive = "sha256:cmdline"`). When a writer gives the source but no
value for the derived column (left out, or None), the store computes it; a value the
writer gives is kept as it is, and a null source leaves the column null.

The Store applies this right after validation and before redaction, on every write path
(Arrow, the plain small-write path, the log tier's dict rows), so a derived value is
always computed from the original text: `cmdline_hash` of a row whose `cmdline` is
stored redacted is still the SHA-256 of the command line as written, and joins with
the hashes the collector computes itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from telelake._lazy import lazy
from telelake.validate import PlainColumns

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc

    from telelake.schema.model import Column, Table
else:
    pa = lazy("pyarrow")
    pc = lazy("pyarrow.compute")


def utf8(text: str) -> bytes:
    """The bytes a text stands for: UTF-8, with surrogate escapes turned back into the
    bytes they stand for (as the collector encodes a command line it read from /proc)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate no escape explains: the write
            return text.encode("utf-8", "surrogatepass")  # is refused later anyway


def sha256_hex(text: str) -> str:
    """The SHA-256 hex digest (64 lowercase hex digits) of the text's UTF-8 bytes."""
    return hashlib.sha256(utf8(text)).hexdigest()


# Each function takes the source value (a str) and returns the derived str. The loader
# accepts exactly these names; each needs a string source and gives a string column.
FUNCTIONS: dict[str, Callable[[str], str]] = {"sha256": sha256_hex}


def _computed(column: Column, values: list[str]) -> list[str]:
    """The derived value of each source value (each distinct one computed once)."""
    assert column.derive is not None
    function = FUNCTIONS[column.derive.function]
    done: dict[str, str] = {}
    out = []
    for v in values:
        found = done.get(v)
        if found is None:
            found = done[v] = function(v)
        out.append(found)
    return out


def arrow(table: Table, data: pa.Table) -> pa.Table:
    """Validated Arrow rows of `table` with their derived columns filled in."""
    for column in table.derived:
        assert column.derive is not None
        target = data.schema.get_field_index(column.name)
        source = data.schema.get_field_index(column.derive.source)
        if target < 0 or source < 0 or data.num_rows == 0:
            continue
        have, src = data.column(target), data.column(source)
        if have.null_count == 0 or src.null_count == len(src):
            continue  # every value given, or no source to derive one from
        need = pc.and_(pc.is_null(have), pc.is_valid(src))
        if not pc.any(need).as_py():
            continue
        # Telemetry repeats itself (a process sampled every second): each distinct source
        # value is computed once.
        values = pc.filter(src, need).combine_chunks().dictionary_encode()
        computed = pa.array(_computed(column, values.dictionary.to_pylist()), have.type)
        filled = pc.replace_with_mask(
            have.combine_chunks(), need.combine_chunks(), computed.take(values.indices)
        )
        data = data.set_column(target, data.schema.field(target), filled)
    return data


def plain(table: Table, rows: PlainColumns) -> PlainColumns:
    """Checked plain column lists (the small-write path) with derived columns filled in."""
    if not table.derived:
        return rows
    names = {f.name: i for i, f in enumerate(rows.fields)}
    columns = rows.columns
    for column in table.derived:
        assert column.derive is not None
        target, source = names.get(column.name), names.get(column.derive.source)
        if target is None or source is None:
            continue
        have, src = columns[target], columns[source]
        wanted = [i for i, v in enumerate(have) if v is None and src[i] is not None]
        if not wanted:
            continue
        values = _computed(column, [src[i] for i in wanted])
        filled = list(have)
        for i, v in zip(wanted, values, strict=True):
            filled[i] = v
        columns = [*columns[:target], filled, *columns[target + 1 :]]
    return PlainColumns(rows.fields, columns, rows.num_rows)


def rows(table: Table, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dict rows (the log tier's path) with derived columns filled in (new dicts where
    a value is added; the rows given are not changed)."""
    if not table.derived:
        return records
    out = records
    for column in table.derived:
        assert column.derive is not None
        name, source = column.name, column.derive.source
        wanted = [
            i for i, r in enumerate(out) if r.get(name) is None and isinstance(r.get(source), str)
        ]
        if not wanted:
            continue
        values = _computed(column, [out[i][source] for i in wanted])
        if out is records:
            out = list(records)
        for i, v in zip(wanted, values, strict=True):
            out[i] = {**out[i], name: v}
    return out
