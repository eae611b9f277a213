"""configs/options.yaml: how chains are snapshot and priced, and the options check thresholds.

    snapshots: close                 # or New York times, e.g. ["10:00", "15:45"] (intraday)
    pricing:
      rate: {source: constant, value: 0.04}      # or {source: file, file: treasury.csv}
      dividend_yield: {default: 0.0, symbols: {SPY: 0.012}}
      european_roots: [SPX, SPXW, ...]           # cash-settled index options
    checks:
      put_call_parity: {severity: WARN, tolerance: 0.05}
      ...

Every key is validated when the file is loaded; a typo fails with the file and key path.
Without the file the defaults below apply (the shipped file spells them out).
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from market_assets.core.errors import ConfigError, reading_config
from market_assets.core.rules.base import Severity
from market_assets.core.symbols import validate_symbol

OPTIONS_FILE = "options.yaml"
DEFAULT_EUROPEAN_ROOTS = (
    "SPX",
    "SPXW",
    "XSP",
    "NDX",
    "NDXP",
    "RUT",
    "RUTW",
    "MRUT",
    "VIX",
    "VIXW",
    "DJX",
    "OEX",
    "XEO",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RateSettings(_Strict):
    """The risk-free rate: a constant, or a CSV of Treasury yields by date.

    The file has a date column (`Date` or `date`, ISO or MM/DD/YYYY) and one or more tenor
    columns named like the Treasury's daily par yield curve CSV ("1 Mo", "3 Mo", "1 Yr", ...)
    holding yields in percent; see market_assets.core.options.rates.
    """

    source: Literal["constant", "file"] = "constant"
    value: float = Field(default=0.04, ge=-0.05, le=0.5)  # continuously compounded, decimal
    file: str | None = None

    @model_validator(mode="after")
    def _file_given(self) -> RateSettings:
        if self.source == "file" and not self.file:
            raise ValueError("rate source `file` needs `file: PATH` (a CSV of Treasury yields)")
        return self


class DividendSettings(_Strict):
    """Continuous dividend yields (decimal): a default and per-underlying values."""

    default: float = Field(default=0.0, ge=0, le=0.5)
    symbols: dict[str, float] = Field(default_factory=dict)

    @field_validator("symbols")
    @classmethod
    def _valid(cls, symbols: dict[str, float]) -> dict[str, float]:
        for symbol, value in symbols.items():
            validate_symbol(symbol)
            if not 0 <= value <= 0.5:
                raise ValueError(f"dividend yield of {symbol} must be in [0, 0.5], got {value}")
        return symbols

    def for_symbol(self, symbol: str) -> float:
        return self.symbols.get(symbol, self.default)


class PricingSettings(_Strict):
    rate: RateSettings = RateSettings()
    dividend_yield: DividendSettings = DividendSettings()
    european_roots: tuple[str, ...] = DEFAULT_EUROPEAN_ROOTS


class RuleSettings(_Strict):
    enabled: bool = True
    severity: Severity = Severity.WARN


class ErrorRule(RuleSettings):
    severity: Severity = Severity.ERROR


class IvBoundsSettings(RuleSettings):
    max_iv: float = Field(default=5.0, gt=0)


class ParitySettings(RuleSettings):
    tolerance: float = Field(default=0.05, ge=0)  # price units, beyond the half spreads
    relative_tolerance: float = Field(default=0.001, ge=0)  # x underlying price


class StrikeGridSettings(RuleSettings):
    increment: float = Field(default=0.5, gt=0)  # every standard strike is a multiple of this


class VendorIvSettings(RuleSettings):
    max_difference: float = Field(default=0.05, gt=0)  # absolute, in volatility units


class OptionCheckSettings(_Strict):
    """Every options rule (market_assets.core.rules.options), named like the rule."""

    crossed_quotes: ErrorRule = ErrorRule()
    negative_values: ErrorRule = ErrorRule()
    iv_bounds: IvBoundsSettings = IvBoundsSettings()
    delta_bounds: ErrorRule = ErrorRule()
    greek_signs: ErrorRule = ErrorRule()
    put_call_parity: ParitySettings = ParitySettings()
    expirations_on_sessions: RuleSettings = RuleSettings()
    strikes_on_grid: StrikeGridSettings = StrikeGridSettings()
    stale_quotes: RuleSettings = RuleSettings()
    vendor_iv_difference: VendorIvSettings = VendorIvSettings()
    chain_completeness: RuleSettings = RuleSettings()

    def rule(self, name: str) -> RuleSettings:
        return getattr(self, name)


class OptionsSettings(_Strict):
    """The whole of configs/options.yaml."""

    snapshots: Literal["close"] | tuple[str, ...] = "close"
    pricing: PricingSettings = PricingSettings()
    checks: OptionCheckSettings = OptionCheckSettings()

    @field_validator("snapshots")
    @classmethod
    def _times(cls, value: Any) -> Any:
        if value == "close":
            return value
        if not value:
            raise ValueError("give `close` or a list of New York times like '15:45'")
        for text in value:
            try:
                dt.time.fromisoformat(text)
            except ValueError:
                raise ValueError(f"snapshot time {text!r} is not HH:MM") from None
        return tuple(sorted(value))

    def snapshot_times(self) -> tuple[dt.time, ...]:
        """Intraday snapshot times (New York); empty means one snapshot at the close."""
        if self.snapshots == "close":
            return ()
        return tuple(dt.time.fromisoformat(text) for text in self.snapshots)


def load_options_settings(config_dir: str | Path) -> OptionsSettings:
    """options.yaml from `config_dir`, or the defaults when the file is absent.

    Raises ConfigError naming the file and key when the file is not valid.
    """
    path = Path(config_dir) / OPTIONS_FILE
    with reading_config(path):
        if not path.is_file():
            return OptionsSettings()
        stat = path.stat()
    return _load(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _load(path: str, _mtime_ns: int, _size: int) -> OptionsSettings:
    try:
        with reading_config(path):
            raw = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return OptionsSettings.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from exc
