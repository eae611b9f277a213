"""SEC EDGAR documents in the API's real shape, built by our own code for tests.

`companyfacts(cik, facts)` gives the body of
https://data.sec.gov/api/xbrl/companyfacts/CIK##########.json: facts grouped by taxonomy,
concept and unit, each record with end, val, accn, fy, fp, form, filed (and start for
durations, frame when SEC assigned one). `company_tickers` gives
https://www.sec.gov/files/company_tickers.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Fact:
    """One reported value: `concept` is "taxonomy:Name"."""

    concept: str
    value: float | int | None
    end: str
    filed: str
    accession: str = "0000000001-24-000001"
    form: str = "10-Q"
    unit: str = "USD"
    start: str | None = None
    fiscal_year: int = 2024
    fiscal_period: str = "Q1"


def companyfacts(
    cik: int | str, facts: Sequence[Fact], name: str = "Example Corp"
) -> dict[str, Any]:
    document: dict[str, Any] = {"cik": cik, "entityName": name, "facts": {}}
    for fact in facts:
        taxonomy, concept = fact.concept.split(":", 1)
        body = (
            document["facts"]
            .setdefault(taxonomy, {})
            .setdefault(
                concept, {"label": concept, "description": f"{concept} as tagged", "units": {}}
            )
        )
        record: dict[str, Any] = {"end": fact.end, "val": fact.value, "accn": fact.accession}
        if fact.start is not None:
            record = {"start": fact.start, **record}
        record.update(fy=fact.fiscal_year, fp=fact.fiscal_period, form=fact.form, filed=fact.filed)
        body["units"].setdefault(fact.unit, []).append(record)
    return document


def company_tickers(entries: dict[str, int]) -> dict[str, Any]:
    return {
        str(index): {"cik_str": cik, "ticker": ticker, "title": f"{ticker} Inc."}
        for index, (ticker, cik) in enumerate(entries.items())
    }


def balance_sheet(
    end: str,
    filed: str,
    accession: str,
    assets: float,
    liabilities: float,
    equity: float,
    form: str = "10-Q",
) -> list[Fact]:
    """Assets, liabilities and stockholders' equity of one filing."""
    return [
        Fact("us-gaap:Assets", assets, end, filed, accession, form),
        Fact("us-gaap:Liabilities", liabilities, end, filed, accession, form),
        Fact("us-gaap:StockholdersEquity", equity, end, filed, accession, form),
    ]
