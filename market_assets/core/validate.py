"""Hard schema rules: split a frame into rows fit to store and rows for quarantine.

A row is quarantined, never stored, when it breaks a hard rule: a null or non-positive price,
high below max(open, close), low above min(open, close), a null or negative volume, a
duplicate (symbol, ts), a timestamp outside the partitions being written (`outside_partition`),
on a day the dataset's exchange calendar has no session (`not_a_session`: a weekend, another
exchange's holiday), or, in a regular-hours intraday dataset, outside the session's regular
hours (`extended_hours`). The rest of the partition is stored. Softer judgements (outliers,
gaps, stale prices) are asset checks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from pandera.config import ValidationDepth, config_context

from market_assets.core.calendar import TradingCalendar
from market_assets.core.schemas import (
    BAR_COLUMNS,
    BAR_SCHEMA,
    PRICE_COLUMNS,
    QUARANTINE_EXTRA_SCHEMA,
    BarModel,
    conform_bars,
)
from market_assets.core.stores.layout import DatasetLayout, layout_for
from market_assets.core.transforms.resample import regular_hours_mask

RULES: dict[str, pl.Expr] = {
    "null_price": pl.any_horizontal(
        [pl.col(c).is_null() | pl.col(c).is_nan() for c in PRICE_COLUMNS]
    ),
    "non_positive_price": pl.any_horizontal([pl.col(c) <= 0 for c in PRICE_COLUMNS]),
    "high_below_open_close": pl.col("high") < pl.max_horizontal("open", "close"),
    "low_above_open_close": pl.col("low") > pl.min_horizontal("open", "close"),
    "invalid_volume": pl.col("volume").is_null() | (pl.col("volume") < 0),
    "null_timestamp": pl.col("ts").is_null(),
    "null_symbol": pl.col("symbol").is_null(),
}


@dataclass(frozen=True)
class ValidationResult:
    """Rows to store, rows quarantined (with `rule` and `detail`) and counts per rule."""

    valid: pl.DataFrame
    quarantined: pl.DataFrame

    @property
    def rule_counts(self) -> dict[str, int]:
        if self.quarantined.is_empty():
            return {}
        counts = (
            self.quarantined.select(pl.col("rule").str.split(",").alias("rule"))
            .explode("rule")
            .group_by("rule")
            .len()
            .sort("rule")
        )
        return dict(zip(counts["rule"].to_list(), counts["len"].to_list(), strict=True))


def split_valid_bars(
    frame: pl.DataFrame,
    *,
    dataset: str,
    partitions: Sequence[tuple[str, dt.date]] | None = None,
    calendar: TradingCalendar | None = None,
    extended_hours: bool = True,
) -> ValidationResult:
    """Apply the hard rules to canonical bars destined for `dataset`.

    `partitions` lists the (symbol, session) pairs being written; rows outside them are
    quarantined as `outside_partition`, or as `not_a_session` when `calendar` (the dataset's
    exchange calendar) has no session on their day. With `extended_hours=False` and a
    `calendar`, intraday rows of a written partition that open outside the session's regular
    hours are quarantined as `extended_hours`. Identical duplicate rows keep one copy (the
    others are quarantined as `duplicate_key`); duplicates that disagree are all quarantined
    as `conflicting_duplicate_key`, since nothing says which one is right.

    The row rules are polars expressions evaluated in one pass, so a bad row is set aside
    rather than failing the frame; pandera then checks the kept frame's columns and dtypes
    against `BarModel` (schema level: its value checks are the rules here).
    """
    layout = layout_for(dataset)
    bars = conform_bars(frame)
    flags = [expr.fill_null(False).alias(name) for name, expr in RULES.items()]
    flags.append(
        (pl.col("granularity") != pl.lit(layout_granularity(dataset)))
        .fill_null(True)
        .alias("wrong_granularity")
    )
    outside = _outside(bars, layout, partitions) if partitions is not None else None
    if outside is not None:
        off_calendar = outside & _off_calendar(bars, layout, calendar if outside.any() else None)
        flags.append(pl.lit(outside & ~off_calendar).alias("outside_partition"))
        flags.append(pl.lit(off_calendar).alias("not_a_session"))
    if calendar is not None and layout.intraday and not extended_hours:
        regular = regular_hours_mask(bars.get_column("ts"), calendar).fill_null(True)
        if outside is not None:
            regular = regular | outside
        flags.append(pl.lit(~regular).alias("extended_hours"))
    is_sorted = _is_sorted(bars)
    marked = bars.with_columns(*flags, *_duplicate_flags(bars, is_sorted))
    rule_names = [*(f.meta.output_name() for f in flags), *DUPLICATE_RULES]
    any_bad = pl.any_horizontal(rule_names)
    if not marked.select(any_bad.any()).item():
        valid = bars if is_sorted else bars.sort(["symbol", "ts"])
        _check_schema(valid)
        return ValidationResult(valid=valid, quarantined=_empty_quarantine())
    valid = marked.filter(~any_bad).select(BAR_COLUMNS).sort(["symbol", "ts"])
    bad = marked.filter(any_bad).with_columns(
        pl.col("symbol").alias("__symbol"),
        pl.concat_str(
            [pl.when(pl.col(r)).then(pl.lit(r)) for r in rule_names],
            separator=",",
            ignore_nulls=True,
        ).alias("rule"),
    )
    if outside is None:
        bad = bad.with_columns(pl.lit(False).alias("__outside"))
    else:
        outside_any = pl.col("outside_partition") | pl.col("not_a_session")
        bad = bad.with_columns(outside_any.alias("__outside"))
    quarantined = (
        _file_under_partitions(bad, layout, partitions)
        .select(
            *BAR_COLUMNS,
            "session",
            pl.lit(dataset).alias("dataset"),
            "rule",
            _detail().alias("detail"),
            pl.lit(dt.datetime.now(dt.UTC))
            .cast(QUARANTINE_EXTRA_SCHEMA["quarantined_at"])
            .alias("quarantined_at"),
        )
        .sort(["symbol", "ts"], nulls_last=True)
    )
    _check_schema(valid)
    return ValidationResult(valid=valid, quarantined=quarantined)


DUPLICATE_RULES = ("conflicting_duplicate_key", "duplicate_key")


def layout_granularity(dataset: str) -> str:
    """The granularity every row of a bar dataset must carry (bars_5m -> 5m)."""
    return dataset.removeprefix("bars_")


def _outside(
    bars: pl.DataFrame, layout: DatasetLayout, partitions: Sequence[tuple[str, dt.date]]
) -> pl.Series:
    """True for rows whose (symbol, session) is not among `partitions`.

    Membership is decided on UTC timestamps against each session's bounds (a binary search),
    which is several times faster than converting every timestamp to exchange time.
    """
    sessions_by_symbol: dict[str, set[dt.date]] = {}
    for symbol, session in partitions:
        sessions_by_symbol.setdefault(symbol, set()).add(session)
    ts = bars.get_column("ts").dt.epoch("us").fill_null(0).to_numpy()
    symbols = bars.get_column("symbol")
    inside = np.zeros(bars.height, dtype=bool)
    groups: dict[tuple[dt.date, ...], list[str]] = {}
    for symbol, sessions in sessions_by_symbol.items():
        groups.setdefault(tuple(sorted(sessions)), []).append(symbol)
    for sessions, members in groups.items():
        bounds = [layout.session_bounds(session) for session in sessions]
        lo = np.array([_epoch_us(a) for a, _ in bounds], dtype=np.int64)
        hi = np.array([_epoch_us(b) for _, b in bounds], dtype=np.int64)
        slot = np.searchsorted(lo, ts, side="right") - 1
        in_session = (slot >= 0) & (ts < hi[np.clip(slot, 0, None)])
        member = symbols.is_in(pl.Series(members, dtype=pl.String()).implode())
        member = member.fill_null(False).to_numpy()
        inside |= in_session & member
    has_key = symbols.is_not_null().to_numpy() & bars.get_column("ts").is_not_null().to_numpy()
    return pl.Series("outside_partition", ~(inside & has_key))


def _off_calendar(
    bars: pl.DataFrame, layout: DatasetLayout, calendar: TradingCalendar | None
) -> pl.Series:
    """True for rows whose session date is not a session of `calendar` (all False without one)."""
    if calendar is None or bars.is_empty():
        return pl.Series("not_a_session", [False] * bars.height, dtype=pl.Boolean)
    sessions = bars.select(layout.session_expr().alias("session")).get_column("session")
    days = sessions.drop_nulls().unique().to_list()
    off = [day for day in days if not calendar.is_session(day)]
    return sessions.is_in(pl.Series(off, dtype=pl.Date()).implode()).fill_null(False).alias(
        "not_a_session"
    )


def _epoch_us(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _duplicate_flags(bars: pl.DataFrame, is_sorted: bool) -> list[pl.Expr]:
    """Flags for repeated (symbol, ts) keys; the cheap check first, details only if needed.

    On rows sorted by (symbol, ts) a repeat is always adjacent, so one comparison with the
    next row finds it; otherwise the keys are hashed.
    """
    key = ["symbol", "ts"]
    if is_sorted:
        same_as_next = bars.select(
            (pl.col("symbol") == pl.col("symbol").shift(-1))
            & (pl.col("ts") == pl.col("ts").shift(-1))
        ).to_series()
        any_duplicate = bool(same_as_next.fill_null(False).any())
    else:
        any_duplicate = bool(bars.select(key).is_duplicated().any())
    if not any_duplicate:
        return [pl.lit(False).alias(name) for name in DUPLICATE_RULES]
    dup = pl.len().over(key) > 1
    conflicting = dup & (pl.struct(list(BAR_COLUMNS)).n_unique().over(key) > 1)
    extra_copy = dup & ~conflicting & (pl.int_range(pl.len()).over(key) > 0)
    return [
        conflicting.fill_null(False).alias("conflicting_duplicate_key"),
        extra_copy.fill_null(False).alias("duplicate_key"),
    ]


def _is_sorted(bars: pl.DataFrame) -> bool:
    """Whether rows are ordered by (symbol, ts) (ties allowed), so sorting can be skipped."""
    if bars.height < 2:
        return True
    symbol, ts = pl.col("symbol"), pl.col("ts")
    next_symbol, next_ts = symbol.shift(-1), ts.shift(-1)
    out_of_order = (symbol > next_symbol) | ((symbol == next_symbol) & (ts > next_ts))
    return not bars.select(out_of_order.fill_null(False).any()).item()


def _check_schema(valid: pl.DataFrame) -> None:
    with config_context(validation_depth=ValidationDepth.SCHEMA_ONLY):
        BarModel.validate(valid)


def _empty_quarantine() -> pl.DataFrame:
    return pl.DataFrame(schema={**BAR_SCHEMA, **QUARANTINE_EXTRA_SCHEMA})


def _file_under_partitions(
    bad: pl.DataFrame,
    layout: DatasetLayout,
    partitions: Sequence[tuple[str, dt.date]] | None,
) -> pl.DataFrame:
    """Give each quarantined row the (symbol, session) partition it is filed under.

    A row inside the written partitions is filed under its own partition. A row outside them
    (or with a null timestamp or symbol) is filed under the first written session of its
    symbol, or else under the first written partition, so re-writing those partitions
    replaces it and no quarantined row is ever dropped.
    """
    own = bad.with_columns(
        pl.when(pl.col("ts").is_not_null()).then(layout.session_expr()).alias("session")
    )
    if partitions is None:
        return own
    ordered = sorted(partitions, key=lambda p: (p[1], p[0]))
    first_symbol, first_session = ordered[0] if ordered else (None, None)
    first_by_symbol: dict[str, dt.date] = {}
    for symbol, session in ordered:
        first_by_symbol.setdefault(symbol, session)
    fallback = pl.DataFrame(
        {"symbol": list(first_by_symbol), "__first": list(first_by_symbol.values())},
        schema={"symbol": pl.String(), "__first": pl.Date()},
    )
    inside = ~pl.col("__outside") & pl.col("session").is_not_null()
    return (
        own.join(fallback, on="symbol", how="left", maintain_order="left")
        .with_columns(
            pl.when(inside)
            .then(pl.col("session"))
            .otherwise(pl.coalesce("__first", pl.lit(first_session)))
            .alias("session"),
            pl.when(pl.col("symbol").is_null() | pl.col("__first").is_null())
            .then(pl.lit(first_symbol))
            .otherwise(pl.col("symbol"))
            .alias("symbol"),
        )
        .drop("__first", "__outside")
    )


def _detail() -> pl.Expr:
    return pl.format(
        "symbol={} ts={} o={} h={} l={} c={} v={}",
        *[
            pl.col(c).cast(pl.String).fill_null("null")
            for c in ("__symbol", "ts", *PRICE_COLUMNS, "volume")
        ],
    )
