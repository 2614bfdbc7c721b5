"""Disk full: a write that hits ENOSPC or EFBIG raises StorageFullError, nothing
acknowledged before it is lost, and writes work again once there is room."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

SCHEMA = """
name = "full"
version = "1.0.0"
[tables.t]
time = "ts"
key = ["seq"]
columns = [
  { name = "ts", type = "timestamp", nullable = false },
  { name = "seq", type = "int64", nullable = false },
  { name = "payload", type = "string", nullable = false },
]
"""

CHILD = textwrap.dedent(
    """
    import datetime as dt, json, resource, sys
    import telelake
    root, schema, limit, log = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    if limit:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    store = telelake.open(root, schema, fold_bytes=1 << 30)
    acked, refused = [], 0
    base = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    seq = 0
    for _ in range(400):
        rows = [{"ts": base, "seq": seq + i, "payload": "x" * 400} for i in range(5)]
        try:
            store.write("t", rows)
        except telelake.StorageFullError:
            refused += 1
            if refused >= 5:
                break
            continue
        acked.extend(r["seq"] for r in rows)
        seq += 5
    print(json.dumps({"acked": acked, "refused": refused}), flush=True)
    import os; os._exit(0)  # no close: the rows must be safe in the WAL already
    """
)


def run_child(root: Path, schema: Path, limit: int) -> dict[str, list[int] | int]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), str(schema), str(limit), ""],
        capture_output=True, text=True, timeout=180, check=True,
    )  # fmt: skip
    result: dict[str, list[int] | int] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def stored_seqs(root: Path, schema: Path) -> list[int]:
    import telelake

    with telelake.open(root, schema) as store:
        return [r[0] for r in store.sql("SELECT seq FROM t ORDER BY seq").rows()]


@pytest.fixture
def schema(tmp_path: Path) -> Path:
    path = tmp_path / "full.toml"
    path.write_text(SCHEMA)
    return path


def test_file_size_limit_raises_storage_full_and_loses_nothing(
    tmp_path: Path, schema: Path
) -> None:
    root = tmp_path / "store"
    result = run_child(root, schema, limit=64 * 1024)
    acked = result["acked"]
    assert isinstance(acked, list) and acked
    assert result["refused"] == 5  # the limit was hit, and reported as StorageFullError
    # The limit is per file: each refused write abandons its segment and the next write
    # starts a new one, so writes go on without any repair.
    got = stored_seqs(root, schema)
    assert sorted(set(got)) == got  # nothing doubled
    assert set(acked) <= set(got)  # nothing acknowledged lost
    # Unacknowledged rows may be present at most once (a write torn by the limit).


def _mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True)  # fmt: skip
    return done.returncode == 0


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs (skipped without root), unmounted afterwards."""
    mnt = tmp_path / "small"
    if not _mount_tmpfs(mnt, "3m"):
        if os.environ.get("CI") == "true" and os.geteuid() == 0:
            pytest.fail("could not mount a small tmpfs as root")
        pytest.skip("needs root to mount a small tmpfs")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_filesystem_then_space_freed(small_fs: Path, schema: Path) -> None:
    mnt = small_fs
    root = mnt / "store"
    import telelake

    telelake.open(root, schema).close()  # create the store while there is room
    ballast = mnt / "ballast"
    with ballast.open("wb") as fh:  # leave about 200 KiB free
        free = shutil.disk_usage(mnt).free - 200 * 1024
        fh.write(b"\0" * max(0, free))
    result = run_child(root, schema, limit=0)
    acked = result["acked"]
    assert isinstance(acked, list) and acked and result["refused"] == 5
    ballast.unlink()  # space is freed
    got = stored_seqs(root, schema)  # opening folds the dead writer's segments
    assert set(acked) <= set(got) and sorted(set(got)) == got
    import datetime as dt

    with telelake.open(root, schema) as store:
        base = dt.datetime(2026, 6, 2, tzinfo=dt.UTC)
        store.write("t", [{"ts": base, "seq": 10**9, "payload": "after"}])
        assert store.sql("SELECT COUNT(*) FROM t WHERE seq = 1000000000").scalar() == 1
        assert store.check().ok


