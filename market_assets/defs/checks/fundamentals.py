"""Partitioned `quality` checks on fundamentals and fundamental_ratios.

One check per asset, partitioned like it and non-blocking (a filer's defect must not stop the
other symbols' ratios); it records one `AssetCheckEvaluation(partition=key)` per partition key
of the run (see defs/checks/bars.py for why), failed with ERROR when an ERROR rule fails,
WARN otherwise, the rules' results in its metadata. A partition without facts (most sessions:
a company files a few times a year) passes with nothing to judge.
"""

import datetime as dt
import json
import warnings
from collections.abc import Callable, Iterator, Sequence
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
    MetadataValue,
    Output,
    PartitionsDefinition,
    multi_asset_check,
)

from market_assets.core.fundamentals.config import load_fundamentals_config
from market_assets.core.fundamentals.rules import (
    RATIO_RULES,
    RULES,
    filing_lags,
    judge_fundamentals,
    judge_ratios,
)
from market_assets.defs.checks.bars import target_materializations
from market_assets.defs.events import record_evaluations
from market_assets.defs.partitions import split_partition_key
from market_assets.defs.resources import PlatformResource

warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*")

CHECK_NAME = "quality"
Judged = tuple[pl.DataFrame, dict[tuple[str, dt.date], dict[str, Any]]]
Judge = Callable[[PlatformResource, str, list[tuple[str, dt.date]]], Judged]


def _members(
    platform: PlatformResource, keys: Sequence[str]
) -> dict[str, list[tuple[str, dt.date]]]:
    symbol_partitions = platform.app_config().symbol_partitions
    members = {}
    for key in keys:
        session, symbol_key = split_partition_key(key)
        symbols = symbol_partitions.symbols_for_key(symbol_key, session)
        members[str(key)] = [(s, session) for s in symbols]
    return members


def _judge_facts(
    platform: PlatformResource, dataset: str, pairs: list[tuple[str, dt.date]]
) -> Judged:
    config = platform.app_config()
    lake = platform.lake()
    facts = lake.read_partitions(dataset, pairs)
    symbols = sorted({symbol for symbol, _ in pairs})
    last = max(session for _, session in pairs) + dt.timedelta(days=1)
    history = lake.read(dataset, symbols, config.datasets[dataset].start, last)
    results = judge_fundamentals(facts, history, load_fundamentals_config(config.config_dir))
    facts_per = {
        (symbol, session): {"facts": count, "filings": filings}
        for symbol, session, count, filings in facts.group_by("symbol", "session")
        .agg(pl.len(), pl.col("accession").n_unique())
        .iter_rows()
    }
    for symbol, session, accession, _, filed, end, lag in filing_lags(facts).iter_rows():
        facts_per[(symbol, session)].setdefault("filing_lag_days", {})[accession] = lag
        facts_per[(symbol, session)].setdefault("filed", str(filed))
        facts_per[(symbol, session)].setdefault("period_ends", []).append(str(end))
    return results, facts_per


def _judge_ratio_rows(
    platform: PlatformResource, dataset: str, pairs: list[tuple[str, dt.date]]
) -> Judged:
    ratios = platform.lake().read_partitions(dataset, pairs)
    rows = {(symbol, ts.date()): {"rows": 1} for symbol, ts in ratios.select("symbol", "ts").rows()}
    return judge_ratios(ratios), rows


def build_fundamental_checks(assets: Sequence[AssetsDefinition]) -> list[AssetChecksDefinition]:
    """One partitioned `quality` check per fundamentals and fundamental_ratios asset."""
    checks = []
    for assets_def in assets:
        for key in assets_def.keys:
            facts = assets_def.metadata_by_key[key].get("placed_by") == "filed"
            rules = RULES if facts else RATIO_RULES
            judge = _judge_facts if facts else _judge_ratio_rows
            checks.append(_check(key, assets_def.partitions_def, rules, judge))
    return checks


