"""Rule thresholds from configs/checks.yaml, overridable per granularity, dataset and symbol.

The file has a `bars` section with four layers, applied in this order (later wins):
`defaults`, `granularities.<1m|5m|15m|1h|1d>`, `datasets.<bars_...>`, `symbols.<TICKER>`.
Each layer maps a rule name to some of its settings (`enabled`, `severity` and the rule's own
thresholds). Every layer is validated when the file is loaded, so a typo fails fast with the
file and the key path. Without a checks.yaml the built-in defaults below apply (they are the
values the shipped file spells out).
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from market_assets.core.errors import ConfigError, reading_config
from market_assets.core.reference.rules import ReferenceCheckSettings
from market_assets.core.rules.base import Severity
from market_assets.core.schemas import GRANULARITIES
from market_assets.core.symbols import validate_symbol

CHECKS_FILE = "checks.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleSettings(_Strict):
    """Settings every rule has: whether it runs and how bad a failure is."""

    enabled: bool = True
    severity: Severity = Severity.WARN


class OhlcSettings(RuleSettings):
    severity: Severity = Severity.ERROR


class DuplicateSettings(RuleSettings):
    severity: Severity = Severity.ERROR


class SessionHoursSettings(RuleSettings):
    severity: Severity = Severity.ERROR
    extended_hours: bool = False  # accept 04:00-20:00 New York instead of the regular session


class MissingSessionsSettings(RuleSettings):
    severity: Severity = Severity.ERROR


class MissingBarsSettings(RuleSettings):
    max_missing_bars: int = Field(default=0, ge=0)


class ReturnOutlierSettings(RuleSettings):
    mad_threshold: float = Field(default=12.0, gt=0)  # robust z = |r - median| / (1.4826 MAD)
    min_abs_return: float = Field(default=0.05, ge=0)  # and |log return| at least this


class SpikeSettings(RuleSettings):
    mad_threshold: float = Field(default=8.0, gt=0)
    min_abs_return: float = Field(default=0.03, ge=0)
    max_reversal_residual: float = Field(default=0.25, ge=0, le=1)  # |r1 + r2| <= this * |r1|


class UnitErrorSettings(RuleSettings):
    severity: Severity = Severity.ERROR
    factor: float = Field(default=100.0, gt=1)
    tolerance: float = Field(default=0.15, gt=0, lt=1)  # in log10 units around log10(factor)


class SplitJumpSettings(RuleSettings):
    ratios: tuple[float, ...] = (1.5, 2.0, 3.0, 4.0, 5.0, 7.0, 8.0, 10.0)
    tolerance: float = Field(default=0.03, gt=0, lt=0.2)  # |ln(observed / ratio)|

    @field_validator("ratios")
    @classmethod
    def _ratios_above_one(cls, ratios: tuple[float, ...]) -> tuple[float, ...]:
        if not ratios or any(r <= 1.0 for r in ratios):
            raise ValueError("give forward split ratios > 1 (reverse splits are the inverses)")
        return tuple(sorted(set(ratios)))


class StaleSettings(RuleSettings):
    min_run: int = Field(default=5, ge=2)


class ZeroVolumeSettings(RuleSettings):
    pass


class CrossGranularitySettings(RuleSettings):
    price_tolerance: float = Field(default=0.01, ge=0)
    volume_tolerance: float = Field(default=0.01, ge=0)
    # A daily bar covers the regular session; minutes outside it are left out of the
    # aggregate unless the vendor's daily bar includes extended hours.
    daily_includes_extended_hours: bool = False


class OpenGapSettings(RuleSettings):
    max_gap: float = Field(default=0.05, gt=0)


class SplitReflectedSettings(RuleSettings):
    severity: Severity = Severity.ERROR
    tolerance: float = Field(default=0.03, gt=0, lt=0.2)
    search_sessions: int = Field(default=5, ge=1)  # look this far ahead for a late jump


class DividendSettings(RuleSettings):
    max_dividend_yield: float = Field(default=0.25, gt=0)  # one payment as a share of price
    max_drop_multiple: float = Field(default=10.0, gt=1)
    min_drop: float = Field(default=0.05, gt=0)
    phantom_window_days: int = Field(default=7, ge=0)
    phantom_amount_tolerance: float = Field(default=0.1, ge=0)


class BarRuleSettings(_Strict):
    """Every bar rule's settings; one field per rule, named like the rule."""

    ohlc_relations: OhlcSettings = OhlcSettings()
    duplicate_timestamps: DuplicateSettings = DuplicateSettings()
    session_hours: SessionHoursSettings = SessionHoursSettings()
    missing_sessions: MissingSessionsSettings = MissingSessionsSettings()
    missing_bars: MissingBarsSettings = MissingBarsSettings()
    return_outliers: ReturnOutlierSettings = ReturnOutlierSettings()
    price_spikes: SpikeSettings = SpikeSettings()
    unit_errors: UnitErrorSettings = UnitErrorSettings()
    split_sized_jumps: SplitJumpSettings = SplitJumpSettings()
    stale_prices: StaleSettings = StaleSettings()
    zero_volume_moves: ZeroVolumeSettings = ZeroVolumeSettings()
    daily_vs_minutes: CrossGranularitySettings = CrossGranularitySettings()
    open_vs_previous_close: OpenGapSettings = OpenGapSettings()
    split_not_reflected: SplitReflectedSettings = SplitReflectedSettings()
    dividend_mismatch: DividendSettings = DividendSettings()

    def rule(self, name: str) -> RuleSettings:
        return getattr(self, name)


