"""One IO manager for every bar dataset: validate, quarantine, write every configured store.

Output: an asset returns a `RectangleOutput` (its rows, and the symbols it could not
produce) or a bare frame. The frame is split by the hard schema rules
(market_assets.core.validate); good rows replace exactly the run's partitions in the Parquet
lake (always) and TimescaleDB (when the dataset lists it and a DSN is set); bad rows go to
quarantine. The partitions of a failed symbol are left untouched in every store, are not
recorded as materialized, and fail the step (so Dagster shows them failed).

Per-partition events (`record_partitions`): in runs with deferred asset events (every run
our CLI, schedules and sensors launch; see defs/events.py) the stored partitions are
recorded as materialized here, in one batch, each with its own row counts. Other runs leave
that to Dagster, which copies the step's metadata onto every partition.

Assets read their upstream rows from the lake themselves, for exactly the (symbol, session)
pairs or date windows they need, and declare upstream assets as `deps` for lineage: Dagster's
input loading resolves multi-dimensional partition mappings key by key and queries data
versions per upstream partition (measured: most of a daily run's time before this change).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetKey,
    ConfigurableIOManager,
    Failure,
    InputContext,
    MetadataValue,
    OutputContext,
)

from market_assets.core.calendar import get_calendar
from market_assets.core.stores.layout import layout_for
from market_assets.core.validate import ValidationResult, split_valid_bars
from market_assets.defs.events import StepEventRecorder, deferred, step_of
from market_assets.defs.partitions import PartitionRectangle, resolve_partition_keys
from market_assets.defs.resources import PlatformResource
from market_assets.defs.store_sync import (
    begin_write,
    bring_postgresql_in_line,
    end_write,
    keys_of,
    lake_failed,
    postgresql_failed,
)


@dataclass(frozen=True)
class RectangleOutput:
    """What a ranged asset step produced: its rows, and the symbols it could not produce
    (symbol -> reason). Their partitions are left as they are and reported failed."""

    frame: pl.DataFrame
    failed_symbols: Mapping[str, str] = field(default_factory=dict)


_PAIR_SESSION = "__session"


def unpack_output(obj: pl.DataFrame | RectangleOutput) -> tuple[pl.DataFrame, Mapping[str, str]]:
    if isinstance(obj, RectangleOutput):
        return obj.frame, obj.failed_symbols
    return obj, {}


def io_rectangle(
    context: OutputContext | InputContext, platform: PlatformResource, manager: str
) -> PartitionRectangle:
    """The (symbol, session) pairs an IO manager call covers; unpartitioned assets refused."""
    if not context.has_asset_partitions:
        raise ValueError(
            f"{context.asset_key.to_user_string()}: {manager} only stores "
            "partitioned assets (session x symbol)"
        )
    symbol_partitions = platform.app_config().symbol_partitions
    return resolve_partition_keys(context.asset_partition_keys, symbol_partitions)


def partition_figures(
    rectangle: PartitionRectangle,
    stored: pl.DataFrame,
    session: pl.Expr,
    quarantined: pl.DataFrame | None,
) -> dict[str, dict[str, object]]:
    """Per partition key of `rectangle`: rows stored, sources ("none" when it has none),
    quarantined rows (when `quarantined` is given) and member symbols (bucket keys), summed
    over the key's (symbol, session) pairs in a few group-bys (a 1,000-session x 503-symbol
    run has 503,000 pairs)."""
    members = pl.DataFrame(
        {
            "key": [key for key, pairs in rectangle.by_key for _ in pairs],
            "symbol": [symbol for _, pairs in rectangle.by_key for symbol, _ in pairs],
            _PAIR_SESSION: [day for _, pairs in rectangle.by_key for _, day in pairs],
        },
        schema={"key": pl.String(), "symbol": pl.String(), _PAIR_SESSION: pl.Date()},
    )
    with_sources = not stored.is_empty() and "source" in stored.columns
    joined = members.with_columns(rows=pl.lit(0, pl.UInt32))
    if not stored.is_empty():
        per_pair = stored.group_by(pl.col("symbol"), session.alias(_PAIR_SESSION)).agg(
            pl.len().alias("rows"),
            *([pl.col("source").drop_nulls().unique()] if with_sources else []),
        )
        joined = members.join(per_pair, on=["symbol", _PAIR_SESSION], how="left")
    aggregates = [pl.col("rows").sum(), pl.len().alias("symbols")]
    if with_sources:
        aggregates.append(
            pl.col("source").list.explode(keep_nulls=False, empty_as_null=False).unique().sort()
        )
    if quarantined is not None:
        if quarantined.is_empty():
            joined = joined.with_columns(quarantined_rows=pl.lit(0, pl.UInt32))
        else:
            bad = quarantined.group_by(
                pl.col("symbol"), pl.col("session").alias(_PAIR_SESSION)
            ).agg(pl.len().alias("quarantined_rows"))
            joined = joined.join(bad, on=["symbol", _PAIR_SESSION], how="left")
        aggregates.append(pl.col("quarantined_rows").sum())
    figures: dict[str, dict[str, object]] = {}
    for row in joined.group_by("key", maintain_order=True).agg(aggregates).iter_rows(named=True):
        metadata: dict[str, object] = {"rows": int(row["rows"])}
        if with_sources:
            metadata["source"] = ",".join(row["source"]) or "none"
        if quarantined is not None:
            metadata["quarantined_rows"] = int(row["quarantined_rows"])
        if row["symbols"] > 1:
            metadata["symbols"] = row["symbols"]
        figures[row["key"]] = metadata
    for key, pairs in rectangle.by_key:
        if not pairs:  # a bucket key with no member symbol
            figures[key] = {
                "rows": 0,
                **({"source": "none"} if with_sources else {}),
                **({"quarantined_rows": 0} if quarantined is not None else {}),
            }
    return figures


def record_partitions(
    context: OutputContext,
    rectangle: PartitionRectangle,
    stored: pl.DataFrame,
    quarantined: pl.DataFrame | None,
    failed_symbols: Mapping[str, str],
    extra_by_key: Mapping[str, Mapping[str, object]] | None = None,
) -> None:
    """Record the stored (session, symbol key) partitions as materialized, each with its own
    rows, quarantined rows and sources (plus `extra_by_key`), and fail the step naming the
    failed symbols when there are any (see `record_materialized`)."""
    dataset = context.asset_key.path[-1]
    figures = partition_figures(rectangle, stored, layout_for(dataset).session_expr(), quarantined)
    failed_keys = set(rectangle.keys_of_symbols(failed_symbols))
    metadata_by_key: dict[str, dict[str, object]] = {}
    for key, _ in rectangle.by_key:
        if key in failed_keys:
            continue
        metadata = figures[key]
        metadata.update((extra_by_key or {}).get(key, {}))
        metadata_by_key[key] = metadata
    reason = "; ".join(f"{symbol}: {why}" for symbol, why in sorted(failed_symbols.items()))
    record_materialized(
        context,
        metadata_by_key,
        failed_keys=sorted(failed_keys),
        failure=f"{len(failed_symbols)} symbol(s) failed: {reason}",
        failure_metadata={"failed_symbols": MetadataValue.json(dict(failed_symbols))},
    )


def record_materialized(
    context: OutputContext,
    metadata_by_key: Mapping[str, Mapping[str, object]],
    *,
    failed_keys: Sequence[str] = (),
    failure: str = "",
    failure_metadata: Mapping[str, object] | None = None,
) -> None:
    """Record these partition keys of the output's asset as materialized (one event each, in
    one batch), then fail the step when `failed_keys` is not empty, naming them and `failure`.

    Any IO manager of a partitioned asset calls this after storing the step's partitions (the
    keys may be session x symbol keys or single-dimension keys). Runs with deferred events
    (defs/events.py) get their materializations here; other runs get them from Dagster, unless
    some partitions failed: the stored ones are then recorded here before the step fails, so
    the failed ones show failed and the rest materialized.
    """
    step = step_of(context)
    if deferred(step) or failed_keys:
        StepEventRecorder(step).materialized(AssetKey(context.asset_key.path), metadata_by_key)
    if failed_keys:
        dataset = context.asset_key.to_user_string()
        raise Failure(
            description=(
                f"{dataset}: {len(failed_keys)} partition(s) failed and were left as stored "
                f"(first {failed_keys[0]}): {failure}"
            ),
            metadata={
                **(failure_metadata or {}),
                "failed_partitions": len(failed_keys),
                "materialized_partitions": len(metadata_by_key),
            },
        )


class PartitionedFrameIOManager(ConfigurableIOManager):
    """Validates, quarantines and stores frames partitioned by (session, symbol key).

    Subclasses say which hard rules apply by implementing `split`.
    """

    platform: PlatformResource

    def _rectangle(self, context: OutputContext | InputContext) -> PartitionRectangle:
        return io_rectangle(context, self.platform, type(self).__name__)

    def split(
        self, frame: pl.DataFrame, dataset: str, pairs: Sequence[tuple[str, dt.date]]
    ) -> ValidationResult:
        """Rows to store and rows to quarantine, by the dataset's hard rules."""
        raise NotImplementedError

    def handle_output(self, context: OutputContext, obj: pl.DataFrame | RectangleOutput) -> None:
        started = time.perf_counter()
        dataset = context.asset_key.path[-1]
        rectangle = self._rectangle(context)
        frame, failed = unpack_output(obj)
        pairs = [pair for pair in rectangle.pairs if pair[0] not in failed]
        of_failed = frame.filter(pl.col("symbol").is_in(list(failed)))
        checked = self.split(frame.filter(~pl.col("symbol").is_in(list(failed))), dataset, pairs)
        stores = []
        if pairs:
            stores = write_stores(
                self.platform,
                dataset,
                checked.valid,
                pairs,
                checked.quarantined,
                context=context,
                rectangle=rectangle,
            )
        context.add_output_metadata(
            {
                "partitions": len(rectangle.by_key) - len(rectangle.keys_of_symbols(failed)),
                "rows_stored": len(checked.valid),
                "rows_of_failed_symbols_not_stored": len(of_failed),
                "quarantined_rows": len(checked.quarantined),
                "quarantine_rules": MetadataValue.json(checked.rule_counts),
                "stores": ", ".join(stores) or "none",
                "write_seconds": round(time.perf_counter() - started, 4),
                **_path_example(self.platform, dataset, pairs),
            }
        )
        record_partitions(context, rectangle, checked.valid, checked.quarantined, failed)

    def load_input(self, context: InputContext) -> pl.DataFrame:
        dataset = (
            context.upstream_output.asset_key.path[-1]
            if context.upstream_output
            else (context.asset_key.path[-1])
        )
        rectangle = self._rectangle(context)
        return self.platform.lake().read_partitions(dataset, list(rectangle.pairs))


