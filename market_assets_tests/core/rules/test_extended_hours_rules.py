"""Split rules and minute -> daily reconciliation on minute bars with extended hours (issue 13,
item 6), on series generated here."""

from __future__ import annotations

import datetime as dt

import polars as pl

from market_assets.core.rules import CheckThresholds
from market_assets.core.schemas import BAR_SCHEMA
from market_assets_tests.core.rules.builders import actions, failed, judge, result_of
from market_assets_tests.helpers import make_bars

BEFORE, EX_DATE = dt.date(2024, 3, 4), dt.date(2024, 3, 5)


def extended_bar(ts: dt.datetime, open_: float, close: float, volume: int = 500) -> dict:
    return {
        "ts": ts,
        "symbol": "AAA",
        "open": open_,
        "high": max(open_, close) * 1.001,
        "low": min(open_, close) * 0.999,
        "close": close,
        "volume": volume,
        "trade_count": 10,
        "vwap": (open_ + close) / 2,
        "granularity": "1m",
        "source": "test",
    }


def with_bars(bars: pl.DataFrame, rows: list[dict]) -> pl.DataFrame:
    extra = pl.DataFrame(rows, schema=BAR_SCHEMA)
    return pl.concat([bars, extra]).sort("symbol", "ts")


def split_in_the_first_extended_hours_bar() -> pl.DataFrame:
    """Regular minutes near 100 on BEFORE; on EX_DATE (a 2:1 split) a 04:00 New York bar that
    opens at the old price and closes at the new one, then regular minutes near 50."""
    before = make_bars(["AAA"], [BEFORE], "1m", seed=3)
    before = before.with_columns(
        (pl.col(c) / pl.col("close").last() * 100) for c in ("open", "high", "low", "close", "vwap")
    )
    after = make_bars(["AAA"], [EX_DATE], "1m", seed=4)
    after = after.with_columns(
        (pl.col(c) / pl.col("open").first() * 50) for c in ("open", "high", "low", "close", "vwap")
    )
    first = extended_bar(dt.datetime(2024, 3, 5, 9, 0, tzinfo=dt.UTC), 100.0, 50.0)
    return with_bars(pl.concat([before, after]), [first])


EXTENDED = CheckThresholds.from_mapping(
    {"bars": {"defaults": {"session_hours": {"extended_hours": True}}}}
)


def test_a_split_inside_the_first_extended_hours_bar_is_reflected():
    bars = split_in_the_first_extended_hours_bar()

    report = judge(
        bars,
        "1m",
        partitions=[("AAA", BEFORE), ("AAA", EX_DATE)],
        thresholds=EXTENDED,
        actions=actions([("AAA", EX_DATE.isoformat(), "split", 2.0)]),
    )

    assert result_of(report, "split_not_reflected", EX_DATE).passed
    assert failed(report, "split_sized_jumps").is_empty()


def test_a_split_inside_the_first_bar_is_seen_as_a_jump_when_no_split_is_listed():
    bars = split_in_the_first_extended_hours_bar()

    report = judge(bars, "1m", partitions=[("AAA", BEFORE), ("AAA", EX_DATE)], thresholds=EXTENDED)

    result = result_of(report, "split_sized_jumps", EX_DATE)
    assert not result.passed
    assert result.sample[0]["looks_like"] == "2:1"


def daily_of_regular_minutes(minutes: pl.DataFrame, day: dt.date) -> pl.DataFrame:
    """The daily bar a vendor reports: the aggregate of the regular session's minutes."""
    return (
        minutes.sort("ts")
        .select(
            pl.lit(dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC)).alias("ts"),
            pl.lit("AAA").alias("symbol"),
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("volume").sum(),
            pl.lit(None, pl.Int64).alias("trade_count"),
            pl.lit(None, pl.Float64).alias("vwap"),
            pl.lit("1d").alias("granularity"),
            pl.lit("test").alias("source"),
        )
        .cast(BAR_SCHEMA)
    )


def minutes_with_extended_hours() -> pl.DataFrame:
    regular = make_bars(["AAA"], [EX_DATE], "1m", seed=5)
    price = regular["open"][0]
    return with_bars(
        regular,
        [
            extended_bar(
                dt.datetime(2024, 3, 5, 9, 0, tzinfo=dt.UTC), price * 0.9, price * 0.9, 90_000
            ),
            extended_bar(
                dt.datetime(2024, 3, 5, 22, 0, tzinfo=dt.UTC), price * 1.1, price * 1.1, 90_000
            ),
        ],
    )


def test_minute_to_daily_reconciliation_compares_regular_hours_minutes():
    minutes = minutes_with_extended_hours()
    daily = daily_of_regular_minutes(make_bars(["AAA"], [EX_DATE], "1m", seed=5), EX_DATE)

    report = judge(daily, "1d", minute=minutes)

    assert result_of(report, "daily_vs_minutes", EX_DATE).passed


def test_a_daily_bar_defined_with_extended_hours_is_compared_with_every_minute():
    minutes = minutes_with_extended_hours()
    daily = daily_of_regular_minutes(make_bars(["AAA"], [EX_DATE], "1m", seed=5), EX_DATE)
    thresholds = CheckThresholds.from_mapping(
        {"bars": {"defaults": {"daily_vs_minutes": {"daily_includes_extended_hours": True}}}}
    )

    report = judge(daily, "1d", thresholds=thresholds, minute=minutes)

    result = result_of(report, "daily_vs_minutes", EX_DATE)
    assert not result.passed
    assert "open_differs" in result.sample[0]["kind"]
