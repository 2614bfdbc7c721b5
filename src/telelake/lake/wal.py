"""WAL segments: append-only files of checksummed Arrow record batches.

A segment belongs to one writer (one Store instance) and one table. Its owner holds an
exclusive `flock` on it for as long as it may append; a process that dies releases the
lock, which is how others know a segment is orphaned and may be folded.

File format (little endian):

    b"TLWAL01\\n"                          8-byte magic
    record(schema IPC bytes)               the Arrow schema of every batch
    record(batch IPC message) ...          one record per acknowledged write

    record = b"TLR1" | u32 length | u32 crc32(length bytes + payload) | payload

A crash can leave a torn last record; readers stop at the first record whose header,
length or checksum does not hold and report how many bytes they ignored (Prometheus
TSDB's WAL does the same). Bytes after that point are never trusted.
"""

from __future__ import annotations

import fcntl
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from telelake import durable

MAGIC = b"TLWAL01\n"
RECORD_MAGIC = b"TLR1"
_HEADER = struct.Struct("<4sII")
SUFFIX = ".wal"
FSYNC_POLICIES = ("always", "batch", "interval", "off")


def encode_record(payload: bytes) -> bytes:
    """Frame one payload: magic, length, checksum, payload."""
    length = struct.pack("<I", len(payload))
    crc = zlib.crc32(payload, zlib.crc32(length))
    return _HEADER.pack(RECORD_MAGIC, len(payload), crc) + payload


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


class SegmentWriter:
    """Appends batches to a new segment it owns (exclusive lock held until close)."""

    def __init__(self, path: Path, schema: pa.Schema, fsync: str = "always") -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}")
        self.path = path
        self.schema = schema
        self.fsync = fsync
        durable.ensure_dir(path.parent)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        header = MAGIC + encode_record(schema.serialize().to_pybytes())
        self._write_all(header)
        os.fsync(self._fd)
        durable.fsync_dir(path.parent)  # the segment's name must survive a crash too
        self.size = len(header)
        self.rows = 0
        self.unsynced = 0

    def append(self, batch: pa.RecordBatch) -> None:
        """Append one batch; with fsync="always" it is durable when this returns."""
        record = encode_record(batch.serialize().to_pybytes())
        self._write_all(record)
        self.size += len(record)
        self.rows += batch.num_rows
        self.unsynced += 1
        if self.fsync == "always":
            self.sync()

    def sync(self) -> None:
        """Make every appended record durable."""
        if self.unsynced:
            os.fdatasync(self._fd)
            self.unsynced = 0

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def close(self) -> None:
        """Sync (unless fsync="off") and release the lock."""
        if self._fd < 0:
            return
        try:
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
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        problem = (
            "not a telelake WAL segment (bad magic)"
            if len(data) >= len(MAGIC)
            else ("segment header is torn")
        )
        return SegmentContents(path, None, [], 0, len(data), problem)
    decoded = decode_records(data, len(MAGIC))
    if not decoded.payloads:
        return SegmentContents(
            path, None, [], len(MAGIC), len(data), decoded.problem or "segment has no schema record"
        )
    try:
        schema = pa.ipc.read_schema(pa.py_buffer(decoded.payloads[0]))
        batches = [pa.ipc.read_record_batch(pa.py_buffer(p), schema) for p in decoded.payloads[1:]]
    except (pa.ArrowInvalid, OSError) as exc:
        # A checksummed record that Arrow cannot read was written by something else.
        return SegmentContents(path, None, [], len(MAGIC), len(data), f"unreadable batch: {exc}")
    return SegmentContents(path, schema, batches, decoded.end, len(data), decoded.problem)


def is_locked(path: Path) -> bool:
    """True if some live process holds the segment's lock (its owner is still writing)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
