"""MarketData: bounds, columns, exports and errors, on a lake written by the lake store."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from market_assets.core.calendar import get_calendar
from market_assets.core.schemas import BAR_SCHEMA
from market_assets.core.stores.lake import ParquetLake
from market_assets.query import MarketData, NoDataWarning, to_utc
from market_assets_tests.helpers import make_bars

SESSIONS = get_calendar().sessions("2024-03-04", "2024-03-15")


@pytest.fixture
def market(tmp_path) -> MarketData:
    lake = ParquetLake(str(tmp_path))
    for dataset, granularity in (("bars_1d", "1d"), ("bars_1m", "1m")):
        frame = make_bars(["AAPL", "MSFT"], SESSIONS, granularity=granularity)
        lake.write_partitions(dataset, frame, [(s, d) for s in ("AAPL", "MSFT") for d in SESSIONS])
    return MarketData(root=tmp_path)


def test_bars_given_dates_includes_start_and_excludes_end(market):
    bars = market.bars(["MSFT", "AAPL"], dt.date(2024, 3, 5), dt.date(2024, 3, 8))

    assert bars["ts"].dt.date().unique().sort().to_list() == [
        dt.date(2024, 3, 5), dt.date(2024, 3, 6), dt.date(2024, 3, 7)
    ]
    assert bars["symbol"].to_list() == ["AAPL"] * 3 + ["MSFT"] * 3
    assert bars.schema == pl.Schema(BAR_SCHEMA)


def test_bars_given_naive_datetimes_treats_them_as_utc(market):
    start = dt.datetime(2024, 3, 5, 14, 30)  # 9:30 New York
    bars = market.bars("AAPL", start, dt.datetime(2024, 3, 5, 14, 35), granularity="1m")

    assert bars["ts"].to_list() == [
        dt.datetime(2024, 3, 5, 14, 30 + i, tzinfo=dt.UTC) for i in range(5)
    ]


def test_bars_given_aware_datetimes_converts_them_to_utc(market):
    new_york = dt.timezone(dt.timedelta(hours=-5))
    bars = market.bars(
        "AAPL",
        dt.datetime(2024, 3, 5, 15, 58, tzinfo=new_york),
        dt.datetime(2024, 3, 5, 16, 30, tzinfo=new_york),
        granularity="1m",
    )

    assert bars["ts"].to_list() == [
        dt.datetime(2024, 3, 5, 20, 58, tzinfo=dt.UTC),
        dt.datetime(2024, 3, 5, 20, 59, tzinfo=dt.UTC),
    ]


def test_bars_given_columns_returns_only_those(market):
    bars = market.bars("AAPL", "2024-03-04", "2024-03-06", columns=["ts", "close"])

    assert bars.columns == ["ts", "close"]
    assert bars.height == 2


def test_bars_given_unknown_column_or_granularity_or_reversed_range_raises(market):
    with pytest.raises(ValueError, match=r"unknown column\(s\) \['price'\]"):
        market.bars("AAPL", "2024-03-04", "2024-03-06", columns=["price"])
    with pytest.raises(ValueError, match="granularity='2m'"):
        market.bars("AAPL", "2024-03-04", "2024-03-06", granularity="2m")
    with pytest.raises(ValueError, match="must be before end"):
        market.bars("AAPL", "2024-03-06", "2024-03-06")
    with pytest.raises(ValueError, match="start='yesterday' is not an ISO date"):
        market.bars("AAPL", "yesterday", "2024-03-06")


def test_bars_given_symbol_with_no_data_returns_an_empty_canonical_frame(market):
    with pytest.warns(NoDataWarning, match="nothing is stored for TSLA in bars_1d"):
        bars = market.bars("TSLA", "2024-03-04", "2024-03-06")

    assert bars.is_empty()
    assert bars.schema == pl.Schema(BAR_SCHEMA)


def test_export_writes_csv_and_parquet_with_the_same_rows(market, tmp_path):
    rows_csv = market.export(["AAPL"], "2024-03-04", "2024-03-16", tmp_path / "x/a.csv")
    rows_pq = market.export(
        ["AAPL"], "2024-03-04", "2024-03-16", tmp_path / "a.parquet", format="parquet"
    )

    assert rows_csv == rows_pq == len(SESSIONS)
    assert pl.read_parquet(tmp_path / "a.parquet").equals(
        market.bars("AAPL", "2024-03-04", "2024-03-16")
    )
    assert pl.read_csv(tmp_path / "x/a.csv").height == len(SESSIONS)


def test_to_utc_given_date_is_midnight_utc():
    assert to_utc(dt.date(2024, 1, 2), name="start") == dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    assert to_utc("2024-01-02T09:30:00-05:00", name="start") == dt.datetime(
        2024, 1, 2, 14, 30, tzinfo=dt.UTC
    )