def _fill_up(path: Path) -> None:
    """Write `path` until the filesystem is 100% full."""
    with path.open("wb", buffering=0) as fh:
        chunk = b"\0" * 65536
        while chunk:
            try:
                fh.write(chunk)
            except OSError:
                chunk = chunk[: len(chunk) // 2]  # the last few blocks, smaller writes


def test_a_full_disk_still_reads_and_close_says_storage_full(small_fs: Path, schema: Path) -> None:
    """Issue 19.20: reading needs no free space (`telelake sql`, `telelake check`), and
    close() on a full disk raises StorageFullError (it raised a bare OSError), keeping the
    rows it could not fold in the WAL for the next open."""
    mnt = small_fs
    import datetime as dt

    import telelake

    root = mnt / "store"
    base = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    store = telelake.open(root, schema, fold_bytes=1 << 30)
    store.write("t", [{"ts": base, "seq": i, "payload": "folded"} for i in range(10)])
    store.fold()
    store.write("t", [{"ts": base, "seq": 10 + i, "payload": "wal"} for i in range(10)])
    _fill_up(mnt / "ballast")
    assert shutil.disk_usage(mnt).free == 0
    exe = str(Path(sys.executable).parent / "telelake")
    common = ["--root", str(root), "--schema", str(schema)]
    sql = subprocess.run(
        [exe, "sql", *common, "SELECT count(*) AS n FROM t", "--format", "csv"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert sql.returncode == 0, sql.stderr
    assert sql.stdout.split() == ["n", "20"]
    check = subprocess.run([exe, "check", *common], capture_output=True, text=True,
                           timeout=120)  # fmt: skip
    assert check.returncode == 0, check.stderr
    with pytest.raises(telelake.StorageFullError, match="safe in the WAL"):
        store.close()
    (mnt / "ballast").unlink()
    with telelake.open(root, schema) as again:
        got = again.sql("SELECT seq FROM t ORDER BY seq").rows()
        assert [r[0] for r in got] == list(range(20))


RUNS_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import telelake
    root, limit = sys.argv[1], int(sys.argv[2])
    store = telelake.open(root, "agent_runs")
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    client = store.run_client()
    started, ended, error = [], [], None
    for i in range(2000):
        run_id = f"r{i:04d}"
        try:
            run = client.start_run("indexer", run_id=run_id)
            started.append(run_id)
            run.end("success")
        except telelake.TelelakeError as exc:
            error = str(exc)
            break
        ended.append(run_id)
    print(json.dumps({"started": started, "ended": ended, "error": error}), flush=True)
    import os; os._exit(0)
    """
)


def test_an_agent_run_refused_on_a_full_disk_does_not_come_back(tmp_path: Path) -> None:
    """The database refuses a run's start or end (its file size limit) after the NDJSON
    line was appended: the error says nothing was written, so `recover`, which rebuilds
    the database from the log, must not bring the refused write back."""
    import telelake

    root = tmp_path / "runs"
    telelake.open(root, "agent_runs").close()
    out = subprocess.run(
        [sys.executable, "-c", RUNS_CHILD, str(root), str(160 * 1024)],
        capture_output=True, text=True, timeout=180, check=True,
    )  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    error = result["error"]
    assert result["ended"] and error is not None and "nothing was written" in error, result
    with telelake.open(root, "agent_runs") as store:
        store.recover()
        status = dict(store.sql("SELECT run_id, status FROM agent_runs").rows())
    # Exactly what was acknowledged: ended runs ended, a started one still running.
    expected = {r: "success" for r in result["ended"]}
    expected.update({r: "running" for r in result["started"] if r not in expected})
    assert status == expected
