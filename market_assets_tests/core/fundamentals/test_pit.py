"""The point-in-time view: acceptance values, no look-ahead, restatements, IFRS, TTM."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from market_assets.core.fundamentals.companyfacts import parse_companyfacts
from market_assets.core.fundamentals.ingest import place_facts
from market_assets.core.fundamentals.pit import point_in_time, point_in_time_series
from market_assets_tests.core.fundamentals.sec_documents import Fact, companyfacts

D = dt.date


def one(frame: pl.DataFrame, field: str) -> dict:
    return frame.filter(pl.col("field") == field).row(0, named=True)


def test_total_assets_the_day_before_the_10k_is_the_10q_of_october(snow, fields):
    row = one(
        point_in_time(snow, ["SNOW"], ["total_assets"], D(2025, 3, 20), fields), "total_assets"
    )

    assert row["value"] == 8_202_258_000
    assert (row["period_end"], row["form"], row["filed"]) == (
        D(2024, 10, 31),
        "10-Q",
        D(2024, 11, 27),
    )


def test_total_assets_on_the_10k_filing_day_is_the_10k(snow, fields):
    frame = point_in_time(snow, ["SNOW"], ["total_assets"], D(2025, 3, 21), fields)

    assert frame.height == 1
    row = frame.row(0, named=True)
    assert row["value"] == 9_033_938_000
    assert (row["period_end"], row["form"], row["filed"]) == (
        D(2025, 1, 31),
        "10-K",
        D(2025, 3, 21),
    )


def test_no_filing_is_visible_before_its_filing_date_and_each_is_on_its_date(snow, fields):
    filings = (
        snow.filter(pl.col("form").is_in(["10-K", "10-Q"]))
        .select("accession", "filed")
        .unique()
        .sort("filed")
        .rows()
    )
    assert len(filings) == 19
    names = fields.names()

    for accession, filed in filings:
        before = point_in_time(snow, ["SNOW"], names, filed - dt.timedelta(days=1), fields)
        on_day = point_in_time(snow, ["SNOW"], names, filed, fields)

        assert accession not in before.get_column("accession").to_list(), (accession, filed)
        assert all(day < filed for day in before.get_column("filed").drop_nulls())
        assert accession in on_day.get_column("accession").to_list(), (accession, filed)


def test_a_restatement_counts_only_from_its_own_filing_date(fields):
    doc = companyfacts(
        1,
        [
            Fact("us-gaap:Assets", 100, "2024-03-31", "2024-05-01", "0000000001-24-000001"),
            Fact(
                "us-gaap:Assets",
                90,
                "2024-03-31",
                "2024-06-10",
                "0000000001-24-000002",
                form="10-Q/A",
            ),
        ],
    )
    raw = parse_companyfacts(doc, "ACME", "sec_edgar", "doc")
    facts, _ = place_facts(raw, [("ACME", D(2024, 5, 1)), ("ACME", D(2024, 6, 10))], fields)

    series = point_in_time_series(
        facts, ["ACME"], ["total_assets"], [D(2024, 4, 30), D(2024, 6, 7), D(2024, 6, 10)], fields
    )

    assert series.get_column("value").to_list() == [None, 100.0, 90.0]
    assert series.get_column("form").to_list() == [None, "10-Q", "10-Q/A"]


def test_a_10q_gives_the_quarter_not_the_year_to_date(snow, fields):
    row = one(point_in_time(snow, ["SNOW"], ["revenue"], D(2024, 12, 2), fields), "revenue")

    assert (row["period_start"], row["period_end"]) == (D(2024, 8, 1), D(2024, 10, 31))
    assert row["value"] == 942_094_000


def test_ttm_after_a_10q_is_year_to_date_plus_last_year_minus_its_year_to_date(snow, fields):
    frame = point_in_time(snow, ["SNOW"], ["revenue_ttm"], D(2024, 12, 2), fields)
    row = one(frame, "revenue_ttm")
    revenue = snow.filter(pl.col("field") == "revenue")

    def value(start: D, end: D) -> float:
        return revenue.filter(
            (pl.col("period_start") == start) & (pl.col("period_end") == end)
        ).sort("filed")["value"][-1]

    expected = (
        value(D(2024, 2, 1), D(2024, 10, 31))
        + value(D(2023, 2, 1), D(2024, 1, 31))
        - value(D(2023, 2, 1), D(2023, 10, 31))
    )
    assert row["value"] == pytest.approx(expected)
    assert (row["period_start"], row["period_end"]) == (D(2023, 11, 1), D(2024, 10, 31))
    assert row["filed"] == D(2024, 11, 27)


def test_ttm_after_a_10k_is_the_fiscal_year(snow, fields):
    row = one(
        point_in_time(snow, ["SNOW"], ["net_income_ttm"], D(2025, 3, 21), fields), "net_income_ttm"
    )

    assert (row["period_start"], row["period_end"]) == (D(2024, 2, 1), D(2025, 1, 31))
    assert row["form"] == "10-K"


def test_ifrs_filer_answers_every_field_from_ifrs_tags(lpa, fields):
    frame = point_in_time(
        lpa,
        ["LPA"],
        ["total_assets", "total_liabilities", "stockholders_equity", "revenue", "net_income"],
        D(2025, 4, 30),
        fields,
    )

    assert frame.get_column("taxonomy").unique().to_list() == ["ifrs-full"]
    assert one(frame, "total_assets")["value"] == 607_019_578
    assert one(frame, "stockholders_equity")["concept"] == "EquityAttributableToOwnersOfParent"
    assert one(frame, "net_income")["concept"] == "ProfitLossAttributableToOwnersOfParent"


def test_unknown_symbol_or_nothing_filed_yet_gives_a_null_row(snow, fields):
    frame = point_in_time(snow, ["SNOW", "NONE"], ["total_assets"], D(2020, 1, 1), fields)

    assert frame.select("symbol", "value").rows() == [("SNOW", None), ("NONE", None)]


def test_unknown_field_is_refused_naming_it(snow, fields):
    with pytest.raises(ValueError, match="unknown fundamentals field.*ebitdaa"):
        point_in_time(snow, ["SNOW"], ["ebitdaa"], D(2025, 1, 1), fields)
