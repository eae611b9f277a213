"""Folders and files this user may not read or write: one line naming the path and what was
being done, never a bare PermissionError. Run in a child where permissions hold even for root
(market_assets_tests/fixtures/permissions.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from market_assets_tests.fixtures.permissions import outcome, require_permissions_enforced

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SYNTHETIC_WEEK = """
import datetime as dt
from market_assets.core.providers.base import BarRequest
from market_assets.core.providers.synthetic import SyntheticProvider
from market_assets.core.stores.lake import ParquetLake
days = [dt.date(2024, 3, d) for d in (4, 5, 6)]
request = BarRequest("bars_1d", ("AAPL",), "1d", days[0], dt.date(2024, 3, 7))
bars = SyntheticProvider.from_config({}).fetch_bars(request).frame
pairs = [("AAPL", day) for day in days]
"""


@pytest.fixture(autouse=True)
def _enforced() -> None:
    require_permissions_enforced()


def test_lake_write_into_a_root_without_write_permission_names_the_lock_file(tmp_path):
    root = tmp_path / "lake"
    root.mkdir()
    root.chmod(0o555)

    kind, message = outcome(SYNTHETIC_WEEK + f"ParquetLake({str(root)!r}).write_partitions("
                            "'bars_1d', bars, pairs)")  # fmt: skip

    assert kind == "StoreError"
    assert "\n" not in message
    assert message.startswith(f"cannot open the write lock {root / '.lake.lock'}: Permission")
    assert "let the user running market-assets" in message


def test_lake_write_under_a_folder_without_write_permission_names_folder_and_operation(tmp_path):
    root = tmp_path / "lake"
    (root / "ticks").mkdir(parents=True)
    (root / "ticks").chmod(0o555)

    kind, message = outcome(SYNTHETIC_WEEK + f"ParquetLake({str(root)!r}).write_partitions("
                            "'bars_1d', bars, pairs)")  # fmt: skip

    assert kind == "StoreError"
    assert "\n" not in message
    assert message.startswith(f"cannot create folder {root / 'ticks/daily/AAPL'}")
    assert f"Permission denied ({root / 'ticks/daily'}); let the user running" in message


def test_lake_read_under_a_folder_without_search_permission_names_the_file(tmp_path):
    root = tmp_path / "lake"
    outcome(SYNTHETIC_WEEK + f"ParquetLake({str(root)!r}).write_partitions('bars_1d', bars, pairs)")
    (root / "ticks").chmod(0)

    kind, message = outcome(
        SYNTHETIC_WEEK + f"ParquetLake({str(root)!r}).read_partitions('bars_1d', pairs)"
    )

    assert kind == "StoreError"
    assert message.startswith(f"cannot look at {root / 'ticks/daily/AAPL/'}")
    assert "Permission denied" in message


def test_files_folder_without_permission_is_a_bad_request_naming_folder_and_setting(tmp_path):
    vendor = tmp_path / "vendor"
    vendor.mkdir()
    (vendor / "AAPL.csv").write_text("date,open,high,low,close,volume\n2024-03-04,1,2,0.5,1,9\n")
    vendor.chmod(0)

    kind, message = outcome(f"""
import datetime as dt
from market_assets.core.providers.base import BarRequest
from market_assets.core.providers.files import FilesProvider
files = FilesProvider.from_config({{"directory": {str(vendor)!r}, "columns": {{"ts": "date"}}}})
files.fetch_bars(BarRequest("bars_1d", ("AAPL",), "1d", dt.date(2024, 3, 4), dt.date(2024, 3, 5)))
""")

    assert kind == "BadRequestError"
    assert f"cannot open folder {vendor}: Permission denied" in message
    assert "(settings.directory)" in message


def test_unreadable_files_file_fails_its_symbol_naming_the_file(tmp_path):
    (tmp_path / "AAPL.csv").write_text("date,open,high,low,close,volume\n2024-03-04,1,2,0.5,1,9\n")
    (tmp_path / "AAPL.csv").chmod(0)

    kind, message = outcome(f"""
