"""options_chains end to end: wiring, ranged runs, checks per partition, stores, query, CLI."""

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import psycopg
import pytest
from dagster import AssetCheckKey, AssetKey, DagsterInstance, MultiPartitionsDefinition
from typer.testing import CliRunner

from market_assets.cli import app
from market_assets.core.config import AppConfig
from market_assets.core.stores.timescale import TimescaleStore
from market_assets.definitions import build_definitions
from market_assets.defs.resources import PlatformResource
from market_assets.defs.runner import materialize_rectangle, step_metadata
from market_assets.query import MarketData

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
WED, THU, FRI = dt.date(2025, 2, 19), dt.date(2025, 2, 20), dt.date(2025, 2, 21)
CHAINS = AssetKey("options_chains")


def config_for(tmp_path: Path, dsn: str | None = None) -> AppConfig:
    return dataclasses.replace(
        AppConfig.load(REPO_CONFIGS), data_dir=str(tmp_path / "data"), timescale_dsn=dsn
    )


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as entered:
        yield entered


@pytest.mark.usefixtures("instance")
def test_options_chains_is_partitioned_checked_scheduled_and_left_out_of_the_universe_sensor():
    config = AppConfig.load(REPO_CONFIGS)
    defs = build_definitions(config)
    graph = defs.resolve_asset_graph()

    node = graph.get(CHAINS)
    assert isinstance(node.partitions_def, MultiPartitionsDefinition)
    assert [d.name for d in node.partitions_def.partitions_defs] == ["date", "symbol"]
    assert node.backfill_policy.max_partitions_per_run == 20  # sessions per backfill run
    assert AssetKey("bars_1d") in node.parent_keys
    check = graph.get_check_spec(AssetCheckKey(CHAINS, "quality"))
    assert check.partitions_def == node.partitions_def and check.blocking
    assert "options_chains_after_close" in {s.name for s in defs.schedules}
    sensed = {
        key
        for sensor in defs.sensors
        if sensor.name == "universe_sensor"
        for key in sensor.asset_selection.resolve(graph)
    }
    assert AssetKey("bars_1d") in sensed and CHAINS not in sensed


def test_ranged_run_stores_chains_and_records_one_check_evaluation_per_partition(
    tmp_path, instance
):
    config = config_for(tmp_path)
    defs = build_definitions(config)
    materialize_rectangle(defs, instance, [AssetKey("bars_1d")], [WED, THU], ["SPY", "AAPL"], 5)

    summary = materialize_rectangle(defs, instance, [CHAINS], [WED, THU], ["SPY", "AAPL"], 5)

    assert not summary.failed_runs and len(summary.run_ids) == 1
    stats = summary.datasets["options_chains"]
    assert (stats.partitions, stats.quarantined, stats.sources) == (4, 0, {"synthetic"})
    assert (tmp_path / "data/options/SPY/2025/02/20/chain.parquet").exists()
    records = instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(CHAINS, "quality"), limit=10
    )
    assert sorted(r.partition for r in records) == [
        "2025-02-19|AAPL",
        "2025-02-19|SPY",
        "2025-02-20|AAPL",
        "2025-02-20|SPY",
    ]
    metadata = step_metadata(instance, summary.run_ids[0])["options_chains"]
    assert metadata["iv_status"]["ok"] > 0 and metadata["stores"] == "lake"
    event = instance.get_latest_materialization_event(CHAINS)
    assert event.asset_materialization.metadata["rows"].value > 0  # per partition

    chain = MarketData(config.data_dir).option_chain("SPY", THU)

    wanted = ["contract", "expiration", "strike", "kind", "bid", "ask", "iv"]
    assert set([*wanted, "delta", "gamma", "vega", "theta"]) <= set(chain.columns)
    assert set(chain["kind"]) == {"call", "put"} and chain["session"].unique().to_list() == [THU]
    assert chain.filter(pl.col("iv_status") == "ok")["iv"].is_not_null().all()
    puts = MarketData(config.data_dir).option_chain("SPY", THU, kind="put")
    assert puts.height == chain.height // 2
    history = MarketData(config.data_dir).option_history(chain["contract"][0], WED, FRI)
    assert history["session"].to_list() == [WED, THU]


def test_rerun_replaces_the_partition_in_the_lake_and_postgresql(tmp_path, pg_dsn, instance):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS options_chains, quarantine_options_chains")
    config = config_for(tmp_path, pg_dsn)
    defs = build_definitions(config)
    materialize_rectangle(defs, instance, [CHAINS], [WED, THU], ["JPM"], 5)

    summary = materialize_rectangle(defs, instance, [CHAINS], [THU], ["JPM"], 5)

    assert not summary.failed_runs
    lake = PlatformResource(data_dir=config.data_dir).lake()
    stored = lake.read("options_chains", "JPM", WED, FRI)
    with TimescaleStore(pg_dsn) as store:
        from_pg = store.read(
            "options_chains", "JPM", dt.datetime(2025, 2, 19), dt.datetime(2025, 2, 21)
        )
    assert from_pg.height == stored.height > 0
    assert (
        from_pg.sort("ts", "contract")
        .select("contract", "bid", "iv")
        .equals(stored.sort("ts", "contract").select("contract", "bid", "iv"))
    )


def test_cli_query_prints_the_chain_as_of_a_session(tmp_path, instance):
    config = config_for(tmp_path)
    materialize_rectangle(build_definitions(config), instance, [CHAINS], [THU], ["SPY"], 5)

    result = CliRunner().invoke(
        app,
        [
            "query",
            "options_chains",
            "SPY",
            "--as-of",
            "2025-02-20",
            "--format",
            "csv",
            "--data-dir",
            config.data_dir,
        ],
    )

    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[0].split(",")
    assert {"contract", "expiration", "strike", "kind", "iv", "delta"} <= set(header)
    missing = CliRunner().invoke(app, ["query", "options_chains", "SPY"])
    assert missing.exit_code == 2 and "--as-of" in missing.output


def test_demo_runs_option_chains_in_their_own_runs_after_the_bars(tmp_path, monkeypatch):
    import market_assets.cli as cli

    calls: list[list[str]] = []
    monkeypatch.setattr(
        "market_assets.defs.runner.materialize_rectangle",
        lambda defs, instance, assets, sessions, keys, per_run, **_: calls.append(
            [a.to_user_string() for a in assets]
        ),
    )
    monkeypatch.setenv("MARKET_ASSETS_CONFIG_DIR", str(REPO_CONFIGS))

    CliRunner().invoke(cli.app, ["demo", "--dagster-home", str(tmp_path / "home")])

    assert calls[-1] == ["options_chains"]
    assert all("options_chains" not in run for run in calls[:-1])
