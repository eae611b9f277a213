"""Launch ranged materializations in-process on a Dagster instance and summarize them.

Used by the CLI (`demo`, `ingest`). Runs are recorded in the instance like any other run, so
`dagster dev` shows them afterwards. Each run is a rectangle of sessions x contiguous symbol
keys; the summary separates the seconds spent in our code (fetch, transform, validate, write,
read) from Dagster's own bookkeeping (events, storage, planning).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagster import AssetKey, DagsterEventType, DagsterInstance, Definitions, RunRequest
from dagster._core.storage.defs_state.base import set_defs_state_storage

from market_assets.defs.automation.runs import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    rectangle_run_requests,
)
from market_assets.defs.events import CHECK_SECONDS, observe_materializations
from market_assets.defs.partitions import SYMBOLS_PARTITION_NAME, split_partition_key
from market_assets.defs.process_runs import execute_run

QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class DatasetStats:
    """Totals for one dataset across the runs of a command."""

    dataset: str
    partitions: int = 0
    rows: int = 0
    quarantined: int = 0
    seconds: float = 0.0
    failed_symbols: dict[str, str] = field(default_factory=dict)
    sources: set[str] = field(default_factory=set)
    quarantine_rules: dict[str, int] = field(default_factory=dict)  # rule -> rows
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> rows not stored


@dataclass
class RunSummary:
    """What a command's runs did, and where the time went."""

    run_ids: list[str] = field(default_factory=list)
    failed_runs: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    datasets: dict[str, DatasetStats] = field(default_factory=dict)
    check_seconds: float = 0.0  # our code in check steps (rules), recording excluded

    @property
    def our_seconds(self) -> float:
        return sum(s.seconds for s in self.datasets.values()) + self.check_seconds

    @property
    def dagster_seconds(self) -> float:
        return max(self.wall_seconds - self.our_seconds, 0.0)


def register_symbol_keys(instance: DagsterInstance, keys: Sequence[str]) -> list[str]:
    """Add missing symbol keys to the `symbols` partition set; return the registered order."""
    existing = instance.get_dynamic_partitions(SYMBOLS_PARTITION_NAME)
    missing = [key for key in keys if key not in existing]
    if missing:
        instance.add_dynamic_partitions(SYMBOLS_PARTITION_NAME, missing)
    return [*existing, *missing]


def materialize_rectangle(
    defs: Definitions,
    instance: DagsterInstance,
    assets: Sequence[AssetKey],
    sessions: Sequence[dt.date],
    symbol_keys: Sequence[str],
    sessions_per_run: int,
    tags: dict[str, str] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    summary: RunSummary | None = None,
    run_config: dict | None = None,
) -> RunSummary:
    """Materialize `assets` for sessions x symbol_keys, `sessions_per_run` sessions per run.

    `on_progress(done, total)` counts asset partitions: called as each step's partitions are
    recorded (runs record them in batches, see defs/events.py) and after each run.
    `run_config` replaces QUIET_RUN_CONFIG (e.g. a quieter console log level). Raises
    RunsInterrupted instead of starting a run after SIGINT/SIGTERM (defs/process_runs.py);
    `summary` then holds the runs that finished.
    """
    summary = summary or RunSummary()
    registered = register_symbol_keys(instance, symbol_keys)
    # Resolve definitions against THIS instance's state storage: Dagster keeps it in a
    # context variable that a previously used instance may have left behind.
    with set_defs_state_storage(instance.defs_state_storage):
        job = defs.resolve_implicit_global_asset_job_def()
    requests = rectangle_run_requests(
        assets, sessions, symbol_keys, registered, sessions_per_run, tags
    )
    total = len(assets) * len(sessions) * len(symbol_keys)
    finished = 0  # partitions of finished runs, materialized or not
    observed = 0

    def observe(run_id: str, asset_key: AssetKey, partitions: int) -> None:
        nonlocal observed
        observed += partitions
        if on_progress:
            on_progress(min(finished + observed, total), total)

    for request in requests:
        started = time.perf_counter()
        observed = 0
        with observe_materializations(observe):
            result = execute_run(
                job,
                instance,
                request.asset_selection or assets,
                request.tags,
                run_config or QUIET_RUN_CONFIG,
            )
        summary.wall_seconds += time.perf_counter() - started
        summary.run_ids.append(result.run_id)
        if not result.success:
            summary.failed_runs.append(result.run_id)
        _collect(instance, result.run_id, summary)
        finished += _request_partitions(request, sessions, registered) * len(assets)
        if on_progress:
            on_progress(min(finished, total), total)
    return summary


