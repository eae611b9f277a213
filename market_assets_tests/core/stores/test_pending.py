"""The record of partitions PostgreSQL lags behind the lake (core/stores/pending.py)."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import polars as pl
import pytest

from market_assets.core.stores.lake import ParquetLake
from market_assets.core.stores.pending import PendingPartitions

D = dt.date


def test_concurrent_writers_keep_every_record_and_the_file_goes_when_all_are_removed(tmp_path):
    lake = ParquetLake(str(tmp_path))
    pending = PendingPartitions(lake.store, "bars_1m")
    batches = [[(f"S{n}", D(2024, 3, day)) for day in (4, 5, 6)] for n in range(8)]

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda pairs: pending.add(pairs, [f"{d}|{s}" for s, d in pairs]), batches))

    recorded = pending.read()
    assert recorded.height == 24
    assert set(recorded["partition_key"]) == {f"{d}|{s}" for b in batches for s, d in b}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(pending.remove, batches[:7]))
    assert sorted(pending.read()["symbol"].unique()) == ["S7"]
    pending.remove(batches[7])
    assert pending.read().is_empty()
    assert not (tmp_path / pending.path).exists()


def test_a_pair_recorded_twice_keeps_its_first_time(tmp_path):
    pending = PendingPartitions(ParquetLake(str(tmp_path)).store, "bars_1d")
    pending.add([("AAPL", D(2024, 3, 4))], ["2024-03-04|AAPL"])
    first = pending.read()["since"][0]

    pending.add([("AAPL", D(2024, 3, 4)), ("MSFT", D(2024, 3, 4))], ["k1", "k2"])

    recorded = pending.read()
    assert recorded.height == 2
    assert recorded.filter(recorded["symbol"] == "AAPL")["since"][0] == first


@pytest.fixture(params=["local", "s3"])
def any_lake(request) -> ParquetLake:  # noqa: ANN001 - pytest's FixtureRequest
    return request.getfixturevalue(f"{request.param}_lake")


def test_an_intent_is_adopted_only_when_its_owner_is_abandoned_and_only_once(any_lake):
    pending = PendingPartitions(any_lake.store, "bars_1m")
    pending.add([("AAPL", D(2024, 3, 4))], ["2024-03-04|AAPL"])  # PostgreSQL failed earlier
    pairs = [("AAPL", D(2024, 3, 4)), ("AAPL", D(2024, 3, 5)), ("MSFT", D(2024, 3, 5))]
    keys = [f"{d}|{s}" for s, d in pairs]
    dead = pending.begin(pairs, keys, {"pid": "1", "who": "killed"})
    live = pending.begin([("NVDA", D(2024, 3, 5))], ["2024-03-05|NVDA"], {"who": "running"})
    owners: list[dict] = []

    def abandoned(owner):  # noqa: ANN001, ANN202
        owners.append(dict(owner))
        return owner["who"] == "killed"

    assert pending.adopt_abandoned(abandoned) == 3
    assert sorted(o["who"] for o in owners) == ["killed", "running"]
    recorded = pending.read()
    assert recorded.select("symbol", "session", "partition_key", "lake_complete").rows() == [
        ("AAPL", D(2024, 3, 4), "2024-03-04|AAPL", False),  # an abandoned write came after
        ("AAPL", D(2024, 3, 5), "2024-03-05|AAPL", False),
        ("MSFT", D(2024, 3, 5), "2024-03-05|MSFT", False),
    ]
    assert any_lake.store.list_names(pending.writing) == [live.rsplit("/", 1)[1]]
    assert not any_lake.store.exists(dead)

    assert pending.adopt_abandoned(abandoned) == 0  # adopted once
    pending.end(live)
    assert any_lake.store.list_names(pending.writing) == []
    assert pending.adopt_abandoned(lambda owner: True) == 0
    assert pending.read().height == 3


def test_a_record_written_before_intents_existed_reads_as_lake_complete(tmp_path):
    pending = PendingPartitions(ParquetLake(str(tmp_path)).store, "bars_1d")
    old = pl.DataFrame(
        {
            "symbol": ["AAPL"],
            "session": [D(2024, 3, 4)],
            "partition_key": ["2024-03-04|AAPL"],
            "since": [dt.datetime(2024, 3, 5, tzinfo=dt.UTC)],
        }
    )
    (tmp_path / pending.path).parent.mkdir(parents=True)
    old.write_parquet(tmp_path / pending.path)

    assert pending.read()["lake_complete"].to_list() == [True]
    pending.add([("MSFT", D(2024, 3, 4))], ["2024-03-04|MSFT"], lake_complete=False)
    assert pending.read().select("symbol", "lake_complete").rows() == [
        ("AAPL", True),
        ("MSFT", False),
    ]