def write_stores(
    platform: PlatformResource,
    dataset: str,
    rows: pl.DataFrame,
    pairs: Sequence[tuple[str, dt.date]],
    quarantined: pl.DataFrame | None = None,
    *,
    context: OutputContext | None = None,
    rectangle: PartitionRectangle | None = None,
) -> list[str]:
    """Replace exactly `pairs` of `dataset` in the lake and (when configured) PostgreSQL.

    The lake first, then PostgreSQL. When a write fails the step fails with its cause and
    which store holds the new rows; partitions PostgreSQL missed are recorded, and the next
    write of the dataset copies them from the lake (defs/store_sync.py). `rectangle` gives the
    partition keys of `pairs` for that record; `context` gets the copy's events and metadata.
    """
    lake = platform.lake()
    dataset_config = platform.app_config().datasets.get(dataset)
    if not (platform.timescale_dsn and dataset_config and "timescale" in dataset_config.stores):
        lake.write_partitions(dataset, rows, pairs)
        if quarantined is not None:
            lake.write_quarantine(dataset, quarantined, pairs)
        return ["lake"]
    intent = None
    try:
        run_id = context.run_id if context else None
        intent = begin_write(platform, dataset, pairs, keys_of(pairs, rectangle), run_id)
        lake.write_partitions(dataset, rows, pairs)
        if quarantined is not None:
            lake.write_quarantine(dataset, quarantined, pairs)
    except Exception as exc:
        end_write(platform, dataset, intent, quietly=True)
        raise lake_failed(dataset, pairs, exc) from exc
    try:
        timescale = platform.timescale()
        assert timescale is not None  # a DSN is set
        timescale.write_partitions(dataset, rows, pairs)
        if quarantined is not None:
            timescale.write_quarantine(dataset, quarantined, pairs)
    except Exception as exc:
        failure = postgresql_failed(platform, dataset, pairs, rectangle, exc)
        end_write(platform, dataset, intent, quietly=True)
        raise failure from exc
    end_write(platform, dataset, intent)
    bring_postgresql_in_line(
        platform,
        timescale,
        dataset,
        pairs,
        with_quarantine=quarantined is not None,
        context=context,
    )
    return ["lake", "timescale" if timescale.uses_timescale else "postgresql"]


