"""The store's secret hashing key, `_metadata/redaction.key`, and the record of it.

The `hash` policy keys its HMAC with this key, so the same value gets the same marker
across every write of a store (joins and group-bys work). A new key would give the same
host name another marker and silently break those joins, so the key is never remade
behind the user's back:

- the first key of a store is made when a store that hashes something is first opened
  for writing, and its fingerprint (SHA-256 of the key, first 16 hex: it names the key
  without revealing it) is recorded in `_metadata/redaction.json`;
- a store whose record names a key it no longer has (the file was deleted, or replaced
  by another key) refuses every write that would hash (:class:`KeyState` says why) until
  the key file is restored or `telelake redact new-key --confirm` starts a new key, which
  the record keeps in its history.

A store made before keys were recorded gets its record when it is next opened for
writing, with the key it has then.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telelake import durable
from telelake.errors import StoreError
from telelake.metadata import METADATA_DIR, utc_now_iso

KEY_NAME = "redaction.key"
RECORD_NAME = "redaction.json"
KEY_BYTES = 32
NEW_KEY_COMMAND = "telelake redact new-key --confirm"


@dataclass(frozen=True)
class KeyState:
    """A store's key as an open found it: the key, or why hashing must not run."""

    key: bytes
    problem: str | None = None  # None: `key` is the store's key


def fingerprint(key: bytes) -> str:
    """Names a key without revealing it: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(key).hexdigest()[:16]


def read_record(root: Path) -> dict[str, Any] | None:
    """`_metadata/redaction.json`, or None if the store has none yet."""
    path = root / METADATA_DIR / RECORD_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: unreadable store metadata ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("fingerprint"), str):
        raise StoreError(f"{path}: store metadata must be an object with a 'fingerprint'")
    return data


def _write_record(root: Path, record: dict[str, Any]) -> None:
    path = root / METADATA_DIR / RECORD_NAME
    durable.write_bytes_durably(path, (json.dumps(record, indent=2) + "\n").encode())


def _read_key(path: Path) -> bytes | None:
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(key) != KEY_BYTES:
        raise StoreError(f"{path}: a redaction key is {KEY_BYTES} bytes, this one {len(key)}")
    return key


def _publish_key(path: Path, *, replace: bool) -> bytes:
    """Write a new random key (mode 0600, fsynced) at `path`; without `replace`, a key
    another process made meanwhile wins and is returned."""
    key = secrets.token_bytes(KEY_BYTES)

    def fill(tmp: Path) -> None:
        # The temp file is write_durably's own (it holds its lock): made private before
        # the key is in it.
        os.chmod(tmp, 0o600)
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, key)
        finally:
            os.close(fd)

    try:
        durable.write_durably(path, fill, replace=replace)
    except FileExistsError:
        return _read_key(path) or key
    return key


def open_key(root: Path, *, create: bool) -> KeyState:
    """The key of the store at `root`, made on first need if `create`.

    Never makes a key for a store whose record names one: the state then says what is
    wrong and what to do, and the store refuses to hash with anything else.
    """
    path = root / METADATA_DIR / KEY_NAME
    record = read_record(root)
    key = _read_key(path)
    recorded = record["fingerprint"] if record else None
    if key is not None and recorded in (None, fingerprint(key)):
        if recorded is None and create:  # a store from before keys were recorded
            _write_record(root, {"fingerprint": fingerprint(key), "recorded_at": utc_now_iso()})
        return KeyState(key)
    if recorded is None:  # no key, and none was ever recorded: a new store
        if not create:
            return KeyState(b"", f"store {root} has no redaction key yet (opened read-only)")
        key = _publish_key(path, replace=False)
        _write_record(root, {"fingerprint": fingerprint(key), "created_at": utc_now_iso()})
        return KeyState(key)
    what = "is missing" if key is None else f"is another key ({fingerprint(key)})"
    return KeyState(
        b"",
        f"store {root}: its redaction key {path} {what}, but the store's values were hashed "
        f"with key {recorded} (recorded in {RECORD_NAME}); a new key would give them other "
        f"markers and break joins. Restore the key file from a backup of the store, or run "
        f"`{NEW_KEY_COMMAND} {root}` to start a new key; nothing was written",
    )


def new_key(root: Path) -> tuple[str | None, str]:
    """Start a new key for the store at `root` (any old key file is replaced), and keep
    the old one's fingerprint in the record's history. Returns (old, new) fingerprints."""
    if not (root / METADATA_DIR).is_dir():
        raise StoreError(f"{root} is not a telelake store (no {METADATA_DIR}/)")
    record = read_record(root) or {}
    old_key = _read_key(root / METADATA_DIR / KEY_NAME)
    old = record.get("fingerprint") or (fingerprint(old_key) if old_key else None)
    key = _publish_key(root / METADATA_DIR / KEY_NAME, replace=True)
    history = list(record.get("history", []))
    if old is not None:
        history.append({"fingerprint": old, "replaced_at": utc_now_iso(), "by": NEW_KEY_COMMAND})
    new = fingerprint(key)
    _write_record(root, {"fingerprint": new, "created_at": utc_now_iso(), "history": history})
    return old, new
