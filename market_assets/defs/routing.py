"""Which providers a run fetches from: the configured routes, one pinned provider, or files.

Runs carry the choice in tags set by the CLI (`ingest --provider NAME`, `ingest --files DIR`)
or by hand in the UI's launchpad: `market_assets/provider` pins one configured provider;
`market_assets/files_dir` reads the dataset from the files in that folder instead of any API,
through the provider that reads them (market_assets.core.providers.files_route; its settings
still come from providers.yaml, enabled or not).
"""

from __future__ import annotations

from market_assets.core.providers.registry import ProviderRegistry
from market_assets.defs.resources import PlatformResource


def registry_for_run(
    platform: PlatformResource, dataset: str, *, pinned: str | None, files_dir: str | None
) -> ProviderRegistry:
    """The registry to fetch `dataset` with in this run.

    Raises ValueError when the pinned provider is disabled or unknown, or (with `files_dir`)
    cannot read this dataset from files or finds no file it reads.
    """
    if files_dir:
        from market_assets.core.providers.files_route import files_registry

        return files_registry(platform.app_config(), files_dir, dataset, pinned)
    registry = platform.registry()
    return registry.with_route(dataset, [pinned]) if pinned else registry
