"""options_chains: end-of-day (or intraday) option chains with IV and greeks, per underlying.

Partitioned by (session, symbol key) like the bars; a symbol key is the underlying (or a
bucket of underlyings). A run receives a rectangle of partitions, fetches it from the
`options_chains` route (or DBN files, by run tag), builds the chain with recomputed IV and
greeks (market_assets.core.options.chain) and returns one frame; OptionsIOManager applies the
hard rules and replaces exactly the run's partitions in the lake and TimescaleDB (a symbol
no provider served is left as stored and reported failed). When datasets.yaml has bars_1d it
is a dependency (lineage): the body reads the same partitions of bars_1d from the lake, whose
close prices the chain when the vendor sends no underlying price.

In the after-close schedule (end-of-day snapshots), not in the universe sensor's history
backfill: snapshot vendors (Alpaca, Yahoo) have no history and OPRA history costs money per
request, so history is loaded on request (`market-assets ingest --dataset options_chains`).
"""

import time
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    Definitions,
    MetadataValue,
    Output,
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
from market_assets.defs.checks.options import build_options_check
from market_assets.defs.io_managers import RectangleOutput, step_rectangle
from market_assets.defs.options_io import OPTIONS_IO_MANAGER_KEY, OptionsIOManager
from market_assets.defs.partitions import session_symbol_partitions
from market_assets.defs.resources import PlatformResource
from market_assets.defs.routing import registry_for_run

OPTIONS_KIND = "options"
OPTIONS_ASSET = "options_chains"
DAILY_BARS = "bars_1d"


def _materialize(context: AssetExecutionContext, platform: PlatformResource) -> Output:
    from market_assets.core.options.chain import chains_for_partitions
    from market_assets.core.options.settings import load_options_settings

    started = time.perf_counter()
    rectangle = step_rectangle(context, platform)
    config = platform.app_config()
    registry = registry_for_run(
        platform,
        OPTIONS_ASSET,
        pinned=context.run.tags.get(PROVIDER_TAG),
        files_dir=context.run.tags.get(FILES_DIR_TAG),
    )
    settings = load_options_settings(config.config_dir)
    underlying_bars = (
        platform.lake().read_partitions(DAILY_BARS, list(rectangle.pairs))
        if DAILY_BARS in config.datasets
        else None
    )
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
    snapshots = settings.snapshots
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
        "snapshots": snapshots if snapshots == "close" else ",".join(snapshots),
        "source": fetched.source or "none",
        "vendor_requests": fetched.requests,
        "partitions": len(rectangle),
        "failed_symbols": MetadataValue.json(fetched.failures),
        "provider_attempts": MetadataValue.json(fetched.attempts),
        "seconds": round(time.perf_counter() - started, 4),
    }
    return Output(RectangleOutput(frame, fetched.failures), metadata=metadata)


def options_chains_asset(dataset: DatasetConfig, config: AppConfig) -> AssetsDefinition:
    """The `options_chains` asset (bars_1d, when configured, is a dependency it reads)."""

    @asset(
        name=OPTIONS_ASSET,
        description=dataset.description,
        group_name="options",
        partitions_def=session_symbol_partitions(dataset.start, config.exchange),
        backfill_policy=_backfill_policy(dataset),
        io_manager_key=OPTIONS_IO_MANAGER_KEY,
        deps=[DAILY_BARS] if DAILY_BARS in config.datasets else [],
        kinds={"polars", "parquet"},
        metadata={"providers": ", ".join(dataset.providers)},
        pool=vendor_pool(_primary_provider(dataset, config)),
    )
    def _chains(context: AssetExecutionContext, platform: PlatformResource) -> Output:
        return _materialize(context, platform)

    return _chains


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
