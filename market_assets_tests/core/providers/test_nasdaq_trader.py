"""NASDAQ Trader symbol directories through the real parser, from replayed HTTP and files."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
import requests

from market_assets.core.providers.base import PermanentError, TransientError
from market_assets.core.providers.nasdaq_trader import (
    NASDAQ_LISTED_URL,
    OTHER_LISTED_URL,
    NasdaqTraderProvider,
    asset_type,
    parse_symbol_directory,
)
from market_assets.core.reference.sources import SnapshotRequest
from market_assets_tests.core.reference.sources import (
    NASDAQ_ROWS,
    OTHER_ROWS,
    nasdaq_listed,
    other_listed,
    write,
)
from market_assets_tests.realdata import require

CREATED = dt.datetime(2025, 7, 21, 21, 31)
SESSION = dt.date(2025, 7, 21)


def by_symbol(frame: pl.DataFrame) -> dict[str, dict]:
    return {row["symbol"]: row for row in frame.iter_rows(named=True)}


def test_parse_nasdaq_listed_keeps_test_issues_etfs_and_financial_status_as_flags():
    parsed = parse_symbol_directory(nasdaq_listed(NASDAQ_ROWS, CREATED), "nasdaqlisted.txt")

    rows = by_symbol(parsed.rows)
    assert parsed.kind == "nasdaqlisted"
    assert len(rows) == len(NASDAQ_ROWS)
    assert rows["ZAZZT"]["is_test_issue"] is True
    assert rows["QQQ"]["is_etf"] is True and rows["QQQ"]["asset_type"] == "etf"
    assert rows["ABCDW"]["financial_status"] == "D"
    assert rows["ABCDW"]["asset_type"] == "warrant"
    assert rows["AAPL"]["exchange"] == "NASDAQ" and rows["AAPL"]["exchange_code"] == "Q"
    assert rows["AAPL"]["round_lot_size"] == 100
    assert parsed.created_at.isoformat() == "2025-07-21T21:31:00-04:00"


def test_parse_other_listed_uses_cqs_symbols_and_keeps_the_nasdaq_form():
    parsed = parse_symbol_directory(other_listed(OTHER_ROWS, CREATED), "otherlisted.txt")

    rows = by_symbol(parsed.rows)
    assert parsed.kind == "otherlisted"
    assert rows["BRK.B"]["vendor_symbol"] == "BRK B"
    assert rows["ABRpD"]["vendor_symbol"] == "ABR-D"
    assert rows["ABRpD"]["asset_type"] == "preferred"
    assert rows["AACT.WS"]["vendor_symbol"] == "AACT+"
    assert rows["AACT.WS"]["asset_type"] == "warrant"
    assert rows["SPY"]["exchange"] == "NYSE Arca"
    assert rows["PCG"]["exchange"] == "NYSE"
    assert rows["ZXIET"]["exchange"] == "IEX" and rows["ZXIET"]["is_test_issue"] is True
    assert rows["PCG"]["financial_status"] is None


def test_parse_directory_without_file_creation_time_raises_error_naming_the_file():
    truncated = "\r\n".join(nasdaq_listed(NASDAQ_ROWS, CREATED).splitlines()[:-1])

    with pytest.raises(PermanentError, match="nasdaqlisted.txt: no trailing 'File Creation Time'"):
        parse_symbol_directory(truncated, "nasdaqlisted.txt")


def test_parse_directory_given_a_short_row_names_the_line():
    text = nasdaq_listed([*NASDAQ_ROWS, ("BAD", "Too Few Fields")], CREATED)

    with pytest.raises(PermanentError, match="line 7: 2 fields, expected 8"):
        parse_symbol_directory(text, "nasdaqlisted.txt")


def test_parse_directory_given_an_unknown_header_names_it():
    with pytest.raises(PermanentError, match="neither nasdaqlisted.txt's nor otherlisted.txt's"):
        parse_symbol_directory("Ticker|Name\nA|B\nFile Creation Time: 0721202521:31|\n", "x.txt")


@pytest.mark.parametrize(
    ("symbol", "name", "expected"),
    [
        ("XYZ.U", "Xyz Acquisition Corp Units", "unit"),
        ("XYZr", "Xyz Rights", "right"),
        ("TSM", "Taiwan Semiconductor American Depositary Shares", "adr"),
        ("XYZ", "Xyz Corp 5.00% Senior Notes due 2030", "note"),
        ("XYZ", "Xyz Corp Common Stock", "stock"),
    ],
)
def test_asset_type_reads_cqs_suffix_then_name(symbol, name, expected):
    assert asset_type(symbol, name, False) == expected


def test_fetch_listings_over_http_serves_the_session_of_the_creation_date(requests_mock):
    requests_mock.get(NASDAQ_LISTED_URL, text=nasdaq_listed(NASDAQ_ROWS, CREATED))
    requests_mock.get(OTHER_LISTED_URL, text=other_listed(OTHER_ROWS, CREATED))
    provider = NasdaqTraderProvider(session=requests.Session())

    result = provider.fetch_listings(SnapshotRequest(SESSION, SESSION + dt.timedelta(days=2)))

    assert result.requests == 2
    assert result.frame.height == len(NASDAQ_ROWS) + len(OTHER_ROWS)
    assert result.frame["session"].unique().to_list() == [SESSION]
    assert result.notes["sessions_without_directory"] == "2025-07-22"


def test_fetch_listings_for_an_earlier_session_returns_no_rows_and_names_it(requests_mock):
    requests_mock.get(NASDAQ_LISTED_URL, text=nasdaq_listed(NASDAQ_ROWS, CREATED))
    requests_mock.get(OTHER_LISTED_URL, text=other_listed(OTHER_ROWS, CREATED))
    provider = NasdaqTraderProvider(session=requests.Session())

    result = provider.fetch_listings(SnapshotRequest(dt.date(2025, 7, 18), SESSION))

    assert result.frame.is_empty()
    assert result.notes["sessions_without_directory"] == "2025-07-18"


def test_fetch_listings_given_server_error_raises_transient_error(requests_mock):
    requests_mock.get(NASDAQ_LISTED_URL, status_code=503, text="maintenance")
    provider = NasdaqTraderProvider(session=requests.Session())

    with pytest.raises(TransientError, match="HTTP 503"):
        provider.fetch_listings(SnapshotRequest(SESSION, SESSION + dt.timedelta(days=1)))


def test_fetch_listings_from_files_pairs_both_directories_by_date(tmp_path):
    write(tmp_path, "a/nasdaqlisted_2025-07-21.txt", nasdaq_listed(NASDAQ_ROWS, CREATED))
    write(tmp_path, "b/otherlisted_2025-07-21.txt", other_listed(OTHER_ROWS, CREATED))
    later = CREATED + dt.timedelta(days=1)
    write(tmp_path, "a/nasdaqlisted_2025-07-22.txt", nasdaq_listed(NASDAQ_ROWS[:2], later))

    result = NasdaqTraderProvider(files_dir=tmp_path).fetch_listings(
        SnapshotRequest(SESSION, SESSION + dt.timedelta(days=2))
    )

    counts = dict(result.frame.group_by("session").len().iter_rows())
    assert counts == {SESSION: 11, dt.date(2025, 7, 22): 2}
    assert result.notes["incomplete_sessions"] == "2025-07-22: no otherlisted"


def test_from_config_given_unknown_setting_names_it():
    with pytest.raises(ValueError, match=r"unknown nasdaq_trader setting\(s\) \['url'\]"):
        NasdaqTraderProvider.from_config({"kind": "nasdaq_trader", "url": "x"})


def test_real_directories_of_2025_07_21_parse_every_row():
    folder = require("nasdaqtrader").parent

    result = NasdaqTraderProvider(files_dir=folder / "nasdaqtrader").fetch_listings(
        SnapshotRequest(SESSION, SESSION + dt.timedelta(days=1))
    )

    frame = result.frame
    assert frame.height == 4973 + 6606
    assert frame["symbol"].n_unique() == frame.height
    rows = by_symbol(frame)
    assert rows["BRK.B"]["exchange"] == "NYSE"
    assert rows["ABRpD"]["vendor_symbol"] == "ABR-D"
    assert frame.filter(pl.col("is_test_issue")).height > 0
    assert frame.filter(pl.col("is_etf")).height > 4000
