"""The Parquet lake against ArcticDB (LMDB backend), same synthetic bars, one run.

Builds canonical synthetic bars and writes them into a lake in a temporary folder (one
`ParquetLake.write_partitions` call per dataset, as the IO manager writes a rectangle) and
into ArcticDB (one library symbol per ticker, `write_batch` of pandas frames indexed by `ts`,
built before the clock starts). Default sizes:

- bars_1m: 200 symbols x 60 sessions x 390 minutes = 4.68M rows (the timed bulk write), plus
  300 more symbols for the cross-section session only (untimed);
- bars_1d: 500 symbols x 4,000 sessions = 2M rows (timed write).

Then times, best of N in interleaved rounds (lake through `MarketData.bars`, ArcticDB through
`Library.read` with a `date_range`, `read_batch` for cross-sections):

- one symbol's 60 sessions of 1m; one symbol-month of 1m; one symbol's 4,000 daily bars;
- a cross-section of 500 symbols for one session, daily and 1m.

Run: python benchmarks/lake_vs_arcticdb.py [--scale 0.25] [--repeat 15]
(needs the `bench` extra: pip install arcticdb). The last line is machine-readable:
`RESULT write_ratio=... read_60s_ratio=... read_month_ratio=... read_daily_ratio=...
xsec_ratio=...` with each ratio = lake seconds / ArcticDB seconds (below 1: the lake is faster);
xsec_ratio is the worse of the daily and 1m cross-sections.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import arcticdb
import pandas as pd
import polars as pl
from arcticdb.version_store.library import ReadRequest, WritePayload
from ingest import synthetic_bars, trading_sessions  # benchmarks/ingest.py

from market_assets.core.stores.lake import ParquetLake
from market_assets.query import MarketData

MINUTE_START = dt.date(2024, 1, 2)
DAILY_START = dt.date(2008, 1, 2)


@dataclass(frozen=True)
class Case:
    """One measured operation: the lake's and ArcticDB's way of doing it."""

    name: str
    rows: int
    lake: Callable[[], object]
    arctic: Callable[[], object]


def best_of(cases: list[Case], repeat: int) -> dict[str, tuple[float, float]]:
    """Fastest of `repeat` runs of each side, interleaved so machine load hits both alike."""
    best = {case.name: [math.inf, math.inf] for case in cases}
    for _ in range(repeat):
        for case in cases:
            for side, run in enumerate((case.lake, case.arctic)):
                started = time.perf_counter()
                run()
                best[case.name][side] = min(best[case.name][side], time.perf_counter() - started)
    return {name: (lake, arctic) for name, (lake, arctic) in best.items()}


def to_pandas_by_symbol(frame: pl.DataFrame) -> dict[str, pd.DataFrame]:
    """One pandas frame per symbol, indexed by ts (UTC), the layout ArcticDB reads back fast."""
    return {
        str(symbol): group.to_pandas().set_index("ts")
        for (symbol,), group in frame.partition_by("symbol", as_dict=True).items()
    }


def arctic_write(library: arcticdb.library.Library, frames: dict[str, pd.DataFrame]) -> None:
    payloads = [WritePayload(symbol, frame) for symbol, frame in frames.items()]
    results = library.write_batch(payloads, prune_previous_versions=True)
    failed = [r for r in results if isinstance(r, arcticdb.DataError)]
    if failed:
        raise RuntimeError(f"ArcticDB write failed: {failed[0]}")


def utc(day: dt.date) -> pd.Timestamp:
    return pd.Timestamp(day, tz="UTC")


def arctic_range(start: dt.date, end: dt.date) -> tuple[pd.Timestamp, pd.Timestamp]:
    """ArcticDB's date_range includes both ends: [start, end) is [start, end - 1ns]."""
    return utc(start), utc(end) - pd.Timedelta(1, "ns")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the symbols")
    parser.add_argument("--repeat", type=int, default=15, help="read runs (best kept)")
    parser.add_argument("--write-repeat", type=int, default=2, help="write runs (best kept)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    minute_symbols = [f"M{i:04d}" for i in range(max(2, round(200 * args.scale)))]
    extra_symbols = [f"X{i:04d}" for i in range(max(2, round(300 * args.scale)))]
    daily_symbols = [f"D{i:04d}" for i in range(max(2, round(500 * args.scale)))]
    minute_sessions = trading_sessions(MINUTE_START, 60)
    daily_sessions = trading_sessions(DAILY_START, 4000)
    xsec_minute = minute_sessions[41]
    xsec_daily = daily_sessions[2000]
    month = (dt.date(2024, 2, 1), dt.date(2024, 3, 1))

    started = time.perf_counter()
    minute = synthetic_bars(minute_symbols, minute_sessions)
    minute_extra = synthetic_bars(extra_symbols, [xsec_minute], seed=8)
    daily = synthetic_bars(daily_symbols, daily_sessions, granularity="1d", seed=9)
    minute_pd = to_pandas_by_symbol(minute)
    minute_extra_pd = to_pandas_by_symbol(minute_extra)
    daily_pd = to_pandas_by_symbol(daily)
    print(
        f"synthetic: bars_1m {minute.height:,} rows ({len(minute_symbols)} symbols x 60 "
        f"sessions) + {minute_extra.height:,} ({len(extra_symbols)} symbols x 1 session); "
        f"bars_1d {daily.height:,} rows ({len(daily_symbols)} symbols x 4,000 sessions); "
        f"built in {time.perf_counter() - started:.1f}s"
    )

    with tempfile.TemporaryDirectory(prefix="lake-vs-arctic-") as scratch:
        arctic = arcticdb.Arctic(f"lmdb://{scratch}/arctic?map_size=40GB")
        lake_root = f"{scratch}/lake"
        state = {"round": 0}

        def fresh_lake() -> ParquetLake:
            state["round"] += 1
            return ParquetLake(f"{lake_root}{state['round']}")

        def fresh_library(name: str) -> arcticdb.library.Library:
            state["round"] += 1
            return arctic.get_library(f"{name}{state['round']}", create_if_missing=True)

        minute_pairs = [(s, d) for s in minute_symbols for d in minute_sessions]
        daily_pairs = [(s, d) for s in daily_symbols for d in daily_sessions]
        writes: dict[str, tuple[float, float]] = {}
        for name, frame, frames, pairs, dataset in [
            ("write 1m bulk", minute, minute_pd, minute_pairs, "bars_1m"),
            ("write 1d bulk", daily, daily_pd, daily_pairs, "bars_1d"),
        ]:
            best = [math.inf, math.inf]
            for _ in range(args.write_repeat):
                lake = fresh_lake()
                started = time.perf_counter()
                lake.write_partitions(dataset, frame, pairs)
                best[0] = min(best[0], time.perf_counter() - started)
                library = fresh_library(dataset)
                started = time.perf_counter()
                arctic_write(library, frames)
                best[1] = min(best[1], time.perf_counter() - started)
                shutil.rmtree(lake.root)
                arctic.delete_library(library.name)
            writes[name] = (best[0], best[1])

        # The stores read below: one lake and one library holding everything.
        lake = fresh_lake()
        lake.write_partitions("bars_1m", minute, minute_pairs)
        lake.write_partitions(
            "bars_1m", minute_extra, [(s, xsec_minute) for s in extra_symbols]
        )
        lake.write_partitions("bars_1d", daily, daily_pairs)
        minute_lib = fresh_library("bars_1m")
        arctic_write(minute_lib, {**minute_pd, **minute_extra_pd})
        daily_lib = fresh_library("bars_1d")
        arctic_write(daily_lib, daily_pd)
        market = MarketData(root=lake.root)

        one = minute_symbols[len(minute_symbols) // 2]
        one_daily = daily_symbols[len(daily_symbols) // 2]
        sixty = (minute_sessions[0], minute_sessions[-1] + dt.timedelta(days=1))
        daily_span = (daily_sessions[0], daily_sessions[-1] + dt.timedelta(days=1))
        xsec_1m = [*minute_symbols, *extra_symbols]
        xsec_1m_span = (xsec_minute, xsec_minute + dt.timedelta(days=1))
        xsec_1d_span = (xsec_daily, xsec_daily + dt.timedelta(days=1))

        def arctic_batch(library: arcticdb.library.Library, names: list[str], span) -> object:
            bounds = arctic_range(*span)
            return library.read_batch([ReadRequest(s, date_range=bounds) for s in names])

        cases = [
            Case(
                "read 1 symbol 60 sessions 1m",
                390 * 60,
                lambda: market.bars(one, *sixty, granularity="1m"),
                lambda: minute_lib.read(one, date_range=arctic_range(*sixty)),
            ),
            Case(
                "read 1 symbol-month 1m",
                390 * 20,
                lambda: market.bars(one, *month, granularity="1m"),
                lambda: minute_lib.read(one, date_range=arctic_range(*month)),
            ),
            Case(
                "read 1 symbol 4,000 daily bars",
                4000,
                lambda: market.bars(one_daily, *daily_span, granularity="1d"),
                lambda: daily_lib.read(one_daily, date_range=arctic_range(*daily_span)),
            ),
            Case(
                f"cross-section {len(daily_symbols)} symbols 1 session 1d",
                len(daily_symbols),
                lambda: market.bars(daily_symbols, *xsec_1d_span, granularity="1d"),
                lambda: arctic_batch(daily_lib, daily_symbols, xsec_1d_span),
            ),
            Case(
                f"cross-section {len(xsec_1m)} symbols 1 session 1m",
                len(xsec_1m) * 390,
                lambda: market.bars(xsec_1m, *xsec_1m_span, granularity="1m"),
                lambda: arctic_batch(minute_lib, xsec_1m, xsec_1m_span),
            ),
        ]
        checks = {
            case.name: (pl.DataFrame(case.lake()).height, case.arctic()) for case in cases
        }
        for name, (lake_rows, arctic_result) in checks.items():
            arctic_rows = (
                sum(len(item.data) for item in arctic_result)
                if isinstance(arctic_result, list)
                else len(arctic_result.data)
            )
            if lake_rows != arctic_rows:
                raise RuntimeError(
                    f"{name}: lake returned {lake_rows} rows, ArcticDB {arctic_rows}"
                )
        reads = best_of(cases, args.repeat)

    rows = {case.name: case.rows for case in cases}
    rows["write 1m bulk"] = minute.height
    rows["write 1d bulk"] = daily.height
    results = {**writes, **reads}
    header = (
        f"{'operation':<44} {'rows':>10} {'lake ms':>10} {'arcticdb ms':>12} {'lake/arctic':>12}"
    )
    print(header)
    print("-" * len(header))
    for name, (lake_s, arctic_s) in results.items():
        print(
            f"{name:<44} {rows[name]:>10,} {lake_s * 1000:>10.2f} {arctic_s * 1000:>12.2f} "
            f"{lake_s / arctic_s:>12.2f}"
        )
    lake_w, arctic_w = writes["write 1m bulk"]
    print(
        f"write 1m: lake {minute.height / lake_w:,.0f} rows/s, "
        f"ArcticDB {minute.height / arctic_w:,.0f} rows/s"
    )

    def ratio(name: str) -> float:
        lake_s, arctic_s = results[name]
        return lake_s / arctic_s

    xsec = max(ratio(cases[3].name), ratio(cases[4].name))
    print(
        f"RESULT write_ratio={ratio('write 1m bulk'):.2f} "
        f"read_60s_ratio={ratio(cases[0].name):.2f} "
        f"read_month_ratio={ratio(cases[1].name):.2f} "
        f"read_daily_ratio={ratio(cases[2].name):.2f} "
        f"xsec_ratio={xsec:.2f} "
        f"write_1d_ratio={ratio('write 1d bulk'):.2f}"
    )


if __name__ == "__main__":
    main()
