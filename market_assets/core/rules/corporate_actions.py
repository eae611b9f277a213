"""Rules that hold bars against the corporate actions listed for them (`context.actions`).

They run only when actions are given. In a raw (unadjusted) series a split shows as an open
gap of the split ratio on its ex-date; a cash dividend as a small gap down of about its
amount. Series that say otherwise carry the defects vendors are known for: a first bar after
a split still at the pre-split price, prices already adjusted while the split is still listed
(adjusting again would double it), dividends 100x too large, phantom duplicate dividends.
"""

from __future__ import annotations

import polars as pl

from market_assets.core.rules.base import Findings, RuleContext
from market_assets.core.rules.outliers import ratio_label
from market_assets.core.rules.thresholds import DividendSettings, SplitReflectedSettings


def _first_bars(frame: pl.DataFrame) -> pl.DataFrame:
    """The first judged bar of each (symbol, session), with its row position."""
    return (
        frame.with_row_index("__row")
        .filter(pl.col("judged") & pl.col("new_session"))
        .select("symbol", "session", "__row", "ts", "prev_close", "open", "gap", "ret")
    )


def _actions(context: RuleContext, action_type: str) -> pl.DataFrame:
    actions = context.actions if context.actions is not None else pl.DataFrame()
    if actions.is_empty():
        return pl.DataFrame(
            schema={
                "symbol": pl.String(),
                "session": pl.Date(),
                "ratio": pl.Float64(),
                "amount": pl.Float64(),
            }
        )
    return (
        actions.filter(pl.col("action_type") == action_type)
        .select("symbol", pl.col("ex_date").alias("session"), "ratio", "amount")
        .sort("symbol", "session")
    )


def split_not_reflected(
    frame: pl.DataFrame, context: RuleContext, settings: SplitReflectedSettings
) -> Findings:
    """A listed split whose ex-date session does not open with a jump of its ratio.

    kind `late_jump`: the jump comes up to `search_sessions` sessions later (the first bars
    after the split still carry the pre-split price; `rows` counts them); `no_jump`: no jump
    at all, so the prices are probably already split-adjusted and adjusting them for this
    split would adjust twice. Not applicable to adjusted series.
    """
    splits = _actions(context, "split")
    first = _first_bars(frame)
    due = splits.join(first, on=["symbol", "session"], how="inner")
    if context.adjusted or due.is_empty():
        return Findings.none(checked=due.select("symbol", "session"))
    log_ratio = pl.col("ratio").log()
    at_open = (pl.col("gap") + log_ratio).abs() <= settings.tolerance
    spanned = (pl.col("ret") + log_ratio).abs() <= settings.tolerance
    reflected = at_open.fill_null(False) | (spanned.fill_null(False) & pl.lit(context.intraday))
    missed = due.filter(~reflected)
    if missed.is_empty():
        return Findings.none(checked=due.select("symbol", "session"))
    indexed = frame.with_row_index("__row").with_columns(
        pl.col("new_session").cast(pl.Int64).cum_sum().over("symbol").alias("__session_no")
    )
    positions = indexed.select("__row", "__session_no")
    missed = missed.join(positions, on="__row", how="left")
    later = (
        indexed.select("symbol", pl.col("__row").alias("__jump_row"), "ts", "gap", "__session_no")
        .rename({"ts": "jump_at", "gap": "__jump_gap", "__session_no": "__jump_session"})
        .join(missed.select("symbol", "__row", "ratio", "__session_no"), on="symbol")
        .filter(
            (pl.col("__jump_row") > pl.col("__row"))
            & (pl.col("__jump_session") <= pl.col("__session_no") + settings.search_sessions)
            & ((pl.col("__jump_gap") + pl.col("ratio").log()).abs() <= settings.tolerance)
        )
        .group_by("__row")
        .agg(pl.col("__jump_row").min(), pl.col("jump_at").min())
    )
    found = missed.join(later, on="__row", how="left")
    return Findings(
        found.select(
            "symbol",
            "session",
            pl.when(pl.col("__jump_row").is_not_null())
            .then(pl.col("__jump_row") - pl.col("__row"))
            .otherwise(1)
            .cast(pl.Int64)
            .alias("rows"),
            "ts",
            ratio_label(found, "ratio").alias("listed_split"),
            (pl.col("prev_close") / pl.col("open")).round(4).alias("observed_ratio"),
            "jump_at",
            pl.when(pl.col("__jump_row").is_not_null())
            .then(pl.lit("late_jump"))
            .otherwise(pl.lit("no_jump"))
            .alias("kind"),
        ),
        checked=due.select("symbol", "session"),
    )


def dividend_mismatch(
    frame: pl.DataFrame, context: RuleContext, settings: DividendSettings
) -> Findings:
    """Listed cash dividends that disagree with the prices around their ex-dates.

    kinds: `implausible_amount` (one payment above `max_dividend_yield` of the previous
    close: a dividend 100x too large); `drop_far_larger` (raw series only: the open fell more
    than `max_drop_multiple` times the dividend and more than `min_drop`: a dividend-like
    drop 100x the payment); `phantom_duplicate` (a second dividend of about the same amount
    within `phantom_window_days` of the previous one).
    """
    dividends = _actions(context, "dividend").with_columns(
        pl.col("session").shift(1).over("symbol").alias("__prev_ex"),
        pl.col("amount").shift(1).over("symbol").alias("__prev_amount"),
    )
    first = _first_bars(frame)
    due = dividends.join(first, on=["symbol", "session"], how="inner")
    if due.is_empty():
        return Findings.none(checked=due.select("symbol", "session"))
    share = pl.col("amount") / pl.col("prev_close")
    drop = 1 - pl.col("open") / pl.col("prev_close")
    days_apart = (pl.col("session") - pl.col("__prev_ex")).dt.total_days()
    flags = {
        "implausible_amount": share > settings.max_dividend_yield,
        "phantom_duplicate": (days_apart <= settings.phantom_window_days)
        & (
            (pl.col("amount") / pl.col("__prev_amount") - 1).abs()
            <= settings.phantom_amount_tolerance
        ),
    }
    if not context.adjusted:
        flags["drop_far_larger"] = drop > pl.max_horizontal(
            pl.lit(settings.min_drop), settings.max_drop_multiple * share
        )
    flags = {name: expr.fill_null(False) for name, expr in flags.items()}
    kinds = pl.concat_str(
        [pl.when(expr).then(pl.lit(name)) for name, expr in flags.items()],
        separator=",",
        ignore_nulls=True,
    )
    found = due.filter(pl.any_horizontal(list(flags.values())))
    return Findings(
        found.select(
            "symbol",
            "session",
            pl.lit(1, dtype=pl.Int64).alias("rows"),
            "ts",
            "amount",
            "prev_close",
            "open",
            share.round(6).alias("amount_share"),
            drop.round(6).alias("drop"),
            kinds.alias("kind"),
        ),
        checked=due.select("symbol", "session"),
    )
