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

A process killed between the two writes (kill -9, out of memory) records nothing, so every
write first leaves an intent: `_pending/writing/postgresql/{dataset}/{id}.parquet`, the pairs it
is about to write and its owner (host, pid and start time of the writing process, run id),
put before the lake write and deleted once PostgreSQL holds the rows. An intent whose owner is
gone is abandoned: `adopt_abandoned` moves its pairs into the record (flagged `lake_complete`
false, since the lake write may have stopped part way) and deletes it, so the next write copies
them. Whether an owner is gone is the caller's judgement (defs/store_sync.py asks the process
table and Dagster's run storage).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence

import polars as pl

from market_assets.core.errors import StoreError
from market_assets.core.stores.objectstore import ObjectStore, VersionConflict

PENDING_FOLDER = "_pending"
PENDING_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "session": pl.Date(),
    "partition_key": pl.String(),
    "since": pl.Datetime("us", "UTC"),
    "lake_complete": pl.Boolean(),
}
"""`lake_complete`: the lake write of the pair finished (PostgreSQL failed after it), so the
copy is the partition's new rows; false for an abandoned write, whose lake files may still hold
the previous rows (the copy aligns the stores, and Dagster keeps the partition failed)."""
WRITING_FOLDER = f"{PENDING_FOLDER}/writing"
INTENT_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "session": pl.Date(),
    "partition_key": pl.String(),
}
OWNER_COLUMN = "owner"
MAX_UPDATE_ATTEMPTS = 30

Pair = tuple[str, dt.date]


class PendingPartitions:
    """The partitions of one dataset that the lake holds but `target` may not (yet)."""

    def __init__(self, store: ObjectStore, dataset: str, target: str = "postgresql") -> None:
        self._store = store
        self.dataset = dataset
        self.path = f"{PENDING_FOLDER}/{target}/{dataset}.parquet"
        self.writing = f"{WRITING_FOLDER}/{target}/{dataset}"

    @property
    def uri(self) -> str:
        """Where the record is, for messages."""
        return self._store.uri(self.path)

    def read(self) -> pl.DataFrame:
        """The recorded partitions (PENDING_SCHEMA), empty when none."""
        data, _ = self._store.get(self.path)
        return _parse(data, self.uri)

    def add(
        self, pairs: Sequence[Pair], keys: Sequence[str], *, lake_complete: bool = True
    ) -> None:
        """Record (symbol, session) `pairs`, each with the Dagster partition key it belongs to
        (`keys`, parallel to `pairs`); a pair already recorded keeps its first `since`, and is
        `lake_complete` only when every record of it says so."""
        now = dt.datetime.now(dt.UTC)
        added = pl.DataFrame(
            {
                "symbol": [s for s, _ in pairs],
                "session": [d for _, d in pairs],
                "partition_key": list(keys),
                "since": [now] * len(pairs),
                "lake_complete": [lake_complete] * len(pairs),
            },
            schema=PENDING_SCHEMA,
        )
        self._update(lambda old: _merged(old, added))

    def begin(self, pairs: Sequence[Pair], keys: Sequence[str], owner: Mapping[str, str]) -> str:
        """Leave an intent naming `pairs` (with their `keys`) and `owner` before writing them to
        the lake and the target; its path, for `end`."""
        path = f"{self.writing}/{uuid.uuid4().hex}.parquet"
        intent = pl.DataFrame(
            {
                "symbol": [s for s, _ in pairs],
                "session": [d for _, d in pairs],
                "partition_key": list(keys),
            },
            schema=INTENT_SCHEMA,
        ).with_columns(pl.lit(json.dumps(dict(owner), sort_keys=True)).alias(OWNER_COLUMN))
        self._store.put(path, _to_bytes(intent))
        return path

    def end(self, path: str) -> None:
        """Delete the intent at `path`: both stores hold its pairs, or its failure is recorded."""
        self._store.delete(path)

    def adopt_abandoned(self, abandoned: Callable[[Mapping[str, str]], bool]) -> int:
        """Move the pairs of every intent whose owner is `abandoned` into the record (not
        lake_complete) and delete the intent; how many pairs were moved."""
        moved = 0
        for name in self._store.list_names(self.writing):
            path = f"{self.writing}/{name}"
            if not name.endswith(".parquet"):
                continue
            data, version = self._store.get(path)
            if data is None:  # ended, or adopted by another writer, since the listing
                continue
            intent = _parse_intent(data, self._store.uri(path))
            owner = json.loads(intent[OWNER_COLUMN][0]) if intent.height else {}
            if intent.height and not abandoned(owner):
                continue
            pairs = list(zip(intent["symbol"], intent["session"], strict=True))
            if pairs:
                self.add(pairs, intent["partition_key"].to_list(), lake_complete=False)
            try:
                self._store.delete(path, expected_version=version)
            except VersionConflict:
                continue  # another writer adopted it first; `add` kept one record per pair
            moved += len(pairs)
        if moved:
            self._store.prune_folder(self.writing)
        return moved

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


def _merged(old: pl.DataFrame, added: pl.DataFrame) -> pl.DataFrame:
    """`old` and `added`, one row per pair: its first `since`, lake_complete when all say so."""
    return (
        pl.concat([old, added])
        .group_by("symbol", "session", maintain_order=True)
        .agg(
            pl.col("partition_key").first(),
            pl.col("since").first(),
            pl.col("lake_complete").all(),
        )
        .select(list(PENDING_SCHEMA))
    )


def _parse(data: bytes | None, uri: str) -> pl.DataFrame:
    if data is None:
        return pl.DataFrame(schema=PENDING_SCHEMA)
    try:
        frame = pl.read_parquet(io.BytesIO(data))
        if "lake_complete" not in frame.columns:  # recorded before abandoned writes were
            frame = frame.with_columns(pl.lit(True).alias("lake_complete"))
        return frame.select(pl.col(name).cast(dtype) for name, dtype in PENDING_SCHEMA.items())
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise StoreError(
            f"cannot read {uri}, the record of partitions PostgreSQL lags behind the lake "
            f"({exc}); move it aside and re-run the datasets it named"
        ) from exc


def _parse_intent(data: bytes, uri: str) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(io.BytesIO(data))
        return frame.select(
            *(pl.col(name).cast(dtype) for name, dtype in INTENT_SCHEMA.items()),
            pl.col(OWNER_COLUMN).cast(pl.String()),
        )
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise StoreError(
            f"cannot read {uri}, the intent of a write to the lake and PostgreSQL ({exc}); "
            "move it aside and re-run the dataset's partitions it named"
        ) from exc


def _to_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()
