"""Adjustment rules on real data (Lean, Quandl, zipline csvdir) and generated mistakes."""

from __future__ import annotations

import datetime as dt

import polars as pl

from market_assets.core.rules.adjustment import (
    dividend_continuity,
    double_adjustment_risk,
    no_split_jumps_in_adjusted,
    split_jumps_explained,
    split_sized_jumps,
    vendor_adjusted_close_difference,
)
from market_assets.core.rules.base import Severity
from market_assets.core.transforms.adjust import adjust_with_actions
from market_assets_tests.realdata import (
    lean_actions,
    lean_daily_bars,
    lean_factor_file,
    quandl_bars_and_actions,
    zipline_csvdir,
)

D = dt.date
AAPL_SPLITS = [D(2000, 6, 21), D(2005, 2, 28), D(2014, 6, 9), D(2020, 8, 31)]


def aapl() -> tuple[pl.DataFrame, pl.DataFrame]:
    return lean_daily_bars("AAPL"), lean_actions("AAPL", lean_factor_file("AAPL"))


def test_split_sized_jumps_in_raw_aapl_are_the_four_splits_and_not_the_2000_crash():
    bars, _ = aapl()

    jumps = split_sized_jumps(bars)

    assert jumps["session"].to_list() == AAPL_SPLITS
    assert jumps["ratio"].to_list() == [2.0, 2.0, 7.0, 4.0]
    crash = bars.filter(pl.col("ts").dt.date() == D(2000, 9, 29)).row(0, named=True)
    assert crash["close"] / 53.38 < 0.49  # the -52% day is in the data


def test_split_jumps_explained_given_every_split_passes():
    bars, actions = aapl()

    result = split_jumps_explained(bars, actions)

    assert result.passed
    assert result.details == {"split_sized_jumps": 4, "explained": 4}


def test_split_jumps_explained_given_a_missing_split_names_its_session():
    bars, actions = aapl()

    result = split_jumps_explained(bars, actions.filter(pl.col("ex_date") != D(2014, 6, 9)))

    assert not result.passed
    assert result.severity is Severity.ERROR
    assert [row["session"] for row in result.sample] == ["2014-06-09"]
    assert result.sample[0]["ratio"] == 7.0


def test_split_jumps_explained_given_a_split_listed_one_session_late_still_explains_it():
    bars, actions = aapl()
    late = actions.with_columns(
        pl.when(pl.col("ex_date") == D(2014, 6, 9))
        .then(pl.lit(D(2014, 6, 10)))
        .otherwise(pl.col("ex_date"))
        .alias("ex_date")
    )

    assert split_jumps_explained(bars, late).passed


def test_no_split_jumps_in_adjusted_given_our_adjustment_passes_and_a_missed_split_fails():
    bars, actions = aapl()
    adjusted, _ = adjust_with_actions(bars, actions)
    missed, _ = adjust_with_actions(bars, actions.filter(pl.col("ex_date") != D(2020, 8, 31)))

    assert no_split_jumps_in_adjusted(adjusted).passed
    failed = no_split_jumps_in_adjusted(missed)
    assert not failed.passed
    assert [row["session"] for row in failed.sample] == ["2020-08-31"]


def test_dividend_continuity_given_lean_dividends_holds_to_1e_9():
    bars, actions = aapl()
    adjusted, _ = adjust_with_actions(bars, actions)

    result = dividend_continuity(adjusted, actions, tolerance=1e-9)

    assert result.passed
    assert result.details["dividends_checked"] == 35


def test_dividend_continuity_given_a_dividend_adjusted_ten_times_too_big_fails():
    bars, actions = aapl()
    wrong = actions.with_columns(
        pl.when(pl.col("ex_date") == D(2019, 8, 9))
        .then(pl.col("amount") * 10)
        .otherwise(pl.col("amount"))
        .alias("amount")
    )
    adjusted, _ = adjust_with_actions(bars, wrong)

    result = dividend_continuity(adjusted, actions)

    assert not result.passed
    assert [row["session"] for row in result.sample] == ["2019-08-09"]


def test_vendor_adjusted_close_difference_reports_the_largest_quandl_gap():
    bars, actions, vendor = quandl_bars_and_actions("MSFT")
    adjusted, _ = adjust_with_actions(bars, actions, daily_closes=bars)

    result = vendor_adjusted_close_difference(
        adjusted, vendor.with_columns(pl.lit("MSFT").alias("symbol"))
    )

    assert result.passed
    assert 1e-4 < result.details["largest_relative_difference"] < 2e-4
    assert result.details["sessions_compared"] == 252


def test_double_adjustment_risk_given_zipline_csvdir_already_adjusted_flags_the_split():
    rows = zipline_csvdir("AAPL")
    ts = pl.col("date").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("ts")
    bars = rows.select(ts, pl.lit("AAPL").alias("symbol"), "open", "high", "low", "close", "volume")
    listed = rows.filter(pl.col("split") != 1.0).select(
        pl.lit("AAPL").alias("symbol"),
        pl.col("date").alias("ex_date"),
        pl.lit("split").alias("action_type"),
        pl.col("split").alias("ratio"),
    )

    result = double_adjustment_risk(bars, listed)

    assert not result.passed
    assert result.severity is Severity.WARN
    assert result.sample[0]["session"] == "2014-06-09"


def test_double_adjustment_risk_given_raw_lean_bars_passes():
    bars, actions = aapl()

    result = double_adjustment_risk(bars, actions)

    assert result.passed
    assert result.details["splits_checked"] == 4
