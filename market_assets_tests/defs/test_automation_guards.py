"""What the UI's automation does with the post-demo story (issue 13, item 12): the coverage
report kept current, and symbol keys added by hand that are not symbols kept out of runs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    DeleteDynamicPartitionsRequest,
    build_schedule_context,
    build_sensor_context,
    instance_for_test,
)

from market_assets.core.config import AppConfig
from market_assets.definitions import build_definitions
from market_assets.defs.automation.runs import RANGE_END_TAG, RANGE_START_TAG
from market_assets.defs.resources import PlatformResource

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
HAND_ADDED = ["bad key", "AAPL;DROP", "nowhere~007"]


@pytest.fixture(scope="module")
def defs():
    return build_definitions(AppConfig.load(REPO_CONFIGS))


def test_coverage_report_is_kept_current_by_automation(defs):
    report = defs.resolve_assets_def(AssetKey("coverage_report"))

    condition = report.automation_conditions_by_key[AssetKey("coverage_report")]

    assert condition is not None
    assert "any_deps_updated" in str(condition) or "eager" in condition.get_label().lower()


def test_universe_sensor_removes_hand_added_keys_that_are_not_symbols(defs, capsys):
    config = AppConfig.load(REPO_CONFIGS)
    sensor = defs.get_sensor_def("universe_sensor")
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("symbols", [*config.symbol_partitions.keys, *HAND_ADDED])
        with build_sensor_context(
            instance=instance,
            resources={"platform": PlatformResource(config_dir=str(REPO_CONFIGS))},
        ) as context:
            result = sensor(context)

    [removal] = result.dynamic_partitions_requests
    assert isinstance(removal, DeleteDynamicPartitionsRequest)
    assert sorted(removal.partition_keys) == sorted(HAND_ADDED)
    assert result.run_requests == []
    logged = capsys.readouterr().err
    assert "removing symbol partition key 'bad key'" in logged
    assert "invalid symbol" in logged
    assert "'nowhere~007'" in logged


def test_after_close_schedule_leaves_hand_added_keys_out_of_its_run(defs):
    schedule = defs.get_schedule_def("bars_1d_after_close")
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("symbols", ["AAPL", "bad key", "MSFT"])
        context = build_schedule_context(
            instance=instance, scheduled_execution_time=dt.datetime(2024, 7, 5, 17, 30)
        )
        result = schedule.evaluate_tick(context)

    ranges = [
        (request.tags[RANGE_START_TAG].split("|")[1], request.tags[RANGE_END_TAG].split("|")[1])
        for request in result.run_requests
    ]
    assert ranges == [("AAPL", "AAPL"), ("MSFT", "MSFT")]  # no range spans the bad key
