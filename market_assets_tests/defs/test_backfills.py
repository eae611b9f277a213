"""Backfills launched the way the UI launches them (GraphQL `launchPartitionBackfill`), run by
Dagster's own backfill daemon iteration: rectangles of sessions x symbol keys."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pytest
import yaml
from dagster import AssetCheckKey, AssetKey, DagsterInstance
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.definitions.partitions.mapping import IdentityPartitionMapping
from dagster._core.execution import asset_backfill
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.storage.dagster_run import RunsFilter
from dagster._core.storage.tags import BACKFILL_ID_TAG
from dagster._core.test_utils import create_test_daemon_workspace_context, instance_for_test
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.backfill import execute_backfill_iteration
from dagster._daemon.daemon import get_default_daemon_logger
from dagster_graphql.test.utils import execute_dagster_graphql
from hypothesis import given, settings
from hypothesis import strategies as st

from market_assets.core.calendar import get_calendar
from market_assets.defs.backfills import (
    DAGSTER_ORIGINAL,
    Rectangle,
    cover_with_rectangles,
    install_backfill_replacements,
    valid_partition_keys,
)
from market_assets.defs.events import DEFERRED_EVENTS_TAG
from market_assets.defs.runner import register_symbol_keys

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SYMBOLS = ["AAPL", "MSFT", "NVDA", "JPM"]  # registered in this order
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
INSTANCE_CLASS = {"module": "market_assets.defs.instance", "class": "MarketAssetsInstance"}

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PartitionKeysNotFoundError { partitionKeys }
    ... on PythonError { message }
  }
}
"""


def _sessions(first: dt.date, count: int) -> list[str]:
    days = get_calendar().sessions(first, first + dt.timedelta(days=3 * count))
    return [d.isoformat() for d in days[:count]]


# --- the cover, on its own -----------------------------------------------------------------


def test_cover_given_sessions_by_a_contiguous_block_of_keys_is_one_rectangle_per_chunk():
    sessions = _sessions(dt.date(2024, 3, 1), 7)  # spans two weekends
    keys = [(s, k) for s in sessions for k in ("AAPL", "MSFT", "NVDA")]

    rectangles = cover_with_rectangles(keys, sessions, SYMBOLS, sessions_per_run=3)

    assert rectangles == [
        Rectangle(sessions[0], sessions[2], "AAPL", "NVDA"),
        Rectangle(sessions[3], sessions[5], "AAPL", "NVDA"),
        Rectangle(sessions[6], sessions[6], "AAPL", "NVDA"),
    ]


def test_cover_given_keys_apart_in_registered_order_splits_them_into_blocks():
    sessions = _sessions(dt.date(2024, 3, 1), 2)
    keys = [(s, k) for s in sessions for k in ("AAPL", "NVDA", "JPM")]  # MSFT left out

    rectangles = cover_with_rectangles(keys, sessions, SYMBOLS, sessions_per_run=250)

    assert rectangles == [
        Rectangle(sessions[0], sessions[1], "AAPL", "AAPL"),
        Rectangle(sessions[0], sessions[1], "NVDA", "JPM"),
    ]


def test_cover_given_a_missing_session_never_spans_it():
    sessions = _sessions(dt.date(2024, 3, 1), 5)
    keys = [(s, "MSFT") for s in sessions if s != sessions[2]]

    rectangles = cover_with_rectangles(keys, sessions, SYMBOLS, sessions_per_run=250)

    assert rectangles == [
        Rectangle(sessions[0], sessions[1], "MSFT", "MSFT"),
        Rectangle(sessions[3], sessions[4], "MSFT", "MSFT"),
    ]


def test_cover_given_a_key_no_longer_registered_raises_key_error():
    sessions = _sessions(dt.date(2024, 3, 1), 1)

    with pytest.raises(KeyError):
        cover_with_rectangles([(sessions[0], "GONE")], sessions, SYMBOLS, 250)


