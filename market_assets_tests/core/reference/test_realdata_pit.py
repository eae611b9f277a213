"""Correctness on the real S&P 500 files (1996 to 2025-11): member counts, FB -> META
continuity, PCG's two intervals, and no answer using information after its as_of."""

import datetime as dt

import polars as pl
import pytest

from market_assets.core.calendar import get_calendar
from market_assets.core.providers.sp500 import Sp500Provider, parse_intervals
from market_assets.core.reference.intervals import (
    members_as_of,
    membership_intervals,
    with_security_ids,
)
from market_assets.core.reference.schemas import REFERENCE_SCHEMA, empty
from market_assets.core.reference.securities import build_ticker_history, securities_of
from market_assets.core.reference.sources import ConstituentsRequest
from market_assets_tests.realdata import require

FIRST, END = dt.date(1996, 1, 2), dt.date(2025, 11, 17)


@pytest.fixture(scope="module")
def provider() -> Sp500Provider:
    return Sp500Provider(files_dir=require("sp500/sp500_ticker_start_end_2025-11.csv").parent)


@pytest.fixture(scope="module")
def snapshots(provider) -> pl.DataFrame:
    return provider.fetch_constituents(ConstituentsRequest(FIRST, END)).frame


@pytest.fixture(scope="module")
def file_intervals() -> pl.DataFrame:
    path = require("sp500/sp500_ticker_start_end_2025-11.csv")
    return parse_intervals(path.read_text(), str(path))


def members_in_file(intervals: pl.DataFrame, day: dt.date) -> set[str]:
    return set(
        intervals.filter(
            (pl.col("start") <= day) & (pl.col("end").is_null() | (pl.col("end") > day))
        )["symbol"]
    )


@pytest.mark.parametrize(
    ("day", "count"),
    [
        ("1996-01-02", 487),
        ("2014-03-03", 497),
        ("2016-06-01", 505),
        ("2022-06-08", 504),
        ("2025-10-31", 503),
    ],
)
def test_member_counts_on_real_dates(snapshots, day, count):
    assert snapshots.filter(pl.col("session") == dt.date.fromisoformat(day)).height == count


def test_since_2016_every_session_has_500_to_505_members(snapshots):
    counts = snapshots.filter(pl.col("session") >= dt.date(2016, 1, 4)).group_by("session").len()

    assert counts["len"].min() >= 500 and counts["len"].max() <= 507


def test_fb_becomes_meta_on_2022_06_09_as_one_security(snapshots):
    history, _ = build_ticker_history(empty(REFERENCE_SCHEMA), snapshots)
    intervals = with_security_ids(membership_intervals(snapshots), history)

    june_8 = members_as_of(intervals, "SP500", dt.date(2022, 6, 8))["symbol"].to_list()
    june_10 = members_as_of(intervals, "SP500", dt.date(2022, 6, 10))["symbol"].to_list()
    meta = securities_of(history, "META")

    assert "FB" in june_8 and "META" not in june_8
    assert "META" in june_10 and "FB" not in june_10
    assert meta.select("symbol", "valid_from", "valid_to", "change").rows() == [
        ("FB", dt.date(2013, 12, 23), dt.date(2022, 6, 9), "listed"),
        ("META", dt.date(2022, 6, 9), None, "renamed"),
    ]
    assert intervals.filter(pl.col("symbol").is_in(["FB", "META"]))["security_id"].n_unique() == 1


def test_pcg_left_in_2019_and_returned_in_2022_as_two_intervals(snapshots):
    intervals = membership_intervals(snapshots).filter(pl.col("symbol") == "PCG")

    assert intervals.select("start", "end").rows() == [
        (dt.date(1996, 1, 2), dt.date(2019, 1, 18)),
        (dt.date(2022, 10, 3), None),
    ]


def test_intervals_rebuilt_from_daily_snapshots_equal_the_interval_file(snapshots, file_intervals):
    rebuilt = membership_intervals(snapshots).select("symbol", "start", "end")
    calendar = get_calendar()
    expected = file_intervals.with_columns(  # a weekend date means the next session
        pl.col(c).map_elements(
            lambda d: calendar.sessions(d, d + dt.timedelta(days=7))[0], return_dtype=pl.Date
        )
        for c in ("start", "end")
    )

    assert rebuilt.sort("symbol", "start").rows() == expected.sort("symbol", "start").rows()


def test_snapshots_built_one_day_at_a_time_use_nothing_after_their_day(
    provider, snapshots, file_intervals
):
    calendar = get_calendar()
    sample = calendar.sessions(FIRST, dt.date(2025, 10, 31))[::97]
    sample += calendar.sessions(dt.date(2022, 6, 6), dt.date(2022, 6, 13))
    sources, _ = provider.read_sources()
    every_snapshot = membership_intervals(snapshots).with_columns(
        security_id=pl.lit(None, pl.String)
    )
    earlier: list[pl.DataFrame] = []
    for day in sample:
        alone, _ = provider.snapshots(sources, [day])  # the day's snapshot, built by itself
        earlier.append(alone)
        known_then = membership_intervals(pl.concat(earlier)).with_columns(
            security_id=pl.lit(None, pl.String)
        )

        assert set(alone["symbol"]) == members_in_file(file_intervals, day), day
        then = set(members_as_of(known_then, "SP500", day)["symbol"])
        assert then == set(members_as_of(every_snapshot, "SP500", day)["symbol"]), day
