"""Databento bars and ticks, from the Historical API or from downloaded DBN files.

API mode calls `Historical(key).timeseries.get_range` once per batch of at most 2,000
symbols (the API's limit) for the whole [start, end) of a request: `start` is inclusive and
`end` exclusive, both UTC instants built from session dates. Every call costs money, so when
`max_cost_usd` is set the provider first asks `metadata.get_cost` for every batch and refuses
the request (DatabentoCostError) if the total is above the limit. Files mode reads a folder of
`.dbn` / `.dbn.zst` files instead and needs no key.

Granularities: 1m and 1d come from `ohlcv-1m` / `ohlcv-1d`; 5m, 15m and 1h are resampled from
`ohlcv-1m` with our session-aligned resampler (Databento's `ohlcv-1h` is aligned to clock
hours, not to the 9:30 open, so it is not used). Intraday bars keep the regular session only
unless `regular_hours_only: false`. Tick datasets come from the `trades`, `tbbo` and
`statistics` schemas and keep every record of the exchange-local day.

Symbology: `stype_in` raw_symbol (AAPL, ESH5), continuous (CL.c.0) or parent (CL.FUT); rows
carry the symbol as requested. Parent symbols resolve to every contract of a product, which
the bar key (symbol, ts) cannot hold, so bars refuse parent symbology; ticks accept it and keep
each contract apart by `instrument_id`. Symbols the API reports as not found are returned in
`FetchResult.failures`; a request where no symbol has a record raises NoDataError.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import polars as pl
from databento import DBNStore

from market_assets.core.calendar import get_calendar, known_calendar
from market_assets.core.providers.base import (
    AuthError,
    BadRequestError,
    BarRequest,
    FetchResult,
    NoDataError,
    TickRequest,
    UnknownSymbolError,
)
from market_assets.core.providers.databento.decode import (
    BAR_DBN_SCHEMAS,
    TICK_DBN_SCHEMAS,
    DbnDecodeError,
    bars_frame,
    ticks_frame,
)
from market_assets.core.providers.databento.errors import (
    VENDOR,
    DatabentoCostError,
    DatabentoPayloadError,
    translate,
)
from market_assets.core.providers.databento.files import DbnFolder
from market_assets.core.schemas import TICK_TIME_COLUMN, empty_bars, empty_ticks
from market_assets.core.stores.layout import layout_for
from market_assets.core.transforms.resample import regular_hours_mask, resample_bars

DEFAULT_API_KEY_ENV = "DATABENTO_API_KEY"
MAX_SYMBOLS_PER_REQUEST = 2_000
STYPES = ("raw_symbol", "parent", "continuous")
SETTINGS = (
    "dataset",
    "stype_in",
    "api_key_env",
    "files_dir",
    "max_cost_usd",
    "regular_hours_only",
    "calendar",
)
IGNORED_SETTINGS = ("kind", "secret_key_env", "requests_per_minute")
RESAMPLED = ("5m", "15m", "1h")
EXTENDED_HOURS = "extended_hours"

_T = TypeVar("_T")


@dataclass
class _Loaded:
    """The DBN stores answering one request (with what each came from), and bookkeeping."""

    stores: list[tuple[str, DBNStore]] = field(default_factory=list)
    requests: int = 0
    not_found: set[str] = field(default_factory=set)
    notes: dict[str, str] = field(default_factory=dict)
    definitions: dict[int, str] = field(default_factory=dict)  # files: instrument_id -> symbol


class DatabentoProvider:
    """Bars and ticks from Databento (Historical API or DBN files), canonical schemas.

    `dataset` is Databento's dataset code (XNAS.ITCH, EQUS.MINI, GLBX.MDP3, ...); in files mode
    it is optional and, when set, only files of that dataset are read. The API key is read
    from the environment variable `api_key_env` when the first API call is made, never
    stored in settings, logs or errors.
    """

    name = VENDOR
    granularities: tuple[str, ...] = ("1m", "5m", "15m", "1h", "1d")
    tick_datasets: tuple[str, ...] = tuple(TICK_DBN_SCHEMAS)

    def __init__(
        self,
        dataset: str | None = None,
        *,
        stype_in: str = "raw_symbol",
        api_key_env: str = DEFAULT_API_KEY_ENV,
        files_dir: str | os.PathLike[str] | None = None,
        max_cost_usd: float | None = None,
        regular_hours_only: bool = True,
        exchange: str = "XNYS",
    ) -> None:
        if stype_in not in STYPES:
            raise ValueError(f"stype_in {stype_in!r} is not one of {list(STYPES)}")
        if dataset is None and files_dir is None:
            raise ValueError(
                "set `dataset` (e.g. XNAS.ITCH, EQUS.MINI, GLBX.MDP3) for the Databento API, "
                "or `files_dir` to read downloaded DBN files"
            )
        if max_cost_usd is not None and max_cost_usd < 0:
            raise ValueError(f"max_cost_usd must be >= 0, got {max_cost_usd}")
        self.dataset = dataset
        self.stype_in = stype_in
        self.api_key_env = api_key_env
        self.files = DbnFolder(files_dir) if files_dir is not None else None
        self.max_cost_usd = max_cost_usd
        self.regular_hours_only = regular_hours_only
        self.exchange = exchange
        self._client: Any = None
        self._key: str | None = None
        # Batches already downloaded for the request being fetched: when a later batch fails
        # and the registry retries, they are not bought twice. Holds one request at most.
        self._downloaded: dict[tuple[object, ...], DBNStore] = {}

    def __repr__(self) -> str:
        mode = f"files={self.files.folder}" if self.files else "api"
        return f"DatabentoProvider(dataset={self.dataset!r}, stype_in={self.stype_in!r}, {mode})"

    @classmethod
    def from_config(cls, settings: Mapping[str, Any]) -> DatabentoProvider:
        """Build from a providers.yaml entry (settings flattened next to `kind`).

        Keys: dataset, stype_in, api_key_env (default DATABENTO_API_KEY), files_dir,
        max_cost_usd, regular_hours_only, calendar (the exchange_calendars calendar whose
        regular hours and sessions apply: XNYS by default, CMES for GLBX.MDP3 futures).
        `kind` must be "databento"; secret_key_env and requests_per_minute are accepted (the
        registry applies rate limits). Any other key raises ValueError naming it.
        """
        options = dict(settings)
        kind = options.get("kind", VENDOR)
        if kind != VENDOR:
            raise ValueError(f"DatabentoProvider cannot be built from kind {kind!r}")
        for key in IGNORED_SETTINGS:
            options.pop(key, None)
        unknown = sorted(set(options) - set(SETTINGS))
        if unknown:
            raise ValueError(
                f"unknown setting(s) {unknown} for the databento provider; allowed: "
                f"{', '.join(SETTINGS)}"
            )
        cost = options.get("max_cost_usd")
        return cls(
            options.get("dataset"),
            stype_in=str(options.get("stype_in", "raw_symbol")),
            api_key_env=str(options.get("api_key_env") or DEFAULT_API_KEY_ENV),
            files_dir=options.get("files_dir"),
            max_cost_usd=float(cost) if cost is not None else None,
            regular_hours_only=bool(options.get("regular_hours_only", True)),
            exchange=known_calendar(str(options.get("calendar", "XNYS"))),
        )

    # -- files (market_assets.core.providers.files_route) ----------------------------------

    @classmethod
    def file_datasets(cls, settings: Mapping[str, Any]) -> tuple[str, ...]:
        """Datasets this provider reads from downloaded DBN files."""
        return ("bars_1m", "bars_1d", *cls.tick_datasets)

    @classmethod
    def file_patterns(cls, settings: Mapping[str, Any]) -> tuple[str, ...]:
        return ("*.dbn", "*.dbn.zst")

    @classmethod
    def from_files(
        cls, settings: Mapping[str, Any], directory: str | os.PathLike[str]
    ) -> DatabentoProvider:
        """A provider reading the DBN files under `directory` (settings as `from_config`)."""
        return cls.from_config({**settings, "files_dir": str(directory)})

    # -- public ---------------------------------------------------------------------------

    def fetch_bars(self, request: BarRequest) -> FetchResult:
        """Bars for the sessions in [request.start, request.end), canonical BAR_SCHEMA.

        Raises BadRequestError for parent symbology, AuthError when the key is missing or
        rejected, DatabentoCostError above `max_cost_usd`, NoDataError when no symbol has a
        bar, and the translated vendor error otherwise.
        """
        base = "1d" if request.granularity == "1d" else "1m"
        schema = BAR_DBN_SCHEMAS[base]
        start, end = self._bounds(request.start, request.end, daily=base == "1d")
        context = self._context(request.dataset, schema, request.symbols, start, end)
        if self.stype_in == "parent":
            raise BadRequestError(
                "parent symbology maps every contract of a product to one symbol, which the "
                "bar key (symbol, ts) cannot hold; use continuous symbols (CL.c.0) or raw "
                "contract symbols (CLH5) for bars",
                **context,
            )
        loaded = self._load(schema, request.symbols, start, end, context)
        frames = [
            self._guard(
                origin, context, bars_frame, store, base, VENDOR, origin, loaded.definitions
            )
            for origin, store in loaded.stores
        ]
        frame = _within(pl.concat(frames) if frames else empty_bars(), request.symbols)
        frame = frame.filter((pl.col("ts") >= start) & (pl.col("ts") < end))
        dropped: dict[str, int] = {}
        if base == "1m" and self.regular_hours_only:
            regular = self._regular_hours(frame)
            dropped[EXTENDED_HOURS] = frame.height - regular.height
            frame = regular
        if request.granularity in RESAMPLED:
            frame = self._resample(frame, request.granularity, loaded.notes)
        result = self._result(frame.sort("symbol", "ts"), request.symbols, loaded, context)
        result.dropped = {reason: count for reason, count in dropped.items() if count}
        return result

    def fetch_ticks(self, request: TickRequest) -> FetchResult:
        """Ticks of `request.dataset` (trades, tbbo, statistics) whose exchange-local day is a
        session in [request.start, request.end); canonical tick schema, ns timestamps."""
        schema = TICK_DBN_SCHEMAS[request.dataset]
        start, end = self._bounds(request.start, request.end, daily=False)
        context = self._context(request.dataset, schema, request.symbols, start, end)
        loaded = self._load(schema, request.symbols, start, end, context)
        frames = [
            self._guard(
                origin,
                context,
                ticks_frame,
                store,
                request.dataset,
                VENDOR,
                origin,
                loaded.definitions,
            )
            for origin, store in loaded.stores
        ]
        frame = pl.concat(frames) if frames else empty_ticks(request.dataset)
        frame = _within(frame, request.symbols)
        ts = pl.col(TICK_TIME_COLUMN)
        frame = frame.filter((ts >= start) & (ts < end))
        frame = frame.sort("symbol", TICK_TIME_COLUMN, maintain_order=True)
        return self._result(frame, request.symbols, loaded, context)

    # -- loading --------------------------------------------------------------------------

    def _load(
        self,
        schema: str,
        symbols: Sequence[str],
        start: dt.datetime,
        end: dt.datetime,
        context: dict[str, Any],
    ) -> _Loaded:
        """The DBN stores that hold `schema` for `symbols` in [start, end)."""
        if self.files is not None:
            return self._load_files(schema, symbols, start, end, context)
        return self._load_api(schema, symbols, start, end, context)

    def _load_files(
        self,
        schema: str,
        symbols: Sequence[str],
        start: dt.datetime,
        end: dt.datetime,
        context: dict[str, Any],
    ) -> _Loaded:
        assert self.files is not None
        try:
            found = self.files.find(schema, symbols, start, end, self.dataset)
            if not found:
                reason, wrong_dataset = self.files.explain(
                    schema, symbols, start, end, self.dataset
                )
                raise (BadRequestError if wrong_dataset else NoDataError)(reason, **context)
            definitions = self.files.definitions(self.dataset)
        except FileNotFoundError as exc:
            raise BadRequestError(str(exc), **context) from exc
        except ValueError as exc:
            raise DatabentoPayloadError(str(exc), **context) from exc
        notes = {"files_read": str(len(found)), "files_dir": str(self.files.folder)}
        if self.files.skipped:
            notes["skipped_files"] = self.files.skipped_note()
        loaded = _Loaded(notes=notes, definitions=definitions)
        for dbn_file in found:
            origin = f"DBN file {dbn_file.path}"
            store = self._guard(origin, context, DBNStore.from_file, dbn_file.path)
            loaded.stores.append((origin, store))
        return loaded

    def _load_api(
        self,
        schema: str,
        symbols: Sequence[str],
        start: dt.datetime,
        end: dt.datetime,
        context: dict[str, Any],
    ) -> _Loaded:
        client = self._connect(context)
        batches = [
            list(symbols[i : i + MAX_SYMBOLS_PER_REQUEST])
            for i in range(0, len(symbols), MAX_SYMBOLS_PER_REQUEST)
        ]
        query = {"dataset": self.dataset, "schema": schema, "stype_in": self.stype_in}
        keys = [(schema, self.stype_in, start, end, tuple(batch)) for batch in batches]
        self._downloaded = {k: v for k, v in self._downloaded.items() if k in keys}
        loaded = _Loaded()
        if self.max_cost_usd is not None:
            cost = 0.0
            for batch in batches:
                cost += float(
                    self._call(
                        lambda b=batch: client.metadata.get_cost(
                            start=start, end=end, symbols=b, **query
                        ),
                        "the cost request",
                        context,
                    )
                )
                loaded.requests += 1
            loaded.notes["cost_usd"] = f"{cost:.4f}"
            if cost > self.max_cost_usd:
                raise DatabentoCostError(
                    f"this request would cost ${cost:,.2f}, above the limit max_cost_usd "
                    f"${self.max_cost_usd:,.2f} in providers.yaml; fetch fewer symbols or "
                    "sessions, or raise max_cost_usd",
                    **context,
                )
        for number, (batch, key) in enumerate(zip(batches, keys, strict=True), start=1):
            origin = f"Databento {self.dataset} {schema} batch {number}/{len(batches)}"
            store = self._downloaded.get(key)
            if store is None:
                store = self._call(
                    lambda b=batch: client.timeseries.get_range(
                        start=start, end=end, symbols=b, **query
                    ),
                    origin,
                    context,
                )
                loaded.requests += 1
                self._downloaded[key] = store
            loaded.not_found.update(store.metadata.not_found)
            partial = sorted(store.metadata.partial)
            if partial:
                loaded.notes["partially_resolved"] = ",".join(partial)
            loaded.stores.append((origin, store))
        self._downloaded = {}
        return loaded

    def _connect(self, context: dict[str, Any]) -> Any:
        """The Historical client, keyed from `api_key_env` (AuthError naming it when unset)."""
        if self._client is None:
            import databento

            key = os.environ.get(self.api_key_env, "").strip()
            if not key:
                raise AuthError(
                    f"${self.api_key_env} is not set: export your Databento API key in "
                    f"{self.api_key_env}, or ingest downloaded DBN files with --files DIR",
                    **context,
                )
            self._key = key
            self._client = databento.Historical(key)
        return self._client

    def _call(self, call: Callable[[], _T], origin: str, context: dict[str, Any]) -> _T:
        """Run a client call, translating its failure into our error hierarchy."""
        try:
            return call()
        except Exception as exc:
            error = translate(
                exc, key=self._key, api_key_env=self.api_key_env, origin=origin, context=context
            )
            if error is None:
                raise
            raise error from None

    def _guard(
        self, origin: str, context: dict[str, Any], decode: Callable[..., _T], *args: Any
    ) -> _T:
        """`decode(*args)`; undecodable data becomes DatabentoPayloadError naming `origin`."""

        def decoded() -> _T:
            try:
                return decode(*args)
            except DbnDecodeError as exc:
                raise DatabentoPayloadError(f"{exc}; download it again", **context) from None

        return self._call(decoded, origin, context)

    # -- shaping --------------------------------------------------------------------------

    def _bounds(
        self, first: dt.date, stop: dt.date, *, daily: bool
    ) -> tuple[dt.datetime, dt.datetime]:
        """UTC [start, end) for sessions in [first, stop): UTC midnights for daily bars,
        exchange-local midnights otherwise (extended hours and overnight ticks included)."""
        if daily:
            return (
                dt.datetime.combine(first, dt.time(0), tzinfo=dt.UTC),
                dt.datetime.combine(stop, dt.time(0), tzinfo=dt.UTC),
            )
        layout = layout_for("bars_1m")
        return layout.session_bounds(first)[0], layout.session_bounds(stop)[0]

    def _regular_hours(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Minute bars that open within a session's regular hours (of `calendar`: for CME
        futures the session that opens the evening before)."""
        if frame.is_empty():
            return frame
        regular = regular_hours_mask(frame.get_column("ts"), get_calendar(self.exchange))
        return frame.filter(regular.fill_null(False))

    def _resample(
        self, frame: pl.DataFrame, granularity: str, notes: dict[str, str]
    ) -> pl.DataFrame:
        """Session-aligned bars from 1m; minutes without a price cannot be aggregated."""
        priced = frame.drop_nulls(["open", "high", "low", "close", "volume"])
        if priced.height < frame.height:
            notes["unpriced_minutes_dropped"] = str(frame.height - priced.height)
        if priced.is_empty():
            return empty_bars()
        return resample_bars(priced, granularity, get_calendar(self.exchange))

    def _result(
        self,
        frame: pl.DataFrame,
        symbols: Sequence[str],
        loaded: _Loaded,
        context: dict[str, Any],
    ) -> FetchResult:
        """FetchResult with per-symbol failures; raise when no symbol has a single row."""
        not_found = [symbol for symbol in symbols if symbol in loaded.not_found]
        where = f"{self.dataset or 'the DBN files'} ({self.stype_in})"
        if len(not_found) == len(symbols):
            raise UnknownSymbolError(f"no requested symbol is known to {where}", **context)
        served = set(frame.get_column("symbol").unique().to_list())
        if not served:
            mode = f"in {self.files.folder}" if self.files else "from the API"
            raise NoDataError(
                f"no records {mode} for the requested symbols "
                "(a holiday or weekend, before the dataset's first day, or files that do not "
                "cover the range)",
                **context,
            )
        failures: dict[str, str] = {}
        for symbol in symbols:
            if symbol in served:
                continue
            single = {**context, "symbols": (symbol,)}
            if symbol in loaded.not_found:
                failures[symbol] = str(UnknownSymbolError(f"{symbol} is not in {where}", **single))
            else:
                failures[symbol] = str(NoDataError(f"no records for {symbol}", **single))
        return FetchResult(
            frame=frame,
            source=VENDOR,
            requests=loaded.requests,
            failures=failures,
            notes=loaded.notes,
        )

    def _context(
        self,
        dataset: str,
        schema: str,
        symbols: Sequence[str],
        start: dt.datetime,
        end: dt.datetime,
    ) -> dict[str, Any]:
        source = self.dataset or "DBN files"
        return {
            "vendor": VENDOR,
            "dataset": f"{dataset} ({source} {schema})",
            "symbols": tuple(symbols),
            "start": start,
            "end": end,
        }


def _within(frame: pl.DataFrame, symbols: Sequence[str]) -> pl.DataFrame:
    """Rows of the requested symbols only (a DBN file may hold others)."""
    return frame.filter(pl.col("symbol").is_in(list(symbols)))
