"""The fundamentals quality rules: real files pass; each rule catches its defect."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl

from market_assets.core.fundamentals.companyfacts import parse_companyfacts
from market_assets.core.fundamentals.ingest import place_facts
from market_assets.core.fundamentals.rules import (
    filing_lags,
    identity_groups,
    judge_fundamentals,
    judge_ratios,
)
from market_assets.core.schemas import FUNDAMENTAL_RATIO_SCHEMA
from market_assets_tests.core.fundamentals.sec_documents import Fact, balance_sheet, companyfacts

D = dt.date
FILED = "2024-05-01"
SESSION = D(2024, 5, 1)


def facts_of(fields, facts: list[Fact]) -> pl.DataFrame:
    raw = parse_companyfacts(companyfacts(1, facts), "ACME", "sec_edgar", "doc")
    placed, _ = place_facts(raw, [("ACME", SESSION), ("ACME", D(2024, 2, 1))], fields)
    return placed


def outcome(results: pl.DataFrame, rule: str) -> dict:
    row = results.filter((pl.col("rule") == rule) & (pl.col("session") == SESSION)).row(
        0, named=True
    )
    return {**row, "details": json.loads(row["details"])}


def test_real_filers_pass_the_balance_sheet_identity_in_every_filing(snow, lpa, fields):
    groups = identity_groups(pl.concat([snow, lpa]), fields)
    passed = groups.filter(pl.col("gap") <= fields.identity.tolerance)

    assert groups.group_by("symbol").len().sort("symbol").rows() == [("LPA", 4), ("SNOW", 38)]
    assert passed.height == groups.height


def test_real_filers_break_no_rule(snow, lpa, fields):
    facts = pl.concat([snow, lpa])

    results = judge_fundamentals(facts, facts, fields)

    assert results.filter(~pl.col("passed")).is_empty()
    assert results.select("symbol", "session").unique().height == 22  # 19 SNOW + 3 LPA days


def test_filing_lag_of_real_filings_is_from_the_filing_period_end(snow, fields):
    lags = filing_lags(snow).filter(pl.col("form") == "10-K")

    assert lags.select("period_end", "filed", "lag_days").row(-1) == (
        D(2025, 1, 31),
        D(2025, 3, 21),
        49,
    )


def test_balance_sheet_off_by_five_percent_fails_the_identity(fields):
    facts = facts_of(fields, balance_sheet("2024-03-31", FILED, "a-1", 100.0, 60.0, 35.0))

    result = outcome(judge_fundamentals(facts, facts, fields), "balance_sheet_identity")

    assert (result["passed"], result["severity"]) == (False, "ERROR")
    assert result["details"]["failed"][0]["gap"] == 0.05


def test_noncontrolling_interest_and_temporary_equity_close_the_identity(fields):
    facts = facts_of(
        fields,
        [
            *balance_sheet("2024-03-31", FILED, "a-1", 100.0, 60.0, 30.0),
            Fact("us-gaap:MinorityInterest", 4.0, "2024-03-31", FILED, "a-1"),
            Fact(
                "us-gaap:TemporaryEquityCarryingAmountAttributableToParent",
                6.0,
                "2024-03-31",
                FILED,
                "a-1",
            ),
        ],
    )

    result = outcome(judge_fundamentals(facts, facts, fields), "balance_sheet_identity")

    assert result["passed"] and result["details"]["judged"] == 1


def test_a_10q_filed_120_days_after_its_quarter_is_late(fields):
    facts = facts_of(fields, balance_sheet("2024-01-01", FILED, "a-1", 10.0, 6.0, 4.0))

    result = outcome(judge_fundamentals(facts, facts, fields), "filing_lag")

    assert (result["passed"], result["severity"]) == (False, "WARN")
    assert result["details"]["filings"] == {"a-1": 121}


def test_negative_share_count_is_an_error(fields):
    facts = facts_of(
        fields,
        [Fact("dei:EntityCommonStockSharesOutstanding", -5, "2024-04-20", FILED, unit="shares")],
    )

    result = outcome(judge_fundamentals(facts, facts, fields), "negative_shares")

    assert (result["passed"], result["offending_rows"]) == (False, 1)


def test_a_field_concept_in_the_wrong_unit_and_a_concept_in_two_kinds_fail_units(fields):
    facts = facts_of(
        fields,
        [
            Fact("us-gaap:Assets", 5, "2024-03-31", FILED, unit="shares"),
            Fact("us-gaap:Goodwill", 5, "2024-03-31", FILED, unit="USD"),
            Fact("us-gaap:Goodwill", 5, "2024-03-31", FILED, unit="USD/shares"),
        ],
    )

    result = outcome(judge_fundamentals(facts, facts, fields), "unit_consistency")

    assert (result["passed"], result["offending_rows"]) == (False, 3)
    assert result["details"]["concepts_in_several_units"] == ["us-gaap:Goodwill"]
    assert result["details"]["unit_not_of_field"][0]["concept"] == "Assets"


def test_duplicate_facts_for_one_period_and_filing_date_are_flagged(fields):
    facts = facts_of(
        fields,
        [
            Fact("us-gaap:Assets", 5, "2024-03-31", FILED, "a-1"),
            Fact("us-gaap:Assets", 6, "2024-03-31", FILED, "a-2"),
        ],
    )

    result = outcome(judge_fundamentals(facts, facts, fields), "duplicate_facts")

    assert (result["passed"], result["severity"]) == (False, "WARN")
    assert result["details"]["conflicting_groups"] == 1


def test_a_hundredfold_jump_between_consecutive_quarters_is_flagged(fields):
    earlier = facts_of(fields, [Fact("us-gaap:Assets", 5e9, "2023-12-31", "2024-02-01", "a-0")])
    new = facts_of(fields, [Fact("us-gaap:Assets", 5e11, "2024-03-31", FILED, "a-1")])

    result = outcome(judge_fundamentals(new, pl.concat([earlier, new]), fields), "jump_100x")

    assert result["passed"] is False
    assert result["details"]["sample"][0]["previous_value"] == 5e9


def test_a_loss_turning_into_a_profit_is_not_a_jump(fields):
    earlier = facts_of(
        fields,
        [
            Fact(
                "us-gaap:NetIncomeLoss", -1e6, "2023-12-31", "2024-02-01", "a-0", start="2023-10-01"
            )
        ],
    )
    new = facts_of(
        fields, [Fact("us-gaap:NetIncomeLoss", 5e8, "2024-03-31", FILED, "a-1", start="2024-01-01")]
    )

    result = outcome(judge_fundamentals(new, pl.concat([earlier, new]), fields), "jump_100x")

    assert result["passed"] is True


def test_ratio_rows_with_an_input_filed_after_their_session_are_look_ahead():
    rows = pl.DataFrame(
        [
            {
                "ts": dt.datetime(2024, 5, 1, tzinfo=dt.UTC),
                "symbol": "ACME",
                "close": 10.0,
                "assets_filed": D(2024, 5, 2),
            },
            {
                "ts": dt.datetime(2024, 5, 2, tzinfo=dt.UTC),
                "symbol": "ACME",
                "close": None,
                "assets_filed": D(2024, 5, 2),
            },
        ]
    ).select(
        pl.col(c).cast(t)
        if c in ("ts", "symbol", "close", "assets_filed")
        else pl.lit(None, t).alias(c)
        for c, t in FUNDAMENTAL_RATIO_SCHEMA.items()
    )

    results = judge_ratios(rows)

    failed = results.filter(~pl.col("passed")).select("session", "rule").rows()
    assert failed == [
        (D(2024, 5, 1), "inputs_filed_after_session"),
        (D(2024, 5, 2), "missing_close"),
    ]
