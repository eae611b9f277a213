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
SYMBOL_CHANGE = "symbol_change"  # action_type of a ticker change: `symbol` -> `new_symbol`

ACTION_DETAIL_SCHEMA: dict[str, pl.DataType] = {
    "new_symbol": pl.String(),  # symbol changes: the ticker from ex_date on
    "announced": pl.Date(),  # declaration date, when the vendor gives it
    "record_date": pl.Date(),  # dividends: record date, when known
    "pay_date": pl.Date(),  # dividends: payment date, when known
    "reference_close": pl.Float64(),  # raw close of the session before ex_date
    "known_at": TS_DTYPE,  # when the action became known (point-in-time; see data dictionary)
}
"""Columns a provider MAY add to ACTION_SCHEMA; the stored table has them all (null if unknown)."""

STORED_ACTION_SCHEMA: dict[str, pl.DataType] = {**ACTION_SCHEMA, **ACTION_DETAIL_SCHEMA}

ADJUSTMENT_SCHEMA: dict[str, pl.DataType] = {
    "adj_open": pl.Float64(),
    "adj_high": pl.Float64(),
    "adj_low": pl.Float64(),
    "adj_close": pl.Float64(),
    "adj_volume": pl.Float64(),  # raw volume x split ratios: fractional after a reverse split
    "split_factor": pl.Float64(),  # product of 1/ratio over later splits
    "dividend_factor": pl.Float64(),  # product of (1 - amount / reference close), later dividends
}
ADJUSTED_BAR_SCHEMA: dict[str, pl.DataType] = {**BAR_SCHEMA, **ADJUSTMENT_SCHEMA}

INDICATOR_SCHEMA: dict[str, pl.DataType] = {
    "ts": TS_DTYPE,  # the session (00:00 UTC) the value is as of, after its close
    "symbol": pl.String(),
    "indicator": pl.String(),  # configured name, e.g. sma_20, macd_12_26_9_macdsignal
    "value": pl.Float64(),  # null until the indicator's lookback is filled
}
"""Indicators are stored long (one row per session x indicator), so adding one to
configs/indicators.yaml never changes a stored file's columns."""

FUNDAMENTAL_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "cik": pl.Int64(),  # SEC Central Index Key of the filer
    "taxonomy": pl.String(),  # us-gaap, ifrs-full, dei, srt, ...
    "concept": pl.String(),  # the XBRL tag as filed, e.g. Assets
    "field": pl.String(),  # canonical field the concept stands for (configs/fundamentals.yaml)
    "unit": pl.String(),  # USD, shares, USD/shares, pure, EUR, ...
    "value": pl.Float64(),
    "fiscal_year": pl.Int64(),  # the filing's fiscal year (SEC `fy`)
    "fiscal_period": pl.String(),  # the filing's fiscal period: FY, Q1, Q2, Q3, Q4
    "period_start": pl.Date(),  # null for instants (balance-sheet values)
    "period_end": pl.Date(),
    "form": pl.String(),  # 10-K, 10-Q, 20-F, 10-K/A, ...
    "filed": pl.Date(),  # the SEC filing date: the value is public from this date on
    "accession": pl.String(),
    "frame": pl.String(),  # SEC calendar frame (CY2024Q3I), when SEC assigned one
    "session": pl.Date(),  # the partition: first exchange session on or after `filed`
    "source": pl.String(),
}
"""One row per reported fact (restatements are rows of their own); see docs/data_dictionary.md."""

FUNDAMENTAL_RATIO_SCHEMA: dict[str, pl.DataType] = {
    "ts": TS_DTYPE,  # the session (00:00 UTC) the ratios are as of, after its close
    "symbol": pl.String(),
    "close": pl.Float64(),  # raw (unadjusted) close of bars_1d
    "shares_outstanding": pl.Float64(),  # as filed, times splits since its date
    "shares_split_factor": pl.Float64(),  # product of split ratios after shares_period_end
    "shares_period_end": pl.Date(),
    "shares_filed": pl.Date(),
    "market_cap": pl.Float64(),
    "stockholders_equity": pl.Float64(),
    "equity_period_end": pl.Date(),
    "equity_filed": pl.Date(),
    "total_assets": pl.Float64(),
    "assets_period_end": pl.Date(),
    "assets_filed": pl.Date(),
    "long_term_debt": pl.Float64(),
    "debt_filed": pl.Date(),
    "net_income_ttm": pl.Float64(),
    "net_income_period_end": pl.Date(),
    "net_income_filed": pl.Date(),
    "book_to_market": pl.Float64(),
    "roe": pl.Float64(),
    "roa": pl.Float64(),
    "roi": pl.Float64(),
    "currency": pl.String(),  # the currency of the filed values (ratios mix it with USD prices)
    "source": pl.String(),
}
"""Daily ratios per symbol from point-in-time fundamentals and raw daily closes."""

