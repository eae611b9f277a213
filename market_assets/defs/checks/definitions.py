"""The data-quality family as one Definitions merged into the main one: a partitioned
`quality` check on every bar asset, the `coverage_report` asset and the alert sensor."""

from __future__ import annotations

from collections.abc import Sequence

from dagster import AssetsDefinition, Definitions

from market_assets.defs.assets.coverage import build_coverage_asset
from market_assets.defs.automation.alerts import (
    ALERT_RESOURCE_KEY,
    AlertWebhookResource,
    build_alert_sensor,
)
from market_assets.defs.checks.bars import bar_datasets, build_bar_checks


def build_quality_definitions(bar_assets: Sequence[AssetsDefinition]) -> Definitions:
    """Checks, report and alerts for the bar assets among `bar_assets`.

    The `platform` resource comes from the main Definitions; the alert webhook URL from the
    environment (MARKET_ASSETS_ALERT_WEBHOOK_URL), read only when an alert is sent.
    """
    datasets = sorted(bar_datasets(bar_assets))
    if not datasets:
        return Definitions()
    return Definitions(
        assets=[build_coverage_asset(bar_assets)],
        asset_checks=build_bar_checks(bar_assets),
        sensors=[build_alert_sensor(datasets)],
        resources={ALERT_RESOURCE_KEY: AlertWebhookResource()},
    )
