"""The CLI as a user runs it: demo, ingest and query, in a fresh folder."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest
from dagster import DagsterInstance
from typer.testing import CliRunner

from market_assets.cli import app
from market_assets.core.calendar import get_calendar

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MARKET_ASSETS_CONFIG_DIR", str(REPO_CONFIGS))
    monkeypatch.delenv("MARKET_ASSETS_DATA_DIR", raising=False)
    monkeypatch.delenv("MARKET_ASSETS_TIMESCALE_DSN", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return tmp_path


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result


def test_demo_ingests_the_demo_universe_into_data_and_records_runs(workdir):
    result = invoke("demo", "--minute-sessions", "1", "--daily-sessions", "3")

    assert result.exit_code == 0, result.output
    for dataset in ("bars_1m", "bars_5m", "bars_15m", "bars_1h", "bars_1d"):
        assert dataset in result.output
    assert "Dagster bookkeeping" in result.output
    assert "fundamental" not in result.output  # SEC data is not part of the offline demo
    session = get_calendar().last_completed_sessions(1)[0]
    minute_file = (
        workdir / f"data/ticks/minute/AAPL/{session:%Y}/{session:%m}/{session:%d}/ticks.parquet"
    )
    assert pl.read_parquet(minute_file).height == get_calendar().minutes_in_session(session)
    assert (workdir / ".dagster_home" / "dagster.yaml").exists()
    os.environ["DAGSTER_HOME"] = str(workdir / ".dagster_home")
    try:
        with DagsterInstance.get() as instance:
            assert type(instance).__name__ == "MarketAssetsInstance"  # UI backfills: rectangles
            assert len(instance.get_runs()) == 3  # minute bars, daily bars, option chains
            selected = {
                key.to_user_string()
                for run in instance.get_runs()
                for key in run.asset_selection or ()
            }
            assert not selected & {"reference", "index_constituents", "ticker_history"}
            assert instance.get_dynamic_partitions("symbols") == [
                "AAPL", "MSFT", "NVDA", "JPM", "SPY"
            ]
    finally:
        del os.environ["DAGSTER_HOME"]


def test_query_after_ingest_writes_csv_with_the_requested_rows(workdir):
    ingest = invoke(
        "ingest", "--dataset", "bars_1d", "--symbols", "AAPL,MSFT",
        "--start", "2024-03-04", "--end", "2024-03-09",
    )
    assert ingest.exit_code == 0, ingest.output

    out = workdir / "out.csv"
    result = invoke(
        "query", "bars_1d", "AAPL,MSFT", "--start", "2024-03-05", "--end", "2024-03-08",
        "--format", "csv", "--out", str(out),
    )

    assert result.exit_code == 0, result.output
    frame = pl.read_csv(out)
    assert frame.height == 6
    assert frame["ts"].str.slice(0, 10).unique().sort().to_list() == [
        "2024-03-05", "2024-03-06", "2024-03-07"
    ]


@pytest.mark.parametrize("symbols", ["../etc", "AAPL,x'; drop table bars_1d;--", "A B"])
def test_ingest_given_hostile_symbol_refuses_before_touching_anything(workdir, symbols):
    result = invoke(
        "ingest", "--dataset", "bars_1d", "--symbols", symbols,
        "--start", "2024-03-04", "--end", "2024-03-09",
    )

    assert result.exit_code == 2
    assert "invalid symbol" in result.output
    assert not (workdir / "data").exists()


def test_query_given_hostile_symbol_refuses(workdir):
    result = invoke("query", "bars_1d", "../../etc", "--start", "2024-01-01", "--end", "2024-02-01")

    assert result.exit_code == 2
    assert "invalid symbol '../../etc'" in result.output


def test_ingest_given_unknown_dataset_names_it(workdir):
    result = invoke(
        "ingest", "--dataset", "bars_2m", "--symbols", "AAPL",
        "--start", "2024-03-04", "--end", "2024-03-09",
    )

    assert result.exit_code == 2
    assert "unknown dataset 'bars_2m'" in result.output
