"""Implied volatility and greeks under Black-Scholes-Merton with a continuous dividend yield.

Chosen by measurement (benchmarks/options.py): the price and the analytical greeks are the
textbook closed forms (Haug, The Complete Guide to Option Pricing Formulas, 2nd ed., p. 4;
the same expressions as vollib's reference implementation) in numpy over whole arrays, and
the implied volatility is the root of price(sigma) - observed found by SciPy's vectorized
bracketing solver (`scipy.optimize.elementwise.find_root`, Chandrupatla's method) over sigma
in [IV_MIN, IV_MAX]. One call solves a whole chain; it agrees with QuantLib's
`impliedVolatility` to about 1e-11 on price round trips. (vollib itself is not a dependency:
it installs simplejson, which makes `requests` reject the NaN values vendors send in JSON.)

Puts are solved through their call-equivalent price (put-call parity, exact for European
options), so one formula serves both kinds. For American equity options this is the
documented BSM approximation (docs/data_dictionary.md): early exercise is ignored, so deep
in-the-money American puts can be priced below the European lower bound and get no IV
(status `below_intrinsic`).

Conventions (vollib's and most vendors'): time in years; `theta` per calendar day (the
annual figure / 365); `vega` and `rho` per 1 percentage point (x 0.01); delta and gamma per
1.00 of the underlying; prices per share (not per contract).
"""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
from scipy.optimize import elementwise
from scipy.special import ndtr

IV_MIN = 1e-4
IV_MAX = 5.0
IV_TOLERANCE = 1e-12  # absolute, on sigma

STATUS_OK = "ok"
STATUSES = (
    STATUS_OK,
    "no_price",  # no two-sided quote to invert
    "no_underlying_price",
    "no_rate",  # no risk-free rate for the session (a yields file that starts later)
    "expired",  # no time left to expiry at the snapshot
    "below_intrinsic",  # below the BSM lower bound (American early-exercise value)
    "above_maximum",  # above the underlying's discounted price
    "no_solution",  # the implied volatility is outside [IV_MIN, IV_MAX]
)
GREEK_COLUMNS = ("iv", "delta", "gamma", "vega", "theta", "rho")


def _d1_d2(spot, strike, years, rate, sigma, dividend):  # noqa: ANN001, ANN202 - arrays
    """The d1 and d2 of BSM: (ln(S/K) + (r - q + sigma^2 / 2) t) / (sigma sqrt(t)), d1 - ..."""
    root = sigma * np.sqrt(years)
    d1 = (np.log(spot / strike) + (rate - dividend + 0.5 * sigma * sigma) * years) / root
    return d1, d1 - root


def _call_price(sigma: np.ndarray, spot, strike, years, rate, dividend) -> np.ndarray:  # noqa: ANN001
    d1, d2 = _d1_d2(spot, strike, years, rate, sigma, dividend)
    return spot * np.exp(-dividend * years) * ndtr(d1) - strike * np.exp(-rate * years) * ndtr(d2)


def _density(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)


def implied_volatility(
    price: np.ndarray,
    spot: np.ndarray,
    strike: np.ndarray,
    years: np.ndarray,
    rate: np.ndarray,
    dividend_yield: np.ndarray,
    is_call: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Implied volatilities (NaN where there is none) and a status per contract (STATUSES).

    Every argument is an array of the same length; prices are per share.
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in (price, spot, strike, years, rate)]
    price, spot, strike, years, rate = arrays
    dividend = np.asarray(dividend_yield, dtype=np.float64)
    is_call = np.asarray(is_call, dtype=bool)
    iv = np.full(price.shape, np.nan)
    status = np.full(price.shape, STATUS_OK, dtype=object)
    status[~(price > 0)] = "no_price"
    status[~(spot > 0)] = "no_underlying_price"
    status[~np.isfinite(rate)] = "no_rate"
    status[~(years > 0)] = "expired"
    usable = status == STATUS_OK
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        spot_pv = spot * np.exp(-dividend * years)
        strike_pv = strike * np.exp(-rate * years)
        call_price = np.where(is_call, price, price + spot_pv - strike_pv)
        low = _call_price(np.full(price.shape, IV_MIN), spot, strike, years, rate, dividend)
        high = _call_price(np.full(price.shape, IV_MAX), spot, strike, years, rate, dividend)
    floor = np.maximum(spot_pv - strike_pv, 0.0)
    status[usable & (call_price <= floor)] = "below_intrinsic"
    status[usable & (call_price >= spot_pv)] = "above_maximum"
    solvable = status == STATUS_OK
    status[solvable & ((call_price < low) | (call_price > high))] = "no_solution"
    solvable = status == STATUS_OK
    if solvable.any():
        index = np.flatnonzero(solvable)
        args = tuple(a[index] for a in (spot, strike, years, rate, dividend, call_price))
        result = elementwise.find_root(
            lambda sigma, s, k, t, r, q, target: _call_price(sigma, s, k, t, r, q) - target,
            (np.full(index.size, IV_MIN), np.full(index.size, IV_MAX)),
            args=args,
            tolerances={"xatol": IV_TOLERANCE, "xrtol": 0.0, "fatol": 0.0, "frtol": 0.0},
        )
        solved = np.asarray(result.success, dtype=bool)
        iv[index[solved]] = result.x[solved]
        status[index[~solved]] = "no_solution"
    return iv, status


