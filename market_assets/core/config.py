"""Configuration: YAML files in MARKET_ASSETS_CONFIG_DIR loaded into pydantic models.

Three files: universes.yaml (named ticker lists), datasets.yaml (granularity, history start,
stores, provider routing per dataset) and providers.yaml (vendor settings). Secrets never
appear in them: a provider names the environment variables that hold its keys. A bad file
fails fast with a ConfigError naming the file, the key and the reason.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from market_assets.core.calendar import known_calendar
from market_assets.core.errors import ConfigError, cannot
from market_assets.core.symbols import validate_symbol

if TYPE_CHECKING:
    from market_assets.core.reference.pit import MemberWindows

ENV_VAR_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
SECRET_WORDS = ("key", "secret", "password", "token")
TIMESCALE_DSN_ENV = "MARKET_ASSETS_TIMESCALE_DSN"
"""The environment variable holding the TimescaleDB/PostgreSQL DSN (password included)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


INDEX_UNIVERSE_BUCKETS = 16
"""Default buckets of an `index:` universe (the S&P 500 has held ~1,200 tickers since 1996)."""
INDEX_NAME = re.compile(r"^[A-Z0-9_]{1,32}$")


class UniverseConfig(_Strict):
    """A named ticker list, or an index's members as of each session (`index: SP500`).

    `partitioning: bucket` groups symbols into stable hash buckets; an `index:` universe is
    bucketed by default (`buckets: 16`), and its backfills fetch each member only over its
    membership intervals plus `lookback_sessions` (market_assets.core.reference.pit).
    """

    symbols: list[str] = Field(default_factory=list)
    index: str | None = None
    lookback_sessions: int = Field(default=0, ge=0, le=5000)
    description: str = ""
    partitioning: Literal["symbol", "bucket"] = "symbol"
    buckets: int | None = Field(default=None, ge=1, le=4096)

    @model_validator(mode="before")
    @classmethod
    def _index_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("index") and "partitioning" not in data:
            return {
                **data,
                "partitioning": "bucket",
                "buckets": data.get("buckets") or INDEX_UNIVERSE_BUCKETS,
            }
        return data

    @field_validator("symbols")
    @classmethod
    def _valid_symbols(cls, symbols: list[str]) -> list[str]:
        for symbol in symbols:
            validate_symbol(symbol)
        if len(set(symbols)) != len(symbols):
            dupes = sorted({s for s in symbols if symbols.count(s) > 1})
            raise ValueError(f"duplicate symbols {dupes}")
        return symbols

    @model_validator(mode="after")
    def _buckets_match_mode(self) -> UniverseConfig:
        if bool(self.symbols) == bool(self.index):
            raise ValueError("give exactly one of `symbols: [...]` or `index: NAME` (e.g. SP500)")
        if self.index is not None and not INDEX_NAME.fullmatch(self.index):
            raise ValueError(f"index {self.index!r}: use 1-32 characters from A-Z, 0-9 and _")
        if self.lookback_sessions and not self.index:
            raise ValueError("`lookback_sessions` only applies to an `index:` universe")
        if self.partitioning == "bucket" and not self.buckets:
            raise ValueError("partitioning: bucket needs `buckets: N`")
        if self.partitioning == "symbol" and self.buckets:
            raise ValueError("`buckets` only applies to partitioning: bucket")
        return self


POLICY_INTERVAL = re.compile(r"^([1-9][0-9]*) (hour|day|week)s?$")
POLICY_UNITS = {
    "hour": dt.timedelta(hours=1),
    "day": dt.timedelta(days=1),
    "week": dt.timedelta(weeks=1),
}


class TimescalePolicy(_Strict):
    """TimescaleDB policies of one dataset's hypertable; ignored on plain PostgreSQL.

    Intervals read "<N> hours|days|weeks". `compress_after`: chunks whose data is older
    than this are compressed (None: no compression policy). `drop_after`: retention, chunks
    older than this are DROPPED with their rows (None, the default: keep everything; bars and
    ticks are the system of record). `continuous_aggregates`: coarser bars served from this
    dataset by continuous aggregates (1m bars only), refreshed by every write.
    """

    compress_after: str | None = None
    drop_after: str | None = None
    continuous_aggregates: list[Literal["1h", "1d"]] = Field(default_factory=list)

    @field_validator("compress_after", "drop_after")
    @classmethod
    def _interval(cls, value: str | None) -> str | None:
        if value is not None and not POLICY_INTERVAL.fullmatch(value):
            raise ValueError(f"{value!r} is not an interval like '30 days', '12 hours', '2 weeks'")
        return value

    @staticmethod
    def as_timedelta(value: str | None) -> dt.timedelta | None:
        """A validated interval as a timedelta (None stays None)."""
        if value is None:
            return None
        match = POLICY_INTERVAL.fullmatch(value)
        if match is None:
            raise ValueError(f"{value!r} is not an interval like '30 days'")
        return int(match.group(1)) * POLICY_UNITS[match.group(2)]


