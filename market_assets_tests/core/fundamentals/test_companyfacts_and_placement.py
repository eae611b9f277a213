"""companyfacts parsing, the field map, placement by filing date and the quarantine rules."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from market_assets.core.errors import ConfigError
from market_assets.core.fundamentals.companyfacts import parse_companyfacts
from market_assets.core.fundamentals.config import load_fundamentals_config
from market_assets.core.fundamentals.ingest import (
    partition_sessions,
    place_facts,
    split_valid_facts,
)
from market_assets_tests.core.fundamentals.sec_documents import Fact, companyfacts

D = dt.date


def test_real_us_gaap_file_parses_every_fact_with_its_filing(snow):
    assert snow.height == 8163
    assert snow.get_column("filed").null_count() == 0
    assert snow.get_column("accession").n_unique() == 19
    assert set(snow.get_column("form").unique()) == {"10-K", "10-Q"}


def test_every_restatement_is_its_own_row(snow):
    assets = snow.filter(
        (pl.col("concept") == "Assets") & (pl.col("period_end") == D(2024, 1, 31))
    ).sort("filed")

    assert assets.get_column("filed").to_list() == [
        D(2024, 3, 26),
        D(2024, 5, 31),
        D(2024, 8, 29),
        D(2024, 11, 27),
        D(2025, 3, 21),
    ]


def test_fields_are_recorded_per_row_from_the_tag_map(snow):
    mapped = snow.filter(pl.col("field").is_not_null())
    by_field = dict(mapped.group_by("field").agg(pl.col("concept").unique().sort()).rows())

    assert by_field["total_assets"] == ["Assets"]
    assert by_field["revenue"] == ["RevenueFromContractWithCustomerExcludingAssessedTax"]
    assert by_field["shares_outstanding"] == ["EntityCommonStockSharesOutstanding"]
    assert snow.filter(pl.col("concept") == "AccountsPayableCurrent")["field"].null_count() > 0


def test_ifrs_filer_with_string_cik_loads_with_its_own_tags(lpa):
    mapped = lpa.filter(pl.col("field").is_not_null())
    by_field = dict(mapped.group_by("field").agg(pl.col("taxonomy").unique().sort()).rows())

    assert lpa.get_column("cik").unique().to_list() == [1997711]
    assert by_field["total_assets"] == ["ifrs-full"]
    assert by_field["revenue"] == ["ifrs-full"]
    assert by_field["net_income"] == ["ifrs-full"]
    assert by_field["stockholders_equity"] == ["ifrs-full"]


def test_a_mapped_concept_in_the_wrong_unit_gets_no_field(fields):
    doc = companyfacts(1, [Fact("us-gaap:Assets", 5, "2024-03-31", "2024-05-01", unit="shares")])
    raw = parse_companyfacts(doc, "ACME", "sec_edgar", "doc")

    placed, _ = place_facts(raw, [("ACME", D(2024, 5, 1))], fields)

    assert placed.get_column("field").to_list() == [None]


def test_filing_on_an_exchange_holiday_lands_in_the_next_session_and_keeps_its_date(fields):
    doc = companyfacts(
        1,
        [
            Fact("us-gaap:Assets", 1, "2024-03-31", "2024-07-04", "0000000001-24-000001"),
            Fact("us-gaap:Assets", 2, "2024-06-30", "2024-07-06", "0000000001-24-000002"),
            Fact("us-gaap:Assets", 3, "2024-06-30", "2024-03-29", "0000000001-24-000003"),
        ],
    )
    raw = parse_companyfacts(doc, "ACME", "sec_edgar", "doc")
    partitions = [("ACME", D(2024, 7, 5)), ("ACME", D(2024, 7, 8)), ("ACME", D(2024, 4, 1))]

    placed, counts = place_facts(raw, partitions, fields)

    assert sorted(placed.select("filed", "session").rows()) == [
        (D(2024, 3, 29), D(2024, 4, 1)),  # Good Friday: EDGAR open, NYSE closed
        (D(2024, 7, 4), D(2024, 7, 5)),  # Independence Day
        (D(2024, 7, 6), D(2024, 7, 8)),  # a Saturday
    ]
    assert counts["ACME"] == {"in_source": 3, "in_run": 3, "outside_run": 0, "without_filed": 0}


def test_every_fact_is_counted_stored_outside_the_run_or_undated(fields):
    doc = companyfacts(
        1,
        [
            Fact("us-gaap:Assets", 1, "2024-03-31", "2024-05-01"),
            Fact("us-gaap:Assets", 2, "2023-12-31", "2024-02-20"),
            Fact("us-gaap:Assets", 3, "2023-12-31", "not a date"),
        ],
    )
    raw = parse_companyfacts(doc, "ACME", "sec_edgar", "doc")

    placed, counts = place_facts(raw, [("ACME", D(2024, 5, 1))], fields)

    assert placed.height == 1
    assert counts["ACME"] == {"in_source": 3, "in_run": 1, "outside_run": 1, "without_filed": 1}


def test_partition_sessions_keep_nulls_and_input_order():
    filed = pl.Series([D(2024, 7, 6), None, D(2024, 7, 1)], dtype=pl.Date())

    assert partition_sessions(filed).to_list() == [D(2024, 7, 8), None, D(2024, 7, 1)]


def test_facts_breaking_a_hard_rule_are_quarantined_with_the_rule(fields):
    doc = companyfacts(
        1,
        [
            Fact("us-gaap:Assets", None, "2024-03-31", "2024-05-01"),
            Fact("us-gaap:Revenues", 5, "bad", "2024-05-01", start="2024-01-01"),
            Fact("us-gaap:Revenues", 5, "2024-03-31", "2024-05-01", start="2024-06-01"),
            Fact("us-gaap:Liabilities", 4, "2024-03-31", "2024-05-01"),
        ],
    )
    raw = parse_companyfacts(doc, "ACME", "sec_edgar", "doc")
    placed, _ = place_facts(raw, [("ACME", D(2024, 5, 1))], fields)

    valid, quarantined = split_valid_facts(placed, "fundamentals")

    assert valid.get_column("concept").to_list() == ["Liabilities"]
    assert sorted(quarantined.get_column("rule")) == [
        "missing_period_end",
        "missing_value",
        "period_start_after_end",
    ]
    assert quarantined.get_column("session").unique().to_list() == [D(2024, 5, 1)]
    assert "us-gaap:Assets" in quarantined.filter(pl.col("rule") == "missing_value")["detail"][0]


def test_document_without_facts_object_names_the_file():
    with pytest.raises(ValueError, match="acme.json: field `facts` is missing"):
        parse_companyfacts({"cik": 1}, "ACME", "sec_edgar", "acme.json")


def test_document_with_bad_cik_names_the_field():
    with pytest.raises(ValueError, match="field `cik` is 'abc'"):
        parse_companyfacts({"cik": "abc", "facts": {}}, "ACME", "sec_edgar", "acme.json")


def test_config_with_a_concept_under_two_fields_is_refused(tmp_path):
    (tmp_path / "fundamentals.yaml").write_text(
        "fields:\n"
        "  a: {kind: instant, unit: currency, concepts: [us-gaap:Assets]}\n"
        "  b: {kind: instant, unit: currency, concepts: [us-gaap:Assets]}\n"
        "identity: {assets: [us-gaap:Assets], liabilities: [us-gaap:Liabilities]}\n"
    )

    with pytest.raises(ConfigError, match="us-gaap:Assets is listed under both fields.a"):
        load_fundamentals_config(tmp_path)