TABLE_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "corporate_actions": STORED_ACTION_SCHEMA,
    "bars_1d_adjusted": ADJUSTED_BAR_SCHEMA,
    "indicators": INDICATOR_SCHEMA,
    "fundamentals": FUNDAMENTAL_SCHEMA,
    "fundamental_ratios": FUNDAMENTAL_RATIO_SCHEMA,
}
"""Session x symbol datasets that are neither raw bars nor ticks."""


TICK_TS_DTYPE = pl.Datetime("ns", "UTC")
"""Tick timestamps keep the vendor's nanoseconds (Databento stamps every event in ns)."""

TICK_SIDES = ("A", "B", "N")  # aggressor side: A = a seller hit the bid, B = a buyer lifted the ask
STAT_UPDATE_ACTIONS = ("new", "delete")

TRADE_SCHEMA: dict[str, pl.DataType] = {
    "ts_event": TICK_TS_DTYPE,  # matching-engine time of the trade
    "ts_recv": TICK_TS_DTYPE,  # when the vendor's capture server received it
    "symbol": pl.String(),
    "instrument_id": pl.Int64(),  # vendor's numeric instrument id (a symbol can change ids)
    "publisher_id": pl.Int64(),  # vendor's venue/feed id
    "price": pl.Float64(),
    "size": pl.Int64(),
    "side": pl.String(),  # aggressor side: A (sell), B (buy), N (none)
    "flags": pl.Int64(),  # vendor bit flags (Databento: F_LAST, F_BAD_TS_RECV, ...)
    "sequence": pl.Int64(),  # venue message sequence number
    "source": pl.String(),
}

TBBO_SCHEMA: dict[str, pl.DataType] = {
    **{name: dtype for name, dtype in TRADE_SCHEMA.items() if name != "source"},
    "bid_price": pl.Float64(),  # best bid just before the trade; null when that side is empty
    "ask_price": pl.Float64(),
    "bid_size": pl.Int64(),
    "ask_size": pl.Int64(),
    "bid_count": pl.Int64(),  # orders at the best bid
    "ask_count": pl.Int64(),
    "source": pl.String(),
}

STATISTICS_SCHEMA: dict[str, pl.DataType] = {
    "ts_event": TICK_TS_DTYPE,
    "ts_recv": TICK_TS_DTYPE,
    "ts_ref": TICK_TS_DTYPE,  # the time the statistic refers to (e.g. settlement date); nullable
    "symbol": pl.String(),
    "instrument_id": pl.Int64(),
    "publisher_id": pl.Int64(),
    "stat_type": pl.String(),  # settlement_price, open_interest, cleared_volume, ...
    "price": pl.Float64(),  # the statistic's price, null when it has none
    "quantity": pl.Int64(),  # the statistic's quantity, null when it has none
    "sequence": pl.Int64(),
    "update_action": pl.String(),  # new or delete (a delete withdraws an earlier value)
    "stat_flags": pl.Int64(),
    "source": pl.String(),
}

TICK_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "trades": TRADE_SCHEMA,
    "tbbo": TBBO_SCHEMA,
    "statistics": STATISTICS_SCHEMA,
}
"""Tick datasets (session x symbol) and their canonical columns. Their time column is
`ts_event`; they have no unique key (one nanosecond can hold several events)."""
TICK_TIME_COLUMN = "ts_event"


def stored_schema(dataset: str) -> dict[str, pl.DataType]:
    """Canonical columns a dataset is stored with: its tick or table schema, else bars."""
    return TICK_SCHEMAS.get(dataset) or TABLE_SCHEMAS.get(dataset, BAR_SCHEMA)


def conform_ticks(frame: pl.DataFrame, dataset: str) -> pl.DataFrame:
    """Cast and order columns to the tick dataset's schema (missing columns become null).

    Raises ValueError naming the dataset for an unknown tick dataset, or naming the column
    when `ts_event` or `symbol` is absent.
    """
    try:
        schema = TICK_SCHEMAS[dataset]
    except KeyError:
        raise ValueError(
            f"unknown tick dataset {dataset!r}; tick datasets: {sorted(TICK_SCHEMAS)}"
        ) from None
    missing = [c for c in (TICK_TIME_COLUMN, "symbol") if c not in frame.columns]
    if missing:
        raise ValueError(f"{dataset} frame is missing required column(s) {missing}")
    return frame.select(
        pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in schema.items()
    )


