"""Modules imported at their first use.

Arrow, NumPy and RE2 cost a few hundred milliseconds to import; a command that never
touches them (`telelake sql` over Parquet files, `telelake --help`) should not pay
that. A module that needs one writes

    if TYPE_CHECKING:
        import pyarrow as pa
    else:
        pa = lazy("pyarrow")

and uses `pa` as before: the real module is imported when an attribute of `pa` is
first read, and its attributes are then copied in, so later reads cost what a plain
module's do.
"""

from __future__ import annotations

import importlib
import types
from typing import Any


class _LazyModule(types.ModuleType):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__dict__["_lazy_target"] = name

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self.__dict__["_lazy_target"])
        self.__dict__.update(module.__dict__)
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self.__dict__['_lazy_target']!r}>"


def lazy(name: str) -> Any:
    """A stand-in for module `name` (e.g. "pyarrow.compute") that imports it when one of
    its attributes is first read."""
    return _LazyModule(name)
