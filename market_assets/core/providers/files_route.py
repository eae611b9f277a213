"""`--files DIR`: serve one dataset from local files, with no key and no network.

A provider kind that can read files says so on its class, next to `from_config`:

    @classmethod
    def file_datasets(cls, settings) -> tuple[str, ...]    # datasets it reads from files
    @classmethod
    def file_patterns(cls, settings) -> tuple[str, ...]    # globs that recognize its files
    @classmethod
    def from_files(cls, settings, directory) -> provider   # a provider reading `directory`

`settings` is the providers.yaml entry's settings (flattened next to `kind`, enabled or not:
`enabled: false` keeps an API out of normal routing, and reading files needs neither the API
nor a key). The provider for a dataset is the one named with `--provider`, or else the
first candidate whose file patterns match something under DIR: the providers.yaml entries
that read the dataset from files (in file order), then the file-reading kinds that
providers.yaml does not configure (with their default settings).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from market_assets.core.errors import cannot
from market_assets.core.folders import files_under
from market_assets.core.providers.files_read import open_folder
from market_assets.core.providers.registry import (
    GENERIC_PROVIDER_SETTINGS,
    PROVIDER_KINDS,
    ProviderRegistry,
    RetryPolicy,
    provider_class,
)

if TYPE_CHECKING:
    from market_assets.core.config import AppConfig

FILES_RETRY = RetryPolicy(attempts=1)  # a file read that failed fails the same way again


@dataclass(frozen=True)
class FileReader:
    """One candidate for reading a dataset's files: a provider name, its class and settings."""

    name: str
    kind: str
    cls: type
    settings: Mapping[str, Any]

    def patterns(self) -> tuple[str, ...]:
        return tuple(self.cls.file_patterns(self.settings))

    def recognizes(self, directory: Path) -> bool:
        """Whether any file under `directory` matches this reader's patterns."""
        return bool(
            files_under(
                directory, self.patterns(), lambda message: ValueError(f"--files: {message}")
            )
        )

    def build(self, directory: Path) -> Any:
        return self.cls.from_files(self.settings, directory)


def reads_files(cls: type) -> bool:
    """Whether a provider class implements the file-reading classmethods."""
    return all(hasattr(cls, name) for name in ("file_datasets", "file_patterns", "from_files"))


def _entry_settings(config: AppConfig, name: str) -> dict[str, Any]:
    entry = config.providers.providers[name]
    generic = {
        key: getattr(entry, key)
        for key in GENERIC_PROVIDER_SETTINGS
        if getattr(entry, key) is not None
    }
    return {"kind": entry.kind, **generic, **entry.settings}


def _reader(name: str, kind: str, settings: Mapping[str, Any]) -> FileReader | None:
    try:
        cls = provider_class(kind)
    except ValueError:
        return None
    return FileReader(name, kind, cls, settings) if reads_files(cls) else None


def file_readers(config: AppConfig, dataset: str) -> list[FileReader]:
    """Every provider that can read `dataset` from files, in the order they are tried."""
    readers: list[FileReader] = []
    configured_kinds: set[str] = set()
    for name, entry in config.providers.providers.items():
        configured_kinds.add(entry.kind)
        reader = _reader(name, entry.kind, _entry_settings(config, name))
        if reader is not None and dataset in reader.cls.file_datasets(reader.settings):
            readers.append(reader)
    for kind in PROVIDER_KINDS:
        if kind in configured_kinds:
            continue
        reader = _reader(kind, kind, {"kind": kind})
        if reader is not None and dataset in reader.cls.file_datasets(reader.settings):
            readers.append(reader)
    return readers


def choose_file_reader(
    config: AppConfig, dataset: str, directory: str | Path, provider: str | None = None
) -> FileReader:
    """The provider that reads `dataset` from the files under `directory`.

    Raises ValueError naming the folder, the dataset and what each candidate looks for when
    the folder is missing, the named provider cannot read this dataset from files, or no
    candidate recognizes any file there.
    """
    folder = Path(directory)
    try:
        open_folder(folder)
    except FileNotFoundError:
        raise ValueError(f"--files {folder}: not a folder") from None
    except OSError as exc:
        raise ValueError(f"--files: {cannot('open folder', folder, exc)}") from None
    readers = file_readers(config, dataset)
    if provider is not None:
        entries = config.providers.providers
        kind = entries[provider].kind if provider in entries else provider
        settings = _entry_settings(config, provider) if provider in entries else {"kind": kind}
        reader = _reader(provider, kind, settings)
        if reader is None or dataset not in reader.cls.file_datasets(reader.settings):
            able = ", ".join(r.name for r in readers) or "none"
            raise ValueError(
                f"provider {provider!r} (of kind {kind!r}) cannot read {dataset} from files; "
                f"providers that can: {able}"
            )
        return reader
    if not readers:
        raise ValueError(f"no provider kind reads {dataset} from files")
    for reader in readers:
        if reader.recognizes(folder):
            return reader
    expected = "; ".join(f"{r.name}: {', '.join(r.patterns())}" for r in readers)
    raise ValueError(
        f"--files {folder}: no file there is one a provider reads for {dataset} "
        f"(looked for {expected})"
    )


def files_registry(
    config: AppConfig, files_dir: str | Path, route: str, provider: str | None = None
) -> ProviderRegistry:
    """A registry routing `route` (a dataset) to one provider reading `files_dir` only.

    Raises ValueError like `choose_file_reader`, or when the provider rejects its settings.
    """
    reader = choose_file_reader(config, route, files_dir, provider)
    built = reader.build(Path(files_dir))
    return ProviderRegistry({reader.name: built}, {route: [reader.name]}, FILES_RETRY)
