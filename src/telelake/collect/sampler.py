"""Snapshots of this host's real processes as `proc_samples` rows (spec 000 §3.2).

Rules this module keeps:

- Nothing is invented. A field the host does not show us (the process vanished, became a
  zombie, or the read was denied) is stored as None. A process whose *mandatory* fields
  (pid, ppid, uid, start time, state, CPU ticks, RSS) cannot be read at all has vanished
  before we could look at it: it is left out of the snapshot and counted in `skipped`.
- On Linux the scheduler fields come straight from `/proc/<pid>/stat`, which every user
  may read: it is exact (real clock ticks, the one-letter state) and consistent (one read
  gives state, ticks and start time together); pgid and sid are its fields 5 and 6 (what
  os.getpgid / os.getsid return), and the terminal is its tty_nr looked up in /dev.
  Elsewhere psutil's portable calls and os.getpgid / os.getsid are used.
- Integers that do not fit their column (e.g. more than 32767 open fds in an INT16) are
  stored as None rather than clamped, since a clamped number would be a false reading;
  `fit_ints` does this from the table's declared types so a write never fails.
- `cpu_percent` is computed from the tick delta against the previous snapshot of the same
  process (same pid and start time): `Δ(utime+stime) / CLK_TCK / Δsample_ts * 100`, i.e.
  percent of one core. It is None in a process's first snapshot, where there is no delta.
- `cmd` is psutil's `name()` (the kernel's comm, completed from argv[0] when comm was cut
  at 15 characters). If even that is unreadable the comm from `/proc/<pid>/stat` is used,
  and "?" only if both are missing (never seen on Linux, where stat always has comm).
- `cmdline` is argv joined with single spaces (None when the process shows no argv:
  kernel threads, zombies, denied reads). `cmdline_hash` is the SHA-256 hex digest of
  that joined text's original bytes (argv as the kernel gave it, before any redaction).
  Stored strings decode undecodable bytes as U+FFFD; for valid UTF-8 (the usual case)
  `sha256(cmdline.encode())` equals `cmdline_hash`.
"""

from __future__ import annotations

import datetime as dt
import glob
import hashlib
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil

from telelake.schema.model import Table

T = TypeVar("T")
Row = dict[str, Any]

_PROC = Path("/proc")
# Errors that mean "the host does not show us this field": the process vanished or turned
# zombie (psutil.NoSuchProcess / ZombieProcess), access was denied (psutil.AccessDenied,
# PermissionError), or a /proc file is missing or malformed.
_UNAVAILABLE: tuple[type[BaseException], ...] = (psutil.Error, OSError, ValueError)
# psutil status strings (psutil.STATUS_*) -> the kernel's one-letter states, for hosts
# without /proc. Literal strings: not every psutil build defines every constant.
_STATUS_LETTER = {
    "running": "R",
    "sleeping": "S",
    "disk-sleep": "D",
    "stopped": "T",
    "tracing-stop": "t",
    "zombie": "Z",
    "dead": "X",
    "wake-kill": "K",
    "waking": "W",
    "parked": "P",
    "idle": "I",
    "locked": "L",
    "waiting": "W",
}
_HEX64 = re.compile(r"(?<![0-9a-f])([0-9a-f]{64})(?![0-9a-f])")
# Cgroup path fragments that mark a container runtime (docker, containerd/CRI, podman, cri-o).
_CONTAINER_MARKERS = ("docker", "containerd", "kubepods", "libpod", "crio")


def _try(fn: Callable[[], T]) -> T | None:
    """`fn()`, or None when the host does not show that field."""
    try:
        return fn()
    except _UNAVAILABLE:
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="surrogateescape")
    except OSError:
        return None


