"""Rules that compare granularities: daily bars against their minute bars, and each
session's first open against the previous session's close."""

from __future__ import annotations

import numpy as np
import polars as pl

from market_assets.core.calendar import TradingCalendar
from market_assets.core.rules.base import Findings, RuleContext
from market_assets.core.rules.frame import column, session_of
from market_assets.core.rules.outliers import bad_print_rows
from market_assets.core.rules.thresholds import CrossGranularitySettings, OpenGapSettings
from market_assets.core.transforms.resample import regular_hours_mask

FIELDS = ("open", "high", "low", "close", "volume")


def _minute_aggregate(
    minute: pl.DataFrame, calendar: TradingCalendar | None = None
) -> pl.DataFrame:
    """One row per (symbol, session): first open, max high, min low, last close, volume; of
    the regular-hours minutes only when a `calendar` is given."""
    if calendar is not None and not minute.is_empty():
        minute = minute.filter(regular_hours_mask(minute.get_column("ts"), calendar))
    ordered = minute.sort("symbol", "ts")
    ordered = ordered.with_columns(session_of(ordered.get_column("ts"), intraday=True))
    return ordered.group_by("symbol", "session", maintain_order=True).agg(
        pl.col("open").first(),
        pl.col("high").max(),
        pl.col("low").min(),
        pl.col("close").last(),
        pl.col("volume").sum(),
    )


def daily_vs_minutes(
    frame: pl.DataFrame, context: RuleContext, settings: CrossGranularitySettings
) -> Findings:
    """The daily bar equals the aggregate of its session's minute bars: open, high, low and
    close within `price_tolerance`, volume within `volume_tolerance` (relative to the daily).

    Judges daily bars against `context.minute`, or minute bars against `context.daily`; only
    sessions present on both sides are checked. Minutes outside the regular session (of
    `context.calendar`) are left out of the aggregate unless the settings say the daily bar
    includes extended hours (`daily_includes_extended_hours`).
    """
    regular = None if settings.daily_includes_extended_hours else context.calendar
    judged = frame.filter(pl.col("judged"))
    if context.intraday:
        other = context.daily
        if other is None or other.is_empty():
            return Findings.none(checked=judged.select("symbol", "session").clear())
        minute_side = _minute_aggregate(judged, regular)
        daily_side = other.select("symbol", pl.col("ts").dt.date().alias("session"), *FIELDS)
    else:
        other = context.minute
        if other is None or other.is_empty():
            return Findings.none(checked=judged.select("symbol", "session").clear())
        minute_side = _minute_aggregate(other, regular)
        daily_side = judged.select("symbol", "session", *FIELDS)
    both = daily_side.join(
        minute_side, on=["symbol", "session"], how="inner", suffix="_minutes"
    ).unique(["symbol", "session"], keep="first", maintain_order=True)
    diffs = {}
    for field in FIELDS:
        daily, minutes = pl.col(field).cast(pl.Float64), pl.col(f"{field}_minutes").cast(pl.Float64)
        base = pl.max_horizontal(daily.abs(), pl.lit(1.0)) if field == "volume" else daily.abs()
        diffs[field] = ((minutes - daily).abs() / base).alias(f"{field}_diff")
    compared = both.with_columns(diffs.values())
    tolerance = {f: settings.price_tolerance for f in FIELDS} | {
        "volume": settings.volume_tolerance
    }
    bad = {f: pl.col(f"{f}_diff") > tolerance[f] for f in FIELDS}
    kinds = pl.concat_str(
        [pl.when(expr).then(pl.lit(f"{name}_differs")) for name, expr in bad.items()],
        separator=",",
        ignore_nulls=True,
    )
    found = compared.filter(pl.any_horizontal(list(bad.values())).fill_null(False))
    return Findings(
        found.select(
            "symbol",
            "session",
            pl.lit(1, dtype=pl.Int64).alias("rows"),
            *[c for f in FIELDS for c in (f, f"{f}_minutes")],
            pl.max_horizontal([pl.col(f"{f}_diff") for f in FIELDS]).round(6).alias("worst_diff"),
            kinds.alias("kind"),
        ),
        checked=both.select("symbol", "session"),
    )


def open_vs_previous_close(
    frame: pl.DataFrame, context: RuleContext, settings: OpenGapSettings
) -> Findings:
    """A session's first open more than `max_gap` away from the previous session's close.

    The previous close is the last bar before the session (lookback history) or, for the
    first session of a symbol, `context.previous_close` (e.g. from daily bars). Gaps that
    match a split ratio or a 100x unit jump, and bad prints (`price_spikes`), are left to
    those rules so each defect is named once.
    """
    prev_close = column(frame, "prev_close", float("nan"))
    firsts = (
        column(frame, "judged")
        & column(frame, "new_session")
        & ~np.isnan(prev_close)
        & np.isnan(column(frame, "split_ratio", float("nan")))
        & (column(frame, "unit_step") == 0)
    )
    positions = np.flatnonzero(firsts)
    first = frame[positions]
    with np.errstate(divide="ignore", invalid="ignore"):
        gaps = np.abs(column(frame, "open")[positions] / prev_close[positions] - 1)
    if not (gaps > settings.max_gap).any():
        return Findings.none(checked=first.select("symbol", "session"))
    change = pl.col("open") / pl.col("prev_close") - 1
    found = first.filter((change.abs() > settings.max_gap).fill_null(False))
    if not found.is_empty():
        found = found.filter(~pl.col("row").is_in(bad_print_rows(frame, context).implode()))
    return Findings(
        found.select(
            "symbol",
            "session",
            pl.lit(1, dtype=pl.Int64).alias("rows"),
            "ts",
            "prev_close",
            "open",
            change.round(6).alias("gap"),
        ),
        checked=first.select("symbol", "session"),
    )
