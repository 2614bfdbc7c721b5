"""The `telelake` command line: one subcommand per thing a user does with a store."""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

from telelake import formats
from telelake.cliapp import App, Arg, Exit, Opt
from telelake.errors import TelelakeError
from telelake.formats import Rows

if TYPE_CHECKING:  # imported where a command needs them: start-up stays short
    from rich.console import Console
    from rich.progress import Progress

    from telelake import upkeep
    from telelake.store import Store

app = App(
    "telelake",
    help="A local-first telemetry store: declare tables once, write rows, query with DuckDB.",
)


class _LazyConsole:
    """A rich Console made at its first use (rich costs start-up time that `--format
    csv` or `json` never needs)."""

    def __init__(self, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    @property
    def rich(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr)
        return self._console

    def print(self, *objects: Any, **kwargs: Any) -> None:
        # A message is one line whatever the width, so that a path in it survives `grep`
        # and copy-paste (a terminal wraps it for the eye); tables keep their layout.
        if all(isinstance(o, str) for o in objects):
            kwargs.setdefault("soft_wrap", True)
        self.rich.print(*objects, **kwargs)


console = _LazyConsole()
err_console = _LazyConsole(stderr=True)


def escape(text: str) -> str:
    """Text shown as it is by rich (no markup)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


RootOpt = Annotated[
    Path | None,
    Opt(
        "--root",
        help="Store root folder [default: $TELELAKE_ROOT, else the schema's default root: "
        "~/.local/share/process_triage/telemetry for process_triage, "
        "~/.local/share/telelake/<schema> for others (on Linux)]",
    ),
]
SchemaOpt = Annotated[
    str | None,
    Opt(
        "--schema",
        help="Built-in schema name or path to a schema TOML file [default: the store's own "
        "schema; process_triage for a new store]",
    ),
]
QuietOpt = Annotated[bool, Opt("--quiet", "-q", help="No progress bar")]
QuietStepsOpt = Annotated[
    bool, Opt("--quiet", "-q", help="Print only the summary of each run, no steps")
]
FormatOpt = Annotated[str, Opt("--format", "-f", help="Result format: table, csv or json")]


def _progress(quiet: bool) -> Progress:
    """The progress bar of every long command (on stderr; `--quiet` hides it)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console.rich,
        disable=quiet,
    )


def _say_error(message: str) -> None:
    # soft_wrap keeps the message on one line, whatever the terminal width.
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


SKIPPED_EXIT = 3  # `recover`: the database was rebuilt, but log lines were skipped


def _fail(message: str) -> NoReturn:
    _say_error(message)
    raise Exit(1)


def _open(
    root: Path | None,
    schema: str | None,
    *,
    maintenance: bool = False,
    default: str = "process_triage",
) -> Store:
    """Open a store: with `schema`, or the store's own, or `default` for a new store.
    Background maintenance only for commands that write (`write`, `collect`): the
    others are quick looks that should not start (and then wait for) a maintenance run."""
    from telelake.store import locate

    path, model = locate(root, schema, default)
    import telelake

    return telelake.open(path, schema=model, maintenance=None if maintenance else False)


def _open_to_read(root: Path | None, schema: str | None) -> Store:
    """Open a store to read it: an existing store at its schema's version opens without
    writing anything (a new or older one opens as `_open` does)."""
    from telelake.store import Store, locate

    path, model = locate(root, schema)
    return Store(path, model, reading=True)


def _open_as_is(root: Path | None, schema: str | None, *, migrate: bool = False) -> Store:
    """Open a store without changing it: no SQL migration applied, no lake file rewritten
    (`migrate=True` only plans the rewrite of an older major version)."""
    from telelake.store import Store, locate

    path, model = locate(root, schema)
    return Store(path, model, migrate=migrate, plan_only=True)


def _print_result(result: formats.Printable, fmt: str) -> None:
    if fmt not in formats.OUTPUT_FORMATS:
        _fail(f"unknown format {fmt!r} (one of {', '.join(formats.OUTPUT_FORMATS)})")
    rows = result.rows()
    if fmt == "csv":
        formats.write_csv(result.columns, rows, sys.stdout)
    elif fmt == "json":
        formats.write_json(result.columns, rows, sys.stdout)
    else:
        from rich.table import Table as RichTable

        table = RichTable(show_lines=False)
        for name in result.columns:
            table.add_column(name, overflow="fold")
        for row in rows:
            table.add_row(*(formats.cell_text(v) for v in row))
        console.print(table)
        console.print(f"[dim]{len(rows)} row{'s' if len(rows) != 1 else ''}[/]")


@app.command()
def init(root: RootOpt = None, schema: SchemaOpt = None) -> None:
    """Create a store (or check an existing one) and print where it is."""
    with _open(root, schema) as store:
        console.print(f"store [bold]{store.schema.name}[/] {store.schema.version} at {store.root}")


