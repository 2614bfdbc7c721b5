"""`proc_features` rows derived mechanically from `proc_samples` rows (spec 000 §3.3).

Pure functions: no psutil, no I/O. `derive_features` takes the sample rows of one session
(dicts as written to `proc_samples`) and returns one feature row per process, i.e. per
`(pid, start_id)`, computed from that process's latest sample plus first->last deltas.

Choices the spec leaves open, made here once:

- Type classification is a small ordered rule table (`RULES`, first match wins) over
  `cmd` and the programs a `cmdline` runs (see `invocation`); `proc_type_conf` is the
  rule's constant confidence (0.95 kernel thread, 0.9 for a name match, 0.6 for the
  structural "daemon" guess, 0.3 for the fallback). `age_ratio` = age / the rule's
  documented expected lifetime.
- `age_bucket` uses the enum values as inclusive upper bounds (age <= 1h -> "1h", ...,
  <= 14d -> "14d"); anything older than 14 days is "30d", the open-ended last bucket.
- `mem_bucket`: tiny < 10 MiB <= small < 100 MiB <= medium < 1 GiB <= large < 4 GiB <= huge.
- Rates (memory growth, I/O) and `cpu_delta_ticks` compare the first and the last sample;
  with one sample (or no elapsed time) they are None: one point has no slope.
- `cpu_pct_instant` (non-null) is the latest sample's `cpu_percent`, else the tick delta of
  the last two samples; with a single sample there is no interval to measure, so it is
  0.0 (and `cpu_pct_avg`, which is nullable, is None: readers should use it to tell).
- `has_children` is the latest sample's `child_count > 0`, or, when that is null, whether
  any row of the same snapshot names the process as its parent.
- `cmd_pattern` is cmd plus the basename of the first non-flag argument, each digit run
  replaced by "N"; `is_protected` covers init, kernel threads and `PROTECTED_COMMANDS`.
- Left None because the samples cannot show them: `cpu_spinning` (needs a progress signal
  besides CPU), `tty_active` / `tty_dead` (need terminal activity), `children_active`,
  `prior_decision` / `prior_decision_count` (need decision history).
"""

from __future__ import annotations

import posixpath
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Row = dict[str, Any]
Sample = Mapping[str, Any]

HOUR = 3600
DAY = 24 * HOUR
MIB = 2**20

# (upper bound in seconds, inclusive; bucket) in increasing order; older is "30d".
AGE_BUCKETS: tuple[tuple[int, str], ...] = (
    (HOUR, "1h"),
    (6 * HOUR, "6h"),
    (DAY, "1d"),
    (3 * DAY, "3d"),
    (7 * DAY, "7d"),
    (14 * DAY, "14d"),
)
AGE_BUCKET_LAST = "30d"
# (exclusive upper bound in bytes, bucket); at or above the last bound is "huge".
MEM_BUCKETS: tuple[tuple[int, str], ...] = (
    (10 * MIB, "tiny"),
    (100 * MIB, "small"),
    (1024 * MIB, "medium"),
    (4096 * MIB, "large"),
)
MEM_BUCKET_LAST = "huge"

# Programs that run another program named by their first non-flag argument (`python
# script.py`, `node /usr/bin/npm`, `npx jest`, `uv run pytest`); `-m <module>` names it too.
# Version suffixes are ignored (python3.11 is python).
INTERPRETERS = frozenset(
    {"python", "pypy", "node", "nodejs", "npx", "pnpx", "bunx", "ruby", "perl", "php"}
    | {"uv", "uvx", "poetry", "pipenv", "pdm", "hatch", "env", "nohup", "nice", "sudo"}
)
# Words a launcher puts between itself and the program it runs (`uv run`, `npx exec`).
_LAUNCH_WORDS = frozenset({"run", "exec", "x"})
_VERSION_SUFFIX = re.compile(r"[\d.]+$")

