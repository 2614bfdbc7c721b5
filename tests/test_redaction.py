"""Redaction as a property of the store: policies, keys, config, errors, every tier, scan.

Expected values come from `redaction_oracle` (plain Python per value), never from the
Arrow kernels the store runs. The acceptance test writes a corpus of secrets (every
example of every rule in rules.toml) through the lake (WAL, folded and direct Parquet),
the sql tier (SQLite), the log tier (NDJSON), exports and backups, then reads every byte
under the root: none of the secrets may be there, compressed or not.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import datagen
import redaction_oracle
import telelake
from telelake.export import export_table
from telelake.redact import policy, scan
from telelake.redact.patterns import load_rules
from telelake.schema.load import load_schema

RULES = load_rules()
# Every example of every rule: (text written, secret that must not reach disk).
CORPUS = [(e.text, e.secret) for r in RULES for e in r.examples]
# Secrets long enough that finding their bytes anywhere means a leak, not chance (a
# run of consecutive byte values, as in a ramp of integers, spells "abcdefgh...").
_RAMP = bytes(range(256)).decode("latin-1")
SECRETS = sorted({s for _, s in CORPUS if len(s) >= 8 and s not in _RAMP})
ORDINARY = [n for r in RULES for n in r.negatives if "\n" not in n]
KEY = b"k" * 32
SEED = 20260115


def test_the_corpus_is_large_and_distinct() -> None:
    assert len(CORPUS) >= 60
    assert len(SECRETS) >= 60
    assert len(ORDINARY) >= 40


# -- policies, against the oracle ----------------------------------------------------

paths = st.lists(
    st.sampled_from(
        ["", "home", "Users", "root", "ann", "src", "3.11.7", "v2", "py3.11", "~", "a.b"]
    ),
    max_size=7,
).map(lambda parts: "/".join(parts))
values = st.one_of(st.none(), paths, st.text(max_size=30))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(values, max_size=12),
    st.sampled_from(["truncate:1", "truncate:3", "normalize", "hash", "drop"]),
)
@example(["0/\n", "/a/b/c/d\ne"], "truncate:1")  # a newline after the kept part was kept
def test_column_policies_equal_the_per_value_oracle(column: list[str | None], name: str) -> None:
    got = policy.apply(policy.parse_policy(name), pa.array(column, pa.string()), KEY)
    assert got.to_pylist() == [redaction_oracle.expected(name, v, KEY) for v in column]
    assert got.type == pa.string()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([t for t, _ in CORPUS] + ORDINARY + [None]), max_size=8))
def test_pattern_policy_equals_the_oracle_on_the_corpus(column: list[str | None]) -> None:
    got = policy.apply(policy.Policy("pattern"), pa.array(column, pa.string()), KEY)
    assert got.to_pylist() == [redaction_oracle.expected("pattern", v, KEY) for v in column]


def test_hash_markers_are_keyed_stable_and_idempotent() -> None:
    arr = pa.array(["alice", "bob", "alice", None], pa.string())
    one = policy.apply(policy.Policy("hash"), arr, KEY).to_pylist()
    other = policy.apply(policy.Policy("hash"), arr, b"o" * 32).to_pylist()
    assert one[0] == one[2] != one[1] and one[3] is None  # group-bys and joins still work
    assert one[0] != other[0]  # another store's key: another marker
    assert all(m.startswith("[REDACTED:hash:") and len(m) == 28 for m in one[:3])
    again = policy.apply(policy.Policy("hash"), pa.array(one, pa.string()), KEY).to_pylist()
    assert again == one  # replaying redacted rows changes nothing


def test_json_columns_keep_valid_json_and_untouched_text() -> None:
    text, secret = next((t, s) for t, s in CORPUS if "ghp_" in t)
    doc = json.dumps({"argv": ["git", "push", text], "nested": {"k": text}, "n": 3})
    out = policy.redact_json(doc)
    assert secret not in out
    parsed = json.loads(out)  # still JSON, same shape
    assert parsed["n"] == 3 and parsed["argv"][:2] == ["git", "push"]
    plain = '{ "a" : [1, 2],  "b": "ordinary text" }'
    assert policy.redact_json(plain) == plain  # nothing to redact: byte-identical


json_leaves = st.one_of(
    st.sampled_from([t for t, _ in CORPUS] + ORDINARY),
    st.text(max_size=20),
    st.integers(),
    st.booleans(),
    st.none(),
)
json_keys = st.one_of(
    st.sampled_from(["token", "password", "api_key", "note", "argv", "Authorization"]),
    st.text(max_size=8),
)
json_docs = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_keys, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(json_docs, st.booleans())
def test_json_redaction_equals_the_per_string_oracle(doc: Any, ascii_only: bool) -> None:
    """Secrets as values, as keyed values ({"token": ...}), in lists, escaped or not."""
    text = json.dumps(doc, ensure_ascii=ascii_only)
    assert policy.redact_json(text) == redaction_oracle.expected("pattern", text, KEY, is_json=True)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.none()
        | st.tuples(json_docs, st.booleans()).map(lambda d: json.dumps(d[0], ensure_ascii=d[1])),
        max_size=6,
    ),
    st.sampled_from(["x", "{", '"\\ud800"']),
    st.booleans(),
)
def test_json_documents_redacted_together_equal_the_oracle_one_by_one(
    texts: list[str | None], odd: str, add_odd: bool
) -> None:
    """A batch of documents (a replay, an Arrow write) is scanned at once: each comes out
    as the oracle redacts it alone, including text that is not JSON in the batch."""
    if add_odd:
        texts = [*texts, odd]
    got = policy.apply_values(policy.Policy("pattern"), texts, KEY, is_json=True)
    expected = [
        None if t is None else redaction_oracle.expected("pattern", t, KEY, is_json=True)
        for t in texts
    ]
    assert got == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ('{ name = "n", type = "int64", redact = "hash" }', "string and json columns only"),
        ('{ name = "j", type = "json", redact = "hash" }', "json column takes"),
        ('{ name = "s", type = "string", redact = "truncate" }', "truncate:N"),
        ('{ name = "s", type = "string", redact = "scramble" }', "redact must be one of"),
    ],
)
def test_bad_policies_are_refused_naming_the_column(
    tmp_path: Path, spec: str, message: str
) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        f'name = "s"\nversion = "1.0.0"\n[tables.t]\ntime = "ts"\ncolumns = [\n'
        f'  {{ name = "ts", type = "timestamp" }},\n  {spec},\n]\n'
    )
    with pytest.raises(telelake.SchemaError, match=message) as err:
        load_schema(path)
    assert "table 't', column" in str(err.value)


# -- the store: key, config, errors ----------------------------------------------------


def sample_rows(n: int) -> list[dict[str, Any]]:
    """Valid proc_samples rows with distinct keys (from the test data generator)."""
    base = datagen.generate(SEED)["proc_samples"]
    rows = [dict(r) for r in base[:n]]
    while len(rows) < n:  # more: the same rows again, as later samples (another key)
        more = [dict(r) for r in base[: n - len(rows)]]
        for r in more:
            r["sample_seq"] += 1000 * (len(rows) // len(base))
            r["sample_ts"] += dt.timedelta(microseconds=len(rows) // len(base))
        rows += more
    return rows


def stored_cmdlines(store: telelake.Store) -> dict[tuple[Any, ...], str | None]:
    rows = store.sql("SELECT session_id, pid, sample_ts, cmdline FROM proc_samples").rows()
    return {tuple(r[:3]): r[3] for r in rows}


def test_the_store_key_is_private_and_stable(tmp_path: Path) -> None:
    root = tmp_path / "s"
    telelake.open(root).close()
    key_file = root / "_metadata" / "redaction.key"
    key = key_file.read_bytes()
    assert len(key) == 32 and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    telelake.open(root).close()
    assert key_file.read_bytes() == key
    telelake.open(tmp_path / "t").close()
    assert (tmp_path / "t" / "_metadata" / "redaction.key").read_bytes() != key


def write_config(root: Path, section: dict[str, Any]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({"telemetry_redaction": section}))


def test_store_config_turns_redaction_off_or_changes_a_column(tmp_path: Path) -> None:
    text = CORPUS[0][0]
    rows = sample_rows(2)
    rows[0]["cmdline"] = rows[1]["cmdline"] = text

    off = tmp_path / "off"
    write_config(off, {"enabled": False})
    with telelake.open(off) as store:
        assert store.redaction("proc_samples") == {}
        store.write("proc_samples", rows)
        assert set(stored_cmdlines(store).values()) == {text}

    hashed = tmp_path / "hashed"
    write_config(hashed, {"columns": {"proc_samples.cmdline": "hash", "proc_samples.cwd": "off"}})
    with telelake.open(hashed) as store:
        assert store.redaction("proc_samples") == {"cmdline": "hash", "exe": "normalize"}
        store.write("proc_samples", rows)
        key = redaction_oracle.store_key(hashed)
        assert set(stored_cmdlines(store).values()) == {
            redaction_oracle.expected("hash", text, key)
        }
        cwds = store.sql("SELECT cwd FROM proc_samples ORDER BY pid").rows()
        assert sorted(c for (c,) in cwds) == sorted(r["cwd"] for r in rows)  # "off": as written


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"proc_samples.nope": "hash"}, "no such column"),
        ({"proc_samples.pid": "hash"}, "only string and json"),
        ({"proc_samples.cmdline": "scramble"}, "redact must be one of"),
    ],
)
def test_bad_store_config_is_refused_naming_file_and_column(
    tmp_path: Path, columns: dict[str, str], message: str
) -> None:
    root = tmp_path / "s"
    write_config(root, {"columns": columns})
    with pytest.raises(telelake.StoreError, match=message) as err:
        telelake.open(root)
    assert "config.json" in str(err.value) and next(iter(columns)) in str(err.value)


def test_errors_never_echo_a_secret(tmp_path: Path) -> None:
    text, secret = next((t, s) for t, s in CORPUS if "AKIA" in s)
    with telelake.open(tmp_path / "pt") as store:
        bad = sample_rows(1)
        bad[0]["cmdline"] = text.encode()  # bytes in a redacted string column
        with pytest.raises(telelake.ValidationError) as err:
            store.write("proc_samples", bad)
        assert secret not in str(err.value) and "withheld" in str(err.value)
        bad = sample_rows(1)
        bad[0]["cmd"] = secret.encode()  # a column with no policy: the message quotes it
        with pytest.raises(telelake.ValidationError) as err:
            store.write("proc_samples", bad)
        assert "column 'cmd'" in str(err.value)
        assert secret not in str(err.value)  # ... after the pattern rules
        assert "[REDACTED:pattern:" in str(err.value)
    with telelake.open(tmp_path / "ar", schema="agent_runs") as store:
        with pytest.raises(telelake.ValidationError) as err:
            store.write(
                "events",
                [{"run_id": "r", "event_type": "x", "timestamp": "t", "payload_json": "{" + text}],
            )
        assert secret not in str(err.value) and "payload_json" in str(err.value)


# -- every tier, then every byte -------------------------------------------------------


def share(items: list[Any], parts: int) -> list[list[Any]]:
    return [items[i::parts] for i in range(parts)]


def run_texts(texts: list[str]) -> list[tuple[str, str, str]]:
    """The texts three by three (the last padded), one agent run each."""
    padded = texts + texts[: -len(texts) % 3]
    return [(padded[i], padded[i + 1], padded[i + 2]) for i in range(0, len(padded), 3)]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root holding a process_triage and an agent_runs store fed the whole corpus."""
    base = tmp_path_factory.mktemp("redaction")
    texts = [t for t, _ in CORPUS]
    with telelake.open(base / "pt") as store:
        rows = sample_rows(len(texts) + len(ORDINARY))
        for row, text in zip(rows, texts + ORDINARY, strict=False):
            row["cmdline"] = text
        wal_a, folded, direct = share(rows, 3)
        store.write("proc_samples", folded)
        store.fold()  # these rows now sit in Parquet
        with store.writer("proc_samples", flush_interval=None) as writer:
            writer.write_many(direct)
            writer.flush()  # straight to Parquet
        store.write("proc_samples", wal_a)  # these stay in the WAL segment
        runs = datagen.generate(SEED)["runs"][:3]
        for run, text in zip(runs, texts, strict=False):
            run["hostname"] = text
            run["username"] = text
        store.write("runs", runs)
        for fmt in ("csv", "json", "ndjson", "parquet"):
            export_table(store, "proc_samples", fmt)
        # Closing folds the WAL: keep a copy of the live segment, as a crash would.
        segments = list((base / "pt" / "_wal" / "proc_samples").glob("*.wal"))
        assert segments
        for i, seg in enumerate(segments):
            (base / f"live-segment-{i}.wal").write_bytes(seg.read_bytes())
    with telelake.open(base / "ar", schema="agent_runs") as store:
        client = store.run_client()
        for i, (a, b, c) in enumerate(run_texts(texts)):  # each text in the sql tier and the log
            run = client.start_run("agent", input_summary=a, git_repo=b)
            run.event("step", {"argv": ["tool", a, b, c], "note": c})
            run.end(
                "failure" if i % 2 else "success",
                metrics={"token": b},
                output_summary=c,
                error_summary=a,
            )
        store.write(
            "commits",
            [{"commit_hash": f"c{i}", "message": t} for i, t in enumerate(texts)],
        )
        for table in ("agent_runs", "events", "commits"):
            export_table(store, table, "csv")
        store.backup()
    return base


