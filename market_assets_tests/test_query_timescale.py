"""MarketData on PostgreSQL / TimescaleDB: one kept connection, Arrow-native frames."""

from __future__ import annotations

import datetime as dt
import time

import polars as pl
import psycopg
import pytest
from polars.testing import assert_frame_equal

from market_assets.core.calendar import get_calendar
from market_assets.core.errors import StoreError
from market_assets.core.stores.timescale import TimescaleStore
from market_assets.query import MarketData
from market_assets_tests.helpers import make_bars

SESSIONS = get_calendar().sessions("2024-03-04", "2024-03-08")
SYMBOLS = ["AAPL", "MSFT"]


def backends(dsn: str) -> set[int]:
    """Other client sessions connected to the database of `dsn` (TimescaleDB's
    background workers connect to it too, and come and go on their own)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchall()
    return {pid for (pid,) in rows}


def gone(dsn: str, pids: set[int], wait_s: float = 10.0) -> bool:
    """Whether every pid has left the server. A closed client's backend exits
    after the client returns, so it may still be listed for a moment."""
    deadline = time.monotonic() + wait_s
    while backends(dsn) & pids:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def minute_bars(timescale_store: TimescaleStore) -> pl.DataFrame:
    frame = make_bars(SYMBOLS, SESSIONS, "1m", seed=2)
    timescale_store.write_partitions("bars_1m", frame, [(s, d) for s in SYMBOLS for d in SESSIONS])
    return frame


def test_market_data_reads_postgresql_through_one_connection_until_closed(
    minute_bars: pl.DataFrame, pg_dsn: str, tmp_path
) -> None:
    before = backends(pg_dsn)

    with MarketData(root=tmp_path, dsn=pg_dsn) as market:
        frames = [
            market.bars(SYMBOLS, "2024-03-04", "2024-03-09", "1m", store="timescale")
            for _ in range(3)
        ]
        during = backends(pg_dsn)

    opened = during - before
    assert len(opened) == 1
    assert gone(pg_dsn, opened)
    for frame in frames:
        assert_frame_equal(frame, minute_bars)


def test_market_data_reads_columns_in_the_order_asked_with_canonical_dtypes(
    minute_bars: pl.DataFrame, pg_dsn: str, tmp_path
) -> None:
    with MarketData(root=tmp_path, dsn=pg_dsn) as market:
        frame = market.bars(
            "MSFT",
            dt.datetime(2024, 3, 5, 14, 30),
            dt.datetime(2024, 3, 5, 14, 33),
            "1m",
            columns=["close", "ts", "volume"],
            store="timescale",
        )

    expected = minute_bars.filter(
        pl.col("symbol") == "MSFT",
        pl.col("ts").is_between(
            dt.datetime(2024, 3, 5, 14, 30, tzinfo=dt.UTC),
            dt.datetime(2024, 3, 5, 14, 33, tzinfo=dt.UTC),
            closed="left",
        ),
    ).select("close", "ts", "volume")
    assert_frame_equal(frame, expected)


def test_market_data_given_a_server_that_is_down_raises_store_error_naming_host_and_port(
    tmp_path,
) -> None:
    market = MarketData(root=tmp_path, dsn="postgresql://postgres@127.0.0.1:1/none")

    with pytest.raises(StoreError, match=r"cannot connect to PostgreSQL \(host=127.0.0.1 port=1"):
        market.bars("AAPL", "2024-03-04", "2024-03-05", store="timescale")
    market.close()
