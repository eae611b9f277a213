"""Daily ratios from point-in-time fundamentals and raw closes: never a value filed later."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from market_assets.core.calendar import get_calendar
from market_assets.core.fundamentals.ratios import compute_ratios
from market_assets.core.schemas import ACTION_SCHEMA, FUNDAMENTAL_RATIO_SCHEMA
from market_assets_tests.helpers import make_bars

D = dt.date
FILED_COLUMNS = ["shares_filed", "equity_filed", "assets_filed", "debt_filed", "net_income_filed"]
NO_ACTIONS = pl.DataFrame(schema=ACTION_SCHEMA)


@pytest.fixture(scope="module")
def history(snow, fields) -> pl.DataFrame:
    sessions = get_calendar().sessions("2020-12-01", "2025-06-30")
    bars = make_bars(["SNOW"], sessions)
    return compute_ratios(snow, bars, NO_ACTIONS, [("SNOW", d) for d in sessions], fields)


def test_no_ratio_uses_a_value_filed_after_its_session(history):
    session = pl.col("ts").dt.date()

    late = history.filter(pl.any_horizontal(pl.col(c) > session for c in FILED_COLUMNS))

    assert history.height > 1000
    assert late.is_empty()
    assert history.schema == pl.Schema(FUNDAMENTAL_RATIO_SCHEMA)


def test_the_day_before_the_10k_uses_the_10q_and_the_filing_day_the_10k(history):
    by_day = {row["ts"].date(): row for row in history.to_dicts()}
    before, on_day = by_day[D(2025, 3, 20)], by_day[D(2025, 3, 21)]

    assert (before["total_assets"], before["assets_filed"]) == (8_202_258_000, D(2024, 11, 27))
    assert (on_day["total_assets"], on_day["assets_filed"]) == (9_033_938_000, D(2025, 3, 21))


def test_ratios_are_the_documented_formulas_of_their_inputs(history):
    row = history.filter(pl.col("ts").dt.date() == D(2025, 3, 21)).row(0, named=True)

    assert row["market_cap"] == pytest.approx(row["shares_outstanding"] * row["close"])
    assert row["book_to_market"] == pytest.approx(row["stockholders_equity"] / row["market_cap"])
    assert row["roe"] == pytest.approx(row["net_income_ttm"] / row["stockholders_equity"])
    assert row["roa"] == pytest.approx(row["net_income_ttm"] / row["total_assets"])
    assert row["roi"] == pytest.approx(
        row["net_income_ttm"] / (row["stockholders_equity"] + row["long_term_debt"])
    )
    assert row["currency"] == "USD"


def test_a_split_after_the_share_count_date_scales_the_share_count(snow, fields):
    sessions = get_calendar().sessions("2025-03-24", "2025-03-28")
    bars = make_bars(["SNOW"], sessions)
    split = pl.DataFrame(
        [{"symbol": "SNOW", "ex_date": D(2025, 3, 26), "action_type": "split", "ratio": 2.0}]
    )

    ratios = compute_ratios(snow, bars, split, [("SNOW", d) for d in sessions], fields)

    factors = dict(zip(ratios["ts"].dt.date(), ratios["shares_split_factor"], strict=True))
    assert factors[D(2025, 3, 25)] == 1.0 and factors[D(2025, 3, 26)] == 2.0
    shares = dict(zip(ratios["ts"].dt.date(), ratios["shares_outstanding"], strict=True))
    assert shares[D(2025, 3, 27)] == 2 * shares[D(2025, 3, 25)]


def test_a_session_without_a_daily_bar_keeps_fundamentals_and_nulls_price_ratios(snow, fields):
    sessions = [D(2025, 3, 24), D(2025, 3, 25)]
    bars = make_bars(["SNOW"], sessions[:1])

    ratios = compute_ratios(snow, bars, NO_ACTIONS, [("SNOW", d) for d in sessions], fields)

    last = ratios.row(1, named=True)
    assert last["close"] is None and last["market_cap"] is None and last["book_to_market"] is None
    assert last["roa"] is not None


def test_sessions_before_any_filing_get_no_row(snow, fields):
    sessions = [D(2019, 6, 3)]
    bars = make_bars(["SNOW"], sessions)

    ratios = compute_ratios(snow, bars, NO_ACTIONS, [("SNOW", sessions[0])], fields)

    assert ratios.is_empty()
