"""The Alpaca adapter, through the real alpaca-py clients over a replayed Alpaca transport."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import polars as pl
import pytest
import yaml
from dagster import AssetKey, DagsterInstance

from market_assets.core.config import AppConfig
from market_assets.core.providers import alpaca as alpaca_provider
from market_assets.core.providers.alpaca import AlpacaProvider
from market_assets.core.providers.base import (
    ActionsRequest,
    AuthError,
    BadRequestError,
    BarRequest,
    NoDataError,
    PermanentError,
    TransientError,
)
from market_assets.core.providers.registry import ProviderRegistry, RetryPolicy
from market_assets.core.schemas import ACTION_SCHEMA, BAR_SCHEMA
from market_assets.core.validate import split_valid_bars
from market_assets.definitions import build_definitions
from market_assets.defs.assets.bars import PROVIDER_TAG
from market_assets.defs.runner import materialize_rectangle, step_metadata
from market_assets.query import MarketData
from market_assets_tests.core.providers.alpaca_api import (
    BARS_URL,
    Reply,
    alpaca_session,
    daily_bars,
    minute_bars,
)

D = dt.date
UTC = dt.UTC
# Straddles the switch to daylight saving time (2024-03-10): Alpaca stamps the daily bars
# at 05:00 UTC before it and 04:00 UTC after it.
SESSIONS = [D(2024, 3, 7), D(2024, 3, 8), D(2024, 3, 11), D(2024, 3, 12)]
AFTER = D(2024, 3, 13)
KEY, SECRET = "PKTESTKEY12345", "s3cr3t-value-67890"
FAST = RetryPolicy(attempts=3, initial_wait=0.001, max_wait=5.0)
REPO_CONFIGS = Path(__file__).resolve().parents[3] / "configs"


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("APCA_API_KEY_ID", KEY)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)


@pytest.fixture
def alpaca(keys):
    session, api = alpaca_session()
    api.bars["AAPL"] = daily_bars(170.0, SESSIONS)
    api.bars["MSFT"] = daily_bars(400.0, SESSIONS)
    return AlpacaProvider(session=session), api


def daily(symbols: tuple[str, ...], start: dt.date = SESSIONS[0], end: dt.date = AFTER):
    return BarRequest("bars_1d", symbols, "1d", start, end)


def registry(provider: AlpacaProvider, waits: list[float] | None = None) -> ProviderRegistry:
    sleep = waits.append if waits is not None else (lambda _: None)
    return ProviderRegistry({"alpaca": provider}, {"bars_1d": ["alpaca"]}, FAST, sleep=sleep)


def test_daily_bars_given_two_symbols_are_raw_rows_at_session_midnight_utc(alpaca):
    provider, api = alpaca

    result = provider.fetch_bars(daily(("AAPL", "MSFT")))

    frame = result.frame
    assert frame.schema == pl.Schema(BAR_SCHEMA)
    assert len(frame) == 8
    assert frame.row(0, named=True) == {
        "ts": dt.datetime(2024, 3, 7, tzinfo=UTC),
        "symbol": "AAPL",
        "open": 170.0,
        "high": 172.5,
        "low": 168.75,
        "close": 171.0,
        "volume": 2_000_000,
        "trade_count": 15_000,
        "vwap": 170.4,
        "granularity": "1d",
        "source": "alpaca",
    }
    assert frame.filter(pl.col("symbol") == "MSFT")["ts"].dt.date().to_list() == SESSIONS
    assert frame["ts"].dt.time().unique().to_list() == [dt.time(0)]
    assert result.requests == 1 and result.failures == {}
    assert result.notes == {"feed": "iex"}
    path, query = api.calls[0]
    assert path == "/v2/stocks/bars"
    assert query["symbols"] == ["AAPL,MSFT"]  # one multi-symbol request
    assert query["timeframe"] == ["1Day"]
    assert query["adjustment"] == ["raw"]
    assert query["feed"] == ["iex"]
    assert query["start"] == ["2024-03-07T05:00:00+00:00"]


def test_the_keys_travel_in_alpacas_headers(alpaca):
    provider, api = alpaca

    provider.fetch_bars(daily(("AAPL",)))

    assert api.headers[0]["APCA-API-KEY-ID"] == KEY
    assert api.headers[0]["APCA-API-SECRET-KEY"] == SECRET


def test_every_page_is_fetched_and_counted_as_a_request(keys):
    session, api = alpaca_session(page_size=3)
    api.bars["AAPL"] = daily_bars(170.0, SESSIONS)
    api.bars["MSFT"] = daily_bars(400.0, SESSIONS)
    provider = AlpacaProvider(session=session)

    result = provider.fetch_bars(daily(("AAPL", "MSFT")))

    assert len(result.frame) == 8
    assert result.requests == 3
    assert [query.get("page_token") for _, query in api.calls] == [None, ["3"], ["6"]]
    assert result.frame.group_by("symbol").len().sort("symbol").rows() == [
        ("AAPL", 4),
        ("MSFT", 4),
    ]


def test_minute_bars_keep_regular_hours_and_note_the_extended_ones(alpaca):
    provider, api = alpaca
    api.bars["AAPL"] = minute_bars(170.0, D(2024, 3, 7), [-30, -1, 0, 1, 389, 390, 420])

    result = provider.fetch_bars(
        BarRequest("bars_1m", ("AAPL",), "1m", D(2024, 3, 7), D(2024, 3, 8))
    )

    assert result.frame["ts"].to_list() == [
        dt.datetime(2024, 3, 7, 14, 30, tzinfo=UTC),
        dt.datetime(2024, 3, 7, 14, 31, tzinfo=UTC),
        dt.datetime(2024, 3, 7, 20, 59, tzinfo=UTC),
    ]
    assert result.frame["trade_count"].to_list() == [7, 7, 7]
    assert result.notes == {"feed": "iex", "extended_hours_bars_dropped": "4"}
    assert result.dropped == {"extended_hours": 4}
    assert api.calls[0][1]["timeframe"] == ["1Min"]


def test_hourly_bars_are_refused_because_alpaca_aligns_them_to_the_clock(alpaca):
    provider, api = alpaca

    with pytest.raises(BadRequestError, match="derive 1h from 1m"):
        provider.fetch_bars(BarRequest("bars_1h", ("AAPL",), "1h", D(2024, 3, 7), D(2024, 3, 8)))

    assert api.calls == []


def test_ranges_before_2016_are_refused(alpaca):
    provider, api = alpaca

    with pytest.raises(BadRequestError, match="history starts 2016-01-01"):
        provider.fetch_bars(daily(("AAPL",), D(2015, 12, 1), D(2016, 2, 1)))

    assert api.calls == []


def test_a_symbol_without_bars_is_reported_while_the_others_are_returned(alpaca):
    provider, _ = alpaca

    result = provider.fetch_bars(daily(("AAPL", "NOPE")))

    assert result.frame["symbol"].unique().to_list() == ["AAPL"]
    assert "no bars for NOPE while other symbols have some" in result.failures["NOPE"]


def test_a_holiday_raises_no_data(alpaca):
    provider, api = alpaca

    with pytest.raises(NoDataError, match="returned no bars in the range"):
        provider.fetch_bars(daily(("AAPL",), D(2024, 7, 4), D(2024, 7, 5)))

    assert len(api.calls) == 1


def test_rate_limit_then_success_waits_as_told_through_the_registry(alpaca):
    provider, api = alpaca
    api.script(BARS_URL, Reply(429, {"message": "too many requests."}, {"Retry-After": "1"}))
    waits: list[float] = []

    result = registry(provider, waits).fetch_bars(daily(("AAPL",)))

    assert len(result.frame) == 4
    assert waits == [1.0]
    assert [a["outcome"] for a in result.attempts] == ["retrying", "ok"]
    assert "HTTP 429: too many requests." in result.attempts[0]["error"]
    assert len(api.calls) == 2  # alpaca-py's own fixed 3 s retry is off


def test_gateway_timeouts_exhaust_the_registrys_retries(alpaca):
    provider, api = alpaca
    api.script(BARS_URL, *[Reply(504, "<html>Gateway Time-out</html>")] * 3)

    with pytest.raises(TransientError, match="HTTP 504"):
        registry(provider).fetch_bars(daily(("AAPL",)))

    assert len(api.calls) == 3


def test_missing_keys_raise_auth_error_naming_the_variables(monkeypatch):
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    session, api = alpaca_session()

    with pytest.raises(AuthError, match="export APCA_API_KEY_ID") as raised:
        AlpacaProvider(session=session).fetch_bars(daily(("AAPL",)))

    assert SECRET not in str(raised.value)
    assert api.calls == []


def test_rejected_keys_are_an_auth_error_that_is_not_retried(alpaca):
    provider, api = alpaca
    api.script(BARS_URL, Reply(403, {"message": "forbidden."}))

    with pytest.raises(AuthError, match="HTTP 403: forbidden.: Alpaca rejected the keys") as raised:
        registry(provider).fetch_bars(daily(("AAPL",)))

    assert "APCA_API_KEY_ID" in str(raised.value)
    assert KEY not in str(raised.value) and SECRET not in str(raised.value)
    assert len(api.calls) == 1


def test_a_rejected_argument_is_a_bad_request(alpaca):
    provider, api = alpaca
    api.script(BARS_URL, Reply(422, {"code": 42210000, "message": "invalid timeframe"}))

    with pytest.raises(BadRequestError, match="HTTP 422: invalid timeframe"):
        provider.fetch_bars(daily(("AAPL",)))


def test_a_bar_without_close_fails_that_symbol_naming_the_field(alpaca):
    provider, api = alpaca
    del api.bars["AAPL"][2]["c"]

    result = provider.fetch_bars(daily(("AAPL", "MSFT")))

    assert result.frame["symbol"].unique().to_list() == ["MSFT"]
    assert "bar 2 of AAPL has no field 'c' (close)" in result.failures["AAPL"]


def test_a_value_of_the_wrong_type_fails_that_symbol_naming_field_and_bar(alpaca):
    provider, api = alpaca
    api.bars["AAPL"][1]["o"] = "one-seventy"
    api.bars["MSFT"][3]["t"] = "yesterday"
    api.bars["NVDA"] = daily_bars(870.0, SESSIONS)

    result = provider.fetch_bars(daily(("AAPL", "MSFT", "NVDA")))

    assert (
        "bar 1 of AAPL: field 'o' (open) is 'one-seventy', not a number" in result.failures["AAPL"]
    )
    assert "bar 3 of MSFT: field 't' (timestamp) is 'yesterday'" in result.failures["MSFT"]
    assert result.frame["symbol"].unique().to_list() == ["NVDA"]


def test_malformed_bars_for_every_symbol_raise_a_permanent_error(alpaca):
    provider, api = alpaca
    api.bars["AAPL"][0]["h"] = [172.5]

    with pytest.raises(PermanentError, match=r"field 'h' \(high\) is \[172.5\], not a number"):
        provider.fetch_bars(daily(("AAPL",)))


def test_a_fractional_volume_fails_that_symbol(alpaca):
    provider, api = alpaca
    api.bars["AAPL"][0]["v"] = 100.5

    result = provider.fetch_bars(daily(("AAPL", "MSFT")))

    assert "field 'v' is 100.5, not a whole number" in result.failures["AAPL"]


def test_null_and_nan_prices_reach_validation_as_nulls_and_are_quarantined(alpaca):
    provider, api = alpaca
    api.bars["AAPL"][0]["c"] = None
    api.bars["AAPL"][2]["l"] = float("nan")

    frame = provider.fetch_bars(daily(("AAPL",))).frame
    checked = split_valid_bars(frame, dataset="bars_1d", partitions=[("AAPL", d) for d in SESSIONS])

    assert checked.rule_counts == {"null_price": 2}
    assert checked.valid["ts"].dt.date().to_list() == [SESSIONS[1], SESSIONS[3]]


def test_a_body_that_is_not_json_is_a_permanent_error(alpaca):
    provider, api = alpaca
    api.script(BARS_URL, Reply(200, "<html>maintenance</html>"))

    with pytest.raises(PermanentError, match="malformed Alpaca response"):
        provider.fetch_bars(daily(("AAPL",)))


def test_splits_and_dividends_become_actions_over_every_page(keys):
    session, api = alpaca_session(page_size=2)
    split = {"cusip": "037833100", "process_date": "2024-03-08", "payable_date": "2024-03-07"}
    api.actions = {
        "forward_splits": [
            {**split, "symbol": "AAPL", "new_rate": 4, "old_rate": 1, "ex_date": "2024-03-08"}
        ],
        "reverse_splits": [
            {
                **split,
                "symbol": "MSFT",
                "old_cusip": "x",
                "new_cusip": "y",
                "new_rate": 1,
                "old_rate": 10,
                "ex_date": "2024-03-11",
            }
        ],
        "cash_dividends": [
            {
                "symbol": "AAPL",
                "cusip": "037833100",
                "rate": 0.24,
                "special": False,
                "foreign": False,
                "process_date": "2024-03-14",
                "ex_date": "2024-03-11",
            },
            {
                "symbol": "AAPL",
                "cusip": "037833100",
                "rate": 0.25,
                "special": False,
                "foreign": False,
                "process_date": "2024-03-14",
                "ex_date": "2024-03-13",  # the range's exclusive end: left out
            },
        ],
    }
    provider = AlpacaProvider(session=session)

    result = provider.fetch_actions(ActionsRequest(("AAPL", "MSFT"), D(2024, 3, 7), AFTER))

    assert result.frame.schema == pl.Schema(ACTION_SCHEMA)
    assert result.frame.rows() == [
        ("AAPL", D(2024, 3, 8), "split", 4.0, None, None, "alpaca"),
        ("AAPL", D(2024, 3, 11), "dividend", None, 0.24, "USD", "alpaca"),
        ("MSFT", D(2024, 3, 11), "split", 0.1, None, None, "alpaca"),
    ]
    assert result.requests == 2
    path, query = api.calls[0]
    assert path == "/v1/corporate-actions"
    assert query["end"] == ["2024-03-12"]  # Alpaca's end is inclusive
    assert query["types"] == ["forward_split,reverse_split,cash_dividend"]


def test_a_split_without_its_old_rate_is_a_malformed_response(alpaca):
    provider, api = alpaca
    api.actions = {
        "forward_splits": [
            {"symbol": "AAPL", "cusip": "037833100", "new_rate": 4, "ex_date": "2024-03-08"}
        ]
    }

    with pytest.raises(
        PermanentError, match="malformed Alpaca corporate actions response: KeyError"
    ):
        provider.fetch_actions(ActionsRequest(("AAPL",), D(2024, 3, 7), AFTER))


def test_from_config_reads_feed_and_key_variable_names(monkeypatch):
    session, _ = alpaca_session()
    monkeypatch.setattr(alpaca_provider, "make_session", lambda: session)

    provider = AlpacaProvider.from_config(
        {
            "kind": "alpaca",
            "api_key_env": "MY_KEY",
            "secret_key_env": "MY_SECRET",
            "requests_per_minute": 200,
            "feed": "sip",
        }
    )

    assert (provider.api_key_env, provider.secret_key_env, provider.feed) == (
        "MY_KEY",
        "MY_SECRET",
        "sip",
    )
    assert provider.session is session
    with pytest.raises(ValueError, match="feed 'bats' is not one of"):
        AlpacaProvider.from_config({"feed": "bats"})
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['secret'\]"):
        AlpacaProvider.from_config({"secret": "x"})


def _alpaca_config(tmp_path: Path) -> AppConfig:
    """Repository configs with the alpaca provider enabled, writing under tmp_path."""
    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    for name in ("universes", "datasets", "providers"):
        data = yaml.safe_load((REPO_CONFIGS / f"{name}.yaml").read_text())
        if name == "providers":
            data["providers"]["alpaca"]["enabled"] = True
        (config_dir / f"{name}.yaml").write_text(yaml.safe_dump(data))
    config = AppConfig.load(config_dir)
    return dataclasses.replace(config, data_dir=str(tmp_path / "data"), timescale_dsn=None)


@pytest.fixture
def instance():
    """An ephemeral Dagster instance, entered so Dagster's per-instance context is this one."""
    with DagsterInstance.ephemeral() as entered:
        yield entered