def clean_text(text: str) -> str:
    """`text` safe to store: undecodable bytes (surrogate escapes) become U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


# -- /proc parsing (pure) -------------------------------------------------------------------


@dataclass(frozen=True)
class ProcStat:
    """The fields of `/proc/<pid>/stat` the collector uses (proc(5) numbering)."""

    comm: str  # 2
    state: str  # 3
    ppid: int  # 4
    pgrp: int  # 5
    session: int  # 6
    tty_nr: int  # 7
    utime: int  # 14, clock ticks
    stime: int  # 15
    cutime: int  # 16
    cstime: int  # 17
    priority: int  # 18
    nice: int  # 19
    num_threads: int  # 20
    starttime: int  # 22, clock ticks since boot
    vsize: int  # 23, bytes
    rss_pages: int  # 24


def parse_proc_stat(text: str) -> ProcStat:
    """Parse one `/proc/<pid>/stat` line.

    comm (field 2) may hold spaces and parentheses, so it runs from the first '(' to the
    *last* ')'; the numbered fields are split from what follows. Raises ValueError on a
    malformed line.
    """
    open_at, close_at = text.find("("), text.rfind(")")
    if open_at < 0 or close_at < open_at:
        raise ValueError(f"malformed stat line: {text[:60]!r}")
    rest = text[close_at + 1 :].split()
    if len(rest) < 22:  # up to field 24
        raise ValueError(f"stat line has {len(rest) + 2} fields, expected at least 24")

    def field(n: int) -> int:
        return int(rest[n - 3])

    return ProcStat(
        comm=text[open_at + 1 : close_at],
        state=rest[0],
        ppid=field(4),
        pgrp=field(5),
        session=field(6),
        tty_nr=field(7),
        utime=field(14),
        stime=field(15),
        cutime=field(16),
        cstime=field(17),
        priority=field(18),
        nice=field(19),
        num_threads=field(20),
        starttime=field(22),
        vsize=field(23),
        rss_pages=field(24),
    )


def cgroup_path_of(text: str) -> str | None:
    """The cgroup path from a `/proc/<pid>/cgroup` file.

    The unified (v2) line `0::<path>` wins; on hosts with only v1 hierarchies the
    `name=systemd` hierarchy is used, since it carries the same unit layout. None if
    neither line is there.
    """
    v1_systemd = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            return parts[2]
        if parts[1] == "name=systemd":
            v1_systemd = parts[2]
    return v1_systemd


def systemd_unit_of(cgroup_path: str | None) -> str | None:
    """The last `*.service` or `*.scope` component of a cgroup path, else None."""
    if not cgroup_path:
        return None
    for part in reversed(cgroup_path.split("/")):
        if part.endswith((".service", ".scope")):
            return part
    return None


def container_id_of(cgroup_path: str | None) -> str | None:
    """The 64-hex container id in a docker/containerd/podman/cri-o cgroup path, else None."""
    if not cgroup_path or not any(m in cgroup_path for m in _CONTAINER_MARKERS):
        return None
    ids = _HEX64.findall(cgroup_path)
    return ids[-1] if ids else None


def wchan_of(text: str | None) -> str | None:
    """The wait channel symbol; None when unreadable, empty or "0" (not waiting)."""
    if text is None:
        return None
    value = text.strip()
    return None if value in ("", "0") else clean_text(value)


def int_or_none(text: str | None) -> int | None:
    """An integer read from a one-number /proc file, None if unreadable or malformed."""
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def cmdline_fields(argv: list[str] | None) -> tuple[str | None, str | None]:
    """(cmdline, cmdline_hash) for an argv: None for both when there is no argv."""
    if not argv:
        return None, None
    joined = " ".join(argv)
    raw = joined.encode("utf-8", "surrogateescape")
    return clean_text(joined), hashlib.sha256(raw).hexdigest()


def fit_ints(rows: Iterable[Row], table: Table) -> int:
    """Null nullable integer values that do not fit their column; returns how many.

    A non-null integer column that does not fit raises ValueError (the caller drops the
    row): no value we sample there (pid, ppid, uid, ticks, bytes) can overflow in practice.
    """
    limits = {
        c.name: (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1, c.nullable)
        for c in table.columns
        if c.type.name.startswith("int") and (bits := int(c.type.name[3:]))
    }
    nulled = 0
    for row in rows:
        for name, (lo, hi, nullable) in limits.items():
            v = row.get(name)
            if v is None or lo <= v <= hi:
                continue
            if not nullable:
                raise ValueError(f"{name}={v} does not fit its column")
            row[name] = None
            nulled += 1
    return nulled


# -- the host ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostContext:
    """Facts about the host that every row needs, read once per session."""

    boot_id: str
    boot_time: float  # epoch seconds
    clk_tck: int
    page_size: int
    memory_bytes: int
    cores: int | None
    procfs: bool  # Linux /proc available


def host_context() -> HostContext:
    """Read the boot id, boot time, clock tick rate, page size, memory and core count."""
    procfs = sys.platform.startswith("linux") and (_PROC / "self" / "stat").exists()
    boot_time = psutil.boot_time()
    boot_id = _read(_PROC / "sys" / "kernel" / "random" / "boot_id") if procfs else None
    return HostContext(
        # Without /proc there is no kernel boot id: the boot time names this boot instead.
        boot_id=boot_id.strip() if boot_id else f"boot-{int(boot_time)}",
        boot_time=boot_time,
        clk_tck=_sysconf("SC_CLK_TCK", 100),
        page_size=_sysconf("SC_PAGE_SIZE", 4096),
        memory_bytes=int(psutil.virtual_memory().total),
        cores=psutil.cpu_count(logical=True),
        procfs=procfs,
    )


def _sysconf(name: str, default: int) -> int:
    try:
        return int(os.sysconf(name))
    except (AttributeError, ValueError, OSError):
        return default


def terminal_map() -> dict[int, str]:
    """Device number -> terminal path for /dev/tty* and /dev/pts/* (built once a snapshot).

    psutil's `terminal()` rebuilds this map for every process; doing it once keeps a
    snapshot of hundreds of processes cheap.
    """
    out: dict[int, str] = {}
    for path in glob.glob("/dev/tty*") + glob.glob("/dev/pts/*"):
        try:
            out[os.stat(path).st_rdev] = path
        except OSError:
            continue
    return out


# -- snapshots --------------------------------------------------------------------------------


class Sampler:
    """Takes successive snapshots of every process, remembering ticks for `cpu_percent`."""

    def __init__(self, host: HostContext | None = None) -> None:
        self.host = host or host_context()
        self.skipped = 0  # processes left out of the last snapshot (vanished)
        # (pid, start_time_boot) -> (sample time in epoch seconds, utime+stime ticks)
        self._prev: dict[tuple[int, int], tuple[float, int]] = {}

    def snapshot(self, session_id: str, sample_seq: int, sample_ts: dt.datetime) -> list[Row]:
        """One `proc_samples` row per live process, all stamped `sample_ts` (aware, UTC)."""
        if sample_ts.tzinfo is None:
            raise ValueError("sample_ts must be timezone-aware")
        now = sample_ts.timestamp()
        ttys = terminal_map() if self.host.procfs else {}
        rows: list[Row] = []
        skipped = 0
        for proc in psutil.process_iter():
            try:
                row = self._sample(proc, ttys, now)
            except _UNAVAILABLE:
                row = None
            if row is None:
                skipped += 1
                continue
            row["session_id"] = session_id
            row["sample_ts"] = sample_ts
            row["sample_seq"] = sample_seq
            rows.append(row)
        # Children are counted within this same snapshot, so the count is consistent.
        children = Counter(r["ppid"] for r in rows)
        for r in rows:
            r["child_count"] = children.get(r["pid"], 0)
        prev: dict[tuple[int, int], tuple[float, int]] = {}
        for r in rows:
            ident = (r["pid"], r["start_time_boot"])
            ticks = r["utime_ticks"] + r["stime_ticks"]
            before = self._prev.get(ident)
            if before is not None and now > before[0]:
                r["cpu_percent"] = (
                    (ticks - before[1]) / self.host.clk_tck / (now - before[0]) * 100.0
                )
            prev[ident] = (now, ticks)
        self._prev = prev
        self.skipped = skipped
        return rows

    def _sample(self, proc: psutil.Process, ttys: dict[int, str], now: float) -> Row | None:
        """One process's row, or None if its mandatory fields cannot be read."""
        host = self.host
        base = _PROC / str(proc.pid)
        with proc.oneshot():
            if host.procfs:
                stat = _try(lambda: parse_proc_stat(_read(base / "stat") or ""))
                row = _from_stat(stat, host, ttys) if stat is not None else None
                comm = stat.comm if stat is not None else None
            else:
                row, comm = _portable_mandatory(proc, host), None
            uids = _try(proc.uids)
            if row is None or uids is None:
                return None  # vanished before its mandatory fields could be read
            name = _try(proc.name)
            mem = _try(proc.memory_info)
            io = _try(proc.io_counters) if hasattr(proc, "io_counters") else None
            ctx = _try(proc.num_ctx_switches)
            conns = _try(lambda: proc.net_connections(kind="tcp"))
            cmdline, cmdline_hash = cmdline_fields(_try(proc.cmdline))
            row.update(
                {
                    "pid": proc.pid,
                    "uid": uids.real,
                    "euid": uids.effective,
                    "cmd": clean_text(name or comm or "?"),
                    "cmdline": cmdline,
                    "cmdline_hash": cmdline_hash,
                    "exe": _nonempty(_try(proc.exe)),
                    "cwd": _nonempty(_try(proc.cwd)),
                    "io_read_bytes": io.read_bytes if io else None,
                    "io_write_bytes": io.write_bytes if io else None,
                    "io_read_ops": io.read_count if io else None,
                    "io_write_ops": io.write_count if io else None,
                    "voluntary_ctxt_switches": ctx.voluntary if ctx else None,
                    "nonvoluntary_ctxt_switches": ctx.involuntary if ctx else None,
                    "fd_count": _try(proc.num_fds) if hasattr(proc, "num_fds") else None,
                    "tcp_listen_count": _count_status(conns, psutil.CONN_LISTEN),
                    "tcp_estab_count": _count_status(conns, psutil.CONN_ESTABLISHED),
                    "cpu_percent": None,  # filled from the previous snapshot's ticks
                    "shared_bytes": None,
                    "text_bytes": None,
                    "data_bytes": None,
                }
            )
        if mem is not None:
            # statm (psutil) and stat hold the same RSS counter; statm adds the breakdown.
            row["rss_bytes"] = int(mem.rss)
            row["vsize_bytes"] = int(mem.vms)
            row["shared_bytes"] = _int_attr(mem, "shared")
            row["text_bytes"] = _int_attr(mem, "text")
            row["data_bytes"] = _int_attr(mem, "data")
        row["mem_percent"] = row["rss_bytes"] / host.memory_bytes * 100.0
        start = host.boot_time + row["start_time_boot"] / host.clk_tck
        # btime has one-second resolution, so a just-born process can come out a hair
        # in the future: age is never negative.
        row["age_s"] = max(0, int(now - start))
        row["start_id"] = f"{host.boot_id}:{row['start_time_boot']}"
        row.update(_linux_extras(base) if host.procfs else _EMPTY_EXTRAS)
        return row


def _count_status(conns: list[Any] | None, status: str) -> int | None:
    return None if conns is None else sum(1 for c in conns if c.status == status)


_EMPTY_EXTRAS: Row = {
    "wchan": None,
    "oom_score": None,
    "oom_score_adj": None,
    "cgroup_path": None,
    "systemd_unit": None,
    "container_id": None,
    "ns_pid": None,
    "ns_mnt": None,
}


def _nonempty(text: str | None) -> str | None:
    # psutil answers "" for kernel threads' exe/cwd: the host shows nothing there.
    return clean_text(text) if text else None


def _int_attr(obj: object, name: str) -> int | None:
    value = getattr(obj, name, None)
    return int(value) if value is not None else None


def _from_stat(stat: ProcStat, host: HostContext, ttys: dict[int, str]) -> Row:
    return {
        "ppid": stat.ppid,
        "pgid": stat.pgrp,
        "sid": stat.session,
        "start_time_boot": stat.starttime,
        "tty": ttys.get(stat.tty_nr) if stat.tty_nr else None,
        "state": stat.state,
        "utime_ticks": stat.utime,
        "stime_ticks": stat.stime,
        "cutime_ticks": stat.cutime,
        "cstime_ticks": stat.cstime,
        "rss_bytes": stat.rss_pages * host.page_size,
        "vsize_bytes": stat.vsize,
        "nice": stat.nice,
        "priority": stat.priority,
        "num_threads": stat.num_threads,
    }


def _portable_mandatory(proc: psutil.Process, host: HostContext) -> Row | None:
    """The stat fields through psutil, for hosts without /proc (macOS, BSD)."""
    ppid = _try(proc.ppid)
    created = _try(proc.create_time)
    status = _try(proc.status)
    times = _try(proc.cpu_times)
    mem = _try(proc.memory_info)
    if ppid is None or created is None or status is None or times is None or mem is None:
        return None
    tck = host.clk_tck
    return {
        "ppid": ppid,
        "pgid": _try(lambda: os.getpgid(proc.pid)),
        "sid": _try(lambda: os.getsid(proc.pid)),
        # Ticks since boot derived from psutil's create time and the boot time.
        "start_time_boot": max(0, round((created - host.boot_time) * tck)),
        "tty": _try(proc.terminal) if hasattr(proc, "terminal") else None,
        "state": _STATUS_LETTER.get(status, "?"),
        "utime_ticks": round(times.user * tck),
        "stime_ticks": round(times.system * tck),
        "cutime_ticks": round(times.children_user * tck),
        "cstime_ticks": round(times.children_system * tck),
        "rss_bytes": int(mem.rss),
        "vsize_bytes": int(mem.vms),
        "nice": _try(proc.nice),
        "priority": None,
        "num_threads": _try(proc.num_threads),
    }


def _linux_extras(base: Path) -> Row:
    cgroup_text = _read(base / "cgroup")
    cgroup = cgroup_path_of(cgroup_text) if cgroup_text is not None else None
    return {
        "wchan": wchan_of(_read(base / "wchan")),
        "oom_score": int_or_none(_read(base / "oom_score")),
        "oom_score_adj": int_or_none(_read(base / "oom_score_adj")),
        "cgroup_path": clean_text(cgroup) if cgroup is not None else None,
        "systemd_unit": systemd_unit_of(cgroup),
        "container_id": container_id_of(cgroup),
        "ns_pid": _try(lambda: os.stat(base / "ns" / "pid").st_ino),
        "ns_mnt": _try(lambda: os.stat(base / "ns" / "mnt").st_ino),
    }
