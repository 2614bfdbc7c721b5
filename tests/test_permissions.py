"""Modes of what a store creates (issue 19, item 16): directories 0700 and files 0600
whatever the umask, or 0750 and 0640 when config.json says `"group_access": true`.

Each store is filled through the public API (lake rows folded into Parquet and live in
the WAL, sql rows, the NDJSON log, a backup, maintenance); then every entry under the
root is stat'ed and its mode compared with the expected one.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

import telelake
from conftest import TEST_HOST_ID
from telelake.export import export_table


@pytest.fixture
def umask() -> Iterator[None]:
    """Run the test under umask 000 (everything world-writable unless telelake says)."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def audit_row(i: int) -> dict[str, object]:
    return {
        "audit_ts": f"2026-01-10T12:00:{i:02d}Z",
        "session_id": "s1",
        "event_type": "scan_start",
        "severity": "info",
        "actor": "user",
        "message": f"message {i}",
        "host_id": "hostA",
    }


def fill(root: Path, stack: ExitStack) -> None:
    """Two stores, left open: a live WAL segment, SQLite's -wal and -shm files."""
    lake = root / "lake"
    with telelake.open(lake, schema="process_triage", host_id=TEST_HOST_ID) as store:
        store.write("audit", [audit_row(i) for i in range(5)])  # folded on close
        store.maintain()
    store = stack.enter_context(telelake.open(lake, schema="process_triage"))
    store.write("audit", [audit_row(i) for i in range(5, 8)])  # live in the WAL
    assert store.sql("SELECT count(*) FROM audit").scalar() == 8
    runs = stack.enter_context(telelake.open(root / "runs", schema="agent_runs"))
    with runs.run_client().start_run("indexer", run_id="r1"):
        pass
    runs.backup()
    export_table(runs, "agent_runs")  # into <root>/exports


def modes_under(top: Path) -> dict[str, int]:
    out = {}
    for dirpath, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, top)] = stat.S_IMODE(os.lstat(path).st_mode)
    return out


def test_a_store_is_private_to_its_owner_whatever_the_umask(tmp_path: Path, umask: None) -> None:
    with ExitStack() as stack:
        fill(tmp_path, stack)
        found = modes_under(tmp_path)
    names = {os.path.basename(p) for p in found}
    for wanted in ("telemetry.sqlite-wal", "fold.lock", "maintenance.lock", "store.json"):
        assert wanted in names, sorted(found)
    for suffix in (".wal", ".parquet", ".ndjson", ".backup.20", "agent_runs_"):
        assert any(suffix in n for n in names), (suffix, sorted(found))
    wrong = {
        p: oct(m) for p, m in found.items() if m != (0o700 if (tmp_path / p).is_dir() else 0o600)
    }
    assert wrong == {}


def test_group_access_gives_the_group_read_access(tmp_path: Path) -> None:
    old = os.umask(0o077)  # a umask that would take the group's bits
    try:
        for name in ("lake", "runs"):
            (tmp_path / name).mkdir()
            (tmp_path / name / "config.json").write_text(json.dumps({"group_access": True}))
        with ExitStack() as stack:
            fill(tmp_path, stack)
            found = modes_under(tmp_path)
    finally:
        os.umask(old)
    wrong = {
        p: oct(m)
        for p, m in found.items()
        # The roots and config.json are the owner's; the redaction key stays theirs alone.
        if p not in ("lake", "runs")
        and not p.endswith(("config.json", "redaction.key"))
        and m != (0o750 if (tmp_path / p).is_dir() else 0o640)
    }
    assert wrong == {}
    assert len(found) > 20


def test_group_access_must_be_true_or_false(tmp_path: Path) -> None:
    tmp_path.joinpath("config.json").write_text(json.dumps({"group_access": "yes"}))
    with pytest.raises(telelake.StoreError, match="group_access must be true or false"):
        telelake.open(tmp_path, schema="process_triage")
