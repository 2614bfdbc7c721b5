"""Fast, vectorised, realistic-ish data for the process_triage tables.

Everything is built with numpy and Arrow compute kernels (no per-row Python), straight
into the exact Arrow schema telelake declares, so validation casts are no-ops and the
peers get the very same arrays.

Shape of the data: one host, one UTC day (2026-01-15). A pt session scans a few hundred
processes; `proc_samples` holds `SAMPLES_PER_SESSION` samples of each, in scan order
(session, sample_seq, ascending pid, as /proc lists them). The triage tables hold one row
per (session_id, pid) in each of proc_features, proc_inference and outcomes, so the
named queries' joins match every row one to one. Nullable columns are ~10 % null,
non-null columns never are, enum columns only hold their declared values.
"""

from __future__ import annotations

import datetime as dt
import gc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from telelake.schema.model import Table

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

NULL_FRACTION = 0.10
SAMPLES_PER_SESSION = 3
SAMPLE_INTERVAL_US = 2_000_000
DAY = dt.datetime(2026, 1, 15, tzinfo=dt.UTC)
DAY_START_US = int(DAY.timestamp()) * 1_000_000
DAY_S = 86_400
BOOT_ID = "8d3f0c8e-6f0b-4c5e-9a1e-2b7f3c9d4e11"
UPTIME_S = 6 * DAY_S  # the host booted six days before the benchmark day
CLK_TCK = 100
MEM_TOTAL = 32 * 1024**3
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"

