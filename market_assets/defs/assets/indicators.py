"""indicators: TA-Lib indicators of bars_1d_adjusted, over a trailing window of sessions.

Each partition (session, symbol key) needs the `lookback_sessions - 1` sessions before it:
the asset reads that window of adjusted bars from the lake, so a run of one session gets its
whole window from earlier partitions. Sessions before the adjusted bars start simply do not
exist upstream; their indicators stay null. The dependency on bars_1d_adjusted is declared
as a plain (same-partition) `deps` entry, for lineage and automation (see
defs/assets/corporate_actions.py for why not with the window as a partition mapping).
"""

import datetime as dt
import time
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    AutomationCondition,
    Output,
    asset,
)

from market_assets.core.calendar import get_calendar
from market_assets.core.config import AppConfig
from market_assets.core.transforms.indicators import (
    CONFIG_FILE,
    IndicatorsConfig,
    compute_indicators,
    load_indicators_config,
)
from market_assets.defs.assets.bars import _backfill_policy
from market_assets.defs.assets.corporate_actions import ADJUSTED_ASSET, DAILY_BARS
from market_assets.defs.io_managers import step_rectangle
from market_assets.defs.partitions import session_symbol_partitions
from market_assets.defs.resources import PlatformResource
from market_assets.defs.table_io import TABLE_IO_MANAGER_KEY

INDICATORS_ASSET = "indicators"


def indicators_asset(config: AppConfig, indicators: IndicatorsConfig) -> AssetsDefinition:
    """The configured indicators, long format (ts, symbol, indicator, value)."""
    daily = config.datasets[DAILY_BARS]

    @asset(
        name=INDICATORS_ASSET,
        description="Technical indicators (TA-Lib) of bars_1d_adjusted: "
        + ", ".join(indicators.names()),
        group_name="corporate_actions",
        partitions_def=session_symbol_partitions(daily.start, config.calendar_of(DAILY_BARS)),
        backfill_policy=_backfill_policy(daily),
        io_manager_key=TABLE_IO_MANAGER_KEY,
        deps=[ADJUSTED_ASSET],
        kinds={"polars", "parquet", "talib"},
        metadata={
            "lookback_sessions": indicators.lookback_sessions,
            "indicators": ", ".join(indicators.names()),
        },
        automation_condition=AutomationCondition.eager(),
    )
    def _indicators(context: AssetExecutionContext, platform: PlatformResource) -> Output:
        started = time.perf_counter()
        rectangle = step_rectangle(context, platform)
        sessions = rectangle.sessions
        reach = dt.timedelta(days=2 * indicators.lookback_sessions + 10)  # > N sessions back
        earlier = get_calendar(config.exchange).sessions(sessions[0] - reach, sessions[0])
        first = earlier[-indicators.lookback_sessions :][0]  # N - 1 sessions before, plus itself
        adjusted = platform.lake().read(
            ADJUSTED_ASSET, rectangle.symbols, first, sessions[-1] + dt.timedelta(days=1)
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
