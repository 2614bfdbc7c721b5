"""Online backups of a store's SQLite database, checked before and after the copy.

A backup is made with SQLite's online backup API, which is safe while other processes
write (copying the file would not be: sqlite.org/howtocorrupt.html). The steps:

1. `PRAGMA quick_check` on the source; a problem stops the backup before anything is written.
2. The copy goes to a hidden temp file in the backup directory, page by page. The
   backup holds an exclusive `flock` on it throughout, so the next backup can tell a
   temp file left by a killed backup (unlocked: removed) from one being written now.
3. `PRAGMA integrity_check` on the copy; a problem removes the temp file and raises.
4. The copy is fsynced, renamed to its name (below), and the directory is fsynced.

Spec 003 gives backups two names; `name_style` picks one:

- `dated` (the default, the spec's first): `{stem}.backup.YYYYMMDD.sqlite`, or
  `{stem}.backup.YYYYMMDD_HHMMSS.sqlite` if that day has a backup already;
- `timestamped` (the spec's second): `{stem}_backup_YYYYMMDD_HHMMSS.sqlite`.

Either adds `_N` (2, 3, ...) when that second is taken. Both styles are backups of the
same database: listed together, oldest first by the time in their names, and counted
together by retention (`keep`).

So a file named like a backup is always a complete, checked, self-contained database.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from telelake.durable import claim, ensure_dir, fsync_dir, open_file, publish
from telelake.errors import StoreError
from telelake.sql.connection import read_only

STEP_PAGES = 1024  # pages per backup step: writers of other processes get in between steps
MAX_RESTARTS = 3  # restarts caused by concurrent writes before copying in a single step
SHOWN_PROBLEMS = 5  # check messages quoted in an error
_SIDECARS = ("-journal", "-wal", "-shm")


@dataclass(frozen=True)
class BackupReport:
    """What a backup made: the file, its size, and the checks it passed.

    `removed` lists the older backups deleted by retention; `restarts` counts how often
    concurrent writes made SQLite restart the copy.
    """

    path: Path
    bytes: int
    pages: int
    quick_check: str
    integrity_check: str
    removed: list[Path] = field(default_factory=list)
    restarts: int = 0
    stale_removed: list[Path] = field(default_factory=list)  # temp files of killed backups


class _TooManyRestarts(Exception):
    """Raised from the progress callback to abort a stepped copy that keeps restarting."""


def _check(con: sqlite3.Connection, pragma: str) -> list[str]:
    """The messages of a check pragma, one per line: `["ok"]` for a sound database."""
    lines: list[str] = []
    try:
        for (text,) in con.execute(f"PRAGMA {pragma}"):
            lines.extend(line for line in str(text).splitlines() if line.strip())
    except sqlite3.DatabaseError as exc:  # a badly damaged file fails instead of reporting
        lines.append(f"{type(exc).__name__}: {exc}")
    return lines


def quick_check(con: sqlite3.Connection) -> list[str]:
    """`PRAGMA quick_check`: structure checks without index cross-checks, O(N)."""
    return _check(con, "quick_check")


def integrity_check(con: sqlite3.Connection) -> list[str]:
    """`PRAGMA integrity_check`: the full check, indexes included."""
    return _check(con, "integrity_check")


def summarize(what: str, messages: list[str]) -> str:
    """`what` and the first few check messages (the `*** in database ***` header skipped)."""
    messages = [m for m in messages if not m.startswith("*** ")] or messages
    shown = "; ".join(messages[:SHOWN_PROBLEMS])
    more = len(messages) - SHOWN_PROBLEMS
    return f"{what}: {shown}" + (f" (and {more} more)" if more > 0 else "")


DATED = "dated"
TIMESTAMPED = "timestamped"
NAME_STYLES = (DATED, TIMESTAMPED)  # the first is the default

# After the stem: ".backup.DATE[_TIME[_N]]" (dated) or "_backup_DATE_TIME[_N]" (timestamped).
_NAME = re.compile(
    r"(?:\.backup\.(\d{8})(?:_(\d{6})(?:_(\d+))?)?|_backup_(\d{8})_(\d{6})(?:_(\d+))?)\.sqlite"
)

Key = tuple[str, str, int]  # date, time ("" for a dated name without one), counter


def _name_key(stem: str, name: str) -> Key | None:
    """Sort key from a backup's name (date, time, counter), or None if it is not one."""
    if not name.startswith(stem):
        return None
    m = _NAME.fullmatch(name, len(stem))
    if m is None:
        return None
    date, time, counter = m.group(1, 2, 3) if m[1] else m.group(4, 5, 6)
    # A date-only name is the first backup of its day (see _candidates), so "" sorts it first.
    return date, time or "", int(counter or 0)


