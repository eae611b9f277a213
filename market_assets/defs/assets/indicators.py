"""indicators: TA-Lib indicators of bars_1d_adjusted, over a trailing window of sessions.

Each partition (session, symbol key) needs the `lookback_sessions - 1` sessions before it.
They are loaded through Dagster with a `TimeWindowPartitionMapping(start_offset=-(N - 1))`
on the date dimension (inside a `MultiPartitionMapping` that keeps the symbol key), so a run
of one session reads its whole window from earlier partitions in the lake. Sessions before
the adjusted bars start simply do not exist upstream; their indicators stay null.
"""

import time
from pathlib import Path

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetsDefinition,
    AutomationCondition,
    Output,
    TimeWindowPartitionMapping,
    asset,
)

from market_assets.core.config import AppConfig
from market_assets.core.transforms.indicators import (
    CONFIG_FILE,
    IndicatorsConfig,
    compute_indicators,
    load_indicators_config,
)
from market_assets.defs.assets.bars import _backfill_policy
from market_assets.defs.assets.corporate_actions import ADJUSTED_ASSET, DAILY_BARS, same_symbol
from market_assets.defs.partitions import resolve_partition_keys, session_symbol_partitions
from market_assets.defs.resources import PlatformResource
from market_assets.defs.table_io import TABLE_IO_MANAGER_KEY

INDICATORS_ASSET = "indicators"


def lookback_mapping(sessions: int) -> TimeWindowPartitionMapping:
    """The `sessions` sessions ending at the downstream session (itself included)."""
    return TimeWindowPartitionMapping(
        start_offset=-(sessions - 1), end_offset=0, allow_nonexistent_upstream_partitions=True
    )


def indicators_asset(config: AppConfig, indicators: IndicatorsConfig) -> AssetsDefinition:
    """The configured indicators, long format (ts, symbol, indicator, value)."""
    daily = config.datasets[DAILY_BARS]

    @asset(
        name=INDICATORS_ASSET,
        description="Technical indicators (TA-Lib) of bars_1d_adjusted: "
        + ", ".join(indicators.names()),
        group_name="corporate_actions",
        partitions_def=session_symbol_partitions(daily.start, config.exchange),
        backfill_policy=_backfill_policy(daily, len(config.symbol_partitions.keys)),
        io_manager_key=TABLE_IO_MANAGER_KEY,
        ins={
            "adjusted": AssetIn(
                key=AssetKey(ADJUSTED_ASSET),
                partition_mapping=same_symbol(lookback_mapping(indicators.lookback_sessions)),
            )
        },
        kinds={"polars", "parquet", "talib"},
        metadata={
            "lookback_sessions": indicators.lookback_sessions,
            "indicators": ", ".join(indicators.names()),
        },
        automation_condition=AutomationCondition.eager(),
    )
    def _indicators(
        context: AssetExecutionContext, platform: PlatformResource, adjusted: pl.DataFrame
    ) -> Output:
        started = time.perf_counter()
        rectangle = resolve_partition_keys(
            context.partition_keys, platform.app_config().symbol_partitions
        )
        frame = compute_indicators(adjusted, indicators, rectangle.sessions)
        return Output(
            frame,
            metadata={
                "rows": len(frame),
                "input_rows": len(adjusted),
                "null_values": frame.get_column("value").null_count(),
                "first_input_ts": str(adjusted["ts"].min()) if len(adjusted) else "none",
                "seconds": round(time.perf_counter() - started, 4),
            },
        )

    return _indicators


def build_indicator_assets(config: AppConfig) -> list[AssetsDefinition]:
    """The indicators asset, when configs/indicators.yaml exists beside the other configs."""
    if not (Path(config.config_dir) / CONFIG_FILE).is_file() or DAILY_BARS not in config.datasets:
        return []
    return [indicators_asset(config, load_indicators_config(config.config_dir))]
