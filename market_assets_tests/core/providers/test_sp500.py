"""S&P 500 membership sources through the real parsers, with replayed HTTP and files."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
import requests

from market_assets.core.providers.base import PermanentError
from market_assets.core.providers.sp500 import (
    CONSTITUENTS_URL,
    HOLDINGS_URL,
    INTERVALS_URL,
    Sp500Provider,
    date_from_name,
    identity_hints,
    parse_constituents_table,
    parse_holdings,
    parse_intervals,
    snapshot_from_intervals,
)
from market_assets.core.reference.sources import ConstituentsRequest
from market_assets_tests.core.reference.sources import (
    constituents_csv,
    holdings_csv,
    intervals_csv,
    write,
)
from market_assets_tests.realdata import require

INTERVALS = [
    ("AAPL", "1996-01-02", ""),
    ("FB", "2013-12-23", "2022-06-09"),
    ("META", "2022-06-09", ""),
    ("PCG", "1996-01-02", "2019-01-18"),
    ("PCG", "2022-10-03", ""),
    ("BRK.B", "2010-02-16", ""),
    ("XRX", "1996-01-02", "2022-06-10"),
    ("ZZZ", "2022-06-10", ""),
]
TABLE = [
    ("AAPL", "Apple Inc.", "1982-11-30", 320193),
    ("META", "Meta Platforms", "2013-12-23", 1326801),
    ("PCG", "PG&E Corporation", "2022-10-03", 1004980),
    ("BRK.B", "Berkshire Hathaway", "2010-02-16", 1067983),
]


def members(frame: pl.DataFrame, day: str) -> list[str]:
    return sorted(frame.filter(pl.col("session") == dt.date.fromisoformat(day))["symbol"])


def test_snapshot_from_intervals_treats_end_date_as_the_first_day_out():
    intervals = parse_intervals(intervals_csv(INTERVALS), "intervals.csv")
    days = [dt.date(2022, 6, 8), dt.date(2022, 6, 9), dt.date(2022, 6, 10)]

    frame = snapshot_from_intervals(intervals, days)

    assert "FB" in members(frame, "2022-06-08") and "META" not in members(frame, "2022-06-08")
    assert "META" in members(frame, "2022-06-09") and "FB" not in members(frame, "2022-06-09")
    assert members(frame, "2022-06-10") == ["AAPL", "BRK.B", "META", "ZZZ"]


def test_parse_intervals_given_end_before_start_names_the_line():
    text = intervals_csv([("AAPL", "2000-01-03", ""), ("BAD", "2001-01-02", "2000-01-03")])

    with pytest.raises(PermanentError, match="intervals.csv: line 3: end_date 2000-01-03"):
        parse_intervals(text, "intervals.csv")


def test_parse_holdings_reads_as_of_and_drops_cash_and_futures():
    text = holdings_csv(
        dt.date(2023, 4, 6),
        [
            ("AAPL", "APPLE INC", "Equity", "7.12"),
            ("BRKB", "BERKSHIRE HATHAWAY INC CLASS B", "Equity", "1.64"),
            ("USD", "USD CASH", "Cash", "0.05"),
            ("ESM3", "S&P500 EMINI JUN 23", "Futures", "0.00"),
        ],
    )

    as_of, rows = parse_holdings(text, "IVV_holdings.csv")

    assert as_of == dt.date(2023, 4, 6)
    assert rows.height == 4
    assert rows.filter(pl.col("asset_class") == "Equity")["weight"].to_list() == [7.12, 1.64]


def test_holdings_snapshot_restores_the_class_dot_and_counts_dropped_rows(tmp_path):
    write(tmp_path, "sp500_constituents_2023-04-06.csv", constituents_csv(TABLE))
    write(
        tmp_path,
        "IVV_holdings_2023-04-06.csv",
        holdings_csv(
            dt.date(2023, 4, 6),
            [
                ("AAPL", "APPLE INC", "Equity", "7.12"),
                ("BRKB", "BERKSHIRE HATHAWAY INC CLASS B", "Equity", "1.64"),
                ("USD", "USD CASH", "Cash", "0.05"),
            ],
        ),
    )
    provider = Sp500Provider(files_dir=tmp_path)
    sources, _ = provider.read_sources()
    sources.table_as_of = None  # only the holdings describe the session here

    frame, notes = provider.snapshots(sources, [dt.date(2023, 4, 6)])

    assert frame["symbol"].to_list() == ["AAPL", "BRK.B"]
    assert frame["weight"].to_list() == [7.12, 1.64]
    assert frame["source_detail"].unique().to_list() == ["holdings:IVV_holdings_2023-04-06.csv"]
    assert notes["holdings_rows_dropped"] == "Cash: 1"


def test_parse_holdings_without_as_of_line_raises_error_naming_the_file():
    with pytest.raises(PermanentError, match="x.csv: no 'Fund Holdings as of' line"):
        parse_holdings("Ticker,Name\nAAPL,APPLE\n", "x.csv")


def test_parse_constituents_table_reads_symbol_cik_and_date_added():
    table = parse_constituents_table(constituents_csv(TABLE), "constituents.csv")

    assert table.row(1, named=True) == {
        "symbol": "META",
        "name": "Meta Platforms",
        "cik": 1326801,
        "date_added": dt.date(2013, 12, 23),
    }


def test_identity_hints_give_a_renamed_tickers_earlier_symbol_the_same_cik():
    intervals = parse_intervals(intervals_csv(INTERVALS), "intervals.csv")
    table = parse_constituents_table(constituents_csv(TABLE), "constituents.csv")

    hints, renames = identity_hints(intervals, table)

    assert renames == [("FB", "META", dt.date(2022, 6, 9))]
    assert hints.filter(pl.col("symbol") == "FB")["cik"].to_list() == [1326801]


def test_identity_hints_link_nothing_when_two_intervals_end_that_day():
    rows = [*INTERVALS, ("OTHER", "2015-01-02", "2022-06-09")]
    intervals = parse_intervals(intervals_csv(rows), "intervals.csv")
    table = parse_constituents_table(constituents_csv(TABLE), "constituents.csv")

    _, renames = identity_hints(intervals, table)

    assert renames == []


def test_fetch_constituents_over_http_combines_the_three_sources(requests_mock):
    requests_mock.get(INTERVALS_URL, text=intervals_csv(INTERVALS))
    requests_mock.get(CONSTITUENTS_URL, text=constituents_csv(TABLE))
    requests_mock.get(
        HOLDINGS_URL,
        text=holdings_csv(dt.date(2025, 7, 25), [("AAPL", "APPLE INC", "Equity", "7.0")]),
    )
    provider = Sp500Provider(session=requests.Session(), today=dt.date(2025, 7, 24))

    result = provider.fetch_constituents(
        ConstituentsRequest(dt.date(2022, 6, 8), dt.date(2022, 6, 10))
    )

    assert result.requests == 3
    assert members(result.frame, "2022-06-08") == ["AAPL", "BRK.B", "FB", "XRX"]
    fb = result.frame.filter(pl.col("symbol") == "FB")
    assert fb["cik"].to_list() == [1326801]
    assert fb["name"].to_list() == [None]  # today's name never labels a past session
    assert result.notes["renames_inferred"] == "1"


def test_fetch_constituents_serves_a_dated_table_on_its_own_session_only(tmp_path):
    write(tmp_path, "sp500_constituents_2025-07-21.csv", constituents_csv(TABLE))

    result = Sp500Provider(files_dir=tmp_path).fetch_constituents(
        ConstituentsRequest(dt.date(2025, 7, 18), dt.date(2025, 7, 23))
    )

    assert result.frame["session"].unique().to_list() == [dt.date(2025, 7, 21)]
    assert result.notes["sessions_without_source"] == "2 session(s) from 2025-07-18 to 2025-07-22"


def test_fetch_constituents_given_another_index_refuses_it(tmp_path):
    write(tmp_path, "sp500_ticker_start_end.csv", intervals_csv(INTERVALS))

    with pytest.raises(PermanentError, match="knows only SP500, not 'NDX'"):
        Sp500Provider(files_dir=tmp_path).fetch_constituents(
            ConstituentsRequest(dt.date(2022, 6, 8), dt.date(2022, 6, 9), index="NDX")
        )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sp500_ticker_start_end_2025-11.csv", dt.date(2025, 11, 1)),
        ("IVV_holdings_2023-04-06.csv", dt.date(2023, 4, 6)),
        ("constituents.csv", None),
    ],
)
def test_date_from_name_reads_day_or_month(name, expected):
    assert date_from_name(name) == expected


def test_real_ivv_holdings_agree_with_the_interval_file_on_2023_04_06():
    folder = require("sp500/IVV_holdings_2023-04-06.csv").parent
    provider = Sp500Provider(files_dir=folder)
    sources, _ = provider.read_sources()
    day = dt.date(2023, 4, 6)
    from_intervals = set(snapshot_from_intervals(sources.intervals, [day])["symbol"])
    holdings_only = Sp500Provider(files_dir=folder)
    sources.intervals = None  # let the holdings export describe the day

    frame, notes = holdings_only.snapshots(sources, [day])

    from_holdings = set(frame["symbol"])
    assert len(from_holdings) == 503
    assert len(from_holdings & from_intervals) >= 500
    assert {"BRK.B", "BF.B"} <= from_holdings
    assert "Futures: 1" in notes["holdings_rows_dropped"]
