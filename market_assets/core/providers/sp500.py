"""S&P 500 membership from three public source shapes, as one snapshot per session.

(a) Interval file (fja05680/sp500 `sp500_ticker_start_end.csv`): `ticker,start_date,end_date`,
    one row per membership interval, `end_date` empty while still a member and exclusive
    otherwise (the first day the ticker was no longer a member: FB ends 2022-06-09, the day
    META starts), tickers as of their membership. The snapshot of session d is every ticker
    with start_date <= d < end_date: exactly what a list published on d would have shown, so
    it needs nothing from after d. Sessions after the file's as-of date (the date in its name,
    `_2025-11` meaning 2025-11-01, or `intervals_as_of`) are not described.
(b) Current constituents table in the Wikipedia shape (datasets/s-and-p-500-companies
    `constituents.csv`: Symbol, Security, GICS Sector, GICS Sub-Industry, Headquarters
    Location, Date added, CIK, Founded): a snapshot of its as-of date (date in the file name,
    `constituents_as_of`, or the download day).
(c) iShares IVV holdings export: a BOM, metadata lines (`Fund Holdings as of,"Apr 06, 2023"`),
    the holdings table with quoted thousands-separated numbers, then a disclaimer. Rows whose
    Asset Class is not Equity (cash, futures, collateral, money market) are dropped and counted
    in the result's notes; tickers written without their class dot (BRKB) get it back when (a)
    or (b) know the dotted form (BRK.B). A snapshot of its "as of" date, with weights.

A session is described by the first of (a), (b), (c) that covers it.

Identity (CIKs): the table (b) gives the CIK of every current member from its `Date added`
on. When a current member's ticker starts in (a) later than its `Date added`, the company was
a member before under other tickers: the one interval of (a) that ends exactly when the
current ticker's starts is its previous ticker (FB ends 2022-06-09 when META starts; META was
added 2013-12-23), walked back until the chain reaches `Date added`. Those earlier tickers get
the same CIK, which is how ticker_history links FB to META. A chain that forks (several
intervals end that day) or never reaches `Date added` links nothing.

Transport seam: `session` is any `requests.Session`; tests mount `requests_mock` on it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import requests

from market_assets.core.calendar import get_calendar
from market_assets.core.folders import files_under, read_text
from market_assets.core.providers.base import FetchResult, PermanentError, TransientError
from market_assets.core.providers.http_status import error_for_status
from market_assets.core.reference.schemas import CONSTITUENT_SCHEMA
from market_assets.core.reference.sources import ConstituentsRequest, first_session_on_or_after
from market_assets.core.reference.symbol_forms import cqs_from_compact, cqs_from_nasdaq

VENDOR = "sp500"
NEW_YORK = ZoneInfo("America/New_York")
INDEX = "SP500"
INTERVALS_URL = "https://raw.githubusercontent.com/fja05680/sp500/master/sp500_ticker_start_end.csv"
CONSTITUENTS_URL = (
    "https://raw.githubusercontent.com/datasets/s-and-p-500-companies/main/data/constituents.csv"
)
HOLDINGS_URL = (
    "https://www.ishares.com/us/products/239726/ishares-core-sp-500-etf/1467271812596.ajax"
    "?fileType=csv&fileName=IVV_holdings&dataType=fund"
)
INTERVAL_COLUMNS = ("ticker", "start_date", "end_date")
TABLE_COLUMNS = ("Symbol", "Security", "CIK")
HOLDINGS_HEADER_START = "Ticker,Name,"
RENAME_TOLERANCE_DAYS = 10  # interval files lag the table's `Date added` by a session or two
_DAY = re.compile(r"(\d{4}-\d{2}-\d{2})")
_MONTH = re.compile(r"(\d{4}-\d{2})(?!-\d)")
_SETTINGS = {
    "kind",
    "intervals_url",
    "constituents_url",
    "holdings_url",
    "intervals_as_of",
    "constituents_as_of",
    "timeout_s",
    "files_dir",
}
_IGNORED = {"api_key_env", "secret_key_env", "requests_per_minute"}


@dataclass
class Sources:
    """What the provider read: the three shapes (any may be missing) and their dates."""

    intervals: pl.DataFrame | None = None  # symbol, start, end
    intervals_as_of: dt.date | None = None
    intervals_name: str = ""
    table: pl.DataFrame | None = None  # symbol, name, cik, date_added
    table_as_of: dt.date | None = None
    table_name: str = ""
    holdings: pl.DataFrame | None = None  # ticker, name, asset_class, weight
    holdings_as_of: dt.date | None = None
    holdings_name: str = ""
    notes: dict[str, str] = field(default_factory=dict)


def _bad(name: str, message: str) -> PermanentError:
    return PermanentError(f"{name}: {message}", vendor=VENDOR, dataset="index_constituents")


def _canonical(ticker: str) -> str:
    return cqs_from_nasdaq(ticker.strip().upper().replace("/", "."))


def date_from_name(name: str) -> dt.date | None:
    """The as-of date a file name carries: YYYY-MM-DD, or YYYY-MM meaning its first day."""
    base = Path(name).name
    if found := _DAY.search(base):
        return dt.date.fromisoformat(found.group(1))
    if found := _MONTH.search(base):
        return dt.date.fromisoformat(f"{found.group(1)}-01")
    return None


def parse_intervals(text: str, name: str) -> pl.DataFrame:
    """`ticker,start_date,end_date` -> (symbol, start, end); PermanentError names the line."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = tuple(h.strip() for h in next(reader, ()))
    if header[:3] != INTERVAL_COLUMNS:
        raise _bad(name, f"line 1: expected columns {','.join(INTERVAL_COLUMNS)}, got {header}")
    records = []
    for number, row in enumerate(reader, start=2):
        if not row or not "".join(row).strip():
            continue
        try:
            start = dt.date.fromisoformat(row[1].strip())
            end = dt.date.fromisoformat(row[2].strip()) if len(row) > 2 and row[2].strip() else None
        except (ValueError, IndexError) as exc:
            raise _bad(name, f"line {number}: bad date in {row!r}: {exc}") from exc
        if end is not None and end <= start:
            raise _bad(name, f"line {number}: end_date {end} is not after start_date {start}")
        records.append({"symbol": _canonical(row[0]), "start": start, "end": end})
    return pl.DataFrame(
        records, schema={"symbol": pl.String(), "start": pl.Date(), "end": pl.Date()}
    )


