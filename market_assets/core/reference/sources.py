"""Capability protocols and requests of the reference and index-membership providers.

A snapshot request names sessions [start, end) (start inclusive, end exclusive, session dates
of the exchange). A provider returns rows only for the sessions whose snapshot it can know on
that session: a directory published on 2025-07-21 describes 2025-07-21 and nothing earlier;
an interval file describes every session it covers. Sessions it cannot describe are simply
absent from the frame (and named in `FetchResult.notes`), never filled from another day.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from market_assets.core.calendar import get_calendar
from market_assets.core.providers.base import FetchResult

LISTINGS_KEY = "listings"
"""Request key of listing and CIK fetches in the registry (which fails over per key)."""


@dataclass(frozen=True)
class SnapshotRequest:
    """Snapshots for the sessions in [start, end) of `exchange`."""

    start: dt.date
    end: dt.date
    exchange: str = "XNYS"

    def __post_init__(self) -> None:
        if not self.start < self.end:
            raise ValueError(f"start {self.start} must be before end {self.end} (end exclusive)")

    def sessions(self) -> list[dt.date]:
        return get_calendar(self.exchange).sessions(self.start, self.end - dt.timedelta(days=1))


@dataclass(frozen=True)
class ConstituentsRequest(SnapshotRequest):
    """Members of `index` (e.g. SP500) for the sessions in [start, end)."""

    index: str = "SP500"


@runtime_checkable
class ListingSource(Protocol):
    """Ticker listings (REFERENCE_SCHEMA's listing columns) per session."""

    name: str

    def fetch_listings(self, request: SnapshotRequest) -> FetchResult: ...


@runtime_checkable
class CikSource(Protocol):
    """Ticker -> CIK maps (CIK_MAP_SCHEMA), dated or undated."""

    name: str

    def fetch_cik_map(self, request: SnapshotRequest) -> FetchResult: ...


@runtime_checkable
class ConstituentsSource(Protocol):
    """Index members (CONSTITUENT_SCHEMA) per session."""

    name: str
    indexes: tuple[str, ...]

    def fetch_constituents(self, request: ConstituentsRequest) -> FetchResult: ...


def first_session_on_or_after(day: dt.date, exchange: str = "XNYS") -> dt.date | None:
    """The session a snapshot published on `day` describes (a weekend file: the next session)."""
    sessions = get_calendar(exchange).sessions(day, day + dt.timedelta(days=10))
    return sessions[0] if sessions else None
