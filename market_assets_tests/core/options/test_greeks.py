"""Implied volatility and greeks: agreement with QuantLib, statuses, conventions."""

import numpy as np
import polars as pl
import pytest

from market_assets.core.options.greeks import (
    IV_MAX,
    add_greeks,
    greeks,
    implied_volatility,
    price_options,
)

ql = pytest.importorskip("QuantLib")


def quantlib_price_and_iv(spot, strike, days, rate, dividend, vol, call):
    """QuantLib's European price at `vol`, and the IV it implies back (ACT/365)."""
    today = ql.Date(2, 1, 2025)
    ql.Settings.instance().evaluationDate = today
    day_count = ql.Actual365Fixed()

    def curve(value):
        return ql.YieldTermStructureHandle(ql.FlatForward(today, value, day_count, ql.Continuous))

    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(ql.SimpleQuote(spot)),
        curve(dividend),
        curve(rate),
        ql.BlackVolTermStructureHandle(
            ql.BlackConstantVol(today, ql.NullCalendar(), vol, day_count)
        ),
    )
    option = ql.EuropeanOption(
        ql.PlainVanillaPayoff(ql.Option.Call if call else ql.Option.Put, strike),
        ql.EuropeanExercise(today + days),
    )
    option.setPricingEngine(ql.AnalyticEuropeanEngine(process))
    price = option.NPV()
    return price, option.impliedVolatility(price, process, 1e-12, 1000, 1e-4, 5.0)


@pytest.mark.parametrize(
    ("strike", "days", "vol", "call"),
    [(100, 30, 0.2, True), (80, 365, 0.45, False), (130, 7, 0.9, True), (95, 700, 0.15, False)],
)
def test_implied_volatility_agrees_with_quantlib_within_1e_9(strike, days, vol, call):
    price, reference = quantlib_price_and_iv(100.0, strike, days, 0.04, 0.01, vol, call)
    args = [np.array([v], dtype=float) for v in (price, 100.0, strike, days / 365, 0.04, 0.01)]

    iv, status = implied_volatility(*args, np.array([call]))

    assert status.tolist() == ["ok"]
    assert iv[0] == pytest.approx(reference, abs=1e-9)
    assert iv[0] == pytest.approx(vol, abs=1e-9)


def test_implied_volatility_says_why_there_is_none():
    n = 6
    price = np.array([0.0, 5.0, 5.0, 5.0, 0.5, 150.0])
    spot = np.array([100.0, np.nan, 100.0, 100.0, 100.0, 100.0])
    strike = np.array([100.0, 100.0, 100.0, 100.0, 50.0, 100.0])
    years = np.array([0.5, 0.5, 0.5, 0.0, 0.5, 0.5])
    rate = np.array([0.04, 0.04, np.nan, 0.04, 0.04, 0.04])
    is_call = np.array([True, True, True, True, True, True])

    iv, status = implied_volatility(price, spot, strike, years, rate, np.zeros(n), is_call)

    assert status.tolist() == [
        "no_price",
        "no_underlying_price",
        "no_rate",
        "expired",
        "below_intrinsic",
        "above_maximum",
    ]
    assert np.isnan(iv).all()


def test_greeks_follow_vollib_conventions_and_signs():
    spot, strike, years, rate, dividend = (
        np.array([100.0, 100.0]),
        np.array([100.0, 100.0]),
        np.array([0.5, 0.5]),
        np.array([0.04, 0.04]),
        np.zeros(2),
    )
    is_call = np.array([True, False])
    sigma = np.array([0.3, 0.3])

    values = greeks(sigma, spot, strike, years, rate, dividend, is_call)
    bumped = price_options(sigma + 0.01, spot, strike, years, rate, dividend, is_call)
    base = price_options(sigma, spot, strike, years, rate, dividend, is_call)

    assert 0 < values["delta"][0] < 1 and -1 < values["delta"][1] < 0
    assert values["delta"][0] - values["delta"][1] == pytest.approx(1.0)  # no dividend
    assert (values["gamma"] > 0).all() and (values["vega"] > 0).all()
    assert values["vega"][0] == pytest.approx(bumped[0] - base[0], rel=1e-2)  # per vol point
    assert values["theta"][0] < 0 and abs(values["theta"][0]) < 0.1  # per calendar day


def test_add_greeks_adds_columns_and_nulls_where_there_is_no_iv():
    frame = pl.DataFrame(
        {
            "iv_price": [9.1037657566, None],
            "underlying_price": [100.0, 100.0],
            "strike": [100.0, 100.0],
            "time_to_expiry": [0.5, 0.5],
            "rate": [0.04, 0.04],
            "dividend_yield": [0.01, 0.01],
            "kind": ["call", "put"],
        }
    )

    out = add_greeks(frame)

    assert out.get_column("iv_status").to_list() == ["ok", "no_price"]
    assert out.get_column("iv")[0] == pytest.approx(0.31, abs=0.02)
    assert out.row(1, named=True)["delta"] is None
    assert 0 < out.get_column("iv")[0] < IV_MAX


@pytest.mark.parametrize(
    ("strike", "days", "call"), [(100, 30, True), (85, 200, False), (120, 500, True)]
)
def test_greeks_agree_with_quantlib_analytic_engine(strike, days, call):
    today = ql.Date(2, 1, 2025)
    ql.Settings.instance().evaluationDate = today
    day_count = ql.Actual365Fixed()
    curve = lambda value: ql.YieldTermStructureHandle(  # noqa: E731
        ql.FlatForward(today, value, day_count, ql.Continuous)
    )
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(ql.SimpleQuote(100.0)),
        curve(0.015),
        curve(0.045),
        ql.BlackVolTermStructureHandle(
            ql.BlackConstantVol(today, ql.NullCalendar(), 0.35, day_count)
        ),
    )
    option = ql.EuropeanOption(
        ql.PlainVanillaPayoff(ql.Option.Call if call else ql.Option.Put, strike),
        ql.EuropeanExercise(today + days),
    )
    option.setPricingEngine(ql.AnalyticEuropeanEngine(process))
    arrays = [np.array([v], dtype=float) for v in (0.35, 100.0, strike, days / 365, 0.045, 0.015)]

    values = greeks(*arrays, np.array([call]))

    assert values["delta"][0] == pytest.approx(option.delta(), abs=1e-12)
    assert values["gamma"][0] == pytest.approx(option.gamma(), abs=1e-12)
    assert values["vega"][0] == pytest.approx(option.vega() / 100, abs=1e-12)
    assert values["theta"][0] == pytest.approx(option.thetaPerDay(), abs=1e-12)
    assert values["rho"][0] == pytest.approx(option.rho() / 100, abs=1e-12)
    assert price_options(*arrays, np.array([call]))[0] == pytest.approx(option.NPV(), abs=1e-10)
