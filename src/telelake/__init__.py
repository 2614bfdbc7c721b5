"""telelake: a local-first telemetry store.

import telelake
with telelake.open("/tmp/lake") as store:
    store.write("audit", rows)
    store.sql("SELECT COUNT(*) FROM audit").scalar()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from telelake.errors import (
    LockTimeoutError,
    QueryError,
    RedactionKeyError,
    SchemaError,
    StorageFullError,
    StoreError,
    TelelakeError,
    ValidationError,
)

if TYPE_CHECKING:
    from telelake.query import Result
    from telelake.store import Store, __version__, open

__all__ = [
    "LockTimeoutError",
    "QueryError",
    "RedactionKeyError",
    "Result",
    "SchemaError",
    "StorageFullError",
    "Store",
    "StoreError",
    "TelelakeError",
    "ValidationError",
    "__version__",
    "open",
]

# The store and the query engine load DuckDB, Arrow and the rest: only when first used,
# so that `telelake --help` (which imports this package) does not wait for them.
_LAZY = {"Result": "telelake.query", "Store": "telelake.store", "open": "telelake.store"}
_LAZY["__version__"] = "telelake.store"


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'telelake' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
