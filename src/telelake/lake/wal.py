"""WAL segments: append-only files of checksummed Arrow record batches.

A segment belongs to one writer (one Store instance) and one table. Its owner holds an
exclusive `flock` on it for as long as it may append; a process that dies releases the
lock, which is how others know a segment is orphaned and may be folded.

File format (little endian):

    b"TLWAL01\\n"                          8-byte magic
    record(schema IPC bytes)               the Arrow schema of every batch
    record(batch IPC message) ...          one record per acknowledged write

    record = b"TLR1" | u32 length | u32 crc32(length bytes + payload) | payload

A batch payload is an Arrow IPC message, or, for a small write of plain values, a rows
payload: b"TLROWS1\n" | msgpack [ack time µs, [column values, ...]] with the columns of
the schema but its last (the acknowledgement time, one per record). Arrow's per-call
costs dominate a 10-row write (the conversion alone is ~15 µs, the whole record ~25 µs
against ~3 µs for msgpack), so small writes skip Arrow on the acknowledged path and
readers convert runs of such records in one go.

A crash can leave a torn last record; readers stop at the first record whose header,
length or checksum does not hold and report how many bytes they ignored (Prometheus
TSDB's WAL does the same). Bytes after that point are never trusted.

The owner keeps zeroed space written ahead of its records (`PREALLOCATE` bytes at a
time) and writes small records into it, as PostgreSQL zero-fills its WAL segments and
SQLite reuses its WAL file: overwriting written blocks, an fdatasync flushes data only.
Neither appending (a new file size) nor `fallocate` (extents that are still
"unwritten", converted by the first write) gives that: ext4 must commit its journal in
the fdatasync of each such write, which doubled the time of a small acknowledged write
here (0.34 vs 0.16 ms per fdatasync). So a segment may end in zeros; an all-zero tail
is free space, not a torn record. A cleanly closed segment is truncated to its records.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import msgpack

from telelake import durable
from telelake._lazy import lazy

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy("pyarrow")

MAGIC = b"TLWAL01\n"
RECORD_MAGIC = b"TLR1"
_HEADER = struct.Struct("<4sII")
SUFFIX = ".wal"
# A segment whose header never made it to disk holds no acknowledged record: the header
# is fsynced before the first append is even attempted.
HEADER_TORN = "segment header is torn (no acknowledged record can follow it)"
FSYNC_POLICIES = ("always", "batch", "interval", "off")
PREALLOCATE = 1 << 20  # bytes of zeros written ahead of the records
# A record bigger than this grows the file as it is written: zeroing its space first
# would write it twice, and one journal commit is little next to its own bytes.
ZERO_FILL_MAX = 64 << 10


# Big batches (bulk ingest) are LZ4-compressed: about a third of the bytes to write and
# sync for a few ms of CPU. Small ones (the latency path) are not: compressing them costs
# more than it saves. Readers need nothing new: an IPC message says how its body is coded.
COMPRESS_FROM = 256 << 10  # bytes of Arrow data in one batch


@functools.cache
def _lz4() -> pa.ipc.IpcWriteOptions:
    return pa.ipc.IpcWriteOptions(compression="lz4")


def serialize_batch(batch: pa.RecordBatch) -> tuple[pa.Buffer, int]:
    """One record batch as an encapsulated IPC message (LZ4 bodies when it is big), and
    the bytes of Arrow data it holds (what a fold keeps of it in memory)."""
    # The buffer total is cheap but counts whole buffers of a slice; `nbytes` is exact
    # but costs ~20 µs, too much for every small write: it only confirms a big one.
    if batch.get_total_buffer_size() < COMPRESS_FROM or batch.nbytes < COMPRESS_FROM:
        plain = batch.serialize()
        return plain, plain.size
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema, options=_lz4()) as writer:
        writer.write_batch(batch)
    messages = pa.ipc.MessageReader.open_stream(sink.getvalue())
    messages.read_next_message()  # the schema: the segment header holds it already
    return messages.read_next_message().serialize(), batch.nbytes


ROWS_MAGIC = b"TLROWS1\n"
# Rows records convert in runs of about this many rows: few Arrow calls, yet Python
# lists small enough that building them stays cheap (a fold may hold millions of rows).
RUN_ROWS = 8192
# What a payload that passed its checksum but does not decode raises: it was written by
# something else (a reader reports the segment, `check` quarantines it).
# (Arrow's ArrowInvalid and ArrowTypeError are ValueError and TypeError.)
DECODE_ERRORS = (OSError, ValueError, TypeError, OverflowError, msgpack.UnpackException)


def serialize_rows(at: int, columns: list[list[Any]]) -> bytes:
    """A rows payload: plain column values (checked by the caller) and their ack time.

    Raises UnicodeEncodeError for a string UTF-8 cannot hold (a lone surrogate).
    """
    body: bytes = msgpack.packb([at, columns])
    return ROWS_MAGIC + body


def batches_of(payloads: list[bytes], schema: pa.Schema) -> list[pa.RecordBatch]:
    """Record payloads as batches of `schema`; consecutive rows payloads make batches of
    about `RUN_ROWS` rows."""
    out: list[pa.RecordBatch] = []
    rows = _Rows(len(schema) - 1)
    for payload in payloads:
        if payload.startswith(ROWS_MAGIC):
            at, columns = msgpack.unpackb(payload[len(ROWS_MAGIC) :])
            rows.add(at, columns)
            if rows.count >= RUN_ROWS:
                out.append(rows.take(schema))
            continue
        if rows.count:
            out.append(rows.take(schema))
        out.append(pa.ipc.read_record_batch(pa.py_buffer(payload), schema))
    if rows.count:
        out.append(rows.take(schema))
    return out


class _Rows:
    """Plain column values of several rows payloads, gathered to convert in one go."""

    def __init__(self, width: int) -> None:
        self.width = width
        self._reset()

    def _reset(self) -> None:
        self.columns: list[list[Any]] = [[] for _ in range(self.width)]
        self.ats: list[int] = []
        self.count = 0

    def add(self, at: int, columns: list[list[Any]]) -> None:
        if type(at) is not int or type(columns) is not list or len(columns) != len(self.columns):
            raise ValueError("malformed rows record")
        n = len(columns[0]) if columns else 0
        if any(type(c) is not list or len(c) != n for c in columns):
            raise ValueError("malformed rows record")
        for mine, theirs in zip(self.columns, columns, strict=True):
            mine.extend(theirs)
        self.ats.extend([at] * n)
        self.count += n

    def take(self, schema: pa.Schema) -> pa.RecordBatch:
        """The gathered rows as one batch (the last field of `schema` takes the ack
        times); the gatherer starts empty again."""
        arrays = [pa.array(v, f.type) for v, f in zip(self.columns, schema, strict=False)]
        arrays.append(pa.array(self.ats, schema.field(len(arrays)).type))
        batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
        self._reset()
        return batch


def encode_record(payload: bytes | memoryview) -> bytes:
    """Frame one payload: magic, length, checksum, payload (one copy of the payload)."""
    size = len(payload)
    crc = zlib.crc32(payload, zlib.crc32(struct.pack("<I", size)))
    return _HEADER.pack(RECORD_MAGIC, size, crc) + payload


@dataclass
class Decoded:
    """The complete records found in a byte buffer, and where they stop."""

    payloads: list[bytes] = field(default_factory=list)
    end: int = 0  # offset just past the last good record
    problem: str | None = None  # why decoding stopped before the end of the buffer


def decode_records(buf: bytes | memoryview, start: int = 0) -> Decoded:
    """Decode records from `start` until the buffer ends or a record is bad."""
    out = Decoded(end=start)
    view = memoryview(buf)
    pos = start
    while pos < len(view):
        if view[pos] == 0 and _all_zero(buf, view, pos):
            break  # preallocated space: the records simply end here
        if len(view) - pos < _HEADER.size:
            out.problem = f"torn record header at byte {pos}"
            break
        magic, length, crc = _HEADER.unpack_from(view, pos)
        if magic != RECORD_MAGIC:
            out.problem = f"bad record marker at byte {pos}"
            break
        body_start = pos + _HEADER.size
        if len(view) - body_start < length:
            out.problem = f"torn record at byte {pos} ({length} bytes announced)"
            break
        payload = bytes(view[body_start : body_start + length])
        if zlib.crc32(payload, zlib.crc32(struct.pack("<I", length))) != crc:
            out.problem = f"checksum mismatch in record at byte {pos}"
            break
        out.payloads.append(payload)
        pos = body_start + length
        out.end = pos
    return out


def _all_zero(buf: bytes | memoryview, view: memoryview, pos: int) -> bool:
    """True if every byte from `pos` on is zero (no copy when `buf` is bytes)."""
    data = buf if isinstance(buf, bytes) else view.obj
    if isinstance(data, bytes) and len(data) == len(view):
        return data.count(0, pos) == len(data) - pos
    return view[pos:].tobytes().count(0) == len(view) - pos


class SegmentWriter:
    """Appends batches to a new segment it owns (exclusive lock held until close)."""

    def __init__(self, path: Path, schema: pa.Schema, fsync: str = "always") -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}")
        self.path = path
        self.schema = schema
        self.fsync = fsync
        durable.ensure_dir(path.parent)
        # Built under a hidden name, locked and with its header on disk before it appears
        # under its real name: no folder can ever see (and take) a half-made segment.
        # The rename keeps the lock, which belongs to the open file, not to the name.
        tmp = durable.temp_path_for(path)
        self._fd = durable.open_file(tmp, os.O_WRONLY | os.O_EXCL)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        header = MAGIC + encode_record(schema.serialize().to_pybytes())
        try:
            self._write_all(header)
            os.fsync(self._fd)
            os.rename(tmp, path)
            durable.fsync_dir(path.parent)  # the segment's name must survive a crash too
        except OSError:
            os.close(self._fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        self.size = len(header)
        # Arrow bytes the fold will hold in memory (`size` is less once records are
        # compressed): what `fold_bytes` bounds.
        self.data_bytes = 0
        self._allocated = self.size
        self.rows = 0
        self.unsynced = 0
        self.batches: list[pa.RecordBatch] = []  # kept so a fold needs no re-read
        self._pending: list[bytes] = []  # rows records not yet in `batches`
        self._synced_size = self.size
        self._sync_lock = threading.Lock()

    def append(self, batch: pa.RecordBatch) -> int:
        """Append one batch (the caller serialises appends); returns the end offset.

        Whether it is durable on return depends on the policy: see `wait_durable`.
        """
        payload, data_bytes = serialize_batch(batch)
        self._write_record(encode_record(memoryview(payload)))  # no copy of big batches
        self._keep_pending()
        self.data_bytes += data_bytes
        self.rows += batch.num_rows
        self.batches.append(batch)
        return self.size

    def append_rows(self, at: int, columns: list[list[Any]], num_rows: int) -> int:
        """Append plain column values (all fields of the schema but the last, which
        takes `at`) as a rows record; returns the end offset, as `append` does."""
        payload = serialize_rows(at, columns)
        self._write_record(encode_record(payload))
        self._pending.append(payload)
        self.data_bytes += len(payload)
        self.rows += num_rows
        return self.size

    def table(self) -> pa.Table:
        """Every record appended so far, as one table (what a fold of it publishes)."""
        self._keep_pending()
        return pa.Table.from_batches(self.batches, schema=self.schema)

    def _keep_pending(self) -> None:
        # Rows records are kept as their payloads (as compact as Arrow data) until a
        # batch follows them or the segment is folded: converting them is a fold's work,
        # not an acknowledged write's.
        if self._pending:
            self.batches.extend(batches_of(self._pending, self.schema))
            self._pending = []

    def _write_record(self, record: bytes) -> None:
        try:
            self._reserve(self.size + len(record))
            self._pwrite_all(record, self.size)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self.size)  # drop the partial record
            self._allocated = self.size
            raise
        self.size += len(record)
        self.unsynced += 1

    def wait_durable(self, end: int) -> None:
        """Block until bytes up to `end` are on stable storage (for always and batch).

        Group commit: threads that appended before one fdatasync started all ride on
        it, so concurrent writers share syncs instead of queueing one each.
        """
        if self.fsync not in ("always", "batch"):
            return
        with self._sync_lock:
            if self._synced_size >= end:
                return
            target = self.size
            os.fdatasync(self._fd)
            self._synced_size = target
            self.unsynced = 0

    def sync(self) -> None:
        """Make every appended record durable, whatever the policy."""
        with self._sync_lock:
            if self._synced_size < self.size:
                os.fdatasync(self._fd)
                self._synced_size = self.size
                self.unsynced = 0

    def abandon(self) -> None:
        """Give up on this segment after a failed append or sync (fail closed).

        The torn tail is cut off when possible; either way readers stop at the last
        complete record. We never retry an fsync that failed (PostgreSQL's lesson: the
        kernel may have dropped the dirty pages), so the segment is closed and whoever
        folds it keeps its complete records; the next write starts a new segment.
        """
        if self._fd < 0:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, self.size)  # `size` counts complete records only
        os.close(self._fd)
        self._fd = -1

    def _reserve(self, end: int) -> None:
        """Have zeroed space written up to `end` and beyond, unless it already is."""
        if end <= self._allocated or end - self.size > ZERO_FILL_MAX:
            return
        start = max(self._allocated, self.size)
        try:
            # Not fsynced here: the fdatasync of the record that follows carries it.
            self._pwrite_all(bytes(end + PREALLOCATE - start), start)
            self._allocated = end + PREALLOCATE
        except OSError:
            # No room to reserve ahead (a full disk, a file size limit): grow as we
            # write, and let the write itself report a real shortage.
            self._allocated = end

    def _pwrite_all(self, data: bytes, offset: int) -> None:
        n = os.pwrite(self._fd, data, offset)
        if n == len(data):
            return  # the usual case: one call
        view = memoryview(data)[n:]
        offset += n
        while view:
            n = os.pwrite(self._fd, view, offset)
            view = view[n:]
            offset += n

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def release(self) -> None:
        """Let go of a segment whose records are folded and whose file is unlinked.

        The kernel frees an unlinked file's blocks at its last close: tens of ms for a
        32 MiB segment, so that close runs on a helper thread, off the writer's path.
        (The lock it releases guards a name that no longer exists.)
        """
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        threading.Thread(target=os.close, args=(fd,), name="telelake-wal-release").start()

    def close(self) -> None:
        """Release the lock (the segment stays, for someone to fold)."""
        if self._fd < 0:
            return
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self.size)  # give back the preallocated space
            if self.fsync != "off":
                self.sync()
        finally:
            os.close(self._fd)  # closing releases the flock
            self._fd = -1

    @property
    def closed(self) -> bool:
        """True once closed."""
        return self._fd < 0


@dataclass
class SegmentContents:
    """What a reader found in a segment."""

    path: Path
    schema: pa.Schema | None
    batches: list[pa.RecordBatch]
    valid_bytes: int
    total_bytes: int
    problem: str | None

    @property
    def rows(self) -> int:
        """Rows in the complete records."""
        return sum(b.num_rows for b in self.batches)

    def table(self) -> pa.Table:
        """The complete records as one table."""
        assert self.schema is not None
        return pa.Table.from_batches(self.batches, schema=self.schema)


def read_segment(path: Path) -> SegmentContents:
    """Read the complete records of a segment (the owner may still be appending)."""
    return _read_open(path, path.read_bytes())


def _read_open(path: Path, data: bytes) -> SegmentContents:
    if not data.startswith(MAGIC):
        problem = (
            "not a telelake WAL segment (bad magic)"
            if len(data) >= len(MAGIC) or not MAGIC.startswith(data)
            else HEADER_TORN
        )
        return SegmentContents(path, None, [], 0, len(data), problem)
    decoded = decode_records(data, len(MAGIC))
    if not decoded.payloads:
        return SegmentContents(path, None, [], len(MAGIC), len(data), HEADER_TORN)
    try:
        schema = pa.ipc.read_schema(pa.py_buffer(decoded.payloads[0]))
        batches = batches_of(decoded.payloads[1:], schema)
    except DECODE_ERRORS as exc:
        # A checksummed record that Arrow cannot read was written by something else.
        return SegmentContents(path, None, [], len(MAGIC), len(data), f"unreadable batch: {exc}")
    return SegmentContents(path, schema, batches, decoded.end, len(data), decoded.problem)


def remove_dead_temps(wal_dir: Path, min_age: float = 60.0) -> int:
    """Remove hidden segments whose writer died before naming them; returns how many.

    Such a file never held an acknowledged record (the rename comes before the first
    append). A live writer holds its lock from a moment after creating the file, so
    only files both unlocked and older than `min_age` seconds are taken.
    """
    removed = 0
    now = time.time()
    for path in wal_dir.glob(f".*{SUFFIX}.*.tmp"):
        try:
            if now - path.stat().st_mtime < min_age:
                continue
        except FileNotFoundError:
            continue
        fd = durable.claim(path)
        if fd is None:
            continue
        try:
            path.unlink(missing_ok=True)
            removed += 1
        finally:
            os.close(fd)
    return removed


def is_locked(path: Path) -> bool:
    """True if some live process holds the segment's lock (its owner is still writing)."""
    fd = durable.claim(path)
    if fd is None:
        return path.exists()
    os.close(fd)
    return False