# comm, exe, argument variants, command category, process type, weight
_COMMANDS: tuple[tuple[str, str, tuple[str, ...], str, str, float], ...] = (
    (
        "systemd",
        "/usr/lib/systemd/systemd",
        ("--user", "--system --deserialize 31"),
        "system",
        "daemon",
        2,
    ),
    ("systemd-journal", "/usr/lib/systemd/systemd-journald", ("",), "system", "daemon", 1),
    ("NetworkManager", "/usr/sbin/NetworkManager", ("--no-daemon",), "system", "daemon", 1),
    ("cron", "/usr/sbin/cron", ("-f", "-f -P"), "system", "daemon", 1),
    ("sshd", "/usr/sbin/sshd", ("-D", ": dev@pts/0", ": dev [priv]"), "system", "daemon", 3),
    (
        "dbus-daemon",
        "/usr/bin/dbus-daemon",
        ("--session --address=systemd:",),
        "system",
        "daemon",
        2,
    ),
    ("pipewire", "/usr/bin/pipewire", ("",), "desktop", "gui", 1),
    ("gnome-shell", "/usr/bin/gnome-shell", ("",), "desktop", "gui", 1),
    (
        "bash",
        "/usr/bin/bash",
        ("", "-l", "--login", "-c 'make test'", "./run.sh"),
        "shell",
        "shell",
        12,
    ),
    ("zsh", "/usr/bin/zsh", ("", "-l", "-i"), "shell", "shell", 5),
    (
        "tmux: server",
        "/usr/bin/tmux",
        ("new -s work", "new-session -d -s agents"),
        "shell",
        "interactive",
        2,
    ),
    (
        "vim",
        "/usr/bin/vim",
        ("src/main.rs", "README.md", "-p a.py b.py"),
        "editor",
        "interactive",
        3,
    ),
    (
        "code",
        "/usr/share/code/code",
        ("--type=renderer", "--type=utility", "--type=zygote"),
        "editor",
        "gui",
        8,
    ),
    (
        "python3",
        "/usr/bin/python3",
        (
            "-m http.server 8080",
            "manage.py runserver 0.0.0.0:8000",
            "train.py --epochs 50 --lr 3e-4",
            "-m ipykernel_launcher -f /run/user/1000/jupyter/kernel.json",
            "scripts/etl.py --date 2026-01-15",
            "-c 'import time; time.sleep(1e9)'",
        ),
        "python",
        "script",
        14,
    ),
    (
        "pytest",
        "/home/dev/proj/.venv/bin/python",
        ("-m pytest tests/ -x", "-m pytest -n 4 -k slow", "-m pytest tests/unit --lf"),
        "test_runner",
        "test",
        6,
    ),
    (
        "node",
        "/usr/bin/node",
        (
            "node_modules/.bin/vite --port 5173",
            "node_modules/.bin/next dev",
            "server.js",
            "node_modules/.bin/jest --watch",
            "node_modules/typescript/lib/tsserver.js --useInferredProjectPerProjectRoot",
        ),
        "dev_server",
        "dev_server",
        10,
    ),
    ("npm", "/usr/bin/npm", ("run dev", "run build", "install", "test"), "build_tool", "build", 3),
    (
        "cargo",
        "/home/dev/.cargo/bin/cargo",
        ("build --release", "test --workspace", "watch -x check"),
        "build_tool",
        "build",
        3,
    ),
    (
        "rust-analyzer",
        "/home/dev/.cargo/bin/rust-analyzer",
        ("",),
        "language_server",
        "dev_server",
        2,
    ),
    (
        "go",
        "/usr/local/go/bin/go",
        ("test ./...", "run ./cmd/server", "build ./..."),
        "build_tool",
        "build",
        2,
    ),
    (
        "gopls",
        "/home/dev/go/bin/gopls",
        ("serve", "-remote=auto"),
        "language_server",
        "dev_server",
        1,
    ),
    ("make", "/usr/bin/make", ("-j4 test", "build", "-C docs html"), "build_tool", "build", 2),
    (
        "cc1",
        "/usr/lib/gcc/x86_64-linux-gnu/12/cc1",
        ("-quiet src/lib.c -O2",),
        "build_tool",
        "build",
        2,
    ),
    (
        "java",
        "/usr/lib/jvm/java-17-openjdk-amd64/bin/java",
        (
            "-jar app.jar",
            "-Xmx2g -cp gradle-wrapper.jar org.gradle.wrapper.GradleWrapperMain build",
        ),
        "jvm",
        "dev_server",
        3,
    ),
    (
        "postgres",
        "/usr/lib/postgresql/16/bin/postgres",
        ("-D /var/lib/postgresql/16/main", ": checkpointer", ": autovacuum launcher"),
        "database",
        "daemon",
        4,
    ),
    ("redis-server", "/usr/bin/redis-server", ("127.0.0.1:6379",), "database", "daemon", 1),
    (
        "dockerd",
        "/usr/bin/dockerd",
        ("-H fd:// --containerd=/run/containerd/containerd.sock",),
        "container",
        "daemon",
        1,
    ),
    (
        "containerd-shim",
        "/usr/bin/containerd-shim-runc-v2",
        ("-namespace moby -address /run/containerd/containerd.sock",),
        "container",
        "daemon",
        2,
    ),
    ("nginx", "/usr/sbin/nginx", ("-g daemon off;", ": worker process"), "web_server", "daemon", 2),
    (
        "chrome",
        "/opt/google/chrome/chrome",
        (
            "--type=renderer --lang=en-US",
            "--type=gpu-process",
            "--type=utility --utility-sub-type=network.mojom.NetworkService",
        ),
        "browser",
        "gui",
        10,
    ),
    (
        "claude",
        "/home/dev/.local/bin/claude",
        ("", "--resume", "-p 'fix the tests'"),
        "agent",
        "agent",
        4,
    ),
    ("codex", "/home/dev/.local/bin/codex", ("exec 'refactor module'", ""), "agent", "agent", 2),
    ("ssh-agent", "/usr/bin/ssh-agent", ("-s",), "system", "daemon", 1),
    ("sleep", "/usr/bin/sleep", ("infinity", "3600", "30"), "utility", "script", 2),
    (
        "tail",
        "/usr/bin/tail",
        ("-f /var/log/syslog", "-F logs/app.log"),
        "utility",
        "interactive",
        1,
    ),
)
_CMD_WEIGHTS = np.array([c[5] for c in _COMMANDS], dtype=np.float64) / sum(c[5] for c in _COMMANDS)
_CWDS = (
    "/",
    "/root",
    "/var/lib/postgresql",
    "/home/dev",
    "/home/dev/proj",
    "/home/dev/proj/web",
    "/home/dev/proj/api",
    "/home/dev/src/telelake",
    "/home/dev/src/pt",
    "/tmp",
    "/srv/app",
    "/home/dev/notebooks",
    "/home/dev/src/agents/worktree-1",
    "/home/dev/src/agents/worktree-2",
)
_TTYS = (*(f"pts/{i}" for i in range(24)), "tty1", "tty2")
_WCHANS = (
    "do_epoll_wait",
    "hrtimer_nanosleep",
    "futex_wait_queue",
    "pipe_read",
    "do_select",
    "do_sys_poll",
    "unix_stream_read_generic",
    "wait_woken",
    "do_wait",
    "0",
)
_UNITS = (
    "user@1000.service",
    "session-3.scope",
    "session-7.scope",
    "sshd.service",
    "docker.service",
    "postgresql@16-main.service",
    "cron.service",
    "NetworkManager.service",
    "nginx.service",
    "redis-server.service",
    "app.slice",
    "init.scope",
)
_STATES = ("S", "R", "D", "Z", "T")
_STATE_P = (0.86, 0.08, 0.03, 0.015, 0.015)
_UIDS = np.array([0, 1000, 1000, 1000, 33, 101, 999, 112, 65534])
_UID_P = np.array([0.22, 0.5, 0.1, 0.05, 0.03, 0.03, 0.03, 0.02, 0.02])
_CONTAINERS = tuple("".join(_B36[(i * 7 + j * 13) % 16] for j in range(64)) for i in range(1, 21))
_NS = np.array([4026531836, 4026531836, 4026531836, 4026532281, 4026532447, 4026532561])
_TAGS = (
    "orphan",
    "stuck",
    "idle_io",
    "high_mem",
    "zombie",
    "no_tty",
    "old",
    "spinning",
    "test_runner",
    "dev_server",
    "listener",
    "protected",
    "children_active",
)
_GATES = ("protected_pattern", "recent_activity", "has_listener", "root_owned", "rate_limit")
_AGE_BUCKETS = ("1h", "6h", "1d", "3d", "7d", "14d", "30d")
_AGE_EDGES = np.array([3600, 6 * 3600, DAY_S, 3 * DAY_S, 7 * DAY_S, 14 * DAY_S])
_MEM_BUCKETS = ("tiny", "small", "medium", "large", "huge")
_MEM_EDGES_MB = np.array([16, 128, 1024, 4096])


