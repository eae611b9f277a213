"""Partitioned asset checks on every bar asset: the `quality` check.

One check per bar asset, partitioned like the asset and blocking: every partition a run
materializes gets one evaluation, failed with severity ERROR when an ERROR rule fails (which
blocks the assets downstream in the run; see `blocks_something`) or WARN when only WARN
rules fail (which does not).
Per-rule results live in the evaluation's metadata and, per symbol, in the lake's check
results table (`quality/check_results/`).

Dagster 1.13 stores an `AssetCheckResult` of a ranged run (several partitions per run) with
no partition, so the check records one `AssetCheckEvaluation(partition=key)` per partition
key instead, each pointing at that partition's latest materialization: the UI then shows
every partition's check status as current. One spec per asset (rather than one per rule)
keeps Dagster's bookkeeping at one evaluation event per partition. In runs with deferred
asset events (defs/events.py) the evaluations are stored in one batch and a failed blocking
evaluation fails the step itself (which is what stops the steps downstream); other runs
yield them to Dagster one by one.
"""

import datetime as dt
import json
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import polars as pl
from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetsDefinition,
    DagsterEventType,
    DagsterInstance,
    Failure,
    MetadataValue,
    Output,
    PartitionsDefinition,
    multi_asset_check,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from market_assets.core.config import SymbolPartitions
from market_assets.core.rules import QualityReport, check_bars, load_thresholds
from market_assets.core.rules.engine import RULES_BY_NAME
from market_assets.core.stores.check_results import CHECK_RESULT_SCHEMA, CheckResultsStore
from market_assets.core.stores.layout import GRANULARITY_DATASET
from market_assets.defs.checks.inputs import gather_inputs
from market_assets.defs.events import CHECK_SECONDS, deferred, record_evaluations, step_of
from market_assets.defs.partitions import split_partition_key
from market_assets.defs.resources import PlatformResource

# Partitioned asset checks are a preview feature of Dagster 1.13; they are the documented way
# to record a check per partition, so the warning is expected and silenced here only.
warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*")

CHECK_NAME = "quality"
MAX_GAPS_IN_METADATA = 20


def bar_datasets(assets: Sequence[AssetsDefinition]) -> dict[str, AssetsDefinition]:
    """The bar assets (bars_1m ... bars_1d) among `assets`, by dataset name."""
    bar_names = set(GRANULARITY_DATASET.values())
    return {
        key.path[-1]: assets_def
        for assets_def in assets
        for key in assets_def.keys
        if key.path[-1] in bar_names
    }


def build_bar_checks(assets: Sequence[AssetsDefinition]) -> list[AssetChecksDefinition]:
    """One blocking, partitioned `quality` check per bar asset."""
    return [
        _quality_check(dataset, assets_def.partitions_def)
        for dataset, assets_def in bar_datasets(assets).items()
    ]


def _quality_check(
    dataset: str, partitions_def: PartitionsDefinition | None
) -> AssetChecksDefinition:
    granularity = dataset.removeprefix("bars_")
    spec = AssetCheckSpec(
        CHECK_NAME,
        asset=AssetKey(dataset),
        partitions_def=partitions_def,
        blocking=True,
        description=(
            f"Data-quality rules on every stored {dataset} partition (configs/checks.yaml): "
            + "; ".join(
                rule.description
                for rule in RULES_BY_NAME.values()
                if granularity in rule.granularities and rule.description
            )
            + ". Fails with ERROR (blocking downstream) when an ERROR rule fails, WARN otherwise."
        ),
    )

    @multi_asset_check(specs=[spec], name=f"{dataset}_{CHECK_NAME}")
    def _check(context: AssetCheckExecutionContext, platform: PlatformResource) -> Iterator[Any]:
        yield from run_quality_check(context, platform, dataset, granularity, spec.key)

    return _check


