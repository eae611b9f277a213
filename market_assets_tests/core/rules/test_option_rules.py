"""Option chain rules: each fires on the defect it names, and a clean chain passes them all."""

import datetime as dt

import polars as pl
import pytest

from market_assets.core.options.chain import build_chain
from market_assets.core.options.rates import RateSource
from market_assets.core.options.settings import OptionsSettings
from market_assets.core.providers.base import OptionChainRequest
from market_assets.core.providers.synthetic import SyntheticProvider
from market_assets.core.rules.base import Severity
from market_assets.core.rules.options import OPTION_RULES, OptionRuleContext, check_options

WED, THU = dt.date(2025, 2, 19), dt.date(2025, 2, 20)
SETTINGS = OptionsSettings()
WEIGHTS = {Severity.ERROR: 40.0, Severity.WARN: 10.0}


@pytest.fixture(scope="module")
def chains() -> pl.DataFrame:
    """Two sessions of a synthetic SPY chain, built like the asset builds it."""
    quotes = SyntheticProvider().fetch_options(
        OptionChainRequest(("SPY",), WED, THU + dt.timedelta(1))
    )
    return build_chain(quotes.frame, SETTINGS, RateSource(SETTINGS.pricing.rate)).frame


def judge(chains: pl.DataFrame, today: pl.DataFrame) -> dict[str, int]:
    """Offending rows per failed rule on Thursday, with Wednesday as the previous session."""
    context = OptionRuleContext(
        (("SPY", THU),), SETTINGS.checks, chains.filter(pl.col("session") == WED)
    )
    report = check_options(today, context, WEIGHTS)
    failed = report.results.filter(~pl.col("passed"))
    return dict(failed.select("rule", "offending_rows").rows())


def thursday(chains: pl.DataFrame) -> pl.DataFrame:
    return chains.filter(pl.col("session") == THU)


def first_liquid(frame: pl.DataFrame, kind: str = "call") -> str:
    return frame.filter((pl.col("iv_status") == "ok") & (pl.col("kind") == kind))["contract"][0]


def change(frame: pl.DataFrame, contract: str, **values) -> pl.DataFrame:
    return frame.with_columns(
        pl.when(pl.col("contract") == contract).then(pl.lit(v)).otherwise(pl.col(k)).alias(k)
        for k, v in values.items()
    )


def test_a_clean_synthetic_chain_passes_the_error_rules(chains):
    failed = judge(chains, thursday(chains))

    errors = {r for r in failed if SETTINGS.checks.rule(r).severity is Severity.ERROR}
    assert errors == set()
    assert "chain_completeness" not in failed and "put_call_parity" not in failed


@pytest.mark.parametrize(
    ("rule", "values"),
    [
        ("crossed_quotes", {"bid": 9.0, "ask": 1.0}),
        ("negative_values", {"volume": -5}),
        ("iv_bounds", {"vendor_iv": 7.5}),
        ("delta_bounds", {"vendor_delta": -0.4}),
        ("greek_signs", {"gamma": -0.01}),
        ("expirations_on_sessions", {"expiration": dt.date(2025, 3, 1)}),  # a Saturday
        ("strikes_on_grid", {"strike": 17.3}),
        ("vendor_iv_difference", {"vendor_iv": 2.0}),
    ],
)
def test_rule_fails_on_the_defect_it_names(chains, rule, values):
    today = thursday(chains)
    contract = first_liquid(today)

    failed = judge(chains, change(today, contract, **values))

    assert failed.get(rule) == 1


def test_put_call_parity_fails_when_a_call_is_quoted_far_from_the_forward(chains):
    today = thursday(chains)
    contract = first_liquid(today)
    price = today.filter(pl.col("contract") == contract)["iv_price"][0]

    failed = judge(chains, change(today, contract, iv_price=price + 5.0))

    assert failed.get("put_call_parity") == 1


def test_stale_quotes_fail_when_bid_and_ask_did_not_move_while_the_contract_traded(chains):
    today = thursday(chains)
    contract = first_liquid(today)
    before = chains.filter((pl.col("session") == WED) & (pl.col("contract") == contract))

    failed = judge(
        chains, change(today, contract, bid=before["bid"][0], ask=before["ask"][0], volume=10)
    )

    assert failed.get("stale_quotes", 0) >= 1


def test_chain_completeness_fails_for_a_listed_contract_that_disappeared_and_an_empty_chain(chains):
    today = thursday(chains)
    gone = today.filter(pl.col("expiration") > THU)["contract"][0]

    assert judge(chains, today.filter(pl.col("contract") != gone))["chain_completeness"] == 1
    assert judge(chains, today.clear())["chain_completeness"] == 1


def test_every_rule_has_settings_in_options_yaml_and_a_disabled_rule_is_skipped(chains):
    settings = OptionsSettings.model_validate({"checks": {"crossed_quotes": {"enabled": False}}})
    today = change(thursday(chains), first_liquid(thursday(chains)), bid=9.0, ask=1.0)
    context = OptionRuleContext((("SPY", THU),), settings.checks, None)

    report = check_options(today, context, WEIGHTS)

    assert set(OPTION_RULES) == set(type(SETTINGS.checks).model_fields)
    assert "crossed_quotes" not in report.results["rule"].to_list()
    assert report.partitions.row(0, named=True)["rows"] == today.height
