"""Tick hard rules: bad ticks are quarantined with their rule, the rest is kept in order."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from market_assets.core.schemas import TICK_SCHEMAS, TICK_TS_DTYPE
from market_assets.core.validate_ticks import split_valid_ticks

SESSION = dt.date(2024, 3, 7)
OPEN_NS = 1_709_821_800_000_000_000  # 2024-03-07 14:30:00 UTC, the 9:30 New York open


def ticks(dataset: str, rows: list[dict[str, object]]) -> pl.DataFrame:
    """A canonical tick frame; each row gives ts_event as ns after the open plus overrides."""
    base = {"symbol": "NVDA", "source": "databento", "sequence": 1}
    records = [{**base, **row, "ts_event": OPEN_NS + int(row["ts_event"])} for row in rows]
    frame = pl.DataFrame(records)
    return frame.with_columns(pl.col("ts_event").cast(TICK_TS_DTYPE)).select(
        pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in TICK_SCHEMAS[dataset].items()
    )


def test_trades_with_bad_prices_or_sizes_are_quarantined_by_rule():
    frame = ticks(
        "trades",
        [
            {"ts_event": 0, "price": 880.5, "size": 10},
            {"ts_event": 1, "price": None, "size": 10},
            {"ts_event": 2, "price": float("nan"), "size": 10},
            {"ts_event": 3, "price": -1.0, "size": 10},
            {"ts_event": 4, "price": 880.0, "size": -5},
        ],
    )

    result = split_valid_ticks(frame, dataset="trades", partitions=[("NVDA", SESSION)])

    assert result.valid["price"].to_list() == [880.5]
    assert result.rule_counts == {"invalid_size": 1, "non_positive_price": 1, "null_price": 2}
    assert result.quarantined["session"].to_list() == [SESSION] * 4


def test_two_trades_in_one_nanosecond_are_both_kept_but_an_exact_copy_is_not():
    same_time = {"ts_event": 5, "size": 1}
    frame = ticks(
        "trades",
        [
            {**same_time, "price": 10.0, "sequence": 7},
            {**same_time, "price": 10.01, "sequence": 8},
            {**same_time, "price": 10.01, "sequence": 8},
        ],
    )

    result = split_valid_ticks(frame, dataset="trades", partitions=[("NVDA", SESSION)])

    assert result.valid["sequence"].to_list() == [7, 8]
    assert result.rule_counts == {"duplicate_row": 1}


def test_crossed_tbbo_quote_is_quarantined_while_a_one_sided_book_is_kept():
    frame = ticks(
        "tbbo",
        [
            {"ts_event": 0, "price": 10.0, "size": 1, "bid_price": 9.99, "ask_price": 10.0},
            {"ts_event": 1, "price": 10.0, "size": 1, "bid_price": None, "ask_price": 10.0},
            {"ts_event": 2, "price": 10.0, "size": 1, "bid_price": 10.05, "ask_price": 10.0},
        ],
    )

    result = split_valid_ticks(frame, dataset="tbbo", partitions=[("NVDA", SESSION)])

    assert result.valid["bid_price"].to_list() == [9.99, None]
    assert result.rule_counts == {"crossed_quote": 1}
    assert "bid_price=10.05 ask_price=10.0" in result.quarantined["detail"][0]


def test_statistic_without_price_or_quantity_is_quarantined():
    frame = ticks(
        "statistics",
        [
            {"ts_event": 0, "stat_type": "settlement_price", "price": -37.63},
            {"ts_event": 1, "stat_type": "open_interest", "quantity": 1_000},
            {"ts_event": 2, "stat_type": "open_interest"},
        ],
    )

    result = split_valid_ticks(frame, dataset="statistics", partitions=[("NVDA", SESSION)])

    assert result.valid["stat_type"].to_list() == ["settlement_price", "open_interest"]
    assert result.valid["price"].to_list() == [-37.63, None]  # a negative settlement is real
    assert result.rule_counts == {"no_value": 1}


def test_tick_outside_the_written_partitions_is_filed_under_its_symbols_first_session():
    a_day_later = 24 * 3_600 * 1_000_000_000
    frame = ticks(
        "trades",
        [
            {"ts_event": 0, "price": 10.0, "size": 1},
            {"ts_event": a_day_later, "price": 10.0, "size": 1},
            {"ts_event": 0, "price": 10.0, "size": 1, "symbol": "AAPL"},
        ],
    )

    result = split_valid_ticks(frame, dataset="trades", partitions=[("NVDA", SESSION)])

    assert result.valid.height == 1
    assert result.quarantined.select("symbol", "session", "rule").rows() == [
        ("NVDA", SESSION, "outside_partition"),
        ("NVDA", SESSION, "outside_partition"),
    ]
    assert "symbol=AAPL" in result.quarantined["detail"][1]


def test_valid_ticks_are_sorted_by_symbol_then_time_keeping_arrival_order_on_ties():
    frame = ticks(
        "trades",
        [
            {"ts_event": 9, "price": 1.0, "size": 1, "symbol": "NVDA", "sequence": 3},
            {"ts_event": 2, "price": 1.0, "size": 1, "symbol": "AAPL", "sequence": 2},
            {"ts_event": 9, "price": 2.0, "size": 1, "symbol": "NVDA", "sequence": 1},
        ],
    )

    result = split_valid_ticks(
        frame, dataset="trades", partitions=[("NVDA", SESSION), ("AAPL", SESSION)]
    )

    assert result.valid.select("symbol", "sequence").rows() == [
        ("AAPL", 2),
        ("NVDA", 3),
        ("NVDA", 1),
    ]


def test_unknown_tick_dataset_is_refused():
    with pytest.raises(ValueError, match="unknown tick dataset 'quotes'"):
        split_valid_ticks(pl.DataFrame({"ts_event": [], "symbol": []}), dataset="quotes")