class DatasetConfig(_Strict):
    """One dataset: its bar size, first session, where it comes from and where it is stored.

    `kind` says what the rows are: `bars` (the default) need a `granularity`; other kinds
    (`corporate_actions`; `ticks`: trades, tbbo, statistics; `options`; `fundamentals`;
    `fundamental_ratios`; `reference`; `index_constituents`) have none.

    `calendar` names the dataset's exchange_calendars calendar (XLON, XHKG, XTKS, CMES for
    CME Globex futures, ...) when it is not the file's top-level `exchange`: its sessions are
    the dataset's partitions and its hours the completeness rules' hours. `extended_hours`
    says whether an intraday dataset keeps bars outside regular hours (default: no, they are
    quarantined as `extended_hours`); derived datasets follow their parent when unset.
    """

    kind: Literal[
        "bars",
        "corporate_actions",
        "ticks",
        "options",
        "fundamentals",
        "fundamental_ratios",
        "reference",
        "index_constituents",
    ] = "bars"
    granularity: Literal["1m", "5m", "15m", "1h", "1d"] | None = None
    start: dt.date
    providers: list[str] = Field(default_factory=list)
    derived_from: str | None = None
    stores: list[Literal["lake", "timescale"]] = Field(default_factory=lambda: ["lake"])
    backfill_sessions_per_run: int = Field(default=250, ge=1, le=2000)
    description: str = ""
    timescale: TimescalePolicy = Field(default_factory=TimescalePolicy)

    calendar: str | None = None
    extended_hours: bool | None = None

    @field_validator("calendar")
    @classmethod
    def _known_calendar(cls, name: str | None) -> str | None:
        return None if name is None else known_calendar(name)

    @model_validator(mode="after")
    def _source_is_set(self) -> DatasetConfig:
        if bool(self.providers) == bool(self.derived_from):
            raise ValueError("set exactly one of `providers` (fetched) or `derived_from`")
        if "lake" not in self.stores:
            raise ValueError("the Parquet lake is always on: `stores` must include lake")
        if self.kind == "bars" and self.granularity is None:
            raise ValueError("bar datasets need a `granularity` (1m, 5m, 15m, 1h or 1d)")
        if self.kind != "bars" and self.granularity is not None:
            raise ValueError(f"`granularity` only applies to bar datasets, not kind {self.kind}")
        if self.timescale.continuous_aggregates and self.granularity != "1m":
            raise ValueError("timescale.continuous_aggregates are built from 1m bars only")
        return self


class ProviderConfig(_Strict):
    """Settings of one provider. Secrets are only ever the NAMES of environment variables."""

    kind: str
    enabled: bool = True
    settings: dict[str, Any] = Field(default_factory=dict)
    api_key_env: str | None = None
    secret_key_env: str | None = None
    requests_per_minute: float | None = Field(default=None, gt=0)

    @field_validator("api_key_env", "secret_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not ENV_VAR_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not an environment variable name; put the secret in the "
                "environment and name the variable here"
            )
        return value

    @field_validator("settings")
    @classmethod
    def _no_literal_secrets(cls, settings: dict[str, Any]) -> dict[str, Any]:
        for key in settings:
            if any(word in key.lower() for word in SECRET_WORDS) and not key.endswith("_env"):
                raise ValueError(
                    f"settings.{key} looks like a secret; secrets come from environment "
                    f"variables: use `{key}_env: VARIABLE_NAME`"
                )
        return settings


UNIVERSE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
UNIVERSE_NAME_CHARACTER = re.compile(r"[A-Za-z0-9_.-]")


