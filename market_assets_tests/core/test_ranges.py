"""Which sessions an ingest range means (issue 13, item 8), at a fixed `now`."""

from __future__ import annotations

import datetime as dt

import pytest

from market_assets.core.calendar import get_calendar
from market_assets.core.ranges import RangeError, plan_sessions

D = dt.date
XNYS = get_calendar("XNYS")
START = D(2009, 1, 2)
FRIDAY_AFTERNOON = dt.datetime(2024, 3, 8, 19, 0, tzinfo=dt.UTC)  # 14:00 New York, still open


def plan(start: D, end: D, now: dt.datetime = FRIDAY_AFTERNOON, **options) -> object:
    return plan_sessions(
        "bars_1d", START, XNYS, start, end, datasets_file="cfg/datasets.yaml", now=now, **options
    )


def test_an_end_before_the_start_is_an_error_saying_end_is_exclusive():
    with pytest.raises(RangeError, match=r"--end 2024-03-01 is not after --start 2024-03-04"):
        plan(D(2024, 3, 4), D(2024, 3, 1))


def test_a_range_before_the_datasets_first_session_names_where_that_is_configured():
    with pytest.raises(RangeError) as raised:
        plan(D(2000, 1, 1), D(2001, 1, 1))

    message = str(raised.value)
    assert "entirely before the dataset's first session 2009-01-02" in message
    assert "datasets.bars_1d.start in cfg/datasets.yaml" in message


def test_a_range_clipped_at_the_datasets_first_session_says_so():
    result = plan(D(2008, 12, 29), D(2009, 1, 6))

    assert result.sessions == [D(2009, 1, 2), D(2009, 1, 5)]
    assert result.notes == [
        "bars_1d: --start 2008-12-29 is before the dataset's first session 2009-01-02 "
        "(datasets.bars_1d.start in cfg/datasets.yaml): clipped, ingesting from 2009-01-02"
    ]


def test_a_weekend_holds_no_session_and_says_which_calendar():
    with pytest.raises(RangeError, match=r"no XNYS session in \[2024-03-09, 2024-03-11\)"):
        plan(D(2024, 3, 9), D(2024, 3, 11))


def test_a_session_that_has_not_closed_is_not_ingested_and_the_clip_is_said():
    result = plan(D(2024, 3, 4), D(2024, 3, 16))

    assert result.sessions == XNYS.sessions(D(2024, 3, 4), D(2024, 3, 7))
    assert "6 session(s) 2024-03-08 .. 2024-03-15 has not closed yet" in result.notes[0]
    assert "ingesting up to 2024-03-07 (--allow-incomplete" in result.notes[0]


def test_only_unclosed_sessions_is_an_error():
    with pytest.raises(RangeError, match="no session in .* has closed yet: the first, 2024-03-08"):
        plan(D(2024, 3, 8), D(2024, 3, 20))


def test_allow_incomplete_takes_the_open_session_but_never_one_not_opened():
    result = plan(D(2024, 3, 4), D(2024, 3, 16), allow_incomplete=True)

    assert result.sessions[-1] == D(2024, 3, 8)
    assert any("session 2024-03-08 is still open" in note for note in result.notes)
    assert any("2024-03-11 .. 2024-03-15 has not opened yet" in note for note in result.notes)


def test_a_range_of_closed_sessions_is_taken_as_it_is():
    result = plan(D(2024, 3, 4), D(2024, 3, 8), now=dt.datetime(2024, 3, 9, tzinfo=dt.UTC))

    assert result.sessions == XNYS.sessions(D(2024, 3, 4), D(2024, 3, 7))
    assert result.notes == []
