"""corporate_actions (fetched) and bars_1d_adjusted (bars_1d + every action of the symbol).

Both are partitioned by (session, symbol key) like the bars. A corporate_actions partition
holds the actions whose ex-date is that session; it also reads the previous session's raw
daily bar, whose close becomes each dividend's `reference_close`.

bars_1d_adjusted needs, for its own sessions, the raw bars and the symbol's FULL action list
(backward factors depend on every later action). New bars flow in through
`AutomationCondition.eager()`, which ignores corporate_actions: a new action re-adjusts
history through the re-adjust sensor (defs/automation/readjust.py), symbol by symbol.

Upstream rows are read from the lake in the asset bodies, for exactly what each needs (the
previous session's bars; every action of the run's symbols). The dependencies are declared
as plain `deps` (same partition) for lineage and automation: a wider partition mapping on a
dependency makes Dagster enumerate every mapped upstream partition key at the start of each
step (measured: all sessions since 2009 x symbol keys for "every session"), although nothing
is loaded through it.
"""

import datetime as dt
import time

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    AutomationCondition,
    MetadataValue,
    Output,
    asset,
)

from market_assets.core.actions import check_actions, fetch_partition_actions, stamp_known_at
from market_assets.core.calendar import get_calendar
from market_assets.core.config import AppConfig, DatasetConfig
from market_assets.core.providers.registry import ACTIONS_ROUTE
from market_assets.core.transforms.adjust import adjust_with_actions, fill_reference_closes
from market_assets.defs.assets.bars import PROVIDER_TAG, _backfill_policy
from market_assets.defs.io_managers import RectangleOutput, step_rectangle
from market_assets.defs.partitions import session_symbol_partitions
from market_assets.defs.resources import PlatformResource
from market_assets.defs.table_io import ACTIONS_IO_MANAGER_KEY, TABLE_IO_MANAGER_KEY

ACTIONS_ASSET = "corporate_actions"
ADJUSTED_ASSET = "bars_1d_adjusted"
DAILY_BARS = "bars_1d"


def corporate_actions_asset(dataset: DatasetConfig, config: AppConfig) -> AssetsDefinition:
    """Splits, cash dividends and symbol changes by ex-date, from the providers' route."""

    @asset(
        name=ACTIONS_ASSET,
        description=dataset.description,
        group_name="corporate_actions",
        partitions_def=session_symbol_partitions(dataset.start, config.calendar_of(DAILY_BARS)),
        backfill_policy=_backfill_policy(dataset),
        io_manager_key=ACTIONS_IO_MANAGER_KEY,
        deps=[DAILY_BARS],
        kinds={"polars", "parquet"},
        metadata={"providers": ", ".join(dataset.providers)},
    )
    def _actions(context: AssetExecutionContext, platform: PlatformResource) -> Output:
        started = time.perf_counter()
        rectangle = step_rectangle(context, platform)
        sessions = rectangle.sessions
        previous = get_calendar(config.exchange).previous_session(sessions[0])
        previous_bars = platform.lake().read(
            DAILY_BARS, rectangle.symbols, previous, sessions[-1], columns=["symbol", "ts", "close"]
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
            RectangleOutput(actions, result.failures),
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
        partitions_def=session_symbol_partitions(daily.start, config.calendar_of(DAILY_BARS)),
        backfill_policy=_backfill_policy(daily),
        io_manager_key=TABLE_IO_MANAGER_KEY,
        deps=[DAILY_BARS, ACTIONS_ASSET],
        kinds={"polars", "parquet"},
        metadata={"granularity": "1d", "derived_from": f"{DAILY_BARS}, {ACTIONS_ASSET}"},
        automation_condition=AutomationCondition.eager().ignore(
            AssetSelection.assets(AssetKey(ACTIONS_ASSET))
        ),
    )
    def _adjusted(context: AssetExecutionContext, platform: PlatformResource) -> Output:
        started = time.perf_counter()
        rectangle = step_rectangle(context, platform)
        lake = platform.lake()
        bars = lake.read_partitions(DAILY_BARS, list(rectangle.pairs))
        # Every action of the run's symbols, later ones included (backward factors).
        actions = lake.read(ACTIONS_ASSET, rectangle.symbols, daily.start, dt.date.max)
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