# -- small helpers -------------------------------------------------------------------------


def _pool(values: Sequence[str], idx: IntArray, null: BoolArray | None = None) -> pa.Array:
    """`values[idx]` as an Arrow string array (nulls where `null`), by C++ take."""
    indices = pa.array(idx, type=pa.int32(), mask=null)
    return pa.array(values, type=pa.string()).take(indices)


def _mask(rng: np.random.Generator, n: int, frac: float = NULL_FRACTION) -> BoolArray:
    return rng.random(n) < frac


def _arr(values: npt.NDArray[Any], type_: pa.DataType, null: BoolArray | None = None) -> pa.Array:
    return pa.array(values, type=type_, mask=null)


def _with_nulls(arr: pa.Array, null: BoolArray) -> pa.Array:
    return pc.if_else(pa.array(null), pa.scalar(None, type=arr.type), arr)


def _join(*parts: pa.Array | str, sep: str = "") -> pa.Array:
    return pc.binary_join_element_wise(*parts, sep)


def _text(values: pa.Array | npt.NDArray[Any]) -> pa.Array:
    return pc.cast(values if isinstance(values, pa.Array) else pa.array(values), pa.string())


def hex_strings(rng: np.random.Generator, n: int, nbytes: int = 32) -> pa.Array:
    """`n` random lowercase hex strings of `2 * nbytes` characters (digest-like)."""
    raw = rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
    lut = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    out = np.empty((n, nbytes * 2), dtype=np.uint8)
    out[:, 0::2] = lut[raw >> 4]
    out[:, 1::2] = lut[raw & 15]
    offsets = np.arange(n + 1, dtype=np.int32) * (nbytes * 2)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(out))


def _ts(us: IntArray, null: BoolArray | None = None) -> pa.Array:
    return pa.array(us, type=pa.timestamp("us", tz="UTC"), mask=null)


def _lognormal_int(rng: np.random.Generator, median: float, sigma: float, n: int) -> IntArray:
    return np.rint(rng.lognormal(np.log(median), sigma, n)).astype(np.int64)


def _build(table: Table, columns: dict[str, pa.Array]) -> pa.Table:
    """Assemble `columns` in the table's declared order and exact schema."""
    missing = set(table.column_names) - set(columns)
    extra = set(columns) - set(table.column_names)
    assert not missing and not extra, (missing, extra)
    return pa.Table.from_arrays([columns[n] for n in table.column_names], schema=table.arrow_schema)


# -- sessions and processes ------------------------------------------------------------------


@dataclass(frozen=True)
class Sessions:
    """pt sessions: id, start time (µs since epoch) and how many processes each scans."""

    ids: list[str]
    start_us: IntArray
    nproc: IntArray


