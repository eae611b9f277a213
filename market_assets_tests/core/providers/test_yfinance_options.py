"""Yahoo option chains through yfinance's Ticker.options / option_chain, replayed.

Responses follow the documented `/v7/finance/options/{symbol}` shape (optionChain.result[0]:
expirationDates, quote, options[0].calls/puts), built here; a requests_mock adapter is the
session's transport (the cookie and crumb handshakes are answered by YahooChart).
"""

import datetime as dt
import re

import pytest

from market_assets.core.providers.base import BadRequestError, OptionChainRequest
from market_assets.core.providers.yfinance import YFinanceProvider
from market_assets_tests.core.providers.yahoo_chart import yahoo_session

THU = dt.date(2025, 2, 20)
MARCH = int(dt.datetime(2025, 3, 21, tzinfo=dt.UTC).timestamp())
APRIL = int(dt.datetime(2025, 4, 17, tzinfo=dt.UTC).timestamp())
OPTIONS_URL = re.compile(r"https://query2\.finance\.yahoo\.com/v7/finance/options/AAPL")


def contract(symbol: str, strike: float, bid: float, size: str = "REGULAR") -> dict:
    return {
        "contractSymbol": symbol,
        "strike": strike,
        "currency": "USD",
        "lastPrice": bid + 0.05,
        "change": 0.1,
        "percentChange": 1.0,
        "volume": 120,
        "openInterest": 3400,
        "bid": bid,
        "ask": bid + 0.1,
        "contractSize": size,
        "expiration": MARCH,
        "lastTradeDate": int(dt.datetime(2025, 2, 20, 20, 55, tzinfo=dt.UTC).timestamp()),
        "impliedVolatility": 0.3125,
        "inTheMoney": False,
    }


def payload(expiration: int) -> dict:
    calls = [contract("AAPL250321C00250000", 250.0, 4.0)] if expiration == MARCH else []
    puts = (
        [contract("AAPL1250417P00125000", 125.0, 1.0, size="ADJUSTED")]
        if expiration == APRIL
        else []
    )
    return {
        "optionChain": {
            "result": [
                {
                    "underlyingSymbol": "AAPL",
                    "expirationDates": [MARCH, APRIL],
                    "strikes": [125.0, 250.0],
                    "hasMiniOptions": False,
                    "quote": {
                        "regularMarketPrice": 245.5,
                        "regularMarketTime": int(
                            dt.datetime(2025, 2, 20, 21, tzinfo=dt.UTC).timestamp()
                        ),
                    },
                    "options": [{"expirationDate": expiration, "calls": calls, "puts": puts}],
                }
            ],
            "error": None,
        }
    }


def respond(request, context):  # noqa: ANN001 - requests_mock callback
    date = int(request.qs.get("date", [MARCH])[0])
    return __import__("json").dumps(payload(date))


def test_every_expiration_becomes_chain_rows_priced_off_yahoos_underlying_quote():
    session, chart = yahoo_session()
    adapter = session.get_adapter("https://")
    adapter.register_uri("GET", OPTIONS_URL, text=respond)
    provider = YFinanceProvider(session=session, today=lambda: THU)

    result = provider.fetch_options(OptionChainRequest(("AAPL",), THU, THU + dt.timedelta(days=1)))

    rows = result.frame.sort("contract").to_dicts()
    assert [(r["contract"], r["bid"], r["ask"], r["volume"], r["open_interest"]) for r in rows] == [
        ("AAPL1250417P00125000", 1.0, 1.1, 120, 3400),
        ("AAPL250321C00250000", 4.0, 4.1, 120, 3400),
    ]
    assert rows[0]["adjusted"] is True and rows[-1]["adjusted"] is False
    assert rows[-1]["vendor_iv"] == 0.3125 and rows[-1]["vendor_delta"] is None
    assert rows[-1]["underlying_price"] == 245.5
    assert rows[-1]["ts"] == dt.datetime(2025, 2, 20, 21, tzinfo=dt.UTC)
    assert result.requests == 3  # the expirations, then one per expiration
    assert chart.calls == []


def test_a_past_session_is_refused():
    session, _ = yahoo_session()
    provider = YFinanceProvider(session=session, today=lambda: THU)

    with pytest.raises(BadRequestError, match="current option chain only"):
        provider.fetch_options(OptionChainRequest(("AAPL",), dt.date(2025, 2, 3), THU))
