"""`--files DIR` dispatch: which provider reads a dataset from the files in a folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from market_assets.core.config import AppConfig
from market_assets.core.providers.databento import DatabentoProvider
from market_assets.core.providers.files import FilesProvider
from market_assets.core.providers.files_route import choose_file_reader, files_registry

REPO_CONFIGS = Path(__file__).resolve().parents[3] / "configs"


@pytest.fixture
def config() -> AppConfig:
    return AppConfig.load(REPO_CONFIGS)


def _touch(folder: Path, *names: str) -> Path:
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return folder


def test_choose_file_reader_given_dbn_files_picks_the_databento_entry(config, tmp_path):
    folder = _touch(tmp_path, "2024/xnas-itch-20240307.trades.dbn.zst")

    reader = choose_file_reader(config, "trades", folder)

    assert reader.name == "databento"
    assert reader.kind == "databento"


def test_choose_file_reader_for_daily_bars_skips_readers_whose_files_are_absent(config, tmp_path):
    # lean_daily (zips) and zipline_csvdir (csv) come first in providers.yaml for bars_1d.
    folder = _touch(tmp_path, "xnas-itch-20201228.ohlcv-1d.dbn")

    assert choose_file_reader(config, "bars_1d", folder).name == "databento"


def test_choose_file_reader_given_lean_zips_picks_the_lean_mapping(config, tmp_path):
    folder = _touch(tmp_path, "aapl.zip")

    assert choose_file_reader(config, "bars_1d", folder).name == "lean_daily"


def test_choose_file_reader_given_no_recognized_file_names_each_candidates_patterns(
    config, tmp_path
):
    _touch(tmp_path, "notes.txt")

    with pytest.raises(ValueError, match=r"no file there.*bars_1d.*lean_daily: \*\.zip.*\*\.dbn"):
        choose_file_reader(config, "bars_1d", tmp_path)


def test_choose_file_reader_given_a_provider_that_cannot_read_files_raises_error(
    config, tmp_path
):
    with pytest.raises(ValueError, match=r"'synthetic' \(of kind 'synthetic'\) cannot read"):
        choose_file_reader(config, "trades", tmp_path, provider="synthetic")


def test_choose_file_reader_given_a_missing_folder_raises_error(config, tmp_path):
    with pytest.raises(ValueError, match=r"--files .*absent: not a folder"):
        choose_file_reader(config, "trades", tmp_path / "absent")


def test_choose_file_reader_uses_an_unconfigured_kind_with_default_settings(tmp_path):
    configs = tmp_path / "configs"
    shutil.copytree(REPO_CONFIGS, configs)
    providers = yaml.safe_load((configs / "providers.yaml").read_text())
    del providers["providers"]["databento"]
    (configs / "providers.yaml").write_text(yaml.safe_dump(providers))
    datasets = yaml.safe_load((configs / "datasets.yaml").read_text())
    for name in ("trades", "tbbo", "statistics"):  # routed to the removed entry
        del datasets["datasets"][name]
    (configs / "datasets.yaml").write_text(yaml.safe_dump(datasets))
    folder = _touch(tmp_path / "files", "a.trades.dbn")

    reader = choose_file_reader(AppConfig.load(configs), "trades", folder)

    assert (reader.name, reader.kind) == ("databento", "databento")


def test_files_registry_routes_the_dataset_to_a_provider_reading_the_folder(config, tmp_path):
    folder = _touch(tmp_path, "aapl.zip")

    registry = files_registry(config, folder, "bars_1d")

    assert registry.route("bars_1d") == ("lean_daily",)
    provider = registry.providers["lean_daily"]
    assert isinstance(provider, FilesProvider)
    assert provider.mapping.root == folder


def test_files_registry_keeps_the_entrys_settings_with_the_folder(config, tmp_path):
    folder = _touch(tmp_path, "x.dbn")

    provider = files_registry(config, folder, "trades").providers["databento"]

    assert isinstance(provider, DatabentoProvider)
    assert provider.files is not None and Path(provider.files.folder) == folder
    assert provider.dataset == "XNAS.ITCH"
