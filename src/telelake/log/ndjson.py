"""NDJSON event logs: one JSON object per line, appended by many processes at once.

Layout: `<dir>/<prefix>_YYYYMMDD.ndjson` (the UTC date), UTF-8, one compact JSON object per
line, every line ending in `\\n`. By convention each object carries a `record_type` ("run"
or "event"); this module does not enforce it, so it stays a reusable file format.

What the format promises:

- Cooperating writers never interleave: each append holds an exclusive `flock` on the file
  while it writes, so a line stays whole whatever its size (O_APPEND alone does not cover a
  write the kernel performs in pieces, nor the second call that finishes a partial write).
- With `fsync=True` (the default) an append returns only once its line is on disk, so an
  acknowledged record survives kill -9 and power loss.
- A writer killed mid-line leaves a fragment without a newline. Readers skip it and report
  "truncated last line (no newline)". The next append first writes a `\\n`, so the fragment
  stays alone on its line: from then on it is reported as "not valid JSON: ...", or, if
  only its newline was missing, read as a record (it was never acknowledged, so it appears
  at most once, which is all an unacknowledged record is promised).
- Readers take a shared lock just long enough to read the file size, so an append in
  progress is never mistaken for a torn line; only a real crash shows up as one.

Datetimes are written as ISO 8601 in UTC with a `+00:00` offset (what `isoformat()` gives
and `datetime.fromisoformat()` reads back on every Python). Naive datetimes are refused:
neither their instant nor their UTC date can be known.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from telelake import durable
from telelake.errors import StorageFullError, StoreError, TelelakeError

__all__ = [
    "DEFAULT_PREFIX",
    "INVALID_JSON",
    "NOT_OBJECT",
    "SUFFIX",
    "TRUNCATED",
    "Line",
    "LogFormatError",
    "LogWriter",
    "ReadResult",
    "Record",
    "daily_path",
    "encode",
    "files",
    "read",
    "read_all",
    "scan",
]

Record = dict[str, Any]

SUFFIX = ".ndjson"
DEFAULT_PREFIX = "events"
# Problem texts a reader reports; INVALID_JSON is followed by ": <why>".
TRUNCATED = "truncated last line (no newline)"
NOT_OBJECT = "not a JSON object"
INVALID_JSON = "not valid JSON"

_FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
# A prefix is a plain name part: no path separators, and no leading dot (hidden names are
# reserved for temp files, which no glob may match).
_PREFIX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_DAY_FORMAT = "%Y%m%d"


class LogFormatError(TelelakeError, ValueError):
    """A value cannot go into the log as asked; nothing was written.

    `key` names where the bad value is inside the record (`payload.items[2]`), or is None
    when the problem is not about one value (a naive datetime given to `daily_path`...).
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


# -- names -----------------------------------------------------------------------------


