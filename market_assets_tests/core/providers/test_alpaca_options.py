"""Alpaca option chain snapshots through alpaca-py's OptionHistoricalDataClient, replayed.

Responses follow the documented `GET /v1beta1/options/snapshots/{underlying}` shape
(`{"snapshots": {contract: {"latestQuote", "latestTrade", "impliedVolatility", "greeks",
"dailyBar"}}, "next_page_token"}`), built here; requests_mock is the client's transport.
"""

import datetime as dt

import pytest
import requests
import requests_mock

from market_assets.core.providers.alpaca import AlpacaProvider
from market_assets.core.providers.base import AuthError, BadRequestError, OptionChainRequest

URL = "https://data.alpaca.markets/v1beta1/options/snapshots/AAPL"
THU = dt.date(2025, 2, 20)
EVENING = dt.datetime(2025, 2, 20, 23, 0, tzinfo=dt.UTC)


def snapshot(bid: float, ask: float, iv: float | None, with_greeks: bool) -> dict:
    body: dict = {
        "latestQuote": {
            "t": "2025-02-20T20:59:58.5Z",
            "bp": bid,
            "bs": 12,
            "ap": ask,
            "as": 7,
            "bx": "C",
            "ax": "C",
            "c": "A",
        },
        "latestTrade": {
            "t": "2025-02-20T20:41:00Z",
            "p": (bid + ask) / 2,
            "s": 3,
            "x": "C",
            "c": "I",
        },
        "dailyBar": {
            "t": "2025-02-20T05:00:00Z",
            "o": 1,
            "h": 2,
            "l": 1,
            "c": 1.5,
            "v": 321,
            "n": 40,
            "vw": 1.4,
        },
    }
    if iv is not None:
        body["impliedVolatility"] = iv
    if with_greeks:
        body["greeks"] = {"delta": 0.52, "gamma": 0.03, "rho": 0.1, "theta": -0.2, "vega": 0.25}
    return body


def provider(session: requests.Session, feed: str = "indicative") -> AlpacaProvider:
    return AlpacaProvider(session=session, option_feed=feed, now=lambda: EVENING)


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("APCA_API_KEY_ID", "PK" + "T" * 18)
    monkeypatch.setenv("APCA_API_SECRET_KEY", "s" * 40)


@pytest.mark.usefixtures("keys")
def test_snapshots_of_every_page_become_chain_rows_with_vendor_greeks():
    session = requests.Session()
    adapter = requests_mock.Adapter()
    session.mount("https://", adapter)
    adapter.register_uri(
        "GET",
        URL,
        [
            {
                "json": {
                    "snapshots": {"AAPL250321C00250000": snapshot(4.0, 4.2, 0.31, True)},
                    "next_page_token": "p2",
                }
            },
            {
                "json": {
                    "snapshots": {"AAPL250321P00250000": snapshot(3.0, 3.1, None, False)},
                    "next_page_token": None,
                }
            },
        ],
    )

    result = provider(session, "opra").fetch_options(
        OptionChainRequest(("AAPL",), THU, THU + dt.timedelta(days=1))
    )

    rows = result.frame.sort("contract").to_dicts()
    assert [r["contract"] for r in rows] == ["AAPL250321C00250000", "AAPL250321P00250000"]
    assert (rows[0]["bid"], rows[0]["ask"], rows[0]["bid_size"], rows[0]["volume"]) == (
        4.0,
        4.2,
        12,
        321,
    )
    assert (rows[0]["vendor_iv"], rows[0]["vendor_delta"], rows[0]["vendor_vega"]) == (
        0.31,
        0.52,
        0.25,
    )
    assert rows[1]["vendor_iv"] is None and rows[1]["open_interest"] is None
    assert rows[0]["ts"] == dt.datetime(2025, 2, 20, 21, tzinfo=dt.UTC)
    assert rows[0]["quote_ts"] == dt.datetime(2025, 2, 20, 20, 59, 58, 500000, tzinfo=dt.UTC)
    assert result.requests == 2
    assert result.notes == {"option_feed": "opra"}
    assert "feed=opra" in adapter.request_history[0].url


@pytest.mark.usefixtures("keys")
def test_a_past_session_or_intraday_times_are_refused_naming_the_providers_that_have_them():
    alpaca = provider(requests.Session())

    with pytest.raises(BadRequestError, match="databento_options"):
        alpaca.fetch_options(OptionChainRequest(("AAPL",), dt.date(2025, 2, 18), THU))
    with pytest.raises(BadRequestError, match="intraday"):
        alpaca.fetch_options(
            OptionChainRequest(("AAPL",), THU, THU + dt.timedelta(days=1), (dt.time(10),))
        )


def test_missing_keys_raise_auth_error_naming_the_variables(monkeypatch):
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    monkeypatch.delenv("APCA_API_SECRET_KEY", raising=False)

    with pytest.raises(AuthError, match="APCA_API_KEY_ID"):
        provider(requests.Session()).fetch_options(
            OptionChainRequest(("AAPL",), THU, THU + dt.timedelta(days=1))
        )


def test_option_feed_setting_is_validated():
    with pytest.raises(ValueError, match="option_feed"):
        AlpacaProvider.from_config({"kind": "alpaca", "option_feed": "sip"})