def test_dagster_run_pinned_to_alpaca_stores_its_daily_bars(tmp_path, monkeypatch, keys, instance):
    session, api = alpaca_session()
    api.bars["AAPL"] = daily_bars(170.0, SESSIONS)
    api.bars["MSFT"] = daily_bars(400.0, SESSIONS)
    monkeypatch.setattr(alpaca_provider, "make_session", lambda: session)
    config = _alpaca_config(tmp_path)

    summary = materialize_rectangle(
        build_definitions(config),
        instance,
        [AssetKey("bars_1d")],
        SESSIONS,
        ["AAPL", "MSFT"],
        10,
        tags={PROVIDER_TAG: "alpaca"},
    )

    assert not summary.failed_runs
    assert summary.datasets["bars_1d"].partitions == 8
    stored = MarketData(root=tmp_path / "data").bars(["AAPL", "MSFT"], SESSIONS[0], AFTER, "1d")
    assert stored["source"].unique().to_list() == ["alpaca"]
    assert stored.filter(pl.col("symbol") == "MSFT")["close"].to_list() == [
        401.0,
        402.0,
        403.0,
        404.0,
    ]
    assert stored["vwap"].null_count() == 0
    assert len(api.calls) == 1
    metadata = step_metadata(instance, summary.run_ids[0])["bars_1d"]
    assert metadata["vendor_requests"] == 1
    attempts = metadata["provider_attempts"]
    assert attempts[0]["provider"] == "alpaca" and attempts[0]["feed"] == "iex"
