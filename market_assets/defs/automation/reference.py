"""Automation of the reference family: a nightly snapshot schedule per snapshot asset, and the
universe sensor's part for `index:` universes (new members and their history).

Schedules: the NASDAQ directory, the SEC map, the constituents table and the iShares
holdings describe only the current day, so a session that is not captured that night cannot
be fetched later from the APIs (only from archived files). Each snapshot asset therefore has
its own nightly schedule at 22:00 New York (the directories are re-created in the evening,
e.g. 21:31), separate from the 17:30 bar schedules, which target session x symbol keys
these session-only assets do not have. The derived tables follow through their automation
condition.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from dagster import (
    AssetKey,
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from market_assets.core.calendar import get_calendar
from market_assets.core.config import AppConfig, bucket_key, bucket_of
from market_assets.core.reference.pit import (
    Window,
    windows_from_json,
    windows_json,
    windows_to_request,
)
from market_assets.defs.automation.runs import rectangle_run_requests
from market_assets.defs.events import DEFERRED_TAGS

SNAPSHOT_CRON = "0 22 * * 1-5"
EXCHANGE_TIMEZONE = "America/New_York"


def build_snapshot_schedule(dataset: str, exchange: str) -> ScheduleDefinition:
    """Nightly on exchange sessions: that session's partition of `dataset`, one run."""

    @schedule(
        name=f"{dataset}_nightly",
        cron_schedule=SNAPSHOT_CRON,
        execution_timezone=EXCHANGE_TIMEZONE,
        target=AssetSelection.assets(AssetKey(dataset)),
        default_status=DefaultScheduleStatus.STOPPED,
        description=f"Capture the session's {dataset} snapshot at 22:00 New York.",
    )
    def _nightly(context: ScheduleEvaluationContext):
        session = context.scheduled_execution_time.date()
        if not get_calendar(exchange).is_session(session):
            return SkipReason(f"{session} is not a {exchange} session")
        return RunRequest(
            run_key=f"{dataset}:{session.isoformat()}",
            partition_key=session.isoformat(),
            tags={**DEFERRED_TAGS, "trigger": "nightly_snapshot"},
        )

    return _nightly


def index_universe_requests(
    config: AppConfig,
    assets: Mapping[str, AssetKey],
    registered: Sequence[str],
    cursor: str | None,
) -> tuple[list[RunRequest], str]:
    """Run requests for the member windows of `index:` universes not requested before.

    The cursor holds, per universe, the windows already requested. New windows (a new
    member, a longer lookback, a whole universe on its first evaluation) are grouped by
    partition key (bucket or member key) and become ranged runs over their sessions,
    `backfill_sessions_per_run` per run; a run fetches only the members of each of its
    sessions (SymbolPartitions.symbols_for_key). Returns the requests and the new cursor.
    """
    done: dict[str, dict[str, list[Window]]] = {
        name: windows_from_json(spans) for name, spans in json.loads(cursor or "{}").items()
    }
    calendar = get_calendar(config.exchange)
    last = calendar.last_completed_sessions(1)[-1]
    partitions = config.symbol_partitions
    requests: list[RunRequest] = []
    state: dict[str, dict] = {}
    for name, universe in config.universes.items():
        if not universe.index:
            continue
        plan = partitions.members_of(name).windows()
        if not plan:
            continue
        state[name] = windows_json(plan)
        sessions_by_key: dict[str, set] = {}
        for symbol, windows in windows_to_request(plan, done.get(name, {})).items():
            key = (
                bucket_key(name, bucket_of(symbol, universe.buckets or 1))
                if universe.partitioning == "bucket"
                else symbol
            )
            for first, stop in windows:
                days = calendar.sessions(first, min(stop or last, last))
                sessions_by_key.setdefault(key, set()).update(days)
        for key, days in sorted(sessions_by_key.items()):
            if key not in registered:
                continue
            for dataset, asset_key in assets.items():
                settings = config.datasets[dataset]
                requests += rectangle_run_requests(
                    [asset_key],
                    sorted(day for day in days if day >= settings.start),
                    [key],
                    registered,
                    settings.backfill_sessions_per_run,
                    tags={"trigger": "universe_sensor", "index_universe": name},
                )
    return requests, json.dumps(state, sort_keys=True)
