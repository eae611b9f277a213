"""The `synthetic` provider: generated market data for offline demos and tests.

Nothing here is real market data. Every bar, split and dividend is generated from a
deterministic random process, so the platform can be demonstrated and tested without a
vendor account or a network connection. Rows carry `source = "synthetic"`.

How the data is made, so its properties can be relied on:

- Per (symbol, seed) a profile is drawn once: a base price (20-500), a daily volatility
  (1-3%), a dollar volume, a quarterly dividend policy (most symbols) and a few splits
  (ratios 2, 3, 4, 3/2; rarely a 1-for-10 reverse split) spread over the history since 1990.
- The daily path is a random walk of log returns. Its random streams are counter-based
  (Philox keyed by a blake2b hash of symbol and seed, never Python's salted `hash()`) and
  indexed by weekday number since 1990-01-01: a weekday's draw never depends on which range
  was requested, nor on holidays added to the calendar later. Each draw is split into an
  overnight gap and an intraday move. The adjusted level is softly bounded (tanh in log
  space) to between 1/6 and 6 times the base price around 2024-01-02.
- Raw (unadjusted) prices reflect corporate actions: on a split's ex-date the level divides
  by the ratio and volumes scale up by it; on a dividend's ex-date the open gaps down by the
  amount (amounts are set once a year from the price, and rescaled by any split).
- Daily bars come first, for every session at once and without any minute bar: open and
  close from the path; the high and low drawn exactly as the extremes of a Brownian bridge
  from open to close with the session's intraday volatility (a session stream, also indexed
  by weekday number); volume from the path's activity; trade count volume / (60..125).
  The same draws place the session's intraday shape: when the minute path reaches its high
  and its low (in the likelier order; the three legs open -> extreme -> extreme -> close
  share the session's minutes in proportion to their squared lengths), and the vwap is
  the volume profile's weighted mean of the straight path through those points. Prices are
  rounded to cents, vwap to 1e-4.
- Minute bars (one per regular-session minute: 390, fewer on early closes) are generated
  only when asked for, from a third stream whose block for a session is fixed by its
  weekday number, conditioned on the session's daily bar: Brownian bridges between the
  open, the high, the low and the close at their places, reflected into [low, high], with
  a minute volatility that follows the session's range; one minute's wick reaches the
  daily high and one the daily low. The day's volume is split over a noisy U-shaped
  profile and its trade count in proportion to the minutes' volume, both by cumulative
  rounding (exact sums; every minute trades at least one share in at least one trade).
  The aggregate of a session's minute bars therefore IS its daily bar: first open, max
  high, min low, last close, summed volume and summed trade count, exactly. Minute vwaps
  lie inside their bar's [low, high]; the path is shifted, then the vwaps moved within
  their bars, so that the volume-weighted minute vwap meets the daily vwap (within 0.1%,
  typically 1e-6; at prices of a few dollars a session's minute highs and lows may be
  widened to the cents around the daily vwap to reach it). 5m, 15m and 1h bars are the 1m
  bars resampled with `transforms.resample`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import polars as pl

from market_assets.core.calendar import get_calendar
from market_assets.core.providers.base import (
    ActionsRequest,
    BarRequest,
    FetchResult,
    OptionChainRequest,
    TransientError,
    UnknownSymbolError,
)
from market_assets.core.schemas import (
    ACTION_SCHEMA,
    OPTION_QUOTE_SCHEMA,
    conform_bars,
    empty_bars,
)
from market_assets.core.symbols import validate_symbol, validate_symbols
from market_assets.core.transforms.resample import resample_bars, session_schedule

SOURCE = "synthetic"
STREAM_ANCHOR = np.datetime64("1990-01-01", "D")  # a Monday: weekday number 0
REFERENCE_SESSION = dt.date(2024, 1, 2)  # the adjusted level equals the base price here
LEVEL_BOUND = float(np.log(6.0))  # adjusted level stays within base / 6 .. base * 6
OVERNIGHT_SHARE = 0.35  # overnight gap volatility as a share of daily volatility
REGULAR_MINUTES = 390
BLOCK_UINT64 = 780  # random words per session: 4 uniforms (32-bit) per minute x 390 minutes
SESSION_UINT64 = 4  # random words per weekday of the daily-bar stream: 8 uniforms
SESSIONS_PER_CHUNK = 256
TRADE_SIZE_RANGE = (60.0, 125.0)  # mean shares per trade of a session
VWAP_TOLERANCE = 1e-5  # minute vwaps are pulled onto the daily vwap to this relative error
SHIFT_RAMP_MINUTES = 10  # the minute path's shift onto the vwap fades in over this many minutes
SHIFT_ROUNDS = 4  # Newton rounds of that shift
RANGE_PER_VOL = 1.3  # typical path range / (minute volatility x sqrt(minutes))
CALM_RANGE = (0.4, 1.5)  # bounds of a session's minute volatility relative to the symbol's
SPLIT_DATE_RANGE = (dt.date(1990, 6, 1), dt.date(2026, 6, 30))
FORWARD_SPLIT_RATIOS = (2.0, 2.0, 2.0, 3.0, 1.5, 4.0)
REVERSE_SPLIT_RATIO = 0.1
MIN_SESSIONS_BETWEEN_SPLITS = 250
PRICE_FLOOR = 0.01
DAILY_FIELDS = ("open", "high", "low", "close", "volume", "trade_count", "vwap")
IGNORED_SETTINGS = ("api_key_env", "secret_key_env", "requests_per_minute")
OPTION_SETTINGS = ("option_strikes", "option_rate")  # shape the generated option chains


def _stream_key(symbol: str, seed: int, purpose: str) -> int:
    """A stable 128-bit Philox key for one random stream of (symbol, seed)."""
    digest = hashlib.blake2b(f"{purpose}|{seed}|{symbol}".encode(), digest_size=16).digest()
    return int.from_bytes(digest, "little")


def _weekday_numbers(days: np.ndarray) -> np.ndarray:
    """Weekdays (Mon-Fri) between the stream anchor and each day, holidays included."""
    return np.busday_count(STREAM_ANCHOR, days.astype("datetime64[D]")).astype(np.int64)


@dataclass(frozen=True)
class SymbolProfile:
    """The fixed characteristics of one synthetic symbol."""

    base_price: float
    daily_vol: float
    drift: float
    dollar_volume: float
    dividend_yield: float  # annual; 0.0 for symbols that pay none
    dividend_start_year: int
    dividend_first_month: int  # ex-dates fall in this month and every third one after it
    dividend_day: int
    splits: tuple[tuple[dt.date, float], ...]  # (nominal ex-date, ratio) in date order


@lru_cache(maxsize=1024)
def _profile(symbol: str, seed: int) -> SymbolProfile:
    rng = np.random.Generator(np.random.Philox(key=_stream_key(symbol, seed, "profile")))
    base_price = float(np.exp(rng.uniform(np.log(20.0), np.log(500.0))))
    daily_vol = float(rng.uniform(0.01, 0.03))
    drift = float(rng.uniform(0.0, 1.5e-4))
    dollar_volume = float(np.exp(rng.uniform(np.log(2e7), np.log(2e9))))
    pays = rng.uniform() < 0.75
    dividend_yield = float(rng.uniform(0.005, 0.04)) if pays else 0.0
    dividend_start_year = int(rng.integers(1990, 2016))
    dividend_first_month = int(rng.integers(1, 4))
    dividend_day = int(rng.integers(1, 29))
    first, last = (np.datetime64(day, "D") for day in SPLIT_DATE_RANGE)
    span = int((last - first).astype(np.int64))
    n_forward = int(rng.choice([0, 1, 1, 2, 2, 3]))
    offsets = rng.integers(0, span, size=n_forward + 1)
    ratios = [float(r) for r in rng.choice(FORWARD_SPLIT_RATIOS, size=n_forward)]
    if rng.uniform() < 0.08:
        ratios.append(REVERSE_SPLIT_RATIO)
    dates = [(first + int(offset)).astype(dt.date) for offset in offsets[: len(ratios)]]
    splits = tuple(sorted(zip(dates, ratios, strict=True)))
    return SymbolProfile(
        base_price=base_price,
        daily_vol=daily_vol,
        drift=drift,
        dollar_volume=dollar_volume,
        dividend_yield=dividend_yield,
        dividend_start_year=dividend_start_year,
        dividend_first_month=dividend_first_month,
        dividend_day=dividend_day,
        splits=splits,
    )


@dataclass(frozen=True)
class SessionTable:
    """Every calendar session as numpy arrays (date, year, weekday number, UTC open, minutes),
    and the volume profile of each session length."""

    days: np.ndarray  # datetime64[D]
    years: np.ndarray  # int64 calendar year
    weekday_numbers: np.ndarray  # int64
    open_us: np.ndarray  # int64 microseconds since the epoch, UTC
    minutes: np.ndarray  # int64 regular-session minutes
    length_row: np.ndarray  # int64 row of `profiles` and `profile_sums` for the session
    profiles: np.ndarray  # volume profile (share of volume per minute) of each length
    profile_sums: np.ndarray  # `_profile_sums` of each length


@lru_cache(maxsize=8)
def _session_table(exchange: str) -> SessionTable:
    schedule = session_schedule(get_calendar(exchange))
    days = schedule.get_column("session").to_numpy().astype("datetime64[D]")
    open_us = schedule.get_column("session_open").dt.epoch("us").to_numpy()
    close_us = schedule.get_column("session_close").dt.epoch("us").to_numpy()
    minutes = (close_us - open_us) // 60_000_000
    lengths, length_row = np.unique(minutes, return_inverse=True)
    profiles = np.stack([_volume_profile(int(length)) for length in lengths])
    return SessionTable(
        days=days,
        years=days.astype("datetime64[Y]").astype(np.int64) + 1970,
        weekday_numbers=_weekday_numbers(days),
        open_us=open_us,
        minutes=minutes,
        length_row=length_row.astype(np.int64),
        profiles=profiles,
        profile_sums=np.stack([_profile_sums(profile) for profile in profiles]),
    )


def _weekday_uniforms(key: int, weekday_numbers: np.ndarray, words: int) -> np.ndarray:
    """Uniforms in (0, 1), shape (sessions, 2 * words): each session's fixed stream block.

    Philox yields 4 words per counter step, so `words` (per weekday) is a multiple of 4 and
    the block of weekday n starts at counter n * words / 4, whatever range is requested.
    """
    first = int(weekday_numbers[0])
    span = int(weekday_numbers[-1]) - first + 1
    generator = np.random.Philox(key=key, counter=[first * (words // 4), 0, 0, 0])
    raw = generator.random_raw(span * words).reshape(span, words)
    return (raw[weekday_numbers - first].view(np.uint32) + 0.5) * 2.0**-32


def _cents(prices: np.ndarray) -> np.ndarray:
    """Prices rounded to cents, never below the price floor."""
    return np.maximum(np.round(prices, 2), PRICE_FLOOR)


def _bridge_excursion(body: np.ndarray, variance: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """How far a Brownian bridge rises above its higher end, in log units: an exact draw.

    For a bridge between two ends `body` apart with total variance `variance`,
    P(excursion > x) = exp(-2 x (x + body) / variance); this inverts it at `uniform`.
    """
    return (np.sqrt(body**2 - 2.0 * variance * np.log(uniform)) - body) / 2.0


@dataclass(frozen=True)
class SymbolHistory:
    """One symbol's raw daily bars over every calendar session, and its corporate actions."""

    open: np.ndarray  # raw (unadjusted) prices, rounded to cents
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray  # int64 raw shares
    trade_count: np.ndarray  # int64
    vwap: np.ndarray  # rounded to 1e-4
    path_high: np.ndarray  # highest minute close; the wick of that minute reaches `high`
    path_low: np.ndarray  # lowest minute close; the wick of that minute reaches `low`
    high_at: np.ndarray  # int64 minutes after the open when the path is at path_high
    low_at: np.ndarray  # int64 minutes after the open when the path is at path_low
    minute_vol: float  # log volatility of one minute
    splits: tuple[tuple[int, float], ...]  # (session index, ratio)
    dividends: tuple[tuple[int, float], ...]  # (session index, amount)


