"""Universe sensor: registers the symbol keys of configs/universes.yaml and backfills them.

It also guards the `symbols` partition set: a key added by hand (the UI's "add partition")
that is neither a valid ticker nor a bucket some universe defines is removed, with a log
line naming it and why, before a run can try to fetch it; the after-close schedules leave
such keys out of their runs in the meantime.
"""


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
from market_assets.core.config import BUCKET_SEPARATOR, AppConfig, SymbolPartitions
from market_assets.core.errors import MarketAssetsError
from market_assets.defs.automation.reference import index_universe_requests
from market_assets.defs.automation.runs import rectangle_run_requests
from market_assets.defs.partitions import SYMBOLS_PARTITION_NAME, symbols_partitions
from market_assets.defs.resources import PlatformResource


def invalid_symbol_keys(
    keys: list[str], partitions: SymbolPartitions, *, buckets_allowed: bool = False
) -> dict[str, str]:
    """Each key that is not a valid ticker nor a configured bucket, with the reason
    (`buckets_allowed`: any bucket-shaped key passes, for callers without the config)."""
    invalid: dict[str, str] = {}
    for key in keys:
        if buckets_allowed and BUCKET_SEPARATOR in key:
            continue
        try:
            partitions.symbols_for_key(key)
        except (MarketAssetsError, ValueError) as error:
            invalid[key] = str(error)
    return invalid


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
        invalid = invalid_symbol_keys(existing, config.symbol_partitions)
        removals = []
        if invalid:
            for key, reason in invalid.items():
                context.log.warning(f"removing symbol partition key {key!r}: {reason}")
            removals = [symbols_partitions.build_delete_request(list(invalid))]
            existing = [key for key in existing if key not in invalid]
        new_keys = [key for key in config.symbol_partitions.keys if key not in existing]
        registered = [*existing, *new_keys]
        # `index:` universes: only their members' windows, new since the cursor.
        run_requests, cursor = index_universe_requests(
            config, fetched_assets, registered, context.cursor
        )
        if not new_keys and not run_requests:
            if removals:
                return SensorResult(dynamic_partitions_requests=removals, cursor=cursor)
            if cursor != (context.cursor or "{}"):
                return SensorResult(skip_reason="no new member windows", cursor=cursor)
            return SkipReason("every universe symbol key is registered")
        partitions = config.symbol_partitions
        full_history = [k for k in new_keys if partitions.index_universe_of(k) is None]
        for name, key in fetched_assets.items():
            dataset = config.datasets[name]
            calendar = get_calendar(config.calendar_of(name))
            last = calendar.last_completed_sessions(1)[-1]
            sessions = calendar.sessions(dataset.start, last)
            run_requests += rectangle_run_requests(
                [key],
                sessions,
                full_history,
                registered,
                dataset.backfill_sessions_per_run,
                tags={"trigger": "universe_sensor"},
            )
        context.log.info(f"registering {len(new_keys)} symbol keys: {new_keys}")
        return SensorResult(
            run_requests=run_requests,
            dynamic_partitions_requests=[
                *removals,
                *([symbols_partitions.build_add_request(new_keys)] if new_keys else []),
            ],
            cursor=cursor,
        )

    return _universe
