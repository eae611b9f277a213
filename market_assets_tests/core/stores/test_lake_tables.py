"""Table datasets in the lake and PostgreSQL: corporate actions in one file per symbol."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import polars as pl
import psycopg
import pytest

from market_assets.core.actions import stamp_known_at
from market_assets.core.stores.lake import ParquetLake
from market_assets.core.stores.layout import layout_for

SESSIONS = [dt.date(2024, 1, 2) + dt.timedelta(days=d) for d in range(0, 40) if d % 7 < 5]


def split_on(symbol: str, session: dt.date, ratio: float = 2.0) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "symbol": [symbol],
            "ex_date": [session],
            "action_type": ["split"],
            "ratio": [ratio],
            "source": ["test"],
        }
    )
    return stamp_known_at(frame, dt.datetime(2024, 6, 1, tzinfo=dt.UTC))


def test_corporate_actions_layout_keeps_one_file_per_symbol():
    layout = layout_for("corporate_actions")

    assert layout.relative_path("BRK.B", dt.date(2001, 5, 4)) == (
        "corporate_actions/BRK.B/actions.parquet"
    )
    assert layout.file_key(dt.date(2001, 5, 4)) == layout.file_key(dt.date(2024, 1, 2))


def test_concurrent_partition_writes_to_one_symbol_file_lose_no_rows(local_lake):
    def write(session: dt.date) -> None:
        local_lake.write_partitions(
            "corporate_actions", split_on("AAA", session), [("AAA", session)]
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, SESSIONS))

    stored = local_lake.read("corporate_actions", "AAA", dt.date(2024, 1, 1), dt.date(2025, 1, 1))
    assert stored["ex_date"].to_list() == SESSIONS


def test_rewriting_a_partition_replaces_exactly_that_symbol_and_ex_date(local_lake):
    both = pl.concat([split_on("AAA", SESSIONS[0]), split_on("AAA", SESSIONS[1])])
    local_lake.write_partitions(
        "corporate_actions", both, [("AAA", SESSIONS[0]), ("AAA", SESSIONS[1])]
    )
    local_lake.write_partitions(
        "corporate_actions", split_on("BBB", SESSIONS[0]), [("BBB", SESSIONS[0])]
    )

    local_lake.write_partitions(
        "corporate_actions", split_on("AAA", SESSIONS[1], 3.0), [("AAA", SESSIONS[1])]
    )
    local_lake.write_partitions("corporate_actions", pl.DataFrame(), [("AAA", SESSIONS[0])])

    stored = local_lake.read(
        "corporate_actions", ["AAA", "BBB"], dt.date(2024, 1, 1), dt.date(2025, 1, 1)
    )
    assert stored.select("symbol", "ex_date", "ratio").rows() == [
        ("AAA", SESSIONS[1], 3.0),
        ("BBB", SESSIONS[0], 2.0),
    ]


def test_reading_actions_filters_ex_dates_to_start_inclusive_end_exclusive(local_lake):
    rows = pl.concat([split_on("AAA", day) for day in SESSIONS[:3]])
    local_lake.write_partitions("corporate_actions", rows, [("AAA", d) for d in SESSIONS[:3]])

    stored = local_lake.read("corporate_actions", "AAA", SESSIONS[1], SESSIONS[2])

    assert stored["ex_date"].to_list() == [SESSIONS[1]]


def test_actions_on_s3_merge_concurrent_writers_with_conditional_puts(s3_lake: ParquetLake):
    def write(session: dt.date) -> None:
        s3_lake.write_partitions("corporate_actions", split_on("AAA", session), [("AAA", session)])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, SESSIONS[:8]))

    stored = s3_lake.read("corporate_actions", "AAA", dt.date(2024, 1, 1), dt.date(2025, 1, 1))
    assert stored["ex_date"].to_list() == SESSIONS[:8]


@pytest.fixture
def actions_table(timescale_store, pg_dsn):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE corporate_actions")
    return timescale_store


def test_postgresql_corporate_actions_replace_a_partition_in_one_transaction(actions_table):
    both = pl.concat([split_on("AAA", SESSIONS[0]), split_on("AAA", SESSIONS[1])])
    actions_table.write_partitions(
        "corporate_actions", both, [("AAA", SESSIONS[0]), ("AAA", SESSIONS[1])]
    )

    actions_table.write_partitions(
        "corporate_actions", split_on("AAA", SESSIONS[1], 4.0), [("AAA", SESSIONS[1])]
    )

    stored = actions_table.read(
        "corporate_actions", "AAA", dt.datetime(2024, 1, 1), dt.datetime(2025, 1, 1)
    )
    assert stored.select("ex_date", "ratio").rows() == [(SESSIONS[0], 2.0), (SESSIONS[1], 4.0)]
    assert stored["known_at"].to_list() == [
        dt.datetime.combine(d, dt.time(0), tzinfo=dt.UTC) for d in SESSIONS[:2]
    ]
