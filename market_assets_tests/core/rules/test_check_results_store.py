"""The check results table in the lake: partition-exact replace, local disk and S3."""

from __future__ import annotations

import datetime as dt
import threading

import polars as pl
import pytest

from market_assets.core.errors import StoreError
from market_assets.core.stores.check_results import CHECK_RESULT_SCHEMA, CheckResultsStore

DAY = dt.date(2024, 3, 7)


def _rows(symbol: str, session: dt.date, rules: tuple[str, ...], passed: bool = True):
    return pl.DataFrame(
        [
            {
                "dataset": "bars_1m",
                "symbol": symbol,
                "session": session,
                "rule": rule,
                "severity": "ERROR",
                "passed": passed,
                "offending_rows": 0 if passed else 3,
                "score_contribution": 0.0 if passed else 40.0,
                "details": "{}",
                "sample": "[]",
                "partition_key": f"{session}|{symbol}",
                "source": "synthetic",
                "rows": 390,
                "quarantined_rows": 0,
                "partition_score": 100.0 if passed else 60.0,
                "run_id": "run",
                "checked_at": dt.datetime(2024, 3, 8, tzinfo=dt.UTC),
            }
            for rule in rules
        ],
        schema=CHECK_RESULT_SCHEMA,
    )


@pytest.fixture(params=["local", "s3"])
def store(request) -> CheckResultsStore:
    lake = request.getfixturevalue("local_lake" if request.param == "local" else "s3_lake")
    return CheckResultsStore(lake)


def test_rechecking_a_partition_replaces_only_its_rows(store):
    store.replace("bars_1m", _rows("AAPL", DAY, ("a", "b")), [("AAPL", DAY)])
    store.replace("bars_1m", _rows("MSFT", DAY, ("a", "b")), [("MSFT", DAY)])

    store.replace("bars_1m", _rows("AAPL", DAY, ("a",), passed=False), [("AAPL", DAY)])

    stored = store.read(["bars_1m"], [2024]).sort("symbol", "rule")
    assert stored.select("symbol", "rule", "passed").rows() == [
        ("AAPL", "a", False),
        ("MSFT", "a", True),
        ("MSFT", "b", True),
    ]
    assert store.read(["bars_1d"], [2024]).is_empty()


def test_results_outside_the_listed_partitions_are_refused(store):
    with pytest.raises(StoreError, match="outside the listed partitions"):
        store.replace("bars_1m", _rows("AAPL", DAY, ("a",)), [("MSFT", DAY)])


def test_concurrent_writers_of_one_year_file_lose_nothing(store):
    symbols = [f"S{i}" for i in range(6)]

    def write(symbol: str) -> None:
        store.replace("bars_1m", _rows(symbol, DAY, ("a", "b")), [(symbol, DAY)])

    threads = [threading.Thread(target=write, args=(s,)) for s in symbols]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    stored = store.read(["bars_1m"], [2024])
    assert sorted(stored["symbol"].unique()) == symbols
    assert stored.height == 12
