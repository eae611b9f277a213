"""Turn a rectangle of (symbol, session) partitions into as few vendor requests as possible."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence

import polars as pl

from market_assets.core.calendar import TradingCalendar
from market_assets.core.providers.base import BarRequest, FetchResult, add_counts
from market_assets.core.providers.registry import ProviderRegistry
from market_assets.core.stores.layout import layout_for

NOT_REQUESTED = "not_requested"


def fetch_partition_bars(
    registry: ProviderRegistry,
    dataset: str,
    granularity: str,
    partitions: Sequence[tuple[str, dt.date]],
    calendar: TradingCalendar | None = None,
) -> FetchResult:
    """Fetch bars for exactly `partitions`, in bulk.

    Symbols that share the same set of sessions (a rectangle) go into one request spanning
    their first to last session. A rectangle of 250 sessions x 50 symbols is therefore one
    vendor request, not 12,500. Rows the vendor returned for a day `calendar` does not know
    as a session (a weekend, another exchange's holiday) are kept, so validation quarantines
    them with a rule name; the days after the last session up to the next session belong to
    the rectangle too (each day that is not a session belongs to the session before it), so
    a weekend row after the last Friday is accounted for once. Rows of real sessions that
    were not asked for are left out and counted in `dropped["not_requested"]`.
    """
    sessions_by_symbol: dict[str, set[dt.date]] = defaultdict(set)
    for symbol, session in partitions:
        sessions_by_symbol[symbol].add(session)
    groups: dict[tuple[dt.date, dt.date], list[str]] = defaultdict(list)
    for symbol, sessions in sessions_by_symbol.items():
        groups[(min(sessions), max(sessions))].append(symbol)

    frames: list[pl.DataFrame] = []
    merged = FetchResult(frame=pl.DataFrame(), source="")
    sources: dict[str, None] = {}
    for (first, last), symbols in sorted(groups.items()):
        request = BarRequest(
            dataset=dataset,
            symbols=tuple(sorted(symbols)),
            granularity=granularity,
            start=first,
            end=_next_session(calendar, last),
        )
        result = registry.fetch_bars(request)
        frames.append(result.frame)
        merged.requests += result.requests
        merged.failures.update(result.failures)
        merged.attempts.extend(result.attempts)
        add_counts(merged.dropped, result.dropped)
        sources.update(dict.fromkeys(s for s in result.source.split(",") if s))
    merged.source = ",".join(sources)
    frame = pl.concat(frames, how="diagonal_relaxed")
    merged.frame, not_requested = _only_partitions(frame, dataset, partitions, calendar)
    add_counts(merged.dropped, {NOT_REQUESTED: not_requested})
    return merged


def _next_session(calendar: TradingCalendar | None, session: dt.date) -> dt.date:
    """The first session after `session` (the day after when there is no calendar)."""
    following = session + dt.timedelta(days=1)
    if calendar is None:
        return following
    later = calendar.sessions(following, following + dt.timedelta(days=14))
    return later[0] if later else following


def _only_partitions(
    frame: pl.DataFrame,
    dataset: str,
    partitions: Sequence[tuple[str, dt.date]],
    calendar: TradingCalendar | None,
) -> tuple[pl.DataFrame, int]:
    """Rows of the asked partitions (and of non-sessions or with no timestamp, for
    quarantine), and how many other rows were left out."""
    if frame.is_empty():
        return frame, 0
    wanted = pl.DataFrame(
        {"symbol": [p[0] for p in partitions], "__session": [p[1] for p in partitions]},
        schema={"symbol": pl.String(), "__session": pl.Date()},
    ).with_columns(pl.lit(True).alias("__wanted"))
    session = layout_for(dataset).session_expr()
    marked = frame.with_columns(session.alias("__session")).join(
        wanted, on=["symbol", "__session"], how="left", maintain_order="left"
    )
    keep = pl.col("__wanted").fill_null(False) | pl.col("__session").is_null()  # null ts
    if calendar is not None:
        days = marked.get_column("__session").drop_nulls().unique().to_list()
        off_calendar = [day for day in days if not calendar.is_session(day)]
        keep = keep | pl.col("__session").is_in(off_calendar)
    kept = marked.filter(keep)
    return kept.drop("__session", "__wanted"), marked.height - kept.height
