"""fundamentals (SEC facts by filing date) and fundamental_ratios (daily, point in time).

Both are partitioned by (session, symbol key) like the bars, with ranged runs. A
`fundamentals` partition holds the facts whose first exchange session on or after their
`filed` date is that session; a run fetches each symbol's companyfacts once and keeps the
facts of its own partitions (market_assets.core.fundamentals.ingest counts the rest).

`fundamental_ratios` reads, from the lake, the raw daily bars of its own partitions and the
symbol's whole stored fundamentals history (facts of every filing date up to the run's last
session; the point-in-time view drops those filed after each session). Both upstream assets
are plain `deps`: the lineage shows in the UI and automation, the reads are ours (see
defs/io_managers.py for why not through Dagster's input loading).
"""

import datetime as dt
import time

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AutomationCondition,
    MetadataValue,
    Output,
    asset,
)

from market_assets.core.config import AppConfig, DatasetConfig
from market_assets.core.fundamentals.config import load_fundamentals_config
from market_assets.core.fundamentals.ingest import fetch_partition_facts
from market_assets.core.fundamentals.ratios import compute_ratios
from market_assets.defs.assets.bars import (
    FILES_DIR_TAG,
    PROVIDER_TAG,
    _backfill_policy,
    _primary_provider,
    vendor_pool,
)
from market_assets.defs.io_managers import RectangleOutput, step_rectangle
from market_assets.defs.partitions import session_symbol_partitions
from market_assets.defs.resources import PlatformResource
from market_assets.defs.routing import registry_for_run

FUNDAMENTALS_KIND = "fundamentals"
RATIOS_KIND = "fundamental_ratios"
DAILY_BARS = "bars_1d"
FUNDAMENTALS_IO_MANAGER_KEY = "fundamentals_io_manager"


def fundamentals_asset(name: str, dataset: DatasetConfig, config: AppConfig) -> AssetsDefinition:
    """Every XBRL fact SEC holds for the symbols, placed in the session of its filing."""

    @asset(
        name=name,
        description=dataset.description,
        group_name="fundamentals",
        partitions_def=session_symbol_partitions(dataset.start, config.exchange),
        backfill_policy=_backfill_policy(dataset),
        io_manager_key=FUNDAMENTALS_IO_MANAGER_KEY,
        kinds={"polars", "parquet"},
        metadata={"providers": ", ".join(dataset.providers), "placed_by": "filed"},
        pool=vendor_pool(_primary_provider(dataset, config)),
    )
    def _fundamentals(context: AssetExecutionContext, platform: PlatformResource) -> Output:
        started = time.perf_counter()
        app_config = platform.app_config()
        rectangle = step_rectangle(context, platform)
        registry = registry_for_run(
            platform,
            name,
            pinned=context.run.tags.get(PROVIDER_TAG),
            files_dir=context.run.tags.get(FILES_DIR_TAG),
        )
        fields = load_fundamentals_config(app_config.config_dir)
        placed = fetch_partition_facts(registry, name, rectangle.pairs, fields, app_config.exchange)
        for symbol, message in placed.failures.items():
            context.log.error(f"{name} {symbol}: {message}")
        frame = placed.frame
        skipped = {
            "filed_outside_the_run_sessions": placed.outside_run,
            "without_filed_date": placed.without_filed,
        }
        metadata: dict[str, object] = {
            "rows": len(frame),
            "facts_in_source": placed.facts_in_source,
            "skipped_rows": placed.outside_run + placed.without_filed,
            "skipped_reasons": MetadataValue.json(skipped),
            "facts_by_symbol": MetadataValue.json(placed.by_symbol),
            "filings": frame.get_column("accession").n_unique(),
            "source": placed.source or "none",
            "vendor_requests": placed.requests,
            "partitions": len(rectangle),
            "failed_symbols": MetadataValue.json(placed.failures),
            "provider_attempts": MetadataValue.json(placed.attempts),
            "seconds": round(time.perf_counter() - started, 4),
        }
        if not frame.is_empty():
            metadata["first_filed"] = str(frame["filed"].min())
            metadata["last_filed"] = str(frame["filed"].max())
        return Output(RectangleOutput(frame, placed.failures), metadata=metadata)

    return _fundamentals


def fundamental_ratios_asset(
    name: str, dataset: DatasetConfig, config: AppConfig
) -> AssetsDefinition:
    """Market cap, book-to-market, ROE, ROA and ROI per session, with their inputs."""
    parent = dataset.derived_from
    assert parent is not None
    fundamentals = config.datasets[parent]

    @asset(
        name=name,
        description=dataset.description,
        group_name="fundamentals",
        partitions_def=session_symbol_partitions(fundamentals.start, config.exchange),
        backfill_policy=_backfill_policy(fundamentals),
        io_manager_key=FUNDAMENTALS_IO_MANAGER_KEY,
        deps=[AssetKey(parent), AssetKey(DAILY_BARS)],
        kinds={"polars", "parquet"},
        metadata={"derived_from": f"{parent} (read from the lake), {DAILY_BARS} raw close"},
        automation_condition=AutomationCondition.eager(),
    )
    def _ratios(context: AssetExecutionContext, platform: PlatformResource) -> Output:
        started = time.perf_counter()
        app_config = platform.app_config()
        rectangle = step_rectangle(context, platform)
        lake = platform.lake()
        bars = lake.read_partitions(DAILY_BARS, list(rectangle.pairs))
        end = rectangle.sessions[-1] + dt.timedelta(days=1)
        facts = lake.read(parent, rectangle.symbols, fundamentals.start, end)
        actions = lake.read("corporate_actions", rectangle.symbols, fundamentals.start, end)
        fields = load_fundamentals_config(app_config.config_dir)
        frame = compute_ratios(facts, bars, actions, rectangle.pairs, fields)
        return Output(
            frame,
            metadata={
                "rows": len(frame),
                "source": f"{parent} (sec_edgar), {DAILY_BARS}",
                "facts_read": len(facts),
                "bars_read": len(bars),
                "splits_read": actions.filter(pl.col("action_type") == "split").height,
                "sessions_without_close": frame.get_column("close").null_count(),
                "sessions_without_fundamentals": len(rectangle) - len(frame),
                "price": "raw close of bars_1d (unadjusted), splits applied to the share count",
                "seconds": round(time.perf_counter() - started, 4),
            },
        )

    return _ratios


def build_fundamental_assets(config: AppConfig) -> list[AssetsDefinition]:
    """The configured datasets of kind fundamentals, and of kind fundamental_ratios whose
    parent is one of them (ratios also need bars_1d)."""
    assets: list[AssetsDefinition] = []
    for name, dataset in config.datasets.items():
        if dataset.kind == FUNDAMENTALS_KIND:
            assets.append(fundamentals_asset(name, dataset, config))
    for name, dataset in config.datasets.items():
        parent = config.datasets.get(dataset.derived_from or "")
        if (
            dataset.kind == RATIOS_KIND
            and parent is not None
            and parent.kind == FUNDAMENTALS_KIND
            and DAILY_BARS in config.datasets
        ):
            assets.append(fundamental_ratios_asset(name, dataset, config))
    return assets
