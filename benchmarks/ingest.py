"""Bulk-ingest benchmark: the store's partition write against PostgreSQL's own COPY and to_sql.

Builds one synthetic 1-minute frame (default 200 symbols x 20 sessions x 390 minutes = 1.56M
rows), creates a throwaway database, and measures in this process, best of N runs into a
freshly truncated table each time:

- store write: validation (`split_valid_bars`, or `BarModel.validate` where that module is
  missing) plus `TimescaleStore.write_partitions` (delete-range + binary COPY, one transaction);
- pandas `to_sql` through SQLAlchemy/psycopg2 (`method=None`, chunksize 10,000) on a subset;
- server COPY: `COPY ... FROM '/tmp/file' (FORMAT BINARY)` of the same rows into a table made
  like bars_1m and, on TimescaleDB, turned into a hypertable with bars_1m's chunk interval and
  compression settings (the same kind of table the store writes), the ceiling;
- the Parquet lake's write and two reads, when `market_assets.core.stores.lake` exists.

Run: python benchmarks/ingest.py [--symbols 200 --sessions 20 --repeat 3 --dsn ...]
(default DSN: the TimescaleDB test server on 5433; a plain PostgreSQL DSN measures plain tables)
The last line is machine-readable: `RESULT store_vs_server_copy=... store_vs_to_sql=... ...`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pgpq
import polars as pl
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from market_assets.core.calendar import get_calendar
from market_assets.core.schemas import BAR_COLUMNS, BAR_SCHEMA
from market_assets.core.stores.timescale import TimescaleStore

NEW_YORK = ZoneInfo("America/New_York")
MINUTES_PER_SESSION = 390
FIRST_SESSION = dt.date(2024, 1, 2)
YEAR_SYMBOL = "YEARLONG"
YEAR = 2023
SESSIONS_PER_YEAR = 252


@dataclass(frozen=True)
class Measurement:
    method: str
    rows: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else math.inf


def trading_sessions(first: dt.date, count: int) -> list[dt.date]:
    """The first `count` NYSE sessions on or after `first`."""
    sessions = get_calendar().sessions(first, first + dt.timedelta(days=count * 2 + 10))
    if len(sessions) < count:
        raise ValueError(f"the calendar has only {len(sessions)} sessions from {first}")
    return sessions[:count]


def synthetic_bars(
    symbols: list[str], sessions: list[dt.date], granularity: str = "1m", seed: int = 7
) -> pl.DataFrame:
    """Canonical bars, sorted by (symbol, ts): random-walk prices with valid OHLC.

    Minute bars open from 09:30 New York time; daily bars sit at the session date 00:00 UTC.
    """
    if granularity == "1d":
        opens = np.array([np.datetime64(s.isoformat(), "us") for s in sessions])
    else:
        session_opens = [
            np.datetime64(
                dt.datetime.combine(s, dt.time(9, 30), tzinfo=NEW_YORK)
                .astimezone(dt.UTC)
                .replace(tzinfo=None),
                "us",
            )
            for s in sessions
        ]
        minutes = np.arange(MINUTES_PER_SESSION) * np.timedelta64(60_000_000, "us")
        opens = (np.array(session_opens)[:, None] + minutes[None, :]).ravel()
    rng = np.random.default_rng(seed)
    n_symbols, n_bars = len(symbols), len(opens)
    start = rng.uniform(20.0, 500.0, (n_symbols, 1))
    walk = start * np.exp(np.cumsum(rng.normal(0.0, 0.001, (n_symbols, n_bars)), axis=1))
    close = walk.ravel()
    open_ = np.concatenate([start, walk[:, :-1]], axis=1).ravel()
    wiggle = np.abs(rng.normal(0.0, 0.0005, (2, close.size)))
    high = np.maximum(open_, close) * (1 + wiggle[0])
    low = np.minimum(open_, close) * (1 - wiggle[1])
    volume = rng.integers(100, 50_000, close.size)
    return pl.DataFrame(
        {
            "ts": np.tile(opens, n_symbols),
            "symbol": np.repeat(np.array(symbols), n_bars),
            "open": np.round(open_, 4),
            "high": np.round(high, 4),
            "low": np.round(low, 4),
            "close": np.round(close, 4),
            "volume": volume,
            "trade_count": volume // 50 + 1,
            "vwap": np.round((high + low + close) / 3, 4),
            "granularity": granularity,
            "source": "synthetic",
        }
    ).select(
        pl.col("ts").dt.replace_time_zone("UTC").cast(BAR_SCHEMA["ts"]),
        *[pl.col(c).cast(BAR_SCHEMA[c]) for c in BAR_COLUMNS if c != "ts"],
    )


Validator = Callable[[pl.DataFrame, list[tuple[str, dt.date]]], pl.DataFrame]


def bar_validator(choice: str = "auto") -> tuple[str, Validator]:
    """The project's validation step.

    "auto" prefers `split_valid_bars` and falls back to pandera's `BarModel.validate` while
    `market_assets.core.validate` is not importable; the other choices force one of them.
    """
    if choice in ("auto", "split_valid_bars"):
        try:
            from market_assets.core.validate import split_valid_bars
        except ImportError:
            if choice == "split_valid_bars":
                raise
        else:

            def split(frame: pl.DataFrame, partitions: list[tuple[str, dt.date]]) -> pl.DataFrame:
                result = split_valid_bars(frame, dataset="bars_1m", partitions=partitions)
                if not result.quarantined.is_empty():
                    raise RuntimeError(f"synthetic bars were quarantined: {result.rule_counts}")
                return result.valid

            return "split_valid_bars", split
    from market_assets.core.schemas import BarModel

    return "BarModel.validate", lambda frame, partitions: BarModel.validate(frame)


@contextmanager
def scratch_database(admin_dsn: str) -> Iterator[str]:
    """A new empty database, dropped (forcing disconnects) on exit."""
    name = f"market_assets_bench_{secrets.token_hex(6)}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(admin_dsn, dbname=name)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@dataclass(frozen=True)
class Method:
    """One way of loading rows: an untimed `prepare` step, then the timed `run`."""

    name: str
    rows: int
    prepare: Callable[[], None]
    run: Callable[[], object]


def best_of_rounds(methods: list[Method], repeat: int) -> list[Measurement]:
    """Fastest of `repeat` runs per method, run in interleaved rounds so that load from other
    processes on the machine falls on every method alike."""
    best = {m.name: math.inf for m in methods}
    for _ in range(repeat):
        for method in methods:
            method.prepare()
            started = time.perf_counter()
            method.run()
            best[method.name] = min(best[method.name], time.perf_counter() - started)
    return [Measurement(m.name, m.rows, best[m.name]) for m in methods]


def truncater(conn: psycopg.Connection, table: str) -> Callable[[], None]:
    """A step that empties `table` and checkpoints, so every run starts from the same state."""

    def reset() -> None:
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(table)))
        conn.execute("CHECKPOINT")

    return reset


def fresh_table(conn: psycopg.Connection, table: str) -> Callable[[], None]:
    """Create `table` like bars_1m (columns, primary key) and, when bars_1m is a hypertable,
    make it one with the same chunk interval and compression settings; return its
    `truncater`."""
    conn.execute(
        sql.SQL("CREATE TABLE {} (LIKE bars_1m INCLUDING ALL)").format(sql.Identifier(table))
    )
    interval = bars_1m_chunk_interval(conn)
    if interval is not None:
        conn.execute(
            "SELECT create_hypertable(%s, by_range('ts', %s::interval))", (table, interval)
        )
        conn.execute(
            sql.SQL(
                "ALTER TABLE {} SET (timescaledb.compress, timescaledb.compress_segmentby = "
                "'symbol', timescaledb.compress_orderby = 'ts DESC')"
            ).format(sql.Identifier(table))
        )
    return truncater(conn, table)


def bars_1m_chunk_interval(conn: psycopg.Connection) -> dt.timedelta | None:
    """bars_1m's chunk interval when it is a hypertable, else None (plain PostgreSQL)."""
    (installed,) = conn.execute(
        "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"
    ).fetchone()
    if not installed:
        return None
    row = conn.execute(
        "SELECT time_interval FROM timescaledb_information.dimensions "
        "WHERE hypertable_name = 'bars_1m' AND dimension_number = 1"
    ).fetchone()
    return row[0] if row else None


