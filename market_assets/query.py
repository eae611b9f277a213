"""MarketData: the public read API for backtests and exports.

    from market_assets import MarketData
    md = MarketData(root="./data")            # or "s3://bucket/prefix", dsn="postgresql://..."
    bars = md.bars(["AAPL", "MSFT"], "2024-01-02", "2024-02-01", granularity="1d")
    bars.to_pandas()                           # the user's choice

Bounds: `start` inclusive, `end` exclusive. Dates mean 00:00 UTC; naive datetimes are UTC.
With `dsn=...`, reads from PostgreSQL share one connection for the object's lifetime: use it
as a context manager (`with MarketData(dsn=...) as md:`) or call `md.close()`.

What it says when there is nothing to read: a local `root` that does not exist raises
`LakeNotFoundError` (a typo must not look like an empty market); an indicator name that
configs/indicators.yaml does not configure raises ValueError listing the configured ones;
a symbol for which the store holds nothing at all for the dataset gets a `NoDataWarning`
(the frame is still returned, without that symbol's rows), because an empty result for a
symbol that was simply never ingested is the commonest silent mistake in a backtest.
"""

from __future__ import annotations

import datetime as dt
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal

import polars as pl

from market_assets.core.errors import MarketAssetsError
from market_assets.core.schemas import BAR_COLUMNS, BAR_SCHEMA, GRANULARITIES, stored_schema
from market_assets.core.stores.lake import ParquetLake
from market_assets.core.stores.layout import GRANULARITY_DATASET, layout_for
from market_assets.core.stores.timescale_read import TimescaleReader, read_dataset
from market_assets.core.symbols import validate_symbols

TimeBound = dt.date | dt.datetime | str
FIRST_DAY = dt.date(1900, 1, 1)  # bounds that cover every stored corporate action
LAST_DAY = dt.date(2200, 1, 1)
ExportFormat = Literal["csv", "parquet"]
INDICATORS = "indicators"


class LakeNotFoundError(MarketAssetsError, FileNotFoundError):
    """The lake root to read does not exist (a local folder)."""


class NoDataWarning(UserWarning):
    """A symbol has nothing at all stored for the dataset read."""


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


