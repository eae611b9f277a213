"""corporate_actions (fetched) and bars_1d_adjusted (bars_1d + every action of the symbol).

Both are partitioned by (session, symbol key) like the bars. A corporate_actions partition
holds the actions whose ex-date is that session; it also reads the previous session's raw
daily bar through Dagster, whose close becomes each dividend's `reference_close`.

bars_1d_adjusted needs, for its own sessions, the raw bars and the symbol's FULL action list
(backward factors depend on every later action), so its `corporate_actions` input maps every
session of the same symbol key. New bars flow in through `AutomationCondition.eager()`,
which ignores corporate_actions: a new action re-adjusts history through the re-adjust
sensor (defs/automation/readjust.py), symbol by symbol.
"""

import datetime as dt
import time
import warnings

import polars as pl
from dagster import (
    AllPartitionMapping,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    AutomationCondition,
    BetaWarning,
    DimensionPartitionMapping,
    IdentityPartitionMapping,
    MetadataValue,
    MultiPartitionMapping,
    Output,
    PartitionMapping,
    TimeWindowPartitionMapping,
    asset,
)

from market_assets.core.actions import check_actions, fetch_partition_actions, stamp_known_at
from market_assets.core.config import AppConfig, DatasetConfig
from market_assets.core.providers.registry import ACTIONS_ROUTE
from market_assets.core.transforms.adjust import adjust_with_actions, fill_reference_closes
from market_assets.defs.assets.bars import PROVIDER_TAG, _backfill_policy
from market_assets.defs.partitions import (
    DATE_DIMENSION,
    SYMBOL_DIMENSION,
    resolve_partition_keys,
    session_symbol_partitions,
)
from market_assets.defs.resources import PlatformResource
from market_assets.defs.table_io import ACTIONS_IO_MANAGER_KEY, TABLE_IO_MANAGER_KEY

# MultiPartitionMapping and allow_nonexistent_upstream_partitions are beta in Dagster 1.13;
# they are the documented way to map (session, symbol) partitions across sessions.
warnings.filterwarnings("ignore", message=".*MultiPartitionMapping.*", category=BetaWarning)
warnings.filterwarnings(
    "ignore", message=".*allow_nonexistent_upstream_partitions.*", category=BetaWarning
)

ACTIONS_ASSET = "corporate_actions"
ADJUSTED_ASSET = "bars_1d_adjusted"
DAILY_BARS = "bars_1d"


def same_symbol(date_mapping: PartitionMapping) -> MultiPartitionMapping:
    """Map (session, symbol key) partitions to upstream sessions of the same symbol key."""
    return MultiPartitionMapping(
        {
            DATE_DIMENSION: DimensionPartitionMapping(DATE_DIMENSION, date_mapping),
            SYMBOL_DIMENSION: DimensionPartitionMapping(
                SYMBOL_DIMENSION, IdentityPartitionMapping()
            ),
        }
    )


PREVIOUS_SESSION = same_symbol(
    TimeWindowPartitionMapping(-1, -1, allow_nonexistent_upstream_partitions=True)
)
EVERY_SESSION = same_symbol(AllPartitionMapping())


