"""Materialize unpartitioned assets (coverage_report) in-process, like `materialize_rectangle`
does for session x symbol rectangles, and add the run to the same summary."""

from __future__ import annotations

import time
from collections.abc import Sequence

from dagster import AssetKey, DagsterEventType, DagsterInstance, Definitions
from dagster._core.storage.defs_state.base import set_defs_state_storage

from market_assets.defs.process_runs import execute_run
from market_assets.defs.runner import QUIET_RUN_CONFIG, DatasetStats, RunSummary


def materialize_once(
    defs: Definitions,
    instance: DagsterInstance,
    assets: Sequence[AssetKey],
    tags: dict[str, str] | None = None,
    summary: RunSummary | None = None,
    run_config: dict | None = None,
) -> RunSummary:
    """One run materializing `assets` (none of them partitioned)."""
    summary = summary or RunSummary()
    with set_defs_state_storage(instance.defs_state_storage):
        job = defs.resolve_implicit_global_asset_job_def()
    started = time.perf_counter()
    result = execute_run(job, instance, assets, tags, run_config or QUIET_RUN_CONFIG)
    elapsed = time.perf_counter() - started
    summary.wall_seconds += elapsed
    summary.run_ids.append(result.run_id)
    if not result.success:
        summary.failed_runs.append(result.run_id)
    kind = DagsterEventType.ASSET_MATERIALIZATION
    for record in instance.get_records_for_run(result.run_id, of_type=kind).records:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        materialization = event.step_materialization_data.materialization
        dataset = materialization.asset_key.path[-1]
        stats = summary.datasets.setdefault(dataset, DatasetStats(dataset))
        stats.partitions += 1
        seconds = materialization.metadata.get("seconds")
        stats.seconds += float(seconds.value) if seconds is not None else 0.0
    return summary
