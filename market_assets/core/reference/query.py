"""Point-in-time reads of the reference tables (behind MarketData's methods).

Every `as_of` answer uses only what was knowable on `as_of`: the stored snapshot of the
latest session on or before it (never a later one), and interval ends only when they fall on
or before it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

import polars as pl

from market_assets.core.reference.securities import securities_of
from market_assets.core.reference.store import ReferenceStore

FIRST_YEAR = 1990  # snapshots are looked for back to this year
CONSTITUENTS = "index_constituents"
REFERENCE = "reference"


def constituents(store: ReferenceStore, index: str, as_of: dt.date) -> pl.DataFrame:
    """Members of `index` in the latest snapshot on or before `as_of`, one row per member.

    Columns: snapshot_session (the session the answer comes from), index, symbol, name, cik,
    weight, security_id and member_since (from index_membership, when built), source.
    """
    day = store.latest_session(CONSTITUENTS, as_of, FIRST_YEAR)
    columns = [
        "snapshot_session",
        "index",
        "symbol",
        "name",
        "cik",
        "weight",
        "security_id",
        "member_since",
        "source",
    ]
    if day is None:
        return pl.DataFrame(
            schema={
                "snapshot_session": pl.Date(),
                "index": pl.String(),
                "symbol": pl.String(),
                "name": pl.String(),
                "cik": pl.Int64(),
                "weight": pl.Float64(),
                "security_id": pl.String(),
                "member_since": pl.Date(),
                "source": pl.String(),
            }
        )
    rows = store.read_sessions(CONSTITUENTS, day, day).filter(pl.col("index") == index)
    membership = store.read_derived("index_membership").filter(
        (pl.col("index") == index)
        & (pl.col("start") <= day)
        & (pl.col("end").is_null() | (pl.col("end") > day))
    )
    ids = membership.select("symbol", "security_id", pl.col("start").alias("member_since"))
    return (
        rows.join(ids, on="symbol", how="left")
        .rename({"session": "snapshot_session"})
        .select(columns)
        .sort("symbol")
    )


def constituent_history(
    store: ReferenceStore, index: str, start: dt.date, end: dt.date
) -> pl.DataFrame:
    """Membership intervals of `index` overlapping [start, end), as known at `end`: an
    interval still open at `end` has a null `end`."""
    membership = store.read_derived("index_membership")
    overlapping = membership.filter(
        (pl.col("index") == index)
        & (pl.col("start") < end)
        & (pl.col("end").is_null() | (pl.col("end") > start))
    )
    return overlapping.with_columns(
        pl.when(pl.col("end") < end).then(pl.col("end")).alias("end")
    ).sort("symbol", "start")


def symbols(
    store: ReferenceStore, as_of: dt.date, include_test_issues: bool = False
) -> pl.DataFrame:
    """The reference snapshot of the latest session on or before `as_of` (test issues left
    out unless asked for)."""
    day = store.latest_session(REFERENCE, as_of, FIRST_YEAR)
    if day is None:
        return store.read_sessions(REFERENCE, as_of, as_of - dt.timedelta(days=1))
    rows = store.read_sessions(REFERENCE, day, day)
    return rows if include_test_issues else rows.filter(~pl.col("is_test_issue"))


def ticker_history(store: ReferenceStore, symbol: str) -> pl.DataFrame:
    """Every ticker (with dates) of each security that ever used `symbol`."""
    return securities_of(store.read_derived("ticker_history"), symbol)


def bars_following_renames(
    store: ReferenceStore,
    read: Callable[[str, dt.datetime, dt.datetime], pl.DataFrame],
    symbols_wanted: Sequence[str],
    start: dt.datetime,
    end: dt.datetime,
) -> pl.DataFrame:
    """One continuous history per requested symbol across its security's renames.

    `read(ticker, lo, hi)` reads bars of one ticker in [lo, hi). The security is the one
    using the requested symbol last within [start, end) (else its latest). Each ticker's bars
    are read only over its own validity window, so FB's rows stop on 2022-06-09 and META's
    begin. Rows get `symbol` = the requested symbol, `ticker` = the row's own ticker and
    `security_id` (null when ticker_history does not know the symbol).
    """
    history = store.read_derived("ticker_history")
    frames = []
    for wanted in symbols_wanted:
        pieces = _ticker_windows(history, wanted, start.date(), end.date())
        for ticker, security_id, lo, hi in pieces:
            lower = max(start, _utc(lo)) if lo else start
            upper = min(end, _utc(hi)) if hi else end
            if lower >= upper:
                continue
            bars = read(ticker, lower, upper)
            frames.append(
                bars.with_columns(
                    pl.col("symbol").alias("ticker"),
                    pl.lit(wanted).alias("symbol"),
                    pl.lit(security_id, pl.String).alias("security_id"),
                )
            )
    if not frames:
        empty = read(symbols_wanted[0], start, start) if symbols_wanted else pl.DataFrame()
        return empty.with_columns(
            pl.col("symbol").alias("ticker"), pl.lit(None, pl.String).alias("security_id")
        )
    return pl.concat(frames, how="vertical_relaxed").sort("symbol", "ts")


def _ticker_windows(
    history: pl.DataFrame, symbol: str, start: dt.date, end: dt.date
) -> list[tuple[str, str | None, dt.date | None, dt.date | None]]:
    uses = history.filter(pl.col("symbol") == symbol).sort("valid_from")
    if uses.is_empty():
        return [(symbol, None, None, None)]
    inside = uses.filter(
        (pl.col("valid_from") < end) & (pl.col("valid_to").is_null() | (pl.col("valid_to") > start))
    )
    security = (inside if not inside.is_empty() else uses)["security_id"][-1]
    rows = history.filter(pl.col("security_id") == security).sort("valid_from")
    return [
        (row["symbol"], security, row["valid_from"], row["valid_to"])
        for row in rows.iter_rows(named=True)
    ]


def _utc(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC)