def validate_universe_name(name: str) -> str:
    """Return `name` when it can be part of a Dagster partition key, else raise ValueError
    naming the universe and what is wrong (the first character that cannot be used).

    A bucket universe's keys are `<name>~NNN`, and Dagster joins a key's dimensions with `|`,
    writes ranges as `a...b` and lists keys with commas: so only letters, digits, `_`, `-`
    and `.` (not `..`) are allowed, at most 64 characters, starting with a letter or digit.
    """
    if UNIVERSE_NAME.fullmatch(name) and ".." not in name:
        return name
    bad = next((c for c in name if not UNIVERSE_NAME_CHARACTER.fullmatch(c)), None)
    if not name:
        problem = "is empty"
    elif bad is not None:
        problem = f"contains {bad!r}"
    elif len(name) > 64:
        problem = f"is {len(name)} characters long (at most 64)"
    elif ".." in name:
        problem = "contains '..'"
    else:
        problem = f"starts with {name[0]!r}"
    raise ValueError(
        f"universe name {name!r} {problem}: universe names become Dagster partition keys "
        "(`<universe>~NNN` for buckets); use letters, digits, _, - and ., starting with a "
        "letter or digit"
    )


class UniversesFile(_Strict):
    universes: dict[str, UniverseConfig] = Field(min_length=1)

    @field_validator("universes")
    @classmethod
    def _valid_names(cls, universes: dict[str, UniverseConfig]) -> dict[str, UniverseConfig]:
        for name in universes:
            validate_universe_name(str(name))
        return universes


class DatasetsFile(_Strict):
    exchange: str = "XNYS"
    datasets: dict[str, DatasetConfig] = Field(min_length=1)

    @field_validator("exchange")
    @classmethod
    def _known_exchange(cls, name: str) -> str:
        return known_calendar(name)



class ProvidersFile(_Strict):
    providers: dict[str, ProviderConfig] = Field(min_length=1)
    retry_attempts: int = Field(default=4, ge=1, le=10)
    retry_initial_wait_s: float = Field(default=0.5, ge=0)
    retry_max_wait_s: float = Field(default=30.0, ge=0)