def test_no_secret_reaches_any_byte_under_the_root(written: Path) -> None:
    files = [p for p in written.rglob("*") if p.is_file()]
    kinds = {p.suffix for p in files}
    assert {".wal", ".parquet", ".ndjson", ".sqlite", ".csv", ".json"} <= kinds
    for path in files:
        data = path.read_bytes()
        texts = [data]
        if path.suffix == ".parquet":  # compressed pages: look at the values too
            table = pq.read_table(path)
            texts.append(json.dumps(table.to_pylist(), default=str).encode())
        for secret in SECRETS:
            for blob in texts:
                assert secret.encode() not in blob, (path, secret[:4] + "…")


def test_ordinary_command_lines_survive_unchanged(written: Path) -> None:
    with telelake.open(written / "pt") as store:
        kept = set(stored_cmdlines(store).values())
    assert set(ORDINARY) <= kept


def test_every_corpus_text_was_written_and_redacted(written: Path) -> None:
    with telelake.open(written / "pt") as store:
        kept = set(stored_cmdlines(store).values())
    want = {redaction_oracle.expected("pattern", t, b"") for t, _ in CORPUS}
    assert want <= kept
    assert all("[REDACTED:pattern:" in w for w in want)
    con = sqlite3.connect(written / "ar" / "db" / "telemetry.sqlite")
    runs = len(run_texts([t for t, _ in CORPUS]))
    assert con.execute("SELECT COUNT(*) FROM agent_runs").fetchone()[0] == runs
    con.close()