class ScoreSettings(_Strict):
    """Points a failed result takes off 100, by severity; and the feed score alert level."""

    weights: dict[Severity, float] = Field(
        default_factory=lambda: {Severity.ERROR: 40.0, Severity.WARN: 10.0}
    )
    feed_alert_below: float = Field(default=90.0, ge=0, le=100)

    @field_validator("weights")
    @classmethod
    def _every_severity(cls, weights: dict[Severity, float]) -> dict[Severity, float]:
        missing = [s.value for s in Severity if s not in weights]
        if missing:
            raise ValueError(f"missing weight(s) for {missing}")
        if any(w < 0 for w in weights.values()):
            raise ValueError("weights must be >= 0")
        return weights


GRANULARITY_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "1m": {
        "return_outliers": {"mad_threshold": 15, "min_abs_return": 0.01},
        "price_spikes": {"mad_threshold": 10, "min_abs_return": 0.005},
        "stale_prices": {"min_run": 30},
    },
    "5m": {
        "return_outliers": {"mad_threshold": 15, "min_abs_return": 0.015},
        "price_spikes": {"mad_threshold": 10, "min_abs_return": 0.008},
        "stale_prices": {"min_run": 12},
    },
    "15m": {
        "return_outliers": {"mad_threshold": 15, "min_abs_return": 0.02},
        "price_spikes": {"mad_threshold": 10, "min_abs_return": 0.01},
        "stale_prices": {"min_run": 8},
    },
    "1h": {
        "return_outliers": {"mad_threshold": 12, "min_abs_return": 0.03},
        "price_spikes": {"mad_threshold": 8, "min_abs_return": 0.015},
        "stale_prices": {"min_run": 5},
    },
}
"""Intraday thresholds when checks.yaml has no `granularities` section (the shipped values):
minute returns are smaller and closes repeat more often than daily ones."""


class _BarLayers(_Strict):
    defaults: dict[str, dict[str, Any]] = Field(default_factory=dict)
    granularities: dict[str, dict[str, dict[str, Any]]] = Field(
        default_factory=lambda: copy.deepcopy(GRANULARITY_DEFAULTS)
    )
    datasets: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)
    symbols: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)


class _ChecksFile(_Strict):
    sample_rows: int = Field(default=5, ge=0, le=100)
    lookback_sessions: int = Field(default=60, ge=0, le=1000)
    score: ScoreSettings = ScoreSettings()
    bars: _BarLayers = _BarLayers()
    reference: ReferenceCheckSettings = ReferenceCheckSettings()


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for rule, settings in override.items():
        if isinstance(settings, dict) and isinstance(merged.get(rule), dict):
            merged[rule] = {**merged[rule], **settings}
        else:
            merged[rule] = settings
    return merged


