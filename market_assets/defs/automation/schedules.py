"""After-close schedule: today's session for every symbol key, all bar datasets, one run."""


from collections.abc import Sequence

from dagster import (
    AssetKey,
    AssetSelection,
    DefaultScheduleStatus,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from market_assets.core.calendar import get_calendar
from market_assets.core.config import SymbolPartitions
from market_assets.defs.automation.runs import rectangle_run_requests
from market_assets.defs.automation.sensors import invalid_symbol_keys
from market_assets.defs.partitions import SYMBOLS_PARTITION_NAME

AFTER_CLOSE_CRON = "30 17 * * 1-5"
EXCHANGE_TIMEZONE = "America/New_York"


def build_after_close_schedule(
    name: str,
    asset_keys: Sequence[AssetKey],
    exchange: str,
    cron_schedule: str = AFTER_CLOSE_CRON,
    description: str = "Materialize the day's session for every symbol after the close.",
) -> ScheduleDefinition:
    """Daily at 17:30 New York time (or `cron_schedule`) on exchange sessions only (holidays
    are skipped).

    A schedule's assets must share one partitions definition, so there is one schedule per
    fetched dataset, carrying the datasets derived from it.
    """

    @schedule(
        name=name,
        cron_schedule=cron_schedule,
        execution_timezone=EXCHANGE_TIMEZONE,
        target=AssetSelection.assets(*asset_keys),
        default_status=DefaultScheduleStatus.STOPPED,
        description=description,
    )
    def _after_close(context: ScheduleEvaluationContext):
        session = context.scheduled_execution_time.date()
        if not get_calendar(exchange).is_session(session):
            return SkipReason(f"{session} is not a {exchange} session")
        registered = context.instance.get_dynamic_partitions(SYMBOLS_PARTITION_NAME)
        invalid = invalid_symbol_keys(registered, SymbolPartitions({}), buckets_allowed=True)
        for key, reason in invalid.items():
            context.log.warning(f"leaving out symbol partition key {key!r}: {reason}")
        keys = [key for key in registered if key not in invalid]
        if not keys:
            return SkipReason("no symbol partitions registered yet (start the universe sensor)")
        # Ranges follow the registered order, so a range never spans a key left out.
        return rectangle_run_requests(
            asset_keys,
            [session],
            keys,
            registered,
            sessions_per_run=1,
            tags={"trigger": "after_close"},
        )

    return _after_close
