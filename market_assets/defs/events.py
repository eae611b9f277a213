"""Per-partition asset events of a ranged run, stored in a few multi-row statements per step.

Why: Dagster 1.13 stores the events of a ranged run one at a time, each in its own
connection and transaction: about 3 events per partition (materialization planned,
materialization, check evaluation) at 7-17 ms each on SQLite and PostgreSQL alike, plus one
planned-check row per partition that carries the run's whole partition set (quadratic in
the run's size). For a 4,000-partition run that is minutes of bookkeeping around seconds of
work (profiles in benchmarks/scale.py's notes and the scale issue).

How: runs that our CLI, schedules and sensors launch carry Dagster's own tag
`dagster/defer_asset_events=true` (EXTERNALLY_MANAGED_ASSETS_TAG, "the assets' events are
reported by someone else"). Dagster then writes no planned events when it creates the run
and no materialization events for step outputs. Each step records them itself here, with
the same event payloads Dagster would write, into the same tables through the instance's
own event log storage:

- `planned(...)` at the start of an asset step: one ASSET_MATERIALIZATION_PLANNED event per
  partition (what makes the UI show a partition in progress, or failed when its run fails);
- `materialized(...)` after the rows are stored: one ASSET_MATERIALIZATION per partition,
  each with that partition's own metadata (rows, time range, ...);
- `evaluated(...)` in a check step: one ASSET_CHECK_EVALUATION per partition.

Every batch is one insert into `event_logs` (plus the index shard on sharded SQLite), one
into `asset_event_tags` / `asset_check_executions`, and one update of `asset_keys`: the rows
Dagster's own `store_event` would write, so `dagster dev`, partition status, check status,
the asset catalog and backfills read them as usual. Runs without the tag (launched from the
UI without it) are recorded by Dagster as usual and these helpers do nothing but the check
evaluations' `yield` path (see `defs/checks/bars.py`).

This module uses Dagster internals (the event-log tables and the storage's connection
helpers); dagster is pinned to 1.13.* in pyproject.toml and
market_assets_tests/defs/test_events.py checks, against the pinned version, that Dagster's
own read APIs see exactly what is written here on sharded SQLite, consolidated SQLite and
PostgreSQL storage.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetKey,
    AssetMaterialization,
    DagsterEventType,
    DagsterInstance,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.events import (
    AssetMaterializationPlannedData,
    DagsterEvent,
    StepMaterializationData,
)
from dagster._core.events.log import EventLogEntry
from dagster._core.execution.context.system import StepExecutionContext
from dagster._core.storage.dagster_run import assets_are_externally_managed
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    SqlEventLogStorageTable,
)
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.tags import EXTERNALLY_MANAGED_ASSETS_TAG
from dagster_shared.record import copy as record_copy

from market_assets.defs.event_json import (
    PARTITION,
    PARTITION_MARK,
    SENTINEL_METADATA,
    SENTINEL_TARGET,
    TARGET_MARK,
    MetadataJson,
    partition_json,
    serialize_batch,
    target_json,
)

DEFERRED_EVENTS_TAG = EXTERNALLY_MANAGED_ASSETS_TAG
"""Run tag (`dagster/defer_asset_events`) under which steps record their own asset events."""

DEFERRED_TAGS = {DEFERRED_EVENTS_TAG: "true"}
# Metadata key on a check step's output: the seconds of our own code in it (reading, rules,
# results table), which run summaries count as ours and not as Dagster's bookkeeping.
CHECK_SECONDS = "check_seconds"

MaterializationObserver = Callable[[str, AssetKey, int], None]
_observers: list[MaterializationObserver] = []


@contextmanager
def observe_materializations(observer: MaterializationObserver) -> Iterator[None]:
    """Call `observer(run_id, asset_key, partitions)` after each batch of materializations
    recorded in this process (progress of in-process runs, e.g. the CLI's progress bar)."""
    _observers.append(observer)
    try:
        yield
    finally:
        _observers.remove(observer)


_SUCCEEDED = "SUCCEEDED"
_FAILED = "FAILED"


def deferred(step: StepExecutionContext) -> bool:
    """Whether this step's run leaves its asset events to our code (the deferred-events tag)."""
    return assets_are_externally_managed(step.dagster_run)


@dataclass(frozen=True)
class StoredMaterialization:
    """Where a partition's materialization landed: for checks that point at it."""

    storage_id: int
    run_id: str
    timestamp: float

    def target(self) -> AssetCheckEvaluationTargetMaterializationData:
        return AssetCheckEvaluationTargetMaterializationData(
            storage_id=self.storage_id, run_id=self.run_id, timestamp=self.timestamp
        )


class StepEventRecorder:
    """Builds a step's asset events the way Dagster's step machinery does, and stores them in
    batches (one per call) through `store_event_batch_fast`."""

    def __init__(self, step: StepExecutionContext) -> None:
        self.step = step
        self.instance: DagsterInstance = step.instance
        self.run_id = step.run_id

    def _event(self, event_type: DagsterEventType, data: Any, message: str) -> DagsterEvent:
        step = self.step
        return DagsterEvent(
            event_type_value=event_type.value,
            job_name=step.job_name,
            step_handle=step.step.handle,
            node_handle=step.step.node_handle,
            step_kind_value=step.step.kind.value,
            logging_tags=step.event_tags,
            event_specific_data=data,
            message=message,
            pid=os.getpid(),
        )

    def _entry(self, event: DagsterEvent, timestamp: float) -> EventLogEntry:
        return EventLogEntry(
            error_info=None,
            level=logging.DEBUG,
            user_message="",
            run_id=self.run_id,
            timestamp=timestamp,
            step_key=self.step.step.key,
            job_name=self.step.job_name,
            dagster_event=event,
        )

    def planned(self, asset_key: AssetKey, partition_keys: Sequence[str]) -> None:
        """One planned event per partition key: in progress now, failed if the run fails."""
        now = time.time()
        message = f"{self.step.job_name} intends to materialize asset {asset_key.to_string()}"

        def entry(key: str) -> EventLogEntry:
            return self._entry(
                self._event(
                    DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
                    AssetMaterializationPlannedData(asset_key, partition=key),
                    message,
                ),
                now,
            )

        keys = [str(key) for key in partition_keys]
        entries = [entry(key) for key in keys]
        serialized = serialize_batch(
            entries,
            lambda: entry(PARTITION),
            lambda i: [partition_json(keys[i])],
            [PARTITION_MARK],
        )
        store_event_batch_fast(self.instance, entries, serialized, keys)

    def materialized(
        self,
        asset_key: AssetKey,
        metadata_by_key: Mapping[str, Mapping[str, Any]],
        tags: Mapping[str, str] | None = None,
    ) -> dict[str, StoredMaterialization]:
        """One materialization per partition key, each with its own metadata."""
        now = time.time()

        def entry(key: str, metadata: Mapping[str, Any]) -> EventLogEntry:
            return self._entry(
                self._event(
                    DagsterEventType.ASSET_MATERIALIZATION,
                    StepMaterializationData(
                        AssetMaterialization(
                            asset_key=asset_key,
                            partition=key,
                            metadata=dict(metadata),
                            tags=dict(tags) if tags else None,
                        )
                    ),
                    "Materialized value.",
                ),
                now,
            )

        items = [(str(key), metadata) for key, metadata in metadata_by_key.items()]
        entries = [entry(key, metadata) for key, metadata in items]
        as_json = MetadataJson("materialization")
        serialized = serialize_batch(
            entries,
            lambda: entry(PARTITION, SENTINEL_METADATA),
            lambda i: [as_json.text(items[i][1]) + partition_json(items[i][0])],
            [as_json.text(SENTINEL_METADATA) + PARTITION_MARK],
        )
        ids = store_event_batch_fast(self.instance, entries, serialized, [key for key, _ in items])
        for observer in list(_observers):
            observer(self.run_id, asset_key, len(ids))
        return {
            str(key): StoredMaterialization(storage_id, self.run_id, now)
            for key, storage_id in zip(metadata_by_key, ids, strict=True)
        }

    def evaluated(self, evaluations: Sequence[AssetCheckEvaluation]) -> None:
        """One check-evaluation event per evaluation (each names its partition)."""
        now = time.time()

        def entry(evaluation: AssetCheckEvaluation) -> EventLogEntry:
            return self._entry(
                self._event(
                    DagsterEventType.ASSET_CHECK_EVALUATION,
                    evaluation,
                    f"Asset check '{evaluation.check_name}' on "
                    f"'{evaluation.asset_key.to_user_string()}' "
                    + ("passed." if evaluation.passed else "did not pass."),
                ),
                now,
            )

        # One template per kind of outcome: evaluations differ in partition, metadata and
        # target within a group, and in anything else only across groups.
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, evaluation in enumerate(evaluations):
            shape = (
                evaluation.asset_key,
                evaluation.check_name,
                evaluation.passed,
                evaluation.severity,
                evaluation.description,
                evaluation.blocking,
                evaluation.target_materialization_data is None,
            )
            groups.setdefault(shape, []).append(i)
        entries = [entry(evaluation) for evaluation in evaluations]
        serialized: list[str] = [""] * len(entries)
        as_json = MetadataJson("evaluation")
        for members in groups.values():
            first = evaluations[members[0]]
            targeted = first.target_materialization_data is not None
            template = record_copy(
                first,
                metadata=SENTINEL_METADATA,
                partition=PARTITION,
                target_materialization_data=SENTINEL_TARGET if targeted else None,
            )
            marks = [as_json.text(SENTINEL_METADATA) + PARTITION_MARK]
            if targeted:
                marks.append(TARGET_MARK)

            def values(i: int, members: list[int] = members) -> list[str]:
                evaluation = evaluations[members[i]]
                filled = [as_json.text(evaluation.metadata) + partition_json(evaluation.partition)]
                if evaluation.target_materialization_data is not None:
                    filled.append(target_json(evaluation.target_materialization_data))
                return filled

            built = serialize_batch(
                [entries[i] for i in members], lambda t=template: entry(t), values, marks
            )
            for i, text in zip(members, built, strict=True):
                serialized[i] = text
        store_event_batch_fast(self.instance, entries, serialized)


def store_event_batch_fast(
    instance: DagsterInstance,
    entries: Sequence[EventLogEntry],
    serialized: Sequence[str] | None = None,
    partitions: Sequence[str] | None = None,
) -> list[int]:
    """Store asset events (planned, materialization, check evaluation) of ONE run in batches.

    `serialized` is each entry's `serialize_value` JSON when the caller built it already
    (event_json.py); `partitions`, each entry's partition key when the entries differ in
    nothing else a row holds (one step's events of one asset and type, one timestamp). Returns
    each entry's storage id, in order. Storages other than Dagster's SQL storages fall back
    to storing the events one by one through the instance.
    """
    if not entries:
        return []
    storage = instance.event_log_storage
    if not isinstance(storage, SqlEventLogStorage):
        for entry in entries:
            instance.handle_new_event(entry)
        return [0] * len(entries)
    run_ids = {entry.run_id for entry in entries}
    if len(run_ids) != 1:
        raise ValueError(f"one batch holds the events of one run, got {sorted(run_ids)}")
    rows = event_rows(storage, entries, serialized, partitions)
    insert = SqlEventLogStorageTable.insert().returning(
        SqlEventLogStorageTable.c.id, sort_by_parameter_order=True
    )
    if isinstance(storage, SqliteEventLogStorage):
        # Sharded SQLite: the run's own database holds every event; the index database holds
        # a copy of asset and check events, whose ids the asset tables point at.
        with storage.run_connection(entries[0].run_id) as conn:
            conn.execute(SqlEventLogStorageTable.insert(), rows)
    with storage.index_transaction() as conn:
        ids = [row[0] for row in conn.execute(insert, rows)]
        _index_asset_events(storage, conn, entries, ids, [row["event"] for row in rows])
    return ids


def event_rows(
    storage: SqlEventLogStorage,
    entries: Sequence[EventLogEntry],
    serialized: Sequence[str] | None,
    partitions: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The `event_logs` rows of `entries` (see `store_event_batch_fast`)."""
    if serialized is None:
        return [storage._event_to_row(entry) for entry in entries]  # noqa: SLF001 - module doc
    if partitions is None:
        return [event_row(storage, e, text) for e, text in zip(entries, serialized, strict=True)]
    base = event_row(storage, entries[0], serialized[0])
    return [
        {**base, "event": text, "partition": partition or None}
        for text, partition in zip(serialized, partitions, strict=True)
    ]


def event_row(storage: SqlEventLogStorage, entry: EventLogEntry, text: str) -> dict[str, Any]:
    """The `event_logs` row `SqlEventLogStorage._event_to_row(entry)` builds, with the event's
    JSON given (test_event_json.py compares the two)."""
    event = entry.get_dagster_event()
    return {
        "run_id": entry.run_id,
        "event": text,
        "dagster_event_type": event.event_type_value,
        "timestamp": storage._event_insert_timestamp(entry),  # noqa: SLF001 - see module doc
        "step_key": event.step_key,
        "asset_key": event.asset_key.to_string() if event.asset_key else None,
        "partition": event.partition or None,
    }


def _index_asset_events(
    storage: SqlEventLogStorage,
    conn: Any,
    entries: Sequence[EventLogEntry],
    ids: Sequence[int],
    texts: Sequence[str],
) -> None:
    """The cross-run index rows `store_event` writes for these asset events."""
    materializations = [
        (entry, event_id)
        for entry, event_id in zip(entries, ids, strict=True)
        if entry.dagster_event_type == DagsterEventType.ASSET_MATERIALIZATION
    ]
    if materializations:
        storage._store_asset_event_tags(  # noqa: SLF001 - see module doc
            conn, [entry for entry, _ in materializations], [i for _, i in materializations]
        )
    # asset_keys keeps the latest event of each asset (last materialization, last run id).
    latest: dict[tuple[str, AssetKey], tuple[EventLogEntry, int]] = {}
    for entry, event_id in zip(entries, ids, strict=True):
        event = entry.get_dagster_event()
        if event.asset_key is not None and event.event_type in (
            DagsterEventType.ASSET_MATERIALIZATION,
            DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
        ):
            latest[(event.event_type_value, event.asset_key)] = (entry, event_id)
    for entry, event_id in latest.values():
        storage._store_asset_event(conn, entry, event_id)  # noqa: SLF001 - see module doc
    checks = [
        _check_execution_row(storage, entry, event_id, text)
        for entry, event_id, text in zip(entries, ids, texts, strict=True)
        if entry.dagster_event_type == DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    if checks:
        conn.execute(AssetCheckExecutionsTable.insert(), checks)


def _check_execution_row(
    storage: SqlEventLogStorage, entry: EventLogEntry, event_id: int, text: str
) -> dict[str, Any]:
    evaluation: AssetCheckEvaluation = entry.get_dagster_event().event_specific_data  # type: ignore[assignment]
    target = evaluation.target_materialization_data
    return {
        "asset_key": evaluation.asset_key.to_string(),
        "check_name": evaluation.check_name,
        "partition": evaluation.partition,
        "run_id": entry.run_id,
        "execution_status": _SUCCEEDED if evaluation.passed else _FAILED,
        "evaluation_event": text,  # the event's JSON, as stored in event_logs
        "evaluation_event_timestamp": storage._event_insert_timestamp(entry),  # noqa: SLF001
        "evaluation_event_storage_id": event_id,
        "materialization_event_storage_id": target.storage_id if target else None,
    }


def step_of(context: Any) -> StepExecutionContext:
    """The step execution context behind an asset, check or output context."""
    if isinstance(context, StepExecutionContext):
        return context
    op_context = getattr(context, "op_execution_context", None)
    if op_context is not None:
        return op_context._step_execution_context  # noqa: SLF001 - see module doc
    return context.step_context


def record_evaluations(
    context: Any, evaluations: Sequence[AssetCheckEvaluation]
) -> Iterator[AssetCheckEvaluation]:
    """A check step's per-partition evaluations: stored in one batch in runs with deferred
    events, else yielded to Dagster one by one (`yield from record_evaluations(...)`)."""
    step = step_of(context)
    if deferred(step):
        StepEventRecorder(step).evaluated(list(evaluations))
        return
    yield from evaluations
