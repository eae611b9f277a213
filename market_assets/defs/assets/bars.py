"""Bar assets: bars_1m and bars_1d fetched from providers; 5m, 15m and 1h resampled from 1m.

Every asset is partitioned by (session, symbol key). A run receives a rectangle of partitions
(`context.partition_keys`), fetches it in bulk and returns one frame (with the symbols that
failed); the IO manager splits it per partition, quarantines bad rows, writes every store and
records each partition's materialization. Derived bars read their minute bars from the lake.
"""


import time
import warnings
from collections.abc import Mapping

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    AutomationCondition,
    BackfillPolicy,
    BetaWarning,
    MetadataValue,
    Output,
    asset,
)

from market_assets.core.calendar import get_calendar
from market_assets.core.config import AppConfig, DatasetConfig
from market_assets.core.ingest import fetch_partition_bars
from market_assets.core.stores.layout import layout_for
from market_assets.core.transforms.compare import compare_bars
from market_assets.core.transforms.resample import resample_bars
from market_assets.defs.io_managers import RectangleOutput, step_rectangle
from market_assets.defs.partitions import session_symbol_partitions
from market_assets.defs.resources import PlatformResource
from market_assets.defs.routing import registry_for_run

# BackfillPolicy on assets is marked beta in Dagster 1.13; it is the documented way to give a
# run a rectangle of partitions, so the warning is expected and silenced here only.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=BetaWarning)

IO_MANAGER_KEY = "bars_io_manager"
PROVIDER_TAG = "market_assets/provider"  # run tag pinning one provider (CLI --provider)
FILES_DIR_TAG = "market_assets/files_dir"  # run tag: read Databento DBN files (CLI --files)


def _frame_metadata(frame: pl.DataFrame, started: float) -> dict[str, object]:
    metadata: dict[str, object] = {
        "rows": len(frame),
        "seconds": round(time.perf_counter() - started, 4),
    }
    if not frame.is_empty():
        metadata["first_ts"] = str(frame["ts"].min())
        metadata["last_ts"] = str(frame["ts"].max())
        metadata["symbols"] = frame["symbol"].n_unique()
    return metadata


def vendor_pool(provider: str) -> str:
    """Dagster concurrency pool of the assets whose primary provider is `provider`."""
    return f"vendor_{provider}"


def _primary_provider(dataset: DatasetConfig, config: AppConfig) -> str:
    """The first enabled provider of a fetched dataset's route (else its first provider)."""
    providers = config.providers.providers
    enabled = [name for name in dataset.providers if providers[name].enabled]
    return (enabled or dataset.providers)[0]


def _backup_vs_stored(
    platform: PlatformResource, dataset: str, frame: pl.DataFrame, primary: str
) -> dict[str, object] | None:
    """Compare rows a backup provider delivered with the primary's rows already in the lake."""
    backup = frame.filter(pl.col("source") != primary)
    if backup.is_empty():
        return None
    session = layout_for(dataset).session_expr()
    pairs = backup.select("symbol", session.alias("session")).unique().rows()
    stored = platform.lake().read_partitions(dataset, pairs).filter(pl.col("source") == primary)
    sources = sorted(backup.get_column("source").unique().to_list())
    return compare_bars(backup, stored).as_metadata(sources, primary)


def _backfill_policy(dataset: DatasetConfig) -> BackfillPolicy:
    # A backfill run covers up to `backfill_sessions_per_run` sessions of a block of symbol
    # keys: UI backfills are planned as such rectangles (defs/backfills.py), which reads this
    # number as sessions; the CLI and sensors plan the same rectangles themselves.
    return BackfillPolicy.multi_run(dataset.backfill_sessions_per_run)


