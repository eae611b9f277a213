"""Daily snapshots -> intervals, and intervals -> point-in-time answers.

A symbol's interval runs from the first snapshot session it appears in to the first snapshot
session it is missing from (`end`, exclusive), or stays open (`end` null) while it is in the
latest snapshot. Sessions with no snapshot at all (a day no file was read) neither break nor
extend an interval: absence is only seen in a snapshot that exists. Every attribute of an
interval (cik, name, exchange) is the last non-null value seen in it, and an interval also
ends where a known CIK changes to another known CIK (the ticker moved to another issuer).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from market_assets.core.reference.schemas import MEMBERSHIP_SCHEMA, conform

_RANK = "__rank"
_RUN = "__run"
_BLOCK = "__cik_block"


def presence_intervals(
    rows: pl.DataFrame,
    group: Sequence[str] = (),
    attributes: Sequence[str] = ("cik",),
    session: str = "session",
) -> pl.DataFrame:
    """Intervals of each (group..., symbol) over the snapshot sessions of its group.

    `rows` holds one row per (group..., symbol, session) present; the snapshot sessions of a
    group are the sessions any of its rows has. Returns group columns, symbol, start, end
    (exclusive; null when present in the group's latest snapshot), last_seen and the
    `attributes` (last non-null value in the interval).
    """
    parts = rows.partition_by(list(group), as_dict=True) if group else {(): rows}
    frames = [
        _intervals_of_group(part, dict(zip(group, values, strict=True)), attributes, session)
        for values, part in parts.items()
    ]
    keys = [*group, "symbol"]
    columns = [*keys, "start", "end", "last_seen", *attributes]
    if not frames:
        return pl.DataFrame(schema={c: rows.schema.get(c, pl.Date()) for c in columns})
    return pl.concat(frames).select(columns).sort([*keys, "start"])


def _intervals_of_group(
    rows: pl.DataFrame, group: dict[str, object], attributes: Sequence[str], session: str
) -> pl.DataFrame:
    """presence_intervals for one group. Window functions run in session order, so nothing
    is sorted by symbol (sorting millions of rows by a string dominated the run time)."""
    days = rows.get_column(session).unique().sort()
    ranked = rows.sort(session).with_columns(
        pl.lit(days).search_sorted(pl.col(session)).cast(pl.Int64).alias(_RANK)
    )
    ranked = ranked.with_columns(pl.lit(0, pl.UInt32).alias(_BLOCK))
    if "cik" in attributes:
        ranked = _split_on_cik_change(ranked)
    ranked = ranked.with_columns(
        (pl.col(_RANK) - pl.int_range(pl.len()).over("symbol", _BLOCK)).alias(_RUN)
    )
    runs = ranked.group_by("symbol", _BLOCK, _RUN).agg(
        pl.col(session).min().alias("start"),
        pl.col(session).max().alias("last_seen"),
        (pl.col(_RANK).max() + 1).alias(_RANK),
        *[pl.col(name).drop_nulls().last().alias(name) for name in attributes],
    )
    following = pl.DataFrame({_RANK: range(len(days)), "end": days}).with_columns(
        pl.col(_RANK).cast(pl.Int64)
    )
    return runs.join(following, on=_RANK, how="left").with_columns(
        *[pl.lit(value).alias(name) for name, value in group.items()]
    )


def _split_on_cik_change(ranked: pl.DataFrame) -> pl.DataFrame:
    """Number the blocks of each symbol between changes from one known CIK to another.

    Only symbols with two or more distinct CIKs need the window functions (a handful among
    millions of rows), so the rest keep block 0.
    """
    several = (
        ranked.group_by("symbol")
        .agg(pl.col("cik").drop_nulls().n_unique().alias("_ciks"))
        .filter(pl.col("_ciks") > 1)
        .get_column("symbol")
    )
    if several.is_empty():
        return ranked
    mixed = ranked.filter(pl.col("symbol").is_in(several.implode()))
    known = pl.col("cik").forward_fill().over("symbol")
    previous = known.shift(1).over("symbol")
    changed = ((known != previous) & previous.is_not_null()).fill_null(False)
    mixed = mixed.with_columns(changed.cum_sum().over("symbol").cast(pl.UInt32).alias(_BLOCK))
    rest = ranked.filter(~pl.col("symbol").is_in(several.implode()))
    return pl.concat([rest, mixed]).sort(_RANK, maintain_order=True)


def membership_intervals(snapshots: pl.DataFrame) -> pl.DataFrame:
    """index_constituents snapshots -> (index, symbol, cik, start, end) per membership run."""
    if snapshots.is_empty():
        return pl.DataFrame(
            schema={k: v for k, v in MEMBERSHIP_SCHEMA.items() if k != "security_id"}
        )
    return presence_intervals(
        snapshots.select("index", "symbol", "session", "cik"), group=["index"], attributes=["cik"]
    ).select("index", "symbol", "cik", "start", "end")


def with_security_ids(intervals: pl.DataFrame, history: pl.DataFrame) -> pl.DataFrame:
    """Membership intervals with the security_id ticker_history gives their symbol at start.

    A symbol with no ticker_history interval covering its start keeps a null security_id.
    """
    if intervals.is_empty():
        return conform(intervals, MEMBERSHIP_SCHEMA)
    ids = history.select(
        "symbol", "security_id", pl.col("valid_from").alias("start"), "valid_to"
    ).sort("start")
    joined = intervals.sort("start").join_asof(
        ids, on="start", by="symbol", strategy="backward", check_sortedness=False
    )
    covered = pl.col("valid_to").is_null() | (pl.col("valid_to") > pl.col("start"))
    return conform(
        joined.with_columns(pl.when(covered).then(pl.col("security_id")).alias("security_id")),
        MEMBERSHIP_SCHEMA,
    ).sort("index", "symbol", "start")


def members_as_of(intervals: pl.DataFrame, index: str, as_of: dt.date) -> pl.DataFrame:
    """Members of `index` on `as_of` from membership intervals: start <= as_of < end.

    The answer's columns never carry `end` (which may lie after as_of).
    """
    return (
        intervals.filter(
            (pl.col("index") == index)
            & (pl.col("start") <= as_of)
            & (pl.col("end").is_null() | (pl.col("end") > as_of))
        )
        .select("index", "symbol", "security_id", "cik", pl.col("start").alias("member_since"))
        .sort("symbol")
    )
