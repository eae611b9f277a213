"""The lake and PostgreSQL hold the same partitions, or the step says which one lags.

`write_stores` (defs/io_managers.py) replaces a step's partitions in the lake, then in
PostgreSQL. Here is what happens when one of the two writes fails:

- The lake write fails: PostgreSQL is not written. The step fails with the lake's error and
  says so; the lake may hold some of the new files (they are replaced one by one), which a
  re-run of the partitions replaces.
- The PostgreSQL write fails after the lake write (the server went away, the connection was
  terminated, the database refuses connections): the lake holds the new rows, PostgreSQL keeps
  the previous ones (its write is one transaction, rolled back). The partitions are recorded as
  behind in the lake (core/stores/pending.py) and the step fails with the real cause, the
  server (never its password) and which store holds what. Dagster shows the partitions failed.
- The next write of the dataset to PostgreSQL (any partitions: a re-run, the next daily run)
  copies every recorded partition it did not write itself from the lake into PostgreSQL,
  removes it from the record and records it as materialized in Dagster (metadata
  `copied_from: lake`), since both stores now hold it. The lake is the store of record, and the
  copy needs no vendor request; a partition the run re-fetched is written fresh instead. When
  the copy fails again, the step still succeeds for its own partitions and says how many stay
  behind (they are tried again by the next write).
- The process is killed between the two writes (or during either): nothing runs to record the
  failure, so `begin_write` leaves an intent naming the partitions and the writing process
  before the lake write, and `end_write` deletes it once PostgreSQL holds them. The next write
  of the dataset adopts every intent whose process is gone (on another host: whose Dagster run
  has finished) into the behind record and copies those partitions from the lake, so the two
  stores agree again. They are not recorded as materialized: the lake write may have stopped
  part way, so Dagster keeps them failed (the killed run is failed by `fail_orphaned_runs`),
  and a re-run writes them fresh.

The copy reads the lake while PostgreSQL holds its partition locks (TimescaleStore rows given
as a function), so a concurrent writer of the same partitions, which writes the lake before
PostgreSQL, cannot leave PostgreSQL older than the lake.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import polars as pl
from dagster import AssetKey, DagsterInstance, Failure, MetadataValue, OutputContext
from dagster._core.storage.dagster_run import FINISHED_STATUSES

from market_assets.core.stores.lake import ParquetLake
from market_assets.core.stores.layout import layout_for
from market_assets.core.stores.pending import PendingPartitions
from market_assets.core.stores.timescale import TimescaleStore
from market_assets.core.stores.timescale_read import describe_dsn
from market_assets.defs.events import StepEventRecorder, step_of
from market_assets.defs.partitions import PartitionRectangle, multi_key
from market_assets.defs.process_runs import process_state, process_tags
from market_assets.defs.resources import PlatformResource

log = logging.getLogger(__name__)

Pair = tuple[str, dt.date]
COPY_PAIRS_PER_WRITE = 2_000
"""Partitions copied from the lake per PostgreSQL transaction (bounds the rows held at once:
2,000 partitions of 1-minute bars are 780,000 rows)."""


@dataclass
class Copied:
    """What `bring_postgresql_in_line` copied from the lake, and what is still behind."""

    rows_by_key: dict[str, int] = field(default_factory=dict)
    adopted: int = 0
    """Partitions of killed writes moved into the behind record by this write."""
    partitions: int = 0
    rows: int = 0
    still_behind: int = 0
    failure: str = ""


def one_line(exc: BaseException) -> str:
    """An error's message on one line (drivers add hint and context lines)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def span(keys: Sequence[str]) -> str:
    return keys[0] if len(keys) == 1 else f"{keys[0]} .. {keys[-1]}"


RUN_ID = "run_id"
"""The intent owner's field naming the Dagster run that writes (besides process_tags)."""


def keys_of(pairs: Sequence[Pair], rectangle: PartitionRectangle | None) -> list[str]:
    """The Dagster partition key of each of `pairs` (parallel), from `rectangle` when given."""
    key_of = {p: key for key, members in rectangle.by_key for p in members} if rectangle else {}
    return [key_of.get(p) or multi_key(p[1], p[0]) for p in pairs]