READ_CHUNK = 64 * 1024


def _read_to_free_space(fh: BinaryIO) -> tuple[bytes, Decoded]:
    """Read on until the records end in free space (zeros) or the file ends; the bytes
    read and their decoded records.

    Records are written one after the other, so once the records read so far stop at
    zeros, what follows is free space too, or a record being written right now, which
    is not acknowledged yet: a reader need not wait for it. This keeps a query from
    reading the whole preallocated megabyte of every live segment each time.
    """
    data = b""
    size = READ_CHUNK
    while True:
        chunk = fh.read(size)
        data += chunk
        if len(chunk) < size:  # the end of the file
            return data, decode_records(data)
        if chunk[-1] == 0:  # perhaps free space: do the records stop before it?
            decoded = decode_records(data)
            if decoded.problem is None and decoded.end < len(data):
                return data, decoded
        size *= 2  # a long unread tail takes few reads, and copies stay linear


class SegmentCache:
    """Reads segments incrementally: only the bytes appended since the last read.

    Queries read every live segment each time; segments only grow, so remembering how
    far a segment was decoded (per inode, in case a name is reused) keeps that cheap.
    """

    def __init__(self) -> None:
        self._seen: dict[Path, tuple[int, SegmentContents]] = {}
        self._lock = threading.Lock()  # queries and folds of one store may run in threads

    def read(self, path: Path) -> SegmentContents:
        """The complete records of `path` now (FileNotFoundError if it is gone)."""
        with self._lock:
            return self._read(path)

    def _read(self, path: Path) -> SegmentContents:
        with path.open("rb") as fh:
            st = os.fstat(fh.fileno())
            cached = self._seen.get(path)
            if cached is None or cached[0] != st.st_ino or cached[1].schema is None:
                contents = _read_open(path, fh.read())
            else:
                old = cached[1]
                fh.seek(old.valid_bytes)
                tail, decoded = _read_to_free_space(fh)  # the size stays still: always look
                if not decoded.payloads and decoded.problem == old.problem:
                    return old
                assert old.schema is not None
                try:
                    batches = old.batches + batches_of(decoded.payloads, old.schema)
                except DECODE_ERRORS:  # checksummed, yet not ours: report it as a reread does
                    fh.seek(0)
                    contents = _read_open(path, fh.read())
                else:
                    contents = SegmentContents(
                        path,
                        old.schema,
                        batches,
                        old.valid_bytes + decoded.end,
                        old.valid_bytes + len(tail),
                        decoded.problem,
                    )
        self._seen[path] = (st.st_ino, contents)
        return contents

    def forget_missing(self, alive: set[Path]) -> None:
        """Drop cache entries of segments that no longer exist."""
        with self._lock:
            for path in list(self._seen):
                if path not in alive:
                    del self._seen[path]
