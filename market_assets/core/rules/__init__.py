"""Data-quality rules: pure functions of polars frames (no Dagster here).

from market_assets.core.rules import RuleContext, check_bars, load_thresholds
context = RuleContext("bars_1m", "1m", partitions, load_thresholds("configs"))
report = check_bars(bars, context)
report.results      # one row per (symbol, session, rule)
report.partitions   # one row per (symbol, session): rows, source, score
"""

from market_assets.core.rules.base import (
    PartitionQuality,
    RuleContext,
    RuleResult,
    Severity,
)
from market_assets.core.rules.engine import BAR_RULES, QualityReport, check_bars
from market_assets.core.rules.thresholds import CheckThresholds, load_thresholds

__all__ = [
    "BAR_RULES",
    "CheckThresholds",
    "PartitionQuality",
    "QualityReport",
    "RuleContext",
    "RuleResult",
    "Severity",
    "check_bars",
    "load_thresholds",
]
