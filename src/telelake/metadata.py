"""The store's `_metadata/` folder: which schema and version it holds, and this host.

Files (spec 000 §4.1 and §10.2):
- `schema_version.json`: current_version, compatible_versions, upgrade_from, last_checked
- `host_info.json`: host_id, hostname_hash, first_seen, last_seen, os_family, arch
- `store.json`: the schema name and the telelake version that created the store
- `schema.toml`: a copy of the schema the store was last opened with
- `maintenance.json`: the latest maintenance runs (see `telelake.upkeep`), and
  `maintenance.lock`, held by the process running one
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telelake import durable
from telelake.errors import StoreError

METADATA_DIR = "_metadata"
_MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))


def utc_now_iso(now: dt.datetime | None = None) -> str:
    """`2026-01-15T14:30:00Z` for now (or `now`)."""
    when = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def machine_id() -> str:
    """The OS machine id (systemd/dbus), or the MAC-derived node id as a fallback."""
    for path in _MACHINE_ID_FILES:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text:
            return text
    return f"node-{uuid.getnode():012x}"


def compute_host_id(hostname: str, machine: str) -> str:
    """Spec 000 §2.2: SHA-256 of `<hostname>:<machine-id>`, truncated to 16 hex digits."""
    return hashlib.sha256(f"{hostname}:{machine}".encode()).hexdigest()[:16]


def local_host_id() -> str:
    """This host's host_id."""
    return compute_host_id(socket.gethostname(), machine_id())


@dataclass
class VersionInfo:
    """The contents of schema_version.json."""

    current_version: str
    compatible_versions: list[str]
    upgrade_from: str | None
    last_checked: str

    def to_json(self) -> dict[str, Any]:
        """The §4.1 document, keys in the spec's order."""
        return {
            "current_version": self.current_version,
            "compatible_versions": self.compatible_versions,
            "upgrade_from": self.upgrade_from,
            "last_checked": self.last_checked,
        }


def version_key(v: str) -> tuple[int, ...]:
    """`1.10.0` -> (1, 10, 0): semantic versions compare as numbers, not text."""
    return tuple(int(p) for p in v.split("."))


def reconcile_version(
    stored: VersionInfo | None, schema_version: str, now: str
) -> tuple[VersionInfo, bool]:
    """Decide how a store holding `stored` opens with a schema at `schema_version`.

    Returns the version info to write and whether the store must be read-only (it
    was written by a newer major version, spec §4.2). Raises StoreError when the
    schema is a newer major version than the data: that needs a migration.
    """
    if stored is None:
        return VersionInfo(schema_version, [schema_version], None, now), False
    have, want = version_key(stored.current_version), version_key(schema_version)
    if have[0] > want[0]:
        return stored, True
    if have[0] < want[0]:
        raise StoreError(
            f"the store holds schema version {stored.current_version} and this schema is "
            f"{schema_version}, a breaking (major) change; migrate the store first"
        )
    compatible = list(stored.compatible_versions)
    if schema_version not in compatible:
        compatible.append(schema_version)
        compatible.sort(key=version_key)
    if want > have:  # additive upgrade (minor/patch)
        return VersionInfo(schema_version, compatible, stored.current_version, now), False
    return VersionInfo(stored.current_version, compatible, stored.upgrade_from, now), False


class MetadataDir:
    """Reads and writes the files of `<root>/_metadata/` atomically."""

    def __init__(self, root: Path) -> None:
        self.path = root / METADATA_DIR

    def _read(self, name: str) -> dict[str, Any] | None:
        file = self.path / name
        if not file.exists():
            return None
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise StoreError(f"{file}: unreadable store metadata ({exc})") from exc
        if not isinstance(data, dict):
            raise StoreError(f"{file}: store metadata must be a JSON object")
        return data

    def _write(self, name: str, data: dict[str, Any]) -> None:
        text = json.dumps(data, indent=2) + "\n"
        durable.write_bytes_durably(self.path / name, text.encode())

    def store_info(self) -> dict[str, Any] | None:
        """store.json, or None for a new store."""
        return self._read("store.json")

    def write_store_info(self, schema_name: str, telelake_version: str) -> None:
        """Record which schema this store holds."""
        self._write(
            "store.json",
            {"schema": schema_name, "created_by": telelake_version, "created_at": utc_now_iso()},
        )

    def version_info(self) -> VersionInfo | None:
        """schema_version.json, or None."""
        data = self._read("schema_version.json")
        if data is None:
            return None
        try:
            return VersionInfo(
                current_version=str(data["current_version"]),
                compatible_versions=[str(v) for v in data["compatible_versions"]],
                upgrade_from=data.get("upgrade_from"),
                last_checked=str(data["last_checked"]),
            )
        except (KeyError, TypeError) as exc:
            raise StoreError(f"{self.path / 'schema_version.json'}: missing {exc}") from exc

    def write_version_info(self, info: VersionInfo) -> None:
        """Write schema_version.json (§4.1)."""
        self._write("schema_version.json", info.to_json())

    def append_migration(self, entry: dict[str, Any]) -> None:
        """Record a migration in migrations.json (a list, oldest first)."""
        done = self._read("migrations.json") or {"migrations": []}
        done["migrations"].append(entry)
        self._write("migrations.json", done)

    def migrations(self) -> list[dict[str, Any]]:
        """The migrations recorded so far."""
        return list((self._read("migrations.json") or {"migrations": []})["migrations"])

    def maintenance_runs(self) -> list[dict[str, Any]]:
        """The maintenance runs recorded in maintenance.json, oldest first."""
        data = self._read("maintenance.json")
        runs = (data or {}).get("runs", [])
        if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
            raise StoreError(f"{self.path / 'maintenance.json'}: 'runs' must be a list of objects")
        return runs

    def write_maintenance_runs(self, runs: list[dict[str, Any]]) -> None:
        """Replace maintenance.json's runs (atomically, durably)."""
        self._write("maintenance.json", {"runs": runs})

    def schema_copy(self) -> str | None:
        """The text of the schema the store was last opened with, if kept."""
        try:
            return (self.path / "schema.toml").read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def write_schema_copy(self, text: str) -> None:
        """Keep a copy of the schema so the store describes itself."""
        if text:
            durable.write_bytes_durably(self.path / "schema.toml", text.encode())

    def update_host_info(self, host_id: str, now: str | None = None) -> dict[str, Any]:
        """Create or refresh host_info.json (§10.2) for this host."""
        stamp = now or utc_now_iso()
        try:
            old = self._read("host_info.json") or {}
        except StoreError:
            old = {}  # describes this host only: rebuilt rather than fatal
        same_host = old.get("host_id") == host_id
        info = {
            "host_id": host_id,
            "hostname_hash": hashlib.sha256(socket.gethostname().encode()).hexdigest()[:16],
            "first_seen": old.get("first_seen", stamp) if same_host else stamp,
            "last_seen": stamp,
            "os_family": platform.system().lower(),
            "arch": platform.machine(),
        }
        self._write("host_info.json", info)
        return info
