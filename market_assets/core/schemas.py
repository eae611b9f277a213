"""Canonical tables: polars dtypes and pandera models. Every stored frame passes through here."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.engines.polars_engine import DateTime

GRANULARITIES = ("1m", "5m", "15m", "1h", "1d")
INTRADAY_GRANULARITIES = ("1m", "5m", "15m", "1h")
TS_DTYPE = pl.Datetime("us", "UTC")

BAR_SCHEMA: dict[str, pl.DataType] = {
    "ts": TS_DTYPE,
    "symbol": pl.String(),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Int64(),
    "trade_count": pl.Int64(),
    "vwap": pl.Float64(),
    "granularity": pl.String(),
    "source": pl.String(),
}
BAR_COLUMNS: tuple[str, ...] = tuple(BAR_SCHEMA)
PRICE_COLUMNS = ("open", "high", "low", "close")

QUARANTINE_EXTRA_SCHEMA: dict[str, pl.DataType] = {
    "session": pl.Date(),  # the partition (session) the row was quarantined from
    "dataset": pl.String(),
    "rule": pl.String(),
    "detail": pl.String(),
    "quarantined_at": TS_DTYPE,
}


class BarModel(pa.DataFrameModel):
    """One OHLCV bar. `ts` is the bar open in UTC; daily bars use the session date 00:00 UTC."""

    ts: DateTime = pa.Field(dtype_kwargs={"time_unit": "us", "time_zone": "UTC"})
    symbol: str = pa.Field(str_length={"min_value": 1, "max_value": 32})
    open: float = pa.Field(gt=0)
    high: float = pa.Field(gt=0)
    low: float = pa.Field(gt=0)
    close: float = pa.Field(gt=0)
    volume: pl.Int64 = pa.Field(ge=0)
    trade_count: pl.Int64 = pa.Field(nullable=True, ge=0)
    vwap: float = pa.Field(nullable=True)
    granularity: str = pa.Field(isin=list(GRANULARITIES))
    source: str = pa.Field(str_length={"min_value": 1})

    class Config:
        strict = True
        ordered = True
        unique = ["symbol", "ts"]

    @pa.dataframe_check
    def high_is_highest(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("high") >= pl.max_horizontal("open", "close", "low"))

    @pa.dataframe_check
    def low_is_lowest(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("low") <= pl.min_horizontal("open", "close"))


def empty_bars() -> pl.DataFrame:
    return pl.DataFrame(schema=BAR_SCHEMA)


def conform_bars(frame: pl.DataFrame) -> pl.DataFrame:
    """Cast and order columns to the canonical bar schema (missing nullable columns are null).

    Raises ValueError naming the missing column when a required column is absent.
    """
    required = [c for c in BAR_COLUMNS if c not in ("trade_count", "vwap")]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"bar frame is missing required column(s) {missing}")
    exprs = []
    for name, dtype in BAR_SCHEMA.items():
        if name in frame.columns:
            exprs.append(pl.col(name).cast(dtype))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
    return frame.select(exprs)


ACTION_TYPES = ("split", "dividend")

ACTION_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ex_date": pl.Date(),
    "action_type": pl.String(),
    "ratio": pl.Float64(),  # splits: new shares per old share (2.0 for 2:1, 0.1 for 1:10)
    "amount": pl.Float64(),  # cash dividends: amount per share
    "currency": pl.String(),
    "source": pl.String(),
}