def _check(
    asset_key: AssetKey,
    partitions_def: PartitionsDefinition | None,
    rules: dict[str, str],
    judge: Judge,
) -> AssetChecksDefinition:
    dataset = asset_key.path[-1]
    spec = AssetCheckSpec(
        CHECK_NAME,
        asset=asset_key,
        partitions_def=partitions_def,
        blocking=False,
        description=(
            f"Rules on every stored {dataset} partition (configs/fundamentals.yaml): "
            + ", ".join(f"{rule} ({severity})" for rule, severity in rules.items())
            + ". Fails with ERROR when an ERROR rule fails, WARN otherwise; never blocks."
        ),
    )

    @multi_asset_check(specs=[spec], name=f"{dataset}_{CHECK_NAME}")
    def _quality(context: AssetCheckExecutionContext, platform: PlatformResource) -> Iterator:
        keys = [str(key) for key in context.partition_keys]
        members = _members(platform, keys)
        pairs = [pair for key in keys for pair in members[key]]
        results, facts = judge(platform, dataset, pairs)
        targets = target_materializations(context.instance, asset_key, context.run.run_id, keys)
        by_pair = {
            (symbol, session): part
            for (symbol, session), part in results.partition_by(
                "symbol", "session", as_dict=True
            ).items()
        }
        evaluations = []
        for key in keys:
            rows = [by_pair[p] for p in members[key] if p in by_pair]
            judged = pl.concat(rows) if rows else results.clear()
            evaluations.append(
                _evaluation(spec.key, key, judged, members[key], facts, targets.get(key))
            )
        yield from record_evaluations(context, evaluations)
        yield Output(
            None,
            output_name=context.op_execution_context.assets_def.get_output_name_for_asset_check_key(
                spec.key
            ),
        )

    return _quality


def _evaluation(
    check_key: AssetCheckKey,
    key: str,
    rows: pl.DataFrame,
    members: list[tuple[str, dt.date]],
    facts: dict[tuple[str, dt.date], dict[str, Any]],
    target,  # noqa: ANN001 - AssetCheckEvaluationTargetMaterializationData | None
) -> AssetCheckEvaluation:
    failed = rows.filter(~pl.col("passed"))
    has_error = bool((failed.get_column("severity") == "ERROR").any())
    metadata: dict[str, Any] = {
        "symbols": len(members),
        "rules_checked": rows.get_column("rule").n_unique(),
    }
    for pair in members:
        for name, value in facts.get(pair, {}).items():
            label = name if len(members) == 1 else f"{pair[0]}.{name}"
            metadata[label] = MetadataValue.json(value) if isinstance(value, dict | list) else value
    if not failed.is_empty():
        metadata["failed_rules"] = MetadataValue.json(
            {
                f"{symbol}.{rule}" if len(members) > 1 else rule: {
                    "severity": severity,
                    "offending_rows": offending,
                    "details": json.loads(details),
                }
                for symbol, rule, severity, offending, details in failed.select(
                    "symbol", "rule", "severity", "offending_rows", "details"
                ).iter_rows()
            }
        )
    if rows.is_empty():
        description = "nothing to judge: no rows in this partition"
    elif failed.is_empty():
        description = f"all {rows.get_column('rule').n_unique()} rules passed"
    else:
        description = "failed: " + "; ".join(
            f"{severity} {rule} ({offending})"
            for rule, severity, offending in failed.select(
                "rule", "severity", "offending_rows"
            ).iter_rows()
        )
    return AssetCheckEvaluation(
        asset_key=check_key.asset_key,
        check_name=check_key.name,
        passed=failed.is_empty(),
        metadata=metadata,
        target_materialization_data=target,
        severity=AssetCheckSeverity.ERROR
        if has_error or failed.is_empty()
        else AssetCheckSeverity.WARN,
        description=description,
        blocking=False,
        partition=key,
    )