def begin_write(
    platform: PlatformResource,
    dataset: str,
    pairs: Sequence[Pair],
    keys: Sequence[str],
    run_id: str | None,
) -> str | None:
    """Leave the intent of writing `pairs` to the lake, then PostgreSQL (see the module);
    its path, or None when there is nothing to write."""
    if not pairs:
        return None
    owner = {**process_tags(), RUN_ID: run_id or ""}
    return PendingPartitions(platform.lake().store, dataset).begin(pairs, keys, owner)


def end_write(
    platform: PlatformResource, dataset: str, intent: str | None, *, quietly: bool = False
) -> None:
    """Delete the intent `begin_write` left: both stores hold its pairs, or the failure that
    stopped the write is recorded. `quietly` (on a failure, whose error must win): a delete
    that fails is logged, and the intent is adopted once this process is gone."""
    if intent is None:
        return
    try:
        PendingPartitions(platform.lake().store, dataset).end(intent)
    except Exception as exc:
        if not quietly:
            raise
        log.warning("%s: could not delete the write intent %s: %s", dataset, intent, one_line(exc))


def abandoned_by(instance: DagsterInstance | None) -> Callable[[Mapping[str, str]], bool]:
    """Whether an intent's owner is gone: its process, on this host; its Dagster run, having
    finished (or being unknown to `instance`), on another host."""

    def abandoned(owner: Mapping[str, str]) -> bool:
        state = process_state(owner)
        if state != "unknown":
            return state == "gone"
        run_id = owner.get(RUN_ID)
        if instance is None or not run_id:
            return False
        run = instance.get_run_by_id(run_id)
        return run is None or run.status in FINISHED_STATUSES

    return abandoned


def lake_failed(dataset: str, pairs: Sequence[Pair], exc: BaseException) -> Failure:
    """The step failure of a lake write that failed before PostgreSQL was written."""
    return Failure(
        description=(
            f"{dataset}: writing {len(pairs)} partition(s) to the lake failed: {one_line(exc)}. "
            "PostgreSQL was not written and keeps their previous rows; the lake may hold some "
            "of the new files (they are replaced one by one): re-run these partitions"
        ),
        metadata={
            "stores_not_written": "postgresql",
            "lake": "some of the new files at most",
            "cause": one_line(exc),
        },
    )


def postgresql_failed(
    platform: PlatformResource,
    dataset: str,
    pairs: Sequence[Pair],
    rectangle: PartitionRectangle | None,
    exc: BaseException,
) -> Failure:
    """Record `pairs` (of `rectangle`'s partition keys) as behind in PostgreSQL and return the
    step failure that says so."""
    pair_keys = keys_of(pairs, rectangle)
    keys = sorted(set(pair_keys))
    pending = PendingPartitions(platform.lake().store, dataset)
    server = describe_dsn(platform.timescale_dsn or "")
    try:
        pending.add(pairs, pair_keys)
        remedy = (
            f"recorded in {pending.uri}: the next write of {dataset} to PostgreSQL copies them "
            "from the lake (or re-run these partitions)"
        )
    except Exception as record_exc:  # noqa: BLE001 - the step fails either way; say both
        remedy = (
            f"recording that in {pending.uri} failed too ({one_line(record_exc)}): re-run "
            "these partitions once PostgreSQL is back"
        )
    return Failure(
        description=(
            f"{dataset}: {len(keys)} partition(s) ({span(keys)}) are in the lake but not in "
            f"PostgreSQL ({server}), which keeps their previous rows: {one_line(exc)}; {remedy}"
        ),
        metadata={
            "stores_written": "lake",
            "stores_behind": "postgresql",
            "partitions_behind": len(keys),
            "postgresql": server,
            "cause": one_line(exc),
            "behind_record": MetadataValue.path(pending.uri),
        },
    )


