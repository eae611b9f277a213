"""Hard schema rules: each bad row lands in quarantine with its rule; good rows are kept."""

import datetime as dt

import polars as pl
import pytest

from market_assets.core.schemas import BAR_SCHEMA
from market_assets.core.validate import split_valid_bars

SESSIONS = [dt.date(2024, 1, d) for d in (2, 3, 4, 5, 8, 9, 10)]


def daily_bar(session: dt.date, symbol: str = "AAPL", **values) -> dict:
    bar = {
        "ts": dt.datetime.combine(session, dt.time(0), tzinfo=dt.UTC),
        "symbol": symbol,
        "open": 100.0,
        "high": 101.0,
        "low": 99.0,
        "close": 100.5,
        "volume": 1_000,
        "trade_count": 10,
        "vwap": 100.2,
        "granularity": "1d",
        "source": "synthetic",
    }
    bar.update(values)
    return bar


def frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=BAR_SCHEMA)


def partitions(symbol: str = "AAPL") -> list[tuple[str, dt.date]]:
    return [(symbol, s) for s in SESSIONS]


@pytest.mark.parametrize(
    ("values", "rule"),
    [
        ({"close": None}, "null_price"),
        ({"open": float("nan")}, "null_price"),
        ({"low": 0.0, "open": 0.0}, "non_positive_price"),
        ({"high": 100.2}, "high_below_open_close"),
        ({"low": 100.6}, "low_above_open_close"),
        ({"volume": -5}, "invalid_volume"),
        ({"volume": None}, "invalid_volume"),
        ({"granularity": "1m"}, "wrong_granularity"),
    ],
)
def test_split_given_one_bad_row_quarantines_it_with_its_rule(values, rule):
    rows = [daily_bar(s) for s in SESSIONS]
    rows[3] = daily_bar(SESSIONS[3], **values)

    result = split_valid_bars(frame(rows), dataset="bars_1d", partitions=partitions())

    assert len(result.valid) == len(SESSIONS) - 1
    assert result.quarantined["rule"].to_list() == [rule]
    assert result.quarantined["ts"].dt.date().to_list() == [SESSIONS[3]]
    assert result.quarantined["dataset"].to_list() == ["bars_1d"]
    assert result.rule_counts == {rule: 1}


def test_split_given_identical_duplicates_keeps_one_and_quarantines_the_copy():
    rows = [daily_bar(s) for s in SESSIONS] + [daily_bar(SESSIONS[0])]

    result = split_valid_bars(frame(rows), dataset="bars_1d", partitions=partitions())

    assert len(result.valid) == len(SESSIONS)
    assert result.valid["ts"].is_unique().all()
    assert result.rule_counts == {"duplicate_key": 1}


def test_split_given_conflicting_duplicates_quarantines_every_copy():
    rows = [daily_bar(s) for s in SESSIONS] + [daily_bar(SESSIONS[0], close=100.7)]

    result = split_valid_bars(frame(rows), dataset="bars_1d", partitions=partitions())

    assert SESSIONS[0] not in result.valid["ts"].dt.date().to_list()
    assert result.rule_counts == {"conflicting_duplicate_key": 2}


def test_split_given_row_outside_partitions_quarantines_it():
    rows = [daily_bar(s) for s in SESSIONS] + [daily_bar(dt.date(2024, 1, 11))]
    rows.append(daily_bar(SESSIONS[0], symbol="MSFT"))

    result = split_valid_bars(frame(rows), dataset="bars_1d", partitions=partitions())

    assert len(result.valid) == len(SESSIONS)
    assert result.rule_counts == {"outside_partition": 2}
    # Filed under the first written session of the row's symbol, or the first partition.
    assert result.quarantined.select("symbol", "session").rows() == [
        ("AAPL", SESSIONS[0]),
        ("AAPL", SESSIONS[0]),
    ]
    assert "symbol=MSFT" in result.quarantined["detail"].to_list()[1] or (
        "symbol=MSFT" in result.quarantined["detail"].to_list()[0]
    )