def _path_example(
    platform: PlatformResource, dataset: str, pairs: Sequence[tuple[str, dt.date]]
) -> dict[str, MetadataValue]:
    if not pairs:
        return {}
    symbol, session = pairs[0]
    uri = platform.lake().uri_for(dataset, symbol, session)
    return {"lake_path_example": MetadataValue.path(uri)}


class BarsIOManager(PartitionedFrameIOManager):
    """Stores polars frames of canonical bars, partitioned by (session, symbol key)."""

    def split(
        self, frame: pl.DataFrame, dataset: str, pairs: Sequence[tuple[str, dt.date]]
    ) -> ValidationResult:
        config = self.platform.app_config()
        return split_valid_bars(
            frame,
            dataset=dataset,
            partitions=pairs,
            calendar=get_calendar(config.calendar_of(dataset)),
            extended_hours=config.extended_hours_of(dataset),
        )


def step_rectangle(
    context: AssetExecutionContext, platform: PlatformResource
) -> PartitionRectangle:
    """The (session x symbol key) rectangle this asset step materializes, after
    `plan_partitions` (call it first thing in the asset body)."""
    plan_partitions(context)
    return resolve_partition_keys(context.partition_keys, platform.app_config().symbol_partitions)


def plan_partitions(context: AssetExecutionContext) -> list[str]:
    """The partition keys this asset step materializes. In runs with deferred events they are
    recorded as planned first: in progress now, failed if the run fails. Any partitioned
    asset's body calls this (or `step_rectangle`) first thing."""
    keys = [str(key) for key in context.partition_keys]
    step = step_of(context)
    if deferred(step):
        StepEventRecorder(step).planned(AssetKey(context.asset_key.path), keys)
    return keys
