"""SEC company_tickers.json: ticker -> CIK (Central Index Key) and company name.

`https://www.sec.gov/files/company_tickers.json` is one JSON object of rows
`{"0": {"cik_str": 789019, "ticker": "MSFT", "title": "MICROSOFT CORP"}, ...}`, the SEC's
current map (no history). Tickers are in the SEC's spelling (`BRK-B`, `JPM-PC`) and become
the canonical CQS form (`BRK.B`, `JPMpC`) in `symbol`; the SEC's own stays in `sec_ticker`.

The SEC's fair-access rules apply to every request: a User-Agent naming you and a contact
address (`settings.user_agent: "Jane Doe jane@example.org"`, or `user_agent_env: VARIABLE`
naming an environment variable that holds it; there is no default, so nobody is
impersonated), and at most 10 requests per second from one machine, which a process-wide
pyrate-limiter bucket enforces for every instance.

The API map describes the day it is fetched; a file read with `--files DIR`
(`company_tickers*.json` anywhere under DIR) describes the date in its name
(`company_tickers_2025-07-21.json`) or, undated, is used for every requested session and
flagged as such in the run's metadata (`cik_map: undated`).

Transport seam: `session` is any `requests.Session`; tests mount `requests_mock` on it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import requests
from pyrate_limiter import Duration, InMemoryBucket, Limiter, Rate, SingleBucketFactory

from market_assets.core.folders import files_under, read_text
from market_assets.core.providers.base import AuthError, FetchResult, PermanentError, TransientError
from market_assets.core.providers.http_status import error_for_status
from market_assets.core.reference.schemas import CIK_MAP_SCHEMA
from market_assets.core.reference.sources import SnapshotRequest
from market_assets.core.reference.symbol_forms import cqs_from_sec

VENDOR = "sec_tickers"
NEW_YORK = ZoneInfo(
    "America/New_York"
)  # "today" is the exchange's date (22:00 NY is UTC's tomorrow)
COMPANY_TICKERS_URL = "https://www.sec.gov/files/company_tickers.json"
SEC_REQUESTS_PER_SECOND = 10
_DATE_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")
_SETTINGS = {"kind", "url", "user_agent", "user_agent_env", "timeout_s", "files_dir"}
_IGNORED = {"api_key_env", "secret_key_env", "requests_per_minute"}


def sec_limiter() -> Limiter:
    """A pyrate-limiter bucket of SEC_REQUESTS_PER_SECOND requests per rolling second."""
    bucket = InMemoryBucket([Rate(SEC_REQUESTS_PER_SECOND, Duration.SECOND)])
    return Limiter(SingleBucketFactory(bucket, schedule_leak=False))


SEC_LIMITER = sec_limiter()
"""Every request to sec.gov from this process takes a token here first (10 per second)."""


def parse_company_tickers(text: str, name: str, as_of: dt.date | None) -> pl.DataFrame:
    """company_tickers.json text -> CIK_MAP_SCHEMA rows (one per ticker).

    Raises PermanentError naming `name` when the text is not JSON or a row lacks
    `cik_str` / `ticker`.
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad(name, f"not JSON: {exc}") from exc
    rows = document.values() if isinstance(document, dict) else document
    records = []
    for position, row in enumerate(rows):
        if not isinstance(row, dict) or "cik_str" not in row or not row.get("ticker"):
            raise _bad(name, f"row {position}: expected cik_str, ticker and title, got {row!r}")
        ticker = str(row["ticker"])
        records.append(
            {
                "as_of": as_of,
                "symbol": cqs_from_sec(ticker),
                "sec_ticker": ticker,
                "cik": int(row["cik_str"]),
                "name": row.get("title"),
            }
        )
    return pl.DataFrame(records, schema=CIK_MAP_SCHEMA)


def _bad(name: str, message: str) -> PermanentError:
    return PermanentError(f"{name}: {message}", vendor=VENDOR, dataset="reference")


