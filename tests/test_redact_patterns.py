"""Secret-pattern rules (telelake.redact): examples, negatives, engines agree, idempotence."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telelake.redact.patterns import (
    Example,
    Rule,
    RuleError,
    hash_marker,
    load_rules,
    may_match,
    pattern_marker,
    patterns_of,
    redact_array,
    redact_text,
)

RULES = load_rules()
EXAMPLES = [(rule, ex) for rule in RULES for ex in rule.examples]
NEGATIVES = [(rule, neg) for rule in RULES for neg in rule.negatives]

# Ordinary command lines that must survive unchanged.
ORDINARY = [
    "python -m http.server 8080",
    "ls -la /tmp",
    "docker run -p 8080:80 -v /data:/data nginx:latest",
    "ssh -p 2222 user@example.com",
    "scp -P 2222 file.txt user@host:/tmp/",
    "git commit -m 'fix: handle token refresh'",
    "git push origin main",
    "git clone git@github.com:org/repo.git",
    "curl -sSL https://example.com:8443/install.sh -o /tmp/install.sh",
    "curl -H 'Accept: application/json' https://api.example.com/v1/items?page=2",
    "kubectl get pods -n kube-system -o wide",
    "psql -h localhost -p 5432 -U postgres app",
    "mysql -u root -p app",
    "redis-server --port 6379 --protected-mode yes",
    "node /usr/lib/node_modules/npm/bin/npm-cli.js run build",
    "npm install --save-dev typescript",
    "pip install --index-url https://pypi.org/simple requests==2.32.0",
    "/usr/sbin/sshd -D -o PasswordAuthentication=no",
    "/lib/systemd/systemd-journald",
    "/usr/bin/dbus-daemon --system --address=systemd: --nofork --nopidfile",
    "postgres: checkpointer",
    "postgres -D /var/lib/postgresql/data -c max_connections=200",
    "java -Xmx2g -jar app.jar --server.port=8080",
    "gunicorn app:app --bind 0.0.0.0:8000 --workers 4",
    "uvicorn main:app --host 0.0.0.0 --port 8000 --reload",
    "python train.py --max-tokens 4096 --lr 3e-4 --batch-size 32",
    "env TOKENIZERS_PARALLELISM=false python run.py",
    "bash -c cd /work && make test",
    "PWD=/home/user OLDPWD=/tmp bash",
    "docker login --password-stdin -u me registry.example.com",
    "vault kv get -field=username secret/app",
    "openssl req -new -key server.key -out server.csr",
    "openssl rsa -in k.pem -passin env:KEY_PASS",
    "gpg --export-secret-keys --armor ABCD1234",
    "ssh-keygen -t ed25519 -f ~/.ssh/id_ed25519 -C me@example.com",
    "cat ~/.ssh/id_rsa.pub",
    "grep -rn 'password' src/",
    "rg --type py token_count",
    "tmux new-session -d -s main",
    "sleep 3600",
    "top -b -n 1",
    "python -m pytest -q tests/test_tokens.py -k secret_name",
    "aws s3 cp s3://bucket/key.txt . --region us-east-1",
    "gcloud auth application-default login",
    "make -j8 CFLAGS=-O2",
    "find / -name '*.key' -newer /tmp/stamp",
    "rsync -avz -e 'ssh -p 2222' src/ host:dst/",
    "sshpass -f /run/pwfile ssh host",
    "ffmpeg -i in.mp4 -c:v libx264 -preset slow out.mp4",
    "chromium --user-data-dir=/tmp/prof --remote-debugging-port=9222",
]


# --- rules file ------------------------------------------------------------------------


def test_rule_set_size() -> None:
    assert len(RULES) >= 25
    assert len({r.name for r in RULES}) == len(RULES)
    assert len(EXAMPLES) >= 60, f"only {len(EXAMPLES)} secret forms"


@pytest.mark.parametrize(
    ("rule", "example"), EXAMPLES, ids=[f"{r.name}-{i}" for i, (r, _) in enumerate(EXAMPLES)]
)
def test_example_redacted(rule: Rule, example: Example) -> None:
    text, secret = example.text, example.secret
    out, fired = redact_text(text, RULES)
    assert secret not in out
    assert rule.marker in out
    assert rule.name in fired
    # the rule alone is enough too
    alone, _ = redact_text(text, [rule])
    assert secret not in alone
    assert redact_array(pa.array([text]), RULES).to_pylist() == [out]


@pytest.mark.parametrize(
    ("rule", "negative"), NEGATIVES, ids=[f"{r.name}-{i}" for i, (r, _) in enumerate(NEGATIVES)]
)
def test_negative_survives(rule: Rule, negative: str) -> None:
    assert redact_text(negative, RULES) == (negative, [])


def test_secret_group_keeps_context() -> None:
    out, fired = redact_text("psql --password=hunter2 postgres://bob:pw1@db/app", RULES)
    assert out == (
        "psql --password=[REDACTED:pattern:cli_secret_flag] "
        "postgres://bob:[REDACTED:pattern:url_password]@db/app"
    )
    assert fired == ["url_password", "cli_secret_flag"]


def test_ordinary_commands_survive() -> None:
    changed = [(c, redact_text(c, RULES)[0]) for c in ORDINARY if redact_text(c, RULES)[1]]
    assert changed == [], f"false positives: {changed}"


# --- engines ---------------------------------------------------------------------------

_FRAGMENTS = [ex.text for _, ex in EXAMPLES] + [n for _, n in NEGATIVES] + ORDINARY[:10]
_FRAGMENTS += [pattern_marker("x"), "[", "]", "=", ":", "@", '"', "'", " ", "\n", "-p", "--"]
_TEXT = st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=8)), max_size=6).map(
    "".join
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_TEXT)
def test_idempotent(text: str) -> None:
    once, _ = redact_text(text, RULES)
    assert redact_text(once, RULES) == (once, [])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.none(), _TEXT), max_size=8))
def test_array_matches_text(values: list[str | None]) -> None:
    got = redact_array(pa.array(values, pa.string()), RULES).to_pylist()
    want = [None if v is None else redact_text(v, RULES)[0] for v in values]
    assert got == want


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.none(), _TEXT), max_size=12))
def test_joined_scan_never_misses_a_string_a_rule_matches(values: list[str | None]) -> None:
    """The one-scan shortcut may say "maybe" too often, never "no" wrongly.

    Oracle: Python's `re`, rule by rule, string by string (not RE2, not joined)."""
    patterns = patterns_of(tuple(RULES))  # the prefilters the scan uses
    some = any(rule.regex.search(v) for rule in RULES for v in values if v is not None)
    if some:
        assert may_match(pa.array(values, pa.string()), patterns)
    if all(v is None for v in values):
        assert not may_match(pa.array(values, pa.string()), patterns)