def parse_constituents_table(text: str, name: str) -> pl.DataFrame:
    """The Wikipedia-shaped table -> (symbol, name, cik, date_added)."""
    frame = pl.read_csv(
        io.StringIO(text.lstrip("\ufeff")), infer_schema=False, truncate_ragged_lines=True
    )
    missing = [c for c in TABLE_COLUMNS if c not in frame.columns]
    if missing:
        raise _bad(name, f"missing column(s) {missing}; columns are {frame.columns}")
    added = pl.col("Date added") if "Date added" in frame.columns else pl.lit(None, pl.String)
    return frame.select(
        pl.col("Symbol").map_elements(_canonical, return_dtype=pl.String).alias("symbol"),
        pl.col("Security").alias("name"),
        pl.col("CIK").str.strip_chars().cast(pl.Int64, strict=False).alias("cik"),
        added.str.strip_chars().str.to_date("%Y-%m-%d", strict=False).alias("date_added"),
    )


def parse_holdings(text: str, name: str) -> tuple[dt.date, pl.DataFrame]:
    """An iShares holdings export -> (as-of date, rows: ticker, name, asset_class, weight).

    Raises PermanentError naming `name` when the `Fund Holdings as of` line or the holdings
    header is missing, or a weight is not a number.
    """
    lines = text.lstrip("\ufeff").splitlines()
    as_of = None
    header_at = None
    for number, line in enumerate(lines):
        if line.startswith("Fund Holdings as of"):
            value = next(csv.reader([line]))[1]
            as_of = dt.datetime.strptime(value.strip(), "%b %d, %Y").date()
        if line.startswith(HOLDINGS_HEADER_START):
            header_at = number
            break
    if as_of is None:
        raise _bad(name, "no 'Fund Holdings as of' line: not an iShares holdings export")
    if header_at is None:
        raise _bad(name, "no holdings header (Ticker,Name,...) found")
    table_lines = []
    for line in lines[header_at:]:
        if not line.strip() or line.strip() == "\xa0":
            break  # a blank line ends the table; the disclaimer follows
        table_lines.append(line)
    frame = pl.read_csv(io.StringIO("\n".join(table_lines)), infer_schema=False)
    for column in ("Ticker", "Name", "Asset Class", "Weight (%)"):
        if column not in frame.columns:
            raise _bad(name, f"missing column {column!r}; columns are {frame.columns}")
    rows = frame.select(
        pl.col("Ticker").str.strip_chars().alias("ticker"),
        pl.col("Name").alias("name"),
        pl.col("Asset Class").alias("asset_class"),
        pl.col("Weight (%)")
        .str.replace_all(",", "")
        .cast(pl.Float64, strict=False)
        .alias("weight"),
    )
    bad = rows.filter(pl.col("weight").is_null())
    if bad.height:
        raise _bad(name, f"weight is not a number for {bad['ticker'].to_list()[:5]}")
    return as_of, rows


