"""Batched per-partition events (defs/events.py) read back through Dagster's own APIs.

The recorder writes Dagster's event-log tables directly; these tests pin what the pinned
Dagster version reads from them, on every instance storage we support: sharded SQLite (the
`dagster dev` default), consolidated SQLite and PostgreSQL. A run with deferred events must
look to Dagster like the same run recorded by Dagster itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetCheckKey, AssetKey, DagsterEventType, DagsterInstance
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value
from psycopg.conninfo import conninfo_to_dict

from market_assets.definitions import build_definitions
from market_assets.defs.automation.runs import rectangle_run_requests
from market_assets.defs.events import DEFERRED_EVENTS_TAG
from market_assets.defs.runner import QUIET_RUN_CONFIG, register_symbol_keys
from market_assets_tests.defs.test_bar_pipeline import Pipeline, make_pipeline
from market_assets_tests.fixtures.postgres import create_scratch_database, drop_scratch_database

SESSIONS = [dt.date(2024, 3, 7), dt.date(2024, 3, 8), dt.date(2024, 3, 11)]
SYMBOLS = ["AAPL", "MSFT", "NVDA"]
KEYS = {f"{d}|{s}" for d in SESSIONS for s in SYMBOLS}
BARS = AssetKey("bars_1d")
QUALITY = AssetCheckKey(BARS, "quality")


@pytest.fixture(params=["sqlite", "consolidated_sqlite", "postgres"])
def instance(request, tmp_path) -> Iterator[DagsterInstance]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    if request.param == "sqlite":
        with DagsterInstance.local_temp(str(home)) as instance:
            yield instance
        return
    if request.param == "consolidated_sqlite":
        overrides = {
            "event_log_storage": {
                "module": "dagster._core.storage.event_log",
                "class": "ConsolidatedSqliteEventLogStorage",
                "config": {"base_dir": str(home / "history")},
            }
        }
        with DagsterInstance.local_temp(str(home), overrides=overrides) as instance:
            yield instance
        return
    dsn = create_scratch_database(prefix="market_assets_events")
    try:
        overrides = {"storage": {"postgres": {"postgres_url": _sqlalchemy_url(dsn)}}}
        with DagsterInstance.local_temp(str(home), overrides=overrides) as instance:
            yield instance
    finally:
        drop_scratch_database(dsn)


def _sqlalchemy_url(dsn: str) -> str:
    """psycopg's key=value DSN -> the URL dagster-postgres wants (psycopg2 driver)."""
    parts = conninfo_to_dict(dsn)
    return (
        f"postgresql+psycopg2://{parts.get('user', 'postgres')}@{parts.get('host', '127.0.0.1')}"
        f":{parts.get('port', 5432)}/{parts['dbname']}"
    )


def run_bars(pipeline: Pipeline, deferred: bool) -> str:
    """One ranged run of bars_1d (+ its quality check) over SESSIONS x SYMBOLS; the run id."""
    defs = build_definitions(pipeline.config)
    registered = register_symbol_keys(pipeline.instance, SYMBOLS)
    [request] = rectangle_run_requests([BARS], SESSIONS, SYMBOLS, registered, 10)
    tags = dict(request.tags)
    if not deferred:
        del tags[DEFERRED_EVENTS_TAG]
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        run_config=QUIET_RUN_CONFIG,
        instance=pipeline.instance,
        asset_selection=[BARS],
        tags=tags,
        raise_on_error=False,
    )
    assert result.success
    return result.run_id


def partition_status(pipeline: Pipeline) -> tuple[set[str], set[str], set[str]]:
    """(materialized, failed, in progress) keys of bars_1d from Dagster's status cache."""
    partitions_def = build_definitions(pipeline.config).resolve_assets_def("bars_1d").partitions_def
    with partition_loading_context(dynamic_partitions_store=pipeline.instance):
        status = get_and_update_asset_status_cache_value(
            pipeline.instance, BARS, partitions_def
        )
        return tuple(  # type: ignore[return-value]
            set(map(str, subset.get_partition_keys()))
            for subset in (
                status.deserialize_materialized_partition_subsets(partitions_def),
                status.deserialize_failed_partition_subsets(partitions_def),
                status.deserialize_in_progress_partition_subsets(partitions_def),
            )
        )