SHELLS = frozenset(
    {"bash", "zsh", "sh", "fish", "dash", "ksh", "mksh", "tcsh", "csh", "nu", "pwsh", "xonsh"}
)
TEST_RUNNERS = frozenset(
    {"pytest", "py.test", "unittest", "jest", "vitest", "mocha", "ava", "karma", "tox", "nox"}
    | {"phpunit", "rspec", "ctest", "cargo-nextest"}
)
# Launchers whose `test` subcommand runs a test suite (`cargo test`, `npm test`...).
TEST_LAUNCHERS = frozenset(
    {"cargo", "go", "npm", "yarn", "pnpm", "bun", "deno", "dotnet", "mvn", "gradle"}
)
DEV_SERVERS = frozenset({"vite", "webpack-dev-server", "nodemon", "next-server"})
# (program, subcommand) pairs that start a development server.
DEV_SERVER_PAIRS = frozenset(
    {
        ("next", "dev"),
        ("nuxt", "dev"),
        ("webpack", "serve"),
        ("flask", "run"),
        ("vite", "dev"),
        ("rails", "server"),
        ("npm", "dev"),
        ("yarn", "dev"),
        ("pnpm", "dev"),
        ("bun", "dev"),
    }
)
AGENTS = frozenset(
    {"claude", "codex", "copilot", "aider", "cursor-agent", "gemini", "goose", "opencode"}
)
# Commands a triage tool must never suggest killing: init, the kernel's thread parent,
# session/login infrastructure, display servers, container runtimes.
PROTECTED_COMMANDS = frozenset(
    {"init", "systemd", "kthreadd", "sshd", "sshd-session", "dbus-daemon", "dbus-broker"}
    | {"login", "agetty", "getty", "Xorg", "Xwayland", "gdm", "sddm", "lightdm"}
    | {"containerd", "dockerd", "cron", "crond", "rsyslogd", "polkitd", "NetworkManager"}
)


@dataclass(frozen=True)
class TypeRule:
    """What one classification rule assigns."""

    proc_type: str
    cmd_category: str
    confidence: float
    expected_lifetime_s: int  # a typical lifetime of this kind of process


# In match order (see `classify`); the lifetimes are the "this has run long enough to be
# suspicious" scale of each type.
KERNEL = TypeRule("kernel", "kernel_thread", 0.95, 30 * DAY)
TEST = TypeRule("test", "test_runner", 0.9, HOUR)
DEV_SERVER = TypeRule("dev_server", "dev_server", 0.9, DAY)
AGENT = TypeRule("agent", "agent", 0.9, 6 * HOUR)
SHELL = TypeRule("shell", "shell", 0.9, 7 * DAY)
DAEMON = TypeRule("daemon", "daemon", 0.6, 30 * DAY)
UNKNOWN = TypeRule("unknown", "other", 0.3, DAY)
RULES: tuple[TypeRule, ...] = (KERNEL, TEST, DEV_SERVER, AGENT, SHELL, DAEMON, UNKNOWN)


def age_bucket(age_s: int | float) -> str:
    """The `age_bucket` enum value for an age in seconds (bounds inclusive)."""
    for bound, name in AGE_BUCKETS:
        if age_s <= bound:
            return name
    return AGE_BUCKET_LAST


def mem_bucket(rss_bytes: int | float) -> str:
    """The `mem_bucket` enum value for a resident set size in bytes (bounds exclusive)."""
    for bound, name in MEM_BUCKETS:
        if rss_bytes < bound:
            return name
    return MEM_BUCKET_LAST


def invocation(cmd: str, cmdline: str | None) -> tuple[list[str], list[str]]:
    """(programs, arguments) of a command line, names lowercased basenames.

    programs is argv[0] followed by what each interpreter in `INTERPRETERS` runs:
    `/venv/bin/python /venv/bin/pytest -q` -> (["python", "pytest"], ["-q"]),
    `node /usr/bin/npm run dev` -> (["node", "npm"], ["run", "dev"]). Without a cmdline,
    programs is just cmd. Only programs are matched against names, so an argument that
    merely mentions a tool (`grep pytest log`) does not classify the process.
    """
    tokens = cmdline.split() if cmdline else []
    if not tokens:
        return [cmd.lower()], []
    programs = [posixpath.basename(tokens[0]).lower()]
    i = 1
    while _VERSION_SUFFIX.sub("", programs[-1]) in INTERPRETERS and i < len(tokens):
        token = tokens[i]
        if token in ("-c", "-e", "--eval"):  # inline code: no program named
            break
        if token == "-m" and i + 1 < len(tokens):
            programs.append(tokens[i + 1].lower())
            i += 2
            break
        i += 1
        if token.startswith("-") or "=" in token or token in _LAUNCH_WORDS:
            continue
        programs.append(posixpath.basename(token).lower())
    return programs, [t.lower() for t in tokens[i:]]


def is_kernel_thread(pid: int, ppid: int) -> bool:
    """kthreadd (pid 2) and its children are kernel threads on Linux."""
    return pid == 2 or ppid == 2