def test_scan_finds_nothing_in_the_redacted_stores(written: Path) -> None:
    report = scan.scan(written)
    assert report.files >= 10 and report.strings > 1000
    assert report.clean, [str(f) for f in report.findings[:5]]


def test_scan_finds_a_secret_in_every_kind_of_file(tmp_path: Path) -> None:
    text, secret = next((t, s) for t, s in CORPUS if "ghp_" in s)
    (tmp_path / "notes.ndjson").write_text(
        json.dumps({"cmd": "ls"}) + "\n" + json.dumps({"c": text})
    )
    pq.write_table(pa.table({"c": ["ls -la", text]}), tmp_path / "x.parquet", compression="zstd")
    con = sqlite3.connect(tmp_path / "db.sqlite")
    con.execute("CREATE TABLE t (a TEXT, b INTEGER)")
    con.executemany("INSERT INTO t VALUES (?, ?)", [("fine", 1), (text, 2)])
    con.commit()
    con.close()
    report = scan.scan(tmp_path)
    places = {(f.path.name, f.where) for f in report.findings}
    assert ("x.parquet", "column 'c', row 1") in places  # read as values: compression hides nothing
    assert ("db.sqlite", "table 't', column 'a', row 1") in places
    assert any(name == "notes.ndjson" for name, _ in places)
    assert all(secret not in str(f) for f in report.findings)


