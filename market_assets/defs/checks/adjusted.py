"""The `adjustment` check on bars_1d_adjusted: the adjustment rules, in Dagster.

Adjustment is a property of a symbol's history, not of one bar, so this check is not
partitioned: after a run writes adjusted bars it judges the run's symbols over the run's
sessions (plus a short lead-in, so the first ex-date has its previous close) against their
stored corporate actions. When the bars came from a provider that also serves the vendor's
own adjusted close (a `files` mapping with an `adj_close` column), our adjusted close is
compared with it too (`vendor_adjusted_close_difference`). It never blocks (a vendor's quirk
must not stop the pipeline); a failed ERROR rule shows as a failed ERROR check in the UI, with
the offending rows.
"""


import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import polars as pl
from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetKey,
    MetadataValue,
    Output,
    asset_check,
)

from market_assets.core.rules.adjustment import (
    dividend_continuity,
    double_adjustment_risk,
    no_split_jumps_in_adjusted,
    split_jumps_explained,
    vendor_adjusted_close_difference,
)
from market_assets.core.rules.base import RuleResult, Severity
from market_assets.defs.automation.runs import RANGE_END_TAG, RANGE_START_TAG
from market_assets.defs.events import CHECK_SECONDS, record_evaluations
from market_assets.defs.partitions import SYMBOLS_PARTITION_NAME, split_partition_key
from market_assets.defs.resources import PlatformResource

ADJUSTED_DATASET = "bars_1d_adjusted"
LEAD_IN_DAYS = 45  # calendar days before the run's first session: volume medians, prev close


def run_symbols_and_sessions(
    context: AssetCheckExecutionContext, platform: PlatformResource
) -> tuple[list[str], dt.date, dt.date]:
    """The (symbols, first session, last session) of the run, from its range tags."""
    tags = context.run.tags
    if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
        first, first_key = split_partition_key(tags[RANGE_START_TAG])
        last, last_key = split_partition_key(tags[RANGE_END_TAG])
        ordered = context.instance.get_dynamic_partitions(SYMBOLS_PARTITION_NAME)
        keys = ordered[ordered.index(first_key) : ordered.index(last_key) + 1]
    else:
        first, key = split_partition_key(context.op_execution_context.partition_key)
        last, keys = first, [key]
    symbol_partitions = platform.app_config().symbol_partitions
    symbols = sorted({s for key in keys for s in symbol_partitions.symbols_for_key(key)})
    return symbols, first, last


def judge_adjustment(
    adjusted: pl.DataFrame, actions: pl.DataFrame, vendor: pl.DataFrame | None = None
) -> list[RuleResult]:
    """Every adjustment rule on adjusted bars (which carry the raw columns too); with
    `vendor` (symbol, ts, vendor_adj_close) rows, the comparison with the vendor's too."""
    results = [
        split_jumps_explained(adjusted, actions),
        no_split_jumps_in_adjusted(adjusted),
        dividend_continuity(adjusted, actions),
        double_adjustment_risk(adjusted, actions),
    ]
    if vendor is not None and not vendor.is_empty():
        results.append(vendor_adjusted_close_difference(adjusted, vendor))
    return results


def vendor_adjusted_closes(
    platform: PlatformResource, adjusted: pl.DataFrame, start: dt.date, end: dt.date
) -> pl.DataFrame | None:
    """The vendor's adjusted closes of the symbols each source of `adjusted` served, from the
    providers that offer them (None when no source does)."""
    if adjusted.is_empty():
        return None
    providers = platform.registry().providers
    frames = []
    for (source,), part in adjusted.partition_by("source", as_dict=True).items():
        provider = providers.get(source)
        if provider is None or not hasattr(provider, "fetch_vendor_adjusted_closes"):
            continue
        symbols = sorted(part.get_column("symbol").unique().to_list())
        frames.append(provider.fetch_vendor_adjusted_closes(symbols, start, end))
    return pl.concat(frames) if frames else None


def build_adjustment_check() -> AssetChecksDefinition:
    @asset_check(
        asset=AssetKey(ADJUSTED_DATASET),
        name="adjustment",
        blocking=False,
        description=(
            "Split-sized jumps in raw bars are explained by a split; none remain in adjusted "
            "bars; adjusted closes move across ex-dates by exactly the dividend; a listed "
            "split with no raw jump is flagged as a double-adjustment risk."
        ),
    )
    def _adjustment(
        context: AssetCheckExecutionContext, platform: PlatformResource
    ) -> Iterator[Any]:
        # One evaluation for the run's rectangle, recorded like the per-partition checks'
        # (`record_evaluations`): returning an unpartitioned AssetCheckResult from a step of a
        # partitioned asset makes Dagster 1.13 look up the target's input data versions,
        # listing every session x symbol key of the asset (a second of a demo's run).
        started = time.perf_counter()
        symbols, first, last = run_symbols_and_sessions(context, platform)
        lake = platform.lake()
        start = first - dt.timedelta(days=LEAD_IN_DAYS)
        end = last + dt.timedelta(days=1)
        adjusted = lake.read(ADJUSTED_DATASET, symbols, start, end)
        actions = lake.read("corporate_actions", symbols, start, end)
        vendor = vendor_adjusted_closes(platform, adjusted, start, end)
        results = judge_adjustment(adjusted, actions, vendor)
        failed = [r for r in results if not r.passed]
        errors = [r for r in failed if r.severity is Severity.ERROR]
        evaluation = AssetCheckEvaluation(
            asset_key=AssetKey(ADJUSTED_DATASET),
            check_name="adjustment",
            passed=not failed,
            severity=AssetCheckSeverity.ERROR if errors else AssetCheckSeverity.WARN,
            description=(
                "all adjustment rules passed"
                if not failed
                else "failed: " + ", ".join(f"{r.rule} ({r.offending_rows})" for r in failed)
            ),
            metadata={
                "symbols": len(symbols),
                "sessions": f"{first} .. {last}",
                "bars_judged": adjusted.height,
                "actions": actions.height,
                "rules": MetadataValue.json(
                    [
                        {
                            "rule": r.rule,
                            "severity": r.severity.value,
                            "passed": r.passed,
                            "offending_rows": r.offending_rows,
                            "sample": r.sample,
                            "details": r.details,
                        }
                        for r in results
                    ]
                ),
            },
        )
        judged = time.perf_counter()
        yield from record_evaluations(context, [evaluation])
        yield Output(
            None,
            output_name=context.op_execution_context.assets_def.get_output_name_for_asset_check_key(
                evaluation.asset_check_key
            ),
            metadata={CHECK_SECONDS: round(judged - started, 4)},
        )

    return _adjustment