def classify(
    cmd: str, cmdline: str | None, *, pid: int, ppid: int, systemd_unit: str | None = None
) -> TypeRule:
    """The first matching rule of `RULES` for one process (see `invocation`).

    kernel: pid 2 or parent 2. test: a program in `TEST_RUNNERS`, or a `TEST_LAUNCHERS`
    program whose subcommand is `test` (`cargo test`, `npm run test`). dev_server: a
    program in `DEV_SERVERS`, a `DEV_SERVER_PAIRS` (program, subcommand), a `runserver`
    argument, or uvicorn with `--reload`. agent: cmd or a program in `AGENTS`. shell:
    cmd in `SHELLS` (a login shell's leading '-' ignored). daemon: pid 1, parent 1, or
    a systemd `.service` unit. Otherwise unknown.
    """
    programs, args = invocation(cmd, cmdline)
    words = [a for a in args if not a.startswith("-")]
    # The subcommand, looking past `run` so `npm run dev` reads like `npm dev`.
    subs = {words[0]} if words else set()
    if words[:1] == ["run"] and len(words) > 1:
        subs.add(words[1])
    last = programs[-1]
    name = cmd.lower().lstrip("-")
    if is_kernel_thread(pid, ppid):
        return KERNEL
    if TEST_RUNNERS.intersection(programs) or (last in TEST_LAUNCHERS and "test" in subs):
        return TEST
    if (
        DEV_SERVERS.intersection(programs)
        or any((last, sub) in DEV_SERVER_PAIRS for sub in subs)
        or "runserver" in words
        or ("uvicorn" in programs and "--reload" in args)
    ):
        return DEV_SERVER
    if name in AGENTS or AGENTS.intersection(programs):
        return AGENT
    if name in SHELLS:
        return SHELL
    if pid == 1 or ppid == 1 or (systemd_unit or "").endswith(".service"):
        return DAEMON
    return UNKNOWN


_DIGITS = re.compile(r"\d+")
CMD_PATTERN_MAX = 128


def cmd_pattern(cmd: str, cmdline: str | None) -> str:
    """A normalized command: cmd plus the basename of the first non-flag argument.

    Each run of digits becomes "N" (so pids, ports, versions and worker numbers do not
    split one pattern into many); capped at `CMD_PATTERN_MAX` characters.
    """
    args = cmdline.split()[1:] if cmdline else []
    first = next((a for a in args if not a.startswith("-")), None)
    text = cmd if first is None else f"{cmd} {posixpath.basename(first.rstrip('/')) or first}"
    return _DIGITS.sub("N", text)[:CMD_PATTERN_MAX]


def is_protected(cmd: str, *, pid: int, ppid: int) -> bool:
    """True for init (pid 1), kernel threads, `PROTECTED_COMMANDS` and `systemd-*`."""
    return (
        pid == 1
        or is_kernel_thread(pid, ppid)
        or cmd in PROTECTED_COMMANDS
        or cmd.startswith("systemd-")
    )


def _rate(first: Any, last: Any, elapsed: float | None) -> float | None:
    if first is None or last is None or not elapsed:
        return None
    return float(last - first) / elapsed


def _ticks(s: Sample) -> int:
    return int(s["utime_ticks"]) + int(s["stime_ticks"])


