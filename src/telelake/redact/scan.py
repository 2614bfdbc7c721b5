"""`telelake redact scan`: look through every file under a root for secret-looking text.

A store's promise is that nothing unredacted reaches disk; this is the check. Each file
is read the way it is stored, so compression cannot hide anything:

- Parquet files: every string value of every column, and the raw bytes (footers hold
  column statistics and key-value metadata uncompressed);
- WAL segments: every string value of every complete record;
- SQLite databases: every text value of every table;
- anything else (NDJSON logs, exports, SQLite's -wal files, backups' side files): the
  printable runs of its bytes, like `strings(1)`.

A string is reported when the secret-pattern rules would change it (the same test the
`pattern` policy applies), naming the file, where in it, and the rules, never the text.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from telelake._lazy import lazy
from telelake.lake import wal
from telelake.redact.key import KEY_NAME
from telelake.redact.patterns import Rule, redact_array, redact_text
from telelake.redact.policy import default_rules
from telelake.sql.connection import read_only

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
else:
    pa = lazy("pyarrow")
    pc = lazy("pyarrow.compute")
    pq = lazy("pyarrow.parquet")

SQLITE_MAGIC = b"SQLite format 3\x00"
MIN_RUN = 8  # shorter printable runs cannot hold any secret the rules know
_RUNS = re.compile(rb"[^\x00-\x08\x0a-\x1f\x7f]{%d,}" % MIN_RUN)  # tab stays inside a run
BUSY_TIMEOUT_MS = 5000


@dataclass(frozen=True)
class Group:
    """Strings of one place in a file: `where` formats the position of one of them."""

    where: str  # e.g. "column 'cmdline', row {}"
    values: list[str]
    positions: list[int] | None = None  # None: the index is the position (a row)

    def place(self, index: int) -> str:
        position = index if self.positions is None else self.positions[index]
        return self.where.replace("{}", str(position))


@dataclass(frozen=True)
class Finding:
    """One string that looks like it holds a secret."""

    path: Path
    where: str  # e.g. "column 'cmdline', row 3" or "byte run at offset 120"
    rules: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.path}: {self.where}: {', '.join(self.rules)}"


@dataclass
class ScanReport:
    """What a scan looked at and found."""

    root: Path
    files: int = 0
    strings: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """True when nothing was found."""
        return not self.findings


def scan(
    root: Path,
    rules: Sequence[Rule] | None = None,
    on_file: Callable[[Path], None] | None = None,
) -> ScanReport:
    """Scan every file under `root` (the store's redaction key aside)."""
    chosen = tuple(rules) if rules is not None else default_rules()
    report = ScanReport(root)
    for path in files_under(root):
        if on_file is not None:
            on_file(path)
        report.files += 1
        for group in _strings_of(path):
            report.strings += len(group.values)
            for index, names in _secret_like(group.values, chosen):
                report.findings.append(Finding(path, group.place(index), names))
    return report


def files_under(root: Path) -> list[Path]:
    """Every regular file under `root` but the redaction key, in a stable order."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != KEY_NAME)


def _secret_like(values: list[str], rules: Sequence[Rule]) -> Iterator[tuple[int, tuple[str, ...]]]:
    """(index, rule names) of each value the rules would change (RE2 first, then Python)."""
    if not values:
        return
    arr = pa.array(values, pa.string())
    changed = pc.not_equal(redact_array(arr, rules), arr)
    for index in pc.indices_nonzero(changed).to_pylist():
        yield index, tuple(redact_text(values[index], rules)[1]) or ("pattern",)


def _strings_of(path: Path) -> Iterable[Group]:
    """The groups of strings of one file."""
    with path.open("rb") as fh:
        head = fh.read(len(SQLITE_MAGIC))
    if head == SQLITE_MAGIC:
        return _sqlite_strings(path)
    if path.suffix == wal.SUFFIX:
        return _wal_strings(path)
    if path.suffix == ".parquet":
        return [*_parquet_strings(path), *_byte_runs(path)]
    return _byte_runs(path)


def _table_strings(table: pa.Table) -> Iterator[Group]:
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            values = [v if v is not None else "" for v in column.to_pylist()]
            yield Group(f"column {name!r}, row {{}}", values)


def _parquet_strings(path: Path) -> Iterator[Group]:
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError):
        return  # not readable as Parquet: its bytes are still scanned
    yield from _table_strings(table)


def _wal_strings(path: Path) -> Iterator[Group]:
    contents = wal.read_segment(path)
    if contents.schema is None:
        yield from _byte_runs(path)
        return
    yield from _table_strings(contents.table())
    if contents.problem is not None or contents.damage is not None:
        yield from _byte_runs(path, start=contents.clean_bytes)  # whatever is not a good record


def _sqlite_strings(path: Path) -> Iterator[Group]:
    try:
        con = read_only(path, BUSY_TIMEOUT_MS)
    except sqlite3.Error:
        yield from _byte_runs(path)
        return
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            cursor = con.execute(f'SELECT * FROM "{table}"')
            names = [d[0] for d in cursor.description]
            columns: list[list[str]] = [[] for _ in names]
            for row in cursor:
                for i, value in enumerate(row):
                    columns[i].append(value if isinstance(value, str) else "")
            for name, values in zip(names, columns, strict=True):
                yield Group(f"table {table!r}, column {name!r}, row {{}}", values)
    except sqlite3.DatabaseError:
        yield from _byte_runs(path)  # a damaged database: look at its bytes instead
    finally:
        con.close()


def _byte_runs(path: Path, start: int = 0) -> Iterator[Group]:
    data = path.read_bytes()[start:]
    runs = list(_RUNS.finditer(data))
    if runs:
        values = [m.group().decode("utf-8", "replace") for m in runs]
        yield Group("bytes at offset {}", values, [start + m.start() for m in runs])
