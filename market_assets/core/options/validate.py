"""Hard rules for chain rows: split a chain frame into rows fit to store and quarantine.

A row is quarantined, never stored, when it breaks a hard rule: `invalid_contract` (its
contract symbol does not parse as OSI), `null_timestamp`, `null_symbol`, `outside_partition`
(its underlying and session are not being written), `duplicate_key` (an exact copy of an
earlier (contract, ts) row; the first copy is stored) or `conflicting_duplicate_key` (rows
sharing a (contract, ts) that disagree: all are quarantined, nothing says which is right).
Value judgements (bid <= ask, IV bounds, parity, ...) are asset checks, not hard rules.
Quarantined rows outside the written partitions are filed under their symbol's first written
session (or the first partition), so rewriting those partitions replaces them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl
from pandera.config import ValidationDepth, config_context

from market_assets.core.schemas import (
    OPTION_CHAIN_SCHEMA,
    QUARANTINE_EXTRA_SCHEMA,
    OptionChainModel,
)
from market_assets.core.validate import ValidationResult

DATASET = "options_chains"
ROW_RULES: dict[str, pl.Expr] = {
    "invalid_contract": pl.col("root").is_null(),
    "null_timestamp": pl.col("ts").is_null() | pl.col("session").is_null(),
    "null_symbol": pl.col("symbol").is_null(),
}
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {**OPTION_CHAIN_SCHEMA, **QUARANTINE_EXTRA_SCHEMA}


def empty_quarantine() -> pl.DataFrame:
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)


def split_valid_options(
    frame: pl.DataFrame, partitions: Sequence[tuple[str, dt.date]]
) -> ValidationResult:
    """Apply the hard rules to chain rows (OPTION_CHAIN_SCHEMA) being written to `partitions`."""
    rows = frame.select(
        pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in OPTION_CHAIN_SCHEMA.items()
    )
    listed = pl.DataFrame(
        {"symbol": [s for s, _ in partitions], "session": [d for _, d in partitions]},
        schema={"symbol": pl.String(), "session": pl.Date()},
    ).unique()
    row_hash = pl.struct(list(OPTION_CHAIN_SCHEMA)).hash()
    marked = (
        rows.with_row_index("__row")
        .join(
            listed.with_columns(pl.lit(True).alias("__listed")),
            on=["symbol", "session"],
            how="left",
            maintain_order="left",
        )
        .with_columns(
            *(expr.fill_null(False).alias(name) for name, expr in ROW_RULES.items()),
            pl.col("__listed").is_null().alias("outside_partition"),
            (row_hash.n_unique().over("contract", "ts") > 1).alias("conflicting_duplicate_key"),
        )
        .with_columns(
            (~pl.col("conflicting_duplicate_key") & ~row_hash.is_first_distinct()).alias(
                "duplicate_key"
            )
        )
    )
    names = [*ROW_RULES, "outside_partition", "conflicting_duplicate_key", "duplicate_key"]
    bad = pl.any_horizontal(names)
    valid = marked.filter(~bad).select(list(OPTION_CHAIN_SCHEMA))
    with config_context(validation_depth=ValidationDepth.SCHEMA_ONLY):
        OptionChainModel.validate(valid)
    rejected = marked.filter(bad)
    if rejected.is_empty():
        return ValidationResult(valid=valid, quarantined=empty_quarantine())
    rule = pl.concat_str(
        [pl.when(pl.col(name)).then(pl.lit(name)) for name in names],
        separator=",",
        ignore_nulls=True,
    )
    detail = pl.format(
        "symbol={} session={} contract={} ts={}",
        *(
            pl.col(c).cast(pl.String).fill_null("null")
            for c in ("symbol", "session", "contract", "ts")
        ),
    )
    filed = _file_under_partitions(
        rejected.with_columns(rule.alias("rule"), detail.alias("detail")), partitions
    )
    quarantined = filed.select(
        *(c for c in OPTION_CHAIN_SCHEMA),
        pl.lit(DATASET).alias("dataset"),
        "rule",
        "detail",
        pl.lit(dt.datetime.now(dt.UTC))
        .cast(QUARANTINE_EXTRA_SCHEMA["quarantined_at"])
        .alias("quarantined_at"),
    ).select(pl.col(name).cast(dtype) for name, dtype in QUARANTINE_SCHEMA.items())
    return ValidationResult(valid=valid, quarantined=quarantined)


def _file_under_partitions(
    rows: pl.DataFrame, partitions: Sequence[tuple[str, dt.date]]
) -> pl.DataFrame:
    """Rows outside the written partitions take their symbol's first written session."""
    ordered = sorted(partitions, key=lambda p: (p[1], p[0]))
    first_symbol, first_session = ordered[0]
    first: dict[str, dt.date] = {}
    for symbol, session in ordered:
        first.setdefault(symbol, session)
    fallback = pl.DataFrame(
        {"symbol": list(first), "__first": list(first.values())},
        schema={"symbol": pl.String(), "__first": pl.Date()},
    )
    outside = pl.col("outside_partition")
    return (
        rows.join(fallback, on="symbol", how="left", maintain_order="left")
        .with_columns(
            pl.when(outside)
            .then(pl.coalesce("__first", pl.lit(first_session)))
            .otherwise(pl.col("session"))
            .alias("session"),
            pl.when(outside & pl.col("__first").is_null())
            .then(pl.lit(first_symbol))
            .otherwise(pl.col("symbol"))
            .alias("symbol"),
        )
        .drop("__first")
    )
