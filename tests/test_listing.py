"""Cached directory listings and trees (lake/listing.py) always equal a fresh `os.walk`.

A listing is reused only while the directory's (device, inode, mtime) stay the same and
its mtime was already QUIET_NS old when it was read. The property test changes a tree at
random, sometimes ages it (as hours passing would: every directory's mtime set further
back each time), and compares every walk with `os.walk`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telelake.lake import listing

_ages = itertools.count(1)


def age(root: Path) -> None:
    """Set every directory's mtime further in the past than ever before."""
    when = time.time() - 3600 - next(_ages)
    for dirpath, _, _ in os.walk(root):
        os.utime(dirpath, (when, when))


def fresh(root: Path, hidden: tuple[str, ...] = ()) -> list[tuple[str, list[str], list[str]]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not hidden or not d.startswith(hidden))
        out.append((dirpath, list(dirnames), sorted(filenames)))
    return out


ops = st.lists(
    st.tuples(
        st.sampled_from(["mkdir", "touch", "unlink", "rename", "rmdir", "age"]),
        st.sampled_from(["a", "b", "a/c", "b/d", "_hidden", "a/.tmp"]),
        st.sampled_from(["x.parquet", "y.parquet", ".tmp"]),
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=ops)
def test_a_walk_always_equals_a_fresh_os_walk(
    tmp_path: Path, steps: list[tuple[str, str, str]]
) -> None:
    root = tmp_path / f"t{next(_ages)}"
    root.mkdir()
    age(root)
    for op, where, name in steps:
        directory = root / where
        if op == "mkdir":
            # a/.tmp may be a file already (touched), or a/ a file: nothing to make then.
            with contextlib.suppress(FileExistsError, NotADirectoryError):
                directory.mkdir(parents=True, exist_ok=True)
        elif op == "touch" and directory.is_dir() and not (directory / name).is_dir():
            (directory / name).touch()
        elif op == "unlink" and (directory / name).exists():
            (directory / name).unlink()
        elif op == "rename" and (directory / name).exists():
            (directory / name).rename(directory / f"renamed-{next(_ages)}-{name}")
        elif op == "rmdir" and directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
        elif op == "age":
            age(root)
        assert list(listing.walk(str(root))) == fresh(root)
        # A whole tree, reused while no directory of it changes; hidden ones left out.
        assert listing.tree(str(root)) == fresh(root, (".", "_"))
        assert listing.tree(str(root)) == fresh(root, (".", "_"))


def test_only_quiet_directories_are_remembered(tmp_path: Path) -> None:
    busy, quiet = tmp_path / "busy", tmp_path / "quiet"
    busy.mkdir()
    quiet.mkdir()
    age(quiet)
    assert listing.entries(str(busy)) == ((), ())
    assert listing.memo(str(busy)) is None  # changed just now: read again next time
    assert listing.entries(str(quiet)) == ((), ())
    memo = listing.memo(str(quiet))
    assert memo == {}
    memo["derived"] = 1
    assert listing.memo(str(quiet)) == {"derived": 1}
    (quiet / "f.parquet").touch()  # the directory's mtime moves: listed again, memo gone
    assert listing.entries(str(quiet)) == ((), ("f.parquet",))
    assert listing.memo(str(quiet)) is None
    assert listing.entries(str(tmp_path / "missing")) is None
    assert listing.entries(str(quiet / "f.parquet")) is None


def test_a_change_within_one_timestamp_tick_is_never_missed(tmp_path: Path) -> None:
    """On a file system with coarse timestamps, a file added in the same tick as the
    listing leaves the directory's mtime as it was (simulated with utime)."""
    directory = tmp_path / "coarse"
    directory.mkdir()
    before = directory.stat()
    assert listing.entries(str(directory)) == ((), ())
    assert listing.tree(str(directory)) == [(str(directory), [], [])]
    (directory / "late.parquet").touch()
    os.utime(directory, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert listing.entries(str(directory)) == ((), ("late.parquet",))
    assert listing.tree(str(directory)) == [(str(directory), [], ["late.parquet"])]
