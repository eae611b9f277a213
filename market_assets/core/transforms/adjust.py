"""Backward price adjustment (CRSP-style, multiplicative) from corporate actions, point in time.

For one symbol, with sessions s and actions whose ex-date is t:

- a split of ratio r (new shares per old share, 2.0 for 2-for-1, 0.1 for 1-for-10) divides
  the prices of every session s < t by r and multiplies their volumes by r;
- a cash dividend D (per share as of its ex-date) multiplies the prices of every session
  s < t by (1 - D * r_t / C), where C is the raw close of the last session before t (the
  action's `reference_close`) and r_t the product of split ratios sharing that ex-date (C is
  quoted in pre-split shares, D in post-split shares, so a split and a dividend on the same
  day compose exactly);
- `split_factor(s)` and `dividend_factor(s)` are the products of those steps over every action
  with an ex-date after s; adjusted price = raw price x split_factor x dividend_factor, adjusted
  volume = raw volume / split_factor. Sessions on or after the last ex-date have factor 1.

Factors are never additive (subtracting dividends can produce negative prices): a step is a
ratio in (0, 1] for dividends and 1/r for splits. A dividend whose reference close is unknown,
or that is not smaller than it, cannot be turned into a ratio; it is left out (factor 1) and
reported in `AdjustmentSteps.unresolved`.

Point in time: every stored action carries `known_at`, the earliest moment the platform can
show it was public (see docs/data_dictionary.md). `as_of` keeps only actions with
`known_at <= as_of`, so the factors, and therefore adjusted history, are exactly those a user
would have computed at that moment. A null `known_at` counts as the ex-date at 00:00 UTC.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from market_assets.core.schemas import (
    ADJUSTMENT_SCHEMA,
    BAR_COLUMNS,
    PRICE_COLUMNS,
    STORED_ACTION_SCHEMA,
)

PRICE_DECIMALS = 9
UNRESOLVED_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ex_date": pl.Date(),
    "amount": pl.Float64(),
    "reference_close": pl.Float64(),
    "reason": pl.String(),
}
STEP_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ex_date": pl.Date(),
    "split_step": pl.Float64(),  # 1 / (product of split ratios on this ex-date)
    "dividend_step": pl.Float64(),  # product of (1 - D * r_t / C) on this ex-date
    "split_factor": pl.Float64(),  # for sessions before this ex-date: this and later steps
    "dividend_factor": pl.Float64(),
}


@dataclass(frozen=True)
class AdjustmentSteps:
    """One row per (symbol, ex-date) with its step and the cumulative factors before it."""

    steps: pl.DataFrame  # STEP_SCHEMA, sorted by (symbol, ex_date)
    unresolved: pl.DataFrame  # UNRESOLVED_SCHEMA: dividends left out, and why

    def factor_at(self, symbol: str, session: dt.date) -> tuple[float, float]:
        """(split_factor, dividend_factor) that apply to `symbol` on `session`."""
        later = self.steps.filter((pl.col("symbol") == symbol) & (pl.col("ex_date") > session))
        if later.is_empty():
            return 1.0, 1.0
        first = later.row(0, named=True)
        return first["split_factor"], first["dividend_factor"]


def conform_actions(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with the stored action columns (missing optional columns become null).

    A frame with no columns (`pl.DataFrame()`) stands for "no actions". Raises ValueError
    naming the column when `symbol`, `ex_date` or `action_type` is absent.
    """
    if frame.width == 0:
        return pl.DataFrame(schema=STORED_ACTION_SCHEMA)
    missing = [c for c in ("symbol", "ex_date", "action_type") if c not in frame.columns]
    if missing:
        raise ValueError(f"corporate actions frame is missing required column(s) {missing}")
    return frame.select(
        pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in STORED_ACTION_SCHEMA.items()
    )


def known_as_of(actions: pl.DataFrame, as_of: dt.datetime | dt.date | None) -> pl.DataFrame:
    """Actions known at `as_of` (a date means 00:00 UTC, a naive datetime is UTC); all if None."""
    actions = conform_actions(actions)
    if as_of is None:
        return actions
    moment = _to_utc(as_of)
    known_at = pl.coalesce(
        pl.col("known_at"), pl.col("ex_date").cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    )
    return actions.filter(known_at <= moment)


def fill_reference_closes(actions: pl.DataFrame, bars: pl.DataFrame) -> pl.DataFrame:
    """Dividends without `reference_close` take the raw close of the last bar before ex_date.

    `bars` are daily bars (symbol, ts, close). Rows that already have a reference close, and
    splits, are unchanged.
    """
    actions = conform_actions(actions)
    if bars.is_empty() or actions.is_empty():
        return actions
    closes = (
        bars.select("symbol", pl.col("ts").dt.date().alias("__session"), "close")
        .sort("__session")
        .rename({"close": "__close"})
    )
    indexed = actions.with_row_index("__row").sort("ex_date")
    joined = indexed.join_asof(
        closes,
        left_on="ex_date",
        right_on="__session",
        by="symbol",
        strategy="backward",
        allow_exact_matches=False,
        check_sortedness=False,
    )
    needs = (pl.col("action_type") == "dividend") & pl.col("reference_close").is_null()
    return (
        joined.with_columns(
            pl.when(needs)
            .then(pl.col("__close"))
            .otherwise(pl.col("reference_close"))
            .alias("reference_close")
        )
        .sort("__row")
        .select(list(STORED_ACTION_SCHEMA))
    )