def run_quality_check(
    context: AssetCheckExecutionContext,
    platform: PlatformResource,
    dataset: str,
    granularity: str,
    check_key: AssetCheckKey,
) -> Iterator[Any]:
    """Judge the run's partitions; yield one evaluation per partition key, then the output."""
    started = time.perf_counter()
    config = platform.app_config()
    thresholds = load_thresholds(config.config_dir)
    keys = list(context.partition_keys)
    members = _members(keys, config.symbol_partitions)
    pairs = [pair for key in keys for pair in members[key]]
    lake = platform.lake()
    inputs = gather_inputs(lake, config, thresholds, dataset, granularity, pairs)
    for problem in inputs.unreadable_context:
        context.log.warning(f"{dataset} quality judged without some context: {problem}")
    read = time.perf_counter()
    report = check_bars(inputs.bars, inputs.context)
    judged = time.perf_counter()
    rows = result_rows(report, inputs.quarantined, members, context.run.run_id)
    CheckResultsStore(lake).replace(dataset, rows, pairs)
    targets = target_materializations(
        context.instance, check_key.asset_key, context.run.run_id, keys
    )
    blocking = blocks_something(context, check_key.asset_key)
    evaluations = list(_evaluations_by_key(check_key, rows, keys, targets, blocking))
    prepared = time.perf_counter()
    step = step_of(context)
    yield from record_evaluations(step, evaluations)
    recorded = time.perf_counter()
    failed = [e for e in evaluations if not e.passed]
    errors = sum(1 for e in failed if e.severity is AssetCheckSeverity.ERROR)
    context.log.info(
        f"{dataset}: judged {len(keys)} partition(s) ({len(pairs)} symbol-sessions): "
        f"{errors} failed with ERROR, {len(failed) - errors} with WARN. Seconds: read "
        f"{read - started:.3f}, rules {judged - read:.3f}, results table and evaluations "
        f"{prepared - judged:.3f}, Dagster recording {len(evaluations)} evaluations "
        f"{recorded - prepared:.3f}"
    )
    # Our code's share of the step (reading, rules, results table; not the recording),
    # which run summaries count as ours (defs/runner.py).
    yield check_output(
        context,
        step,
        check_key,
        dataset,
        evaluations,
        blocking,
        {CHECK_SECONDS: round(prepared - started, 4)},
    )


def check_output(
    context: AssetCheckExecutionContext,
    step: Any,
    check_key: AssetCheckKey,
    dataset: str,
    evaluations: Sequence[AssetCheckEvaluation],
    blocking: bool,
    metadata: dict[str, Any] | None = None,
) -> Output:
    """A per-partition check step's closing output, after its evaluations were recorded.

    In runs with deferred events Dagster does not see the evaluations, so a blocking check
    with ERROR partitions fails the step itself (stopping the assets downstream in the run).
    """
    errors = [e for e in evaluations if not e.passed and e.severity is AssetCheckSeverity.ERROR]
    if deferred(step) and blocking and errors:
        raise Failure(
            description=(
                f"{dataset} quality: {len(errors)} partition(s) failed an ERROR rule (blocking "
                f"the assets downstream in this run), first {errors[0].partition}: "
                f"{errors[0].description}"
            ),
            metadata={"failed_partitions": len(errors)},
        )
    return Output(
        None,
        output_name=context.op_execution_context.assets_def.get_output_name_for_asset_check_key(
            check_key
        ),
        metadata=metadata,
    )


def _members(
    keys: Sequence[str], symbol_partitions: SymbolPartitions
) -> dict[str, list[tuple[str, dt.date]]]:
    """Each partition key's (symbol, session) pairs (a bucket key: its member symbols)."""
    members: dict[str, list[tuple[str, dt.date]]] = {}
    for key in keys:
        session, symbol_key = split_partition_key(key)
        members[str(key)] = [
            (symbol, session) for symbol in symbol_partitions.symbols_for_key(symbol_key, session)
        ]
    return members


