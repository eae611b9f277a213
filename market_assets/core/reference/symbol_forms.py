"""Ticker spellings across sources, mapped to one canonical form: CQS symbology.

The same security is spelled differently by each source:

| security | CQS (canonical) | NASDAQ | SEC company_tickers | iShares |
|---|---|---|---|---|
| Berkshire class B | BRK.B | BRK.B or `BRK B` | BRK-B | BRKB |
| Arbor preferred D | ABRpD | ABR-D | ABR-PD | - |
| Ares II warrants | AACT.WS | AACT+ | AACT-WT | - |
| Ares II units | AACT.U | AACT= | AACT-UN | - |
| rights | XYZr | XYZ^ | XYZ-RI / XYZ-RT | - |
| when issued | XYZw | XYZ# | - | - |

CQS is what NYSE's symbol directory (otherlisted.txt), the S&P 500 tables and most vendors'
equity feeds use for class shares (BRK.B), and every CQS symbol passes
`market_assets.core.symbols.validate_symbol` (NASDAQ's `+ = ^ #` and spaces do not).
"""

from __future__ import annotations

import re
from collections.abc import Collection

_ROOT = re.compile(r"^([A-Z0-9]+)(.*)$")

# NASDAQ integrated symbology suffix -> CQS suffix (nasdaqtrader.com symbology notes).
_NASDAQ_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("^#", "rw"),  # rights, when issued
    ("+", ".WS"),  # warrants (AACT+ -> AACT.WS; a series: ABC+A -> ABC.WS.A)
    ("=", ".U"),  # units
    ("^", "r"),  # rights
    ("#", "w"),  # when issued
    ("*", ".CL"),  # called
)

# SEC company_tickers.json suffix -> CQS suffix.
_SEC_SUFFIXES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^-P([A-Z]?)$"), r"p\1"),  # JPM-PC -> JPMpC, X-P -> Xp
    (re.compile(r"^-WT([A-Z]?)$"), r".WS"),  # warrants (series letter kept below)
    (re.compile(r"^-UN$"), ".U"),
    (re.compile(r"^-(RI|RT)$"), "r"),
    (re.compile(r"^-([A-Z]{1,2})$"), r".\1"),  # class shares: BRK-B -> BRK.B
)


def cqs_from_nasdaq(symbol: str) -> str:
    """A NASDAQ-form symbol (`ABR-D`, `AACT+`, `BRK B`, `BRK.B`) in CQS form (`ABRpD`, ...)."""
    text = symbol.strip()
    match = _ROOT.match(text)
    if not match:
        return text
    root, suffix = match.groups()
    if not suffix:
        return root
    if suffix.startswith(" ") or suffix.startswith("."):
        return f"{root}.{suffix[1:].strip()}"
    if suffix.startswith("-"):
        return f"{root}p{suffix[1:]}"
    for nasdaq, cqs in _NASDAQ_SUFFIXES:
        if suffix.startswith(nasdaq):
            rest = suffix[len(nasdaq) :]
            return f"{root}{cqs}" + (f".{rest}" if rest and cqs.startswith(".") else rest)
    return text


def cqs_from_sec(ticker: str) -> str:
    """An SEC company_tickers ticker (`BRK-B`, `JPM-PC`, `GRP-UN`) in CQS form."""
    text = ticker.strip().upper()
    match = _ROOT.match(text)
    if not match or not match.group(2):
        return text
    root, suffix = match.groups()
    for pattern, replacement in _SEC_SUFFIXES:
        found = pattern.match(suffix)
        if found:
            if replacement == ".WS" and found.group(1):
                return f"{root}.WS.{found.group(1)}"
            return root + found.expand(replacement)
    return text


def cqs_from_compact(ticker: str, known: Collection[str]) -> str:
    """A ticker written without its class separator (iShares: BRKB, BFB) in CQS form.

    `known` holds canonical symbols from another source of the same date range. The ticker
    is returned unchanged when it is known as written or no dotted form is known.
    """
    text = ticker.strip().upper().replace(" ", ".").replace("/", ".")
    if text in known or len(text) < 2:
        return text
    dotted = f"{text[:-1]}.{text[-1]}"
    return dotted if dotted in known else text
