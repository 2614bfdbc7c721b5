"""Derived columns: `proc_samples.cmdline_hash` is the SHA-256 of the original command line.

Whatever the write path (dict rows or Arrow, a few rows through the WAL or a large batch
committed straight to Parquet, the batched writer, the plain small-write path of an
unredacted table, the NDJSON log tier, the command line), a row that gives `cmdline`
without `cmdline_hash` is stored with the hash of the text as written, computed here
independently with hashlib, although the stored `cmdline` is redacted. A given hash is
kept; a null command line leaves the hash null. Bad `derive` settings are SchemaErrors.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import datagen
import telelake
from conftest import TEST_HOST_ID
from telelake.collect.sampler import cmdline_fields
from telelake.lake.tier import Durability
from telelake.schema.load import load_schema, parse_schema
from telelake.store import Store

SECRET = "--password=hunter2"
DIRECT_ROWS = 300  # a write of this many rows is committed straight to Parquet
_ids = itertools.count()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def base_row() -> dict[str, Any]:
    rows = datagen.generate(11, n_sessions=2)["proc_samples"]
    return datagen.without(rows[:1], "host_id", "cmdline_hash")[0]


BASE = base_row()


def rows_for(cmdlines: list[str | None], n: int, **extra: Any) -> tuple[str, list[dict[str, Any]]]:
    """`n` rows of a new session, cycling through `cmdlines`, without a cmdline_hash."""
    session = f"pt-derive-{next(_ids):06d}"
    out = []
    for i in range(n):
        row = {**BASE, "session_id": session, "sample_seq": i // 1000, "pid": 1000 + i}
        row["cmdline"] = cmdlines[i % len(cmdlines)]
        row.update(extra)
        out.append(row)
    return session, out


def stored(store: Store, session: str) -> list[tuple[str | None, str | None]]:
    return [
        (r[0], r[1])
        for r in store.sql(
            "SELECT cmdline, cmdline_hash FROM proc_samples WHERE session_id = ? ORDER BY pid",
            [session],
        ).rows()
    ]


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A process_triage store whose writes of DIRECT_ROWS rows skip the WAL."""
    root = tmp_path_factory.mktemp("derive") / "store"
    durability = Durability(fsync="off", direct_rows=DIRECT_ROWS)
    store = Store(root, load_schema("process_triage"), host_id=TEST_HOST_ID, durability=durability)
    yield store
    store.close()


texts = st.text(max_size=60)
# A secret somewhere in arbitrary text: the stored cmdline is redacted, the hash is not.
secret_cmdlines = st.tuples(texts, texts).map(lambda p: f"{p[0]} {SECRET} {p[1]}")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cmdlines=st.lists(secret_cmdlines | texts, min_size=1, max_size=4),
    large=st.booleans(),
    as_arrow=st.booleans(),
)
def test_the_hash_is_of_the_original_text_on_every_path(
    big_store: Store, cmdlines: list[str], large: bool, as_arrow: bool
) -> None:
    n = DIRECT_ROWS if large else len(cmdlines)
    session, rows = rows_for(list(cmdlines), n)
    if as_arrow:
        table = big_store.table("proc_samples")
        fields = [table.column(name).arrow_field for name in rows[0]]
        data: Any = pa.Table.from_pylist(rows, schema=pa.schema(fields))
    else:
        data = rows
    assert big_store.write("proc_samples", data) == n
    got = stored(big_store, session)
    assert len(got) == n
    for row, (cmdline, digest) in zip(rows, got, strict=True):
        original = row["cmdline"]
        assert digest == hashlib.sha256(original.encode()).hexdigest()
        if SECRET in original:
            assert "hunter2" not in (cmdline or "")  # redacted, yet the hash is the original's


def test_a_given_hash_is_kept_and_a_null_cmdline_gives_a_null_hash(big_store: Store) -> None:
    text = f"app {SECRET}"
    session, rows = rows_for([text, None, text, None], 4)
    rows[0]["cmdline_hash"] = "given-by-the-writer"
    rows[1]["cmdline_hash"] = "kept-without-a-cmdline"
    rows[3]["cmdline_hash"] = None
    big_store.write("proc_samples", rows)
    assert [h for _, h in stored(big_store, session)] == [
        "given-by-the-writer",
        "kept-without-a-cmdline",
        sha(text),
        None,
    ]


def test_the_batched_writer_and_a_dict_of_columns_derive_too(big_store: Store) -> None:
    text = f"worker {SECRET} --queue=a"
    session, rows = rows_for([text], 5)
    with big_store.writer("proc_samples", batch_size=3, flush_interval=None) as w:
        w.write(rows[0])  # single rows are validated at the flush
        w.write_many(rows[1:3])
        w.write_many(datagen.columns_of(rows[3:]))
    assert [h for _, h in stored(big_store, session)] == [sha(text)] * 5