class CheckThresholds:
    """Loaded checks.yaml: resolves a rule's settings for a dataset, granularity and symbol."""

    def __init__(self, parsed: _ChecksFile, source: str = "<built-in defaults>") -> None:
        self._parsed = parsed
        self.source = source
        self._cache: dict[tuple[str, str, str | None], BarRuleSettings] = {}

    @property
    def sample_rows(self) -> int:
        return self._parsed.sample_rows

    @property
    def lookback_sessions(self) -> int:
        return self._parsed.lookback_sessions

    @property
    def score(self) -> ScoreSettings:
        return self._parsed.score

    @property
    def reference(self) -> ReferenceCheckSettings:
        """Thresholds of the reference and index-membership checks."""
        return self._parsed.reference

    def resolve(self, dataset: str, granularity: str, symbol: str | None = None) -> BarRuleSettings:
        """Settings for `symbol` in `dataset`; symbols without overrides share one object."""
        layers = self._parsed.bars
        if symbol is not None and symbol not in layers.symbols:
            symbol = None
        key = (dataset, granularity, symbol)
        if key not in self._cache:
            merged = _merge(layers.defaults, layers.granularities.get(granularity, {}))
            merged = _merge(merged, layers.datasets.get(dataset, {}))
            if symbol is not None:
                merged = _merge(merged, layers.symbols[symbol])
            self._cache[key] = BarRuleSettings.model_validate(merged)
        return self._cache[key]

    @classmethod
    def defaults(cls) -> CheckThresholds:
        return cls(_ChecksFile())

    @classmethod
    def from_mapping(cls, raw: dict[str, Any], source: str = "<mapping>") -> CheckThresholds:
        """Validate a parsed checks.yaml; raises ConfigError naming `source` and the key."""
        try:
            parsed = _ChecksFile.model_validate(raw or {})
        except ValidationError as exc:
            raise ConfigError(f"{source}: {_describe(exc)}") from exc
        thresholds = cls(parsed, source)
        thresholds._validate_layers()
        return thresholds

    def _validate_layers(self) -> None:
        layers = self._parsed.bars
        checks: list[tuple[str, dict[str, Any]]] = [("bars.defaults", layers.defaults)]
        for granularity, layer in layers.granularities.items():
            if granularity not in GRANULARITIES:
                raise ConfigError(
                    f"{self.source}: bars.granularities.{granularity}: unknown granularity; "
                    f"use one of {list(GRANULARITIES)}"
                )
            checks.append((f"bars.granularities.{granularity}", layer))
        for dataset, layer in layers.datasets.items():
            if dataset.removeprefix("bars_") not in GRANULARITIES:
                raise ConfigError(
                    f"{self.source}: bars.datasets.{dataset}: not a bar dataset "
                    f"(bars_1m, bars_5m, bars_15m, bars_1h, bars_1d)"
                )
            checks.append((f"bars.datasets.{dataset}", layer))
        for symbol, layer in layers.symbols.items():
            try:
                validate_symbol(symbol)
            except ValueError as exc:
                raise ConfigError(f"{self.source}: bars.symbols.{symbol}: {exc}") from exc
            checks.append((f"bars.symbols.{symbol}", layer))
        for path, layer in checks:
            try:
                BarRuleSettings.model_validate(_merge(layers.defaults, layer))
            except ValidationError as exc:
                raise ConfigError(f"{self.source}: {_describe(exc, prefix=path)}") from exc


def _describe(exc: ValidationError, prefix: str = "") -> str:
    problems = []
    for err in exc.errors():
        location = ".".join(str(p) for p in err["loc"])
        key = ".".join(p for p in (prefix, location) if p) or "<root>"
        problems.append(f"{key}: {err['msg']}")
    return "; ".join(problems)


def load_thresholds(config_dir: str | Path) -> CheckThresholds:
    """checks.yaml from `config_dir`, or the built-in defaults when the file is absent.

    Raises ConfigError naming the file and key when the file is not valid.
    """
    path = Path(config_dir) / CHECKS_FILE
    with reading_config(path):
        if not path.is_file():
            return CheckThresholds.defaults()
        stat = path.stat()
    return _load_cached(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=16)
def _load_cached(path: str, _mtime_ns: int, _size: int) -> CheckThresholds:
    try:
        with reading_config(path):
            raw = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return CheckThresholds.from_mapping(raw, source=path)
