"""Backward adjustment factors: generated cases, point in time, and real vendor factor files."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from market_assets.core.transforms.adjust import (
    adjust_with_actions,
    adjustment_steps,
    fill_reference_closes,
    known_as_of,
)
from market_assets_tests.helpers import make_bars
from market_assets_tests.realdata import (
    lean_actions,
    lean_adjusted_close,
    lean_daily_bars,
    lean_factor_file,
    quandl_bars_and_actions,
)

D = dt.date
SESSIONS = [D(2024, 3, 4), D(2024, 3, 5), D(2024, 3, 6), D(2024, 3, 7), D(2024, 3, 8)]


def actions(*rows: tuple) -> pl.DataFrame:
    """(ex_date, type, ratio, amount, reference_close[, known_at]) rows for symbol AAA."""
    records = [
        {
            "symbol": "AAA",
            "ex_date": row[0],
            "action_type": row[1],
            "ratio": row[2],
            "amount": row[3],
            "reference_close": row[4],
            "known_at": row[5] if len(row) > 5 else None,
            "source": "test",
        }
        for row in rows
    ]
    return pl.DataFrame(
        records,
        schema={
            "symbol": pl.String(),
            "ex_date": pl.Date(),
            "action_type": pl.String(),
            "ratio": pl.Float64(),
            "amount": pl.Float64(),
            "reference_close": pl.Float64(),
            "known_at": pl.Datetime("us", "UTC"),
            "source": pl.String(),
        },
    )


@pytest.fixture
def bars() -> pl.DataFrame:
    return make_bars(["AAA"], SESSIONS)


def factors(frame: pl.DataFrame) -> list[tuple[float, float]]:
    return list(zip(frame["split_factor"], frame["dividend_factor"], strict=True))


def test_adjust_given_a_split_divides_earlier_prices_and_multiplies_earlier_volumes(bars):
    adjusted, _ = adjust_with_actions(bars, actions((SESSIONS[2], "split", 4.0, None, None)))

    assert factors(adjusted) == [(0.25, 1.0), (0.25, 1.0), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0)]
    assert adjusted["adj_close"][0] == pytest.approx(bars["close"][0] / 4, rel=1e-12)
    assert adjusted["adj_volume"][1] == bars["volume"][1] * 4
    assert adjusted["adj_close"][2:].to_list() == bars["close"][2:].to_list()


def test_adjust_given_a_reverse_split_multiplies_earlier_prices(bars):
    adjusted, _ = adjust_with_actions(bars, actions((SESSIONS[1], "split", 0.1, None, None)))

    assert adjusted["split_factor"].to_list() == [10.0, 1.0, 1.0, 1.0, 1.0]
    assert adjusted["adj_open"][0] == pytest.approx(bars["open"][0] * 10, rel=1e-12)
    assert adjusted["adj_volume"][0] == pytest.approx(bars["volume"][0] / 10)


def test_adjust_given_a_dividend_uses_the_previous_close_multiplicatively(bars):
    close_before = bars["close"][2]
    adjusted, _ = adjust_with_actions(
        bars, actions((SESSIONS[3], "dividend", None, 2.0, None)), daily_closes=bars
    )

    step = 1 - 2.0 / close_before
    assert adjusted["dividend_factor"].to_list() == pytest.approx([step, step, step, 1.0, 1.0])
    assert adjusted["adj_close"][0] == pytest.approx(bars["close"][0] * step, rel=1e-12)
    assert adjusted["adj_volume"].to_list() == bars["volume"].cast(pl.Float64).to_list()


def test_adjust_given_split_and_dividend_on_one_day_quotes_the_dividend_post_split(bars):
    # 2:1 split and a 1.00 dividend per NEW share on the same ex-date; previous close 100.
    same_day = actions(
        (SESSIONS[2], "split", 2.0, None, None), (SESSIONS[2], "dividend", None, 1.0, 100.0)
    )
    adjusted, steps = adjust_with_actions(bars, same_day)

    # Pre-split close 100 is 50 per new share; the dividend takes 1.00 of it: 1 - 1/50.
    assert steps.steps.row(0, named=True)["dividend_step"] == pytest.approx(0.98)
    assert factors(adjusted)[:2] == [(0.5, pytest.approx(0.98))] * 2
    assert factors(adjusted)[2:] == [(1.0, 1.0)] * 3


def test_adjust_given_several_actions_multiplies_every_later_step(bars):
    many = actions(
        (SESSIONS[1], "split", 2.0, None, None),
        (SESSIONS[3], "dividend", None, 1.0, 50.0),
        (SESSIONS[4], "split", 3.0, None, None),
    )
    adjusted, _ = adjust_with_actions(bars, many)

    assert adjusted["split_factor"].to_list() == pytest.approx([1 / 6, 1 / 3, 1 / 3, 1 / 3, 1])
    assert adjusted["dividend_factor"].to_list() == pytest.approx([0.98, 0.98, 0.98, 1, 1])


def test_adjust_given_a_dividend_larger_than_the_price_leaves_it_out_and_reports_it(bars):
    adjusted, steps = adjust_with_actions(
        bars, actions((SESSIONS[2], "dividend", None, 150.0, 100.0))
    )

    assert adjusted["dividend_factor"].to_list() == [1.0] * 5
    assert (adjusted["adj_close"] > 0).all()
    assert steps.unresolved["reason"].to_list() == [
        "dividend is not smaller than the close before the ex-date"
    ]


def test_adjust_given_no_close_before_the_ex_date_reports_the_dividend_unresolved(bars):
    _, steps = adjust_with_actions(bars, actions((SESSIONS[2], "dividend", None, 1.0, None)))

    assert steps.unresolved.row(0, named=True)["reason"].startswith("no close before")


def test_adjust_given_actions_of_a_symbol_without_bars_changes_nothing(bars):
    other = actions((SESSIONS[2], "split", 2.0, None, None)).with_columns(
        pl.lit("ZZZ").alias("symbol")
    )
    adjusted, steps = adjust_with_actions(bars, other)

    assert steps.steps["symbol"].to_list() == ["ZZZ"]
    assert adjusted["adj_close"].to_list() == bars["close"].to_list()


def test_known_as_of_given_a_past_day_ignores_actions_announced_later(bars):
    announced = dt.datetime(2024, 3, 7, 21, 0, tzinfo=dt.UTC)
    later_split = actions((SESSIONS[4], "split", 2.0, None, None, announced))

    as_it_was, _ = adjust_with_actions(bars, later_split, as_of=D(2024, 3, 7))
    as_it_is, _ = adjust_with_actions(bars, later_split, as_of=D(2024, 3, 8))

    assert as_it_was["split_factor"].to_list() == [1.0] * 5
    assert as_it_is["split_factor"].to_list() == [0.5, 0.5, 0.5, 0.5, 1.0]
    assert known_as_of(later_split, dt.datetime(2024, 3, 7, 20, 59)).is_empty()


def test_known_as_of_given_no_known_at_counts_the_action_from_its_ex_date():
    undated = actions((SESSIONS[2], "split", 2.0, None, None))

    assert known_as_of(undated, SESSIONS[1]).is_empty()
    assert known_as_of(undated, SESSIONS[2]).height == 1


def test_fill_reference_closes_given_bars_takes_the_last_close_before_the_ex_date(bars):
    filled = fill_reference_closes(actions((SESSIONS[3], "dividend", None, 1.0, None)), bars)

    assert filled["reference_close"].to_list() == [bars["close"][2]]


def test_adjustment_steps_given_a_non_positive_ratio_names_symbol_and_date():
    with pytest.raises(ValueError, match=r"AAA split on 2024-03-06: ratio must be > 0"):
        adjustment_steps(actions((SESSIONS[2], "split", 0.0, None, None)))


# Lean writes factors with 7 significant digits: AAPL's split_factor 0.0178571 is 1/56 less
# 2.4e-6 relative, while our splits are exact; SPY and IBM have no such rounding left.
@pytest.mark.parametrize(("symbol", "bound"), [("AAPL", 5e-6), ("SPY", 1e-9), ("IBM", 1e-9)])
def test_lean_adjusted_close_matches_lean_price_factors(symbol, bound, capsys):
    bars = lean_daily_bars(symbol)
    factor_file = lean_factor_file(symbol)
    lean_events = lean_actions(symbol, factor_file)

    adjusted, steps = adjust_with_actions(bars, lean_events)

    compared = adjusted.join(lean_adjusted_close(bars, factor_file), on="ts").with_columns(
        (pl.col("adj_close") / pl.col("lean_adj_close") - 1).abs().alias("difference")
    )
    worst = compared.sort("difference", descending=True).row(0, named=True)
    with capsys.disabled():
        print(
            f"\nLean {symbol} {compared.height} sessions, "
            f"{lean_events.filter(pl.col('action_type') == 'split').height} splits, "
            f"{lean_events.filter(pl.col('action_type') == 'dividend').height} dividends: "
            f"largest relative difference {worst['difference']:.3e} on {worst['ts']:%Y-%m-%d}"
        )
    assert steps.unresolved.is_empty()
    assert compared.height == bars.height
    assert worst["difference"] < bound


def test_lean_aapl_factor_file_gives_the_four_known_splits():
    splits = lean_actions("AAPL", lean_factor_file("AAPL")).filter(pl.col("action_type") == "split")

    assert splits.select("ex_date", "ratio").rows() == [
        (D(2000, 6, 21), 2.0),
        (D(2005, 2, 28), 2.0),
        (D(2014, 6, 9), 7.0),
        (D(2020, 8, 31), 4.0),
    ]


@pytest.mark.parametrize(("ticker", "bound"), [("AAPL", 5e-5), ("MSFT", 2e-4)])
def test_quandl_adjusted_close_is_close_to_the_vendors(ticker, bound, capsys):
    bars, events, vendor = quandl_bars_and_actions(ticker)

    adjusted, _ = adjust_with_actions(bars, events, daily_closes=bars)

    compared = adjusted.join(vendor, on="ts").with_columns(
        (pl.col("adj_close") / pl.col("vendor_adj_close")).alias("ratio")
    )
    # Quandl anchors its factors on a later day (it includes actions after 2014): compare
    # shapes, both scaled to the last session of the sample.
    compared = compared.with_columns(
        (pl.col("ratio") / pl.col("ratio").last() - 1).abs().alias("difference")
    )
    worst = compared.sort("difference", descending=True).row(0, named=True)
    with capsys.disabled():
        print(
            f"\nQuandl {ticker} {compared.height} sessions, {events.height} actions: largest "
            f"relative difference {worst['difference']:.3e} on {worst['ts']:%Y-%m-%d}"
        )
    assert worst["difference"] < bound
    if ticker == "AAPL":
        before = compared.filter(pl.col("ts").dt.date() == D(2014, 6, 6)).row(0, named=True)
        assert before["adj_close"] == pytest.approx(before["close"] / 7, rel=0.01)
