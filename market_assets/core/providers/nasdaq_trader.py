"""NASDAQ Trader symbol directories: every ticker listed on a US exchange, as of one day.

Two pipe-delimited files, each ending with a `File Creation Time: MMDDYYYYHH:MM` line (New
York time):

- `nasdaqlisted.txt`: Symbol|Security Name|Market Category|Test Issue|Financial Status|
  Round Lot Size|ETF|NextShares. Market Category Q/G/S (Global Select, Global Market,
  Capital Market); Financial Status N normal, D deficient, E delinquent, Q bankrupt, G/H/J/K
  combinations.
- `otherlisted.txt`: ACT Symbol|Security Name|Exchange|CQS Symbol|ETF|Round Lot Size|
  Test Issue|NASDAQ Symbol. Exchange A NYSE American, N NYSE, P NYSE Arca, Z Cboe BZX,
  V IEX, M NYSE Texas.

Rows become REFERENCE_SCHEMA listing columns with the canonical CQS symbol (`BRK.B`, `ABRpD`,
`AACT.WS`; see market_assets.core.reference.symbol_forms) and the file's own spelling in
`vendor_symbol`. Test issues and ETFs are kept and flagged. A file describes the session of
its creation date (the next session for a weekend file); NASDAQ publishes only the current
directory, so the API serves today's session and archived copies serve their own days
through `market-assets ingest --files DIR` (files named `nasdaqlisted*.txt` and
`otherlisted*.txt`, anywhere under DIR).

Transport seam: `session` is any `requests.Session`; tests mount `requests_mock` on it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import requests

from market_assets.core.folders import files_under, read_text
from market_assets.core.providers.base import (
    FetchResult,
    PermanentError,
    TransientError,
)
from market_assets.core.providers.http_status import error_for_status
from market_assets.core.reference.schemas import LISTING_COLUMNS, REFERENCE_SCHEMA
from market_assets.core.reference.sources import SnapshotRequest, first_session_on_or_after
from market_assets.core.reference.symbol_forms import cqs_from_nasdaq

VENDOR = "nasdaq_trader"
NASDAQ_LISTED_URL = "https://www.nasdaqtrader.com/dynamic/SymDir/nasdaqlisted.txt"
OTHER_LISTED_URL = "https://www.nasdaqtrader.com/dynamic/SymDir/otherlisted.txt"
NEW_YORK = ZoneInfo("America/New_York")

NASDAQ_LISTED_HEADER = (
    "Symbol",
    "Security Name",
    "Market Category",
    "Test Issue",
    "Financial Status",
    "Round Lot Size",
    "ETF",
    "NextShares",
)
OTHER_LISTED_HEADER = (
    "ACT Symbol",
    "Security Name",
    "Exchange",
    "CQS Symbol",
    "ETF",
    "Round Lot Size",
    "Test Issue",
    "NASDAQ Symbol",
)
EXCHANGES = {
    "A": "NYSE American",
    "N": "NYSE",
    "P": "NYSE Arca",
    "Z": "Cboe BZX",
    "V": "IEX",
    "M": "NYSE Texas",
    "Q": "NASDAQ",
    "G": "NASDAQ",
    "S": "NASDAQ",
}
_CREATED = re.compile(r"^File Creation Time:\s*(\d{10}:\d{2})")
_SETTINGS = {"kind", "nasdaq_listed_url", "other_listed_url", "timeout_s", "files_dir"}
_IGNORED = {"api_key_env", "secret_key_env", "requests_per_minute"}


@dataclass(frozen=True)
class DirectoryFile:
    """One parsed symbol directory: which one, its rows (listing columns), creation time."""

    name: str
    kind: str  # nasdaqlisted | otherlisted
    rows: pl.DataFrame
    created_at: dt.datetime


def parse_symbol_directory(text: str, name: str) -> DirectoryFile:
    """Parse nasdaqlisted.txt or otherlisted.txt (chosen by the header) into listing rows.

    Raises PermanentError naming `name` and the line when the header is neither directory's,
    a row has the wrong number of fields, or the `File Creation Time` line is missing (a
    truncated download).
    """
    lines = [line for line in text.lstrip("\ufeff").splitlines() if line.strip()]
    if not lines:
        raise _bad(name, "the file is empty")
    header = tuple(field.strip() for field in lines[0].split("|"))
    if header == NASDAQ_LISTED_HEADER:
        kind, parse_row = "nasdaqlisted", _nasdaq_row
    elif header == OTHER_LISTED_HEADER:
        kind, parse_row = "otherlisted", _other_row
    else:
        raise _bad(
            name,
            f"line 1: header {'|'.join(header)!r} is neither nasdaqlisted.txt's nor "
            "otherlisted.txt's",
        )
    created = _CREATED.match(lines[-1])
    if created is None:
        raise _bad(
            name,
            "no trailing 'File Creation Time' line: the file is truncated or not a NASDAQ "
            "Trader symbol directory",
        )
    created_at = dt.datetime.strptime(created.group(1), "%m%d%Y%H:%M").replace(tzinfo=NEW_YORK)
    records = []
    for number, line in enumerate(lines[1:-1], start=2):
        fields = [field.strip() for field in line.split("|")]
        if len(fields) != len(header):
            raise _bad(
                name, f"line {number}: {len(fields)} fields, expected {len(header)}: {line!r}"
            )
        records.append(parse_row(dict(zip(header, fields, strict=True))))
    published = created_at.astimezone(dt.UTC)
    rows = pl.DataFrame(records, schema={c: REFERENCE_SCHEMA[c] for c in _ROW_COLUMNS})
    rows = rows.with_columns(pl.lit(published).alias("published_at"))
    return DirectoryFile(name, kind, rows, created_at)


_ROW_COLUMNS = [c for c in LISTING_COLUMNS if c not in ("session", "published_at")]


def _nasdaq_row(row: Mapping[str, str]) -> dict[str, Any]:
    symbol = row["Symbol"]
    return {
        "symbol": cqs_from_nasdaq(symbol),
        "vendor_symbol": symbol,
        "name": row["Security Name"] or None,
        "exchange": "NASDAQ",
        "exchange_code": row["Market Category"] or None,
        "asset_type": asset_type(cqs_from_nasdaq(symbol), row["Security Name"], row["ETF"] == "Y"),
        "is_etf": row["ETF"] == "Y",
        "is_test_issue": row["Test Issue"] == "Y",
        "financial_status": row["Financial Status"] or None,
        "round_lot_size": _int_or_none(row["Round Lot Size"]),
    }


def _other_row(row: Mapping[str, str]) -> dict[str, Any]:
    nasdaq_form = row["NASDAQ Symbol"] or row["ACT Symbol"]
    symbol = row["CQS Symbol"].replace(" ", ".") or cqs_from_nasdaq(nasdaq_form)
    return {
        "symbol": symbol,
        "vendor_symbol": nasdaq_form,
        "name": row["Security Name"] or None,
        "exchange": EXCHANGES.get(row["Exchange"], row["Exchange"] or None),
        "exchange_code": row["Exchange"] or None,
        "asset_type": asset_type(symbol, row["Security Name"], row["ETF"] == "Y"),
        "is_etf": row["ETF"] == "Y",
        "is_test_issue": row["Test Issue"] == "Y",
        "financial_status": None,
        "round_lot_size": _int_or_none(row["Round Lot Size"]),
    }


_NAME_TYPES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bwarrants?\b", re.I), "warrant"),
    (re.compile(r"\brights?\b", re.I), "right"),
    (re.compile(r"\bunits?\b", re.I), "unit"),
    (re.compile(r"\bpreferred\b|\bpreference shares\b", re.I), "preferred"),
    (re.compile(r"\bdepositary (shares|receipts)\b|\bADS\b|\bADR\b", re.I), "adr"),
    (re.compile(r"\bnotes?\b|\bdebentures?\b|\bbonds?\b", re.I), "note"),
)


def asset_type(symbol: str, name: str, is_etf: bool) -> str:
    """A coarse asset type from the CQS suffix, else the security name's words.

    etf, warrant, unit, right, preferred, adr, note or stock (common and ordinary shares,
    closed-end funds and anything the name does not single out). A heuristic: the
    directories carry no asset-type field besides the ETF flag.
    """
    if is_etf:
        return "etf"
    if ".WS" in symbol:
        return "warrant"
    if symbol.endswith(".U"):
        return "unit"
    if re.search(r"[A-Z0-9]p[A-Z]?$", symbol):
        return "preferred"
    if re.search(r"[A-Z0-9]rw?$", symbol):
        return "right"
    for pattern, kind in _NAME_TYPES:
        if pattern.search(name):
            return kind
    return "stock"


def _int_or_none(value: str) -> int | None:
    try:
        return int(float(value))
    except ValueError:
        return None


def _bad(name: str, message: str) -> PermanentError:
    return PermanentError(f"{name}: {message}", vendor=VENDOR, dataset="reference")


class NasdaqTraderProvider:
    """Listings from the NASDAQ Trader symbol directories (HTTP or files under a folder)."""

    name = VENDOR

    def __init__(
        self,
        *,
        nasdaq_listed_url: str = NASDAQ_LISTED_URL,
        other_listed_url: str = OTHER_LISTED_URL,
        timeout_s: float = 30.0,
        files_dir: str | Path | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.urls = (nasdaq_listed_url, other_listed_url)
        self.timeout_s = timeout_s
        self.files_dir = Path(files_dir) if files_dir else None
        self._session = session

    @classmethod
    def from_config(cls, settings: Mapping[str, Any]) -> NasdaqTraderProvider:
        """Build from providers.yaml settings: nasdaq_listed_url, other_listed_url, timeout_s,
        files_dir. Raises ValueError naming an unknown key."""
        unknown = sorted(set(settings) - _SETTINGS - _IGNORED)
        if unknown:
            raise ValueError(
                f"unknown nasdaq_trader setting(s) {unknown}; known: {sorted(_SETTINGS)}"
            )
        return cls(
            nasdaq_listed_url=settings.get("nasdaq_listed_url", NASDAQ_LISTED_URL),
            other_listed_url=settings.get("other_listed_url", OTHER_LISTED_URL),
            timeout_s=float(settings.get("timeout_s", 30.0)),
            files_dir=settings.get("files_dir"),
        )

    @classmethod
    def file_datasets(cls, settings: Mapping[str, Any]) -> tuple[str, ...]:
        return ("reference",)

    @classmethod
    def file_patterns(cls, settings: Mapping[str, Any]) -> tuple[str, ...]:
        return ("nasdaqlisted*.txt", "otherlisted*.txt")

    @classmethod
    def from_files(cls, settings: Mapping[str, Any], directory: str | Path) -> NasdaqTraderProvider:
        return cls.from_config({**settings, "files_dir": str(directory)})

    def fetch_listings(self, request: SnapshotRequest) -> FetchResult:
        """Listing rows of the sessions in [start, end) that a directory describes.

        Raises PermanentError naming the file for a malformed directory, the HTTP error's
        class (error_for_status) for a failed download, TransientError on a connection error.
        """
        files, requests_made = self._directories()
        wanted = set(request.sessions())
        by_session: dict[dt.date, dict[str, DirectoryFile]] = {}
        for directory in sorted(files, key=lambda f: f.created_at):
            session = first_session_on_or_after(directory.created_at.date(), request.exchange)
            if session in wanted:
                by_session.setdefault(session, {})[directory.kind] = directory  # latest wins
        frames = []
        incomplete = []
        for session, kinds in sorted(by_session.items()):
            if len(kinds) < 2:
                missing = {"nasdaqlisted", "otherlisted"} - set(kinds)
                incomplete.append(f"{session}: no {', '.join(sorted(missing))}")
            for directory in kinds.values():
                frames.append(directory.rows.with_columns(pl.lit(session).alias("session")))
        frame = (
            pl.concat(frames).select(LISTING_COLUMNS)
            if frames
            else pl.DataFrame(schema={c: REFERENCE_SCHEMA[c] for c in LISTING_COLUMNS})
        )
        notes = {
            "directories": ", ".join(
                f"{d.name} ({d.created_at:%Y-%m-%d %H:%M} New York)" for d in files
            )
        }
        uncovered = sorted(wanted - set(by_session))
        if uncovered:
            notes["sessions_without_directory"] = _describe_sessions(uncovered)
        if incomplete:
            notes["incomplete_sessions"] = "; ".join(incomplete)
        return FetchResult(frame=frame, source=VENDOR, requests=requests_made, notes=notes)

    def _directories(self) -> tuple[list[DirectoryFile], int]:
        if self.files_dir is not None:
            return self._read_files(), 0
        return [self._download(url) for url in self.urls], len(self.urls)

    def _read_files(self) -> list[DirectoryFile]:
        if not self.files_dir.is_dir():
            raise PermanentError(
                f"folder {self.files_dir} does not exist", vendor=VENDOR, dataset="reference"
            )

        def unreadable(message: str) -> PermanentError:
            return PermanentError(message, vendor=VENDOR, dataset="reference")

        paths = files_under(self.files_dir, ("nasdaqlisted*.txt", "otherlisted*.txt"), unreadable)
        return [
            parse_symbol_directory(read_text(path, unreadable, errors="replace"), str(path))
            for path in paths
        ]

    def _download(self, url: str) -> DirectoryFile:
        session = self._session or requests.Session()
        try:
            response = session.get(url, timeout=self.timeout_s)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(f"{url}: {exc}", vendor=VENDOR, dataset="reference") from exc
        if response.status_code != 200:
            raise error_for_status(
                response.status_code,
                f"{url}: {response.text[:200]}",
                vendor=VENDOR,
                headers=response.headers,
                dataset="reference",
            )
        return parse_symbol_directory(response.text, url)


def _describe_sessions(sessions: Sequence[dt.date]) -> str:
    if len(sessions) <= 5:
        return ", ".join(day.isoformat() for day in sessions)
    return f"{len(sessions)} sessions from {sessions[0]} to {sessions[-1]}"