def _name(stem: str, style: str, key: Key) -> str:
    """The file name of the backup `key` in `style` (the inverse of _name_key)."""
    date, time, counter = key
    stamp = "_".join([date, *([time] if time else []), *([str(counter)] if counter else [])])
    return f"{stem}.backup.{stamp}.sqlite" if style == DATED else f"{stem}_backup_{stamp}.sqlite"


def list_backups(directory: Path, stem: str) -> list[Path]:
    """The published backups of `stem` in `directory`, oldest first (by their names)."""
    if not directory.is_dir():
        return []
    found: list[tuple[Key, Path]] = []
    for p in directory.iterdir():
        key = _name_key(stem, p.name)
        if key is not None and p.is_file():
            found.append((key, p))
    return [p for _, p in sorted(found)]


def _candidates(directory: Path, stem: str, now: datetime, style: str = DATED) -> list[Path]:
    """Final names to try in order, skipping times a backup (of either style) holds; the
    date-only name only in the dated style, and only if the day has no backup yet.

    Skipping the date-only name once the day has any backup keeps name order equal to
    time order, even after retention deleted the day's first backup.
    """
    day, second = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    taken = {key for p in list_backups(directory, stem) if (key := _name_key(stem, p.name))}
    keys: list[Key] = []
    if style == DATED and not any(key[0] == day for key in taken):
        keys.append((day, "", 0))
    keys += [(day, second, n) for n in (0, *range(2, 1000))]
    return [directory / _name(stem, style, key) for key in keys if key not in taken]


def _remove(path: Path) -> None:
    """Delete a temp database and any journal files SQLite left next to it."""
    for p in (path, *(path.with_name(path.name + s) for s in _SIDECARS)):
        p.unlink(missing_ok=True)


def _copy(
    src: sqlite3.Connection,
    tmp: Path,
    on_progress: Callable[[int, int], None] | None,
) -> int:
    """Copy `src` into a new database at `tmp`; return how often the copy restarted.

    SQLite restarts a stepped copy whenever another connection writes the source, so
    a busy database could keep it from ever finishing. After MAX_RESTARTS the copy is
    redone in one step: one read transaction, a consistent snapshot (in WAL mode
    writers carry on; in rollback mode they wait for it under their busy timeout).
    """
    restarts = 0
    last = -1

    def progress(status: int, remaining: int, total: int) -> None:
        nonlocal restarts, last
        if status == sqlite3.SQLITE_OK and last >= 0 and remaining >= last:
            restarts += 1  # a step that made no headway: the copy started over
            if restarts >= MAX_RESTARTS:
                raise _TooManyRestarts
        last = remaining
        if on_progress is not None:
            on_progress(total - remaining, total)

    dst = sqlite3.connect(tmp, isolation_level=None)
    try:
        src.backup(dst, pages=STEP_PAGES, progress=progress)
    except _TooManyRestarts:
        # Start from an empty file: the aborted copy may have switched it to WAL mode.
        # Emptied, not removed: the backup's lock belongs to this very file.
        dst.close()
        for side in _SIDECARS:
            tmp.with_name(tmp.name + side).unlink(missing_ok=True)
        os.truncate(tmp, 0)
        dst = sqlite3.connect(tmp, isolation_level=None)
        last = -1
        src.backup(dst, pages=-1, progress=progress)
    finally:
        dst.close()
    return restarts