def write_binary_copy_file(frame: pl.DataFrame, path: Path) -> None:
    """Write `frame` as a PostgreSQL binary COPY file readable by the server's OS user."""
    arrow = frame.to_arrow()
    encoder = pgpq.ArrowToPostgresBinaryEncoder(arrow.schema)
    with path.open("wb") as out:
        out.write(encoder.write_header())
        for batch in arrow.to_batches(max_chunksize=65_536):
            out.write(encoder.write_batch(batch))
        out.write(encoder.finish())
    os.chmod(path, 0o644)


def measure_database(
    dsn: str, frame: pl.DataFrame, partitions: list[tuple[str, dt.date]], args: argparse.Namespace
) -> list[Measurement]:
    """Server COPY, store write (with and without validation) and to_sql, best of N each."""
    from sqlalchemy import URL, create_engine

    validator_name, validate = bar_validator(args.validator)
    subset = frame.head(args.to_sql_rows).to_pandas()
    info = conninfo_to_dict(dsn)
    engine = create_engine(
        URL.create(
            "postgresql+psycopg2",
            username=info.get("user", "postgres"),
            password=info.get("password"),
            host=info.get("host", "127.0.0.1"),
            port=int(info.get("port", 5432)),
            database=info["dbname"],
        )
    )
    copy_path = Path(tempfile.gettempdir()) / f"market_assets_bench_{secrets.token_hex(4)}.bin"
    write_binary_copy_file(frame, copy_path)
    try:
        with psycopg.connect(dsn, autocommit=True) as admin, TimescaleStore(dsn) as store:
            store.ensure_schema()
            reset_store = truncater(admin, "bars_1m")
            copy_from_file = sql.SQL("COPY bench_server_copy ({}) FROM {} (FORMAT BINARY)").format(
                sql.SQL(", ").join(map(sql.Identifier, BAR_COLUMNS)), sql.Literal(str(copy_path))
            )
            methods = [
                Method(
                    "server COPY FROM file (binary)",
                    frame.height,
                    fresh_table(admin, "bench_server_copy"),
                    lambda: admin.execute(copy_from_file),
                ),
                Method(
                    f"store write ({validator_name} + write_partitions)",
                    frame.height,
                    reset_store,
                    lambda: store.write_partitions(
                        "bars_1m", validate(frame, partitions), partitions
                    ),
                ),
                Method(
                    "store write_partitions only",
                    frame.height,
                    reset_store,
                    lambda: store.write_partitions("bars_1m", frame, partitions),
                ),
                Method(
                    f"validation only ({validator_name})",
                    frame.height,
                    lambda: None,
                    lambda: validate(frame, partitions),
                ),
                Method(
                    "pandas to_sql (psycopg2, chunksize 10k)",
                    len(subset),
                    fresh_table(admin, "bench_to_sql"),
                    lambda: subset.to_sql(
                        "bench_to_sql",
                        engine,
                        if_exists="append",
                        index=False,
                        method=None,
                        chunksize=10_000,
                    ),
                ),
            ]
            return best_of_rounds(methods, args.repeat)
    finally:
        copy_path.unlink(missing_ok=True)
        engine.dispose()


