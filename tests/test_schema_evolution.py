"""Schema evolution rules (spec 000 §4.3): additive changes need a minor version, breaking
changes are refused with a message naming each change, and nothing on disk changes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import telelake
from telelake.schema.diff import diff_tables
from telelake.schema.model import Column, Table
from telelake.schema.types import TYPES

BASE = """
name = "evo"
version = "{version}"

[tables.events]
time = "ts"
partition = {{ time = ["year", "month", "day"] }}
columns = [
  {{ name = "ts", type = "timestamp", nullable = false }},
  {{ name = "kind", type = "string", nullable = false }},
{extra}]
"""


def schema(tmp: Path, version: str, extra: str = "", name: str = "s") -> Path:
    path = tmp / f"{name}-{version}.toml"
    path.write_text(BASE.format(version=version, extra=extra), encoding="utf-8")
    return path


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


ROW = {"ts": dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "kind": "a"}


@pytest.mark.parametrize(
    ("extra", "version", "message"),
    [
        (
            '  { name = "n", type = "int64", nullable = false },\n',
            "1.1.0",
            "column 'n': added as a required",
        ),
        ('  { name = "kind2", type = "string" },\n', "1.0.0", "keeps version 1.0.0"),
    ],
)
def test_changes_the_version_does_not_allow_are_refused(
    tmp_path: Path, extra: str, version: str, message: str
) -> None:
    root = tmp_path / "store"
    with telelake.open(root, schema(tmp_path, "1.0.0")) as store:
        store.write("events", [ROW])
    before = snapshot(root)
    with pytest.raises(telelake.StoreError, match=message):
        telelake.open(root, schema(tmp_path, version, extra, name="new"))
    assert snapshot(root) == before  # nothing written, not even metadata


def test_a_type_change_is_breaking_even_with_a_minor_bump(tmp_path: Path) -> None:
    root = tmp_path / "store"
    telelake.open(root, schema(tmp_path, "1.0.0")).close()
    changed = (
        schema(tmp_path, "1.1.0")
        .read_text()
        .replace('"kind", type = "string"', '"kind", type = "int64"')
    )
    path = tmp_path / "typed.toml"
    path.write_text(changed)
    with pytest.raises(telelake.StoreError) as err:
        telelake.open(root, path)
    text = str(err.value)
    assert "column 'kind': type changed from string to int64" in text
    assert "new major version" in text


def test_an_additive_change_with_a_minor_bump_upgrades(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with telelake.open(root, schema(tmp_path, "1.0.0")) as store:
        store.write("events", [ROW])
    newer = schema(tmp_path, "1.1.0", '  { name = "note", type = "string" },\n')
    with telelake.open(root, newer) as store:
        assert store.sql("SELECT kind, note FROM events").rows() == [("a", None)]
    # and the older minor version still opens the upgraded store (spec §4.2)
    with telelake.open(root, schema(tmp_path, "1.0.0", name="again")) as store:
        assert store.sql("SELECT kind FROM events").rows() == [("a",)]


# -- the diff itself, against rules written out by hand --------------------------------------

KINDS = ["string", "int64", "float64", "bool", "timestamp"]
columns = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d"]),
    st.tuples(st.sampled_from(KINDS), st.booleans()),
    max_size=4,
)


def table(cols: dict[str, tuple[str, bool]]) -> Table:
    return Table("t", tuple(Column(n, TYPES[k], nullable=nl) for n, (k, nl) in cols.items()))


@given(old=columns, new=columns)
def test_breaking_exactly_when_a_hand_written_rule_says_so(
    old: dict[str, tuple[str, bool]], new: dict[str, tuple[str, bool]]
) -> None:
    changes = diff_tables({"t": table(old)}, {"t": table(new)})
    breaking = (
        any(n not in new for n in old)  # a removed column
        or any(n not in old and not nl for n, (_, nl) in new.items())  # a new required one
        or any(n in old and old[n][0] != k for n, (k, _) in new.items())  # a type change
        or any(n in old and old[n][1] and not nl for n, (_, nl) in new.items())  # tightened
    )
    assert any(c.breaking for c in changes) == breaking
    assert (changes == []) == (old == new)


def test_an_older_minor_version_reads_newer_files_and_never_rewrites_them(
    tmp_path: Path,
) -> None:
    root = tmp_path / "store"
    newer = schema(tmp_path, "1.1.0", '  { name = "note", type = "string" },\n')
    with telelake.open(root, newer, fold_bytes=1) as store:  # two files in one day
        store.write("events", [{**ROW, "note": "first"}])
        store.write("events", [{**ROW, "kind": "b", "note": "second"}])
        store.fold()
    files = sorted((root / "events").rglob("*.parquet"))
    assert len(files) == 2
    with telelake.open(root, schema(tmp_path, "1.0.0", name="old")) as store:
        assert sorted(store.sql("SELECT kind FROM events").rows()) == [("a",), ("b",)]
        assert store.compact().partitions == 0  # would drop the notes: left alone
    assert sorted((root / "events").rglob("*.parquet")) == files
    with telelake.open(root, newer) as store:
        got = sorted(store.sql("SELECT kind, note FROM events").rows())
    assert got == [("a", "first"), ("b", "second")]
