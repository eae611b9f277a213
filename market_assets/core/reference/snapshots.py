"""The stored snapshots: listings joined with CIKs, and rows checked before they are stored.

Every row a provider returned is stored, or counted under a rule name in the run's metadata:

- `invalid_symbol`: the canonical symbol fails market_assets.core.symbols.validate_symbol;
- `duplicate_symbol`: a second row for the same (session, symbol) [(session, index, symbol)
  for constituents]; the first is kept;
- `outside_partition`: the row's session is not one of the run's sessions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from market_assets.core.reference.schemas import (
    CONSTITUENT_SCHEMA,
    REFERENCE_SCHEMA,
    conform,
)
from market_assets.core.symbols import SYMBOL_PATTERN


@dataclass
class CheckedRows:
    """Rows to store and the count of rows set aside, by rule."""

    valid: pl.DataFrame
    rejected: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[str]] = field(default_factory=dict)


def join_ciks(listings: pl.DataFrame, cik_maps: pl.DataFrame) -> tuple[pl.DataFrame, dict]:
    """Listings (REFERENCE_SCHEMA listing columns, `source` set) with `cik` from the map that
    describes each session: the latest dated map on or before it, else an undated map.

    Returns (REFERENCE_SCHEMA rows, facts: maps used per session, SEC tickers not listed).
    `source` becomes "<listing source>+<map source>" where a CIK was found.
    """
    if listings.is_empty():
        return conform(listings, REFERENCE_SCHEMA), {}
    facts: dict[str, object] = {}
    if cik_maps.is_empty():
        rows = listings.with_columns(pl.lit(None, pl.Int64).alias("cik"))
        facts["cik_map"] = "none"
        return conform(rows, REFERENCE_SCHEMA), facts
    map_source = cik_maps["source"][0] if "source" in cik_maps.columns else "sec_tickers"
    dated = cik_maps.filter(pl.col("as_of").is_not_null())
    undated = cik_maps.filter(pl.col("as_of").is_null())
    sessions = listings.select("session").unique().sort("session")
    if not dated.is_empty():
        days = dated.select("as_of").unique().sort("as_of")
        chosen = sessions.join_asof(days, left_on="session", right_on="as_of", strategy="backward")
    else:
        chosen = sessions.with_columns(pl.lit(None, pl.Date).alias("as_of"))
    lookup = pl.concat(
        [
            chosen.filter(pl.col("as_of").is_not_null()).join(dated, on="as_of"),
            chosen.filter(pl.col("as_of").is_null()).drop("as_of").join(undated, how="cross"),
        ],
        how="diagonal_relaxed",
    ).select("session", "symbol", pl.col("cik").alias("_cik"))
    lookup = lookup.unique(["session", "symbol"], keep="first")
    rows = listings.join(lookup, on=["session", "symbol"], how="left").with_columns(
        pl.col("_cik").alias("cik"),
        pl.when(pl.col("_cik").is_not_null())
        .then(pl.concat_str("source", pl.lit(f"+{map_source}")))
        .otherwise(pl.col("source"))
        .alias("source"),
    )
    listed = set(listings["symbol"].unique().to_list())
    facts["cik_map_by_session"] = {
        str(day): str(as_of or "undated") for day, as_of in chosen.iter_rows()
    }
    facts["cik_map_tickers_not_listed"] = cik_maps.filter(~pl.col("symbol").is_in(list(listed)))[
        "symbol"
    ].n_unique()
    return conform(rows, REFERENCE_SCHEMA), facts


def check_rows(
    frame: pl.DataFrame,
    schema: dict[str, pl.DataType],
    keys: Sequence[str],
    sessions: Sequence[dt.date],
) -> CheckedRows:
    """Split rows into stored ones and counted ones (invalid_symbol, duplicate_symbol,
    outside_partition), conformed to `schema`."""
    rows = conform(frame, schema)
    rejected: dict[str, int] = {}
    samples: dict[str, list[str]] = {}

    def set_aside(rule: str, mask: pl.Expr) -> None:
        nonlocal rows
        bad = rows.filter(mask)
        if bad.height:
            rejected[rule] = bad.height
            samples[rule] = [str(s) for s in bad["symbol"].head(10).to_list()]
            rows = rows.filter(~mask)

    set_aside("outside_partition", ~pl.col("session").is_in(list(sessions)))
    valid_symbol = (
        pl.col("symbol").is_not_null()
        & pl.col("symbol").str.contains(SYMBOL_PATTERN.pattern)
        & ~pl.col("symbol").str.contains("..", literal=True)
    )
    set_aside("invalid_symbol", ~valid_symbol)
    set_aside("duplicate_symbol", pl.struct(*keys).is_first_distinct().not_())
    return CheckedRows(rows.sort(*keys), rejected, samples)


def check_reference(frame: pl.DataFrame, sessions: Sequence[dt.date]) -> CheckedRows:
    return check_rows(frame, REFERENCE_SCHEMA, ["session", "symbol"], sessions)


def check_constituents(frame: pl.DataFrame, sessions: Sequence[dt.date]) -> CheckedRows:
    return check_rows(frame, CONSTITUENT_SCHEMA, ["session", "index", "symbol"], sessions)
