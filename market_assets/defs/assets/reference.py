"""Reference data and index membership: two snapshot assets and two derived interval tables.

    reference ───────────┐
                         ├──► ticker_history ──► index_membership
    index_constituents ──┴──────────────────────────┘

`reference` and `index_constituents` are partitioned by session only (one partition per
exchange session; the index is a column, so another index adds rows, not partitions) and
backfilled in ranged runs of `backfill_sessions_per_run` sessions. `ticker_history` and
`index_membership` are unpartitioned tables rebuilt whole from every stored snapshot after
new snapshots land (eager automation, or the CLI right after its snapshot runs).
"""


import datetime as dt
import time
import warnings

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AutomationCondition,
    BackfillPolicy,
    BetaWarning,
    MetadataValue,
    Output,
    asset,
)

from market_assets.core.calendar import get_calendar
from market_assets.core.config import AppConfig, DatasetConfig
from market_assets.core.errors import ConfigError
from market_assets.core.reference.ingest import SnapshotFetch, fetch_constituents, fetch_reference
from market_assets.core.reference.intervals import membership_intervals, with_security_ids
from market_assets.core.reference.schemas import CONSTITUENT_SCHEMA, REFERENCE_SCHEMA, empty
from market_assets.core.reference.securities import build_ticker_history
from market_assets.core.reference.store import ReferenceStore
from market_assets.defs.assets.bars import FILES_DIR_TAG, PROVIDER_TAG, vendor_pool
from market_assets.defs.io_managers import plan_partitions
from market_assets.defs.partitions import sessions_partitions
from market_assets.defs.reference_io import REFERENCE_IO_MANAGER_KEY, session_keys
from market_assets.defs.resources import PlatformResource

warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=BetaWarning)

REFERENCE = "reference"
CONSTITUENTS = "index_constituents"
TICKER_HISTORY = "ticker_history"
INDEX_MEMBERSHIP = "index_membership"
SNAPSHOT_KINDS = (REFERENCE, CONSTITUENTS)
GROUP = "reference"
DERIVED_CONDITION = (
    AutomationCondition.eager()
    .without(~AutomationCondition.any_deps_missing())
    .with_label("eager_allow_missing")
)
"""Rebuild a derived table when a snapshot partition lands, although most sessions of the
snapshot assets are never materialized (reference starts the day you start collecting)."""


def snapshot_datasets(config: AppConfig) -> dict[str, DatasetConfig]:
    """The fetched reference datasets, by name (which must equal their kind).

    Raises ConfigError naming datasets.yaml when a reference dataset has another name.
    """
    found: dict[str, DatasetConfig] = {}
    for name, dataset in config.datasets.items():
        if dataset.kind not in SNAPSHOT_KINDS:
            continue
        if name != dataset.kind:
            raise ConfigError(
                f"{config.config_dir / 'datasets.yaml'}: datasets.{name}: a dataset of kind "
                f"{dataset.kind} must be named {dataset.kind}"
            )
        if dataset.providers:
            found[name] = dataset
    return found


def _primary(dataset: DatasetConfig, config: AppConfig) -> str:
    providers = config.providers.providers
    enabled = [name for name in dataset.providers if providers[name].enabled]
    return (enabled or dataset.providers)[0]


def _registry(platform: PlatformResource, dataset: str, context: AssetExecutionContext):
    """The run's registry: files under the `files_dir` tag (every provider found there), the
    pinned provider, or the configured route."""
    pinned = context.run.tags.get(PROVIDER_TAG)
    files_dir = context.run.tags.get(FILES_DIR_TAG)
    if files_dir:
        from market_assets.core.reference.routing import snapshot_files_registry

        return snapshot_files_registry(platform.app_config(), dataset, files_dir, pinned)
    registry = platform.registry()
    return registry.with_route(dataset, [pinned]) if pinned else registry


def _metadata(fetched: SnapshotFetch, sessions: list[dt.date], started: float) -> dict:
    rows = fetched.rows
    metadata: dict[str, object] = {
        "rows": rows.height,
        "sessions": len(sessions),
        "sessions_with_rows": fetched.sessions_with_rows(),
        "first_session": sessions[0].isoformat(),
        "last_session": sessions[-1].isoformat(),
        "rejected_rows": sum(fetched.checked.rejected.values()),
        "rejected_rules": MetadataValue.json(fetched.checked.rejected),
        "source": ",".join(sorted(rows["source"].unique().to_list())) if rows.height else "none",
        "vendor_requests": fetched.requests,
        "failed_symbols": MetadataValue.json(fetched.failures),
        "provider_attempts": MetadataValue.json(fetched.attempts),
        "facts": MetadataValue.json(
            {k: v for k, v in fetched.facts.items() if k != "cik_map_by_session"}
        ),
        "seconds": round(time.perf_counter() - started, 4),
    }
    if fetched.checked.samples:
        metadata["rejected_samples"] = MetadataValue.json(fetched.checked.samples)
    return metadata


