"""Read benchmark: one symbol-month of 1m bars from the TimescaleDB hypertable vs the lake.

Builds synthetic 1-minute bars (default 10 symbols x 252 sessions of 2023 = 983k rows), writes
them to a throwaway database on a TimescaleDB server (through the store, with the 1h/1d
continuous aggregates configured) and to a Parquet lake in a temporary folder, compresses the
hypertable's chunks except the last month's (history is compressed, recent data is not), then
times, best of N in interleaved rounds:

- the lake: `MarketData(root).bars(symbol, June, "1m")`, the baseline;
- the hypertable: `MarketData(dsn=...).bars(..., store="timescale")` on its kept ADBC
  connection (binary COPY decoded into Arrow), for a compressed month and the last month;
- the read as the store did it before: a new psycopg connection per call, COPY ... (FORMAT
  CSV) parsed by polars;
- the server's own execution time of the query (EXPLAIN ANALYZE), for reference;
- one symbol-month of 1d bars from the continuous aggregate bars_1d_from_1m.

Run: python benchmarks/query.py [--symbols 10 --repeat 20 --dsn ADMIN_DSN]
The last line is machine-readable: `RESULT timescale_vs_lake_symbol_month_1m=... ...`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

import polars as pl
import psycopg
from ingest import (  # benchmarks/ingest.py
    Measurement,
    Method,
    best_of_rounds,
    scratch_database,
    synthetic_bars,
    trading_sessions,
)

from market_assets.core.config import TimescalePolicy
from market_assets.core.schemas import BAR_SCHEMA
from market_assets.core.stores.lake import ParquetLake
from market_assets.core.stores.timescale import TimescaleStore
from market_assets.query import MarketData

YEAR = 2023
JUNE = (dt.datetime(YEAR, 6, 1, tzinfo=dt.UTC), dt.datetime(YEAR, 7, 1, tzinfo=dt.UTC))
DECEMBER = (dt.datetime(YEAR, 12, 1, tzinfo=dt.UTC), dt.datetime(YEAR + 1, 1, 1, tzinfo=dt.UTC))
COLUMNS = list(BAR_SCHEMA)


def legacy_read(dsn: str, symbol: str, lo: dt.datetime, hi: dt.datetime) -> pl.DataFrame:
    """What the store's read did before: a new connection, COPY (FORMAT CSV), polars parse."""
    query = (
        f"COPY (SELECT {', '.join(COLUMNS)} FROM bars_1m WHERE symbol = ANY(%s) AND ts >= %s "
        "AND ts < %s ORDER BY symbol, ts) TO STDOUT (FORMAT CSV)"
    )
    buffer = bytearray()
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT set_config('TimeZone', 'UTC', true), set_config('DateStyle', 'ISO', true),"
            " set_config('extra_float_digits', '1', true)"
        )
        with cur.copy(query, ([symbol], lo, hi)) as copier:
            for data in copier:
                buffer += data
    schema = {n: (pl.String() if n == "ts" else t) for n, t in BAR_SCHEMA.items()}
    frame = pl.read_csv(bytes(buffer), has_header=False, new_columns=COLUMNS, schema=schema)
    return frame.with_columns(pl.col("ts").str.strptime(BAR_SCHEMA["ts"], "%Y-%m-%d %H:%M:%S%#z"))


