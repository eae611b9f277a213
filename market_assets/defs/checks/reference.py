"""Checks of the reference family (rules in market_assets.core.reference.rules).

`reference` and `index_constituents` each get one partitioned check, `quality`, that yields
one `AssetCheckEvaluation(partition=key)` per session of the run with every rule's verdict
in its metadata (the bars' pattern, defs/checks/bars.py; stored in one batch in runs with
deferred asset events, defs/events.py); `index_membership` gets one
unpartitioned check that no ticker has two overlapping intervals in one index. None blocks:
nothing downstream in the snapshot runs would be stopped, and a bad day stays visible in the
check status, its metadata and `market-assets status`.
"""


import datetime as dt
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import polars as pl
from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetsDefinition,
    MetadataValue,
    Output,
    asset_check,
    multi_asset_check,
)

from market_assets.core.reference.rules import (
    Verdict,
    constituent_verdicts,
    overlapping_intervals,
    reference_verdicts,
)
from market_assets.core.reference.store import ReferenceStore
from market_assets.core.rules import load_thresholds
from market_assets.defs.assets.reference import CONSTITUENTS, INDEX_MEMBERSHIP, REFERENCE
from market_assets.defs.checks.bars import target_materializations
from market_assets.defs.events import CHECK_SECONDS, record_evaluations
from market_assets.defs.reference_io import session_keys
from market_assets.defs.resources import PlatformResource

warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*")

CHECK_NAME = "quality"
OVERLAP_CHECK = "no_overlapping_intervals"


def _previous_snapshot(
    store: ReferenceStore, dataset: str, before: dt.date, first_year: int, columns: list[str]
) -> pl.DataFrame:
    """The stored snapshot of the last session before `before` (empty when none)."""
    day = store.latest_session(dataset, before - dt.timedelta(days=1), first_year)
    if day is None:
        return store.read_sessions(dataset, before, before - dt.timedelta(days=1), columns)
    return store.read_sessions(dataset, day, day, columns)


def _evaluation(
    check_key: AssetCheckKey, key: str, verdicts: Sequence[Verdict], target: Any
) -> AssetCheckEvaluation:
    failed = [v for v in verdicts if not v.passed]
    errors = [v for v in failed if v.severity == "ERROR"]
    metadata: dict[str, Any] = {
        "rules_checked": len(verdicts),
        "failed_rules": MetadataValue.json([v.rule for v in failed]),
        "results": MetadataValue.json(
            {
                f"{v.rule}{':' + v.details['index'] if 'index' in v.details else ''}": {
                    "passed": v.passed,
                    "severity": v.severity,
                    **{k: val for k, val in v.details.items() if k != "index"},
                }
                for v in verdicts
            }
        ),
    }
    description = (
        f"all {len(verdicts)} rules passed"
        if not failed
        else "failed: " + "; ".join(f"{v.severity} {v.rule}" for v in failed)
    )
    return AssetCheckEvaluation(
        asset_key=check_key.asset_key,
        check_name=check_key.name,
        passed=not failed,
        metadata=metadata,
        severity=AssetCheckSeverity.ERROR if errors or not failed else AssetCheckSeverity.WARN,
        description=description,
        target_materialization_data=target,
        blocking=False,
        partition=key,
    )


def _snapshot_check(dataset: str, assets_def: AssetsDefinition) -> AssetChecksDefinition:
    spec = AssetCheckSpec(
        CHECK_NAME,
        asset=AssetKey(dataset),
        partitions_def=assets_def.partitions_def,
        description=(
            "Per session: the snapshot is not empty and its row count moved at most "
            "reference.max_row_count_change from the previous snapshot (configs/checks.yaml)."
            if dataset == REFERENCE
            else "Per session and index: member count within reference.member_counts, no "
            "ticker twice, every member a listed ticker (or in ticker_history), day-over-day "
            "churn at most reference.max_churn (configs/checks.yaml)."
        ),
    )

    @multi_asset_check(specs=[spec], name=f"{dataset}_{CHECK_NAME}")
    def _check(context: AssetCheckExecutionContext, platform: PlatformResource) -> Iterator[Any]:
        started = time.perf_counter()
        config = platform.app_config()
        settings = load_thresholds(config.config_dir).reference
        keys = [str(k) for k in context.partition_keys]
        sessions = session_keys(keys)
        store = ReferenceStore(platform.lake().store)
        first_year = config.datasets[dataset].start.year
        if dataset == REFERENCE:
            columns = ["session", "symbol"]
            rows = store.read_sessions(dataset, sessions[0], sessions[-1], columns)
            previous = _previous_snapshot(store, dataset, sessions[0], first_year, columns)
            verdicts = reference_verdicts(rows, sessions, previous, settings)
        else:
            columns = ["session", "index", "symbol"]
            rows = store.read_sessions(dataset, sessions[0], sessions[-1], columns)
            previous = _previous_snapshot(store, dataset, sessions[0], first_year, columns)
            listings = (
                store.read_sessions(REFERENCE, sessions[0], sessions[-1], ["session", "symbol"])
                if REFERENCE in config.datasets
                else pl.DataFrame(schema={"session": pl.Date(), "symbol": pl.String()})
            )
            history = store.read_derived("ticker_history")
            verdicts = constituent_verdicts(rows, sessions, previous, listings, history, settings)
        targets = target_materializations(
            context.instance, spec.key.asset_key, context.run.run_id, keys
        )
        evaluations = [
            _evaluation(spec.key, key, verdicts.get(day, []), targets.get(key))
            for key, day in zip(sorted(keys), sessions, strict=True)
        ]
        judged = time.perf_counter()
        yield from record_evaluations(context, evaluations)
        failed = sum(1 for e in evaluations if not e.passed)
        context.log.info(
            f"{dataset}: judged {len(keys)} session(s), {failed} failed; seconds: rules "
            f"{judged - started:.3f}, Dagster recording {time.perf_counter() - judged:.3f}"
        )
        yield Output(
            None,
            output_name=context.op_execution_context.assets_def.get_output_name_for_asset_check_key(
                spec.key
            ),
            metadata={CHECK_SECONDS: round(judged - started, 4)},
        )

    return _check


def _overlap_check() -> AssetChecksDefinition:
    @asset_check(
        asset=AssetKey(INDEX_MEMBERSHIP),
        name=OVERLAP_CHECK,
        description="No ticker has two overlapping membership intervals in one index.",
    )
    def _check(platform: PlatformResource) -> AssetCheckResult:
        membership = ReferenceStore(platform.lake().store).read_derived(INDEX_MEMBERSHIP)
        overlaps = overlapping_intervals(membership)
        sample = [
            {**row, "start": str(row["start"]), "end": str(row["end"])}
            for row in overlaps.select("index", "symbol", "start", "end").head(20).to_dicts()
        ]
        return AssetCheckResult(
            passed=overlaps.is_empty(),
            severity=AssetCheckSeverity.ERROR,
            metadata={
                "intervals": membership.height,
                "overlapping": overlaps.height,
                "sample": MetadataValue.json(sample),
            },
        )

    return _check


def build_reference_checks(assets: Sequence[AssetsDefinition]) -> list[AssetChecksDefinition]:
    """A `quality` check per snapshot asset and the overlap check on index_membership."""
    checks: list[AssetChecksDefinition] = []
    for assets_def in assets:
        name = assets_def.key.path[-1]
        if name in (REFERENCE, CONSTITUENTS):
            checks.append(_snapshot_check(name, assets_def))
        if name == INDEX_MEMBERSHIP:
            checks.append(_overlap_check())
    return checks