def adjustment_steps(
    actions: pl.DataFrame, as_of: dt.datetime | dt.date | None = None
) -> AdjustmentSteps:
    """Per (symbol, ex-date): the split and dividend steps and the cumulative factors.

    Only splits and cash dividends known at `as_of` count; symbol changes never change prices.
    """
    known = known_as_of(actions, as_of)
    splits = (
        known.filter(pl.col("action_type") == "split")
        .group_by("symbol", "ex_date")
        .agg(pl.col("ratio").product().alias("__ratio"))
    )
    bad_split = splits.filter(~(pl.col("__ratio") > 0))
    if not bad_split.is_empty():
        row = bad_split.row(0, named=True)
        raise ValueError(
            f"corporate_actions {row['symbol']} split on {row['ex_date']}: ratio must be > 0 "
            f"(new shares per old share), got {row['__ratio']}; fix or drop the action"
        )
    dividends = (
        known.filter(pl.col("action_type") == "dividend")
        .join(splits, on=["symbol", "ex_date"], how="left")
        .with_columns(pl.col("__ratio").fill_null(1.0))
        .with_columns(
            (1.0 - pl.col("amount") * pl.col("__ratio") / pl.col("reference_close")).alias("__step")
        )
    )
    reason = (
        pl.when(pl.col("amount").is_null() | (pl.col("amount") <= 0))
        .then(pl.lit("dividend amount missing or not positive"))
        .when(pl.col("reference_close").is_null())
        .then(pl.lit("no close before the ex-date (reference_close unknown)"))
        .when(~(pl.col("__step") > 0) | (pl.col("__step") > 1))
        .then(pl.lit("dividend is not smaller than the close before the ex-date"))
    )
    dividends = dividends.with_columns(reason.alias("reason"))
    unresolved = dividends.filter(pl.col("reason").is_not_null()).select(list(UNRESOLVED_SCHEMA))
    dividend_steps = (
        dividends.filter(pl.col("reason").is_null())
        .group_by("symbol", "ex_date")
        .agg(pl.col("__step").product().alias("dividend_step"))
    )
    steps = (
        pl.concat(
            [
                splits.select("symbol", "ex_date", (1.0 / pl.col("__ratio")).alias("split_step")),
                dividend_steps,
            ],
            how="diagonal_relaxed",
        )
        .group_by("symbol", "ex_date")
        .agg(
            pl.col("split_step").product().fill_null(1.0),
            pl.col("dividend_step").product().fill_null(1.0),
        )
        .sort("symbol", "ex_date")
        .with_columns(
            _suffix_product("split_step").alias("split_factor"),
            _suffix_product("dividend_step").alias("dividend_factor"),
        )
    )
    return AdjustmentSteps(
        steps=steps.select(pl.col(name).cast(dtype) for name, dtype in STEP_SCHEMA.items()),
        unresolved=unresolved.sort("symbol", "ex_date"),
    )


def _suffix_product(column: str) -> pl.Expr:
    """Product of `column` over this and every later row of the same symbol."""
    return pl.col(column).reverse().cum_prod().reverse().over("symbol")


def adjust_bars(
    bars: pl.DataFrame,
    steps: AdjustmentSteps,
    session: pl.Expr | None = None,
) -> pl.DataFrame:
    """Raw bars plus adj_open/high/low/close/volume, split_factor and dividend_factor.

    `session` gives each bar's session date (default: the UTC date of `ts`, right for daily
    bars; pass the layout's session expression for intraday bars). Row order is kept.
    """
    session = session if session is not None else pl.col("ts").dt.date()
    factors = steps.steps.select("symbol", "ex_date", "split_factor", "dividend_factor").sort(
        "ex_date"
    )
    tagged = (
        bars.select(BAR_COLUMNS).with_row_index("__row").with_columns(session.alias("__session"))
    )
    joined = tagged.sort("__session").join_asof(
        factors,
        left_on="__session",
        right_on="ex_date",
        by="symbol",
        strategy="forward",
        allow_exact_matches=False,
        check_sortedness=False,
    )
    price = pl.col("split_factor") * pl.col("dividend_factor")
    return (
        joined.with_columns(
            pl.col("split_factor").fill_null(1.0),
            pl.col("dividend_factor").fill_null(1.0),
        )
        .with_columns(
            *[(pl.col(c) * price).round(PRICE_DECIMALS).alias(f"adj_{c}") for c in PRICE_COLUMNS],
            (pl.col("volume") / pl.col("split_factor")).round(PRICE_DECIMALS).alias("adj_volume"),
        )
        .sort("__row")
        .select(
            *BAR_COLUMNS,
            *[pl.col(name).cast(dtype) for name, dtype in ADJUSTMENT_SCHEMA.items()],
        )
    )


def adjust_with_actions(
    bars: pl.DataFrame,
    actions: pl.DataFrame,
    *,
    as_of: dt.datetime | dt.date | None = None,
    daily_closes: pl.DataFrame | None = None,
    session: pl.Expr | None = None,
) -> tuple[pl.DataFrame, AdjustmentSteps]:
    """Adjust `bars` by `actions` known at `as_of`; returns the frame and the steps used.

    `daily_closes` (daily bars) fill dividends whose `reference_close` is missing.
    """
    if daily_closes is not None:
        actions = fill_reference_closes(actions, daily_closes)
    steps = adjustment_steps(actions, as_of)
    return adjust_bars(bars, steps, session), steps


def _to_utc(value: dt.datetime | dt.date) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    return dt.datetime.combine(value, dt.time(0), tzinfo=dt.UTC)
