"""Directory listings read again only when a directory has changed.

Listing every partition directory of a table costs a few system calls each (open,
getdents, close): over 90 days of partitions that is most of a query that then reads a
single file (a session lookup). A directory's listing changes only when an entry is
added, removed or renamed in it, and each of those sets the directory's mtime; so a
listing is kept with the directory's (device, inode, mtime) and reused while they stay
the same: a `stat` instead of a read.

File system timestamps have a granularity (a clock tick; two seconds on FAT), so two
changes within one tick leave the same mtime. A listing is therefore kept only when the
directory's mtime was more than QUIET_NS older than the moment it was read: any later
change gets a later mtime. (Git's rule for "racily clean" index entries.) Directories
written to right now (today's partitions) are simply read every time.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from typing import Any

QUIET_NS = 3_000_000_000
_LIMIT = 200_000  # directories remembered (per process)

# (device, inode, mtime, subdirectories, other names, memo of what was derived from them)
Entry = tuple[int, int, int, tuple[str, ...], tuple[str, ...], dict[Any, Any]]
_CACHE: dict[str, Entry] = {}


def entries(path: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(subdirectory names, other names) in `path`, sorted; None when it is not a
    directory we can read (gone, not a directory, no permission).

    Symbolic links are listed with the other names, never as directories.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        return None
    ident = (st.st_dev, st.st_ino, st.st_mtime_ns)
    hit = _CACHE.get(path)
    if hit is not None and hit[:3] == ident:
        return hit[3], hit[4]
    started = time.time_ns()
    dirs: list[str] = []
    others: list[str] = []
    try:
        with os.scandir(path) as found:
            for entry in found:
                (dirs if entry.is_dir(follow_symlinks=False) else others).append(entry.name)
    except OSError:
        return None
    out = (tuple(sorted(dirs)), tuple(sorted(others)))
    if st.st_mtime_ns < started - QUIET_NS:
        if len(_CACHE) >= _LIMIT:
            _CACHE.clear()
        _CACHE[path] = (*ident, *out, {})
    else:
        _CACHE.pop(path, None)
    return out


def memo(path: str) -> dict[Any, Any] | None:
    """A dict kept with the listing of `path` for as long as that listing is reused (None
    when it is not kept): what callers derive from the directory's files (footer
    statistics) lives as long as the files stay the same. Callers key it by the names
    they derived it from, since the listing may have been renewed in between."""
    hit = _CACHE.get(path)
    return None if hit is None else hit[5]


def walk(top: str) -> Iterator[tuple[str, list[str], list[str]]]:
    """Like `os.walk(top)`, top-down: (directory, subdirectory names, other names); the
    caller may prune the walk by editing the subdirectory list in place."""
    stack = [top]
    while stack:
        path = stack.pop()
        found = entries(path)
        if found is None:
            continue
        dirnames, filenames = list(found[0]), list(found[1])
        yield path, dirnames, filenames
        stack.extend(os.path.join(path, name) for name in reversed(dirnames))
