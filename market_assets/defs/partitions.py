"""Partitions: trading sessions x symbol keys (docs/design.md, "Partitions and runs").

`date` is a weekday TimeWindowPartitionsDefinition whose exclusions are the exchange's
weekday holidays, so every key is a session. `symbol` is the dynamic partition set
`symbols`, filled from configs/universes.yaml by the universe sensor (or the CLI). A symbol
key is one ticker, or one stable bucket of tickers for large universes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from dagster import (
    DynamicPartitionsDefinition,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    TimeWindowPartitionsDefinition,
)

from market_assets.core.calendar import get_calendar
from market_assets.core.config import SymbolPartitions

SYMBOLS_PARTITION_NAME = "symbols"
DATE_DIMENSION = "date"
SYMBOL_DIMENSION = "symbol"
DATE_FORMAT = "%Y-%m-%d"
EXCHANGE_TIMEZONE = "America/New_York"

symbols_partitions = DynamicPartitionsDefinition(name=SYMBOLS_PARTITION_NAME)


@lru_cache(maxsize=32)
def sessions_partitions(start: dt.date, exchange: str = "XNYS") -> TimeWindowPartitionsDefinition:
    """Daily partitions on exchange sessions from `start` (holidays excluded)."""
    calendar = get_calendar(exchange)
    holidays = calendar.holidays(start, calendar.last_session)
    return TimeWindowPartitionsDefinition(
        start=start.strftime(DATE_FORMAT),
        fmt=DATE_FORMAT,
        cron_schedule="0 0 * * 1-5",
        timezone=EXCHANGE_TIMEZONE,
        # The current session is a partition from its midnight, so the after-close run can
        # materialize it the same evening.
        end_offset=1,
        exclusions=[dt.datetime.combine(day, dt.time(0)) for day in holidays],
    )


@lru_cache(maxsize=32)
def session_symbol_partitions(start: dt.date, exchange: str = "XNYS") -> MultiPartitionsDefinition:
    return MultiPartitionsDefinition(
        {DATE_DIMENSION: sessions_partitions(start, exchange), SYMBOL_DIMENSION: symbols_partitions}
    )


@dataclass(frozen=True)
class PartitionRectangle:
    """The (symbol, session) pairs a run covers, resolved from its partition keys.

    `by_key` keeps which pairs each partition key stands for (a bucket key: one pair per
    member symbol), in the run's key order.
    """

    pairs: tuple[tuple[str, dt.date], ...]
    by_key: tuple[tuple[str, tuple[tuple[str, dt.date], ...]], ...] = ()

    @property
    def symbols(self) -> list[str]:
        return sorted({symbol for symbol, _ in self.pairs})

    @property
    def sessions(self) -> list[dt.date]:
        return sorted({session for _, session in self.pairs})

    @property
    def keys(self) -> list[str]:
        return [key for key, _ in self.by_key]

    def keys_of_symbols(self, symbols: Iterable[str]) -> list[str]:
        """The partition keys holding any of `symbols`."""
        wanted = set(symbols)
        return [key for key, pairs in self.by_key if any(s in wanted for s, _ in pairs)]

    def __len__(self) -> int:
        return len(self.pairs)


def split_partition_key(key: str) -> tuple[dt.date, str]:
    """('2024-01-02|AAPL' or a MultiPartitionKey) -> (session date, symbol key)."""
    if isinstance(key, MultiPartitionKey):
        by_dim = key.keys_by_dimension
        date_key, symbol_key = by_dim[DATE_DIMENSION], by_dim[SYMBOL_DIMENSION]
    else:
        date_key, _, symbol_key = str(key).partition("|")
    return dt.date.fromisoformat(date_key), symbol_key


def resolve_partition_keys(
    keys: Iterable[str], symbol_partitions: SymbolPartitions
) -> PartitionRectangle:
    """Expand partition keys to (symbol, session) pairs; bucket keys expand to their members
    (an `index:` universe's keys: the members of that session, core.reference.pit)."""
    pairs: dict[tuple[str, dt.date], None] = {}
    by_key: list[tuple[str, tuple[tuple[str, dt.date], ...]]] = []
    for key in keys:
        session, symbol_key = split_partition_key(key)
        symbols = symbol_partitions.symbols_for_key(symbol_key, session)
        members = tuple((symbol, session) for symbol in symbols)
        by_key.append((str(key), members))
        for pair in members:
            pairs[pair] = None
    return PartitionRectangle(tuple(pairs), tuple(by_key))


def multi_key(session: dt.date, symbol_key: str) -> str:
    return f"{session.strftime(DATE_FORMAT)}|{symbol_key}"


def contiguous_blocks(wanted: Sequence[str], ordered: Sequence[str]) -> list[tuple[str, str]]:
    """Group `wanted` keys into (first, last) runs that are contiguous in `ordered`.

    Dagster ranges over a dynamic dimension follow the order keys were added, so a set of
    symbol keys becomes as few ranges (rectangles) as that order allows.
    """
    position = {key: i for i, key in enumerate(ordered)}
    missing = [key for key in wanted if key not in position]
    if missing:
        raise ValueError(f"symbol partition keys not registered: {missing}")
    indexes = sorted({position[key] for key in wanted})
    blocks: list[tuple[str, str]] = []
    start = prev = indexes[0] if indexes else None
    for index in indexes[1:]:
        if index != prev + 1:
            blocks.append((ordered[start], ordered[prev]))
            start = index
        prev = index
    if start is not None:
        blocks.append((ordered[start], ordered[prev]))
    return blocks
