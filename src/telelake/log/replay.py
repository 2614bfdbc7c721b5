"""Replay of the NDJSON raw log into the SQL database (`telelake replay`, `recover`).

The log is the source of truth for logged tables: every record reached it before its
transaction committed. Replaying is idempotent (runs are upserts that the latest
`updated_at` wins, events are unique), so replaying twice gives the same database.

Every `*.ndjson` file of the log folder is read: the daily files of the schema's prefix
in date order, then any other in name order (another client may name its files its own
way). Hidden files (temp files) are not replayed, and the report names them. Lines are
read in either shape other clients of the spec write (see `telelake.log.lenient`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from telelake.errors import StoreError, TelelakeError
from telelake.log import ndjson
from telelake.log.lenient import Reader
from telelake.schema.model import LogSettings, Schema

BATCH = 5000  # rows per transaction
SHOWN_FIELDS = 5  # ignored field names listed per record type

Write = Callable[[str, list[dict[str, Any]]], None]


@dataclass
class ReplayReport:
    """What a replay (or a recovery) read, wrote, kept and could not use."""

    files: int = 0
    lines: int = 0
    rows: dict[str, int] = field(default_factory=dict)  # sql table -> rows replayed
    problems: list[str] = field(default_factory=list)  # "<file> line N: why"
    moved_aside: Path | None = None
    file_names: list[str] = field(default_factory=list)  # the log files read, in order
    other_files: list[str] = field(default_factory=list)  # of those, not <prefix>_YYYYMMDD
    skipped_files: list[str] = field(default_factory=list)  # "<name>: why not replayed"
    # Fields of log lines that are no column of their table: "run.payload" -> lines.
    ignored_fields: dict[str, int] = field(default_factory=dict)
    rebuilt: list[str] = field(default_factory=list)  # tables the log feeds
    # recover: rows carried over from the database moved aside, per table
    carried: dict[str, int] = field(default_factory=dict)
    not_saved: list[str] = field(default_factory=list)  # what of it could not be kept, why
    added: dict[str, int] = field(default_factory=dict)  # rows a table gained in a replay


class Item(NamedTuple):
    """One usable record: the row for its table, and where it came from."""

    table: str
    row: dict[str, Any]
    file: str
    line: int
    unit: str = "line"

    @property
    def where(self) -> str:
        """`events_20260101.ndjson line 7`: how problems name the record."""
        return f"{self.file} {self.unit} {self.line}"


def _where(file: str, line: int) -> str:
    return f"{file} line {line}"


# -- files -----------------------------------------------------------------------------


def log_files(directory: Path, prefix: str) -> tuple[list[Path], list[str]]:
    """The `*.ndjson` files of `directory` to replay, in order, and `"<name>: why"` for
    those that are not: the prefix's daily files by date, then the others by name."""
    daily = ndjson.files(directory, prefix)
    known = set(daily)
    others: list[Path] = []
    skipped: list[str] = []
    try:
        entries = sorted(Path(directory).iterdir())
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        raise StoreError(f"log directory {directory}: cannot list ({exc.strerror})") from exc
    for entry in entries:
        if not entry.name.endswith(ndjson.SUFFIX) or entry in known:
            continue
        if entry.name.startswith("."):
            skipped.append(f"{entry.name}: hidden (a temp file), not replayed")
        elif not entry.is_file():
            skipped.append(f"{entry.name}: not a regular file, not replayed")
        else:
            others.append(entry)
    return daily + others, skipped


# -- lines -----------------------------------------------------------------------------


def readers(schema: Schema, settings: LogSettings) -> dict[str, Reader]:
    """A reader per record type that replays into a table."""
    return {
        kind: Reader.of(schema.tables[r.replay_into], r)
        for kind, r in settings.records.items()
        if r.replay_into
    }


