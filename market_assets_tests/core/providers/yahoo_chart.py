"""A Yahoo Finance chart endpoint on a requests_mock transport, for yfinance tests.

Payloads follow the documented `/v8/finance/chart/{symbol}` shape (chart.result[0].meta,
timestamp, indicators.quote[0], indicators.adjclose[0], events.splits/dividends) and are
built here from bars the test chooses; nothing is downloaded. Responses can be scripted per
symbol (status, body, headers) to play rate limits, outages and malformed payloads. The
cookie and crumb endpoints yfinance visits are answered too; any other URL raises
requests_mock's NoMockAddress (a ConnectionError), so no test can reach the network.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Any

import requests
import requests_mock

from market_assets.core.calendar import get_calendar

CHART_URL = re.compile(r"https://query[12]\.finance\.yahoo\.com/v8/finance/chart/[^/?]+")
HANDSHAKES = (
    "https://fc.yahoo.com/",
    "https://guce.yahoo.com/consent",
    "https://query1.finance.yahoo.com/v1/test/getcrumb",
    "https://query2.finance.yahoo.com/v1/test/getcrumb",
)


def chart_error(code: str, description: str) -> dict[str, Any]:
    """Yahoo's chart error body, e.g. ("Not Found", "No data found, symbol may be delisted")."""
    return {"chart": {"result": None, "error": {"code": code, "description": description}}}


NOT_FOUND = chart_error("Not Found", "No data found, symbol may be delisted")


def epoch(moment: dt.datetime) -> int:
    return int(moment.timestamp())


def session_open(session: dt.date) -> dt.datetime:
    return get_calendar().session_open_close(session)[0]


def daily_bars(symbol_base: float, sessions: list[dt.date]) -> list[dict[str, Any]]:
    """One Yahoo-style daily bar per session, stamped at the session's open like Yahoo does.

    Prices step by 1.0 per session from `symbol_base`; adjclose is 99% of close.
    """
    bars = []
    for index, session in enumerate(sessions):
        price = symbol_base + index
        bars.append(
            {
                "t": epoch(session_open(session)),
                "open": price,
                "high": price + 2.5,
                "low": price - 1.25,
                "close": price + 1.0,
                "volume": 1_000_000 + 1_000 * index,
                "adjclose": round((price + 1.0) * 0.99, 4),
            }
        )
    return bars


def minute_bars(symbol_base: float, sessions: list[dt.date], minutes: int) -> list[dict]:
    """`minutes` one-minute bars from each session's open."""
    bars = []
    for session in sessions:
        start = epoch(session_open(session))
        for minute in range(minutes):
            price = symbol_base + minute / 100
            bars.append(
                {
                    "t": start + 60 * minute,
                    "open": price,
                    "high": price + 0.05,
                    "low": price - 0.03,
                    "close": price + 0.01,
                    "volume": 100 + minute,
                }
            )
    return bars


@dataclass
class Reply:
    """A scripted chart response."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class YahooChart:
    """The chart endpoint: serves `bars[symbol]` within period1..period2, or scripted replies.

    `calls` lists (symbol, query) of every chart request, in order.
    """

    def __init__(self, adapter: requests_mock.Adapter) -> None:
        self.bars: dict[str, list[dict[str, Any]]] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self.scripts: dict[str, list[Reply]] = {}
        self.calls: list[tuple[str, dict[str, list[str]]]] = []
        for url in HANDSHAKES:
            adapter.register_uri("GET", url, text="crumb-0" if "crumb" in url else "")
        adapter.register_uri("GET", CHART_URL, text=self._respond)

    def script(self, symbol: str, *replies: Reply) -> None:
        """Answer `symbol`'s next chart requests with `replies`, then with its bars."""
        self.scripts.setdefault(symbol, []).extend(replies)

    def calls_for(self, symbol: str) -> int:
        return sum(1 for called, _ in self.calls if called == symbol)

    def _respond(self, request: Any, context: Any) -> str:
        symbol = request.path.rsplit("/", 1)[1]
        self.calls.append((symbol, request.qs))
        if self.scripts.get(symbol):
            reply = self.scripts[symbol].pop(0)
            context.status_code = reply.status
            context.headers.update(reply.headers)
            return reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
        if symbol not in self.bars:
            context.status_code = 404
            return json.dumps(NOT_FOUND)
        start, end = int(request.qs["period1"][0]), int(request.qs["period2"][0])
        interval = request.qs["interval"][0]
        bars = [bar for bar in self.bars[symbol] if start <= bar["t"] < end]
        return json.dumps(chart_payload(symbol, interval, bars, self.events.get(symbol)))


def chart_payload(
    symbol: str, interval: str, bars: list[dict[str, Any]], events: dict | None = None
) -> dict[str, Any]:
    """Yahoo's chart JSON for `bars` (empty bars give Yahoo's empty-range answer)."""
    meta: dict[str, Any] = {
        "currency": "USD",
        "symbol": symbol,
        "exchangeName": "NMS",
        "instrumentType": "EQUITY",
        "gmtoffset": -18000,
        "timezone": "EST",
        "exchangeTimezoneName": "America/New_York",
        "priceHint": 2,
        "dataGranularity": interval,
        "range": "",
        "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
    }
    if interval != "1d":
        sessions = sorted({dt.datetime.fromtimestamp(bar["t"], dt.UTC).date() for bar in bars})
        meta["tradingPeriods"] = [
            [
                {
                    "timezone": "EST",
                    "start": epoch(get_calendar().session_open_close(day)[0]),
                    "end": epoch(get_calendar().session_open_close(day)[1]),
                    "gmtoffset": -18000,
                }
            ]
            for day in sessions
        ]
    result: dict[str, Any] = {"meta": meta}
    if bars:
        result["timestamp"] = [bar["t"] for bar in bars]
        result["indicators"] = {
            "quote": [
                {
                    name: [bar.get(name) for bar in bars]
                    for name in ("open", "high", "low", "close", "volume")
                }
            ]
        }
        if interval == "1d":
            result["indicators"]["adjclose"] = [{"adjclose": [bar.get("adjclose") for bar in bars]}]
    else:
        result["indicators"] = {"quote": [{}], "adjclose": [{}]}
    if events:
        result["events"] = events
    return {"chart": {"result": [result], "error": None}}


def split_event(session: dt.date, numerator: float, denominator: float) -> dict[str, Any]:
    moment = epoch(session_open(session))
    return {
        str(moment): {
            "date": moment,
            "numerator": numerator,
            "denominator": denominator,
            "splitRatio": f"{numerator:g}:{denominator:g}",
        }
    }


def dividend_event(session: dt.date, amount: float) -> dict[str, Any]:
    moment = epoch(session_open(session))
    return {str(moment): {"amount": amount, "date": moment}}


def yahoo_session() -> tuple[requests.Session, YahooChart]:
    """A plain requests.Session whose https:// transport is the fake Yahoo."""
    session = requests.Session()
    adapter = requests_mock.Adapter(case_sensitive=True)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session, YahooChart(adapter)
