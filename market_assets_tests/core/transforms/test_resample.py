"""Session-aligned resampling of 1m bars into 5m, 15m and 1h bars."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from market_assets.core.calendar import get_calendar
from market_assets.core.providers.synthetic import synthetic_bars
from market_assets.core.schemas import BAR_SCHEMA, BarModel
from market_assets.core.transforms.resample import resample_bars

D = dt.date
NEW_YORK = ZoneInfo("America/New_York")
MINUTES = {"5m": 5, "15m": 15, "1h": 60}


def minute_bars(symbols: tuple[str, ...], *sessions: D) -> pl.DataFrame:
    frames = [
        synthetic_bars(symbol, "1m", session, session + dt.timedelta(days=1))
        for symbol in symbols
        for session in sessions
    ]
    return pl.concat(frames).sort("symbol", "ts")


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def bar(ts: dt.datetime, volume: int = 100, source: str = "a", **values: object) -> dict:
    row = {
        "ts": ts,
        "symbol": "X",
        "open": 10.0,
        "high": 11.0,
        "low": 9.0,
        "close": 10.5,
        "volume": volume,
        "trade_count": 1,
        "vwap": 10.0,
        "granularity": "1m",
        "source": source,
    }
    row.update(values)
    return row


def frame_of(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=BAR_SCHEMA)


def reference_resample(frame: pl.DataFrame, granularity: str) -> list[dict]:
    """Straightforward row-by-row aggregation, using the calendar's per-session API."""
    calendar = get_calendar()
    every = dt.timedelta(minutes=MINUTES[granularity])
    buckets: dict[tuple[str, dt.datetime], list[dict]] = {}
    for row in frame.sort("symbol", "ts").iter_rows(named=True):
        session = row["ts"].astimezone(NEW_YORK).date()
        session_open, session_close = calendar.session_open_close(session)
        anchor = session_close if row["ts"] >= session_close else session_open
        start = anchor + ((row["ts"] - anchor) // every) * every
        buckets.setdefault((row["symbol"], start), []).append(row)
    expected = []
    for (symbol, start), rows in buckets.items():
        volume = sum(r["volume"] for r in rows)
        expected.append(
            {
                "ts": start,
                "symbol": symbol,
                "open": rows[0]["open"],
                "high": max(r["high"] for r in rows),
                "low": min(r["low"] for r in rows),
                "close": rows[-1]["close"],
                "volume": volume,
                "trade_count": sum(r["trade_count"] for r in rows),
                "vwap": sum(r["vwap"] * r["volume"] for r in rows) / volume,
                "granularity": granularity,
                "source": "synthetic",
            }
        )
    return expected


@pytest.mark.parametrize("granularity", ["5m", "15m", "1h"])
def test_resampled_bars_equal_a_row_by_row_aggregation(granularity: str) -> None:
    minutes = minute_bars(("AAPL", "KO"), D(2024, 3, 8), D(2024, 3, 11), D(2024, 11, 29))

    actual = resample_bars(minutes, granularity).to_dicts()
    expected = reference_resample(minutes, granularity)

    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert got["vwap"] == pytest.approx(want.pop("vwap"), abs=1e-9)
        got.pop("vwap")
        assert got == want


def test_hourly_bars_start_at_the_open_and_the_last_one_is_30_minutes() -> None:
    minutes = minute_bars(("AAPL",), D(2024, 6, 12)).with_columns(pl.lit(1).alias("volume"))

    hourly = resample_bars(minutes, "1h")

    local_starts = [ts.astimezone(NEW_YORK).strftime("%H:%M") for ts in hourly["ts"]]
    assert local_starts == ["09:30", "10:30", "11:30", "12:30", "13:30", "14:30", "15:30"]
    assert hourly["volume"].to_list() == [60, 60, 60, 60, 60, 60, 30]  # one per minute


def test_early_close_truncates_the_last_bucket() -> None:
    minutes = minute_bars(("AAPL",), D(2024, 11, 29)).with_columns(pl.lit(1).alias("volume"))

    hourly = resample_bars(minutes, "1h")
    quarter_hours = resample_bars(minutes, "15m")

    local_starts = [ts.astimezone(NEW_YORK).strftime("%H:%M") for ts in hourly["ts"]]
    assert local_starts == ["09:30", "10:30", "11:30", "12:30"]
    assert hourly["volume"].to_list() == [60, 60, 60, 30]
    assert quarter_hours.height == 14
    assert quarter_hours["ts"].max() == utc(2024, 11, 29, 17, 45)


def test_buckets_follow_the_open_across_the_daylight_saving_switch() -> None:
    minutes = minute_bars(("AAPL",), D(2024, 3, 8), D(2024, 3, 11))

    hourly = resample_bars(minutes, "1h")

    firsts = hourly.group_by(pl.col("ts").dt.date().alias("day")).agg(pl.col("ts").min())
    assert firsts.sort("day")["ts"].to_list() == [utc(2024, 3, 8, 14, 30), utc(2024, 3, 11, 13, 30)]
    assert hourly.height == 14


@pytest.mark.parametrize("granularity", ["5m", "15m", "1h"])
def test_total_volume_and_trade_count_are_preserved(granularity: str) -> None:
    minutes = minute_bars(("AAPL", "MSFT"), D(2024, 7, 3), D(2024, 7, 5), D(2024, 7, 8))

    resampled = resample_bars(minutes, granularity)

    totals = ["volume", "trade_count"]
    assert resampled.select(totals).sum().row(0) == minutes.select(totals).sum().row(0)
    # per symbol: two regular sessions and the 2024-07-03 early close (210 minutes)
    bars_per_symbol = {"5m": 2 * 78 + 42, "15m": 2 * 26 + 14, "1h": 2 * 7 + 4}[granularity]
    assert resampled.height == 2 * bars_per_symbol


def test_resampled_bars_pass_the_canonical_bar_model_sorted_by_symbol_and_ts() -> None:
    minutes = minute_bars(("MSFT", "AAPL"), D(2024, 5, 1), D(2024, 5, 2))

    resampled = resample_bars(minutes.reverse(), "15m")

    BarModel.validate(resampled)
    assert resampled.equals(resampled.sort("symbol", "ts"))
    assert resampled.equals(resample_bars(minutes, "15m"))
    assert resampled["granularity"].unique().to_list() == ["15m"]


def test_pre_market_minutes_are_aligned_to_the_open_in_buckets_of_their_own() -> None:
    # 2024-03-08 opens 14:30 UTC; 13:58 is 32 minutes before, 14:29 one minute before.
    rows = [
        bar(utc(2024, 3, 8, 13, 58)),
        bar(utc(2024, 3, 8, 14, 29)),
        bar(utc(2024, 3, 8, 14, 30)),
    ]

    resampled = resample_bars(frame_of(rows), "15m")

    assert resampled["ts"].to_list() == [
        utc(2024, 3, 8, 13, 45),
        utc(2024, 3, 8, 14, 15),
        utc(2024, 3, 8, 14, 30),
    ]


def test_post_close_minutes_start_their_own_buckets_at_the_close() -> None:
    # 2024-11-29 closes early at 18:00 UTC: 17:45 is regular, 18:00 and 18:40 are not.
    rows = [
        bar(utc(2024, 11, 29, 17, 45)),
        bar(utc(2024, 11, 29, 18, 0)),
        bar(utc(2024, 11, 29, 18, 40)),
    ]

    resampled = resample_bars(frame_of(rows), "1h")

    assert resampled["ts"].to_list() == [utc(2024, 11, 29, 17, 30), utc(2024, 11, 29, 18, 0)]
    assert resampled["volume"].to_list() == [100, 200]


def test_minutes_on_a_day_without_session_are_aligned_to_0930_new_york() -> None:
    rows = [bar(utc(2024, 3, 9, 15, 0)), bar(utc(2024, 3, 9, 15, 40))]  # a Saturday, EST

    resampled = resample_bars(frame_of(rows), "1h")

    assert resampled["ts"].to_list() == [utc(2024, 3, 9, 14, 30), utc(2024, 3, 9, 15, 30)]


def test_mixed_sources_in_a_bucket_are_joined_sorted_with_plus() -> None:
    rows = [
        bar(utc(2024, 3, 8, 14, 30), source="yfinance"),
        bar(utc(2024, 3, 8, 14, 31), source="alpaca"),
        bar(utc(2024, 3, 8, 14, 32), source="yfinance"),
        bar(utc(2024, 3, 8, 14, 35), source="alpaca"),
    ]

    resampled = resample_bars(frame_of(rows), "5m")

    assert resampled["source"].to_list() == ["alpaca+yfinance", "alpaca"]


def test_trade_count_is_null_only_when_every_minute_lacks_it() -> None:
    rows = [
        bar(utc(2024, 3, 8, 14, 30), trade_count=None),
        bar(utc(2024, 3, 8, 14, 31), trade_count=7),
        bar(utc(2024, 3, 8, 14, 35), trade_count=None),
    ]

    resampled = resample_bars(frame_of(rows), "5m")

    assert resampled["trade_count"].to_list() == [7, None]


def test_vwap_is_volume_weighted_and_null_without_volume_or_with_a_missing_vwap() -> None:
    rows = [
        bar(utc(2024, 3, 8, 14, 30), volume=100, vwap=10.0),
        bar(utc(2024, 3, 8, 14, 31), volume=300, vwap=10.4),
        bar(utc(2024, 3, 8, 14, 32), volume=0, vwap=None),  # no trades, no vwap: ignored
        bar(utc(2024, 3, 8, 14, 35), volume=0, vwap=None),
        bar(utc(2024, 3, 8, 14, 40), volume=50, vwap=None),
        bar(utc(2024, 3, 8, 14, 41), volume=50, vwap=10.0),
    ]

    resampled = resample_bars(frame_of(rows), "5m")

    assert resampled["vwap"].to_list() == [pytest.approx(10.3), None, None]


def test_input_that_is_not_minute_bars_is_rejected() -> None:
    daily = synthetic_bars("AAPL", "1d", D(2024, 3, 4), D(2024, 3, 6))

    with pytest.raises(ValueError, match=r"expects 1m bars only, got granularities \['1d'\]"):
        resample_bars(daily, "1h")


def test_unsupported_target_granularity_is_rejected() -> None:
    with pytest.raises(ValueError, match="cannot resample 1m bars to '30m'"):
        resample_bars(frame_of([bar(utc(2024, 3, 8, 14, 30))]), "30m")


def test_null_prices_are_rejected_naming_the_column() -> None:
    rows = [bar(utc(2024, 3, 8, 14, 30), close=None)]

    with pytest.raises(ValueError, match=r"nulls in \{'close': 1\}"):
        resample_bars(frame_of(rows), "5m")


def test_empty_input_gives_an_empty_canonical_frame() -> None:
    resampled = resample_bars(pl.DataFrame(schema=BAR_SCHEMA), "1h")

    assert resampled.is_empty() and resampled.schema == BAR_SCHEMA


def test_one_and_a_half_million_minutes_resample_into_a_fifth_as_many_bars() -> None:
    # Speed is measured in benchmarks/resample.py (tests never assert timings).
    minutes = pl.concat(
        synthetic_bars(f"S{i}", "1m", D(2023, 1, 1), D(2024, 7, 1)) for i in range(10)
    )

    resampled = resample_bars(minutes, "5m")

    assert minutes.height == 1_455_000
    assert resampled.height == minutes.height // 5
    assert resampled.get_column("volume").sum() == minutes.get_column("volume").sum()