def corporate_actions_asset(dataset: DatasetConfig, config: AppConfig) -> AssetsDefinition:
    """Splits, cash dividends and symbol changes by ex-date, from the providers' route."""

    @asset(
        name=ACTIONS_ASSET,
        description=dataset.description,
        group_name="corporate_actions",
        partitions_def=session_symbol_partitions(dataset.start, config.exchange),
        backfill_policy=_backfill_policy(dataset, len(config.symbol_partitions.keys)),
        io_manager_key=ACTIONS_IO_MANAGER_KEY,
        ins={"previous_bars": AssetIn(key=DAILY_BARS, partition_mapping=PREVIOUS_SESSION)},
        kinds={"polars", "parquet"},
        metadata={"providers": ", ".join(dataset.providers)},
    )
    def _actions(
        context: AssetExecutionContext, platform: PlatformResource, previous_bars: pl.DataFrame
    ) -> Output:
        started = time.perf_counter()
        rectangle = resolve_partition_keys(
            context.partition_keys, platform.app_config().symbol_partitions
        )
        registry = platform.registry()
        pinned = context.run.tags.get(PROVIDER_TAG)
        if pinned and hasattr(registry.providers.get(pinned), "fetch_actions"):
            registry = registry.with_route(ACTIONS_ROUTE, [pinned])
        result = fetch_partition_actions(registry, rectangle.pairs)
        for symbol, message in result.failures.items():
            context.log.error(f"{ACTIONS_ASSET} {symbol}: {message}")
        checked = check_actions(fill_reference_closes(result.frame, previous_bars))
        actions = stamp_known_at(checked.valid, dt.datetime.now(dt.UTC))
        counts = actions.group_by("action_type").len().sort("action_type").rows()
        return Output(
            actions,
            metadata={
                "rows": len(actions),
                "actions_by_type": MetadataValue.json(dict(counts)),
                "rejected_rows": len(checked.rejected),
                "rejected_rules": MetadataValue.json(checked.rule_counts),
                "dividends_without_reference_close": actions.filter(
                    (pl.col("action_type") == "dividend") & pl.col("reference_close").is_null()
                ).height,
                "source": result.source or "none",
                "vendor_requests": result.requests,
                "partitions": len(rectangle),
                "failed_symbols": MetadataValue.json(result.failures),
                "provider_attempts": MetadataValue.json(result.attempts),
                "seconds": round(time.perf_counter() - started, 4),
            },
        )

    return _actions


def adjusted_bars_asset(config: AppConfig) -> AssetsDefinition:
    """Raw daily bars with CRSP-style backward-adjusted prices and volume, and the factors."""
    daily = config.datasets[DAILY_BARS]

    @asset(
        name=ADJUSTED_ASSET,
        description="Daily bars with raw OHLCV plus adj_open/high/low/close/volume, "
        "split_factor and dividend_factor (multiplicative, backward, from corporate_actions).",
        group_name="corporate_actions",
        partitions_def=session_symbol_partitions(daily.start, config.exchange),
        backfill_policy=_backfill_policy(daily, len(config.symbol_partitions.keys)),
        io_manager_key=TABLE_IO_MANAGER_KEY,
        ins={
            "bars": AssetIn(key=DAILY_BARS),
            "actions": AssetIn(key=ACTIONS_ASSET, partition_mapping=EVERY_SESSION),
        },
        kinds={"polars", "parquet"},
        metadata={"granularity": "1d", "derived_from": f"{DAILY_BARS}, {ACTIONS_ASSET}"},
        automation_condition=AutomationCondition.eager().ignore(
            AssetSelection.assets(AssetKey(ACTIONS_ASSET))
        ),
    )
    def _adjusted(
        context: AssetExecutionContext, bars: pl.DataFrame, actions: pl.DataFrame
    ) -> Output:
        started = time.perf_counter()
        frame, steps = adjust_with_actions(bars, actions, daily_closes=bars)
        unresolved = [
            {**row, "ex_date": row["ex_date"].isoformat()} for row in steps.unresolved.to_dicts()
        ]
        for row in unresolved:
            context.log.warning(f"{ADJUSTED_ASSET}: dividend left out of the factors: {row}")
        return Output(
            frame,
            metadata={
                "rows": len(frame),
                "input_rows": len(bars),
                "actions_used": len(actions),
                "ex_dates": steps.steps.height,
                "unresolved_dividends": MetadataValue.json(unresolved),
                "seconds": round(time.perf_counter() - started, 4),
            },
        )

    return _adjusted


def build_corporate_action_assets(config: AppConfig) -> list[AssetsDefinition]:
    """corporate_actions and bars_1d_adjusted, when datasets.yaml configures both inputs."""
    dataset = config.datasets.get(ACTIONS_ASSET)
    if dataset is None or DAILY_BARS not in config.datasets:
        return []
    return [corporate_actions_asset(dataset, config), adjusted_bars_asset(config)]
