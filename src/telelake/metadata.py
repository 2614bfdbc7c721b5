"""The store's `_metadata/` folder: which schema and version it holds, and this host.

Files (spec 000 §4.1 and §10.2):
- `schema_version.json`: current_version, compatible_versions, upgrade_from, last_checked
- `host_info.json`: host_id, hostname_hash, first_seen, last_seen, os_family, arch
- `store.json`: the schema name, the telelake version that created the store and, for
  a schema given as a file, that file (`schema_file`)
- `schema.toml`: a copy of the schema the store was last opened with: a store of a
  schema file opens without the file (see `MetadataDir.own_schema`)
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
from typing import TYPE_CHECKING, Any

from telelake import durable
from telelake.errors import SchemaError, StoreError

if TYPE_CHECKING:
    from telelake.schema.model import Schema

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

    def write_store_info(self, schema: Schema, telelake_version: str) -> None:
        """Record which schema this store holds, and where it comes from (see
        `record_schema_source`)."""
        info = {"schema": schema.name, "created_by": telelake_version, "created_at": utc_now_iso()}
        self.record_schema_source(info, schema, force=True)

    def record_schema_source(
        self, info: dict[str, Any], schema: Schema, *, force: bool = False
    ) -> None:
        """Write store.json `info`, its `schema_file` saying where `schema` comes from:
        absent for a built-in schema, the file's absolute path for a schema file, as it
        was for the store's own copy. Only when that changes (or with `force`)."""
        source = schema_source(schema, self.path)
        if source == _OWN_COPY:
            source = info.get("schema_file")
        if force or info.get("schema_file") != source:
            updated = {k: v for k, v in info.items() if k != "schema_file"}
            self._write("store.json", updated | ({"schema_file": source} if source else {}))

    def holds(self, schema: Schema, version: VersionInfo) -> bool:
        """True if opening this store with `schema` has nothing to write: store.json,
        schema_version.json (but for `last_checked`) and the schema copy already say
        what opening would. (host_info.json's `last_seen` is then left as it is.)"""
        info, stored = self.store_info(), self.version_info()
        if info is None or stored is None:
            return False
        source = schema_source(schema, self.path)
        if source != _OWN_COPY and info.get("schema_file") != source:
            return False
        unchecked = {**version.to_json(), "last_checked": None}
        if unchecked != {**stored.to_json(), "last_checked": None}:
            return False
        return self.schema_copy() == schema.text

    def own_schema(self) -> Schema | None:
        """The schema this store holds, None for a new store (no store.json yet).

        A built-in schema is loaded from the package, as installed now (a newer
        telelake brings its newer minor versions). A schema given as a file is the copy
        in `_metadata/schema.toml`, as the store was last opened with it: the file
        itself is not needed, except for the SQL files it names, which are looked up
        next to it.
        """
        info = self.store_info()
        if info is None:
            return None
        from telelake.schema.load import builtin_names, load_schema, load_schema_text

        root, copy = self.path.parent, self.path / "schema.toml"
        name, file = info.get("schema"), info.get("schema_file")
        if not isinstance(name, str) or not (file is None or isinstance(file, str)):
            raise StoreError(f"{self.path / 'store.json'}: no schema name, or a bad schema_file")
        if file is None and name in builtin_names():
            return load_schema(name)
        text = self.schema_copy()
        if text is None:
            raise StoreError(
                f"store {root} holds schema {name!r} but no copy of it ({copy}): "
                "give its schema file (--schema FILE, or schema=FILE)"
            )
        try:
            model = load_schema_text(text, copy, base=Path(file).parent if file else self.path)
        except SchemaError as exc:
            raise SchemaError(
                f"store {root}: its schema {name!r} (kept in {copy}"
                + (f", from {file}" if file else "")
                + f") does not load: {exc}; give its schema file (--schema FILE, or "
                "schema=FILE)"
            ) from None
        if model.name != name:
            raise StoreError(
                f"store {root} holds schema {name!r}, but its copy {copy} is of {model.name!r}"
            )
        return model

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


_OWN_COPY = "<own copy>"


def schema_source(schema: Schema, metadata_dir: Path) -> str | None:
    """Where `schema` was loaded from, as store.json records it: None for a built-in,
    `_OWN_COPY` for the store's own copy (or no file at all), else the file's absolute
    path."""
    from telelake.schema.load import builtin_names, builtin_path

    source = schema.source
    if source is None or source.resolve() == (metadata_dir / "schema.toml").resolve():
        return _OWN_COPY  # (a Schema built in code has no file: its copy is all there is)
    if schema.name in builtin_names() and source == builtin_path(schema.name):
        return None
    return str(source.resolve())
