"""`telelake check`: read everything a store holds and report what cannot be trusted.

With repair, each bad file moves to `_quarantine/<stamp>/<its path>` next to a
`.reason.txt`, so queries work again and nothing is deleted that a person might want
to look at. Readable rows are never dropped: the complete records of a torn WAL segment
are folded into Parquet before the segment itself is quarantined.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from telelake import durable
from telelake.lake import fold, parquet, wal
from telelake.metadata import METADATA_DIR
from telelake.quarantine import keep_copy, mark_reported, quarantine, unreported_losses
from telelake.sql.backup import summarize

if TYPE_CHECKING:
    from telelake.store import Store

STALE_TEMP_SECONDS = 600.0  # a younger temp file may belong to a write in progress
_JSON_FILES = ("store.json", "schema_version.json", "host_info.json")


@dataclass
class Finding:
    """One file that cannot be trusted, and what repair did about it."""

    path: Path
    kind: str
    problem: str
    action: str = ""


@dataclass
class CheckReport:
    """The result of `Store.check`."""

    checked: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    repaired: bool = False

    @property
    def ok(self) -> bool:
        """True when nothing is wrong, or everything wrong was repaired."""
        return all(f.action for f in self.findings)

    def count(self, kind: str) -> None:
        """Count one checked file of `kind`."""
        self.checked[kind] = self.checked.get(kind, 0) + 1


def check_store(store: Store, *, repair: bool = False, deep: bool = False) -> CheckReport:
    """Check every data file, WAL segment, fold intent and metadata file of a store.

    Data files are judged by their footers; with `deep`, every page of every file is
    also read and checked against its CRC (bit rot that footers do not show).
    """
    report = CheckReport(repaired=repair)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    lake = store._lake
    root = store.root

    def found(path: Path, kind: str, problem: str) -> None:
        finding = Finding(path, kind, problem)
        if repair:
            moved = quarantine(root, path, f"{kind}: {problem}", stamp)
            finding.action = f"quarantined to {moved.relative_to(root)}"
        report.findings.append(finding)

    for table in store.schema.tables.values():
        if table.tier != "lake":
            continue
        for path in lake.files(table):
            report.count("parquet")
            problem = lake.file_problem(table, path)
            if problem is None and deep:
                problem = parquet.page_problem(path)
            if problem:
                found(path, "parquet", problem)
        _check_temp_files(root / table.name, found, report)
        wal_dir = lake.wal_dir(table)
        if not wal_dir.is_dir():
            continue
        _check_temp_files(wal_dir, found, report)
        # No fold lock: a check never waits for a fold or compaction. Intents are
        # replaced atomically, so one read is whole; one that went meanwhile is done.
        for intent_path in sorted(wal_dir.glob("*" + fold.INTENT_SUFFIX)):
            report.count("intent")
            try:
                fold.Intent.load(intent_path)
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError) as exc:
                found(intent_path, "intent", f"unreadable fold intent ({exc})")
        for seg in sorted(wal_dir.glob("*" + wal.SUFFIX)):
            report.count("wal")
            if wal.is_locked(seg):
                continue  # its writer is alive and may be mid-append: not ours to judge
            contents = wal.read_segment(seg, lake.wal_schemas(table))
            if contents.schema is None and contents.damage is None:
                found(seg, "wal", contents.problem or "unreadable segment")
            elif contents.problem or contents.damage:
                lost = contents.total_bytes - contents.valid_bytes
                problem = "; ".join(
                    p
                    for p in (
                        contents.damage,
                        contents.problem
                        and f"{contents.problem}: {lost} bytes after the last complete record",
                    )
                    if p
                )
                finding = Finding(seg, "wal", f"{problem} ({contents.rows} rows readable)")
                if repair:
                    kept = keep_copy(root, seg, finding.problem, stamp, reported=True)
                    lake.fold_orphans(table, reported=True)  # the good records go to Parquet
                    finding.action = (
                        f"{contents.rows} rows folded; copy in {kept.relative_to(root)}"
                    )
                report.findings.append(finding)

    for kept, reason in unreported_losses(root):
        # Found (and salvaged) while a store opened: reported here once, then marked seen.
        finding = Finding(kept, "wal", f"lost on open: {reason}")
        if repair:
            mark_reported(kept)
            finding.action = "reported; the copy stays for inspection"
        report.findings.append(finding)

    if store._sql is not None:
        # SQLite checks its own pages and constraints; repair is not ours to attempt
        # (restore a backup), so problems are reported, never quarantined.
        report.count("database")
        path = store._sql.path
        damage = store._sql.integrity_problems()
        if damage:  # one finding: the file, the first problems, what to run
            what = summarize("integrity_check failed", damage)
            report.findings.append(Finding(path, "database", f"{what}; {store._sql.fix}"))
        else:  # sound pages: rows whose parent is gone (a tool bypassed the keys)
            for problem in store._sql.foreign_key_problems():
                report.findings.append(Finding(path, "database", problem))

    if store.schema.log is not None:
        _check_log(root / store.schema.log.directory, store.schema.log.prefix, report)

    meta = root / METADATA_DIR
    for name in _JSON_FILES:
        path = meta / name
        report.count("metadata")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except FileNotFoundError:
            report.findings.append(Finding(path, "metadata", "missing"))
        except (OSError, ValueError) as exc:
            if name == "host_info.json":
                # Describes this host only: safe to rebuild. The other two decide how the
                # store opens; a store that opened has them readable.
                found(path, "metadata", f"unreadable ({exc})")
                if repair and not store.read_only:
                    store._meta.update_host_info(store.host_id)
                    report.findings[-1].action += "; rewritten"
            else:
                report.findings.append(Finding(path, "metadata", f"unreadable ({exc})"))
    for table in store.schema.tables.values():
        if table.tier != "lake":
            continue
        anchor = lake.anchor_path(table)
        report.count("metadata")
        if lake.file_problem(table, anchor) if anchor.exists() else "missing":
            finding = Finding(anchor, "metadata", "view anchor missing or unreadable")
            if repair and not store.read_only:
                lake.ensure_anchor(table)
                finding.action = "rewritten"
            report.findings.append(finding)
    _check_temp_files(meta, found, report)
    return report


def _check_log(directory: Path, prefix: str, report: CheckReport) -> None:
    """Every line of every log file `replay` reads must be a record: a torn line (a
    writer killed mid-append) or any other bad line is a finding, with its number."""
    from telelake.log import ndjson
    from telelake.log.replay import log_files

    paths, _ = log_files(directory, prefix)  # hidden files: temp files, never replayed
    for path in paths:
        report.count("log")
        for line in ndjson.scan(path):
            if line.problem is not None:
                why = f"line {line.number}: {line.problem}; replay and recover skip it"
                report.findings.append(Finding(path, "log", why))


def _check_temp_files(
    base: Path, found: Callable[[Path, str, str], None], report: CheckReport
) -> None:
    """Temp files left by a crashed publish (old enough not to be a write in progress)."""
    if not base.is_dir():
        return
    now = time.time()
    for _dir, _, filenames in os.walk(base):
        for name in filenames:
            if durable.is_temp(name):
                report.count("temp")
    for path, fd in durable.orphan_temps(base, STALE_TEMP_SECONDS):
        os.close(fd)  # (its writer is gone: nobody holds its lock)
        try:
            age = now - path.stat().st_mtime
        except FileNotFoundError:
            continue
        found(path, "temp", f"left by a killed writer ({age:.0f}s old)")
