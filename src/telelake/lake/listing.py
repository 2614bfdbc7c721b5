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

`tree` goes one step further for a walk of every directory of a table: while each
directory of the last walk is unchanged, that walk's result is reused, so a query that
needs every partition (a lookup by session, a full scan) costs one `stat` per directory
before it looks at files.
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
    found = _entry(path)
    return None if found is None else (found[3], found[4])


def _entry(path: str) -> tuple[int, int, int, tuple[str, ...], tuple[str, ...], bool] | None:
    """(device, inode, mtime, subdirectories, other names, kept) of `path`."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        return None
    ident = (st.st_dev, st.st_ino, st.st_mtime_ns)
    hit = _CACHE.get(path)
    if hit is not None and hit[:3] == ident:
        return (*ident, hit[3], hit[4], True)
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
    kept = st.st_mtime_ns < started - QUIET_NS
    if kept:
        if len(_CACHE) >= _LIMIT:
            _CACHE.clear()
        _CACHE[path] = (*ident, *out, {})
    else:
        _CACHE.pop(path, None)
    return (*ident, *out, kept)


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


# A whole walk, kept while every directory in it is unchanged: (directory, identity) of
# each one, and what the walk gave.
_Tree = tuple[
    tuple[tuple[str, tuple[int, int, int]], ...],
    tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...],
]
_TREES: dict[tuple[str, tuple[str, ...]], _Tree] = {}


def tree(top: str, hidden: tuple[str, ...] = (".", "_")) -> list[tuple[str, list[str], list[str]]]:
    """Every (directory, subdirectory names, other names) of `walk(top)`, leaving out the
    subdirectories whose name starts with one of `hidden` (and all below them).

    When every directory of the last such walk is still the same (a `stat` each) and all
    of their listings were kept, that walk's result is returned again: no listing and
    no per-directory work but the `stat`.
    """
    key = (top, hidden)
    hit = _TREES.get(key)
    if hit is not None and _unchanged(hit[0]):
        return [(path, list(dirs), list(others)) for path, dirs, others in hit[1]]
    records: list[tuple[str, tuple[int, int, int]]] = []
    result: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []
    kept_all = True
    stack = [top]
    while stack:
        path = stack.pop()
        found = _entry(path)
        if found is None:
            kept_all = False  # gone or unreadable: nothing to recognise it by next time
            continue
        dirs = tuple(d for d in found[3] if not d.startswith(hidden))
        records.append((path, found[:3]))
        result.append((path, dirs, found[4]))
        kept_all = kept_all and found[5]
        stack.extend(os.path.join(path, name) for name in reversed(dirs))
    if kept_all:
        if len(_TREES) >= 1000:
            _TREES.clear()
        _TREES[key] = (tuple(records), tuple(result))
    else:
        _TREES.pop(key, None)
    return [(path, list(dirs), list(others)) for path, dirs, others in result]


def _unchanged(records: tuple[tuple[str, tuple[int, int, int]], ...]) -> bool:
    for path, ident in records:
        try:
            st = os.stat(path)
        except OSError:
            return False
        if (st.st_dev, st.st_ino, st.st_mtime_ns) != ident:
            return False
    return True
