"""The provider registry: retries, failover and the bookkeeping that shows them."""

from __future__ import annotations

import datetime as dt
import secrets
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from market_assets.core.config import AppConfig
from market_assets.core.providers.base import (
    ActionsRequest,
    AuthError,
    BarRequest,
    FetchResult,
    NoDataError,
    RateLimitedError,
    TransientError,
    UnknownSymbolError,
)
from market_assets.core.providers.ratelimit import RequestLimiter
from market_assets.core.providers.redact import SecretRedactor
from market_assets.core.providers.registry import ProviderRegistry, RetryPolicy
from market_assets.core.providers.synthetic import SyntheticProvider
from market_assets.core.schemas import ACTION_SCHEMA, empty_bars

D = dt.date
FAST = RetryPolicy(attempts=4, initial_wait=0.001, max_wait=0.01)
REQUEST = BarRequest("bars_1d", ("AAPL", "MSFT"), "1d", D(2024, 1, 2), D(2024, 1, 6))


class ScriptedProvider:
    """A provider whose answers are scripted, one per call, and that records what it is asked.

    Each script step is an exception to raise or a callable building a FetchResult from the
    request; the last step repeats.
    """

    granularities = ("1m", "5m", "15m", "1h", "1d")

    def __init__(self, name: str, *steps: Exception | Callable[[BarRequest], FetchResult]):
        self.name = name
        self.steps = list(steps)
        self.asked: list[tuple[str, ...]] = []

    def fetch_bars(self, request: BarRequest) -> FetchResult:
        self.asked.append(request.symbols)
        step = self.steps[min(len(self.asked), len(self.steps)) - 1]
        if isinstance(step, Exception):
            raise step
        return step(request)

    def fetch_actions(self, request: ActionsRequest) -> FetchResult:
        self.asked.append(tuple(request.symbols))
        step = self.steps[min(len(self.asked), len(self.steps)) - 1]
        if isinstance(step, Exception):
            raise step
        return FetchResult(frame=pl.DataFrame(schema=ACTION_SCHEMA), source=self.name, requests=1)


def empty_answer(request: BarRequest) -> FetchResult:
    return FetchResult(frame=empty_bars(), source="empty", requests=1)


def synthetic_answer(request: BarRequest) -> FetchResult:
    return SyntheticProvider().fetch_bars(request)


def transient(vendor: str = "primary") -> TransientError:
    return TransientError("HTTP 503", vendor=vendor, dataset="bars_1d", symbols=REQUEST.symbols)


def registry(*providers: object, sleep: Callable[[float], None] | None = None) -> ProviderRegistry:
    named = {provider.name: provider for provider in providers}
    routes = {"bars_1d": list(named), "corporate_actions": list(named)}
    if sleep is None:
        return ProviderRegistry(named, routes, FAST)
    return ProviderRegistry(named, routes, FAST, sleep=sleep)


def outcomes(result: FetchResult) -> list[tuple[str, str]]:
    return [(a["provider"], a["outcome"]) for a in result.attempts]


def test_transient_errors_are_retried_then_succeed() -> None:
    primary = SyntheticProvider(transient_failures=2)

    result = registry(primary).fetch_bars(REQUEST)

    assert primary.calls == 3
    assert outcomes(result) == [
        ("synthetic", "retrying"),
        ("synthetic", "retrying"),
        ("synthetic", "ok"),
    ]
    assert result.frame.height == 2 * 4  # two symbols, 2024-01-02 .. 2024-01-05
    assert result.source == "synthetic"
    assert result.requests == 3


def test_backoff_waits_grow_and_stay_under_max_wait() -> None:
    waits: list[float] = []
    flaky = ScriptedProvider("primary", transient(), transient(), transient(), synthetic_answer)

    registry(flaky, sleep=waits.append).fetch_bars(REQUEST)

    assert len(waits) == 3
    assert waits[0] >= 0.001 and waits[1] >= 0.002
    assert all(wait <= 0.01 for wait in waits)


