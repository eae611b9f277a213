"""The corporate-actions family: corporate_actions, bars_1d_adjusted, indicators, the
re-adjust sensor and their IO managers, as one Definitions merged into the main one."""

from __future__ import annotations

from dagster import AssetKey, Definitions

from market_assets.core.config import AppConfig
from market_assets.defs.assets.corporate_actions import (
    ACTIONS_ASSET,
    ADJUSTED_ASSET,
    DAILY_BARS,
    build_corporate_action_assets,
)
from market_assets.defs.assets.indicators import INDICATORS_ASSET, build_indicator_assets
from market_assets.defs.automation.readjust import build_readjust_sensor
from market_assets.defs.checks.adjusted import build_adjustment_check
from market_assets.defs.resources import PlatformResource
from market_assets.defs.table_io import (
    ACTIONS_IO_MANAGER_KEY,
    TABLE_IO_MANAGER_KEY,
    ActionsIOManager,
    TableIOManager,
)


def build_adjustment_definitions(config: AppConfig, platform: PlatformResource) -> Definitions:
    """Empty unless datasets.yaml configures bars_1d and corporate_actions; indicators also
    need configs/indicators.yaml."""
    assets = build_corporate_action_assets(config)
    if not assets:
        return Definitions()
    indicators = build_indicator_assets(config)
    lookback = (
        int(indicators[0].metadata_by_key[AssetKey(INDICATORS_ASSET)]["lookback_sessions"])
        if indicators
        else 1
    )
    sensor = build_readjust_sensor(
        AssetKey(ACTIONS_ASSET),
        AssetKey(ADJUSTED_ASSET),
        [AssetKey(INDICATORS_ASSET)] if indicators else [],
        trailing_sessions=lookback,
        sessions_per_run=config.datasets[DAILY_BARS].backfill_sessions_per_run,
    )
    return Definitions(
        assets=[*assets, *indicators],
        asset_checks=[build_adjustment_check()],
        sensors=[sensor],
        resources={
            TABLE_IO_MANAGER_KEY: TableIOManager(platform=platform),
            ACTIONS_IO_MANAGER_KEY: ActionsIOManager(platform=platform),
        },
    )
