"""The corporate actions table: fetch a rectangle of partitions, check rows, stamp `known_at`.

A partition is (symbol, session) and holds the actions whose ex-date is that session. Stored
rows follow `schemas.STORED_ACTION_SCHEMA`; the key is (symbol, ex_date, action_type).

`known_at` is the earliest moment the platform can show an action was public, used for
point-in-time adjustment (`transforms.adjust.known_as_of`): the earliest of the vendor's
`announced` date (00:00 UTC), the ex-date (00:00 UTC: an action is public by the morning it
takes effect) and the moment the platform first stored it. Re-writing a partition keeps the
earlier `known_at` of an unchanged row; a row whose ratio or amount changed is a correction
and gets the new row's `known_at` (earlier versions are not kept).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from market_assets.core.providers.base import ActionsRequest, FetchResult
from market_assets.core.providers.registry import ProviderRegistry
from market_assets.core.schemas import SYMBOL_CHANGE, TS_DTYPE
from market_assets.core.transforms.adjust import conform_actions

ACTION_KEY = ("symbol", "ex_date", "action_type")
VALUE_COLUMNS = ("ratio", "amount", "new_symbol")
KNOWN_ACTION_TYPES = ("split", "dividend", SYMBOL_CHANGE)


@dataclass(frozen=True)
class CheckedActions:
    """Rows fit to store, and rows refused with the rule they broke."""

    valid: pl.DataFrame
    rejected: pl.DataFrame  # the action columns plus `rule`

    @property
    def rule_counts(self) -> dict[str, int]:
        if self.rejected.is_empty():
            return {}
        counts = self.rejected.group_by("rule").len().sort("rule")
        return dict(zip(counts["rule"].to_list(), counts["len"].to_list(), strict=True))


def fetch_partition_actions(
    registry: ProviderRegistry, partitions: Sequence[tuple[str, dt.date]]
) -> FetchResult:
    """Actions whose (symbol, ex_date) is one of `partitions`, in as few requests as possible.

    Symbols sharing the same first and last session go into one request; rows outside the
    asked partitions are dropped.
    """
    sessions_by_symbol: dict[str, set[dt.date]] = defaultdict(set)
    for symbol, session in partitions:
        sessions_by_symbol[symbol].add(session)
    groups: dict[tuple[dt.date, dt.date], list[str]] = defaultdict(list)
    for symbol, sessions in sessions_by_symbol.items():
        groups[(min(sessions), max(sessions))].append(symbol)
    merged = FetchResult(frame=pl.DataFrame(), source="")
    frames: list[pl.DataFrame] = []
    sources: dict[str, None] = {}
    for (first, last), symbols in sorted(groups.items()):
        request = ActionsRequest(tuple(sorted(symbols)), first, last + dt.timedelta(days=1))
        result = registry.fetch_actions(request)
        frames.append(conform_actions(result.frame))
        merged.requests += result.requests
        merged.failures.update(result.failures)
        merged.attempts.extend(result.attempts)
        sources.update(dict.fromkeys(s for s in result.source.split(",") if s))
    wanted = pl.DataFrame(
        {"symbol": [p[0] for p in partitions], "ex_date": [p[1] for p in partitions]},
        schema={"symbol": pl.String(), "ex_date": pl.Date()},
    )
    frame = pl.concat(frames) if frames else conform_actions(pl.DataFrame(schema=_KEY_SCHEMA))
    merged.frame = frame.join(wanted.unique(), on=["symbol", "ex_date"], how="semi")
    merged.source = ",".join(sources)
    return merged


_KEY_SCHEMA = {"symbol": pl.String(), "ex_date": pl.Date(), "action_type": pl.String()}


def check_actions(frame: pl.DataFrame) -> CheckedActions:
    """Split actions into rows fit to store and rows refused.

    Refused: an unknown action_type, a split without a positive finite ratio, a dividend
    without a positive amount, a symbol change without `new_symbol`, and rows sharing a key
    (symbol, ex_date, action_type) with different values (nothing says which is right).
    Identical repeats keep one copy.
    """
    rows = conform_actions(frame).unique(maintain_order=True)
    kind = pl.col("action_type")
    rule = (
        pl.when(~kind.is_in(list(KNOWN_ACTION_TYPES)))
        .then(pl.lit("unknown_action_type"))
        .when((kind == "split") & ~(pl.col("ratio").is_finite() & (pl.col("ratio") > 0)))
        .then(pl.lit("invalid_split_ratio"))
        .when((kind == "dividend") & ~(pl.col("amount").is_finite() & (pl.col("amount") > 0)))
        .then(pl.lit("invalid_dividend_amount"))
        .when((kind == SYMBOL_CHANGE) & pl.col("new_symbol").is_null())
        .then(pl.lit("symbol_change_without_new_symbol"))
        .when(pl.len().over(list(ACTION_KEY)) > 1)
        .then(pl.lit("conflicting_duplicate_key"))
    )
    marked = rows.with_columns(rule.alias("rule"))
    valid = marked.filter(pl.col("rule").is_null()).drop("rule").sort(list(ACTION_KEY))
    return CheckedActions(valid=valid, rejected=marked.filter(pl.col("rule").is_not_null()))


def stamp_known_at(actions: pl.DataFrame, now: dt.datetime) -> pl.DataFrame:
    """Set `known_at` to the earliest of announced, ex_date (00:00 UTC each) and `now`."""
    midnight = [
        pl.col(c).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        for c in ("announced", "ex_date")
    ]
    return conform_actions(actions).with_columns(
        pl.min_horizontal(pl.col("known_at"), *midnight, pl.lit(now).cast(TS_DTYPE)).alias(
            "known_at"
        )
    )


def carry_known_at(new: pl.DataFrame, existing: pl.DataFrame) -> pl.DataFrame:
    """`new` with the earlier `known_at` of identical stored rows (same key and values)."""
    new = conform_actions(new)
    if existing.is_empty() or new.is_empty():
        return new
    stored = conform_actions(existing).select(
        *ACTION_KEY, *VALUE_COLUMNS, pl.col("known_at").alias("__stored")
    )
    return (
        new.join(stored, on=[*ACTION_KEY, *VALUE_COLUMNS], how="left", nulls_equal=True)
        .with_columns(pl.min_horizontal("known_at", "__stored").alias("known_at"))
        .drop("__stored")
    )


def changed_symbols(new: pl.DataFrame, existing: pl.DataFrame) -> dict[str, dt.date]:
    """Symbols whose actions differ between `existing` and `new`, with the latest changed
    ex-date (every session before it needs re-adjusting). Only splits and dividends count."""
    columns = [*ACTION_KEY, *VALUE_COLUMNS]
    prices = pl.col("action_type").is_in(["split", "dividend"])
    before = conform_actions(existing).filter(prices).select(columns)
    after = conform_actions(new).filter(prices).select(columns)
    added = after.join(before, on=columns, how="anti", nulls_equal=True)
    removed = before.join(after, on=columns, how="anti", nulls_equal=True)
    changes = pl.concat([added, removed]).group_by("symbol").agg(pl.col("ex_date").max())
    return dict(sorted(changes.rows()))
