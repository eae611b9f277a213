"""SEC company_tickers.json through the real parser, with replayed HTTP and files."""

from __future__ import annotations

import datetime as dt

import pytest
import requests

from market_assets.core.providers.base import AuthError, PermanentError
from market_assets.core.providers.sec_tickers import (
    COMPANY_TICKERS_URL,
    SecTickersProvider,
    parse_company_tickers,
    sec_limiter,
)
from market_assets.core.reference.sources import SnapshotRequest
from market_assets_tests.core.reference.sources import SEC_ROWS, company_tickers, write
from market_assets_tests.realdata import require

TODAY = dt.date(2025, 7, 21)
REQUEST = SnapshotRequest(TODAY, TODAY + dt.timedelta(days=1))


def test_fetch_cik_map_sends_the_configured_user_agent(requests_mock):
    requests_mock.get(COMPANY_TICKERS_URL, text=company_tickers(SEC_ROWS))
    provider = SecTickersProvider(
        user_agent="Jane Doe jane@example.org", session=requests.Session(), today=TODAY
    )

    result = provider.fetch_cik_map(REQUEST)

    assert requests_mock.last_request.headers["User-Agent"] == "Jane Doe jane@example.org"
    assert result.requests == 1
    assert dict(result.frame.select("symbol", "cik").iter_rows())["BRK.B"] == 1067983
    assert result.frame["as_of"].unique().to_list() == [TODAY]


def test_fetch_cik_map_reads_the_user_agent_from_the_named_variable(requests_mock, monkeypatch):
    requests_mock.get(COMPANY_TICKERS_URL, text=company_tickers(SEC_ROWS))
    monkeypatch.setenv("TEST_SEC_UA", "Research Desk desk@example.org")
    provider = SecTickersProvider(
        user_agent_env="TEST_SEC_UA", session=requests.Session(), today=TODAY
    )

    provider.fetch_cik_map(REQUEST)

    assert requests_mock.last_request.headers["User-Agent"] == "Research Desk desk@example.org"


def test_fetch_cik_map_without_a_user_agent_raises_auth_error_before_any_request(requests_mock):
    provider = SecTickersProvider(session=requests.Session(), today=TODAY)

    with pytest.raises(AuthError, match="the SEC requires a User-Agent"):
        provider.fetch_cik_map(REQUEST)
    assert requests_mock.call_count == 0


def test_sec_limiter_refuses_the_eleventh_request_within_a_second():
    limiter = sec_limiter()

    granted = [limiter.try_acquire("sec_tickers", blocking=False) for _ in range(11)]

    assert granted == [True] * 10 + [False]


def test_fetch_cik_map_for_a_past_session_does_not_use_todays_map(requests_mock):
    provider = SecTickersProvider(user_agent="a b@c.d", session=requests.Session(), today=TODAY)

    result = provider.fetch_cik_map(SnapshotRequest(dt.date(2025, 7, 1), dt.date(2025, 7, 2)))

    assert result.frame.is_empty()
    assert requests_mock.call_count == 0


def test_parse_company_tickers_maps_sec_spellings_to_cqs():
    frame = parse_company_tickers(
        company_tickers([(19617, "JPM-PC", "JPMORGAN CHASE & CO"), (1, "GRP-UN", "G")]), "x", None
    )

    assert frame.select("symbol", "sec_ticker").rows() == [("JPMpC", "JPM-PC"), ("GRP.U", "GRP-UN")]


def test_parse_company_tickers_given_a_row_without_ticker_names_it():
    with pytest.raises(PermanentError, match="row 0: expected cik_str, ticker and title"):
        parse_company_tickers('{"0": {"cik_str": 1}}', "company_tickers.json", None)


def test_files_dated_after_the_last_session_are_left_out(tmp_path):
    write(tmp_path, "company_tickers_2025-07-18.json", company_tickers(SEC_ROWS[:1]))
    write(tmp_path, "company_tickers_2025-07-25.json", company_tickers(SEC_ROWS))

    result = SecTickersProvider(files_dir=tmp_path).fetch_cik_map(REQUEST)

    assert result.frame["as_of"].unique().to_list() == [dt.date(2025, 7, 18)]
    assert result.frame.height == 1


def test_real_company_tickers_map_meta_and_berkshire():
    folder = require("sec/company_tickers.json").parent

    frame = SecTickersProvider(files_dir=folder).fetch_cik_map(REQUEST).frame

    ciks = dict(frame.select("symbol", "cik").iter_rows())
    assert frame.height == 9610
    assert ciks["META"] == 1326801
    assert ciks["BRK.B"] == ciks["BRK.A"] == 1067983
    assert frame["as_of"].null_count() == frame.height  # the sample file is undated
