"""The sec_edgar provider over a replayed SEC transport (requests_mock), and from files."""

from __future__ import annotations

import json

import polars as pl
import pytest
import requests
import requests_mock

from market_assets.core.providers import sec_edgar
from market_assets.core.providers.base import (
    AuthError,
    FundamentalsRequest,
    RateLimitedError,
    UnknownSymbolError,
)
from market_assets.core.providers.registry import ProviderRegistry, RetryPolicy
from market_assets.core.providers.sec_edgar import FACTS_URL, TICKERS_URL, SecEdgarProvider
from market_assets.core.schemas import FUNDAMENTAL_SCHEMA
from market_assets_tests.core.fundamentals.sec_documents import Fact, company_tickers, companyfacts

AGENT = "Test Researcher test@example.com"
ACME, BETA = 1111, 2222
ACME_FACTS = companyfacts(
    ACME,
    [
        Fact("us-gaap:Assets", 500, "2024-03-31", "2024-05-01", "0000001111-24-000002"),
        Fact(
            "us-gaap:Revenues",
            70,
            "2024-03-31",
            "2024-05-01",
            "0000001111-24-000002",
            start="2024-01-01",
        ),
        Fact(
            "dei:EntityCommonStockSharesOutstanding",
            10,
            "2024-04-25",
            "2024-05-01",
            "0000001111-24-000002",
            unit="shares",
        ),
    ],
)
BETA_FACTS = companyfacts(
    f"{BETA:010d}", [Fact("ifrs-full:Assets", 9, "2023-12-31", "2024-04-26", form="20-F")]
)
FAST = RetryPolicy(attempts=3, initial_wait=0.001, max_wait=5.0)


@pytest.fixture
def sec():
    """A provider whose session answers like SEC, and the mock to script it."""
    session = requests.Session()
    adapter = requests_mock.Adapter()
    session.mount("https://", adapter)
    adapter.register_uri("GET", TICKERS_URL, json=company_tickers({"ACME": ACME, "BETA": BETA}))
    adapter.register_uri("GET", FACTS_URL.format(cik=ACME), json=ACME_FACTS)
    adapter.register_uri("GET", FACTS_URL.format(cik=BETA), json=BETA_FACTS)
    return SecEdgarProvider(user_agent=AGENT, session=session), adapter


def registry(provider: SecEdgarProvider, sleeps: list[float] | None = None) -> ProviderRegistry:
    waits = sleeps if sleeps is not None else []
    return ProviderRegistry(
        {"sec_edgar": provider}, {"fundamentals": ["sec_edgar"]}, FAST, sleep=waits.append
    )


def fetch_one(reg: ProviderRegistry, symbol: str):
    return reg.fetch_capability(
        "fundamentals",
        [symbol],
        "fetch_fundamentals",
        lambda provider, asked: provider.fetch_fundamentals(FundamentalsRequest(asked)),
        empty=pl.DataFrame(schema=FUNDAMENTAL_SCHEMA),
    )


def test_fetch_given_two_symbols_maps_tickers_to_ciks_and_returns_every_fact(sec):
    provider, adapter = sec

    result = provider.fetch_fundamentals(FundamentalsRequest(("ACME", "BETA")))

    frame = result.frame
    assert frame.schema == pl.Schema(FUNDAMENTAL_SCHEMA)
    assert frame.height == 4
    assert result.requests == 3  # company_tickers once, then one companyfacts per symbol
    assert [r.url for r in adapter.request_history] == [
        TICKERS_URL,
        FACTS_URL.format(cik=ACME),
        FACTS_URL.format(cik=BETA),
    ]
    assert all(r.headers["User-Agent"] == AGENT for r in adapter.request_history)
    revenue = frame.filter(pl.col("concept") == "Revenues").row(0, named=True)
    assert revenue["symbol"] == "ACME" and revenue["cik"] == ACME
    assert (revenue["value"], str(revenue["period_start"]), str(revenue["filed"])) == (
        70.0,
        "2024-01-01",
        "2024-05-01",
    )
    assert frame.filter(pl.col("symbol") == "BETA")["cik"].to_list() == [BETA]  # string cik


def test_fetch_without_user_agent_refuses_before_sending_anything(sec, monkeypatch):
    _, adapter = sec
    monkeypatch.delenv("SEC_EDGAR_USER_AGENT", raising=False)
    monkeypatch.setattr(sec_edgar, "make_session", lambda: adapter_session(adapter))
    provider = SecEdgarProvider.from_config({"kind": "sec_edgar"})

    with pytest.raises(AuthError, match="User-Agent.*SEC_EDGAR_USER_AGENT"):
        provider.fetch_fundamentals(FundamentalsRequest(("ACME",)))

    assert adapter.request_history == []


def adapter_session(adapter: requests_mock.Adapter) -> requests.Session:
    session = requests.Session()
    session.mount("https://", adapter)
    return session


def test_from_config_given_user_agent_env_sends_it(sec, monkeypatch):
    _, adapter = sec
    monkeypatch.setenv("MY_SEC_AGENT", "Quant Desk desk@example.org")
    monkeypatch.setattr(sec_edgar, "make_session", lambda: adapter_session(adapter))
    provider = SecEdgarProvider.from_config(
        {"kind": "sec_edgar", "user_agent_env": "MY_SEC_AGENT", "requests_per_minute": 600}
    )

    provider.fetch_fundamentals(FundamentalsRequest(("ACME",)))

    assert adapter.request_history[-1].headers["User-Agent"] == "Quant Desk desk@example.org"