@pytest.fixture
def pipeline(tmp_path, instance) -> Pipeline:
    pipeline = make_pipeline(tmp_path)
    return dataclasses.replace(pipeline, instance=instance)


@pytest.mark.parametrize("deferred", [True, False], ids=["deferred", "dagster"])
def test_a_ranged_run_reads_back_the_same_through_dagsters_apis(pipeline, deferred):
    run_id = run_bars(pipeline, deferred)

    instance = pipeline.instance
    assert {str(k) for k in instance.get_materialized_partitions(BARS)} == KEYS
    materialized, failed, in_progress = partition_status(pipeline)
    assert (materialized, failed, in_progress) == (KEYS, set(), set())
    latest = instance.get_latest_materialization_event(BARS)
    assert latest.run_id == run_id
    planned = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED
    ).records
    assert {r.event_log_entry.dagster_event.partition for r in planned} == KEYS
    infos = instance.event_log_storage.get_asset_check_partition_info([QUALITY])
    assert {info.partition_key for info in infos} == KEYS
    assert {info.latest_execution_status.value for info in infos} == {"SUCCEEDED"}
    # Each check points at its partition's latest materialization: the UI shows it current.
    assert all(
        info.latest_target_materialization_storage_id == info.latest_materialization_storage_id
        for info in infos
    )
    asset_record = next(iter(instance.get_asset_records([BARS])))
    assert asset_record.asset_entry.last_run_id == run_id


def test_deferred_materializations_carry_each_partitions_own_rows(pipeline):
    run_bars(pipeline, deferred=True)

    records = pipeline.instance.fetch_materializations(BARS, limit=100).records
    assert len(records) == len(KEYS)
    by_key = {r.partition_key: r.asset_materialization.metadata for r in records}
    assert {m["rows"].value for m in by_key.values()} == {1}
    assert {m["source"].value for m in by_key.values()} == {"synthetic"}
    assert {m["quarantined_rows"].value for m in by_key.values()} == {0}


def test_a_rerun_points_every_partition_at_the_new_materialization(pipeline):
    first = run_bars(pipeline, deferred=True)
    second = run_bars(pipeline, deferred=True)

    records = pipeline.instance.fetch_materializations(BARS, limit=100).records
    latest = {}
    for record in sorted(records, key=lambda r: r.storage_id):
        latest[record.partition_key] = record.run_id
    assert set(latest.values()) == {second} and first != second
    infos = pipeline.instance.event_log_storage.get_asset_check_partition_info([QUALITY])
    assert {info.latest_planned_run_id for info in infos} == {second}


def test_failed_symbols_show_failed_in_dagster_and_the_rest_materialized(tmp_path, instance):
    pipeline = dataclasses.replace(
        make_pipeline(tmp_path, provider_settings={"unknown_symbols": ["MSFT"]}),
        instance=instance,
    )
    defs = build_definitions(pipeline.config)
    registered = register_symbol_keys(instance, SYMBOLS)
    [request] = rectangle_run_requests([BARS], SESSIONS, SYMBOLS, registered, 10)

    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        run_config=QUIET_RUN_CONFIG,
        instance=instance,
        asset_selection=[BARS],
        tags=request.tags,
        raise_on_error=False,
    )

    assert not result.success
    materialized, failed, _ = partition_status(pipeline)
    assert failed == {f"{d}|MSFT" for d in SESSIONS}
    assert materialized == KEYS - failed
    failure = result.get_step_failure_events()[0].step_failure_data
    assert "MSFT" in failure.user_failure_data.description


def test_the_recorder_refuses_a_batch_mixing_runs(pipeline):
    from dagster._core.events.log import EventLogEntry

    from market_assets.defs.events import store_event_batch_fast

    run_bars(pipeline, deferred=True)
    [first, second] = pipeline.instance.get_records_for_run(
        pipeline.instance.get_runs(limit=1)[0].run_id,
        of_type=DagsterEventType.ASSET_MATERIALIZATION,
        limit=2,
    ).records
    other = EventLogEntry(**{**second.event_log_entry._asdict(), "run_id": "another-run"})

    with pytest.raises(ValueError, match="one batch holds the events of one run"):
        store_event_batch_fast(pipeline.instance, [first.event_log_entry, other])


def test_module_is_pinned_to_the_dagster_it_was_written_for():
    import dagster

    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"dagster==1.13.*"' in pyproject
    assert dagster.__version__.startswith("1.13.")