def measure_lake(
    frame: pl.DataFrame, partitions: list[tuple[str, dt.date]], repeat: int
) -> tuple[list[Measurement], dict[str, float]]:
    """Lake write of `frame` and reads of one symbol-year of 1m and one symbol-month of 1d."""
    try:
        from market_assets.core.stores.lake import ParquetLake
    except ImportError as exc:
        print(f"lake not available ({exc}); lake measurements skipped")
        return [], {}
    results: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="market_assets_lake_") as scratch:
        fresh_lakes = (ParquetLake(str(Path(scratch) / f"write_{i}")) for i in range(repeat))
        current: dict[str, ParquetLake] = {}

        def fresh_lake() -> None:
            current["lake"] = next(fresh_lakes)

        write = Method(
            "lake write_partitions (bars_1m)",
            frame.height,
            fresh_lake,
            lambda: current["lake"].write_partitions("bars_1m", frame, partitions),
        )
        results += best_of_rounds([write], repeat)

        reads = ParquetLake(str(Path(scratch) / "reads"))
        year_sessions = trading_sessions(dt.date(YEAR, 1, 1), SESSIONS_PER_YEAR)
        minute_year = synthetic_bars([YEAR_SYMBOL], year_sessions, "1m")
        daily_year = synthetic_bars([YEAR_SYMBOL], year_sessions, "1d")
        year_partitions = [(YEAR_SYMBOL, d) for d in year_sessions]
        reads.write_partitions("bars_1m", minute_year, year_partitions)
        reads.write_partitions("bars_1d", daily_year, year_partitions)
        year = (
            dt.datetime.combine(year_sessions[0], dt.time(0), tzinfo=dt.UTC),
            dt.datetime.combine(year_sessions[-1], dt.time(0), tzinfo=dt.UTC)
            + dt.timedelta(days=2),
        )
        month = (dt.datetime(YEAR, 6, 1, tzinfo=dt.UTC), dt.datetime(YEAR, 7, 1, tzinfo=dt.UTC))
        got_year = reads.read("bars_1m", [YEAR_SYMBOL], *year)
        got_month = reads.read("bars_1d", [YEAR_SYMBOL], *month)
        if got_year.height != minute_year.height or got_month.is_empty():
            raise RuntimeError(
                f"lake read back {got_year.height} of {minute_year.height} minute bars and "
                f"{got_month.height} daily bars of June"
            )
        results += best_of_rounds(
            [
                Method(
                    "lake read symbol-year 1m",
                    got_year.height,
                    lambda: None,
                    lambda: reads.read("bars_1m", [YEAR_SYMBOL], *year),
                ),
                Method(
                    "lake read symbol-month 1d",
                    got_month.height,
                    lambda: None,
                    lambda: reads.read("bars_1d", [YEAR_SYMBOL], *month),
                ),
            ],
            max(repeat, 5),
        )
    lake_write, year_read, month_read = results
    lake_numbers = {
        "lake_write_rows_per_s": lake_write.rows_per_second,
        "lake_read_symbol_year_1m_ms": year_read.seconds * 1000,
        "lake_read_symbol_month_1d_ms": month_read.seconds * 1000,
    }
    return results, lake_numbers


