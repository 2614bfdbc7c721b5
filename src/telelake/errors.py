"""The exceptions telelake raises: one base class, a few precise kinds."""

from __future__ import annotations


class TelelakeError(Exception):
    """Base class of every error telelake raises on purpose."""


class SchemaError(TelelakeError):
    """A schema file is invalid; the message names the file, table and column."""


class ValidationError(TelelakeError):
    """Rows do not match their table; nothing of the call was written.

    Attributes name where the first problem is, for programs that want to react.
    """

    def __init__(
        self,
        message: str,
        *,
        store: str | None = None,
        table: str | None = None,
        column: str | None = None,
        row: int | None = None,
    ) -> None:
        super().__init__(message)
        self.store = store
        self.table = table
        self.column = column
        self.row = row


class StoreError(TelelakeError):
    """The store cannot do what was asked (wrong schema, read-only, unknown table...)."""


class StorageFullError(StoreError):
    """The disk (or a file size limit) is full; the write was not acknowledged.

    Rows acknowledged before it are safe. Free space and write again: no repair needed.
    """


class LockTimeoutError(StoreError):
    """Another process held a table's fold lock (a fold, a compaction) longer than this
    store waits for it (`lock_timeout`); nothing of the call was written.

    `pid` is the holder's process id when known; the message says what to do.
    """

    def __init__(self, message: str, *, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


class RedactionKeyError(StoreError):
    """The store hashed values with a key it no longer has (deleted or replaced).

    Writes that would hash are refused, and write nothing, until the key file is
    restored or `telelake redact new-key --confirm` starts a new key.
    """


class QueryError(TelelakeError):
    """A SQL text or named query failed; the message says which and why."""
