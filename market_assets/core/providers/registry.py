"""Route each dataset to its providers in configured order, with retries and failover.

A route is an ordered list of provider names, keyed by dataset (`bars_1m`, `bars_1d`, ...)
or by `corporate_actions` for actions. For each request the registry:

1. calls the first provider, retrying TransientError with exponential backoff and jitter
   (a RateLimitedError waits its `retry_after` instead; if that is longer than the policy's
   `max_wait` the registry stops retrying and fails over rather than block the run);
2. fails over to the next provider on a PermanentError, on exhausted retries, or on an
   empty answer, and sends the backup only the symbols still missing (those the previous
   provider reported in `failures` or returned no rows for);
3. labels every row's `source` with the provider that produced it, and records every
   attempt (provider, outcome, error) in `FetchResult.attempts` for the run's metadata.

Every call (retries included) first takes a token from the provider's `RequestLimiter` when
providers.yaml sets its `requests_per_minute`; a call that reports more than one vendor request
in `FetchResult.requests` pays for the others before the provider's next call. Error text that
reaches attempts, failures or a raised error has the provider's secrets masked
(market_assets.core.providers.redact).

Outcomes recorded per attempt: `ok`, `partial` (some symbols failed), `empty`, `retrying`
(a transient error that will be retried), `exhausted` (the last transient error), `failed`
(a permanent error) and `unsupported` (the provider cannot serve the request).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from market_assets.core.errors import ConfigError
from market_assets.core.providers.base import (
    ActionsRequest,
    ActionsSource,
    BarRequest,
    BarSource,
    FetchResult,
    NoDataError,
    ProviderError,
    RateLimitedError,
    TickRequest,
    TransientError,
    add_counts,
)
from market_assets.core.providers.ratelimit import RequestLimiter
from market_assets.core.providers.redact import SecretRedactor, secret_env_names
from market_assets.core.schemas import ACTION_SCHEMA, TICK_TIME_COLUMN, empty_bars, empty_ticks

if TYPE_CHECKING:
    from market_assets.core.config import AppConfig

ACTIONS_ROUTE = "corporate_actions"
REGISTRY_VENDOR = "registry"

PROVIDER_KINDS: dict[str, str] = {
    "synthetic": "market_assets.core.providers.synthetic:SyntheticProvider",
    "files": "market_assets.core.providers.files:FilesProvider",
    "yfinance": "market_assets.core.providers.yfinance:YFinanceProvider",
    "alpaca": "market_assets.core.providers.alpaca:AlpacaProvider",
    "databento": "market_assets.core.providers.databento:DatabentoProvider",
    "sec_edgar": "market_assets.core.providers.sec_edgar:SecEdgarProvider",
    "databento_options": "market_assets.core.providers.databento.options:DatabentoOptionsProvider",
    "nasdaq_trader": "market_assets.core.providers.nasdaq_trader:NasdaqTraderProvider",
    "sec_tickers": "market_assets.core.providers.sec_tickers:SecTickersProvider",
    "sp500": "market_assets.core.providers.sp500:Sp500Provider",
}
"""Provider kind -> "module:Class". Each class offers `from_config(settings)`. Modules are
imported only when a configured provider uses them, so a vendor's client library is needed
only where that vendor is configured."""

GENERIC_PROVIDER_SETTINGS = ("api_key_env", "secret_key_env", "requests_per_minute")
"""Settings every provider kind accepts in `from_config` (vendors that need no key ignore them)."""

Provider = BarSource | ActionsSource
Fetch = Callable[[Any, tuple[str, ...]], FetchResult]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently one provider call is retried on TransientError.

    `attempts` counts the first call (4 = one call and up to three retries). Waits grow
    exponentially from `initial_wait` seconds, plus up to `initial_wait` of random jitter,
    and never exceed `max_wait` seconds.
    """

    attempts: int = 4
    initial_wait: float = 0.5
    max_wait: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be >= 1, got {self.attempts}")
        if self.initial_wait < 0 or self.max_wait < 0:
            raise ValueError(
                f"RetryPolicy waits must be >= 0, got initial_wait={self.initial_wait}, "
                f"max_wait={self.max_wait}"
            )