def plan_sessions(
    rng: np.random.Generator, n_rows: int, rows_per_proc: int, lo: int = 250, hi: int = 750
) -> Sessions:
    """Enough sessions (each scanning lo..hi processes) for `n_rows` rows; the last is cut."""
    mean = (lo + hi) / 2 * rows_per_proc
    count = int(n_rows / mean * 1.2) + 4
    nproc = rng.integers(lo, hi + 1, count).astype(np.int64)
    cum = np.cumsum(nproc * rows_per_proc)
    count = int(np.searchsorted(cum, n_rows) + 1)
    nproc = nproc[:count].copy()
    excess = int(cum[count - 1] - n_rows)
    nproc[-1] -= excess // rows_per_proc  # the last session is cut short
    secs = np.sort(rng.integers(0, DAY_S - 900, count))
    start_us = DAY_START_US + secs * 1_000_000 + rng.integers(0, 1_000_000, count)
    ids = []
    for i, s in enumerate(secs.tolist()):
        tag = (i * 1_000_003 + 7) % 36**4  # distinct for fewer than 36**4 sessions
        suffix = "".join(_B36[(tag // 36**k) % 36] for k in range(4))
        ids.append(f"pt-{DAY:%Y%m%d}-{s // 3600:02d}{s // 60 % 60:02d}{s % 60:02d}-{suffix}")
    return Sessions(ids, start_us, nproc)


@dataclass(frozen=True)
class Processes:
    """One row per (session, process): identity and the attributes fixed for its life."""

    n: int
    session: IntArray  # index into Sessions
    rank: IntArray  # position in the session's scan (ascending pid)
    pid: IntArray
    ppid: IntArray
    uid: IntArray
    cmd: IntArray  # index into _COMMANDS
    cmdline: pa.Array  # never null here; callers add nulls
    cmdline_hash: pa.Array
    age_s: IntArray  # age at the session's start
    start_time_boot: IntArray
    start_id: pa.Array


def processes(rng: np.random.Generator, sessions: Sessions, first: int, last: int) -> Processes:
    """The processes scanned by sessions[first:last]."""
    nproc = sessions.nproc[first:last]
    n = int(nproc.sum())
    session = np.repeat(np.arange(first, last, dtype=np.int64), nproc)
    starts = np.repeat(np.cumsum(nproc) - nproc, nproc)
    rank = np.arange(n, dtype=np.int64) - starts
    # pids ascend within a scan: dense for early system processes, sparse after.
    gaps = np.where(rank < 120, rng.geometric(0.6, n), rng.geometric(1 / 1500, n)).astype(np.int64)
    gaps[rank == 0] = 1
    csum = np.cumsum(gaps)
    pid = csum - np.repeat(csum[starts[rank == 0]] - 1, nproc)
    parent_rank = (rng.random(n) * rank).astype(np.int64)
    ppid = np.where(rng.random(n) < 0.25, 1, pid[starts + parent_rank])
    ppid[rank == 0] = 0
    uid = _UIDS[rng.choice(len(_UIDS), n, p=_UID_P)]
    uid[rank < 60] = 0
    cmd = rng.choice(len(_COMMANDS), n, p=_CMD_WEIGHTS)
    cmd[rank == 0] = 0
    # command line: exe, one of the command's argument variants, sometimes a port.
    nvar = np.array([len(c[2]) for c in _COMMANDS])
    variant = (rng.random(n) * nvar[cmd]).astype(np.int64)
    flat_args = [a for c in _COMMANDS for a in c[2]]
    arg_base = np.cumsum(nvar) - nvar
    exe = _pool([c[1] for c in _COMMANDS], cmd)
    args = _pool(flat_args, arg_base[cmd] + variant)
    port = _text(rng.integers(1024, 65535, n))
    with_port = pa.array(rng.random(n) < 0.15)
    tail = pc.if_else(with_port, _join(" --port=", port), pa.scalar(""))
    cmdline = pc.utf8_rtrim_whitespace(_join(exe, " ", args, tail))
    # a digest per distinct command line (the same cmdline always hashes the same)
    enc = pc.dictionary_encode(cmdline)
    cmdline_hash = hex_strings(rng, len(enc.dictionary)).take(enc.indices)
    age = np.minimum(_lognormal_int(rng, 1800, 2.2, n) + 1, UPTIME_S)
    age = np.where(rank < 120, UPTIME_S - rank * 3 - rng.integers(0, 60, n), age)
    since_boot_at_start = UPTIME_S + (sessions.start_us[session] - DAY_START_US) // 1_000_000
    start_time_boot = np.maximum(since_boot_at_start - age, 0) * CLK_TCK + rng.integers(
        0, CLK_TCK, n
    )
    start_id = _join(BOOT_ID, ":", _text(start_time_boot))
    return Processes(
        n, session, rank, pid, ppid, uid, cmd, cmdline, cmdline_hash, age, start_time_boot, start_id
    )


def _session_ids(sessions: Sessions, session: IntArray, first: int, last: int) -> pa.Array:
    return _pool(sessions.ids[first:last], session - first)


# -- proc_samples ------------------------------------------------------------------------------


def proc_samples(table: Table, n_rows: int, seed: int = 20260115) -> pa.Table:
    """`n_rows` rows of proc_samples in scan order, in the table's exact Arrow schema."""
    rng = np.random.default_rng(seed)
    sessions = plan_sessions(rng, n_rows, SAMPLES_PER_SESSION)
    procs = processes(rng, sessions, 0, len(sessions.ids))
    # rows: for each session, for each sample_seq, every process of the session.
    per_session = sessions.nproc * SAMPLES_PER_SESSION
    total = int(per_session.sum())
    sess = np.repeat(np.arange(len(sessions.ids), dtype=np.int64), per_session)
    block_start = np.repeat(np.cumsum(per_session) - per_session, per_session)
    within = np.arange(total, dtype=np.int64) - block_start
    nproc_row = sessions.nproc[sess]
    seq = within // nproc_row
    proc_first = np.cumsum(sessions.nproc) - sessions.nproc
    pi = proc_first[sess] + within % nproc_row  # process index of each row
    rows = total
    take = pa.array(pi)

    def m() -> BoolArray:
        return _mask(rng, rows)

    ts_us = sessions.start_us[sess] + seq * SAMPLE_INTERVAL_US + (within % nproc_row) * 40
    age = procs.age_s[pi] + seq * (SAMPLE_INTERVAL_US // 1_000_000)
    cmd = procs.cmd[pi]
    cpu_frac = rng.beta(0.3, 8.0, procs.n)  # share of its life a process spent on CPU
    busy = cpu_frac[pi]
    ticks = (age * CLK_TCK * busy).astype(np.int64)
    utime = (ticks * 0.8).astype(np.int64) + seq * rng.integers(0, 5, rows)
    stime = ticks - (ticks * 0.8).astype(np.int64) + seq
    rss_proc = (_lognormal_int(rng, 30 * 1024**2, 1.4, procs.n) // 4096 + 1) * 4096
    rss = rss_proc[pi] + seq * 4096 * rng.integers(0, 8, rows)
    vsize = rss * rng.integers(2, 60, rows)
    pid = procs.pid[pi]
    nice_p = np.where(rng.random(procs.n) < 0.9, 0, rng.integers(-20, 20, procs.n))
    nice = nice_p[pi]
    threads = np.minimum(rng.geometric(0.35, procs.n), 512)[pi]
    cpu_pct = np.minimum(rng.exponential(0.4, rows) + busy * 100 * rng.random(rows), 400.0)
    io_r = _lognormal_int(rng, 2e6, 3.0, procs.n)[pi] + seq * 4096
    io_w = _lognormal_int(rng, 5e5, 3.0, procs.n)[pi] + seq * 1024
    vol = _lognormal_int(rng, 800, 2.0, procs.n)[pi] + seq * 3
    unit_idx = rng.integers(0, len(_UNITS), procs.n)[pi]
    cgroup = _join(
        "/",
        pa.array(np.where(procs.uid[pi] == 0, "system.slice", "user.slice/user-1000.slice")),
        "/",
        _pool(_UNITS, unit_idx),
    )
    container = rng.integers(0, len(_CONTAINERS), procs.n)[pi]
    ns_idx = rng.choice(len(_NS), procs.n, p=[0.7, 0.1, 0.05, 0.05, 0.05, 0.05])[pi]
    cols: dict[str, pa.Array] = {
        "session_id": _pool(sessions.ids, sess),
        "sample_ts": _ts(ts_us),
        "sample_seq": _arr(seq, pa.int16()),
        "pid": _arr(pid, pa.int32()),
        "ppid": _arr(procs.ppid[pi], pa.int32()),
        "pgid": _arr(np.where(rng.random(rows) < 0.5, pid, procs.ppid[pi]), pa.int32(), m()),
        "sid": _arr(np.where(rng.random(rows) < 0.3, pid, procs.ppid[pi]), pa.int32(), m()),
        "uid": _arr(procs.uid[pi], pa.int32()),
        "euid": _arr(procs.uid[pi], pa.int32(), m()),
        "start_time_boot": _arr(procs.start_time_boot[pi], pa.int64()),
        "start_id": procs.start_id.take(take),
        "age_s": _arr(age, pa.int64()),
        "cmd": _pool([c[0] for c in _COMMANDS], cmd),
        "cmdline": _with_nulls(procs.cmdline.take(take), m()),
        "cmdline_hash": _with_nulls(procs.cmdline_hash.take(take), m()),
        "exe": _pool([c[1] for c in _COMMANDS], cmd, m()),
        "cwd": _pool(_CWDS, rng.integers(0, len(_CWDS), procs.n)[pi], m()),
        "tty": _pool(_TTYS, rng.integers(0, len(_TTYS), procs.n)[pi], m()),
        "state": _pool(_STATES, rng.choice(len(_STATES), rows, p=_STATE_P)),
        "utime_ticks": _arr(utime, pa.int64()),
        "stime_ticks": _arr(stime, pa.int64()),
        "cutime_ticks": _arr(utime // rng.integers(2, 50, rows), pa.int64(), m()),
        "cstime_ticks": _arr(stime // rng.integers(2, 50, rows), pa.int64(), m()),
        "rss_bytes": _arr(rss, pa.int64()),
        "vsize_bytes": _arr(vsize, pa.int64(), m()),
        "shared_bytes": _arr(rss // rng.integers(2, 10, rows), pa.int64(), m()),
        "text_bytes": _arr(rng.integers(16, 4096, rows) * 4096, pa.int64(), m()),
        "data_bytes": _arr(rss - rss // 4, pa.int64(), m()),
        "nice": _arr(nice, pa.int8(), m()),
        "priority": _arr(20 + nice, pa.int16(), m()),
        "num_threads": _arr(threads, pa.int16(), m()),
        "cpu_percent": _arr(np.round(cpu_pct, 1), pa.float32(), m()),
        "mem_percent": _arr(np.round(rss / MEM_TOTAL * 100, 2), pa.float32(), m()),
        "io_read_bytes": _arr(io_r, pa.int64(), m()),
        "io_write_bytes": _arr(io_w, pa.int64(), m()),
        "io_read_ops": _arr(io_r // rng.integers(512, 65536, rows), pa.int64(), m()),
        "io_write_ops": _arr(io_w // rng.integers(512, 65536, rows), pa.int64(), m()),
        "voluntary_ctxt_switches": _arr(vol, pa.int64(), m()),
        "nonvoluntary_ctxt_switches": _arr(vol // rng.integers(3, 100, rows), pa.int64(), m()),
        "wchan": _pool(_WCHANS, rng.integers(0, len(_WCHANS), rows), m()),
        "oom_score": _arr(np.minimum(rss // (MEM_TOTAL // 1000), 1000), pa.int16(), m()),
        "oom_score_adj": _arr(
            np.array([0, 0, 0, 0, 100, 200, 300, -900, -1000])[rng.integers(0, 9, procs.n)][pi],
            pa.int16(),
            m(),
        ),
        "cgroup_path": _with_nulls(cgroup, m()),
        "systemd_unit": _pool(_UNITS, unit_idx, m()),
        "container_id": _pool(_CONTAINERS, container, m()),
        "ns_pid": _arr(_NS[ns_idx], pa.int64(), m()),
        "ns_mnt": _arr(_NS[ns_idx] + 1, pa.int64(), m()),
        "fd_count": _arr(np.minimum(rng.geometric(0.05, rows) + 3, 30000), pa.int16(), m()),
        "tcp_listen_count": _arr(
            np.where(rng.random(rows) < 0.9, 0, rng.integers(1, 4, rows)), pa.int16(), m()
        ),
        "tcp_estab_count": _arr(
            np.where(rng.random(rows) < 0.7, 0, rng.geometric(0.3, rows)), pa.int16(), m()
        ),
        "child_count": _arr(
            np.where(rng.random(rows) < 0.75, 0, rng.geometric(0.4, rows)), pa.int16(), m()
        ),
    }
    return _build(table, cols).slice(0, n_rows)


# -- proc_features, proc_inference, outcomes ----------------------------------------------------


def triage_blocks(
    features: Table,
    inference: Table,
    outcomes: Table,
    n_rows: int,
    block_rows: int,
    seed: int = 6_2_2026,
) -> Iterator[tuple[pa.Table, pa.Table, pa.Table]]:
    """proc_features, proc_inference and outcomes in blocks of about `block_rows` rows.

    Each table gets exactly one row per (session_id, pid), `n_rows` in all, so the named
    queries join every inference and feature row to one outcome.
    """
    rng = np.random.default_rng(seed)
    sessions = plan_sessions(rng, n_rows, 1, lo=600, hi=1400)
    cum = np.cumsum(sessions.nproc)
    first = 0
    while first < len(sessions.ids):
        done = int(cum[first - 1]) if first else 0
        last = int(np.searchsorted(cum, done + block_rows, side="left")) + 1
        last = min(max(last, first + 1), len(sessions.ids))
        procs = processes(rng, sessions, first, last)
        yield _triage(rng, features, inference, outcomes, sessions, procs, first, last)
        first = last


def _triage(
    rng: np.random.Generator,
    features: Table,
    inference: Table,
    outcomes: Table,
    sessions: Sessions,
    procs: Processes,
    first: int,
    last: int,
) -> tuple[pa.Table, pa.Table, pa.Table]:
    n = procs.n

    def m() -> BoolArray:
        return _mask(rng, n)

    def flag(p: float, null: bool = False) -> pa.Array:
        return pa.array(rng.random(n) < p, mask=m() if null else None)

    def f32(values: FloatArray, null: bool = False) -> pa.Array:
        return _arr(np.round(values, 4), pa.float32(), m() if null else None)

    sid = _session_ids(sessions, procs.session, first, last)
    base_us = sessions.start_us[procs.session] + 2 * SAMPLE_INTERVAL_US + procs.rank * 40
    feature_us = base_us + 1_000
    inference_us = base_us + 500_000 + rng.integers(0, 200_000, n)
    outcome_us = inference_us + rng.integers(1_000_000, 120_000_000, n)
    pid = _arr(procs.pid, pa.int32())
    cmd = procs.cmd
    category = _pool([c[3] for c in _COMMANDS], cmd)
    proc_type = _pool([c[4] for c in _COMMANDS], cmd)
    age = procs.age_s + 4
    expected = np.array([3600, 6 * 3600, DAY_S, 7 * DAY_S])[rng.integers(0, 4, n)]
    age_bucket = np.searchsorted(_AGE_EDGES, age, side="right")
    mem_mb = rng.lognormal(np.log(40), 1.6, n)
    mem_bucket = np.searchsorted(_MEM_EDGES_MB, mem_mb, side="right")
    cpu = rng.exponential(3.0, n)
    tty = rng.random(n) < 0.3
    children = rng.random(n) < 0.25
    orphan = procs.ppid == 1
    state = rng.choice(len(_STATES), n, p=_STATE_P)
    pattern_parts = [
        c[0] + (" " + c[2][0].split(" ")[0] if c[2][0] else "") + " *" for c in _COMMANDS
    ]
    feat = _build(
        features,
        {
            "session_id": sid,
            "pid": pid,
            "start_id": procs.start_id,
            "feature_ts": _ts(feature_us),
            "proc_type": proc_type,
            "proc_type_conf": f32(rng.beta(5, 1.5, n)),
            "age_s": _arr(age, pa.int64()),
            "age_ratio": f32(age / expected),
            "age_bucket": _pool(_AGE_BUCKETS, age_bucket),
            "cpu_pct_instant": f32(cpu),
            "cpu_pct_avg": f32(cpu * rng.uniform(0.5, 1.5, n), True),
            "cpu_delta_ticks": _arr((cpu * 2).astype(np.int64), pa.int64(), m()),
            "cpu_utilization": f32(cpu / 800, True),
            "cpu_stalled": flag(0.2, True),
            "cpu_spinning": flag(0.02, True),
            "mem_mb": f32(mem_mb),
            "mem_pct": f32(mem_mb * 1024**2 / MEM_TOTAL * 100),
            "mem_growth_rate": f32(rng.normal(0, 2000, n), True),
            "mem_bucket": _pool(_MEM_BUCKETS, mem_bucket),
            "io_read_rate": f32(rng.exponential(5e4, n), True),
            "io_write_rate": f32(rng.exponential(1e4, n), True),
            "io_active": flag(0.4, True),
            "io_idle": flag(0.6, True),
            "is_orphan": pa.array(orphan),
            "is_zombie": pa.array(state == 3),
            "is_stopped": pa.array(state == 4),
            "is_sleeping": pa.array(state == 0),
            "is_running": pa.array(state == 1),
            "has_tty": pa.array(tty),
            "tty_active": _arr(tty & (rng.random(n) < 0.7), pa.bool_(), m()),
            "tty_dead": _arr(tty & (rng.random(n) < 0.1), pa.bool_(), m()),
            "has_network": flag(0.3, True),
            "is_listener": flag(0.08, True),
            "has_children": pa.array(children),
            "children_active": _arr(children & (rng.random(n) < 0.5), pa.bool_(), m()),
            "cmd_pattern": _pool(pattern_parts, cmd),
            "cmd_category": category,
            "is_protected": pa.array(procs.uid == 0),
            "prior_decision": _pool(("kill", "spare", "unknown"), rng.integers(0, 3, n), m()),
            "prior_decision_count": _arr(rng.geometric(0.2, n), pa.int32(), m()),
        },
    )
    # inference: posteriors, a score driven by P(abandoned), evidence contributions.
    p_ab = rng.beta(0.7, 2.5, n)
    p_unc = (1 - p_ab) * rng.beta(1, 6, n)
    p_leg = 1 - p_ab - p_unc
    lbf = np.log((p_ab + 1e-6) / (p_leg + 1e-6))
    interp = np.searchsorted(np.array([-2.3, -1.1, 1.1, 2.3]), lbf)  # spare..kill
    interp_names = ("strong_spare", "moderate_spare", "weak", "moderate_kill", "strong_kill")
    score = np.clip(p_ab * 100 + rng.normal(0, 6, n), 0, 120)
    rec = np.where(score >= 70, 0, np.where(score >= 40, 1, 2))  # KILL, REVIEW, SPARE
    recs = ("KILL", "REVIEW", "SPARE")
    margin = np.abs(p_ab - 0.5)
    confidence = np.where(margin > 0.35, 0, np.where(margin > 0.15, 1, 2))
    ev = {k: rng.normal(0, 0.8, n) for k in ("prior", "age", "cpu", "memory", "io", "state")}
    ev_more = {k: rng.normal(0, 0.5, n) for k in ("network", "children", "history")}
    ntags = rng.integers(0, 5, n)
    offsets = np.concatenate([[0], np.cumsum(ntags)]).astype(np.int32)
    tags = pa.ListArray.from_arrays(
        pa.array(offsets), _pool(_TAGS, rng.integers(0, len(_TAGS), int(offsets[-1])))
    )

    def num(values: FloatArray) -> pa.Array:
        return _text(pa.array(np.round(values, 3)))

    ledger = _join(
        '{"prior":',
        num(ev["prior"]),
        ',"age":',
        num(ev["age"]),
        ',"cpu":',
        num(ev["cpu"]),
        ',"memory":',
        num(ev["memory"]),
        ',"io":',
        num(ev["io"]),
        ',"score":',
        num(score),
        "}",
    )
    passed = rng.random(n) < 0.85
    gate = rng.integers(0, len(_GATES), n)
    gate_name = _pool(_GATES, gate, passed)
    details = _join('{"gate":"', _pool(_GATES, gate), '","passed":', _text(pa.array(passed)), "}")
    infer = _build(
        inference,
        {
            "session_id": sid,
            "pid": pid,
            "start_id": procs.start_id,
            "inference_ts": _ts(inference_us),
            "p_abandoned": f32(p_ab),
            "p_legitimate": f32(p_leg),
            "p_uncertain": f32(p_unc),
            "log_bayes_factor": f32(lbf),
            "bayes_factor_interpretation": _pool(interp_names, interp),
            "score": f32(score),
            "confidence": _pool(("high", "medium", "low"), confidence),
            "recommendation": _pool(recs, rec),
            **{f"evidence_{k}": f32(v) for k, v in ev.items()},
            **{f"evidence_{k}": f32(v) for k, v in ev_more.items()},
            "evidence_deep": f32(rng.normal(0, 0.3, n), True),
            "evidence_tags": tags,
            "evidence_ledger_json": _with_nulls(ledger, m()),
            "passed_safety_gates": pa.array(passed),
            "blocked_by_gate": gate_name,
            "safety_gate_details": _with_nulls(details, m()),
        },
    )
    # outcomes: what the user (or auto mode) decided and what the kill did.
    p_kill = np.clip(p_ab * 1.1, 0, 1) ** 0.8
    u = rng.random(n)
    decision = np.where(u < p_kill, 0, np.where(u < p_kill + (1 - p_kill) * 0.85, 1, 2))
    killed = decision == 0
    action = np.where(killed, 0, np.where(decision == 1, 1, 2 + rng.integers(0, 2, n)))
    attempted = killed | (rng.random(n) < 0.05)
    success = attempted & (rng.random(n) < 0.93)
    signal = np.where(killed, rng.choice(2, n, p=[0.9, 0.1]), 2 + rng.integers(0, 2, n))
    response = np.where(success, 0, rng.integers(1, 3, n))
    feedback = rng.choice(3, n, p=[0.8, 0.12, 0.08])
    freed = np.where(success, (mem_mb * 1024**2).astype(np.int64), 0)
    outc = _build(
        outcomes,
        {
            "session_id": sid,
            "outcome_ts": _ts(outcome_us),
            "pid": pid,
            "start_id": procs.start_id,
            "recommendation": _pool(recs, rec),
            "decision": _pool(("kill", "spare", "defer"), decision),
            "decision_source": _pool(
                ("user", "auto", "timeout", "default"), rng.choice(4, n, p=[0.6, 0.3, 0.05, 0.05])
            ),
            "action_type": _pool(("kill", "spare", "pause", "resume"), action, m()),
            "action_attempted": pa.array(attempted),
            "action_successful": _arr(success, pa.bool_(), m()),
            "signal_sent": _pool(("TERM", "KILL", "STOP", "CONT"), signal, m()),
            "signal_response": _pool(("died", "ignored", "not_found"), response, m()),
            "verified_identity": flag(0.98, True),
            "pid_at_action": _arr(procs.pid, pa.int32(), m()),
            "start_id_matched": flag(0.99, True),
            "process_state_after": _pool(("gone", "Z", "S", "T"), rng.integers(0, 4, n), m()),
            "memory_freed_bytes": _arr(freed, pa.int64(), m()),
            "error_message": _pool(
                ("EPERM: operation not permitted", "ESRCH: no such process", "timeout after 5s"),
                rng.integers(0, 3, n),
                m(),
            ),
            "user_feedback": _pool(("correct", "incorrect", "unsure"), feedback, m()),
            "feedback_ts": _ts(outcome_us + rng.integers(1, 3600, n) * 1_000_000, m()),
            "feedback_note": _pool(
                ("was a stale test run", "still needed it", "fine", "dev server I forgot"),
                rng.integers(0, 4, n),
                m(),
            ),
            "cmd": _pool([c[0] for c in _COMMANDS], cmd),
            "cmdline_hash": _with_nulls(procs.cmdline_hash, m()),
            "score": f32(score),
            "proc_type": proc_type,
        },
    )
    return feat, infer, outc


# -- Arrow -> list of dicts --------------------------------------------------------------------


def _py_column(col: pa.ChunkedArray | pa.Array) -> list[Any]:
    """One column as Python values; strings share one object per distinct value."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    null = arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else None
    t = arr.type
    if pa.types.is_string(t):
        enc = pc.dictionary_encode(arr)
        pool = np.array([*enc.dictionary.to_pylist(), None], dtype=object)
        idx = pc.fill_null(enc.indices, len(enc.dictionary)).to_numpy()
        return list(pool[idx].tolist())
    if pa.types.is_timestamp(t):
        naive = pc.fill_null(arr, 0).to_numpy().astype("datetime64[us]").astype(object)
        utc = dt.UTC
        values: list[Any] = [d.replace(tzinfo=utc) for d in naive.tolist()]
    elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        fill = False if pa.types.is_boolean(t) else 0
        values = pc.fill_null(arr, fill).to_numpy(zero_copy_only=False).astype(object).tolist()
    else:
        return list(arr.to_pylist())
    if null is not None:
        for i in np.flatnonzero(null).tolist():
            values[i] = None
    return values


def to_dicts(data: pa.Table) -> list[dict[str, Any]]:
    """The rows of `data` as dicts (aware UTC datetimes for timestamps), built fast.

    This is what a collector would hand to `write_many`: plain Python values, every key
    present, None for nulls. The GC is paused while millions of dicts are built and the
    result is frozen, so later collections never rescan it (in either timed section).
    """
    names = data.column_names
    enabled = gc.isenabled()
    gc.disable()
    try:
        cols = [_py_column(data.column(n)) for n in names]
        rows = [dict(zip(names, values, strict=True)) for values in zip(*cols, strict=True)]
        del cols
    finally:
        if enabled:
            gc.enable()
    gc.collect()
    gc.freeze()
    return rows