def test_from_config_given_unknown_setting_names_it():
    with pytest.raises(ValueError, match="unknown setting.*api_url"):
        SecEdgarProvider.from_config({"kind": "sec_edgar", "api_url": "x"})


def test_rate_limited_answer_is_retried_after_retry_after(sec):
    provider, adapter = sec
    adapter.register_uri(
        "GET",
        FACTS_URL.format(cik=ACME),
        [
            {"status_code": 429, "headers": {"Retry-After": "2"}, "text": "slow down"},
            {"json": ACME_FACTS},
        ],
    )
    sleeps: list[float] = []

    result = fetch_one(registry(provider, sleeps), "ACME")

    assert result.frame.height == 3
    assert sleeps == [2.0]
    assert [a["outcome"] for a in result.attempts] == ["retrying", "ok"]


def test_server_errors_are_retried_with_backoff_then_succeed(sec):
    provider, adapter = sec
    adapter.register_uri(
        "GET",
        FACTS_URL.format(cik=ACME),
        [{"status_code": 503, "text": "busy"}, {"status_code": 502}, {"json": ACME_FACTS}],
    )

    result = fetch_one(registry(provider), "ACME")

    assert result.frame.height == 3
    assert [a["outcome"] for a in result.attempts] == ["retrying", "retrying", "ok"]
    assert result.requests == 4  # tickers + three companyfacts attempts


def test_sec_request_rate_block_stops_retrying_and_says_so(sec):
    provider, adapter = sec
    adapter.register_uri(
        "GET",
        FACTS_URL.format(cik=ACME),
        status_code=403,
        text="<h1>Your Request Originates from an Undeclared Automated Tool</h1>"
        " Request Rate Threshold Exceeded",
    )

    with pytest.raises(RateLimitedError, match="rate threshold") as raised:
        fetch_one(registry(provider), "ACME")

    assert raised.value.retry_after == 600.0
    assert adapter.call_count == 2  # tickers + one try: a 10-minute block is not waited out


def test_forbidden_without_rate_text_is_an_auth_error_naming_the_setting(sec):
    provider, adapter = sec
    adapter.register_uri("GET", FACTS_URL.format(cik=ACME), status_code=403, text="Forbidden")

    with pytest.raises(AuthError, match="User-Agent"):
        provider.fetch_fundamentals(FundamentalsRequest(("ACME",)))


def test_unknown_ticker_and_missing_facts_fail_only_their_symbol(sec):
    provider, adapter = sec
    adapter.register_uri("GET", FACTS_URL.format(cik=BETA), status_code=404)

    result = provider.fetch_fundamentals(FundamentalsRequest(("ACME", "BETA", "NOPE")))

    assert result.frame.get_column("symbol").unique().to_list() == ["ACME"]
    assert "HTTP 404" in result.failures["BETA"]
    assert "not in SEC's company_tickers.json" in result.failures["NOPE"]


def test_every_symbol_unknown_raises_unknown_symbol(sec):
    provider, _ = sec

    with pytest.raises(UnknownSymbolError):
        provider.fetch_fundamentals(FundamentalsRequest(("NOPE",)))


def test_malformed_document_fails_its_symbol_naming_the_field(sec):
    provider, adapter = sec
    broken = {"cik": ACME, "facts": {"us-gaap": {"Assets": {"units": {"USD": {"end": "x"}}}}}}
    adapter.register_uri("GET", FACTS_URL.format(cik=ACME), json=broken)

    result = provider.fetch_fundamentals(FundamentalsRequest(("ACME", "BETA")))

    assert "facts.us-gaap.Assets.units.USD is not a list" in result.failures["ACME"]
    assert result.frame.get_column("symbol").unique().to_list() == ["BETA"]


def test_files_given_cik_named_file_and_tickers_read_it_with_no_request(tmp_path):
    (tmp_path / "company_tickers.json").write_text(json.dumps(company_tickers({"ACME": ACME})))
    (tmp_path / "bulk").mkdir()
    (tmp_path / "bulk" / f"CIK{ACME:010d}.json").write_text(json.dumps(ACME_FACTS))
    provider = SecEdgarProvider.from_files({"kind": "sec_edgar"}, tmp_path)

    result = provider.fetch_fundamentals(FundamentalsRequest(("ACME",)))

    assert result.frame.height == 3
    assert result.requests == 0


def test_files_given_file_of_another_cik_refuses_it(tmp_path):
    (tmp_path / "company_tickers.json").write_text(json.dumps(company_tickers({"ACME": BETA})))
    (tmp_path / "acme_companyfacts.json").write_text(json.dumps(ACME_FACTS))
    provider = SecEdgarProvider.from_files({}, tmp_path)

    with pytest.raises(Exception, match="holds CIK 1111, but company_tickers maps ACME"):
        provider.fetch_fundamentals(FundamentalsRequest(("ACME",)))


def test_registry_from_providers_yaml_paces_sec_at_600_per_minute():
    reg = ProviderRegistry.from_settings(
        {"sec_edgar": {"kind": "sec_edgar", "requests_per_minute": 600}},
        {"fundamentals": ["sec_edgar"]},
    )

    assert isinstance(reg.providers["sec_edgar"], SecEdgarProvider)
    assert reg.limiters["sec_edgar"].requests_per_minute == 600
