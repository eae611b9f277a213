"""The partitioned `quality` check on options_chains: one evaluation per partition key.

Like the bar checks (defs/checks/bars.py): blocking, partitioned like the asset, and run as
one multi-asset check recording one `AssetCheckEvaluation(partition=key)` per partition key
of the run, with the rule results in its metadata (one evaluation event per partition: the
scale budget; stored in one batch in runs with deferred asset events, defs/events.py). The
rules (market_assets.core.rules.options, thresholds in configs/options.yaml) read the stored
partitions, the previous session's chains and the quarantine counts from the lake;
per-underlying results go to the check results table.
"""

import datetime as dt
import time
import warnings
from collections.abc import Iterator
from typing import Any

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetsDefinition,
    multi_asset_check,
)

from market_assets.core.calendar import get_calendar
from market_assets.core.rules import load_thresholds
from market_assets.core.stores.check_results import CheckResultsStore
from market_assets.defs.checks.bars import (
    blocks_something,
    check_output,
    partition_evaluation,
    result_rows,
    target_materializations,
)
from market_assets.defs.events import record_evaluations, step_of
from market_assets.defs.partitions import split_partition_key
from market_assets.defs.resources import PlatformResource

warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*")

CHECK_NAME = "quality"
DATASET = "options_chains"


def build_options_check(chains: AssetsDefinition) -> AssetChecksDefinition:
    """The blocking, partitioned `quality` check of the options_chains asset."""
    spec = AssetCheckSpec(
        CHECK_NAME,
        asset=chains.key,
        partitions_def=chains.partitions_def,
        blocking=True,
        description=(
            "Option chain rules on every stored partition (configs/options.yaml `checks`): "
            "bid <= ask, non-negative prices and sizes, IV in (0, max_iv], delta bounds by "
            "kind, gamma and vega >= 0, put-call parity within the spreads, expirations on "
            "sessions, strikes on the grid, stale quotes, vendor vs recomputed IV, chain "
            "completeness. ERROR fails block downstream; WARN fails are reported."
        ),
    )

    @multi_asset_check(specs=[spec], name=f"{DATASET}_{CHECK_NAME}")
    def _check(context: AssetCheckExecutionContext, platform: PlatformResource) -> Iterator[Any]:
        yield from run_options_check(context, platform, spec.key)

    return _check


def run_options_check(
    context: AssetCheckExecutionContext, platform: PlatformResource, check_key: AssetCheckKey
) -> Iterator[Any]:
    """Judge the run's partitions; yield one evaluation per partition key, then the output."""
    from market_assets.core.options.settings import load_options_settings
    from market_assets.core.rules.options import OptionRuleContext, check_options

    started = time.perf_counter()
    config = platform.app_config()
    calendar = get_calendar(config.exchange)
    thresholds = load_thresholds(config.config_dir)
    settings = load_options_settings(config.config_dir)
    keys = [str(key) for key in context.partition_keys]
    members: dict[str, list[tuple[str, dt.date]]] = {}
    for key in keys:
        session, symbol_key = split_partition_key(key)
        symbols = config.symbol_partitions.symbols_for_key(symbol_key, session)
        members[key] = [(symbol, session) for symbol in symbols]
    pairs = [pair for key in keys for pair in members[key]]
    lake = platform.lake()
    chains = lake.read_partitions(DATASET, pairs)
    previous = sorted({(symbol, calendar.previous_session(day)) for symbol, day in pairs})
    before = lake.read_partitions(DATASET, previous)
    quarantined = (
        lake.read_partitions(f"quarantine_{DATASET}", pairs)
        .group_by("symbol", "session")
        .agg(pl.len().cast(pl.Int64).alias("quarantined_rows"))
    )
    report = check_options(
        chains,
        OptionRuleContext(tuple(pairs), settings.checks, before, calendar),
        thresholds.score.weights,
        thresholds.sample_rows,
    )
    rows = result_rows(report, quarantined, members, context.run.run_id)
    CheckResultsStore(lake).replace(DATASET, rows, pairs)
    targets = target_materializations(
        context.instance, check_key.asset_key, context.run.run_id, keys
    )
    blocking = blocks_something(context, check_key.asset_key)
    by_key = {k: part for (k,), part in rows.partition_by("partition_key", as_dict=True).items()}
    evaluations = [
        partition_evaluation(check_key, key, by_key.get(key, rows.clear()), targets, blocking)
        for key in keys
    ]
    step = step_of(context)
    yield from record_evaluations(step, evaluations)
    failed = [e for e in evaluations if not e.passed]
    errors = sum(1 for e in failed if e.severity is AssetCheckSeverity.ERROR)
    context.log.info(
        f"{DATASET}: judged {len(keys)} partition(s) ({len(pairs)} underlying-sessions): "
        f"{errors} failed with ERROR, {len(failed) - errors} with WARN in "
        f"{time.perf_counter() - started:.3f} s"
    )
    yield check_output(context, step, check_key, DATASET, evaluations, blocking)
