"""How a partition rewrite reaches exactly its rows: literal deletes, locks and a budget.

A rewrite deletes the listed (symbol, session) partitions and COPYs the new rows in. On a
TimescaleDB hypertable the delete must filter with literal `symbol IN (...) AND ts >= ...
AND ts < ...` bounds: only then can TimescaleDB skip compressed batches by their segment
(symbol) and min/max `ts` metadata and exclude chunks. A join against `unnest(...)`, or
bounds OR-ed across symbols, decompresses every batch in range (measured on 2.28.3: one
390-row partition decompressed 468,000 tuples through unnest, 1,000 through literals).

So the partitions are grouped into blocks: for each symbol, runs of sessions whose bounds
touch (consecutive calendar days), then the symbols that share a block's exact bounds. Each
block becomes one DELETE statement; all of them go to the server in one round trip.

Writers of the same partitions are serialised by transaction-level advisory locks, one per
slot of (table, symbol, month) hashed into `LOCK_SLOTS` slots, taken in slot order, so at
most `LOCK_SLOTS` locks per transaction and no deadlock between writers.

`decompression_budget` gives the `timescaledb.max_tuples_decompressed_per_dml_transaction`
bound for one rewrite: what the listed partitions can hold, plus one compressed batch at
each edge of each block, capped by what the touched chunks can hold per symbol. A statement
whose filter stopped reaching the compressed batches then fails instead of decompressing
the whole hypertable.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby

from psycopg import sql

from market_assets.core.stores.layout import DatasetLayout

LOCK_SLOTS = 64
"""Advisory-lock slots per table; a rewrite takes at most this many locks."""
BATCH_ROWS = 1_000
"""Rows per compressed batch (TimescaleDB's fixed target batch size)."""
TICK_ROWS_PER_SESSION = 5_000_000
"""Ceiling of one tick partition (symbol-session) for the decompression budget: the busiest
US equities print about 1-3 million trades on a heavy day."""

Bound = dt.datetime | dt.date | int


@dataclass(frozen=True)
class Block:
    """Symbols whose partitions span exactly [lo, hi) of the table's placing column."""

    symbols: tuple[str, ...]
    lo: Bound
    hi: Bound
    sessions: int


def session_range(layout: DatasetLayout, session: dt.date, *, ns: bool) -> tuple[Bound, Bound]:
    """[lo, hi) of one session in the column a rewrite filters on.

    Tables that file rows by a session column (quarantine, corporate actions) use dates;
    bar tables use the session's UTC bounds; tick tables the same in epoch nanoseconds.
    """
    if layout.session_column:
        return session, session + dt.timedelta(days=1)
    lo, hi = layout.session_bounds(session)
    if ns:
        return epoch_ns(lo), epoch_ns(hi)
    return lo, hi


def partition_blocks(
    layout: DatasetLayout, partitions: Iterable[tuple[str, dt.date]], *, ns: bool = False
) -> list[Block]:
    """Blocks covering exactly `partitions`, ordered by (lo, hi)."""
    runs: dict[tuple[Bound, Bound], list[str]] = {}
    counts: dict[tuple[Bound, Bound], int] = {}
    by_symbol = sorted(set(partitions))
    for symbol, items in groupby(by_symbol, key=lambda p: p[0]):
        lo: Bound | None = None
        hi: Bound | None = None
        count = 0
        for _, session in items:
            start, end = session_range(layout, session, ns=ns)
            if hi is not None and start == hi:
                hi, count = end, count + 1
                continue
            if lo is not None and hi is not None:
                runs.setdefault((lo, hi), []).append(symbol)
                counts[(lo, hi)] = count
            lo, hi, count = start, end, 1
        if lo is not None and hi is not None:
            runs.setdefault((lo, hi), []).append(symbol)
            counts[(lo, hi)] = count
    return [
        Block(tuple(symbols), lo, hi, counts[(lo, hi)])
        for (lo, hi), symbols in sorted(runs.items(), key=lambda item: item[0])
    ]


def delete_statements(table: str, column: str, blocks: Sequence[Block]) -> list[sql.Composed]:
    """One `DELETE ... WHERE symbol IN (...) AND column >= lo AND column < hi` per block,
    every value a literal."""
    return [
        sql.SQL(
            "DELETE FROM {table} WHERE symbol IN ({symbols}) AND {column} >= {lo} "
            "AND {column} < {hi}"
        ).format(
            table=sql.Identifier(table),
            symbols=sql.SQL(", ").join(map(sql.Literal, block.symbols)),
            column=sql.Identifier(column),
            lo=sql.Literal(block.lo),
            hi=sql.Literal(block.hi),
        )
        for block in blocks
    ]


def lock_namespace(table: str) -> int:
    """First key (int4) of a table's advisory locks."""
    return zlib.crc32(f"market_assets:{table}".encode()) & 0x7FFFFFFF


def lock_slots(partitions: Iterable[tuple[str, dt.date]]) -> list[int]:
    """Sorted advisory-lock slots of (symbol, month) for `partitions`."""
    return sorted(
        {
            zlib.crc32(f"{symbol}|{session:%Y-%m}".encode()) % LOCK_SLOTS
            for symbol, session in partitions
        }
    )


def decompression_budget(
    blocks: Sequence[Block],
    *,
    rows_per_session: int,
    chunk_interval: dt.timedelta | int,
    rows_per_chunk: int,
) -> int:
    """Most tuples a correct rewrite of `blocks` can decompress (at least one batch).

    Per symbol: the rows its blocks can hold plus one partial batch at each block edge,
    but never more than every row the symbol can have in the chunks the blocks touch.
    """
    per_symbol: dict[str, int] = {}
    chunks: dict[str, set[int]] = {}
    for block in blocks:
        rows = block.sessions * rows_per_session + 2 * BATCH_ROWS
        first, last = (
            _chunk_index(block.lo, chunk_interval),
            _chunk_index(block.hi, chunk_interval, end=True),
        )
        for symbol in block.symbols:
            per_symbol[symbol] = per_symbol.get(symbol, 0) + rows
            chunks.setdefault(symbol, set()).update(range(first, last + 1))
    total = 0
    for symbol, rows in per_symbol.items():
        touched = chunks[symbol]
        # one chunk of slack per run of touched chunks: our grid may differ from the server's
        runs = sum(1 for index in touched if index - 1 not in touched)
        total += min(rows, (len(touched) + runs) * rows_per_chunk)
    return max(total, BATCH_ROWS)


def _chunk_index(bound: Bound, interval: dt.timedelta | int, *, end: bool = False) -> int:
    """Index of the chunk holding `bound` (or the last instant before it when `end`)."""
    if isinstance(bound, int):
        value, step = bound - (1 if end else 0), int(interval)  # type: ignore[arg-type]
    else:
        moment = (
            bound
            if isinstance(bound, dt.datetime)
            else dt.datetime.combine(bound, dt.time(0), tzinfo=dt.UTC)
        )
        value = epoch_us(moment) - (1 if end else 0)
        step = int(interval / dt.timedelta(microseconds=1))  # type: ignore[operator]
    return value // step


def epoch_ns(moment: dt.datetime) -> int:
    """Nanoseconds since the epoch of an aware datetime, exactly (no float rounding)."""
    return epoch_us(moment) * 1000


def epoch_us(moment: dt.datetime) -> int:
    """Microseconds since the epoch of an aware datetime, exactly."""
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
