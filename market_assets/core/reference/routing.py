"""Which providers a reference run reads: the configured routes, one pinned provider, or files.

Reference snapshots combine complementary sources (listings from nasdaq_trader, CIKs from
sec_tickers), so reading `--files DIR` routes the dataset to EVERY provider whose files are
found under DIR, not only the first (market_assets.core.providers.files_route picks one).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from market_assets.core.providers.files_route import (
    FILES_RETRY,
    choose_file_reader,
    file_readers,
)
from market_assets.core.providers.registry import ProviderRegistry

if TYPE_CHECKING:
    from market_assets.core.config import AppConfig


def snapshot_files_registry(
    config: AppConfig, dataset: str, files_dir: str | Path, provider: str | None = None
) -> ProviderRegistry:
    """A registry routing `dataset` to every provider reading files found under `files_dir`
    (only `provider` when given).

    Raises ValueError like files_route.choose_file_reader when the folder is missing, the
    provider cannot read the dataset from files, or no file there is one a provider reads.
    """
    folder = Path(files_dir)
    first = choose_file_reader(config, dataset, folder, provider)
    readers = [first]
    if provider is None:
        readers += [
            reader
            for reader in file_readers(config, dataset)
            if reader.name != first.name and reader.recognizes(folder)
        ]
    built = {reader.name: reader.build(folder) for reader in readers}
    return ProviderRegistry(built, {dataset: list(built)}, FILES_RETRY)
