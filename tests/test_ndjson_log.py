"""The NDJSON log format: encoding, locked appends from many processes, torn lines, kill -9.

Expectations come from the records the test itself chose, and files are also checked by
splitting the raw bytes and parsing them with `json` alone, so the reader is never only
compared with itself. Crashes are real where that is possible (SIGKILL of a child that is
appending) and simulated byte-exactly where a real one cannot be aimed (a cut mid-line).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telelake.errors import StorageFullError, StoreError, TelelakeError
from telelake.log import ndjson
from telelake.log.ndjson import LogFormatError, LogWriter

TIMEOUT = 60  # seconds for any child process; the whole file runs in a few seconds


def raw_records(path: Path) -> list[Any]:
    """Parse a log with `json` alone: every line must be complete and valid."""
    data = path.read_bytes()
    assert data.endswith(b"\n"), "the file must end with a complete line"
    return [json.loads(line) for line in data[:-1].split(b"\n")]


def inode(path: Path) -> int:
    return path.stat().st_ino


# -- encoding ----------------------------------------------------------------------------


def test_encode_is_one_compact_utf8_line() -> None:
    line = ndjson.encode({"record_type": "event", "msg": 'é "q"\nnext', "n": [1, None, True]})
    assert line == '{"record_type":"event","msg":"é \\"q\\"\\nnext","n":[1,null,true]}\n'.encode()
    assert line.count(b"\n") == 1


def test_datetimes_become_utc_iso_strings_with_plus_00_00() -> None:
    minus2 = timezone(timedelta(hours=-2))
    line = ndjson.encode({"at": datetime(2024, 1, 1, 23, 30, 0, 5, tzinfo=minus2)})
    assert json.loads(line) == {"at": "2024-01-02T01:30:00.000005+00:00"}
    assert json.loads(ndjson.encode({"day": date(2024, 2, 29)})) == {"day": "2024-02-29"}
    with pytest.raises(LogFormatError, match="naive datetime") as info:
        ndjson.encode({"run": {"start": datetime(2024, 1, 1)}})
    assert info.value.key == "run.start"


def test_unserialisable_value_error_names_the_key() -> None:
    with pytest.raises(LogFormatError) as info:
        ndjson.encode({"record_type": "event", "payload": {"items": [1, object()]}})
    err = info.value
    assert isinstance(err, ValueError) and isinstance(err, TelelakeError)
    assert err.key == "payload.items[1]"
    assert "'payload.items[1]'" in str(err) and "object" in str(err)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_refused(bad: float) -> None:
    with pytest.raises(LogFormatError, match="NaN or Infinity") as info:
        ndjson.encode({"ok": 1.5, "metrics": {"p99": [0.1, bad]}})
    assert info.value.key == "metrics.p99[1]"


def test_non_string_keys_and_non_mapping_records_are_refused() -> None:
    # json.dumps would write {"1": ...}, which would not read back as written.
    with pytest.raises(LogFormatError, match="keys must be strings") as info:
        ndjson.encode({"counts": {1: "a"}})
    assert info.value.key == "counts"
    with pytest.raises(LogFormatError, match="mapping"):
        ndjson.encode([1, 2])  # type: ignore[arg-type]
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(LogFormatError, match="contains itself"):
        ndjson.encode(loop)


flat_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)  # past 64 bits too
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
flat_records = st.dictionaries(
    st.text(), flat_scalars | st.dictionaries(st.text(), flat_scalars, max_size=4), max_size=5
)


@settings(max_examples=300, deadline=None)
@given(record=flat_records)
def test_flat_records_encode_as_the_json_module_writes_them(record: dict[str, Any]) -> None:
    # The store's records take a fast encoder; the json module is the reference.
    line = ndjson.encode(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == record
    reference = json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    if "e-0" not in reference:  # json pads exponents (1e-07), the fast encoder does not
        assert line == (reference + "\n").encode()


def test_flat_records_with_nan_or_a_lone_surrogate_name_the_key() -> None:
    with pytest.raises(LogFormatError, match="NaN or Infinity") as info:
        ndjson.encode({"record_type": "event", "payload": {"v": float("inf")}})
    assert info.value.key == "payload.v"
    with pytest.raises(LogFormatError, match="lone surrogate") as info:
        ndjson.encode({"record_type": "event", "payload": {"note": "a\ud800b"}})
    assert info.value.key == "payload.note"
    assert json.loads(ndjson.encode({"big": 2**80})) == {"big": 2**80}


def test_a_bad_record_in_append_many_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "e.ndjson"
    with LogWriter(path) as w:
        w.append({"n": 0})
        with pytest.raises(LogFormatError) as info:
            w.append_many([{"n": 1}, {"n": float("nan")}, {"n": 3}])
        assert info.value.key == "n"
    assert raw_records(path) == [{"n": 0}]


# -- names -------------------------------------------------------------------------------


def test_daily_path_uses_the_utc_date() -> None:
    late = datetime(2024, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-2)))
    assert ndjson.daily_path(Path("/x/raw"), late) == Path("/x/raw/events_20250101.ndjson")
    early = datetime(2024, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=5)))
    assert ndjson.daily_path(Path("r"), early, prefix="runs") == Path("r/runs_20240229.ndjson")
    with pytest.raises(LogFormatError, match="timezone-aware"):
        ndjson.daily_path(Path("r"), datetime(2024, 1, 1))
    with pytest.raises(LogFormatError, match="prefix"):
        ndjson.daily_path(Path("r"), late, prefix="../etc")


def test_files_lists_daily_files_by_date(tmp_path: Path) -> None:
    for name in [
        "events_20240110.ndjson",
        "events_20231231.ndjson",
        "events_20240102.ndjson",
        ".events_20240103.ndjson.1a2b.tmp",  # a temp file
        "events_20240104.ndjson.bak",
        "events_2024010.ndjson",
        "events_20241399.ndjson",  # not a date
        "runs_20240101.ndjson",
        "events_x_20240101.ndjson",
    ]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "events_20240105.ndjson").mkdir()
    assert [p.name for p in ndjson.files(tmp_path)] == [
        "events_20231231.ndjson",
        "events_20240102.ndjson",
        "events_20240110.ndjson",
    ]
    assert [p.name for p in ndjson.files(tmp_path, prefix="runs")] == ["runs_20240101.ndjson"]
    assert ndjson.files(tmp_path / "missing") == []


# -- round trip --------------------------------------------------------------------------

tricky_text = st.text() | st.sampled_from(
    ["line\nbreak", 'quote " and \\ backslash', "\u2028\u2029", "é中🙂", "\r\n\t\x00", ""]
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | tricky_text,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(tricky_text, kids, max_size=4),
    max_leaves=20,
)
json_records = st.lists(st.dictionaries(tricky_text, json_values, max_size=5), max_size=8)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(records=json_records, split=st.integers(min_value=0, max_value=8))
def test_appended_records_read_back_equal_and_in_order(
    tmp_path: Path, records: list[dict[str, Any]], split: int
) -> None:
    path = tmp_path / f"{uuid.uuid4().hex}.ndjson"
    with LogWriter(path, fsync=False) as w:
        for r in records[:split]:
            w.append(r)
        assert w.append_many(records[split:]) == len(records[split:])
    result = ndjson.read(path)
    assert result.problems == []
    assert result.records == list(enumerate(records, start=1))
    if records:
        assert raw_records(path) == records
    else:
        assert path.read_bytes() == b""


# -- reading damaged files ---------------------------------------------------------------


def _reference_record(line: bytes) -> Any:
    """What the json module reads from one line (None: not a record)."""

    def refuse(name: str) -> Any:
        raise ValueError(name)

    try:
        value = json.loads(line.decode("utf-8"), parse_constant=refuse)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


near_json_lines = st.lists(
    st.sampled_from(
        [
            '{"a":',
            '{"b":{"c":',
            "1",
            "-0",
            "1e400",
            "2.5E-3",
            "18446744073709551615",
            "123456789012345678901234567890",
            '"x"',
            '"\\ud800"',
            '"\\u00e9"',
            '"é"',
            "NaN",
            "[",
            "]",
            "}",
            "}}",
            ",",
            " ",
            "true",
            "null",
            "\x00",
            "\ufeff",
        ]
    ),
    min_size=1,
    max_size=8,
).map(lambda parts: "".join(parts).encode("utf-8", "surrogatepass"))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.lists(
        st.dictionaries(
            st.text(max_size=3),
            st.integers(min_value=-(2**80), max_value=2**80)
            | st.floats(allow_nan=False)
            | st.text(max_size=4)
            | st.lists(st.integers(min_value=2**63, max_value=2**70), max_size=2),
            max_size=3,
        ).map(lambda d: json.dumps(d).encode())  # ASCII: surrogates as \\u escapes
        | near_json_lines
        | st.just(b"\xff{}"),
        min_size=1,
        max_size=6,
    )
)
def test_lines_read_as_the_json_module_reads_them(tmp_path: Path, lines: list[bytes]) -> None:
    # The reader takes a fast parser; the json module (NaN refused) is the reference.
    path = tmp_path / f"{uuid.uuid4().hex}.ndjson"
    lines = [line.replace(b"\n", b" ") for line in lines]
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    expected = [
        (n, rec)
        for n, line in enumerate(lines, start=1)
        if line.strip() and (rec := _reference_record(line)) is not None
    ]
    result = ndjson.read(path)
    assert result.records == expected
    for n, rec in result.records:  # same types too: a huge int stays an int
        assert repr(rec) == repr(dict(expected)[n])
    assert len(result.problems) == sum(1 for line in lines if line.strip()) - len(expected)


def test_reader_reports_bad_lines_and_skips_blank_ones(tmp_path: Path) -> None:
    path = tmp_path / "e.ndjson"
    path.write_bytes(
        b'{"a":1}\n'  # 1
        b"\n"  # 2 blank
        b"  \t\n"  # 3 blank
        b"[1,2]\n"  # 4
        b'{"b":\n'  # 5
        b'"str"\n'  # 6
        b'{"c":NaN}\n'  # 7
        b'{"d":"\xff"}\n'  # 8
        b'{"e":2}\n'  # 9
    )
    result = ndjson.read(path)
    assert result.records == [(1, {"a": 1}), (9, {"e": 2})]
    assert [n for n, _ in result.problems] == [4, 5, 6, 7, 8]
    problems = dict(result.problems)
    assert problems[4] == problems[6] == "not a JSON object"
    assert problems[5].startswith("not valid JSON: ")
    assert problems[7] == "not valid JSON: NaN is not allowed"
    assert problems[8].startswith("not valid JSON: bad UTF-8")
    assert not result.ok


def test_a_torn_last_line_is_skipped_then_isolated_by_the_next_append(tmp_path: Path) -> None:
    """A writer killed mid-line, at every byte of the line it was writing."""
    first = [{"record_type": "run", "run_id": f"r{i}", "ok": True} for i in range(3)]
    torn = {"record_type": "event", "run_id": "r9", "msg": 'ünïcode "x"', "n": 12345}
    after = {"record_type": "event", "run_id": "r10"}
    line = ndjson.encode(torn)
    for cut in range(1, len(line)):  # len(line) itself is a complete, acknowledged line
        path = tmp_path / f"cut{cut}.ndjson"
        with LogWriter(path) as w:
            w.append_many(first)
        with open(path, "ab") as f:
            f.write(line[:cut])  # what a killed writer leaves behind

        before = ndjson.read(path)
        assert before.records == list(enumerate(first, start=1))
        assert before.problems == [(4, "truncated last line (no newline)")]

        with LogWriter(path) as w:
            w.append(after)
        assert path.read_bytes() == b"".join(map(ndjson.encode, first)) + line[:cut] + b"\n" + (
            ndjson.encode(after)
        )
        healed = ndjson.read(path)
        if cut == len(line) - 1:
            # Only the newline was missing: the unacknowledged record surfaces, once.
            assert healed.records == [*enumerate(first, start=1), (4, torn), (5, after)]
            assert healed.problems == []
        else:
            assert healed.records == [*enumerate(first, start=1), (5, after)]
            assert len(healed.problems) == 1
            number, problem = healed.problems[0]
            assert number == 4 and problem.startswith("not valid JSON: ")


def test_a_reader_waits_for_an_append_in_progress(tmp_path: Path) -> None:
    path = tmp_path / "e.ndjson"
    with LogWriter(path) as w:
        w.append({"n": 0})
    line = ndjson.encode({"n": 1})
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    fcntl.flock(fd, fcntl.LOCK_EX)  # play a writer halfway through its line
    os.write(fd, line[:4])
    results: list[ndjson.ReadResult] = []
    reader = threading.Thread(target=lambda: results.append(ndjson.read(path)))
    reader.start()
    reader.join(0.3)
    assert reader.is_alive(), "the reader must not look at the file mid-append"
    os.write(fd, line[4:])
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    reader.join(TIMEOUT)
    assert results[0].records == [(1, {"n": 0}), (2, {"n": 1})]
    assert results[0].problems == []


# -- the writer's locking, partial writes and failures -----------------------------------


def test_append_waits_for_another_holder_of_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "e.ndjson"
    path.touch()
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another file description: it excludes us like a process
    done = threading.Event()

    def work() -> None:
        with LogWriter(path) as w:
            w.append({"n": 1})
        done.set()

    t = threading.Thread(target=work)
    t.start()
    assert not done.wait(0.3)
    assert path.read_bytes() == b""
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    assert done.wait(TIMEOUT)
    t.join()
    assert raw_records(path) == [{"n": 1}]


def test_partial_writes_are_finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "e.ndjson"
    path.touch()
    ino, real_write = inode(path), os.write

    def dribble(fd: int, data: Any) -> int:
        if os.fstat(fd).st_ino == ino:
            return real_write(fd, bytes(data[:7]))  # the kernel may write less than asked
        return real_write(fd, data)

    records = [{"pad": "é" * 5000, "n": i} for i in range(3)]
    monkeypatch.setattr(os, "write", dribble)
    with LogWriter(path) as w:
        w.append(records[0])
        w.append_many(records[1:])
    monkeypatch.undo()
    assert raw_records(path) == records


def test_disk_full_mid_line_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "e.ndjson"
    with LogWriter(path) as w:
        w.append({"n": 0})
    before = path.read_bytes()
    ino, real_write, calls = inode(path), os.write, [0]

    def fill_up(fd: int, data: Any) -> int:
        if os.fstat(fd).st_ino != ino:
            return real_write(fd, data)
        calls[0] += 1
        if calls[0] == 1:
            return real_write(fd, bytes(data[:10]))  # part of the line lands...
        raise OSError(errno.ENOSPC, "No space left on device")  # ...then the disk is full

    with LogWriter(path) as w:
        monkeypatch.setattr(os, "write", fill_up)
        with pytest.raises(StorageFullError, match="not acknowledged"):
            w.append({"n": 1, "pad": "x" * 100})
        monkeypatch.undo()
        assert path.read_bytes() == before
        w.append({"n": 2})  # space is back: the same writer carries on
    assert raw_records(path) == [{"n": 0}, {"n": 2}]


def test_a_failed_fsync_closes_the_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "e.ndjson"
    w = LogWriter(path)
    ino, real_fsync = inode(path), os.fsync

    def failing(fd: int) -> None:
        if os.fstat(fd).st_ino == ino:
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(StoreError, match="fsync failed") as info:
        w.append({"n": 1})
    assert not isinstance(info.value, StorageFullError)
    monkeypatch.undo()
    assert w.closed
    # Never retry an fsync and believe it: the writer stays unusable.
    with pytest.raises(StoreError, match="unusable"):
        w.append({"n": 2})
    w.close()


def test_fsync_once_per_append_call_unless_disabled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "e.ndjson"
    path.touch()
    ino, real_fsync, synced = inode(path), os.fsync, [0]

    def counting(fd: int) -> None:
        synced[0] += os.fstat(fd).st_ino == ino
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting)
    with LogWriter(path) as w:
        for i in range(3):
            w.append({"n": i})
            assert synced[0] == i + 1
        w.append_many([{"n": i} for i in range(3, 8)])
        assert synced[0] == 4
    with LogWriter(path, fsync=False) as w:
        w.append({"n": 8})
    assert synced[0] == 4
    assert [r["n"] for r in raw_records(path)] == list(range(9))


def test_a_writer_refuses_to_append_from_another_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LogWriter(tmp_path / "e.ndjson") as w:
        pid = os.getpid()
        monkeypatch.setattr(os, "getpid", lambda: pid + 1)  # as seen in a forked child
        with pytest.raises(StoreError, match="open a new one in each process"):
            w.append({"n": 1})
    monkeypatch.undo()
    with pytest.raises(StoreError, match="closed"):
        w.append({"n": 1})


# -- real processes ----------------------------------------------------------------------

SIZES = [0, 10, 300, 4000, 70_000, 1, 900, 20]  # one in eight records is past 64 KiB


def pad(proc: int, seq: int) -> str:
    size = SIZES[(seq * 3 + proc) % len(SIZES)]
    return (f"p{proc}é" * size)[:size]  # multi-byte text: more bytes than characters


APPENDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from telelake.log.ndjson import LogWriter
    path, proc, go = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    SIZES = {sizes!r}
    def pad(proc, seq):
        size = SIZES[(seq * 3 + proc) % len(SIZES)]
        return (f"p{{proc}}é" * size)[:size]
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.001)
    with LogWriter(path) as w:
        for seq in range(300):
            w.append({{"record_type": "event", "proc": proc, "seq": seq, "pad": pad(proc, seq)}})
    """
).format(sizes=SIZES)


