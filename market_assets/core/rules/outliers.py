"""Price and volume anomalies: robust return outliers, reverting spikes, 100x unit errors,
split-sized jumps, stale prices and zero-volume bars that move.

Returns are log returns against the previous bar of the same symbol (close to close; for
intraday bars the first bar of a session is left to `open_vs_previous_close`). Statistics
are robust: the median and the median absolute deviation (MAD, scaled by 1.4826 to match a
standard deviation on normal data) per symbol over the judged bars plus their lookback
history, so one bad print cannot hide itself by inflating a standard deviation.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from market_assets.core.rules.base import Findings, RuleContext
from market_assets.core.rules.frame import column
from market_assets.core.rules.thresholds import (
    ReturnOutlierSettings,
    SpikeSettings,
    SplitJumpSettings,
    StaleSettings,
    UnitErrorSettings,
    ZeroVolumeSettings,
)

MAD_TO_SIGMA = 1.4826
MIN_SCALE = 1e-6  # floor of the robust scale, so a flat series does not divide by zero


def compute_return_stats(frame: pl.DataFrame) -> pl.DataFrame:
    """Per symbol: the median and the robust scale (1.4826 MAD) of its eligible returns."""
    ret = pl.col("ret")
    return (
        frame.lazy()
        .filter(pl.col("eligible"))
        .group_by("symbol")
        .agg(ret.median().alias("median"), (ret - ret.median()).abs().median().alias("mad"))
        .select(
            "symbol",
            "median",
            pl.max_horizontal(pl.col("mad") * MAD_TO_SIGMA, pl.lit(MIN_SCALE)).alias("scale"),
        )
        .collect()
    )


def return_stats(frame: pl.DataFrame, context: RuleContext) -> pl.DataFrame:
    """The frame's return statistics, computed once per check by the engine."""
    if context.return_stats is not None:
        return context.return_stats
    return compute_return_stats(frame)


def _screen(
    frame: pl.DataFrame,
    stats: pl.DataFrame,
    threshold: float,
    min_abs: float,
    judged_only: bool = False,
) -> np.ndarray:
    """Positions of rows whose return may lie beyond `threshold` robust sigmas of their
    symbol's median: outside the narrowest band any symbol has, and at least `min_abs` in
    size. Numpy on every row; the exact per-symbol test then runs on the few let through.
    """
    if stats.is_empty():
        return np.empty(0, dtype=np.int64)
    low = (stats["median"] - threshold * stats["scale"]).max()
    high = (stats["median"] + threshold * stats["scale"]).min()
    ret = column(frame, "ret", 0.0)
    mask = column(frame, "eligible") & (np.abs(ret) >= min_abs) & ((ret < low) | (ret > high))
    if judged_only:
        mask &= column(frame, "judged")
    return np.flatnonzero(mask)


def _scored(candidates: pl.DataFrame, stats: pl.DataFrame) -> pl.DataFrame:
    """`candidates` with `robust_z` of their return and their symbol's `scale`."""
    return candidates.join(stats, on="symbol", how="left", maintain_order="left").with_columns(
        ((pl.col("ret") - pl.col("median")).abs() / pl.col("scale")).alias("robust_z")
    )


def spike_starts(
    frame: pl.DataFrame, context: RuleContext, settings: SpikeSettings
) -> pl.DataFrame:
    """Rows t (column `row`) that start a reverting move: t and t+1 (same symbol and, for
    intraday bars, same session) both beyond the threshold, in opposite directions, the
    second taking back all but `max_reversal_residual` of the first."""
    stats = return_stats(frame, context)
    positions = _screen(frame, stats, settings.mad_threshold, settings.min_abs_return)
    if positions.size == 0:
        return pl.DataFrame(schema={"row": pl.UInt32()})
    candidates = frame.select("row", "symbol", "new_session", "ret")[positions]
    big = _scored(candidates, stats).filter(pl.col("robust_z") > settings.mad_threshold)
    following = pl.col("row").shift(-1) == pl.col("row") + 1
    same = following & (pl.col("symbol") == pl.col("symbol").shift(-1))
    if context.intraday:
        same = same & ~pl.col("new_session").shift(-1)
    first, second = pl.col("ret"), pl.col("ret").shift(-1)
    reverts = (first * second < 0) & (
        (first + second).abs()
        <= settings.max_reversal_residual * pl.max_horizontal(first.abs(), second.abs())
    )
    return big.filter((same & reverts).fill_null(False)).select("row")