def _request_partitions(
    request: RunRequest, sessions: Sequence[dt.date], registered: Sequence[str]
) -> int:
    """Session x symbol-key partitions of one rectangle run request (per asset)."""
    first, first_key = split_partition_key(request.tags[RANGE_START_TAG])
    last, last_key = split_partition_key(request.tags[RANGE_END_TAG])
    keys = registered.index(last_key) - registered.index(first_key) + 1
    return sum(1 for session in sessions if first <= session <= last) * keys


def step_metadata(instance: DagsterInstance, run_id: str) -> dict[str, dict[str, Any]]:
    """The run-level metadata of each asset step of a run that stored partitions, by step key.

    An asset step's output metadata (fetch or compute: seconds, source, vendor requests,
    failed symbols, provider attempts) and its IO manager's (partitions, rows stored,
    quarantined rows, write seconds) are on its STEP_OUTPUT and HANDLED_OUTPUT events; a step
    failed by failed symbols carries the partitions it still stored on its STEP_FAILURE
    event. A handful of events per step, whatever the number of partitions. Check steps'
    outputs that carry `CHECK_SECONDS` come back too, keyed by step and output name.
    """
    kinds = {
        DagsterEventType.STEP_OUTPUT,
        DagsterEventType.HANDLED_OUTPUT,
        DagsterEventType.STEP_FAILURE,
    }
    outputs: dict[str, dict[str, Any]] = {}
    stored: dict[str, dict[str, Any]] = {}
    checks: dict[str, dict[str, Any]] = {}
    for record in instance.get_records_for_run(run_id, of_type=kinds).records:
        event = record.event_log_entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type is DagsterEventType.STEP_OUTPUT:
            metadata = {k: v.value for k, v in event.step_output_data.metadata.items()}
            if CHECK_SECONDS in metadata:
                checks[f"{event.step_key}.{event.step_output_data.output_name}"] = metadata
            else:
                outputs[event.step_key] = metadata
        elif event.event_type is DagsterEventType.HANDLED_OUTPUT:
            meta = {k: v.value for k, v in event.event_specific_data.metadata.items()}
            if "partitions" in meta:
                stored[event.step_key] = meta
        else:
            failure = event.step_failure_data.user_failure_data
            meta = {k: v.value for k, v in failure.metadata.items()} if failure else {}
            if "materialized_partitions" in meta:
                stored[event.step_key] = {"partitions": meta["materialized_partitions"], **meta}
    return {
        **{step: {**outputs.get(step, {}), **meta} for step, meta in stored.items()},
        **checks,
    }


def _collect(instance: DagsterInstance, run_id: str, summary: RunSummary) -> None:
    """Add one run's asset steps to the summary."""
    for dataset, meta in step_metadata(instance, run_id).items():
        if CHECK_SECONDS in meta:
            summary.check_seconds += float(meta[CHECK_SECONDS])
            continue
        stats = summary.datasets.setdefault(dataset, DatasetStats(dataset))
        stats.partitions += int(meta["partitions"])
        stats.rows += int(meta.get("rows_stored", 0))
        stats.quarantined += int(meta.get("quarantined_rows", 0))
        stats.seconds += sum(float(meta.get(k, 0)) for k in ("seconds", "write_seconds"))
        stats.failed_symbols.update(meta.get("failed_symbols") or {})
        _add_counts(stats.quarantine_rules, meta.get("quarantine_rules"))
        _add_counts(stats.dropped, meta.get("dropped_rows"))
        if meta.get("source"):
            stats.sources.add(str(meta["source"]))


def _add_counts(total: dict[str, int], more: dict[str, int] | None) -> None:
    for reason, count in (more or {}).items():
        total[reason] = total.get(reason, 0) + int(count)
