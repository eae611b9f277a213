"""Reading fundamentals back from the lake for the query API: the long table and the
point-in-time view over it."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from market_assets.core.fundamentals.config import load_fundamentals_config
from market_assets.core.fundamentals.pit import point_in_time
from market_assets.core.stores.lake import ParquetLake

DATASET = "fundamentals"
XBRL_START = dt.date(2009, 1, 1)  # SEC XBRL filings (and so companyfacts) begin in 2009
FAR_FUTURE = dt.date(2200, 1, 1)


def facts_from_lake(
    lake: ParquetLake,
    symbols: Sequence[str],
    fields: Sequence[str] | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> pl.DataFrame:
    """Stored facts of `symbols` with filed in [start, end), sorted by (symbol, filed)."""
    stop = end or FAR_FUTURE
    # A fact's partition is on or after its filing date, at most a long weekend later.
    upper = min(stop + dt.timedelta(days=10), FAR_FUTURE)
    facts = lake.read(DATASET, symbols, max(start or XBRL_START, XBRL_START), upper)
    keep = pl.col("filed") < stop
    if start is not None:
        keep &= pl.col("filed") >= start
    if fields is not None:
        keep &= pl.col("field").is_in(list(fields))
    return facts.filter(keep).sort("symbol", "filed", maintain_order=True)


def point_in_time_from_lake(
    lake: ParquetLake,
    symbols: Sequence[str],
    fields: Sequence[str] | None,
    as_of: dt.date,
    config_dir: str | Path | None = None,
) -> pl.DataFrame:
    """One row per (symbol, field) as known at the end of `as_of` (see pit.py)."""
    directory = config_dir or os.environ.get("MARKET_ASSETS_CONFIG_DIR", "configs")
    config = load_fundamentals_config(directory)
    names = config.check_names(list(fields)) if fields is not None else config.names()
    facts = facts_from_lake(lake, symbols, end=as_of + dt.timedelta(days=1))
    return point_in_time(facts, symbols, names, as_of, config)