class SecTickersProvider:
    """The SEC's ticker -> CIK map, over HTTP (with a User-Agent) or from files."""

    name = VENDOR

    def __init__(
        self,
        *,
        url: str = COMPANY_TICKERS_URL,
        user_agent: str | None = None,
        user_agent_env: str | None = None,
        timeout_s: float = 30.0,
        files_dir: str | Path | None = None,
        session: requests.Session | None = None,
        today: dt.date | None = None,
    ) -> None:
        self.url = url
        self._user_agent = user_agent
        self.user_agent_env = user_agent_env
        self.timeout_s = timeout_s
        self.files_dir = Path(files_dir) if files_dir else None
        self._session = session
        self._today = today

    @classmethod
    def from_config(cls, settings: Mapping[str, Any]) -> SecTickersProvider:
        """Build from providers.yaml settings: url, user_agent or user_agent_env, timeout_s,
        files_dir. Raises ValueError naming an unknown key."""
        unknown = sorted(set(settings) - _SETTINGS - _IGNORED)
        if unknown:
            raise ValueError(
                f"unknown sec_tickers setting(s) {unknown}; known: {sorted(_SETTINGS)}"
            )
        return cls(
            url=settings.get("url", COMPANY_TICKERS_URL),
            user_agent=settings.get("user_agent"),
            user_agent_env=settings.get("user_agent_env"),
            timeout_s=float(settings.get("timeout_s", 30.0)),
            files_dir=settings.get("files_dir"),
        )

    @classmethod
    def file_datasets(cls, settings: Mapping[str, Any]) -> tuple[str, ...]:
        return ("reference",)

    @classmethod
    def file_patterns(cls, settings: Mapping[str, Any]) -> tuple[str, ...]:
        return ("company_tickers*.json",)

    @classmethod
    def from_files(cls, settings: Mapping[str, Any], directory: str | Path) -> SecTickersProvider:
        return cls.from_config({**settings, "files_dir": str(directory)})

    def user_agent(self) -> str:
        """The User-Agent every SEC request carries; AuthError when none is configured."""
        agent = self._user_agent
        if not agent and self.user_agent_env:
            agent = os.environ.get(self.user_agent_env)
        if not agent or not agent.strip():
            where = (
                f"environment variable {self.user_agent_env} is empty"
                if self.user_agent_env
                else "no settings.user_agent or settings.user_agent_env in providers.yaml"
            )
            raise AuthError(
                f"the SEC requires a User-Agent naming you and a contact address "
                f"(e.g. 'Jane Doe jane@example.org'): {where}",
                vendor=VENDOR,
                dataset="reference",
            )
        return agent.strip()

    def fetch_cik_map(self, request: SnapshotRequest) -> FetchResult:
        """The ticker -> CIK maps that can describe sessions in [start, end).

        From files: every dated file whose date is at most the last requested session, plus
        undated files (`as_of` null). From the API: today's map, when today is a requested
        session or after it (a map fetched today never describes an earlier session).
        """
        if self.files_dir is not None:
            frames, names = self._read_files(request)
            notes = {"cik_maps": ", ".join(names) or "none"}
            if any(frame["as_of"].null_count() for frame in frames):
                notes["cik_map"] = "undated"
            frame = pl.concat(frames) if frames else pl.DataFrame(schema=CIK_MAP_SCHEMA)
            return FetchResult(frame=frame, source=VENDOR, requests=0, notes=notes)
        today = self._today or dt.datetime.now(NEW_YORK).date()
        sessions = request.sessions()
        if not sessions or today < sessions[0] or today > sessions[-1]:
            return FetchResult(
                frame=pl.DataFrame(schema=CIK_MAP_SCHEMA),
                source=VENDOR,
                notes={
                    "cik_map": f"the SEC serves only today's map ({today}); no session of "
                    f"[{request.start}, {request.end}) is today"
                },
            )
        text = self._download()
        frame = parse_company_tickers(text, self.url, today)
        return FetchResult(frame=frame, source=VENDOR, requests=1, notes={"cik_maps": self.url})

    def _read_files(self, request: SnapshotRequest) -> tuple[list[pl.DataFrame], list[str]]:
        if not self.files_dir.is_dir():
            raise PermanentError(
                f"folder {self.files_dir} does not exist", vendor=VENDOR, dataset="reference"
            )
        last = request.end - dt.timedelta(days=1)
        frames, names = [], []
        unreadable = lambda message: PermanentError(message, vendor=VENDOR, dataset="reference")  # noqa: E731
        for path in files_under(self.files_dir, "company_tickers*.json", unreadable):
            found = _DATE_IN_NAME.search(path.name)
            as_of = dt.date.fromisoformat(found.group(1)) if found else None
            if as_of is not None and as_of > last:
                continue  # published after every requested session: not knowable then
            frames.append(parse_company_tickers(read_text(path, unreadable), str(path), as_of))
            names.append(f"{path.name} ({as_of or 'undated'})")
        return frames, names

    def _download(self) -> str:
        headers = {"User-Agent": self.user_agent(), "Accept-Encoding": "gzip, deflate"}
        session = self._session or requests.Session()
        SEC_LIMITER.try_acquire(VENDOR)
        try:
            response = session.get(self.url, headers=headers, timeout=self.timeout_s)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(f"{self.url}: {exc}", vendor=VENDOR, dataset="reference") from exc
        if response.status_code != 200:
            raise error_for_status(
                response.status_code,
                f"{self.url}: {response.text[:200]}",
                vendor=VENDOR,
                headers=response.headers,
                dataset="reference",
            )
        return response.text
