"""Tick assets end to end: DBN files -> Databento adapter -> validation -> lake and PostgreSQL.

Runs are launched the way `market-assets ingest --files DIR` launches them (ranged runs on a
Dagster instance carrying the files-dir and provider tags), and through the CLI itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance, MultiPartitionsDefinition
from typer.testing import CliRunner

from market_assets.cli import app
from market_assets.core.config import AppConfig
from market_assets.core.stores.timescale import TimescaleStore
from market_assets.definitions import build_definitions
from market_assets.defs.assets.bars import FILES_DIR_TAG, PROVIDER_TAG
from market_assets.defs.resources import PlatformResource
from market_assets.defs.runner import materialize_rectangle, step_metadata
from market_assets_tests.core.providers.dbn_builders import dbn_bytes, trade

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TICK_ASSETS = ["statistics", "tbbo", "trades"]
THU, FRI, MON = dt.date(2024, 3, 7), dt.date(2024, 3, 8), dt.date(2024, 3, 11)
IDS = {"AAPL": 38, "NVDA": 6155}


def at(day: dt.date, hour: int, minute: int, nanosecond: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC) + dt.timedelta(
        microseconds=nanosecond / 1000
    )


def write_trade_files(folder: Path) -> None:
    """One DBN file per session with trades of AAPL and NVDA; NVDA's second Friday trade has
    an undefined price (UNDEF_PRICE), which must be quarantined."""
    folder.mkdir(parents=True, exist_ok=True)
    for day, undefined in ((THU, False), (FRI, True)):
        records = [
            trade(38, at(day, 14, 31), 170.25, 100, sequence=1),
            trade(6155, at(day, 14, 31), 880.5, 10, sequence=2),
            trade(6155, at(day, 20, 59), None if undefined else 881.0, 5, sequence=3),
        ]
        data = dbn_bytes("XNAS.ITCH", "trades", day, day + dt.timedelta(days=1), IDS, records)
        (folder / f"xnas-itch-{day:%Y%m%d}.trades.dbn.zst").write_bytes(data)


def config_for(tmp_path: Path, dsn: str | None = None) -> AppConfig:
    return dataclasses.replace(
        AppConfig.load(REPO_CONFIGS), data_dir=str(tmp_path / "data"), timescale_dsn=dsn
    )


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    """An in-memory instance, entered so definitions resolve against it."""
    with DagsterInstance.ephemeral() as entered:
        yield entered


@pytest.mark.usefixtures("instance")
def test_tick_assets_are_session_symbol_partitioned_and_never_scheduled():
    defs = build_definitions(AppConfig.load(REPO_CONFIGS))
    graph = defs.resolve_asset_graph()

    for name in TICK_ASSETS:
        node = graph.get(AssetKey(name))
        assert isinstance(node.partitions_def, MultiPartitionsDefinition)
        assert [d.name for d in node.partitions_def.partitions_defs] == ["date", "symbol"]
        assert node.group_name == "ticks"
        assert node.backfill_policy.max_partitions_per_run >= 1
    schedules = {schedule.name for schedule in defs.schedules}
    sensed = {
        key.to_user_string()
        for sensor in defs.sensors
        if sensor.asset_selection is not None
        for key in sensor.asset_selection.resolve(graph)
    }
    assert schedules.isdisjoint(f"{name}_after_close" for name in TICK_ASSETS)
    assert "bars_1d" in sensed
    assert sensed.isdisjoint(TICK_ASSETS)


def test_ranged_run_stores_trades_from_dbn_files_in_the_lake_and_postgresql(
    tmp_path, pg_dsn, pg_server, timescale_store, instance
):
    files = tmp_path / "dbn"
    write_trade_files(files)
    config = config_for(tmp_path, pg_dsn)
    tags = {FILES_DIR_TAG: str(files), PROVIDER_TAG: "databento"}

    summary = materialize_rectangle(
        build_definitions(config),
        instance,
        [AssetKey("trades")],
        [THU, FRI],
        ["AAPL", "NVDA"],
        5,
        tags,
    )

    assert not summary.failed_runs
    stats = summary.datasets["trades"]
    assert (len(summary.run_ids), stats.partitions, stats.rows, stats.quarantined) == (1, 4, 5, 1)
    assert stats.sources == {"databento"}
    lake = PlatformResource(data_dir=config.data_dir).lake()
    stored = lake.read("trades", ["AAPL", "NVDA"], THU, MON)
    assert stored.select("symbol", "price").rows() == [
        ("AAPL", 170.25),
        ("AAPL", 170.25),
        ("NVDA", 880.5),
        ("NVDA", 881.0),
        ("NVDA", 880.5),
    ]
    assert stored["ts_event"].dtype == pl.Datetime("ns", "UTC")
    assert (tmp_path / "data/ticks/trades/NVDA/2024/03/08/trades.parquet").exists()
    quarantined = lake.read_quarantine("trades", ["NVDA"], THU, MON)
    assert quarantined.select("session", "rule", "price").rows() == [(FRI, "null_price", None)]
    with TimescaleStore(pg_dsn) as store:
        from_pg = store.read(
            "trades", ["AAPL", "NVDA"], dt.datetime(2024, 3, 7), dt.datetime(2024, 3, 11)
        )
        assert from_pg.equals(stored)
        assert store.read_quarantine("trades", ["NVDA"], THU, MON)["rule"].to_list() == [
            "null_price"
        ]
    metadata = step_metadata(instance, summary.run_ids[0])["trades"]
    assert metadata["vendor_requests"] == 0
    assert metadata["stores"] == ("lake, timescale" if pg_server.timescale else "lake, postgresql")
    assert metadata["first_ts_event"].startswith("2024-03-07 14:31:00")


def test_rerunning_a_tick_partition_replaces_it(tmp_path, instance):
    files = tmp_path / "dbn"
    write_trade_files(files)
    config = config_for(tmp_path)
    tags = {FILES_DIR_TAG: str(files)}
    defs = build_definitions(config)
    materialize_rectangle(defs, instance, [AssetKey("trades")], [THU, FRI], ["NVDA"], 5, tags)

    summary = materialize_rectangle(defs, instance, [AssetKey("trades")], [THU], ["NVDA"], 5, tags)

    assert not summary.failed_runs
    lake = PlatformResource(data_dir=config.data_dir).lake()
    assert lake.read("trades", "NVDA", THU, MON).height == 3  # 2 Thursday + 1 Friday


def test_cli_ingest_with_files_reads_dbn_files_offline(tmp_path, monkeypatch):
    write_trade_files(tmp_path / "dbn")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MARKET_ASSETS_CONFIG_DIR", str(REPO_CONFIGS))
    for name in (
        "MARKET_ASSETS_DATA_DIR",
        "MARKET_ASSETS_TIMESCALE_DSN",
        "DAGSTER_HOME",
        "DATABENTO_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)

    result = CliRunner().invoke(
        app,
        [
            "ingest",
            "--dataset",
            "trades",
            "--symbols",
            "AAPL,NVDA",
            "--start",
            "2024-03-07",
            "--end",
            "2024-03-09",
            "--files",
            "dbn",
        ],
        env={"COLUMNS": "200"},
    )

    assert result.exit_code == 0, result.output
    assert "trades" in result.output and "databento" in result.output
    stored = pl.read_parquet(tmp_path / "data/ticks/trades/AAPL/2024/03/07/trades.parquet")
    assert stored.select("symbol", "price", "size").row(0) == ("AAPL", 170.25, 100)


def test_cli_ingest_refuses_files_with_a_provider_of_another_kind(tmp_path, monkeypatch):
    (tmp_path / "dbn").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MARKET_ASSETS_CONFIG_DIR", str(REPO_CONFIGS))

    result = CliRunner().invoke(
        app,
        [
            "ingest",
            "--dataset",
            "trades",
            "--symbols",
            "AAPL",
            "--start",
            "2024-03-07",
            "--end",
            "2024-03-08",
            "--files",
            "dbn",
            "--provider",
            "synthetic",
        ],
        env={"COLUMNS": "200"},
    )

    assert result.exit_code == 2
    assert "of kind 'synthetic'" in result.output


@pytest.mark.parametrize("dataset", TICK_ASSETS)
def test_tick_tables_exist_in_postgresql(timescale_store, dataset):
    assert timescale_store.read(
        dataset, ["AAPL"], dt.datetime(2024, 3, 7), dt.datetime(2024, 3, 8)
    ).is_empty()
