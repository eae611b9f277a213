"""The one Definitions object: `dagster dev -m market_assets.definitions`."""

from __future__ import annotations

import os

from dagster import AssetKey, Definitions, EnvVar

from market_assets.core.config import TIMESCALE_DSN_ENV, AppConfig
from market_assets.defs.adjustments import build_adjustment_definitions
from market_assets.defs.assets.bars import IO_MANAGER_KEY, build_bar_assets
from market_assets.defs.assets.options import OPTIONS_KIND, build_options_definitions
from market_assets.defs.assets.reference import SNAPSHOT_KINDS as SESSION_KINDS
from market_assets.defs.assets.ticks import TICK_KIND, build_tick_definitions
from market_assets.defs.automation.schedules import build_after_close_schedule
from market_assets.defs.automation.sensors import build_universe_sensor
from market_assets.defs.checks.definitions import build_quality_definitions
from market_assets.defs.fundamentals import SELF_SCHEDULED_KINDS, build_fundamentals_definitions
from market_assets.defs.io_managers import BarsIOManager
from market_assets.defs.reference import build_reference_definitions
from market_assets.defs.resources import PlatformResource


def platform_from_config(config: AppConfig) -> PlatformResource:
    """The platform resource of `config`. A DSN read from the environment is passed as an
    EnvVar: Dagster resolves it when a run starts and shows only the variable's name in the
    UI and in stored snapshots (the DSN carries the database password)."""
    dsn = config.timescale_dsn
    if dsn and dsn == os.environ.get(TIMESCALE_DSN_ENV):
        dsn = EnvVar(TIMESCALE_DSN_ENV)
    return PlatformResource(
        config_dir=str(config.config_dir),
        data_dir=config.data_dir,
        timescale_dsn=dsn,
        s3_endpoint_url=config.s3_endpoint_url,
        s3_region=config.s3_region,
    )


# Option chains are priced off the session's stored daily close (vendors other than Yahoo and
# the synthetic provider send no underlying price): their schedule runs an hour after the bars.
LATER_AFTER_CLOSE: dict[str, dict[str, str]] = {
    OPTIONS_KIND: {
        "cron_schedule": "30 18 * * 1-5",
        "description": "The day's option chains at 18:30 New York time on exchange sessions, "
        "an hour after the daily bars whose close prices them.",
    }
}


def build_definitions(config: AppConfig | None = None) -> Definitions:
    """Assemble assets, resources and automation from configs/ and the environment."""
    config = config or AppConfig.load()
    platform = platform_from_config(config)
    bar_assets = build_bar_assets(config)
    fetched = {
        name: AssetKey(name)
        for name, ds in config.datasets.items()
        if not ds.derived_from and ds.kind != TICK_KIND  # ticks cost money: run on request only
        and ds.kind not in SESSION_KINDS  # session-only: their own nightly schedules
    }
    schedules = [
        build_after_close_schedule(
            f"{name}_after_close",
            [key, *(AssetKey(d) for d, ds in config.datasets.items() if ds.derived_from == name)],
            config.calendar_of(name),
            **LATER_AFTER_CLOSE.get(config.datasets[name].kind, {}),
        )
        for name, key in fetched.items()
        if config.datasets[name].kind not in SELF_SCHEDULED_KINDS  # they bring their own
    ]
    core = Definitions(
        assets=bar_assets,
        schedules=schedules,
        sensors=[
            build_universe_sensor(
                {n: k for n, k in fetched.items() if config.datasets[n].kind != OPTIONS_KIND}
            )
        ],
        resources={
            "platform": platform,
            IO_MANAGER_KEY: BarsIOManager(platform=platform),
        },
    )
    return Definitions.merge(
        core,
        build_adjustment_definitions(config, platform),
        build_tick_definitions(config, platform),
        build_quality_definitions(bar_assets),
        build_fundamentals_definitions(config, platform),
        build_options_definitions(config, platform),
        build_reference_definitions(config, platform),
    )


defs = build_definitions()
