"""Databento OPRA.PILLAR option chains, from downloaded DBN files or the Historical API.

A chain of one underlying and session is assembled from four DBN schemas:

- `definition`: the listed contracts (raw_symbol is the padded OSI symbol; the underlying,
  strike, expiration, call/put and the contract multiplier when OPRA sends one);
- `cbbo-1m` (or `cbbo-1s` when that is what the files hold): the consolidated best bid and
  offer; each snapshot takes every contract's last record received at or before it, and the
  last trade price (`price`) seen so far as `last`;
- `ohlcv-1d`: the session's volume, summed over the venues (one bar per publisher);
- `statistics`: open interest (stat_type OPEN_INTEREST), the latest value of the day.

Contracts come from the definitions when present, else from the files' own symbology (OPRA
raw symbols are OSI symbols), and belong to an underlying by their OSI root (an adjusted
root such as AAPL1 belongs to AAPL). OPRA carries no underlying price, no IV and no greeks:
the chain's IV and greeks are computed downstream from the stored daily close.

Files mode reads a folder of `.dbn` / `.dbn.zst` files whose DBN header says OPRA.PILLAR (or
the configured dataset) and needs no key. API mode asks `timeseries.get_range` for each
schema with parent symbology (`AAPL.OPT`) over the session, through the same client, cost
guard (`max_cost_usd`) and error translation as the bar provider.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
from databento import DBNStore
from databento_dbn import StatType

from market_assets.core.calendar import get_calendar
from market_assets.core.options.contracts import parse_osi_column
from market_assets.core.options.quotes import conform_quotes, empty_quotes, snapshot_instants
from market_assets.core.providers.base import (
    BadRequestError,
    FetchResult,
    NoDataError,
    OptionChainRequest,
    UnknownSymbolError,
)
from market_assets.core.providers.databento.decode import (
    _price,
    _raw,
    _symbols,
    _timestamp,
    dbn_schema,
    records,
)
from market_assets.core.providers.databento.errors import VENDOR, DatabentoPayloadError
from market_assets.core.providers.databento.files import ALL_SYMBOLS, NO_END, DbnFile, DbnFolder
from market_assets.core.providers.databento.provider import (
    DEFAULT_API_KEY_ENV,
    IGNORED_SETTINGS,
    DatabentoProvider,
    DbnDecodeError,
)
from market_assets.core.stores.layout import EXCHANGE_TZ

KIND = "databento_options"
DEFAULT_DATASET = "OPRA.PILLAR"
SETTINGS = ("dataset", "api_key_env", "files_dir", "max_cost_usd", "quote_schema")
QUOTE_SCHEMAS = ("cbbo-1m", "cbbo-1s")
UNDEF_INT32 = 2**31 - 1
OPEN_INTEREST = int(StatType.OPEN_INTEREST)
NS = 1_000_000_000


class DatabentoOptionsProvider:
    """OPRA option chains from Databento (DBN files or the Historical API)."""

    name = VENDOR

    def __init__(
        self,
        dataset: str = DEFAULT_DATASET,
        *,
        api_key_env: str = DEFAULT_API_KEY_ENV,
        files_dir: str | os.PathLike[str] | None = None,
        max_cost_usd: float | None = None,
        quote_schema: str = "cbbo-1m",
    ) -> None:
        if quote_schema not in QUOTE_SCHEMAS:
            raise ValueError(f"quote_schema {quote_schema!r} is not one of {list(QUOTE_SCHEMAS)}")
        self.dataset = dataset
        self.quote_schema = quote_schema
        self.files = DbnFolder(files_dir) if files_dir is not None else None
        self._api = DatabentoProvider(
            dataset, stype_in="parent", api_key_env=api_key_env, max_cost_usd=max_cost_usd
        )

    def __repr__(self) -> str:
        mode = f"files={self.files.folder}" if self.files else "api"
        return f"DatabentoOptionsProvider(dataset={self.dataset!r}, {mode})"

    @classmethod
    def from_config(cls, settings: Mapping[str, Any]) -> DatabentoOptionsProvider:
        """Build from a providers.yaml entry: dataset (default OPRA.PILLAR), api_key_env,
        files_dir, max_cost_usd, quote_schema (cbbo-1m or cbbo-1s). `kind` must be
        databento_options; any other key raises ValueError naming it."""
        options = dict(settings)
        kind = options.get("kind", KIND)
        if kind != KIND:
            raise ValueError(f"DatabentoOptionsProvider cannot be built from kind {kind!r}")
        for key in IGNORED_SETTINGS:
            options.pop(key, None)
        unknown = sorted(set(options) - set(SETTINGS))
        if unknown:
            raise ValueError(
                f"unknown setting(s) {unknown} for the databento_options provider; allowed: "
                f"{', '.join(SETTINGS)}"
            )
        cost = options.get("max_cost_usd")
        return cls(
            str(options.get("dataset") or DEFAULT_DATASET),
            api_key_env=str(options.get("api_key_env") or DEFAULT_API_KEY_ENV),
            files_dir=options.get("files_dir"),
            max_cost_usd=float(cost) if cost is not None else None,
            quote_schema=str(options.get("quote_schema", "cbbo-1m")),
        )

    # -- files (market_assets.core.providers.files_route) ----------------------------------

    @classmethod
    def file_datasets(cls, settings: Mapping[str, Any]) -> tuple[str, ...]:
        """Only option chains: the bar and tick datasets are the `databento` kind's."""
        return ("options_chains",)

    @classmethod
    def file_patterns(cls, settings: Mapping[str, Any]) -> tuple[str, ...]:
        return ("*.dbn", "*.dbn.zst")

    @classmethod
    def from_files(
        cls, settings: Mapping[str, Any], directory: str | os.PathLike[str]
    ) -> DatabentoOptionsProvider:
        """A provider reading the OPRA DBN files under `directory` (settings as from_config)."""
        return cls.from_config({**settings, "files_dir": str(directory)})

    # -- public ---------------------------------------------------------------------------

    def fetch_options(self, request: OptionChainRequest) -> FetchResult:
        """Chains of the requested underlyings for every session in [start, end)."""
        calendar = get_calendar()
        sessions = calendar.sessions(request.start, request.end - dt.timedelta(days=1))
        context = {
            "vendor": VENDOR,
            "dataset": f"options_chains ({self.dataset})",
            "symbols": request.symbols,
            "start": request.start,
            "end": request.end,
        }
        frames: list[pl.DataFrame] = []
        requests = 0
        notes: dict[str, str] = {}
        for session in sessions:
            stores, asked = self._stores(session, request.symbols, context, notes)
            requests += asked
            frames.append(self._chain(session, request, stores, context))
        frame = pl.concat(frames) if frames else empty_quotes()
        served = set(frame.get_column("symbol").unique().to_list())
        if not served:
            where = f"in {self.files.folder}" if self.files else "from the API"
            raise NoDataError(
                f"no {self.dataset} option records {where} for the requested underlyings "
                "(a holiday, or files that do not cover the sessions)",
                **context,
            )
        failures = {
            symbol: str(
                UnknownSymbolError(
                    f"no {self.dataset} contracts of {symbol}", **{**context, "symbols": (symbol,)}
                )
            )
            for symbol in request.symbols
            if symbol not in served
        }
        return FetchResult(
            frame=frame, source=VENDOR, requests=requests, failures=failures, notes=notes
        )

    # -- loading --------------------------------------------------------------------------

    def _bounds(self, session: dt.date, schema: str) -> tuple[dt.datetime, dt.datetime]:
        if schema == "ohlcv-1d":
            start = dt.datetime.combine(session, dt.time(0), tzinfo=dt.UTC)
            return start, start + dt.timedelta(days=1)
        start = dt.datetime.combine(session, dt.time(0), tzinfo=EXCHANGE_TZ)
        return start.astimezone(dt.UTC), (start + dt.timedelta(days=1)).astimezone(dt.UTC)

    def _stores(
        self,
        session: dt.date,
        symbols: Sequence[str],
        context: dict[str, Any],
        notes: dict[str, str],
    ) -> tuple[dict[str, list[tuple[str, DBNStore]]], int]:
        """The DBN stores of each schema for one session, and the vendor requests made."""
        schemas = ("definition", self.quote_schema, "ohlcv-1d", "statistics")
        stores: dict[str, list[tuple[str, DBNStore]]] = {}
        if self.files is not None:
            found = self._files(session, symbols, context)
            notes["files_dir"] = str(self.files.folder)
            for schema in (*schemas, *QUOTE_SCHEMAS):
                chosen = [f for f in found if f.schema == schema]
                stores[schema] = [
                    (f"DBN file {f.path}", self._open(f.path, context)) for f in chosen
                ]
            if not stores[self.quote_schema]:
                other = next((s for s in QUOTE_SCHEMAS if stores[s]), self.quote_schema)
                stores[self.quote_schema] = stores[other]
            notes["files_read"] = str(sum(len(v) for v in stores.values()))
            return stores, 0
        asked = 0
        parents = [f"{symbol}.OPT" for symbol in symbols]
        for schema in schemas:
            start, end = self._bounds(session, schema)
            loaded = self._api._load_api(schema, parents, start, end, context)
            asked += loaded.requests
            stores[schema] = loaded.stores
            notes.update(loaded.notes)
        return stores, asked

    def _files(
        self, session: dt.date, symbols: Sequence[str], context: dict[str, Any]
    ) -> list[DbnFile]:
        assert self.files is not None
        try:
            every = self.files.files()
        except FileNotFoundError as exc:
            raise BadRequestError(str(exc), **context) from exc
        except ValueError as exc:
            raise DatabentoPayloadError(str(exc), **context) from exc
        lower = _ns(self._bounds(session, "definition")[0]) - NS * 86_400
        upper = _ns(self._bounds(session, "definition")[1]) + NS * 86_400
        return [
            found
            for found in every
            if found.dataset == self.dataset
            and found.start_ns < upper
            and (found.end_ns == NO_END or found.end_ns > lower)
            and _covers(found.symbols, symbols)
        ]

    def _open(self, path: Path, context: dict[str, Any]) -> DBNStore:
        try:
            return DBNStore.from_file(path)
        except Exception as exc:  # the client raises BentoError, DBNError or ValueError
            raise DatabentoPayloadError(
                f"DBN file {path} is not readable ({type(exc).__name__}: {exc})", **context
            ) from exc

    def _records(self, schema: str, stores: Iterable[tuple[str, DBNStore]], context) -> list:  # noqa: ANN001
        """(structured array, symbols per record) of every store of `schema`."""
        out = []
        for origin, store in stores:
            try:
                array = records(store, dbn_schema(store) or schema, origin)
            except DbnDecodeError as exc:
                raise DatabentoPayloadError(f"{exc}; download it again", **context) from None
            out.append(
                (array, _symbols(store, array) if len(array) else pl.Series([], dtype=pl.String))
            )
        return out

    # -- shaping --------------------------------------------------------------------------

    def _chain(
        self,
        session: dt.date,
        request: OptionChainRequest,
        stores: dict[str, list[tuple[str, DBNStore]]],
        context: dict[str, Any],
    ) -> pl.DataFrame:
        definitions = self._definitions(stores["definition"], context)
        quotes = self._quotes(stores[self.quote_schema], context)
        volume = self._volume(stores["ohlcv-1d"], session, context)
        interest = self._open_interest(stores["statistics"], session, context)
        ids = pl.concat(
            [
                frame.select("instrument_id", "mapped")
                for frame in (definitions, quotes, volume, interest)
                if not frame.is_empty()
            ]
            or [pl.DataFrame(schema={"instrument_id": pl.Int64(), "mapped": pl.String()})]
        ).unique("instrument_id", keep="first")
        contracts = ids.join(
            definitions.drop("mapped"), on="instrument_id", how="left"
        ).with_columns(pl.coalesce("raw_symbol", "mapped").alias("contract"))
        parsed = parse_osi_column(contracts.get_column("contract"))
        underlying = pl.coalesce(
            pl.col("definition_underlying"), pl.col("root").str.replace(r"[0-9]+$", "")
        )
        contracts = (
            contracts.with_columns(parsed.get_column("root"))
            .with_columns(underlying.alias("symbol"))
            .filter(pl.col("symbol").is_in(list(request.symbols)))
        )
        frames = []
        for moment in snapshot_instants(session, request.snapshot_times):
            cutoff = _ns(moment)
            latest = (
                quotes.filter(pl.col("ts_recv_ns") <= cutoff)
                .sort("ts_recv_ns")
                .group_by("instrument_id")
                .agg(
                    pl.col("bid", "ask", "bid_size", "ask_size", "quote_ts").last(),
                    pl.col("last").drop_nulls().last(),
                    pl.col("last_ts").filter(pl.col("last").is_not_null()).last(),
                )
            )
            frames.append(
                contracts.join(latest, on="instrument_id", how="left")
                .join(volume.drop("mapped"), on="instrument_id", how="left")
                .join(interest.drop("mapped"), on="instrument_id", how="left")
                .with_columns(
                    pl.lit(session).alias("session"),
                    pl.lit(moment).alias("ts"),
                    pl.lit(VENDOR).alias("source"),
                )
            )
        return conform_quotes(pl.concat(frames)) if frames else empty_quotes()

    def _definitions(self, stores, context) -> pl.DataFrame:  # noqa: ANN001
        schema = {
            "instrument_id": pl.Int64(),
            "mapped": pl.String(),
            "raw_symbol": pl.String(),
            "definition_underlying": pl.String(),
            "multiplier": pl.Int64(),
        }
        frames = []
        for array, symbols in self._records("definition", stores, context):
            raw = _raw(array, ["instrument_id", "raw_symbol", "underlying", "contract_multiplier"])
            multiplier = pl.col("contract_multiplier").cast(pl.Int64)
            frames.append(
                raw.with_columns(symbols.alias("mapped")).select(
                    pl.col("instrument_id").cast(pl.Int64),
                    "mapped",
                    pl.col("raw_symbol").str.strip_chars_end("\x00"),
                    pl.col("underlying").str.strip_chars().alias("definition_underlying"),
                    pl.when(multiplier != UNDEF_INT32).then(multiplier).alias("multiplier"),
                )
            )
        frame = pl.concat(frames) if frames else pl.DataFrame(schema=schema)
        return frame.unique("instrument_id", keep="last").cast(schema)

    def _quotes(self, stores, context) -> pl.DataFrame:  # noqa: ANN001
        schema = {
            "instrument_id": pl.Int64(),
            "mapped": pl.String(),
            "ts_recv_ns": pl.Int64(),
            "bid": pl.Float64(),
            "ask": pl.Float64(),
            "bid_size": pl.Int64(),
            "ask_size": pl.Int64(),
            "quote_ts": pl.Datetime("us", "UTC"),
            "last": pl.Float64(),
            "last_ts": pl.Datetime("us", "UTC"),
        }
        frames = []
        for array, symbols in self._records(self.quote_schema, stores, context):
            fields = ["instrument_id", "ts_recv", "ts_event", "price", "bid_px_00", "ask_px_00"]
            raw = _raw(array, [*fields, "bid_sz_00", "ask_sz_00"])
            frames.append(
                raw.with_columns(symbols.alias("mapped")).select(
                    pl.col("instrument_id").cast(pl.Int64),
                    "mapped",
                    pl.col("ts_recv").cast(pl.Int64).alias("ts_recv_ns"),
                    _price("bid_px_00").alias("bid"),
                    _price("ask_px_00").alias("ask"),
                    pl.col("bid_sz_00").cast(pl.Int64).alias("bid_size"),
                    pl.col("ask_sz_00").cast(pl.Int64).alias("ask_size"),
                    _timestamp("ts_recv").cast(pl.Datetime("us", "UTC")).alias("quote_ts"),
                    _price("price").alias("last"),
                    _timestamp("ts_event").cast(pl.Datetime("us", "UTC")).alias("last_ts"),
                )
            )
        return (pl.concat(frames) if frames else pl.DataFrame(schema=schema)).cast(schema)

    def _volume(self, stores, session: dt.date, context) -> pl.DataFrame:  # noqa: ANN001
        schema = {"instrument_id": pl.Int64(), "mapped": pl.String(), "volume": pl.Int64()}
        frames = []
        day = _ns(dt.datetime.combine(session, dt.time(0), tzinfo=dt.UTC))
        for array, symbols in self._records("ohlcv-1d", stores, context):
            raw = _raw(array, ["instrument_id", "ts_event", "volume"])
            frames.append(
                raw.with_columns(symbols.alias("mapped"))
                .filter(pl.col("ts_event").cast(pl.Int64) == day)
                .select(pl.col("instrument_id").cast(pl.Int64), "mapped", "volume")
            )
        frame = pl.concat(frames) if frames else pl.DataFrame(schema=schema)
        return (
            frame.cast(schema)
            .group_by("instrument_id")
            .agg(pl.col("mapped").first(), pl.col("volume").sum())
            .select(list(schema))
        )

    def _open_interest(self, stores, session: dt.date, context) -> pl.DataFrame:  # noqa: ANN001
        schema = {"instrument_id": pl.Int64(), "mapped": pl.String(), "open_interest": pl.Int64()}
        lower, upper = (_ns(b) for b in self._bounds(session, "statistics"))
        frames = []
        for array, symbols in self._records("statistics", stores, context):
            raw = _raw(array, ["instrument_id", "ts_recv", "stat_type", "quantity"])
            undefined = UNDEF_INT32 if array.dtype["quantity"].itemsize == 4 else 2**63 - 1
            frames.append(
                raw.with_columns(symbols.alias("mapped"))
                .filter(
                    (pl.col("stat_type") == OPEN_INTEREST)
                    & (pl.col("quantity").cast(pl.Int64) != undefined)
                    & pl.col("ts_recv").cast(pl.Int64).is_between(lower, upper, closed="left")
                )
                .sort("ts_recv")
                .select(
                    pl.col("instrument_id").cast(pl.Int64),
                    "mapped",
                    pl.col("quantity").cast(pl.Int64).alias("open_interest"),
                )
            )
        frame = pl.concat(frames) if frames else pl.DataFrame(schema=schema)
        return frame.cast(schema).unique("instrument_id", keep="last")


def _covers(file_symbols: frozenset[str], underlyings: Sequence[str]) -> bool:
    """Whether a file's symbols include contracts (or the parent) of any underlying."""
    if ALL_SYMBOLS in file_symbols:
        return True
    wanted = set(underlyings)
    for symbol in file_symbols:
        if symbol.endswith(".OPT") and symbol.removesuffix(".OPT") in wanted:
            return True
        root = symbol[:-15].strip() if len(symbol) > 15 else ""
        if root.rstrip("0123456789") in wanted:
            return True
    return False


def _ns(moment: dt.datetime) -> int:
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1) * 1000