def test_exhausted_retries_fail_over_to_the_backup() -> None:
    primary = ScriptedProvider("primary", transient())
    backup = ScriptedProvider("backup", synthetic_answer)

    result = registry(primary, backup).fetch_bars(REQUEST)

    assert len(primary.asked) == 4
    assert outcomes(result) == [("primary", "retrying")] * 3 + [
        ("primary", "exhausted"),
        ("backup", "ok"),
    ]
    assert set(result.frame["source"]) == {"backup"}
    assert result.requests == 4 + 1


def test_permanent_error_fails_over_without_retrying_and_records_the_source() -> None:
    primary = ScriptedProvider("primary", AuthError("set PRIMARY_API_KEY", vendor="primary"))
    backup = ScriptedProvider("backup", synthetic_answer)

    result = registry(primary, backup).fetch_bars(REQUEST)

    assert len(primary.asked) == 1
    assert outcomes(result) == [("primary", "failed"), ("backup", "ok")]
    assert "PRIMARY_API_KEY" in result.attempts[0]["error"]
    assert result.source == "backup"
    assert result.frame["source"].unique().to_list() == ["backup"]
    assert result.frame.height == 8


def test_empty_primary_fails_over_to_the_backup() -> None:
    primary = ScriptedProvider("primary", empty_answer)
    backup = ScriptedProvider("backup", synthetic_answer)

    result = registry(primary, backup).fetch_bars(REQUEST)

    assert outcomes(result) == [("primary", "empty"), ("backup", "ok")]
    assert backup.asked == [("AAPL", "MSFT")]
    assert result.source == "backup"


def test_only_the_symbols_the_primary_failed_are_asked_of_the_backup() -> None:
    primary = SyntheticProvider(unknown_symbols=frozenset({"MSFT"}))
    backup = ScriptedProvider("backup", synthetic_answer)

    result = registry(primary, backup).fetch_bars(REQUEST)

    assert backup.asked == [("MSFT",)]
    sources = dict(result.frame.select("symbol", "source").unique().iter_rows())
    assert sources == {"AAPL": "synthetic", "MSFT": "backup"}
    assert result.source == "synthetic,backup"
    assert result.failures == {}
    assert outcomes(result) == [("synthetic", "partial"), ("backup", "ok")]
    assert result.requests == 2


def test_symbols_missing_from_the_primary_answer_are_asked_of_the_backup() -> None:
    def aapl_only(request: BarRequest) -> FetchResult:
        return SyntheticProvider().fetch_bars(request.for_symbols(("AAPL",)))

    backup = ScriptedProvider("backup", synthetic_answer)

    result = registry(ScriptedProvider("primary", aapl_only), backup).fetch_bars(REQUEST)

    assert backup.asked == [("MSFT",)]
    assert sorted(set(result.frame["symbol"])) == ["AAPL", "MSFT"]


def test_symbol_no_provider_knows_stays_in_failures_while_others_are_returned() -> None:
    primary = SyntheticProvider(unknown_symbols=frozenset({"MSFT"}))
    backup = ScriptedProvider("backup", UnknownSymbolError("MSFT unknown", vendor="backup"))

    result = registry(primary, backup).fetch_bars(REQUEST)

    assert sorted(set(result.frame["symbol"])) == ["AAPL"]
    assert list(result.failures) == ["MSFT"]
    assert "MSFT unknown" in result.failures["MSFT"]


def test_rate_limited_retry_waits_as_long_as_the_vendor_says() -> None:
    waits: list[float] = []
    limited = RateLimitedError("HTTP 429", retry_after=0.004, vendor="primary")
    primary = ScriptedProvider("primary", limited, synthetic_answer)

    result = registry(primary, sleep=waits.append).fetch_bars(REQUEST)

    assert waits == [0.004]
    assert result.attempts[0]["wait_seconds"] == "0.004"
    assert outcomes(result) == [("primary", "retrying"), ("primary", "ok")]


def test_rate_limited_retry_really_sleeps_with_the_default_sleep() -> None:
    limited = RateLimitedError("HTTP 429", retry_after=0.02, vendor="primary")
    primary = ScriptedProvider("primary", limited, synthetic_answer)

    patient = ProviderRegistry({"primary": primary}, {"bars_1d": ["primary"]}, RetryPolicy())

    started = time.perf_counter()
    patient.fetch_bars(REQUEST)

    assert time.perf_counter() - started >= 0.02