def items(
    schema: Schema,
    settings: LogSettings,
    paths: list[Path],
    report: ReplayReport,
    on_file: Callable[[Path], None] | None = None,
) -> Iterator[Item]:
    """Rows to replay, in log order; unusable lines are reported, never fatal."""
    by_kind = {k: (r.table, r.row_function()) for k, r in readers(schema, settings).items()}
    ignored: list[str] = []
    for path in paths:
        if on_file is not None:
            on_file(path)
        name = path.name
        report.files += 1
        report.file_names.append(name)
        number = 0
        try:
            for line in ndjson.scan(path):
                number = line.number
                report.lines += 1
                if line.record is None:
                    report.problems.append(f"{_where(name, number)}: {line.problem}")
                    continue
                kind = line.record.get("record_type")
                reader = by_kind.get(kind) if type(kind) is str else None
                if reader is None:
                    if not isinstance(kind, str) or kind not in settings.records:
                        report.problems.append(
                            f"{_where(name, number)}: unknown record_type {kind!r}"
                        )
                    continue  # a record type the log keeps but replays nowhere
                table, row_of = reader
                row, problem = row_of(line.record, ignored)
                if ignored:
                    for key in ignored:
                        label = f"{kind}.{key}"
                        report.ignored_fields[label] = report.ignored_fields.get(label, 0) + 1
                    ignored.clear()
                if problem is not None:
                    report.problems.append(f"{_where(name, number)}: {problem}")
                    continue
                yield Item(table, row, name, number)
        except StoreError as exc:  # unreadable file (permissions, I/O error)
            at = f" after line {number}" if number else ""
            report.problems.append(f"{name}{at}: {exc}")


def batches(settings: LogSettings, stream: Iterator[Item]) -> Iterator[tuple[str, list[Item]]]:
    """Group items per table, at most BATCH each. Tables of earlier record types (runs)
    are always flushed before later ones (events), so a child's parent is in first."""
    order = table_order(settings)
    pending: dict[str, list[Item]] = {t: [] for t in order}

    def flush_through(table: str) -> Iterator[tuple[str, list[Item]]]:
        for t in order[: order.index(table) + 1]:
            if pending[t]:
                yield t, pending[t]
                pending[t] = []

    for item in stream:
        pending[item.table].append(item)
        if len(pending[item.table]) >= BATCH:
            yield from flush_through(item.table)
    if order:
        yield from flush_through(order[-1])


def table_order(settings: LogSettings) -> list[str]:
    """The tables the log replays into, parents (earlier record types) first."""
    order: list[str] = []
    for r in settings.records.values():
        if r.replay_into and r.replay_into not in order:
            order.append(r.replay_into)
    return order


# -- writing ---------------------------------------------------------------------------


class Sink:
    """Writes groups of items through `write(table, rows)`, one transaction each.

    `write` raises a TelelakeError for a group it refuses; the group is then written row
    by row, so that one bad record costs only itself. A refused row is tried once more
    by `finish()`, after everything else: its parent may come later (a file of runs
    named after the file of their events, a run only the log has for a carried commit).
    Only a row refused twice is reported.
    """

    def __init__(self, write: Write, report: ReplayReport) -> None:
        self.write = write
        self.report = report
        self.deferred: list[tuple[Item, dict[str, int]]] = []

    def put(self, table: str, group: list[Item], counts: dict[str, int]) -> None:
        """Write `group` to `table`, counting the rows written in `counts[table]`."""
        try:
            self.write(table, [i.row for i in group])
            counts[table] = counts.get(table, 0) + len(group)
        except TelelakeError:
            for item in group:
                try:
                    self.write(table, [item.row])
                    counts[table] = counts.get(table, 0) + 1
                except TelelakeError:
                    self.deferred.append((item, counts))

    def finish(self, order: list[str]) -> None:
        """Try the refused rows once more, parents' tables first; report what fails."""
        rank = {t: i for i, t in enumerate(order)}
        pending = sorted(self.deferred, key=lambda d: rank.get(d[0].table, len(rank)))
        self.deferred = []
        for item, counts in pending:
            try:
                self.write(item.table, [item.row])
                counts[item.table] = counts.get(item.table, 0) + 1
            except TelelakeError as exc:
                self.report.problems.append(f"{item.where}: {exc}")


def replay(
    schema: Schema,
    settings: LogSettings,
    directory: Path,
    write: Write,
    report: ReplayReport,
    on_file: Callable[[Path], None] | None = None,
    sink: Sink | None = None,
) -> ReplayReport:
    """Replay every log file of `directory` through `write(table, rows)`.

    With a `sink` (recover passes the one its carried rows went through), rows refused
    along the way are retried at the end by the caller's `sink.finish()`; without one,
    here.
    """
    own = sink is None
    sink = sink or Sink(write, report)
    paths, skipped = log_files(directory, settings.prefix)
    daily = set(ndjson.files(directory, settings.prefix))
    report.other_files.extend(p.name for p in paths if p not in daily)
    report.skipped_files.extend(skipped)
    order = table_order(settings)
    for table in order:
        if table not in report.rebuilt:
            report.rebuilt.append(table)
    for table, group in batches(settings, items(schema, settings, paths, report, on_file)):
        sink.put(table, group, report.rows)
    if own:
        sink.finish(order)
    return report
