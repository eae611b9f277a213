"""The reference family through Dagster, as a user runs it: `ingest --files`, the checks per
session, the derived tables, the query API and CLI, the universe sensor for index universes
and a point-in-time backfill of bars."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import polars as pl
import pytest
from dagster import (
    AssetCheckKey,
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    RunRequest,
    SkipReason,
    build_sensor_context,
    instance_for_test,
)
from typer.testing import CliRunner

from market_assets.cli import app
from market_assets.core.config import AppConfig, bucket_key, bucket_of
from market_assets.core.reference.store import ReferenceStore
from market_assets.core.stores.lake import ParquetLake
from market_assets.definitions import build_definitions
from market_assets.defs.automation.runs import RANGE_START_TAG
from market_assets.defs.resources import PlatformResource
from market_assets.query import MarketData
from market_assets_tests.core.reference.sources import (
    NASDAQ_ROWS,
    OTHER_ROWS,
    SEC_ROWS,
    company_tickers,
    constituents_csv,
    intervals_csv,
    nasdaq_listed,
    other_listed,
    write,
)
from market_assets_tests.realdata import realdata_dir, require

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
FILLER = [(f"M{i:03d}", "1996-01-02", "") for i in range(495)]
INTERVALS = [
    ("FB", "2013-12-23", "2022-06-09"),
    ("META", "2022-06-09", ""),
    ("PCG", "1996-01-02", "2019-01-18"),
    ("PCG", "2022-10-03", ""),
    ("AAPL", "1996-01-02", ""),
    *FILLER,
]
TABLE = [
    ("META", "Meta Platforms", "2013-12-23", 1326801),
    ("AAPL", "Apple Inc.", "1982-11-30", 320193),
]


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MARKET_ASSETS_CONFIG_DIR", str(REPO_CONFIGS))
    monkeypatch.delenv("MARKET_ASSETS_DATA_DIR", raising=False)
    monkeypatch.delenv("MARKET_ASSETS_TIMESCALE_DSN", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return tmp_path


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def sp500_files(folder: Path) -> Path:
    write(folder, "sp500/sp500_ticker_start_end_2025-11.csv", intervals_csv(INTERVALS))
    write(folder, "sp500/sp500_constituents.csv", constituents_csv(TABLE))
    return folder / "sp500"


def check_evaluations(home: Path, asset: str) -> list:
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with DagsterInstance.get() as instance:
            records = instance.get_records_for_run(
                instance.get_runs()[-1].run_id,
                of_type=DagsterEventType.ASSET_CHECK_EVALUATION,
            ).records
            return [
                r.event_log_entry.dagster_event.event_specific_data
                for r in records
                if r.event_log_entry.dagster_event.event_specific_data.asset_key == AssetKey(asset)
            ]
    finally:
        del os.environ["DAGSTER_HOME"]


def test_ingest_constituents_from_files_stores_snapshots_checks_and_intervals(workdir):
    folder = sp500_files(workdir / "in")

    result = invoke(
        "ingest",
        "--dataset",
        "index_constituents",
        "--files",
        str(folder),
        "--start",
        "2022-06-06",
        "--end",
        "2022-06-14",
    )

    assert result.exit_code == 0, result.output
    assert "index_membership" in result.output and "ticker_history" in result.output
    md = MarketData(root=workdir / "data")
    assert "FB" in md.constituents("SP500", "2022-06-08")["symbol"].to_list()
    june_10 = md.constituents("SP500", "2022-06-10")
    assert "META" in june_10["symbol"].to_list() and "FB" not in june_10["symbol"].to_list()
    assert june_10.height == 497
    assert md.ticker_history("META")["symbol"].to_list() == ["FB", "META"]
    os.environ["DAGSTER_HOME"] = str(workdir / ".dagster_home")
    try:
        with DagsterInstance.get() as instance:
            runs = instance.get_runs()
            assert len(runs) == 2  # one ranged snapshot run, one run of the derived tables
            materialized = instance.get_materialized_partitions(AssetKey("index_constituents"))
            check = instance.event_log_storage.get_asset_check_execution_history(
                AssetCheckKey(AssetKey("index_constituents"), "quality"), limit=20
            )
    finally:
        del os.environ["DAGSTER_HOME"]
    partitions = sorted(r.event.dagster_event.event_specific_data.partition for r in check)
    sessions = ["2022-06-06", "2022-06-07", "2022-06-08", "2022-06-09", "2022-06-10", "2022-06-13"]
    assert partitions == sessions
    assert sorted(materialized) == sessions


def test_constituents_check_reports_each_rule_per_session(workdir):
    folder = sp500_files(workdir / "in")
    invoke(
        "ingest",
        "--dataset",
        "index_constituents",
        "--files",
        str(folder),
        "--start",
        "2019-01-16",
        "--end",
        "2019-01-23",
    )

    evaluations = check_evaluations(workdir / ".dagster_home", "index_constituents")

    by_partition = {e.partition: e for e in evaluations}
    assert set(by_partition) == {"2019-01-16", "2019-01-17", "2019-01-18", "2019-01-22"}
    results = json.loads(json.dumps(by_partition["2019-01-18"].metadata["results"].value))
    assert results["member_count:SP500"]["members"] == 497
    assert results["churn:SP500"]["removed"] == ["PCG"]
    assert by_partition["2019-01-18"].passed  # 497 members, churn 1/498 below 2%


def test_ingest_given_a_folder_without_reference_files_names_what_it_looks_for(workdir):
    (workdir / "empty").mkdir()

    result = invoke(
        "ingest",
        "--dataset",
        "reference",
        "--files",
        str(workdir / "empty"),
        "--start",
        "2025-07-21",
        "--end",
        "2025-07-22",
    )

    assert result.exit_code == 2
    assert "nasdaqlisted*.txt" in result.output and "company_tickers*.json" in result.output


def test_ingest_mixing_reference_and_bar_datasets_is_refused(workdir):
    result = invoke(
        "ingest",
        "--dataset",
        "reference",
        "--dataset",
        "bars_1d",
        "--symbols",
        "AAPL",
        "--start",
        "2025-07-21",
        "--end",
        "2025-07-22",
    )

    assert result.exit_code == 2
    assert "in their own command" in result.output


def test_ingest_reference_from_files_joins_ciks_and_builds_ticker_history(workdir):
    created = dt.datetime(2025, 7, 21, 21, 31)
    write(
        workdir / "in",
        "nasdaqtrader/nasdaqlisted_2025-07-21.txt",
        nasdaq_listed(NASDAQ_ROWS, created),
    )
    write(
        workdir / "in", "nasdaqtrader/otherlisted_2025-07-21.txt", other_listed(OTHER_ROWS, created)
    )
    write(workdir / "in", "sec/company_tickers.json", company_tickers(SEC_ROWS))

    result = invoke(
        "ingest",
        "--dataset",
        "reference",
        "--files",
        str(workdir / "in"),
        "--start",
        "2025-07-21",
        "--end",
        "2025-07-22",
    )

    assert result.exit_code == 0, result.output
    symbols = MarketData(root=workdir / "data").symbols("2025-07-21")
    ciks = dict(symbols.select("symbol", "cik").iter_rows())
    assert ciks["BRK.B"] == 1067983 and ciks["META"] == 1326801 and ciks["SPY"] is None
    assert "ZXIET" not in ciks  # a test issue
    assert MarketData(root=workdir / "data").ticker_history("META").height == 1


def test_cli_constituents_prints_the_members_of_a_date(workdir):
    folder = sp500_files(workdir / "in")
    invoke(
        "ingest",
        "--dataset",
        "index_constituents",
        "--files",
        str(folder),
        "--start",
        "2022-06-08",
        "--end",
        "2022-06-09",
    )

    result = invoke("constituents", "SP500", "--as-of", "2022-06-08")

    assert result.exit_code == 0, result.output
    assert "497 members (snapshot of 2022-06-08)" in result.output
    assert "FB" in result.output


def write_membership(data_dir: Path) -> None:
    store = ReferenceStore(ParquetLake(str(data_dir)).store)
    store.write_derived(
        "index_membership",
        pl.DataFrame(
            {
                "index": ["SP500"] * 3,
                "symbol": ["FB", "META", "AAPL"],
                "security_id": ["FB@2013-12-23", "FB@2013-12-23", "AAPL@1996-01-02"],
                "cik": [1326801, 1326801, 320193],
                "start": [dt.date(2013, 12, 23), dt.date(2022, 6, 9), dt.date(1996, 1, 2)],
                "end": [dt.date(2022, 6, 9), None, None],
            }
        ),
    )


def test_backfill_of_an_index_universe_fetches_members_only_under_their_ticker_of_the_time(workdir):
    write_membership(workdir / "data")

    result = invoke(
        "ingest",
        "--dataset",
        "bars_1d",
        "--universe",
        "sp500",
        "--start",
        "2022-06-06",
        "--end",
        "2022-06-14",
    )

    assert result.exit_code == 0, result.output
    bars = MarketData(root=workdir / "data").bars(
        ["FB", "META", "AAPL"], "2022-06-06", "2022-06-14"
    )
    days = {
        s: sorted(d.date().day for d in g["ts"])
        for (s,), g in bars.partition_by("symbol", as_dict=True).items()
    }
    assert days == {"AAPL": [6, 7, 8, 9, 10, 13], "FB": [6, 7, 8], "META": [9, 10, 13]}


def test_universe_sensor_requests_new_index_members_windows_once(workdir, monkeypatch):
    monkeypatch.setenv("MARKET_ASSETS_DATA_DIR", str(workdir / "data"))
    write_membership(workdir / "data")
    config = AppConfig.load(REPO_CONFIGS)
    sensor = build_definitions(config).get_sensor_def("universe_sensor")
    platform = PlatformResource(config_dir=str(REPO_CONFIGS), data_dir=str(workdir / "data"))
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("symbols", config.symbol_partitions.keys)
        with build_sensor_context(instance=instance, resources={"platform": platform}) as context:
            first = sensor(context)
        with build_sensor_context(
            instance=instance, resources={"platform": platform}, cursor=first.cursor
        ) as context:
            second = sensor(context)

    assert all(isinstance(r, RunRequest) for r in first.run_requests)
    keys = {r.tags[RANGE_START_TAG].split("|")[1] for r in first.run_requests}
    member_keys = {bucket_key("sp500", bucket_of(s, 16)) for s in ("FB", "META", "AAPL")}
    assert keys == member_keys
    fb_key = bucket_key("sp500", bucket_of("FB", 16))
    fb_runs = [r for r in first.run_requests if r.tags[RANGE_START_TAG].endswith(fb_key)]
    assert min(r.tags[RANGE_START_TAG] for r in fb_runs).startswith("2012-12")  # 250 lookback
    assert isinstance(second, SkipReason)


def test_acceptance_commands_on_the_real_sp500_and_nasdaq_files(workdir):
    sp500 = require("sp500/sp500_ticker_start_end_2025-11.csv").parent
    for start, end in (
        ("2014-03-03", "2014-03-05"),
        ("2019-01-16", "2019-01-23"),
        ("2022-06-07", "2022-06-11"),
        ("2022-09-29", "2022-10-05"),
    ):
        result = invoke(
            "ingest",
            "--dataset",
            "index_constituents",
            "--files",
            str(sp500),
            "--start",
            start,
            "--end",
            end,
        )
        assert result.exit_code == 0, result.output
    result = invoke(
        "ingest",
        "--dataset",
        "reference",
        "--files",
        str(realdata_dir()),
        "--start",
        "2025-07-21",
        "--end",
        "2025-07-22",
    )
    assert result.exit_code == 0, result.output

    md = MarketData(root=workdir / "data")
    march = md.constituents("SP500", "2014-03-03")
    assert 495 <= march.height <= 510 and "symbol" in march.columns
    assert "FB" in md.constituents("SP500", "2022-06-08")["symbol"].to_list()
    assert "META" not in md.constituents("SP500", "2022-06-08")["symbol"].to_list()
    assert "META" in md.constituents("SP500", "2022-06-10")["symbol"].to_list()
    assert "FB" not in md.constituents("SP500", "2022-06-10")["symbol"].to_list()
    history = md.constituent_history("SP500", "1996-01-01", "2025-11-16")
    assert history.filter(pl.col("symbol") == "PCG").height == 2
    assert md.ticker_history("META")["symbol"].to_list() == ["FB", "META"]
    assert md.symbols("2025-07-21").height == 11546
