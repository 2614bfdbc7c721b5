"""Breaking changes with a declared migration: every file rewritten, checked by `check`,
recorded; without one, refused with nothing changed; a bad migrated row changes nothing."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

import telelake

V1 = """
name = "evo"
version = "1.2.0"

[tables.events]
time = "ts"
partition = {{ time = ["year", "month", "day"], keys = ["host_id"] }}
columns = [
  {{ name = "ts", type = "timestamp", nullable = false }},
  {{ name = "kind", type = "string", nullable = false }},
  {{ name = "value", type = "float64" }},
]

[tables.notes]
time = "ts"
partition = {{ time = ["year", "month"] }}
columns = [
  {{ name = "ts", type = "timestamp", nullable = false }},
  {{ name = "text", type = "string", nullable = false }},
]
"""

V2 = """
name = "evo"
version = "2.0.0"

[tables.events]
time = "ts"
partition = {{ time = ["year", "month", "day"], keys = ["host_id"] }}
columns = [
  {{ name = "ts", type = "timestamp", nullable = false }},
  {{ name = "kind", type = "int32", nullable = false }},
  {{ name = "value", type = "float64" }},
]

[tables.notes]
time = "ts"
partition = {{ time = ["year", "month"] }}
columns = [
  {{ name = "ts", type = "timestamp", nullable = false }},
  {{ name = "text", type = "string", nullable = false }},
  {{ name = "tag", type = "string" }},
]
{migration}
"""

MIGRATION = """
[migrations.from_1]
description = "kind becomes a numeric code"
tables.events = '''SELECT ts, CASE kind WHEN 'start' THEN 1 WHEN 'stop' THEN 2 END AS kind,
                 value FROM old'''
"""
CODES = {"start": 1, "stop": 2}


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def rows(n: int) -> list[dict[str, Any]]:
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return [
        {"ts": t0 + dt.timedelta(hours=7 * i), "kind": ["start", "stop"][i % 2], "value": i / 2}
        for i in range(n)
    ]


def fill(tmp: Path, root: Path) -> list[dict[str, Any]]:
    data = rows(30)
    v1 = write(tmp, "v1.toml", V1.format())
    for host in ("hosta", "hostb"):  # two host partitions, several days, several files
        with telelake.open(root, v1, host_id=host) as store:
            for i in range(0, len(data), 10):
                store.write("events", data[i : i + 10])
            store.write("notes", [{"ts": r["ts"], "text": r["kind"]} for r in data[:5]])
    return data


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_declared_migration_rewrites_every_file(tmp_path: Path) -> None:
    root = tmp_path / "store"
    data = fill(tmp_path, root)
    v2 = write(tmp_path, "v2.toml", V2.format(migration=MIGRATION))
    with pytest.raises(telelake.StoreError, match="migrate"):
        telelake.open(root, v2)  # not without asking
    with telelake.open(root, v2, migrate=True, retire_after=0) as store:
        assert store.migration is not None
        assert store.migration.tables["events"].rows == 2 * len(data)
        got = store.sql("SELECT host_id, ts, kind, value FROM events ORDER BY ALL").rows()
        want = sorted(
            (h, r["ts"], CODES[r["kind"]], r["value"]) for h in ("hosta", "hostb") for r in data
        )
        assert got == want
        assert store.sql("SELECT count(*), count(tag) FROM notes").rows() == [(10, 0)]
        assert store.check().ok
    version = json.loads((root / "_metadata" / "schema_version.json").read_text())
    assert version["current_version"] == "2.0.0" and version["upgrade_from"] == "1.2.0"
    log = json.loads((root / "_metadata" / "migrations.json").read_text())["migrations"]
    assert [(m["from_version"], m["to_version"]) for m in log] == [("1.2.0", "2.0.0")]
    with telelake.open(root, v2) as store:  # a plain open works from now on
        assert store.sql("SELECT count(*) FROM events").scalar() == 2 * len(data)
    with pytest.warns(UserWarning, match="read-only"):  # and version 1 may only read
        telelake.open(root, write(tmp_path, "v1b.toml", V1.format())).close()


def test_without_a_declared_migration_nothing_changes(tmp_path: Path) -> None:
    root = tmp_path / "store"
    fill(tmp_path, root)
    before = snapshot(root)
    v2 = write(tmp_path, "v2.toml", V2.format(migration=""))
    with pytest.raises(telelake.StoreError, match=r"no \[migrations.from_1\]"):
        telelake.open(root, v2, migrate=True)
    assert snapshot(root) == before


def test_a_migration_missing_sql_for_a_breaking_table_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "store"
    fill(tmp_path, root)
    before = snapshot(root)
    empty = '[migrations.from_1]\ndescription = "forgot events"\n'
    v2 = write(tmp_path, "v2.toml", V2.format(migration=empty))
    with pytest.raises(telelake.StoreError, match=r"no SQL for table.*events"):
        telelake.open(root, v2, migrate=True)
    assert snapshot(root) == before


def test_a_bad_migrated_row_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "store"
    fill(tmp_path, root)
    before = snapshot(root)
    bad = MIGRATION.replace("WHEN 'stop' THEN 2 ", "")  # stop -> NULL in a non-null column
    v2 = write(tmp_path, "v2.toml", V2.format(migration=bad))
    with pytest.raises(telelake.ValidationError) as err:
        telelake.open(root, v2, migrate=True)
    assert err.value.table == "events" and err.value.column == "kind"
    assert "migrating" in str(err.value)
    assert snapshot(root) == before


def test_an_interrupted_migration_finishes_when_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from telelake.lake import migrate

    root = tmp_path / "store"
    data = fill(tmp_path, root)
    v2 = write(tmp_path, "v2.toml", V2.format(migration=MIGRATION))
    real = migrate.migrate_file
    calls = {"n": 0}

    def flaky(*args: Any, **kw: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk went away")
        real(*args, **kw)

    monkeypatch.setattr(migrate, "migrate_file", flaky)
    with pytest.raises(OSError):
        telelake.open(root, v2, migrate=True)
    monkeypatch.setattr(migrate, "migrate_file", real)
    with telelake.open(root, v2, migrate=True) as store:
        got = store.sql("SELECT host_id, ts, kind FROM events ORDER BY ALL").rows()
    want = sorted((h, r["ts"], CODES[r["kind"]]) for h in ("hosta", "hostb") for r in data)
    assert got == want


def test_cli_migrate_dry_run_then_for_real(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    root = tmp_path / "store"
    data = fill(tmp_path, root)
    v2 = write(tmp_path, "v2.toml", V2.format(migration=MIGRATION))
    env = {**os.environ, "TELELAKE_ROOT": str(root)}
    cli = [sys.executable, "-m", "telelake", "migrate", "up", "--schema", str(v2)]
    before = snapshot(root)
    dry = subprocess.run([*cli, "--dry-run"], capture_output=True, text=True, env=env)
    assert dry.returncode == 0, dry.stderr
    files = len(list((root / "events").rglob("*.parquet")))
    assert f"events: {files} file(s), {2 * len(data)} rows rewritten by SQL" in dry.stdout
    assert "would migrate 1.2.0 -> 2.0.0" in dry.stdout
    assert snapshot(root) == before
    real = subprocess.run(cli, capture_output=True, text=True, env=env)
    assert real.returncode == 0, real.stderr
    assert "migrated 1.2.0 -> 2.0.0" in real.stdout
    again = subprocess.run(cli, capture_output=True, text=True, env=env)
    assert "nothing to migrate" in again.stdout
