"""Clean bar series and the defects vendors are known for, generated in code.

Every defect helper takes a clean canonical frame and returns a damaged copy, so a test
reads as "this clean series, with that defect, makes that rule fail".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from market_assets.core.calendar import get_calendar
from market_assets.core.rules import CheckThresholds, RuleContext, check_bars
from market_assets.core.rules.engine import QualityReport
from market_assets.core.schemas import ACTION_SCHEMA
from market_assets_tests.helpers import make_bars

PRICES = ("open", "high", "low", "close")


def sessions(first: str, count: int) -> list[dt.date]:
    """`count` exchange sessions from `first` on."""
    start = dt.date.fromisoformat(first)
    return get_calendar().sessions(start, start + dt.timedelta(days=count * 2 + 10))[:count]


def daily(
    symbols: Sequence[str] = ("AAA",), first: str = "2024-01-02", count: int = 120, seed: int = 1
) -> pl.DataFrame:
    return make_bars(list(symbols), sessions(first, count), "1d", seed=seed)


def minute(
    symbols: Sequence[str] = ("AAA",), first: str = "2024-03-04", count: int = 2, seed: int = 1
) -> pl.DataFrame:
    return make_bars(list(symbols), sessions(first, count), "1m", seed=seed)


def partitions_of(bars: pl.DataFrame, intraday: bool) -> tuple[tuple[str, dt.date], ...]:
    ts = pl.col("ts").dt.convert_time_zone("America/New_York") if intraday else pl.col("ts")
    pairs = bars.select("symbol", ts.dt.date().alias("session")).unique(maintain_order=True)
    return tuple(pairs.iter_rows())


def judge(
    bars: pl.DataFrame,
    granularity: str = "1d",
    partitions: Sequence[tuple[str, dt.date]] | None = None,
    thresholds: CheckThresholds | None = None,
    **context: object,
) -> QualityReport:
    """check_bars on `bars` with the built-in default thresholds unless given."""
    dataset = f"bars_{granularity}"
    pairs = (
        tuple(partitions) if partitions is not None else partitions_of(bars, granularity != "1d")
    )
    return check_bars(
        bars,
        RuleContext(
            dataset, granularity, pairs, thresholds or CheckThresholds.defaults(), **context
        ),
    )


def failed(report: QualityReport, rule: str) -> pl.DataFrame:
    return report.results.filter((pl.col("rule") == rule) & ~pl.col("passed"))


def result_of(report: QualityReport, rule: str, session: dt.date, symbol: str = "AAA"):
    """The RuleResult of one (symbol, session) partition."""
    for quality in report.partition_quality():
        if quality.symbol == symbol and quality.session == session:
            return next(r for r in quality.results if r.rule == rule)
    raise AssertionError(f"no partition {symbol} {session}")


def on(frame: pl.DataFrame, day: dt.date) -> pl.Expr:
    return pl.col("ts").dt.date() == day


def scale_prices(
    frame: pl.DataFrame, where: pl.Expr, factor: float, columns: Sequence[str] = PRICES
) -> pl.DataFrame:
    """Multiply `columns` by `factor` on the rows `where` selects."""
    return frame.with_columns(
        pl.when(where).then(pl.col(c) * factor).otherwise(pl.col(c)).alias(c) for c in columns
    )


def split_from(frame: pl.DataFrame, ex_date: dt.date, ratio: float) -> pl.DataFrame:
    """A raw series with a `ratio`:1 split on `ex_date`: prices divide, volume multiplies."""
    after = pl.col("ts").dt.date() >= ex_date
    return scale_prices(frame, after, 1.0 / ratio).with_columns(
        pl.when(after)
        .then((pl.col("volume") * ratio).cast(pl.Int64))
        .otherwise(pl.col("volume"))
        .alias("volume")
    )


def actions(rows: Sequence[tuple[str, str, str, float]]) -> pl.DataFrame:
    """(symbol, ex_date, action_type, value) -> ACTION_SCHEMA; value is the split ratio or
    the dividend amount."""
    return pl.DataFrame(
        {
            "symbol": [r[0] for r in rows],
            "ex_date": [dt.date.fromisoformat(r[1]) for r in rows],
            "action_type": [r[2] for r in rows],
            "ratio": [r[3] if r[2] == "split" else None for r in rows],
            "amount": [r[3] if r[2] == "dividend" else None for r in rows],
            "currency": ["USD"] * len(rows),
            "source": ["test"] * len(rows),
        },
        schema=ACTION_SCHEMA,
    )