def backup_database(
    source: Path,
    directory: Path,
    *,
    stem: str,
    now: datetime | None = None,
    keep: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    name_style: str = DATED,
    fix: str = "restore it from a backup",
) -> BackupReport:
    """Back up the SQLite database `source` into `directory` as a checked, single file.

    `now` (default: the current UTC time) dates the file name as given, in `name_style`
    (see the module's docstring). `keep=N` then deletes the oldest backups of `stem`
    (of either style) beyond N, never the one just made.
    `on_progress(copied_pages, total_pages)` is called after each copy step.
    Raises StoreError, naming the database and its first problems (and `fix`, what to
    run, when the source is damaged), if either check fails or the source is empty (a
    truncated file SQLite would read as an empty database); no file named like a backup
    is left behind, and no backup is removed, then.
    """
    if name_style not in NAME_STYLES:
        raise StoreError(
            f"backup name style must be one of {', '.join(NAME_STYLES)}, not {name_style!r}"
        )
    if keep is not None and keep < 1:
        raise StoreError(f"backup retention must keep at least 1 backup, not {keep}")
    if not source.is_file():
        raise StoreError(f"cannot back up {source}: no database file there")
    if source.stat().st_size == 0:
        raise StoreError(f"cannot back up {source}: it is empty (0 bytes), damaged; {fix}")
    when = now if now is not None else datetime.now(UTC)

    # Read-only: a backup never writes the source, not even a checkpoint on close.
    src = read_only(source, 30_000)
    try:
        before = quick_check(src)
        if before != ["ok"]:
            failed = summarize(f"cannot back up {source}: quick_check failed", before)
            raise StoreError(f"{failed}; {fix}")
        ensure_dir(directory)
        stale = remove_stale_partials(directory, stem)
        # Hidden, and not ending in .sqlite: no backup glob or list_backups ever sees it.
        tmp = directory / f".{stem}.backup.{secrets.token_hex(4)}{PARTIAL}"
        lock = _locked_new(tmp)
        try:
            restarts = _copy(src, tmp, on_progress)
            dst = sqlite3.connect(tmp, isolation_level=None)
            try:
                # The copy carries the source's WAL flag; DELETE makes the one file complete.
                dst.execute("PRAGMA journal_mode = DELETE")
                after = integrity_check(dst)
                (pages,) = dst.execute("PRAGMA page_count").fetchone()
            finally:
                dst.close()
            if after != ["ok"]:
                raise StoreError(
                    summarize(f"backup of {source} failed integrity_check (discarded)", after)
                )
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            final = _publish(tmp, directory, stem, when, name_style)
        finally:
            _remove(tmp)  # a no-op after a publish: the link already took the temp name away
            os.close(lock)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot back up {source}: {exc}; {fix}") from exc
    except OSError as exc:  # e.g. a full or read-only backup disk
        raise StoreError(f"cannot back up {source} into {directory}: {exc}") from exc
    finally:
        src.close()

    removed = _retain(directory, stem, keep, final) if keep is not None else []
    return BackupReport(
        path=final,
        bytes=final.stat().st_size,
        pages=int(pages),
        quick_check=before[0],
        integrity_check=after[0],
        removed=removed,
        restarts=restarts,
        stale_removed=stale,
    )


PARTIAL = ".partial"


def _locked_new(path: Path) -> int:
    """Create `path` and hold an exclusive flock on it (released when the fd closes).

    flock and SQLite's own (fcntl) locks are independent, so SQLite writes the file as
    usual while we hold it.
    """
    # Locked under a name no sweep looks at, then renamed: never seen unlocked.
    hidden = path.with_name(path.name + ".new")
    fd = open_file(hidden, os.O_RDWR | os.O_EXCL)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(hidden, path)
    return fd


def remove_stale_partials(directory: Path, stem: str) -> list[Path]:
    """Remove the temp files (and SQLite side files) of backups whose process died."""
    removed: list[Path] = []
    for path in sorted(directory.glob(f".{stem}.backup.*{PARTIAL}")):
        fd = claim(path)
        if fd is None:
            continue  # a backup running now (or one that just finished)
        try:
            _remove(path)
            removed.append(path)
        finally:
            os.close(fd)
    if removed:
        with contextlib.suppress(OSError):
            fsync_dir(directory)
    return removed


def _publish(tmp: Path, directory: Path, stem: str, when: datetime, style: str) -> Path:
    """Link the checked copy under the first free backup name (never overwriting one)."""
    for final in _candidates(directory, stem, when, style):
        try:
            publish(tmp, final, replace=False)  # link + unlink + directory fsync
        except FileExistsError:
            continue  # taken, perhaps by a concurrent backup: try the next name
        return final
    raise StoreError(f"no free backup name for {stem!r} at {when:%Y%m%d_%H%M%S} in {directory}")


def _retain(directory: Path, stem: str, keep: int, made: Path) -> list[Path]:
    """Delete the oldest backups of `stem` beyond `keep`, sparing the one just `made`."""
    others = [p for p in list_backups(directory, stem) if p != made]
    doomed = others[: max(0, len(others) - (keep - 1))]
    for p in doomed:
        p.unlink(missing_ok=True)
    if doomed:
        fsync_dir(directory)
    return doomed
