"""What `market-assets ingest --dataset NAME ...` materializes, in which runs.

Any asset of the Definitions can be named: fetched and derived bar datasets, ticks,
corporate_actions, bars_1d_adjusted, indicators, coverage_report, and any dataset added
later. Session x symbol assets that share a partitions definition run together in the same
ranged runs (a rectangle of sessions x symbol keys per run, as the derived 5m/15m/1h bars
always have with their 1m parent); unpartitioned assets (coverage_report) run once, after
them. `with_downstream` adds every asset downstream of the named ones, so one command
refreshes bars, adjusted bars, indicators and the report over the same rectangles.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from dagster import (
    AssetKey,
    Definitions,
    MultiPartitionsDefinition,
    PartitionsDefinition,
    TimeWindowPartitionsDefinition,
)

from market_assets.core.config import AppConfig
from market_assets.core.errors import ConfigError
from market_assets.defs.partitions import DATE_DIMENSION

DEFAULT_SESSIONS_PER_RUN = 250


@dataclass(frozen=True)
class IngestStep:
    """Assets materialized together: over sessions x symbols (`start` set), or once."""

    assets: tuple[AssetKey, ...]
    start: dt.date | None  # first session of the shared partitions; None: unpartitioned
    calendar: str
    sessions_per_run: int

    @property
    def name(self) -> str:
        return self.assets[0].to_user_string()

    @property
    def label(self) -> str:
        return ", ".join(key.to_user_string() for key in self.assets)


def plan_steps(
    defs: Definitions,
    config: AppConfig,
    names: Sequence[str],
    *,
    with_derived: bool = True,
    with_downstream: bool = False,
) -> list[IngestStep]:
    """The runs' groups of assets for `names`, in dependency order.

    Raises ConfigError naming datasets.yaml when a name is not an asset.
    """
    graph = defs.resolve_asset_graph()
    known = {key.to_user_string(): key for key in graph.get_all_asset_keys()}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(
            f"{config.config_dir / 'datasets.yaml'}: unknown dataset {unknown[0]!r}; known "
            f"datasets and assets: {sorted(known)}"
        )
    wanted: dict[AssetKey, None] = {known[name]: None for name in names}
    if with_derived:
        for name in names:
            for child, dataset in config.datasets.items():
                if dataset.derived_from == name and child in known:
                    wanted[known[child]] = None
    if with_downstream:
        pending = list(wanted)
        while pending:
            for child in graph.get(pending.pop()).child_keys:
                if child not in wanted:
                    wanted[child] = None
                    pending.append(child)
    groups: dict[int, list[AssetKey]] = {}
    definitions: dict[int, PartitionsDefinition | None] = {}
    once: list[AssetKey] = []
    for key in graph.toposorted_asset_keys:
        if key not in wanted:
            continue
        partitions = graph.get(key).partitions_def
        if partitions is None:
            once.append(key)
            continue
        slot = next((i for i, p in definitions.items() if p == partitions), len(definitions))
        definitions[slot] = partitions
        groups.setdefault(slot, []).append(key)
    steps = [
        IngestStep(
            tuple(keys),
            _first_session(definitions[slot], keys[0]),
            config.calendar_of(keys[0].to_user_string()),
            _sessions_per_run(config, keys),
        )
        for slot, keys in groups.items()
    ]
    if once:
        steps.append(IngestStep(tuple(once), None, config.exchange, 1))
    return steps


def _first_session(partitions: PartitionsDefinition | None, key: AssetKey) -> dt.date:
    dates = partitions
    if isinstance(partitions, MultiPartitionsDefinition):
        dates = partitions.get_partitions_def_for_dimension(DATE_DIMENSION)
    if not isinstance(dates, TimeWindowPartitionsDefinition):
        raise ConfigError(
            f"{key.to_user_string()} is not partitioned by sessions; ingest cannot pick its "
            "partitions from --start/--end"
        )
    return dates.start.date()


def _sessions_per_run(config: AppConfig, keys: Sequence[AssetKey]) -> int:
    """The smallest `backfill_sessions_per_run` of the group's datasets (a derived or table
    dataset follows its parent, else bars_1d)."""
    sizes = []
    for key in keys:
        name = key.to_user_string()
        dataset = config.datasets.get(name)
        while dataset is not None and dataset.derived_from:
            dataset = config.datasets.get(dataset.derived_from)
        dataset = dataset or config.datasets.get("bars_1d")
        sizes.append(dataset.backfill_sessions_per_run if dataset else DEFAULT_SESSIONS_PER_RUN)
    return min(sizes)
