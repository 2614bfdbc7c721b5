"""The store's hashing key is never remade behind the user's back (issue 19, item 15).

A deleted or replaced `redaction.key` would give the same host name another marker and
break joins: the store refuses writes that would hash until the key is restored or
`telelake redact new-key --confirm` starts a new one. Expected markers come from the
plain-Python oracle (HMAC-SHA256 with the key file's bytes), fingerprints from hashlib.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import datagen
import redaction_oracle
import telelake

SEED = 20260115
HOST = "web-01.corp.example"


def run_rows(n: int, first: int = 0) -> list[dict[str, Any]]:
    """process_triage `runs` rows (hostname and username are hashed) with this host."""
    rows = [dict(r) for r in datagen.generate(SEED)["runs"][first : first + n]]
    assert len(rows) == n
    for row in rows:
        row["hostname"] = HOST
    return rows


def stored_hostnames(store: telelake.Store) -> list[str]:
    return [r[0] for r in store.sql("SELECT hostname FROM runs ORDER BY session_id").rows()]


def key_file(root: Path) -> Path:
    return root / "_metadata" / "redaction.key"


def record(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / "_metadata" / "redaction.json").read_text())
    return data


def fingerprint(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


@pytest.fixture
def hashed_store(tmp_path: Path) -> Path:
    """A process_triage store with one hashed run written."""
    root = tmp_path / "s"
    with telelake.open(root) as store:
        store.write("runs", run_rows(1))
    return root


def test_a_new_store_records_its_key_fingerprint(hashed_store: Path) -> None:
    key = key_file(hashed_store).read_bytes()
    assert record(hashed_store)["fingerprint"] == fingerprint(key)
    with telelake.open(hashed_store) as store:
        assert stored_hostnames(store) == [redaction_oracle.expected("hash", HOST, key)]


@pytest.mark.parametrize("loss", ["deleted", "replaced"])
def test_a_lost_key_refuses_hashing_writes_until_restored(hashed_store: Path, loss: str) -> None:
    key = key_file(hashed_store).read_bytes()
    if loss == "deleted":
        key_file(hashed_store).unlink()
    else:
        key_file(hashed_store).write_bytes(os.urandom(32))
    with telelake.open(hashed_store) as store:
        with pytest.raises(telelake.RedactionKeyError) as err:
            store.write("runs", run_rows(1, first=1))
        message = str(err.value)
        assert str(hashed_store) in message and "redact new-key --confirm" in message
        assert fingerprint(key) in message and "'runs'" in message
        with pytest.raises(telelake.RedactionKeyError):
            store.redacted("runs", run_rows(1, first=1))
        assert len(stored_hostnames(store)) == 1  # nothing written; reads still work
        sample = datagen.generate(SEED)["proc_samples"][:2]
        assert store.write("proc_samples", sample) == 2  # a table that hashes nothing
    if loss == "deleted":
        assert not key_file(hashed_store).exists()  # not silently remade
    key_file(hashed_store).write_bytes(key)  # restored from a backup
    with telelake.open(hashed_store) as store:
        store.write("runs", run_rows(1, first=1))
        marker = redaction_oracle.expected("hash", HOST, key)
        assert stored_hostnames(store) == [marker, marker]  # the join still holds


def test_cli_new_key_needs_confirm_then_starts_a_new_key(hashed_store: Path) -> None:
    old = key_file(hashed_store).read_bytes()
    key_file(hashed_store).unlink()

    def new_key(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "telelake", "redact", "new-key", str(hashed_store), *flags],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "200"},
        )

    refused = new_key()
    assert refused.returncode == 1 and "--confirm" in refused.stderr
    assert not key_file(hashed_store).exists()
    done = new_key("--confirm")
    assert done.returncode == 0, done.stderr
    new = key_file(hashed_store).read_bytes()
    assert len(new) == 32 and new != old
    assert fingerprint(new) in done.stdout and fingerprint(old) in done.stdout
    kept = record(hashed_store)
    assert kept["fingerprint"] == fingerprint(new)
    assert [h["fingerprint"] for h in kept["history"]] == [fingerprint(old)]
    with telelake.open(hashed_store) as store:
        store.write("runs", run_rows(1, first=1))
        assert sorted(stored_hostnames(store)) == sorted(
            [
                redaction_oracle.expected("hash", HOST, old),
                redaction_oracle.expected("hash", HOST, new),  # a new marker, as confirmed
            ]
        )


def test_a_store_from_before_key_records_gets_one(hashed_store: Path) -> None:
    (hashed_store / "_metadata" / "redaction.json").unlink()
    key = key_file(hashed_store).read_bytes()
    with telelake.open(hashed_store) as store:
        store.write("runs", run_rows(1, first=1))
    assert record(hashed_store)["fingerprint"] == fingerprint(key)
    assert key_file(hashed_store).read_bytes() == key
