"""Outliers, 100x unit errors, split-sized jumps and corporate actions on generated series."""

from __future__ import annotations

import datetime as dt
import math

import polars as pl

from market_assets_tests.core.rules.builders import (
    actions,
    daily,
    failed,
    judge,
    minute,
    on,
    result_of,
    scale_prices,
    sessions,
    split_from,
)

DAYS = sessions("2024-01-02", 120)
EX_DATE = DAYS[70]


def test_block_of_sessions_100x_too_large_fails_unit_errors_on_exactly_that_block():
    bars = daily()
    block = pl.col("ts").dt.date().is_between(DAYS[40], DAYS[44])

    report = judge(scale_prices(bars, block, 100.0))

    offending = failed(report, "unit_errors")
    assert offending["session"].to_list() == DAYS[40:45]
    assert offending["severity"].unique().to_list() == ["ERROR"]
    assert result_of(report, "unit_errors", DAYS[42]).sample[0]["kind"] == "x100"
    # The same jumps are not also reported as outliers or splits: one defect, one name.
    assert failed(report, "return_outliers").is_empty()
    assert failed(report, "split_sized_jumps").is_empty()


def test_single_minute_bar_at_one_hundredth_fails_unit_errors():
    bars = minute(count=1)

    report = judge(scale_prices(bars, pl.int_range(pl.len()) == 200, 0.01), "1m")

    result = failed(report, "unit_errors").row(0, named=True)
    assert result["offending_rows"] == 1
    assert '"/100": 1' in result["details"]


def test_unadjusted_split_without_a_listed_action_is_an_unexplained_split_sized_jump():
    bars = split_from(daily(), EX_DATE, 4.0)

    report = judge(bars)

    result = result_of(report, "split_sized_jumps", EX_DATE)
    assert not result.passed and result.severity == "WARN"
    assert result.sample[0]["kind"] == "unexplained"
    assert result.sample[0]["looks_like"] == "4:1"
    assert math.isclose(result.sample[0]["observed_ratio"], 4.0, rel_tol=0.01)
    assert failed(report, "return_outliers").is_empty()


def test_raw_split_listed_in_corporate_actions_is_explained_and_passes():
    bars = split_from(daily(), EX_DATE, 4.0)

    report = judge(bars, actions=actions([("AAA", EX_DATE.isoformat(), "split", 4.0)]))

    assert failed(report, "split_sized_jumps").is_empty()
    assert result_of(report, "split_not_reflected", EX_DATE).passed


def test_split_left_in_an_adjusted_series_is_an_unadjusted_split():
    bars = split_from(daily(), EX_DATE, 2.0)

    report = judge(
        bars, adjusted=True, actions=actions([("AAA", EX_DATE.isoformat(), "split", 2.0)])
    )

    assert result_of(report, "split_sized_jumps", EX_DATE).sample[0]["kind"] == ("unadjusted_split")


def test_double_adjusted_split_jumps_up_by_the_ratio_on_the_ex_date():
    # Adjusting a 4:1 split twice divides history by 16 instead of 4: relative to the raw
    # post-split prices, the ex-date then jumps UP by 4.
    bars = scale_prices(daily(), pl.col("ts").dt.date() < EX_DATE, 0.25)

    report = judge(bars, actions=actions([("AAA", EX_DATE.isoformat(), "split", 4.0)]))

    result = result_of(report, "split_sized_jumps", EX_DATE)
    assert result.sample[0]["kind"] == "double_adjusted"
    assert result.sample[0]["looks_like"] == "1:4"


def test_crash_near_half_is_an_outlier_not_a_split():
    # AAPL 2000-09-29: previous close 53.38, open 28.06 (a 1.90 ratio, 5% off 2:1), close 25.81.
    bars = daily()
    crash = pl.col("ts").dt.date() >= EX_DATE
    prev_close = bars.filter(on(bars, DAYS[69]))["close"][0]
    crashed = (
        scale_prices(
            bars, crash, 25.81 / 53.38 * prev_close / bars.filter(on(bars, EX_DATE))["close"][0]
        )
        .with_columns(
            pl.when(on(bars, EX_DATE))
            .then(prev_close * 28.06 / 53.38)
            .otherwise(pl.col("open"))
            .alias("open")
        )
        .with_columns(pl.max_horizontal("high", "open").alias("high"))
    )

    report = judge(crashed)

    assert failed(report, "split_sized_jumps").is_empty()
    assert result_of(report, "return_outliers", EX_DATE).sample[0]["return"] < -0.45


def test_dividend_like_drop_100x_the_dividend_is_an_outlier_and_a_dividend_mismatch():
    bars = daily()
    prev_close = bars.filter(on(bars, DAYS[69]))["close"][0]
    amount = round(prev_close * 0.003, 2)  # a 0.3% dividend applied as 30%
    dropped = scale_prices(bars, pl.col("ts").dt.date() >= EX_DATE, 0.70)

    without = judge(dropped)
    with_actions = judge(
        dropped, actions=actions([("AAA", EX_DATE.isoformat(), "dividend", amount)])
    )

    assert result_of(without, "return_outliers", EX_DATE).offending_rows == 1
    result = result_of(with_actions, "dividend_mismatch", EX_DATE)
    assert not result.passed
    assert result.details["kinds"] == {"drop_far_larger": 1}
    assert result.sample[0]["drop"] > 0.25


