"""The fundamentals family as one Definitions merged into the main one: fundamentals,
fundamental_ratios, their partitioned quality checks, IO manager and schedule.

Schedule: SEC gives a filing accepted by 17:30 New York time that day's filing date (later
ones the next business day's), and its companyfacts update shortly after. The day's session
is therefore fetched at 22:00 New York time on exchange sessions, ratios in the same run;
a filing dated on an exchange holiday (EDGAR is open on Good Friday) lands in the next
session's partition and is fetched with it. The generic 17:30 after-close schedule of
build_definitions skips these kinds (SELF_SCHEDULED_KINDS).
"""

from __future__ import annotations

from dagster import AssetKey, Definitions

from market_assets.core.config import AppConfig
from market_assets.defs.assets.fundamentals import (
    FUNDAMENTALS_IO_MANAGER_KEY,
    FUNDAMENTALS_KIND,
    build_fundamental_assets,
)
from market_assets.defs.automation.schedules import build_after_close_schedule
from market_assets.defs.checks.fundamentals import build_fundamental_checks
from market_assets.defs.fundamentals_io import FundamentalsIOManager
from market_assets.defs.resources import PlatformResource

SELF_SCHEDULED_KINDS = (FUNDAMENTALS_KIND,)
AFTER_FILING_CUTOFF_CRON = "0 22 * * 1-5"


def build_fundamentals_definitions(config: AppConfig, platform: PlatformResource) -> Definitions:
    """Empty unless datasets.yaml configures a dataset of kind fundamentals."""
    assets = build_fundamental_assets(config)
    if not assets:
        return Definitions()
    schedules = [
        build_after_close_schedule(
            f"{name}_after_filing_cutoff",
            [
                AssetKey(name),
                *(AssetKey(d) for d, ds in config.datasets.items() if ds.derived_from == name),
            ],
            config.exchange,
            cron_schedule=AFTER_FILING_CUTOFF_CRON,
            description="Fetch the day's SEC filings at 22:00 New York time (after EDGAR's "
            "17:30 filing-date cutoff) on exchange sessions, with the ratios.",
        )
        for name, dataset in config.datasets.items()
        if dataset.kind in SELF_SCHEDULED_KINDS
    ]
    return Definitions(
        assets=assets,
        asset_checks=build_fundamental_checks(assets),
        schedules=schedules,
        resources={FUNDAMENTALS_IO_MANAGER_KEY: FundamentalsIOManager(platform=platform)},
    )
