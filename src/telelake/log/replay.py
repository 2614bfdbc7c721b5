"""Replay of the NDJSON raw log into the SQL database (`telelake recover`).

The log is the source of truth for logged tables: every record reached it before its
transaction committed. Replaying is idempotent (runs are upserts that the latest
`updated_at` wins, events are unique), so replaying twice gives the same database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from telelake.errors import TelelakeError
from telelake.log import ndjson
from telelake.schema.model import LogSettings, Schema

BATCH = 5000  # rows per transaction


@dataclass
class ReplayReport:
    """What a replay read, wrote and could not use."""

    files: int = 0
    lines: int = 0
    rows: dict[str, int] = field(default_factory=dict)  # sql table -> rows replayed
    problems: list[str] = field(default_factory=list)  # "<file> line N: why"
    moved_aside: Path | None = None


class Item(NamedTuple):
    """One usable record: the row for its replay table, and where it came from."""

    table: str
    row: dict[str, Any]
    file: str
    line: int

    @property
    def where(self) -> str:
        """`events_20260101.ndjson line 7`: how problems name the line."""
        return _where(self.file, self.line)


def _where(file: str, line: int) -> str:
    return f"{file} line {line}"


def items(
    schema: Schema,
    settings: LogSettings,
    paths: list[Path],
    report: ReplayReport,
    on_file: Callable[[Path], None] | None = None,
) -> Iterator[Item]:
    """Rows to replay, in log order; unusable lines are reported, never fatal."""
    columns = {
        r.replay_into: schema.tables[r.replay_into].column_names
        for r in settings.records.values()
        if r.replay_into
    }
    for path in paths:
        if on_file is not None:
            on_file(path)
        report.files += 1
        name = path.name
        for line in ndjson.scan(path):
            report.lines += 1
            if line.record is None:
                report.problems.append(f"{_where(name, line.number)}: {line.problem}")
                continue
            kind = line.record.get("record_type")
            record = settings.records.get(str(kind))
            payload = line.record.get("payload")
            if record is None or record.replay_into is None:
                if record is None:
                    report.problems.append(
                        f"{_where(name, line.number)}: unknown record_type {kind!r}"
                    )
                continue
            if not isinstance(payload, dict):
                report.problems.append(f"{_where(name, line.number)}: payload is not an object")
                continue
            table = record.replay_into
            row = {c: payload[c] for c in columns[table] if c in payload}
            yield Item(table, row, name, line.number)


def batches(settings: LogSettings, stream: Iterator[Item]) -> Iterator[tuple[str, list[Item]]]:
    """Group items per table, at most BATCH each. Tables of earlier record types (runs)
    are always flushed before later ones (events), so a child's parent is in first."""
    order = [r.replay_into for r in settings.records.values() if r.replay_into]
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


def replay(
    schema: Schema,
    settings: LogSettings,
    directory: Path,
    write: Callable[[str, list[dict[str, Any]]], None],
    report: ReplayReport,
    on_file: Callable[[Path], None] | None = None,
) -> ReplayReport:
    """Replay every log file of `directory` through `write(table, rows)`.

    `write` raises a TelelakeError for a batch it refuses; the batch is then written row
    by row so that one bad record costs only itself (and is reported).
    """
    paths = ndjson.files(directory, settings.prefix)
    stream = items(schema, settings, paths, report, on_file)
    for table, group in batches(settings, stream):
        try:
            write(table, [i.row for i in group])
            report.rows[table] = report.rows.get(table, 0) + len(group)
        except TelelakeError:
            for item in group:
                try:
                    write(table, [item.row])
                    report.rows[table] = report.rows.get(table, 0) + 1
                except TelelakeError as exc:
                    report.problems.append(f"{item.where}: {exc}")
    return report
