"""The yfinance adapter, through the real yfinance library over a replayed Yahoo transport."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import polars as pl
import pytest
import yaml
from dagster import AssetKey, DagsterInstance

from market_assets.core.config import AppConfig
from market_assets.core.providers import yfinance as yfinance_provider
from market_assets.core.providers.base import (
    ActionsRequest,
    AuthError,
    BadRequestError,
    BarRequest,
    NoDataError,
    TransientError,
    UnknownSymbolError,
)
from market_assets.core.providers.registry import ProviderRegistry, RetryPolicy
from market_assets.core.providers.yfinance import YFinanceProvider
from market_assets.core.schemas import ACTION_SCHEMA, BAR_SCHEMA
from market_assets.core.validate import split_valid_bars
from market_assets.definitions import build_definitions
from market_assets.defs.assets.bars import PROVIDER_TAG
from market_assets.defs.runner import materialize_rectangle, step_metadata
from market_assets.query import MarketData
from market_assets_tests.core.providers.yahoo_chart import (
    Reply,
    chart_error,
    chart_payload,
    daily_bars,
    dividend_event,
    minute_bars,
    split_event,
    yahoo_session,
)

D = dt.date
UTC = dt.UTC
WEEK = [D(2024, 3, 4), D(2024, 3, 5), D(2024, 3, 6), D(2024, 3, 7), D(2024, 3, 8)]
AFTER_WEEK = D(2024, 3, 9)
FAST = RetryPolicy(attempts=3, initial_wait=0.001, max_wait=5.0)
REPO_CONFIGS = Path(__file__).resolve().parents[3] / "configs"


@pytest.fixture
def yahoo():
    session, chart = yahoo_session()
    chart.bars["AAPL"] = daily_bars(170.0, WEEK)
    chart.bars["MSFT"] = daily_bars(400.0, WEEK)
    provider = YFinanceProvider(session=session, today=lambda: D(2024, 3, 15))
    return provider, chart


def daily(symbols: tuple[str, ...], start: dt.date = WEEK[0], end: dt.date = AFTER_WEEK):
    return BarRequest("bars_1d", symbols, "1d", start, end)


def test_daily_bars_given_two_symbols_are_unadjusted_rows_in_the_canonical_schema(yahoo):
    provider, chart = yahoo

    result = provider.fetch_bars(daily(("AAPL", "MSFT")))

    frame = result.frame
    assert frame.schema == pl.Schema(BAR_SCHEMA)
    assert len(frame) == 10
    assert result.requests == 2  # one history call per symbol for the whole range
    assert [symbol for symbol, _ in chart.calls] == ["AAPL", "MSFT"]
    assert chart.calls[0][1]["interval"] == ["1d"]
    assert chart.calls[0][1]["includePrePost"] == ["False"]
    first = frame.row(0, named=True)
    assert first == {
        "ts": dt.datetime(2024, 3, 4, tzinfo=UTC),
        "symbol": "AAPL",
        "open": 170.0,
        "high": 172.5,
        "low": 168.75,
        "close": 171.0,
        "volume": 1_000_000,
        "trade_count": None,
        "vwap": None,
        "granularity": "1d",
        "source": "yfinance",
    }
    msft = frame.filter(pl.col("symbol") == "MSFT")
    assert msft["close"].to_list() == [401.0, 402.0, 403.0, 404.0, 405.0]
    assert msft["ts"].dt.time().unique().to_list() == [dt.time(0)]
    assert msft["ts"].dt.date().to_list() == WEEK
    assert result.failures == {}


def test_adjusted_close_is_kept_apart_from_the_bars_as_a_cross_check(yahoo):
    provider, _ = yahoo

    provider.fetch_bars(daily(("AAPL",)))

    adjusted = provider.adjusted_close
    assert "adj_close" not in BAR_SCHEMA
    assert adjusted["close"].to_list() == [171.0, 172.0, 173.0, 174.0, 175.0]
    assert adjusted["adj_close"].to_list() == [169.29, 170.28, 171.27, 172.26, 173.25]
    assert adjusted["ts"][0] == dt.datetime(2024, 3, 4, tzinfo=UTC)


def test_class_share_symbols_are_asked_of_yahoo_with_a_dash(yahoo):
    provider, chart = yahoo
    chart.bars["BRK-B"] = daily_bars(410.0, WEEK)

    result = provider.fetch_bars(daily(("BRK.B",)))

    assert chart.calls[0][0] == "BRK-B"
    assert result.frame["symbol"].unique().to_list() == ["BRK.B"]


def test_float32_noise_is_rounded_to_yahoos_price_hint(yahoo):
    provider, chart = yahoo
    chart.bars["AAPL"][0].update(open=185.63999938964844, close=185.8800048828125)

    frame = provider.fetch_bars(daily(("AAPL",))).frame

    assert frame["open"][0] == 185.64
    assert frame["close"][0] == 185.88


def test_one_unknown_symbol_is_reported_in_failures_and_the_others_are_returned(yahoo):
    provider, chart = yahoo

    result = provider.fetch_bars(daily(("AAPL", "NOPE", "MSFT")))

    assert sorted(result.frame["symbol"].unique().to_list()) == ["AAPL", "MSFT"]
    assert list(result.failures) == ["NOPE"]
    assert "Yahoo does not list NOPE (HTTP 404)" in result.failures["NOPE"]
    assert "symbol may be delisted" in result.failures["NOPE"]
    assert chart.calls_for("NOPE") == 2  # yfinance re-sends once with a fresh cookie


def test_a_request_of_only_unknown_symbols_raises_unknown_symbol(yahoo):
    provider, _ = yahoo

    with pytest.raises(UnknownSymbolError, match="lists none of the requested symbols"):
        provider.fetch_bars(daily(("NOPE",)))


def test_a_range_without_sessions_raises_no_data(yahoo):
    provider, chart = yahoo

    with pytest.raises(NoDataError, match="Yahoo returned no bars") as raised:
        provider.fetch_bars(daily(("AAPL",), D(2024, 7, 4), D(2024, 7, 5)))  # Independence Day

    assert raised.value.symbols == ("AAPL",)
    assert chart.calls_for("AAPL") == 1


def test_minute_bars_over_twelve_days_are_fetched_in_8_day_requests(yahoo):
    provider, chart = yahoo
    sessions = [D(2024, 3, 4), D(2024, 3, 8), D(2024, 3, 12), D(2024, 3, 14)]
    chart.bars["AAPL"] = minute_bars(170.0, sessions, minutes=3)

    result = provider.fetch_bars(
        BarRequest("bars_1m", ("AAPL",), "1m", D(2024, 3, 4), D(2024, 3, 16))
    )

    windows = [(q["period1"][0], q["period2"][0], q["interval"][0]) for _, q in chart.calls]
    assert len(windows) == 2 and {w[2] for w in windows} == {"1m"}
    starts = [dt.datetime.fromtimestamp(int(w[0]), UTC) for w in windows]
    assert starts == [
        dt.datetime(2024, 3, 4, 5, tzinfo=UTC),
        dt.datetime(2024, 3, 12, 4, tzinfo=UTC),
    ]
    assert max((int(end) - int(start)) / 86400 for start, end, _ in windows) <= 8
    assert result.requests == 2
    frame = result.frame
    assert len(frame) == 12
    assert frame["granularity"].unique().to_list() == ["1m"]
    assert frame["ts"][0] == dt.datetime(2024, 3, 4, 14, 30, tzinfo=UTC)  # bar open, UTC
    assert frame["ts"][-1] == dt.datetime(2024, 3, 14, 13, 32, tzinfo=UTC)  # after the DST change
    assert frame["close"][:3].to_list() == [170.01, 170.02, 170.03]


def test_five_minute_bars_of_the_last_60_days_come_in_one_request(yahoo):
    provider, chart = yahoo
    chart.bars["AAPL"] = [
        {**bar, "t": bar["t"] + 240 * index}  # five-minute steps from each open
        for index, bar in enumerate(minute_bars(170.0, [D(2024, 1, 22)], minutes=3))
    ]

    result = provider.fetch_bars(
        BarRequest("bars_5m", ("AAPL",), "5m", D(2024, 1, 22), D(2024, 3, 15))
    )

    assert result.requests == 1
    assert chart.calls[0][1]["interval"] == ["5m"]
    assert result.frame["ts"].to_list() == [
        dt.datetime(2024, 1, 22, 14, 30, tzinfo=UTC),
        dt.datetime(2024, 1, 22, 14, 35, tzinfo=UTC),
        dt.datetime(2024, 1, 22, 14, 40, tzinfo=UTC),
    ]
    with pytest.raises(BadRequestError, match="5m bars only for the last 60 days"):
        provider.fetch_bars(BarRequest("bars_5m", ("AAPL",), "5m", D(2024, 1, 15), D(2024, 1, 20)))


def test_minute_bars_older_than_30_days_are_refused_naming_the_limit(yahoo):
    provider, chart = yahoo
    request = BarRequest("bars_1m", ("AAPL",), "1m", D(2024, 2, 1), D(2024, 2, 3))

    with pytest.raises(BadRequestError, match=r"1m bars only for the last 30 days"):
        provider.fetch_bars(request)

    assert chart.calls == []


def test_rate_limit_then_success_waits_as_told_through_the_registry(yahoo):
    provider, chart = yahoo
    too_many = Reply(429, "Too Many Requests", {"Retry-After": "2"})
    chart.script("AAPL", too_many, too_many)  # yfinance re-sends once before raising
    waits: list[float] = []
    registry = ProviderRegistry(
        {"yfinance": provider}, {"bars_1d": ["yfinance"]}, FAST, sleep=waits.append
    )

    result = registry.fetch_bars(daily(("AAPL",)))

    assert len(result.frame) == 5
    assert waits == [2.0]
    assert [a["outcome"] for a in result.attempts] == ["retrying", "ok"]
    assert "HTTP 429" in result.attempts[0]["error"]
    assert chart.calls_for("AAPL") == 3


def test_server_errors_exhaust_the_retries_and_raise_a_transient_error(yahoo):
    provider, chart = yahoo
    outage = Reply(500, chart_error("Internal Server Error", "backend down"))
    chart.script("AAPL", *[outage] * 6)
    registry = ProviderRegistry(
        {"yfinance": provider}, {"bars_1d": ["yfinance"]}, FAST, sleep=lambda _: None
    )

    with pytest.raises(TransientError, match="HTTP 500: backend down"):
        registry.fetch_bars(daily(("AAPL",)))

    assert chart.calls_for("AAPL") == 6  # three attempts, each sent twice by yfinance


def test_an_outage_page_is_transient_not_a_bad_symbol(yahoo):
    provider, chart = yahoo
    chart.script("AAPL", *[Reply(503, "<html>Will be right back...</html>")] * 2)

    with pytest.raises(TransientError, match="HTTP 503"):
        provider.fetch_bars(daily(("AAPL",)))


def test_a_rejected_cookie_is_an_auth_error_that_is_not_retried(yahoo):
    provider, chart = yahoo
    invalid = Reply(401, chart_error("Unauthorized", "Invalid Crumb"))
    chart.script("AAPL", invalid, invalid)
    registry = ProviderRegistry(
        {"yfinance": provider}, {"bars_1d": ["yfinance"]}, FAST, sleep=lambda _: None
    )

    with pytest.raises(AuthError, match="HTTP 401: Invalid Crumb"):
        registry.fetch_bars(daily(("AAPL",)))

    assert chart.calls_for("AAPL") == 2  # yfinance's own cookie renewal, no registry retry


def test_a_quote_without_volume_fails_that_symbol_naming_the_field(yahoo):
    provider, chart = yahoo
    body = chart_payload("AAPL", "1d", chart.bars["AAPL"])
    del body["chart"]["result"][0]["indicators"]["quote"][0]["volume"]
    chart.script("AAPL", Reply(200, body))

    result = provider.fetch_bars(daily(("AAPL", "MSFT")))

    assert result.frame["symbol"].unique().to_list() == ["MSFT"]
    assert "malformed Yahoo chart response for AAPL" in result.failures["AAPL"]
    assert "field indicators.quote[0].volume is missing" in result.failures["AAPL"]


def test_a_price_of_the_wrong_type_fails_that_symbol_naming_field_and_position(yahoo):
    provider, chart = yahoo
    chart.bars["AAPL"][2]["close"] = "n/a"

    result = provider.fetch_bars(daily(("AAPL", "MSFT")))

    assert "field indicators.quote[0].close[2] is 'n/a', not a number" in result.failures["AAPL"]
    assert len(result.frame) == 5


def test_null_and_nan_prices_reach_validation_as_nulls_and_are_quarantined(yahoo):
    provider, chart = yahoo
    chart.bars["AAPL"][1]["close"] = None
    chart.bars["AAPL"][3]["high"] = float("nan")  # Python's json writes NaN, as some feeds do

    frame = provider.fetch_bars(daily(("AAPL",))).frame
    checked = split_valid_bars(frame, dataset="bars_1d", partitions=[("AAPL", d) for d in WEEK])

    assert frame["close"].null_count() == 1 and frame["high"].null_count() == 1
    assert checked.rule_counts == {"null_price": 2}
    assert checked.valid["ts"].dt.date().to_list() == [WEEK[0], WEEK[2], WEEK[4]]


def test_splits_and_dividends_become_actions_with_ratio_new_over_old(yahoo):
    provider, chart = yahoo
    chart.events["AAPL"] = {
        "splits": split_event(WEEK[1], 4, 1),
        "dividends": dividend_event(WEEK[3], 0.24),
    }
    chart.events["MSFT"] = {"splits": split_event(WEEK[2], 1, 10)}

    result = provider.fetch_actions(ActionsRequest(("AAPL", "MSFT"), WEEK[0], D(2024, 3, 9)))

    assert result.frame.schema == pl.Schema(ACTION_SCHEMA)
    assert result.frame.rows() == [
        ("AAPL", WEEK[1], "split", 4.0, None, None, "yfinance"),
        ("AAPL", WEEK[3], "dividend", None, 0.24, "USD", "yfinance"),
        ("MSFT", WEEK[2], "split", 0.1, None, None, "yfinance"),
    ]
    assert result.requests == 2


def test_actions_outside_the_range_are_left_out(yahoo):
    provider, chart = yahoo
    chart.events["AAPL"] = {"dividends": dividend_event(WEEK[4], 0.25)}

    result = provider.fetch_actions(ActionsRequest(("AAPL",), WEEK[0], WEEK[4]))

    assert result.frame.is_empty()


def test_from_config_accepts_the_generic_keys_and_rejects_unknown_settings(monkeypatch):
    session, _ = yahoo_session()
    monkeypatch.setattr(yfinance_provider, "make_session", lambda: session)

    provider = YFinanceProvider.from_config(
        {"kind": "yfinance", "requests_per_minute": 60, "timeout_s": 3}
    )

    assert provider.session is session and provider.timeout == 3.0
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['apikey'\]"):
        YFinanceProvider.from_config({"apikey": "x"})


def _yfinance_pipeline(tmp_path: Path) -> AppConfig:
    """Repository configs with the yfinance provider enabled, writing under tmp_path."""
    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    for name in ("universes", "datasets", "providers"):
        data = yaml.safe_load((REPO_CONFIGS / f"{name}.yaml").read_text())
        if name == "providers":
            data["providers"]["yfinance"]["enabled"] = True
        (config_dir / f"{name}.yaml").write_text(yaml.safe_dump(data))
    config = AppConfig.load(config_dir)
    return dataclasses.replace(config, data_dir=str(tmp_path / "data"), timescale_dsn=None)


@pytest.fixture
def instance():
    """An ephemeral Dagster instance, entered so Dagster's per-instance context is this one."""
    with DagsterInstance.ephemeral() as entered:
        yield entered