def result_rows(
    report: QualityReport,
    quarantined: pl.DataFrame,
    members: Mapping[str, Sequence[tuple[str, dt.date]]],
    run_id: str,
) -> pl.DataFrame:
    """The report's results with their partition key, partition facts and run, for storage."""
    owner = pl.DataFrame(
        {
            "symbol": [s for pairs in members.values() for s, _ in pairs],
            "session": [d for pairs in members.values() for _, d in pairs],
            "partition_key": [k for k, pairs in members.items() for _ in pairs],
        },
        schema={"symbol": pl.String(), "session": pl.Date(), "partition_key": pl.String()},
    ).unique(["symbol", "session"], keep="first")
    facts = report.partitions.select(
        "symbol", "session", "source", "rows", pl.col("score").alias("partition_score")
    )
    return (
        report.results.join(facts, on=["symbol", "session"], how="left")
        .join(owner, on=["symbol", "session"], how="left")
        .join(quarantined, on=["symbol", "session"], how="left")
        .with_columns(
            pl.col("quarantined_rows").fill_null(0),
            pl.lit(run_id).alias("run_id"),
            pl.lit(dt.datetime.now(dt.UTC)).alias("checked_at"),
        )
        .select(pl.col(name).cast(dtype) for name, dtype in CHECK_RESULT_SCHEMA.items())
    )


def blocks_something(context: AssetCheckExecutionContext, asset_key: AssetKey) -> bool:
    """Whether the run materializes an asset downstream of `asset_key`.

    Dagster fails the check's step when a blocking evaluation fails with ERROR, which is what
    stops the downstream steps of the run. With nothing downstream in the run there is
    nothing to stop: the evaluation is then recorded as non-blocking, so a data defect does
    not turn the run into a failure (it stays visible in the check status, its metadata,
    `market-assets status` and the alerts).
    """
    children = context.job_def.asset_layer.asset_graph.get(asset_key).child_keys
    selected = context.run.asset_selection
    return bool(children if selected is None else children & selected)


def _evaluations_by_key(
    check_key: AssetCheckKey,
    rows: pl.DataFrame,
    keys: Sequence[str],
    targets: Mapping[str, AssetCheckEvaluationTargetMaterializationData],
    blocking: bool,
) -> Iterator[AssetCheckEvaluation]:
    """`partition_evaluation` of every key. Keys whose rules all passed (nearly all of a
    history backfill's thousands) get their figures from one group-by instead of a few
    polars calls each; keys with failures, or no rows, go through `partition_evaluation`."""
    failed_keys = set(rows.filter(~pl.col("passed")).get_column("partition_key").unique())
    figures = {
        key: figure
        for key, *figure in rows.unique(["partition_key", "symbol", "session"])
        .group_by("partition_key")
        .agg(
            pl.col("partition_score").mean().alias("score"),
            pl.col("partition_score").min().alias("min_score"),
            pl.col("rows").sum(),
            pl.col("quarantined_rows").sum(),
            pl.len(),
        )
        .join(
            rows.group_by("partition_key").agg(rules=pl.col("rule").n_unique()),
            on="partition_key",
        )
        .iter_rows()
    }
    by_key = {
        key: part
        for (key,), part in rows.filter(pl.col("partition_key").is_in(list(failed_keys)))
        .partition_by("partition_key", as_dict=True)
        .items()
    }
    empty = rows.clear()
    for key in map(str, keys):
        figure = figures.get(key)
        if key in failed_keys or figure is None:
            yield partition_evaluation(check_key, key, by_key.get(key, empty), targets, blocking)
            continue
        score, min_score, row_count, quarantined, symbols, rules = figure
        metadata: dict[str, Any] = {
            "score": round(float(score or 0.0), 2),
            "rows": int(row_count),
            "quarantined_rows": int(quarantined),
            "rules_checked": rules,
            "symbols": symbols,
        }
        if symbols > 1:
            metadata["min_score"] = float(min_score or 0.0)
        yield AssetCheckEvaluation(
            asset_key=check_key.asset_key,
            check_name=check_key.name,
            passed=True,
            metadata=metadata,
            target_materialization_data=targets.get(key),
            severity=AssetCheckSeverity.ERROR,
            description=f"all {rules} rules passed",
            blocking=blocking,
            partition=key,
        )


