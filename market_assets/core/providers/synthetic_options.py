"""Synthetic option chains: generated (not real) chains priced off the synthetic underlying.

For each underlying and session the chain lists the weekly expirations of the next
`WEEKLY_DAYS` calendar days and the monthly ones (third Fridays) of the next `MONTHLY_DAYS`
(a Friday that is a holiday moves to the session before). Each expiration keeps one fixed
set of `strikes` strikes for its whole life, centred on the underlying's close on the day it
entered the window, on a grid of 0.5 / 1 / 2.5 / 5 by price, so a contract listed yesterday
is still listed today until it expires.

Prices are Black-Scholes-Merton (rate `rate`, no dividend yield) at a volatility smile
around the symbol's own synthetic volatility: sigma = base x (1 - 0.4 x + 0.8 x^2), with
x = ln(K / S) / sqrt(T) x 0.2 clipped to [-2, 2]. That sigma and its greeks are sent as
the vendor's IV and greeks. Quotes straddle the model price by a spread of 2% + 1 cent
(rounded to cents, bid floored at 0), so far out-of-the-money contracts quote 0 bid. Sizes,
volume and open interest come from a counter-based random stream per (symbol, seed,
session). Underlying prices are the synthetic bars' own: the session's daily close for
end-of-day chains, the 1-minute close for intraday snapshot times.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import polars as pl

from market_assets.core.calendar import get_calendar
from market_assets.core.options.chain import EXPIRY_TIME
from market_assets.core.options.contracts import osi_symbol
from market_assets.core.options.greeks import greeks, price_options
from market_assets.core.options.quotes import conform_quotes, snapshot_instants
from market_assets.core.providers.synthetic import (
    SOURCE,
    _history,
    _profile,
    _session_table,
    synthetic_bars,
)
from market_assets.core.schemas import OPTION_QUOTE_SCHEMA
from market_assets.core.stores.layout import EXCHANGE_TZ

WEEKLY_DAYS = 21
MONTHLY_DAYS = 63
DEFAULT_STRIKES = 9
DEFAULT_RATE = 0.04
TRADING_DAYS = 252
SECONDS_PER_YEAR = 365 * 86_400


def _stream(symbol: str, seed: int, session: dt.date) -> np.random.Generator:
    digest = hashlib.blake2b(f"options|{seed}|{symbol}|{session}".encode(), digest_size=16)
    return np.random.Generator(np.random.Philox(key=int.from_bytes(digest.digest(), "little")))


def _on_session(day: dt.date, days: np.ndarray) -> dt.date:
    """`day` when it is a session, else the session before it."""
    index = int(np.searchsorted(days, np.datetime64(day, "D"), "right")) - 1
    return days[index].astype(dt.date)


def _third_friday(year: int, month: int) -> dt.date:
    first = dt.date(year, month, 1)
    return first + dt.timedelta(days=(4 - first.weekday()) % 7 + 14)


def expirations(session: dt.date, days: np.ndarray) -> list[tuple[dt.date, int]]:
    """(expiration, window in days) of the expirations listed on `session`, ascending."""
    listed: dict[dt.date, int] = {}
    friday = session + dt.timedelta(days=(4 - session.weekday()) % 7 or 7)
    while friday <= session + dt.timedelta(days=WEEKLY_DAYS):
        listed.setdefault(_on_session(friday, days), WEEKLY_DAYS)
        friday += dt.timedelta(days=7)
    year, month = session.year, session.month
    for _ in range(4):
        third = _third_friday(year, month)
        if session < third <= session + dt.timedelta(days=MONTHLY_DAYS):
            listed[_on_session(third, days)] = MONTHLY_DAYS
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return sorted((day, window) for day, window in listed.items() if day > session)


def _increment(price: float) -> float:
    return 0.5 if price < 25 else 1.0 if price < 100 else 2.5 if price < 200 else 5.0


def strikes_around(price: float, count: int) -> np.ndarray:
    """`count` strikes on the listed grid centred on `price`, about 3% apart."""
    grid = _increment(price)
    step = grid * max(1, round(0.03 * price / grid))
    centre = round(price / grid) * grid
    offsets = np.arange(count) - count // 2
    strikes = centre + offsets * step
    return np.round(strikes[strikes > 0], 3)


def synthetic_chain(
    symbol: str,
    session: dt.date,
    *,
    seed: int = 7,
    exchange: str = "XNYS",
    snapshot_times: tuple[dt.time, ...] = (),
    strikes: int = DEFAULT_STRIKES,
    rate: float = DEFAULT_RATE,
) -> pl.DataFrame:
    """The generated chain of one underlying and session (OPTION_QUOTE_SCHEMA)."""
    table = _session_table(exchange)
    index = int(np.searchsorted(table.days, np.datetime64(session, "D")))
    if index >= len(table.days) or table.days[index].astype(dt.date) != session:
        return pl.DataFrame(schema=OPTION_QUOTE_SCHEMA)
    history = _history(symbol, seed, exchange)
    base_vol = _profile(symbol, seed).daily_vol * np.sqrt(TRADING_DAYS)
    rows: list[tuple[dt.date, float]] = []
    for expiration, window in expirations(session, table.days):
        anchor = _on_session(expiration - dt.timedelta(days=window), table.days)
        anchor_index = int(np.searchsorted(table.days, np.datetime64(anchor, "D")))
        anchor_price = round(float(history.close[min(anchor_index, index)]), 2)
        rows += [(expiration, float(k)) for k in strikes_around(anchor_price, strikes)]
    instants = snapshot_instants(session, snapshot_times)
    spots = _underlying_prices(symbol, session, instants, history.close[index], seed, exchange)
    close = instants[-1] if not snapshot_times else None
    frames = [
        _priced(symbol, session, moment, spot, rows, base_vol, rate, seed, close)
        for moment, spot in zip(instants, spots, strict=True)
    ]
    return pl.concat(frames) if frames else pl.DataFrame(schema=OPTION_QUOTE_SCHEMA)


def _underlying_prices(
    symbol: str,
    session: dt.date,
    instants: list[dt.datetime],
    raw_close: float,
    seed: int,
    exchange: str,
) -> list[float]:
    if len(instants) == 1 and instants[0] >= _close_of(session, exchange):
        return [round(float(raw_close), 2)]
    minutes = synthetic_bars(symbol, "1m", session, session + dt.timedelta(days=1), seed, exchange)
    ends = minutes.get_column("ts").dt.offset_by("1m")
    closes = minutes.get_column("close")
    prices = []
    for moment in instants:
        done = closes.filter(ends <= moment)
        prices.append(float(done[-1]) if len(done) else float(minutes.get_column("open")[0]))
    return prices


def _close_of(session: dt.date, exchange: str) -> dt.datetime:
    return get_calendar(exchange).session_open_close(session)[1]


def _priced(
    symbol: str,
    session: dt.date,
    moment: dt.datetime,
    spot: float,
    rows: list[tuple[dt.date, float]],
    base_vol: float,
    rate: float,
    seed: int,
    close: dt.datetime | None,
) -> pl.DataFrame:
    count = 2 * len(rows)
    expiration = [day for day, _ in rows for _ in (0, 1)]
    strike = np.repeat(np.array([k for _, k in rows]), 2)
    is_call = np.tile(np.array([True, False]), len(rows))
    expiry = np.array(
        [dt.datetime.combine(day, EXPIRY_TIME, tzinfo=EXCHANGE_TZ) for day in expiration]
    )
    years = np.array([(end - moment).total_seconds() for end in expiry]) / SECONDS_PER_YEAR
    years = np.maximum(years, 1e-6)
    moneyness = np.clip(np.log(strike / spot) / np.sqrt(years) * 0.2, -2.0, 2.0)
    sigma = np.clip(base_vol * (1.0 - 0.4 * moneyness + 0.8 * moneyness**2), 0.05, 3.0)
    spots = np.full(count, spot)
    rates = np.full(count, rate)
    dividends = np.zeros(count)
    model = price_options(sigma, spots, strike, years, rates, dividends, is_call)
    values = greeks(sigma, spots, strike, years, rates, dividends, is_call)
    half_spread = (0.02 * model + 0.01) / 2
    rng = _stream(symbol, seed, session)
    bid = np.maximum(np.round(model - half_spread, 2), 0.0)
    ask = np.maximum(np.round(model + half_spread, 2), 0.01)
    volume = np.where(model > 0.05, rng.integers(1, 5_000, count), 0)
    traded = volume > 0
    last_ts = moment - dt.timedelta(minutes=7)
    frame = pl.DataFrame(
        {
            "session": [session] * count,
            "ts": [close or moment] * count,
            "symbol": [symbol] * count,
            "contract": [
                osi_symbol(_root(symbol), day, "call" if c else "put", float(k))
                for day, k, c in zip(expiration, strike, is_call, strict=True)
            ],
            "bid": bid,
            "ask": ask,
            "bid_size": rng.integers(1, 500, count),
            "ask_size": rng.integers(1, 500, count),
            "quote_ts": [moment] * count,
            "last": np.where(traded, np.round(model, 2), np.nan),
            "last_ts": [last_ts if t else None for t in traded],
            "volume": volume,
            "open_interest": rng.integers(0, 50_000, count),
            "vendor_iv": sigma,
            **{f"vendor_{name}": values[name] for name in ("delta", "gamma", "vega", "theta")},
            "vendor_rho": values["rho"],
            "underlying_price": spots,
            "underlying_ts": [moment] * count,
            "source": [SOURCE] * count,
        }
    ).with_columns(pl.col("last").fill_nan(None))
    return conform_quotes(frame)


def _root(symbol: str) -> str:
    """OCC roots drop the class dot (BRK.B -> BRKB)."""
    return symbol.replace(".", "")[:6]