@settings(max_examples=150, deadline=None)
@given(
    cells=st.sets(st.tuples(st.integers(0, 11), st.integers(0, 5)), min_size=1, max_size=60),
    per_run=st.integers(1, 5),
)
def test_cover_of_any_selection_is_exact_and_within_the_run_size(cells, per_run):
    session_order = [f"s{i:02d}" for i in range(12)]
    key_order = [f"K{i}" for i in range(6)]
    keys = {(session_order[s], key_order[k]) for s, k in cells}

    rectangles = cover_with_rectangles(keys, session_order, key_order, per_run)

    covered: list[tuple[str, str]] = []
    for r in rectangles:
        first, last = session_order.index(r.first_session), session_order.index(r.last_session)
        lo, hi = key_order.index(r.first_key), key_order.index(r.last_key)
        assert 0 <= last - first < per_run
        covered += [
            (session_order[s], key_order[k])
            for s in range(first, last + 1)
            for k in range(lo, hi + 1)
        ]
    assert sorted(covered) == sorted(keys)  # every key once, nothing else


# --- partition checks without listing every partition: Dagster's answers -----------------


def _dagster_original(owner, name):
    function = getattr(owner, name)
    return getattr(function, DAGSTER_ORIGINAL, function)


@pytest.fixture
def defs_and_instance(location):
    from market_assets.definitions import build_definitions

    with DagsterInstance.ephemeral() as instance:
        register_symbol_keys(instance, SYMBOLS)
        yield build_definitions(), instance


@pytest.mark.parametrize("padding", [0, 40], ids=["few keys", "many keys"])
def test_valid_partition_keys_agree_with_dagsters_full_listing(defs_and_instance, padding):
    defs, instance = defs_and_instance
    partitions_def = defs.resolve_assets_def("bars_1d").partitions_def
    named = [
        "2024-03-04|AAPL",
        "2024-12-24|JPM",  # early close: a session
        "2024-12-25|AAPL",  # holiday
        "2024-03-09|MSFT",  # Saturday
        "2008-12-31|AAPL",  # before the dataset's start
        "2099-01-02|AAPL",  # future
        "2024-03-04|TSLA",  # symbol key not registered
        "2024-03-04",  # one dimension only
        "2024-03-04|AAPL|X",
        "04/03/2024|AAPL",
    ] + [f"{s}|NVDA" for s in _sessions(dt.date(2023, 1, 3), padding)]

    with partition_loading_context(dynamic_partitions_store=instance):
        every = {str(key) for key in partitions_def.get_partition_keys()}
        valid = valid_partition_keys(partitions_def, named)

    assert valid == {key for key in named if key in every}
    assert "2024-12-24|JPM" in valid and "2024-12-25|AAPL" not in valid


def test_identity_mapping_between_definitions_with_other_starts_maps_as_dagster_does(
    defs_and_instance, dagster_functions
):
    defs, instance = defs_and_instance
    install_backfill_replacements()
    bars = defs.resolve_assets_def("bars_1d").partitions_def
    chains = defs.resolve_assets_def("options_chains").partitions_def  # starts in 2024
    assert bars != chains
    keys = [f"{s}|{k}" for s in _sessions(dt.date(2023, 12, 27), 6) for k in ("AAPL", "JPM")]
    mapping = IdentityPartitionMapping()
    with partition_loading_context(dynamic_partitions_store=instance):
        for name, args in (
            (
                "get_downstream_partitions_for_partitions",
                (bars.subset_with_partition_keys(keys), bars, chains),
            ),
            (
                "get_upstream_mapped_partitions_result_for_partitions",
                (chains.subset_with_partition_keys([k for k in keys if k >= "2024"]), chains, bars),
            ),
            (
                "get_upstream_mapped_partitions_result_for_partitions",
                (bars.subset_with_partition_keys(keys), bars, chains),
            ),
        ):
            ours = getattr(mapping, name)(*args)
            dagsters = _dagster_original(IdentityPartitionMapping, name)(mapping, *args)
            if name.startswith("get_upstream"):
                assert set(ours.partitions_subset.get_partition_keys()) == set(
                    dagsters.partitions_subset.get_partition_keys()
                )
                assert set(ours.required_but_nonexistent_subset.get_partition_keys()) == set(
                    dagsters.required_but_nonexistent_subset.get_partition_keys()
                )
            else:
                assert set(ours.get_partition_keys()) == set(dagsters.get_partition_keys())
                assert set(ours.get_partition_keys()) == {k for k in keys if k >= "2024"}


