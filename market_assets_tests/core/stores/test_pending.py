"""The record of partitions PostgreSQL lags behind the lake (core/stores/pending.py)."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

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