def test_dividend_amount_100x_too_large_is_implausible():
    bars = daily()
    prev_close = bars.filter(on(bars, DAYS[69]))["close"][0]

    report = judge(
        bars,
        actions=actions(
            [("AAA", EX_DATE.isoformat(), "dividend", round(prev_close * 0.004 * 100, 2))]
        ),
    )

    assert result_of(report, "dividend_mismatch", EX_DATE).details["kinds"] == {
        "implausible_amount": 1
    }


def test_phantom_duplicate_dividend_fails_while_a_normal_dividend_passes():
    bars = daily()
    listed = actions(
        [
            ("AAA", DAYS[60].isoformat(), "dividend", 0.24),
            ("AAA", DAYS[63].isoformat(), "dividend", 0.24),  # the same payment again, 3 days on
        ]
    )

    report = judge(bars, actions=listed)

    assert result_of(report, "dividend_mismatch", DAYS[60]).passed
    assert result_of(report, "dividend_mismatch", DAYS[63]).details["kinds"] == {
        "phantom_duplicate": 1
    }


def test_phantom_drop_that_bounces_back_is_a_price_spike():
    bars = daily()
    dip = scale_prices(bars, on(bars, DAYS[80]), 0.92)

    report = judge(dip)

    result = result_of(report, "price_spikes", DAYS[80])
    assert not result.passed
    assert result.sample[0]["kind"] == "reverting_move"
    # The bounce back is part of the same spike, not a second outlier.
    assert failed(report, "return_outliers").is_empty()


def test_bad_opening_print_at_twice_the_price_is_a_spike_not_a_reverse_split():
    # Lean's IBM bar of 2002-12-23 opens at 159.58 after a 79.82 close, and closes at 80.46.
    bars = daily()
    bad = bars.with_columns(
        pl.when(on(bars, DAYS[90])).then(pl.col("open") * 2).otherwise(pl.col("open")).alias("open")
    ).with_columns(pl.max_horizontal("high", "open").alias("high"))

    report = judge(bad)

    assert failed(report, "split_sized_jumps").is_empty()
    assert result_of(report, "price_spikes", DAYS[90]).sample[0]["kind"] == "open_print"


def test_first_bar_after_split_still_at_the_pre_split_price_is_a_late_jump():
    # The vendor applied the 2:1 split one session late.
    bars = split_from(daily(), DAYS[71], 2.0)

    report = judge(bars, actions=actions([("AAA", EX_DATE.isoformat(), "split", 2.0)]))

    result = result_of(report, "split_not_reflected", EX_DATE)
    assert not result.passed and result.severity == "ERROR"
    assert result.sample[0]["kind"] == "late_jump"
    assert result.sample[0]["jump_at"].startswith(DAYS[71].isoformat())
    assert result.offending_rows == 1


def test_prices_already_adjusted_while_the_split_is_listed_warn_of_double_adjustment():
    # zipline's csvdir samples: split-adjusted prices with the split still in the split column.
    report = judge(daily(), actions=actions([("AAA", EX_DATE.isoformat(), "split", 7.0)]))

    result = result_of(report, "split_not_reflected", EX_DATE)
    assert result.sample[0]["kind"] == "no_jump"
    assert result.sample[0]["listed_split"] == "7:1"


def test_first_minute_open_8_percent_above_previous_close_warns_and_1_percent_passes():
    bars = minute(count=2)
    second = dt.date(2024, 3, 5)
    gapped = scale_prices(bars, pl.col("ts").dt.date() == second, 1.08)
    nudged = scale_prices(bars, pl.col("ts").dt.date() == second, 1.01)

    assert result_of(judge(gapped, "1m"), "open_vs_previous_close", second).severity == "WARN"
    assert not result_of(judge(gapped, "1m"), "open_vs_previous_close", second).passed
    assert result_of(judge(nudged, "1m"), "open_vs_previous_close", second).passed


def test_open_gap_uses_the_daily_close_when_no_minute_history_is_stored():
    bars = minute(count=1)
    first = dt.date(2024, 3, 4)
    previous = pl.DataFrame(
        {"symbol": ["AAA"], "session": [first], "previous_close": [bars["open"][0] / 1.10]}
    )

    report = judge(bars, "1m", previous_close=previous)

    assert not result_of(report, "open_vs_previous_close", first).passed


def test_daily_bar_off_its_minute_aggregate_by_2_percent_fails_and_exact_one_passes():
    minutes = minute(count=2)
    aggregate = (
        minutes.group_by(pl.col("ts").dt.date().alias("day"), "symbol")
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("volume").sum(),
        )
        .sort("day")
        .select(
            pl.col("day").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("ts"),
            "symbol",
            "open",
            "high",
            "low",
            "close",
            "volume",
            pl.lit("1d").alias("granularity"),
            pl.lit("test").alias("source"),
        )
    )
    off = scale_prices(
        aggregate, pl.col("ts").dt.date() == dt.date(2024, 3, 5), 1.02, columns=["close"]
    )
    off = off.with_columns(pl.max_horizontal("high", "close").alias("high"))

    exact = judge(aggregate, minute=minutes)
    mismatch = judge(off, minute=minutes)
    from_minute_side = judge(minutes, "1m", daily=off)

    assert exact.results.filter(pl.col("rule") == "daily_vs_minutes")["passed"].all()
    result = result_of(mismatch, "daily_vs_minutes", dt.date(2024, 3, 5))
    assert "close_differs" in result.details["kinds"]
    assert result_of(from_minute_side, "daily_vs_minutes", dt.date(2024, 3, 5)).passed is False
    without = judge(aggregate)
    assert without.results.filter(pl.col("rule") == "daily_vs_minutes").is_empty()