def features_of(
    samples: Sequence[Sample],
    *,
    children: int,
    cores: int | None = None,
    memory_bytes: int | None = None,
    clk_tck: int = 100,
) -> Row:
    """The feature row of one process from its samples (oldest first, at least one).

    `children` is its child count in the latest snapshot (used when the sample's own
    `child_count` is null). `cores`, `memory_bytes` and `clk_tck` describe the host.
    """
    if not samples:
        raise ValueError("features_of needs at least one sample")
    first, last = samples[0], samples[-1]
    elapsed = (last["sample_ts"] - first["sample_ts"]).total_seconds() if len(samples) > 1 else 0
    span: float | None = elapsed if elapsed > 0 else None
    cmd, cmdline = str(last["cmd"]), last.get("cmdline")
    pid, ppid, state = int(last["pid"]), int(last["ppid"]), str(last["state"])
    rule = classify(cmd, cmdline, pid=pid, ppid=ppid, systemd_unit=last.get("systemd_unit"))
    age_s = int(last["age_s"])

    cpu_values = [float(s["cpu_percent"]) for s in samples if s.get("cpu_percent") is not None]
    cpu_avg = sum(cpu_values) / len(cpu_values) if cpu_values else None
    if last.get("cpu_percent") is not None:
        cpu_instant = float(last["cpu_percent"])
    elif len(samples) > 1:
        prev = samples[-2]
        step = (last["sample_ts"] - prev["sample_ts"]).total_seconds()
        cpu_instant = (_ticks(last) - _ticks(prev)) / clk_tck / step * 100.0 if step > 0 else 0.0
    else:
        cpu_instant = 0.0
    delta_ticks = _ticks(last) - _ticks(first) if len(samples) > 1 else None

    rss = int(last["rss_bytes"])
    if last.get("mem_percent") is not None:
        mem_pct = float(last["mem_percent"])
    elif memory_bytes:
        mem_pct = rss / memory_bytes * 100.0
    else:
        raise ValueError(f"pid {pid}: no mem_percent and no host memory size to derive it")

    read_rate = _rate(first.get("io_read_bytes"), last.get("io_read_bytes"), span)
    write_rate = _rate(first.get("io_write_bytes"), last.get("io_write_bytes"), span)
    io_known = read_rate is not None and write_rate is not None
    io_active = bool(read_rate or write_rate) if io_known else None

    listen, estab = last.get("tcp_listen_count"), last.get("tcp_estab_count")
    child_count = last.get("child_count")
    return {
        "session_id": last["session_id"],
        "pid": pid,
        "start_id": last["start_id"],
        "feature_ts": last["sample_ts"],
        "proc_type": rule.proc_type,
        "proc_type_conf": rule.confidence,
        "age_s": age_s,
        "age_ratio": age_s / rule.expected_lifetime_s,
        "age_bucket": age_bucket(age_s),
        "cpu_pct_instant": cpu_instant,
        "cpu_pct_avg": cpu_avg,
        "cpu_delta_ticks": delta_ticks,
        "cpu_utilization": cpu_avg / (100.0 * cores) if cpu_avg is not None and cores else None,
        "cpu_stalled": delta_ticks == 0 if delta_ticks is not None else None,
        "cpu_spinning": None,
        "mem_mb": rss / MIB,
        "mem_pct": mem_pct,
        "mem_growth_rate": _rate(first["rss_bytes"], last["rss_bytes"], span),
        "mem_bucket": mem_bucket(rss),
        "io_read_rate": read_rate,
        "io_write_rate": write_rate,
        "io_active": io_active,
        "io_idle": (not io_active) if io_active is not None else None,
        "is_orphan": ppid == 1,
        "is_zombie": state == "Z",
        "is_stopped": state in ("T", "t"),
        "is_sleeping": state == "S",
        "is_running": state == "R",
        "has_tty": last.get("tty") is not None,
        "tty_active": None,
        "tty_dead": None,
        "has_network": (listen + estab > 0) if listen is not None and estab is not None else None,
        "is_listener": listen > 0 if listen is not None else None,
        "has_children": (child_count if child_count is not None else children) > 0,
        "children_active": None,
        "cmd_pattern": cmd_pattern(cmd, cmdline),
        "cmd_category": rule.cmd_category,
        "is_protected": is_protected(cmd, pid=pid, ppid=ppid),
        "prior_decision": None,
        "prior_decision_count": None,
    }


def derive_features(
    samples: Iterable[Sample],
    *,
    cores: int | None = None,
    memory_bytes: int | None = None,
    clk_tck: int = 100,
) -> list[Row]:
    """One `proc_features` row per `(pid, start_id)` in the sample rows of one session.

    Rows come out ordered by pid then start_id. `cores` feeds `cpu_utilization` (None
    when unknown); `memory_bytes` is used for `mem_pct` only when a sample lacks
    `mem_percent`; `clk_tck` converts ticks when `cpu_percent` must be derived.
    """
    groups: dict[tuple[int, str], list[Sample]] = defaultdict(list)
    parents: Counter[tuple[int, int]] = Counter()
    for s in samples:
        groups[(int(s["pid"]), str(s["start_id"]))].append(s)
        parents[(int(s["sample_seq"]), int(s["ppid"]))] += 1
    out = []
    for key in sorted(groups):
        group = sorted(groups[key], key=lambda s: (s["sample_seq"], s["sample_ts"]))
        latest = group[-1]
        out.append(
            features_of(
                group,
                children=parents[(int(latest["sample_seq"]), key[0])],
                cores=cores,
                memory_bytes=memory_bytes,
                clk_tck=clk_tck,
            )
        )
    return out