def snapshot_asset(name: str, dataset: DatasetConfig, config: AppConfig) -> AssetsDefinition:
    """`reference` or `index_constituents`: one run fetches its range of sessions at once."""
    fetch = fetch_reference if name == REFERENCE else fetch_constituents

    @asset(
        name=name,
        description=dataset.description,
        group_name=GROUP,
        partitions_def=sessions_partitions(dataset.start, config.exchange),
        backfill_policy=BackfillPolicy.multi_run(dataset.backfill_sessions_per_run),
        io_manager_key=REFERENCE_IO_MANAGER_KEY,
        kinds={"polars", "parquet"},
        metadata={"providers": ", ".join(dataset.providers), "partitioned_by": "session"},
        pool=vendor_pool(_primary(dataset, config)),
    )
    def _snapshot(context: AssetExecutionContext, platform: PlatformResource) -> Output:
        started = time.perf_counter()
        sessions = session_keys(plan_partitions(context))
        fetched = fetch(_registry(platform, name, context), sessions, config.exchange)
        for key, message in fetched.failures.items():
            context.log.error(f"{name} {key}: {message}")
        return Output(fetched.rows, metadata=_metadata(fetched, sessions, started))

    return _snapshot


def _all_sessions(
    store: ReferenceStore, dataset: str, config: AppConfig, columns: list[str]
) -> pl.DataFrame:
    """Every stored session of a snapshot table (year files from the dataset's start on)."""
    start = config.datasets[dataset].start
    return store.read_sessions(dataset, start, get_calendar(config.exchange).last_session, columns)


def ticker_history_asset(config: AppConfig, snapshots: list[str]) -> AssetsDefinition:
    """Every ticker of every security with dates, rebuilt from all stored snapshots."""

    @asset(
        name=TICKER_HISTORY,
        description="Every ticker of every security with dates (valid_from, valid_to) and how "
        "each interval began and ended (listed, renamed, relisted; renamed, delisted, "
        "unobserved), from the reference listings and the index snapshots.",
        group_name=GROUP,
        deps=[AssetKey(name) for name in snapshots],
        io_manager_key=REFERENCE_IO_MANAGER_KEY,
        kinds={"polars", "parquet"},
        automation_condition=DERIVED_CONDITION,
    )
    def _history(context: AssetExecutionContext, platform: PlatformResource) -> Output:
        started = time.perf_counter()
        store = ReferenceStore(platform.lake().store)
        app = platform.app_config()
        reference = (
            _all_sessions(store, REFERENCE, app, ["session", "symbol", "cik", "name", "exchange"])
            if REFERENCE in snapshots
            else None
        )
        constituents = (
            _all_sessions(store, CONSTITUENTS, app, ["session", "index", "symbol", "cik", "name"])
            if CONSTITUENTS in snapshots
            else None
        )
        read = time.perf_counter()
        frame, stats = build_ticker_history(
            reference if reference is not None else empty(REFERENCE_SCHEMA),
            constituents if constituents is not None else empty(CONSTITUENT_SCHEMA),
        )
        return Output(
            frame,
            metadata={
                "rows": frame.height,
                **stats.as_metadata(),
                "snapshot_rows_read": sum(
                    f.height for f in (reference, constituents) if f is not None
                ),
                "read_seconds": round(read - started, 4),
                "seconds": round(time.perf_counter() - started, 4),
            },
        )

    return _history


def membership_asset(config: AppConfig) -> AssetsDefinition:
    """Index membership intervals (index, symbol, security_id, start, end) from snapshots."""

    @asset(
        name=INDEX_MEMBERSHIP,
        description="Membership intervals per index and ticker, with the security_id from "
        "ticker_history: start inclusive, end exclusive (null while a member).",
        group_name=GROUP,
        deps=[AssetKey(CONSTITUENTS), AssetKey(TICKER_HISTORY)],
        io_manager_key=REFERENCE_IO_MANAGER_KEY,
        kinds={"polars", "parquet"},
        automation_condition=DERIVED_CONDITION,
    )
    def _membership(context: AssetExecutionContext, platform: PlatformResource) -> Output:
        started = time.perf_counter()
        store = ReferenceStore(platform.lake().store)
        snapshots = _all_sessions(
            store, CONSTITUENTS, platform.app_config(), ["session", "index", "symbol", "cik"]
        )
        read = time.perf_counter()
        frame = with_security_ids(
            membership_intervals(snapshots), store.read_derived(TICKER_HISTORY)
        )
        by_index = frame.group_by("index").len().sort("index").rows()
        return Output(
            frame,
            metadata={
                "rows": frame.height,
                "intervals_by_index": MetadataValue.json(dict(by_index)),
                "symbols": frame["symbol"].n_unique() if frame.height else 0,
                "without_security_id": frame["security_id"].null_count(),
                "snapshot_rows_read": snapshots.height,
                "read_seconds": round(read - started, 4),
                "seconds": round(time.perf_counter() - started, 4),
            },
        )

    return _membership


def build_reference_assets(config: AppConfig) -> list[AssetsDefinition]:
    """The snapshot assets datasets.yaml configures, and the derived tables they feed."""
    snapshots = snapshot_datasets(config)
    if not snapshots:
        return []
    assets = [snapshot_asset(name, ds, config) for name, ds in snapshots.items()]
    assets.append(ticker_history_asset(config, list(snapshots)))
    if CONSTITUENTS in snapshots:
        assets.append(membership_asset(config))
    return assets