def test_cli_scan_exit_code_and_output_never_show_the_secret(written: Path, tmp_path: Path) -> None:
    def run(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "telelake", "redact", "scan", str(path), "--quiet"],
            capture_output=True,
            text=True,
            timeout=300,
        )

    clean = run(written / "ar")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "nothing secret-looking found" in clean.stdout
    text, secret = CORPUS[5]
    (tmp_path / "leak.log").write_text("started\n" + text + "\n")
    leak = run(tmp_path)
    assert leak.returncode == 1
    assert "leak.log" in leak.stdout and secret not in leak.stdout + leak.stderr


def test_text_re2_cannot_encode_still_gets_redacted() -> None:
    """A lone surrogate (an undecodable byte of a command line) skips the RE2 prefilter."""
    from telelake.redact.patterns import redact_text

    text, secret = next((t, s) for t, s in CORPUS if "ghp_" in s)
    out, fired = redact_text("\udcff " + text, RULES)
    assert secret not in out and fired
    assert redact_text("ls \udcff -la", RULES) == ("ls \udcff -la", [])


# -- config-file forms (YAML `key: value`, INI `key = value`) ---------------------------

# Secrets in the forms of ~/.aws/credentials, ~/.pypirc, a YAML config: text a command
# line (`python -c`), an agent's summary or an event payload may carry whole.
CONFIG_FORMS = [
    ("db:\n  host: db.internal\n  password: Yaml-hunter2\n", "Yaml-hunter2"),
    ("[default]\naws_secret_access_key = shortAwsSecret\n", "shortAwsSecret"),
    ("[pypi]\nusername = __token__\npassword = Ini-s3cr3t-pw\n", "Ini-s3cr3t-pw"),
    ("[github]\ntoken = tok-1234567\n", "tok-1234567"),
]


