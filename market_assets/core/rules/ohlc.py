"""Rules on each bar by itself and on the key: OHLC relations, duplicates, session hours.

These are the rules a correct vendor never breaks. Stored bars have already passed the hard
schema rules (rows breaking them are quarantined), so on the lake these catch what slipped
around validation: data written by other tools, or a series re-adjusted after the fact
(a close outside [low, high] after a bad adjustment is the classic).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from market_assets.core.rules.base import Findings, RuleContext
from market_assets.core.rules.frame import (
    column,
    epoch_us,
    row_session_bounds,
    session_schedule_frame,
    session_segments,
)
from market_assets.core.rules.thresholds import (
    DuplicateSettings,
    OhlcSettings,
    SessionHoursSettings,
)
from market_assets.core.schemas import PRICE_COLUMNS

BAR_MICROSECONDS = {"1m": 60_000_000, "5m": 300_000_000, "15m": 900_000_000, "1h": 3_600_000_000}
"""Bar width of each intraday granularity, in microseconds."""
PRE_MARKET = pl.duration(hours=5, minutes=30)  # 04:00 New York before a 09:30 open
AFTER_HOURS = pl.duration(hours=4)  # 20:00 New York after a 16:00 close
PRE_MARKET_US = 19_800_000_000
AFTER_HOURS_US = 14_400_000_000

SAMPLE_COLUMNS = ("ts", "open", "high", "low", "close", "volume")


def _kinds(flags: dict[str, pl.Expr]) -> pl.Expr:
    """Comma-separated names of the flags that are true on a row."""
    return pl.concat_str(
        [pl.when(expr).then(pl.lit(name)) for name, expr in flags.items()],
        separator=",",
        ignore_nulls=True,
    )


def _bar_findings(frame: pl.LazyFrame, bad: pl.Expr, kinds: pl.Expr) -> Findings:
    """The judged bars `bad` selects, with their `kind`s (one lazy query, one collect)."""
    found = frame.filter(pl.col("judged") & bad).select(
        "symbol",
        "session",
        pl.lit(1, dtype=pl.Int64).alias("rows"),
        *SAMPLE_COLUMNS,
        kinds.alias("kind"),
    )
    return Findings(found.collect())


def ohlc_relations(frame: pl.DataFrame, context: RuleContext, settings: OhlcSettings) -> Findings:
    """high >= max(open, close), low <= min(open, close), low <= high, prices > 0, volume >= 0.

    A null or NaN price counts as non-positive; a null volume as invalid.
    """
    if _all_consistent(frame):
        return Findings.none()
    high, low = pl.col("high"), pl.col("low")
    flags = {
        "high_below_open_close": high < pl.max_horizontal("open", "close"),
        "low_above_open_close": low > pl.min_horizontal("open", "close"),
        "low_above_high": low > high,
        "non_positive_price": pl.any_horizontal(
            [(pl.col(c) <= 0) | pl.col(c).is_null() | pl.col(c).is_nan() for c in PRICE_COLUMNS]
        ),
        "invalid_volume": (pl.col("volume") < 0) | pl.col("volume").is_null(),
    }
    flags = {name: expr.fill_null(False) for name, expr in flags.items()}
    return _bar_findings(frame.lazy(), pl.any_horizontal(list(flags.values())), _kinds(flags))


def _all_consistent(frame: pl.DataFrame) -> bool:
    """Every bar passes (numpy on the price arrays: no query for the common clean case).
    NaN (a null) compares False, so a frame with nulls takes the full path."""
    open_, high, low, close, volume = (
        frame.get_column(c).to_numpy() for c in ("open", "high", "low", "close", "volume")
    )
    with np.errstate(invalid="ignore"):
        consistent = (
            (high >= np.maximum(open_, close))
            & (low <= np.minimum(open_, close))
            & (low <= high)
            & (low > 0)
            & (volume >= 0)
        )
    return bool(consistent.all())


DAY_MICROSECONDS = 86_400_000_000


def _all_in_session(
    frame: pl.DataFrame, context: RuleContext, settings: SessionHoursSettings
) -> bool:
    """Every judged bar is where it should be (numpy over the rows; one lookup per session)."""
    ts = epoch_us(frame)
    segments = session_segments(frame)
    open_, close = row_session_bounds(frame, context, segments)
    if not context.intraday:
        fine = (open_ >= 0) & (ts % DAY_MICROSECONDS == 0)
    else:
        step = BAR_MICROSECONDS[context.granularity]
        low, high = open_, close
        if settings.extended_hours:
            low, high = open_ - PRE_MARKET_US, close + AFTER_HOURS_US
        fine = (open_ >= 0) & (ts >= low) & (ts < high) & ((ts - open_) % step == 0)
    return bool(fine[column(frame, "judged")].all())


def duplicate_timestamps(
    frame: pl.DataFrame, context: RuleContext, settings: DuplicateSettings
) -> Findings:
    """Repeated (symbol, ts) keys, and rows whose key is not after the previous row's key."""
    flags = {"duplicate": pl.col("duplicate"), "out_of_order": pl.col("out_of_order")}
    bad = pl.col("duplicate") | pl.col("out_of_order")
    if not frame.select(bad.any()).item():
        return Findings.none()
    return _bar_findings(frame.lazy(), bad, _kinds(flags))


def session_hours(
    frame: pl.DataFrame, context: RuleContext, settings: SessionHoursSettings
) -> Findings:
    """Timestamps inside a session: on an exchange session, within its hours, on the bar grid.

    Daily bars must sit at 00:00 UTC of a session date. Intraday bars must start within the
    regular session [open, close) (or 04:00-20:00 New York with `extended_hours`) and at a
    whole number of bars after the open. A bar on a date the exchange was closed (a holiday
    an old calendar does not know, such as Juneteenth before 2022) is `not_a_session`.
    """
    if _all_in_session(frame, context, settings):
        return Findings.none()
    schedule = session_schedule_frame(context, frame.get_column("session"))
    marked = frame.lazy().join(schedule.lazy(), on="session", how="left", maintain_order="left")
    not_session = pl.col("session_open").is_null()
    if not context.intraday:
        flags = {
            "not_a_session": not_session,
            "not_midnight_utc": pl.col("ts") != pl.col("ts").dt.truncate("1d"),
        }
    else:
        ts, open_, close = pl.col("ts"), pl.col("session_open"), pl.col("session_close")
        if settings.extended_hours:
            outside = (ts < open_ - PRE_MARKET) | (ts >= close + AFTER_HOURS)
            name = "outside_extended_hours"
        else:
            outside = (ts < open_) | (ts >= close)
            name = "outside_regular_hours"
        step = BAR_MICROSECONDS[context.granularity]
        offset = (ts.dt.epoch("us") - open_.dt.epoch("us")) % step
        flags = {"not_a_session": not_session, name: outside, "off_bar_grid": offset != 0}
    flags = {name: expr.fill_null(False) for name, expr in flags.items()}
    return _bar_findings(marked, pl.any_horizontal(list(flags.values())), _kinds(flags))