def _load_yaml(path: Path, model: type[_Strict]) -> Any:
    try:
        if not path.is_file():
            raise ConfigError(f"{path}: file not found (set MARKET_ASSETS_CONFIG_DIR?)")
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(cannot("read config file", path, exc)) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return model.model_validate(raw or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from exc


@dataclass(frozen=True)
class AppConfig:
    """Everything the platform reads from configs/ and the environment."""

    config_dir: Path
    data_dir: str
    timescale_dsn: str | None
    s3_endpoint_url: str | None
    s3_region: str | None
    universes: dict[str, UniverseConfig]
    datasets: dict[str, DatasetConfig]
    exchange: str
    providers: ProvidersFile

    @classmethod
    def load(cls, config_dir: str | Path | None = None) -> AppConfig:
        """Load configs from `config_dir` (default: $MARKET_ASSETS_CONFIG_DIR or ./configs)."""
        directory = Path(config_dir or os.environ.get("MARKET_ASSETS_CONFIG_DIR", "configs"))
        universes = _load_yaml(directory / "universes.yaml", UniversesFile)
        datasets = _load_yaml(directory / "datasets.yaml", DatasetsFile)
        providers = _load_yaml(directory / "providers.yaml", ProvidersFile)
        config = cls(
            config_dir=directory,
            data_dir=os.environ.get("MARKET_ASSETS_DATA_DIR", "data"),
            timescale_dsn=os.environ.get(TIMESCALE_DSN_ENV) or None,
            s3_endpoint_url=os.environ.get("MARKET_ASSETS_S3_ENDPOINT_URL") or None,
            s3_region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
            universes=dict(universes.universes),
            datasets=dict(datasets.datasets),
            exchange=datasets.exchange,
            providers=providers,
        )
        config._check_references(directory)
        return config

    def _check_references(self, directory: Path) -> None:
        for name, dataset in self.datasets.items():
            for provider in dataset.providers:
                if provider not in self.providers.providers:
                    raise ConfigError(
                        f"{directory / 'datasets.yaml'}: datasets.{name}.providers: unknown "
                        f"provider {provider!r}; known: {sorted(self.providers.providers)}"
                    )
            parent = dataset.derived_from
            if parent is not None and parent not in self.datasets:
                raise ConfigError(
                    f"{directory / 'datasets.yaml'}: datasets.{name}.derived_from: unknown "
                    f"dataset {parent!r}"
                )

    @cached_property
    def symbol_partitions(self) -> SymbolPartitions:
        return SymbolPartitions(self.universes, self.index_members)

    def index_members(self, index: str, lookback_sessions: int) -> MemberWindows:
        """Fetch windows of an index's members from the lake's index_membership table
        (empty until index_constituents and index_membership are materialized)."""
        from market_assets.core.reference.universe import load_member_windows

        return load_member_windows(self, index, lookback_sessions)

    def universe_symbols(self, name: str) -> list[str]:
        """A universe's tickers; for an `index:` universe every ticker it ever held."""
        try:
            universe = self.universes[name]
        except KeyError:
            raise ConfigError(
                f"{self.config_dir / 'universes.yaml'}: unknown universe {name!r}; "
                f"known: {sorted(self.universes)}"
            ) from None
        if universe.index:
            return self.index_members(universe.index, universe.lookback_sessions).symbols
        return list(universe.symbols)

    def dataset(self, name: str) -> DatasetConfig:
        try:
            return self.datasets[name]
        except KeyError:
            raise ConfigError(
                f"{self.config_dir / 'datasets.yaml'}: unknown dataset {name!r}; "
                f"known: {sorted(self.datasets)}"
            ) from None

    @property
    def timescale_policies(self) -> dict[str, TimescalePolicy]:
        """TimescaleDB policies of every dataset stored in PostgreSQL (`stores: timescale`)."""
        return {n: d.timescale for n, d in self.datasets.items() if "timescale" in d.stores}

    def calendar_of(self, dataset: str) -> str:
        """The exchange calendar of `dataset`: its own `calendar`, its parent's (derived
        datasets), else the top-level `exchange`. Datasets not in datasets.yaml (adjusted
        bars, indicators) follow bars_1d."""
        config = self.datasets.get(dataset) or self.datasets.get("bars_1d")
        while config is not None:
            if config.calendar:
                return config.calendar
            config = self.datasets.get(config.derived_from) if config.derived_from else None
        return self.exchange

    def extended_hours_of(self, dataset: str) -> bool:
        """Whether an intraday dataset keeps extended-hours bars (own setting, else parent's)."""
        config = self.datasets.get(dataset)
        while config is not None:
            if config.extended_hours is not None:
                return config.extended_hours
            config = self.datasets.get(config.derived_from) if config.derived_from else None
        return False

    def routes(self) -> dict[str, list[str]]:
        return {name: list(ds.providers) for name, ds in self.datasets.items() if ds.providers}


BUCKET_SEPARATOR = "~"


class SymbolPartitions:
    """Maps universes to keys of the `symbol` partition dimension, and keys back to symbols.

    A universe with `partitioning: symbol` contributes one key per ticker. A universe with
    `partitioning: bucket` contributes `buckets` keys named `<universe>~NNN`; a ticker's
    bucket is crc32(ticker) mod buckets, so membership never reshuffles while `buckets` is
    unchanged. Asset code only ever calls `symbols_for_key`, so switching a universe between
    modes changes config, not assets.
    """

    def __init__(
        self,
        universes: dict[str, UniverseConfig],
        index_members: Callable[[str, int], MemberWindows] | None = None,
    ) -> None:
        self._buckets: dict[str, list[str]] = {}
        self._keys: list[str] = []
        self._fixed: set[str] = set()  # symbols of fixed lists: every session
        self._index_universes: dict[str, UniverseConfig] = {}
        self._index_members = index_members
        self._windows: dict[str, MemberWindows] = {}
        self._pit_buckets: dict[str, list[str]] | None = None
        for name, universe in universes.items():
            if universe.index:
                self._index_universes[name] = universe
                if universe.partitioning == "bucket":
                    self._keys.extend(bucket_key(name, i) for i in range(universe.buckets or 1))
                else:
                    members = self.members_of(name).symbols
                    self._keys.extend(s for s in members if s not in self._keys)
                continue
            self._fixed.update(universe.symbols)
            if universe.partitioning == "symbol":
                self._keys.extend(s for s in universe.symbols if s not in self._keys)
                continue
            count = universe.buckets or 1
            members: dict[str, list[str]] = {bucket_key(name, i): [] for i in range(count)}
            for symbol in universe.symbols:
                members[bucket_key(name, bucket_of(symbol, count))].append(symbol)
            self._buckets.update(members)
            self._keys.extend(members)

    @property
    def keys(self) -> list[str]:
        return list(self._keys)

    def index_universe_of(self, key: str) -> str | None:
        """The `index:` universe a partition key belongs to, or None."""
        universe = key.partition(BUCKET_SEPARATOR)[0]
        if BUCKET_SEPARATOR in key and universe in self._index_universes:
            return universe
        for name, config in self._index_universes.items():
            if config.partitioning == "symbol" and key in self.members_of(name).symbols:
                return name if key not in self._fixed else None
        return None

    def members_of(self, universe: str) -> MemberWindows:
        """Fetch windows of an `index:` universe's members, loaded once."""
        if universe not in self._windows:
            config = self._index_universes[universe]
            if self._index_members is None:
                from market_assets.core.reference.pit import MemberWindows

                self._windows[universe] = MemberWindows([])
            else:
                self._windows[universe] = self._index_members(
                    config.index or "", config.lookback_sessions
                )
        return self._windows[universe]

    def _index_buckets(self) -> dict[str, list[str]]:
        """Every symbol an `index:` universe ever held, by its bucket key."""
        if self._pit_buckets is None:
            self._pit_buckets = {}
            for name, universe in self._index_universes.items():
                if universe.partitioning != "bucket":
                    continue
                count = universe.buckets or 1
                buckets = {bucket_key(name, i): [] for i in range(count)}
                for symbol in self.members_of(name).symbols:
                    buckets[bucket_key(name, bucket_of(symbol, count))].append(symbol)
                self._pit_buckets.update(buckets)
        return self._pit_buckets

    def _index_member_on(self, symbol: str, session: dt.date, universes: list[str]) -> bool:
        return any(self.members_of(name).covers(symbol, session) for name in universes)

    def symbols_for_key(self, key: str, session: dt.date | None = None) -> list[str]:
        """The symbols a partition key holds; on `session` when given.

        A key of an `index:` universe holds, on a session, only the members whose fetch
        window covers it (membership plus lookback), so ranged runs of such a universe fetch
        point-in-time members only. Without `session`, every symbol it ever held.
        """
        if key in self._buckets:
            return list(self._buckets[key])
        universe = key.partition(BUCKET_SEPARATOR)[0]
        if BUCKET_SEPARATOR in key and universe in self._index_universes:
            members = self._index_buckets().get(key)
            if members is None:
                raise ConfigError(f"symbol partition {key!r} is a bucket no universe defines")
            if session is None:
                return list(members)
            return [s for s in members if self.members_of(universe).covers(s, session)]
        if BUCKET_SEPARATOR in key:
            raise ConfigError(f"symbol partition {key!r} is a bucket no universe defines")
        symbol = validate_symbol(key)
        by_symbol = [n for n, u in self._index_universes.items() if u.partitioning == "symbol"]
        if session is None or symbol in self._fixed or not by_symbol:
            return [symbol]
        return [symbol] if self._index_member_on(symbol, session, by_symbol) else []

    def keys_for_universe(self, name: str, symbols: list[str]) -> list[str]:
        """The partition keys of universe `name` (whose tickers are `symbols`): an `index:`
        universe's own bucket keys (or member keys), else `keys_for_symbols(symbols)`."""
        universe = self._index_universes.get(name)
        if universe is None:
            return self.keys_for_symbols(symbols)
        if universe.partitioning == "bucket":
            return [bucket_key(name, i) for i in range(universe.buckets or 1)]
        return list(self.members_of(name).symbols)

    def keys_for_symbols(self, symbols: list[str]) -> list[str]:
        """The partition keys that hold `symbols` (their own key, or their bucket's)."""
        owner = {s: k for k, members in self._buckets.items() for s in members}
        keys: dict[str, None] = {}
        for symbol in symbols:
            keys[owner.get(symbol, validate_symbol(symbol))] = None
        return list(keys)


def bucket_key(universe: str, index: int) -> str:
    return f"{universe}{BUCKET_SEPARATOR}{index:03d}"


def bucket_of(symbol: str, buckets: int) -> int:
    return zlib.crc32(symbol.encode()) % buckets
