"""Resampling speed: 1.5 million one-minute bars (10 symbols x 18 months) into 5m, 15m, 1h.

Prints rows per second for each target granularity, relative to a plain polars
`group_by_dynamic` over the same frame (the baseline, measured in the same run), and a last
line `RESULT resample_5m_rows_per_s=<n> vs_plain_group_by=<ratio>`.

    python benchmarks/resample.py
"""

from __future__ import annotations

import datetime as dt
import time

import polars as pl

from market_assets.core.providers.synthetic import synthetic_bars
from market_assets.core.transforms.resample import resample_bars


def best_of(runs: int, work) -> float:  # noqa: ANN001 - a callable
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return min(timings)


def main() -> None:
    minutes = pl.concat(
        synthetic_bars(f"S{i}", "1m", dt.date(2023, 1, 1), dt.date(2024, 7, 1)) for i in range(10)
    )
    resample_bars(minutes.head(1000), "5m")  # load the calendar once

    def plain() -> pl.DataFrame:
        return (
            minutes.sort("symbol", "ts")
            .group_by_dynamic("ts", every="5m", group_by="symbol")
            .agg(
                pl.col("open").first(),
                pl.col("high").max(),
                pl.col("low").min(),
                pl.col("close").last(),
                pl.col("volume").sum(),
            )
        )

    baseline = best_of(3, plain)
    print(f"{'granularity':<12}{'rows':>12}{'seconds':>10}{'rows/s':>14}{'vs plain':>10}")
    rate = minutes.height / baseline
    print(f"{'plain 5m':<12}{minutes.height:>12,}{baseline:>10.3f}{rate:>14,.0f}{1:>10.2f}")
    rates = {}
    for granularity in ("5m", "15m", "1h"):
        seconds = best_of(3, lambda g=granularity: resample_bars(minutes, g))
        rates[granularity] = minutes.height / seconds
        print(
            f"{granularity:<12}{minutes.height:>12,}{seconds:>10.3f}{rates[granularity]:>14,.0f}"
            f"{baseline / seconds:>10.2f}"
        )
    print(
        f"RESULT resample_5m_rows_per_s={rates['5m']:.0f} "
        f"vs_plain_group_by={rates['5m'] * baseline / minutes.height:.2f}"
    )


if __name__ == "__main__":
    main()
