"""The `files` provider's mapping: how a folder of a user's CSV/Parquet files reads as bars.

This is the "field mappings and transformation rules in YAML" of the platform: a provider
entry of kind `files` in configs/providers.yaml carries these keys under `settings`, and
`FileMapping` checks them when the provider is built, so a typo stops the run before any file
is read, with the key and the reason. Example (QuantConnect Lean daily equity files):

    lean_daily:
      kind: files
      settings:
        directory: data/import/lean/equity/usa/daily
        pattern: "{symbol_lower}.zip"        # one zip per symbol holding one CSV
        header: false
        column_order: [ts, open, high, low, close, volume]
        timestamp_format: "%Y%m%d %H:%M"
        timezone: America/New_York
        price_scale: 0.0001                  # Lean stores prices x 10,000

Canonical fields a file can map: ts (required), open, high, low, close, volume (required),
trade_count, vwap, adj_close (the vendor's adjusted close, compared with ours by the
`adjustment` check), dividend, split (optional; they make the provider a source of corporate
actions too) and symbol (required when one file holds every symbol). A required field is
read from the column of its own name unless `columns` maps it elsewhere; an optional field is
read only when `columns` (or `column_order`) names it, so the YAML says exactly what is taken
from the files.

Time: a timestamp that carries its own UTC offset (`2022-07-04 00:00:00+08:00`) or a
time-zone-aware Parquet column is read at that offset; `timezone` is only needed for naive
timestamps (default UTC), and when it is set and disagrees with a timestamp's own offset the
file fails with its line. Daily bars keep the session date the file gives (the local date).
Per-day files (`pattern: "{symbol_lower}/{date:%Y%m%d}_trade.zip"`) take the date from the
file name and the time of day from the rows (`timestamp_format: "%H:%M"`, or milliseconds
since midnight with `timestamp_unit: ms`, as Lean's minute files).

Prices: `adjustment` says what the vendor did to them: `raw`, `split_adjusted` (splits
applied, dividends not: what several free vendors serve as Close) or `fully_adjusted`.
Split-adjusted prices are restored to raw prices with the splits the files list, so bars_1d
stays raw and adjusting it never applies a split twice; fully adjusted prices are served as
they are and flagged in every run's metadata.

Corporate actions come from `split`/`dividend` columns of the bar files, or from a separate
file (`actions:`): a split/dividend list, or Lean factor files. Dividends need `currency`;
it is never assumed.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from market_assets.core.calendar import known_calendar

REQUIRED_FIELDS = ("ts", "open", "high", "low", "close", "volume")
OPTIONAL_FIELDS = ("trade_count", "vwap", "adj_close", "dividend", "split", "symbol")
CANONICAL_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS
PRICE_FIELDS = ("open", "high", "low", "close", "vwap", "adj_close", "dividend")  # x price_scale
SKIP = "skip"  # a column_order entry for a column the mapping does not use

SYMBOL_PLACEHOLDERS = ("symbol", "symbol_lower", "symbol_upper")
DATE_PLACEHOLDER = "date"
CSV_SUFFIXES = (".csv", ".txt", ".csv.gz", ".txt.gz", ".zip")
PARQUET_SUFFIXES = (".parquet", ".pq")
GRANULARITIES = ("1m", "5m", "15m", "1h", "1d")
WEEKLY = ("1w", "1wk", "w", "wk", "week", "weekly", "1week", "7d")
ADJUSTMENTS = ("raw", "split_adjusted", "fully_adjusted")
ACTION_FIELDS = ("ex_date", "split", "dividend", "symbol")

SETTINGS_EXAMPLE = "see the lean_daily and zipline_csvdir entries in configs/providers.yaml"


def _check_pattern(pattern: str, suffixes: tuple[str, ...], dated: bool) -> str:
    """A file pattern's placeholders and shape, or ValueError naming what is wrong."""
    names = [name.split(":", 1)[0] for name in re.findall(r"{([^{}]*)}", pattern)]
    allowed = SYMBOL_PLACEHOLDERS + ((DATE_PLACEHOLDER,) if dated else ())
    unknown = [name for name in names if name not in allowed]
    if unknown:
        shown = ", ".join("{" + name + "}" for name in allowed)
        raise ValueError(f"unknown placeholder(s) {unknown} in {pattern!r}; use {shown}")
    parts = Path(pattern).parts
    if pattern.startswith(("/", "\\")) or ".." in parts:
        raise ValueError(f"{pattern!r} must stay inside `directory` (no leading / or ..)")
    if not pattern.lower().endswith(suffixes):
        raise ValueError(f"{pattern!r} must end in one of {list(suffixes)}")
    return pattern


def _has_symbol(pattern: str) -> bool:
    return any(f"{{{name}}}" in pattern for name in SYMBOL_PLACEHOLDERS)


def _format(pattern: str, symbol: str, day: dt.date | None = None) -> str:
    return pattern.format(
        symbol=symbol, symbol_lower=symbol.lower(), symbol_upper=symbol.upper(), date=day
    )


def _expand(directory: str) -> Path:
    return Path(os.path.expandvars(os.path.expanduser(directory)))


