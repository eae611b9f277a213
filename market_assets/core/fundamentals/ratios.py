"""Daily fundamental ratios per symbol from point-in-time fundamentals and raw daily closes.

For a session D (after its close) each input is the point-in-time value as of D (filed <= D,
see pit.py), and its filing date rides along, so no ratio uses a value filed after D:

    market_cap     = shares_outstanding x shares_split_factor x close (raw close of D)
    book_to_market = stockholders_equity / market_cap
    roe            = net_income_ttm / stockholders_equity          (null unless equity > 0)
    roa            = net_income_ttm / total_assets                 (null unless assets > 0)
    roi            = net_income_ttm / (stockholders_equity + long_term_debt), with debt of the
                     same balance-sheet date as equity; null when the filer tags none then

`shares_split_factor` is the product of the split ratios with an ex-date after the share
count's date and on or before D (from stored corporate actions), so a share count filed
before a 10:1 split is not multiplied by a post-split price. A session gets a row when any
fundamental input is known by then; without a daily bar its price-based ratios are null.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from market_assets.core.fundamentals.config import FundamentalsConfig
from market_assets.core.fundamentals.pit import point_in_time_series
from market_assets.core.schemas import FUNDAMENTAL_RATIO_SCHEMA

INPUTS = {  # PIT field -> ratio column prefix
    "shares_outstanding": "shares",
    "stockholders_equity": "equity",
    "total_assets": "assets",
    "long_term_debt": "debt",
    "net_income_ttm": "net_income",
}


def _wide_inputs(
    facts: pl.DataFrame,
    partitions: Sequence[tuple[str, dt.date]],
    config: FundamentalsConfig,
) -> pl.DataFrame:
    """One row per (symbol, session) with each input's value, period end, filed and unit."""
    frames = []
    by_symbol: dict[str, list[dt.date]] = {}
    for symbol, session in partitions:
        by_symbol.setdefault(symbol, []).append(session)
    for symbol, sessions in sorted(by_symbol.items()):
        series = point_in_time_series(facts, [symbol], list(INPUTS), sessions, config)
        frames.append(series)
    if not frames:
        return pl.DataFrame(schema={"symbol": pl.String(), "session": pl.Date()})
    long = pl.concat(frames).rename({"as_of": "session"})
    parts = []
    for field, prefix in INPUTS.items():
        parts.append(
            long.filter(pl.col("field") == field).select(
                "symbol",
                "session",
                pl.col("value").alias(prefix),
                pl.col("period_end").alias(f"{prefix}_period_end"),
                pl.col("filed").alias(f"{prefix}_filed"),
                pl.col("unit").alias(f"{prefix}_unit"),
            )
        )
    wide = parts[0]
    for part in parts[1:]:
        wide = wide.join(part, on=["symbol", "session"], how="left")
    return wide


def split_factors(actions: pl.DataFrame, inputs: pl.DataFrame) -> pl.Series:
    """Per input row: the product of split ratios with shares_period_end < ex_date <= session."""
    if actions.is_empty() or inputs.is_empty():
        return pl.Series("shares_split_factor", [1.0] * inputs.height, dtype=pl.Float64())
    splits = actions.filter(pl.col("action_type") == "split").select("symbol", "ex_date", "ratio")
    keyed = inputs.select("symbol", "session", "shares_period_end").with_row_index("__row")
    factors = (
        keyed.join(splits, on="symbol", how="inner")
        .filter(
            (pl.col("ex_date") > pl.col("shares_period_end"))
            & (pl.col("ex_date") <= pl.col("session"))
        )
        .group_by("__row")
        .agg(pl.col("ratio").product().alias("shares_split_factor"))
    )
    return (
        keyed.join(factors, on="__row", how="left")
        .sort("__row")
        .get_column("shares_split_factor")
        .fill_null(1.0)
    )


def compute_ratios(
    facts: pl.DataFrame,
    bars: pl.DataFrame,
    actions: pl.DataFrame,
    partitions: Sequence[tuple[str, dt.date]],
    config: FundamentalsConfig,
    source: str = "sec_edgar",
) -> pl.DataFrame:
    """Ratios (FUNDAMENTAL_RATIO_SCHEMA) for each (symbol, session) of `partitions` where a
    fundamental input is known. `facts` are the symbols' stored facts (any filing date: the
    point-in-time view drops later ones), `bars` their raw daily bars for those sessions,
    `actions` their corporate actions (splits adjust the share count; may be empty)."""
    inputs = _wide_inputs(facts, partitions, config)
    if inputs.is_empty():
        return pl.DataFrame(schema=FUNDAMENTAL_RATIO_SCHEMA)
    known = pl.any_horizontal(pl.col(p).is_not_null() for p in INPUTS.values() if p != "debt")
    inputs = inputs.filter(known)
    inputs = inputs.with_columns(split_factors(actions, inputs).alias("shares_split_factor"))
    closes = bars.select("symbol", pl.col("ts").dt.date().alias("session"), "close")
    frame = inputs.join(closes, on=["symbol", "session"], how="left")
    shares = pl.when(pl.col("shares") > 0).then(pl.col("shares") * pl.col("shares_split_factor"))
    market_cap = pl.col("shares_outstanding") * pl.col("close")
    equity, assets, income = pl.col("equity"), pl.col("assets"), pl.col("net_income")
    same_date_debt = pl.when(pl.col("debt_period_end") == pl.col("equity_period_end")).then(
        pl.col("debt")
    )
    capital = equity + same_date_debt
    frame = frame.with_columns(shares.alias("shares_outstanding")).with_columns(
        pl.when(market_cap > 0).then(market_cap).alias("market_cap")
    )
    frame = frame.with_columns(
        (equity / pl.col("market_cap")).alias("book_to_market"),
        pl.when(equity > 0).then(income / equity).alias("roe"),
        pl.when(assets > 0).then(income / assets).alias("roa"),
        pl.when(capital > 0).then(income / capital).alias("roi"),
        pl.coalesce("equity_unit", "assets_unit", "net_income_unit").alias("currency"),
        pl.col("session").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("ts"),
        pl.lit(source).alias("source"),
    )
    renamed = frame.rename(
        {
            "equity": "stockholders_equity",
            "assets": "total_assets",
            "debt": "long_term_debt",
            "net_income": "net_income_ttm",
        }
    )
    return renamed.select(
        pl.col(name).cast(dtype) for name, dtype in FUNDAMENTAL_RATIO_SCHEMA.items()
    ).sort("symbol", "ts")