def fetched_bars_asset(name: str, dataset: DatasetConfig, config: AppConfig) -> AssetsDefinition:
    """An asset whose rows come from the provider registry (primary, then backups)."""

    @asset(
        name=name,
        description=dataset.description,
        group_name="bars",
        partitions_def=session_symbol_partitions(dataset.start, config.calendar_of(name)),
        backfill_policy=_backfill_policy(dataset),
        io_manager_key=IO_MANAGER_KEY,
        kinds={"polars", "parquet"},
        metadata={
            "granularity": dataset.granularity,
            "providers": ", ".join(dataset.providers),
            "calendar": config.calendar_of(name),
        },
        pool=vendor_pool(_primary_provider(dataset, config)),
    )
    def _fetched(context: AssetExecutionContext, platform: PlatformResource) -> Output:
        started = time.perf_counter()
        rectangle = step_rectangle(context, platform)
        registry = registry_for_run(
            platform,
            name,
            pinned=context.run.tags.get(PROVIDER_TAG),
            files_dir=context.run.tags.get(FILES_DIR_TAG),
        )
        calendar = get_calendar(platform.app_config().calendar_of(name))
        result = fetch_partition_bars(
            registry, name, dataset.granularity, rectangle.pairs, calendar
        )
        for symbol, message in result.failures.items():
            context.log.error(f"{name} {symbol}: {message}")
        metadata = _frame_metadata(result.frame, started)
        metadata.update(
            {
                "source": result.source or "none",
                "vendor_requests": result.requests,
                "partitions": len(rectangle),
                "failed_symbols": MetadataValue.json(result.failures),
                "provider_attempts": MetadataValue.json(result.attempts),
                "dropped_rows": MetadataValue.json(result.dropped),
            }
        )
        for reason, count in result.dropped.items():
            context.log.warning(f"{name}: {count} row(s) not stored: {reason}")
        adjusted = {
            a["provider"]: a["price_adjustment"]
            for a in result.attempts
            if a.get("price_adjustment")
        }
        if adjusted:
            metadata["price_adjustment"] = ", ".join(f"{m} ({p})" for p, m in adjusted.items())
        comparison = _backup_vs_stored(platform, name, result.frame, registry.route(name)[0])
        if comparison is not None:
            metadata["backup_vs_stored"] = MetadataValue.json(comparison)
            if comparison["disagrees"]:
                context.log.warning(f"{name}: backup bars disagree with stored: {comparison}")
        return Output(RectangleOutput(result.frame, result.failures), metadata=metadata)

    return _fetched


def derived_bars_asset(name: str, dataset: DatasetConfig, config: AppConfig) -> AssetsDefinition:
    """An asset resampled from its parent's minute bars, session-aligned."""
    parent = dataset.derived_from
    assert parent is not None

    @asset(
        name=name,
        description=dataset.description,
        group_name="bars",
        partitions_def=session_symbol_partitions(
            config.datasets[parent].start, config.calendar_of(name)
        ),
        # Same policy as the parent, so one run can carry both.
        backfill_policy=_backfill_policy(config.datasets[parent]),
        io_manager_key=IO_MANAGER_KEY,
        deps=[parent],
        kinds={"polars", "parquet"},
        metadata={"granularity": dataset.granularity, "derived_from": parent},
        automation_condition=AutomationCondition.eager(),
    )
    def _derived(context: AssetExecutionContext, platform: PlatformResource) -> Output:
        started = time.perf_counter()
        rectangle = step_rectangle(context, platform)
        minute_bars = platform.lake().read_partitions(parent, list(rectangle.pairs))
        frame = resample_bars(minute_bars, dataset.granularity)
        metadata = _frame_metadata(frame, started)
        sources = sorted(frame["source"].unique().to_list()) if not frame.is_empty() else []
        metadata.update({"source": ",".join(sources) or "none", "input_rows": len(minute_bars)})
        return Output(frame, metadata=metadata)

    return _derived


def build_bar_assets(config: AppConfig) -> list[AssetsDefinition]:
    """One asset per configured bar dataset."""
    assets: list[AssetsDefinition] = []
    datasets: Mapping[str, DatasetConfig] = config.datasets
    for name, dataset in datasets.items():
        if dataset.kind != "bars":
            continue
        if dataset.derived_from:
            assets.append(derived_bars_asset(name, dataset, config))
        else:
            assets.append(fetched_bars_asset(name, dataset, config))
    return assets