def empty_ticks(dataset: str) -> pl.DataFrame:
    return pl.DataFrame(schema=TICK_SCHEMAS[dataset])


_TICK_TS = {"time_unit": "ns", "time_zone": "UTC"}


class TradeModel(pa.DataFrameModel):
    """One trade. `ts_event` is when it matched; prices are in the instrument's currency."""

    ts_event: DateTime = pa.Field(dtype_kwargs=_TICK_TS)
    ts_recv: DateTime = pa.Field(dtype_kwargs=_TICK_TS, nullable=True)
    symbol: str = pa.Field(str_length={"min_value": 1, "max_value": 32})
    instrument_id: pl.Int64 = pa.Field(nullable=True)
    publisher_id: pl.Int64 = pa.Field(nullable=True)
    price: float = pa.Field(gt=0)
    size: pl.Int64 = pa.Field(ge=0)
    side: str = pa.Field(isin=list(TICK_SIDES), nullable=True)
    flags: pl.Int64 = pa.Field(nullable=True)
    sequence: pl.Int64 = pa.Field(nullable=True)
    source: str = pa.Field(str_length={"min_value": 1})

    class Config:
        strict = True
        ordered = True


class TbboModel(pa.DataFrameModel):
    """One trade with the best bid and offer just before it (Databento `tbbo`)."""

    ts_event: DateTime = pa.Field(dtype_kwargs=_TICK_TS)
    ts_recv: DateTime = pa.Field(dtype_kwargs=_TICK_TS, nullable=True)
    symbol: str = pa.Field(str_length={"min_value": 1, "max_value": 32})
    instrument_id: pl.Int64 = pa.Field(nullable=True)
    publisher_id: pl.Int64 = pa.Field(nullable=True)
    price: float = pa.Field(gt=0)
    size: pl.Int64 = pa.Field(ge=0)
    side: str = pa.Field(isin=list(TICK_SIDES), nullable=True)
    flags: pl.Int64 = pa.Field(nullable=True)
    sequence: pl.Int64 = pa.Field(nullable=True)
    bid_price: float = pa.Field(nullable=True)
    ask_price: float = pa.Field(nullable=True)
    bid_size: pl.Int64 = pa.Field(nullable=True, ge=0)
    ask_size: pl.Int64 = pa.Field(nullable=True, ge=0)
    bid_count: pl.Int64 = pa.Field(nullable=True, ge=0)
    ask_count: pl.Int64 = pa.Field(nullable=True, ge=0)
    source: str = pa.Field(str_length={"min_value": 1})

    class Config:
        strict = True
        ordered = True

    @pa.dataframe_check
    def bid_not_above_ask(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            (pl.col("bid_price") <= pl.col("ask_price")).fill_null(True)
        )


class StatisticsModel(pa.DataFrameModel):
    """One venue statistic (settlement, open interest, session high/low, ...)."""

    ts_event: DateTime = pa.Field(dtype_kwargs=_TICK_TS)
    ts_recv: DateTime = pa.Field(dtype_kwargs=_TICK_TS, nullable=True)
    ts_ref: DateTime = pa.Field(dtype_kwargs=_TICK_TS, nullable=True)
    symbol: str = pa.Field(str_length={"min_value": 1, "max_value": 32})
    instrument_id: pl.Int64 = pa.Field(nullable=True)
    publisher_id: pl.Int64 = pa.Field(nullable=True)
    stat_type: str = pa.Field(str_length={"min_value": 1})
    price: float = pa.Field(nullable=True)
    quantity: pl.Int64 = pa.Field(nullable=True)
    sequence: pl.Int64 = pa.Field(nullable=True)
    update_action: str = pa.Field(isin=list(STAT_UPDATE_ACTIONS), nullable=True)
    stat_flags: pl.Int64 = pa.Field(nullable=True)
    source: str = pa.Field(str_length={"min_value": 1})

    class Config:
        strict = True
        ordered = True


TICK_MODELS: dict[str, type[pa.DataFrameModel]] = {
    "trades": TradeModel,
    "tbbo": TbboModel,
    "statistics": StatisticsModel,
}