@app.command()
def write(
    table: Annotated[str, Arg(help="Table to write to")],
    file: Annotated[str, Arg(help="Input file, or - for standard input")] = "-",
    input_format: Annotated[
        str, Opt("--format", "-f", help="Input format: ndjson, csv or parquet")
    ] = "ndjson",
    root: RootOpt = None,
    schema: SchemaOpt = None,
) -> None:
    """Validate rows from a file and write them to TABLE (all or nothing).

    NDJSON is one JSON object a line (blank lines skipped), UTF-8; a line that is not,
    that spells NaN or Infinity, or that repeats a key is refused naming the file and
    line, and nothing is written.
    """
    if input_format not in formats.INPUT_FORMATS:
        _fail(f"unknown format {input_format!r} (one of {', '.join(formats.INPUT_FORMATS)})")
    source = "standard input" if file == "-" else file
    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        _fail(f"cannot read {source}: {exc.strerror}")
    with _open(root, schema, maintenance=True) as store:
        rows = formats.read_rows(data, input_format, store.table(table), source)
        n = store.write(table, rows)
    console.print(f"wrote {n} row{'s' if n != 1 else ''} to {table}")


@app.command()
def sql(
    text: Annotated[str, Arg(help="SQL over the store's tables")],
    engine: Annotated[
        str | None,
        Opt(
            "--engine",
            help="duckdb (lake tables, views, macros) or sqlite (sql tables, read-only); "
            "default: duckdb if the schema has lake tables",
        ),
    ] = None,
    allow_external: Annotated[
        bool,
        Opt(
            "--allow-external",
            help="DuckDB in full: COPY TO, ATTACH, CREATE, SET and files outside the store "
            "(default: read-only, the store's files only)",
        ),
    ] = False,
    fmt: FormatOpt = "table",
    root: RootOpt = None,
    schema: SchemaOpt = None,
) -> None:
    """Run SQL over the store's tables, views and macros (read-only, confined to the
    store unless --allow-external)."""
    if fmt not in formats.OUTPUT_FORMATS:
        _fail(f"unknown format {fmt!r} (one of {', '.join(formats.OUTPUT_FORMATS)})")
    with _open_to_read(root, schema) as store:
        _print_result(store.sql_rows(text, engine=engine, allow_external=allow_external), fmt)


def _parse_params(params: list[str], typed: set[str] | None = None) -> dict[str, Any]:
    """NAME=VALUE pairs; values of `typed` parameters stay text (the query converts them
    by their declared type, so project "2024" stays a string), others are guessed."""
    out: dict[str, Any] = {}
    for item in params:
        if "=" not in item:
            _fail(f"--param {item!r}: use NAME=VALUE")
        key, value = item.split("=", 1)
        key = key.strip()
        out[key] = value if key in (typed or set()) else _guess_scalar(value)
    return out


