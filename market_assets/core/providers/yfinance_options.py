"""Yahoo Finance option chains through yfinance: `Ticker.options` and `Ticker.option_chain`.

`Ticker.options` lists the expirations (`/v7/finance/options/{symbol}`); `option_chain(date)`
fetches one expiration's calls and puts (`...?date=<epoch>`): contractSymbol (compact OSI),
lastTradeDate, strike, lastPrice, bid, ask, volume, openInterest, impliedVolatility,
contractSize ("REGULAR" for standard deliverables) and the underlying's quote
(regularMarketPrice, regularMarketTime), which prices the chain. Yahoo sends no greeks; its
IV is kept as vendor_iv. One request for the expirations plus one per expiration.

Like Alpaca, Yahoo serves the current chain only: a request must be for the latest completed
session (alpaca_options.check_latest_session), stamped at its close.
"""

from __future__ import annotations

import datetime as dt
import warnings
from typing import Any

import pandas as pd
import polars as pl
import yfinance as yf
from yfinance.data import YfData
from yfinance.exceptions import YFRateLimitError

from market_assets.core.calendar import get_calendar
from market_assets.core.options.quotes import conform_quotes, empty_quotes
from market_assets.core.providers.alpaca_options import check_latest_session
from market_assets.core.providers.base import (
    FetchResult,
    NoDataError,
    OptionChainRequest,
    PermanentError,
    RateLimitedError,
    TransientError,
)

VENDOR = "yfinance"


def _frame(symbol: str, session: dt.date, close: dt.datetime, side: pd.DataFrame, underlying):  # noqa: ANN001
    if side is None or side.empty:
        return empty_quotes()
    last_ts = pd.to_datetime(side["lastTradeDate"], utc=True)
    size = side["contractSize"].astype("string")
    price = underlying.get("regularMarketPrice") if isinstance(underlying, dict) else None
    stamp = underlying.get("regularMarketTime") if isinstance(underlying, dict) else None
    rows = pl.DataFrame(
        {
            "contract": side["contractSymbol"].astype(str).tolist(),
            "strike_vendor": side["strike"].astype(float).tolist(),
            "bid": side["bid"].astype(float).tolist(),
            "ask": side["ask"].astype(float).tolist(),
            "last": side["lastPrice"].astype(float).tolist(),
            "last_ts": [t.to_pydatetime() if not pd.isna(t) else None for t in last_ts],
            "volume": side["volume"].astype("Float64").tolist(),
            "open_interest": side["openInterest"].astype("Float64").tolist(),
            "vendor_iv": side["impliedVolatility"].astype(float).tolist(),
            "adjusted": [None if pd.isna(v) else v != "REGULAR" for v in size],
        },
        strict=False,
    )
    return conform_quotes(
        rows.with_columns(
            pl.lit(session).alias("session"),
            pl.lit(close).alias("ts"),
            pl.lit(symbol).alias("symbol"),
            pl.col("volume", "open_interest").fill_nan(None).cast(pl.Int64),
            pl.lit(float(price) if price else None, pl.Float64).alias("underlying_price"),
            pl.lit(
                dt.datetime.fromtimestamp(int(stamp), dt.UTC) if stamp else None,
                pl.Datetime("us", "UTC"),
            ).alias("underlying_ts"),
            pl.lit(VENDOR).alias("source"),
        )
    )


def fetch_yahoo_options(
    session: Any, timeout: float, request: OptionChainRequest, now: dt.datetime
) -> FetchResult:
    """The current chain of each requested underlying, every expiration."""
    context = {"dataset": "options_chains", "start": request.start, "end": request.end}
    where = {"vendor": VENDOR, "symbols": request.symbols, **context}
    day = check_latest_session(request, now, where)
    close = get_calendar().session_open_close(day)[1]
    yf.config.debug.hide_exceptions = False
    frames: list[pl.DataFrame] = []
    failures: dict[str, str] = {}
    requests = 0
    for symbol in request.symbols:
        single = {**where, "symbols": (symbol,)}
        ticker = yf.Ticker(symbol.replace(".", "-"), session=session)
        YfData.cache_get.cache_clear()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expirations = ticker.options
                requests += 1
                for expiration in expirations:
                    chain = ticker.option_chain(expiration)
                    requests += 1
                    for side in (chain.calls, chain.puts):
                        frames.append(_frame(symbol, day, close, side, chain.underlying))
        except YFRateLimitError as error:
            raise RateLimitedError(f"Yahoo rate-limited {symbol}", **single) from error
        except OSError as error:
            raise TransientError(f"network error talking to Yahoo: {error}", **single) from error
        except (KeyError, ValueError, TypeError) as error:
            failures[symbol] = str(
                PermanentError(f"malformed Yahoo options response: {error}", **single)
            )
            continue
        if not expirations:
            failures[symbol] = str(NoDataError(f"Yahoo lists no options of {symbol}", **single))
    frame = pl.concat(frames) if frames else empty_quotes()
    if frame.is_empty():
        raise NoDataError("Yahoo returned no option chains", **where)
    return FetchResult(frame=frame, source=VENDOR, requests=requests, failures=failures)
