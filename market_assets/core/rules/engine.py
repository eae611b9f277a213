"""Run every bar rule on a frame and assemble one result per (partition, rule).

`check_bars` prepares the bars once per group of symbols sharing the same settings, runs the
rules that apply to the granularity (and to the context: corporate-action rules need
actions), and returns a `QualityReport`: a results frame (one row per (symbol, session,
rule)), a partitions frame (one row per (symbol, session) with rows, source and score), and
`RuleResult` objects on demand. Only failing results get a sample and details, built from
the few findings there are; passing results cost one vectorised pass.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from market_assets.core.rules.base import (
    ALL_GRANULARITIES,
    INTRADAY,
    BarRule,
    PartitionQuality,
    RuleContext,
    RuleResult,
    Severity,
    partitions_frame,
)
from market_assets.core.rules.completeness import missing_bars, missing_sessions
from market_assets.core.rules.corporate_actions import dividend_mismatch, split_not_reflected
from market_assets.core.rules.cross_granularity import daily_vs_minutes, open_vs_previous_close
from market_assets.core.rules.frame import column, prepare_bars, session_segments
from market_assets.core.rules.ohlc import duplicate_timestamps, ohlc_relations, session_hours
from market_assets.core.rules.outliers import (
    compute_return_stats,
    price_spikes,
    return_outliers,
    split_sized_jumps,
    stale_prices,
    unit_errors,
    zero_volume_moves,
)
from market_assets.core.rules.score import penalty_expr
from market_assets.core.rules.thresholds import BarRuleSettings

ONE_MINUTE_AND_DAILY = frozenset({"1m", "1d"})

BAR_RULES: tuple[BarRule, ...] = (
    BarRule(
        "ohlc_relations",
        ALL_GRANULARITIES,
        ohlc_relations,
        description="high >= max(open, close), low <= min(open, close), prices > 0",
    ),
    BarRule(
        "duplicate_timestamps",
        ALL_GRANULARITIES,
        duplicate_timestamps,
        description="no repeated or out-of-order (symbol, ts)",
    ),
    BarRule(
        "session_hours",
        ALL_GRANULARITIES,
        session_hours,
        description="bars on exchange sessions, within hours, on the bar grid",
    ),
    BarRule(
        "missing_sessions",
        ALL_GRANULARITIES,
        missing_sessions,
        description="every judged session has bars",
    ),
    BarRule(
        "missing_bars",
        INTRADAY,
        missing_bars,
        description="every bar of the regular session (390 one-minute bars; fewer on early closes)",
    ),
    BarRule(
        "return_outliers",
        ALL_GRANULARITIES,
        return_outliers,
        description="returns within the robust (median/MAD) threshold",
    ),
    BarRule(
        "price_spikes",
        ALL_GRANULARITIES,
        price_spikes,
        description="no bar far from both neighbours",
    ),
    BarRule(
        "unit_errors",
        ALL_GRANULARITIES,
        unit_errors,
        description="no bars 100x (or 1/100x) their neighbours",
    ),
    BarRule(
        "split_sized_jumps",
        ALL_GRANULARITIES,
        split_sized_jumps,
        description="no unexplained jumps of a split ratio",
    ),
    BarRule(
        "stale_prices",
        ALL_GRANULARITIES,
        stale_prices,
        description="no long runs of one close with volume",
    ),
    BarRule(
        "zero_volume_moves",
        ALL_GRANULARITIES,
        zero_volume_moves,
        description="no price change without volume",
    ),
    BarRule(
        "daily_vs_minutes",
        ONE_MINUTE_AND_DAILY,
        daily_vs_minutes,
        description="daily bar = aggregate of its minute bars within 1%",
    ),
    BarRule(
        "open_vs_previous_close",
        ONE_MINUTE_AND_DAILY,
        open_vs_previous_close,
        description="first open within 5% of the previous close",
    ),
    BarRule(
        "split_not_reflected",
        ALL_GRANULARITIES,
        split_not_reflected,
        needs_actions=True,
        description="listed splits show on their ex-date",
    ),
    BarRule(
        "dividend_mismatch",
        ALL_GRANULARITIES,
        dividend_mismatch,
        needs_actions=True,
        description="listed dividends agree with prices",
    ),
)
RULES_BY_NAME = {rule.name: rule for rule in BAR_RULES}

RESULT_SCHEMA: dict[str, pl.DataType] = {
    "dataset": pl.String(),
    "symbol": pl.String(),
    "session": pl.Date(),
    "rule": pl.String(),
    "severity": pl.String(),
    "passed": pl.Boolean(),
    "offending_rows": pl.Int64(),
    "score_contribution": pl.Float64(),
    "details": pl.String(),  # JSON object; "{}" when passed
    "sample": pl.String(),  # JSON list; "[]" when passed
}
PARTITION_SCHEMA: dict[str, pl.DataType] = {
    "dataset": pl.String(),
    "symbol": pl.String(),
    "session": pl.Date(),
    "rows": pl.Int64(),
    "source": pl.String(),
    "score": pl.Float64(),
    "errors": pl.Int64(),
    "warnings": pl.Int64(),
}
MAX_GAPS_IN_DETAILS = 20
FINDING_META = ("symbol", "session", "rows")


@dataclass(frozen=True)
class QualityReport:
    """Results of `check_bars`: per (partition, rule) and per partition."""

    results: pl.DataFrame
    partitions: pl.DataFrame

    def partition_quality(self) -> list[PartitionQuality]:
        """One `PartitionQuality` (with its `RuleResult`s) per partition, in partition order."""
        by_partition: dict[tuple[str, dt.date], list[RuleResult]] = defaultdict(list)
        for row in self.results.iter_rows(named=True):
            by_partition[(row["symbol"], row["session"])].append(
                RuleResult(
                    rule=row["rule"],
                    passed=row["passed"],
                    severity=Severity(row["severity"]),
                    offending_rows=row["offending_rows"],
                    sample=json.loads(row["sample"]),
                    score_contribution=row["score_contribution"],
                    details=json.loads(row["details"]),
                )
            )
        return [
            PartitionQuality(
                dataset=row["dataset"],
                symbol=row["symbol"],
                session=row["session"],
                rows=row["rows"],
                source=row["source"],
                results=tuple(by_partition[(row["symbol"], row["session"])]),
                score=row["score"],
            )
            for row in self.partitions.iter_rows(named=True)
        ]


def check_bars(
    bars: pl.DataFrame, context: RuleContext, rules: Sequence[BarRule] = BAR_RULES
) -> QualityReport:
    """Judge the bars of `context.partitions` with every applicable, enabled rule.

    `bars` are canonical bars of `context.dataset` (rows outside the partitions are
    ignored). Symbols with their own overrides in checks.yaml are judged with their settings.
    """
    wanted = list(dict.fromkeys(context.partitions))
    groups: dict[int, tuple[BarRuleSettings, list[str]]] = {}
    for symbol in dict.fromkeys(s for s, _ in wanted):
        settings = context.settings_for(symbol)
        groups.setdefault(id(settings), (settings, []))[1].append(symbol)
    result_parts: list[pl.LazyFrame] = []
    facts: dict[tuple[str, dt.date], tuple[int, str]] = {}
    for settings, symbols in groups.values():
        members = set(symbols)
        group_context = dataclasses.replace(
            context,
            partitions=tuple(p for p in wanted if p[0] in members),
            group_settings=settings,
        )
        group_bars = bars if len(groups) == 1 else bars.filter(pl.col("symbol").is_in(symbols))
        frame = prepare_bars(group_bars, group_context, settings)
        group_context = dataclasses.replace(group_context, return_stats=compute_return_stats(frame))
        result_parts.append(_run_rules(frame, group_context, settings, rules))
        facts.update(_partition_facts(frame))
    if not result_parts:
        return QualityReport(
            results=pl.DataFrame(schema=RESULT_SCHEMA),
            partitions=pl.DataFrame(schema=PARTITION_SCHEMA),
        )
    results = (
        pl.concat(result_parts, how="vertical")
        .with_columns(penalty_expr(context.thresholds.score.weights).alias("score_contribution"))
        .select(list(RESULT_SCHEMA))
        .collect()
    )
    return QualityReport(
        results=results, partitions=_partitions(context.dataset, wanted, facts, results)
    )


def _partition_facts(frame: pl.DataFrame) -> dict[tuple[str, dt.date], tuple[int, str]]:
    """(symbol, session) -> (rows, source) of the judged partitions that hold bars.

    Rows of one session are contiguous in the prepared frame, so this is one lookup per
    session. A partition fed by several sources says "a+b" (sorted, joined with "+").
    """
    segments = session_segments(frame)
    starts = segments[:-1]
    judged = column(frame, "judged")[starts]
    starts, lengths = starts[judged], np.diff(segments)[judged]
    symbols = frame.get_column("symbol").gather(starts).to_list()
    sessions = frame.get_column("session").gather(starts).to_list()
    sources = frame.get_column("source").fill_null("none").gather(starts).to_list()
    source = frame.get_column("source").fill_null("none")
    mixed = (source != source.shift(1)).fill_null(False) & ~frame.get_column("new_session")
    if mixed.any():
        per_partition = (
            frame.filter(pl.col("judged"))
            .group_by("symbol", "session")
            .agg(pl.col("source").fill_null("none").unique().sort().str.join("+"))
        )
        joined = {(s, d): src for s, d, src in per_partition.iter_rows()}
        sources = [joined[(s, d)] for s, d in zip(symbols, sessions, strict=True)]
    return {
        (symbol, session): (int(length), src)
        for symbol, session, length, src in zip(symbols, sessions, lengths, sources, strict=True)
    }


def _partitions(
    dataset: str,
    wanted: Sequence[tuple[str, dt.date]],
    facts: dict[tuple[str, dt.date], tuple[int, str]],
    results: pl.DataFrame,
) -> pl.DataFrame:
    """One row per judged partition: rows, source, score and failed rules by severity.

    Passing results take nothing off the score, so only the failing rows are visited.
    """
    penalty: dict[tuple[str, dt.date], float] = defaultdict(float)
    errors: dict[tuple[str, dt.date], int] = defaultdict(int)
    warnings: dict[tuple[str, dt.date], int] = defaultdict(int)
    for symbol, session, severity, points in (
        results.filter(~pl.col("passed"))
        .select("symbol", "session", "severity", "score_contribution")
        .iter_rows()
    ):
        penalty[(symbol, session)] += points
        counter = errors if severity == Severity.ERROR.value else warnings
        counter[(symbol, session)] += 1
    rows = [facts.get(pair, (0, "none")) for pair in wanted]
    return pl.DataFrame(
        {
            "dataset": [dataset] * len(wanted),
            "symbol": [s for s, _ in wanted],
            "session": [d for _, d in wanted],
            "rows": [r for r, _ in rows],
            "source": [src for _, src in rows],
            "score": [min(100.0, max(0.0, 100.0 - penalty[pair])) for pair in wanted],
            "errors": [errors[pair] for pair in wanted],
            "warnings": [warnings[pair] for pair in wanted],
        },
        schema=PARTITION_SCHEMA,
    )


def _run_rules(
    frame: pl.DataFrame,
    context: RuleContext,
    settings: BarRuleSettings,
    rules: Sequence[BarRule],
) -> pl.LazyFrame:
    """One row per (checked partition, rule): passing rows in one vectorised pass, failing
    ones with their details and sample."""
    everywhere: dict[str, list[str]] = {"rule": [], "severity": []}
    specific: list[pl.DataFrame] = []
    found: list[pl.DataFrame] = []
    for rule in rules:
        rule_settings = settings.rule(rule.name)
        if not rule_settings.enabled or not rule.applies_to(context):
            continue
        findings = rule.find(frame, context, rule_settings)
        severity = rule_settings.severity.value
        if findings.checked is None:
            everywhere["rule"].append(rule.name)
            everywhere["severity"].append(severity)
        else:
            specific.append(
                findings.checked.select(
                    "symbol",
                    "session",
                    pl.lit(rule.name).alias("rule"),
                    pl.lit(severity).alias("severity"),
                )
            )
        if not findings.rows.is_empty():
            found.append(_describe(rule.name, findings.rows, context.thresholds.sample_rows))
    keys = (
        partitions_frame(context.partitions)
        .lazy()
        .join(
            pl.DataFrame(everywhere, schema={"rule": pl.String(), "severity": pl.String()}).lazy(),
            how="cross",
        )
    )
    if specific:
        keys = pl.concat([keys, *(part.lazy() for part in specific)], how="vertical")
    if found:
        keys = keys.join(
            pl.concat(found).lazy(),
            on=["symbol", "session", "rule"],
            how="left",
            maintain_order="left",
        )
    else:
        keys = keys.with_columns(
            pl.lit(None, dtype=pl.Int64).alias("offending_rows"),
            pl.lit(None, dtype=pl.String).alias("details"),
            pl.lit(None, dtype=pl.String).alias("sample"),
        )
    return keys.select(
        pl.lit(context.dataset).alias("dataset"),
        "symbol",
        "session",
        "rule",
        "severity",
        pl.col("offending_rows").is_null().alias("passed"),
        pl.col("offending_rows").fill_null(0),
        pl.lit(0.0).alias("score_contribution"),
        pl.col("details").fill_null("{}"),
        pl.col("sample").fill_null("[]"),
    )


def _describe(rule: str, found: pl.DataFrame, sample_rows: int) -> pl.DataFrame:
    """Per failing (symbol, session): offending rows, details and sample (JSON)."""
    records: dict[str, list[Any]] = {
        "symbol": [],
        "session": [],
        "rule": [],
        "offending_rows": [],
        "details": [],
        "sample": [],
    }
    has_gaps = "start" in found.columns and "end" in found.columns
    has_kind = "kind" in found.columns
    shown = [c for c in found.columns if c not in FINDING_META]
    for (symbol, session), part in found.partition_by(
        "symbol", "session", as_dict=True, maintain_order=True
    ).items():
        detail: dict[str, Any] = {"findings": part.height}
        if has_kind:
            kinds = Counter(
                k for value in part.get_column("kind").drop_nulls() for k in value.split(",") if k
            )
            detail["kinds"] = dict(sorted(kinds.items()))
        if has_gaps:
            gaps = part.select("start", "end", "rows").head(MAX_GAPS_IN_DETAILS)
            detail["gaps"] = [
                {"start": _jsonable(s), "end": _jsonable(e), "missing": int(n)}
                for s, e, n in gaps.iter_rows()
            ]
        sample = [
            {k: _jsonable(v) for k, v in row.items()}
            for row in part.select(shown).head(sample_rows).iter_rows(named=True)
        ]
        records["symbol"].append(symbol)
        records["session"].append(session)
        records["rule"].append(rule)
        records["offending_rows"].append(int(part.get_column("rows").sum()))
        records["details"].append(json.dumps(detail))
        records["sample"].append(json.dumps(sample))
    return pl.DataFrame(
        records,
        schema={
            "symbol": pl.String(),
            "session": pl.Date(),
            "rule": pl.String(),
            "offending_rows": pl.Int64(),
            "details": pl.String(),
            "sample": pl.String(),
        },
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else str(value)
    return value
