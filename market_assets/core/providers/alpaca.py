"""The `alpaca` provider: Alpaca Market Data bars and corporate actions through alpaca-py.

What it serves, and how it maps Alpaca onto the canonical tables:

- Bars at 1m, 5m, 15m and 1d from `StockHistoricalDataClient.get_stock_bars` with
  `adjustment=RAW` (unadjusted) and the configured feed: `iex` (default; free plans; IEX's
  own trades only, so volumes are a fraction of the consolidated tape), `sip` (consolidated,
  needs a subscription for recent data) or `delayed_sip`. The feed is recorded in each
  attempt's notes. History starts 2016-01-01; a range starting earlier is refused with
  BadRequestError. `trade_count` (n) and `vwap` (vw) are filled.
- Timestamps: intraday `ts` is the bar open in UTC; Alpaca also returns pre- and post-market
  bars, which are dropped (canonical bars are regular session; the count dropped is noted).
  Daily bars are stamped at midnight New York (04:00/05:00 UTC) and become the session date
  at 00:00 UTC. Alpaca's hourly bars are clock-aligned (9:00, 10:00 ...), not
  session-aligned (9:30 ...), so 1h is not offered: derive it from 1m.
- Splits and cash dividends from `CorporateActionsClient.get_corporate_actions`: forward and
  reverse splits with ratio = new_rate / old_rate, cash dividends with amount = rate (USD).
- Option chain snapshots from `OptionHistoricalDataClient.get_option_chain` (feed
  `option_feed`: indicative or opra); see alpaca_options.

Bulk fetching: one `get_stock_bars` call covers up to `SYMBOLS_PER_REQUEST` symbols over the
whole range; alpaca-py follows `next_page_token` itself until the last page, and every page is
an HTTP request counted in `FetchResult.requests` (a response hook on the session counts
them). A symbol Alpaca has no bars for while others have some is reported in `failures`
(unknown, delisted or not on the chosen feed); no bars at all is NoDataError.

Keys come from the environment variables named by `api_key_env` / `secret_key_env`
(default APCA_API_KEY_ID / APCA_API_SECRET_KEY), read at the first fetch; when one is unset
the fetch raises AuthError naming the variables, never their values. HTTP errors: 401/403
AuthError, 400/422 BadRequestError, 429 RateLimitedError (Retry-After or X-RateLimit-Reset),
5xx TransientError; connection errors are transient. alpaca-py retries 429 and 504 itself
(three times, a fixed 3 s apart, ignoring Retry-After); that is turned off on the clients so
the registry's retry policy is the only one.

Transport seam: the constructor takes a `requests.Session` that replaces each alpaca-py
client's own (`client._session`, the session alpaca-py sends every request through);
`from_config` asks the module-level `make_session()` for one, which tests replace to inject
a `requests_mock` transport into a provider built from providers.yaml.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from typing import Any

import polars as pl
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.enums import Adjustment, CorporateActionsType, DataFeed, OptionsFeed
from alpaca.data.historical.corporate_actions import CorporateActionsClient
from alpaca.data.historical.option import OptionHistoricalDataClient
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.data.requests import CorporateActionsRequest, OptionChainRequest, StockBarsRequest
from alpaca.data.timeframe import TimeFrame, TimeFrameUnit

from market_assets.core.calendar import get_calendar
from market_assets.core.options.quotes import empty_quotes
from market_assets.core.providers import base
from market_assets.core.providers.alpaca_options import (
    OPTION_FEEDS,
    check_latest_session,
    snapshot_rows,
)
from market_assets.core.providers.base import (
    ActionsRequest,
    AuthError,
    BadRequestError,
    BarRequest,
    FetchResult,
    NoDataError,
    PermanentError,
    ProviderError,
    TransientError,
)
from market_assets.core.providers.http_status import error_for_status
from market_assets.core.schemas import ACTION_SCHEMA, conform_bars, empty_bars
from market_assets.core.stores.layout import EXCHANGE_TZ
from market_assets.core.symbols import validate_symbols
from market_assets.core.transforms.resample import session_schedule

VENDOR = "alpaca"
FIRST_DAY = dt.date(2016, 1, 1)  # Alpaca's historical stock data starts here
DEFAULT_API_KEY_ENV = "APCA_API_KEY_ID"
DEFAULT_SECRET_KEY_ENV = "APCA_API_SECRET_KEY"
FEEDS = {"iex": DataFeed.IEX, "sip": DataFeed.SIP, "delayed_sip": DataFeed.DELAYED_SIP}
TIMEFRAMES = {
    "1m": TimeFrame(1, TimeFrameUnit.Minute),
    "5m": TimeFrame(5, TimeFrameUnit.Minute),
    "15m": TimeFrame(15, TimeFrameUnit.Minute),
    "1d": TimeFrame(1, TimeFrameUnit.Day),
}
SYMBOLS_PER_REQUEST = 200  # keeps the query string short; Alpaca pages within a request
REQUIRED_FIELDS = {
    "t": "timestamp",
    "o": "open",
    "h": "high",
    "l": "low",
    "c": "close",
    "v": "volume",
}
OPTIONAL_FIELDS = {"n": "trade count", "vw": "vwap"}
RAW_BAR_SCHEMA: dict[str, pl.DataType] = {
    "t": pl.String(),
    "o": pl.Float64(),
    "h": pl.Float64(),
    "l": pl.Float64(),
    "c": pl.Float64(),
    "v": pl.Float64(),
    "n": pl.Float64(),
    "vw": pl.Float64(),
}
SPLIT_KINDS = ("forward_splits", "reverse_splits")
DIVIDEND_KIND = "cash_dividends"


def make_session() -> requests.Session:
    """The HTTP session a provider built from config hands to alpaca-py's clients.

    A plain `requests.Session`, the kind alpaca-py creates itself. Tests replace this
    function to inject a transport.
    """
    return requests.Session()


class _MalformedError(ValueError):
    """A bar payload that breaks Alpaca's documented shape (message names symbol and field)."""


