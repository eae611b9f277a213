"""Test-only readers for the real vendor samples in MARKET_ASSETS_REALDATA (never copied here).

- Lean (QuantConnect): raw daily bars in a zip of `yyyymmdd 00:00,open,high,low,close,volume`
  with prices x 10,000, and factor files `date,price_factor,split_factor,reference_price`.
  A factor row applies to every bar on or before its date and after the previous row's date;
  Lean's adjusted price is raw x price_factor x split_factor.
- Quandl WIKI sample (zipline's test resources): raw OHLCV with `ex-dividend`, `split_ratio`
  and the vendor's `adj_*` columns.

Lean publishes no dividend list beside its daily bars, so `lean_actions` derives dividends
from the steps of `price_factor` (the step between two rows is 1 - D / reference_price) and
splits from the steps of `split_factor`; the ex-date is the session after the row's date.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import os
import zipfile
from pathlib import Path

import polars as pl
import pytest

from market_assets.core.calendar import get_calendar
from market_assets.core.schemas import BAR_SCHEMA

REALDATA_ENV = "MARKET_ASSETS_REALDATA"
LEAN_PRICE_SCALE = 10_000.0


def realdata_dir() -> Path:
    """$MARKET_ASSETS_REALDATA, or ../shared/realdata beside the checkout."""
    default = Path(__file__).resolve().parents[2] / "shared" / "realdata"
    return Path(os.environ.get(REALDATA_ENV, default))


def require(relative: str) -> Path:
    """Path of a real-data file, or skip the test saying which file is missing."""
    path = realdata_dir() / relative
    if not path.exists():
        pytest.skip(f"real data {path} not found (set {REALDATA_ENV} to the samples folder)")
    return path


def lean_daily_bars(symbol: str) -> pl.DataFrame:
    """Raw daily bars of a Lean sample (aapl, spy, ibm) in the canonical bar schema."""
    path = require(f"lean/daily__{symbol.lower()}.zip")
    with zipfile.ZipFile(path) as archive:
        text = archive.read(archive.namelist()[0])
    raw = pl.read_csv(
        io.BytesIO(text),
        has_header=False,
        new_columns=["stamp", "open", "high", "low", "close", "volume"],
        schema_overrides={"stamp": pl.String()},
    )
    return raw.select(
        pl.col("stamp")
        .str.slice(0, 8)
        .str.to_date("%Y%m%d")
        .cast(pl.Datetime("us"))
        .dt.replace_time_zone("UTC")
        .alias("ts"),
        pl.lit(symbol.upper()).alias("symbol"),
        *[(pl.col(c) / LEAN_PRICE_SCALE).alias(c) for c in ("open", "high", "low", "close")],
        pl.col("volume").cast(pl.Int64),
        pl.lit(None, pl.Int64).alias("trade_count"),
        pl.lit(None, pl.Float64).alias("vwap"),
        pl.lit("1d").alias("granularity"),
        pl.lit("lean").alias("source"),
    ).select(pl.col(name).cast(dtype) for name, dtype in BAR_SCHEMA.items())


def lean_factor_file(symbol: str) -> pl.DataFrame:
    """Rows of a Lean factor file: date, price_factor, split_factor, reference_price."""
    path = require(f"lean/factor_files__{symbol.lower()}.csv")
    return pl.read_csv(
        path,
        has_header=False,
        new_columns=["date", "price_factor", "split_factor", "reference_price"],
        schema_overrides={"date": pl.String()},
    ).with_columns(pl.col("date").str.to_date("%Y%m%d"))


def lean_actions(symbol: str, factors: pl.DataFrame) -> pl.DataFrame:
    """Splits and dividends implied by the steps between consecutive factor-file rows."""
    calendar = get_calendar()
    rows = factors.to_dicts()
    records: list[dict[str, object]] = []
    for before, after in zip(rows, rows[1:], strict=False):
        if before["date"] >= calendar.last_session:
            break
        ex_date = calendar.sessions(before["date"] + dt.timedelta(days=1), after["date"])[0]
        ratio = after["split_factor"] / before["split_factor"]
        # Factor files round to 7 digits (2:1 reads 1.999996): snap to 4 decimals.
        split = round(ratio, 4) if abs(ratio - 1.0) > 1e-4 else None
        step = before["price_factor"] / after["price_factor"]
        reference = before["reference_price"]
        if split is not None:
            records.append(_action(symbol, ex_date, "split", ratio=split))
        if abs(1.0 - step) > 1e-9:
            amount = (1.0 - step) * reference / (split or 1.0)
            records.append(
                _action(symbol, ex_date, "dividend", amount=amount, reference_close=reference)
            )
    return pl.DataFrame(records, schema=_ACTION_COLUMNS)


_ACTION_COLUMNS = {
    "symbol": pl.String(),
    "ex_date": pl.Date(),
    "action_type": pl.String(),
    "ratio": pl.Float64(),
    "amount": pl.Float64(),
    "reference_close": pl.Float64(),
    "source": pl.String(),
}


def _action(symbol: str, ex_date: dt.date, kind: str, **values: float) -> dict[str, object]:
    return {
        "symbol": symbol.upper(),
        "ex_date": ex_date,
        "action_type": kind,
        "ratio": values.get("ratio"),
        "amount": values.get("amount"),
        "reference_close": values.get("reference_close"),
        "source": "lean",
    }


def lean_adjusted_close(bars: pl.DataFrame, factors: pl.DataFrame) -> pl.DataFrame:
    """(ts, lean_adj_close): raw close x the factors of the first row dated on or after it."""
    table = factors.select(
        pl.col("date"), (pl.col("price_factor") * pl.col("split_factor")).alias("__factor")
    ).sort("date")
    return (
        bars.select("ts", "close", pl.col("ts").dt.date().alias("__day"))
        .sort("__day")
        .join_asof(table, left_on="__day", right_on="date", strategy="forward")
        .select("ts", (pl.col("close") * pl.col("__factor")).alias("lean_adj_close"))
    )


def quandl_sample() -> pl.DataFrame:
    """The Quandl WIKI sample: raw OHLCV, ex-dividend, split_ratio and adj_* for 2014."""
    path = require("zipline/quandl_samples__QUANDL_ARCHIVE.zip")
    with zipfile.ZipFile(path) as archive:
        text = archive.read(archive.namelist()[0])
    return pl.read_csv(io.BytesIO(text), try_parse_dates=True)


def quandl_bars_and_actions(ticker: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(raw bars, actions, vendor adjusted close) of one ticker of the Quandl sample."""
    rows = quandl_sample().filter(pl.col("ticker") == ticker).sort("date")
    symbol = ticker.replace("_", ".")
    ts = pl.col("date").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("ts")
    bars = rows.select(
        ts,
        pl.lit(symbol).alias("symbol"),
        "open",
        "high",
        "low",
        "close",
        pl.col("volume").cast(pl.Int64),
        pl.lit(None, pl.Int64).alias("trade_count"),
        pl.lit(None, pl.Float64).alias("vwap"),
        pl.lit("1d").alias("granularity"),
        pl.lit("quandl").alias("source"),
    ).select(pl.col(name).cast(dtype) for name, dtype in BAR_SCHEMA.items())
    splits = rows.filter(pl.col("split_ratio") != 1.0).select(
        pl.lit(symbol).alias("symbol"),
        pl.col("date").alias("ex_date"),
        pl.lit("split").alias("action_type"),
        pl.col("split_ratio").alias("ratio"),
        pl.lit(None, pl.Float64).alias("amount"),
    )
    dividends = rows.filter(pl.col("ex-dividend") != 0.0).select(
        pl.lit(symbol).alias("symbol"),
        pl.col("date").alias("ex_date"),
        pl.lit("dividend").alias("action_type"),
        pl.lit(None, pl.Float64).alias("ratio"),
        pl.col("ex-dividend").alias("amount"),
    )
    actions = pl.concat([splits, dividends]).with_columns(pl.lit("quandl").alias("source"))
    vendor = rows.select(ts, pl.col("adj_close").alias("vendor_adj_close"))
    return bars, actions.sort("ex_date"), vendor


def zipline_csvdir(ticker: str) -> pl.DataFrame:
    """zipline's csvdir sample: prices already split-adjusted, with a `split` column."""
    path = require(f"zipline/csvdir_samples__csvdir__daily__{ticker}.csv.gz")
    with gzip.open(path) as handle:
        return pl.read_csv(handle.read(), try_parse_dates=True)