import datetime as dt
from market_assets.core.providers.base import BarRequest
from market_assets.core.providers.files import FilesProvider
files = FilesProvider.from_config({{"directory": {str(tmp_path)!r}, "columns": {{"ts": "date"}}}})
files.fetch_bars(BarRequest("bars_1d", ("AAPL",), "1d", dt.date(2024, 3, 4), dt.date(2024, 3, 5)))
""")

    assert kind == "BadFileError"
    assert f"{tmp_path / 'AAPL.csv'}: cannot open it: [Errno 13] Permission denied" in message


def test_unreadable_config_file_is_a_config_error_naming_it(tmp_path):
    configs = tmp_path / "configs"
    shutil.copytree(REPO_CONFIGS, configs)
    (configs / "datasets.yaml").chmod(0)

    kind, message = outcome(
        f"from market_assets.core.config import AppConfig\nAppConfig.load({str(configs)!r})"
    )

    assert kind == "ConfigError"
    assert message.startswith(f"cannot read config file {configs / 'datasets.yaml'}: ")
    assert "Permission denied" in message


@pytest.mark.parametrize(
    ("name", "load"),
    [
        ("indicators.yaml", "transforms.indicators import load_indicators_config as load"),
        ("checks.yaml", "rules.thresholds import load_thresholds as load"),
        ("options.yaml", "options.settings import load_options_settings as load"),
        ("fundamentals.yaml", "fundamentals.config import load_fundamentals_config as load"),
    ],
)
def test_each_unreadable_dataset_config_file_is_a_config_error_naming_it(tmp_path, name, load):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / name).write_text((REPO_CONFIGS / name).read_text())
    (configs / name).chmod(0)

    kind, message = outcome(f"from market_assets.core.{load}\nload({str(configs)!r})")

    assert kind == "ConfigError"
    assert "\n" not in message
    assert message.startswith(f"cannot read config file {configs / name}: Permission denied")


@pytest.mark.parametrize(
    ("setup", "kind_expected"),
    [
        (
            "from market_assets.core.providers.nasdaq_trader import NasdaqTraderProvider as P\n"
            "from market_assets.core.reference.sources import SnapshotRequest\n"
            "import datetime as dt\n"
            "P(files_dir={folder!r}).fetch_listings(SnapshotRequest("
            "dt.date(2024, 3, 4), dt.date(2024, 3, 5)))",
            "PermanentError",
        ),
        (
            "from market_assets.core.providers.databento.files import DbnFolder\n"
            "DbnFolder({folder!r}).files()",
            "ValueError",
        ),
    ],
    ids=["nasdaq_trader", "databento"],
)
def test_unreadable_sub_folder_of_a_vendor_folder_is_an_error_naming_it(
    tmp_path, setup, kind_expected
):
    # Path.rglob would skip the sub-folder without a word, losing its files.
    folder = tmp_path / "vendor"
    hidden = folder / "2024"
    hidden.mkdir(parents=True)
    (hidden / "nasdaqlisted.txt").write_text("x")
    hidden.chmod(0)

    kind, message = outcome(setup.format(folder=str(folder)))

    assert kind == kind_expected
    assert "\n" not in message
    assert f"cannot read folder {hidden}: Permission denied" in message


def test_unreadable_symbol_directory_file_is_a_provider_error_naming_it(tmp_path):
    (tmp_path / "nasdaqlisted.txt").write_text("Symbol|Security Name\n")
    (tmp_path / "nasdaqlisted.txt").chmod(0)

    kind, message = outcome(f"""
import datetime as dt
from market_assets.core.providers.nasdaq_trader import NasdaqTraderProvider
from market_assets.core.reference.sources import SnapshotRequest
NasdaqTraderProvider(files_dir={str(tmp_path)!r}).fetch_listings(
    SnapshotRequest(dt.date(2024, 3, 4), dt.date(2024, 3, 5))
)
""")

    assert kind == "PermanentError"
    assert "\n" not in message
    assert f"cannot read file {tmp_path / 'nasdaqlisted.txt'}: Permission denied" in message