def _guess_scalar(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


@app.command()
def query(
    name: Annotated[str, Arg(help="Named query of the schema")],
    param: Annotated[
        list[str] | None, Opt("--param", "-p", help="Query parameter NAME=VALUE")
    ] = None,
    fmt: FormatOpt = "table",
    root: RootOpt = None,
    schema: SchemaOpt = None,
) -> None:
    """Run one of the schema's named queries."""
    with _open_to_read(root, schema) as store:
        declared = store.schema.queries.get(name)
        typed = {p.name for p in declared.params if p.type} if declared else set()
        _print_result(store.query(name, **_parse_params(param or [], typed)), fmt)


@app.command()
def tables(fmt: FormatOpt = "table", root: RootOpt = None, schema: SchemaOpt = None) -> None:
    """List tables with their tier, rows, files and bytes on disk."""
    with _open_to_read(root, schema) as store:
        _print_result(_stats_result(store), fmt)


def _stats_result(store: Store, stats: list[Any] | None = None) -> Rows:
    stats = store.stats() if stats is None else stats
    return Rows.of(stats, ["table", "tier", "rows", "files", "bytes"])


@app.command()
def describe(
    table: Annotated[str, Arg(help="Table to describe")],
    fmt: FormatOpt = "table",
    root: RootOpt = None,
    schema: SchemaOpt = None,
) -> None:
    """Show a table's columns, types, nullability, redaction and layout."""

    with _open_to_read(root, schema) as store:
        t = store.table(table)
        if fmt == "table":
            key = ", ".join(t.key) or "none"
            parts = "/".join(t.partition.names) or "none"
            console.print(f"[bold]{t.name}[/] ({t.tier}): {t.description}")
            console.print(
                f"time column: {t.time or 'none'}; key: {key}; partitions: {parts}; "
                f"retention: {t.retention_days or 'forever'} days"
            )
            if t.parquet:
                p = t.parquet
                console.print(
                    f"parquet: {p.file_prefix}_*.parquet, row groups "
                    f"{p.row_group_bytes} bytes, {p.compression} "
                    f"level {p.compression_level}, dictionary: "
                    f"{', '.join(p.dictionary) or 'none'}; sort: "
                    f"{', '.join(p.sort) or 'none'}"
                )
        result = Rows.from_columns(
            {
                "column": [c.name for c in t.columns],
                "type": [c.type.name for c in t.columns],
                "nullable": [c.nullable for c in t.columns],
                "enum": [", ".join(map(str, c.enum)) if c.enum else None for c in t.columns],
                "redact": [store.redaction(table).get(c.name) for c in t.columns],
                "description": [c.description for c in t.columns],
            }
        )
        _print_result(result, fmt)


@app.command()
def check(
    repair: Annotated[
        bool, Opt("--repair", help="Quarantine bad files and fold damaged WAL segments")
    ] = False,
    deep: Annotated[
        bool, Opt("--deep", help="Also read every page of every data file, checking its CRC")
    ] = False,
    fmt: FormatOpt = "table",
    root: RootOpt = None,
    schema: SchemaOpt = None,
) -> None:
    """Read every data file, WAL segment and metadata file; report (and repair) problems."""

    # A plain check only reads (it runs on a full disk); repair writes.
    with _open(root, schema) if repair else _open_to_read(root, schema) as store:
        report = store.check(repair=repair, deep=deep)
    checked = ", ".join(f"{n} {kind}" for kind, n in sorted(report.checked.items()))
    if fmt == "table":
        console.print(f"checked {checked or 'nothing'}")
    if report.findings or fmt != "table":
        _print_result(
            Rows.from_columns(
                {
                    "path": [str(f.path) for f in report.findings],
                    "kind": [f.kind for f in report.findings],
                    "problem": [f.problem for f in report.findings],
                    "repair": [f.action or None for f in report.findings],
                }
            ),
            fmt,
        )
    if not report.ok:
        left = [f for f in report.findings if not f.action]
        # --repair quarantines files; a damaged database's finding says what to run, and
        # a log's bad lines are left for replay and recover to skip (and report).
        repairable = any(f.kind not in ("database", "log") for f in left)
        _fail(
            f"{len(left)} problem(s) found"
            + ("" if repair or not repairable else "; run `telelake check --repair`")
        )


@app.command()
def fold(root: RootOpt = None, schema: SchemaOpt = None) -> None:
    """Fold WAL rows (this host's orphaned segments included) into Parquet files."""
    with _open(root, schema) as store:
        n = store.fold()
    console.print(f"folded {n} row{'s' if n != 1 else ''}")


@app.command()
def compact(
    table: Annotated[
        str | None, Opt("--table", help="Only this table [default: every lake table]")
    ] = None,
    older_than: Annotated[
        str | None,
        Opt("--older-than", help="Only partitions whose time range ended this long ago (7d, 12h)"),
    ] = None,
    dry_run: Annotated[
        bool, Opt("--dry-run", help="Say what would be merged; change nothing")
    ] = False,
    quiet: QuietOpt = False,
    root: RootOpt = None,
    schema: SchemaOpt = None,
) -> None:
    """Merge the small Parquet files of each partition into one (spec 000 §5.3)."""
    with _open(root, schema) as store:
        plan = store.compact(table, older_than, dry_run=True)
        if dry_run:
            report = plan
        else:
            with _progress(quiet) as progress:
                task = progress.add_task("compacting partitions", total=plan.partitions)
                report = store.compact(
                    table, older_than, on_partition=lambda _t, _r: progress.advance(task)
                )
    before, after, bytes_before, bytes_after = report.totals()
    for name, results in report.tables.items():
        if results:
            files = sum(r.files_before for r in results)
            console.print(f"{name}: {len(results)} partition(s), {files} files")
    verb = "would merge" if dry_run else "merged"
    size = "" if dry_run else f", {bytes_before:,} -> {bytes_after:,} bytes"
    console.print(f"{verb} {before} files into {after} in {report.partitions} partition(s){size}")


@app.command()
def retention(
    dry_run: Annotated[
        bool, Opt("--dry-run", help="Say what would be removed; change nothing")
    ] = False,
    quiet: QuietOpt = False,
    root: RootOpt = None,
    schema: SchemaOpt = None,
) -> None:
    """Remove rows past each table's retention, then keep under max_disk_gb (spec 000 §5)."""

    with _open(root, schema) as store:
        _print_settings(store)
        plan = store.enforce_retention(dry_run=True)
        steps = plan.steps
        if steps:  # what goes, printed before it goes
            _print_result(
                Rows.of(steps, ["table", "partition", "action", "rows", "bytes"]),
                "table",
            )
        report = plan
        if not dry_run:
            with _progress(quiet) as progress:
                task = progress.add_task("removing partitions", total=len(steps))
                report = store.enforce_retention(on_step=lambda _s: progress.advance(task))
    parts, rows, size = report.totals()
    verb = "would remove" if dry_run else "removed"
    console.print(f"{verb} {rows} rows in {parts} partition(s), {size:,} bytes")


def _print_settings(store: Store) -> None:
    """The retention settings in force, and where each came from."""
    from rich.table import Table as RichTable

    from telelake import upkeep

    settings = store.retention()
    table = RichTable(title="settings in force", title_justify="left", show_lines=False)
    for name in ("setting", "value", "from"):
        table.add_column(name)
    for name, value, source in upkeep.settings_rows(settings, list(store.schema.tables)):
        table.add_row(name, _setting_text(name, value), source)
    console.print(table)


def _setting_text(name: str, value: Any) -> str:
    if value is None:
        return {"max_disk_gb": "no budget", "backups_keep": "all"}.get(name, "forever")
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


@app.command()
def maintain(
    every: Annotated[
        str | None,
        Opt(
            "--every",
            help="Keep running: maintain whenever the last run is this old (1h, 30m); "
            "stop with Ctrl-C or SIGTERM",
        ),
    ] = None,
    quiet: QuietStepsOpt = False,
    root: RootOpt = None,
    schema: SchemaOpt = None,
) -> None:
    """Run maintenance now: retention, disk budget, auto_compact (what opening a store
    for writing does by itself once per maintenance_interval).

    One process at a time: if another one is maintaining the store, this one says so
    and does nothing. Each run is recorded; `telelake status` shows the last one.
    """
    import signal
    import threading

    from telelake import upkeep
    from telelake.durations import parse_age

    interval = None
    if every is not None:
        try:
            interval = parse_age(every)
        except ValueError as exc:
            _fail(f"--every: {exc}")
        if interval.total_seconds() <= 0:
            _fail("--every must be a positive duration")
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()  # the run stops after its step in progress; a second signal kills
        signal.signal(signum, signal.SIG_DFL)

    def tell(step: str) -> None:
        if not quiet:
            err_console.print(escape(step), highlight=False, soft_wrap=True)

    handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    failed = False
    try:
        with _open(root, schema) as store:
            while True:
                report = store.maintain(if_older_than=interval, stop=stop, on_step=tell)
                if report.status != upkeep.SKIPPED or interval is None:
                    _print_run(report)
                failed = report.status == upkeep.FAILED
                if interval is None or stop.is_set():
                    break
                runs, _ = upkeep.read_runs(store)
                due = upkeep.next_due(runs, interval)
                if report.busy:
                    due = min(due, report.started + dt.timedelta(seconds=upkeep.BUSY_RETRY))
                if not quiet:
                    console.print(f"next run due {upkeep.iso(due)}")
                if upkeep.sleep_until(stop, due):
                    break
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    if stop.is_set():
        console.print("stopped")
    if failed:
        raise Exit(1)


def _print_run(report: upkeep.MaintenanceReport, label: str = "maintenance") -> None:
    from telelake import upkeep

    if report.status == upkeep.SKIPPED:
        console.print(f"skipped: {escape(report.skipped or '')}")
        return
    console.print(
        f"{label}: {report.status} ({report.trigger}), started {upkeep.iso(report.started)}, "
        f"took {report.seconds:.1f} s"
    )
    for line in upkeep.describe(report):
        console.print(f"  {escape(line)}", highlight=False, soft_wrap=True)


@app.command()
def status(
    fmt: Annotated[str, Opt("--format", "-f", help="table or json")] = "table",
    root: RootOpt = None,
    schema: SchemaOpt = None,
) -> None:
    """Show the store's maintenance (last run, what it removed, next run), its settings
    and where each came from, and every table's rows, files and bytes."""
    import json

    from telelake import upkeep

    with _open_to_read(root, schema) as store:
        st = store.status()
        if fmt == "json":
            sys.stdout.write(json.dumps(st.to_json(), indent=2) + "\n")
            return
        if fmt != "table":
            _fail(f"unknown format {fmt!r} for status (table or json)")
        console.print(f"store [bold]{st.schema}[/] {st.version} at {escape(str(st.root))}")
        console.print(f"automatic maintenance: {escape(st.automatic)}")
        if st.running is not None:
            who = f"pid {st.running}" if st.running > 0 else "another process"
            console.print(f"running now: {who}")
        if st.last_run is None:
            console.print("last run: never")
        else:
            _print_run(st.last_run, "last run")
            last = st.last_completed
            if last is not None and last is not st.last_run and last.finished is not None:
                console.print(f"last completed run: {upkeep.iso(last.finished)}")
        if st.next_due is not None:
            now = dt.datetime.now(dt.UTC)
            when = "now (at the next open for writing)" if st.next_due <= now else ""
            console.print(f"next run due: {when or upkeep.iso(st.next_due)}")
        for problem in st.problems:
            _say_error(problem)
        with contextlib.suppress(TelelakeError):  # a broken config.json: said just above
            _print_settings(store)
        _print_result(_stats_result(store, st.tables), "table")
    if st.problems:
        raise Exit(1)


redact_app = App("redact", help="Redaction: check that no secret reached disk; the hashing key.")
app.add_app(redact_app)
RedactRootArg = Annotated[
    Path | None,
    Arg(metavar="ROOT", help="The store's folder [default: the store root, as --root would give]"),
]


def _redact_target(path: Path | None, root: Path | None, schema: str | None) -> Path:
    """ROOT, else --root, else the default root of the schema (or the default schema)."""
    from telelake.store import DEFAULT_SCHEMA, default_root

    return (path or root or default_root(schema or DEFAULT_SCHEMA)).expanduser().resolve()


@redact_app.command("scan")
def redact_scan(
    path: RedactRootArg = None,
    root: RootOpt = None,
    schema: SchemaOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Read every file under a store (Parquet, WAL, NDJSON, SQLite, exports, backups) and
    report each string the secret-pattern rules would redact; exit 1 if any is found.

    Findings name the file, the place in it (column and row, or byte offset) and the
    rules, never the text itself.
    """
    from telelake.redact import scan as scanner

    target = _redact_target(path, root, schema)
    if not target.is_dir():
        _fail(f"{target} is not a folder")
    files = scanner.files_under(target)
    with _progress(quiet) as progress:
        task = progress.add_task("scanning", total=len(files))
        report = scanner.scan(target, on_file=lambda _: progress.advance(task))
    for finding in report.findings:
        console.print(escape(str(finding)), highlight=False, soft_wrap=True)
    summary = f"{report.files} file(s), {report.strings:,} string(s) scanned under {target}"
    if report.clean:
        console.print(f"{summary}: nothing secret-looking found")
        return
    _say_error(f"{summary}: {len(report.findings)} secret-looking string(s) found")
    raise Exit(1)


@redact_app.command("new-key")
def redact_new_key(
    path: RedactRootArg = None,
    root: RootOpt = None,
    schema: SchemaOpt = None,
    confirm: Annotated[
        bool, Opt("--confirm", help="Yes: new hash markers will not match the old ones")
    ] = False,
) -> None:
    """Start a new hashing key for a store whose key is lost (or to rotate it).

    Values hashed from now on get other markers than the same values hashed before, so
    joins and group-bys across the two break: restore the old `_metadata/redaction.key`
    from a backup instead if you can. The old key's fingerprint stays in
    `_metadata/redaction.json`. Run it while no process writes the store.
    """
    from telelake.redact import key

    target = _redact_target(path, root, schema)
    if not confirm:
        _fail(
            f"a new key gives values hashed from now on other markers than before in {target}: "
            "restore the old key file if you can, or add --confirm"
        )
    try:
        old, new = key.new_key(target)
    except TelelakeError as exc:
        _fail(str(exc))
    before = f"replaces key {old}" if old else "is the store's first"
    console.print(f"new redaction key {new} for {target} ({before})")


migrate_app = App(
    "migrate", help="Bring a store to its schema's version: SQL migrations and lake rewrites."
)
app.add_app(migrate_app)


@migrate_app.command("up")
def migrate_up(
    schema: Annotated[
        str | None,
        Opt(
            "--schema",
            help="The schema (name or TOML path) to migrate to [default: the store's own: "
            "for a built-in schema, its version in this telelake]",
        ),
    ] = None,
    dry_run: Annotated[
        bool, Opt("--dry-run", help="Say what would be done; write nothing")
    ] = False,
    root: RootOpt = None,
) -> None:
    """Apply pending SQL migrations; rewrite lake files of an older major version.

    Applied SQL migrations are checked against their checksums first: a changed one
    stops everything. Lake files are rewritten with the schema's [migrations.from_N],
    every row validated before any file changes.
    """
    from telelake.store import Store

    with _open_as_is(root, schema, migrate=True) as store:
        model, path = store.schema, store.root
        report = store.migration  # every row checked, nothing written
        pending = [s for s in _sql_status(store) if s.state == "pending"]
        if pending and not dry_run:
            store.migrate_sql("up")
    for s in pending:
        verb = "would apply" if dry_run else "applied"
        console.print(f"sql migration {s.version} ({s.name}): {verb}")
    if report is not None and not dry_run:
        files = sum(t.files for t in report.tables.values())
        with _progress(False) as progress:
            task = progress.add_task("migrating files", total=files)
            with Store(
                path, model, migrate=True, on_migrated=lambda _t: progress.advance(task)
            ) as store:
                report = store.migration
    if report is None:
        console.print(f"lake files: nothing to migrate, the store is at version {model.version}")
        return
    for t in report.tables.values():
        console.print(f"{t.table}: {t.files} file(s), {t.rows} rows {t.how}")
    verb = "would migrate" if dry_run else "migrated"
    console.print(f"{verb} {report.from_version} -> {report.to_version}")


def _sql_status(store: Store) -> list[Any]:
    if not any(t.tier == "sql" for t in store.schema.tables.values()):
        return []
    return store.migration_status()


@migrate_app.command("down")
def migrate_down(
    to: Annotated[int | None, Opt("--to", help="Revert down to this version")] = None,
    dev: Annotated[bool, Opt("--dev", help="Development/testing: reverting is routine")] = False,
    confirm: Annotated[
        bool,
        Opt("--confirm-rollback", help="Production: the operator confirms this manual rollback"),
    ] = False,
    root: RootOpt = None,
    schema: SchemaOpt = None,
) -> None:
    """Revert SQL migrations (the newest one, or down to --to).

    Spec 001's rules: in development and testing (`--dev`) every migration ships its
    down SQL and reverting is routine; in production a rollback is manual and is
    refused unless the operator confirms it with `--confirm-rollback`.
    """
    if not dev and not confirm:
        _fail(
            "migrate down reverts schema changes and can drop data: pass --dev in "
            "development/testing, or --confirm-rollback to confirm a production rollback"
        )
    with _open(root, schema) as store:
        done = store.migrate_sql("down", to, confirm=True)  # --dev / --confirm-rollback
    for version in done:
        console.print(f"reverted sql migration {version}")
    if not done:
        console.print("nothing to revert")


@migrate_app.command("status")
def migrate_status(
    fmt: FormatOpt = "table", root: RootOpt = None, schema: SchemaOpt = None
) -> None:
    """List the schema's SQL migrations: applied, pending, changed or missing."""
    with _open_as_is(root, schema) as store:  # applies nothing, even if changed
        rows = _sql_status(store)
    _print_result(
        Rows.of(
            rows,
            # schema_version: the version the schema's spec names (agent_runs: 3), if any.
            ["version", "name", "state", "applied_at_ms", "reversible", "schema_version"],
        ),
        fmt,
    )


@app.command()
def backup(
    to: Annotated[
        Path | None, Opt("--to", help="Folder for the copy (default: <root>/backups)")
    ] = None,
    keep: Annotated[int | None, Opt("--keep", help="Keep only the newest N backups", min=1)] = None,
    name_style: Annotated[
        str,
        Opt(
            "--name-style",
            help="dated: <db>.backup.YYYYMMDD.sqlite (_HHMMSS when the day has one); "
            "timestamped: <db>_backup_YYYYMMDD_HHMMSS.sqlite",
            metavar="dated|timestamped",
        ),
    ] = "dated",
    quiet: QuietOpt = False,
    root: RootOpt = None,
    schema: SchemaOpt = None,
) -> None:
    """Back up the store's SQL database online, checking it before and after.

    The copy's name is either of spec 003's: dated (the default) or timestamped.
    """
    with _open(root, schema) as store, _progress(quiet) as progress:
        task = progress.add_task("copying pages", total=None)

        def tell(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        report = store.backup(to, keep=keep, on_progress=tell, name_style=name_style)
    console.print(
        f"backup {report.path} ({report.bytes:,} bytes, {report.pages:,} pages): "
        f"quick_check {report.quick_check}, integrity_check {report.integrity_check}"
    )
    for old in report.removed:
        console.print(f"removed old backup {old}")
    for stale in report.stale_removed:
        console.print(f"removed {stale}, left by a backup that did not finish")


@app.command()
def recover(
    quiet: QuietOpt = False,
    root: RootOpt = None,
    schema: SchemaOpt = None,
) -> None:
    """Rebuild the SQL database from the NDJSON raw log, keeping what the log lacks.

    The current database is moved aside as <stem>.corrupted.<timestamp>.sqlite first;
    every table is filled from it as far as it can be read (commits are not in the log),
    then the log is replayed over it. Unusable lines (a truncated last line after a
    crash) are skipped and reported, as is whatever could not be saved. Exit status 3:
    rebuilt, but lines of the log were skipped.
    """
    # Its database may be unreadable: nothing is applied until recover() rebuilds it.
    with _open_as_is(root, schema) as store:
        report = _replaying(store, quiet, store.recover)
    if report.moved_aside is not None:
        console.print(f"moved the old database aside to {report.moved_aside}")
    carried = ", ".join(f"{n:,} {t}" for t, n in report.carried.items())
    if report.moved_aside is not None:
        console.print(f"carried over from it: {carried or 'no rows'}")
    _print_replay(report)
    for lost in report.not_saved:
        _say_error(f"not saved: {lost}")
    if report.problems:  # rebuilt without what it skipped: no script may take it for whole
        _say_error(f"rebuilt without {len(report.problems)} skipped line(s) (exit status 3)")
        raise Exit(SKIPPED_EXIT)


@app.command()
def replay(
    quiet: QuietOpt = False,
    root: RootOpt = None,
    schema: SchemaOpt = None,
) -> None:
    """Replay the NDJSON raw log into the current database (fills run_events).

    Nothing is moved aside or removed: rows the log holds and the database misses are
    added, an update replaces a row only if it is at least as new. Running it twice
    adds nothing the second time.
    """
    with _open(root, schema) as store:
        report = _replaying(store, quiet, store.replay)
    _print_replay(report)
    added = ", ".join(f"{n:,} {t}" for t, n in report.added.items()) or "nothing"
    console.print(f"new rows: {added}")


def _replaying(store: Store, quiet: bool, run: Any) -> Any:
    """Run `store.recover` or `store.replay` with a progress bar over the log files."""
    from telelake.log import replay as log_replay

    settings = store.schema.log
    paths = (
        log_replay.log_files(store.root / settings.directory, settings.prefix)[0]
        if settings
        else []
    )
    with _progress(quiet) as progress:
        task = progress.add_task("replaying log files", total=len(paths))
        return run(on_file=lambda _p: progress.advance(task))


def _print_replay(report: Any) -> None:
    """What a replay read and wrote, and every line it could not use."""
    rows = ", ".join(f"{n:,} {t}" for t, n in report.rows.items()) or "no rows"
    console.print(f"replayed {report.files} file(s), {report.lines:,} lines: {rows}")
    if report.other_files:  # the daily files go without saying
        console.print(f"also replayed: {', '.join(report.other_files)}")
    for skipped in report.skipped_files:
        _say_error(f"skipped file {skipped}")
    for label, n in report.ignored_fields.items():
        console.print(f"ignored field {label} (not a column) in {n:,} line(s)")
    for problem in report.problems[:20]:
        _say_error(f"skipped {problem}")
    if len(report.problems) > 20:
        _say_error(f"... and {len(report.problems) - 20} more skipped lines")


@app.command()
def export(
    table: Annotated[str, Arg(help="Table to export (any table of the schema)")],
    export_format: Annotated[
        str, Opt("--format", "-f", help="csv (RFC 4180), parquet, json or ndjson")
    ] = "csv",
    to: Annotated[
        Path | None, Opt("--to", help="Folder for the file (default: <root>/exports)")
    ] = None,
    where: Annotated[
        str | None,
        Opt("--where", help="Only rows matching this SQL condition (the tier's dialect)"),
    ] = None,
    quiet: QuietOpt = False,
    root: RootOpt = None,
    schema: SchemaOpt = None,
) -> None:
    """Write the rows of TABLE to a new file <table>_<UTC time>.<ext>, atomically.

    Columns in declared order. CSV is RFC 4180 (header, CRLF, UTF-8, NULL an empty
    unquoted field, an empty string ""); json is one array of objects, ndjson one object
    per line; parquet keeps the table's types. See `telelake.export` for value formats.
    """
    from telelake.export import FORMATS, export_table

    if export_format not in FORMATS:
        _fail(f"unknown format {export_format!r} (one of {', '.join(FORMATS)})")
    with _open_to_read(root, schema) as store, _progress(quiet) as progress:
        task = progress.add_task(f"exporting {table}", total=None)
        report = export_table(
            store,
            table,
            export_format,
            directory=to,
            where=where,
            on_rows=lambda n: progress.update(task, completed=n),
        )
    rows = f"{report.rows} row{'s' if report.rows != 1 else ''}"
    console.print(f"exported {rows} of {table} to {report.path} ({report.bytes:,} bytes)")


runs_app = App("runs", help="Agent runs (schema agent_runs).")
app.add_app(runs_app)


@runs_app.command("repost")
def runs_repost(
    api_url: Annotated[str, Opt("--api-url", help="Endpoint to POST runs to")],
    api_token: Annotated[
        str | None, Opt("--api-token", help="Bearer token", envvar="TELELAKE_API_TOKEN")
    ] = None,
    attempts: Annotated[int, Opt(help="Attempts per run", min=1)] = 3,
    root: RootOpt = None,
    schema: SchemaOpt = None,
) -> None:
    """Post every finished run whose earlier post failed (api_posted = 0)."""
    with _open(root, schema, default="agent_runs") as store:
        client = store.run_client(api_url, api_token=api_token, attempts=attempts)
        report = client.repost()
    console.print(f"posted {len(report.posted)} run(s); {len(report.failed)} failed again")
    if report.failed:
        raise Exit(1)


contract_app = App("contract", help="The storage contract of a schema, as JSON Schema.")
app.add_app(contract_app)


ContractSchemaOpt = Annotated[
    str | None,
    Opt(
        "--schema",
        help="Built-in schema name or path to a schema TOML file [default: the schema of "
        "the store at --root; search_ops where there is none]",
    ),
]
ContractRootOpt = Annotated[
    Path | None,
    Opt(
        "--root",
        help="A store whose schema's contract to use [default: $TELELAKE_ROOT, else "
        "search_ops's default root]",
    ),
]


def _contract_schema(root: Path | None, schema: str | None) -> Any:
    """The schema a contract command works on: --schema, else the store's, else
    search_ops. A store holding another schema than --schema is an error naming both."""
    from telelake.errors import StoreError
    from telelake.metadata import MetadataDir
    from telelake.store import locate

    path, model = locate(root, schema, default="search_ops")
    info = MetadataDir(path).store_info()
    if schema is not None and info is not None and info.get("schema") != model.name:
        raise StoreError(
            f"store {path} holds schema {info.get('schema')!r}, not {model.name!r}: "
            "leave out --schema to use its own, or use another root"
        )
    return model


@contract_app.command("validate")
def contract_validate(
    document: Annotated[Path, Arg(help="A storage document (JSON) to check")],
    against: Annotated[
        Path | None,
        Opt("--schema-file", help="JSON Schema to use; default: the schema's contract"),
    ] = None,
    schema: ContractSchemaOpt = None,
    root: ContractRootOpt = None,
) -> None:
    """Validate a storage document against a contract (exit 1 naming each problem)."""
    from telelake.schema import contract

    rules = (
        contract.load_json(against)
        if against is not None
        else contract.contract_schema(_contract_schema(root, schema))
    )
    problems = contract.validate_document(rules, contract.load_json(document))
    for problem in problems:
        _say_error(f"{document}: {problem}")
    if problems:
        raise Exit(1)
    console.print(f"{document}: valid")


@contract_app.command("export")
def contract_export(
    out: Annotated[Path, Opt("--out", help="Folder to write into")] = Path("schemas"),
    stem: Annotated[
        str | None, Opt("--stem", help="File stem; default <schema>-storage-v<major>")
    ] = None,
    schema: ContractSchemaOpt = None,
    root: ContractRootOpt = None,
) -> None:
    """Write the contract JSON Schema, a valid fixture and an invalid one (no indexes)."""
    from telelake.schema import contract

    model = _contract_schema(root, schema)
    paths = contract.write_artifacts(model, out, stem or f"{model.name}-storage-v{model.major}")
    for path in paths:
        console.print(f"wrote {path}")


@app.command()
def collect(
    samples: Annotated[int, Opt(help="Snapshots of all processes to take", min=1)] = 3,
    interval: Annotated[float, Opt(help="Seconds between snapshots", min=0.0)] = 1.0,
    quiet: QuietOpt = False,
    root: RootOpt = None,
) -> None:
    """Sample this host's real processes into proc_samples, proc_features, runs and audit."""
    from telelake.collect import collect as run_collect

    with _open(root, "process_triage", maintenance=True) as store:
        with _progress(quiet) as progress:
            task = progress.add_task("sampling processes", total=samples)
            result = run_collect(
                store,
                samples=samples,
                interval=interval,
                on_sample=lambda i, n: progress.update(task, completed=i),
            )
        counts = ", ".join(f"{t}={n}" for t, n in result.rows.items())
        console.print(
            f"session [bold]{result.session_id}[/]: {result.processes} processes, "
            f"{result.samples} samples ({counts}) into {store.root}"
        )


@app.command()
def report(
    limit: Annotated[int, Opt(help="Processes per list", min=1)] = 10,
    root: RootOpt = None,
) -> None:
    """Summarise the latest collection: top processes by CPU and RSS, and the tables."""
    from telelake.collect.report import render, summary

    with _open(root, "process_triage") as store:
        for renderable in render(summary(store, limit=limit)):
            console.print(renderable)
        total = sum(s.bytes for s in store.stats())
        console.print(f"store {store.root}: {total:,} bytes on disk")


def main() -> None:
    """Entry point: run the app, turning telelake errors into one line and exit 1."""
    try:
        app.run(sys.argv[1:])
    except Exit as exc:
        sys.exit(exc.code)
    except (TelelakeError, OSError, ValueError) as exc:
        _say_error(str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