def snapshot_from_intervals(intervals: pl.DataFrame, sessions: list[dt.date]) -> pl.DataFrame:
    """(session, symbol) for every session in `sessions` and interval with start <= session <
    end (end null: open). Uses only intervals that started on or before each session."""
    if not sessions or intervals.is_empty():
        return pl.DataFrame(schema={"session": pl.Date(), "symbol": pl.String()})
    days = pl.Series("session", sorted(sessions), dtype=pl.Date())
    spans = intervals.with_columns(
        pl.lit(days).search_sorted(pl.col("start"), side="left").alias("_first"),
        pl.lit(days)
        .search_sorted(pl.col("end").fill_null(dt.date.max), side="left")
        .alias("_stop"),
    ).filter(pl.col("_stop") > pl.col("_first"))
    return (
        spans.select("symbol", pl.int_ranges("_first", "_stop", dtype=pl.UInt32).alias("_position"))
        .explode("_position")
        .select(pl.lit(days).gather(pl.col("_position")).alias("session"), "symbol")
        .sort("session", "symbol")
    )


def identity_hints(
    intervals: pl.DataFrame | None, table: pl.DataFrame | None
) -> tuple[pl.DataFrame, list[tuple[str, str, dt.date]]]:
    """CIKs (and names) by symbol from a session on, and the renames the chains imply.

    Returns (hints: symbol, since, cik, name) and renames as (old, new, date). See the module
    docstring for the rule.
    """
    schema = {"symbol": pl.String(), "since": pl.Date(), "cik": pl.Int64(), "name": pl.String()}
    if table is None or table.is_empty():
        return pl.DataFrame(schema=schema), []
    tolerance = dt.timedelta(days=RENAME_TOLERANCE_DAYS)
    hints: list[dict[str, Any]] = []
    renames: list[tuple[str, str, dt.date]] = []
    by_end: dict[dt.date, list[dict[str, Any]]] = {}
    current: dict[str, dict[str, Any]] = {}
    if intervals is not None:
        for row in intervals.iter_rows(named=True):
            if row["end"] is not None:
                by_end.setdefault(row["end"], []).append(row)
            else:
                current[row["symbol"]] = row
    for member in table.filter(pl.col("cik").is_not_null()).iter_rows(named=True):
        added = member["date_added"]
        since = added - tolerance if added else dt.date.min
        hints.append({**member, "since": since})
        interval = current.get(member["symbol"])
        if interval is None or added is None:
            continue
        chain = []
        link = interval
        while link["start"] > added + tolerance:
            predecessors = by_end.get(link["start"], [])
            if len(predecessors) != 1:
                chain = []
                break
            chain.append((predecessors[0]["symbol"], link["symbol"], link["start"]))
            link = predecessors[0]
        # The chain must reach `Date added` itself: a member added before the interval file
        # begins cannot be told from a same-day replacement, so it links nothing.
        reaches_added = abs(link["start"] - added) <= tolerance
        for old, new, day in chain if reaches_added else []:
            hints.append({"symbol": old, "since": since, "cik": member["cik"], "name": None})
            renames.append((old, new, day))
    frame = pl.DataFrame(hints, schema=schema) if hints else pl.DataFrame(schema=schema)
    return frame, renames


