"""Event JSON built from templates (defs/event_json.py) is exactly Dagster's serialization.

Every event of real deferred runs (planned, materializations with per-partition metadata,
passed and failed check evaluations) is compared with `serialize_value`, and every stored row
with `SqlEventLogStorage._event_to_row`, against the pinned Dagster version.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

import pytest
from dagster import AssetMaterialization, DagsterInstance, MetadataValue
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    SqlEventLogStorageTable,
)
from dagster._serdes import serialize_value
from sqlalchemy import select

from market_assets.defs import events
from market_assets.defs.event_json import (
    PARTITION,
    PARTITION_MARK,
    SENTINEL_METADATA,
    MetadataJson,
    partition_json,
    serialize_batch,
)
from market_assets_tests.defs.test_bar_pipeline import make_pipeline
from market_assets_tests.defs.test_checks import _damage, _hundred_x_block
from market_assets_tests.defs.test_events import BARS, KEYS, SESSIONS, run_bars


def materialization(key: str, metadata: dict) -> EventLogEntry:
    event = DagsterEvent(
        event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
        job_name="__ASSET_JOB",
        event_specific_data=StepMaterializationData(
            AssetMaterialization(asset_key=BARS, partition=key, metadata=metadata)
        ),
        message="Materialized value.",
        pid=1,
        logging_tags={"step_key": "bars_1d", "run_key": "x"},
    )
    return EventLogEntry(
        error_info=None,
        level=logging.DEBUG,
        user_message="",
        run_id="r" * 36,
        timestamp=1.5,
        step_key="bars_1d",
        job_name="__ASSET_JOB",
        dagster_event=event,
    )


VARIED_METADATA = [
    {"rows": 31, "source": "synthetic", "quarantined_rows": 0},
    {"rows": 31, "source": "synthetic", "quarantined_rows": 0},  # a repeat (cached)
    {"quarantined_rows": 0, "rows": 31, "source": "synthetic"},  # same items, other order
    {"rows": 0.0},
    {"rows": -0.0},  # equal to 0.0, serialized apart
    {"rows": True},  # equal to 1, serialized apart
    {"rows": 1},
    {"detail": 'quote " and \\ and \u00e9 and |'},
    {"counts": MetadataValue.json({"a": [1, 2], "b": None})},
    {"first": MetadataValue.timestamp(dt.datetime(2024, 3, 7, tzinfo=dt.UTC))},
    {},
]


def test_materializations_with_varied_metadata_serialize_exactly_as_dagster_does():
    keys = [f"2024-03-{7 + i:02d}|K{i}" for i in range(len(VARIED_METADATA))]
    entries = [materialization(k, m) for k, m in zip(keys, VARIED_METADATA, strict=True)]
    as_json = MetadataJson("materialization")

    built = serialize_batch(
        entries,
        lambda: materialization(PARTITION, dict(SENTINEL_METADATA)),
        lambda i: [as_json.text(VARIED_METADATA[i]) + partition_json(keys[i])],
        [as_json.text(SENTINEL_METADATA) + PARTITION_MARK],
    )

    assert built == [serialize_value(entry) for entry in entries]


def test_a_template_that_does_not_match_falls_back_to_serializing_each_event(caplog):
    keys = ["2024-03-07|AAPL", "2024-03-08|AAPL", "2024-03-11|AAPL"]
    entries = [materialization(k, {"rows": 1}) for k in keys]
    as_json = MetadataJson("materialization")

    # A template whose sentinel occurs twice, and one that fills in the wrong partition.
    twice = serialize_batch(
        entries,
        lambda: materialization(PARTITION, {"again": PARTITION}),
        lambda i: [partition_json(keys[i])],
        [PARTITION_MARK],
    )
    wrong = serialize_batch(
        entries,
        lambda: materialization(PARTITION, dict(SENTINEL_METADATA)),
        lambda i: [as_json.text({"rows": 1}) + partition_json("2024-01-02|NOPE")],
        [as_json.text(SENTINEL_METADATA) + PARTITION_MARK],
    )

    expected = [serialize_value(entry) for entry in entries]
    assert twice == expected and wrong == expected
    assert "serializing each event" in caplog.text


@pytest.fixture
def captured(monkeypatch):
    """Every batch the recorder stores: (storage, entries, serialized JSON, partitions)."""
    batches = []
    real = events.store_event_batch_fast

    def capture(instance: DagsterInstance, entries, serialized=None, partitions=None):
        batches.append((instance.event_log_storage, list(entries), serialized, partitions))
        return real(instance, entries, serialized, partitions)

    monkeypatch.setattr(events, "store_event_batch_fast", capture)
    return batches


def assert_exact(batches) -> set[DagsterEventType]:
    kinds = set()
    for storage, entries, serialized, partitions in batches:
        assert serialized is not None
        assert list(serialized) == [serialize_value(entry) for entry in entries]
        rows = events.event_rows(storage, entries, serialized, partitions)
        assert rows == [storage._event_to_row(entry) for entry in entries]
        kinds.add(entries[0].dagster_event_type)
        if entries[0].dagster_event_type != DagsterEventType.ASSET_CHECK_EVALUATION:
            assert partitions is not None  # the shared-row path is the one compared
    return kinds


def test_a_deferred_run_stores_dagsters_exact_json_for_every_event(tmp_path, captured, caplog):
    pipeline = make_pipeline(tmp_path)
    (tmp_path / "home").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        run_bars(dataclasses.replace(pipeline, instance=instance), deferred=True)

    kinds = assert_exact(captured)
    assert "serializing each event" not in caplog.text  # the templates were used
    assert kinds == {
        DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
        DagsterEventType.ASSET_MATERIALIZATION,
        DagsterEventType.ASSET_CHECK_EVALUATION,
    }
    partitioned = [e for _, entries, _, _ in captured for e in entries if e.dagster_event.partition]
    assert {e.dagster_event.partition for e in partitioned} == KEYS
    # Each check execution row carries the same JSON as its event in event_logs.
    storage = captured[0][0]
    with storage.index_connection() as conn:
        pairs = conn.execute(
            select(
                AssetCheckExecutionsTable.c.evaluation_event, SqlEventLogStorageTable.c.event
            ).join(
                SqlEventLogStorageTable,
                SqlEventLogStorageTable.c.id
                == AssetCheckExecutionsTable.c.evaluation_event_storage_id,
            )
        ).fetchall()
    assert len(pairs) == len(KEYS)
    assert all(execution == event for execution, event in pairs)


def test_failed_and_passed_evaluations_of_one_step_serialize_exactly(
    tmp_path, captured, monkeypatch, caplog
):
    # Arrange: AAPL's minute bars carry a 100x block, so the quality check fails AAPL's
    # partition and passes MSFT's (two templates in one batch).
    _damage(monkeypatch, "AAPL", _hundred_x_block)
    pipeline = make_pipeline(tmp_path)
    (tmp_path / "home").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        dataclasses.replace(pipeline, instance=instance).run(
            ["bars_1m"], SESSIONS[:1], ["AAPL", "MSFT"]
        )

    assert_exact(captured)
    assert "serializing each event" not in caplog.text
    evaluations = {
        e.dagster_event.event_specific_data.partition: e.dagster_event.event_specific_data
        for _, entries, _, _ in captured
        for e in entries
        if e.dagster_event_type == DagsterEventType.ASSET_CHECK_EVALUATION
    }
    day = SESSIONS[0]
    assert {key: ev.passed for key, ev in evaluations.items()} == {
        f"{day}|AAPL": False,
        f"{day}|MSFT": True,
    }
    assert evaluations[f"{day}|AAPL"].metadata["score"].value == 60.0
