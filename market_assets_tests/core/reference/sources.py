"""Builders of reference source files in their vendors' documented shapes (our own data).

- NASDAQ Trader symbol directories (nasdaqtrader.com "Symbol Look-Up/Directory Data Fields &
  Definitions"): pipe-delimited with a header and a trailing `File Creation Time:
  MMDDYYYYHH:MM` line whose other fields are empty.
- SEC company_tickers.json: {"0": {"cik_str": N, "ticker": "...", "title": "..."}, ...}.
- S&P 500 interval file (`ticker,start_date,end_date`), Wikipedia-shaped constituents table,
  iShares holdings export (BOM, metadata lines, quoted thousands-separated numbers, a blank
  line and a disclaimer).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path

from market_assets.core.providers.nasdaq_trader import NASDAQ_LISTED_HEADER, OTHER_LISTED_HEADER


def _created(when: dt.datetime) -> str:
    return f"File Creation Time: {when:%m%d%Y%H:%M}"


def nasdaq_listed(rows: Sequence[Sequence[str]], created: dt.datetime) -> str:
    """nasdaqlisted.txt: Symbol|Security Name|Market Category|Test Issue|Financial Status|
    Round Lot Size|ETF|NextShares."""
    lines = ["|".join(NASDAQ_LISTED_HEADER), *("|".join(row) for row in rows)]
    lines.append(_created(created) + "|" * (len(NASDAQ_LISTED_HEADER) - 1))
    return "\r\n".join(lines) + "\r\n"


def other_listed(rows: Sequence[Sequence[str]], created: dt.datetime) -> str:
    """otherlisted.txt: ACT Symbol|Security Name|Exchange|CQS Symbol|ETF|Round Lot Size|
    Test Issue|NASDAQ Symbol."""
    lines = ["|".join(OTHER_LISTED_HEADER), *("|".join(row) for row in rows)]
    lines.append(_created(created) + "|" * (len(OTHER_LISTED_HEADER) - 2))
    return "\r\n".join(lines) + "\r\n"


NASDAQ_ROWS = [
    ("AAPL", "Apple Inc. - Common Stock", "Q", "N", "N", "100", "N", "N"),
    ("META", "Meta Platforms, Inc. - Class A Common Stock", "Q", "N", "N", "100", "N", "N"),
    ("QQQ", "Invesco QQQ Trust, Series 1", "G", "N", "N", "100", "Y", "N"),
    ("ZAZZT", "Tick Pilot Test Stock Class A Common Stock", "G", "Y", "N", "100", "N", "N"),
    ("ABCDW", "Abcd Acquisition Corp. - Warrant", "S", "N", "D", "100", "N", "N"),
]
OTHER_ROWS = [
    ("BRK.B", "Berkshire Hathaway Inc. New Common Stock", "N", "BRK.B", "N", "100", "N", "BRK B"),
    (
        "ABR$D",
        "Arbor Realty Trust 6.375% Series D Preferred Stock",
        "N",
        "ABRpD",
        "N",
        "100",
        "N",
        "ABR-D",
    ),
    (
        "AACT.W",
        "Ares Acquisition Corporation II Redeemable Warrants",
        "N",
        "AACT.WS",
        "N",
        "100",
        "N",
        "AACT+",
    ),
    ("SPY", "SPDR S&P 500 ETF Trust", "P", "SPY", "Y", "100", "N", "SPY"),
    ("PCG", "Pacific Gas & Electric Co. Common Stock", "N", "PCG", "N", "100", "N", "PCG"),
    ("ZXIET", "IEX Test Company Test Symbol Three for IEX", "V", "ZXIET", "N", "100", "Y", "ZXIET"),
]


def company_tickers(rows: Sequence[tuple[int, str, str]]) -> str:
    """company_tickers.json of (cik, ticker, title) rows."""
    document = {
        str(i): {"cik_str": cik, "ticker": ticker, "title": title}
        for i, (cik, ticker, title) in enumerate(rows)
    }
    return json.dumps(document)


SEC_ROWS = [
    (320193, "AAPL", "Apple Inc."),
    (1326801, "META", "Meta Platforms, Inc."),
    (1067983, "BRK-B", "BERKSHIRE HATHAWAY INC"),
    (1004980, "PCG", "PG&E Corp"),
    (999999, "OTCX", "An Unlisted Filer Inc"),
]


def intervals_csv(rows: Sequence[tuple[str, str, str]]) -> str:
    return "ticker,start_date,end_date\n" + "".join(f"{t},{s},{e}\n" for t, s, e in rows)


def constituents_csv(rows: Sequence[tuple[str, str, str, int]]) -> str:
    """Wikipedia-shaped table of (symbol, security, date added, cik)."""
    header = (
        "Symbol,Security,GICS Sector,GICS Sub-Industry,Headquarters Location,Date added,CIK,"
        "Founded\n"
    )
    body = "".join(
        f'{symbol},{name},Sector,Industry,"City, State",{added},{cik},1900\n'
        for symbol, name, added, cik in rows
    )
    return header + body


def holdings_csv(as_of: dt.date, rows: Sequence[tuple[str, str, str, str]]) -> str:
    """iShares export of (ticker, name, asset class, weight %) rows."""
    lines = [
        "\ufeffiShares Core S&P 500 ETF",
        f'Fund Holdings as of,"{as_of:%b %d, %Y}"',
        'Inception Date,"May 15, 2000"',
        'Shares Outstanding,"743,100,000.00"',
        'Stock,"-"',
        'Bond,"-"',
        'Cash,"-"',
        'Other,"-"',
        "\xa0",
        "Ticker,Name,Sector,Asset Class,Market Value,Weight (%),Notional Value,Shares,Price,"
        "Location,Exchange,Currency,FX Rate,Market Currency,Accrual Date",
    ]
    for ticker, name, asset_class, weight in rows:
        lines.append(
            f'"{ticker}","{name}","Sector","{asset_class}","1,234,567.89","{weight}",'
            f'"1,234,567.89","1,000.00","123.45","United States","NASDAQ","USD","1.00","USD","-"'
        )
    lines += [
        "\xa0",
        '"The content contained herein is owned or licensed by BlackRock.',
        "Holdings subject to change.",
    ]
    return "\n".join(lines) + "\n"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
