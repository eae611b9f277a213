"""Which sessions a requested [start, end) range means for one dataset, said out loud.

`market-assets ingest --start A --end B` asks for the sessions of the dataset's exchange in
[A, B). What it gets is never silently different: a range clipped to the dataset's first
session says so, a range that holds no session at all is an error naming where the
dataset's first session is configured, and a session that has not closed yet is not ingested
(its bars would be partial) unless the user allows it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from market_assets.core.calendar import TradingCalendar
from market_assets.core.errors import MarketAssetsError


class RangeError(MarketAssetsError):
    """A requested range holds no session the dataset can ingest; the message says why."""


@dataclass(frozen=True)
class SessionPlan:
    """The sessions to ingest for one dataset, and what the user must be told about them."""

    dataset: str
    sessions: list[dt.date]
    notes: list[str] = field(default_factory=list)


def plan_sessions(
    dataset: str,
    dataset_start: dt.date,
    calendar: TradingCalendar,
    start: dt.date,
    end: dt.date,
    *,
    datasets_file: Path | str = "configs/datasets.yaml",
    start_key: str | None = None,
    now: dt.datetime | None = None,
    allow_incomplete: bool = False,
) -> SessionPlan:
    """Sessions of `calendar` in [start, end) (end exclusive) that `dataset` can ingest.

    Raises RangeError when the range is empty or reversed, lies entirely before the
    dataset's first session (naming `datasets.<dataset>.start` in `datasets_file`), holds no
    session of the calendar, or holds only sessions that have not closed yet at `now` (a
    session still open is allowed with `allow_incomplete`; one not yet opened never is).
    Notes say when the range was clipped at either end. `start_key` names the datasets.yaml
    entry holding the first session when it is not `dataset` (adjusted bars follow bars_1d).
    """
    now = now or dt.datetime.now(dt.UTC)
    where = f"datasets.{start_key or dataset}.start in {datasets_file}"
    if end <= start:
        raise RangeError(
            f"{dataset}: --end {end} is not after --start {start}; the range [start, end) is "
            "empty (end is exclusive: --start 2024-03-04 --end 2024-03-09 is one week)"
        )
    if end <= dataset_start:
        raise RangeError(
            f"{dataset}: [{start}, {end}) is entirely before the dataset's first session "
            f"{dataset_start} ({where}); ask for sessions from {dataset_start} on, or move "
            "the dataset's start"
        )
    notes: list[str] = []
    first = start
    if start < dataset_start:
        first = dataset_start
        notes.append(
            f"{dataset}: --start {start} is before the dataset's first session "
            f"{dataset_start} ({where}): clipped, ingesting from {dataset_start}"
        )
    sessions = calendar.sessions(first, end - dt.timedelta(days=1))
    if not sessions:
        raise RangeError(
            f"{dataset}: no {calendar.exchange} session in [{first}, {end}) (weekends and "
            "exchange holidays have none)"
        )
    closed = _count_until(sessions, lambda day: calendar.session_open_close(day)[1] <= now)
    started = _count_until(sessions, lambda day: calendar.session_open_close(day)[0] <= now)
    keep = sessions[: started if allow_incomplete else closed]
    later = sessions[len(keep) :]
    if not keep:
        hint = "" if allow_incomplete else " (--allow-incomplete ingests a session still open)"
        closes = calendar.session_open_close(sessions[0])[1]
        raise RangeError(
            f"{dataset}: no session in [{first}, {end}) has closed yet: the first, "
            f"{sessions[0]}, closes at {closes:%Y-%m-%d %H:%M} UTC{hint}"
        )
    if later:
        span = f"{later[0]}" if len(later) == 1 else f"{later[0]} .. {later[-1]}"
        reason = "has not opened yet" if allow_incomplete else "has not closed yet"
        hint = "" if allow_incomplete else " (--allow-incomplete ingests a session still open)"
        notes.append(
            f"{dataset}: {len(later)} session(s) {span} {reason}, not ingested: clipped, "
            f"ingesting up to {keep[-1]}{hint}"
        )
    if allow_incomplete and len(keep) > closed:
        notes.append(
            f"{dataset}: session {keep[-1]} is still open: its bars are partial "
            "(--allow-incomplete); ingest it again after the close"
        )
    return SessionPlan(dataset, keep, notes)


def _count_until(sessions: list[dt.date], done: Callable[[dt.date], bool]) -> int:
    """How many of the sorted `sessions` are `done` (only the last few can be pending, so
    the search walks back from the end)."""
    count = len(sessions)
    while count and not done(sessions[count - 1]):
        count -= 1
    return count
