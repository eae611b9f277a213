"""Benchmark the bar quality rules: one 390-row minute partition, and a 10M-row frame.

    python benchmarks/checks.py [--rows 10000000] [--repeat 30]

Prints, per rule, the median milliseconds on one regular-session partition of one-minute
bars (390 rows) and the rows per second (median of 3 runs) on a frame of about 10M
one-minute rows (100 symbols x 256 sessions x 390 minutes, a seeded random walk). `prepare`
(session, previous close, returns, jump candidates, return statistics; shared by every
rule) is timed apart;
`check_bars` is everything: prepare, every rule, and the results per partition and rule
with samples and scores. Targets: the whole set under 10 ms on one partition; at least 10M
rows/s per rule on average. The last line is machine-readable:

    RESULT partition_ms=<whole check_bars on 390 rows> rows_per_s=<average per rule>

where the average per rule is rows / mean seconds per rule (the harmonic mean of the
rules' rates), so a slow rule is not hidden by fast ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from market_assets.core.calendar import get_calendar
from market_assets.core.providers.synthetic import synthetic_bars
from market_assets.core.rules import RuleContext, check_bars, load_thresholds
from market_assets.core.rules.engine import BAR_RULES
from market_assets.core.rules.frame import prepare_bars
from market_assets.core.rules.outliers import compute_return_stats
from market_assets.core.schemas import BAR_SCHEMA
from market_assets.core.transforms.resample import session_schedule

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SESSION = dt.date(2024, 3, 7)


def _median_ms(function: Callable[[], object], repeat: int) -> float:
    function()  # warm up (first call compiles expressions, fills caches)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return 1000.0 * statistics.median(times)


def _seconds(function: Callable[[], object], repeat: int = 3) -> float:
    """Median wall seconds of `repeat` calls (one call on 10M rows is noisy on a shared box)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def minute_frame(rows: int, symbols: int = 100, seed: int = 7) -> pl.DataFrame:
    """About `rows` canonical one-minute bars: `symbols` x whole regular sessions."""
    schedule = session_schedule(get_calendar()).filter(
        pl.col("session") >= dt.date(2023, 1, 3),
        (pl.col("session_close") - pl.col("session_open")) == pl.duration(minutes=390),
    )
    sessions = max(1, rows // (symbols * 390))
    opens = schedule.head(sessions).get_column("session_open").dt.epoch("us").to_numpy()
    ts_one = (opens[:, None] + np.arange(390)[None, :] * 60_000_000).ravel()
    n = ts_one.size * symbols
    rng = np.random.default_rng(seed)
    start = rng.uniform(20, 500, (symbols, 1))
    close = np.round(
        start * np.exp(np.cumsum(rng.normal(0, 8e-4, (symbols, ts_one.size)), axis=1)), 2
    ).ravel()
    open_ = np.round(np.concatenate([[close[0]], close[:-1]]), 2)
    high = np.maximum(open_, close) + 0.01
    low = np.minimum(open_, close) - 0.01
    volume = rng.integers(100, 50_000, n)
    names = np.repeat(np.array([f"S{i:03d}" for i in range(symbols)], dtype=object), ts_one.size)
    frame = pl.DataFrame(
        {
            "ts": pl.Series(np.tile(ts_one, symbols)).cast(pl.Datetime("us", "UTC")),
            "symbol": names,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "trade_count": volume // 50,
            "vwap": (high + low) / 2,
            "granularity": "1m",
            "source": "benchmark",
        }
    )
    return frame.select(pl.col(c).cast(t) for c, t in BAR_SCHEMA.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    thresholds = load_thresholds(CONFIGS)
    one = synthetic_bars("AAPL", "1m", SESSION, SESSION + dt.timedelta(days=1))
    small = RuleContext("bars_1m", "1m", (("AAPL", SESSION),), thresholds)
    settings = small.settings
    rules = [r for r in BAR_RULES if r.applies_to(small) and settings.rule(r.name).enabled]
    small = dataclasses.replace(small, group_settings=settings)

    big = minute_frame(args.rows)
    pairs = tuple(
        big.select("symbol", pl.col("ts").dt.offset_by("-5h").dt.date().alias("s"))
        .unique(maintain_order=True)
        .iter_rows()
    )
    large = RuleContext("bars_1m", "1m", pairs, thresholds, group_settings=settings)

    prepared_small = prepare_bars(one, small, settings)
    prepared_big = prepare_bars(big, large, settings)
    # check_bars computes the return statistics once and shares them (timed under prepare).
    small = dataclasses.replace(small, return_stats=compute_return_stats(prepared_small))
    large = dataclasses.replace(large, return_stats=compute_return_stats(prepared_big))
    table = []
    table.append(
        (
            "prepare + return stats (shared)",
            _median_ms(
                lambda: compute_return_stats(prepare_bars(one, small, settings)), args.repeat
            ),
            big.height / _seconds(lambda: compute_return_stats(prepare_bars(big, large, settings))),
        )
    )
    per_rule = []
    for rule in rules:
        rule_settings = settings.rule(rule.name)
        ms = _median_ms(
            lambda r=rule, s=rule_settings: r.find(prepared_small, small, s), args.repeat
        )
        seconds = _seconds(lambda r=rule, s=rule_settings: r.find(prepared_big, large, s))
        per_rule.append((rule.name, ms, big.height / seconds))
    table.extend(per_rule)
    whole_ms = _median_ms(lambda: check_bars(one, small), args.repeat)
    whole_big = _seconds(lambda: check_bars(big, large))
    table.append(("check_bars (all, with assembly)", whole_ms, big.height / whole_big))

    # Average per rule = rows / (mean seconds per rule): slow rules weigh what they cost.
    mean_rate = len(per_rule) / sum(1.0 / rate for _, _, rate in per_rule)
    print(
        f"bar rules: one partition = {one.height} one-minute rows (AAPL {SESSION}); "
        f"large frame = {big.height:,} rows ({len(pairs):,} partitions)"
    )
    print(f"{'step':34s} {'partition ms':>13s} {'rows/s (large)':>16s}")
    for name, ms, rate in table:
        print(f"{name:34s} {ms:13.3f} {rate:16,.0f}")
    print(f"{'sum over rules':34s} {sum(ms for _, ms, _ in per_rule):13.3f}")
    print(f"{'average per rule':34s} {'':13s} {mean_rate:16,.0f}")
    print(f"RESULT partition_ms={whole_ms:.2f} rows_per_s={mean_rate:.0f}")


if __name__ == "__main__":
    main()
