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
trade_count, vwap (optional), dividend, split (optional; they make the provider a source of
corporate actions too) and symbol (required when one file holds every symbol). A required
field is read from the column of its own name unless `columns` maps it elsewhere; an optional
field is read only when `columns` (or `column_order`) names it, so the YAML says exactly what
is taken from the files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

REQUIRED_FIELDS = ("ts", "open", "high", "low", "close", "volume")
OPTIONAL_FIELDS = ("trade_count", "vwap", "dividend", "split", "symbol")
CANONICAL_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS
PRICE_FIELDS = ("open", "high", "low", "close", "vwap", "dividend")  # scaled by price_scale
SKIP = "skip"  # a column_order entry for a column the mapping does not use

PATTERN_FIELDS = ("symbol", "symbol_lower", "symbol_upper")
CSV_SUFFIXES = (".csv", ".txt", ".csv.gz", ".txt.gz", ".zip")
PARQUET_SUFFIXES = (".parquet", ".pq")

SETTINGS_EXAMPLE = "see the lean_daily and zipline_csvdir entries in configs/providers.yaml"


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
    timezone: str = "UTC"
    timestamp_marks: Literal["open", "close"] = "open"
    price_scale: float = Field(default=1.0, gt=0)
    adjusted: bool = False
    currency: str = Field(default="USD", min_length=3, max_length=3)

    @field_validator("pattern")
    @classmethod
    def _safe_pattern(cls, pattern: str) -> str:
        names = re.findall(r"{([^{}]*)}", pattern)
        unknown = [name for name in names if name not in PATTERN_FIELDS]
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {unknown} in {pattern!r}; use {{symbol}}, "
                "{symbol_lower} or {symbol_upper}"
            )
        parts = Path(pattern).parts
        if pattern.startswith(("/", "\\")) or ".." in parts:
            raise ValueError(f"{pattern!r} must stay inside `directory` (no leading / or ..)")
        if not pattern.lower().endswith(CSV_SUFFIXES + PARQUET_SUFFIXES):
            raise ValueError(
                f"{pattern!r} must end in one of {list(CSV_SUFFIXES + PARQUET_SUFFIXES)}"
            )
        return pattern

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {zone!r}; use an IANA name such as America/New_York or UTC"
            ) from None
        return zone

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
        return self

    # ------------------------------------------------------------------ derived facts

    @property
    def one_file_per_symbol(self) -> bool:
        return any(f"{{{name}}}" in self.pattern for name in PATTERN_FIELDS)

    @property
    def file_format(self) -> Literal["csv", "parquet"]:
        if self.format is not None:
            return self.format
        return "parquet" if self.pattern.lower().endswith(PARQUET_SUFFIXES) else "csv"

    @property
    def root(self) -> Path:
        """`directory` with ~ and $VARIABLES expanded; relative to the working directory."""
        return Path(os.path.expandvars(os.path.expanduser(self.directory)))

    @property
    def has_actions(self) -> bool:
        return any(field in self.wanted_fields() for field in ("dividend", "split"))

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

    def path_for(self, symbol: str) -> Path:
        """The file holding `symbol` (the one shared file when the pattern has no symbol)."""
        return self.root / self.pattern.format(
            symbol=symbol, symbol_lower=symbol.lower(), symbol_upper=symbol.upper()
        )


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
