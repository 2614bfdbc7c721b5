"""The demo summary of a collection session, answered by the store's own SQL (no psutil)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from rich.table import Table as RichTable

from telelake._lazy import lazy
from telelake.query import Result
from telelake.store import Store

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy("pyarrow")

TITLES = {
    "session": "Session",
    "top_cpu": "Top processes by CPU",
    "top_rss": "Top processes by resident memory",
    "by_type": "Processes by type",
    "tables": "Tables",
}

# The latest sample of each process of the session, joined to its feature row.
_PROCS = """
    SELECT f.pid, s.cmd, f.proc_type,
           round(CAST(f.cpu_pct_avg AS DOUBLE), 1) AS cpu_pct_avg,
           round(CAST(f.cpu_pct_instant AS DOUBLE), 1) AS cpu_pct_instant,
           round(CAST(f.mem_mb AS DOUBLE), 1) AS rss_mb,
           round(CAST(f.mem_pct AS DOUBLE), 2) AS mem_pct,
           f.age_s
    FROM proc_features f
    JOIN proc_samples s
      ON s.session_id = f.session_id AND s.pid = f.pid AND s.start_id = f.start_id
     AND s.sample_ts = f.feature_ts
    WHERE f.session_id = $sid
"""
_QUERIES = {
    "session": """
        SELECT session_id, started_at, duration_ms, state, processes_scanned,
               CAST(json_extract(config_snapshot, '$.samples') AS INTEGER) AS samples
        FROM runs WHERE session_id = $sid
    """,
    "top_cpu": _PROCS
    + " ORDER BY f.cpu_pct_avg DESC NULLS LAST, f.cpu_pct_instant DESC, f.pid LIMIT $limit",
    "top_rss": _PROCS + " ORDER BY f.mem_mb DESC, f.pid LIMIT $limit",
    "by_type": """
        SELECT proc_type, COUNT(*) AS processes,
               round(SUM(CAST(mem_mb AS DOUBLE)), 1) AS rss_mb,
               round(SUM(CAST(cpu_pct_avg AS DOUBLE)), 1) AS cpu_pct
        FROM proc_features WHERE session_id = $sid
        GROUP BY proc_type ORDER BY processes DESC, proc_type
    """,
}


def latest_session(store: Store) -> str | None:
    """The most recent session id: from `runs`, else from `proc_samples` (None if empty)."""
    for query in (
        "SELECT session_id FROM runs ORDER BY started_at DESC LIMIT 1",
        "SELECT session_id FROM proc_samples ORDER BY sample_ts DESC LIMIT 1",
    ):
        sid = store.sql(query).scalar()
        if sid is not None:
            return str(sid)
    return None


def summary(store: Store, session_id: str | None = None, limit: int = 10) -> dict[str, Result]:
    """The demo summary of one session (default: the latest), as named Results.

    Keys: "session" (its runs row), "top_cpu" and "top_rss" (the `limit` processes using
    the most CPU / resident memory, from proc_features joined to their latest sample),
    "by_type" (processes per proc_type) and "tables" (rows, files and bytes per table).
    With no session in the store the per-session results are empty.
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    sid = session_id or latest_session(store)
    out: dict[str, Result] = {}
    for name, query in _QUERIES.items():
        params: dict[str, Any] = {"sid": sid or ""}
        if "$limit" in query:
            params["limit"] = limit
        out[name] = store.sql(query, params)
    out["tables"] = tables_result(store)
    return out


def tables_result(store: Store) -> Result:
    """`store.stats()` as a Result: table, tier, rows, files, bytes."""
    stats = store.stats()
    return Result(
        pa.table(
            {
                "table": pa.array([s.table for s in stats], pa.string()),
                "tier": pa.array([s.tier for s in stats], pa.string()),
                "rows": pa.array([s.rows for s in stats], pa.int64()),
                "files": pa.array([s.files for s in stats], pa.int64()),
                "bytes": pa.array([s.bytes for s in stats], pa.int64()),
            }
        )
    )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def render(summary: dict[str, Result]) -> list[RichTable]:
    """One rich Table per summary entry, titled, numbers right-aligned."""
    tables = []
    for name, result in summary.items():
        table = RichTable(title=TITLES.get(name, name), title_justify="left")
        arrow = result.to_arrow()
        for column, field in zip(result.columns, arrow.schema, strict=True):
            numeric = pa.types.is_integer(field.type) or pa.types.is_floating(field.type)
            table.add_column(column, justify="right" if numeric else "left")
        for row in result.rows():
            table.add_row(*(_cell(v) for v in row))
        tables.append(table)
    return tables