class AlpacaProvider:
    """Alpaca Market Data: raw bars (multi-symbol, paginated) and corporate actions.

    `api_key_env` / `secret_key_env` name the environment variables holding the keys; `feed`
    is iex, sip or delayed_sip; `session` is the `requests.Session` every request goes
    through (default: `make_session()`).
    """

    name = VENDOR
    granularities: tuple[str, ...] = ("1m", "5m", "15m", "1d")

    def __init__(
        self,
        api_key_env: str = DEFAULT_API_KEY_ENV,
        secret_key_env: str = DEFAULT_SECRET_KEY_ENV,
        feed: str = "iex",
        session: requests.Session | None = None,
        option_feed: str = "indicative",
        now: Any = None,
    ) -> None:
        if feed not in FEEDS:
            raise ValueError(f"feed {feed!r} is not one of {sorted(FEEDS)}")
        if option_feed not in OPTION_FEEDS:
            raise ValueError(f"option_feed {option_feed!r} is not one of {list(OPTION_FEEDS)}")
        self.option_feed = option_feed
        self._now = now or (lambda: dt.datetime.now(dt.UTC))
        self._options: OptionHistoricalDataClient | None = None
        self.api_key_env = api_key_env
        self.secret_key_env = secret_key_env
        self.feed = feed
        self.session = session if session is not None else make_session()
        self.session.hooks.setdefault("response", []).append(self._count)
        self.http_requests = 0
        self._stock: StockHistoricalDataClient | None = None
        self._actions: CorporateActionsClient | None = None

    @classmethod
    def from_config(cls, settings: Mapping[str, Any]) -> AlpacaProvider:
        """Build from a providers.yaml entry: `api_key_env`, `secret_key_env`, `feed`.

        `kind` must be "alpaca" when present; `requests_per_minute` is applied by the
        registry. Any other key raises ValueError naming it.
        """
        options = dict(settings)
        kind = options.pop("kind", VENDOR)
        if kind != VENDOR:
            raise ValueError(f"AlpacaProvider cannot be built from kind {kind!r}")
        options.pop("requests_per_minute", None)
        allowed = {"api_key_env", "secret_key_env", "feed", "option_feed"}
        unknown = set(options) - allowed
        if unknown:
            raise ValueError(
                f"unknown setting(s) {sorted(unknown)} for the alpaca provider; "
                f"allowed: {', '.join(sorted(allowed))}, requests_per_minute"
            )
        return cls(
            api_key_env=str(options.get("api_key_env") or DEFAULT_API_KEY_ENV),
            secret_key_env=str(options.get("secret_key_env") or DEFAULT_SECRET_KEY_ENV),
            feed=str(options.get("feed", "iex")),
            session=make_session(),
            option_feed=str(options.get("option_feed", "indicative")),
        )

    def fetch_bars(self, request: BarRequest) -> FetchResult:
        """Raw bars for the sessions in [request.start, request.end), all pages of every
        symbol group. Raises BadRequestError before 2016 or for an unsupported granularity."""
        context = {"dataset": request.dataset, "start": request.start, "end": request.end}
        where = {"vendor": VENDOR, "symbols": request.symbols, **context}
        if request.granularity not in TIMEFRAMES:
            raise BadRequestError(
                f"Alpaca bars are served at {list(TIMEFRAMES)} here, not "
                f"{request.granularity!r} (Alpaca's hourly bars are clock-aligned; derive 1h "
                "from 1m)",
                **where,
            )
        if request.start < FIRST_DAY:
            raise BadRequestError(
                f"Alpaca's stock history starts {FIRST_DAY}; this range starts earlier: route "
                "older bars to another provider",
                **where,
            )
        stock, _ = self._clients(where)
        before = self.http_requests
        frames: list[pl.DataFrame] = []
        failures: dict[str, str] = {}
        for first in range(0, len(request.symbols), SYMBOLS_PER_REQUEST):
            group = request.symbols[first : first + SYMBOLS_PER_REQUEST]
            params = StockBarsRequest(
                symbol_or_symbols=list(group),
                timeframe=TIMEFRAMES[request.granularity],
                start=_new_york_midnight(request.start),
                end=_new_york_midnight(request.end),
                adjustment=Adjustment.RAW,
                feed=FEEDS[self.feed],
            )
            raw = self._call(lambda p=params: stock.get_stock_bars(p), group, context)
            if not isinstance(raw, dict):
                raise PermanentError(
                    f"malformed Alpaca response: bars are {type(raw).__name__}, not an object "
                    "keyed by symbol",
                    **where,
                )
            for symbol in group:
                try:
                    frames.append(_symbol_bars(symbol, raw.get(symbol) or [], request.granularity))
                except _MalformedError as error:
                    failures[symbol] = str(
                        ProviderError(str(error), **{**where, "symbols": (symbol,)})
                    )
        raw_bars = pl.concat(frames) if frames else empty_bars()
        frame, extended = _regular_sessions(raw_bars, request)
        notes = {"feed": self.feed}
        if extended:
            notes["extended_hours_bars_dropped"] = str(extended)
        if frame.is_empty() and failures:
            raise PermanentError(
                f"Alpaca's bars were malformed: {'; '.join(failures.values())}", **where
            )
        if frame.is_empty():
            raise NoDataError(f"Alpaca ({self.feed} feed) returned no bars in the range", **where)
        served = set(frame.get_column("symbol").unique().to_list())
        for symbol in request.symbols:
            if symbol not in served and symbol not in failures:
                failures[symbol] = str(
                    NoDataError(
                        f"Alpaca ({self.feed} feed) has no bars for {symbol} while other "
                        "symbols have some: unknown, delisted or not on this feed",
                        **{**where, "symbols": (symbol,)},
                    )
                )
        return FetchResult(
            frame=frame.sort("symbol", "ts"),
            source=VENDOR,
            requests=self.http_requests - before,
            failures=failures,
            notes=notes,
            dropped={"extended_hours": extended} if extended else {},
        )

    def fetch_actions(self, request: ActionsRequest) -> FetchResult:
        """Forward/reverse splits and cash dividends with ex_date in [start, end), all pages."""
        if not request.start < request.end:
            raise ValueError(
                f"start {request.start} must be before end {request.end} (end exclusive)"
            )
        symbols = tuple(validate_symbols(request.symbols))
        context = {"dataset": "corporate_actions", "start": request.start, "end": request.end}
        where = {"vendor": VENDOR, "symbols": symbols, **context}
        _, actions = self._clients(where)
        before = self.http_requests
        frames: list[pl.DataFrame] = []
        for first in range(0, len(symbols), SYMBOLS_PER_REQUEST):
            group = symbols[first : first + SYMBOLS_PER_REQUEST]
            params = CorporateActionsRequest(
                symbols=list(group),
                types=[
                    CorporateActionsType.FORWARD_SPLIT,
                    CorporateActionsType.REVERSE_SPLIT,
                    CorporateActionsType.CASH_DIVIDEND,
                ],
                start=request.start,
                end=request.end - dt.timedelta(days=1),  # Alpaca's end is inclusive
                limit=None,  # no cap on the total: alpaca-py pages until the last token
            )
            raw = self._call(lambda p=params: actions.get_corporate_actions(p), group, context)
            try:
                frames.append(_actions_frame(raw if isinstance(raw, dict) else {}, group, request))
            except (KeyError, TypeError, ValueError) as error:
                raise PermanentError(
                    f"malformed Alpaca corporate actions response: {type(error).__name__}: {error}",
                    **where,
                ) from error
        frame = pl.concat(frames) if frames else pl.DataFrame(schema=ACTION_SCHEMA)
        frame = frame.sort("symbol", "ex_date", "action_type")
        return FetchResult(frame=frame, source=VENDOR, requests=self.http_requests - before)

    def fetch_options(self, request: base.OptionChainRequest) -> FetchResult:
        """The latest option chain snapshot of each underlying (see alpaca_options), stamped
        at the latest completed session's close; one paginated request per underlying."""
        context = {"dataset": "options_chains", "start": request.start, "end": request.end}
        where = {"vendor": VENDOR, "symbols": request.symbols, **context}
        session = check_latest_session(request, self._now(), where)
        close = get_calendar().session_open_close(session)[1]
        client = self._option_client(where)
        before = self.http_requests
        frames: list[pl.DataFrame] = []
        failures: dict[str, str] = {}
        for symbol in request.symbols:
            params = OptionChainRequest(
                underlying_symbol=symbol, feed=OptionsFeed(self.option_feed)
            )
            raw = self._call(lambda p=params: client.get_option_chain(p), (symbol,), context)
            try:
                frame = snapshot_rows(symbol, session, raw if isinstance(raw, dict) else {}, close)
            except (ValueError, TypeError, pl.exceptions.PolarsError) as error:
                failures[symbol] = str(
                    PermanentError(
                        f"malformed Alpaca option snapshots: {error}",
                        **{**where, "symbols": (symbol,)},
                    )
                )
                continue
            if frame.is_empty():
                failures[symbol] = str(
                    NoDataError(
                        f"Alpaca ({self.option_feed} feed) lists no option contracts of {symbol}",
                        **{**where, "symbols": (symbol,)},
                    )
                )
            frames.append(frame)
        frame = pl.concat(frames) if frames else empty_quotes()
        if frame.is_empty():
            raise NoDataError(
                f"Alpaca ({self.option_feed} feed) returned no option snapshots", **where
            )
        return FetchResult(
            frame=frame,
            source=VENDOR,
            requests=self.http_requests - before,
            failures=failures,
            notes={"option_feed": self.option_feed},
        )

    def _option_client(self, where: dict[str, Any]) -> OptionHistoricalDataClient:
        """alpaca-py's option client on the provider's session (keys as for bars)."""
        if self._options is None:
            self._clients(where)
            api_key = os.environ.get(self.api_key_env, "")
            secret_key = os.environ.get(self.secret_key_env, "")
            client = OptionHistoricalDataClient(api_key, secret_key, raw_data=True)
            client._session = self.session
            client._retry = 0
            self._options = client
        return self._options

    def _count(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """Session response hook: one HTTP request answered (every page counts)."""
        self.http_requests += 1

    def _clients(
        self, where: dict[str, Any]
    ) -> tuple[StockHistoricalDataClient, CorporateActionsClient]:
        """The alpaca-py clients, built at first use from the keys in the environment."""
        if self._stock is not None and self._actions is not None:
            return self._stock, self._actions
        api_key = os.environ.get(self.api_key_env, "")
        secret_key = os.environ.get(self.secret_key_env, "")
        missing = [
            name
            for name, value in ((self.api_key_env, api_key), (self.secret_key_env, secret_key))
            if not value
        ]
        if missing:
            raise AuthError(
                f"Alpaca keys are not set: export {' and '.join(missing)} (the variables "
                "named by api_key_env / secret_key_env in providers.yaml)",
                **where,
            )
        stock = StockHistoricalDataClient(api_key, secret_key, raw_data=True)
        actions = CorporateActionsClient(api_key, secret_key, raw_data=True)
        for client in (stock, actions):
            client._session = self.session
            client._retry = 0  # the registry retries, honouring Retry-After
        self._stock, self._actions = stock, actions
        return stock, actions

    def _call(self, send: Any, symbols: tuple[str, ...], context: dict[str, Any]) -> Any:
        """Run one alpaca-py call, mapping its failures onto provider errors."""
        where = {"vendor": VENDOR, "symbols": symbols, **context}
        try:
            return send()
        except APIError as error:
            status = error.status_code or 0
            response = error.response
            headers = dict(response.headers) if response is not None else {}
            message = _api_message(error)
            if status in (401, 403):
                message += (
                    f": Alpaca rejected the keys in {self.api_key_env} / {self.secret_key_env}"
                )
                if status == 403 and self.feed != "iex":
                    message += f" (or the plan does not include the {self.feed} feed)"
            raise error_for_status(status, message, headers=headers, **where) from error
        except requests.exceptions.JSONDecodeError as error:
            raise PermanentError(
                f"malformed Alpaca response (not JSON): {error}", **where
            ) from error
        except requests.RequestException as error:
            raise TransientError(
                f"network error talking to Alpaca: {type(error).__name__}: {error}", **where
            ) from error
        except (ValueError, TypeError, AttributeError) as error:
            # alpaca-py indexes the body by its documented keys; a body without them fails here
            raise PermanentError(
                f"malformed Alpaca response: {type(error).__name__}: {error}", **where
            ) from error


def _api_message(error: APIError) -> str:
    """Alpaca's error message ({"code": ..., "message": ...}) or the raw body."""
    try:
        return str(error.message)
    except (ValueError, KeyError, TypeError):
        return str(error)[:200]


def _new_york_midnight(day: dt.date) -> dt.datetime:
    """00:00 New York time on `day`, as an aware datetime (Alpaca stamps daily bars there)."""
    return dt.datetime.combine(day, dt.time(0), tzinfo=EXCHANGE_TZ)


def _symbol_bars(symbol: str, rows: Any, granularity: str) -> pl.DataFrame:
    """Canonical bars of one symbol from Alpaca's raw bar objects.

    A field missing from a bar, or a value of the wrong type, raises _MalformedError naming
    the symbol, the bar and the field; a null or NaN price is kept as null (validation
    quarantines the row).
    """
    if not isinstance(rows, list):
        raise _MalformedError(f"bars of {symbol} are {type(rows).__name__}, not a list")
    if not rows:
        return empty_bars()
    for position, row in enumerate(rows):
        if not isinstance(row, dict):
            raise _MalformedError(f"bar {position} of {symbol} is {type(row).__name__}")
        missing = [key for key in REQUIRED_FIELDS if key not in row]
        if missing:
            key = missing[0]
            raise _MalformedError(
                f"bar {position} of {symbol} has no field {key!r} ({REQUIRED_FIELDS[key]})"
            )
    try:
        raw = pl.from_dicts(rows, schema=RAW_BAR_SCHEMA, strict=True)
    except (pl.exceptions.PolarsError, TypeError) as error:
        raise _MalformedError(_first_wrong_type(symbol, rows) or str(error)) from error
    raw = raw.with_columns(pl.col(c).fill_nan(None) for c in RAW_BAR_SCHEMA if c != "t")
    ts = raw.get_column("t").str.to_datetime(time_unit="us", time_zone="UTC", strict=False)
    unparsed = (ts.is_null() & raw.get_column("t").is_not_null()).arg_true()
    if len(unparsed) or raw.get_column("t").null_count():
        position = int(unparsed[0]) if len(unparsed) else int(raw["t"].is_null().arg_true()[0])
        raise _MalformedError(
            f"bar {position} of {symbol}: field 't' (timestamp) is {rows[position]['t']!r}, "
            "not an RFC 3339 time"
        )
    for key in ("v", "n"):
        fractional = (raw.get_column(key) != raw.get_column(key).round()).fill_null(False)
        if fractional.any():
            position = int(fractional.arg_true()[0])
            raise _MalformedError(
                f"bar {position} of {symbol}: field {key!r} is {rows[position][key]!r}, "
                "not a whole number"
            )
    if granularity == "1d":
        ts = ts.dt.convert_time_zone(str(EXCHANGE_TZ)).dt.date().cast(pl.Datetime("us", "UTC"))
    frame = pl.DataFrame(
        {
            "ts": ts,
            "symbol": symbol,
            "open": raw["o"],
            "high": raw["h"],
            "low": raw["l"],
            "close": raw["c"],
            "volume": raw["v"].cast(pl.Int64),
            "trade_count": raw["n"].cast(pl.Int64),
            "vwap": raw["vw"],
            "granularity": granularity,
            "source": VENDOR,
        }
    )
    return conform_bars(frame)


def _first_wrong_type(symbol: str, rows: list[dict[str, Any]]) -> str | None:
    """Describe the first field of a bar whose value is not of Alpaca's documented type."""
    for position, row in enumerate(rows):
        for key, name in {**REQUIRED_FIELDS, **OPTIONAL_FIELDS}.items():
            value = row.get(key)
            if value is None:
                continue
            expected_text = key == "t"
            wrong = (
                not isinstance(value, str)
                if expected_text
                else isinstance(value, bool) or not isinstance(value, int | float)
            )
            if wrong:
                kind = "a string" if expected_text else "a number"
                return (
                    f"bar {position} of {symbol}: field {key!r} ({name}) is {value!r}, not {kind}"
                )
    return None


def _regular_sessions(bars: pl.DataFrame, request: BarRequest) -> tuple[pl.DataFrame, int]:
    """Bars of sessions in [start, end); intraday bars only within regular hours.

    Returns the kept bars and how many intraday bars fell outside regular hours.
    """
    if bars.is_empty():
        return bars, 0
    if request.granularity == "1d":
        day = pl.col("ts").dt.date()
        return bars.filter((day >= request.start) & (day < request.end)), 0
    schedule = session_schedule().filter(
        (pl.col("session") >= request.start) & (pl.col("session") < request.end)
    )
    placed = bars.sort("ts").join_asof(
        schedule, left_on="ts", right_on="session_open", strategy="backward"
    )
    regular = pl.col("session_open").is_not_null() & (pl.col("ts") < pl.col("session_close"))
    kept = placed.filter(regular).select(bars.columns)
    return kept, len(bars) - len(kept)


def _actions_frame(
    raw: dict[str, Any], symbols: tuple[str, ...], request: ActionsRequest
) -> pl.DataFrame:
    """ACTION_SCHEMA rows from Alpaca's corporate actions keyed by type."""
    wanted = set(symbols)
    records: list[tuple[str, dt.date, str, float | None, float | None, str | None]] = []
    for kind in SPLIT_KINDS:
        for action in raw.get(kind) or []:
            ratio = float(action["new_rate"]) / float(action["old_rate"])
            records.append((action["symbol"], _date(action["ex_date"]), "split", ratio, None, None))
    for action in raw.get(DIVIDEND_KIND) or []:
        records.append(
            (
                action["symbol"],
                _date(action["ex_date"]),
                "dividend",
                None,
                float(action["rate"]),
                "USD",
            )
        )
    records = [r for r in records if r[0] in wanted and request.start <= r[1] < request.end]
    frame = pl.DataFrame(
        {
            "symbol": [r[0] for r in records],
            "ex_date": [r[1] for r in records],
            "action_type": [r[2] for r in records],
            "ratio": [r[3] for r in records],
            "amount": [r[4] for r in records],
            "currency": [r[5] for r in records],
            "source": [VENDOR] * len(records),
        },
        schema=ACTION_SCHEMA,
    )
    return frame.sort("symbol", "ex_date", "action_type")


def _date(value: Any) -> dt.date:
    """An ISO date (YYYY-MM-DD) from the payload; raises ValueError otherwise."""
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))
