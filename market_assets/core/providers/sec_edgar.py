"""The `sec_edgar` provider: every XBRL fact a company filed, from SEC EDGAR's companyfacts API
or from companyfacts JSON files, with no key.

Live API (plain HTTP through `requests`; the JSON is parsed by
market_assets.core.fundamentals.companyfacts):

- ticker -> CIK from https://www.sec.gov/files/company_tickers.json, fetched once per provider
  (class shares: BRK.B is BRK-B there);
- facts from https://data.sec.gov/api/xbrl/companyfacts/CIK##########.json, one request per
  symbol, all periods and filings at once.

SEC requires every automated client to declare who it is in the User-Agent ("Sample Company
Name AdminContact@example.com"). It comes from `settings.user_agent`, else from the
environment variable named by `settings.user_agent_env` (default SEC_EDGAR_USER_AGENT). There is
no default: a live request without one (or without an e-mail address in it) is refused with
AuthError before anything is sent. SEC allows 10 requests per second; providers.yaml sets
`requests_per_minute: 600` for the registry's limiter, and the registry retries:

    HTTP 429                                   RateLimitedError (Retry-After when sent)
    HTTP 403 "Request Rate Threshold Exceeded" RateLimitedError (SEC blocks for 10 minutes)
    HTTP 403 otherwise (undeclared tool)       AuthError naming the User-Agent setting
    HTTP 5xx, timeout, connection reset        TransientError
    HTTP 404 / ticker not in company_tickers   that symbol in `failures` (UnknownSymbolError)
    body not JSON or not companyfacts-shaped   that symbol in `failures`, naming the field

Files (`settings.directory`, or `market-assets ingest --files DIR`): `CIK##########.json` (SEC's
bulk companyfacts.zip names) or `<ticker>_companyfacts.json`, found anywhere under the folder;
`company_tickers.json` there, when present, maps the ticker to its CIK (and a file whose `cik`
disagrees is refused). No request is sent and no User-Agent is needed.

Transport seam: the constructor takes a `requests.Session`; `from_config` asks the
module-level `make_session()` for one, which tests replace to inject a requests_mock adapter.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl
import requests

from market_assets.core.folders import files_under
from market_assets.core.fundamentals.companyfacts import (
    parse_company_tickers,
    parse_companyfacts,
    sec_ticker,
)
from market_assets.core.providers.base import (
    AuthError,
    FetchResult,
    FundamentalsRequest,
    NoDataError,
    ProviderError,
    RateLimitedError,
    TransientError,
    UnknownSymbolError,
)
from market_assets.core.providers.http_status import error_for_status
from market_assets.core.schemas import FUNDAMENTAL_SCHEMA

VENDOR = "sec_edgar"
DATASET = "fundamentals"
FACTS_URL = "https://data.sec.gov/api/xbrl/companyfacts/CIK{cik:010d}.json"
TICKERS_URL = "https://www.sec.gov/files/company_tickers.json"
TICKERS_FILE = "company_tickers.json"
DEFAULT_USER_AGENT_ENV = "SEC_EDGAR_USER_AGENT"
DEFAULT_TIMEOUT_S = 30.0
RATE_BLOCK_SECONDS = 600.0  # SEC blocks a client that exceeds 10 requests/s for 10 minutes
IGNORED_SETTINGS = ("kind", "api_key_env", "secret_key_env", "requests_per_minute")
ALLOWED_SETTINGS = ("user_agent", "user_agent_env", "timeout_s", "directory")


def make_session() -> requests.Session:
    """The HTTP session a provider built from config uses. Tests replace this function."""
    return requests.Session()


def empty_facts() -> pl.DataFrame:
    return pl.DataFrame(schema=FUNDAMENTAL_SCHEMA)


class SecEdgarProvider:
    """SEC EDGAR companyfacts: every fact of every filing, per symbol.

    `user_agent` is required for the live API only; `directory` switches to reading
    companyfacts files there (no network). `timeout` is seconds per request.
    """

    name = VENDOR

    def __init__(
        self,
        *,
        user_agent: str | None = None,
        session: requests.Session | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        directory: str | os.PathLike[str] | None = None,
        user_agent_source: str = f"settings.user_agent or ${DEFAULT_USER_AGENT_ENV}",
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.user_agent = (user_agent or "").strip() or None
        self.session = session if session is not None else make_session()
        self.timeout = float(timeout)
        self.directory = Path(directory) if directory is not None else None
        self._user_agent_source = user_agent_source
        self._tickers: dict[str, int] | None = None
        self._ticker_requests = 0  # company_tickers.json requests not yet reported

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_config(cls, settings: Mapping[str, Any]) -> SecEdgarProvider:
        """Build from a providers.yaml entry: `user_agent`, `user_agent_env` (default
        SEC_EDGAR_USER_AGENT), `timeout_s` (default 30), `directory` (read files instead).

        The vendor-generic keys are accepted and ignored (the registry applies
        `requests_per_minute`); any other key raises ValueError naming it.
        """
        options = dict(settings)
        kind = options.get("kind", VENDOR)
        if kind != VENDOR:
            raise ValueError(f"SecEdgarProvider cannot be built from kind {kind!r}")
        for key in IGNORED_SETTINGS:
            options.pop(key, None)
        unknown = sorted(set(options) - set(ALLOWED_SETTINGS))
        if unknown:
            raise ValueError(
                f"unknown setting(s) {unknown} for the sec_edgar provider; "
                f"allowed: {', '.join(ALLOWED_SETTINGS)}"
            )
        env_name = str(options.get("user_agent_env") or DEFAULT_USER_AGENT_ENV)
        user_agent = options.get("user_agent") or os.environ.get(env_name)
        return cls(
            user_agent=user_agent,
            session=make_session(),
            timeout=float(options.get("timeout_s", DEFAULT_TIMEOUT_S)),
            directory=options.get("directory"),
            user_agent_source=f"settings.user_agent or ${env_name}",
        )

    @classmethod
    def file_datasets(cls, settings: Mapping[str, Any]) -> tuple[str, ...]:
        """Datasets this provider reads from companyfacts JSON files."""
        return (DATASET,)

    @classmethod
    def file_patterns(cls, settings: Mapping[str, Any]) -> tuple[str, ...]:
        return ("*companyfacts*.json", "CIK??????????.json")

    @classmethod
    def from_files(
        cls, settings: Mapping[str, Any], directory: str | os.PathLike[str]
    ) -> SecEdgarProvider:
        """A provider reading the companyfacts files under `directory` (settings as
        `from_config`)."""
        return cls.from_config({**settings, "directory": str(directory)})

    # -- public ---------------------------------------------------------------------------

    def fetch_fundamentals(self, request: FundamentalsRequest) -> FetchResult:
        """Every fact of each symbol (FUNDAMENTAL_SCHEMA; `field` and `session` null).

        A symbol SEC does not know, or whose document is malformed, is reported in
        `failures`; the others are still returned. Raises NoDataError (UnknownSymbolError
        when every symbol is unknown) when no symbol has a fact, and the errors of the
        module docstring for call-wide failures.
        """
        frames: list[pl.DataFrame] = []
        failures: dict[str, str] = {}
        unknown: set[str] = set()
        requests_sent = 0
        for symbol in request.symbols:
            where = {"vendor": VENDOR, "dataset": DATASET, "symbols": (symbol,)}
            try:
                if self.directory is None:
                    frame, sent = self._fetch_live(symbol, where)
                    requests_sent += sent
                else:
                    frame = self._read_file(symbol, where)
            except UnknownSymbolError as error:
                failures[symbol] = str(error)
                unknown.add(symbol)
                continue
            except _SymbolProblem as problem:
                failures[symbol] = str(ProviderError(str(problem), **where))
                continue
            frames.append(frame)
        requests_sent += self._pop_ticker_requests()
        frame = pl.concat(frames) if frames else empty_facts()
        if frame.is_empty():
            where = {"vendor": VENDOR, "dataset": DATASET, "symbols": request.symbols}
            detail = "; ".join(f.split(": ", 1)[-1] for f in failures.values())
            if unknown and unknown == set(request.symbols):
                raise UnknownSymbolError(f"SEC knows none of the symbols ({detail})", **where)
            detail = detail or "no facts in the documents"
            raise NoDataError(f"SEC returned no company facts ({detail})", **where)
        return FetchResult(frame=frame, source=VENDOR, requests=requests_sent, failures=failures)

    # -- live API -------------------------------------------------------------------------

    def _pop_ticker_requests(self) -> int:
        sent, self._ticker_requests = self._ticker_requests, 0
        return sent

    def _require_user_agent(self, where: Mapping[str, Any]) -> str:
        agent = self.user_agent
        if not agent or "@" not in agent:
            raise AuthError(
                "SEC requires a User-Agent naming you and a contact e-mail (e.g. "
                "'Jane Doe jane@example.com') for its API; set "
                f"{self._user_agent_source}, or read files with --files DIR",
                **where,
            )
        return agent

    def _get_json(self, url: str, where: Mapping[str, Any]) -> tuple[Any, int]:
        """GET `url` as JSON; returns (document, status). 404 returns (None, 404)."""
        headers = {"User-Agent": self._require_user_agent(where), "Accept-Encoding": "gzip"}
        try:
            response = self.session.get(url, headers=headers, timeout=self.timeout)
        except (requests.ConnectionError, requests.Timeout) as error:
            raise TransientError(
                f"network error talking to SEC ({url}): {type(error).__name__}: {error}", **where
            ) from error
        status = int(response.status_code)
        if status == 404:
            return None, status
        if status == 403 and "threshold" in response.text.lower():
            raise RateLimitedError(
                f"HTTP 403: SEC's request rate threshold exceeded for {url}",
                retry_after=RATE_BLOCK_SECONDS,
                **where,
            )
        if status == 403:
            raise AuthError(
                f"HTTP 403: SEC refused {url}; its User-Agent policy wants a name and contact "
                f"e-mail in {self._user_agent_source}",
                **where,
            )
        if status != 200:
            raise error_for_status(
                status, f"SEC answered {url}", headers=dict(response.headers), **where
            )
        try:
            return response.json(), status
        except ValueError:
            raise _SymbolProblem(
                f"{url}: the body is not JSON (starts {response.text[:60]!r})"
            ) from None

    def _cik(self, symbol: str, where: Mapping[str, Any]) -> int:
        if self._tickers is None:
            payload, status = self._get_json(TICKERS_URL, where)
            self._ticker_requests += 1
            if payload is None:
                raise error_for_status(status, f"SEC has no {TICKERS_URL}", **where)
            try:
                self._tickers = parse_company_tickers(payload, TICKERS_URL)
            except ValueError as error:
                raise ProviderError(str(error), **where) from error
        cik = self._tickers.get(sec_ticker(symbol))
        if cik is None:
            raise UnknownSymbolError(
                f"{symbol} is not in SEC's company_tickers.json (as {sec_ticker(symbol)})",
                **where,
            )
        return cik

    def _fetch_live(self, symbol: str, where: Mapping[str, Any]) -> tuple[pl.DataFrame, int]:
        cik = self._cik(symbol, where)
        url = FACTS_URL.format(cik=cik)
        payload, _ = self._get_json(url, where)
        if payload is None:
            raise UnknownSymbolError(
                f"SEC has no XBRL company facts for {symbol} (CIK {cik}): HTTP 404 {url}",
                **where,
            )
        return self._parse(payload, symbol, url, cik), 1

    # -- files ----------------------------------------------------------------------------

    def _read_file(self, symbol: str, where: Mapping[str, Any]) -> pl.DataFrame:
        assert self.directory is not None
        if not self.directory.is_dir():
            raise ProviderError(f"{self.directory}: not a folder of companyfacts files", **where)
        cik = self._file_cik(symbol, where)
        names = [f"{symbol.lower()}_companyfacts.json", f"{symbol}_companyfacts.json"]
        if cik is not None:
            names.insert(0, f"CIK{cik:010d}.json")
        listed = files_under(self.directory, names, lambda message: ProviderError(message, **where))
        for name in dict.fromkeys(names):
            path = next((p for p in listed if p.name == name), None)
            if path is None:
                continue
            try:
                payload = json.loads(path.read_bytes())
            except (OSError, ValueError) as error:
                raise _SymbolProblem(f"{path}: not readable as JSON: {error}") from None
            return self._parse(payload, symbol, str(path), cik)
        raise UnknownSymbolError(
            f"no companyfacts file for {symbol} under {self.directory} "
            f"(looked for {', '.join(dict.fromkeys(names))})",
            **where,
        )

    def _file_cik(self, symbol: str, where: Mapping[str, Any]) -> int | None:
        """The symbol's CIK from company_tickers.json under the folder (None without one)."""
        if self._tickers is None:
            unreadable = lambda message: ProviderError(message, **where)  # noqa: E731
            found = files_under(self.directory, TICKERS_FILE, unreadable) if self.directory else []
            path = found[0] if found else None
            if path is None:
                return None
            try:
                self._tickers = parse_company_tickers(json.loads(path.read_bytes()), str(path))
            except (OSError, ValueError) as error:
                raise ProviderError(f"{path}: {error}", **where) from error
        return self._tickers.get(sec_ticker(symbol))

    @staticmethod
    def _parse(payload: Any, symbol: str, where: str, cik: int | None) -> pl.DataFrame:
        try:
            frame = parse_companyfacts(payload, symbol, VENDOR, where)
        except ValueError as error:
            raise _SymbolProblem(str(error)) from None
        found = frame.get_column("cik")[0] if frame.height else cik
        if cik is not None and found != cik:
            raise _SymbolProblem(
                f"{where}: holds CIK {found}, but company_tickers maps {symbol} to CIK {cik}"
            )
        return frame


class _SymbolProblem(Exception):
    """One symbol's document could not be used; the other symbols go on."""
