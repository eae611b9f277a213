"""Tick datasets in the lake and in PostgreSQL: nanoseconds kept, no unique key, exact
partition replace by ts_event."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from market_assets.core.schemas import TICK_SCHEMAS, TICK_TS_DTYPE
from market_assets.core.stores.lake import ParquetLake
from market_assets.core.stores.timescale import TimescaleStore

THU, FRI = dt.date(2024, 3, 7), dt.date(2024, 3, 8)
THU_OPEN_NS = 1_709_821_800_000_000_001  # 2024-03-07 14:30:00.000000001 UTC
DAY_NS = 86_400 * 1_000_000_000
START, END = dt.datetime(2024, 3, 7), dt.datetime(2024, 3, 9)


def frame(dataset: str, rows: list[dict[str, object]]) -> pl.DataFrame:
    """Canonical rows of a tick dataset; absent columns are null, ts_event is epoch ns."""
    data = pl.DataFrame(rows)
    return data.select(
        pl.col(name).cast(pl.Int64).cast(dtype)
        if dtype == TICK_TS_DTYPE and name in data.columns
        else pl.col(name).cast(dtype)
        if name in data.columns
        else pl.lit(None, dtype).alias(name)
        for name, dtype in TICK_SCHEMAS[dataset].items()
    )


def two_days_of_trades() -> pl.DataFrame:
    trade = {"symbol": "NVDA", "size": 10, "side": "B", "source": "databento"}
    return frame(
        "trades",
        [
            {**trade, "ts_event": THU_OPEN_NS, "price": 880.5, "sequence": 1},
            {**trade, "ts_event": THU_OPEN_NS, "price": 880.75, "sequence": 2},  # same ns
            {**trade, "ts_event": THU_OPEN_NS + DAY_NS, "price": 890.0, "sequence": 3},
        ],
    )


@pytest.fixture
def lake(tmp_path) -> ParquetLake:
    return ParquetLake(str(tmp_path / "lake"))


def test_lake_keeps_nanoseconds_and_events_sharing_a_timestamp(lake, tmp_path):
    trades = two_days_of_trades()

    lake.write_partitions("trades", trades, [("NVDA", THU), ("NVDA", FRI)])

    stored = lake.read("trades", "NVDA", START, END)
    assert stored.equals(trades)
    assert stored["ts_event"].dt.epoch("ns").to_list()[:2] == [THU_OPEN_NS, THU_OPEN_NS]
    assert (tmp_path / "lake/ticks/trades/NVDA/2024/03/07/trades.parquet").exists()


def test_lake_rewrite_of_one_tick_session_leaves_the_other(lake):
    lake.write_partitions("trades", two_days_of_trades(), [("NVDA", THU), ("NVDA", FRI)])

    lake.write_partitions("trades", two_days_of_trades().head(1), [("NVDA", THU)])

    assert lake.read("trades", "NVDA", START, END)["sequence"].to_list() == [1, 3]


def test_postgresql_round_trip_keeps_nanoseconds_and_replaces_by_session(timescale_store):
    trades = two_days_of_trades()
    timescale_store.write_partitions("trades", trades, [("NVDA", THU), ("NVDA", FRI)])

    timescale_store.write_partitions("trades", trades.tail(1), [("NVDA", FRI)])

    assert timescale_store.read("trades", "NVDA", START, END).equals(trades)


def test_postgresql_stores_statistics_with_null_values_and_reference_times(
    timescale_store: TimescaleStore,
):
    stats = frame(
        "statistics",
        [
            {
                "ts_event": THU_OPEN_NS,
                "ts_ref": THU_OPEN_NS - DAY_NS,
                "symbol": "ESH4",
                "stat_type": "settlement_price",
                "price": 5_150.25,
                "update_action": "new",
                "source": "databento",
            },
            {
                "ts_event": THU_OPEN_NS + 5,
                "symbol": "ESH4",
                "stat_type": "open_interest",
                "quantity": 2_250_000,
                "source": "databento",
            },
        ],
    )

    timescale_store.write_partitions("statistics", stats, [("ESH4", THU)])

    stored = timescale_store.read("statistics", "ESH4", START, END)
    assert stored.equals(stats)
    assert stored["ts_ref"].dt.epoch("ns").to_list() == [THU_OPEN_NS - DAY_NS, None]