def test_rate_limit_longer_than_max_wait_fails_over_instead_of_blocking() -> None:
    waits: list[float] = []
    limited = RateLimitedError("HTTP 429", retry_after=3600, vendor="primary")
    backup = ScriptedProvider("backup", synthetic_answer)

    result = registry(ScriptedProvider("primary", limited), backup, sleep=waits.append).fetch_bars(
        REQUEST
    )

    assert waits == []
    assert outcomes(result) == [("primary", "exhausted"), ("backup", "ok")]


def test_all_providers_failing_raises_the_last_error_naming_dataset_and_symbols() -> None:
    primary = ScriptedProvider("primary", AuthError("no key", vendor="primary"))
    backup = ScriptedProvider(
        "backup",
        TransientError("HTTP 502", vendor="backup", dataset="bars_1d", symbols=REQUEST.symbols),
    )

    with pytest.raises(TransientError) as raised:
        registry(primary, backup).fetch_bars(REQUEST)

    message = str(raised.value)
    assert "dataset=bars_1d" in message and "symbols=AAPL,MSFT" in message
    summary = raised.value.__notes__[0]
    assert "dataset bars_1d symbols AAPL,MSFT" in summary
    assert "primary failed (primary: no key)" in summary and "backup exhausted" in summary


def test_all_providers_empty_raises_no_data_error_naming_dataset_symbols_and_range() -> None:
    primary = ScriptedProvider("primary", empty_answer)
    backup = ScriptedProvider("backup", empty_answer)

    with pytest.raises(NoDataError) as raised:
        registry(primary, backup).fetch_bars(REQUEST)

    assert str(raised.value) == (
        "registry dataset=bars_1d symbols=AAPL,MSFT range=[2024-01-02, 2024-01-06): "
        "no provider returned data (tried primary, backup)"
    )


def test_provider_without_the_granularity_is_skipped() -> None:
    daily_only = ScriptedProvider("daily_only", synthetic_answer)
    daily_only.granularities = ("1d",)
    backup = ScriptedProvider("backup", synthetic_answer)
    routes = {"bars_1m": ["daily_only", "backup"]}
    request = BarRequest("bars_1m", ("AAPL",), "1m", D(2024, 1, 2), D(2024, 1, 3))

    result = ProviderRegistry(
        {"daily_only": daily_only, "backup": backup}, routes, FAST
    ).fetch_bars(request)

    assert daily_only.asked == []
    assert outcomes(result) == [("daily_only", "unsupported"), ("backup", "ok")]
    assert result.frame.height == 390


def test_dataset_without_a_route_raises_value_error_naming_it() -> None:
    request = BarRequest("bars_1h", ("AAPL",), "1h", D(2024, 1, 2), D(2024, 1, 3))

    with pytest.raises(ValueError, match="no providers are routed for 'bars_1h'"):
        registry(SyntheticProvider()).fetch_bars(request)


def test_route_naming_an_unconfigured_provider_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"route 'bars_1d' names provider\(s\) \['alpaca'\]"):
        ProviderRegistry({"synthetic": SyntheticProvider()}, {"bars_1d": ["alpaca", "synthetic"]})


def test_from_settings_builds_providers_by_kind() -> None:
    built = ProviderRegistry.from_settings(
        {"synthetic": {"seed": 3}, "demo_backup": {"kind": "synthetic", "seed": 4}},
        {"bars_1d": ["synthetic", "demo_backup"]},
        FAST,
    )

    assert isinstance(built.providers["demo_backup"], SyntheticProvider)
    assert built.providers["demo_backup"].seed == 4
    assert built.route("bars_1d") == ("synthetic", "demo_backup")
    assert built.fetch_bars(REQUEST).source == "synthetic"


def test_from_settings_rejects_an_unknown_kind_naming_provider_and_kind() -> None:
    with pytest.raises(ValueError, match="provider 'main': unknown provider kind 'polygon'"):
        ProviderRegistry.from_settings({"main": {"kind": "polygon"}}, {"bars_1d": ["main"]})


