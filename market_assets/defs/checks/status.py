"""What `market-assets status`, `report` and `demo` say about the quality checks.

The numbers are the coverage report's (`defs/assets/coverage.py`): Dagster's partition and
check records plus the lake's check results table.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
from dagster import AssetCheckSeverity, DagsterEventType, DagsterInstance
from rich.table import Table

from market_assets.core.config import AppConfig
from market_assets.core.rules.report import Coverage
from market_assets.core.stores.check_results import CheckResultsStore
from market_assets.core.stores.lake import ParquetLake
from market_assets.core.stores.layout import GRANULARITY_DATASET
from market_assets.defs.assets.coverage import collect_coverage

RESULT_FIELDS = ("dataset", "symbol", "session", "rule", "severity", "passed", "offending_rows")


def bar_datasets_of(config: AppConfig, only: Sequence[str] | None = None) -> list[str]:
    """Configured bar datasets (bars_1m ... bars_1d), optionally restricted to `only`."""
    names = [d for d in GRANULARITY_DATASET.values() if d in config.datasets]
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise ValueError(f"unknown bar dataset(s) {unknown}; known: {names}")
        names = [d for d in names if d in only]
    return names


def lake_of(config: AppConfig) -> ParquetLake:
    return ParquetLake(
        config.data_dir, s3_endpoint_url=config.s3_endpoint_url, s3_region=config.s3_region
    )


def coverage_of(
    instance: DagsterInstance, config: AppConfig, only: Sequence[str] | None = None
) -> Coverage:
    return collect_coverage(instance, config, lake_of(config), bar_datasets_of(config, only))


def results_json(config: AppConfig, only: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Every stored check result: dataset, symbol, session, rule, severity, passed,
    offending_rows (and the partition's score and the result's details)."""
    datasets = bar_datasets_of(config, only)
    first = min((config.datasets[d].start.year for d in datasets), default=dt.date.today().year)
    results = CheckResultsStore(lake_of(config)).read(
        datasets, range(first, dt.date.today().year + 1)
    )
    ordered = results.sort("dataset", "symbol", "session", "rule").select(
        *RESULT_FIELDS,
        pl.col("partition_score").alias("score"),
        pl.col("details"),
    )
    return [{**row, "session": row["session"].isoformat()} for row in ordered.iter_rows(named=True)]


def coverage_json(coverage: Coverage) -> dict[str, Any]:
    def rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
        return [
            {k: v.isoformat() if isinstance(v, dt.date) else v for k, v in row.items()}
            for row in frame.iter_rows(named=True)
        ]

    return {
        "generated_at": coverage.generated_at.isoformat(),
        "summary": rows(coverage.summary),
        "failures": rows(coverage.failures),
        "feeds": rows(coverage.feeds),
        "gaps": rows(coverage.gaps),
    }


def status_tables(coverage: Coverage) -> list[Table]:
    """The terminal view: summary by dataset, failures by rule, feeds below threshold."""
    tables = []
    summary = Table(title="coverage and quality by dataset")
    columns = (
        "dataset",
        "symbols",
        "first_month",
        "last_month",
        "expected",
        "present",
        "coverage_pct",
        "checked",
        "score",
        "error_partitions",
        "warn_partitions",
        "quarantined_rows",
    )
    for column in columns:
        summary.add_column(column, justify="left" if column == "dataset" else "right")
    for row in coverage.summary.select(columns).iter_rows():
        summary.add_row(*("-" if v is None else str(v) for v in row))
    tables.append(summary)
    failures = Table(title="failures by rule")
    for column in ("severity", "dataset", "rule", "failed_partitions", "offending_rows", "symbols"):
        failures.add_column(column)
    for row in coverage.failures.select(
        "severity", "dataset", "rule", "failed_partitions", "offending_rows", "symbols"
    ).iter_rows():
        failures.add_row(*(str(v) for v in row))
    if coverage.failures.is_empty():
        failures.add_row("-", "-", "no failures", "0", "0", "-")
    tables.append(failures)
    low = coverage.feeds.filter(pl.col("score") < coverage.feed_alert_below)
    feeds = Table(title=f"feeds scoring below {coverage.feed_alert_below:g}")
    for column in ("dataset", "source", "month", "score", "partitions"):
        feeds.add_column(column)
    for row in low.select("dataset", "source", "month", "score", "partitions").iter_rows():
        feeds.add_row(*(str(v) for v in row))
    if low.is_empty():
        feeds.add_row("-", "-", "-", "none below", "-")
    tables.append(feeds)
    return tables


@dataclass(frozen=True)
class RunCheckSummary:
    """Check evaluations recorded by a set of runs."""

    partitions: Counter[str]
    error_failures: int
    warn_failures: int

    def line(self) -> str:
        total = sum(self.partitions.values())
        if not total:
            return "checks: no partition was judged"
        passed = 100.0 * (total - self.error_failures) / total
        per_dataset = ", ".join(f"{d} {n}" for d, n in sorted(self.partitions.items()))
        return (
            f"checks: {total} partitions judged ({per_dataset}); ERROR rules passed on "
            f"{passed:.1f}% of them, {self.warn_failures} partition(s) with WARN findings "
            "(market-assets status / report for details)"
        )


def summarize_run_checks(instance: DagsterInstance, run_ids: Sequence[str]) -> RunCheckSummary:
    """Count the check evaluations of `run_ids` by dataset and outcome."""
    partitions: Counter[str] = Counter()
    errors = warnings = 0
    for run_id in run_ids:
        records = instance.get_records_for_run(
            run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
        for record in records:
            event = record.event_log_entry.dagster_event
            if event is None:
                continue
            evaluation = event.asset_check_evaluation_data
            partitions[evaluation.asset_key.path[-1]] += 1
            if not evaluation.passed:
                if evaluation.severity is AssetCheckSeverity.ERROR:
                    errors += 1
                else:
                    warnings += 1
    return RunCheckSummary(partitions, errors, warnings)