def test_dagster_run_pinned_to_yfinance_stores_yahoos_daily_bars(tmp_path, monkeypatch, instance):
    session, chart = yahoo_session()
    chart.bars["AAPL"] = daily_bars(170.0, WEEK)
    chart.bars["MSFT"] = daily_bars(400.0, WEEK)
    monkeypatch.setattr(yfinance_provider, "make_session", lambda: session)
    config = _yfinance_pipeline(tmp_path)

    summary = materialize_rectangle(
        build_definitions(config),
        instance,
        [AssetKey("bars_1d")],
        WEEK[1:4],
        ["AAPL", "MSFT"],
        10,
        tags={PROVIDER_TAG: "yfinance"},
    )

    assert not summary.failed_runs
    assert summary.datasets["bars_1d"].partitions == 6
    stored = MarketData(root=tmp_path / "data").bars(["AAPL", "MSFT"], WEEK[0], D(2024, 3, 9), "1d")
    assert stored["source"].unique().to_list() == ["yfinance"]
    assert stored.filter(pl.col("symbol") == "AAPL")["close"].to_list() == [172.0, 173.0, 174.0]
    assert stored["ts"].dt.date().unique().sort().to_list() == WEEK[1:4]
    assert [symbol for symbol, _ in chart.calls] == ["AAPL", "MSFT"]
    metadata = step_metadata(instance, summary.run_ids[0])["bars_1d"]
    assert metadata["source"] == "yfinance"
    assert metadata["vendor_requests"] == 2
