"""The reference store replaces exactly the written sessions, per year file, atomically."""

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import polars as pl
import pytest

from market_assets.core.errors import StoreError
from market_assets.core.reference.store import ReferenceStore, snapshot_path
from market_assets.core.stores.objectstore import LocalStore


def members(day: dt.date, symbols: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "session": [day] * len(symbols),
            "index": ["SP500"] * len(symbols),
            "symbol": symbols,
            "source": ["sp500"] * len(symbols),
        }
    )


@pytest.fixture
def store(tmp_path) -> ReferenceStore:
    return ReferenceStore(LocalStore(tmp_path))


def test_write_sessions_replaces_only_the_sessions_written(store):
    a, b = dt.date(2024, 1, 2), dt.date(2024, 1, 3)
    store.write_sessions(
        "index_constituents", pl.concat([members(a, ["X", "Y"]), members(b, ["X"])]), [a, b]
    )

    store.write_sessions("index_constituents", members(b, ["Z"]), [b])

    rows = store.read_sessions("index_constituents", a, b).select("session", "symbol").rows()
    assert rows == [(a, "X"), (a, "Y"), (b, "Z")]


def test_write_sessions_spanning_years_writes_one_file_per_year(store, tmp_path):
    a, b = dt.date(2023, 12, 29), dt.date(2024, 1, 2)

    written = store.write_sessions(
        "index_constituents", pl.concat([members(a, ["X"]), members(b, ["Y"])]), [a, b]
    )

    assert written.files == 2
    assert (tmp_path / snapshot_path("index_constituents", 2023)).exists()
    assert store.latest_session("index_constituents", dt.date(2024, 1, 1), 2020) == a


def test_a_session_written_with_no_rows_is_emptied(store):
    a = dt.date(2024, 1, 2)
    store.write_sessions("index_constituents", members(a, ["X"]), [a])

    store.write_sessions("index_constituents", members(a, []), [a])

    assert store.read_sessions("index_constituents", a, a).is_empty()


def test_rows_outside_the_written_sessions_are_refused_before_writing(store):
    a, b = dt.date(2024, 1, 2), dt.date(2024, 1, 3)

    with pytest.raises(StoreError, match="1 row\\(s\\) fall outside the sessions being written"):
        store.write_sessions("index_constituents", members(b, ["X"]), [a])
    assert store.read_sessions("index_constituents", a, b).is_empty()


def test_concurrent_writers_of_one_year_keep_each_others_sessions(store):
    days = [dt.date(2024, 1, 2) + dt.timedelta(days=i) for i in range(8)]

    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda d: store.write_sessions("index_constituents", members(d, ["X"]), [d]), days
            )
        )

    assert store.read_sessions("index_constituents", days[0], days[-1])["session"].to_list() == days


def test_read_derived_of_a_table_never_built_is_empty_with_its_columns(store):
    frame = store.read_derived("index_membership")

    assert frame.is_empty()
    assert frame.columns == ["index", "symbol", "security_id", "cik", "start", "end"]
