"""The Definitions load, and every asset has the keys, partitions and wiring we expect."""

import datetime as dt
from pathlib import Path

import pytest
from dagster import (
    AssetCheckKey,
    AssetKey,
    Definitions,
    MultiPartitionsDefinition,
    RunRequest,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
    instance_for_test,
)

from market_assets.core.config import AppConfig
from market_assets.definitions import build_definitions
from market_assets.defs.automation.runs import RANGE_END_TAG, RANGE_START_TAG, session_chunks
from market_assets.defs.partitions import (
    contiguous_blocks,
    resolve_partition_keys,
    sessions_partitions,
    split_partition_key,
)
from market_assets.defs.resources import PlatformResource

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BAR_ASSETS = ["bars_15m", "bars_1d", "bars_1h", "bars_1m", "bars_5m"]


@pytest.fixture(scope="module")
def config() -> AppConfig:
    return AppConfig.load(REPO_CONFIGS)


@pytest.fixture(scope="module")
def defs(config) -> Definitions:
    return build_definitions(config)


def test_definitions_load_and_validate(defs):
    Definitions.validate_loadable(defs)


def test_every_bar_dataset_is_an_asset_partitioned_by_session_and_symbol(defs):
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}

    assert set(BAR_ASSETS) <= keys
    for name in BAR_ASSETS:
        partitions = graph.get(AssetKey(name)).partitions_def
        assert isinstance(partitions, MultiPartitionsDefinition)
        assert [d.name for d in partitions.partitions_defs] == ["date", "symbol"]


def test_derived_bars_depend_on_minute_bars_and_fetched_bars_on_nothing(defs):
    graph = defs.resolve_asset_graph()

    for name in ("bars_5m", "bars_15m", "bars_1h"):
        assert graph.get(AssetKey(name)).parent_keys == {AssetKey("bars_1m")}
    assert graph.get(AssetKey("bars_1m")).parent_keys == set()
    assert graph.get(AssetKey("bars_1d")).parent_keys == set()


def test_bar_assets_carry_granularity_metadata_and_backfill_policy(defs):
    graph = defs.resolve_asset_graph()

    for name in BAR_ASSETS:
        node = graph.get(AssetKey(name))
        assert node.metadata["granularity"] == name.removeprefix("bars_")
        assert node.backfill_policy is not None
        assert node.backfill_policy.max_partitions_per_run >= 1


def test_session_partitions_exclude_holidays_and_weekends():
    partitions = sessions_partitions(dt.date(2024, 1, 2))
    keys = set(partitions.get_partition_keys())

    assert "2024-07-03" in keys and "2024-07-05" in keys
    assert "2024-07-04" not in keys  # Independence Day
    assert "2024-06-19" not in keys  # Juneteenth, an exchange holiday since 2022
    assert "2024-07-06" not in keys  # Saturday
    assert "2024-11-29" in keys  # early close is still a session


def test_dataset_start_dates_come_from_config(defs, config):
    graph = defs.resolve_asset_graph()

    for name in ("bars_1d", "bars_1m"):
        date_dim = graph.get(AssetKey(name)).partitions_def.partitions_defs[0].partitions_def
        first = date_dim.get_first_partition_key()
        assert first == config.datasets[name].start.isoformat()


def test_partition_keys_resolve_to_symbol_session_pairs(config):
    rectangle = resolve_partition_keys(
        ["2024-01-02|AAPL", "2024-01-02|MSFT", "2024-01-03|AAPL"], config.symbol_partitions
    )

    assert rectangle.pairs == (
        ("AAPL", dt.date(2024, 1, 2)),
        ("MSFT", dt.date(2024, 1, 2)),
        ("AAPL", dt.date(2024, 1, 3)),
    )
    assert split_partition_key("2024-01-03|BRK.B") == (dt.date(2024, 1, 3), "BRK.B")


def test_contiguous_blocks_group_keys_by_registration_order():
    ordered = ["A", "B", "C", "D", "E"]

    assert contiguous_blocks(["B", "C", "E"], ordered) == [("B", "C"), ("E", "E")]
    assert contiguous_blocks(ordered, ordered) == [("A", "E")]
    with pytest.raises(ValueError, match="not registered"):
        contiguous_blocks(["Z"], ordered)