# --- through Dagster: GraphQL launch + the daemon's backfill iteration ----------------------


@pytest.fixture
def dagster_functions(monkeypatch):
    """Put back whatever the instance class replaced in Dagster, after the test."""
    for owner, name in (
        (asset_backfill, "build_run_requests_with_backfill_policies"),
        (asset_backfill, "_check_target_partitions_subset_is_valid"),
        (AssetGraphView, "get_subset_not_in_graph"),
        (IdentityPartitionMapping, "get_downstream_partitions_for_partitions"),
        (IdentityPartitionMapping, "get_upstream_mapped_partitions_result_for_partitions"),
    ):
        monkeypatch.setattr(owner, name, getattr(owner, name))


@pytest.fixture
def location(tmp_path, monkeypatch):
    """A code location file building the definitions from a test config (bars_1d: 3 sessions
    per run), and the environment its runs read."""
    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    for name in ("universes", "datasets", "providers"):
        data = yaml.safe_load((REPO_CONFIGS / f"{name}.yaml").read_text())
        if name == "universes":
            data["universes"] = {"test": {"description": "test", "symbols": SYMBOLS}}
        if name == "datasets":
            data["datasets"]["bars_1d"]["backfill_sessions_per_run"] = 3
            data["datasets"]["bars_1d"]["stores"] = ["lake"]
        (config_dir / f"{name}.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("MARKET_ASSETS_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("MARKET_ASSETS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MARKET_ASSETS_TIMESCALE_DSN", raising=False)
    code = tmp_path / "location.py"
    code.write_text(
        "from market_assets.definitions import build_definitions\ndefs = build_definitions()\n"
    )
    return InProcessWorkspaceLoadTarget(
        InProcessCodeLocationOrigin(
            LoadableTargetOrigin(python_file=str(code), attribute="defs"),
            location_name="market_assets",
        )
    )


def _instance(execute_runs: bool):
    """An instance of our class; runs execute in this process when launched, or stay queued."""
    coordinator = "DefaultRunCoordinator" if execute_runs else "QueuedRunCoordinator"
    overrides = {
        "instance_class": INSTANCE_CLASS,
        "run_coordinator": {"module": "dagster._core.run_coordinator", "class": coordinator},
        "run_launcher": {
            "module": "dagster._core.launcher.sync_in_memory_run_launcher",
            "class": "SyncInMemoryRunLauncher",
        },
    }
    return instance_for_test(overrides=overrides)


def _launch(context, partition_names: list[str]) -> dict:
    params = {"assetSelection": [{"path": ["bars_1d"]}], "partitionNames": partition_names}
    result = execute_dagster_graphql(
        context.create_request_context(), LAUNCH, variables={"params": params}
    )
    return result.data["launchPartitionBackfill"]


def _iterate(context, backfill_id: str, times: int) -> None:
    """Run the backfill daemon's iteration up to `times` times, until the backfill ends."""
    logger = get_default_daemon_logger("BackfillDaemon")
    ongoing = {BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING, BulkActionStatus.FAILING}
    for _ in range(times):
        list(execute_backfill_iteration(context, logger))
        if context.instance.get_backfill(backfill_id).status not in ongoing:
            return


def _backfill_runs(instance: DagsterInstance, backfill_id: str):
    runs = instance.get_runs(filters=RunsFilter(tags={BACKFILL_ID_TAG: backfill_id}))
    return sorted(runs, key=lambda run: run.tags[RANGE_START])


def test_ui_backfill_of_sessions_by_symbols_runs_as_one_rectangle_and_records_every_partition(
    location, dagster_functions
):
    with _instance(execute_runs=True) as instance:
        assert type(instance).__name__ == "MarketAssetsInstance"
        register_symbol_keys(instance, SYMBOLS)
        sessions = _sessions(dt.date(2024, 3, 4), 3)
        names = [f"{s}|{k}" for s in sessions for k in ("AAPL", "MSFT", "NVDA")]
        with create_test_daemon_workspace_context(location, instance) as context:
            launched = _launch(context, names)
            assert launched["__typename"] == "LaunchBackfillSuccess", launched
            backfill_id = launched["backfillId"]

            _iterate(context, backfill_id, times=4)

            backfill = instance.get_backfill(backfill_id)
        runs = _backfill_runs(instance, backfill_id)
        assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS
        assert len(runs) == math.ceil(len(sessions) / 3) == 1
        run = runs[0]
        assert run.tags[RANGE_START] == f"{sessions[0]}|AAPL"
        assert run.tags[RANGE_END] == f"{sessions[-1]}|NVDA"
        assert run.tags[DEFERRED_EVENTS_TAG] == "true"
        assert run.is_success
        assert instance.get_materialized_partitions(AssetKey("bars_1d")) == set(names)
        checks = instance.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(AssetKey("bars_1d"), "quality"), limit=100
        )
        assert {c.event.asset_check_evaluation.partition for c in checks} == set(names)
        assert all(c.run_id == run.run_id for c in checks)


