"""Canonical columns of the reference and index-membership tables (docs/data_dictionary.md)."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.engines.polars_engine import Date, DateTime

from market_assets.core.symbols import SYMBOL_PATTERN

TS = pl.Datetime("us", "UTC")

REFERENCE_SCHEMA: dict[str, pl.DataType] = {
    "session": pl.Date(),  # the session the snapshot describes
    "symbol": pl.String(),  # canonical (CQS) form: BRK.B, ABRpD, AACT.WS, AACT.U
    "vendor_symbol": pl.String(),  # as the listing file spells it (NASDAQ form: ABR-D, AACT+)
    "cik": pl.Int64(),  # SEC Central Index Key of the issuer; null when no CIK source knows it
    "name": pl.String(),
    "exchange": pl.String(),  # NASDAQ, NYSE, NYSE American, NYSE Arca, Cboe BZX, IEX, ...
    "exchange_code": pl.String(),  # the listing file's code (Q/G/S market tier, A, N, P, Z, V)
    "asset_type": pl.String(),  # stock, etf, adr, preferred, warrant, right, unit, note
    "is_etf": pl.Boolean(),
    "is_test_issue": pl.Boolean(),
    "financial_status": pl.String(),  # NASDAQ-listed only: N normal, D deficient, E delinquent...
    "round_lot_size": pl.Int64(),
    "published_at": TS,  # when the source published the snapshot (File Creation Time)
    "source": pl.String(),  # providers that contributed: nasdaq_trader, nasdaq_trader+sec_tickers
}

LISTING_COLUMNS = [c for c in REFERENCE_SCHEMA if c not in ("cik", "source")]
"""Columns a listing source (nasdaq_trader) returns; the asset joins CIKs and sets `source`."""

CIK_MAP_SCHEMA: dict[str, pl.DataType] = {
    "as_of": pl.Date(),  # the date the map describes; null for an undated file
    "symbol": pl.String(),  # canonical (CQS) form of the SEC ticker
    "sec_ticker": pl.String(),  # as the SEC writes it (BRK-B, JPM-PC)
    "cik": pl.Int64(),
    "name": pl.String(),
}

CONSTITUENT_SCHEMA: dict[str, pl.DataType] = {
    "session": pl.Date(),
    "index": pl.String(),  # SP500
    "symbol": pl.String(),  # the member's ticker on that session (FB before 2022-06-09)
    "name": pl.String(),
    "cik": pl.Int64(),
    "weight": pl.Float64(),  # percent of the index (holdings exports); null otherwise
    "source": pl.String(),  # provider (sp500)
    "source_detail": pl.String(),  # intervals | constituents | holdings, and the file
}

TICKER_HISTORY_SCHEMA: dict[str, pl.DataType] = {
    "security_id": pl.String(),  # first ticker and first session seen: FB@2013-12-23
    "cik": pl.Int64(),
    "symbol": pl.String(),
    "name": pl.String(),
    "exchange": pl.String(),
    "valid_from": pl.Date(),  # first session the ticker was seen for this security
    "valid_to": pl.Date(),  # first session it was no longer seen (exclusive); null: still valid
    "change": pl.String(),  # how the interval began: listed | renamed | relisted
    "end_change": pl.String(),  # how it ended: renamed | delisted | unobserved; null: open
    "evidence": pl.String(),  # reference (listings), index:SP500, or both joined by +
}

MEMBERSHIP_SCHEMA: dict[str, pl.DataType] = {
    "index": pl.String(),
    "symbol": pl.String(),
    "security_id": pl.String(),
    "cik": pl.Int64(),
    "start": pl.Date(),  # first session of membership under this ticker
    "end": pl.Date(),  # first session no longer a member (exclusive); null: still a member
}

_SYMBOL_REGEX = SYMBOL_PATTERN.pattern


class ReferenceModel(pa.DataFrameModel):
    """One ticker on one session."""

    session: Date = pa.Field()
    symbol: str = pa.Field(str_matches=_SYMBOL_REGEX)
    vendor_symbol: str = pa.Field(nullable=True)
    cik: pl.Int64 = pa.Field(nullable=True, gt=0)
    name: str = pa.Field(nullable=True)
    exchange: str = pa.Field(nullable=True)
    exchange_code: str = pa.Field(nullable=True)
    asset_type: str = pa.Field()
    is_etf: bool = pa.Field()
    is_test_issue: bool = pa.Field()
    financial_status: str = pa.Field(nullable=True)
    round_lot_size: pl.Int64 = pa.Field(nullable=True)
    published_at: DateTime = pa.Field(
        nullable=True, dtype_kwargs={"time_unit": "us", "time_zone": "UTC"}
    )
    source: str = pa.Field(str_length={"min_value": 1})

    class Config:
        strict = True
        ordered = True
        unique = ["session", "symbol"]


class ConstituentModel(pa.DataFrameModel):
    """One member of one index on one session."""

    session: Date = pa.Field()
    index: str = pa.Field(str_length={"min_value": 1})
    symbol: str = pa.Field(str_matches=_SYMBOL_REGEX)
    name: str = pa.Field(nullable=True)
    cik: pl.Int64 = pa.Field(nullable=True, gt=0)
    weight: float = pa.Field(nullable=True, ge=0)
    source: str = pa.Field(str_length={"min_value": 1})
    source_detail: str = pa.Field(nullable=True)

    class Config:
        strict = True
        ordered = True
        unique = ["session", "index", "symbol"]


def conform(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """`frame` with exactly `schema`'s columns in order (missing ones null), cast."""
    return frame.select(
        pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in schema.items()
    )


def empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)
