"""Point-in-time universes: which (symbol, sessions) a backfill of an index universe fetches.

A universe `index: SP500` holds, on each session, the index's members of that session. A
backfill fetches each member only over its membership intervals plus `lookback_sessions`
before each (indicators need history), under the ticker it had on each session: FB before
2022-06-09 and META after, because membership intervals carry the ticker of their time. The
lookback before an interval uses the security's ticker of those sessions when ticker_history
knows it (a rename inside the lookback), else the interval's own ticker; sessions a previous
interval of the same security already covers are not fetched twice.

Everything here is pure: membership frame in, windows out. `FetchWindow.last` None means the
window is open (the symbol is a member at the latest snapshot), so a window grows by itself
every session and the universe sensor asks only for windows it has not requested before.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from market_assets.core.calendar import get_calendar

Window = tuple[dt.date, dt.date | None]  # first session, last session (None: open)


@dataclass(frozen=True)
class FetchWindow:
    """Fetch `symbol` over the sessions in [first, last] (last None: up to the latest)."""

    symbol: str
    first: dt.date
    last: dt.date | None


def fetch_windows(
    membership: pl.DataFrame,
    index: str,
    lookback_sessions: int = 0,
    history: pl.DataFrame | None = None,
    exchange: str = "XNYS",
) -> list[FetchWindow]:
    """The windows a backfill of `index`'s members fetches (see the module docstring).

    `membership` has index, symbol, security_id, start, end (end exclusive, null: open);
    `history` (optional) is ticker_history.
    """
    members = membership.filter(pl.col("index") == index)
    if members.is_empty():
        return []
    calendar = get_calendar(exchange)
    sessions = calendar.sessions(
        members["start"].min() - dt.timedelta(days=lookback_sessions * 2 + 10),
        calendar.last_session,
    )
    tickers = _history_by_security(history)
    windows: list[FetchWindow] = []
    keyed = members.with_columns(
        pl.coalesce(
            "security_id", pl.concat_str("symbol", pl.lit("@"), pl.col("start").cast(pl.String))
        ).alias("_security")
    ).sort("_security", "start")
    for (security,), intervals in keyed.group_by("_security", maintain_order=True):
        covered_until: dt.date | None = dt.date.min  # last session already fetched
        for row in intervals.iter_rows(named=True):
            start, end = row["start"], row["end"]
            last = None if end is None else calendar.previous_session(end)
            position = bisect.bisect_left(sessions, start)
            lookback_first = sessions[max(position - lookback_sessions, 0)]
            if covered_until is None:
                break  # an earlier interval of this security is still open
            if covered_until >= lookback_first:
                lookback_first = _next_session(sessions, covered_until)
            if lookback_first < start:
                windows += _lookback_windows(
                    tickers.get(str(security), []), row["symbol"], lookback_first, start, sessions
                )
            windows.append(FetchWindow(row["symbol"], start, last))
            covered_until = last if last is None or covered_until < last else covered_until
    return merge_windows(windows, exchange)


def _next_session(sessions: Sequence[dt.date], day: dt.date) -> dt.date:
    position = bisect.bisect_right(sessions, day)
    return sessions[min(position, len(sessions) - 1)]


def _history_by_security(
    history: pl.DataFrame | None,
) -> dict[str, list[tuple[str, dt.date, dt.date | None]]]:
    if history is None or history.is_empty():
        return {}
    by_security: dict[str, list[tuple[str, dt.date, dt.date | None]]] = {}
    for security, symbol, valid_from, valid_to in (
        history.select("security_id", "symbol", "valid_from", "valid_to")
        .sort("valid_from")
        .iter_rows()
    ):
        by_security.setdefault(security, []).append((symbol, valid_from, valid_to))
    return by_security


def _lookback_windows(
    tickers: list[tuple[str, dt.date, dt.date | None]],
    fallback: str,
    first: dt.date,
    start: dt.date,
    sessions: Sequence[dt.date],
) -> list[FetchWindow]:
    """Windows covering the sessions in [first, start), each under the ticker of its time."""
    days = sessions[bisect.bisect_left(sessions, first) : bisect.bisect_left(sessions, start)]
    windows: list[FetchWindow] = []
    for day in days:
        symbol = next(
            (s for s, lo, hi in tickers if lo <= day and (hi is None or day < hi)), fallback
        )
        if windows and windows[-1].symbol == symbol:
            windows[-1] = FetchWindow(symbol, windows[-1].first, day)
        else:
            windows.append(FetchWindow(symbol, day, day))
    return windows


def merge_windows(windows: Iterable[FetchWindow], exchange: str = "XNYS") -> list[FetchWindow]:
    """Overlapping or adjacent windows of one symbol joined; sorted by symbol and first."""
    calendar = get_calendar(exchange)
    merged: list[FetchWindow] = []
    for window in sorted(windows, key=lambda w: (w.symbol, w.first)):
        if merged and merged[-1].symbol == window.symbol:
            previous = merged[-1]
            following = (
                calendar.sessions(
                    previous.last + dt.timedelta(days=1), previous.last + dt.timedelta(days=10)
                )[:1]
                if previous.last is not None
                else []
            )
            if previous.last is None or window.first <= (
                following[0] if following else previous.last
            ):
                last = (
                    None
                    if previous.last is None or window.last is None
                    else max(previous.last, window.last)
                )
                merged[-1] = FetchWindow(window.symbol, previous.first, last)
                continue
        merged.append(window)
    return merged


class MemberWindows:
    """Fetch windows by symbol, answering "is `symbol` fetched on `session`?" quickly."""

    def __init__(self, windows: Iterable[FetchWindow]) -> None:
        self._by_symbol: dict[str, list[Window]] = {}
        for window in windows:
            self._by_symbol.setdefault(window.symbol, []).append((window.first, window.last))
        for spans in self._by_symbol.values():
            spans.sort()
        self._firsts = {s: [w[0] for w in spans] for s, spans in self._by_symbol.items()}

    @property
    def symbols(self) -> list[str]:
        return sorted(self._by_symbol)

    def windows(self) -> dict[str, list[Window]]:
        return {symbol: list(spans) for symbol, spans in self._by_symbol.items()}

    def covers(self, symbol: str, session: dt.date) -> bool:
        spans = self._by_symbol.get(symbol)
        if not spans:
            return False
        position = bisect.bisect_right(self._firsts[symbol], session) - 1
        if position < 0:
            return False
        last = spans[position][1]
        return last is None or session <= last


def windows_to_request(
    plan: Mapping[str, Sequence[Window]], requested: Mapping[str, Sequence[Window]]
) -> dict[str, list[Window]]:
    """The parts of `plan`'s windows not inside any `requested` window of the same symbol."""
    missing: dict[str, list[Window]] = {}
    for symbol, windows in plan.items():
        done = sorted(requested.get(symbol, []))
        for first, last in windows:
            for piece in _subtract((first, last), done):
                missing.setdefault(symbol, []).append(piece)
    return missing


def _subtract(window: Window, done: Sequence[Window]) -> list[Window]:
    pieces: list[Window] = []
    first, last = window
    cursor: dt.date | None = first
    for lo, hi in done:
        if cursor is None:
            break
        if last is not None and lo > last:
            break
        if hi is not None and hi < cursor:
            continue
        if lo > cursor:
            pieces.append((cursor, lo - dt.timedelta(days=1)))
        cursor = None if hi is None else hi + dt.timedelta(days=1)
    if cursor is not None and (last is None or cursor <= last):
        pieces.append((cursor, last))
    return pieces


def windows_json(windows: Mapping[str, Sequence[Window]]) -> dict[str, list[list[str | None]]]:
    """Windows as JSON-ready lists (a sensor cursor)."""
    return {
        symbol: [[first.isoformat(), last.isoformat() if last else None] for first, last in spans]
        for symbol, spans in windows.items()
    }


def windows_from_json(
    document: Mapping[str, Sequence[Sequence[str | None]]],
) -> dict[str, list[Window]]:
    return {
        symbol: [
            (dt.date.fromisoformat(first), dt.date.fromisoformat(last) if last else None)
            for first, last in spans
        ]
        for symbol, spans in document.items()
    }
