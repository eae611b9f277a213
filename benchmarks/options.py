"""Benchmark implied volatility and greeks: the library choices side by side.

    python benchmarks/options.py [--contracts 10000] [--scalar-contracts 2000] [--repeat 5]

A seeded 10,000-contract chain (spot 100, strikes lognormal around it, 1 day to 2 years,
calls and puts, a smile from 5% to 200% volatility, r = 4%, q = 1%) is priced with QuantLib
(AnalyticEuropeanEngine, ACT/365); contracts worth less than 0.01 are left out (their IV is
not identified by a quoted price). Each candidate then recovers the IV from those prices and
computes delta, gamma, vega and theta:

- chosen: the BSM closed forms and analytical greeks on numpy arrays + SciPy's elementwise
  bracketing root finder (market_assets.core.options.greeks);
- vollib scalar: vollib's LetsBeRational IV and analytical greeks, one contract at a time,
  when vollib is installed (it is not a dependency: it installs simplejson, which changes how
  `requests` parses vendor JSON);
- QuantLib scalar: EuropeanOption.impliedVolatility (accuracy 1e-12) and the engine's greeks;
- py_vollib_vectorized: numba-vectorized vollib, when it is installed and runs.

vollib scalar runs on the first --scalar-contracts contracts (it is the slowest); the rest on
the whole chain. Rates are contracts per second.
The error columns are the largest |IV - true volatility| (the round trip) and the largest
|IV - QuantLib's IV|. Speeds are also shown as ratios to QuantLib measured in the same run.
The last line is machine-readable:

    RESULT contracts_per_s=<chosen, IV + 4 greeks> max_iv_error=<chosen vs QuantLib IV>
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from market_assets.core.options.greeks import greeks, implied_volatility

MIN_PRICE = 0.01


@dataclass(frozen=True)
class Chain:
    spot: np.ndarray
    strike: np.ndarray
    years: np.ndarray
    days: np.ndarray
    rate: np.ndarray
    dividend: np.ndarray
    is_call: np.ndarray
    sigma: np.ndarray

    def head(self, count: int) -> Chain:
        return Chain(*(getattr(self, f)[:count] for f in self.__dataclass_fields__))

    def subset(self, keep: np.ndarray) -> Chain:
        return Chain(*(getattr(self, f)[keep] for f in self.__dataclass_fields__))


def make_chain(count: int, seed: int = 1) -> Chain:
    rng = np.random.default_rng(seed)
    days = rng.integers(1, 730, count)
    years = days / 365.0
    strike = np.round(100 * np.exp(rng.normal(0, 0.25, count) * np.sqrt(years + 0.05)), 1)
    moneyness = np.log(strike / 100)
    sigma = np.clip(
        0.25 + 0.3 * moneyness**2 / np.maximum(years, 0.05) - 0.1 * moneyness, 0.05, 2.0
    )
    return Chain(
        spot=np.full(count, 100.0),
        strike=strike,
        years=years,
        days=days,
        rate=np.full(count, 0.04),
        dividend=np.full(count, 0.01),
        is_call=rng.uniform(size=count) < 0.5,
        sigma=sigma,
    )


class QuantLibModel:
    """QuantLib's analytic European engine on a flat ACT/365 setup, one contract at a time."""

    def __init__(self) -> None:
        import QuantLib as ql

        self.ql = ql
        self.today = ql.Date(2, 1, 2025)
        ql.Settings.instance().evaluationDate = self.today
        self.day_count = ql.Actual365Fixed()

    def option(self, chain: Chain, i: int, vol: float):  # noqa: ANN201
        ql = self.ql
        curve = lambda rate: ql.YieldTermStructureHandle(  # noqa: E731
            ql.FlatForward(self.today, float(rate), self.day_count, ql.Continuous)
        )
        process = ql.BlackScholesMertonProcess(
            ql.QuoteHandle(ql.SimpleQuote(float(chain.spot[i]))),
            curve(chain.dividend[i]),
            curve(chain.rate[i]),
            ql.BlackVolTermStructureHandle(
                ql.BlackConstantVol(self.today, ql.NullCalendar(), float(vol), self.day_count)
            ),
        )
        kind = ql.Option.Call if chain.is_call[i] else ql.Option.Put
        option = ql.EuropeanOption(
            ql.PlainVanillaPayoff(kind, float(chain.strike[i])),
            ql.EuropeanExercise(self.today + int(chain.days[i])),
        )
        option.setPricingEngine(ql.AnalyticEuropeanEngine(process))
        return option, process

    def prices(self, chain: Chain) -> np.ndarray:
        return np.array(
            [self.option(chain, i, chain.sigma[i])[0].NPV() for i in range(len(chain.spot))]
        )

    def solve(self, chain: Chain, price: np.ndarray) -> np.ndarray:
        out = np.full(len(price), np.nan)
        for i in range(len(price)):
            option, process = self.option(chain, i, 0.3)
            try:
                out[i] = option.impliedVolatility(float(price[i]), process, 1e-12, 1000, 1e-4, 5.0)
            except RuntimeError:
                continue
            priced, _ = self.option(chain, i, out[i])
            priced.delta(), priced.gamma(), priced.vega(), priced.thetaPerDay()
        return out


def chosen(chain: Chain, price: np.ndarray) -> np.ndarray:
    args = (chain.spot, chain.strike, chain.years, chain.rate, chain.dividend, chain.is_call)
    iv, _ = implied_volatility(price, *args[:4], chain.dividend, chain.is_call)
    greeks(iv, *args[:4], chain.dividend, chain.is_call)
    return iv


