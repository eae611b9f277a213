"""Reference tables in the lake: session snapshots in one file per year, derived tables whole.

    reference/ticker_metadata/{YYYY}.parquet      `reference` snapshots (session x symbol)
    reference/index_constituents/{YYYY}.parquet   `index_constituents` snapshots
    reference/ticker_history.parquet              derived, rebuilt whole
    reference/index_membership.parquet            derived, rebuilt whole

A snapshot write replaces exactly the given sessions: each year file is read, stripped of
those sessions, merged with the new rows and replaced atomically, under the store's lock and
with a version check (a writer that lost a race re-reads and retries), so two runs writing
sessions of the same year never lose each other's rows. Paths are built from the years of a
range, never listed. Rows are sorted by session, so a day's snapshot is one row-group range.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random

from market_assets.core.errors import StoreError
from market_assets.core.reference.schemas import (
    CONSTITUENT_SCHEMA,
    MEMBERSHIP_SCHEMA,
    REFERENCE_SCHEMA,
    TICKER_HISTORY_SCHEMA,
    conform,
    empty,
)
from market_assets.core.stores.objectstore import ObjectStore, VersionConflict

SNAPSHOT_TABLES: dict[str, tuple[str, dict[str, pl.DataType], tuple[str, ...]]] = {
    "reference": ("reference/ticker_metadata", REFERENCE_SCHEMA, ("session", "symbol")),
    "index_constituents": (
        "reference/index_constituents",
        CONSTITUENT_SCHEMA,
        ("session", "index", "symbol"),
    ),
}
DERIVED_TABLES: dict[str, tuple[str, dict[str, pl.DataType]]] = {
    "ticker_history": ("reference/ticker_history.parquet", TICKER_HISTORY_SCHEMA),
    "index_membership": ("reference/index_membership.parquet", MEMBERSHIP_SCHEMA),
}
WRITE_ATTEMPTS = 30


@dataclass(frozen=True)
class SnapshotWrite:
    """What one write did."""

    rows: int
    files: int
    paths: tuple[str, ...]


def _to_parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=True, row_group_size=100_000)
    return buffer.getvalue()


def _snapshot_table(dataset: str) -> tuple[str, dict[str, pl.DataType], tuple[str, ...]]:
    try:
        return SNAPSHOT_TABLES[dataset]
    except KeyError:
        raise ValueError(
            f"unknown snapshot table {dataset!r}; known: {sorted(SNAPSHOT_TABLES)}"
        ) from None


def snapshot_path(dataset: str, year: int) -> str:
    folder, _, _ = _snapshot_table(dataset)
    return f"{folder}/{year:04d}.parquet"


def derived_path(name: str) -> str:
    try:
        return DERIVED_TABLES[name][0]
    except KeyError:
        raise ValueError(
            f"unknown derived table {name!r}; known: {sorted(DERIVED_TABLES)}"
        ) from None


class ReferenceStore:
    """Read and write the reference tables of one lake (local folder or S3 prefix)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def write_sessions(
        self, dataset: str, frame: pl.DataFrame, sessions: Sequence[dt.date]
    ) -> SnapshotWrite:
        """Replace exactly `sessions` of `dataset` with `frame` (a session with no rows is
        emptied). Raises StoreError before writing when a row's session is not listed."""
        _, schema, keys = _snapshot_table(dataset)
        rows = conform(frame, schema)
        wanted = sorted(set(sessions))
        stray = rows.filter(~pl.col("session").is_in(wanted))
        if stray.height:
            first = stray.row(0, named=True)
            raise StoreError(
                f"{dataset}: {stray.height} row(s) fall outside the sessions being written, "
                f"first {first['symbol']!r} on {first['session']}; nothing was written"
            )
        by_year: dict[int, list[dt.date]] = {}
        for day in wanted:
            by_year.setdefault(day.year, []).append(day)
        paths = []
        for year, days in sorted(by_year.items()):
            path = snapshot_path(dataset, year)
            new = rows.filter(pl.col("session").dt.year() == year)
            self._replace_sessions(path, schema, keys, days, new)
            paths.append(self.store.uri(path))
        return SnapshotWrite(rows=rows.height, files=len(paths), paths=tuple(paths))

    def _replace_sessions(
        self,
        path: str,
        schema: dict[str, pl.DataType],
        keys: Sequence[str],
        days: list[dt.date],
        new: pl.DataFrame,
    ) -> None:
        retrying = Retrying(
            stop=stop_after_attempt(WRITE_ATTEMPTS),
            wait=wait_random(0, 0.2),
            retry=retry_if_exception_type(VersionConflict),
            reraise=True,
        )
        with self.store.locked(path):
            for attempt in retrying:
                with attempt:
                    data, version = self.store.get(path)
                    kept = (
                        conform(pl.read_parquet(data), schema).filter(
                            ~pl.col("session").is_in(days)
                        )
                        if data is not None
                        else empty(schema)
                    )
                    merged = pl.concat([kept, new]).sort(list(keys))
                    if merged.is_empty():
                        if data is not None:
                            self.store.delete(path, expected_version=version)
                        return
                    self.store.put(path, _to_parquet(merged), expected_version=version)

    def read_sessions(
        self,
        dataset: str,
        first: dt.date,
        last: dt.date,
        columns: list[str] | None = None,
    ) -> pl.DataFrame:
        """Rows of `dataset` with first <= session <= last (every year file in between),
        sorted by session; `columns` (default all) must include the table's key columns."""
        _, schema, keys = _snapshot_table(dataset)
        wanted = columns or list(schema)
        if first > last:
            return empty({c: schema[c] for c in wanted})
        paths = [snapshot_path(dataset, year) for year in range(first.year, last.year + 1)]
        frame = self._read(paths, schema, wanted)
        order = [k for k in keys if k in wanted]
        return frame.filter(pl.col("session").is_between(first, last)).sort(order)

    def latest_session(
        self, dataset: str, on_or_before: dt.date, first_year: int
    ) -> dt.date | None:
        """The latest stored session <= `on_or_before`, searching back to `first_year`."""
        _, schema, _ = _snapshot_table(dataset)
        for year in range(on_or_before.year, first_year - 1, -1):
            frame = self._read([snapshot_path(dataset, year)], schema, columns=["session"])
            found = frame.filter(pl.col("session") <= on_or_before)
            if not found.is_empty():
                return found["session"].max()
        return None

    def write_derived(self, name: str, frame: pl.DataFrame) -> str:
        """Replace a derived table whole (one atomic put); returns its URI."""
        path = derived_path(name)
        schema = DERIVED_TABLES[name][1]
        self.store.put(path, _to_parquet(conform(frame, schema)))
        return self.store.uri(path)

    def read_derived(self, name: str) -> pl.DataFrame:
        """A derived table, or an empty frame with its schema when it was never built."""
        path = derived_path(name)
        return self._read([path], DERIVED_TABLES[name][1])

    def _read(
        self,
        paths: list[str],
        schema: dict[str, pl.DataType],
        columns: list[str] | None = None,
    ) -> pl.DataFrame:
        sources = self.store.read_sources(paths)
        wanted = columns or list(schema)
        if not sources:
            return empty({c: schema[c] for c in wanted})
        try:
            frame = pl.read_parquet(sources, columns=wanted)
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise StoreError(f"cannot read {', '.join(map(str, paths[:3]))}: {exc}") from exc
        return frame.select(pl.col(c).cast(schema[c]) for c in wanted)
