"""Alpaca's Market Data API on a requests_mock transport, for alpaca-py tests.

Bars follow the documented `GET /v2/stocks/bars` shape (`{"bars": {"AAPL": [{"t", "o", "h",
"l", "c", "v", "n", "vw"}]}, "next_page_token": ...}`) and corporate actions the
`GET /v1/corporate-actions` shape (`{"corporate_actions": {"forward_splits": [...], ...},
"next_page_token": ...}`), built here from rows the test chooses; nothing is downloaded.
Pages hold at most `page_size` items, so pagination can be exercised with a few rows.
Responses can be scripted (status, body, headers). Any other URL raises NoMockAddress.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import requests
import requests_mock

from market_assets.core.calendar import get_calendar
from market_assets.core.stores.layout import EXCHANGE_TZ

BARS_URL = "https://data.alpaca.markets/v2/stocks/bars"
ACTIONS_URL = "https://data.alpaca.markets/v1/corporate-actions"


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def daily_bars(base: float, sessions: list[dt.date]) -> list[dict[str, Any]]:
    """Alpaca daily bars: stamped at midnight New York, prices stepping 1.0 per session."""
    bars = []
    for index, session in enumerate(sessions):
        price = base + index
        midnight = dt.datetime.combine(session, dt.time(0), tzinfo=EXCHANGE_TZ)
        bars.append(
            {
                "t": rfc3339(midnight),
                "o": price,
                "h": price + 2.5,
                "l": price - 1.25,
                "c": price + 1.0,
                "v": 2_000_000 + index,
                "n": 15_000 + index,
                "vw": price + 0.4,
            }
        )
    return bars


def minute_bars(base: float, session: dt.date, offsets: list[int]) -> list[dict[str, Any]]:
    """Alpaca minute bars at `offsets` minutes from the session's regular open (negative for
    pre-market, >= 390 for post-market)."""
    opened = get_calendar().session_open_close(session)[0]
    return [
        {
            "t": rfc3339(opened + dt.timedelta(minutes=offset)),
            "o": base,
            "h": base + 0.1,
            "l": base - 0.1,
            "c": base + 0.05,
            "v": 500 + offset,
            "n": 7,
            "vw": base + 0.01,
        }
        for offset in offsets
    ]


@dataclass
class Reply:
    """A scripted response."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class AlpacaApi:
    """Bars and corporate actions endpoints serving the rows in `bars` and `actions`.

    `calls` lists (url path, query) of every request, in order; `scripts[path]` replies are
    served before the data.
    """

    def __init__(self, adapter: requests_mock.Adapter, page_size: int = 10_000) -> None:
        self.bars: dict[str, list[dict[str, Any]]] = {}
        self.actions: dict[str, list[dict[str, Any]]] = {}
        self.page_size = page_size
        self.scripts: dict[str, list[Reply]] = {}
        self.calls: list[tuple[str, dict[str, list[str]]]] = []
        self.headers: list[dict[str, str]] = []
        adapter.register_uri("GET", BARS_URL, text=self._bars)
        adapter.register_uri("GET", ACTIONS_URL, text=self._actions)

    def script(self, url: str, *replies: Reply) -> None:
        self.scripts.setdefault(url, []).extend(replies)

    def _scripted(self, url: str, request: Any, context: Any) -> str | None:
        self.calls.append((request.path, request.qs))
        self.headers.append(dict(request.headers))
        if not self.scripts.get(url):
            return None
        reply = self.scripts[url].pop(0)
        context.status_code = reply.status
        context.headers.update(reply.headers)
        return reply.body if isinstance(reply.body, str) else json.dumps(reply.body)

    def _page(self, items: list[tuple[str, Any]], request: Any) -> tuple[list, str | None]:
        """The page after `page_token`, and the token of the next one."""
        limit = min(int(request.qs.get("limit", [self.page_size])[0]), self.page_size)
        first = int(request.qs.get("page_token", ["0"])[0])
        page = items[first : first + limit]
        more = first + limit < len(items)
        return page, str(first + limit) if more else None

    def _bars(self, request: Any, context: Any) -> str:
        scripted = self._scripted(BARS_URL, request, context)
        if scripted is not None:
            return scripted
        start = dt.datetime.fromisoformat(request.qs["start"][0])
        end = dt.datetime.fromisoformat(request.qs["end"][0])  # Alpaca's end is inclusive
        items = [
            (symbol, bar)
            for symbol in request.qs["symbols"][0].split(",")
            for bar in self.bars.get(symbol, [])
            if _within(bar.get("t"), start, end)
        ]
        page, token = self._page(items, request)
        grouped: dict[str, list[Any]] = {}
        for symbol, bar in page:
            grouped.setdefault(symbol, []).append(bar)
        return json.dumps({"bars": grouped, "next_page_token": token})

    def _actions(self, request: Any, context: Any) -> str:
        scripted = self._scripted(ACTIONS_URL, request, context)
        if scripted is not None:
            return scripted
        symbols = set(request.qs["symbols"][0].split(","))
        types = {f"{t}s" for t in request.qs["types"][0].split(",")}
        start = dt.date.fromisoformat(request.qs["start"][0])
        end = dt.date.fromisoformat(request.qs["end"][0])  # inclusive
        items = [
            (kind, action)
            for kind, actions in self.actions.items()
            if kind in types
            for action in actions
            if action["symbol"] in symbols
            and start <= dt.date.fromisoformat(action["ex_date"]) <= end
        ]
        page, token = self._page(items, request)
        grouped: dict[str, list[Any]] = {}
        for kind, action in page:
            grouped.setdefault(kind, []).append(action)
        return json.dumps({"corporate_actions": grouped, "next_page_token": token})


def _within(stamp: Any, start: dt.datetime, end: dt.datetime) -> bool:
    """Whether a bar's `t` is in [start, end]; bars with a broken `t` are served as they are."""
    try:
        return start <= dt.datetime.fromisoformat(stamp) <= end
    except (TypeError, ValueError):
        return True


def alpaca_session(page_size: int = 10_000) -> tuple[requests.Session, AlpacaApi]:
    """A plain requests.Session whose https:// transport is the fake Alpaca."""
    session = requests.Session()
    adapter = requests_mock.Adapter(case_sensitive=True)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session, AlpacaApi(adapter, page_size)
