"""Re-adjust sensor: when a symbol's splits or dividends change, rebuild its adjusted history.

Backward factors make every session before a new ex-date change, so a new action cannot be
handled by materializing only new partitions. The corporate_actions IO manager records, on
the materialization of the partition of each changed symbol's latest changed ex-date,
`changed_symbols` (symbol -> that ex-date). This sensor reads the
materializations after its cursor and, for each changed symbol, requests bars_1d_adjusted
and indicators for that symbol key's materialized sessions up to `lookback_sessions` sessions
after the ex-date (indicators windows reach that far), and for no other symbol key.

Runs of one symbol key carry the tag `market_assets/readjust=<key>`: dagster.yaml limits
that tag to one run per value, so a key's chunks run oldest first and each chunk's
indicators read the already re-adjusted sessions before it.
"""

import datetime as dt
from collections.abc import Sequence

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from market_assets.core.calendar import get_calendar
from market_assets.core.config import AppConfig
from market_assets.defs.automation.runs import rectangle_run_requests
from market_assets.defs.partitions import SYMBOLS_PARTITION_NAME, split_partition_key
from market_assets.defs.resources import PlatformResource

READJUST_TAG = "market_assets/readjust"
EVENTS_PER_TICK = 10_000  # Dagster's cap per query; a year of 16 keys is 4,000 materializations


def readjust_requests(
    changes: dict[str, dt.date],
    materialized: Sequence[str],
    config: AppConfig,
    registered: Sequence[str],
    assets: Sequence[AssetKey],
    trailing_sessions: int,
    sessions_per_run: int,
) -> list[RunRequest]:
    """Ranged runs re-materializing `assets` for each changed symbol's key.

    `materialized` are the partition keys of the adjusted asset materialized so far; only
    those sessions are rebuilt (nothing is backfilled that was never asked for).
    """
    calendar = get_calendar(config.calendar_of("bars_1d"))
    partitions = config.symbol_partitions
    cutoff_by_key: dict[str, dt.date] = {}
    for symbol, ex_date in changes.items():
        later = calendar.sessions(ex_date, ex_date + dt.timedelta(days=trailing_sessions * 2 + 10))
        cutoff = later[min(trailing_sessions, len(later) - 1)] if later else ex_date
        for key in partitions.keys_for_symbols([symbol]):
            cutoff_by_key[key] = max(cutoff, cutoff_by_key.get(key, cutoff))
    sessions_by_key: dict[str, list[dt.date]] = {key: [] for key in cutoff_by_key}
    for partition_key in materialized:
        session, key = split_partition_key(partition_key)
        if key in cutoff_by_key and session <= cutoff_by_key[key]:
            sessions_by_key[key].append(session)
    requests: list[RunRequest] = []
    for key, sessions in sessions_by_key.items():
        if not sessions or key not in registered:
            continue
        requests += rectangle_run_requests(
            assets,
            sorted(sessions),
            [key],
            registered,
            sessions_per_run,
            tags={"trigger": "readjust_sensor", READJUST_TAG: key},
        )
    return requests


def build_readjust_sensor(
    actions: AssetKey,
    adjusted: AssetKey,
    downstream: Sequence[AssetKey],
    trailing_sessions: int,
    sessions_per_run: int,
) -> SensorDefinition:
    """The sensor re-adjusting `adjusted` (and `downstream`) after actions change."""
    targets = [adjusted, *downstream]

    @sensor(
        name="readjust_sensor",
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.STOPPED,
        asset_selection=targets,
        description="Re-materializes a symbol's adjusted bars and indicators when its splits "
        "or dividends change.",
    )
    def _readjust(context: SensorEvaluationContext, platform: PlatformResource) -> SensorResult:
        cursor = int(context.cursor) if context.cursor else 0
        records = context.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=actions, after_storage_id=cursor),
            limit=EVENTS_PER_TICK,
            ascending=True,
        ).records
        changes: dict[str, dt.date] = {}
        for record in records:
            # Runs with deferred events put `changed_symbols` on the changed partitions only;
            # other ranged runs repeat the run's on every partition (merged the same way).
            cursor = max(cursor, record.storage_id)
            materialization = record.asset_materialization
            entry = materialization.metadata.get("changed_symbols") if materialization else None
            for symbol, day in (entry.value if entry else {}).items():
                ex_date = dt.date.fromisoformat(day)
                changes[symbol] = max(ex_date, changes.get(symbol, ex_date))
        if not changes:
            return SensorResult(skip_reason="no corporate action changed", cursor=str(cursor))
        config = AppConfig.load(platform.config_dir)
        materialized = [str(k) for k in context.instance.get_materialized_partitions(adjusted)]
        registered = context.instance.get_dynamic_partitions(SYMBOLS_PARTITION_NAME)
        requests = [
            # The same sessions may need re-adjusting again after a later action.
            RunRequest(
                run_key=f"readjust@{cursor}:{request.run_key}",
                asset_selection=request.asset_selection,
                tags=request.tags,
            )
            for request in readjust_requests(
                changes,
                materialized,
                config,
                registered,
                targets,
                trailing_sessions,
                sessions_per_run,
            )
        ]
        context.log.info(f"re-adjusting {sorted(changes)}: {len(requests)} run(s)")
        return SensorResult(run_requests=requests, cursor=str(cursor))

    return _readjust
