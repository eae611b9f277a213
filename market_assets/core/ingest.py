"""Turn a rectangle of (symbol, session) partitions into as few vendor requests as possible."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence

import polars as pl

from market_assets.core.providers.base import BarRequest, FetchResult
from market_assets.core.providers.registry import ProviderRegistry
from market_assets.core.stores.layout import layout_for


def fetch_partition_bars(
    registry: ProviderRegistry,
    dataset: str,
    granularity: str,
    partitions: Sequence[tuple[str, dt.date]],
) -> FetchResult:
    """Fetch bars for exactly `partitions`, in bulk.

    Symbols that share the same set of sessions (a rectangle) go into one request spanning
    their first to last session; rows outside the asked partitions are dropped. A rectangle of
    250 sessions x 50 symbols is therefore one vendor request, not 12,500.
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
            end=last + dt.timedelta(days=1),
        )
        result = registry.fetch_bars(request)
        frames.append(result.frame)
        merged.requests += result.requests
        merged.failures.update(result.failures)
        merged.attempts.extend(result.attempts)
        sources.update(dict.fromkeys(s for s in result.source.split(",") if s))
    merged.source = ",".join(sources)
    merged.frame = _only_partitions(pl.concat(frames, how="diagonal_relaxed"), dataset, partitions)
    return merged


def _only_partitions(
    frame: pl.DataFrame, dataset: str, partitions: Sequence[tuple[str, dt.date]]
) -> pl.DataFrame:
    if frame.is_empty():
        return frame
    wanted = pl.DataFrame(
        {"symbol": [p[0] for p in partitions], "__session": [p[1] for p in partitions]},
        schema={"symbol": pl.String(), "__session": pl.Date()},
    )
    session = layout_for(dataset).session_expr()
    return (
        frame.with_columns(session.alias("__session"))
        .join(wanted, on=["symbol", "__session"], how="semi")
        .drop("__session")
    )
