"""Universe sensor: registers the symbol keys of configs/universes.yaml and backfills them."""


from collections.abc import Mapping

from dagster import (
    AssetKey,
    DefaultSensorStatus,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from market_assets.core.calendar import get_calendar
from market_assets.core.config import AppConfig
from market_assets.defs.automation.runs import rectangle_run_requests
from market_assets.defs.partitions import SYMBOLS_PARTITION_NAME, symbols_partitions
from market_assets.defs.resources import PlatformResource


def build_universe_sensor(fetched_assets: Mapping[str, AssetKey]) -> SensorDefinition:
    """Adds new tickers' partition keys and requests their history, a chunk per run."""

    @sensor(
        name="universe_sensor",
        minimum_interval_seconds=300,
        default_status=DefaultSensorStatus.STOPPED,
        asset_selection=list(fetched_assets.values()),
        description="Adds symbol partitions for tickers added to configs/universes.yaml and "
        "requests their history.",
    )
    def _universe(context: SensorEvaluationContext, platform: PlatformResource):
        config = AppConfig.load(platform.config_dir)  # re-read: the file may have changed
        existing = context.instance.get_dynamic_partitions(SYMBOLS_PARTITION_NAME)
        new_keys = [key for key in config.symbol_partitions.keys if key not in existing]
        if not new_keys:
            return SkipReason("every universe symbol key is registered")
        registered = [*existing, *new_keys]
        run_requests = []
        for name, key in fetched_assets.items():
            dataset = config.datasets[name]
            calendar = get_calendar(config.calendar_of(name))
            last = calendar.last_completed_sessions(1)[-1]
            sessions = calendar.sessions(dataset.start, last)
            run_requests += rectangle_run_requests(
                [key],
                sessions,
                new_keys,
                registered,
                dataset.backfill_sessions_per_run,
                tags={"trigger": "universe_sensor"},
            )
        context.log.info(f"registering {len(new_keys)} symbol keys: {new_keys}")
        return SensorResult(
            run_requests=run_requests,
            dynamic_partitions_requests=[symbols_partitions.build_add_request(new_keys)],
        )

    return _universe