def server_seconds(dsn: str, symbol: str, lo: dt.datetime, hi: dt.datetime) -> float:
    """Planning + execution time the server reports for the read's SELECT."""
    with psycopg.connect(dsn) as conn:
        plan = conn.execute(
            f"EXPLAIN (ANALYZE, FORMAT JSON) SELECT {', '.join(COLUMNS)} FROM bars_1m "
            "WHERE symbol IN (%s) AND ts >= %s AND ts < %s ORDER BY symbol, ts",
            (symbol, lo, hi),
        ).fetchone()[0][0]
    return (plan["Planning Time"] + plan["Execution Time"]) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=20, help="runs per measurement (best kept)")
    parser.add_argument(
        "--dsn",
        default="postgresql://postgres@127.0.0.1:5433/postgres",
        help="admin DSN of a TimescaleDB server (../shared/timescaledb/start-timescaledb)",
    )
    args = parser.parse_args()
    symbols = [f"SYM{i:04d}" for i in range(args.symbols)]
    sessions = trading_sessions(dt.date(YEAR, 1, 3), 250)
    target = symbols[len(symbols) // 2]

    with scratch_database(args.dsn) as dsn, tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        lake = ParquetLake(str(Path(scratch) / "lake"))
        with TimescaleStore(dsn) as store:
            if not store.ensure_schema({"bars_1m": TimescalePolicy(continuous_aggregates=["1d"])}):
                raise SystemExit(f"{args.dsn} has no usable TimescaleDB")
            for first in range(0, len(sessions), 20):  # one backfill run at a time
                block = sessions[first : first + 20]
                frame = synthetic_bars(symbols, block)
                partitions = [(s, d) for s in symbols for d in block]
                store.write_partitions("bars_1m", frame, partitions)
                lake.write_partitions("bars_1m", frame, partitions)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT count(compress_chunk(c)) FROM show_chunks('bars_1m', "
                "older_than => %s::timestamptz) c",
                (DECEMBER[0] - dt.timedelta(days=7),),
            )
            (rows,) = conn.execute("SELECT count(*) FROM bars_1m").fetchone()
        print(
            f"bars_1m: {rows:,} rows ({args.symbols} symbols x {len(sessions)} sessions) in the "
            f"hypertable and the lake, built in {time.perf_counter() - started:.0f}s"
        )

        lake_market = MarketData(root=str(Path(scratch) / "lake"))
        market = MarketData(root=str(Path(scratch) / "lake"), dsn=dsn)
        expected = lake_market.bars(target, *JUNE, granularity="1m")
        checks = {
            "hypertable": market.bars(target, *JUNE, granularity="1m", store="timescale"),
            "legacy": legacy_read(dsn, target, *JUNE),
        }
        for name, got in checks.items():
            if not got.equals(expected):
                raise SystemExit(f"{name} read differs from the lake's ({got.height} rows)")
        december = market.bars(target, *DECEMBER, granularity="1m", store="timescale")
        with TimescaleStore(dsn) as store:
            daily = store.read_aggregate("bars_1m", "1d", target, *JUNE)

            def noop() -> None:
                return None

            methods = [
                Method(
                    "lake: MarketData.bars, symbol-month 1m",
                    expected.height,
                    noop,
                    lambda: lake_market.bars(target, *JUNE, granularity="1m"),
                ),
                Method(
                    "hypertable: MarketData.bars (ADBC, kept conn.), compressed month",
                    expected.height,
                    noop,
                    lambda: market.bars(target, *JUNE, granularity="1m", store="timescale"),
                ),
                Method(
                    "hypertable: same, uncompressed month (December)",
                    december.height,
                    noop,
                    lambda: market.bars(target, *DECEMBER, granularity="1m", store="timescale"),
                ),
                Method(
                    "hypertable before: new connection + CSV COPY",
                    expected.height,
                    noop,
                    lambda: legacy_read(dsn, target, *JUNE),
                ),
                Method(
                    "continuous aggregate: symbol-month 1d from 1m",
                    daily.height,
                    noop,
                    lambda: store.read_aggregate("bars_1m", "1d", target, *JUNE),
                ),
            ]
            results = best_of_rounds(methods, args.repeat)
        server = min(server_seconds(dsn, target, *JUNE) for _ in range(args.repeat))
        results.append(Measurement("server only: planning + execution (EXPLAIN)", 0, server))
        market.close()

    lake_read = results[0]
    header = f"{'method':<66} {'rows':>7} {'ms':>8} {'vs lake':>8}"
    print(header)
    print("-" * len(header))
    for m in results:
        ratio = m.seconds / lake_read.seconds
        print(f"{m.method:<66} {m.rows:>7,} {m.seconds * 1000:>8.2f} {ratio:>8.2f}")
    hypertable, december_read, before = results[1], results[2], results[3]
    print(
        f"RESULT timescale_vs_lake_symbol_month_1m={hypertable.seconds / lake_read.seconds:.2f} "
        f"uncompressed_vs_lake={december_read.seconds / lake_read.seconds:.2f} "
        f"before_vs_lake={before.seconds / lake_read.seconds:.2f} "
        f"lake_ms={lake_read.seconds * 1000:.2f} timescale_ms={hypertable.seconds * 1000:.2f} "
        f"server_ms={server * 1000:.2f}"
    )


if __name__ == "__main__":
    main()
