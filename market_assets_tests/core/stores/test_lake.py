"""ParquetLake on local disk and on S3 (moto's HTTP server): replace semantics, bounds,
concurrency and atomicity."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import threading
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from market_assets.core.calendar import get_calendar
from market_assets.core.errors import InvalidSymbolError, StoreError
from market_assets.core.schemas import BAR_SCHEMA, QUARANTINE_EXTRA_SCHEMA
from market_assets.core.stores import objectstore
from market_assets.core.stores.lake import ParquetLake
from market_assets.core.stores.objectstore import S3Store
from market_assets_tests.helpers import make_bars

SESSIONS_2024 = get_calendar().sessions("2024-01-01", "2024-12-31")
JAN_2024 = [d for d in SESSIONS_2024 if d.month == 1]


OPEN_JANUARY = dt.date(2024, 1, 20)  # a "today" on which January 2024 has not closed yet


@pytest.fixture(params=["local", "s3", "local_open"])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> ParquetLake:
    """The same tests against a local folder and an S3 bucket (where 2024 has closed, so
    writes go to compacted files), and a local folder on a day when 2024 is still open."""
    if request.param == "local_open":
        return ParquetLake(str(tmp_path / "open"), today=lambda: OPEN_JANUARY)
    return request.getfixturevalue(f"{request.param}_lake")


def compacts_january_2024(lake: ParquetLake) -> bool:
    return lake._today() > dt.date(2024, 2, 5)


def partitions(symbols: list[str], sessions: list[dt.date]) -> list[tuple[str, dt.date]]:
    return [(symbol, session) for symbol in symbols for session in sessions]


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def stored_files(lake: ParquetLake) -> list[str]:
    """Data files in the lake, relative to its root (tests may list; the lake never does)."""
    store = lake.store
    if isinstance(store, S3Store):
        listing = store.client.list_objects_v2(Bucket=store.bucket, Prefix=f"{store.prefix}/")
        return sorted(
            item["Key"].removeprefix(f"{store.prefix}/") for item in listing.get("Contents", [])
        )
    root = Path(lake.root)
    return [f for f in files_under(root) if f != ".lake.lock"] if root.exists() else []


# ------------------------------------------------------------------------------ round trip


@pytest.mark.parametrize(("dataset", "granularity"), [("bars_1d", "1d"), ("bars_1m", "1m")])
def test_round_trip_keeps_exact_values_and_dtypes(
    lake: ParquetLake, dataset: str, granularity: str
) -> None:
    # Arrange
    sessions = JAN_2024[:5]
    bars = make_bars(["AAPL", "MSFT"], sessions, granularity)
    # Act
    summary = lake.write_partitions(dataset, bars, partitions(["AAPL", "MSFT"], sessions))
    back = lake.read(dataset, ["MSFT", "AAPL"], dt.date(2024, 1, 1), dt.date(2024, 2, 1))
    # Assert
    assert summary.rows == bars.height
    one_file_per_symbol = granularity == "1d" or compacts_january_2024(lake)
    assert summary.files_written == (2 if one_file_per_symbol else 10)
    assert back.schema == pl.Schema(BAR_SCHEMA)
    assert_frame_equal(back, bars)


def test_round_trip_keeps_nulls_in_nullable_columns(lake: ParquetLake) -> None:
    bars = make_bars(["AAPL"], JAN_2024[:3]).with_columns(
        trade_count=pl.lit(None, pl.Int64), vwap=pl.lit(None, pl.Float64)
    )
    lake.write_partitions("bars_1d", bars, partitions(["AAPL"], JAN_2024[:3]))
    assert_frame_equal(lake.read("bars_1d", ["AAPL"], JAN_2024[0], JAN_2024[3]), bars)


def test_rewriting_a_partition_is_idempotent(lake: ParquetLake) -> None:
    bars = make_bars(["AAPL"], JAN_2024[:4])
    listed = partitions(["AAPL"], JAN_2024[:4])
    lake.write_partitions("bars_1d", bars, listed)
    lake.write_partitions("bars_1d", bars, listed)
    assert_frame_equal(lake.read("bars_1d", "AAPL", dt.date(2024, 1, 1), dt.date(2025, 1, 1)), bars)


def test_rewriting_one_daily_session_keeps_the_other_sessions_of_the_year_file(
    lake: ParquetLake,
) -> None:
    # Arrange
    year = make_bars(["AAPL"], JAN_2024, seed=1)
    lake.write_partitions("bars_1d", year, partitions(["AAPL"], JAN_2024))
    target = JAN_2024[5]
    replacement = make_bars(["AAPL"], [target], seed=99)
    # Act
    summary = lake.write_partitions("bars_1d", replacement, [("AAPL", target)])
    back = lake.read("bars_1d", ["AAPL"], dt.date(2024, 1, 1), dt.date(2025, 1, 1))
    # Assert
    expected = pl.concat([year.filter(pl.col("ts").dt.date() != target), replacement]).sort("ts")
    assert summary.files_written == 1
    assert_frame_equal(back, expected)


def test_empty_frame_for_a_daily_partition_deletes_only_its_rows(lake: ParquetLake) -> None:
    bars = make_bars(["AAPL"], JAN_2024[:3])
    lake.write_partitions("bars_1d", bars, partitions(["AAPL"], JAN_2024[:3]))
    lake.write_partitions("bars_1d", bars.clear(), [("AAPL", JAN_2024[1])])
    back = lake.read("bars_1d", ["AAPL"], dt.date(2024, 1, 1), dt.date(2025, 1, 1))
    assert back.get_column("ts").dt.date().to_list() == [JAN_2024[0], JAN_2024[2]]


def test_emptying_every_session_of_a_year_file_deletes_the_file(lake: ParquetLake) -> None:
    bars = make_bars(["AAPL"], JAN_2024[:2])
    listed = partitions(["AAPL"], JAN_2024[:2])
    lake.write_partitions("bars_1d", bars, listed)
    summary = lake.write_partitions("bars_1d", pl.DataFrame(), listed)
    assert summary.files_deleted == 1
    assert stored_files(lake) == []


def test_empty_frame_for_an_intraday_partition_deletes_the_day_file(lake: ParquetLake) -> None:
    # Arrange
    sessions = JAN_2024[:2]
    lake.write_partitions(
        "bars_1m", make_bars(["AAPL"], sessions, "1m"), [("AAPL", s) for s in sessions]
    )
    # Act
    summary = lake.write_partitions(
        "bars_1m", pl.DataFrame(schema=BAR_SCHEMA), [("AAPL", sessions[0])]
    )
    back = lake.read("bars_1m", ["AAPL"], dt.date(2024, 1, 1), dt.date(2024, 2, 1))
    # Assert
    assert back.get_column("ts").dt.date().unique().to_list() == [sessions[1]]
    if compacts_january_2024(lake):
        assert (summary.files_written, summary.files_deleted) == (1, 0)
        assert stored_files(lake) == ["ticks/minute/AAPL/2024/01/ticks.parquet"]
    else:
        assert (summary.files_written, summary.files_deleted) == (0, 1)
        assert stored_files(lake) == ["ticks/minute/AAPL/2024/01/03/ticks.parquet"]


def test_a_symbol_with_nothing_stored_costs_one_probe_not_one_per_candidate_file(
    lake: ParquetLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: AAPL has a month of minute bars, NOPE has nothing.
    lake.write_partitions(
        "bars_1m", make_bars(["AAPL"], JAN_2024, "1m"), partitions(["AAPL"], JAN_2024)
    )
    probed: list[str] = []
    real_snapshot, real_holds = lake.store.snapshot, lake.store.holds_any
    monkeypatch.setattr(
        lake.store, "snapshot", lambda paths: probed.extend(paths) or real_snapshot(paths)
    )
    folders: list[str] = []
    monkeypatch.setattr(lake.store, "holds_any", lambda f: folders.append(f) or real_holds(f))
    # Act
    back = lake.read("bars_1m", ["AAPL", "NOPE"], dt.date(2024, 1, 1), dt.date(2024, 2, 1))
    exact = lake.read_partitions("bars_1m", partitions(["AAPL", "NOPE"], JAN_2024))
    # Assert
    assert back.height == exact.height == len(JAN_2024) * 390
    assert set(back.get_column("symbol")) == {"AAPL"}
    assert sorted(set(folders)) == ["ticks/minute/AAPL", "ticks/minute/NOPE"]
    assert probed and not [path for path in probed if "/NOPE/" in path]


def test_emptying_partitions_of_a_symbol_with_nothing_stored_touches_no_file(
    lake: ParquetLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: AAPL has quarantined rows; MSFT has none.
    bars = make_bars(["AAPL"], JAN_2024[:2]).with_columns(
        session=pl.col("ts").dt.date(), dataset=pl.lit("bars_1d"), rule=pl.lit("ohlc")
    )
    lake.write_quarantine("bars_1d", bars, partitions(["AAPL"], JAN_2024[:2]))
    touched: list[str] = []
    for name in ("get", "put", "delete", "locked"):
        real = getattr(lake.store, name)
        monkeypatch.setattr(
            lake.store,
            name,
            lambda path, *a, _real=real, **k: touched.append(path) or _real(path, *a, **k),
        )
    # Act: the next run quarantines nothing for either symbol.
    summary = lake.write_quarantine(
        "bars_1d", pl.DataFrame(), partitions(["AAPL", "MSFT"], JAN_2024[:2])
    )
    # Assert: AAPL's rows are replaced (emptied), MSFT cost no file operation.
    assert summary.files_deleted == 1
    assert touched and not [path for path in touched if "/MSFT" in path]
    assert stored_files(lake) == []


# ---------------------------------------------------------------------- refused writes


def test_rows_outside_the_listed_partitions_raise_store_error_and_write_nothing(
    lake: ParquetLake,
) -> None:
    bars = make_bars(["AAPL"], JAN_2024[:3])
    with pytest.raises(StoreError, match=r"'AAPL' ts 2024-01-04") as raised:
        lake.write_partitions("bars_1d", bars, partitions(["AAPL"], JAN_2024[:2]))
    assert "Nothing was written" in str(raised.value)
    assert stored_files(lake) == []


def test_rows_with_no_partition_listed_are_all_counted_and_nothing_is_written(
    local_lake: ParquetLake,
) -> None:
    bars = make_bars(["AAPL"], JAN_2024[:3])
    with pytest.raises(StoreError, match=r"3 row\(s\) fall outside"):
        local_lake.write_partitions("bars_1d", bars, [])
    assert stored_files(local_lake) == []


def test_rows_of_an_unlisted_symbol_raise_store_error(local_lake: ParquetLake) -> None:
    bars = make_bars(["AAPL", "MSFT"], JAN_2024[:1])
    with pytest.raises(StoreError, match="'MSFT'"):
        local_lake.write_partitions("bars_1d", bars, [("AAPL", JAN_2024[0])])


def test_duplicate_keys_are_refused(local_lake: ParquetLake) -> None:
    bars = make_bars(["AAPL"], JAN_2024[:1])
    with pytest.raises(StoreError, match="share a \\(symbol, ts\\) key"):
        local_lake.write_partitions("bars_1d", pl.concat([bars, bars]), [("AAPL", JAN_2024[0])])


def test_unreadable_year_file_raises_store_error_naming_it(local_lake: ParquetLake) -> None:
    lake_file = Path(local_lake.uri_for("bars_1d", "AAPL", JAN_2024[0]))
    lake_file.parent.mkdir(parents=True)
    lake_file.write_bytes(b"not parquet")
    with pytest.raises(StoreError, match=f"cannot merge into {lake_file}"):
        local_lake.write_partitions(
            "bars_1d", make_bars(["AAPL"], JAN_2024[:1]), [("AAPL", JAN_2024[0])]
        )
    assert lake_file.read_bytes() == b"not parquet"


@pytest.mark.parametrize("hostile", ["../etc", "A/B", "..", "", "A B", "x'; drop table"])
def test_hostile_symbols_are_rejected_before_any_path_is_built(
    local_lake: ParquetLake, tmp_path: Path, hostile: str
) -> None:
    session = JAN_2024[0]
    bars = make_bars(["AAPL"], [session]).with_columns(symbol=pl.lit(hostile))
    with pytest.raises(InvalidSymbolError):
        local_lake.write_partitions("bars_1d", bars, [(hostile, session)])
    with pytest.raises(InvalidSymbolError):
        local_lake.write_partitions("bars_1d", bars, [("AAPL", session)])
    with pytest.raises(InvalidSymbolError):
        local_lake.read("bars_1d", [hostile], session, session + dt.timedelta(days=1))
    with pytest.raises(InvalidSymbolError):
        local_lake.uri_for("bars_1d", hostile, session)
    assert files_under(tmp_path) == []


# ------------------------------------------------------------------------------ read bounds


def test_read_of_daily_bars_includes_start_and_excludes_end(lake: ParquetLake) -> None:
    bars = make_bars(["AAPL"], JAN_2024[:5])
    lake.write_partitions("bars_1d", bars, partitions(["AAPL"], JAN_2024[:5]))
    start, end = JAN_2024[1], JAN_2024[3]
    back = lake.read("bars_1d", ["AAPL"], start, end)
    assert back.get_column("ts").dt.date().to_list() == [JAN_2024[1], JAN_2024[2]]


def test_read_treats_naive_datetimes_as_utc(local_lake: ParquetLake) -> None:
    bars = make_bars(["AAPL"], JAN_2024[:1], "1m")
    local_lake.write_partitions("bars_1m", bars, [("AAPL", JAN_2024[0])])
    naive = local_lake.read(
        "bars_1m", ["AAPL"], dt.datetime(2024, 1, 2, 14, 30), dt.datetime(2024, 1, 2, 14, 35)
    )
    aware = local_lake.read(
        "bars_1m",
        ["AAPL"],
        dt.datetime(2024, 1, 2, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        dt.datetime(2024, 1, 2, 14, 35, tzinfo=dt.UTC),
    )
    assert naive.height == 5
    assert_frame_equal(naive, aware)


def test_read_of_intraday_bars_includes_start_and_excludes_end(lake: ParquetLake) -> None:
    session = JAN_2024[0]
    bars = make_bars(["AAPL"], [session], "1m")
    lake.write_partitions("bars_1m", bars, [("AAPL", session)])
    first_ts = bars.get_column("ts")[0]
    back = lake.read("bars_1m", ["AAPL"], first_ts, first_ts + dt.timedelta(minutes=3))
    assert back.get_column("ts").to_list() == bars.get_column("ts").head(3).to_list()


def test_late_evening_intraday_bar_on_the_next_utc_day_is_read_by_its_utc_time(
    lake: ParquetLake,
) -> None:
    # Arrange: 19:30 New York on 2024-01-02 is 00:30 UTC on 2024-01-03, session 2024-01-02.
    session = dt.date(2024, 1, 2)
    regular = make_bars(["AAPL"], [session], "1m")
    late_ts = dt.datetime(2024, 1, 3, 0, 30, tzinfo=dt.UTC)
    late = regular.tail(1).with_columns(ts=pl.lit(late_ts, BAR_SCHEMA["ts"]))
    lake.write_partitions("bars_1m", pl.concat([regular, late]), [("AAPL", session)])
    # Act
    next_utc_day = lake.read("bars_1m", ["AAPL"], dt.date(2024, 1, 3), dt.date(2024, 1, 4))
    session_utc_day = lake.read("bars_1m", ["AAPL"], dt.date(2024, 1, 2), dt.date(2024, 1, 3))
    # Assert
    assert next_utc_day.get_column("ts").to_list() == [late_ts]
    assert session_utc_day.height == regular.height
    assert lake.read_partitions("bars_1m", [("AAPL", session)]).height == regular.height + 1


def test_reading_a_range_with_holidays_and_missing_files_returns_what_exists(
    lake: ParquetLake,
) -> None:
    # Arrange: sessions around 2024-07-04 (a holiday); 2024-07-05 never written.
    written = [dt.date(2024, 7, 1), dt.date(2024, 7, 2), dt.date(2024, 7, 3), dt.date(2024, 7, 8)]
    bars = make_bars(["AAPL"], written, "1m")
    lake.write_partitions("bars_1m", bars, [("AAPL", s) for s in written])
    # Act
    back = lake.read("bars_1m", ["AAPL", "MSFT"], dt.date(2024, 6, 29), dt.date(2024, 7, 10))
    # Assert
    assert_frame_equal(back, bars)


def test_reading_nothing_returns_an_empty_frame_with_the_canonical_schema(
    lake: ParquetLake,
) -> None:
    back = lake.read("bars_1m", ["AAPL"], dt.date(2024, 1, 1), dt.date(2024, 1, 10))
    assert back.is_empty()
    assert back.schema == pl.Schema(BAR_SCHEMA)


def test_read_returns_the_requested_columns_in_order(local_lake: ParquetLake) -> None:
    bars = make_bars(["AAPL"], JAN_2024[:2])
    local_lake.write_partitions("bars_1d", bars, partitions(["AAPL"], JAN_2024[:2]))
    back = local_lake.read("bars_1d", ["AAPL"], JAN_2024[0], JAN_2024[2], columns=["close", "ts"])
    assert_frame_equal(back, bars.select("close", "ts"))
    with pytest.raises(ValueError, match="unknown column"):
        local_lake.read("bars_1d", ["AAPL"], JAN_2024[0], JAN_2024[2], columns=["adj_close"])


def test_read_partitions_returns_exactly_the_listed_partitions(lake: ParquetLake) -> None:
    bars = make_bars(["AAPL", "MSFT"], JAN_2024[:4])
    lake.write_partitions("bars_1d", bars, partitions(["AAPL", "MSFT"], JAN_2024[:4]))
    listed = [("MSFT", JAN_2024[2]), ("AAPL", JAN_2024[0]), ("AAPL", JAN_2024[3])]
    back = lake.read_partitions("bars_1d", listed)
    keys = list(zip(back.get_column("symbol"), back.get_column("ts").dt.date(), strict=True))
    assert keys == [("AAPL", JAN_2024[0]), ("AAPL", JAN_2024[3]), ("MSFT", JAN_2024[2])]


@pytest.mark.parametrize("dataset", ["bars_1d", "bars_1m"])
def test_partitions_listed_out_of_symbol_order_are_all_written(
    lake: ParquetLake, dataset: str
) -> None:
    # Arrange: AAPL's partitions are listed on both sides of MSFT's.
    granularity = dataset.removeprefix("bars_")
    bars = make_bars(["AAPL", "MSFT"], JAN_2024[:2], granularity)
    listed = [("AAPL", JAN_2024[0]), ("MSFT", JAN_2024[0]), ("MSFT", JAN_2024[1])]
    listed.append(("AAPL", JAN_2024[1]))
    # Act
    summary = lake.write_partitions(dataset, bars, listed)
    back = lake.read(dataset, ["AAPL", "MSFT"], JAN_2024[0], JAN_2024[2])
    # Assert
    assert summary.rows == bars.height
    assert_frame_equal(back, bars.sort("symbol", "ts"))


def test_quarantined_rows_filed_against_their_time_order_stay_in_their_partitions(
    lake: ParquetLake,
) -> None:
    # Arrange: in (symbol, ts) order the rows are filed under sessions 1, 2, 1 of two months,
    # so the rows of one file are not adjacent.
    first, second = JAN_2024[-1], SESSIONS_2024[len(JAN_2024)]
    bars = make_bars(["AAPL"], [first, second], "1m")
    rows = pl.concat([bars.head(2), bars.tail(1)]).with_columns(
        session=pl.Series([first, second, first], dtype=pl.Date),
        dataset=pl.lit("bars_1m"),
        rule=pl.lit("outlier"),
        detail=pl.lit(None, pl.String),
        quarantined_at=pl.lit(dt.datetime(2024, 1, 5, tzinfo=dt.UTC)),
    )
    # Act
    lake.write_quarantine("bars_1m", rows, [("AAPL", first), ("AAPL", second)])
    on_first = lake.read_quarantine("bars_1m", ["AAPL"], first, second)
    on_second = lake.read_quarantine("bars_1m", ["AAPL"], second, second + dt.timedelta(days=1))
    # Assert
    assert on_first.get_column("ts").to_list() == [
        rows.get_column("ts")[0],
        rows.get_column("ts")[2],
    ]
    assert on_second.get_column("ts").to_list() == [rows.get_column("ts")[1]]


def test_partition_files_and_uri_for_follow_the_layout(
    local_lake: ParquetLake, s3_lake: ParquetLake
) -> None:
    day = dt.date(2024, 3, 5)
    assert s3_lake.uri_for("bars_1m", "AAPL", day).endswith(
        "/lake/ticks/minute/AAPL/2024/03/05/ticks.parquet"
    )
    assert s3_lake.uri_for("bars_1m", "AAPL", day).startswith("s3://")
    files = local_lake.partition_files(
        "bars_1d", [("AAPL", day), ("AAPL", JAN_2024[0]), ("MSFT", day)]
    )
    assert [Path(f).relative_to(local_lake.root).as_posix() for f in files] == [
        "ticks/daily/AAPL/2024/ticks.parquet",
        "ticks/daily/MSFT/2024/ticks.parquet",
    ]


# ------------------------------------------------------------------------------ concurrency


def write_one_session(lake: ParquetLake, session: dt.date) -> None:
    lake.write_partitions(
        "bars_1d", make_bars(["AAPL"], [session], seed=session.toordinal()), [("AAPL", session)]
    )


def run_in_threads(count: int, work: Callable[[int], None]) -> None:
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            work(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_concurrent_threads_writing_sessions_of_one_local_year_file_keep_every_row(
    tmp_path: Path,
) -> None:
    root = str(tmp_path / "lake")
    run_in_threads(8, lambda i: write_one_session(ParquetLake(root), JAN_2024[i]))
    back = ParquetLake(root).read("bars_1d", ["AAPL"], dt.date(2024, 1, 1), dt.date(2025, 1, 1))
    assert back.get_column("ts").dt.date().to_list() == JAN_2024[:8]


def test_concurrent_threads_writing_sessions_of_one_s3_year_file_keep_every_row(
    s3_lake: ParquetLake, s3_server: str
) -> None:
    def work(index: int) -> None:
        writer = ParquetLake(s3_lake.root, s3_endpoint_url=s3_server, s3_region="us-east-1")
        write_one_session(writer, JAN_2024[index])

    run_in_threads(8, work)
    back = s3_lake.read("bars_1d", ["AAPL"], dt.date(2024, 1, 1), dt.date(2025, 1, 1))
    assert back.get_column("ts").dt.date().to_list() == JAN_2024[:8]


def _write_sessions_in_subprocess(
    root: str, sessions: list[dt.date], barrier: threading.Barrier
) -> None:
    lake = ParquetLake(root)
    barrier.wait()
    for session in sessions:
        write_one_session(lake, session)


def test_concurrent_processes_writing_sessions_of_one_local_year_file_keep_every_row(
    tmp_path: Path,
) -> None:
    # Arrange: 4 processes, each writing 5 sessions one write at a time, started together.
    root = str(tmp_path / "lake")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    workers = [
        context.Process(
            target=_write_sessions_in_subprocess, args=(root, JAN_2024[i:20:4], barrier)
        )
        for i in range(4)
    ]
    # Act
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    # Assert
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    back = ParquetLake(root).read("bars_1d", ["AAPL"], dt.date(2024, 1, 1), dt.date(2025, 1, 1))
    assert back.get_column("ts").dt.date().to_list() == JAN_2024[:20]


def test_s3_writer_whose_object_changed_after_reading_retries_and_keeps_the_other_rows(
    s3_lake: ParquetLake, s3_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: another writer slips in between our GET and our conditional PUT, once.
    other = ParquetLake(s3_lake.root, s3_endpoint_url=s3_server, s3_region="us-east-1")
    store = s3_lake._store
    real_get = store.get
    calls: list[str] = []

    def get_then_race(path: str) -> tuple[bytes | None, str | None]:
        result = real_get(path)
        calls.append(path)
        if len(calls) == 1:
            write_one_session(other, JAN_2024[1])
        return result

    monkeypatch.setattr(store, "get", get_then_race)
    # Act
    write_one_session(s3_lake, JAN_2024[0])
    reads_by_writer = len(calls)
    # Assert
    back = s3_lake.read("bars_1d", ["AAPL"], dt.date(2024, 1, 1), dt.date(2025, 1, 1))
    assert reads_by_writer == 2
    assert back.get_column("ts").dt.date().to_list() == JAN_2024[:2]


# ------------------------------------------------------------------------------- atomicity


def test_failed_rename_leaves_the_old_file_intact_and_no_temp_files(
    local_lake: ParquetLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange
    bars = make_bars(["AAPL"], JAN_2024[:3])
    local_lake.write_partitions("bars_1d", bars, partitions(["AAPL"], JAN_2024[:3]))
    lake_file = Path(local_lake.uri_for("bars_1d", "AAPL", JAN_2024[0]))
    before = lake_file.read_bytes()

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(objectstore.os, "replace", failing_replace)
    # Act
    with pytest.raises(StoreError, match="disk full"):
        local_lake.write_partitions(
            "bars_1d", make_bars(["AAPL"], JAN_2024[:1], seed=7), [("AAPL", JAN_2024[0])]
        )
    # Assert
    assert lake_file.read_bytes() == before
    assert [p.name for p in lake_file.parent.iterdir() if not p.name.endswith(".lock")] == [
        "ticks.parquet"
    ]


def test_failing_parquet_writer_leaves_the_old_file_intact(
    local_lake: ParquetLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    bars = make_bars(["AAPL"], JAN_2024[:3], "1m")
    local_lake.write_partitions("bars_1m", bars, [("AAPL", s) for s in JAN_2024[:3]])
    lake_file = Path(local_lake.uri_for("bars_1m", "AAPL", JAN_2024[0]))
    before = lake_file.read_bytes()

    def failing_writer(self: pl.DataFrame, *args: object, **kwargs: object) -> None:
        raise RuntimeError("encoder crashed")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", failing_writer)
    with pytest.raises(RuntimeError, match="encoder crashed"):
        local_lake.write_partitions(
            "bars_1m", make_bars(["AAPL"], JAN_2024[:1], "1m", seed=7), [("AAPL", JAN_2024[0])]
        )
    assert lake_file.read_bytes() == before
    assert os.listdir(lake_file.parent) == ["ticks.parquet"]


# ------------------------------------------------------------------------------ quarantine


def test_quarantine_round_trip_keeps_rows_apart_from_the_bars(lake: ParquetLake) -> None:
    # Arrange
    session = JAN_2024[0]
    bars = make_bars(["AAPL"], [session], "1m").head(3)
    quarantined = pl.concat([bars, bars.head(1)]).with_columns(
        open=pl.Series([-1.0, None, 3.0, -1.0]),
        session=pl.lit(session, pl.Date),
        dataset=pl.lit("bars_1m"),
        rule=pl.Series(["non_positive_price", "null_price", None, "duplicate_key"]),
        detail=pl.lit(None, pl.String),
        quarantined_at=pl.lit(dt.datetime(2024, 1, 3, tzinfo=dt.UTC)),
    )
    # Act
    lake.write_quarantine("bars_1m", quarantined, [("AAPL", session)])
    back = lake.read_quarantine("bars_1m", ["AAPL"], session, session + dt.timedelta(days=1))
    # Assert
    assert back.schema == pl.Schema({**BAR_SCHEMA, **QUARANTINE_EXTRA_SCHEMA})
    assert_frame_equal(
        back, quarantined.sort("symbol", "ts", maintain_order=True), check_column_order=True
    )
    assert lake.read("bars_1m", ["AAPL"], session, session + dt.timedelta(days=1)).is_empty()


# ------------------------------------------------------------------------------ compaction


FEB_2024 = [d for d in SESSIONS_2024 if d.month == 2]


def lake_on(root: Path, today: dt.date) -> ParquetLake:
    return ParquetLake(str(root), today=lambda: today)


def test_closing_a_month_folds_its_day_files_into_one_month_file_with_every_row(
    tmp_path: Path,
) -> None:
    # Arrange: January written day by day while it is open.
    january = make_bars(["AAPL"], JAN_2024, "1m", seed=3)
    lake_on(tmp_path, OPEN_JANUARY).write_partitions(
        "bars_1m", january, partitions(["AAPL"], JAN_2024)
    )
    day_files = stored_files(lake_on(tmp_path, OPEN_JANUARY))
    # Act: in February (after the grace days) one January session is re-materialized.
    later = lake_on(tmp_path, dt.date(2024, 2, 10))
    replacement = make_bars(["AAPL"], [JAN_2024[4]], "1m", seed=99)
    summary = later.write_partitions("bars_1m", replacement, [("AAPL", JAN_2024[4])])
    # Assert
    expected = pl.concat(
        [
            january.filter(
                pl.col("ts").dt.convert_time_zone("America/New_York").dt.date() != JAN_2024[4]
            ),
            replacement,
        ]
    ).sort("symbol", "ts")
    assert len(day_files) == len(JAN_2024)
    assert (summary.files_written, summary.files_deleted) == (1, len(JAN_2024))
    assert stored_files(later) == ["ticks/minute/AAPL/2024/01/ticks.parquet"]
    assert_frame_equal(
        later.read("bars_1m", "AAPL", dt.date(2024, 1, 1), dt.date(2024, 2, 1)), expected
    )
    assert list(Path(tmp_path, "ticks/minute/AAPL/2024/01").iterdir()) == [
        Path(tmp_path, "ticks/minute/AAPL/2024/01/ticks.parquet")
    ]


def test_replacing_a_partition_inside_a_month_file_replaces_exactly_that_partition(
    local_lake: ParquetLake,
) -> None:
    # Arrange: two symbols, January and February, all compacted.
    sessions = JAN_2024 + FEB_2024
    bars = make_bars(["AAPL", "MSFT"], sessions, "1m", seed=5)
    local_lake.write_partitions("bars_1m", bars, partitions(["AAPL", "MSFT"], sessions))
    target = ("MSFT", FEB_2024[3])
    replacement = make_bars(["MSFT"], [FEB_2024[3]], "1m", seed=77).head(100)
    # Act
    local_lake.write_partitions("bars_1m", replacement, [target])
    back = local_lake.read("bars_1m", ["AAPL", "MSFT"], dt.date(2024, 1, 1), dt.date(2024, 3, 1))
    # Assert
    session = pl.col("ts").dt.convert_time_zone("America/New_York").dt.date()
    untouched = bars.filter(~((pl.col("symbol") == "MSFT") & (session == FEB_2024[3])))
    assert_frame_equal(back, pl.concat([untouched, replacement]).sort("symbol", "ts"))
    assert len(stored_files(local_lake)) == 4  # one file per symbol-month


def test_daily_history_keeps_closed_years_in_one_file_and_the_open_year_apart(
    tmp_path: Path,
) -> None:
    # Arrange: 2022-2024 on a day in 2024: 2022 and 2023 are closed, 2024 is open.
    sessions = get_calendar().sessions("2022-01-01", "2024-03-28")
    bars = make_bars(["AAPL"], sessions, seed=2)
    lake = lake_on(tmp_path, dt.date(2024, 3, 29))
    # Act
    lake.write_partitions("bars_1d", bars, partitions(["AAPL"], sessions))
    # Assert
    assert stored_files(lake) == [
        "ticks/daily/AAPL/2024/ticks.parquet",
        "ticks/daily/AAPL/ticks.parquet",
    ]
    assert_frame_equal(lake.read("bars_1d", "AAPL", dt.date(2000, 1, 1), dt.date(2030, 1, 1)), bars)
    # Act again: a year later, writing one 2024 session folds 2024 into the history file.
    later = lake_on(tmp_path, dt.date(2025, 3, 1))
    later.write_partitions("bars_1d", bars.tail(1), [("AAPL", sessions[-1])])
    assert stored_files(later) == ["ticks/daily/AAPL/ticks.parquet"]
    assert_frame_equal(
        later.read("bars_1d", "AAPL", dt.date(2000, 1, 1), dt.date(2030, 1, 1)), bars
    )


def test_reads_open_only_the_files_the_range_needs(
    local_lake: ParquetLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: three compacted months of 1m bars for two symbols.
    sessions = [d for d in SESSIONS_2024 if d.month <= 3]
    local_lake.write_partitions(
        "bars_1m",
        make_bars(["AAPL", "MSFT"], sessions, "1m"),
        partitions(["AAPL", "MSFT"], sessions),
    )
    scanned: list[list[str]] = []
    real_scan = pl.scan_parquet

    def counting_scan(sources, *args, **kwargs):
        scanned.append([str(s) for s in sources])
        return real_scan(sources, *args, **kwargs)

    monkeypatch.setattr(pl, "scan_parquet", counting_scan)
    # Act
    month = local_lake.read("bars_1m", "AAPL", dt.date(2024, 2, 5), dt.date(2024, 2, 20))
    quarter = local_lake.read("bars_1m", "AAPL", dt.date(2024, 1, 2), dt.date(2024, 4, 1))
    # Assert
    assert month.height > 0 and quarter.height == len(sessions) * 390
    assert [Path(p).relative_to(local_lake.root).as_posix() for p in scanned[0]] == [
        "ticks/minute/AAPL/2024/02/ticks.parquet"
    ]
    assert len(scanned[1]) == 3


# --------------------------------------------------------------------- leftovers and errors


def test_writes_leave_no_lock_or_temp_file_beside_the_data(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    open_lake = lake_on(root, OPEN_JANUARY)
    open_lake.write_partitions(
        "bars_1d", make_bars(["AAPL"], JAN_2024[:3]), partitions(["AAPL"], JAN_2024[:3])
    )
    open_lake.write_partitions(
        "bars_1m", make_bars(["AAPL"], JAN_2024[:2], "1m"), partitions(["AAPL"], JAN_2024[:2])
    )
    run_in_threads(4, lambda i: write_one_session(open_lake, JAN_2024[4 + i]))
    ParquetLake(str(root)).write_partitions(
        "bars_1d", make_bars(["MSFT"], JAN_2024[:3]), partitions(["MSFT"], JAN_2024[:3])
    )
    leftovers = [f for f in files_under(root) if not f.endswith(".parquet")]
    assert leftovers == [".lake.lock"]


def test_stale_temp_files_are_removed_by_the_next_write_into_their_folder(
    tmp_path: Path,
) -> None:
    # Arrange: a killed writer's temp file (2 hours old) and a live one (just written).
    lake = lake_on(tmp_path, OPEN_JANUARY)
    folder = tmp_path / "ticks/daily/AAPL/2024"
    folder.mkdir(parents=True)
    stale, live = folder / ".ticks.parquet.dead.tmp", folder / ".ticks.parquet.live.tmp"
    stale.write_bytes(b"half a file")
    live.write_bytes(b"being written")
    two_hours_ago = dt.datetime.now().timestamp() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    # Act
    lake.write_partitions("bars_1d", make_bars(["AAPL"], JAN_2024[:1]), [("AAPL", JAN_2024[0])])
    # Assert
    assert sorted(p.name for p in folder.iterdir()) == [".ticks.parquet.live.tmp", "ticks.parquet"]


def test_empty_lock_files_of_older_lakes_are_removed_by_the_next_write_into_their_folder(
    tmp_path: Path,
) -> None:
    # Arrange: the empty `.{name}.lock` files older lakes left beside each data file (one
    # two hours old, one just created by a writer of an older version), and an old lock file
    # that is not empty (not ours: kept).
    lake = lake_on(tmp_path, OPEN_JANUARY)
    folder = tmp_path / "ticks/daily/AAPL/2024"
    folder.mkdir(parents=True)
    old, recent, foreign = (
        folder / ".ticks.parquet.lock",
        folder / ".other.parquet.lock",
        folder / ".notes.lock",
    )
    old.touch()
    recent.touch()
    foreign.write_text("pid 42")
    two_hours_ago = dt.datetime.now().timestamp() - 7200
    for path in (old, foreign):
        os.utime(path, (two_hours_ago, two_hours_ago))
    # Act
    lake.write_partitions("bars_1d", make_bars(["AAPL"], JAN_2024[:1]), [("AAPL", JAN_2024[0])])
    # Assert
    assert sorted(p.name for p in folder.iterdir()) == [
        ".notes.lock",
        ".other.parquet.lock",
        "ticks.parquet",
    ]
    assert (tmp_path / ".lake.lock").exists()


def test_unreadable_file_among_many_is_the_one_named(tmp_path: Path) -> None:
    # Arrange: 1m day files of three symbols; MSFT's second file is garbage.
    lake = lake_on(tmp_path, OPEN_JANUARY)
    symbols = ["AAPL", "MSFT", "NVDA"]
    lake.write_partitions(
        "bars_1m", make_bars(symbols, JAN_2024[:3], "1m"), partitions(symbols, JAN_2024[:3])
    )
    bad = Path(lake.uri_for("bars_1m", "MSFT", JAN_2024[1]))
    bad.write_bytes(b"PAR1 not really parquet")
    # Act / Assert
    with pytest.raises(StoreError, match=f"cannot read {bad}:") as raised:
        lake.read("bars_1m", symbols, dt.date(2024, 1, 1), dt.date(2024, 2, 1))
    assert "AAPL" not in str(raised.value) and "NVDA" not in str(raised.value)