def vollib_scalar(chain: Chain, price: np.ndarray) -> np.ndarray:
    from vollib.black_scholes_merton.greeks import analytical
    from vollib.black_scholes_merton.implied_volatility import implied_volatility as solve

    out = np.full(len(price), np.nan)
    for i in range(len(price)):
        flag = "c" if chain.is_call[i] else "p"
        s, k, t, r, q = (
            chain.spot[i],
            chain.strike[i],
            chain.years[i],
            chain.rate[i],
            chain.dividend[i],
        )
        try:
            vol = solve(price[i], s, k, t, r, q, flag)
        except Exception:  # noqa: BLE001 - vollib raises its own price-bound errors
            continue
        out[i] = vol
        for greek in (analytical.delta, analytical.gamma, analytical.vega, analytical.theta):
            greek(flag, s, k, t, r, vol, q)
    return out


def vectorized_package(chain: Chain, price: np.ndarray) -> np.ndarray:
    from py_vollib_vectorized import get_all_greeks, vectorized_implied_volatility

    flags = np.where(chain.is_call, "c", "p")
    iv = vectorized_implied_volatility(
        price,
        chain.spot,
        chain.strike,
        chain.years,
        chain.rate,
        flags,
        q=chain.dividend,
        model="black_scholes_merton",
        return_as="numpy",
    )
    get_all_greeks(
        flags,
        chain.spot,
        chain.strike,
        chain.years,
        chain.rate,
        iv,
        chain.dividend,
        model="black_scholes_merton",
        return_as="dict",
    )
    return iv


def timed(function: Callable[[], np.ndarray], repeat: int) -> tuple[float, np.ndarray]:
    seconds, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contracts", type=int, default=10_000)
    parser.add_argument("--scalar-contracts", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()

    quantlib = QuantLibModel()
    full = make_chain(options.contracts)
    price = quantlib.prices(full)
    keep = price >= MIN_PRICE
    chain, price = full.subset(keep), price[keep]
    scalar = chain.head(options.scalar_contracts)
    scalar_price = price[: len(scalar.spot)]
    print(
        f"chain: {len(chain.spot):,} contracts priced >= {MIN_PRICE} (of {options.contracts:,}); "
        f"vollib scalar on the first {len(scalar.spot):,}"
    )
    ql_seconds, ql_iv = timed(lambda: quantlib.solve(chain, price), 1)
    ql_rate = len(chain.spot) / ql_seconds
    ql_iv_scalar = ql_iv[: len(scalar.spot)]
    rows: list[tuple[str, str, float | None, float | None, float | None]] = [
        ("QuantLib scalar (reference)", "per contract", ql_rate, _err(ql_iv, chain.sigma), 0.0)
    ]
    seconds, iv = timed(lambda: chosen(chain, price), options.repeat)
    chosen_rate = len(chain.spot) / seconds
    chosen_vs_ql = _err(iv, ql_iv)
    rows.append(
        (
            "numpy BSM closed forms + SciPy find_root (chosen)",
            "vectorized",
            chosen_rate,
            _err(iv, chain.sigma),
            chosen_vs_ql,
        )
    )
    try:
        seconds, iv = timed(lambda: vollib_scalar(scalar, scalar_price), 1)
        rows.append(
            (
                "vollib LetsBeRational scalar",
                "per contract",
                len(scalar.spot) / seconds,
                _err(iv, scalar.sigma),
                _err(iv, ql_iv_scalar),
            )
        )
    except ImportError:
        rows.append(("vollib LetsBeRational scalar", "not installed", None, None, None))

    try:
        vectorized_package(chain.head(10), price[:10])
        seconds, iv = timed(lambda: vectorized_package(chain, price), options.repeat)
        rows.append(
            (
                "py_vollib_vectorized",
                "numba",
                len(chain.spot) / seconds,
                _err(iv, chain.sigma),
                _err(iv[: len(scalar.spot)], ql_iv_scalar),
            )
        )
    except ImportError:
        rows.append(("py_vollib_vectorized", "not installed", None, None, None))
    except Exception as exc:  # noqa: BLE001 - reported, not raised: it is a candidate
        rows.append(
            (f"py_vollib_vectorized ({type(exc).__name__})", "fails to run", None, None, None)
        )

    print(
        f"{'candidate':<50} {'mode':<13} {'contracts/s':>12} {'x QuantLib':>10} "
        f"{'max |iv-true|':>14} {'max |iv-QL|':>12}"
    )
    for name, mode, rate, error, versus in rows:
        speed = f"{rate:12,.0f}" if rate else f"{'-':>12}"
        ratio = f"{rate / ql_rate:10.1f}" if rate else f"{'-':>10}"
        err = f"{error:14.2e}" if error is not None else f"{'-':>14}"
        vs = f"{versus:12.2e}" if versus is not None else f"{'-':>12}"
        print(f"{name:<50} {mode:<13} {speed} {ratio} {err} {vs}")
    print(f"RESULT contracts_per_s={chosen_rate:.0f} max_iv_error={chosen_vs_ql:.2e}")


def _err(iv: np.ndarray, truth: np.ndarray) -> float:
    both = ~np.isnan(iv) & ~np.isnan(truth)
    return float(np.max(np.abs(iv[both] - truth[both]))) if both.any() else float("nan")


if __name__ == "__main__":
    main()
