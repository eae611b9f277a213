"""Listings joined with the CIK map of their day, and rows checked before storage."""

import datetime as dt

import polars as pl

from market_assets.core.reference.schemas import ReferenceModel
from market_assets.core.reference.snapshots import check_constituents, check_reference, join_ciks

A, B = dt.date(2025, 7, 18), dt.date(2025, 7, 21)


def listing(day: dt.date, symbols: list[str]) -> pl.DataFrame:
    n = len(symbols)
    return pl.DataFrame(
        {
            "session": [day] * n,
            "symbol": symbols,
            "vendor_symbol": symbols,
            "name": [f"{s} Inc" for s in symbols],
            "exchange": ["NYSE"] * n,
            "exchange_code": ["N"] * n,
            "asset_type": ["stock"] * n,
            "is_etf": [False] * n,
            "is_test_issue": [False] * n,
            "financial_status": [None] * n,
            "round_lot_size": [100] * n,
            "published_at": [None] * n,
            "source": ["nasdaq_trader"] * n,
        },
        schema_overrides={
            "session": pl.Date,
            "financial_status": pl.String,
            "published_at": pl.Datetime("us", "UTC"),
        },
    )


def cik_map(as_of: dt.date | None, pairs: list[tuple[str, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "as_of": [as_of] * len(pairs),
            "symbol": [s for s, _ in pairs],
            "sec_ticker": [s for s, _ in pairs],
            "cik": [c for _, c in pairs],
            "name": [None] * len(pairs),
            "source": ["sec_tickers"] * len(pairs),
        },
        schema_overrides={"as_of": pl.Date, "name": pl.String},
    )


def test_each_session_takes_the_latest_dated_map_on_or_before_it():
    listings = pl.concat([listing(A, ["FB"]), listing(B, ["META"])])
    maps = pl.concat(
        [
            cik_map(A, [("FB", 1326801)]),
            cik_map(B, [("META", 1326801)]),
            cik_map(dt.date(2025, 7, 25), [("FB", 9)]),
        ]
    )

    rows, facts = join_ciks(listings, maps)

    assert rows.select("symbol", "cik", "source").rows() == [
        ("FB", 1326801, "nasdaq_trader+sec_tickers"),
        ("META", 1326801, "nasdaq_trader+sec_tickers"),
    ]
    assert facts["cik_map_by_session"] == {str(A): str(A), str(B): str(B)}


def test_an_undated_map_serves_sessions_no_dated_map_covers_and_unlisted_tickers_are_counted():
    rows, facts = join_ciks(
        listing(B, ["AAPL", "ZZZ"]), cik_map(None, [("AAPL", 320193), ("OTCX", 1)])
    )

    assert rows.select("symbol", "cik", "source").rows() == [
        ("AAPL", 320193, "nasdaq_trader+sec_tickers"),
        ("ZZZ", None, "nasdaq_trader"),
    ]
    assert facts["cik_map_tickers_not_listed"] == 1


def test_check_reference_counts_invalid_duplicate_and_outside_rows_by_rule():
    rows, _ = join_ciks(
        pl.concat([listing(B, ["AAPL", "AAPL", "BAD SYM"]), listing(A, ["X"])]), cik_map(None, [])
    )

    checked = check_reference(rows, [B])

    assert checked.valid["symbol"].to_list() == ["AAPL"]
    assert checked.rejected == {"outside_partition": 1, "invalid_symbol": 1, "duplicate_symbol": 1}
    assert checked.samples["invalid_symbol"] == ["BAD SYM"]
    ReferenceModel.validate(checked.valid)


def test_check_constituents_keys_on_session_index_and_symbol():
    frame = pl.DataFrame(
        {
            "session": [B, B, B],
            "index": ["SP500", "NDX", "SP500"],
            "symbol": ["AAPL", "AAPL", "AAPL"],
            "source": ["sp500"] * 3,
        }
    )

    checked = check_constituents(frame, [B])

    assert checked.valid.height == 2 and checked.rejected == {"duplicate_symbol": 1}
