"""Read stored option chains back: one chain as of a moment, or one contract's history.

Paths come from the lake layout (options/{symbol}/{YYYY}/{MM}/{DD}/chain.parquet), never from
listing folders. A chain "as of" a date is that session's last snapshot; as of a datetime it
is the latest snapshot at or before it, looking back to the previous sessions when the
moment's own session has none yet (up to LOOKBACK_SESSIONS).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from market_assets.core.calendar import get_calendar
from market_assets.core.options.contracts import parse_osi
from market_assets.core.schemas import OPTION_CHAIN_SCHEMA
from market_assets.core.stores.lake import ParquetLake
from market_assets.core.stores.layout import EXCHANGE_TZ
from market_assets.core.symbols import validate_symbol

DATASET = "options_chains"
LOOKBACK_SESSIONS = 5
KINDS = ("call", "put")


def _as_of_bounds(as_of: dt.date | dt.datetime) -> tuple[dt.date, dt.datetime | None]:
    """(session date to start from, latest ts allowed or None for the whole session)."""
    if isinstance(as_of, dt.datetime):
        moment = as_of.replace(tzinfo=dt.UTC) if as_of.tzinfo is None else as_of
        return moment.astimezone(EXCHANGE_TZ).date(), moment.astimezone(dt.UTC)
    return as_of, None


def option_chain(
    lake: ParquetLake,
    symbol: str,
    as_of: dt.date | dt.datetime,
    expirations: Sequence[dt.date] | None = None,
    strikes: Sequence[float] | tuple[float, float] | None = None,
    kind: str | None = None,
) -> pl.DataFrame:
    """The chain of `symbol` as of `as_of` (see the module docstring), sorted by expiration,
    strike and kind. `expirations` keeps those dates; `strikes` is a list of strikes or a
    (low, high) range given as a tuple, inclusive; `kind` is 'call' or 'put'.

    Raises ValueError naming the argument when `kind` is not call/put.
    """
    validate_symbol(symbol)
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind={kind!r} must be 'call' or 'put'")
    calendar = get_calendar()
    first, latest = _as_of_bounds(as_of)
    day = first if calendar.is_session(first) else calendar.previous_session(first)
    chain = pl.DataFrame(schema=OPTION_CHAIN_SCHEMA)
    for _ in range(LOOKBACK_SESSIONS):
        stored = lake.read_partitions(DATASET, [(symbol, day)])
        if latest is not None:
            stored = stored.filter(pl.col("ts") <= latest)
        if not stored.is_empty():
            chain = stored.filter(pl.col("ts") == pl.col("ts").max())
            break
        day = calendar.previous_session(day)
    if expirations is not None:
        chain = chain.filter(pl.col("expiration").is_in(list(expirations)))
    if strikes is not None:
        if isinstance(strikes, tuple) and len(strikes) == 2:
            chain = chain.filter(pl.col("strike").is_between(strikes[0], strikes[1]))
        else:
            chain = chain.filter(pl.col("strike").is_in([float(k) for k in strikes]))
    if kind is not None:
        chain = chain.filter(pl.col("kind") == kind)
    return chain.sort("expiration", "strike", "kind", "contract")


def underlying_of(contract: str) -> str:
    """The underlying ticker a contract's chain is stored under: its root without the
    adjusted-series digit (AAPL1 -> AAPL)."""
    return parse_osi(contract).root.rstrip("0123456789") or parse_osi(contract).root


def option_history(
    lake: ParquetLake,
    contract: str,
    start: dt.datetime,
    end: dt.datetime,
    symbol: str | None = None,
) -> pl.DataFrame:
    """Every stored snapshot of one contract with start <= ts < end, sorted by ts.

    `contract` is an OSI symbol (padded or compact); `symbol` is the underlying it is stored
    under (default: its root, without an adjusted-series digit). Raises ValueError naming
    the contract when it is not an OSI symbol.
    """
    parsed = parse_osi(contract)
    underlying = symbol or underlying_of(contract)
    frame = lake.read(DATASET, underlying, start, end)
    return frame.filter(pl.col("contract") == parsed.symbol).sort("ts")
