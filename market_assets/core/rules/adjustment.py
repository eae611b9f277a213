"""Adjustment rules: raw and adjusted daily bars judged against corporate actions.

Each rule reads whole series of one or more symbols (adjustment is a property of a history,
not of one bar) and returns one `RuleResult` for the frame it was given:

- `split_jumps_explained`: every split-sized jump in RAW bars has a split within one session.
- `no_split_jumps_in_adjusted`: no split-sized jump is left in ADJUSTED bars.
- `dividend_continuity`: across each dividend's ex-date, the adjusted close moves exactly as
  the raw close does against the previous close less the dividend, so the adjustment removed
  the dividend's size (no more, no less) and nothing else.
- `vendor_adjusted_close_difference`: the largest relative difference between our adjusted
  close and a vendor's (e.g. yfinance Adj Close), both scaled to 1 on their last common day.
- `double_adjustment_risk`: a split is listed but raw prices show no jump on its ex-date, so
  the series already looks adjusted and adjusting it again would double-adjust it.

A split-sized jump is an overnight gap open/previous close within `price_tolerance` (in log
terms) of 1/R for a usual ratio R, that the close keeps (close/previous close within twice
the tolerance of 1/R: a bad opening print alone is not a split), confirmed by volume:
shares traded change by about R too (today's volume over the median of the previous 20
sessions, within a factor of `volume_tolerance` of R). Price alone cannot tell AAPL's 2:1
split of 2000-06-21 from its -52% crash of 2000-09-29; the crash traded 23x its usual
volume, a split about 2x.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from market_assets.core.rules.base import RuleResult, Severity

SPLIT_RATIOS = (1.5, 2.0, 3.0, 4.0, 5.0, 7.0, 8.0, 10.0, 15.0, 20.0)
VOLUME_WINDOW = 20
SAMPLE_SIZE = 5
POINTS = {Severity.ERROR: 20.0, Severity.WARN: 5.0}


@dataclass(frozen=True)
class SplitJumpSettings:
    """When a gap counts as split-sized (see the module docstring)."""

    ratios: Sequence[float] = SPLIT_RATIOS
    price_tolerance: float = 0.1  # |ln(gap * R)| below this
    volume_tolerance: float = 4.0  # volume jump within [R / tol, R * tol]
    window_sessions: int = 1  # a split within this many sessions explains a jump


def _result(
    rule: str, severity: Severity, offending: pl.DataFrame, details: dict[str, object]
) -> RuleResult:
    passed = offending.is_empty()
    sample = [
        {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in row.items()}
        for row in offending.head(SAMPLE_SIZE).to_dicts()
    ]
    return RuleResult(
        rule=rule,
        passed=passed,
        severity=severity,
        offending_rows=offending.height,
        sample=sample,
        score_contribution=0.0 if passed else POINTS[severity],
        details=details,
    )


def split_sized_jumps(
    bars: pl.DataFrame,
    settings: SplitJumpSettings | None = None,
    prices: tuple[str, str, str] = ("open", "close", "volume"),
) -> pl.DataFrame:
    """Sessions whose overnight gap and volume both look like a split: (symbol, session, R).

    `prices` names the open, close and volume columns (adj_* to judge adjusted bars). R > 1
    for a forward split (prices fall), R < 1 for a reverse split.
    """
    settings = settings or SplitJumpSettings()
    open_, close, volume = prices
    ratios = [*settings.ratios, *(1.0 / r for r in settings.ratios)]
    frame = (
        bars.sort("symbol", "ts")
        .with_columns(
            pl.col("ts").dt.date().alias("session"),
            (pl.col(open_) / pl.col(close).shift(1).over("symbol")).alias("gap"),
            (pl.col(close) / pl.col(close).shift(1).over("symbol")).alias("move"),
            (
                pl.col(volume).cast(pl.Float64)
                / pl.col(volume)
                .cast(pl.Float64)
                .shift(1)
                .rolling_median(VOLUME_WINDOW, min_samples=1)
                .over("symbol")
            ).alias("volume_jump"),
        )
        .filter(pl.col("gap").is_not_null())
    )
    matched = pl.lit(None, pl.Float64)
    for ratio in sorted(ratios, key=lambda r: -abs(math.log(r))):
        price_fits = (
            ((pl.col("gap") * ratio).log().abs() < settings.price_tolerance)
            & ((pl.col("move") * ratio).log().abs() < 2 * settings.price_tolerance)
        ).fill_null(False)
        volume_fits = (
            (pl.col("volume_jump") >= ratio / settings.volume_tolerance)
            & (pl.col("volume_jump") <= ratio * settings.volume_tolerance)
        ).fill_null(False)
        matched = pl.when(price_fits & volume_fits).then(pl.lit(ratio)).otherwise(matched)
    return (
        frame.with_columns(matched.alias("ratio"))
        .filter(pl.col("ratio").is_not_null())
        .select("symbol", "session", "ratio", "gap", "volume_jump")
    )


def split_jumps_explained(
    raw: pl.DataFrame, actions: pl.DataFrame, settings: SplitJumpSettings | None = None
) -> RuleResult:
    """ERROR when a split-sized jump in raw bars has no split within one session of it."""
    settings = settings or SplitJumpSettings()
    jumps = split_sized_jumps(raw, settings)
    sessions = raw.select("symbol", pl.col("ts").dt.date().alias("session")).sort(
        "symbol", "session"
    )
    position = sessions.with_columns(pl.int_range(pl.len()).over("symbol").alias("index"))
    splits = (
        actions.filter(pl.col("action_type") == "split")
        .select("symbol", pl.col("ex_date").alias("session"))
        .join(position, on=["symbol", "session"], how="inner")
        .rename({"index": "split_index"})
    )
    located = jumps.join(position, on=["symbol", "session"], how="left")
    explained = located.join(splits.drop("session"), on="symbol", how="left").filter(
        (pl.col("index") - pl.col("split_index")).abs() <= settings.window_sessions
    )
    unexplained = located.join(explained, on=["symbol", "session"], how="anti").drop("index")
    return _result(
        "split_jumps_explained",
        Severity.ERROR,
        unexplained,
        {"split_sized_jumps": jumps.height, "explained": jumps.height - unexplained.height},
    )


def no_split_jumps_in_adjusted(
    adjusted: pl.DataFrame, settings: SplitJumpSettings | None = None
) -> RuleResult:
    """ERROR when adjusted bars still show a split-sized jump (a split left unadjusted)."""
    jumps = split_sized_jumps(adjusted, settings, ("adj_open", "adj_close", "adj_volume"))
    return _result("no_split_jumps_in_adjusted", Severity.ERROR, jumps, {})


def dividend_continuity(
    adjusted: pl.DataFrame, actions: pl.DataFrame, tolerance: float = 1e-4
) -> RuleResult:
    """ERROR when an ex-date's adjusted return differs from its ex-dividend return by more
    than `tolerance` (relative).

    Ex-dividend return over ex-date t: close_t x r_t / (close_{t-1} - D x r_t), with r_t a
    same-day split (D is per post-split share); adjusted return: adj_close_t / adj_close_{t-1}.
    """
    bars = adjusted.sort("symbol", "ts").with_columns(
        pl.col("ts").dt.date().alias("ex_date"),
        pl.col("close").shift(1).over("symbol").alias("prev_close"),
        pl.col("adj_close").shift(1).over("symbol").alias("prev_adj_close"),
    )
    splits = (
        actions.filter(pl.col("action_type") == "split")
        .group_by("symbol", "ex_date")
        .agg(pl.col("ratio").product().alias("same_day_ratio"))
    )
    dividends = (
        actions.filter(pl.col("action_type") == "dividend")
        .group_by("symbol", "ex_date")
        .agg(pl.col("amount").sum())
        .join(splits, on=["symbol", "ex_date"], how="left")
        .join(bars, on=["symbol", "ex_date"], how="inner")
        .filter(pl.col("prev_close").is_not_null())
        .with_columns(
            (
                pl.col("close")
                * pl.col("same_day_ratio").fill_null(1.0)
                / (
                    pl.col("prev_close")
                    - pl.col("amount") * pl.col("same_day_ratio").fill_null(1.0)
                )
            ).alias("total_return"),
            (pl.col("adj_close") / pl.col("prev_adj_close")).alias("adjusted_return"),
        )
        .with_columns(
            (pl.col("adjusted_return") / pl.col("total_return") - 1.0).abs().alias("difference")
        )
    )
    offending = dividends.filter(pl.col("difference") > tolerance).select(
        "symbol",
        pl.col("ex_date").alias("session"),
        "amount",
        "total_return",
        "adjusted_return",
        "difference",
    )
    worst = dividends.get_column("difference").max() if dividends.height else None
    return _result(
        "dividend_continuity",
        Severity.ERROR,
        offending,
        {"dividends_checked": dividends.height, "largest_difference": worst},
    )


def vendor_adjusted_close_difference(
    adjusted: pl.DataFrame, vendor: pl.DataFrame, tolerance: float = 0.005
) -> RuleResult:
    """WARN when our adj_close and the vendor's differ by more than `tolerance` (relative).

    `vendor` has (symbol, ts, vendor_adj_close). Both series are divided by their value on
    the last common session of each symbol, since vendors anchor factors on different days.
    """
    joined = (
        adjusted.select("symbol", "ts", "adj_close")
        .join(vendor.select("symbol", "ts", "vendor_adj_close"), on=["symbol", "ts"])
        .sort("symbol", "ts")
        .with_columns(
            (pl.col("adj_close") / pl.col("vendor_adj_close")).alias("ratio"),
        )
        .with_columns(
            (pl.col("ratio") / pl.col("ratio").last().over("symbol") - 1.0)
            .abs()
            .alias("difference")
        )
    )
    worst = joined.sort("difference", descending=True).head(1)
    details: dict[str, object] = {"sessions_compared": joined.height}
    if worst.height:
        details["largest_relative_difference"] = worst["difference"][0]
        details["largest_at"] = worst["ts"][0].date().isoformat()
        details["symbol"] = worst["symbol"][0]
    offending = joined.filter(pl.col("difference") > tolerance).select(
        "symbol",
        pl.col("ts").dt.date().alias("session"),
        "adj_close",
        "vendor_adj_close",
        "difference",
    )
    return _result("vendor_adjusted_close_difference", Severity.WARN, offending, details)


def double_adjustment_risk(raw: pl.DataFrame, actions: pl.DataFrame) -> RuleResult:
    """WARN for each listed split whose ex-date shows no jump in raw prices.

    The gap open/previous close is nearer 1 than 1/R in log terms (|ln gap| < |ln R| / 2):
    the series already reflects the split, and adjusting it again would double-adjust.
    """
    bars = raw.sort("symbol", "ts").with_columns(
        pl.col("ts").dt.date().alias("ex_date"),
        (pl.col("open") / pl.col("close").shift(1).over("symbol")).alias("gap"),
    )
    splits = (
        actions.filter(pl.col("action_type") == "split")
        .select("symbol", "ex_date", "ratio")
        .join(bars.select("symbol", "ex_date", "gap"), on=["symbol", "ex_date"], how="inner")
        .filter(pl.col("gap").is_not_null())
    )
    offending = splits.filter(pl.col("gap").log().abs() < pl.col("ratio").log().abs() / 2).select(
        "symbol", pl.col("ex_date").alias("session"), "ratio", "gap"
    )
    return _result(
        "double_adjustment_risk", Severity.WARN, offending, {"splits_checked": splits.height}
    )
