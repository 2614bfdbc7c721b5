"""Crash-safe file publishing: write a temp file, fsync it, rename it, fsync the directory.

This is PostgreSQL's `durable_rename` recipe. A reader never sees a partial file
because temp files start with a dot and end in `.tmp`, which no query glob matches.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Callable
from pathlib import Path


def claim(path: Path) -> int | None:
    """Take the exclusive flock of a file nobody holds; returns the locked fd, or None.

    Files with an owner (a WAL segment's writer, a backup's temp copy) are flocked for
    as long as the owner lives, so a free lock means the owner is gone. After locking,
    the path must still name the same file: one the owner finished with (folded,
    published) and unlinked between our open and our lock is not taken.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.stat(path).st_ino != os.fstat(fd).st_ino:
            raise FileNotFoundError(path)
    except (BlockingIOError, FileNotFoundError):
        os.close(fd)
        return None
    return fd


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (new, renamed or removed files) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: Path) -> None:
    """Create `path` and any missing parents, making each new entry durable."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue  # another process made it first
        fsync_dir(d.parent)


def temp_path_for(final: Path) -> Path:
    """A hidden temp path next to `final` that no `*.parquet`/`*.json` glob matches."""
    return final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp")


def publish(tmp: Path, final: Path, *, replace: bool) -> None:
    """Durably move the fsynced `tmp` to `final`.

    With replace=False the publish refuses to overwrite (FileExistsError), so two
    writers that pick the same name can never clobber each other.
    """
    if replace:
        os.replace(tmp, final)
    else:
        os.link(tmp, final)  # atomic, and fails if `final` exists
        os.unlink(tmp)
    fsync_dir(final.parent)


def write_durably(final: Path, write: Callable[[Path], None], *, replace: bool = True) -> None:
    """Call `write(tmp)` to fill a temp file, fsync it and publish it as `final`."""
    ensure_dir(final.parent)
    tmp = temp_path_for(final)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        publish(tmp, final, replace=replace)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_durably(final: Path, data: bytes) -> None:
    """Atomically replace `final` with `data`."""

    def fill(tmp: Path) -> None:
        tmp.write_bytes(data)

    write_durably(final, fill, replace=True)