def _date(value: TimeBound, name: str) -> dt.date:
    """A date from a date, a datetime (its UTC date) or an ISO string."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    return to_utc(value, name=name).date()


class MarketData:
    """Read canonical bars from the Parquet lake (default) or TimescaleDB/PostgreSQL."""

    def __init__(
        self,
        root: str | Path | None = None,
        dsn: str | None = None,
        *,
        s3_endpoint_url: str | None = None,
        s3_region: str | None = None,
        config_dir: str | Path | None = None,
    ) -> None:
        """Read the lake at `root` (default $MARKET_ASSETS_DATA_DIR or ./data) and, with
        `dsn`, PostgreSQL. `config_dir` (default $MARKET_ASSETS_CONFIG_DIR or ./configs) is
        where configured indicator names are looked up. Raises LakeNotFoundError when a
        local `root` does not exist (checked when first read if a `dsn` is given)."""
        self.root = str(root or os.environ.get("MARKET_ASSETS_DATA_DIR", "data"))
        self.dsn = dsn
        self.config_dir = Path(config_dir or os.environ.get("MARKET_ASSETS_CONFIG_DIR", "configs"))
        if dsn is None:
            self._require_root()
        self._lake = ParquetLake(
            self.root,
            s3_endpoint_url=s3_endpoint_url or os.environ.get("MARKET_ASSETS_S3_ENDPOINT_URL"),
            s3_region=s3_region or os.environ.get("AWS_REGION"),
        )
        self._reader: TimescaleReader | None = None

    def close(self) -> None:
        """Close the PostgreSQL connection, if one was opened (the next read reopens it)."""
        if self._reader is not None:
            self._reader.close()

    def __enter__(self) -> MarketData:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _timescale(self) -> TimescaleReader:
        """The kept PostgreSQL reader (one ADBC connection, opened on first use)."""
        if not self.dsn:
            raise ValueError("store='timescale' needs MarketData(dsn=...)")
        if self._reader is None:
            self._reader = TimescaleReader(self.dsn)
        return self._reader

    def bars(
        self,
        symbols: str | Sequence[str],
        start: TimeBound,
        end: TimeBound,
        granularity: str = "1d",
        columns: Sequence[str] | None = None,
        store: Literal["lake", "timescale"] = "lake",
        adjusted: bool = False,
        as_of: TimeBound | None = None,
        follow_renames: bool = False,
    ) -> pl.DataFrame:
        """Bars with ts in [start, end), sorted by (symbol, ts), in the canonical schema.

        `adjusted=True` adds adj_open/high/low/close/volume, split_factor and dividend_factor
        (any granularity: intraday bars take the factors of their session), computed from the
        stored corporate actions known at `as_of` (default: all), so history can be seen as it
        looked on a past day. Without stored actions the factors are 1.

        `follow_renames=True` returns one continuous history per requested symbol across its
        security's ticker changes (ticker_history): `bars("META", ..., follow_renames=True)`
        reads FB before 2022-06-09 and META from then on; `symbol` is the requested symbol,
        `ticker` the row's own ticker and `security_id` the security.
        """
        if follow_renames:
            from market_assets.core.reference.query import bars_following_renames

            lo, hi = to_utc(start, name="start"), to_utc(end, name="end")
            return bars_following_renames(
                self._reference,
                lambda ticker, lower, upper: self.bars(
                    ticker, lower, upper, granularity, columns, store, adjusted, as_of
                ),
                validate_symbols([symbols] if isinstance(symbols, str) else symbols),
                lo,
                hi,
            )
        if adjusted:
            return self._adjusted_bars(symbols, start, end, granularity, columns, store, as_of)
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
            return read_dataset(
                self._timescale(), dataset, stored_schema(dataset), symbol_list, lo, hi, selected
            )
        self._require_root()
        frame = self._lake.read(dataset, symbol_list, lo, hi, columns=selected)
        self._warn_missing(dataset, symbol_list, frame)
        return frame

    def _require_root(self) -> None:
        if "://" not in self.root and not Path(self.root).is_dir():
            raise LakeNotFoundError(
                f"lake root {self.root!r} does not exist (MarketData(root=...) or "
                "$MARKET_ASSETS_DATA_DIR): ingest data first (market-assets demo / ingest) or "
                "point root at the folder or s3://bucket/prefix holding it"
            )

    def _warn_missing(self, dataset: str, symbols: Sequence[str], frame: pl.DataFrame) -> None:
        """NoDataWarning for each symbol with no row in `frame` and nothing in the lake."""
        if "symbol" not in frame.columns or (len(symbols) == 1 and frame.height):
            return  # one symbol with rows: it is served (the common single-symbol read)
        served = set(frame.get_column("symbol").unique().to_list())
        absent = [s for s in symbols if s not in served and not self._holds(dataset, s)]
        if absent:
            warnings.warn(
                f"nothing is stored for {', '.join(absent)} in {dataset} under {self.root}: "
                "ingest it first (market-assets ingest --dataset "
                f"{dataset} --symbols {','.join(absent)} ...)",
                NoDataWarning,
                stacklevel=3,
            )

    def _holds(self, dataset: str, symbol: str) -> bool:
        """Whether the lake holds anything for (dataset, symbol), at any date."""
        folder = f"{layout_for(dataset).folder}/{symbol}"
        store = self._lake.store
        if "://" not in self.root:
            return (Path(self.root) / folder).is_dir()
        prefix = f"{store.prefix}/{folder}/" if store.prefix else f"{folder}/"
        listed = store.client.list_objects_v2(Bucket=store.bucket, Prefix=prefix, MaxKeys=1)
        return bool(listed.get("KeyCount"))

    def _adjusted_bars(
        self,
        symbols: str | Sequence[str],
        start: TimeBound,
        end: TimeBound,
        granularity: str,
        columns: Sequence[str] | None,
        store: Literal["lake", "timescale"],
        as_of: TimeBound | None,
    ) -> pl.DataFrame:
        from market_assets.core.schemas import ADJUSTED_BAR_SCHEMA
        from market_assets.core.stores.layout import layout_for
        from market_assets.core.transforms.adjust import adjust_with_actions

        unknown = [c for c in columns or [] if c not in ADJUSTED_BAR_SCHEMA]
        if unknown:
            raise ValueError(
                f"unknown column(s) {unknown}; columns are {list(ADJUSTED_BAR_SCHEMA)}"
            )
        raw = self.bars(symbols, start, end, granularity=granularity, store=store)
        actions = self.actions(raw["symbol"].unique().to_list(), FIRST_DAY, LAST_DAY, store=store)
        daily = None
        missing = actions.filter(
            (pl.col("action_type") == "dividend") & pl.col("reference_close").is_null()
        )
        if not missing.is_empty():
            first = missing["ex_date"].min() - dt.timedelta(days=10)
            daily = self.bars(
                missing["symbol"].unique().to_list(), first, missing["ex_date"].max(), store=store
            )
        moment = to_utc(as_of, name="as_of") if as_of is not None else None
        session = layout_for(GRANULARITY_DATASET[granularity]).session_expr()
        frame, _ = adjust_with_actions(
            raw, actions, as_of=moment, daily_closes=daily, session=session
        )
        return frame.select(list(columns)) if columns else frame

    def actions(
        self,
        symbols: str | Sequence[str],
        start: TimeBound,
        end: TimeBound,
        store: Literal["lake", "timescale"] = "lake",
    ) -> pl.DataFrame:
        """Corporate actions with ex_date in [start, end), sorted by (symbol, ex_date).

        Columns of docs/data_dictionary.md (corporate actions): splits, cash dividends and
        symbol changes, with `known_at` for point-in-time use.
        """
        symbol_list = validate_symbols([symbols] if isinstance(symbols, str) else symbols)
        lo, hi = to_utc(start, name="start"), to_utc(end, name="end")
        if store == "timescale":
            return read_dataset(
                self._timescale(),
                "corporate_actions",
                stored_schema("corporate_actions"),
                symbol_list,
                lo,
                hi,
            )
        return self._lake.read("corporate_actions", symbol_list, lo, hi)

    def indicators(
        self,
        symbols: str | Sequence[str],
        start: TimeBound,
        end: TimeBound,
        names: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """Indicator values of sessions in [start, end): one column per indicator.

        `names` picks indicators (e.g. ["sma_20", "rsi_14"]); default: every stored one.
        Values are null until an indicator's lookback is filled.
        """
        from market_assets.core.transforms.indicators import indicators_wide

        symbol_list = validate_symbols([symbols] if isinstance(symbols, str) else symbols)
        lo, hi = to_utc(start, name="start"), to_utc(end, name="end")
        self._require_root()
        long = self._lake.read(INDICATORS, symbol_list, lo, hi)
        if names is not None:
            self._check_indicator_names(list(names), long)
        self._warn_missing(INDICATORS, symbol_list, long)
        return indicators_wide(long, names)

    def _check_indicator_names(self, names: list[str], long: pl.DataFrame) -> None:
        """ValueError for names configs/indicators.yaml does not configure (or, without that
        file, that no stored row carries)."""
        from market_assets.core.transforms.indicators import CONFIG_FILE, load_indicators_config

        config_file = self.config_dir / CONFIG_FILE
        if config_file.is_file():
            known = load_indicators_config(self.config_dir).names()
            where = f"configured in {config_file}"
        else:
            known = sorted(long.get_column("indicator").unique().to_list())
            where = f"stored under {self.root} for these symbols and dates"
            if not known:
                return
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValueError(f"indicator(s) {unknown} are not {where}; known: {known}")

    def fundamentals(
        self,
        symbols: str | Sequence[str],
        fields: Sequence[str] | None = None,
        as_of: TimeBound | None = None,
        config_dir: str | Path | None = None,
    ) -> pl.DataFrame:
        """Point-in-time fundamentals: one row per (symbol, field) as known at the end of
        `as_of` (a date; default today), from facts filed on or before it.

        Per field: the latest period end, then the latest filing for it (a restatement counts
        from its own filing date), with the value, unit, concept, period, form, filed date and
        accession (null when nothing was filed by then). `fields` are canonical names from
        configs/fundamentals.yaml (read from `config_dir`, default $MARKET_ASSETS_CONFIG_DIR
        or ./configs) or their `_ttm` variants; default: every one.
        """
        from market_assets.core.fundamentals.read import point_in_time_from_lake

        day = to_utc(as_of, name="as_of").date() if as_of is not None else dt.date.today()
        symbol_list = validate_symbols([symbols] if isinstance(symbols, str) else symbols)
        return point_in_time_from_lake(self._lake, symbol_list, fields, day, config_dir)

    def fundamentals_history(
        self,
        symbols: str | Sequence[str],
        fields: Sequence[str] | None = None,
        start: TimeBound | None = None,
        end: TimeBound | None = None,
    ) -> pl.DataFrame:
        """Every stored fact (each restatement its own row) with `filed` in [start, end),
        sorted by (symbol, filed); `fields` keeps the facts of those canonical fields only.
        Columns of docs/data_dictionary.md (fundamentals)."""
        from market_assets.core.fundamentals.read import facts_from_lake

        symbol_list = validate_symbols([symbols] if isinstance(symbols, str) else symbols)
        first = to_utc(start, name="start").date() if start is not None else None
        stop = to_utc(end, name="end").date() if end is not None else None
        return facts_from_lake(self._lake, symbol_list, fields, first, stop)

    def fundamental_ratios(
        self, symbols: str | Sequence[str], start: TimeBound, end: TimeBound
    ) -> pl.DataFrame:
        """Daily ratios (market cap, book-to-market, ROE, ROA, ROI) with their inputs and the
        inputs' filing dates, for sessions in [start, end), sorted by (symbol, ts)."""
        symbol_list = validate_symbols([symbols] if isinstance(symbols, str) else symbols)
        lo, hi = to_utc(start, name="start"), to_utc(end, name="end")
        return self._lake.read("fundamental_ratios", symbol_list, lo, hi)

    def option_chain(
        self,
        symbol: str,
        as_of: TimeBound,
        expirations: Sequence[TimeBound] | None = None,
        strikes: Sequence[float] | tuple[float, float] | None = None,
        kind: Literal["call", "put"] | None = None,
    ) -> pl.DataFrame:
        """The option chain of underlying `symbol` as of `as_of`: a date means that session's
        end-of-day chain, a datetime (naive = UTC) the latest snapshot at or before it.

        Columns of docs/data_dictionary.md (options chains): contract, expiration, strike,
        kind ('call'/'put'), bid, ask, iv, delta, gamma, vega, theta, the vendor's greeks and
        every pricing input. `strikes` is a list, or a (low, high) tuple (inclusive).
        """
        from market_assets.core.options.query import option_chain

        moment = _as_of(as_of)
        days = [to_utc(e, name="expirations").date() for e in expirations or []]
        return option_chain(
            self._lake, symbol, moment, days if expirations is not None else None, strikes, kind
        )

    def option_history(self, contract: str, start: TimeBound, end: TimeBound) -> pl.DataFrame:
        """Every stored snapshot of one contract (OSI symbol) with ts in [start, end)."""
        from market_assets.core.options.query import option_history

        lo, hi = to_utc(start, name="start"), to_utc(end, name="end")
        return option_history(self._lake, contract, lo, hi)

    @property
    def _reference(self):  # noqa: ANN202 - ReferenceStore, imported lazily
        from market_assets.core.reference.store import ReferenceStore

        return ReferenceStore(self._lake.store)

    def constituents(self, index: str, as_of: TimeBound) -> pl.DataFrame:
        """Members of `index` (e.g. "SP500") on `as_of`, one row per member, point in time.

        The answer is the stored snapshot of the latest session on or before `as_of`
        (`snapshot_session`), with name, CIK, weight (holdings sources), `security_id` and
        `member_since` (from index_membership); nothing after `as_of` is used.
        """
        from market_assets.core.reference import query as reference

        return reference.constituents(self._reference, index, _date(as_of, "as_of"))

    def constituent_history(self, index: str, start: TimeBound, end: TimeBound) -> pl.DataFrame:
        """Membership intervals of `index` overlapping [start, end): index, symbol,
        security_id, cik, start (inclusive), end (exclusive; null while a member at `end`)."""
        from market_assets.core.reference import query as reference

        return reference.constituent_history(
            self._reference, index, _date(start, "start"), _date(end, "end")
        )

    def symbols(self, as_of: TimeBound, include_test_issues: bool = False) -> pl.DataFrame:
        """Every listed ticker on `as_of` (reference snapshot of the latest session on or
        before it): symbol, cik, name, exchange, asset_type, ETF flag, financial status."""
        from market_assets.core.reference import query as reference

        return reference.symbols(self._reference, _date(as_of, "as_of"), include_test_issues)

    def ticker_history(self, symbol: str) -> pl.DataFrame:
        """Every ticker of the security (or securities) that used `symbol`, with valid_from,
        valid_to (exclusive) and how each interval began and ended (ticker_history)."""
        from market_assets.core.reference import query as reference

        return reference.ticker_history(self._reference, validate_symbols([symbol])[0])

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


def _as_of(value: TimeBound) -> dt.date | dt.datetime:
    """A date (or a date-only string) stays a date; anything with a time is a UTC datetime."""
    if isinstance(value, dt.datetime):
        return to_utc(value, name="as_of")
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and len(value.strip()) == 10:
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"as_of={value!r} is not an ISO date or datetime") from None
    return to_utc(value, name="as_of")