def test_split_given_null_timestamp_and_symbol_files_them_under_a_written_partition():
    rows = [daily_bar(SESSIONS[1]), daily_bar(SESSIONS[2], symbol=None), daily_bar(SESSIONS[3])]
    rows[2]["ts"] = None

    result = split_valid_bars(frame(rows), dataset="bars_1d", partitions=partitions())

    assert len(result.valid) == 1
    assert sorted(result.quarantined["rule"].to_list()) == [
        "null_symbol,outside_partition",
        "null_timestamp,outside_partition",
    ]
    assert result.quarantined["symbol"].to_list() == ["AAPL", "AAPL"]
    assert result.quarantined["session"].to_list() == [SESSIONS[0], SESSIONS[0]]


def test_split_given_intraday_bar_in_new_york_evening_belongs_to_that_session():
    session = dt.date(2024, 3, 8)
    late = dt.datetime(2024, 3, 9, 0, 30, tzinfo=dt.UTC)  # 19:30 New York, still March 8
    row = daily_bar(session, granularity="1m") | {"ts": late}

    result = split_valid_bars(
        frame([row]), dataset="bars_1m", partitions=[("AAPL", session)]
    )

    assert len(result.valid) == 1
    assert result.quarantined.is_empty()


def test_split_given_several_broken_rules_lists_all_of_them():
    rows = [daily_bar(SESSIONS[0], high=50.0, volume=-1)]

    result = split_valid_bars(frame(rows), dataset="bars_1d", partitions=partitions())

    assert result.quarantined["rule"].to_list() == ["high_below_open_close,invalid_volume"]
    assert result.rule_counts == {"high_below_open_close": 1, "invalid_volume": 1}


def test_split_given_missing_required_column_raises_naming_it():
    bad = frame([daily_bar(SESSIONS[0])]).drop("close")

    with pytest.raises(ValueError, match=r"missing required column\(s\) \['close'\]"):
        split_valid_bars(bad, dataset="bars_1d", partitions=partitions())


def test_split_given_clean_frame_returns_it_sorted_and_quarantines_nothing():
    rows = [daily_bar(s) for s in reversed(SESSIONS)]

    result = split_valid_bars(frame(rows), dataset="bars_1d", partitions=partitions())

    assert result.quarantined.is_empty()
    assert result.valid["ts"].dt.date().to_list() == SESSIONS
    assert result.valid.schema == pl.Schema(BAR_SCHEMA)


def test_split_given_rows_out_of_order_returns_them_sorted_by_symbol_and_ts():
    rows = [daily_bar(SESSIONS[2], "MSFT"), daily_bar(SESSIONS[0]), daily_bar(SESSIONS[1], "MSFT")]
    parts = [(s, d) for s in ("AAPL", "MSFT") for d in SESSIONS]

    result = split_valid_bars(frame(rows), dataset="bars_1d", partitions=parts)

    assert result.valid.select("symbol", pl.col("ts").dt.day()).rows() == [
        ("AAPL", 2), ("MSFT", 3), ("MSFT", 4)
    ]


def test_split_given_symbols_with_different_sessions_checks_each_symbols_own_sessions():
    rows = [daily_bar(s, "AAPL") for s in SESSIONS[:3]] + [
        daily_bar(s, "MSFT") for s in SESSIONS[:3]
    ]
    parts = [("AAPL", SESSIONS[0]), ("AAPL", SESSIONS[1]), ("MSFT", SESSIONS[2])]

    result = split_valid_bars(frame(rows), dataset="bars_1d", partitions=parts)

    assert result.valid.select("symbol", pl.col("ts").dt.date()).rows() == [
        ("AAPL", SESSIONS[0]), ("AAPL", SESSIONS[1]), ("MSFT", SESSIONS[2])
    ]
    assert result.rule_counts == {"outside_partition": 3}
