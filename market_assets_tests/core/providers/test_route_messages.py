"""The "no providers are routed" message says where routing lives and names a disabled
provider when that is the cause (issue 13, item 10)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from market_assets.core.config import AppConfig
from market_assets.core.providers.registry import ProviderRegistry

REPO_CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def registry_with(tmp_path: Path, bars_1d_providers: list[str]) -> ProviderRegistry:
    configs = tmp_path / "configs"
    shutil.copytree(REPO_CONFIGS, configs)
    datasets = yaml.safe_load((configs / "datasets.yaml").read_text())
    datasets["datasets"]["bars_1d"]["providers"] = bars_1d_providers
    (configs / "datasets.yaml").write_text(yaml.safe_dump(datasets))
    return ProviderRegistry.from_app_config(AppConfig.load(configs))


def test_a_route_whose_every_provider_is_disabled_says_so(tmp_path):
    registry = registry_with(tmp_path, ["yfinance", "alpaca"])  # both enabled: false

    with pytest.raises(ValueError) as raised:
        registry.route("bars_1d")

    message = str(raised.value)
    assert "every provider routed for 'bars_1d' (yfinance, alpaca) is disabled" in message
    assert "datasets.bars_1d.providers in datasets.yaml" in message


def test_an_unrouted_dataset_names_where_routes_live(tmp_path):
    registry = registry_with(tmp_path, ["synthetic"])

    with pytest.raises(ValueError) as raised:
        registry.route("bars_2m")

    message = str(raised.value)
    assert "routes live in datasets.yaml, as datasets.bars_2m.providers" in message
    assert "providers.yaml" not in message


def test_pinning_another_provider_keeps_the_disabled_reason_of_other_routes(tmp_path):
    registry = registry_with(tmp_path, ["yfinance"]).with_route("bars_1m", ["synthetic"])

    with pytest.raises(ValueError, match=r"\(yfinance\) is disabled"):
        registry.route("bars_1d")