def test_session_chunks_split_sessions_into_runs():
    sessions = [dt.date(2024, 1, d) for d in (2, 3, 4, 5, 8)]

    assert session_chunks(sessions, 2) == [
        (dt.date(2024, 1, 2), dt.date(2024, 1, 3)),
        (dt.date(2024, 1, 4), dt.date(2024, 1, 5)),
        (dt.date(2024, 1, 8), dt.date(2024, 1, 8)),
    ]


def test_after_close_schedule_skips_holidays(defs):
    schedule = defs.get_schedule_def("bars_1d_after_close")
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("symbols", ["AAPL"])
        context = build_schedule_context(
            instance=instance,
            scheduled_execution_time=dt.datetime(2024, 7, 4, 17, 30),
        )
        result = schedule.evaluate_tick(context)

    assert result.skip_message and "2024-07-04 is not a XNYS session" in result.skip_message


def test_after_close_schedule_requests_one_ranged_run_for_all_symbols(defs):
    schedule = defs.get_schedule_def("bars_1m_after_close")
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("symbols", ["AAPL", "MSFT", "NVDA"])
        context = build_schedule_context(
            instance=instance,
            scheduled_execution_time=dt.datetime(2024, 7, 5, 17, 30),
        )
        result = schedule.evaluate_tick(context)

    assert len(result.run_requests) == 1
    tags = result.run_requests[0].tags
    assert tags[RANGE_START_TAG] == "2024-07-05|AAPL"
    assert tags[RANGE_END_TAG] == "2024-07-05|NVDA"
    selected = {k.to_user_string() for k in result.run_requests[0].asset_selection}
    assert selected == {"bars_1m", "bars_5m", "bars_15m", "bars_1h"}


def test_universe_sensor_registers_new_symbols_and_requests_their_history(defs, config):
    sensor = defs.get_sensor_def("universe_sensor")
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("symbols", ["AAPL", "MSFT"])
        with build_sensor_context(
            instance=instance,
            resources={"platform": PlatformResource(config_dir=str(REPO_CONFIGS))},
        ) as context:
            result = sensor(context)

    added = result.dynamic_partitions_requests[0].partition_keys
    assert added == [k for k in config.symbol_partitions.keys if k not in ("AAPL", "MSFT")]
    assert all(isinstance(r, RunRequest) for r in result.run_requests)
    # Keys of `index:` universes get only their members' windows (none stored here).
    listed = [k for k in added if config.symbol_partitions.index_universe_of(k) is None]
    first = result.run_requests[0].tags
    assert first[RANGE_START_TAG].split("|")[1] == listed[0]
    assert first[RANGE_END_TAG].split("|")[1] == listed[-1]


def test_universe_sensor_skips_when_every_symbol_is_registered(defs, config):
    sensor = defs.get_sensor_def("universe_sensor")
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("symbols", config.symbol_partitions.keys)
        with build_sensor_context(
            instance=instance,
            resources={"platform": PlatformResource(config_dir=str(REPO_CONFIGS))},
        ) as context:
            result = sensor(context)

    assert isinstance(result, SkipReason)


def test_fundamentals_and_ratios_are_partitioned_by_session_and_symbol_with_their_parents(defs):
    graph = defs.resolve_asset_graph()

    for name in ("fundamentals", "fundamental_ratios"):
        partitions = graph.get(AssetKey(name)).partitions_def
        assert [d.name for d in partitions.partitions_defs] == ["date", "symbol"]
        assert graph.get(AssetKey(name)).backfill_policy.max_partitions_per_run >= 250
    assert graph.get(AssetKey("fundamentals")).parent_keys == set()
    assert graph.get(AssetKey("fundamental_ratios")).parent_keys == {
        AssetKey("fundamentals"),
        AssetKey("bars_1d"),
    }


