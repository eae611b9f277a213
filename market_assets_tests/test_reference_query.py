"""MarketData's reference reads: point-in-time constituents, history, symbols, renames."""

import datetime as dt

import polars as pl
import pytest

from market_assets.core.reference.store import ReferenceStore
from market_assets.core.stores.lake import ParquetLake
from market_assets.query import MarketData
from market_assets_tests.helpers import make_bars

D1, D2, D3 = dt.date(2022, 6, 8), dt.date(2022, 6, 9), dt.date(2022, 6, 10)
HISTORY = pl.DataFrame(
    {
        "security_id": ["FB@2013-12-23", "FB@2013-12-23", "AAPL@1996-01-02"],
        "cik": [1326801, 1326801, 320193],
        "symbol": ["FB", "META", "AAPL"],
        "valid_from": [dt.date(2013, 12, 23), D2, dt.date(1996, 1, 2)],
        "valid_to": [D2, None, None],
        "change": ["listed", "renamed", "listed"],
        "end_change": ["renamed", None, None],
        "evidence": ["index:SP500"] * 3,
    }
)
MEMBERSHIP = pl.DataFrame(
    {
        "index": ["SP500"] * 3,
        "symbol": ["AAPL", "FB", "META"],
        "security_id": ["AAPL@1996-01-02", "FB@2013-12-23", "FB@2013-12-23"],
        "cik": [320193, 1326801, 1326801],
        "start": [dt.date(1996, 1, 2), dt.date(2013, 12, 23), D2],
        "end": [None, D2, None],
    }
)


def members(day: dt.date, symbols: list[str]) -> pl.DataFrame:
    n = len(symbols)
    return pl.DataFrame(
        {"session": [day] * n, "index": ["SP500"] * n, "symbol": symbols, "source": ["sp500"] * n}
    )


@pytest.fixture
def market(tmp_path) -> MarketData:
    store = ReferenceStore(ParquetLake(str(tmp_path)).store)
    store.write_sessions(
        "index_constituents",
        pl.concat([members(D1, ["AAPL", "FB"]), members(D2, ["AAPL", "META"])]),
        [D1, D2],
    )
    store.write_derived("ticker_history", HISTORY)
    store.write_derived("index_membership", MEMBERSHIP)
    return MarketData(root=tmp_path)


def test_constituents_answer_from_the_latest_snapshot_on_or_before_as_of(market):
    before = market.constituents("SP500", "2022-06-08")
    after = market.constituents("SP500", "2022-06-12")

    assert before["symbol"].to_list() == ["AAPL", "FB"]
    assert after["symbol"].to_list() == ["AAPL", "META"]
    assert after["snapshot_session"].unique().to_list() == [D2]
    assert after.filter(pl.col("symbol") == "META")["security_id"].to_list() == ["FB@2013-12-23"]
    assert "end" not in after.columns


def test_constituents_before_the_first_snapshot_are_empty(market):
    assert market.constituents("SP500", "2020-01-02").is_empty()


def test_constituent_history_shows_ends_only_up_to_the_range_end(market):
    before_rename = market.constituent_history("SP500", "2020-01-01", "2022-06-09")
    whole = market.constituent_history("SP500", "2020-01-01", "2025-01-01")

    assert before_rename.filter(pl.col("symbol") == "FB")["end"].to_list() == [None]
    assert "META" not in before_rename["symbol"].to_list()
    assert whole.filter(pl.col("symbol") == "FB")["end"].to_list() == [D2]


def test_ticker_history_lists_every_ticker_of_the_security(market):
    history = market.ticker_history("META")

    assert history.select("symbol", "valid_from", "valid_to").rows() == [
        ("FB", dt.date(2013, 12, 23), D2),
        ("META", D2, None),
    ]


def test_bars_follow_renames_give_one_history_with_each_rows_ticker(market, tmp_path):
    lake = ParquetLake(str(tmp_path))
    fb = make_bars(["FB"], [D1, D2, D3])  # FB rows after the rename must not be used
    meta = make_bars(["META"], [D1, D2, D3], seed=1)  # nor META rows before it
    for frame, symbol in ((fb, "FB"), (meta, "META")):
        lake.write_partitions("bars_1d", frame, [(symbol, d) for d in (D1, D2, D3)])

    bars = market.bars("META", "2022-06-08", "2022-06-11", follow_renames=True)

    assert bars.select("ts", "ticker").rows() == [
        (dt.datetime(2022, 6, 8, tzinfo=dt.UTC), "FB"),
        (dt.datetime(2022, 6, 9, tzinfo=dt.UTC), "META"),
        (dt.datetime(2022, 6, 10, tzinfo=dt.UTC), "META"),
    ]
    assert bars["symbol"].unique().to_list() == ["META"]
    assert bars["security_id"].unique().to_list() == ["FB@2013-12-23"]
    assert bars["close"][0] == fb["close"][0]


def test_bars_follow_renames_of_an_unknown_symbol_read_it_alone(market, tmp_path):
    ParquetLake(str(tmp_path)).write_partitions("bars_1d", make_bars(["XOM"], [D1]), [("XOM", D1)])

    bars = market.bars("XOM", "2022-06-08", "2022-06-09", follow_renames=True)

    assert bars.select("symbol", "ticker", "security_id").rows() == [("XOM", "XOM", None)]


def test_symbols_leave_out_test_issues_unless_asked(tmp_path):
    store = ReferenceStore(ParquetLake(str(tmp_path)).store)
    rows = pl.DataFrame(
        {
            "session": [D1, D1],
            "symbol": ["AAPL", "ZXIET"],
            "asset_type": ["stock", "stock"],
            "is_etf": [False, False],
            "is_test_issue": [False, True],
            "source": ["nasdaq_trader"] * 2,
        }
    )
    store.write_sessions("reference", rows, [D1])
    market = MarketData(root=tmp_path)

    assert market.symbols("2022-06-09")["symbol"].to_list() == ["AAPL"]
    assert market.symbols("2022-06-08", include_test_issues=True).height == 2
    assert market.symbols("2022-06-07").is_empty()