def bring_postgresql_in_line(
    platform: PlatformResource,
    timescale: TimescaleStore,
    dataset: str,
    written: Sequence[Pair],
    *,
    with_quarantine: bool,
    context: OutputContext | None = None,
) -> Copied:
    """After `written` went to both stores: adopt abandoned writes into the behind record,
    forget `written` in it, and copy every other recorded partition of `dataset` from the lake
    into PostgreSQL (see the module)."""
    lake = platform.lake()
    pending = PendingPartitions(lake.store, dataset)
    adopted = pending.adopt_abandoned(abandoned_by(step_of(context).instance if context else None))
    behind = pending.read()
    copied = Copied(adopted=adopted)
    if behind.is_empty():
        return copied
    fresh = set(written)
    records = [(s, d, k) for s, d, k, _, _ in behind.iter_rows() if (s, d) not in fresh]
    incomplete = {k for _, _, k, _, done in behind.iter_rows() if not done}
    pending.remove([(s, d) for s, d, *_ in behind.iter_rows() if (s, d) in fresh])
    done: list[tuple[str, int]] = []
    for start in range(0, len(records), COPY_PAIRS_PER_WRITE):
        chunk = records[start : start + COPY_PAIRS_PER_WRITE]
        pairs = [(s, d) for s, d, _ in chunk]
        counts: dict[Pair, int] = {}

        def from_lake(pairs: list[Pair] = pairs, counts: dict[Pair, int] = counts) -> pl.DataFrame:
            rows = lake.read_partitions(dataset, pairs)
            session = layout_for(dataset).session_expr()
            for symbol, day, n in rows.group_by("symbol", session).len().iter_rows():
                counts[(symbol, day)] = n
            return rows

        try:
            timescale.write_partitions(dataset, from_lake, pairs)
            if with_quarantine:
                timescale.write_quarantine(
                    dataset, lambda pairs=pairs: quarantine_of(lake, dataset, pairs), pairs
                )
            pending.remove(pairs)
        except Exception as exc:  # noqa: BLE001 - this step's own partitions are stored
            copied.failure = one_line(exc)
            copied.still_behind = len(records) - start
            log.warning(
                "%s: %d partition(s) stay behind in PostgreSQL (%s); the next write of %s "
                "tries again",
                dataset,
                copied.still_behind,
                copied.failure,
                dataset,
            )
            break
        done.extend((key, counts.get((s, d), 0)) for s, d, key in chunk)
    for key, rows in done:
        copied.rows_by_key[key] = copied.rows_by_key.get(key, 0) + rows
    copied.partitions = len(done)
    copied.rows = sum(rows for _, rows in done)
    still = set(pending.read().get_column("partition_key").to_list()) if copied.failure else set()
    stored = {k: n for k, n in copied.rows_by_key.items() if k not in still and k not in incomplete}
    if context is not None:
        _tell_dagster(context, copied, stored)
    return copied


def _tell_dagster(context: OutputContext, copied: Copied, complete: Mapping[str, int]) -> None:
    """Materializations of the partitions now in both stores whose lake write had finished
    (`complete`), and the step's own metadata."""
    if complete:
        metadata = {
            key: {
                "rows": rows,
                "copied_from": "lake",
                "stores": "lake, postgresql",
                "copied_by_run": context.run_id,
            }
            for key, rows in complete.items()
        }
        recorder = StepEventRecorder(step_of(context))
        recorder.materialized(AssetKey(context.asset_key.path), metadata)
    summary: dict[str, object] = {
        "postgresql_copied_partitions": copied.partitions,
        "postgresql_copied_rows": copied.rows,
    }
    if copied.adopted:
        summary["postgresql_adopted_from_killed_writes"] = copied.adopted
    if copied.failure:
        summary["postgresql_still_behind"] = copied.still_behind
        summary["postgresql_copy_failure"] = copied.failure
    context.add_output_metadata(summary)


def quarantine_of(lake: ParquetLake, dataset: str, pairs: Sequence[Pair]) -> pl.DataFrame:
    """The lake's quarantined rows of exactly `pairs`."""
    symbols = sorted({s for s, _ in pairs})
    first = min(d for _, d in pairs)
    stop = max(d for _, d in pairs) + dt.timedelta(days=1)
    rows = lake.read_quarantine(dataset, symbols, first, stop)
    wanted = pl.DataFrame(
        {"symbol": [s for s, _ in pairs], "session": [d for _, d in pairs]},
        schema={"symbol": pl.String(), "session": pl.Date()},
    )
    return rows.join(wanted, on=["symbol", "session"], how="semi")