def test_fetch_actions_fails_over_on_the_corporate_actions_route() -> None:
    primary = ScriptedProvider("primary", AuthError("no key", vendor="primary"))
    backup = SyntheticProvider()
    request = ActionsRequest(("SYM1", "AAPL"), D(2016, 1, 1), D(2017, 1, 1))

    result = registry(primary, backup).fetch_actions(request)

    assert outcomes(result) == [("primary", "failed"), ("synthetic", "ok")]
    assert result.frame["source"].unique().to_list() == ["synthetic"]
    assert result.frame.filter(pl.col("action_type") == "split")["ratio"].to_list() == [4.0]
    assert result.failures == {}


def test_fetch_actions_returns_an_empty_frame_when_no_provider_has_actions() -> None:
    primary = ScriptedProvider("primary", synthetic_answer)
    request = ActionsRequest(("AAPL",), D(2024, 1, 1), D(2024, 2, 1))

    result = registry(primary).fetch_actions(request)

    assert result.frame.is_empty() and result.frame.schema == ACTION_SCHEMA
    assert result.failures == {}
    assert outcomes(result) == [("primary", "empty")]


def test_symbol_no_provider_has_rows_for_is_reported_in_failures() -> None:
    def aapl_only(request: BarRequest) -> FetchResult:
        return SyntheticProvider().fetch_bars(request.for_symbols(("AAPL",)))

    primary = ScriptedProvider("primary", aapl_only)
    backup = ScriptedProvider("backup", empty_answer)

    result = registry(primary, backup).fetch_bars(REQUEST)

    assert result.failures == {"MSFT": "no rows for MSFT from primary, backup"}
    assert result.source == "primary"


def test_from_app_config_uses_provider_settings_routes_and_retry(tmp_path: Path) -> None:
    (tmp_path / "universes.yaml").write_text("universes:\n  demo:\n    symbols: [AAPL]\n")
    (tmp_path / "datasets.yaml").write_text(
        "datasets:\n"
        "  bars_1d:\n    granularity: 1d\n    start: '2009-01-02'\n"
        "    providers: [synthetic, spare, disabled]\n"
        "  bars_5m:\n    granularity: 5m\n    start: '2016-01-04'\n    derived_from: bars_1d\n"
    )
    (tmp_path / "providers.yaml").write_text(
        "retry_attempts: 2\nretry_initial_wait_s: 0.01\nretry_max_wait_s: 0.1\n"
        "providers:\n"
        "  synthetic:\n    kind: synthetic\n    settings: {seed: 3}\n"
        "  spare:\n    kind: synthetic\n    requests_per_minute: 60\n"
        "  disabled:\n    kind: synthetic\n    enabled: false\n"
    )
    built = ProviderRegistry.from_app_config(AppConfig.load(tmp_path))

    assert built.route("bars_1d") == ("synthetic", "spare")
    assert built.providers["synthetic"].seed == 3
    assert built.retry == RetryPolicy(attempts=2, initial_wait=0.01, max_wait=0.1)
    assert "bars_5m" not in built.routes


