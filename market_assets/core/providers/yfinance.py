"""The `yfinance` provider: Yahoo Finance bars, splits and dividends through the yfinance library.

What it serves, and how it maps Yahoo onto the canonical tables:

- Daily bars (`1d`) UNADJUSTED: `history(auto_adjust=False)`, so open/high/low/close are the
  prices that traded; `ts` is the session date at 00:00 UTC. Yahoo's `Adj Close` never enters
  the bar schema; the last daily fetch keeps it in `adjusted_close` (symbol, ts, close,
  adj_close) as a cross-check for adjusted bars. Prices are rounded to Yahoo's own
  `priceHint` decimals (Yahoo serves float32-looking values such as 185.63999938964844).
- Intraday bars (`1m`, `5m`, `15m`, `1h`), regular session only, `ts` = bar open in UTC, within
  Yahoo's limits: 1m only for the last 30 days and at most 8 days per request (a longer range
  is split into 8-day requests); 5m and 15m for the last 60 days; 1h for the last 730 days.
  A range starting earlier is refused with BadRequestError naming the limit. Yahoo's hourly
  bars open at 9:30, 10:30, ... like our session-aligned ones.
- Splits and dividends (`fetch_actions`) from the `Stock Splits` and `Dividends` columns of
  the same history call: ratio = new shares per old share (4.0 for 4:1), amount per share in
  the chart's currency.
- Volume is shares; Yahoo gives no trade count or vwap, so both are null.

One `history` call per symbol per range (per 8-day window for 1m): Yahoo has no multi-symbol
chart endpoint. `FetchResult.requests` counts the chart requests actually sent (yfinance
re-sends a failed request once after renewing its cookie; both are counted); the cookie and
crumb handshakes are not counted.

yfinance hides errors by default (it logs them and returns an empty frame). This adapter turns
that off (`yf.config.debug.hide_exceptions = False`, process-wide, the switch yfinance
documents) and reads the HTTP status of the last chart response from its session, so:

    YFRateLimitError (HTTP 429)            RateLimitedError (Retry-After when Yahoo sends it)
    HTTP 5xx, "currently down", network    TransientError
    HTTP 401/403 after yfinance's retry    AuthError (Yahoo rejected the cookie/crumb)
    HTTP 400/422 (e.g. a range too old)    BadRequestError
    404 / "symbol may be delisted"         that symbol in `failures` (UnknownSymbolError)
    malformed chart JSON                   that symbol in `failures`, naming the field
    no rows for any symbol                 NoDataError (UnknownSymbolError if all unknown)

Two yfinance behaviours are worked around, each for a stated reason: yfinance caches chart
responses in process memory (so a retry after a 5xx would get the cached 5xx back): the cache
is cleared before each call; and it looks up each ticker's time zone with an extra request
(and a second fallback request) before the history request: the exchange's time zone is
set on the ticker instead, so a history call is exactly one chart request.

Transport seam: the constructor takes any `requests.Session` or `curl_cffi` session;
`from_config` asks the module-level `make_session()` for one, which tests replace to inject a
`requests_mock` transport into a provider built from providers.yaml.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import yfinance as yf
from curl_cffi import requests as curl_requests
from yfinance.data import YfData
from yfinance.exceptions import (
    YFDataException,
    YFRateLimitError,
    YFTickerMissingError,
)

from market_assets.core.providers.base import (
    ActionsRequest,
    BadRequestError,
    BarRequest,
    FetchResult,
    NoDataError,
    OptionChainRequest,
    PermanentError,
    ProviderError,
    TransientError,
    UnknownSymbolError,
)
from market_assets.core.providers.http_status import error_for_status
from market_assets.core.schemas import ACTION_SCHEMA, PRICE_COLUMNS, conform_bars, empty_bars
from market_assets.core.stores.layout import EXCHANGE_TZ
from market_assets.core.symbols import validate_symbols

VENDOR = "yfinance"
CHART_PATH = "/v8/finance/chart/"
INTERVALS = {"1m": "1m", "5m": "5m", "15m": "15m", "1h": "1h", "1d": "1d"}
IGNORED_SETTINGS = ("kind", "api_key_env", "secret_key_env", "requests_per_minute")
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_PRICE_DECIMALS = 9  # canonical rounding when Yahoo gives no priceHint
HISTORY_COLUMNS = {"open": "Open", "high": "High", "low": "Low", "close": "Close"}
QUOTE_FIELDS = ("open", "high", "low", "close", "volume")
ADJUSTED_CLOSE_SCHEMA: dict[str, pl.DataType] = {  # the Adj Close cross-check
    "symbol": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
    "close": pl.Float64(),
    "adj_close": pl.Float64(),
}


@dataclass(frozen=True)
class IntradayLimit:
    """How far back Yahoo serves an interval, and the longest range one request may span."""

    history_days: int
    days_per_request: int


INTRADAY_LIMITS: dict[str, IntradayLimit] = {
    "1m": IntradayLimit(history_days=30, days_per_request=8),
    "5m": IntradayLimit(history_days=60, days_per_request=60),
    "15m": IntradayLimit(history_days=60, days_per_request=60),
    "1h": IntradayLimit(history_days=730, days_per_request=730),
}


def make_session() -> Any:
    """The HTTP session a provider built from config uses: yfinance's own default kind.

    A curl_cffi session impersonating Chrome, as yfinance creates when given none (Yahoo
    throttles plain `requests` clients harder). Tests replace this function to inject a
    transport.
    """
    return curl_requests.Session(impersonate="chrome")


def yahoo_symbol(symbol: str) -> str:
    """Yahoo's ticker for a canonical symbol: class shares use a dash (BRK.B -> BRK-B)."""
    return symbol.replace(".", "-")


