"""Ranged runs of the session-partitioned reference assets, then their derived tables.

Used by `market-assets ingest --dataset reference|index_constituents`. A snapshot asset's
runs each cover `backfill_sessions_per_run` sessions (a range of one dimension) and carry
the deferred-events tag (their steps record the partitions' events in batches,
defs/events.py); after them one run rebuilds ticker_history and index_membership from every
stored snapshot (unpartitioned: Dagster records its one materialization). Runs are recorded
in the instance like any other (defs/runner.py's summary).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence

from dagster import AssetKey, DagsterInstance, Definitions
from dagster._core.storage.defs_state.base import set_defs_state_storage

from market_assets.defs.automation.runs import RANGE_END_TAG, RANGE_START_TAG, session_chunks
from market_assets.defs.events import DEFERRED_TAGS, observe_materializations
from market_assets.defs.process_runs import execute_run
from market_assets.defs.runner import QUIET_RUN_CONFIG, RunSummary, _collect


def _execute(
    defs: Definitions,
    instance: DagsterInstance,
    assets: Sequence[AssetKey],
    tags: dict[str, str],
    summary: RunSummary,
    observe: Callable[[str, AssetKey, int], None] | None = None,
) -> None:
    with set_defs_state_storage(instance.defs_state_storage):
        job = defs.resolve_implicit_global_asset_job_def()
    started = time.perf_counter()
    with observe_materializations(observe or (lambda *_: None)):
        result = execute_run(job, instance, assets, tags, QUIET_RUN_CONFIG)
    summary.wall_seconds += time.perf_counter() - started
    summary.run_ids.append(result.run_id)
    if not result.success:
        summary.failed_runs.append(result.run_id)
    _collect(instance, result.run_id, summary)


def materialize_sessions(
    defs: Definitions,
    instance: DagsterInstance,
    asset: AssetKey,
    sessions: Sequence[dt.date],
    sessions_per_run: int,
    tags: dict[str, str] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    summary: RunSummary | None = None,
) -> RunSummary:
    """Materialize a session-partitioned `asset`, `sessions_per_run` sessions per run.

    `on_progress(done, total)` counts sessions as each run's step records them.
    """
    summary = summary or RunSummary()
    total = len(sessions)
    finished = 0

    def observe(run_id: str, asset_key: AssetKey, partitions: int) -> None:
        if on_progress and asset_key == asset:
            on_progress(min(finished + partitions, total), total)

    for first, last in session_chunks(sessions, sessions_per_run):
        run_tags = {
            **DEFERRED_TAGS,
            **(tags or {}),
            RANGE_START_TAG: first.isoformat(),
            RANGE_END_TAG: last.isoformat(),
        }
        _execute(defs, instance, [asset], run_tags, summary, observe)
        finished += sum(1 for day in sessions if first <= day <= last)
        if on_progress:
            on_progress(finished, total)
    return summary


def rebuild_derived(
    defs: Definitions,
    instance: DagsterInstance,
    assets: Sequence[AssetKey],
    tags: dict[str, str] | None = None,
    summary: RunSummary | None = None,
) -> RunSummary:
    """One run rebuilding the derived tables (ticker_history, index_membership) in order."""
    summary = summary or RunSummary()
    if assets:
        _execute(defs, instance, assets, dict(tags or {}), summary)
    return summary
