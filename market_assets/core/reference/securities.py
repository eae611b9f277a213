"""ticker_history: every ticker of every security, with dates, from all the evidence we hold.

Evidence is a set of presence intervals (intervals.presence_intervals) of tickers:

- `reference`: daily listing snapshots (NASDAQ Trader directories, with SEC CIKs). A ticker
  missing from a later listing snapshot was delisted (or renamed, see below).
- `index:<INDEX>`: daily index-membership snapshots. A ticker leaving an index says nothing
  about its listing, so such an end is `unobserved`.

Intervals of one ticker from different evidence are joined where they overlap or touch and
their CIKs agree (a null CIK agrees with anything); a ticker whose known CIK changes starts a
new interval. Then securities are assigned in time order:

1. **relisted**: the ticker's previous interval had the same known CIK: same security.
   (The same ticker and CIK across a gap that no listing snapshot saw closes is one interval.)
2. **renamed**: the interval starts on the very session another ticker's interval of the
   same known CIK ended, and exactly one such ticker exists: same security (FB -> META on
   2022-06-09); the old interval's `end_change` becomes `renamed`.
3. **listed**: otherwise a new security. A reused ticker (same symbol, different or unknown
   CIK, after a gap) is therefore a new security: sources without CIKs for old tickers
   (the S&P interval file) cannot prove two intervals are one company, and a false link would
   splice two companies' prices, which is worse than a missed one.

`security_id` is `<first ticker>@<first session>` (FB@2013-12-23 for Meta Platforms), in the
spirit of QuantConnect Lean's security identifiers: stable while no earlier evidence of the
security is added, readable, and it never depends on anything after the first sighting.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from market_assets.core.reference.intervals import presence_intervals
from market_assets.core.reference.schemas import TICKER_HISTORY_SCHEMA, empty

LISTING_EVIDENCE = "reference"
DELISTED = "delisted"
UNOBSERVED = "unobserved"
RENAMED = "renamed"


@dataclass
class _Interval:
    symbol: str
    start: dt.date
    end: dt.date | None
    end_kind: str | None
    cik: int | None
    name: str | None
    exchange: str | None
    evidence: set[str] = field(default_factory=set)
    security_id: str = ""
    change: str = "listed"
    end_change: str | None = None

    def row(self) -> dict[str, Any]:
        return {
            "security_id": self.security_id,
            "cik": self.cik,
            "symbol": self.symbol,
            "name": self.name,
            "exchange": self.exchange,
            "valid_from": self.start,
            "valid_to": self.end,
            "change": self.change,
            "end_change": self.end_change,
            "evidence": "+".join(sorted(self.evidence)),
        }


@dataclass(frozen=True)
class HistoryStats:
    """What a build found: securities, renames, delistings, relistings, index exits."""

    securities: int
    renames: int
    delistings: int
    relistings: int
    unobserved_ends: int

    def as_metadata(self) -> dict[str, int]:
        return {
            "securities": self.securities,
            "renames": self.renames,
            "delistings": self.delistings,
            "relistings": self.relistings,
            "unobserved_ends": self.unobserved_ends,
        }


def evidence_intervals(reference: pl.DataFrame, constituents: pl.DataFrame) -> pl.DataFrame:
    """Presence intervals of every ticker in the listing and index snapshots, labelled."""
    frames = []
    if not reference.is_empty():
        listed = presence_intervals(
            reference.select("symbol", "session", "cik", "name", "exchange"),
            attributes=["cik", "name", "exchange"],
        )
        frames.append(
            listed.with_columns(
                pl.lit(LISTING_EVIDENCE).alias("evidence"), pl.lit(DELISTED).alias("end_kind")
            )
        )
    if not constituents.is_empty():
        members = presence_intervals(
            constituents.select("index", "symbol", "session", "cik", "name"),
            group=["index"],
            attributes=["cik", "name"],
        )
        frames.append(
            members.select(
                "symbol",
                "start",
                "end",
                "last_seen",
                "cik",
                "name",
                pl.lit(None, pl.String).alias("exchange"),
                pl.concat_str(pl.lit("index:"), "index").alias("evidence"),
                pl.lit(UNOBSERVED).alias("end_kind"),
            )
        )
    columns = ["symbol", "start", "end", "cik", "name", "exchange", "evidence", "end_kind"]
    if not frames:
        return pl.DataFrame(
            schema={
                "symbol": pl.String(),
                "start": pl.Date(),
                "end": pl.Date(),
                "cik": pl.Int64(),
                "name": pl.String(),
                "exchange": pl.String(),
                "evidence": pl.String(),
                "end_kind": pl.String(),
            }
        )
    return pl.concat([f.select(columns) for f in frames], how="vertical_relaxed").sort(
        "symbol", "start"
    )


def _compatible(a: int | None, b: int | None) -> bool:
    return a is None or b is None or a == b


def _later(a: dt.date | None, b: dt.date | None) -> dt.date | None:
    return None if a is None or b is None else max(a, b)


def merge_evidence(evidence: pl.DataFrame) -> list[_Interval]:
    """One interval per stretch of a ticker that all evidence agrees on (see module doc)."""
    merged: list[_Interval] = []
    current: _Interval | None = None
    for row in evidence.iter_rows(named=True):
        item = _Interval(
            symbol=row["symbol"],
            start=row["start"],
            end=row["end"],
            end_kind=row["end_kind"] if row["end"] is not None else None,
            cik=row["cik"],
            name=row["name"],
            exchange=row["exchange"],
            evidence={row["evidence"]},
        )
        if current is not None and current.symbol == item.symbol and _joins(current, item):
            _absorb(current, item)
            continue
        if current is not None:
            merged.append(current)
        current = item
    if current is not None:
        merged.append(current)
    return merged


def _joins(current: _Interval, item: _Interval) -> bool:
    if not _compatible(current.cik, item.cik):
        return False
    if current.end is None or item.start <= current.end:
        return True
    # A gap no listing snapshot saw close, on both sides the same known CIK: one interval.
    return current.end_kind == UNOBSERVED and current.cik is not None and current.cik == item.cik


def _absorb(current: _Interval, item: _Interval) -> None:
    if current.end is None or (item.end is not None and item.end <= current.end):
        pass  # current's end stands
    else:
        current.end_kind = item.end_kind if item.end is not None else None
    current.end = _later(current.end, item.end)
    if current.end is None:
        current.end_kind = None
    current.cik = current.cik if current.cik is not None else item.cik
    if LISTING_EVIDENCE in item.evidence or current.name is None:
        current.name = item.name or current.name
    current.exchange = item.exchange or current.exchange
    current.evidence |= item.evidence


def link_securities(intervals: list[_Interval]) -> list[_Interval]:
    """Assign security ids and changes in time order (relisted, renamed, listed)."""
    latest_by_symbol: dict[str, _Interval] = {}
    latest_of_security: dict[str, _Interval] = {}
    ended: dict[tuple[int, dt.date], list[_Interval]] = {}
    ordered = sorted(intervals, key=lambda i: (i.start, i.symbol))
    for item in ordered:
        previous = latest_by_symbol.get(item.symbol)
        renamed_from = []
        if item.cik is not None:
            renamed_from = [
                old
                for old in ended.get((item.cik, item.start), [])
                if old.symbol != item.symbol and latest_of_security[old.security_id] is old
            ]
        if item.cik is not None and previous is not None and previous.cik == item.cik:
            item.security_id, item.change = previous.security_id, "relisted"
        elif len(renamed_from) == 1:
            old = renamed_from[0]
            item.security_id, item.change = old.security_id, RENAMED
            old.end_change = RENAMED
        else:
            item.security_id, item.change = f"{item.symbol}@{item.start.isoformat()}", "listed"
        latest_by_symbol[item.symbol] = item
        latest_of_security[item.security_id] = item
        if item.end is not None and item.cik is not None:
            ended.setdefault((item.cik, item.end), []).append(item)
    for item in ordered:
        if item.end is not None and item.end_change is None:
            item.end_change = item.end_kind
    return ordered


def build_ticker_history(
    reference: pl.DataFrame, constituents: pl.DataFrame
) -> tuple[pl.DataFrame, HistoryStats]:
    """ticker_history (TICKER_HISTORY_SCHEMA) from listing and index snapshots, and stats.

    `reference` needs session, symbol, cik, name, exchange; `constituents` session, index,
    symbol, cik, name. Either may be empty.
    """
    linked = link_securities(merge_evidence(evidence_intervals(reference, constituents)))
    if not linked:
        return empty(TICKER_HISTORY_SCHEMA), HistoryStats(0, 0, 0, 0, 0)
    frame = pl.DataFrame([i.row() for i in linked], schema=TICKER_HISTORY_SCHEMA).sort(
        "security_id", "valid_from"
    )
    stats = HistoryStats(
        securities=frame["security_id"].n_unique(),
        renames=frame.filter(pl.col("change") == RENAMED).height,
        delistings=frame.filter(pl.col("end_change") == DELISTED).height,
        relistings=frame.filter(pl.col("change") == "relisted").height,
        unobserved_ends=frame.filter(pl.col("end_change") == UNOBSERVED).height,
    )
    return frame, stats


def securities_of(history: pl.DataFrame, symbol: str) -> pl.DataFrame:
    """Every ticker_history row of the securities that ever used `symbol`, by valid_from."""
    ids = history.filter(pl.col("symbol") == symbol).get_column("security_id").unique()
    return history.filter(pl.col("security_id").is_in(ids.implode())).sort(
        "valid_from", "security_id"
    )
