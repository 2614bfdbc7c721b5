"""The batched writer of spec 000 §7.1: when rows become files, and what happens to bad rows."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import datagen
import telelake
from conftest import TEST_HOST_ID


def outcome_rows(n: int, seed: int = 5) -> list[dict[str, Any]]:
    """`n` valid outcome rows, all written under the store's host (no host_id key)."""
    rows = datagen.without(datagen.generate(seed)["outcomes"], "host_id")
    assert len(rows) >= n
    return rows[:n]


def audit_rows(n: int, seed: int = 5) -> list[dict[str, Any]]:
    rows = datagen.generate(seed)["audit"]
    assert len(rows) >= n
    return rows[:n]


def keys(rows: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    return Counter((r["session_id"], r["pid"], r["start_id"]) for r in rows)


def stored_keys(store: telelake.Store) -> Counter[tuple[Any, ...]]:
    return Counter(store.sql("SELECT session_id, pid, start_id FROM outcomes").rows())


def n_files(store: telelake.Store, table: str = "outcomes") -> int:
    return len(store.files(table))


def test_flushes_exactly_when_the_batch_fills(store: telelake.Store) -> None:
    # audit rows of one session share a day, so one flush makes exactly one file.
    every = audit_rows(60)
    rows = [r for r in every if r["session_id"] == every[0]["session_id"]]
    rows = (rows * 5)[:9]
    assert len({r["audit_ts"].astimezone(datagen.UTC).date() for r in rows}) == 1
    w = store.writer("audit", batch_size=5, flush_interval=None)
    for r in rows[:4]:
        w.write(r)
    assert n_files(store, "audit") == 0
    assert w.rows_written == 0
    w.write(rows[4])
    assert n_files(store, "audit") == 1
    assert w.rows_written == 5
    assert store.sql("SELECT COUNT(*) FROM audit").scalar() == 5
    for r in rows[5:9]:
        w.write(r)
    assert n_files(store, "audit") == 1
    w.close()
    assert n_files(store, "audit") == 2
    assert store.sql("SELECT COUNT(*) FROM audit").scalar() == 9


def test_write_many_counts_toward_the_batch(store: telelake.Store) -> None:
    rows = outcome_rows(12)
    w = store.writer("outcomes", batch_size=10, flush_interval=None)
    w.write_many(rows[:6])
    assert n_files(store) == 0
    w.write(rows[6])
    w.write(rows[7])
    w.write(rows[8])
    assert n_files(store) == 0
    w.write_many(rows[9:12])  # 6 + 3 + 3 >= 10: everything goes out
    assert n_files(store) > 0
    assert w.rows_written == 12
    assert stored_keys(store) == keys(rows)
    w.close()


def test_flushes_on_interval_without_further_writes(store: telelake.Store) -> None:
    rows = outcome_rows(3)
    w = store.writer("outcomes", batch_size=1000, flush_interval=0.3)
    try:
        for r in rows:
            w.write(r)
        assert n_files(store) == 0
        deadline = time.monotonic() + 5
        while n_files(store) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert n_files(store) > 0, "the interval flush never happened"
        # A flush is one publish per partition; wait for the rows, then check them.
        while store.sql("SELECT COUNT(*) FROM outcomes").scalar() < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert stored_keys(store) == keys(rows)
    finally:
        w.close()
    assert stored_keys(store) == keys(rows)  # closing wrote nothing twice


def test_flushes_on_context_exit(store: telelake.Store) -> None:
    rows = outcome_rows(7)
    with store.writer("outcomes", batch_size=100, flush_interval=None) as w:
        w.extend(rows)
        assert n_files(store) == 0
    assert w.rows_written == 7
    assert stored_keys(store) == keys(rows)


def test_flush_on_exit_even_when_the_block_raises(store: telelake.Store) -> None:
    rows = outcome_rows(4)
    with pytest.raises(RuntimeError), store.writer("outcomes", flush_interval=None) as w:
        w.write_many(rows)
        raise RuntimeError("boom")
    assert stored_keys(store) == keys(rows)


def test_write_many_of_an_invalid_batch_raises_and_keeps_none_of_it(
    store: telelake.Store,
) -> None:
    rows = outcome_rows(8)
    with store.writer("outcomes", batch_size=100, flush_interval=None) as w:
        w.write_many(rows[:3])
        bad = [dict(r) for r in rows[3:8]]
        bad[2]["decision"] = "nuke"
        with pytest.raises(telelake.ValidationError) as err:
            w.write_many(bad)
        assert err.value.column == "decision"
        assert err.value.row == 2
        assert n_files(store) == 0
    assert stored_keys(store) == keys(rows[:3])


def test_bad_single_row_is_reported_at_flush_with_its_writer_row_number(
    store: telelake.Store,
) -> None:
    rows = outcome_rows(9)
    bad = dict(rows[6], decision="obliterate")
    w = store.writer("outcomes", batch_size=100, flush_interval=None)
    w.write_many(rows[:3])  # writer rows 0..2
    w.write(rows[3])  # 3
    w.write(rows[4])  # 4
    w.write(rows[5])  # 5
    w.write(bad)  # 6
    w.write(rows[7])  # 7
    with pytest.raises(telelake.ValidationError) as err:
        w.flush()
    e = err.value
    assert e.row == 6
    assert e.column == "decision"
    assert e.table == "outcomes"
    assert "row 6 of this writer" in str(e)
    assert "obliterate" in str(e)
    good = rows[:6] + rows[7:8]
    assert stored_keys(store) == keys(good)
    # The writer goes on: later rows are numbered on and written.
    w.write(rows[8])
    w.close()
    assert stored_keys(store) == keys([*good, rows[8]])


def test_rows_are_readable_by_another_store_after_flush(store: telelake.Store) -> None:
    rows = outcome_rows(6)
    with telelake.open(store.root, host_id="0123456789abcdef") as reader:
        assert reader.sql("SELECT COUNT(*) FROM outcomes").scalar() == 0  # engine exists now
        w = store.writer("outcomes", batch_size=100, flush_interval=None)
        w.write_many(rows)
        assert reader.sql("SELECT COUNT(*) FROM outcomes").scalar() == 0
        w.flush()
        assert stored_keys(reader) == keys(rows)
        w.close()
    code = (
        "import telelake; s = telelake.open(); "
        "print(s.sql('SELECT COUNT(*) FROM outcomes').scalar())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"TELELAKE_ROOT": str(store.root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == "6"


def test_interval_flush_error_surfaces_on_the_next_write(store: telelake.Store) -> None:
    rows = outcome_rows(4)
    w = store.writer("outcomes", batch_size=100, flush_interval=0.2)
    try:
        w.write(rows[0])
        w.write(dict(rows[1], decision="???"))
        w.write(rows[2])
        deadline = time.monotonic() + 5
        while store.sql("SELECT COUNT(*) FROM outcomes").scalar() < 2:
            assert time.monotonic() < deadline, "the interval flush never happened"
            time.sleep(0.05)
        time.sleep(0.1)
        with pytest.raises(telelake.ValidationError) as err:
            w.write(rows[3])
        assert err.value.row == 1
    finally:
        w.close()
    assert stored_keys(store) == keys([rows[0], rows[2]])


def test_interval_flush_error_is_not_lost_at_close(store: telelake.Store) -> None:
    rows = outcome_rows(3)
    w = store.writer("outcomes", batch_size=100, flush_interval=0.2)
    w.write(rows[0])
    w.write(dict(rows[1], decision="???"))
    w.write(rows[2])
    deadline = time.monotonic() + 5
    while store.sql("SELECT COUNT(*) FROM outcomes").scalar() < 2:
        assert time.monotonic() < deadline, "the interval flush never happened"
        time.sleep(0.05)
    time.sleep(0.1)
    with pytest.raises(telelake.ValidationError):
        w.close()


def test_rows_with_and_without_host_id_in_one_writer(store: telelake.Store) -> None:
    data = datagen.generate(8)["proc_samples"][:2]
    with_host, without_host = data[0], datagen.without([data[1]], "host_id")[0]
    w = store.writer("proc_samples", batch_size=100, flush_interval=None)
    w.write(with_host)
    w.write(without_host)
    with contextlib.suppress(telelake.TelelakeError):
        w.flush()  # refusing a row is acceptable if it is reported...
    w.close()
    got = store.sql("SELECT host_id FROM proc_samples ORDER BY host_id").rows()
    # ...but the valid rows must not vanish: each is valid on its own.
    assert sorted(got) == sorted([(with_host["host_id"],), (TEST_HOST_ID,)])


def test_closed_writer_refuses_rows(store: telelake.Store) -> None:
    w = store.writer("outcomes", flush_interval=None)
    w.close()
    with pytest.raises(telelake.TelelakeError):
        w.write(outcome_rows(1)[0])
    assert n_files(store) == 0


def test_batch_size_must_be_positive(store: telelake.Store) -> None:
    with pytest.raises(ValueError):
        store.writer("outcomes", batch_size=0)


def test_writer_for_unknown_table(store: telelake.Store, tmp_path: Path) -> None:
    with pytest.raises(telelake.StoreError):
        store.writer("nope")
