"""Write one Parquet file of a lake table, with the table's layout, atomically."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from telelake import durable
from telelake._lazy import lazy
from telelake.errors import StoreError
from telelake.lake import layout
from telelake.schema.model import ParquetLayout

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
else:
    pa = lazy("pyarrow")
    pc = lazy("pyarrow.compute")
    pq = lazy("pyarrow.parquet")

META_SCHEMA = b"telelake.schema"
META_VERSION = b"telelake.schema_version"
META_TABLE = b"telelake.table"


def sort_rows(data: pa.Table, columns: tuple[str, ...]) -> pa.Table:
    """Rows ordered by `columns` (ascending), as the layout's sort order asks."""
    if not columns or data.num_rows < 2:
        return data
    return data.take(pc.sort_indices(data, sort_keys=[(c, "ascending") for c in columns]))


def write_table(path: Path, data: pa.Table, spec: ParquetLayout) -> None:
    """Write `data` to `path` (not atomic by itself) with the layout's settings."""
    sorting = (
        [pq.SortingColumn(data.schema.get_field_index(c)) for c in spec.sort] if spec.sort else None
    )
    pq.write_table(
        data,
        path,
        row_group_size=layout.rows_per_group(data, spec.row_group_bytes),
        compression=spec.compression,
        compression_level=spec.compression_level,
        use_dictionary=list(spec.dictionary) if spec.dictionary else False,
        sorting_columns=sorting,
        write_statistics=True,
        # A CRC32 per page: bit rot in a data page is found by `check --deep` and by
        # every rewrite (`read_verified`), instead of silently changing sums.
        write_page_checksum=True,
    )


def read_verified(path: Path, columns: list[str] | None = None) -> pa.Table:
    """A data file's rows (or `columns` of them), every page checked against its CRC.

    What rewrites files (compaction, retention, upserts, migrations) reads with this, so
    a damaged page stops the rewrite instead of being copied into a new file with fresh,
    valid checksums. StoreError naming the file if a page is damaged. (Pages of files
    written before telelake wrote checksums have none to check.)
    """
    try:
        return pq.ParquetFile(path, page_checksum_verification=True).read(columns=columns)
    except OSError as exc:
        if not _is_crc_failure(exc):
            raise
        raise StoreError(
            f"{path}: a data page is damaged ({exc}); run `telelake check --deep --repair` "
            "to quarantine the file"
        ) from exc


def page_problem(path: Path) -> str | None:
    """Read every page of every column of a data file, checking each page's CRC; why it
    cannot be trusted, or None. Row group by row group: memory stays bounded."""
    try:
        with pq.ParquetFile(path, page_checksum_verification=True) as pf:
            for group in range(pf.num_row_groups):
                pf.read_row_group(group)
    except (OSError, ValueError) as exc:  # (ArrowInvalid is a ValueError)
        what = "a data page is damaged" if _is_crc_failure(exc) else "unreadable data"
        return f"{what}: {exc}"
    return None


def _is_crc_failure(exc: Exception) -> bool:
    return "checksum verification failed" in str(exc).lower()


def publish_file(
    directory: Path,
    prefix: str,
    suffix: str,
    data: pa.Table,
    spec: ParquetLayout,
    metadata: dict[bytes, bytes],
    *,
    now: dt.datetime | None = None,
) -> Path:
    """Write rows as a new file in `directory`; never overwrites, never visible half-written."""
    data = sort_rows(data, spec.sort)
    data = data.replace_schema_metadata({**(data.schema.metadata or {}), **metadata})
    when = now or dt.datetime.now(dt.UTC)
    durable.ensure_dir(directory)
    for attempt in range(1000):
        final = directory / layout.file_name(prefix, when, suffix, attempt)
        if final.exists():
            continue
        try:
            durable.write_durably(final, lambda tmp: write_table(tmp, data, spec), replace=False)
            return final
        except FileExistsError:
            continue  # another writer took this name between our check and our link
    raise RuntimeError(f"no free file name in {directory}")  # pragma: no cover


Ranges = dict[str, tuple[object, object]]
_RANGES: dict[tuple[str, int, int, int, tuple[str, ...]], Ranges | None] = {}


def column_ranges(path: Path, columns: tuple[str, ...]) -> Ranges | None:
    """(min, max) of each of `columns` over the whole file, from its footer statistics.

    None when some row group has no statistics for one of them (nothing can be ruled
    out then). Cached by path, inode, size and mtime (published files never change)
    and by the columns asked for.
    """
    st = path.stat()
    ident = (str(path), st.st_ino, st.st_size, st.st_mtime_ns, tuple(columns))
    if ident in _RANGES:
        return _RANGES[ident]
    meta = pq.ParquetFile(path).metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    out: Ranges | None = {}
    for name in columns:
        if name not in names or out is None:
            out = None
            break
        index = names.index(name)
        lows, highs = [], []
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(index).statistics
            if meta.row_group(g).num_rows == 0:
                continue
            if stats is None or not stats.has_min_max:
                out = None
                break
            lows.append(stats.min)
            highs.append(stats.max)
        if out is not None and lows:
            out[name] = (min(lows), max(highs))
    if len(_RANGES) > 100_000:
        _RANGES.clear()
    _RANGES[ident] = out
    return out


def may_overlap(ranges: Ranges | None, bounds: Ranges) -> bool:
    """Could a file with these column `ranges` hold a row inside `bounds`?

    A file is ruled out when one column's range is disjoint from the batch's.
    """
    if ranges is None:
        return True
    for name, (lo, hi) in bounds.items():
        if name not in ranges:
            return False  # no non-empty row group: the file holds no rows
        flo, fhi = ranges[name]
        try:
            if fhi < lo or flo > hi:  # type: ignore[operator]
                return False
        except TypeError:
            return True  # incomparable statistics (should not happen): be safe
    return True
