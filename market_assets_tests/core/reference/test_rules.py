"""Per-session rules of the reference checks."""

import datetime as dt

import polars as pl

from market_assets.core.reference.rules import (
    MemberCount,
    ReferenceCheckSettings,
    constituent_verdicts,
    overlapping_intervals,
    reference_verdicts,
)

A, B, C = dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 4)
SETTINGS = ReferenceCheckSettings(
    max_row_count_change=0.1, max_churn=0.25, member_counts={"SP500": MemberCount(min=3, max=4)}
)
NO_HISTORY = pl.DataFrame(schema={"symbol": pl.String, "valid_from": pl.Date, "valid_to": pl.Date})


def members(day: dt.date, symbols: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {"session": [day] * len(symbols), "index": ["SP500"] * len(symbols), "symbol": symbols},
        schema={"session": pl.Date, "index": pl.String, "symbol": pl.String},
    )


def listed(day: dt.date, symbols: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {"session": [day] * len(symbols), "symbol": symbols},
        schema={"session": pl.Date, "symbol": pl.String},
    )


def verdict(verdicts, day, rule):
    return next(v for v in verdicts[day] if v.rule == rule)


def test_member_count_outside_bounds_fails_with_error():
    rows = pl.concat([members(A, ["W", "X", "Y"]), members(B, ["W", "X"])])

    verdicts = constituent_verdicts(
        rows, [A, B], members(A, [])[:0], listed(A, [])[:0], NO_HISTORY, SETTINGS
    )

    assert verdict(verdicts, A, "member_count").passed
    failed = verdict(verdicts, B, "member_count")
    assert not failed.passed and failed.severity == "ERROR" and failed.details["members"] == 2


def test_churn_compares_with_the_previous_stored_snapshot():
    previous = members(A, ["W", "X", "Y", "Z"])
    rows = members(B, ["W", "X", "P", "Q"])

    verdicts = constituent_verdicts(rows, [B], previous, listed(A, [])[:0], NO_HISTORY, SETTINGS)

    churn = verdict(verdicts, B, "churn")
    assert not churn.passed and churn.severity == "WARN"
    assert churn.details["added"] == ["P", "Q"] and churn.details["removed"] == ["Y", "Z"]


def test_members_must_be_listed_that_day_and_the_unresolved_are_listed():
    rows = members(A, ["W", "X", "Y"])

    verdicts = constituent_verdicts(
        rows, [A], rows[:0], listed(A, ["W", "X"]), NO_HISTORY, SETTINGS
    )

    resolve = verdict(verdicts, A, "members_resolve")
    assert not resolve.passed
    assert resolve.details["symbols"] == ["Y"] and resolve.details["against"] == "listing snapshot"


def test_without_listings_members_resolve_against_ticker_history():
    history = pl.DataFrame(
        {"symbol": ["W", "X", "Y"], "valid_from": [A, A, C], "valid_to": [None, None, None]}
    )

    verdicts = constituent_verdicts(
        members(A, ["W", "X", "Y"]), [A], members(A, [])[:0], listed(A, [])[:0], history, SETTINGS
    )

    assert verdict(verdicts, A, "members_resolve").details["symbols"] == ["Y"]


def test_a_symbol_twice_in_one_snapshot_fails_duplicate_members():
    rows = members(A, ["W", "X", "Y", "Y"])

    verdicts = constituent_verdicts(rows, [A], rows[:0], listed(A, [])[:0], NO_HISTORY, SETTINGS)

    assert not verdict(verdicts, A, "duplicate_members").passed


def test_reference_row_count_change_and_empty_snapshot():
    rows = pl.concat(
        [
            listed(A, ["W"] * 0 + [f"S{i}" for i in range(10)]),
            listed(B, [f"S{i}" for i in range(8)]),
        ]
    )

    verdicts = reference_verdicts(rows, [A, B, C], rows[:0], SETTINGS)

    assert verdict(verdicts, A, "empty_snapshot").passed
    change = verdict(verdicts, B, "row_count_change")
    assert not change.passed and change.details["change"] == 0.2
    assert not verdict(verdicts, C, "empty_snapshot").passed


def test_overlapping_intervals_are_found():
    membership = pl.DataFrame(
        {"index": ["SP500"] * 3, "symbol": ["X", "X", "Y"], "start": [A, B, A], "end": [C, None, B]}
    )

    assert overlapping_intervals(membership).select("symbol", "start").rows() == [("X", A)]


def test_members_are_not_judged_before_ticker_history_is_first_built():
    rows = members(A, ["W", "X", "Y"])

    verdicts = constituent_verdicts(rows, [A], rows[:0], listed(A, [])[:0], NO_HISTORY, SETTINGS)

    resolve = verdict(verdicts, A, "members_resolve")
    assert resolve.passed and "not built yet" in resolve.details["against"]