class ActionsFileMapping(BaseModel):
    """A file of corporate actions beside the bar files (`settings.actions`).

    `format: list` (default): one row per action or per ex-date, columns mapped through
    `columns` from `ex_date` (required), `split` (new shares per old share: 7 for a 7-for-1;
    empty, 0 or 1 = no split), `dividend` (cash per share) and `symbol` (when one file holds
    every symbol). `format: lean_factors`: QuantConnect Lean factor files
    (`yyyymmdd,price_factor,split_factor,reference_price`, no header), whose factor changes
    are turned back into splits and dividends dated the next session.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    pattern: str
    directory: str | None = None  # default: the bar files' directory
    format: Literal["list", "lean_factors"] = "list"
    header: bool = True
    columns: dict[str, str] = Field(default_factory=dict)
    date_format: str | None = None
    delimiter: str = Field(default=",", min_length=1, max_length=1)

    @field_validator("pattern")
    @classmethod
    def _safe_pattern(cls, pattern: str) -> str:
        return _check_pattern(pattern, CSV_SUFFIXES, dated=False)

    @field_validator("columns")
    @classmethod
    def _known_fields(cls, columns: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(columns) - set(ACTION_FIELDS))
        if unknown:
            raise ValueError(
                f"unknown action field(s) {unknown}; map any of {list(ACTION_FIELDS)} to a "
                "column name in the file"
            )
        return columns

    @model_validator(mode="after")
    def _consistent(self) -> ActionsFileMapping:
        if self.format == "list" and not ({"split", "dividend"} & set(self.columns)):
            raise ValueError(
                "a list of actions needs a `split` and/or `dividend` column "
                "(columns: {ex_date: date, split: ratio, dividend: amount})"
            )
        if self.format == "list" and not _has_symbol(self.pattern) and "symbol" not in self.columns:
            raise ValueError(
                f"pattern {self.pattern!r} has no {{symbol}} placeholder, so one file "
                "holds every symbol: map its symbol column (columns: {symbol: ticker})"
            )
        if self.format == "lean_factors" and (self.columns or not _has_symbol(self.pattern)):
            raise ValueError(
                "lean_factors files have fixed columns and one file per symbol "
                "(pattern with {symbol_lower}); drop `columns`"
            )
        return self

    @property
    def has_dividends(self) -> bool:
        return self.format == "lean_factors" or "dividend" in self.columns

    def column_for(self, field: str) -> str:
        return self.columns.get(field, field)

    def path_for(self, root: Path, symbol: str) -> Path:
        folder = _expand(self.directory) if self.directory else root
        return folder / _format(self.pattern, symbol)


class FileMapping(BaseModel):
    """Where a provider's files are and how their columns become canonical bars."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    directory: str = Field(min_length=1)
    pattern: str = "{symbol}.csv"
    format: Literal["csv", "parquet"] | None = None
    granularity: Literal["1m", "5m", "15m", "1h", "1d"] = "1d"
    header: bool = True
    column_order: tuple[str, ...] | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    skip_rows: int = Field(default=0, ge=0)
    timestamp_format: str | None = None
    timestamp_unit: Literal["s", "ms", "us", "ns"] | None = None
    timezone: str | None = None
    timestamp_marks: Literal["open", "close"] = "open"
    price_scale: float = Field(default=1.0, gt=0)
    adjustment: Literal["raw", "split_adjusted", "fully_adjusted"] | None = None
    adjusted: bool | None = None  # older spelling: true = fully_adjusted
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    regular_hours_only: bool = False
    calendar: str = "XNYS"
    actions: ActionsFileMapping | None = None

    @field_validator("granularity", mode="before")
    @classmethod
    def _no_weekly_bars(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in WEEKLY:
            raise ValueError(
                f"weekly bars ({value!r}) are not a granularity of this platform, which keeps "
                f"{', '.join(GRANULARITIES)}: load the vendor's daily (or intraday) files "
                "instead and resample to weeks where you read them"
            )
        return value

    @field_validator("pattern")
    @classmethod
    def _safe_pattern(cls, pattern: str) -> str:
        return _check_pattern(pattern, CSV_SUFFIXES + PARQUET_SUFFIXES, dated=True)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str | None) -> str | None:
        if zone is None:
            return None
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {zone!r}; use an IANA name such as America/New_York or UTC"
            ) from None
        return zone

    @field_validator("calendar")
    @classmethod
    def _known_calendar(cls, name: str) -> str:
        return known_calendar(name)

    @field_validator("columns")
    @classmethod
    def _canonical_keys(cls, columns: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(columns) - set(CANONICAL_FIELDS))
        if unknown:
            raise ValueError(
                f"unknown canonical field(s) {unknown}; map any of {list(CANONICAL_FIELDS)} "
                "to a column name in the file"
            )
        return columns

    @model_validator(mode="after")
    def _consistent(self) -> FileMapping:
        if self.header and self.column_order is not None:
            raise ValueError(
                "column_order names the columns of files WITHOUT a header line; with "
                "header: true map names through `columns` instead"
            )
        if not self.header and not self.column_order:
            raise ValueError(
                "header: false needs column_order: the canonical field (or `skip`) of each "
                "column in file order, e.g. [ts, open, high, low, close, volume]"
            )
        if self.column_order is not None:
            named = [name for name in self.column_order if name != SKIP]
            if len(set(named)) != len(named):
                raise ValueError(f"column_order repeats a column: {list(self.column_order)}")
        if self.file_format == "parquet" and not self.header:
            raise ValueError("header: false only applies to CSV files")
        available = self.file_columns()
        if available is not None:
            missing = [
                field for field in self.wanted_fields() if self.column_for(field) not in available
            ]
            if missing:
                raise ValueError(
                    f"column_order {list(self.column_order or ())} has no column for "
                    f"{missing}; map them through `columns`"
                )
        if not self.one_file_per_symbol and "symbol" not in self.wanted_fields():
            raise ValueError(
                f"pattern {self.pattern!r} has no {{symbol}} placeholder, so one file holds "
                "every symbol: map its symbol column (columns: {symbol: ticker})"
            )
        if self.one_file_per_symbol and "symbol" in self.columns:
            raise ValueError(
                "columns.symbol is for one file holding every symbol; this pattern already "
                "names one file per symbol"
            )
        self._check_adjustment_and_time()
        return self

    def _check_adjustment_and_time(self) -> None:
        if self.adjustment is not None and self.adjusted is not None:
            raise ValueError("set `adjustment` (raw, split_adjusted, fully_adjusted), not both")
        if self.has_dividends and self.currency is None:
            raise ValueError(
                "these files list dividends: say their currency (currency: USD); the "
                "platform never assumes one"
            )
        if self.regular_hours_only and self.granularity == "1d":
            raise ValueError("regular_hours_only applies to intraday bars, not 1d")
        if self.per_day and self.timestamp_unit is None and self.timestamp_format is None:
            raise ValueError(
                "per-day files ({date} in the pattern) hold the time of day in their rows: "
                "set timestamp_format (e.g. '%H:%M:%S') or timestamp_unit (e.g. ms since "
                "midnight)"
            )

    # ------------------------------------------------------------------ derived facts

    @property
    def one_file_per_symbol(self) -> bool:
        return _has_symbol(self.pattern)

    @property
    def per_day(self) -> bool:
        """Whether each file holds one day, named by a {date} placeholder."""
        return "{" + DATE_PLACEHOLDER in self.pattern

    @property
    def file_format(self) -> Literal["csv", "parquet"]:
        if self.format is not None:
            return self.format
        return "parquet" if self.pattern.lower().endswith(PARQUET_SUFFIXES) else "csv"

    @property
    def root(self) -> Path:
        """`directory` with ~ and $VARIABLES expanded; relative to the working directory."""
        return _expand(self.directory)

    @property
    def zone(self) -> str:
        """The time zone of naive timestamps: `timezone`, else UTC."""
        return self.timezone or "UTC"

    @property
    def price_adjustment(self) -> str:
        """raw, split_adjusted or fully_adjusted (the older `adjusted: true` is the last)."""
        if self.adjustment is not None:
            return self.adjustment
        return "fully_adjusted" if self.adjusted else "raw"

    @property
    def has_actions(self) -> bool:
        return self.actions is not None or any(
            field in self.wanted_fields() for field in ("dividend", "split")
        )

    @property
    def has_dividends(self) -> bool:
        return "dividend" in self.wanted_fields() or bool(
            self.actions and self.actions.has_dividends
        )

    def file_columns(self) -> tuple[str, ...] | None:
        """Column names of headerless files (from column_order); None when files have a header."""
        if self.column_order is None:
            return None
        return tuple(
            f"{SKIP}_{index}" if name == SKIP else name
            for index, name in enumerate(self.column_order)
        )

    def column_for(self, field: str) -> str:
        """The file's column holding canonical `field` (its own name unless mapped)."""
        return self.columns.get(field, field)

    def wanted_fields(self) -> list[str]:
        """Canonical fields this mapping reads: the required ones plus those it names."""
        named = set(self.columns)
        if self.column_order is not None:
            named |= {name for name in self.column_order if name in CANONICAL_FIELDS}
        return [f for f in CANONICAL_FIELDS if f in REQUIRED_FIELDS or f in named]

    def path_for(self, symbol: str, day: dt.date | None = None) -> Path:
        """The file holding `symbol` (on `day` for per-day files; the one shared file when the
        pattern has no symbol)."""
        return self.root / _format(self.pattern, symbol, day)


def adjustment_of(settings: dict[str, Any]) -> str:
    """The price adjustment a files provider's settings declare (raw when none)."""
    if settings.get("adjustment"):
        return str(settings["adjustment"])
    return "fully_adjusted" if settings.get("adjusted") else "raw"


def parse_mapping(settings: dict[str, Any]) -> FileMapping:
    """Validate a provider's settings; ValueError lists each bad key as `settings.<key>`."""
    try:
        return FileMapping.model_validate(settings)
    except ValidationError as exc:
        problems = "; ".join(
            ".".join(["settings", *(str(p) for p in err["loc"])])
            + f": {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise ValueError(f"{problems} ({SETTINGS_EXAMPLE})") from None
