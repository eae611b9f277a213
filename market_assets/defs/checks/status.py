"""What `market-assets status`, `report` and `demo` say about the quality checks.

The numbers are the coverage report's (`defs/assets/coverage.py`): Dagster's partition and
check records plus the lake's check results table.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
from dagster import AssetCheckSeverity, DagsterEventType, DagsterInstance
from rich.table import Table

from market_assets.cli_output import fitted_tables
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


def coverage_records(coverage: Coverage) -> Iterator[dict[str, Any]]:
    """The coverage tables as records, each with its `kind` (summary, failure, feed, gap)
    and the report's `generated_at`: what `status --json` prints, one per line."""
    stamp = coverage.generated_at.isoformat()
    for kind, frame in (
        ("summary", coverage.summary),
        ("failure", coverage.failures),
        ("feed", coverage.feeds),
        ("gap", coverage.gaps),
    ):
        for row in frame.iter_rows(named=True):
            values = {k: v.isoformat() if isinstance(v, dt.date) else v for k, v in row.items()}
            yield {"kind": kind, "generated_at": stamp, **values}


SUMMARY_HEADERS = {
    "dataset": "dataset",
    "symbols": "symbols",
    "first_month": "first month",
    "last_month": "last month",
    "expected": "expected",
    "present": "present",
    "coverage_pct": "coverage %",
    "checked": "checked",
    "score": "score",
    "error_partitions": "ERROR parts",
    "warn_partitions": "WARN parts",
    "quarantined_rows": "quarantined",
}


def status_tables(coverage: Coverage, width: int = 80) -> list[Table]:
    """The terminal view, fitted to `width` columns: summary by dataset, failures by rule,
    feeds below threshold."""
    numbers = {"symbols", "expected", "present", "coverage %", "checked", "score"}
    numbers |= {"ERROR parts", "WARN parts", "quarantined", "failed partitions"}
    numbers |= {"offending rows", "partitions"}
    summary = coverage.summary.select(list(SUMMARY_HEADERS))
    tables = fitted_tables(
        "coverage and quality by dataset",
        list(SUMMARY_HEADERS.values()),
        summary.iter_rows(),
        width,
        right=numbers,
    )
    failures = coverage.failures.select(
        "severity", "dataset", "rule", "failed_partitions", "offending_rows", "symbols"
    )
    rows = list(failures.iter_rows()) or [("-", "-", "no failures", 0, 0, "-")]
    headers = ["severity", "dataset", "rule", "failed partitions", "offending rows", "symbols"]
    tables += fitted_tables("failures by rule", headers, rows, width, keys=3, right=numbers)
    low = coverage.feeds.filter(pl.col("score") < coverage.feed_alert_below)
    rows = list(low.select("dataset", "source", "month", "score", "partitions").iter_rows())
    tables += fitted_tables(
        f"feeds scoring below {coverage.feed_alert_below:g}",
        ["dataset", "source", "month", "score", "partitions"],
        rows or [("-", "-", "-", "none below", "-")],
        width,
        keys=2,
        right=numbers,
    )
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
