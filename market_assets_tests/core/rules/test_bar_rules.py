"""Each bar rule on a clean series (passes) and on a series with one real-world defect."""

from __future__ import annotations

import datetime as dt

import polars as pl

from market_assets.core.rules import CheckThresholds
from market_assets_tests.core.rules.builders import (
    daily,
    failed,
    judge,
    minute,
    on,
    result_of,
    scale_prices,
    sessions,
)

JUNETEENTH_2022 = dt.date(2022, 6, 20)  # first observed NYSE holiday (Monday)


def test_clean_daily_and_minute_series_pass_every_rule():
    daily_report = judge(daily(("AAA", "BBB")))
    minute_report = judge(minute(("AAA", "BBB")), "1m")

    assert daily_report.results["passed"].all()
    assert minute_report.results["passed"].all()
    assert set(minute_report.results["rule"]) >= {
        "ohlc_relations",
        "duplicate_timestamps",
        "session_hours",
        "missing_sessions",
        "missing_bars",
        "return_outliers",
        "price_spikes",
        "unit_errors",
        "split_sized_jumps",
        "stale_prices",
        "zero_volume_moves",
    }
    assert daily_report.partitions["score"].to_list() == [100.0] * 240


def test_ohlc_given_close_outside_low_high_after_bad_adjustment_fails_with_error():
    bars = daily()
    bad_day = sessions("2024-01-02", 120)[50]
    # An adjustment applied to the close only: the close lands outside [low, high].
    broken = scale_prices(bars, on(bars, bad_day), 0.5, columns=["close"])

    report = judge(broken)

    result = result_of(report, "ohlc_relations", bad_day)
    assert not result.passed
    assert result.severity == "ERROR"
    assert result.offending_rows == 1
    assert result.details["kinds"] == {"low_above_open_close": 1}
    assert result.sample[0]["close"] < result.sample[0]["low"]
    assert failed(report, "ohlc_relations").height == 1


def test_duplicate_and_out_of_order_timestamps_fail_with_error():
    bars = minute(count=1)
    repeated = pl.concat([bars, bars.slice(10, 1)])  # a duplicate (symbol, ts), appended last

    report = judge(repeated, "1m")

    result = failed(report, "duplicate_timestamps").row(0, named=True)
    assert result["severity"] == "ERROR"
    assert result["offending_rows"] == 1  # the appended row repeats a key and goes back in time
    assert '"duplicate": 1' in result["details"] and '"out_of_order": 1' in result["details"]


def test_session_hours_flags_after_hours_and_off_grid_minutes():
    bars = minute(count=1)  # 2024-03-04: regular session 14:30-21:00 UTC
    late = bars.tail(1).with_columns(pl.col("ts") + pl.duration(minutes=5))
    off_grid = bars.slice(5, 1).with_columns(pl.col("ts") + pl.duration(seconds=30))
    broken = pl.concat([bars, late, off_grid]).sort("ts")

    report = judge(broken, "1m")
    extended = judge(
        broken,
        "1m",
        thresholds=CheckThresholds.from_mapping(
            {"bars": {"defaults": {"session_hours": {"extended_hours": True}}}}
        ),
    )

    result = result_of(report, "session_hours", dt.date(2024, 3, 4))
    assert result.details["kinds"] == {"off_bar_grid": 1, "outside_regular_hours": 1}
    assert result_of(extended, "session_hours", dt.date(2024, 3, 4)).details["kinds"] == {
        "off_bar_grid": 1
    }


def test_daily_bar_on_juneteenth_from_an_old_calendar_is_not_a_session():
    bars = daily(first="2022-06-13", count=10)
    # A vendor whose calendar predates the holiday forward-fills a bar for 2022-06-20.
    phantom = bars.filter(on(bars, dt.date(2022, 6, 17))).with_columns(
        pl.lit(dt.datetime(2022, 6, 20, tzinfo=dt.UTC)).alias("ts")
    )

    report = judge(pl.concat([bars, phantom]).sort("ts"))

    result = result_of(report, "session_hours", JUNETEENTH_2022)
    assert not result.passed and result.severity == "ERROR"
    assert result.details["kinds"] == {"not_a_session": 1}


