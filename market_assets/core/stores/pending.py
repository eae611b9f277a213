"""Partitions that PostgreSQL does not hold as the lake does, recorded in the lake itself.

A partition goes to the lake first, then to PostgreSQL (`write_stores`, defs/io_managers.py).
When the PostgreSQL write fails after the lake write (the server went away, a connection was
terminated) or the lake write fails part way (its files are replaced one by one), the two
stores disagree about those partitions. They are recorded here, one file per dataset:
`_pending/postgresql/{dataset}.parquet` under the lake root, rows (symbol, session,
partition_key, since). The lake is the store of record (always on, read by every asset), so a
later write of the dataset copies the recorded partitions from the lake into PostgreSQL and
removes them from the record (defs/store_sync.py).

The record lives in the lake because PostgreSQL is the store that failed. Updates are
read-modify-write under the lake's own guards (a file lock on local disk, conditional writes on
S3), so concurrent runs never drop each other's records.
"""

from __future__ import annotations

import datetime as dt
import io
import random
import time
from collections.abc import Callable, Sequence

import polars as pl

from market_assets.core.errors import StoreError
from market_assets.core.stores.objectstore import ObjectStore, VersionConflict

PENDING_FOLDER = "_pending"
PENDING_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "session": pl.Date(),
    "partition_key": pl.String(),
    "since": pl.Datetime("us", "UTC"),
}
MAX_UPDATE_ATTEMPTS = 30

Pair = tuple[str, dt.date]


class PendingPartitions:
    """The partitions of one dataset that the lake holds but `target` may not (yet)."""

    def __init__(self, store: ObjectStore, dataset: str, target: str = "postgresql") -> None:
        self._store = store
        self.dataset = dataset
        self.path = f"{PENDING_FOLDER}/{target}/{dataset}.parquet"

    @property
    def uri(self) -> str:
        """Where the record is, for messages."""
        return self._store.uri(self.path)

    def read(self) -> pl.DataFrame:
        """The recorded partitions (PENDING_SCHEMA), empty when none."""
        data, _ = self._store.get(self.path)
        return _parse(data, self.uri)

    def add(self, pairs: Sequence[Pair], keys: Sequence[str]) -> None:
        """Record (symbol, session) `pairs`, each with the Dagster partition key it belongs to
        (`keys`, parallel to `pairs`); a pair already recorded keeps its first `since`."""
        now = dt.datetime.now(dt.UTC)
        added = pl.DataFrame(
            {
                "symbol": [s for s, _ in pairs],
                "session": [d for _, d in pairs],
                "partition_key": list(keys),
                "since": [now] * len(pairs),
            },
            schema=PENDING_SCHEMA,
        )
        self._update(
            lambda old: pl.concat([old, added]).unique(["symbol", "session"], keep="first")
        )

    def remove(self, pairs: Sequence[Pair]) -> None:
        """Forget `pairs` (both stores hold them now); nothing to do when none is recorded."""
        if not pairs:
            return
        done = pl.DataFrame(
            {"symbol": [s for s, _ in pairs], "session": [d for _, d in pairs]},
            schema={"symbol": pl.String(), "session": pl.Date()},
        )
        self._update(lambda old: old.join(done, on=["symbol", "session"], how="anti"))

    def _update(self, change: Callable[[pl.DataFrame], pl.DataFrame]) -> None:
        with self._store.locked(self.path):
            for attempt in range(MAX_UPDATE_ATTEMPTS):
                data, version = self._store.get(self.path)
                old = _parse(data, self.uri)
                new = change(old).sort("symbol", "session")
                try:
                    if new.is_empty():
                        if data is not None:
                            self._store.delete(self.path, expected_version=version)
                        return
                    if new.equals(old):
                        return
                    self._store.put(self.path, _to_bytes(new), expected_version=version)
                    return
                except VersionConflict:
                    time.sleep(random.uniform(0.0, min(1.0, 0.02 * 2**attempt)))
        raise StoreError(f"gave up updating {self.uri}: other writers kept changing it; retry")


def _parse(data: bytes | None, uri: str) -> pl.DataFrame:
    if data is None:
        return pl.DataFrame(schema=PENDING_SCHEMA)
    try:
        return pl.read_parquet(io.BytesIO(data)).select(
            pl.col(name).cast(dtype) for name, dtype in PENDING_SCHEMA.items()
        )
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise StoreError(
            f"cannot read {uri}, the record of partitions PostgreSQL lags behind the lake "
            f"({exc}); move it aside and re-run the datasets it named"
        ) from exc


def _to_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()