def test_ui_backfill_longer_than_a_run_is_cut_into_session_chunks_per_block_of_keys(
    location, dagster_functions
):
    with _instance(execute_runs=False) as instance:
        register_symbol_keys(instance, SYMBOLS)
        sessions = _sessions(dt.date(2024, 3, 4), 7)
        names = [f"{s}|{k}" for s in sessions for k in ("AAPL", "NVDA", "JPM")]  # not MSFT
        with create_test_daemon_workspace_context(location, instance) as context:
            launched = _launch(context, names)
            _iterate(context, launched["backfillId"], times=1)

        runs = _backfill_runs(instance, launched["backfillId"])
        ranges = sorted((r.tags[RANGE_START], r.tags[RANGE_END]) for r in runs)
        chunks = [(sessions[0], sessions[2]), (sessions[3], sessions[5]), (sessions[6],) * 2]
        assert ranges == sorted(
            (f"{first}|{lo}", f"{last}|{hi}")
            for first, last in chunks
            for lo, hi in (("AAPL", "AAPL"), ("NVDA", "JPM"))
        )
        assert all(r.tags[DEFERRED_EVENTS_TAG] == "true" for r in runs)
        assert all(r.asset_selection == {AssetKey("bars_1d")} for r in runs)
        assert all(
            r.asset_check_selection == {AssetCheckKey(AssetKey("bars_1d"), "quality")} for r in runs
        )


def test_ui_backfill_naming_an_unregistered_symbol_key_is_refused_naming_the_partition(
    location, dagster_functions
):
    with _instance(execute_runs=False) as instance:
        register_symbol_keys(instance, SYMBOLS)
        session = _sessions(dt.date(2024, 3, 4), 1)[0]
        with create_test_daemon_workspace_context(location, instance) as context:
            launched = _launch(context, [f"{session}|AAPL", f"{session}|TSLA"])

        assert launched == {
            "__typename": "PartitionKeysNotFoundError",
            "partitionKeys": [f"{session}|TSLA"],
        }
        assert instance.get_backfills() == []


def test_ui_backfill_whose_symbol_key_was_removed_fails_naming_the_partitions(
    location, dagster_functions
):
    with _instance(execute_runs=False) as instance:
        register_symbol_keys(instance, SYMBOLS)
        session = _sessions(dt.date(2024, 3, 4), 1)[0]
        with create_test_daemon_workspace_context(location, instance) as context:
            launched = _launch(context, [f"{session}|AAPL", f"{session}|NVDA"])
            instance.delete_dynamic_partition("symbols", "NVDA")

            _iterate(context, launched["backfillId"], times=5)

        backfill = instance.get_backfill(launched["backfillId"])
        assert backfill.status == BulkActionStatus.FAILED
        assert "The following partitions were removed" in backfill.error.message
        assert f"{session}|NVDA" in backfill.error.message
        assert f"{session}|AAPL" not in backfill.error.message
        assert instance.get_runs() == []
