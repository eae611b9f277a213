"""Alpaca option chain snapshots (alpaca-py `OptionHistoricalDataClient.get_option_chain`).

`GET /v1beta1/options/snapshots/{underlying}` answers `{"snapshots": {"AAPL250321C00250000":
{"latestQuote": {"t", "bp", "bs", "ap", "as", ...}, "latestTrade": {"t", "p", "s", ...},
"impliedVolatility": 0.31, "greeks": {"delta", "gamma", "rho", "theta", "vega"},
"dailyBar": {"t", "v", ...}}}, "next_page_token": ...}`; alpaca-py follows the pages. The
feed is `indicative` (free, delayed) or `opra` (subscription), from providers.yaml
`option_feed`. Alpaca sends IV and greeks only for some contracts; they are kept as the
vendor's (vendor_* columns) and recomputed downstream either way. Snapshots carry no open
interest (null) and no underlying price (the chain is priced off the stored daily close).

Snapshots are the latest state only: a request must be for the latest completed session
(stamped at its close), and intraday snapshot times are refused (BadRequestError naming the
providers that serve history: databento_options, synthetic).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from market_assets.core.calendar import get_calendar
from market_assets.core.options.quotes import conform_quotes, empty_quotes
from market_assets.core.providers.base import BadRequestError, OptionChainRequest

OPTION_FEEDS = ("indicative", "opra")
VENDOR = "alpaca"


def check_latest_session(
    request: OptionChainRequest, now: dt.datetime, where: dict[str, Any]
) -> dt.date:
    """The one session a snapshot request may ask for; BadRequestError otherwise."""
    latest = get_calendar().last_completed_sessions(1, now)[-1]
    sessions = get_calendar().sessions(request.start, request.end - dt.timedelta(days=1))
    if request.snapshot_times:
        raise BadRequestError(
            f"{where['vendor']} serves the current option chain only, not intraday snapshot "
            "times; use databento_options or synthetic for intraday chains",
            **where,
        )
    if sessions != [latest]:
        raise BadRequestError(
            f"{where['vendor']} serves the current option chain only (session {latest}); "
            f"asked for {sessions[0] if sessions else request.start}"
            f"{'..' + str(sessions[-1]) if len(sessions) > 1 else ''}: load older chains "
            "with databento_options",
            **where,
        )
    return latest


def _time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def snapshot_rows(
    symbol: str, session: dt.date, snapshots: dict[str, Any], close: dt.datetime
) -> pl.DataFrame:
    """OPTION_QUOTE_SCHEMA rows from one underlying's snapshots (keyed by contract symbol)."""
    rows = []
    for contract, snap in snapshots.items():
        if not isinstance(snap, dict):
            raise ValueError(f"snapshot of {contract} is {type(snap).__name__}, not an object")
        quote = snap.get("latestQuote") or {}
        trade = snap.get("latestTrade") or {}
        greeks = snap.get("greeks") or {}
        bar = snap.get("dailyBar") or {}
        bar_day = _time(bar.get("t"))
        rows.append(
            {
                "session": session,
                "ts": close,
                "symbol": symbol,
                "contract": contract,
                "bid": quote.get("bp"),
                "ask": quote.get("ap"),
                "bid_size": quote.get("bs"),
                "ask_size": quote.get("as"),
                "quote_ts": _time(quote.get("t")),
                "last": trade.get("p"),
                "last_ts": _time(trade.get("t")),
                "volume": bar.get("v") if bar_day and bar_day.date() == session else None,
                "vendor_iv": snap.get("impliedVolatility"),
                **{
                    f"vendor_{g}": greeks.get(g) for g in ("delta", "gamma", "vega", "theta", "rho")
                },
                "source": VENDOR,
            }
        )
    if not rows:
        return empty_quotes()
    return conform_quotes(pl.DataFrame(rows, infer_schema_length=None))