def test_four_processes_appending_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "raw" / "events_20240101.ndjson"
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(path), str(proc), str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for proc in range(4)
    ]
    for child in children:  # all imported and waiting, so the appends really overlap
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
    go.touch()
    for child in children:
        assert child.wait(TIMEOUT) == 0

    records = raw_records(path)  # every line complete and valid JSON
    assert len(records) == 4 * 300
    for proc in range(4):
        mine = [r for r in records if r["proc"] == proc]
        assert [r["seq"] for r in mine] == list(range(300))
        assert all(r["pad"] == pad(proc, r["seq"]) for r in mine)
    result = ndjson.read(path)
    assert result.problems == []
    assert [r for _, r in result.records] == records


KILLED = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from telelake.log.ndjson import LogWriter
    path, round_ = Path(sys.argv[1]), int(sys.argv[2])
    with LogWriter(path) as w:
        seq = 0
        while True:
            size = (seq * 37) % 3000 + (70_000 if seq % 5 == 0 else 0)
            w.append({"record_type": "event", "round": round_, "seq": seq, "pad": "x" * size})
            print(seq, flush=True)  # acknowledged: append returned after its fsync
            seq += 1
    """
)


def test_kill_9_keeps_every_acknowledged_record(tmp_path: Path) -> None:
    path = tmp_path / "events_20240101.ndjson"
    rng = random.Random(1234)
    for round_ in range(2):  # the second round appends after the previous round's crash
        child = subprocess.Popen(
            [sys.executable, "-c", KILLED, str(path), str(round_)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        acked = -1
        target = rng.randrange(20, 150)
        while acked < target:
            out = child.stdout.readline()
            assert out.endswith("\n"), "the appender died on its own"
            acked = int(out)
        child.send_signal(signal.SIGKILL)
        rest = child.stdout.read()  # acks printed before the kill still count
        child.wait(TIMEOUT)
        assert child.returncode == -signal.SIGKILL
        for out in rest.splitlines(keepends=True):
            if out.endswith("\n"):
                acked = int(out)

        result = ndjson.read(path)
        seqs = [r["seq"] for _, r in result.records if r["round"] == round_]
        # Each acknowledged record exactly once, in order; at most the one in flight more.
        assert seqs == list(range(len(seqs)))
        assert acked + 1 <= len(seqs) <= acked + 2
        # At most one torn line per crash: the newest is last and truncated, and every
        # earlier one now sits alone on its own line.
        assert len(result.problems) <= round_ + 1
        last_line = max(n for n, _ in [*result.records, *result.problems])
        for number, problem in result.problems:
            if problem == "truncated last line (no newline)":
                assert number == last_line
            else:
                assert problem.startswith("not valid JSON: ")


def test_any_mapping_is_a_record() -> None:
    from types import MappingProxyType

    line = ndjson.encode(MappingProxyType({"record_type": "event", "n": 1}))
    assert json.loads(line) == {"record_type": "event", "n": 1}


def test_take_back_removes_its_own_lines_only_while_they_end_the_file(tmp_path: Path) -> None:
    path = tmp_path / "log.ndjson"
    with LogWriter(path) as one, LogWriter(path) as two:
        one.append({"n": 0})
        before = path.read_bytes()
        span = one.append_undoable([{"n": 1}, {"n": 2}])
        assert one.take_back(span)
        assert path.read_bytes() == before
        span = one.append_undoable([{"n": 3}])
        two.append({"n": 4})  # another writer's line after ours: ours must stay
        assert not one.take_back(span)
        one.append({"n": 5})
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [{"n": 0}, {"n": 3}, {"n": 4}, {"n": 5}]