def test_fundamentals_checks_are_partitioned_and_never_block(defs):
    graph = defs.resolve_asset_graph()

    for name in ("fundamentals", "fundamental_ratios"):
        spec = graph.get_check_spec(AssetCheckKey(AssetKey(name), "quality"))
        assert spec.partitions_def is not None
        assert spec.blocking is False


def test_fundamentals_run_at_22_00_after_the_filing_cutoff_not_after_the_close(defs):
    names = {schedule.name for schedule in defs.schedules}
    schedule = defs.get_schedule_def("fundamentals_after_filing_cutoff")

    assert "fundamentals_after_close" not in names
    assert schedule.cron_schedule == "0 22 * * 1-5"
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("symbols", ["AAPL", "MSFT"])
        context = build_schedule_context(
            instance=instance, scheduled_execution_time=dt.datetime(2024, 7, 5, 22, 0)
        )
        result = schedule.evaluate_tick(context)

    (request,) = result.run_requests
    assert set(request.asset_selection) == {
        AssetKey("fundamentals"),
        AssetKey("fundamental_ratios"),
    }
    assert request.tags[RANGE_START_TAG] == "2024-07-05|AAPL"
    assert request.tags[RANGE_END_TAG] == "2024-07-05|MSFT"


def test_option_chains_are_scheduled_after_the_daily_bars_that_price_them(defs):
    bars = defs.get_schedule_def("bars_1d_after_close")
    options = defs.get_schedule_def("options_chains_after_close")

    assert (bars.cron_schedule, options.cron_schedule) == ("30 17 * * 1-5", "30 18 * * 1-5")
    assert options.execution_timezone == bars.execution_timezone == "America/New_York"


REFERENCE_ASSETS = ["index_constituents", "index_membership", "reference", "ticker_history"]


def test_reference_snapshots_are_partitioned_by_session_only_and_feed_the_derived_tables(defs):
    graph = defs.resolve_asset_graph()

    for name in ("reference", "index_constituents"):
        node = graph.get(AssetKey(name))
        assert not isinstance(node.partitions_def, MultiPartitionsDefinition)
        assert node.partitions_def.get_first_partition_key() == (
            AppConfig.load(REPO_CONFIGS).datasets[name].start.isoformat()
        )
        assert node.backfill_policy.max_partitions_per_run == 1000
    assert graph.get(AssetKey("ticker_history")).parent_keys == {
        AssetKey("reference"),
        AssetKey("index_constituents"),
    }
    assert graph.get(AssetKey("index_membership")).parent_keys == {
        AssetKey("index_constituents"),
        AssetKey("ticker_history"),
    }
    checks = {k.to_user_string() for k in graph.asset_check_keys}
    assert {"reference:quality", "index_constituents:quality"} <= checks
    assert "index_membership:no_overlapping_intervals" in checks


def test_reference_datasets_get_nightly_schedules_and_stay_out_of_bar_automation(defs):
    names = {s.name for s in defs.schedules}
    sensor_assets = defs.get_sensor_def("universe_sensor").asset_selection.resolve(
        defs.resolve_asset_graph()
    )

    assert {"reference_nightly", "index_constituents_nightly"} <= names
    assert not {"reference_after_close", "index_constituents_after_close"} & names
    assert not {AssetKey(name) for name in REFERENCE_ASSETS} & sensor_assets


def test_nightly_snapshot_schedule_requests_that_sessions_partition_and_skips_holidays(defs):
    schedule = defs.get_schedule_def("index_constituents_nightly")
    repository = defs.get_repository_def()
    with instance_for_test() as instance:
        session = schedule.evaluate_tick(
            build_schedule_context(
                instance=instance,
                scheduled_execution_time=dt.datetime(2024, 7, 5, 22, 0),
                repository_def=repository,
            )
        )
        holiday = schedule.evaluate_tick(
            build_schedule_context(
                instance=instance,
                scheduled_execution_time=dt.datetime(2024, 7, 4, 22, 0),
                repository_def=repository,
            )
        )

    assert [r.partition_key for r in session.run_requests] == ["2024-07-05"]
    assert "2024-07-04 is not a XNYS session" in holiday.skip_message