OPTION_QUOTE_SCHEMA: dict[str, pl.DataType] = {
    "session": pl.Date(),  # the session the snapshot belongs to (the partition)
    "ts": TS_DTYPE,  # snapshot time: the session close for end-of-day chains
    "symbol": pl.String(),  # the underlying's ticker (the partition's symbol)
    "contract": pl.String(),  # the vendor's contract symbol (padded or compact OSI)
    "multiplier": pl.Int64(),  # shares per contract when the vendor says; null otherwise
    "adjusted": pl.Boolean(),  # the vendor flags a non-standard deliverable; null if silent
    "bid": pl.Float64(),
    "ask": pl.Float64(),
    "bid_size": pl.Int64(),
    "ask_size": pl.Int64(),
    "quote_ts": TS_DTYPE,  # when the vendor's quote was made
    "last": pl.Float64(),  # last trade price
    "last_ts": TS_DTYPE,
    "volume": pl.Int64(),  # contracts traded in the session
    "open_interest": pl.Int64(),
    "vendor_iv": pl.Float64(),
    "vendor_delta": pl.Float64(),
    "vendor_gamma": pl.Float64(),
    "vendor_vega": pl.Float64(),
    "vendor_theta": pl.Float64(),
    "vendor_rho": pl.Float64(),
    "underlying_price": pl.Float64(),  # the vendor's underlying price, when it sends one
    "underlying_ts": TS_DTYPE,
    "source": pl.String(),
}
"""What an OptionsSource returns: one row per contract and snapshot, as the vendor gave it.
`market_assets.core.options.chain` turns it into OPTION_CHAIN_SCHEMA."""

OPTION_CHAIN_SCHEMA: dict[str, pl.DataType] = {
    "session": pl.Date(),
    "ts": TS_DTYPE,
    "symbol": pl.String(),
    "contract": pl.String(),  # padded 21-character OSI symbol, e.g. "AAPL  250221C00250000"
    "root": pl.String(),  # OSI root; adjusted series have their own (AAPL1)
    "expiration": pl.Date(),
    "kind": pl.String(),  # call or put
    "strike": pl.Float64(),
    "multiplier": pl.Int64(),
    "adjusted": pl.Boolean(),  # non-standard deliverable: kept apart, never merged
    "exercise_style": pl.String(),  # american or european
    "bid": pl.Float64(),
    "ask": pl.Float64(),
    "bid_size": pl.Int64(),
    "ask_size": pl.Int64(),
    "quote_ts": TS_DTYPE,
    "last": pl.Float64(),
    "last_ts": TS_DTYPE,
    "volume": pl.Int64(),
    "open_interest": pl.Int64(),
    "vendor_iv": pl.Float64(),
    "vendor_delta": pl.Float64(),
    "vendor_gamma": pl.Float64(),
    "vendor_vega": pl.Float64(),
    "vendor_theta": pl.Float64(),
    "vendor_rho": pl.Float64(),
    "iv_price": pl.Float64(),  # the option price the IV is implied from (quote midpoint)
    "underlying_price": pl.Float64(),
    "underlying_ts": TS_DTYPE,
    "underlying_source": pl.String(),  # vendor, or bars_1d:<source> (the session's close)
    "rate": pl.Float64(),  # risk-free rate, continuously compounded
    "rate_source": pl.String(),
    "dividend_yield": pl.Float64(),  # continuous dividend yield
    "time_to_expiry": pl.Float64(),  # years, ACT/365, from ts to 16:00 New York on expiration
    "expiry_convention": pl.String(),
    "iv": pl.Float64(),  # recomputed Black-Scholes-Merton implied volatility
    "delta": pl.Float64(),
    "gamma": pl.Float64(),
    "vega": pl.Float64(),  # per 1 volatility point
    "theta": pl.Float64(),  # per calendar day
    "rho": pl.Float64(),  # per 1 rate point
    "iv_status": pl.String(),  # ok, or why there is no IV (market_assets.core.options.greeks)
    "source": pl.String(),
}
"""One row per (contract, ts): the stored `options_chains` dataset (docs/data_dictionary.md)."""

TABLE_SCHEMAS["options_chains"] = OPTION_CHAIN_SCHEMA


class OptionChainModel(pa.DataFrameModel):
    """One contract in one chain snapshot (schema-level; the value rules are asset checks)."""

    session: pl.Date = pa.Field()
    ts: DateTime = pa.Field(dtype_kwargs={"time_unit": "us", "time_zone": "UTC"})
    symbol: str = pa.Field(str_length={"min_value": 1, "max_value": 32})
    contract: str = pa.Field(str_length={"min_value": 21, "max_value": 21})
    root: str = pa.Field(str_length={"min_value": 1, "max_value": 6})
    expiration: pl.Date = pa.Field()
    kind: str = pa.Field(isin=["call", "put"])
    strike: float = pa.Field(gt=0)

    class Config:
        strict = False
        unique = ["contract", "ts"]
