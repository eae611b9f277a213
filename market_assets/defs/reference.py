"""The reference family: reference, index_constituents, ticker_history, index_membership,
their checks, nightly schedules and IO manager, as one Definitions merged into the main one.

Not in `market-assets demo` (its datasets are bars and the corporate-actions family), not in
the 17:30 bar schedules nor the universe sensor's symbol backfills (these assets have no
symbol dimension); the universe sensor reads index_membership for `index:` universes.
"""

from __future__ import annotations

from dagster import Definitions

from market_assets.core.config import AppConfig
from market_assets.defs.assets.reference import build_reference_assets, snapshot_datasets
from market_assets.defs.automation.reference import build_snapshot_schedule
from market_assets.defs.checks.reference import build_reference_checks
from market_assets.defs.reference_io import REFERENCE_IO_MANAGER_KEY, ReferenceIOManager
from market_assets.defs.resources import PlatformResource


def build_reference_definitions(config: AppConfig, platform: PlatformResource) -> Definitions:
    """Empty unless datasets.yaml configures a `reference` or `index_constituents` dataset."""
    assets = build_reference_assets(config)
    if not assets:
        return Definitions()
    return Definitions(
        assets=assets,
        asset_checks=build_reference_checks(assets),
        schedules=[
            build_snapshot_schedule(name, config.exchange) for name in snapshot_datasets(config)
        ],
        resources={REFERENCE_IO_MANAGER_KEY: ReferenceIOManager(platform=platform)},
    )
