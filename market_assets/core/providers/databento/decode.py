"""Decode Databento DBN data (a `DBNStore`) into the canonical polars frames.

- Prices are fixed-point int64 in units of 1e-9. `UNDEF_PRICE` (INT64_MAX) means "no price"
  and becomes null, never a number; other prices are converted exactly (integer and fraction
  apart) and rounded to 1e-9.
- Timestamps are uint64 nanoseconds since the epoch; `UNDEF_TIMESTAMP` becomes null. Ticks keep
  nanoseconds; bars use the canonical microsecond `ts`, which is the bar open (`ts_event`);
  Databento's daily bars already sit at the session date 00:00 UTC.
- Each record's `instrument_id` is mapped to the symbol requested for it on the record's date,
  through the store's symbology and the client's own `InstrumentMap`, keyed by the UTC date of
  `ts_recv` when the schema has it, else `ts_event` (the rule the client's `to_df` uses).
  An instrument_id the store's symbology does not map takes its symbol from `definitions`
  (instrument_id -> raw_symbol, read from definition files) when given. Records no requested
  symbol maps to are dropped.

Records are read with `DBNStore.to_ndarray` (one numpy structured array) rather than `to_df`:
`to_df` turns UNDEF_PRICE into NaN floats where we need nulls, scales prices in float before
we can keep them exact, and goes through pandas (which warns about the client's
`set_index(inplace=True)` on pandas 3). A truncated stream only warns in the client; here it
is an error.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import polars as pl
from databento import DBNStore
from databento.common.error import BentoWarning
from databento.common.symbology import InstrumentMap
from databento_dbn import UNDEF_PRICE, UNDEF_STAT_QUANTITY, UNDEF_TIMESTAMP, StatType

from market_assets.core.schemas import (
    TICK_TS_DTYPE,
    TS_DTYPE,
    conform_bars,
    conform_ticks,
)

FIXED_PRICE_UNITS = 1_000_000_000
NS_PER_DAY = 86_400 * 1_000_000_000
UNDEF_STAT_QUANTITY_V1 = 2**31 - 1  # DBN v1/v2 statistics carry an int32 quantity

BAR_DBN_SCHEMAS = {"1m": "ohlcv-1m", "1d": "ohlcv-1d"}
"""Our granularities Databento serves directly (others are resampled from 1m)."""
TICK_DBN_SCHEMAS = {"trades": "trades", "tbbo": "tbbo", "statistics": "statistics"}
"""Our tick datasets and the DBN schema each is decoded from."""

STAT_TYPE_NAMES: dict[int, str] = {
    int(getattr(StatType, name)): name.lower() for name in dir(StatType) if name.isupper()
}
STAT_UPDATE_ACTIONS = {1: "new", 2: "delete"}


class DbnDecodeError(ValueError):
    """The DBN data cannot be decoded as asked (truncated, or another schema)."""


def dbn_schema(store: DBNStore) -> str | None:
    """The store's schema as Databento spells it (`ohlcv-1d`, `trades`), None when mixed."""
    return str(store.schema) if store.schema is not None else None


