"""Snapshots -> intervals: absence ends an interval, a day with no snapshot does not."""

import datetime as dt

import polars as pl

from market_assets.core.reference.intervals import (
    members_as_of,
    membership_intervals,
    presence_intervals,
    with_security_ids,
)

D = [dt.date(2024, 1, day) for day in (2, 3, 4, 5, 8, 9, 10)]


def snapshots(present: dict[str, list[int]], cik: dict[str, int] | None = None) -> pl.DataFrame:
    """One row per symbol on each listed position of D."""
    rows = [
        {"session": D[i], "index": "SP500", "symbol": s, "cik": (cik or {}).get(s)}
        for s, positions in present.items()
        for i in positions
    ]
    return pl.DataFrame(
        rows,
        schema={"session": pl.Date, "index": pl.String, "symbol": pl.String, "cik": pl.Int64},
    )


def test_absence_from_a_later_snapshot_ends_the_interval_on_that_session():
    frame = snapshots({"AAA": [0, 1, 2, 3, 4, 5, 6], "BBB": [0, 1, 2], "CCC": [3, 4, 5, 6]})

    intervals = membership_intervals(frame)

    rows = {r["symbol"]: (r["start"], r["end"]) for r in intervals.iter_rows(named=True)}
    assert rows == {"AAA": (D[0], None), "BBB": (D[0], D[3]), "CCC": (D[3], None)}


def test_a_session_without_any_snapshot_does_not_break_an_interval():
    frame = snapshots({"AAA": [0, 1, 3, 4], "BBB": [0, 1, 3]})  # no snapshot at all on D[2]

    intervals = membership_intervals(frame)

    rows = {r["symbol"]: (r["start"], r["end"]) for r in intervals.iter_rows(named=True)}
    assert rows == {"AAA": (D[0], None), "BBB": (D[0], D[4])}


def test_leaving_and_returning_gives_two_intervals():
    frame = snapshots({"PCG": [0, 1, 4, 5], "AAA": [0, 1, 2, 3, 4, 5]})

    pcg = membership_intervals(frame).filter(pl.col("symbol") == "PCG")

    assert pcg.select("start", "end").rows() == [(D[0], D[2]), (D[4], None)]


def test_a_change_from_one_known_cik_to_another_starts_a_new_interval():
    frame = snapshots({"XYZ": [0, 1, 2, 3]}).with_columns(
        pl.when(pl.col("session") < D[2]).then(111).otherwise(222).alias("cik")
    )

    intervals = membership_intervals(frame)

    assert intervals.select("cik", "start", "end").rows() == [(111, D[0], D[2]), (222, D[2], None)]


def test_presence_intervals_keep_the_last_known_attribute():
    frame = pl.DataFrame(
        {
            "session": D[:3],
            "symbol": ["AAA"] * 3,
            "cik": [None, 5, None],
            "name": ["Old", "New", None],
        },
        schema={"session": pl.Date, "symbol": pl.String, "cik": pl.Int64, "name": pl.String},
    )

    intervals = presence_intervals(frame, attributes=["cik", "name"])

    assert intervals.select("cik", "name", "last_seen").row(0) == (5, "New", D[2])


def test_members_as_of_never_shows_an_end_after_as_of():
    frame = snapshots({"AAA": [0, 1, 2, 3], "BBB": [0, 1]})
    history = pl.DataFrame(
        {
            "symbol": ["AAA", "BBB"],
            "security_id": ["AAA@2024-01-02", "BBB@2024-01-02"],
            "valid_from": [D[0], D[0]],
            "valid_to": [None, D[2]],
        }
    )
    intervals = with_security_ids(membership_intervals(frame), history)

    answer = members_as_of(intervals, "SP500", D[1])

    assert answer["symbol"].to_list() == ["AAA", "BBB"]
    assert "end" not in answer.columns
    assert answer["security_id"].to_list() == ["AAA@2024-01-02", "BBB@2024-01-02"]