def open_prints(frame: pl.DataFrame, context: RuleContext, settings: SpikeSettings) -> pl.DataFrame:
    """Rows (column `row`) whose open lies far beyond both the previous close and the bar's
    own close, on the same side, while the close itself is unremarkable: a bad opening
    print."""
    to_previous = column(frame, "gap", 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        to_close = np.log(column(frame, "open") / column(frame, "close"))
    cheap = (
        (np.abs(to_previous) >= settings.min_abs_return)
        & (np.abs(to_close) >= settings.min_abs_return)
        & (to_previous * to_close > 0)
        & np.isnan(column(frame, "split_ratio", float("nan")))
    )
    positions = np.flatnonzero(cheap)
    if positions.size == 0:
        return pl.DataFrame(schema={"row": pl.UInt32()})
    candidates = frame.select("row", "symbol", "ret")[positions].with_columns(
        pl.Series("__to_previous", to_previous[positions]),
        pl.Series("__to_close", to_close[positions]),
    )
    scored = _scored(candidates, return_stats(frame, context))
    far = (pl.col("__to_previous").abs() / pl.col("scale") > settings.mad_threshold) & (
        pl.col("__to_close").abs() / pl.col("scale") > settings.mad_threshold
    )
    quiet = pl.col("robust_z").is_null() | (pl.col("robust_z") <= settings.mad_threshold)
    return scored.filter((far & quiet).fill_null(False)).select("row")


def bad_print_rows(frame: pl.DataFrame, context: RuleContext) -> pl.Series:
    """Rows `price_spikes` reports (both bars of a reverting move, and bad opens), which
    other rules leave alone so each defect is named once."""
    spikes = context.settings.price_spikes
    if not spikes.enabled:
        return pl.Series("row", [], dtype=pl.UInt32)
    starts = spike_starts(frame, context, spikes).get_column("row")
    return pl.concat(
        [starts, starts + 1, open_prints(frame, context, spikes).get_column("row")]
    ).unique()


def return_outliers(
    frame: pl.DataFrame, context: RuleContext, settings: ReturnOutlierSettings
) -> Findings:
    """Returns whose robust z-score exceeds `mad_threshold` and whose size exceeds
    `min_abs_return`; split-sized and 100x jumps and reverting spikes are left to their own
    rules, so each defect is named once."""
    stats = return_stats(frame, context)
    positions = _screen(
        frame, stats, settings.mad_threshold, settings.min_abs_return, judged_only=True
    )
    if positions.size == 0:
        return Findings.none()
    candidates = frame[positions]
    outliers = _scored(candidates, stats).filter(
        (pl.col("robust_z") > settings.mad_threshold)
        & ~pl.col("row").is_in(bad_print_rows(frame, context).implode())
    )
    return Findings(_return_sample(outliers))


def price_spikes(frame: pl.DataFrame, context: RuleContext, settings: SpikeSettings) -> Findings:
    """Bad prints: a bar far from both neighbours.

    kind `reverting_move`: a close at least `mad_threshold` robust sigmas away that the next
    bar takes back (bad ticks, phantom drops that bounce back); `open_print`: an open that
    far beyond both the previous close and its own close, on the same side (a bad opening
    print, e.g. a 2x open on an otherwise normal day).
    """
    starts = spike_starts(frame, context, settings).get_column("row")
    opens = open_prints(frame, context, settings).get_column("row")
    if starts.is_empty() and opens.is_empty():
        return Findings.none()
    flagged = frame.filter(
        pl.col("judged")
        & (pl.col("row").is_in(starts.implode()) | pl.col("row").is_in(opens.implode()))
    )
    if flagged.is_empty():
        return Findings.none()
    scored = _scored(flagged, return_stats(frame, context))
    return Findings(
        _return_sample(scored).with_columns(
            pl.when(scored.get_column("row").is_in(starts.implode()))
            .then(pl.lit("reverting_move"))
            .otherwise(pl.lit("open_print"))
            .alias("kind"),
            scored.get_column("open"),
        )
    )


def _return_sample(found: pl.DataFrame) -> pl.DataFrame:
    return found.select(
        "symbol",
        "session",
        pl.lit(1, dtype=pl.Int64).alias("rows"),
        "ts",
        "prev_close",
        "close",
        (pl.col("ret").exp() - 1).round(6).alias("return"),
        pl.col("robust_z").round(2).alias("robust_z"),
    )


def unit_errors(frame: pl.DataFrame, context: RuleContext, settings: UnitErrorSettings) -> Findings:
    """Bars about `factor` (100x) above or below their neighbours, singly or in a block.

    Each close-to-close jump of about x100 raises the series' unit level by one, each jump of
    about /100 lowers it; the level most of a symbol's bars (history included) sit at is
    taken as right, and every judged bar at another level is offending.
    """
    if not bool((frame.get_column("unit_step") != 0).any()):
        return Findings.none()
    levelled = frame.with_columns(pl.col("unit_step").cum_sum().over("symbol").alias("__level"))
    baseline = (
        levelled.group_by("symbol", "__level")
        .len()
        .sort(["symbol", "len", "__level"], descending=[False, True, False])
        .unique("symbol", keep="first")
        .select("symbol", pl.col("__level").alias("__baseline"))
    )
    found = levelled.join(baseline, on="symbol", how="left", maintain_order="left").filter(
        pl.col("judged") & (pl.col("__level") != pl.col("__baseline"))
    )
    times = (pl.lit(settings.factor) ** (pl.col("__level") - pl.col("__baseline"))).round(6)
    return Findings(
        found.select(
            "symbol",
            "session",
            pl.lit(1, dtype=pl.Int64).alias("rows"),
            "ts",
            "prev_close",
            "close",
            times.alias("times_expected"),
            pl.when(pl.col("__level") > pl.col("__baseline"))
            .then(pl.lit(f"x{settings.factor:g}"))
            .otherwise(pl.lit(f"/{settings.factor:g}"))
            .alias("kind"),
        )
    )


def format_ratio(ratio: float) -> str:
    """2.0 -> "2:1" (forward split), 0.5 -> "1:2" (reverse split), 1.5 -> "3:2"."""
    for new in range(1, 21):
        old = new / ratio
        if abs(old - round(old)) < 1e-6 and round(old) >= 1:
            return f"{new}:{round(old)}"
    return f"{ratio:.4g}:1"


def ratio_label(frame: pl.DataFrame, column: str) -> pl.Series:
    """`format_ratio` of each value of `column` (computed once per distinct ratio)."""
    values = frame.get_column(column)
    labels = {r: format_ratio(r) for r in values.drop_nulls().unique().to_list()}
    return values.replace_strict(labels, default=None, return_dtype=pl.String)


def split_sized_jumps(
    frame: pl.DataFrame, context: RuleContext, settings: SplitJumpSettings
) -> Findings:
    """Open gaps (open vs previous close) within `tolerance` of a split ratio (2, 3, 4, 5, 7,
    8, 10, 3/2 and their inverses) that no corporate action explains.

    kind: `unexplained` (no split on that session: an unadjusted split in an adjusted series,
    or a split not yet known), `mid_session` (an intraday jump not at a session's first bar),
    `double_adjusted` (the price jumps by the inverse of a split listed that day: history was
    divided by the ratio twice), `unadjusted_split` (an adjusted series still showing a
    listed split). A raw series jumping by a listed split's ratio on its ex-date passes.
    """
    candidates = frame.filter(pl.col("judged") & pl.col("split_ratio").is_not_null())
    if candidates.is_empty():
        return Findings.none()
    candidates = candidates.with_columns(
        _action_ratio(candidates, context).alias("__action"),
    )
    observed = pl.col("prev_close") / pl.col("open")
    matches = (pl.col("split_ratio") / pl.col("__action")).log().abs() <= settings.tolerance
    inverse = (pl.col("split_ratio") * pl.col("__action")).log().abs() <= settings.tolerance
    listed = pl.col("__action").is_not_null() & pl.col("new_session")
    kind = (
        pl.when(listed & matches)
        .then(pl.lit("unadjusted_split" if context.adjusted else "explained"))
        .when(listed & inverse)
        .then(pl.lit("double_adjusted"))
        .when(~pl.col("new_session"))
        .then(pl.lit("mid_session"))
        .otherwise(pl.lit("unexplained"))
    )
    found = candidates.with_columns(kind.alias("kind")).filter(pl.col("kind") != "explained")
    return Findings(
        found.select(
            "symbol",
            "session",
            pl.lit(1, dtype=pl.Int64).alias("rows"),
            "ts",
            "prev_close",
            "open",
            observed.round(4).alias("observed_ratio"),
            ratio_label(found, "split_ratio").alias("looks_like"),
            "kind",
        )
    )


def _action_ratio(candidates: pl.DataFrame, context: RuleContext) -> pl.Series:
    """The ratio of a split listed on each candidate's session, else null."""
    if context.actions is None or context.actions.is_empty():
        return pl.Series("__action", [None] * candidates.height, dtype=pl.Float64)
    splits = (
        context.actions.filter(pl.col("action_type") == "split")
        .select("symbol", pl.col("ex_date").alias("session"), pl.col("ratio").alias("__ratio"))
        .unique(["symbol", "session"], keep="last")
    )
    joined = candidates.select("symbol", "session").join(
        splits, on=["symbol", "session"], how="left", maintain_order="left"
    )
    return joined.get_column("__ratio")


def stale_prices(frame: pl.DataFrame, context: RuleContext, settings: StaleSettings) -> Findings:
    """Runs of at least `min_run` consecutive bars with the same close, every one of them
    carrying volume (a feed repeating its last price while trades are reported)."""
    if _longest_repeat(frame) < settings.min_run:
        return Findings.none()
    traded = (pl.col("volume") > 0).fill_null(False)
    changed = (
        pl.col("new_symbol")
        | (pl.col("close") != pl.col("prev_close")).fill_null(True)
        | (traded != traded.shift(1)).fill_null(True)
    )
    runs = (
        frame.lazy()
        .with_columns(traded.alias("__traded"), changed.cum_sum().alias("__run"))
        .with_columns(pl.col("__run").set_sorted())
        .with_columns(pl.len().over("__run").alias("__run_length"))
    )
    found = runs.filter(
        pl.col("judged") & pl.col("__traded") & (pl.col("__run_length") >= settings.min_run)
    )
    return Findings(
        found.select(
            "symbol",
            "session",
            pl.lit(1, dtype=pl.Int64).alias("rows"),
            "ts",
            "close",
            "volume",
            pl.col("__run_length").alias("run_length"),
        ).collect()
    )


def _longest_repeat(frame: pl.DataFrame) -> int:
    """Length of the longest run of one close with volume, within a symbol (numpy: a cheap
    bound that spares the exact query on clean frames)."""
    if frame.height < 2:
        return frame.height
    close = frame.get_column("close").to_numpy()
    traded = frame.get_column("volume").fill_null(0).to_numpy() > 0
    new_symbol = frame.get_column("new_symbol").to_numpy()
    repeats = (close[1:] == close[:-1]) & traded[1:] & traded[:-1] & ~new_symbol[1:]
    breaks = np.flatnonzero(np.concatenate(([True], ~repeats, [True])))
    return int(np.diff(breaks).max())


def zero_volume_moves(
    frame: pl.DataFrame, context: RuleContext, settings: ZeroVolumeSettings
) -> Findings:
    """Bars with zero volume whose price moved: a range (high != low, open != close) or a
    close different from the previous close. Nothing traded, so nothing should move."""
    if not (frame.get_column("volume").fill_null(-1).to_numpy() == 0).any():
        return Findings.none()
    flags = {
        "range_without_volume": (pl.col("high") != pl.col("low"))
        | (pl.col("open") != pl.col("close")),
        "close_moved_without_volume": (pl.col("close") != pl.col("prev_close")),
    }
    flags = {name: expr.fill_null(False) for name, expr in flags.items()}
    zero = (pl.col("volume") == 0).fill_null(False)
    found = frame.lazy().filter(pl.col("judged") & zero & pl.any_horizontal(list(flags.values())))
    kinds = pl.concat_str(
        [pl.when(expr).then(pl.lit(name)) for name, expr in flags.items()],
        separator=",",
        ignore_nulls=True,
    )
    return Findings(
        found.select(
            "symbol",
            "session",
            pl.lit(1, dtype=pl.Int64).alias("rows"),
            "ts",
            "open",
            "high",
            "low",
            "close",
            "prev_close",
            kinds.alias("kind"),
        ).collect()
    )