class FakeClock:
    """Time that moves only when slept through: every sleep is recorded, none is waited."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def paced(clock: FakeClock, per_minute: float, *steps) -> tuple[ProviderRegistry, list[float]]:
    """A registry over one scripted provider limited to `per_minute`, and its call times."""
    calls: list[float] = []

    def timed(step):
        def answer(request: BarRequest) -> FetchResult:
            calls.append(clock.now)
            if isinstance(step, Exception):
                raise step
            return step(request)

        return answer

    primary = ScriptedProvider("primary", *(timed(step) for step in steps))
    limiter = RequestLimiter("primary", per_minute, clock=clock, sleep=clock.sleep)
    built = ProviderRegistry(
        {"primary": primary},
        {"bars_1d": ["primary"]},
        FAST,
        sleep=clock.sleep,
        limiters={"primary": limiter},
    )
    return built, calls


def test_requests_per_minute_spaces_calls_in_a_rolling_minute_on_an_injected_clock() -> None:
    clock = FakeClock()
    limited, calls = paced(clock, 2, synthetic_answer)

    results = [limited.fetch_bars(REQUEST) for _ in range(5)]

    assert calls == pytest.approx([0.0, 0.0, 60.001, 60.001, 120.002])
    assert all(sum(start <= t < start + 60 for t in calls) <= 2 for start in calls)
    waits = [result.attempts[-1].get("rate_limit_wait_seconds") for result in results]
    assert waits == [None, None, "60.001", None, "60.001"]


def test_retries_take_their_own_rate_limit_tokens() -> None:
    clock = FakeClock()
    limited, calls = paced(clock, 1, transient(), synthetic_answer)

    result = limited.fetch_bars(REQUEST)

    assert calls[0] == 0.0
    assert 60.0 < calls[1] < 60.01  # the backoff's few ms count towards the minute
    assert outcomes(result) == [("primary", "retrying"), ("primary", "ok")]
    assert result.requests == 2


def test_a_call_that_made_several_requests_pays_for_them_before_the_next_call() -> None:
    def three_pages(request: BarRequest) -> FetchResult:
        result = synthetic_answer(request)
        result.requests = 3
        return result

    clock = FakeClock()
    limited, calls = paced(clock, 2, three_pages)

    limited.fetch_bars(REQUEST)
    limited.fetch_bars(REQUEST)

    assert calls == pytest.approx([0.0, 120.002])


def test_pinned_route_shares_the_providers_rate_limiter() -> None:
    clock = FakeClock()
    limited, calls = paced(clock, 1, synthetic_answer)
    pinned = limited.with_route("bars_1d", ["primary"])

    limited.fetch_bars(REQUEST)
    pinned.fetch_bars(REQUEST)

    assert pinned.limiters["primary"] is limited.limiters["primary"]
    assert calls == pytest.approx([0.0, 60.001])


def test_from_app_config_limits_providers_with_requests_per_minute_and_names_disabled_ones(
    tmp_path: Path,
) -> None:
    (tmp_path / "universes.yaml").write_text("universes:\n  demo:\n    symbols: [AAPL]\n")
    (tmp_path / "datasets.yaml").write_text(
        "datasets:\n  bars_1d:\n    granularity: 1d\n    start: '2009-01-02'\n"
        "    providers: [synthetic, spare]\n"
    )
    (tmp_path / "providers.yaml").write_text(
        "providers:\n"
        "  synthetic:\n    kind: synthetic\n"
        "  spare:\n    kind: synthetic\n    requests_per_minute: 30\n"
        "    api_key_env: SPARE_API_KEY\n"
        "  retired:\n    kind: synthetic\n    enabled: false\n"
    )
    built = ProviderRegistry.from_app_config(AppConfig.load(tmp_path))

    assert list(built.limiters) == ["spare"]
    assert built.limiters["spare"].requests_per_minute == 30
    assert built.redactor.env_names == ("SPARE_API_KEY",)
    with pytest.raises(ValueError, match=r"\['retired'\] are disabled in providers.yaml"):
        built.with_route("bars_1d", ["retired"])


def fake_secret() -> str:
    """A made-up credential, generated per test so no key-like literal lives in the repo."""
    return f"fake-{secrets.token_hex(8)}"


def test_secret_in_a_provider_error_is_masked_in_the_raised_error_its_cause_and_notes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = fake_secret()
    monkeypatch.setenv("PRIMARY_API_KEY", secret)

    class VendorHTTPError(Exception):
        pass

    def careless_adapter(request: BarRequest) -> FetchResult:
        try:
            raise VendorHTTPError(f"401 Unauthorized for url https://x.test/bars?apikey={secret}")
        except VendorHTTPError as http:
            raise AuthError(f"key rejected: {http}", vendor="primary") from http

    guarded = ProviderRegistry(
        {"primary": ScriptedProvider("primary", careless_adapter)},
        {"bars_1d": ["primary"]},
        FAST,
        redactor=SecretRedactor(["PRIMARY_API_KEY"]),
    )

    with pytest.raises(AuthError) as raised:
        guarded.fetch_bars(REQUEST)

    shown = "".join(traceback.format_exception(raised.value))
    assert secret not in shown
    assert "key rejected: 401 Unauthorized for url https://x.test/bars?apikey=***" in shown
    assert "VendorHTTPError: 401 Unauthorized for url https://x.test/bars?apikey=***" in shown
    assert "primary failed (primary: key rejected" in raised.value.__notes__[0]


def test_secret_in_a_failed_attempt_is_masked_in_the_recorded_attempts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = fake_secret()
    monkeypatch.setenv("PRIMARY_API_KEY", secret)
    primary = ScriptedProvider("primary", AuthError(f"bad key {secret}", vendor="primary"))
    backup = ScriptedProvider("backup", synthetic_answer)
    guarded = ProviderRegistry(
        {"primary": primary, "backup": backup},
        {"bars_1d": ["primary", "backup"]},
        FAST,
        redactor=SecretRedactor(["PRIMARY_API_KEY"]),
    )

    result = guarded.fetch_bars(REQUEST)

    assert result.attempts[0]["error"] == "primary: bad key ***"
    assert secret not in repr(result.attempts) + repr(result.failures)


def test_notes_of_a_result_are_copied_into_its_attempt_record() -> None:
    def adjusted(request: BarRequest) -> FetchResult:
        result = synthetic_answer(request)
        result.notes = {"price_adjustment": "adjusted"}
        return result

    result = registry(ScriptedProvider("primary", adjusted)).fetch_bars(REQUEST)

    assert result.attempts[-1]["price_adjustment"] == "adjusted"
    assert result.attempts[-1]["outcome"] == "ok"


class QuoteBook:
    """A provider of a capability the registry has no method for (`fetch_quotes`)."""

    def __init__(self, name: str, known: set[str], error: Exception | None = None) -> None:
        self.name = name
        self.known = known
        self.error = error
        self.asked: list[tuple[str, ...]] = []

    def fetch_quotes(self, symbols: tuple[str, ...]) -> FetchResult:
        self.asked.append(symbols)
        if self.error is not None:
            raise self.error
        served = [s for s in symbols if s in self.known]
        return FetchResult(
            frame=pl.DataFrame({"symbol": served, "bid": [1.0] * len(served)}),
            source=self.name,
            requests=1,
            failures={s: f"{self.name} does not know {s}" for s in symbols if s not in self.known},
        )


def test_fetch_capability_fails_over_missing_symbols_to_the_backup_and_labels_sources():
    primary = QuoteBook("primary", {"AAPL"})
    backup = QuoteBook("backup", {"AAPL", "MSFT"})
    plain = ScriptedProvider("plain", empty_answer)  # has no fetch_quotes: never asked
    reg = ProviderRegistry(
        {p.name: p for p in (plain, primary, backup)},
        {"quotes": ["plain", "primary", "backup"]},
        FAST,
        sleep=lambda _: None,
    )

    result = reg.fetch_capability(
        "quotes",
        ["AAPL", "MSFT"],
        "fetch_quotes",
        lambda provider, symbols: provider.fetch_quotes(symbols),
        empty=pl.DataFrame(schema={"symbol": pl.String, "bid": pl.Float64}),
    )

    assert sorted(result.frame.select("symbol", "source").rows()) == [
        ("AAPL", "primary"),
        ("MSFT", "backup"),
    ]
    assert backup.asked == [("MSFT",)]
    assert plain.asked == []
    assert [a["outcome"] for a in result.attempts] == ["unsupported", "partial", "ok"]


def test_fetch_capability_retries_a_transient_error_then_succeeds():
    flaky = QuoteBook("flaky", {"AAPL"}, error=transient("flaky"))
    reg = ProviderRegistry({"flaky": flaky}, {"quotes": ["flaky"]}, FAST, sleep=lambda _: None)

    def call(provider: QuoteBook, symbols: tuple[str, ...]) -> FetchResult:
        if len(provider.asked) == 2:
            provider.error = None
        return provider.fetch_quotes(symbols)

    result = reg.fetch_capability(
        "quotes", ["AAPL"], "fetch_quotes", call, empty=pl.DataFrame(schema={"symbol": pl.String})
    )

    assert result.frame.get_column("symbol").to_list() == ["AAPL"]
    assert [a["outcome"] for a in result.attempts] == ["retrying", "retrying", "ok"]