def greeks(
    sigma: np.ndarray,
    spot: np.ndarray,
    strike: np.ndarray,
    years: np.ndarray,
    rate: np.ndarray,
    dividend_yield: np.ndarray,
    is_call: np.ndarray,
) -> dict[str, np.ndarray]:
    """Delta, gamma, vega, theta and rho at volatility `sigma` (NaN where sigma is NaN)."""
    call = np.asarray(is_call, dtype=bool)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        q, r = np.asarray(dividend_yield, dtype=np.float64), np.asarray(rate, dtype=np.float64)
        d1, d2 = _d1_d2(spot, strike, years, r, sigma, q)
        carry, discount = np.exp(-q * years), np.exp(-r * years)
        density = _density(d1)
        sign = np.where(call, 1.0, -1.0)
        decay = -spot * carry * density * sigma / (2.0 * np.sqrt(years))
        theta = (
            decay
            + sign * q * spot * carry * ndtr(sign * d1)
            - sign * r * strike * discount * ndtr(sign * d2)
        )
        return {
            "delta": sign * carry * ndtr(sign * d1),
            "gamma": carry * density / (spot * sigma * np.sqrt(years)),
            "vega": spot * carry * density * np.sqrt(years) * 0.01,
            "theta": theta / 365.0,
            "rho": sign * strike * years * discount * ndtr(sign * d2) * 0.01,
        }


def price_options(
    sigma: np.ndarray,
    spot: np.ndarray,
    strike: np.ndarray,
    years: np.ndarray,
    rate: np.ndarray,
    dividend_yield: np.ndarray,
    is_call: np.ndarray,
) -> np.ndarray:
    """BSM prices per share (the synthetic provider prices its chains with this)."""
    with np.errstate(all="ignore"):
        call = _call_price(sigma, spot, strike, years, rate, dividend_yield)
        put = call - spot * np.exp(-dividend_yield * years) + strike * np.exp(-rate * years)
        return np.where(np.asarray(is_call, dtype=bool), call, put)


def add_greeks(frame: pl.DataFrame) -> pl.DataFrame:
    """Add iv, delta, gamma, vega, theta, rho and iv_status computed from the frame's inputs.

    Reads iv_price, underlying_price, strike, time_to_expiry, rate, dividend_yield and kind;
    greeks are null where the IV is (the status says why).
    """
    if frame.is_empty():
        return frame.with_columns(
            *(pl.lit(None, pl.Float64).alias(name) for name in GREEK_COLUMNS),
            pl.lit(None, pl.String).alias("iv_status"),
        )
    columns = ("iv_price", "underlying_price", "strike", "time_to_expiry", "rate")
    price, spot, strike, years, rate = (
        frame.get_column(name).cast(pl.Float64).fill_null(np.nan).to_numpy() for name in columns
    )
    dividend = frame.get_column("dividend_yield").cast(pl.Float64).fill_null(0.0).to_numpy()
    is_call = (frame.get_column("kind") == "call").fill_null(False).to_numpy()
    iv, status = implied_volatility(price, spot, strike, years, rate, dividend, is_call)
    values = greeks(iv, spot, strike, years, rate, dividend, is_call)
    return frame.with_columns(
        pl.Series("iv", iv).fill_nan(None),
        *(pl.Series(name, values[name]).fill_nan(None) for name in GREEK_COLUMNS[1:]),
        pl.Series("iv_status", status.tolist(), dtype=pl.String),
    )
