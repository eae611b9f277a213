"""Concurrent replaces of the same PostgreSQL partitions: every writer succeeds, nothing doubles.

Before writers were serialised per partition slot, two transactions replacing the same
partition both deleted nothing visible to the other and both COPYed: the second failed with
`duplicate key value violates unique constraint "bars_1m_pkey"` (17 of 50 at the store level).
Runs on plain PostgreSQL and on TimescaleDB (there with the continuous aggregates configured,
so the refresh after each write runs concurrently too).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import threading
from collections.abc import Iterator

import polars as pl
import psycopg
import pytest

from market_assets.core.config import TimescalePolicy
from market_assets.core.stores.timescale import TimescaleStore
from market_assets_tests.fixtures.postgres import PgServer
from market_assets_tests.helpers import make_bars

SYMBOLS = ["AAPL", "MSFT"]
SESSIONS = [dt.date(2024, 3, 7), dt.date(2024, 3, 8)]
PARTITIONS = [(s, d) for s in SYMBOLS for d in SESSIONS]
ROWS = len(SYMBOLS) * len(SESSIONS) * 390
TIME_LIMIT_S = 240


def writer_frame(writer: int) -> pl.DataFrame:
    """The rectangle as writer `writer` writes it: its own prices and source label."""
    frame = make_bars(SYMBOLS, SESSIONS, "1m", seed=writer)
    return frame.with_columns(source=pl.lit(f"writer-{writer}"))


def replace_repeatedly(dsn: str, writer: int, times: int) -> int:
    """Replace the rectangle `times` times through one store; returns the writes done."""
    frame = writer_frame(writer)
    with TimescaleStore(dsn) as store:
        for _ in range(times):
            store.write_partitions("bars_1m", frame, PARTITIONS)
    return times


@pytest.fixture
def rectangle_store(
    timescale_store: TimescaleStore, pg_dsn: str, pg_server: PgServer
) -> Iterator[str]:
    """The store's DSN, with 1h/1d continuous aggregates over bars_1m on TimescaleDB."""
    dsn = pg_dsn
    if pg_server.timescale:
        timescale_store.ensure_schema(
            {"bars_1m": TimescalePolicy(continuous_aggregates=["1h", "1d"])}
        )
    yield dsn
    if pg_server.timescale:
        timescale_store.ensure_schema({"bars_1m": TimescalePolicy()})


def stored_rectangle(dsn: str) -> tuple[int, int, list[str]]:
    """(rows, duplicated keys, distinct sources) of the rectangle in bars_1m."""
    with psycopg.connect(dsn) as conn:
        rows, keys, sources = conn.execute(
            "SELECT count(*), count(DISTINCT (symbol, ts)), array_agg(DISTINCT source) "
            "FROM bars_1m WHERE symbol = ANY(%s)",
            (SYMBOLS,),
        ).fetchone()
    return rows, rows - keys, sorted(sources or [])


def test_fifty_concurrent_replaces_from_threads_all_succeed_without_duplicates(
    rectangle_store: str, pg_server: PgServer
) -> None:
    writers, times = 10, 5
    start = threading.Barrier(writers)
    errors: list[BaseException] = []
    done: list[int] = []

    def run(writer: int) -> None:
        try:
            start.wait(timeout=60)
            done.append(replace_repeatedly(rectangle_store, writer, times))
        except BaseException as exc:  # noqa: BLE001 - every failure is reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=TIME_LIMIT_S)

    assert not [t for t in threads if t.is_alive()], f"writers still running after {TIME_LIMIT_S}s"
    assert errors == []
    assert sum(done) == writers * times
    rows, duplicated, sources = stored_rectangle(rectangle_store)
    assert (rows, duplicated) == (ROWS, 0)
    assert len(sources) == 1  # the last replace won whole, never a mix of writers
    if pg_server.timescale:
        with TimescaleStore(rectangle_store) as store:
            daily = store.read_aggregate(
                "bars_1m", "1d", SYMBOLS, dt.datetime(2024, 3, 7), dt.datetime(2024, 3, 9)
            )
        assert daily["source"].unique().to_list() == sources


def test_concurrent_replaces_from_processes_all_succeed_without_duplicates(
    rectangle_store: str,
) -> None:
    writers, times = 3, 3
    context = multiprocessing.get_context("spawn")

    with context.Pool(writers) as pool:
        pending = [
            pool.apply_async(replace_repeatedly, (rectangle_store, 100 + w, times))
            for w in range(writers)
        ]
        done = [result.get(timeout=TIME_LIMIT_S) for result in pending]

    assert done == [times] * writers
    rows, duplicated, sources = stored_rectangle(rectangle_store)
    assert (rows, duplicated) == (ROWS, 0)
    assert len(sources) == 1
