"""Crash-safe file publishing: write a temp file, fsync it, rename it, fsync the directory.

This is PostgreSQL's `durable_rename` recipe. A reader never sees a partial file
because temp files start with a dot and end in `.tmp`, which no query glob matches.

Also the one place that says which mode a store's directories and files get: 0700 and
0600 whatever the umask (telemetry is private to its owner), or 0750 and 0640 in a store
whose config.json says `"group_access": true` (`set_group_access`).
"""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

PRIVATE = (0o700, 0o600)  # (directories, files)
GROUP = (0o750, 0o640)
_group_roots: set[str] = set()  # stores (absolute roots) that give their group access


def set_group_access(root: Path, on: bool) -> None:
    """Say whether the store at `root` gives its group read access (config.json)."""
    key = os.path.join(os.path.abspath(root), "")
    if on:
        _group_roots.add(key)
    else:
        _group_roots.discard(key)


def modes(path: Path) -> tuple[int, int]:
    """The (directory, file) modes of what telelake creates at `path`."""
    if _group_roots:
        absolute = os.path.abspath(path)
        if any(absolute.startswith(root) for root in _group_roots):
            return GROUP
    return PRIVATE


def restrict(path: Path) -> None:
    """Give a file telelake just created through a library (SQLite, Arrow), which
    follows the umask, its store's file mode."""
    os.chmod(path, modes(path)[1])


def open_file(path: Path, flags: int) -> int:
    """`os.open(path, flags | O_CREAT)`; a file it creates gets its store's file mode
    (a group mode is set again after the umask, which can narrow it); a file that
    existed keeps its mode."""
    mode = modes(path)[1]
    while True:
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            if flags & os.O_EXCL:
                raise
            try:
                return os.open(path, flags & ~os.O_CREAT)
            except FileNotFoundError:
                continue  # removed meanwhile: create it after all
        if mode != PRIVATE[1]:
            os.fchmod(fd, mode)
        return fd


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
        mode = modes(d)[0]
        try:
            d.mkdir(mode)
        except FileExistsError:
            continue  # another process made it first
        if mode != PRIVATE[0]:
            os.chmod(d, mode)  # the umask may have taken the group's bits
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


def owned_temp(final: Path) -> tuple[Path, int]:
    """A new temp file next to `final` and an fd holding its exclusive flock: while the
    writer lives, nobody takes the file for a dead writer's (`remove_orphan_temps`)."""
    tmp = temp_path_for(final)
    fd = open_file(tmp, os.O_RDWR | os.O_EXCL)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a file of our own: never held by anyone else yet
    return tmp, fd


def write_durably(final: Path, write: Callable[[Path], None], *, replace: bool = True) -> None:
    """Call `write(tmp)` to fill a temp file, fsync it and publish it as `final`."""
    ensure_dir(final.parent)
    tmp, fd = owned_temp(final)
    try:
        # `write` rewrites the same file (truncating it): the lock held by `fd` and the
        # store's mode, both set when owned_temp created it, stay.
        write(tmp)
        os.fsync(fd)
        publish(tmp, final, replace=replace)
    finally:
        os.close(fd)
        if tmp.exists():
            tmp.unlink()


# A temp file younger than this may be one that a writer has just created and not yet
# locked (or one of a telelake version that did not lock them).
ORPHAN_TEMP_AGE = 60.0


def is_temp(name: str) -> bool:
    """True for the name of a temp file (`temp_path_for`)."""
    return name.startswith(".") and name.endswith(".tmp")


def orphan_temps(base: Path, min_age: float = ORPHAN_TEMP_AGE) -> Iterator[tuple[Path, int]]:
    """Temp files under `base` whose writer is gone (nobody holds their lock, older than
    `min_age` seconds), each yielded with its lock held (the caller closes the fd)."""
    now = time.time()
    for dirpath, _, names in os.walk(base):
        for name in names:
            if not is_temp(name):
                continue
            path = Path(dirpath) / name
            try:
                if now - path.stat().st_mtime < min_age:
                    continue
            except FileNotFoundError:
                continue
            fd = claim(path)
            if fd is not None:
                yield path, fd


def remove_orphan_temps(base: Path, min_age: float = ORPHAN_TEMP_AGE) -> tuple[int, int]:
    """Delete the temp files under `base` that killed writers left behind (see
    `orphan_temps`); returns how many and their bytes."""
    count = size = 0
    for path, fd in orphan_temps(base, min_age):
        try:
            size += os.fstat(fd).st_size
            path.unlink(missing_ok=True)
            count += 1
        finally:
            os.close(fd)
    return count, size


def write_bytes_durably(final: Path, data: bytes) -> None:
    """Atomically replace `final` with `data`."""

    def fill(tmp: Path) -> None:
        tmp.write_bytes(data)

    write_durably(final, fill, replace=True)
