"""Hard rules for ticks: split a tick frame into rows fit to store and rows for quarantine.

A tick is quarantined, never stored, when it breaks a hard rule:

- every tick dataset: `null_timestamp` (no ts_event), `null_symbol`, `outside_partition` (its
  symbol and session, the America/New_York date of ts_event, are not being written) and
  `duplicate_row` (an exact copy of an earlier row; the first copy is stored);
- trades and tbbo: `null_price` (null or NaN: Databento's UNDEF_PRICE arrives as null),
  `non_positive_price`, `invalid_size` (null or negative);
- tbbo: `crossed_quote` (bid above ask, both present; a missing side is normal);
- statistics: `null_stat_type`, `no_value` (neither a price nor a quantity).

Ticks have no unique key: one nanosecond can hold several trades of one symbol.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import polars as pl
from pandera.config import ValidationDepth, config_context

from market_assets.core.schemas import (
    QUARANTINE_EXTRA_SCHEMA,
    TICK_MODELS,
    TICK_SCHEMAS,
    TICK_TIME_COLUMN,
    conform_ticks,
)
from market_assets.core.stores.layout import layout_for
from market_assets.core.validate import ValidationResult

_PRICED = {
    "null_price": pl.col("price").is_null() | pl.col("price").is_nan(),
    "non_positive_price": pl.col("price") <= 0,
    "invalid_size": pl.col("size").is_null() | (pl.col("size") < 0),
}

TICK_RULES: dict[str, dict[str, pl.Expr]] = {
    "trades": _PRICED,
    "tbbo": {**_PRICED, "crossed_quote": pl.col("bid_price") > pl.col("ask_price")},
    "statistics": {
        "null_stat_type": pl.col("stat_type").is_null(),
        "no_value": pl.col("price").is_null() & pl.col("quantity").is_null(),
    },
}
"""Row rules per tick dataset, besides the ones every tick dataset has."""

COMMON_RULES: dict[str, pl.Expr] = {
    "null_timestamp": pl.col(TICK_TIME_COLUMN).is_null(),
    "null_symbol": pl.col("symbol").is_null(),
}

DETAIL_COLUMNS: dict[str, tuple[str, ...]] = {
    "trades": ("price", "size", "side", "sequence"),
    "tbbo": ("price", "size", "bid_price", "ask_price", "sequence"),
    "statistics": ("stat_type", "price", "quantity", "sequence"),
}

_SESSION = "__session"
_PARTITION_RULES = ("outside_partition", "duplicate_row")


def split_valid_ticks(
    frame: pl.DataFrame,
    *,
    dataset: str,
    partitions: Sequence[tuple[str, dt.date]] | None = None,
) -> ValidationResult:
    """Apply the hard rules to ticks destined for `dataset` (trades, tbbo or statistics).

    `partitions` lists the (symbol, session) pairs being written; rows outside them are
    quarantined as `outside_partition` and filed under the first written session of their
    symbol (or the first partition), so rewriting those partitions replaces them. The kept
    rows are checked against the dataset's pandera model (schema level) and returned sorted
    by (symbol, ts_event), ties in arrival order.
    """
    ticks = conform_ticks(frame, dataset)
    rules = {**COMMON_RULES, **TICK_RULES[dataset]}
    flags = [expr.fill_null(False).alias(name) for name, expr in rules.items()]
    session = _session_within(ticks, dataset, partitions)
    marked = ticks.with_columns(
        *flags,
        session.alias(_SESSION),
        (session.is_null() if partitions is not None else pl.lit(False)).alias("outside_partition"),
        _extra_copies(ticks).alias("duplicate_row"),
    )
    names = [*rules, *_PARTITION_RULES]
    any_bad = pl.any_horizontal(names)
    columns = list(TICK_SCHEMAS[dataset])
    valid = (
        marked.filter(~any_bad)
        .select(columns)
        .sort("symbol", TICK_TIME_COLUMN, maintain_order=True)
    )
    with config_context(validation_depth=ValidationDepth.SCHEMA_ONLY):
        TICK_MODELS[dataset].validate(valid)
    bad = marked.filter(any_bad)
    if bad.is_empty():
        return ValidationResult(valid=valid, quarantined=empty_tick_quarantine(dataset))
    rule = pl.concat_str(
        [pl.when(pl.col(name)).then(pl.lit(name)) for name in names],
        separator=",",
        ignore_nulls=True,
    )
    detail = pl.format(
        f"symbol={{}} {TICK_TIME_COLUMN}={{}} "
        + " ".join(f"{name}={{}}" for name in DETAIL_COLUMNS[dataset]),
        *(
            pl.col(name).cast(pl.String).fill_null("null")
            for name in ("symbol", TICK_TIME_COLUMN, *DETAIL_COLUMNS[dataset])
        ),
    )
    quarantined = _file_under_partitions(
        bad.with_columns(rule.alias("rule"), detail.alias("detail")), dataset, partitions
    ).select(
        *columns,
        "session",
        pl.lit(dataset).alias("dataset"),
        "rule",
        "detail",
        pl.lit(dt.datetime.now(dt.UTC))
        .cast(QUARANTINE_EXTRA_SCHEMA["quarantined_at"])
        .alias("quarantined_at"),
    )
    return ValidationResult(valid=valid, quarantined=quarantined)


def empty_tick_quarantine(dataset: str) -> pl.DataFrame:
    return pl.DataFrame(schema={**TICK_SCHEMAS[dataset], **QUARANTINE_EXTRA_SCHEMA})


def _extra_copies(ticks: pl.DataFrame) -> pl.Series:
    """True for a row that repeats an earlier row exactly.

    Copies share their ts_event, so only rows whose ts_event repeats are compared whole
    (hashing every column of every row costs ~0.6 s per million ticks).
    """
    flags = pl.Series("duplicate_row", [False] * ticks.height, dtype=pl.Boolean())
    candidates = ticks.get_column(TICK_TIME_COLUMN).is_duplicated()
    if not candidates.any():
        return flags
    subset = ticks.filter(candidates)
    repeated = subset.select(~pl.struct(subset.columns).is_first_distinct()).to_series()
    return flags.scatter(candidates.arg_true(), repeated)


def _session_within(
    ticks: pl.DataFrame, dataset: str, partitions: Sequence[tuple[str, dt.date]] | None
) -> pl.Series:
    """Each row's session when (symbol, session) is a written partition, else null.

    Without `partitions`, every row's own session. Sessions are found by binary search of
    ts_event (epoch ns) in the UTC bounds of the written sessions, which avoids converting
    every timestamp to exchange time.
    """
    layout = layout_for(dataset)
    if partitions is None:
        return ticks.select(layout.session_expr()).to_series()
    sessions = sorted({session for _, session in partitions})
    empty = pl.Series(_SESSION, [None] * ticks.height, dtype=pl.Date())
    if not sessions or ticks.is_empty():
        return empty
    bounds = [layout.session_bounds(session) for session in sessions]
    lo = np.array([_epoch_ns(a) for a, _ in bounds], dtype=np.int64)
    hi = np.array([_epoch_ns(b) for _, b in bounds], dtype=np.int64)
    stamps = ticks.get_column(TICK_TIME_COLUMN)
    ts = stamps.dt.epoch("ns").fill_null(np.iinfo(np.int64).min).to_numpy()
    slot = np.searchsorted(lo, ts, side="right") - 1
    inside = (slot >= 0) & (ts < hi[np.clip(slot, 0, None)])
    candidate = pl.Series(
        _SESSION, np.array(sessions, dtype="datetime64[D]")[np.clip(slot, 0, None)]
    )
    candidate = candidate.cast(pl.Date()).set(pl.Series(~inside), None)
    listed = pl.DataFrame(
        {"symbol": [s for s, _ in partitions], _SESSION: [d for _, d in partitions]},
        schema={"symbol": pl.String(), _SESSION: pl.Date()},
    ).unique()
    keyed = pl.DataFrame({"symbol": ticks.get_column("symbol"), _SESSION: candidate})
    member = keyed.join(
        listed.with_columns(pl.lit(True).alias("__in")),
        on=["symbol", _SESSION],
        how="left",
        maintain_order="left",
    )
    return candidate.set(member.get_column("__in").is_null(), None)


def _file_under_partitions(
    bad: pl.DataFrame, dataset: str, partitions: Sequence[tuple[str, dt.date]] | None
) -> pl.DataFrame:
    """Give each quarantined row the (symbol, session) partition it is filed under."""
    if partitions is None:
        return bad.with_columns(pl.col(_SESSION).alias("session"))
    ordered = sorted(partitions, key=lambda p: (p[1], p[0]))
    first_symbol, first_session = ordered[0]
    first_by_symbol: dict[str, dt.date] = {}
    for symbol, session in ordered:
        first_by_symbol.setdefault(symbol, session)
    fallback = pl.DataFrame(
        {"symbol": list(first_by_symbol), "__first": list(first_by_symbol.values())},
        schema={"symbol": pl.String(), "__first": pl.Date()},
    )
    return (
        bad.join(fallback, on="symbol", how="left", maintain_order="left")
        .with_columns(
            pl.coalesce(_SESSION, "__first", pl.lit(first_session)).alias("session"),
            pl.when(pl.col("__first").is_null())
            .then(pl.lit(first_symbol))
            .otherwise(pl.col("symbol"))
            .alias("symbol"),
        )
        .drop("__first")
    )


def _epoch_ns(moment: dt.datetime) -> int:
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1) * 1000
