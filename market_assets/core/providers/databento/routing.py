"""Files mode for a run: a registry that serves one dataset from downloaded DBN files only.

`market-assets ingest --files DIR` tags its runs with the folder; the asset then fetches
through this registry instead of the configured routes. The Databento settings (dataset,
stype_in, regular_hours_only) come from the provider's providers.yaml entry even when that
entry is disabled (`enabled: false` keeps the API out of normal routing; reading files needs
neither the API nor a key).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from market_assets.core.providers.databento.errors import VENDOR
from market_assets.core.providers.databento.provider import DatabentoProvider
from market_assets.core.providers.registry import ProviderRegistry, RetryPolicy

if TYPE_CHECKING:
    from market_assets.core.config import AppConfig

FILES_RETRY = RetryPolicy(attempts=1)  # a file read that failed fails the same way again


def databento_provider_name(config: AppConfig, provider: str | None = None) -> str:
    """`provider` if given (checked to be of kind databento), else the first providers.yaml
    entry of kind databento, else "databento". Raises ValueError for another kind."""
    entries = config.providers.providers
    if provider is not None:
        entry = entries.get(provider)
        if entry is not None and entry.kind != VENDOR:
            raise ValueError(
                f"provider {provider!r} is of kind {entry.kind!r}; DBN files are read by a "
                "provider of kind databento"
            )
        return provider
    return next((name for name, entry in entries.items() if entry.kind == VENDOR), VENDOR)


def files_registry(
    config: AppConfig, files_dir: str | Path, route: str, provider: str | None = None
) -> ProviderRegistry:
    """A registry routing `route` to a Databento provider reading `files_dir` only.

    Raises ValueError when `provider` is of another kind or its settings are invalid.
    """
    name = databento_provider_name(config, provider)
    entry = config.providers.providers.get(name)
    settings: dict[str, Any] = dict(entry.settings) if entry is not None else {}
    if entry is not None and entry.api_key_env:
        settings["api_key_env"] = entry.api_key_env
    settings["files_dir"] = str(files_dir)
    databento = DatabentoProvider.from_config(settings)
    return ProviderRegistry({name: databento}, {route: [name]}, FILES_RETRY)