def test_the_collector_and_a_writer_give_equal_hashes(big_store: Store) -> None:
    argv = ["python3", "-m", "worker", SECRET, "--name=é"]
    cmdline, digest = cmdline_fields(argv)
    assert cmdline is not None
    session, rows = rows_for([cmdline, cmdline], 2)
    rows[0]["cmdline_hash"] = digest  # as the collector writes it
    big_store.write("proc_samples", rows)
    assert [h for _, h in stored(big_store, session)] == [digest, digest]


def test_an_unredacted_table_takes_the_plain_path_and_derives(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    root.mkdir()
    (root / "config.json").write_text(
        json.dumps({"telemetry_redaction": {"enabled": False}}), encoding="utf-8"
    )
    with telelake.open(root, host_id=TEST_HOST_ID) as store:
        table = store.table("proc_samples")
        assert store._plain_ok(table)  # small dict writes skip Arrow here
        text = f"serve {SECRET}"
        session, rows = rows_for([text, None], 2)
        rows = [{k: v for k, v in r.items() if v is not None or k == "cmdline"} for r in rows]
        store.write("proc_samples", rows)
        assert stored(store, session) == [(text, sha(text)), (None, None)]


LOG_SCHEMA = """
name = "derived_log"
version = "1.0.0"

[log]
directory = "raw"
prefix = "events"
records.line = { table = "lines" }

[tables.lines]
tier = "log"
columns = [
  { name = "text", type = "string", redact = "pattern" },
  { name = "text_hash", type = "string", derive = "sha256:text" },
]
"""


def test_the_log_tier_derives_before_redaction(tmp_path: Path) -> None:
    path = tmp_path / "schema.toml"
    path.write_text(LOG_SCHEMA, encoding="utf-8")
    text = f"deploy {SECRET}"
    with telelake.open(tmp_path / "store", schema=path) as store:
        store.write("lines", [{"text": text}, {"text": text, "text_hash": "mine"}, {}])
        assert store.redacted("lines", [{"text": text}])[0]["text_hash"] == sha(text)
    lines = [
        json.loads(line)["payload"]
        for f in sorted((tmp_path / "store" / "raw").glob("*.ndjson"))
        for line in f.read_text(encoding="utf-8").splitlines()
    ]
    assert [p["text_hash"] for p in lines] == [sha(text), "mine", None]
    assert all("hunter2" not in (p["text"] or "") for p in lines)


def test_the_command_line_write_derives(tmp_path: Path) -> None:
    root = tmp_path / "cli"
    text = f"cron {SECRET}"
    session, rows = rows_for([text], 2)
    lines = "\n".join(json.dumps(r, default=str) for r in rows) + "\n"
    env = {**os.environ, "TELELAKE_ROOT": str(root)}
    cli = str(Path(sys.executable).parent / "telelake")
    out = subprocess.run(
        [cli, "write", "proc_samples", "-", "--format", "ndjson"],
        input=lines,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    with telelake.open(root) as store:
        assert [h for _, h in stored(store, session)] == [sha(text)] * 2


# -- the schema option ----------------------------------------------------------------------


def schema_with(column: str, others: str = "") -> dict[str, Any]:
    return tomllib.loads(
        f"""
name = "d"
version = "1.0.0"
[tables.t]
time = "ts"
columns = [
  {{ name = "ts", type = "timestamp", nullable = false }},
  {{ name = "src", type = "string" }},
  {{ name = "n", type = "int64" }},
  {column},
  {others}
]
"""
    )


@pytest.mark.parametrize(
    "column,message",
    [
        ('{ name = "h", type = "string", derive = "md5:src" }', "unknown function 'md5'"),
        ('{ name = "h", type = "string", derive = "sha256" }', 'look like "<function>:<column>"'),
        ('{ name = "h", type = "string", derive = 3 }', 'look like "<function>:<column>"'),
        ('{ name = "h", type = "string", derive = "sha256:nope" }', "no column 'nope'"),
        ('{ name = "h", type = "string", derive = "sha256:h" }', "derived from itself"),
        ('{ name = "h", type = "int64", derive = "sha256:src" }', "must be a string, not int64"),
        ('{ name = "h", type = "string", derive = "sha256:n" }', "'n' is int64"),
        (
            '{ name = "h", type = "string", nullable = false, derive = "sha256:src" }',
            "must be nullable",
        ),
    ],
)
def test_bad_derive_settings_are_schema_errors_naming_the_column(column: str, message: str) -> None:
    with pytest.raises(telelake.SchemaError, match="column 'h'") as info:
        parse_schema(schema_with(column), Path("d.toml"))
    assert message in str(info.value)


def test_a_column_derived_from_a_derived_column_is_refused() -> None:
    chain = (
        '{ name = "h", type = "string", derive = "sha256:src" }',
        '{ name = "hh", type = "string", derive = "sha256:h" }',
    )
    with pytest.raises(telelake.SchemaError, match="'h' is derived itself"):
        parse_schema(schema_with(*chain), Path("d.toml"))


def test_process_triage_declares_the_hash_as_derived() -> None:
    column = load_schema("process_triage").tables["proc_samples"].column("cmdline_hash")
    assert column.derive is not None and str(column.derive) == "sha256:cmdline"
