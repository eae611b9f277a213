"""Tick assets: trades, tbbo and statistics from Databento (API or downloaded DBN files).

Each configured dataset of `kind: ticks` is one asset partitioned by (session, symbol key),
like the bars. A run receives a rectangle of partitions, fetches it with as few vendor
requests as the provider allows, and returns one frame; TicksIOManager validates it and writes
the lake (and PostgreSQL). They are left out of the demo, the after-close schedules and the
universe sensor: ticks cost money per request, so they run only when asked for
(`market-assets ingest --dataset trades ...` or a materialization in the UI).
"""

import time

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    Definitions,
    MetadataValue,
    Output,
    asset,
)

from market_assets.core.config import AppConfig, DatasetConfig
from market_assets.core.ingest_ticks import fetch_partition_ticks
from market_assets.core.schemas import TICK_SCHEMAS, TICK_TIME_COLUMN
from market_assets.defs.assets.bars import FILES_DIR_TAG, PROVIDER_TAG, vendor_pool
from market_assets.defs.io_managers import RectangleOutput, step_rectangle
from market_assets.defs.partitions import session_symbol_partitions
from market_assets.defs.resources import PlatformResource
from market_assets.defs.routing import registry_for_run
from market_assets.defs.ticks_io import TICKS_IO_MANAGER_KEY, TicksIOManager

TICK_KIND = "ticks"


def tick_datasets(config: AppConfig) -> dict[str, DatasetConfig]:
    """The configured datasets of kind `ticks`; raises ValueError for an unknown tick name."""
    datasets = {name: ds for name, ds in config.datasets.items() if ds.kind == TICK_KIND}
    unknown = sorted(set(datasets) - set(TICK_SCHEMAS))
    if unknown:
        raise ValueError(
            f"datasets.yaml: {unknown} are of kind ticks, but tick datasets are "
            f"{sorted(TICK_SCHEMAS)}"
        )
    return datasets


def _metadata(frame: pl.DataFrame, started: float) -> dict[str, object]:
    metadata: dict[str, object] = {
        "rows": len(frame),
        "seconds": round(time.perf_counter() - started, 4),
    }
    if not frame.is_empty():
        metadata["first_ts_event"] = str(frame[TICK_TIME_COLUMN].min())
        metadata["last_ts_event"] = str(frame[TICK_TIME_COLUMN].max())
        metadata["symbols"] = frame["symbol"].n_unique()
    return metadata


def tick_asset(name: str, dataset: DatasetConfig, config: AppConfig) -> AssetsDefinition:
    """An asset whose ticks come from the provider registry (or DBN files, by run tag)."""

    @asset(
        name=name,
        description=dataset.description,
        group_name="ticks",
        partitions_def=session_symbol_partitions(dataset.start, config.calendar_of(name)),
        backfill_policy=BackfillPolicy.multi_run(dataset.backfill_sessions_per_run),
        io_manager_key=TICKS_IO_MANAGER_KEY,
        kinds={"polars", "parquet"},
        metadata={"tick_dataset": name, "providers": ", ".join(dataset.providers)},
        pool=vendor_pool(dataset.providers[0]),
    )
    def _ticks(context: AssetExecutionContext, platform: PlatformResource) -> Output:
        started = time.perf_counter()
        rectangle = step_rectangle(context, platform)
        registry = registry_for_run(
            platform,
            name,
            pinned=context.run.tags.get(PROVIDER_TAG),
            files_dir=context.run.tags.get(FILES_DIR_TAG),
        )
        result = fetch_partition_ticks(registry, name, rectangle.pairs)
        for symbol, message in result.failures.items():
            context.log.error(f"{name} {symbol}: {message}")
        metadata = _metadata(result.frame, started)
        metadata.update(
            {
                "source": result.source or "none",
                "vendor_requests": result.requests,
                "partitions": len(rectangle),
                "failed_symbols": MetadataValue.json(result.failures),
                "provider_attempts": MetadataValue.json(result.attempts),
            }
        )
        return Output(RectangleOutput(result.frame, result.failures), metadata=metadata)

    return _ticks


def build_tick_definitions(config: AppConfig, platform: PlatformResource) -> Definitions:
    """Tick assets and their IO manager; empty when datasets.yaml configures no tick dataset."""
    assets = [tick_asset(name, ds, config) for name, ds in tick_datasets(config).items()]
    if not assets:
        return Definitions()
    return Definitions(
        assets=assets, resources={TICKS_IO_MANAGER_KEY: TicksIOManager(platform=platform)}
    )
