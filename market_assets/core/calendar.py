"""Exchange calendar (exchange_calendars, XNYS by default): sessions, early closes, minutes."""

from __future__ import annotations

import bisect
import datetime as dt
from functools import lru_cache

import exchange_calendars as xcals
import pandas as pd

DEFAULT_EXCHANGE = "XNYS"
CALENDAR_START = "1990-01-02"


@lru_cache(maxsize=1)
def _calendar_names() -> frozenset[str]:
    return frozenset(xcals.get_calendar_names(include_aliases=True))


def known_calendar(name: str) -> str:
    """`name` if exchange_calendars knows it; ValueError listing a few known names otherwise."""
    if name not in _calendar_names():
        raise ValueError(
            f"unknown exchange calendar {name!r}; use an exchange_calendars name such as "
            "XNYS, XNAS, XLON, XHKG, XTKS or CMES (exchange_calendars.get_calendar_names() "
            "lists them all)"
        )
    return name


@lru_cache(maxsize=8)
def _calendar(exchange: str) -> xcals.ExchangeCalendar:
    """The calendar from CALENDAR_START, or from its own earliest date when that is later
    (XTKS starts in 1997)."""
    earliest = xcals.get_calendar(exchange).bound_min()
    start = pd.Timestamp(CALENDAR_START)
    if earliest is not None and earliest > start:
        start = earliest
    return xcals.get_calendar(exchange, start=start)


@lru_cache(maxsize=8)
def _session_dates(exchange: str) -> list[dt.date]:
    """Every session of the calendar as dates, sorted: lake reads ask for sessions on every
    call, and slicing this list is about 100x faster than converting pandas timestamps."""
    return [ts.date() for ts in _calendar(exchange).sessions]


def _to_date(value: dt.date | str) -> dt.date:
    if isinstance(value, str):
        return dt.date.fromisoformat(value)
    if isinstance(value, dt.datetime):
        return value.date()
    return value


class TradingCalendar:
    """Sessions of one exchange. Dates are session labels (the exchange's local date)."""

    def __init__(self, exchange: str = DEFAULT_EXCHANGE) -> None:
        self.exchange = exchange
        self._cal = _calendar(exchange)

    @property
    def exchange_calendar(self) -> xcals.ExchangeCalendar:
        """The underlying exchange_calendars calendar (its `schedule`, `tz`, ...)."""
        return self._cal

    @property
    def first_session(self) -> dt.date:
        return self._cal.first_session.date()

    @property
    def last_session(self) -> dt.date:
        return self._cal.last_session.date()

    def is_session(self, day: dt.date | str) -> bool:
        day = _to_date(day)
        if not self.first_session <= day <= self.last_session:
            return False
        return bool(self._cal.is_session(pd.Timestamp(day)))

    def sessions(self, start: dt.date | str, end: dt.date | str) -> list[dt.date]:
        """Sessions in [start, end], both inclusive."""
        start, end = _to_date(start), _to_date(end)
        every = _session_dates(self.exchange)
        return every[bisect.bisect_left(every, start) : bisect.bisect_right(every, end)]

    def holidays(self, start: dt.date | str, end: dt.date | str) -> list[dt.date]:
        """Weekdays in [start, end] on which the exchange is closed."""
        start, end = _to_date(start), _to_date(end)
        open_days = set(self.sessions(start, end))
        weekdays = pd.bdate_range(start, end)
        return [d.date() for d in weekdays if d.date() not in open_days]

    def session_open_close(self, day: dt.date | str) -> tuple[dt.datetime, dt.datetime]:
        """UTC open and close of a session (regular hours)."""
        day = self._require_session(day)
        open_, close = self._cal.session_open_close(pd.Timestamp(day))
        return open_.to_pydatetime(), close.to_pydatetime()

    def minutes_in_session(self, day: dt.date | str) -> int:
        """Regular-hours one-minute bars in a session: 390, or fewer on an early close."""
        open_, close = self.session_open_close(day)
        return int((close - open_).total_seconds() // 60)

    def is_early_close(self, day: dt.date | str) -> bool:
        return self.minutes_in_session(day) < 390

    def early_closes(self, start: dt.date | str, end: dt.date | str) -> list[dt.date]:
        return [d for d in self.sessions(start, end) if self.is_early_close(d)]

    def previous_session(self, day: dt.date | str) -> dt.date:
        """The last session strictly before `day` (which need not be a session)."""
        day = _to_date(day)
        if self.is_session(day):
            return self._cal.previous_session(pd.Timestamp(day)).date()
        return self._cal.date_to_session(pd.Timestamp(day), "previous").date()

    def last_completed_sessions(self, count: int, now: dt.datetime | None = None) -> list[dt.date]:
        """The last `count` sessions whose regular close is at or before `now` (UTC)."""
        now = now or dt.datetime.now(dt.UTC)
        today = now.astimezone(dt.UTC).date()
        candidates = self.sessions(today - dt.timedelta(days=count * 2 + 14), today)
        done = [d for d in candidates if self.session_open_close(d)[1] <= now]
        return done[-count:]

    def _require_session(self, day: dt.date | str) -> dt.date:
        day = _to_date(day)
        if not self.is_session(day):
            raise ValueError(f"{day.isoformat()} is not a {self.exchange} session")
        return day


@lru_cache(maxsize=8)
def get_calendar(exchange: str = DEFAULT_EXCHANGE) -> TradingCalendar:
    return TradingCalendar(exchange)