def _check_prefix(prefix: str) -> None:
    if not _PREFIX_RE.fullmatch(prefix):
        raise LogFormatError(
            f"log prefix {prefix!r} must be letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )


def daily_path(directory: Path, when: datetime, prefix: str = DEFAULT_PREFIX) -> Path:
    """The file for `when`'s UTC date: `<directory>/<prefix>_YYYYMMDD.ndjson`.

    `when` must be timezone-aware: a naive datetime (`datetime.now()`) would silently pick
    the local date, so one event could land in two different files depending on the host.
    """
    _check_prefix(prefix)
    if when.tzinfo is None or when.utcoffset() is None:
        raise LogFormatError(
            f"daily_path needs a timezone-aware datetime, got naive {when.isoformat()}; "
            "use datetime.now(timezone.utc)"
        )
    day = when.astimezone(UTC).strftime(_DAY_FORMAT)
    return Path(directory) / f"{prefix}_{day}{SUFFIX}"


def files(directory: Path, prefix: str = DEFAULT_PREFIX) -> list[Path]:
    """The daily files of `prefix` in `directory`, oldest date first.

    Only exact `<prefix>_YYYYMMDD.ndjson` names holding a real date count: temp files,
    backups (`.bak`) and other prefixes are left out. A missing directory has no files.
    """
    _check_prefix(prefix)
    pattern = re.compile(rf"{re.escape(prefix)}_(\d{{8}}){re.escape(SUFFIX)}")
    found: list[tuple[str, Path]] = []
    try:
        entries = list(Path(directory).iterdir())
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StoreError(f"log directory {directory}: cannot list ({exc.strerror})") from exc
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None or not entry.is_file():
            continue
        try:
            datetime.strptime(m.group(1), _DAY_FORMAT)
        except ValueError:
            continue  # e.g. events_20241399.ndjson: not a file this module wrote
        found.append((m.group(1), entry))
    # YYYYMMDD sorts chronologically as text.
    return [p for _, p in sorted(found)]


# -- encoding --------------------------------------------------------------------------


def _where(path: str) -> str:
    return f"key {path!r}" if path else "record"


def _plain(value: Any, path: str, active: set[int]) -> Any:
    """`value` as plain JSON types, checked; raises LogFormatError naming the key."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LogFormatError(
                f"{_where(path)}: {value!r} cannot be stored (JSON has no NaN or Infinity)",
                key=path,
            )
        return value
    if isinstance(value, datetime):  # before `date`: a datetime is a date too
        if value.tzinfo is None or value.utcoffset() is None:
            raise LogFormatError(
                f"{_where(path)}: naive datetime {value.isoformat()} has no timezone; "
                "use an aware datetime (e.g. datetime.now(timezone.utc))",
                key=path,
            )
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping | list | tuple):
        if id(value) in active:
            raise LogFormatError(f"{_where(path)}: the value contains itself", key=path)
        active.add(id(value))
        try:
            if isinstance(value, Mapping):
                out: dict[str, Any] = {}
                for k, v in value.items():
                    if not isinstance(k, str):
                        # json.dumps would quietly turn 1 into "1": the record would not
                        # read back as it was written.
                        raise LogFormatError(
                            f"{_where(path)}: object key {k!r} is a {type(k).__name__}, "
                            "JSON object keys must be strings",
                            key=path or None,
                        )
                    out[k] = _plain(v, f"{path}.{k}" if path else k, active)
                return out
            return [_plain(v, f"{path}[{i}]", active) for i, v in enumerate(value)]
        finally:
            active.discard(id(value))
    raise LogFormatError(
        f"{_where(path)}: a {type(value).__name__} cannot be stored as JSON "
        "(use str, int, float, bool, None, datetime, list or dict)",
        key=path or None,
    )


def _find_unencodable(value: Any, path: str) -> str | None:
    """The key of the first string UTF-8 cannot encode (a lone surrogate), if any."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            child = f"{path}.{k}" if path else k
            if _find_unencodable(k, child) is not None:
                return child
            found = _find_unencodable(v, child)
            if found is not None:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = _find_unencodable(v, f"{path}[{i}]")
            if found is not None:
                return found
    return None


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _scalar(value: Any) -> bool:
    """True for a str, int, bool, None or finite float (what JSON holds as it is)."""
    kind = type(value)
    return kind in _SCALARS and (kind is not float or math.isfinite(value))


def _flat(record: Mapping[str, Any]) -> bool:
    """True for str-keyed scalars, or str-keyed mappings of them (what the store logs)."""
    for key, value in record.items():
        if type(key) is not str:
            return False
        if type(value) is dict:
            for k, v in value.items():
                if type(k) is not str or not _scalar(v):
                    return False
        elif not _scalar(value):
            return False
    return True


# Built once: json.dumps with options builds a new encoder per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def encode(record: Mapping[str, Any]) -> bytes:
    """One record as a compact UTF-8 JSON line ending in `\\n`.

    Accepts str, int, float (finite), bool, None, aware datetimes (UTC `+00:00` ISO 8601),
    dates (YYYY-MM-DD), lists, tuples and mappings with string keys. Anything else raises
    LogFormatError (a ValueError) naming the key, e.g. `payload.items[2]`.
    """
    if not isinstance(record, Mapping):
        raise LogFormatError(
            f"a log record must be a mapping (a JSON object), got a {type(record).__name__}"
        )
    if _flat(record):
        # The common shape (str keys, finite scalars, one level of nesting), in C: orjson
        # writes the same compact UTF-8 as the json module, ten times faster (floats may
        # differ in exponent padding, 1e-7 for 1e-07: the same number read back).
        try:
            return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        except orjson.JSONEncodeError:
            pass  # an int beyond 64 bits, a lone surrogate...: the careful pass says which
    # Anything else takes the careful pass, which converts what it can and names the key
    # of what it cannot (json.dumps would turn a key 1 into "1", quietly).
    plain: Any = record
    try:
        plain = _plain(record, "", set())
        # JSON escapes control characters, so the only raw b"\n" is the terminator.
        text = _ENCODER.encode(plain)
    except RecursionError as exc:
        raise LogFormatError("record is nested too deeply to store") from exc
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError as exc:
        key = _find_unencodable(plain, "")
        raise LogFormatError(
            f"{_where(key or '')}: text holds a lone surrogate, which is not valid UTF-8",
            key=key,
        ) from exc


# -- writing ---------------------------------------------------------------------------


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte, finishing partial writes (a signal or a big buffer can cause one)."""
    n = os.write(fd, data)
    if n == len(data):
        return  # the usual case: one call
    view = memoryview(data)
    while True:
        if n <= 0:
            raise OSError(errno.EIO, "write made no progress")
        view = view[n:]
        if not view:
            return
        n = os.write(fd, view)


def _failure(path: Path, action: str, exc: OSError) -> StoreError:
    why = exc.strerror or str(exc)
    if exc.errno in _FULL_ERRNOS:
        return StorageFullError(
            f"log {path}: no space left while {action} ({why}); this append was not "
            "acknowledged, earlier records are safe; free space and append again"
        )
    return StoreError(f"log {path}: {action} failed ({why}); this append was not acknowledged")


class LogWriter:
    """Appends records to one NDJSON file, safely alongside other processes.

    Each append takes an exclusive `flock`, heals a torn last line, writes its line(s) in
    full and (with `fsync=True`) fsyncs before returning. Safe to share between threads;
    after a fork, open a new writer in the child (see `append`).

    The writer stays on the file it was opened on; to follow the day, open
    `daily_path(dir, now)` per batch or when the date changes.
    """

    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        # flock belongs to the open file description, which all threads of this process
        # share: it cannot keep them apart, so this mutex does.
        self._mutex = threading.Lock()
        self._pid = os.getpid()
        self._end = -1  # file size right after our last append (-1: none yet)
        self._broken: str | None = None
        try:
            durable.ensure_dir(self.path.parent)
            self._fd = durable.open_file(self.path, os.O_RDWR | os.O_APPEND)
        except OSError as exc:
            raise _failure(self.path, "opening", exc) from exc
        if fsync:
            # Done on every open, not only by the creator: the process that created the
            # file may have died before making its name durable, and our fsynced records
            # would be lost with the name.
            try:
                durable.fsync_dir(self.path.parent)
            except OSError as exc:
                os.close(self._fd)
                raise _failure(self.path, "syncing its directory", exc) from exc

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def owned(self) -> bool:
        """True in the process that opened the writer (a forked child must open its own)."""
        return os.getpid() == self._pid

    @property
    def closed(self) -> bool:
        """True once `close` was called (or a failed fsync closed the writer)."""
        return self._fd < 0

    def close(self) -> None:
        """Close the file; closing twice is fine."""
        with self._mutex:
            if self._fd >= 0:
                fd, self._fd = self._fd, -1
                os.close(fd)

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record; with fsync=True it is on disk when this returns.

        Raises LogFormatError (nothing written) for a value JSON cannot hold,
        StorageFullError when the disk is full and StoreError for other I/O failures; in
        every error case the record was not acknowledged.
        """
        self._append(encode(record))

    def append_many(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Append several records under one lock and one fsync; returns how many.

        All records are encoded before anything is written, so one bad record means none
        of the call is written. A crash mid-call can keep a prefix of the lines.
        """
        lines = [encode(r) for r in records]
        if lines:
            self._append(b"".join(lines))
        return len(lines)

    def append_undoable(self, records: Iterable[Mapping[str, Any]]) -> tuple[int, int]:
        """`append_many`, returning the byte span the lines took, for `take_back`."""
        lines = [encode(r) for r in records]
        return self._append(b"".join(lines)) if lines else (0, 0)

    def take_back(self, span: tuple[int, int]) -> bool:
        """Remove the lines an `append_undoable` wrote, if they still end the file (no
        record of anyone after them is lost); True once they are gone from the disk.

        For a batch whose other half failed (the database refused it after it was
        logged): an error that says "nothing was written" must not see it come back.
        """
        start, end = span
        if start == end:
            return True
        with self._mutex:
            if self._broken is not None or self._fd < 0 or os.getpid() != self._pid:
                return False
            fd = self._fd
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                return False
            try:
                return self._take_back_locked(fd, start, end)
            finally:
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_UN)

    def _take_back_locked(self, fd: int, start: int, end: int) -> bool:
        try:
            if os.lseek(fd, 0, os.SEEK_END) != end:
                return False  # someone appended after: they must keep their line
            os.ftruncate(fd, start)  # shrinking needs no space, even on a full disk
            self._end = start
        except OSError:
            return False
        if self.fsync:
            try:
                os.fsync(fd)
            except OSError as exc:  # as in an append: fail closed, it may still be there
                self._broken = f"fsync failed ({exc.strerror or exc})"
                return False
        return True

    def _append(self, data: bytes) -> tuple[int, int]:
        with self._mutex:
            if self._broken is not None:
                raise StoreError(f"log {self.path}: writer is unusable: {self._broken}")
            if self._fd < 0:
                raise StoreError(f"log {self.path}: writer is closed")
            if os.getpid() != self._pid:
                # A forked child shares the parent's open file and hence its lock: the two
                # would not exclude each other.
                raise StoreError(
                    f"log {self.path}: this LogWriter was opened in process {self._pid}; "
                    "open a new one in each process"
                )
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except OSError as exc:
                raise _failure(self.path, "locking", exc) from exc
            try:
                return self._append_locked(data)
            finally:
                if self._fd >= 0:
                    with contextlib.suppress(OSError):
                        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _append_locked(self, data: bytes) -> tuple[int, int]:
        fd = self._fd
        try:
            size = os.lseek(fd, 0, os.SEEK_END)  # the size, a third of an fstat's cost
            # Checked under the lock, so the tail we see is a crashed writer's, not a live
            # one's: start on a fresh line and leave the fragment alone on its own. When
            # the file still ends where our own last line did, that byte is our newline.
            if size and size != self._end and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data
        except OSError as exc:
            raise _failure(self.path, "reading the file end", exc) from exc
        try:
            _write_all(fd, data)
            self._end = size + len(data)
        except OSError as exc:
            # We hold the lock, so everything past `size` is ours: drop the partial line
            # rather than leave a torn one for readers.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise _failure(self.path, "writing", exc) from exc
        if self.fsync:
            try:
                os.fsync(fd)
            except OSError as exc:
                # After a failed fsync the kernel may have dropped the dirty pages and a
                # retry can falsely succeed (PostgreSQL, 2018): fail closed instead.
                self._broken = f"fsync failed ({exc.strerror or exc})"
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_UN)
                self._fd = -1
                os.close(fd)
                raise StoreError(
                    f"log {self.path}: fsync failed ({exc.strerror or exc}); this append "
                    "was not acknowledged (it may or may not be on disk) and the writer "
                    "is closed"
                ) from exc
        return size, self._end


# -- reading ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One non-blank line of a log: a record, or the reason it is not one."""

    number: int  # 1-based, counting every physical line (blank ones too)
    record: Record | None
    problem: str | None


@dataclass
class ReadResult:
    """The records of one file, and the lines that were skipped and why."""

    path: Path
    records: list[tuple[int, Record]] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every non-blank line was a record."""
        return not self.problems


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)  # one for every line


# 19 digits in a row may be an int beyond 64 bits (-9223372036854775809), which orjson
# reads as a float: such lines go to the json module. Found by mapping every digit to
# "0" and everything else to " " (five times faster than a regex search).
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_NUMBER = b"0" * 19


_UNREAD = object()  # _fast_value's "the json module must read this line"


def _fast_value(raw: bytes) -> Any:
    """The value of a line by orjson, which reads what the json module reads four times
    faster; _UNREAD for what it refuses (a lone surrogate escape, bad UTF-8, a number
    beyond a double...) and for lines that may hold a huge int: the json module reads
    those, and says why it cannot."""
    if _LONG_NUMBER in raw.translate(_DIGITS_AS_ZERO):
        return _UNREAD
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _UNREAD


def _parse(number: int, raw: bytes) -> Line:
    if not raw.endswith(b"\n"):
        return Line(number, None, TRUNCATED)
    value = _fast_value(raw)
    if value is _UNREAD:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Line(number, None, f"{INVALID_JSON}: bad UTF-8 at byte {exc.start}")
        try:
            # bytes would let json guess UTF-16/32; NaN/Infinity are not JSON.
            value = _DECODER.decode(text)
        except ValueError as exc:
            return Line(number, None, f"{INVALID_JSON}: {exc}")
        except RecursionError:
            return Line(number, None, f"{INVALID_JSON}: nested too deeply")
    if not isinstance(value, dict):
        return Line(number, None, NOT_OBJECT)
    return Line(number, value, None)


def _settled_size(fd: int) -> int:
    """The file size with no append in progress (a shared lock waits writers out)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except OSError:
        return os.fstat(fd).st_size  # no locking here (some network filesystems): best effort
    try:
        return os.fstat(fd).st_size
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def scan(path: Path) -> Iterator[Line]:
    """Stream the non-blank lines of `path` as they are up to now.

    Reads up to the size the file has when the scan starts, so records appended meanwhile
    are left for the next scan. Damaged lines come out with a problem, never an exception.
    """
    try:
        f = open(path, "rb")  # noqa: SIM115 -- closed by the `with` below, across yields
    except OSError as exc:
        raise StoreError(f"log {path}: cannot read ({exc.strerror or exc})") from exc
    with f:
        try:
            remaining = _settled_size(f.fileno())
            number = 0
            while remaining > 0:
                raw = f.readline(remaining)
                if not raw:
                    break  # the file shrank under us
                remaining -= len(raw)
                number += 1
                if raw.strip():
                    yield _parse(number, raw)
        except OSError as exc:
            raise StoreError(f"log {path}: cannot read ({exc.strerror or exc})") from exc


def read(path: Path) -> ReadResult:
    """All records of `path` with their line numbers, and the problems met on the way."""
    result = ReadResult(Path(path))
    for line in scan(path):
        if line.record is not None:
            result.records.append((line.number, line.record))
        else:
            result.problems.append((line.number, line.problem or INVALID_JSON))
    return result


def read_all(paths: Iterable[Path]) -> list[ReadResult]:
    """`read` each path in turn (e.g. `read_all(files(raw_dir))`)."""
    return [read(p) for p in paths]
