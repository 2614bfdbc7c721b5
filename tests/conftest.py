"""Shared fixtures. Every test runs with TELELAKE_ROOT inside its own temp dir, so no
test can touch a real user store, and with automatic (background) maintenance off, so
no test races a maintenance thread it did not ask for; tests of maintenance turn it on
(tests/test_maintenance.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import telelake

TEST_HOST_ID = "feedfacecafebeef"
# Module- and session-scoped fixtures open stores before any function-scoped fixture
# runs: without this, theirs would start background maintenance (retention of dated
# test data racing the tests that read it).
os.environ["TELELAKE_MAINTENANCE"] = "off"


@pytest.fixture(autouse=True)
def _isolated_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELELAKE_ROOT", str(tmp_path / "default-root"))
    monkeypatch.setenv("TELELAKE_MAINTENANCE", "off")  # inherited by CLI subprocesses too


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    """A fresh, not yet created, store root."""
    return tmp_path / "store"


@pytest.fixture
def store(store_root: Path) -> Iterator[telelake.Store]:
    """A fresh process_triage store with a fixed host_id."""
    with telelake.open(store_root, schema="process_triage", host_id=TEST_HOST_ID) as s:
        yield s