@pytest.mark.parametrize("rule,example", EXAMPLES, ids=lambda x: getattr(x, "name", ""))
def test_joined_scan_finds_every_example_wherever_it_sits(rule: Rule, example: Example) -> None:
    # Anchored rules (`^`, a text edge) must see each string's start, not only the first.
    patterns = patterns_of(tuple(RULES))
    for values in ([example.text], ["ls -la", example.text], [example.text, None, "ls"]):
        assert may_match(pa.array(values), patterns), (rule.name, values)


def test_joined_scan_says_no_for_ordinary_batches() -> None:
    # What makes it worth having: a batch of ordinary command lines is cleared at once.
    patterns = patterns_of(tuple(RULES))
    assert not may_match(pa.array(ORDINARY * 3), patterns)
    assert may_match(pa.array([*ORDINARY, "x", "AKIAIOSFODNN7EXAMPLE"]), patterns)


def test_array_keeps_nulls_and_type() -> None:
    arr = pa.array([None, "PASSWORD=x", ""], pa.large_string())
    out = redact_array(arr, RULES)
    assert out.type == pa.large_string()
    assert out.to_pylist() == [None, "PASSWORD=[REDACTED:pattern:secret_assignment]", ""]


def test_hash_marker() -> None:
    a = hash_marker("alice", b"k1")
    assert a == hash_marker("alice", b"k1")
    assert a != hash_marker("alice", b"k2")
    assert a != hash_marker("bob", b"k1")
    m = re.fullmatch(r"\[REDACTED:hash:([0-9a-f]+)\]", a)
    assert m is not None and len(m.group(1)) == 12


# --- validation ------------------------------------------------------------------------


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(body, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[[rules]]\nname = 'bad_re'\npattern = '(unclosed'\n", "rule 'bad_re': pattern does not"),
        ("[[rules]]\nname = 'look'\npattern = '(?<=a)b'\n", "rule 'look': pattern uses"),
        ("[[rules]]\nname = 'extra'\npattern = 'a'\ncolour = 1\n", "rule 'extra': unknown key"),
        ("[[rules]]\nname = 'Bad Name'\npattern = 'a'\n", "lower_snake"),
        ("[[rules]]\nname = 'empty'\npattern = 'a*'\n", "rule 'empty': pattern matches the empty"),
        (
            "[[rules]]\nname = 'grp'\npattern = '(a)'\nsecret_group = 2\n",
            "rule 'grp': 'secret_group'",
        ),
        (
            "[[rules]]\nname = 'cover'\npattern = 'x(a)(b)'\nsecret_group = 2\n"
            "examples = [{ text = 'xab', secret = 'b' }]\n",
            "rule 'cover': with secret_group the capture groups must cover",
        ),
        (
            "[[rules]]\nname = 'ex'\npattern = 'a'\nexamples = [{ text = 'a', secret = 'z' }]\n",
            "rule 'ex': example secret",
        ),
        ("[[rules]]\nname = 'dup'\npattern = 'a'\n[[rules]]\nname = 'dup'\npattern = 'b'\n", "dup"),
        ("other = 1\n", "unknown top-level key"),
        ("[[rules]\n", "not valid TOML"),
        ("[[rules]]\nname = 'pf'\npattern = 'ab'\nprefilter = ''\n", "rule 'pf': 'prefilter'"),
        ("[[rules]]\nname = 'pf'\npattern = 'ab'\nprefilter = 'x*'\n", "prefilter matches the"),
        (
            "[[rules]]\nname = 'pf'\npattern = 'ab'\nprefilter = 'z'\n"
            "examples = [{ text = 'ab', secret = 'ab' }]\n",
            "rule 'pf': prefilter misses example 'ab'",
        ),
    ],
)
def test_bad_rules_refused(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(RuleError, match=re.escape(message)):
        load_rules(_write(tmp_path, body))


def test_custom_rules_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "[[rules]]\nname = 'pin'\npattern = '(pin=)([0-9]{4})'\nsecret_group = 2\n"
        "examples = [{ text = 'pin=1234', secret = '1234' }]\n",
    )
    rules = load_rules(path)
    assert redact_text("a pin=1234 b", rules) == ("a pin=[REDACTED:pattern:pin] b", ["pin"])
