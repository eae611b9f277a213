"""Partition rewrites inside compressed TimescaleDB history: the store's deletes vs the old join.

Builds a throwaway database on a TimescaleDB server, writes synthetic 1-minute bars (default
50 symbols x 128 sessions x 390 minutes = 2.5M rows) through the store, compresses every
chunk, then measures with EXPLAIN (ANALYZE, FORMAT JSON), each inside a transaction that is
rolled back afterwards:

- one-partition rewrite (one symbol, one session in the middle of the history);
- appending a brand-new session for every symbol (the daily after-close write);

each as the store deletes now (literal `symbol IN (...) AND ts >= ... AND ts < ...` per block,
`TimescaleStore.partition_delete_sql`) and as it deleted before (a join against unnest(...)).
Reported per case: tuples decompressed, statement time, WAL written and hypertable growth.

Run: python benchmarks/rewrite.py [--symbols 50 --sessions 128 --dsn ADMIN_DSN]
The last line is machine-readable: `RESULT one_partition_tuples_old=... new=... ...`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from ingest import scratch_database, synthetic_bars, trading_sessions  # benchmarks/ingest.py

from market_assets.core.stores.layout import layout_for
from market_assets.core.stores.timescale import TimescaleStore

FIRST_SESSION = dt.date(2023, 1, 3)


@dataclass(frozen=True)
class Measured:
    case: str
    method: str
    tuples_decompressed: int
    seconds: float
    wal_bytes: int
    growth_bytes: int


def legacy_delete(partitions: list[tuple[str, dt.date]]) -> str:
    """The store's delete before: USING unnest(symbols, lows, highs), one statement."""
    layout = layout_for("bars_1m")
    bounds = [layout.session_bounds(session) for _, session in partitions]
    symbols = ",".join(f"'{symbol}'" for symbol, _ in partitions)
    lows = ",".join(f"'{lo.isoformat()}'" for lo, _ in bounds)
    highs = ",".join(f"'{hi.isoformat()}'" for _, hi in bounds)
    return (
        f"DELETE FROM bars_1m AS t USING unnest(ARRAY[{symbols}]::text[], "
        f"ARRAY[{lows}]::timestamptz[], ARRAY[{highs}]::timestamptz[]) AS p(symbol, lo, hi) "
        "WHERE t.symbol = p.symbol AND t.ts >= p.lo AND t.ts < p.hi"
    )


def explain(dsn: str, case: str, method: str, statements: list[str]) -> Measured:
    """Run `statements` under EXPLAIN ANALYZE in one transaction, measure, roll back."""
    with psycopg.connect(dsn) as conn:
        conn.execute("SET LOCAL timescaledb.max_tuples_decompressed_per_dml_transaction = 0")
        (size_before,) = conn.execute("SELECT hypertable_size('bars_1m')").fetchone()
        (lsn_before,) = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
        tuples, started = 0, time.perf_counter()
        for statement in statements:
            plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement).fetchone()[0]
            tuples += _sum_key(plan[0]["Plan"], "Tuples decompressed")
        seconds = time.perf_counter() - started
        (wal,) = conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", (lsn_before,)
        ).fetchone()
        (size_after,) = conn.execute("SELECT hypertable_size('bars_1m')").fetchone()
        conn.rollback()
    return Measured(case, method, tuples, seconds, int(wal), int(size_after - size_before))


def _sum_key(node: dict[str, Any], key: str) -> int:
    return int(node.get(key, 0)) + sum(_sum_key(child, key) for child in node.get("Plans", []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=128)
    parser.add_argument(
        "--dsn",
        default="postgresql://postgres@127.0.0.1:5433/postgres",
        help="admin DSN of a TimescaleDB server (../shared/timescaledb/start-timescaledb)",
    )
    args = parser.parse_args()
    symbols = [f"SYM{i:04d}" for i in range(args.symbols)]
    sessions = trading_sessions(FIRST_SESSION, args.sessions + 1)
    history, new_session = sessions[:-1], sessions[-1]

    with scratch_database(args.dsn) as dsn:
        started = time.perf_counter()
        with TimescaleStore(dsn) as store:
            if not store.ensure_schema():
                raise SystemExit(f"{args.dsn} has no usable TimescaleDB")
            for first in range(0, len(history), 20):  # one backfill run (20 sessions) at a time
                block = history[first : first + 20]
                store.write_partitions(
                    "bars_1m",
                    synthetic_bars(symbols, block),
                    [(s, d) for s in symbols for d in block],
                )
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SELECT count(compress_chunk(c)) FROM show_chunks('bars_1m') c")
                (rows,) = conn.execute("SELECT count(*) FROM bars_1m").fetchone()
                (size,) = conn.execute("SELECT hypertable_size('bars_1m')").fetchone()
            print(
                f"bars_1m: {rows:,} rows ({args.symbols} symbols x {len(history)} sessions), "
                f"compressed to {size / 1e6:.1f} MB, built in {time.perf_counter() - started:.0f}s"
            )
            one = [(symbols[len(symbols) // 2], history[len(history) // 2])]
            append = [(s, new_session) for s in symbols]
            results = [
                explain(
                    dsn, "one partition (390 rows)", "before: unnest join", [legacy_delete(one)]
                ),
                explain(
                    dsn,
                    "one partition (390 rows)",
                    "now: literal bounds",
                    store.partition_delete_sql("bars_1m", one),
                ),
                explain(
                    dsn, "append a new session", "before: unnest join", [legacy_delete(append)]
                ),
                explain(
                    dsn,
                    "append a new session",
                    "now: literal bounds",
                    store.partition_delete_sql("bars_1m", append),
                ),
            ]

    header = (
        f"{'case':<26} {'method':<22} {'tuples decompressed':>20} {'seconds':>9} "
        f"{'WAL MB':>8} {'growth MB':>10}"
    )
    print(header)
    print("-" * len(header))
    for m in results:
        print(
            f"{m.case:<26} {m.method:<22} {m.tuples_decompressed:>20,} {m.seconds:>9.3f} "
            f"{m.wal_bytes / 1e6:>8.2f} {m.growth_bytes / 1e6:>10.2f}"
        )
    one_old, one_new, append_old, append_new = results
    print(
        f"RESULT one_partition_tuples_old={one_old.tuples_decompressed} "
        f"one_partition_tuples_new={one_new.tuples_decompressed} "
        f"one_partition_seconds_old={one_old.seconds:.3f} "
        f"one_partition_seconds_new={one_new.seconds:.3f} "
        f"one_partition_wal_mb_old={one_old.wal_bytes / 1e6:.1f} "
        f"one_partition_wal_mb_new={one_new.wal_bytes / 1e6:.2f} "
        f"append_tuples_old={append_old.tuples_decompressed} "
        f"append_tuples_new={append_new.tuples_decompressed}"
    )


if __name__ == "__main__":
    main()
