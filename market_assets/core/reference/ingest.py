"""Fetch one run's snapshots through the provider registry and check them for storage.

`reference`: listings (nasdaq_trader) and CIK maps (sec_tickers) are two capabilities of the
same route, asked separately: a failed CIK source leaves the listings stored without CIKs
(and says so), it does not lose the day. `index_constituents`: every index the route's
providers declare, each asked with the index as the registry's request key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from market_assets.core.providers.base import ProviderError
from market_assets.core.providers.registry import ProviderRegistry
from market_assets.core.reference.schemas import (
    CIK_MAP_SCHEMA,
    CONSTITUENT_SCHEMA,
    LISTING_COLUMNS,
    REFERENCE_SCHEMA,
)
from market_assets.core.reference.snapshots import (
    CheckedRows,
    check_constituents,
    check_reference,
    join_ciks,
)
from market_assets.core.reference.sources import (
    LISTINGS_KEY,
    ConstituentsRequest,
    SnapshotRequest,
)

REFERENCE_ROUTE = "reference"
CONSTITUENTS_ROUTE = "index_constituents"


@dataclass
class SnapshotFetch:
    """One run's checked rows and what a user wants to know about how they were made."""

    checked: CheckedRows
    requests: int = 0
    attempts: list[dict[str, str]] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> pl.DataFrame:
        return self.checked.valid

    def sessions_with_rows(self) -> int:
        return self.rows["session"].n_unique() if not self.rows.is_empty() else 0


def _request(sessions: Sequence[dt.date], exchange: str) -> SnapshotRequest:
    ordered = sorted(sessions)
    return SnapshotRequest(ordered[0], ordered[-1] + dt.timedelta(days=1), exchange)


def fetch_reference(
    registry: ProviderRegistry, sessions: Sequence[dt.date], exchange: str = "XNYS"
) -> SnapshotFetch:
    """The `reference` snapshots of `sessions`: listings with CIKs, checked for storage.

    Raises the registry's error when no provider returns listings (a failed CIK source only
    leaves CIKs null and is reported in `failures`).
    """
    request = _request(sessions, exchange)
    listings = registry.fetch_capability(
        REFERENCE_ROUTE,
        [LISTINGS_KEY],
        "fetch_listings",
        lambda provider, _: provider.fetch_listings(request),
        empty=pl.DataFrame(schema={c: REFERENCE_SCHEMA[c] for c in [*LISTING_COLUMNS, "source"]}),
        missing_rows_fail_over=False,
    )
    failures = dict(listings.failures)
    attempts = list(listings.attempts)
    requests = listings.requests
    try:
        ciks = registry.fetch_capability(
            REFERENCE_ROUTE,
            ["ciks"],
            "fetch_cik_map",
            lambda provider, _: provider.fetch_cik_map(request),
            empty=pl.DataFrame(schema={**CIK_MAP_SCHEMA, "source": pl.String()}),
            missing_rows_fail_over=False,
        )
        cik_frame = ciks.frame
        attempts += ciks.attempts
        requests += ciks.requests
    except ProviderError as error:
        cik_frame = pl.DataFrame(schema={**CIK_MAP_SCHEMA, "source": pl.String()})
        failures["cik_map"] = str(error)
    rows, facts = join_ciks(listings.frame, cik_frame)
    checked = check_reference(rows, sessions)
    facts["with_cik"] = int(checked.valid["cik"].is_not_null().sum())
    return SnapshotFetch(checked, requests, attempts, failures, facts)


def fetch_constituents(
    registry: ProviderRegistry, sessions: Sequence[dt.date], exchange: str = "XNYS"
) -> SnapshotFetch:
    """The `index_constituents` snapshots of `sessions` for every index the route's
    providers declare (`indexes`), checked for storage; one index failing does not lose the
    others (it is reported in `failures`)."""
    request = _request(sessions, exchange)
    indexes: dict[str, None] = {}
    for name in registry.route(CONSTITUENTS_ROUTE):
        for index in getattr(registry.providers[name], "indexes", ()):
            indexes[index] = None
    frames, attempts, failures, requests = [], [], {}, 0
    for index in indexes:
        asked = ConstituentsRequest(request.start, request.end, exchange, index=index)
        try:
            result = registry.fetch_capability(
                CONSTITUENTS_ROUTE,
                [index],
                "fetch_constituents",
                lambda provider, _, asked=asked: provider.fetch_constituents(asked),
                empty=pl.DataFrame(schema=CONSTITUENT_SCHEMA),
                missing_rows_fail_over=False,
            )
        except ProviderError as error:
            failures[index] = str(error)
            continue
        frames.append(result.frame)
        attempts += result.attempts
        requests += result.requests
        failures.update(result.failures)
    frame = (
        pl.concat(frames, how="diagonal_relaxed")
        if frames
        else pl.DataFrame(schema=CONSTITUENT_SCHEMA)
    )
    checked = check_constituents(frame, sessions)
    facts = {"indexes": list(indexes)}
    return SnapshotFetch(checked, requests, attempts, failures, facts)
