"""Corporate actions table: fetching partitions, refusing bad rows, first-known times."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from market_assets.core.actions import (
    carry_known_at,
    changed_symbols,
    check_actions,
    fetch_partition_actions,
    stamp_known_at,
)
from market_assets.core.providers.registry import ProviderRegistry
from market_assets.core.providers.synthetic import SyntheticProvider, synthetic_actions

D = dt.date
NOW = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC)


def frame(rows: list[dict]) -> pl.DataFrame:
    base = {"symbol": "AAA", "source": "test", "ratio": None, "amount": None}
    return pl.DataFrame([{**base, **row} for row in rows])


def test_fetch_partition_actions_returns_only_the_asked_sessions_in_one_request():
    registry = ProviderRegistry(
        {"synthetic": SyntheticProvider()}, {"corporate_actions": ["synthetic"]}
    )
    every = synthetic_actions("XOM").filter(pl.col("ex_date").dt.year() == 2023)
    asked = [("XOM", day) for day in every["ex_date"].to_list()[:2]]

    result = fetch_partition_actions(registry, asked)

    assert result.requests == 1
    assert result.frame.select("symbol", "ex_date").rows() == asked
    assert result.frame["source"].to_list() == ["synthetic", "synthetic"]


def test_check_actions_refuses_bad_rows_and_keeps_one_copy_of_repeats():
    rows = frame(
        [
            {"ex_date": D(2024, 1, 2), "action_type": "split", "ratio": 2.0},
            {"ex_date": D(2024, 1, 2), "action_type": "split", "ratio": 2.0},
            {"ex_date": D(2024, 1, 3), "action_type": "split", "ratio": -1.0},
            {"ex_date": D(2024, 1, 4), "action_type": "dividend", "amount": 0.0},
            {"ex_date": D(2024, 1, 5), "action_type": "dividend", "amount": 0.5},
            {"ex_date": D(2024, 1, 5), "action_type": "dividend", "amount": 0.7},
            {"ex_date": D(2024, 1, 8), "action_type": "merger"},
        ]
    )

    checked = check_actions(rows)

    assert checked.valid.select("ex_date", "action_type").rows() == [(D(2024, 1, 2), "split")]
    assert checked.rule_counts == {
        "conflicting_duplicate_key": 2,
        "invalid_dividend_amount": 1,
        "invalid_split_ratio": 1,
        "unknown_action_type": 1,
    }


def test_stamp_known_at_takes_the_earliest_of_announced_ex_date_and_now():
    rows = frame(
        [
            {"ex_date": D(2020, 1, 2), "action_type": "split", "ratio": 2.0},
            {"ex_date": D(2024, 9, 3), "action_type": "split", "ratio": 2.0},
            {"ex_date": D(2024, 9, 4), "action_type": "split", "ratio": 2.0,
             "announced": D(2024, 5, 1)},
        ]
    )  # fmt: skip

    stamped = stamp_known_at(rows, NOW)

    assert stamped["known_at"].to_list() == [
        dt.datetime(2020, 1, 2, tzinfo=dt.UTC),
        NOW,
        dt.datetime(2024, 5, 1, tzinfo=dt.UTC),
    ]


def test_carry_known_at_keeps_the_first_time_of_unchanged_rows_only():
    first = stamp_known_at(
        frame(
            [
                {"ex_date": D(2024, 9, 3), "action_type": "split", "ratio": 2.0},
                {"ex_date": D(2024, 9, 4), "action_type": "dividend", "amount": 0.5},
            ]
        ),
        NOW,
    )
    later = NOW + dt.timedelta(days=30)
    corrected = stamp_known_at(
        first.with_columns(
            pl.when(pl.col("action_type") == "dividend")
            .then(0.6)
            .otherwise(pl.col("amount"))
            .alias("amount"),
            pl.lit(None, pl.Datetime("us", "UTC")).alias("known_at"),
        ),
        later,
    )

    carried = carry_known_at(corrected, first)

    assert carried["known_at"].to_list() == [NOW, later]


def test_changed_symbols_reports_the_latest_changed_ex_date_per_symbol():
    before = frame([{"ex_date": D(2024, 1, 2), "action_type": "split", "ratio": 2.0}])
    after = pl.concat(
        [
            before,
            frame([{"ex_date": D(2024, 3, 1), "action_type": "dividend", "amount": 0.5}]),
            frame([{"ex_date": D(2024, 2, 1), "action_type": "split", "ratio": 3.0}]).with_columns(
                pl.lit("BBB").alias("symbol")
            ),
        ],
        how="diagonal_relaxed",
    )

    assert changed_symbols(after, before) == {"AAA": D(2024, 3, 1), "BBB": D(2024, 2, 1)}
    assert changed_symbols(before, before) == {}


@pytest.mark.parametrize("missing", ["symbol", "ex_date", "action_type"])
def test_check_actions_given_a_missing_key_column_names_it(missing):
    rows = frame([{"ex_date": D(2024, 1, 2), "action_type": "split", "ratio": 2.0}])

    with pytest.raises(ValueError, match=missing):
        check_actions(rows.drop(missing))