def records(store: DBNStore, schema: str, origin: str) -> np.ndarray:
    """Every record of `store` as a structured array.

    Raises DbnDecodeError naming `origin` when the store holds another schema or ends in an
    incomplete record (a download cut short or a damaged file).
    """
    found = dbn_schema(store)
    if found != schema:
        raise DbnDecodeError(f"{origin} holds {found or 'mixed'} records, expected {schema}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BentoWarning)
        array = store.to_ndarray()
    if any(issubclass(w.category, BentoWarning) for w in caught):
        reasons = "; ".join(str(w.message) for w in caught)
        raise DbnDecodeError(f"{origin} is truncated or damaged ({reasons})")
    return array.reshape(-1)  # the client returns shape (0, 1) when there is no record


def bars_frame(
    store: DBNStore,
    granularity: str,
    source: str,
    origin: str,
    definitions: Mapping[int, str] | None = None,
) -> pl.DataFrame:
    """Canonical 1m or 1d bars (BAR_SCHEMA) from an `ohlcv-1m` / `ohlcv-1d` store.

    OHLCV records carry no trade count or VWAP, so those columns are null.
    """
    array = records(store, BAR_DBN_SCHEMAS[granularity], origin)
    raw = _raw(array, ("ts_event", "instrument_id", "open", "high", "low", "close", "volume"))
    frame = raw.with_columns(_symbols(store, array, definitions)).select(
        _timestamp("ts_event").cast(TS_DTYPE).alias("ts"),
        "symbol",
        *(_price(name).alias(name) for name in ("open", "high", "low", "close")),
        pl.col("volume").cast(pl.Int64),
        pl.lit(None, pl.Int64).alias("trade_count"),
        pl.lit(None, pl.Float64).alias("vwap"),
        pl.lit(granularity).alias("granularity"),
        pl.lit(source).alias("source"),
    )
    return conform_bars(frame.filter(pl.col("symbol").is_not_null()))


_FIELDS_USED = frozenset(
    {
        "ts_event",
        "ts_recv",
        "ts_ref",
        "instrument_id",
        "publisher_id",
        "price",
        "size",
        "side",
        "flags",
        "sequence",
        "bid_px_00",
        "ask_px_00",
        "bid_sz_00",
        "ask_sz_00",
        "bid_ct_00",
        "ask_ct_00",
        "quantity",
        "stat_type",
        "update_action",
        "stat_flags",
    }
)
"""DBN fields read for ticks (the rest, e.g. depth and ts_in_delta, are not kept)."""


def ticks_frame(
    store: DBNStore,
    dataset: str,
    source: str,
    origin: str,
    definitions: Mapping[int, str] | None = None,
) -> pl.DataFrame:
    """Canonical ticks of `dataset` (trades, tbbo or statistics) from a store of that schema."""
    array = records(store, TICK_DBN_SCHEMAS[dataset], origin)
    if dataset == "statistics":
        columns = _statistics_columns(array)
    else:
        columns = _trade_columns(with_quote=dataset == "tbbo")
    fields = [name for name in array.dtype.names if name in _FIELDS_USED]
    frame = (
        _raw(array, fields)
        .with_columns(_symbols(store, array, definitions))
        .select(*columns, pl.lit(source).alias("source"))
        .filter(pl.col("symbol").is_not_null())
    )
    return conform_ticks(frame, dataset)


def _trade_columns(*, with_quote: bool) -> list[pl.Expr]:
    columns = [
        _timestamp("ts_event").alias("ts_event"),
        _timestamp("ts_recv").alias("ts_recv"),
        pl.col("symbol"),
        pl.col("instrument_id").cast(pl.Int64),
        pl.col("publisher_id").cast(pl.Int64),
        _price("price").alias("price"),
        pl.col("size").cast(pl.Int64),
        pl.col("side"),
        pl.col("flags").cast(pl.Int64),
        pl.col("sequence").cast(pl.Int64),
    ]
    if with_quote:
        columns += [
            _price("bid_px_00").alias("bid_price"),
            _price("ask_px_00").alias("ask_price"),
            pl.col("bid_sz_00").cast(pl.Int64).alias("bid_size"),
            pl.col("ask_sz_00").cast(pl.Int64).alias("ask_size"),
            pl.col("bid_ct_00").cast(pl.Int64).alias("bid_count"),
            pl.col("ask_ct_00").cast(pl.Int64).alias("ask_count"),
        ]
    return columns


def _statistics_columns(array: np.ndarray) -> list[pl.Expr]:
    narrow = array.dtype["quantity"].itemsize == 4
    undefined = UNDEF_STAT_QUANTITY_V1 if narrow else UNDEF_STAT_QUANTITY
    quantity = pl.col("quantity").cast(pl.Int64)
    return [
        _timestamp("ts_event").alias("ts_event"),
        _timestamp("ts_recv").alias("ts_recv"),
        _timestamp("ts_ref").alias("ts_ref"),
        pl.col("symbol"),
        pl.col("instrument_id").cast(pl.Int64),
        pl.col("publisher_id").cast(pl.Int64),
        pl.col("stat_type")
        .replace_strict(
            STAT_TYPE_NAMES,
            default=pl.format("stat_type_{}", pl.col("stat_type")),
            return_dtype=pl.String,
        )
        .alias("stat_type"),
        _price("price").alias("price"),
        pl.when(quantity != undefined).then(quantity).alias("quantity"),
        pl.col("sequence").cast(pl.Int64),
        pl.col("update_action")
        .replace_strict(STAT_UPDATE_ACTIONS, default=None, return_dtype=pl.String)
        .alias("update_action"),
        pl.col("stat_flags").cast(pl.Int64),
    ]


_ASCII = {code: chr(code) for code in range(1, 128)}


def _raw(array: np.ndarray, fields: tuple[str, ...] | list[str]) -> pl.DataFrame:
    """The named fields of a structured array as polars columns.

    One-byte character fields (side, action) become one-letter strings through a lookup on
    their byte value, several times faster than numpy's bytes-to-str conversion.
    """
    columns: list[pl.Series] = []
    for name in fields:
        values = array[name]
        if values.dtype.kind == "S" and values.dtype.itemsize == 1:
            codes = pl.Series(name, values.view(np.uint8))
            columns.append(codes.replace_strict(_ASCII, default=None, return_dtype=pl.String))
        elif values.dtype.kind == "S":
            columns.append(pl.Series(name, values.astype(str)))
        else:
            columns.append(pl.Series(name, values))
    return pl.DataFrame(columns)


def _price(column: str) -> pl.Expr:
    """Fixed-point 1e-9 int64 -> float64, exact to 1e-9; UNDEF_PRICE -> null."""
    fixed = pl.col(column)
    whole = (fixed // FIXED_PRICE_UNITS).cast(pl.Float64)
    fraction = (fixed % FIXED_PRICE_UNITS).cast(pl.Float64) / FIXED_PRICE_UNITS
    return pl.when(fixed != UNDEF_PRICE).then((whole + fraction).round(9))


def _timestamp(column: str) -> pl.Expr:
    """uint64 epoch nanoseconds -> Datetime(ns, UTC); UNDEF_TIMESTAMP -> null."""
    stamp = pl.col(column)
    return pl.when(stamp != UNDEF_TIMESTAMP).then(stamp).cast(pl.Int64).cast(TICK_TS_DTYPE)


def _symbols(
    store: DBNStore, array: np.ndarray, definitions: Mapping[int, str] | None = None
) -> pl.Series:
    """The symbol each record's instrument_id maps to on its date (None when unmapped); ids
    the store's symbology leaves unmapped take their `definitions` symbol when given.

    Each distinct (instrument_id, date) is resolved once by the client's InstrumentMap and
    joined back: resolving every record (`InstrumentMap.resolve_many`) costs ~2 s per million
    records, this ~0.1 s.
    """
    instruments = InstrumentMap()
    instruments.insert_metadata(store.metadata)
    date_field = "ts_recv" if "ts_recv" in (array.dtype.names or ()) else "ts_event"
    keys = pl.DataFrame(
        {
            "instrument_id": array["instrument_id"].astype(np.int64),
            "day": (array[date_field] // NS_PER_DAY).astype(np.int32),
        }
    ).with_columns(pl.col("day").cast(pl.Date))
    distinct = keys.unique()
    resolved = [instruments.resolve(ident, day) for ident, day in distinct.iter_rows()]
    table = distinct.with_columns(pl.Series("symbol", resolved, dtype=pl.String))
    mapped = keys.join(table, on=["instrument_id", "day"], how="left", maintain_order="left")
    symbols = mapped.get_column("symbol")
    if definitions and symbols.null_count():
        defined = mapped.get_column("instrument_id").replace_strict(
            dict(definitions), default=None, return_dtype=pl.String
        )
        symbols = symbols.fill_null(defined)
    return symbols
