"""Provider rows of option chains (OPTION_QUOTE_SCHEMA): the empty frame, the cast and the
snapshot times of a session.

Kept apart from chain.py so vendor adapters do not import the pricing libraries.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from market_assets.core.calendar import TradingCalendar, get_calendar
from market_assets.core.schemas import OPTION_QUOTE_SCHEMA
from market_assets.core.stores.layout import EXCHANGE_TZ


def empty_quotes() -> pl.DataFrame:
    return pl.DataFrame(schema=OPTION_QUOTE_SCHEMA)


def conform_quotes(frame: pl.DataFrame) -> pl.DataFrame:
    """Cast and order a provider's rows to OPTION_QUOTE_SCHEMA (missing columns are null).

    Raises ValueError naming the missing column when session, ts, symbol or contract is absent.
    """
    missing = [c for c in ("session", "ts", "symbol", "contract") if c not in frame.columns]
    if missing:
        raise ValueError(f"option quote frame is missing required column(s) {missing}")
    return frame.select(
        pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in OPTION_QUOTE_SCHEMA.items()
    )


def snapshot_instants(
    session: dt.date, times: Sequence[dt.time], calendar: TradingCalendar | None = None
) -> list[dt.datetime]:
    """UTC snapshot times of a session: its close, or the given New York times."""
    if not times:
        return [(calendar or get_calendar()).session_open_close(session)[1]]
    return [
        dt.datetime.combine(session, moment, tzinfo=EXCHANGE_TZ).astimezone(dt.UTC)
        for moment in times
    ]