def apply_hints(
    rows: pl.DataFrame, hints: pl.DataFrame, names_since: dt.date | None = None
) -> pl.DataFrame:
    """Fill `cik` from the latest hint of each symbol on or before the row's session, and a
    missing `name` only on sessions from `names_since` (the table's own date) on.

    A CIK never changes, so it can label a ticker's earlier sessions; a name can (Google ->
    Alphabet), so today's name never labels a past session.
    """
    if hints.is_empty() or rows.is_empty():
        return rows
    joined = rows.sort("session").join_asof(
        hints.sort("since").rename({"cik": "_cik", "name": "_name"}),
        left_on="session",
        right_on="since",
        by="symbol",
        strategy="backward",
        check_sortedness=False,  # both sides are sorted by their date above
    )
    named = pl.col("session") >= names_since if names_since is not None else pl.lit(False)
    return joined.with_columns(
        pl.coalesce("cik", "_cik").alias("cik"),
        pl.coalesce("name", pl.when(named).then(pl.col("_name"))).alias("name"),
    ).drop("since", "_cik", "_name")


class Sp500Provider:
    """S&P 500 members per session from an interval file, a constituents table and an iShares
    holdings export (HTTP or files under a folder)."""

    name = VENDOR
    indexes = (INDEX,)

    def __init__(
        self,
        *,
        intervals_url: str = INTERVALS_URL,
        constituents_url: str = CONSTITUENTS_URL,
        holdings_url: str = HOLDINGS_URL,
        intervals_as_of: dt.date | None = None,
        constituents_as_of: dt.date | None = None,
        timeout_s: float = 30.0,
        files_dir: str | Path | None = None,
        session: requests.Session | None = None,
        today: dt.date | None = None,
    ) -> None:
        self.urls = {
            "intervals": intervals_url,
            "constituents": constituents_url,
            "holdings": holdings_url,
        }
        self.intervals_as_of = intervals_as_of
        self.constituents_as_of = constituents_as_of
        self.timeout_s = timeout_s
        self.files_dir = Path(files_dir) if files_dir else None
        self._session = session
        self._today = today

    @classmethod
    def from_config(cls, settings: Mapping[str, Any]) -> Sp500Provider:
        """Build from providers.yaml settings (intervals_url, constituents_url, holdings_url:
        "" turns a source off; intervals_as_of, constituents_as_of: YYYY-MM-DD; timeout_s;
        files_dir). Raises ValueError naming an unknown key or a bad date."""
        unknown = sorted(set(settings) - _SETTINGS - _IGNORED)
        if unknown:
            raise ValueError(f"unknown sp500 setting(s) {unknown}; known: {sorted(_SETTINGS)}")

        def day(key: str) -> dt.date | None:
            value = settings.get(key)
            if value is None or isinstance(value, dt.date):
                return value
            try:
                return dt.date.fromisoformat(str(value))
            except ValueError:
                raise ValueError(f"settings.{key}={value!r} is not a date (YYYY-MM-DD)") from None

        return cls(
            intervals_url=settings.get("intervals_url", INTERVALS_URL),
            constituents_url=settings.get("constituents_url", CONSTITUENTS_URL),
            holdings_url=settings.get("holdings_url", HOLDINGS_URL),
            intervals_as_of=day("intervals_as_of"),
            constituents_as_of=day("constituents_as_of"),
            timeout_s=float(settings.get("timeout_s", 30.0)),
            files_dir=settings.get("files_dir"),
        )

    @classmethod
    def file_datasets(cls, settings: Mapping[str, Any]) -> tuple[str, ...]:
        return ("index_constituents",)

    @classmethod
    def file_patterns(cls, settings: Mapping[str, Any]) -> tuple[str, ...]:
        return ("*ticker_start_end*.csv", "*constituents*.csv", "*holdings*.csv")

    @classmethod
    def from_files(cls, settings: Mapping[str, Any], directory: str | Path) -> Sp500Provider:
        return cls.from_config({**settings, "files_dir": str(directory)})

    # -- public ---------------------------------------------------------------------------

    def fetch_constituents(self, request: ConstituentsRequest) -> FetchResult:
        """Members of the S&P 500 on each session in [start, end) that a source describes.

        Raises BadRequestError-like PermanentError for another index, PermanentError naming
        the file for a malformed source, the HTTP error's class for a failed download.
        """
        if request.index != INDEX:
            raise PermanentError(
                f"provider sp500 knows only {INDEX}, not {request.index!r}",
                vendor=VENDOR,
                dataset="index_constituents",
            )
        sources, requests_made = self.read_sources()
        sessions = request.sessions()
        frame, notes = self.snapshots(sources, sessions)
        return FetchResult(frame=frame, source=VENDOR, requests=requests_made, notes=notes)

    def snapshots(
        self, sources: Sources, sessions: list[dt.date]
    ) -> tuple[pl.DataFrame, dict[str, str]]:
        """CONSTITUENT_SCHEMA rows for `sessions` from `sources`, and notes for the run."""
        notes = dict(sources.notes)
        remaining = sorted(sessions)
        frames = []
        if sources.intervals is not None:
            limit = sources.intervals_as_of
            covered = [d for d in remaining if limit is None or d <= limit]
            rows = snapshot_from_intervals(sources.intervals, covered)
            frames.append(_rows(rows, f"intervals:{Path(sources.intervals_name).name}"))
            remaining = [d for d in remaining if d not in set(covered)]
        for label, as_of, name, table in (
            ("constituents", sources.table_as_of, sources.table_name, sources.table),
            (
                "holdings",
                sources.holdings_as_of,
                sources.holdings_name,
                self._holding_rows(sources),
            ),
        ):
            if table is None or as_of is None:
                continue
            session = first_session_on_or_after(as_of)
            if session in remaining:
                rows = table.select(pl.lit(session).alias("session"), pl.exclude("date_added"))
                frames.append(_rows(rows, f"{label}:{Path(name).name}"))
                remaining.remove(session)
        hints, renames = identity_hints(sources.intervals, sources.table)
        frame = (
            pl.concat(frames, how="diagonal_relaxed")
            if frames
            else pl.DataFrame(schema=CONSTITUENT_SCHEMA)
        )
        frame = apply_hints(_conform(frame), hints, sources.table_as_of).select(
            list(CONSTITUENT_SCHEMA)
        )
        if remaining:
            notes["sessions_without_source"] = (
                f"{len(remaining)} session(s) from {remaining[0]} to {remaining[-1]}"
            )
        notes["renames_inferred"] = str(len(renames))
        return frame.sort("session", "symbol"), notes

    # -- reading --------------------------------------------------------------------------

    def _holding_rows(self, sources: Sources) -> pl.DataFrame | None:
        if sources.holdings is None:
            return None
        known: set[str] = set()
        if sources.table is not None:
            known |= set(sources.table["symbol"].to_list())
        if sources.intervals is not None:
            known |= set(sources.intervals["symbol"].to_list())
        return sources.holdings.filter(pl.col("asset_class") == "Equity").select(
            pl.col("ticker")
            .map_elements(lambda t: cqs_from_compact(t, known), return_dtype=pl.String)
            .alias("symbol"),
            "name",
            "weight",
        )

    def read_sources(self) -> tuple[Sources, int]:
        """Read (files) or download (API) every configured source shape; (sources, requests)."""
        texts: dict[str, tuple[str, str]] = {}
        requests_made = 0
        if self.files_dir is not None:
            texts = self._read_files()
        else:
            for label, url in self.urls.items():
                if url:
                    texts[label] = (self._download(url), url)
                    requests_made += 1
        sources = Sources()
        if "intervals" in texts:
            text, name = texts["intervals"]
            sources.intervals = parse_intervals(text, name)
            sources.intervals_name = name
            sources.intervals_as_of = (
                self.intervals_as_of or date_from_name(name) or _latest_date(sources.intervals)
            )
        if "constituents" in texts:
            text, name = texts["constituents"]
            sources.table = parse_constituents_table(text, name)
            sources.table_name = name
            sources.table_as_of = self.constituents_as_of or (
                date_from_name(name)
                if self.files_dir
                else (self._today or dt.datetime.now(NEW_YORK).date())
            )
            if sources.table_as_of is None:
                sources.notes["constituents"] = (
                    f"{Path(name).name} is undated: used for CIKs and renames only (name it "
                    "*_YYYY-MM-DD.csv or set constituents_as_of to use it as a snapshot)"
                )
        if "holdings" in texts:
            text, name = texts["holdings"]
            sources.holdings_as_of, sources.holdings = parse_holdings(text, name)
            sources.holdings_name = name
            dropped = sources.holdings.filter(pl.col("asset_class") != "Equity")
            if dropped.height:
                counts = dropped.group_by("asset_class").len().sort("asset_class").rows()
                sources.notes["holdings_rows_dropped"] = ", ".join(f"{k}: {v}" for k, v in counts)
        return sources, requests_made

    def _read_files(self) -> dict[str, tuple[str, str]]:
        if not self.files_dir.is_dir():
            raise PermanentError(
                f"folder {self.files_dir} does not exist",
                vendor=VENDOR,
                dataset="index_constituents",
            )
        found: dict[str, tuple[str, str]] = {}
        for label, pattern in zip(
            ("intervals", "constituents", "holdings"), self.file_patterns({}), strict=True
        ):
            paths = sorted(
                files_under(
                    self.files_dir,
                    pattern,
                    lambda message: PermanentError(
                        message, vendor=VENDOR, dataset="index_constituents"
                    ),
                ),
                key=lambda p: (date_from_name(p.name) or dt.date.min, p.name),
            )
            if paths:  # the newest by the date in its name
                text = read_text(
                    paths[-1],
                    lambda message: PermanentError(
                        message, vendor=VENDOR, dataset="index_constituents"
                    ),
                    encoding="utf-8-sig",
                )
                found[label] = (text, str(paths[-1]))
        return found

    def _download(self, url: str) -> str:
        session = self._session or requests.Session()
        try:
            response = session.get(url, timeout=self.timeout_s)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(
                f"{url}: {exc}", vendor=VENDOR, dataset="index_constituents"
            ) from exc
        if response.status_code != 200:
            raise error_for_status(
                response.status_code,
                f"{url}: {response.text[:200]}",
                vendor=VENDOR,
                headers=response.headers,
                dataset="index_constituents",
            )
        response.encoding = response.encoding or "utf-8"
        return response.text


def _latest_date(intervals: pl.DataFrame) -> dt.date | None:
    latest = intervals.select(pl.max_horizontal(pl.col("start").max(), pl.col("end").max()))
    return latest.item()


def _rows(frame: pl.DataFrame, detail: str) -> pl.DataFrame:
    return frame.with_columns(pl.lit(detail).alias("source_detail"))


def _conform(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(
        pl.col(n).cast(t) if n in frame.columns else pl.lit(None, t).alias(n)
        for n, t in CONSTITUENT_SCHEMA.items()
    ).with_columns(pl.lit(INDEX).alias("index"), pl.lit(VENDOR).alias("source"))


def sessions_between(start: dt.date, end: dt.date, exchange: str = "XNYS") -> list[dt.date]:
    """Sessions in [start, end)."""
    return get_calendar(exchange).sessions(start, end - dt.timedelta(days=1))
