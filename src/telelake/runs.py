"""Agent run telemetry in the spirit of spec 003's `TelemetryClient`.

A run is written to the NDJSON raw log and to `agent_runs` when it starts and when it
ends; its events go to the log only. `end()` can post the finished run to an HTTP
endpoint with bounded retries and backoff; the outcome is recorded in `api_posted`,
`api_posted_at` and `api_retry_count`, and a failed post never loses the run:
`repost()` (`telelake runs repost`) tries the unposted ones again.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from telelake import validate
from telelake.errors import StoreError

if TYPE_CHECKING:
    from telelake.store import Store

SCHEMA_VERSION = 3
_EPOCH = dt.datetime(1970, 1, 1)


def now_iso() -> str:
    """The current UTC time, ISO 8601 with microseconds (sorts as text)."""
    return iso_utc(time.time_ns() // 1000)


# The text of the last whole second iso_utc formatted: events come many per second, and
# formatting only the microseconds is a third of what a datetime costs per event.
_second: tuple[int, str] = (0, "1970-01-01T00:00:00")


def iso_utc(micros: int) -> str:
    """Microseconds since the epoch as `datetime.isoformat(timespec="microseconds")`
    writes them in UTC: `2026-01-02T03:04:05.000006+00:00`."""
    global _second
    second, fraction = divmod(micros, 1_000_000)
    cached = _second  # one read: another thread may replace it meanwhile
    if cached[0] != second:
        text = (_EPOCH + dt.timedelta(seconds=second)).isoformat()  # naive: no offset
        cached = _second = (second, text)
    return f"{cached[1]}.{fraction:06d}+00:00"


@dataclass(frozen=True)
class Poster:
    """Where and how finished runs are posted: JSON over HTTP, retried with backoff."""

    url: str
    token: str | None = None
    attempts: int = 3
    backoff: float = 0.5  # seconds before the 2nd attempt; doubled each time
    timeout: float = 5.0

    def post(self, record: dict[str, Any]) -> tuple[bool, int]:
        """Post one run; (posted, failed attempts)."""
        body = json.dumps(record).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(self.url, body, headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    if 200 <= response.status < 300:
                        return True, attempt
            except (urllib.error.URLError, TimeoutError, ConnectionError):
                continue  # the server is down or refused: try again after the backoff
        return False, self.attempts


# json.dumps' own settings (", " and ": ", ASCII), datetimes as json columns store them.
_JSON = json.JSONEncoder(default=validate.json_default, allow_nan=False)


def json_field(value: Any, store: str, table: str, column: str) -> str | None:
    """`value` as the JSON text of a json column (None stays None); a value JSON cannot
    hold is a ValidationError naming the column, and nothing is written."""
    if value is None:
        return None
    try:
        return _JSON.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise validate.value_error(store, table, column, 0, str(exc)) from None


class RunClient:
    """Start runs, record their events, end them; see the module docstring."""

    def __init__(self, store: Store, poster: Poster | None = None, host: str | None = None):
        if "agent_runs" not in store.schema.tables or "events" not in store.schema.tables:
            raise StoreError(
                f"schema {store.schema.name!r} has no agent_runs/events tables; open the "
                "store with schema='agent_runs'"
            )
        self.store = store
        self.poster = poster
        self.host = host or socket.gethostname()

    def start_run(self, agent_name: str, *, run_id: str | None = None, **fields: Any) -> Run:
        """Record a run as started (status 'running') and return its handle."""
        at = now_iso()
        record: dict[str, Any] = {
            "run_id": run_id or str(uuid.uuid4()),
            "schema_version": SCHEMA_VERSION,
            "agent_name": agent_name,
            "start_time": at,
            "status": "running",
            "host": self.host,
            "api_posted": 0,
            "api_retry_count": 0,
            "created_at": at,
            "updated_at": at,
            **fields,
        }
        self.store.write("agent_runs", [record])
        return Run(self, record)

    def post(self, record: dict[str, Any]) -> dict[str, Any]:
        """Post a finished run and record the outcome; returns the updated record."""
        if self.poster is None:
            return record
        # What leaves the machine is what the store keeps: the redacted record.
        posted, failures = self.poster.post(self.store.redacted("agent_runs", [record])[0])
        updated = {
            **record,
            "api_posted": int(posted),
            "api_posted_at": now_iso() if posted else record.get("api_posted_at"),
            "api_retry_count": int(record.get("api_retry_count") or 0) + failures,
            "updated_at": now_iso(),
        }
        self.store.write("agent_runs", [updated])
        return updated

    def repost(self) -> RepostReport:
        """Post every finished run not posted yet (oldest first)."""
        rows = self.store.sql(
            "SELECT * FROM agent_runs WHERE api_posted = 0 AND end_time IS NOT NULL "
            "ORDER BY end_time",
            engine="sqlite",
        ).to_pylist()
        report = RepostReport()
        for row in rows:
            (report.posted if self.post(row)["api_posted"] else report.failed).append(row["run_id"])
        return report


@dataclass
class RepostReport:
    """Runs posted and runs that failed again."""

    posted: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class Run:
    """One run in progress: `event()` as often as needed, then `end()` once.

    As a context manager it ends the run for you: 'success', or 'failure' with the
    exception in `error_summary`.
    """

    def __init__(self, client: RunClient, record: dict[str, Any]) -> None:
        self.client = client
        self.record = record
        self.ended = False

    @property
    def run_id(self) -> str:
        """The run's identifier."""
        return str(self.record["run_id"])

    def event(self, event_type: str, payload: Any = None) -> None:
        """Append an event of this run to the NDJSON log (fsynced before returning)."""
        store = self.client.store
        text = json_field(payload, store.schema.name, "events", "payload_json")
        store.write(
            "events",
            [
                {
                    "run_id": self.run_id,
                    "event_type": event_type,
                    "timestamp": now_iso(),
                    "payload_json": text,
                }
            ],
        )

    def end(
        self, status: str = "success", *, metrics: dict[str, Any] | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Record the end of the run (and post it if the client has a poster)."""
        if self.ended:
            raise StoreError(f"run {self.run_id} has already ended")
        at = dt.datetime.now(dt.UTC)
        started = dt.datetime.fromisoformat(str(self.record["start_time"]))
        self.record = {
            **self.record,
            "status": status,
            "end_time": at.isoformat(timespec="microseconds"),
            "duration_ms": int((at - started).total_seconds() * 1000),
            "metrics_json": json_field(
                metrics, self.client.store.schema.name, "agent_runs", "metrics_json"
            ),
            "updated_at": at.isoformat(timespec="microseconds"),
            **fields,
        }
        self.client.store.write("agent_runs", [self.record])
        self.ended = True
        self.record = self.client.post(self.record)
        return self.record

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.ended:
            if ev is None:
                self.end("success")
            else:
                self.end("failure", error_summary=f"{type(ev).__name__}: {ev}")