def test_config_file_forms_never_reach_disk(tmp_path: Path) -> None:
    """Issue 19.12: Parquet, exports, the NDJSON log, SQLite and backups kept them."""
    texts = [t for t, _ in CONFIG_FORMS]
    with telelake.open(tmp_path / "pt") as store:
        rows = sample_rows(len(texts))
        for row, text in zip(rows, texts, strict=True):
            row["cmdline"] = "python -c " + text
        store.write("proc_samples", rows)
        store.fold()
        export_table(store, "proc_samples", "json")
    with telelake.open(tmp_path / "ar", schema="agent_runs") as store:
        client = store.run_client()
        for text in texts:
            run = client.start_run("agent", input_summary=text)
            run.event("config", {"file": text})
            run.end("success", output_summary=text)
        export_table(store, "agent_runs", "csv")
        store.backup()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {".parquet", ".ndjson", ".sqlite", ".json", ".csv"} <= {p.suffix for p in files}
    for path in files:
        blobs = [path.read_bytes()]
        if path.suffix == ".parquet":
            blobs.append(json.dumps(pq.read_table(path).to_pylist(), default=str).encode())
        for _, secret in CONFIG_FORMS:
            assert all(secret.encode() not in b for b in blobs), (path, secret)
    with telelake.open(tmp_path / "ar", schema="agent_runs") as store:
        kept = {r[0] for r in store.sql("SELECT input_summary FROM agent_runs").rows()}
    assert "db:\n  host: db.internal\n  password: [REDACTED:pattern:config_secret_value]\n" in kept


def test_scan_reports_config_file_forms_written_unredacted(tmp_path: Path) -> None:
    root = tmp_path / "off"
    write_config(root, {"enabled": False})
    with telelake.open(root, schema="agent_runs") as store:
        client = store.run_client()
        for text, _ in CONFIG_FORMS:
            client.start_run("agent", input_summary=text).end("success")
    report = scan.scan(root)
    sqlite_rows = {f.where for f in report.findings if f.path.suffix == ".sqlite"}
    assert len(sqlite_rows) == len(CONFIG_FORMS)
    assert any(f.path.suffix == ".ndjson" for f in report.findings)  # the JSON-escaped log
    assert all("config_secret_value" in f.rules for f in report.findings)
