"""The batched writer of spec 000 §7.1: buffer rows, flush on size, interval and exit."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from telelake._lazy import lazy
from telelake.errors import ValidationError

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy("pyarrow")

Validate = Callable[[Any], "pa.Table"]
Write = Callable[["pa.Table"], int]


class BatchWriter:
    """Buffers rows for one table and writes them in batches.

    `write_many` validates its rows at once (columnar, so a bad row raises from that
    call and none of its rows is kept). `write(row)` is cheap: single rows are checked
    together when the batch is converted; a bad one is reported then, by its number
    in this writer's stream, and the other rows are still written. Rows count as
    written when `flush()` returns (or on exit, or when the interval timer flushes).
    """

    def __init__(
        self,
        validate: Validate,
        write: Write,
        table: str,
        *,
        batch_size: int = 1000,
        flush_interval: float | None = 30.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.table = table
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self._validate = validate
        self._write = write
        self._lock = threading.RLock()
        self._batches: list[pa.Table] = []
        self._buffered = 0
        self._pending: list[tuple[int, Mapping[str, Any]]] = []
        self._seq = 0
        self.rows_written = 0
        self._closed = False
        self._error: BaseException | None = None
        self._wake = threading.Event()
        self._timer: threading.Thread | None = None
        if flush_interval is not None and flush_interval > 0:
            self._timer = threading.Thread(
                target=self._tick, name=f"telelake-flush-{table}", daemon=True
            )
            self._timer.start()

    # -- public API ---------------------------------------------------------------------

    def write(self, row: Mapping[str, Any]) -> None:
        """Buffer one row; flushes when the batch is full."""
        self._raise_background_error()
        with self._lock:
            self._check_open()
            self._pending.append((self._seq, row))
            self._seq += 1
            if self._buffered + len(self._pending) >= self.batch_size:
                self.flush()

    def write_many(self, rows: Any) -> None:
        """Validate and buffer many rows (any input `Store.write` accepts)."""
        self._raise_background_error()
        data = self._validate(rows)
        with self._lock:
            self._check_open()
            self._seq += data.num_rows
            self._batches.append(data)
            self._buffered += data.num_rows
            if self._buffered + len(self._pending) >= self.batch_size:
                self.flush()

    def flush(self) -> int:
        """Write everything buffered; returns the number of rows written."""
        self._raise_background_error()
        with self._lock:
            bad = self._convert_pending()
            written = 0
            if self._batches:
                data = pa.concat_tables(self._batches)
                written = self._write(data)  # on failure the rows stay buffered
                self._batches, self._buffered = [], 0
                self.rows_written += written
            if bad is not None:
                raise bad
            return written

    def close(self) -> None:
        """Flush and stop the interval timer."""
        if self._closed:
            return
        self._wake.set()
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.join(timeout=5)
        try:
            self.flush()
        finally:
            self._closed = True

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ValidationError(f"table {self.table!r}: this writer is closed", table=self.table)

    def _convert_pending(self) -> ValidationError | None:
        """Validate buffered single rows; keep the good ones, report the first bad one."""
        if not self._pending:
            return None
        pending, self._pending = self._pending, []
        try:
            data = self._validate([row for _, row in pending])
        except ValidationError:
            good, first_bad = [], None
            for seq, row in pending:
                try:
                    good.append(self._validate([row]))
                except ValidationError as exc:
                    if first_bad is None:
                        where = str(exc).replace(", row 0:", f", row {seq} of this writer:", 1)
                        first_bad = ValidationError(
                            f"{where} (the writer's other rows were kept)",
                            store=exc.store,
                            table=exc.table,
                            column=exc.column,
                            row=seq,
                        )
            if good:
                self._append(pa.concat_tables(good))
            return first_bad
        self._append(data)
        return None

    def _append(self, data: pa.Table) -> None:
        self._batches.append(data)
        self._buffered += data.num_rows

    def _tick(self) -> None:
        assert self.flush_interval is not None
        while not self._wake.wait(self.flush_interval):
            try:
                with self._lock:
                    if not self._closed and (self._batches or self._pending):
                        self.flush()
            except BaseException as exc:  # surfaced on the caller's next call
                self._error = exc

    def _raise_background_error(self) -> None:
        if self._error is not None:
            exc, self._error = self._error, None
            raise exc

    def extend(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Write each row of `rows` with `write`."""
        for row in rows:
            self.write(row)