def print_table(results: list[Measurement], server_copy: Measurement) -> None:
    header = f"{'method':<58} {'rows':>10} {'seconds':>9} {'rows/s':>12} {'vs server COPY':>15}"
    print(header)
    print("-" * len(header))
    for m in results:
        ratio = m.rows_per_second / server_copy.rows_per_second
        print(
            f"{m.method:<58} {m.rows:>10,} {m.seconds:>9.3f} {m.rows_per_second:>12,.0f} "
            f"{ratio:>15.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best kept)")
    parser.add_argument("--to-sql-rows", type=int, default=100_000)
    parser.add_argument(
        "--validator",
        choices=["auto", "split_valid_bars", "bar_model"],
        default="auto",
        help="validation timed with the store write (auto: split_valid_bars when importable)",
    )
    parser.add_argument(
        "--dsn",
        default="postgresql://postgres@127.0.0.1:5433/postgres",
        help="admin DSN used to create and drop the scratch database (default: TimescaleDB)",
    )
    args = parser.parse_args()

    symbols = [f"SYM{i:04d}" for i in range(args.symbols)]
    sessions = trading_sessions(FIRST_SESSION, args.sessions)
    started = time.perf_counter()
    frame = synthetic_bars(symbols, sessions)
    partitions = [(s, d) for s in symbols for d in sessions]
    print(
        f"synthetic bars_1m: {frame.height:,} rows ({args.symbols} symbols x {args.sessions} "
        f"sessions x {MINUTES_PER_SESSION} minutes), built in {time.perf_counter() - started:.2f}s"
    )

    with scratch_database(args.dsn) as dsn:
        results = measure_database(dsn, frame, partitions, args)
        with psycopg.connect(dsn) as conn:
            interval = bars_1m_chunk_interval(conn)
    print(
        "tables: plain PostgreSQL"
        if interval is None
        else f"tables: hypertables chunked every {interval} (store and server COPY alike)"
    )
    lake_results, lake = measure_lake(frame, partitions, args.repeat)
    results += lake_results

    server_copy = next(m for m in results if m.method.startswith("server COPY"))
    store = next(m for m in results if m.method.startswith("store write ("))
    to_sql = next(m for m in results if m.method.startswith("pandas to_sql"))
    print_table(results, server_copy)
    if not lake:
        print("lake not available: market_assets.core.stores.lake.ParquetLake is not importable")

    def number(key: str, digits: int = 1) -> str:
        return f"{lake[key]:.{digits}f}" if key in lake else "n/a"

    print(
        f"RESULT store_vs_server_copy={store.rows_per_second / server_copy.rows_per_second:.3f} "
        f"store_vs_to_sql={store.rows_per_second / to_sql.rows_per_second:.1f} "
        f"lake_write_rows_per_s={number('lake_write_rows_per_s', 0)} "
        f"lake_read_symbol_year_1m_ms={number('lake_read_symbol_year_1m_ms')} "
        f"lake_read_symbol_month_1d_ms={number('lake_read_symbol_month_1d_ms')}"
    )


if __name__ == "__main__":
    main()
