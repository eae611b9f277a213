"""CLI work for the reference family (`ingest --dataset reference|index_constituents`,
`constituents`), kept out of cli.py so the commands there stay thin."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path

from market_assets.core.config import AppConfig
from market_assets.core.errors import ConfigError

SNAPSHOT_KINDS = ("reference", "index_constituents")
DERIVED = ("ticker_history", "index_membership")


def snapshot_datasets_only(config: AppConfig, datasets: Sequence[str]) -> bool:
    """True when every dataset is a session-partitioned reference dataset; ConfigError when
    they are mixed with symbol datasets (those need --universe or --symbols)."""
    # Assets outside datasets.yaml (bars_1d_adjusted, indicators, ...) are symbol datasets.
    kinds = [
        name in config.datasets and config.datasets[name].kind in SNAPSHOT_KINDS
        for name in datasets
    ]
    if any(kinds) and not all(kinds):
        raise ConfigError(
            "ingest reference datasets (reference, index_constituents) in their own command: "
            "they have no symbols"
        )
    return all(kinds)


def check_snapshot_sources(
    config: AppConfig, datasets: Sequence[str], provider: str | None, files: Path | None
) -> None:
    """ConfigError naming the problem when `files` holds nothing the datasets' providers
    read, or `provider` is unknown, or disabled without --files."""
    from market_assets.core.providers.files_route import choose_file_reader

    known = config.providers.providers
    if provider and provider not in known:
        raise ConfigError(f"unknown provider {provider!r}; known: {sorted(known)}")
    if provider and files is None and not known[provider].enabled:
        raise ConfigError(f"provider {provider!r} is disabled in providers.yaml: set enabled: true")
    if files is not None:
        for name in datasets:
            try:
                choose_file_reader(config, name, files, provider)
            except ValueError as exc:
                raise ConfigError(f"--files: {exc}") from exc


def ingest_snapshots(
    config: AppConfig,
    datasets: Sequence[str],
    first: dt.date,
    stop: dt.date,
    tags: dict[str, str],
    progress: Callable[[str], Callable[[int, int], None]],
    summary=None,  # noqa: ANN001 - RunSummary, imported lazily
    before_runs: Callable[..., None] | None = None,
):  # noqa: ANN201 - RunSummary, imported lazily
    """Materialize the snapshot datasets for the sessions in [first, stop), then rebuild the
    derived tables once. Returns the RunSummary (`summary` when given, filled as runs finish:
    it holds them when RunsInterrupted stops the rest). `before_runs(instance)` runs first."""
    from dagster import AssetKey, DagsterInstance

    from market_assets.core.calendar import get_calendar
    from market_assets.definitions import build_definitions
    from market_assets.defs.reference_runs import materialize_sessions, rebuild_derived
    from market_assets.defs.runner import RunSummary

    defs = build_definitions(config)
    calendar = get_calendar(config.exchange)
    present = defs.resolve_asset_graph().get_all_asset_keys()
    summary = summary if summary is not None else RunSummary()
    with DagsterInstance.get() as instance:
        if before_runs is not None:
            before_runs(instance)
        for name in dict.fromkeys(datasets):
            dataset = config.datasets[name]
            sessions = calendar.sessions(max(first, dataset.start), stop - dt.timedelta(days=1))
            if not sessions:
                continue
            materialize_sessions(
                defs,
                instance,
                AssetKey(name),
                sessions,
                dataset.backfill_sessions_per_run,
                tags=tags,
                on_progress=progress(name),
                summary=summary,
            )
        derived = [AssetKey(name) for name in DERIVED if AssetKey(name) in present]
        rebuild_derived(
            defs, instance, derived, tags={"trigger": tags.get("trigger", "")}, summary=summary
        )
    return summary
