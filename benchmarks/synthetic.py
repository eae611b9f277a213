"""Benchmark the synthetic provider's daily bars: daily-first vs minute-first generation.

    python benchmarks/synthetic.py [--symbols 100] [--sessions 4500] [--baseline-symbols 10]

Daily-first is what `synthetic_bars(..., "1d", ...)` does: every daily bar straight from the
symbol's session path, no minute bar. The baseline is minute-first, the way daily bars were
made before: generate every minute bar of every session (the provider's own minute
generator, 390 per session) and aggregate them (first open, max high, min low, last close,
summed volume and trade count, volume-weighted vwap). The baseline also checks the provider's
promise on the benchmarked range: its daily bars equal the aggregate (six fields exactly,
vwap within 0.1%).

Both run in this one process with cold per-symbol caches (the calendar is loaded once
first), so their ratio holds on a busy machine. Minute-first costs ~100x more, so it runs on
the first `--baseline-symbols` symbols only and the speedup compares seconds per symbol
(daily-first is also shown for those same symbols). The S&P 500 row is measured, not
extrapolated: one `SyntheticProvider.fetch_bars` request for 503 symbols over the same
sessions, the call a full daily history backfill makes. (This replaces the timing assertion
that test_synthetic.py used to make on twenty years of one symbol.) The last line is
machine-readable:

    RESULT daily_speedup=<minute-first s per symbol / daily-first s per symbol>
        sp500_daily_history_s=<seconds for 503 symbols>
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import polars as pl

from market_assets.core.providers import synthetic
from market_assets.core.providers.base import BarRequest
from market_assets.core.providers.synthetic import SyntheticProvider, synthetic_bars

EXCHANGE = "XNYS"
END = dt.date(2026, 1, 1)
SP500_SYMBOLS = 503
T = TypeVar("T")
PRICES = ("open", "high", "low", "close", "volume", "trade_count")


def _symbols(count: int) -> list[str]:
    return [f"BENCH{i:03d}" for i in range(count)]


def _cold() -> None:
    """Forget every symbol's generated history, as in a fresh process."""
    synthetic._history.cache_clear()
    synthetic._actions.cache_clear()


def _range(sessions: int) -> tuple[dt.date, dt.date, int, int]:
    table = synthetic._session_table(EXCHANGE)
    stop = int(np.searchsorted(table.days, np.datetime64(END, "D")))
    first = stop - sessions
    return table.days[first].astype(dt.date), END, first, stop


def minute_first_daily(symbol: str, first: int, stop: int) -> pl.DataFrame:
    """Daily bars as the aggregate of every generated minute bar of the sessions."""
    table = synthetic._session_table(EXCHANGE)
    history = synthetic._history(symbol, 7, EXCHANGE)
    frames = []
    for chunk in range(first, stop, synthetic.SESSIONS_PER_CHUNK):
        index = np.arange(chunk, min(chunk + synthetic.SESSIONS_PER_CHUNK, stop))
        grid = synthetic._minute_grid(symbol, 7, history, table, index)
        volume = grid.volume.sum(axis=1)
        frames.append(
            pl.DataFrame(
                {
                    "open": grid.open[:, 0],
                    "high": np.where(grid.valid, grid.high, -np.inf).max(axis=1),
                    "low": np.where(grid.valid, grid.low, np.inf).min(axis=1),
                    "close": grid.close[np.arange(len(index)), table.minutes[index] - 1],
                    "volume": volume,
                    "trade_count": grid.trade_count.sum(axis=1),
                    "vwap": np.where(grid.valid, grid.vwap * grid.volume, 0.0).sum(axis=1) / volume,
                }
            )
        )
    return pl.concat(frames)


def _timed(function: Callable[[], T]) -> tuple[float, T]:
    """Wall seconds of one call, and its result."""
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--sessions", type=int, default=4500)
    parser.add_argument("--baseline-symbols", type=int, default=10)
    args = parser.parse_args()

    start, end, first, stop = _range(args.sessions)
    symbols = _symbols(args.symbols)
    baseline_symbols = symbols[: args.baseline_symbols]
    synthetic_bars("WARMUP", "1d", start, end)  # calendar and session table, once

    _cold()
    baseline_s, aggregates = _timed(
        lambda: [minute_first_daily(symbol, first, stop) for symbol in baseline_symbols]
    )
    _cold()
    same_s, same_daily = _timed(
        lambda: [synthetic_bars(symbol, "1d", start, end) for symbol in baseline_symbols]
    )
    _cold()
    daily_s, _ = _timed(lambda: [synthetic_bars(symbol, "1d", start, end) for symbol in symbols])
    _cold()
    request = BarRequest("bars_1d", tuple(_symbols(SP500_SYMBOLS)), "1d", start, end)
    sp500_s, sp500 = _timed(lambda: SyntheticProvider().fetch_bars(request).frame)

    worst_vwap = 0.0
    for aggregate, daily in zip(aggregates, same_daily, strict=True):
        for name in PRICES:
            if not aggregate.get_column(name).equals(daily.get_column(name)):
                raise AssertionError(f"minute aggregate differs from the daily bars in {name}")
        relative = (aggregate.get_column("vwap") / daily.get_column("vwap") - 1.0).abs().max()
        worst_vwap = max(worst_vwap, float(relative))
    if worst_vwap >= 1e-3:
        raise AssertionError(f"minute vwap is {worst_vwap:.2e} away from the daily vwap")

    rows = [
        ("minute-first (baseline)", len(baseline_symbols), baseline_s),
        ("daily-first, same symbols", len(baseline_symbols), same_s),
        ("daily-first", len(symbols), daily_s),
        ("daily-first, fetch_bars S&P 500", SP500_SYMBOLS, sp500_s),
    ]
    print(
        f"synthetic daily bars: {args.sessions} sessions per symbol ({start} .. {end}, end "
        f"exclusive); S&P 500 frame {sp500.height:,} rows"
    )
    print(f"{'approach':32s} {'symbols':>8s} {'seconds':>9s} {'ms/symbol':>10s} {'bars/s':>12s}")
    for name, count, seconds in rows:
        print(
            f"{name:32s} {count:8d} {seconds:9.3f} {1000 * seconds / count:10.2f} "
            f"{count * args.sessions / seconds:12,.0f}"
        )
    print(
        f"minute aggregate == daily bars on {len(baseline_symbols)} symbols: open, high, low, "
        f"close, volume, trade_count exact; worst vwap difference {worst_vwap:.2e}"
    )
    speedup = (baseline_s / len(baseline_symbols)) / (daily_s / len(symbols))
    print(f"RESULT daily_speedup={speedup:.0f} sp500_daily_history_s={sp500_s:.2f}")


if __name__ == "__main__":
    main()
