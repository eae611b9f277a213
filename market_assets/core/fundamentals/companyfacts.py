"""SEC companyfacts JSON -> canonical fact rows, and company_tickers.json -> ticker -> CIK.

The companyfacts document (https://data.sec.gov/api/xbrl/companyfacts/CIK##########.json):

    {"cik": 1640147, "entityName": "...", "facts": {
        "us-gaap": {"Assets": {"label": ..., "description": ..., "units": {
            "USD": [{"start"?: "2024-02-01", "end": "2024-10-31", "val": 8202258000,
                     "accn": "0001640147-24-000250", "fy": 2025, "fp": "Q3",
                     "form": "10-Q", "filed": "2024-11-27", "frame"?: "CY2024Q3I"}, ...]}}}}}

`cik` is a number for most filers and a zero-padded string for some (IFRS filers among
them). `fy`/`fp`/`form`/`filed` describe the FILING that reported the value, so a restated
value appears once per filing that reported it, each kept as its own row. A fact record whose
value or dates cannot be read keeps nulls in those columns (the ingest quarantines it with a
rule); a document whose structure is not this shape raises ValueError naming the path.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import polars as pl

from market_assets.core.schemas import FUNDAMENTAL_SCHEMA

_TEXT_KEYS = {"fp": "fiscal_period", "form": "form", "accn": "accession", "frame": "frame"}


def _date(value: Any) -> dt.date | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def parse_cik(value: Any, where: str) -> int:
    """A CIK given as a number or a (zero-padded) string; ValueError naming `where`."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and value.strip().isdigit() and int(value) > 0:
        return int(value)
    raise ValueError(f"{where}: field `cik` is {value!r}, not a positive number")


def parse_companyfacts(payload: Any, symbol: str, source: str, where: str) -> pl.DataFrame:
    """Every fact of a companyfacts document as rows of FUNDAMENTAL_SCHEMA (field, session null).

    `where` names the file or URL in errors.
    """
    if not isinstance(payload, Mapping):
        raise ValueError(f"{where}: a companyfacts document is a JSON object")
    cik = parse_cik(payload.get("cik"), where)
    facts = payload.get("facts")
    if not isinstance(facts, Mapping):
        raise ValueError(f"{where}: field `facts` is missing or not an object")
    columns: dict[str, list[Any]] = {name: [] for name in FUNDAMENTAL_SCHEMA}
    for taxonomy, concepts in facts.items():
        if not isinstance(concepts, Mapping):
            raise ValueError(f"{where}: facts.{taxonomy} is not an object")
        for concept, body in concepts.items():
            units = body.get("units") if isinstance(body, Mapping) else None
            if not isinstance(units, Mapping):
                raise ValueError(f"{where}: facts.{taxonomy}.{concept}.units is not an object")
            for unit, records in units.items():
                path = f"facts.{taxonomy}.{concept}.units.{unit}"
                if not isinstance(records, list):
                    raise ValueError(f"{where}: {path} is not a list")
                for index, record in enumerate(records):
                    if not isinstance(record, Mapping):
                        raise ValueError(f"{where}: {path}[{index}] is not an object")
                    _append(columns, record, taxonomy, concept, unit)
    count = len(columns["value"])
    columns.update(
        symbol=[symbol] * count,
        cik=[cik] * count,
        field=[None] * count,
        session=[None] * count,
        source=[source] * count,
    )
    return pl.DataFrame(columns, schema=FUNDAMENTAL_SCHEMA)


def _append(
    columns: dict[str, list[Any]],
    record: Mapping[str, Any],
    taxonomy: str,
    concept: str,
    unit: str,
) -> None:
    columns["taxonomy"].append(taxonomy)
    columns["concept"].append(concept)
    columns["unit"].append(unit)
    columns["value"].append(_number(record.get("val")))
    fiscal_year = record.get("fy")
    ok_year = isinstance(fiscal_year, int) and not isinstance(fiscal_year, bool)
    columns["fiscal_year"].append(fiscal_year if ok_year else None)
    columns["period_start"].append(_date(record.get("start")))
    columns["period_end"].append(_date(record.get("end")))
    columns["filed"].append(_date(record.get("filed")))
    for key, name in _TEXT_KEYS.items():
        text = record.get(key)
        columns[name].append(text if isinstance(text, str) and text else None)


def parse_company_tickers(payload: Any, where: str) -> dict[str, int]:
    """company_tickers.json ({"0": {"cik_str": 320193, "ticker": "AAPL", ...}, ...}) as
    ticker -> CIK. ValueError naming `where` and the entry when the shape is different."""
    if not isinstance(payload, Mapping):
        raise ValueError(f"{where}: company_tickers is a JSON object of entries")
    tickers: dict[str, int] = {}
    for key, entry in payload.items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("ticker"), str):
            raise ValueError(f"{where}: entry {key!r} has no string `ticker`")
        tickers.setdefault(entry["ticker"].upper(), parse_cik(entry.get("cik_str"), where))
    return tickers


def sec_ticker(symbol: str) -> str:
    """SEC's spelling of a ticker: class shares use a dash (BRK.B -> BRK-B)."""
    return symbol.upper().replace(".", "-")
