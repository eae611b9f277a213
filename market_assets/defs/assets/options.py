"""options_chains: end-of-day (or intraday) option chains with IV and greeks, per underlying.

Partitioned by (session, symbol key) like the bars; a symbol key is the underlying (or a
bucket of underlyings). A run receives a rectangle of partitions, fetches it from the
`options_chains` route (or DBN files, by run tag), builds the chain with recomputed IV and
greeks (market_assets.core.options.chain) and returns one frame; OptionsIOManager applies the
hard rules and replaces exactly the run's partitions in the lake and TimescaleDB. When
datasets.yaml has bars_1d, the same partitions of bars_1d are an input: their close prices
the chain when the vendor sends no underlying price.

In the after-close schedule (end-of-day snapshots), not in the universe sensor's history
backfill: snapshot vendors (Alpaca, Yahoo) have no history and OPRA history costs money per
request, so history is loaded on request (`market-assets ingest --dataset options_chains`).
"""

import time
from typing import Any

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetsDefinition,
    Definitions,
    MetadataValue,
    Output,
    TimeWindowPartitionMapping,
    asset,
)

from market_assets.core.calendar import get_calendar
from market_assets.core.config import AppConfig, DatasetConfig
from market_assets.defs.assets.bars import (
    FILES_DIR_TAG,
    PROVIDER_TAG,
    _backfill_policy,
    _primary_provider,
    vendor_pool,
)
from market_assets.defs.assets.corporate_actions import same_symbol
from market_assets.defs.checks.options import build_options_check
from market_assets.defs.options_io import OPTIONS_IO_MANAGER_KEY, OptionsIOManager
from market_assets.defs.partitions import resolve_partition_keys, session_symbol_partitions
from market_assets.defs.resources import PlatformResource
from market_assets.defs.routing import registry_for_run

OPTIONS_KIND = "options"
OPTIONS_ASSET = "options_chains"
DAILY_BARS = "bars_1d"
SAME_SESSION = same_symbol(TimeWindowPartitionMapping())


def _materialize(
    context: AssetExecutionContext,
    platform: PlatformResource,
    underlying_bars: pl.DataFrame | None,
) -> Output:
    from market_assets.core.options.chain import chains_for_partitions
    from market_assets.core.options.settings import load_options_settings

    started = time.perf_counter()
    config = platform.app_config()
    rectangle = resolve_partition_keys(context.partition_keys, config.symbol_partitions)
    registry = registry_for_run(
        platform,
        OPTIONS_ASSET,
        pinned=context.run.tags.get(PROVIDER_TAG),
        files_dir=context.run.tags.get(FILES_DIR_TAG),
    )
    settings = load_options_settings(config.config_dir)
    chains = chains_for_partitions(
        registry,
        rectangle.pairs,
        settings,
        str(config.config_dir),
        underlying_bars,
        get_calendar(config.exchange),
    )
    fetched, built = chains.fetched, chains.built
    for symbol, message in fetched.failures.items():
        context.log.error(f"{OPTIONS_ASSET} {symbol}: {message}")
    frame = built.frame
    metadata: dict[str, Any] = {
        "rows": len(frame),
        "contracts": frame.get_column("contract").n_unique(),
        "underlyings": frame.get_column("symbol").n_unique(),
        "iv_status": MetadataValue.json(built.iv_status_counts),
        "adjusted_contracts": built.adjusted_contracts,
        "unparsed_contracts": built.unparsed_contracts,
        "underlying_sources": MetadataValue.json(
            dict(frame.get_column("underlying_source").fill_null("none").value_counts().rows())
        ),
        "snapshots": settings.snapshots
        if settings.snapshots == "close"
        else ",".join(settings.snapshots),
        "source": fetched.source or "none",
        "vendor_requests": fetched.requests,
        "partitions": len(rectangle),
        "failed_symbols": MetadataValue.json(fetched.failures),
        "provider_attempts": MetadataValue.json(fetched.attempts),
        "seconds": round(time.perf_counter() - started, 4),
    }
    return Output(frame, metadata=metadata)


def options_chains_asset(dataset: DatasetConfig, config: AppConfig) -> AssetsDefinition:
    """The `options_chains` asset (with bars_1d as an input when it is configured)."""
    settings: dict[str, Any] = {
        "name": OPTIONS_ASSET,
        "description": dataset.description,
        "group_name": "options",
        "partitions_def": session_symbol_partitions(dataset.start, config.exchange),
        "backfill_policy": _backfill_policy(dataset, len(config.symbol_partitions.keys)),
        "io_manager_key": OPTIONS_IO_MANAGER_KEY,
        "kinds": {"polars", "parquet"},
        "metadata": {"providers": ", ".join(dataset.providers)},
        "pool": vendor_pool(_primary_provider(dataset, config)),
    }
    if DAILY_BARS not in config.datasets:

        @asset(**settings)
        def _chains(context: AssetExecutionContext, platform: PlatformResource) -> Output:
            return _materialize(context, platform, None)

        return _chains

    @asset(
        **settings,
        ins={"underlying_bars": AssetIn(key=DAILY_BARS, partition_mapping=SAME_SESSION)},
    )
    def _chains_with_bars(
        context: AssetExecutionContext, platform: PlatformResource, underlying_bars: pl.DataFrame
    ) -> Output:
        return _materialize(context, platform, underlying_bars)

    return _chains_with_bars


def options_datasets(config: AppConfig) -> dict[str, DatasetConfig]:
    """The configured `kind: options` datasets; raises ValueError unless it is options_chains."""
    datasets = {name: ds for name, ds in config.datasets.items() if ds.kind == OPTIONS_KIND}
    unknown = sorted(set(datasets) - {OPTIONS_ASSET})
    if unknown:
        raise ValueError(
            f"datasets.yaml: {unknown} are of kind options; the options dataset is "
            f"{OPTIONS_ASSET!r}"
        )
    return datasets


def build_options_definitions(config: AppConfig, platform: PlatformResource) -> Definitions:
    """options_chains, its partitioned quality check and IO manager (empty when unconfigured)."""
    dataset = options_datasets(config).get(OPTIONS_ASSET)
    if dataset is None:
        return Definitions()
    chains = options_chains_asset(dataset, config)
    return Definitions(
        assets=[chains],
        asset_checks=[build_options_check(chains)],
        resources={OPTIONS_IO_MANAGER_KEY: OptionsIOManager(platform=platform)},
    )