def test_missing_juneteenth_session_is_reported_as_a_gap_range():
    # In 2021 Juneteenth became a federal holiday two days before it was observed (Friday
    # 2021-06-18), but NYSE traded; a calendar that closed that day leaves a hole.
    wanted = sessions("2021-06-14", 10)
    bars = daily(first="2021-06-14", count=10)
    holed = bars.filter(~on(bars, dt.date(2021, 6, 18)))

    report = judge(holed, partitions=[("AAA", day) for day in wanted])

    result = result_of(report, "missing_sessions", dt.date(2021, 6, 18))
    assert not result.passed and result.severity == "ERROR"
    assert result.details["gaps"] == [
        {"start": "2021-06-18T00:00:00+00:00", "end": "2021-06-19T00:00:00+00:00", "missing": 1}
    ]
    assert failed(report, "missing_sessions").height == 1


def test_minute_halt_is_reported_as_a_range_of_missing_bars_not_filled():
    bars = minute(count=1)  # 2024-03-04
    halt_start = dt.datetime(2024, 3, 4, 19, 0, tzinfo=dt.UTC)
    halted = bars.filter(~pl.col("ts").is_between(halt_start, halt_start + dt.timedelta(minutes=9)))
    trimmed = halted.filter(pl.col("ts") < dt.datetime(2024, 3, 4, 20, 58, tzinfo=dt.UTC))

    report = judge(trimmed, "1m")

    result = result_of(report, "missing_bars", dt.date(2024, 3, 4))
    assert not result.passed and result.severity == "WARN"
    assert result.offending_rows == 12
    assert result.details["gaps"] == [
        {"start": "2024-03-04T19:00:00+00:00", "end": "2024-03-04T19:10:00+00:00", "missing": 10},
        {"start": "2024-03-04T20:58:00+00:00", "end": "2024-03-04T21:00:00+00:00", "missing": 2},
    ]
    assert len(trimmed) == 378  # the rule reports the gap and never fills it


def test_early_close_with_its_210_minutes_is_complete():
    early = dt.date(2024, 11, 29)
    bars = minute(first="2024-11-29", count=1)

    report = judge(bars, "1m")

    assert len(bars) == 210
    assert result_of(report, "missing_bars", early).passed


def test_stale_prices_given_repeated_closes_with_volume_fail_but_zero_volume_repeats_pass():
    bars = daily()
    days = sessions("2024-01-02", 120)[60:67]
    frozen_close = bars.filter(on(bars, days[0]))["close"][0]
    stale = bars.with_columns(
        pl.when(pl.col("ts").dt.date().is_in(days))
        .then(frozen_close)
        .otherwise(pl.col("close"))
        .alias("close")
    ).with_columns(
        pl.max_horizontal("high", "close").alias("high"),
        pl.min_horizontal("low", "close").alias("low"),
    )
    no_trades = stale.with_columns(
        pl.when(pl.col("ts").dt.date().is_in(days[1:]))
        .then(0)
        .otherwise(pl.col("volume"))
        .alias("volume")
    )

    report = judge(stale)

    stale_results = failed(report, "stale_prices")
    assert stale_results.height == 7
    assert stale_results["severity"].unique().to_list() == ["WARN"]
    assert failed(judge(no_trades), "stale_prices").is_empty()


def test_zero_volume_bar_whose_price_moved_fails():
    bars = minute(count=1)
    moved = bars.with_columns(
        pl.when(pl.int_range(pl.len()) == 100).then(0).otherwise(pl.col("volume")).alias("volume")
    )

    report = judge(moved, "1m")

    result = failed(report, "zero_volume_moves").row(0, named=True)
    assert result["offending_rows"] == 1
    assert "range_without_volume" in result["details"]
