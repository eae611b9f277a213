"""Provider protocols, requests, results and the error hierarchy every adapter uses.

Errors form one hierarchy so callers catch at the right level:

    ProviderError
    ├── TransientError          retried with exponential backoff and jitter
    │   └── RateLimitedError    retried after the vendor's `retry_after`
    └── PermanentError          never retried
        ├── AuthError
        ├── BadRequestError
        ├── UnknownSymbolError
        └── NoDataError
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import polars as pl

from market_assets.core.errors import MarketAssetsError
from market_assets.core.schemas import GRANULARITIES, TICK_SCHEMAS
from market_assets.core.symbols import validate_symbols


class ProviderError(MarketAssetsError):
    """A vendor call failed. The message names vendor, dataset, symbols and time range."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        vendor: str,
        dataset: str = "",
        symbols: tuple[str, ...] = (),
        start: dt.date | dt.datetime | None = None,
        end: dt.date | dt.datetime | None = None,
    ) -> None:
        self.vendor = vendor
        self.dataset = dataset
        self.symbols = tuple(symbols)
        self.start = start
        self.end = end
        self.reason = message
        super().__init__(self._describe(message))

    def _describe(self, message: str) -> str:
        parts = [f"{self.vendor}"]
        if self.dataset:
            parts.append(f"dataset={self.dataset}")
        if self.symbols:
            shown = ",".join(self.symbols[:10]) + ("..." if len(self.symbols) > 10 else "")
            parts.append(f"symbols={shown}")
        if self.start is not None or self.end is not None:
            parts.append(f"range=[{self.start}, {self.end})")
        return f"{' '.join(parts)}: {message}"


class TransientError(ProviderError):
    """Server error, timeout or connection reset: worth retrying."""

    retryable = True


class RateLimitedError(TransientError):
    """The vendor said slow down (HTTP 429); wait `retry_after` seconds when it says."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class PermanentError(ProviderError):
    """Retrying will not help."""


class AuthError(PermanentError):
    """Missing or rejected credentials (the message names the environment variable)."""


class BadRequestError(PermanentError):
    """The vendor rejected the request's arguments."""


class UnknownSymbolError(PermanentError):
    """The vendor does not know a symbol."""


class NoDataError(PermanentError):
    """The vendor answered with no data for the request."""


@dataclass(frozen=True)
class BarRequest:
    """Bars for `symbols` over the sessions in [start, end): start inclusive, end exclusive.

    `start` and `end` are session dates (exchange-local). `granularity` is one of
    1m, 5m, 15m, 1h, 1d.
    """

    dataset: str
    symbols: tuple[str, ...]
    granularity: str
    start: dt.date
    end: dt.date

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbols", tuple(validate_symbols(self.symbols)))
        if self.granularity not in GRANULARITIES:
            raise ValueError(
                f"granularity {self.granularity!r} is not one of {list(GRANULARITIES)}"
            )
        if not self.start < self.end:
            raise ValueError(f"start {self.start} must be before end {self.end} (end exclusive)")

    def for_symbols(self, symbols: tuple[str, ...]) -> BarRequest:
        return BarRequest(self.dataset, symbols, self.granularity, self.start, self.end)


@dataclass
class FetchResult:
    """What a fetch returned: canonical rows plus the bookkeeping a user wants to see."""

    frame: pl.DataFrame
    source: str
    requests: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # symbol -> error message
    attempts: list[dict[str, str]] = field(default_factory=list)  # provider, outcome
    # Facts about the rows a user must see, copied into the provider's attempt record, e.g.
    # {"price_adjustment": "adjusted"} for files that hold adjusted prices.
    notes: dict[str, str] = field(default_factory=dict)
    # Rows the provider read but deliberately did not return, by reason (e.g.
    # {"extended_hours": 570} under `regular_hours_only`): never silent, they are counted in
    # the run's metadata (`dropped_rows`) and the CLI summary.
    dropped: dict[str, int] = field(default_factory=dict)


