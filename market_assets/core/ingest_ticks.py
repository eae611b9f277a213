"""Turn a rectangle of (symbol, session) tick partitions into as few vendor requests as possible."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence

import polars as pl

from market_assets.core.providers.base import FetchResult, TickRequest
from market_assets.core.providers.registry import ProviderRegistry
from market_assets.core.schemas import TICK_TIME_COLUMN, empty_ticks
from market_assets.core.stores.layout import layout_for


def fetch_partition_ticks(
    registry: ProviderRegistry,
    dataset: str,
    partitions: Sequence[tuple[str, dt.date]],
) -> FetchResult:
    """Fetch ticks of `dataset` (trades, tbbo, statistics) for exactly `partitions`, in bulk.

    Symbols sharing the same first and last session go into one request spanning that range
    (the provider batches symbols further if its vendor needs it); rows whose (symbol,
    session of ts_event) is not an asked partition are dropped.
    """
    sessions_by_symbol: dict[str, set[dt.date]] = defaultdict(set)
    for symbol, session in partitions:
        sessions_by_symbol[symbol].add(session)
    groups: dict[tuple[dt.date, dt.date], list[str]] = defaultdict(list)
    for symbol, sessions in sessions_by_symbol.items():
        groups[(min(sessions), max(sessions))].append(symbol)

    merged = FetchResult(frame=empty_ticks(dataset), source="")
    frames: list[pl.DataFrame] = []
    sources: dict[str, None] = {}
    for (first, last), symbols in sorted(groups.items()):
        request = TickRequest(dataset, tuple(sorted(symbols)), first, last + dt.timedelta(days=1))
        result = registry.fetch_ticks(request)
        frames.append(result.frame)
        merged.requests += result.requests
        merged.failures.update(result.failures)
        merged.attempts.extend(result.attempts)
        sources.update(dict.fromkeys(s for s in result.source.split(",") if s))
    merged.source = ",".join(sources)
    if frames:
        merged.frame = _only_partitions(pl.concat(frames), dataset, partitions)
    return merged


def _only_partitions(
    frame: pl.DataFrame, dataset: str, partitions: Sequence[tuple[str, dt.date]]
) -> pl.DataFrame:
    if frame.is_empty():
        return frame
    wanted = pl.DataFrame(
        {"symbol": [p[0] for p in partitions], "__session": [p[1] for p in partitions]},
        schema={"symbol": pl.String(), "__session": pl.Date()},
    ).unique()
    session = layout_for(dataset).session_expr()
    return (
        frame.with_columns(session.alias("__session"))
        .join(wanted, on=["symbol", "__session"], how="semi", maintain_order="left")
        .drop("__session")
        .sort("symbol", TICK_TIME_COLUMN, maintain_order=True)
    )
