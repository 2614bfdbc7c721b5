"""Credentials in command lines (issue 18, part 6): every secret-bearing line of a held-out
corpus loses its secret and keeps what makes it useful; ordinary lines survive unchanged.

Corpora: `fixtures/secret_cmdlines.toml` (secret, and the program, host or user that must
stay) and `fixtures/ordinary_cmdlines.txt` (no secret; `!` marks a known false positive).
The property test builds ordinary command lines from realistic parts (programs, flags
used as they are meant, paths, numbers, host names, URLs without credentials, harmless
KEY=value pairs) and checks each survives both engines unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import datagen
import telelake
from telelake.collect.sampler import Sampler
from telelake.export import export_table
from telelake.redact.patterns import load_rules, redact_array, redact_text

RULES = tuple(load_rules())
FIXTURES = Path(__file__).parent / "fixtures"
SECRET_LINES: list[dict[str, Any]] = tomllib.loads(
    (FIXTURES / "secret_cmdlines.toml").read_text(encoding="utf-8")
)["lines"]
_RAW = (FIXTURES / "ordinary_cmdlines.txt").read_text(encoding="utf-8").splitlines()
ORDINARY = [line for line in _RAW if line and line[0] not in "#!"]
KNOWN_FALSE_POSITIVES = [line[2:] for line in _RAW if line.startswith("! ")]


def test_the_corpora_are_large() -> None:
    assert len(SECRET_LINES) >= 100 and len(ORDINARY) >= 150
    assert len({e["secret"] for e in SECRET_LINES}) == len(SECRET_LINES)
    assert all(e["keep"] for e in SECRET_LINES)


@pytest.mark.parametrize("entry", SECRET_LINES, ids=lambda e: e["text"][:40])
def test_a_secret_bearing_line_loses_its_secret_and_keeps_the_rest(entry: dict[str, Any]) -> None:
    out, fired = redact_text(entry["text"], RULES)
    assert entry["secret"] not in out and fired
    for part in entry["keep"]:
        assert part in out, (part, out)
    assert "[REDACTED:pattern:" in out
    assert redact_array(pa.array([entry["text"]]), RULES).to_pylist() == [out]


def test_the_secret_corpus_never_reaches_disk(tmp_path: Path) -> None:
    with telelake.open(tmp_path / "s") as store:
        rows = [dict(r) for r in datagen.generate(7)["proc_samples"][: len(SECRET_LINES)]]
        assert len(rows) == len(SECRET_LINES)
        for row, entry in zip(rows, SECRET_LINES, strict=True):
            row["cmdline"] = entry["text"]
        store.write("proc_samples", rows)
        store.fold()
        export_table(store, "proc_samples", "csv")
    secrets = [e["secret"] for e in SECRET_LINES]
    for path in (p for p in tmp_path.rglob("*") if p.is_file()):
        blobs = [path.read_bytes()]
        if path.suffix == ".parquet":
            blobs.append(json.dumps(pq.read_table(path).to_pylist(), default=str).encode())
        for secret in secrets:
            assert all(secret.encode() not in b for b in blobs), (path, secret)


def test_ordinary_lines_survive_unchanged() -> None:
    changed = [line for line in ORDINARY if redact_text(line, RULES)[1]]
    assert changed == []
    assert redact_array(pa.array(ORDINARY), RULES).to_pylist() == ORDINARY


def test_known_false_positives_are_still_false_positives() -> None:
    # Listed in the fixture and counted in the rate: one fixed must leave the list.
    assert KNOWN_FALSE_POSITIVES
    assert all(redact_text(line, RULES)[1] for line in KNOWN_FALSE_POSITIVES)


def test_false_positive_rate_on_this_machine_and_the_fixture(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = Sampler().snapshot("fp", 0, dt.datetime.now(dt.UTC))
    machine = sorted({r["cmdline"] for r in rows if r.get("cmdline")})
    corpus = machine + ORDINARY + KNOWN_FALSE_POSITIVES
    hits = [line for line in corpus if redact_text(line, RULES)[1]]
    rate = len(hits) / len(corpus)
    with capsys.disabled():
        print(f"\nredaction false positives: {len(hits)}/{len(corpus)} = {rate:.2%}")
    assert rate < 0.02


# -- property: ordinary command lines, generated --------------------------------------

PROGRAMS = [
    "ls", "cat", "grep -rn", "python3", "python3 -m pytest", "node", "java -jar", "ssh",
    "scp", "rsync -avz", "git log", "git push origin", "docker run --rm", "docker ps -a",
    "kubectl get", "make", "gcc", "tar -czf", "find", "systemctl status", "journalctl -u",
    "nginx -g", "postgres -D", "psql -h", "mysql -u root -p", "redis-server", "sleep",
    "bash -c", "ffmpeg -i", "curl -sSL", "wget -q", "htop", "top -b -n", "tmux attach -t",
]  # fmt: skip
WORDS = [
    "token", "password", "secret", "key", "build", "release", "main", "origin", "status",
    "prod", "test", "data", "logs", "worker", "config", "default", "alice", "root", "app",
]  # fmt: skip
FLAGS = [
    "-v", "-q", "-la", "-f", "-n", "-h", "-d", "-it", "--rm", "--verbose", "--dry-run",
    "--force", "--json", "--no-cache", "-x", "--help", "-o", "-r", "--all", "-p",
]  # fmt: skip
VALUE_FLAGS = [
    "--port", "-p", "--host", "--workers", "--timeout", "-n", "--config", "--log-level",
    "--name", "--region", "--max-tokens", "--output", "-o", "-C",
]  # fmt: skip
ENV_NAMES = ["PATH", "HOME", "LANG", "DEBUG", "PORT", "NODE_ENV", "TZ", "WORKERS", "LOG_LEVEL"]

segment = st.from_regex(r"[a-z][a-z0-9_.-]{0,10}", fullmatch=True)
paths = st.lists(segment, min_size=1, max_size=5).map(lambda p: "/" + "/".join(p))
numbers = st.integers(0, 65535).map(str)
hosts = st.builds(
    lambda a, b, tld: f"{a}.{b}.{tld}", segment, segment, st.sampled_from(["com", "net", "io"])
)
ports = st.builds(lambda h, p: f"{h}:{p}", hosts, numbers)
urls = st.builds(
    lambda scheme, hp, path: f"{scheme}://{hp}{path}",
    st.sampled_from(["http", "https", "ssh", "postgres", "redis"]),
    ports | hosts,
    paths,
)
values = st.one_of(segment, numbers, paths, hosts, ports, st.sampled_from(WORDS))
arguments = st.one_of(
    st.sampled_from(FLAGS),
    st.builds(lambda f, v: f"{f} {v}", st.sampled_from(VALUE_FLAGS), values),
    st.builds(
        lambda f, v: f"{f}={v}", st.sampled_from([f for f in VALUE_FLAGS if "--" in f]), values
    ),
    paths,
    numbers,
    hosts,
    ports,
    urls,
    st.sampled_from(WORDS),
    st.builds(lambda user, host: f"{user}@{host}", segment, hosts),
    # A user alone (`user:password` after -u is a credential, not an ordinary line).
    st.builds(lambda flag, user: f"{flag} {user}", st.sampled_from(["-u", "--user"]), segment),
)
command_lines = st.builds(
    lambda env, program, args: " ".join([*env, program, *args]),
    st.lists(st.builds(lambda n, v: f"{n}={v}", st.sampled_from(ENV_NAMES), values), max_size=2),
    st.sampled_from(PROGRAMS),
    st.lists(arguments, max_size=8),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(command_lines, min_size=1, max_size=5))
def test_generated_ordinary_command_lines_survive_unchanged(lines: list[str]) -> None:
    for line in lines:
        assert redact_text(line, RULES) == (line, []), line
    assert redact_array(pa.array(lines), RULES).to_pylist() == lines