class _ChartLog:
    """Counts the chart requests a session sends and keeps the last chart response.

    Wraps the session's `request` method on the instance (both requests and curl_cffi route
    `get` through it), because yfinance keeps the responses to itself.
    """

    def __init__(self, session: Any) -> None:
        self.requests = 0
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.text: str | None = None
        send = session.request

        def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            response = send(method, url, *args, **kwargs)
            if CHART_PATH in str(url):
                self.requests += 1
                self.status = int(response.status_code)
                self.headers = {str(k): str(v) for k, v in response.headers.items()}
                self.text = response.text
            return response

        session.request = request

    def reset(self) -> None:
        """Forget the last response (its status must not be read for the next call)."""
        self.status, self.headers, self.text = None, {}, None


@dataclass
class _Answer:
    """One history call: the frame (empty when Yahoo had no rows) or the symbol's failure."""

    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    failure: str | None = None
    unknown: bool = False
    price_decimals: int = DEFAULT_PRICE_DECIMALS
    currency: str | None = None


class YFinanceProvider:
    """Yahoo Finance through yfinance: unadjusted daily bars, recent intraday bars, actions.

    `session` is the HTTP session yfinance uses (default: `make_session()`); `timeout` is
    seconds per request; `today` returns the current UTC date (the intraday limits count
    back from it). The provider needs no API key.
    """

    name = VENDOR
    granularities: tuple[str, ...] = ("1m", "5m", "15m", "1h", "1d")

    def __init__(
        self,
        session: Any | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        today: Callable[[], dt.date] | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.session = session if session is not None else make_session()
        self.timeout = float(timeout)
        self._today = today or (lambda: dt.datetime.now(dt.UTC).date())
        self._log = _ChartLog(self.session)
        self.adjusted_close = pl.DataFrame(schema=ADJUSTED_CLOSE_SCHEMA)

    @classmethod
    def from_config(cls, settings: Mapping[str, Any]) -> YFinanceProvider:
        """Build from a providers.yaml entry: `timeout_s` (seconds, default 10).

        `kind` must be "yfinance" when present; the vendor-generic keys are accepted and
        ignored (Yahoo needs no key; the registry applies `requests_per_minute`). Any other
        key raises ValueError naming it.
        """
        options = dict(settings)
        kind = options.get("kind", VENDOR)
        if kind != VENDOR:
            raise ValueError(f"YFinanceProvider cannot be built from kind {kind!r}")
        for key in IGNORED_SETTINGS:
            options.pop(key, None)
        unknown = set(options) - {"timeout_s"}
        if unknown:
            raise ValueError(
                f"unknown setting(s) {sorted(unknown)} for the yfinance provider; "
                "allowed: timeout_s"
            )
        return cls(
            session=make_session(),
            timeout=float(options.get("timeout_s", DEFAULT_TIMEOUT_S)),
        )

    def fetch_bars(self, request: BarRequest) -> FetchResult:
        """Bars for the sessions in [request.start, request.end), one history call per symbol
        (per 8-day window for 1m). Raises BadRequestError for a range beyond Yahoo's limits."""
        context = {"dataset": request.dataset, "start": request.start, "end": request.end}
        windows = self._windows(request, context)
        before = self._log.requests
        frames: list[pl.DataFrame] = []
        adjusted: list[pl.DataFrame] = []
        failures: dict[str, str] = {}
        unknown: set[str] = set()
        for symbol in request.symbols:
            parts: list[pl.DataFrame] = []
            for start, end in windows:
                answer = self._history(symbol, start, end, request.granularity, False, context)
                if answer.failure is not None:
                    failures[symbol] = answer.failure
                    if answer.unknown:
                        unknown.add(symbol)
                    parts = []
                    break
                parts.append(_bars(symbol, answer, request.granularity))
                if request.granularity == "1d":
                    adjusted.append(_adjusted_close(symbol, answer.history))
            frames.extend(part for part in parts if not part.is_empty())
        if request.granularity == "1d":
            self.adjusted_close = (
                pl.concat(adjusted) if adjusted else pl.DataFrame(schema=ADJUSTED_CLOSE_SCHEMA)
            )
        frame = pl.concat(frames).sort("symbol", "ts") if frames else empty_bars()
        requests = self._log.requests - before
        if frame.is_empty():
            raise _nothing(request.symbols, failures, unknown, context, "bars")
        return FetchResult(frame=frame, source=VENDOR, requests=requests, failures=failures)

    def fetch_actions(self, request: ActionsRequest) -> FetchResult:
        """Splits and dividends with ex_date in [request.start, request.end): one daily
        history call per symbol. No actions in the range is a normal, empty answer."""
        if not request.start < request.end:
            raise ValueError(
                f"start {request.start} must be before end {request.end} (end exclusive)"
            )
        symbols = tuple(validate_symbols(request.symbols))
        context = {"dataset": "corporate_actions", "start": request.start, "end": request.end}
        before = self._log.requests
        frames: list[pl.DataFrame] = []
        failures: dict[str, str] = {}
        unknown: set[str] = set()
        for symbol in symbols:
            answer = self._history(symbol, request.start, request.end, "1d", True, context)
            if answer.failure is not None:
                failures[symbol] = answer.failure
                if answer.unknown:
                    unknown.add(symbol)
                continue
            frames.append(_actions(symbol, answer, request.start, request.end))
        if symbols and unknown == set(symbols):
            raise _nothing(symbols, failures, unknown, context, "actions")
        frame = pl.concat(frames) if frames else pl.DataFrame(schema=ACTION_SCHEMA)
        return FetchResult(
            frame=frame.sort("symbol", "ex_date", "action_type"),
            source=VENDOR,
            requests=self._log.requests - before,
            failures=failures,
        )

    def fetch_options(self, request: OptionChainRequest) -> FetchResult:
        """The current option chain of each underlying (see yfinance_options)."""
        from market_assets.core.providers.yfinance_options import fetch_yahoo_options

        now = dt.datetime.combine(self._today(), dt.time(23, 59), tzinfo=dt.UTC)
        return fetch_yahoo_options(self.session, self.timeout, request, now)

    def _windows(
        self, request: BarRequest, context: dict[str, Any]
    ) -> list[tuple[dt.date, dt.date]]:
        """The [start, end) date ranges to request, within Yahoo's intraday limits."""
        if request.granularity == "1d":
            return [(request.start, request.end)]
        limit = INTRADAY_LIMITS[request.granularity]
        earliest = self._today() - dt.timedelta(days=limit.history_days - 1)
        if request.start < earliest:
            raise BadRequestError(
                f"Yahoo serves {request.granularity} bars only for the last "
                f"{limit.history_days} days (sessions from {earliest}); this range starts "
                f"earlier: route older {request.granularity} bars to alpaca or databento",
                vendor=VENDOR,
                symbols=request.symbols,
                **context,
            )
        step = dt.timedelta(days=limit.days_per_request)
        windows = []
        day = request.start
        while day < request.end:
            windows.append((day, min(day + step, request.end)))
            day += step
        return windows

    def _history(
        self,
        symbol: str,
        start: dt.date,
        end: dt.date,
        granularity: str,
        actions: bool,
        context: dict[str, Any],
    ) -> _Answer:
        """One yfinance history call, its outcome mapped onto our errors (see module doc)."""
        yf.config.debug.hide_exceptions = False
        ticker = yf.Ticker(yahoo_symbol(symbol), session=self.session)
        # The exchange time zone is known; setting it spares yfinance's time-zone lookup
        # request (and its fallback to a quote request) before every history call.
        ticker._tz = str(EXCHANGE_TZ)
        YfData.cache_get.cache_clear()
        self._log.reset()
        where = {"vendor": VENDOR, "symbols": (symbol,), **context}
        try:
            with warnings.catch_warnings():
                # yfinance calls pandas APIs that pandas has deprecated; not ours to fix.
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                warnings.filterwarnings("ignore", category=FutureWarning)
                history = ticker.history(
                    start=start,
                    end=end,
                    interval=INTERVALS[granularity],
                    auto_adjust=False,
                    actions=actions,
                    prepost=False,
                    timeout=self.timeout,
                )
        except YFRateLimitError as error:
            raise error_for_status(
                429, f"Yahoo rate-limited {symbol}", headers=self._log.headers, **where
            ) from error
        except Exception as error:  # noqa: BLE001 - classified below, unknown ones re-raised
            return self._classify(symbol, error, where)
        metadata = ticker.history_metadata
        hint = metadata.get("priceHint")
        return _Answer(
            history=history,
            price_decimals=int(hint) if isinstance(hint, int | float) else DEFAULT_PRICE_DECIMALS,
            currency=metadata.get("currency") or None,
        )

    def _classify(self, symbol: str, error: Exception, where: dict[str, Any]) -> _Answer:
        """Raise call-wide errors; return a per-symbol failure or an empty answer."""
        status = self._log.status
        reason = getattr(error, "yahoo_reason", None) or str(error)
        if status is not None and (status >= 500 or status in (401, 403, 400, 422)):
            raise error_for_status(status, reason, headers=self._log.headers, **where) from error
        if isinstance(error, YFTickerMissingError):
            if getattr(error, "yahoo_reason", None) is None and status == 200:
                return _Answer()  # Yahoo answered without rows: no session in the range
            message = str(
                UnknownSymbolError(
                    f"Yahoo does not list {symbol} (HTTP {status}): {reason}", **where
                )
            )
            return _Answer(failure=message, unknown=True)
        if isinstance(error, YFDataException):
            raise TransientError(f"Yahoo Finance is unavailable: {error}", **where) from error
        if isinstance(error, KeyError | ValueError | TypeError | IndexError):
            detail = _malformed_detail(self._log.text) or f"{type(error).__name__}: {error}"
            message = str(
                ProviderError(f"malformed Yahoo chart response for {symbol}: {detail}", **where)
            )
            return _Answer(failure=message)
        if isinstance(error, OSError):  # connection reset, timeout (requests and curl_cffi)
            raise TransientError(
                f"network error talking to Yahoo: {type(error).__name__}: {error}", **where
            ) from error
        raise error


def _nothing(
    symbols: tuple[str, ...],
    failures: dict[str, str],
    unknown: set[str],
    context: dict[str, Any],
    what: str,
) -> ProviderError:
    """The error for an answer without a single row."""
    where = {"vendor": VENDOR, "symbols": symbols, **context}
    if unknown and unknown == set(symbols):
        return UnknownSymbolError(f"Yahoo lists none of the requested symbols ({what})", **where)
    detail = "; ".join(failures.values())
    if set(failures) == set(symbols):
        return PermanentError(f"Yahoo answered no usable {what}: {detail}", **where)
    return NoDataError(
        f"Yahoo returned no {what}" + (f" ({detail})" if detail else " in the range"), **where
    )


def _session_ts(history: pd.DataFrame, granularity: str) -> pl.Series:
    """UTC bar-open timestamps: the session date at 00:00 UTC for daily bars."""
    index = pd.DatetimeIndex(history.index)
    if granularity == "1d":
        return pl.Series("ts", list(index.date), dtype=pl.Date).cast(pl.Datetime("us", "UTC"))
    utc = index.tz_convert("UTC").tz_localize(None).to_numpy()
    return pl.Series("ts", utc).dt.cast_time_unit("us").dt.replace_time_zone("UTC")


def _bars(symbol: str, answer: _Answer, granularity: str) -> pl.DataFrame:
    """Canonical bars from a yfinance history frame (rows holding only an event dropped)."""
    history = answer.history
    if history.empty:
        return empty_bars()
    prices = {
        name: pl.Series(name, history[column].to_numpy(dtype=np.float64))
        .fill_nan(None)
        .round(answer.price_decimals)
        for name, column in HISTORY_COLUMNS.items()
    }
    frame = pl.DataFrame(
        {
            "ts": _session_ts(history, granularity),
            "symbol": symbol,
            **prices,
            "volume": history["Volume"].to_numpy(dtype=np.int64),
            "granularity": granularity,
            "source": VENDOR,
        }
    )
    event_only = pl.all_horizontal([pl.col(c).is_null() for c in PRICE_COLUMNS])
    return conform_bars(frame.filter(~event_only))


def _adjusted_close(symbol: str, history: pd.DataFrame) -> pl.DataFrame:
    """Yahoo's Adj Close next to the raw close, for cross-checks (never stored as bars)."""
    if history.empty or "Adj Close" not in history.columns:
        return pl.DataFrame(schema=ADJUSTED_CLOSE_SCHEMA)
    frame = pl.DataFrame(
        {
            "symbol": symbol,
            "ts": _session_ts(history, "1d"),
            "close": history["Close"].to_numpy(dtype=np.float64),
            "adj_close": history["Adj Close"].to_numpy(dtype=np.float64),
        }
    )
    return frame.with_columns(pl.col("close", "adj_close").fill_nan(None)).drop_nulls("close")


def _actions(symbol: str, answer: _Answer, start: dt.date, end: dt.date) -> pl.DataFrame:
    """Splits (ratio = new/old shares) and cash dividends from a daily history frame."""
    history = answer.history
    if history.empty:
        return pl.DataFrame(schema=ACTION_SCHEMA)
    dates = pd.DatetimeIndex(history.index).date
    records: list[tuple[dt.date, str, float | None, float | None, str | None]] = []
    for column, action_type in (("Stock Splits", "split"), ("Dividends", "dividend")):
        if column not in history.columns:
            continue
        for day, value in zip(dates, history[column].to_numpy(dtype=np.float64), strict=True):
            if math.isnan(value) or value == 0 or not start <= day < end:
                continue
            if action_type == "split":
                records.append((day, "split", float(value), None, None))
            else:
                records.append((day, "dividend", None, float(value), answer.currency or "USD"))
    return pl.DataFrame(
        {
            "symbol": [symbol] * len(records),
            "ex_date": [r[0] for r in records],
            "action_type": [r[1] for r in records],
            "ratio": [r[2] for r in records],
            "amount": [r[3] for r in records],
            "currency": [r[4] for r in records],
            "source": [VENDOR] * len(records),
        },
        schema=ACTION_SCHEMA,
    )


def _malformed_detail(text: str | None) -> str | None:
    """Name the first field of a chart response that breaks Yahoo's documented shape."""
    if text is None:
        return None
    try:
        payload = json.loads(text)
    except ValueError:
        return f"the body is not JSON (starts {text[:60]!r})"
    try:
        result = payload["chart"]["result"][0]
    except (KeyError, IndexError, TypeError):
        return "chart.result[0] is missing"
    timestamps = result.get("timestamp") if isinstance(result, dict) else None
    if not isinstance(timestamps, list):
        return "field chart.result[0].timestamp is missing or not a list"
    try:
        quote = result["indicators"]["quote"][0]
    except (KeyError, IndexError, TypeError):
        return "field chart.result[0].indicators.quote[0] is missing"
    for name in QUOTE_FIELDS:
        values = quote.get(name)
        where = f"field indicators.quote[0].{name}"
        if not isinstance(values, list):
            return f"{where} is missing or not a list"
        if len(values) != len(timestamps):
            return f"{where} has {len(values)} values for {len(timestamps)} timestamps"
        for position, value in enumerate(values):
            if value is not None and not isinstance(value, int | float):
                return f"{where}[{position}] is {value!r}, not a number"
    return None
