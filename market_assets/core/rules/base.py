"""What a quality rule is, what it is given and what it returns.

A rule is a function of a polars frame of canonical bars (prepared once by
`market_assets.core.rules.frame.prepare_bars`) plus a `RuleContext`, returning `Findings`:
one row per offending bar or gap, each carrying the (symbol, session) partition it belongs
to. The engine turns findings into one `RuleResult` per (partition, rule), with the number
of offending rows, a small sample, details (gaps as [start, end) ranges) and the points the
result takes off the partition's quality score.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import polars as pl

from market_assets.core.calendar import TradingCalendar, get_calendar

if TYPE_CHECKING:
    from market_assets.core.rules.thresholds import BarRuleSettings, CheckThresholds

Partition = tuple[str, dt.date]


class Severity(StrEnum):
    """ERROR blocks downstream assets (the data is wrong); WARN is reported and lets data flow."""

    ERROR = "ERROR"
    WARN = "WARN"


@dataclass(frozen=True)
class RuleResult:
    """The verdict of one rule on one (symbol, session) partition.

    `offending_rows` counts bars (or, for completeness rules, missing bars); `sample` holds at
    most a few of them as JSON-ready dicts; `details` carries rule-specific numbers, e.g.
    `gaps` as [start, end) ranges; `score_contribution` is the points this result takes off
    the partition's 100-point score (0 when it passed).
    """

    rule: str
    passed: bool
    severity: Severity
    offending_rows: int
    sample: list[dict[str, Any]]
    score_contribution: float
    details: dict[str, Any]


@dataclass(frozen=True)
class PartitionQuality:
    """Every rule result of one (symbol, session) partition of a dataset, and its score."""

    dataset: str
    symbol: str
    session: dt.date
    rows: int
    source: str
    results: tuple[RuleResult, ...]
    score: float

    @property
    def failed(self) -> list[RuleResult]:
        return [r for r in self.results if not r.passed]

    @property
    def errors(self) -> list[RuleResult]:
        return [r for r in self.failed if r.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[RuleResult]:
        return [r for r in self.failed if r.severity is Severity.WARN]


@dataclass(frozen=True)
class RuleContext:
    """What rules may know besides the bars being judged.

    `partitions` are the (symbol, session) pairs being judged (a pair with no bars is a
    missing session). `history` holds bars of the same dataset from before the judged
    sessions (lookback for robust statistics and the previous close); `previous_close` is a
    frame (symbol, session, previous_close) giving the close before each judged session when
    `history` cannot (e.g. from daily bars). `daily` and `minute` are the matching bars of
    the other granularity for reconciliation; `actions` are corporate actions
    (`ACTION_SCHEMA`); `adjusted` says the series is split/dividend adjusted, so a split must
    not show as a jump. `group_settings` is set by the engine to the resolved settings of the
    symbols it judges together, and `return_stats` to the per-symbol median and robust scale
    of returns (computed once, shared by the outlier rules).
    """

    dataset: str
    granularity: str
    partitions: tuple[Partition, ...]
    thresholds: CheckThresholds
    calendar: TradingCalendar = field(default_factory=get_calendar)
    history: pl.DataFrame | None = None
    previous_close: pl.DataFrame | None = None
    daily: pl.DataFrame | None = None
    minute: pl.DataFrame | None = None
    actions: pl.DataFrame | None = None
    adjusted: bool = False
    group_settings: BarRuleSettings | None = None
    return_stats: pl.DataFrame | None = None

    @property
    def intraday(self) -> bool:
        return self.granularity != "1d"

    @property
    def settings(self) -> BarRuleSettings:
        """Settings of the symbols judged together (the engine groups symbols that share them)."""
        if self.group_settings is not None:
            return self.group_settings
        return self.thresholds.resolve(self.dataset, self.granularity)

    def settings_for(self, symbol: str) -> BarRuleSettings:
        """Rule settings of one symbol (defaults < granularity < dataset < symbol)."""
        return self.thresholds.resolve(self.dataset, self.granularity, symbol)


@dataclass(frozen=True)
class Findings:
    """What a rule found: `rows` has one row per offending bar or gap.

    Required columns: symbol, session (date) and rows (int: bars this finding counts, 1 for
    an offending bar, N for a gap of N missing bars). Optional `start`/`end` columns make the
    finding a [start, end) range reported under details["gaps"]; an optional `kind` column is
    counted under details["kinds"]; any other column is shown in the sample. `checked` lists
    the (symbol, session) pairs the rule could judge, when that is not every partition (for
    example, reconciliation only where both granularities exist); None means all of them.
    """

    rows: pl.DataFrame
    checked: pl.DataFrame | None = None

    @classmethod
    def none(cls, checked: pl.DataFrame | None = None) -> Findings:
        return cls(rows=empty_findings(), checked=checked)


_EMPTY_FINDINGS = pl.DataFrame(
    schema={"symbol": pl.String(), "session": pl.Date(), "rows": pl.Int64()}
)


def empty_findings() -> pl.DataFrame:
    """No findings (one shared frame: polars frames are immutable)."""
    return _EMPTY_FINDINGS


RuleFunction = Callable[[pl.DataFrame, RuleContext, Any], Findings]


@dataclass(frozen=True)
class BarRule:
    """A named rule for bars: which granularities it judges and the function that judges."""

    name: str
    granularities: frozenset[str]
    find: RuleFunction
    needs_actions: bool = False
    description: str = ""

    def applies_to(self, context: RuleContext) -> bool:
        if context.granularity not in self.granularities:
            return False
        return not self.needs_actions or context.actions is not None


ALL_GRANULARITIES = frozenset({"1m", "5m", "15m", "1h", "1d"})
INTRADAY = frozenset({"1m", "5m", "15m", "1h"})
DAILY = frozenset({"1d"})


def partitions_frame(partitions: Sequence[Partition]) -> pl.DataFrame:
    """The (symbol, session) pairs as a two-column frame."""
    return pl.DataFrame(
        {"symbol": [s for s, _ in partitions], "session": [d for _, d in partitions]},
        schema={"symbol": pl.String(), "session": pl.Date()},
    )
