"""MarketData: the public read API for backtests and exports.

    from market_assets import MarketData
    md = MarketData(root="./data")            # or "s3://bucket/prefix", dsn="postgresql://..."
    bars = md.bars(["AAPL", "MSFT"], "2024-01-02", "2024-02-01", granularity="1d")
    bars.to_pandas()                           # the user's choice

Bounds: `start` inclusive, `end` exclusive. Dates mean 00:00 UTC; naive datetimes are UTC.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import polars as pl

from market_assets.core.schemas import BAR_COLUMNS, BAR_SCHEMA, GRANULARITIES
from market_assets.core.stores.lake import ParquetLake
from market_assets.core.stores.layout import GRANULARITY_DATASET
from market_assets.core.symbols import validate_symbols

TimeBound = dt.date | dt.datetime | str
ExportFormat = Literal["csv", "parquet"]


def to_utc(value: TimeBound, *, name: str) -> dt.datetime:
    """A date, datetime or ISO string as an aware UTC datetime (naive means UTC)."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{name}={value!r} is not an ISO date or datetime") from None
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time(0), tzinfo=dt.UTC)
    raise TypeError(f"{name} must be a date, datetime or ISO string, not {type(value).__name__}")


class MarketData:
    """Read canonical bars from the Parquet lake (default) or TimescaleDB/PostgreSQL."""

    def __init__(
        self,
        root: str | Path | None = None,
        dsn: str | None = None,
        *,
        s3_endpoint_url: str | None = None,
        s3_region: str | None = None,
    ) -> None:
        self.root = str(root or os.environ.get("MARKET_ASSETS_DATA_DIR", "data"))
        self.dsn = dsn
        self._lake = ParquetLake(
            self.root,
            s3_endpoint_url=s3_endpoint_url or os.environ.get("MARKET_ASSETS_S3_ENDPOINT_URL"),
            s3_region=s3_region or os.environ.get("AWS_REGION"),
        )

    def bars(
        self,
        symbols: str | Sequence[str],
        start: TimeBound,
        end: TimeBound,
        granularity: str = "1d",
        columns: Sequence[str] | None = None,
        store: Literal["lake", "timescale"] = "lake",
    ) -> pl.DataFrame:
        """Bars with ts in [start, end), sorted by (symbol, ts), in the canonical schema."""
        if granularity not in GRANULARITIES:
            raise ValueError(f"granularity={granularity!r} is not one of {list(GRANULARITIES)}")
        symbol_list = validate_symbols([symbols] if isinstance(symbols, str) else symbols)
        lo, hi = to_utc(start, name="start"), to_utc(end, name="end")
        if lo >= hi:
            raise ValueError(f"start {lo.isoformat()} must be before end {hi.isoformat()}")
        selected = list(columns) if columns else None
        if selected:
            unknown = [c for c in selected if c not in BAR_SCHEMA]
            if unknown:
                raise ValueError(f"unknown column(s) {unknown}; columns are {list(BAR_COLUMNS)}")
        dataset = GRANULARITY_DATASET[granularity]
        if store == "timescale":
            if not self.dsn:
                raise ValueError("store='timescale' needs MarketData(dsn=...)")
            from market_assets.core.stores.timescale import TimescaleStore

            with TimescaleStore(self.dsn) as timescale:
                return timescale.read(dataset, symbol_list, lo, hi, columns=selected)
        return self._lake.read(dataset, symbol_list, lo, hi, columns=selected)

    def export(
        self,
        symbols: str | Sequence[str],
        start: TimeBound,
        end: TimeBound,
        path: str | Path,
        granularity: str = "1d",
        format: ExportFormat = "csv",  # noqa: A002 - the user-facing name
        columns: Sequence[str] | None = None,
    ) -> int:
        """Write bars to `path` as CSV or Parquet; returns the number of rows written."""
        frame = self.bars(symbols, start, end, granularity=granularity, columns=columns)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if format == "csv":
            frame.write_csv(target)
        elif format == "parquet":
            frame.write_parquet(target, compression="zstd")
        else:
            raise ValueError(f"format={format!r} must be 'csv' or 'parquet'")
        return len(frame)