def add_counts(total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    """`total` with `more` added key by key (in place; returned for convenience)."""
    for reason, count in more.items():
        if count:
            total[reason] = total.get(reason, 0) + int(count)
    return total


@runtime_checkable
class BarSource(Protocol):
    """A provider of OHLCV bars in the canonical schema (market_assets.core.schemas)."""

    name: str
    granularities: tuple[str, ...]

    def fetch_bars(self, request: BarRequest) -> FetchResult:
        """Fetch bars; raise a ProviderError subclass on failure.

        A symbol the vendor does not know is reported in `FetchResult.failures` and the
        other symbols are still returned, so one bad symbol never fails a whole request.
        """
        ...


@dataclass(frozen=True)
class ActionsRequest:
    symbols: tuple[str, ...]
    start: dt.date
    end: dt.date


@runtime_checkable
class ActionsSource(Protocol):
    """A provider of corporate actions (splits, cash dividends)."""

    name: str

    def fetch_actions(self, request: ActionsRequest) -> FetchResult: ...


@dataclass(frozen=True)
class TickRequest:
    """Ticks of one tick dataset (trades, tbbo, statistics) for `symbols` over the sessions in
    [start, end): start inclusive, end exclusive, both session dates (exchange-local)."""

    dataset: str
    symbols: tuple[str, ...]
    start: dt.date
    end: dt.date

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbols", tuple(validate_symbols(self.symbols)))
        if self.dataset not in TICK_SCHEMAS:
            raise ValueError(
                f"tick dataset {self.dataset!r} is not one of {sorted(TICK_SCHEMAS)}"
            )
        if not self.start < self.end:
            raise ValueError(f"start {self.start} must be before end {self.end} (end exclusive)")

    def for_symbols(self, symbols: tuple[str, ...]) -> TickRequest:
        return TickRequest(self.dataset, symbols, self.start, self.end)


@runtime_checkable
class TickSource(Protocol):
    """A provider of ticks in the canonical tick schemas (market_assets.core.schemas)."""

    name: str
    tick_datasets: tuple[str, ...]

    def fetch_ticks(self, request: TickRequest) -> FetchResult:
        """Fetch ticks; raise a ProviderError subclass on failure (same contract as bars)."""
        ...


@dataclass(frozen=True)
class FundamentalsRequest:
    """Every reported fact (all periods, all filings) of `symbols`: SEC companyfacts."""

    symbols: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbols", tuple(validate_symbols(self.symbols)))


@runtime_checkable
class FundamentalsSource(Protocol):
    """A provider of reported financial facts in `schemas.FUNDAMENTAL_SCHEMA` (no `session`
    or `field` yet: the ingest places and maps them)."""

    name: str

    def fetch_fundamentals(self, request: FundamentalsRequest) -> FetchResult: ...


@dataclass(frozen=True)
class OptionChainRequest:
    """Option chains of the underlyings `symbols` for the sessions in [start, end): start
    inclusive, end exclusive, both session dates (exchange-local).

    `snapshot_times` are New York times of intraday snapshots; empty means one end-of-day
    snapshot per session, stamped at the session close.
    """

    symbols: tuple[str, ...]
    start: dt.date
    end: dt.date
    snapshot_times: tuple[dt.time, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbols", tuple(validate_symbols(self.symbols)))
        if not self.start < self.end:
            raise ValueError(f"start {self.start} must be before end {self.end} (end exclusive)")

    def for_symbols(self, symbols: tuple[str, ...]) -> OptionChainRequest:
        return OptionChainRequest(symbols, self.start, self.end, self.snapshot_times)


@runtime_checkable
class OptionsSource(Protocol):
    """A provider of option chain snapshots (OPTION_QUOTE_SCHEMA, one row per contract and
    snapshot); greeks and IV are recomputed downstream (market_assets.core.options.chain)."""

    name: str

    def fetch_options(self, request: OptionChainRequest) -> FetchResult:
        """Fetch chains; same failure contract as `BarSource.fetch_bars`."""
        ...
