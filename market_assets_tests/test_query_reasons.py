"""MarketData says why there is nothing to read (issue 13, item 13): a root that does not
exist, an indicator name nobody configured, a symbol never stored."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import polars as pl
import pytest

from market_assets.core.calendar import get_calendar
from market_assets.core.stores.lake import ParquetLake
from market_assets.query import LakeNotFoundError, MarketData, NoDataWarning
from market_assets_tests.helpers import make_bars

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SESSIONS = get_calendar().sessions("2024-03-04", "2024-03-08")


@pytest.fixture
def lake_root(tmp_path) -> Path:
    root = tmp_path / "data"
    lake = ParquetLake(str(root))
    lake.write_partitions(
        "bars_1d", make_bars(["AAPL"], SESSIONS), [("AAPL", day) for day in SESSIONS]
    )
    indicators = pl.DataFrame(
        {
            "ts": make_bars(["AAPL"], SESSIONS)["ts"],
            "symbol": ["AAPL"] * len(SESSIONS),
            "indicator": ["sma_20"] * len(SESSIONS),
            "value": [1.0] * len(SESSIONS),
        }
    )
    lake.write_partitions("indicators", indicators, [("AAPL", day) for day in SESSIONS])
    return root


def test_a_root_that_does_not_exist_raises_naming_it(tmp_path):
    with pytest.raises(LakeNotFoundError, match=r"lake root '.*/typo' does not exist"):
        MarketData(root=tmp_path / "typo")


def test_an_indicator_name_that_is_not_configured_raises_listing_the_configured_ones(
    lake_root, tmp_path
):
    configs = tmp_path / "configs"
    shutil.copytree(REPO_CONFIGS, configs)
    market = MarketData(root=lake_root, config_dir=configs)

    with pytest.raises(ValueError) as raised:
        market.indicators("AAPL", "2024-03-04", "2024-03-09", names=["sma_21"])

    message = str(raised.value)
    assert f"indicator(s) ['sma_21'] are not configured in {configs / 'indicators.yaml'}" in message
    assert "'sma_20'" in message and "'rsi_14'" in message


def test_a_configured_indicator_is_served(lake_root, tmp_path):
    market = MarketData(root=lake_root, config_dir=REPO_CONFIGS)

    frame = market.indicators("AAPL", "2024-03-04", "2024-03-09", names=["sma_20"])

    assert frame.columns == ["symbol", "ts", "sma_20"]
    assert frame.height == len(SESSIONS)


def test_a_symbol_with_nothing_stored_gets_a_warning_and_the_others_their_rows(lake_root):
    market = MarketData(root=lake_root)

    with pytest.warns(NoDataWarning, match=r"nothing is stored for ZZZ in bars_1d"):
        frame = market.bars(["AAPL", "ZZZ"], "2024-03-04", "2024-03-09")

    assert frame["symbol"].unique().to_list() == ["AAPL"]


def test_a_symbol_with_data_outside_the_range_is_not_warned_about(lake_root):
    market = MarketData(root=lake_root)

    with warnings.catch_warnings():
        warnings.simplefilter("error", NoDataWarning)
        frame = market.bars("AAPL", "2025-01-02", "2025-01-10")

    assert frame.is_empty()
