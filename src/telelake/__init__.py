"""telelake: a local-first telemetry store.

import telelake
with telelake.open("/tmp/lake") as store:
    store.write("audit", rows)
    store.sql("SELECT COUNT(*) FROM audit").scalar()
"""

from telelake.errors import (
    QueryError,
    SchemaError,
    StorageFullError,
    StoreError,
    TelelakeError,
    ValidationError,
)
from telelake.query import Result
from telelake.store import Store, __version__, open

__all__ = [
    "QueryError",
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