def partition_evaluation(
    check_key: AssetCheckKey,
    key: str,
    rows: pl.DataFrame,
    targets: Mapping[str, AssetCheckEvaluationTargetMaterializationData],
    blocking: bool = True,
) -> AssetCheckEvaluation:
    """One partition key's evaluation from its stored result rows (one or more symbols)."""
    failed = rows.filter(~pl.col("passed"))
    has_error = bool((failed.get_column("severity") == "ERROR").any())
    partitions = rows.unique(["symbol", "session"])
    metadata: dict[str, Any] = {
        "score": round(float(partitions.get_column("partition_score").mean() or 0.0), 2),
        "rows": int(partitions.get_column("rows").sum()),
        "quarantined_rows": int(partitions.get_column("quarantined_rows").sum()),
        "rules_checked": rows.get_column("rule").n_unique(),
        "symbols": partitions.height,
    }
    if partitions.height > 1:
        metadata["min_score"] = float(partitions.get_column("partition_score").min() or 0.0)
    if failed.height:
        metadata.update(_failure_metadata(failed))
    return AssetCheckEvaluation(
        asset_key=check_key.asset_key,
        check_name=check_key.name,
        passed=failed.is_empty(),
        metadata=metadata,
        target_materialization_data=targets.get(key),
        severity=AssetCheckSeverity.ERROR
        if has_error or failed.is_empty()
        else AssetCheckSeverity.WARN,
        description=_describe(failed, rows.get_column("rule").n_unique()),
        blocking=blocking,
        partition=key,
    )


def _failure_metadata(failed: pl.DataFrame) -> dict[str, Any]:
    by_rule = (
        failed.group_by("rule", "severity", maintain_order=True)
        .agg(
            pl.col("offending_rows").sum(),
            pl.col("symbol").unique().sort(),
        )
        .sort("severity", "rule")
    )
    summary = {
        rule: {"severity": severity, "offending_rows": int(rows_), "symbols": symbols}
        for rule, severity, rows_, symbols in by_rule.iter_rows()
    }
    first = failed.sort("severity", "rule").row(0, named=True)
    gaps: list[dict[str, Any]] = []
    for details, symbol in failed.select("details", "symbol").iter_rows():
        for gap in json.loads(details).get("gaps", []):
            gaps.append({"symbol": symbol, **gap})
    metadata: dict[str, Any] = {
        "failed_rules": MetadataValue.json(summary),
        "sample": MetadataValue.json(
            {"rule": first["rule"], "symbol": first["symbol"], "rows": json.loads(first["sample"])}
        ),
    }
    if gaps:
        metadata["gaps"] = MetadataValue.json(gaps[:MAX_GAPS_IN_METADATA])
        metadata["gap_count"] = len(gaps)
    return metadata


def _describe(failed: pl.DataFrame, rules: int) -> str:
    if failed.is_empty():
        return f"all {rules} rules passed"
    parts = [
        f"{severity} {rule} ({rows_} rows)"
        for rule, severity, rows_ in failed.group_by("rule", "severity", maintain_order=True)
        .agg(pl.col("offending_rows").sum())
        .sort("severity", "rule")
        .iter_rows()
    ]
    return f"{len(parts)} of {rules} rules failed: " + "; ".join(parts)


def target_materializations(
    instance: DagsterInstance, asset_key: AssetKey, run_id: str, keys: Sequence[str]
) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """The latest materialization of each partition key (this run's, when it made one).

    Dagster shows a partition's check status only while it points at the partition's
    latest materialization, so each evaluation carries it. Two indexed queries, no payloads.
    """
    kind = DagsterEventType.ASSET_MATERIALIZATION
    records = instance.get_asset_event_summary_records(kind, asset_key=asset_key, run_id=run_id)
    targets = {
        record.partition: AssetCheckEvaluationTargetMaterializationData(
            storage_id=record.storage_id, run_id=record.run_id or run_id, timestamp=record.timestamp
        )
        for record in records
        if record.partition is not None
    }
    missing = {str(key) for key in keys} - set(targets)
    if missing:
        latest = instance.event_log_storage.get_latest_storage_id_by_partition(
            asset_key, kind, partitions=missing
        )
        if latest:
            for record in instance.get_asset_event_summary_records(
                kind, storage_ids=list(latest.values())
            ):
                if record.partition is not None and record.run_id is not None:
                    targets[record.partition] = AssetCheckEvaluationTargetMaterializationData(
                        storage_id=record.storage_id,
                        run_id=record.run_id,
                        timestamp=record.timestamp,
                    )
    return targets