def provider_class(kind: str) -> type:
    """The provider class registered for `kind`; raises ValueError naming known kinds."""
    try:
        target = PROVIDER_KINDS[kind]
    except KeyError:
        raise ValueError(
            f"unknown provider kind {kind!r}; known kinds: {sorted(PROVIDER_KINDS)}"
        ) from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


class ProviderRegistry:
    """Providers by name, and the ordered providers (routes) of each dataset.

    `limiters` pace calls per provider name (see ratelimit.py); `redactor` masks the
    providers' secrets in recorded and raised errors; `disabled` names providers that
    providers.yaml turns off, so pinning one says so instead of calling it unknown.
    """

    def __init__(
        self,
        providers: Mapping[str, Provider],
        routes: Mapping[str, Sequence[str]],
        retry: RetryPolicy | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        limiters: Mapping[str, RequestLimiter] | None = None,
        redactor: SecretRedactor | None = None,
        disabled: Sequence[str] = (),
    ) -> None:
        for route, names in routes.items():
            missing = [name for name in names if name not in providers]
            if missing:
                raise ValueError(
                    f"route {route!r} names provider(s) {missing} that are not configured; "
                    f"configured providers: {sorted(providers)}"
                )
            if not names:
                raise ValueError(f"route {route!r} lists no providers")
        unknown_limits = sorted(set(limiters or {}) - set(providers))
        if unknown_limits:
            raise ValueError(
                f"rate limits given for provider(s) {unknown_limits} that are not configured"
            )
        self.providers: dict[str, Provider] = dict(providers)
        self.limiters: dict[str, RequestLimiter] = dict(limiters or {})
        self.redactor = redactor or SecretRedactor()
        self.disabled: tuple[str, ...] = tuple(disabled)
        self.routes: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in routes.items()}
        # Routes datasets.yaml configures whose every provider providers.yaml disables.
        self.disabled_routes: dict[str, tuple[str, ...]] = {}
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._backoff = wait_exponential_jitter(
            multiplier=self.retry.initial_wait,
            max=self.retry.max_wait,
            jitter=self.retry.initial_wait,
        )

    @classmethod
    def from_settings(
        cls,
        provider_settings: Mapping[str, Mapping[str, Any]],
        routes: Mapping[str, Sequence[str]],
        retry: RetryPolicy | None = None,
        *,
        disabled: Sequence[str] = (),
    ) -> ProviderRegistry:
        """Instantiate each configured provider by its `kind` (default: its name).

        A provider whose settings hold `requests_per_minute` gets a RequestLimiter, and the
        environment variables named by `api_key_env`, `secret_key_env` and `*_env` settings
        are masked in every error the registry records or raises. Raises ValueError naming
        the provider (and kind) when the kind is unknown or its settings are rejected, and
        naming the route when a route lists a provider that is not configured.
        """
        providers: dict[str, Provider] = {}
        limiters: dict[str, RequestLimiter] = {}
        secret_envs: list[str] = []
        for name, settings in provider_settings.items():
            kind = str(settings.get("kind", name))
            try:
                factory = provider_class(kind)
            except ValueError as error:
                raise ValueError(f"provider {name!r}: {error}") from None
            try:
                providers[name] = factory.from_config(dict(settings))
            except ValueError as error:
                raise ValueError(f"provider {name!r} (kind {kind}): {error}") from error
            if settings.get("requests_per_minute"):
                limiters[name] = RequestLimiter(name, float(settings["requests_per_minute"]))
            secret_envs.extend(secret_env_names(settings))
        return cls(
            providers,
            routes,
            retry,
            limiters=limiters,
            redactor=SecretRedactor(secret_envs),
            disabled=disabled,
        )

    @classmethod
    def from_app_config(cls, config: AppConfig) -> ProviderRegistry:
        """Build from the loaded configs: providers.yaml settings and datasets.yaml routes.

        A provider's `settings` are flattened next to its `kind` and the vendor-generic keys
        (`api_key_env`, `secret_key_env`, `requests_per_minute`, when set). Disabled
        providers are left out of every route; a route left empty is dropped, so fetching
        that dataset raises ValueError naming it. Settings a provider rejects raise
        ConfigError naming providers.yaml and the provider's key.
        """
        providers_file = config.providers
        settings: dict[str, dict[str, Any]] = {}
        disabled: list[str] = []
        for name, provider in providers_file.providers.items():
            if not provider.enabled:
                disabled.append(name)
                continue
            generic = {
                key: getattr(provider, key)
                for key in GENERIC_PROVIDER_SETTINGS
                if getattr(provider, key) is not None
            }
            settings[name] = {"kind": provider.kind, **generic, **provider.settings}
        routes = {
            route: [name for name in names if name in settings]
            for route, names in config.routes().items()
        }
        retry = RetryPolicy(
            attempts=providers_file.retry_attempts,
            initial_wait=providers_file.retry_initial_wait_s,
            max_wait=providers_file.retry_max_wait_s,
        )
        try:
            registry = cls.from_settings(
                settings, {k: v for k, v in routes.items() if v}, retry, disabled=disabled
            )
        except ValueError as error:
            raise ConfigError(f"{config.config_dir / 'providers.yaml'}: {error}") from error
        configured = config.routes()
        registry.disabled_routes = {k: tuple(configured[k]) for k, v in routes.items() if not v}
        return registry

    def with_route(self, key: str, names: Sequence[str]) -> ProviderRegistry:
        """A registry sharing these providers and limiters, with `key` routed to `names` only.

        Raises ValueError saying so when a name is a provider providers.yaml disables.
        """
        off = [name for name in names if name in self.disabled]
        if off:
            raise ValueError(
                f"provider(s) {off} are disabled in providers.yaml (enabled: false); set "
                f"enabled: true to use them for {key!r}"
            )
        routed = ProviderRegistry(
            self.providers,
            {**self.routes, key: tuple(names)},
            self.retry,
            sleep=self._sleep,
            limiters=self.limiters,
            redactor=self.redactor,
            disabled=self.disabled,
        )
        routed.disabled_routes = {k: v for k, v in self.disabled_routes.items() if k != key}
        return routed

    def route(self, key: str) -> tuple[str, ...]:
        """Provider names for a dataset (or `corporate_actions`), primary first."""
        if key in self.routes:
            return self.routes[key]
        if key in self.disabled_routes:
            names = ", ".join(self.disabled_routes[key])
            raise ValueError(
                f"every provider routed for {key!r} ({names}) is disabled in providers.yaml "
                f"(enabled: false): enable one there, or list an enabled provider under "
                f"datasets.{key}.providers in datasets.yaml"
            )
        raise ValueError(
            f"no providers are routed for {key!r}: routes live in datasets.yaml, as "
            f"datasets.{key}.providers (primary first); routed datasets: {sorted(self.routes)}"
        )

    def fetch_bars(self, request: BarRequest) -> FetchResult:
        """Bars from the dataset's providers in order, failing over per symbol.

        Raises the last provider error (or NoDataError naming dataset, symbols and range)
        when no provider returns a single row.
        """

        def fetch(provider: Any, symbols: tuple[str, ...]) -> FetchResult:
            return provider.fetch_bars(request.for_symbols(symbols))

        def supports(provider: Any) -> bool:
            granularities = getattr(provider, "granularities", ())
            return hasattr(provider, "fetch_bars") and request.granularity in granularities

        result = self._fetch(
            self.route(request.dataset),
            request.symbols,
            fetch,
            supports,
            context={"dataset": request.dataset, "start": request.start, "end": request.end},
            empty=empty_bars(),
            missing_rows_fail_over=True,
        )
        result.frame = result.frame.sort("symbol", "ts")
        return result

    def fetch_actions(self, request: ActionsRequest) -> FetchResult:
        """Corporate actions from the `corporate_actions` route, with the same failover.

        Symbols without actions in the range are normal and are not failed over; an
        empty answer from every provider returns an empty frame rather than raising.
        """

        def fetch(provider: Any, symbols: tuple[str, ...]) -> FetchResult:
            return provider.fetch_actions(ActionsRequest(symbols, request.start, request.end))

        result = self._fetch(
            self.route(ACTIONS_ROUTE),
            tuple(request.symbols),
            fetch,
            lambda provider: hasattr(provider, "fetch_actions"),
            context={"dataset": ACTIONS_ROUTE, "start": request.start, "end": request.end},
            empty=pl.DataFrame(schema=ACTION_SCHEMA),
            missing_rows_fail_over=False,
        )
        result.frame = result.frame.sort("symbol", "ex_date", "action_type")
        return result

    def fetch_ticks(self, request: TickRequest) -> FetchResult:
        """Ticks (trades, tbbo, statistics) from the dataset's providers, with the same
        retries and per-symbol failover as bars; raises like `fetch_bars` when no provider
        returns a single row."""

        def fetch(provider: Any, symbols: tuple[str, ...]) -> FetchResult:
            return provider.fetch_ticks(request.for_symbols(symbols))

        def supports(provider: Any) -> bool:
            datasets = getattr(provider, "tick_datasets", ())
            return hasattr(provider, "fetch_ticks") and request.dataset in datasets

        result = self._fetch(
            self.route(request.dataset),
            request.symbols,
            fetch,
            supports,
            context={"dataset": request.dataset, "start": request.start, "end": request.end},
            empty=empty_ticks(request.dataset),
            missing_rows_fail_over=True,
        )
        result.frame = result.frame.sort("symbol", TICK_TIME_COLUMN, maintain_order=True)
        return result

    def fetch_capability(
        self,
        route: str,
        symbols: Sequence[str],
        capability: str,
        call: Fetch,
        *,
        empty: pl.DataFrame,
        context: Mapping[str, Any] | None = None,
        missing_rows_fail_over: bool = True,
    ) -> FetchResult:
        """Any capability's rows from `route`'s providers, with the same retries, rate limits,
        per-symbol failover and attempt records as bars.

        `capability` is the provider method a provider must have to be asked (for example
        "fetch_options"); `call(provider, symbols)` makes the request for those symbols.
        Raises like `fetch_bars` when no provider returns a row and
        `missing_rows_fail_over` (a symbol without rows is missing); otherwise an empty
        answer is normal and returns `empty`.
        """
        return self._fetch(
            self.route(route),
            tuple(symbols),
            call,
            lambda provider: hasattr(provider, capability),
            context={"dataset": route, "start": None, "end": None, **(context or {})},
            empty=empty,
            missing_rows_fail_over=missing_rows_fail_over,
        )

    def _fetch(
        self,
        names: Sequence[str],
        symbols: tuple[str, ...],
        fetch: Fetch,
        supports: Callable[[Any], bool],
        *,
        context: dict[str, Any],
        empty: pl.DataFrame,
        missing_rows_fail_over: bool,
    ) -> FetchResult:
        remaining = list(symbols)
        frames: list[pl.DataFrame] = []
        sources: list[str] = []  # providers whose rows were kept
        answered: list[str] = []  # providers that answered without error
        attempts: list[dict[str, str]] = []
        failures: dict[str, str] = {}  # symbol -> error from the latest provider asked for it
        dropped: dict[str, int] = {}  # rows providers read and deliberately left out, by reason
        requests = 0
        last_error: ProviderError | None = None
        for name in names:
            if not remaining:
                break
            provider = self.providers[name]
            asked = tuple(remaining)
            if not supports(provider):
                attempts.append(_attempt(name, "unsupported", asked, 0, "cannot serve request"))
                continue
            call = self._call_with_retry(name, provider, asked, fetch, attempts)
            requests += call.requests
            if call.error is not None:
                last_error = call.error
                failures.update({symbol: str(call.error) for symbol in asked})
                continue
            result = call.result
            answered.append(name)
            add_counts(dropped, result.dropped)
            served = set(result.frame.get_column("symbol").unique().to_list())
            if served:
                frames.append(result.frame.with_columns(pl.lit(name).alias("source")))
                sources.append(name)
            unserved = [symbol for symbol in asked if symbol not in served]
            failures = {s: m for s, m in failures.items() if s not in asked}
            failures.update({s: result.failures[s] for s in unserved if s in result.failures})
            if missing_rows_fail_over or not served:
                remaining = unserved
            else:
                remaining = [symbol for symbol in unserved if symbol in failures]

        if not frames and (missing_rows_fail_over or not answered):
            error = last_error or NoDataError(
                f"no provider returned data (tried {', '.join(names)})",
                vendor=REGISTRY_VENDOR,
                symbols=symbols,
                **context,
            )
            error.add_note(_summary(names, symbols, context, attempts))
            raise self.redactor.exception(error)
        unresolved: dict[str, str] = {}
        for symbol in remaining:
            if symbol in failures:
                unresolved[symbol] = failures[symbol]
            elif missing_rows_fail_over:
                unresolved[symbol] = f"no rows for {symbol} from {', '.join(answered)}"
        return FetchResult(
            frame=pl.concat(frames) if frames else empty,
            source=",".join(dict.fromkeys(sources or answered)),
            requests=requests,
            failures=self.redactor.record(unresolved),
            attempts=[self.redactor.record(attempt) for attempt in attempts],
            dropped=dropped,
        )

    def _call_with_retry(
        self,
        name: str,
        provider: Any,
        symbols: tuple[str, ...],
        fetch: Fetch,
        attempts: list[dict[str, str]],
    ) -> _Call:
        """One provider call under the retry policy, with every attempt recorded."""

        def note_retry(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            attempts.append(
                _attempt(name, "retrying", symbols, state.attempt_number, str(error), wait)
            )

        retrying = Retrying(
            stop=stop_after_attempt(self.retry.attempts) | self._rate_limit_too_long,
            wait=self._wait,
            retry=retry_if_exception_type(TransientError),
            sleep=self._sleep,
            before_sleep=note_retry,
            reraise=True,
        )
        limiter = self.limiters.get(name)
        calls = 0
        throttled = 0.0  # seconds this call waited for the provider's rate limit
        try:
            for attempt in retrying:
                with attempt:
                    calls = attempt.retry_state.attempt_number
                    if limiter is not None:
                        throttled += limiter.acquire()
                    result = fetch(provider, symbols)
        except ProviderError as error:
            outcome = "exhausted" if error.retryable else "failed"
            self.redactor.exception(error)
            attempts.append(_attempt(name, outcome, symbols, calls, str(error)))
            _note_throttle(attempts[-1], throttled)
            return _Call(result=None, error=error, requests=calls)
        except Exception as error:
            self.redactor.exception(error)
            raise
        if limiter is not None:
            limiter.owe(result.requests - 1)  # pages beyond the first, paid on the next call
        outcome = "partial" if result.failures else "ok"
        if result.frame.is_empty():
            outcome = "empty"
        detail = "; ".join(result.failures.values())
        attempts.append(_attempt(name, outcome, symbols, calls, detail))
        notes = {key: str(value) for key, value in result.notes.items() if key not in attempts[-1]}
        attempts[-1].update(notes)
        _note_throttle(attempts[-1], throttled)
        return _Call(result=result, error=None, requests=calls - 1 + result.requests)

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RateLimitedError) and error.retry_after is not None:
            return max(float(error.retry_after), 0.0)
        return self._backoff(state)

    def _rate_limit_too_long(self, state: RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome else None
        return (
            isinstance(error, RateLimitedError)
            and error.retry_after is not None
            and error.retry_after > self.retry.max_wait
        )


def _note_throttle(record: dict[str, str], seconds: float) -> None:
    if seconds > 0:
        record["rate_limit_wait_seconds"] = f"{seconds:.3f}"


@dataclass(frozen=True)
class _Call:
    """What one provider call under retries came to: a result or the error that ended it."""

    result: FetchResult | None
    error: ProviderError | None
    requests: int  # the result's own count, plus one for every failed attempt


def _attempt(
    provider: str,
    outcome: str,
    symbols: Sequence[str],
    attempt: int,
    error: str = "",
    wait: float | None = None,
) -> dict[str, str]:
    record = {
        "provider": provider,
        "outcome": outcome,
        "attempt": str(attempt),
        "symbols": ",".join(symbols),
        "error": error,
    }
    if wait is not None:
        record["wait_seconds"] = f"{wait:.3f}"
    return record


def _summary(
    names: Sequence[str],
    symbols: Sequence[str],
    context: Mapping[str, Any],
    attempts: Sequence[Mapping[str, str]],
) -> str:
    steps = "; ".join(
        f"{a['provider']} {a['outcome']}" + (f" ({a['error']})" if a["error"] else "")
        for a in attempts
    )
    return (
        f"dataset {context['dataset']} symbols {','.join(symbols)} "
        f"range [{context['start']}, {context['end']}): providers {', '.join(names)} "
        f"all failed: {steps}"
    )
