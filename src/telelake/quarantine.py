"""`_quarantine/`: where files that cannot be trusted are kept for a person to look at.

Each kept file sits at `_quarantine/<stamp>/<its path in the store>` next to a reason
file. Nothing here is ever read by queries (the name starts with `_`), and nothing is
deleted by telelake: once reviewed, a person removes it.

A loss found while opening a store (a damaged WAL segment whose good records were
folded) is noted in a `.loss.txt` file, which `telelake check` reports as a problem
until `check --repair` marks it seen (renames it to `.reason.txt`): a warning at open
can go unnoticed, a failing check does not.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from telelake import durable

QUARANTINE_DIR = "_quarantine"
REASON_SUFFIX = ".reason.txt"
LOSS_SUFFIX = ".loss.txt"  # a loss not reported by `check` yet


def new_stamp() -> str:
    """The name of the folder a quarantine made now goes to."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def _place(root: Path, path: Path, stamp: str) -> Path:
    return root / QUARANTINE_DIR / stamp / path.relative_to(root)


def _note(kept: Path, reason: str, suffix: str) -> None:
    durable.write_bytes_durably(kept.with_name(kept.name + suffix), (reason + "\n").encode())


def quarantine(root: Path, path: Path, reason: str, stamp: str) -> Path:
    """Move `path` under `_quarantine/<stamp>/` with a reason file; returns the new path."""
    target = _place(root, path, stamp)
    durable.ensure_dir(target.parent)
    os.replace(path, target)
    _note(target, reason, REASON_SUFFIX)
    durable.fsync_dir(path.parent)
    return target


def keep_copy(root: Path, path: Path, reason: str, stamp: str, *, reported: bool) -> Path:
    """Durably copy `path` into the quarantine (the original stays), noting why; unless
    an identical copy is kept already (a crash before the original was dealt with), then
    that copy's path. `reported=False` notes it as a loss `check` has yet to report."""
    data = path.read_bytes()
    rel = path.relative_to(root)
    for earlier in sorted((root / QUARANTINE_DIR).glob(f"*/{rel}")):
        if earlier.stat().st_size == len(data) and earlier.read_bytes() == data:
            return earlier
    target = _place(root, path, stamp)
    durable.ensure_dir(target.parent)
    durable.write_bytes_durably(target, data)
    _note(target, reason, REASON_SUFFIX if reported else LOSS_SUFFIX)
    return target


def unreported_losses(root: Path) -> list[tuple[Path, str]]:
    """(kept file, reason) of every loss noted at open and not yet reported by check."""
    out = []
    for note in sorted((root / QUARANTINE_DIR).glob(f"**/*{LOSS_SUFFIX}")):
        kept = note.with_name(note.name[: -len(LOSS_SUFFIX)])
        out.append((kept, note.read_text(encoding="utf-8").strip()))
    return out


def mark_reported(kept: Path) -> None:
    """Turn the loss note of `kept` into a plain reason file (check reported it)."""
    note = kept.with_name(kept.name + LOSS_SUFFIX)
    os.replace(note, kept.with_name(kept.name + REASON_SUFFIX))
    durable.fsync_dir(kept.parent)