@lru_cache(maxsize=64)
def _history(symbol: str, seed: int, exchange: str) -> SymbolHistory:
    profile = _profile(symbol, seed)
    table = _session_table(exchange)
    weekdays = table.weekday_numbers
    stream = np.random.Generator(np.random.Philox(key=_stream_key(symbol, seed, "daily")))
    draws = stream.standard_normal((int(weekdays[-1]) + 1, 3))

    intraday_vol = profile.daily_vol * np.sqrt(1.0 - OVERNIGHT_SHARE**2)
    intraday = profile.drift + intraday_vol * draws[:, 0]
    overnight = profile.daily_vol * OVERNIGHT_SHARE * draws[:, 1]
    level = np.cumsum(intraday + overnight)
    reference = int(np.searchsorted(table.days, np.datetime64(REFERENCE_SESSION, "D")))
    centre = level[weekdays[reference]]

    def adjusted(log_level: np.ndarray) -> np.ndarray:
        bounded = LEVEL_BOUND * np.tanh((log_level - centre) / LEVEL_BOUND)
        return profile.base_price * np.exp(bounded)

    adj_close = adjusted(level[weekdays])
    adj_open = adjusted(level[weekdays] - intraday[weekdays])

    split_rows = _split_sessions(profile, table.days)
    held = np.ones(len(table.days))  # shares held per original share, by session
    for index, ratio in split_rows:
        held[index:] *= ratio
    split_factor = held[reference] / held

    dividend_factor, dividend_rows = _dividends(
        profile, table, adj_open * split_factor, adj_close * split_factor, split_factor
    )
    open_ = _cents(adj_open * split_factor * dividend_factor)
    close = _cents(adj_close * split_factor * dividend_factor)

    session_return = np.abs(np.log(adj_close / np.roll(adj_close, 1)))
    session_return[0] = profile.daily_vol
    activity = np.exp(0.3 * draws[weekdays, 2] + 0.5 * (session_return / profile.daily_vol - 0.8))
    shares = profile.dollar_volume / profile.base_price
    raw_volume = shares * activity / split_factor * (table.minutes / REGULAR_MINUTES)
    volume = np.maximum(np.rint(raw_volume), table.minutes).astype(np.int64)

    minute_vol = intraday_vol / np.sqrt(REGULAR_MINUTES)
    uniforms = _weekday_uniforms(_stream_key(symbol, seed, "session"), weekdays, SESSION_UINT64)
    top, bottom = np.maximum(open_, close), np.minimum(open_, close)
    body = np.abs(np.log(close / open_))
    variance = intraday_vol**2 * table.minutes / REGULAR_MINUTES
    high = np.maximum(_cents(top * np.exp(_bridge_excursion(body, variance, uniforms[:, 0]))), top)
    low = np.minimum(
        _cents(bottom * np.exp(-_bridge_excursion(body, variance, uniforms[:, 1]))), bottom
    )
    smallest, largest = TRADE_SIZE_RANGE
    trade_size = smallest + (largest - smallest) * uniforms[:, 2]
    trade_count = np.clip(np.rint(volume / trade_size), table.minutes, volume).astype(np.int64)
    # The minute path's extremes sit one minute wick inside the daily high and low.
    path_high = high - np.minimum(high - top, top * minute_vol * -0.5 * np.log(uniforms[:, 3]))
    path_low = low + np.minimum(bottom - low, bottom * minute_vol * -0.5 * np.log(uniforms[:, 4]))
    high_at, low_at = _extreme_times(
        open_, close, path_high, path_low, table.minutes, uniforms[:, 5:8]
    )
    vwap = _expected_vwap(open_, close, path_high, path_low, high_at, low_at, table)
    return SymbolHistory(
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=volume,
        trade_count=trade_count,
        vwap=np.clip(np.round(vwap, 4), low, high),
        path_high=path_high,
        path_low=path_low,
        high_at=high_at,
        low_at=low_at,
        minute_vol=minute_vol,
        splits=tuple(split_rows),
        dividends=tuple(dividend_rows),
    )


def _extreme_times(
    open_: np.ndarray,
    close: np.ndarray,
    path_high: np.ndarray,
    path_low: np.ndarray,
    minutes: np.ndarray,
    uniforms: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """When each session's minute path reaches its high and its low (minutes after the open).

    The path runs open -> first extreme -> second extreme -> close. The high comes first with
    probability E_low_first / (E_high_first + E_low_first), E being the squared lengths of
    the legs that differ between the two orders (a Brownian path takes the shorter way more
    often), and the session's minutes are shared among the three legs in proportion to
    their squared lengths (Brownian time scaling), the outer two jittered by x0.5..1.5.
    """
    high_first_energy = (path_high - open_) ** 2 + (close - path_low) ** 2
    low_first_energy = (open_ - path_low) ** 2 + (path_high - close) ** 2
    energy = high_first_energy + low_first_energy
    high_first = uniforms[:, 0] * energy < low_first_energy
    first = np.where(high_first, path_high, path_low)
    second = np.where(high_first, path_low, path_high)
    legs = np.stack(
        [
            (first - open_) ** 2 * (0.5 + uniforms[:, 1]),
            (path_high - path_low) ** 2,
            (close - second) ** 2 * (0.5 + uniforms[:, 2]),
        ]
    )
    total = legs.sum(axis=0)
    share = np.divide(legs, total, out=np.full_like(legs, 1.0 / 3.0), where=total > 0)
    first_at = np.clip(np.rint(minutes * share[0]), 1, minutes - 2).astype(np.int64)
    second_at = np.clip(np.rint(minutes * (share[0] + share[1])), first_at + 1, minutes - 1)
    second_at = second_at.astype(np.int64)
    return np.where(high_first, first_at, second_at), np.where(high_first, second_at, first_at)


def _knots(
    open_: np.ndarray,
    close: np.ndarray,
    path_high: np.ndarray,
    path_low: np.ndarray,
    high_at: np.ndarray,
    low_at: np.ndarray,
    minutes: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Times (sessions x 4, minutes after the open) and prices of each session's path knots:
    open, first extreme, second extreme, close."""
    high_first = high_at < low_at
    times = np.stack(
        [np.zeros_like(minutes), np.minimum(high_at, low_at), np.maximum(high_at, low_at), minutes],
        axis=1,
    )
    prices = np.stack(
        [
            open_,
            np.where(high_first, path_high, path_low),
            np.where(high_first, path_low, path_high),
            close,
        ],
        axis=1,
    )
    return times, prices


def _expected_vwap(
    open_: np.ndarray,
    close: np.ndarray,
    path_high: np.ndarray,
    path_low: np.ndarray,
    high_at: np.ndarray,
    low_at: np.ndarray,
    table: SessionTable,
) -> np.ndarray:
    """The session vwap: its volume profile's weighted mean of the straight path through the
    knots, each minute traded at its midpoint (the minute path's noise averages out)."""
    times, prices = _knots(open_, close, path_high, path_low, high_at, low_at, table.minutes)
    which, sums = table.length_row, table.profile_sums
    vwap = np.zeros(len(table.minutes))
    for leg in range(3):
        start, end = times[:, leg], times[:, leg + 1]
        weight = sums[which, 0, end] - sums[which, 0, start]
        timed = sums[which, 1, end] - sums[which, 1, start] - start * weight
        slope = (prices[:, leg + 1] - prices[:, leg]) / np.maximum(end - start, 1)
        vwap += prices[:, leg] * weight + slope * timed
    return vwap


def _split_sessions(profile: SymbolProfile, days: np.ndarray) -> list[tuple[int, float]]:
    """Session index and ratio of each split, at least a year apart, on or after 1990."""
    rows: list[tuple[int, float]] = []
    for nominal, ratio in profile.splits:
        index = int(np.searchsorted(days, np.datetime64(nominal, "D")))
        if not 1 <= index < len(days):
            continue
        if rows and index - rows[-1][0] < MIN_SESSIONS_BETWEEN_SPLITS:
            continue
        rows.append((index, ratio))
    return rows


def _dividends(
    profile: SymbolProfile,
    table: SessionTable,
    open_: np.ndarray,
    close: np.ndarray,
    split_factor: np.ndarray,
) -> tuple[np.ndarray, list[tuple[int, float]]]:
    """Cumulative price factor of cash dividends by session, and (session, amount) rows.

    `open_` and `close` are in raw shares but not yet dividend-adjusted. On an ex-date the
    open becomes exactly (open - amount) before rounding. The amount is set at the first
    payment of each year to a quarter of the annual yield on the previous close, and is
    rescaled by any split later that year.
    """
    days = table.days
    factor = np.ones(len(days))
    if profile.dividend_yield == 0.0:
        return factor, []
    years = np.arange(profile.dividend_start_year, int(table.years[-1]) + 2)
    months = np.arange(profile.dividend_first_month, 13, 3)
    nominal = (
        (years[:, None] - 1970).astype("datetime64[Y]").astype("datetime64[M]")
        + (months[None, :] - 1).astype("timedelta64[M]")
    ).astype("datetime64[D]") + np.timedelta64(profile.dividend_day - 1, "D")
    indices = np.unique(np.searchsorted(days, nominal.ravel()))
    rows: list[tuple[int, float]] = []
    running = 1.0
    amount_year, year_amount, year_split = -1, 0.0, 1.0
    for index in (int(i) for i in indices if 1 <= i < len(days)):
        year = int(table.years[index])
        if year != amount_year:
            amount_year = year
            year_amount = profile.dividend_yield / 4 * float(close[index - 1]) * running
            year_split = float(split_factor[index])
        amount = max(round(year_amount * float(split_factor[index]) / year_split, 2), 0.01)
        open_before = float(open_[index]) * running
        if amount >= 0.2 * open_before:
            continue
        step = 1.0 - amount / open_before
        factor[index:] *= step
        running *= step
        rows.append((index, amount))
    return factor, rows


@lru_cache(maxsize=64)
@lru_cache(maxsize=4096)
def _actions(symbol: str, seed: int, exchange: str) -> pl.DataFrame:
    """Every split and dividend of one symbol (ACTION_SCHEMA), sorted by ex_date and type.

    Cached apart from `_history` (a few dozen rows per symbol against 0.8 MB of history), so a
    universe larger than the history cache does not regenerate every history for its actions
    in every run."""
    history = _history(symbol, seed, exchange)
    days = _session_table(exchange).days
    records = sorted(
        [(days[i].astype(dt.date), "split", ratio, None) for i, ratio in history.splits]
        + [(days[i].astype(dt.date), "dividend", None, amount) for i, amount in history.dividends]
    )
    return pl.DataFrame(
        {
            "symbol": [symbol] * len(records),
            "ex_date": [r[0] for r in records],
            "action_type": [r[1] for r in records],
            "ratio": [r[2] for r in records],
            "amount": [r[3] for r in records],
            "currency": [None if r[1] == "split" else "USD" for r in records],
            "source": [SOURCE] * len(records),
        },
        schema=ACTION_SCHEMA,
    )


@dataclass(frozen=True)
class MinuteGrid:
    """Minute bars of a run of sessions as (session x minute) arrays; `valid` marks real bars."""

    ts_us: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    trade_count: np.ndarray
    vwap: np.ndarray
    valid: np.ndarray


def _volume_profile(minutes: int) -> np.ndarray:
    """Share of a session's volume traded in each minute: U-shaped, spikes at open and close."""
    column = np.arange(REGULAR_MINUTES)
    position = (column + 0.5) / minutes
    shape = (
        1.0
        + 2.5 * (2.0 * position - 1.0) ** 2
        + 2.0 * np.exp(-column / 5.0)
        + 2.5 * np.exp(-(minutes - 1 - column) / 4.0)
    )
    shape[minutes:] = 0.0
    return shape / shape.sum()


def _profile_sums(shares: np.ndarray) -> np.ndarray:
    """Running sums of a volume profile (row 0) and of profile x minute midpoint time (row 1)
    before each time 0..390: the sums over minutes [a, b) are row[b] - row[a]."""
    midpoints = np.arange(REGULAR_MINUTES) + 0.5
    sums = np.zeros((2, REGULAR_MINUTES + 1))
    sums[0, 1:] = np.cumsum(shares)
    sums[1, 1:] = np.cumsum(shares * midpoints)
    return sums


def _split_exactly(total: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Split each row's integer total over its columns in proportion to `weights`, exactly.

    Cumulative rounding: column m gets floor(C_m) - floor(C_m-1), where C is the running
    sum of the quotas and ends at the total exactly. Every column gets its quota rounded
    down or up, the row sums to the total, and columns of weight 0 get 0; unlike largest
    remainder it needs no sort.
    """
    running = np.cumsum(weights, axis=1)
    whole = running[:, -1:]
    share = np.divide(running, whole, out=np.zeros_like(running), where=whole > 0)
    floors = np.floor(total[:, None] * share).astype(np.int64)
    return np.diff(floors, axis=1, prepend=0)


def _pull_towards_mean(
    values: np.ndarray,
    weights: np.ndarray,
    target: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
) -> np.ndarray:
    """Move each row's values towards `high` or `low` so that their weighted mean reaches
    `target`.

    Every value of a row moves the same share kappa (0..1) of its way to the bound on the
    target's side, so a value between its low and high stays there. A target out of reach
    is approached as far as kappa = 1 allows.
    """
    mean = (weights * values).sum(axis=1)
    gap = target - mean
    pull = np.where((gap > 0)[:, None], high, low) - values
    room = (weights * pull).sum(axis=1)
    kappa = np.clip(np.divide(gap, room, out=np.zeros_like(gap), where=room != 0), 0.0, 1.0)
    return values + kappa[:, None] * pull


def _minute_grid(
    symbol: str, seed: int, history: SymbolHistory, table: SessionTable, index: np.ndarray
) -> MinuteGrid:
    """The minute bars of the sessions at `index` (ascending, one symbol), from their daily bars.

    The open, high, low, close, volume and trade count of the daily bar are reproduced
    exactly by the minute bars' aggregate; the volume-weighted minute vwap meets the daily
    vwap (see `_shift_towards_mean` and `_minute_vwaps`).
    """
    uniforms = _weekday_uniforms(
        _stream_key(symbol, seed, "minute"), table.weekday_numbers[index], BLOCK_UINT64
    ).reshape(-1, 4, REGULAR_MINUTES)
    rows = np.arange(len(index))
    minutes = table.minutes[index][:, None]
    column = np.arange(REGULAR_MINUTES)[None, :]
    valid = column < minutes
    sigma = history.minute_vol
    day_open, day_high, day_low, day_close, day_vwap = (
        prices[index][:, None]
        for prices in (history.open, history.high, history.low, history.close, history.vwap)
    )
    day_volume, day_trades = history.volume[index], history.trade_count[index]

    radius = np.sqrt(-2.0 * np.log(uniforms[:, 0]))
    angle = 2.0 * np.pi * uniforms[:, 1]
    ceiling, floor_ = history.path_high[index][:, None], history.path_low[index][:, None]
    times, knots = _knots(
        day_open[:, 0],
        day_close[:, 0],
        ceiling[:, 0],
        floor_[:, 0],
        history.high_at[index],
        history.low_at[index],
        minutes[:, 0],
    )
    steps = np.where(valid, radius * np.cos(angle), 0.0)
    calm = np.clip(
        (ceiling - floor_) / (RANGE_PER_VOL * sigma * np.sqrt(minutes) * day_open), *CALM_RANGE
    )
    path = _minute_path(steps, times, knots, sigma * calm * day_open, floor_, ceiling)

    profile = table.profiles[table.length_row[index]]
    noise = np.exp(0.35 * radius * np.sin(angle) - 0.35**2 / 2)
    spread = _split_exactly(day_volume - minutes[:, 0], np.where(valid, profile * noise, 0.0))
    volume = np.where(valid, 1 + spread, 0)
    volume_share = volume / day_volume[:, None]

    distance = np.abs(column + 1 - times[:, :1])
    for knot in range(1, 4):
        distance = np.minimum(distance, np.abs(column + 1 - times[:, knot : knot + 1]))
    fade = np.clip(distance / SHIFT_RAMP_MINUTES, 0.0, 1.0)
    path = _shift_towards_mean(path, volume_share, fade, day_vwap[:, 0], floor_, ceiling)

    close = _cents(path)
    open_ = np.concatenate([day_open, close[:, :-1]], axis=1)
    upper_wick = 1.0 - 0.5 * sigma * np.log(uniforms[:, 2])  # exponential wick lengths
    lower_wick = 1.0 + 0.5 * sigma * np.log(uniforms[:, 3])
    body_top, body_bottom = np.maximum(open_, close), np.minimum(open_, close)
    high = np.minimum(_cents(body_top * upper_wick), day_high)
    low = np.maximum(_cents(body_bottom * lower_wick), day_low)
    high[rows, np.where(valid, body_top, -np.inf).argmax(axis=1)] = day_high[:, 0]
    low[rows, np.where(valid, body_bottom, np.inf).argmin(axis=1)] = day_low[:, 0]

    trades = _minute_trade_counts(volume, day_trades, valid)
    high, low, vwap = _minute_vwaps(
        open_, high, low, close, volume_share, (day_vwap, day_high, day_low), valid
    )
    return MinuteGrid(
        ts_us=table.open_us[index][:, None] + column * 60_000_000,
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=volume,
        trade_count=trades,
        vwap=vwap,
        valid=valid,
    )


def _minute_trade_counts(
    volume: np.ndarray, day_trades: np.ndarray, valid: np.ndarray
) -> np.ndarray:
    """Split each session's trade count over its minutes in proportion to their volume.

    Every minute trades at least once; the minutes that would get less than one trade get
    exactly one and the others share the rest in proportion to volume (a water level found
    by a few rounds), so the minutes' volume per trade stays that of the session.
    """
    quota = volume * (day_trades / volume.sum(axis=1))[:, None]
    level = np.ones(len(volume))
    for _ in range(REGULAR_MINUTES):
        single = valid & (quota * level[:, None] < 1.0)
        rest = np.where(valid & ~single, quota, 0.0).sum(axis=1)
        new_level = np.divide(
            day_trades - single.sum(axis=1), rest, out=level.copy(), where=rest > 0
        )
        if np.array_equal(new_level, level):
            break
        level = new_level
    above_one = np.where(valid, np.maximum(quota * level[:, None] - 1.0, 0.0), 0.0)
    spread = _split_exactly(day_trades - valid.sum(axis=1), above_one)
    return np.where(valid, 1 + spread, 0)


def _minute_vwaps(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume_share: np.ndarray,
    day: tuple[np.ndarray, np.ndarray, np.ndarray],
    valid: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minute vwaps inside their bar whose volume-weighted mean is the daily vwap, and the
    bars' highs and lows (widened only where a price a few cents wide needs it).

    Each vwap starts at its bar's typical price and is pulled within its bar. When cent
    rounding leaves the daily vwap out of reach (penny prices: every minute at the same one
    or two cents), that session's minute highs and lows are widened to the cents around the
    daily vwap, inside the daily range, and the vwaps pulled again.
    """
    day_vwap, day_high, day_low = day  # (sessions, 1) each
    target = day_vwap[:, 0]
    vwap = _pull_towards_mean((open_ + high + low + close) / 4.0, volume_share, target, high, low)
    missed = np.abs((volume_share * vwap).sum(axis=1) - target) > VWAP_TOLERANCE * target
    if missed.any():
        widen = missed[:, None] & valid
        cents = np.round(day_vwap * 100.0, 6)
        high = np.where(widen, np.minimum(np.maximum(high, np.ceil(cents) / 100.0), day_high), high)
        low = np.where(widen, np.maximum(np.minimum(low, np.floor(cents) / 100.0), day_low), low)
        vwap = _pull_towards_mean(vwap, volume_share, target, high, low)
    return high, low, np.clip(np.round(vwap, 4), low, high)


def _minute_path(
    steps: np.ndarray,
    times: np.ndarray,
    knots: np.ndarray,
    noise: np.ndarray,
    floor_: np.ndarray,
    ceiling: np.ndarray,
) -> np.ndarray:
    """Unrounded close of every minute: Brownian bridges between the knots, folded into
    [floor_, ceiling].

    `steps` are each minute's standard normal step (0 after the session's end), `times`
    and `knots` the knots' minutes after the open and prices, `noise` the price volatility
    of one minute per session. Folding (reflecting at the bounds) keeps the path's texture
    where a cap would flatten it. Every knot is met exactly.
    """
    walk = np.concatenate([np.zeros((len(steps), 1)), np.cumsum(steps, axis=1)], axis=1)
    time = np.arange(1, REGULAR_MINUTES + 1)[None, :]
    leg = (time > times[:, 1:2]).astype(np.int64) + (time > times[:, 2:3])
    start_at, end_at = (np.take_along_axis(times, leg + k, axis=1) for k in (0, 1))
    start, end = (np.take_along_axis(knots, leg + k, axis=1) for k in (0, 1))
    start_walk = np.take_along_axis(walk, start_at, axis=1)
    end_walk = np.take_along_axis(walk, end_at, axis=1)
    elapsed = (time - start_at) / (end_at - start_at)
    bridge = walk[:, 1:] - start_walk - elapsed * (end_walk - start_walk)
    path = _fold(start + elapsed * (end - start) + noise * bridge, floor_, ceiling)
    return np.where(time >= times[:, 3:], knots[:, 3:], path)


def _fold(values: np.ndarray, floor_: np.ndarray, ceiling: np.ndarray) -> np.ndarray:
    """Reflect values at `floor_` and `ceiling` (repeatedly) until they lie between them."""
    width = ceiling - floor_
    span = np.where(width > 0, width, 1.0)
    folded = np.mod(values - floor_, 2.0 * span)
    folded = floor_ + np.where(folded > span, 2.0 * span - folded, folded)
    return np.where(width > 0, folded, floor_)


def _shift_towards_mean(
    values: np.ndarray,
    weights: np.ndarray,
    freedom: np.ndarray,
    target: np.ndarray,
    floor_: np.ndarray,
    ceiling: np.ndarray,
) -> np.ndarray:
    """Shift each row's values by one amount (times `freedom`, 0..1) so that their weighted
    mean approaches `target`, folding them back into [floor_, ceiling].

    A shift keeps the path's texture (a pull towards a bound would flatten it). A few
    Newton rounds, ignoring the fold in the slope, leave a residual well inside a cent on
    the sessions it touches; `_minute_vwaps` settles the rest.
    """
    slope = (weights * freedom).sum(axis=1)
    shift = np.zeros(len(values))
    moved = values
    for _ in range(SHIFT_ROUNDS):
        gap = target - (weights * moved).sum(axis=1)
        shift += np.divide(gap, slope, out=np.zeros_like(gap), where=slope > 0)
        moved = _fold(values + shift[:, None] * freedom, floor_, ceiling)
    return moved


def _minute_frame(symbol: str, grid: MinuteGrid) -> pl.DataFrame:
    valid = grid.valid
    return pl.DataFrame(
        {
            "ts": pl.Series(grid.ts_us[valid]).cast(pl.Datetime("us", "UTC")),
            "symbol": symbol,
            "open": grid.open[valid],
            "high": grid.high[valid],
            "low": grid.low[valid],
            "close": grid.close[valid],
            "volume": grid.volume[valid],
            "trade_count": grid.trade_count[valid],
            "vwap": grid.vwap[valid],
            "granularity": "1m",
            "source": SOURCE,
        }
    )


def synthetic_daily_bars(
    symbols: Sequence[str],
    start: dt.date,
    end: dt.date,
    seed: int = 7,
    exchange: str = "XNYS",
) -> pl.DataFrame:
    """Generated daily bars of many symbols over the sessions in [start, end), canonical
    schema, sorted by (symbol, ts); no minute bar is generated.

    Raises ValueError naming an invalid symbol.
    """
    names = sorted(dict.fromkeys(validate_symbol(symbol) for symbol in symbols))
    table = _session_table(exchange)
    first = int(np.searchsorted(table.days, np.datetime64(start, "D")))
    stop = int(np.searchsorted(table.days, np.datetime64(end, "D")))
    if first >= stop or not names:
        return empty_bars()
    histories = [_history(symbol, seed, exchange) for symbol in names]
    rows = slice(first, stop)

    def stacked(field: str) -> np.ndarray:
        return np.concatenate([getattr(history, field)[rows] for history in histories])

    days = np.tile(table.days[rows].astype("datetime64[us]"), len(names))
    symbol_index = np.repeat(np.arange(len(names)), stop - first)
    frame = pl.DataFrame(
        {
            "ts": pl.Series(days).dt.replace_time_zone("UTC"),
            "symbol": pl.Series(names, dtype=pl.String).gather(symbol_index),
            **{field: stacked(field) for field in DAILY_FIELDS},
            "granularity": pl.repeat("1d", len(days), eager=True),
            "source": pl.repeat(SOURCE, len(days), eager=True),
        }
    )
    return conform_bars(frame)


def synthetic_bars(
    symbol: str,
    granularity: str,
    start: dt.date,
    end: dt.date,
    seed: int = 7,
    exchange: str = "XNYS",
) -> pl.DataFrame:
    """Generated bars of one symbol over the sessions in [start, end), canonical schema.

    Daily bars never generate minute bars. Raises ValueError for an invalid symbol or an
    unknown granularity.
    """
    validate_symbol(symbol)
    if granularity not in SyntheticProvider.granularities:
        raise ValueError(
            f"granularity {granularity!r} is not one of {list(SyntheticProvider.granularities)}"
        )
    if granularity == "1d":
        return synthetic_daily_bars((symbol,), start, end, seed, exchange)
    table = _session_table(exchange)
    first = int(np.searchsorted(table.days, np.datetime64(start, "D")))
    stop = int(np.searchsorted(table.days, np.datetime64(end, "D")))
    if first >= stop:
        return empty_bars()
    history = _history(symbol, seed, exchange)
    frames = []
    for chunk_start in range(first, stop, SESSIONS_PER_CHUNK):
        index = np.arange(chunk_start, min(chunk_start + SESSIONS_PER_CHUNK, stop))
        frames.append(_minute_frame(symbol, _minute_grid(symbol, seed, history, table, index)))
    bars = conform_bars(pl.concat(frames))
    if granularity == "1m":
        return bars
    return resample_bars(bars, granularity, get_calendar(exchange))


def synthetic_actions(symbol: str, seed: int = 7, exchange: str = "XNYS") -> pl.DataFrame:
    """Every generated split and dividend of one symbol since 1990 (ACTION_SCHEMA)."""
    return _actions(symbol, seed, exchange)


class SyntheticProvider:
    """Generated (not real) bars, corporate actions and option chains, deterministic per
    (symbol, seed).

    Serves 1m and 1d directly and 5m, 15m, 1h by resampling its 1m bars; option chains come
    from synthetic_options (`option_strikes` per expiration, priced at `option_rate`). Test seams:
    symbols in `unknown_symbols` are answered like a vendor that does not list them, and
    the first `transient_failures` calls raise TransientError.
    """

    name = SOURCE
    granularities: tuple[str, ...] = ("1m", "5m", "15m", "1h", "1d")

    def __init__(
        self,
        seed: int = 7,
        unknown_symbols: frozenset[str] = frozenset(),
        transient_failures: int = 0,
        option_strikes: int = 9,
        option_rate: float = 0.04,
    ) -> None:
        if transient_failures < 0:
            raise ValueError(f"transient_failures must be >= 0, got {transient_failures}")
        self.seed = int(seed)
        self.unknown_symbols = frozenset(validate_symbols(unknown_symbols))
        self.transient_failures = int(transient_failures)
        self.calls = 0
        self._exchange = get_calendar().exchange
        self.option_strikes = int(option_strikes)
        self.option_rate = float(option_rate)

    @classmethod
    def from_config(cls, settings: Mapping[str, Any]) -> SyntheticProvider:
        """Build from a providers.yaml entry: `seed`, `unknown_symbols`, `transient_failures`.

        `kind` must be "synthetic" when present. The vendor-generic keys (`api_key_env`,
        `secret_key_env`, `requests_per_minute`) are accepted and ignored: generated data
        needs no key and no rate limit. Any other key raises ValueError naming it.
        """
        options = dict(settings)
        kind = options.pop("kind", SOURCE)
        if kind != SOURCE:
            raise ValueError(f"SyntheticProvider cannot be built from kind {kind!r}")
        for key in IGNORED_SETTINGS:
            options.pop(key, None)
        allowed = {"seed", "unknown_symbols", "transient_failures", *OPTION_SETTINGS}
        unknown = set(options) - allowed
        if unknown:
            raise ValueError(
                f"unknown setting(s) {sorted(unknown)} for the synthetic provider; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
        return cls(
            seed=int(options.get("seed", 7)),
            unknown_symbols=frozenset(options.get("unknown_symbols", ())),
            transient_failures=int(options.get("transient_failures", 0)),
            option_strikes=int(options.get("option_strikes", 9)),
            option_rate=float(options.get("option_rate", 0.04)),
        )

    def fetch_bars(self, request: BarRequest) -> FetchResult:
        """Bars for the sessions in [request.start, request.end); one request per call."""
        context = {
            "vendor": SOURCE,
            "dataset": request.dataset,
            "start": request.start,
            "end": request.end,
        }
        known, failures = self._admit(request.symbols, context)
        if request.granularity == "1d":
            frame = synthetic_daily_bars(
                known, request.start, request.end, self.seed, self._exchange
            )
            return FetchResult(frame=frame, source=SOURCE, requests=1, failures=failures)
        frames = [
            synthetic_bars(
                symbol, request.granularity, request.start, request.end, self.seed, self._exchange
            )
            for symbol in known
        ]
        frame = pl.concat(frames).sort("symbol", "ts") if frames else empty_bars()
        return FetchResult(frame=frame, source=SOURCE, requests=1, failures=failures)

    def fetch_actions(self, request: ActionsRequest) -> FetchResult:
        """Splits and dividends with ex_date in [request.start, request.end)."""
        if not request.start < request.end:
            raise ValueError(
                f"start {request.start} must be before end {request.end} (end exclusive)"
            )
        context = {
            "vendor": SOURCE,
            "dataset": "corporate_actions",
            "start": request.start,
            "end": request.end,
        }
        symbols = tuple(validate_symbols(request.symbols))
        known, failures = self._admit(symbols, context)
        frames = [
            synthetic_actions(symbol, self.seed, self._exchange).filter(
                pl.col("ex_date").is_between(request.start, request.end, closed="left")
            )
            for symbol in known
        ]
        frame = pl.concat(frames) if frames else pl.DataFrame(schema=ACTION_SCHEMA)
        return FetchResult(frame=frame, source=SOURCE, requests=1, failures=failures)

    def fetch_options(self, request: OptionChainRequest) -> FetchResult:
        """Generated chains (synthetic_options.synthetic_chain) of every session in
        [request.start, request.end), `option_strikes` strikes per expiration, priced at
        `option_rate`."""
        from market_assets.core.providers.synthetic_options import synthetic_chain

        context = {
            "vendor": SOURCE,
            "dataset": "options_chains",
            "start": request.start,
            "end": request.end,
        }
        known, failures = self._admit(request.symbols, context)
        sessions = get_calendar(self._exchange).sessions(
            request.start, request.end - dt.timedelta(days=1)
        )
        frames = [
            synthetic_chain(
                symbol,
                session,
                seed=self.seed,
                exchange=self._exchange,
                snapshot_times=request.snapshot_times,
                strikes=self.option_strikes,
                rate=self.option_rate,
            )
            for symbol in known
            for session in sessions
        ]
        frame = pl.concat(frames) if frames else pl.DataFrame(schema=OPTION_QUOTE_SCHEMA)
        return FetchResult(frame=frame, source=SOURCE, requests=1, failures=failures)

    def _admit(
        self, symbols: tuple[str, ...], context: dict[str, Any]
    ) -> tuple[list[str], dict[str, str]]:
        """Count the call, simulate transient failures, and set unknown symbols aside."""
        self.calls += 1
        if self.calls <= self.transient_failures:
            raise TransientError(
                f"simulated transient failure {self.calls} of {self.transient_failures}",
                symbols=symbols,
                **context,
            )
        unknown = [s for s in symbols if s in self.unknown_symbols]
        if unknown and len(unknown) == len(symbols):
            raise UnknownSymbolError(
                "no requested symbol is listed by the synthetic provider",
                symbols=symbols,
                **context,
            )
        failures = {
            symbol: str(
                UnknownSymbolError(
                    f"{symbol} is not listed by the synthetic provider",
                    symbols=(symbol,),
                    **context,
                )
            )
            for symbol in unknown
        }
        return [s for s in symbols if s not in self.unknown_symbols], failures
