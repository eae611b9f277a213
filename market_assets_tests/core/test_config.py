"""Config loading: good files load, bad files fail naming the file, the key and the reason."""

from pathlib import Path

import pytest
import yaml

from market_assets.core.config import AppConfig, SymbolPartitions, UniverseConfig, bucket_of
from market_assets.core.errors import ConfigError

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def write_configs(directory: Path, **overrides: dict) -> Path:
    for name in ("universes", "datasets", "providers"):
        data = yaml.safe_load((REPO_CONFIGS / f"{name}.yaml").read_text())
        if name in overrides:
            data = overrides[name]
        (directory / f"{name}.yaml").write_text(yaml.safe_dump(data))
    return directory


def test_load_given_repository_configs_returns_demo_universe_and_routes():
    config = AppConfig.load(REPO_CONFIGS)

    assert config.universe_symbols("demo") == ["AAPL", "MSFT", "NVDA", "JPM", "SPY"]
    assert config.routes()["bars_1d"] == ["synthetic"]
    assert config.datasets["bars_5m"].derived_from == "bars_1m"


def test_load_given_env_settings_reads_data_dir_and_dsn(monkeypatch):
    monkeypatch.setenv("MARKET_ASSETS_DATA_DIR", "s3://bucket/lake")
    monkeypatch.setenv("MARKET_ASSETS_TIMESCALE_DSN", "postgresql://u@h/db")
    monkeypatch.setenv("MARKET_ASSETS_S3_ENDPOINT_URL", "http://127.0.0.1:9000")

    config = AppConfig.load(REPO_CONFIGS)

    assert config.data_dir == "s3://bucket/lake"
    assert config.timescale_dsn == "postgresql://u@h/db"
    assert config.s3_endpoint_url == "http://127.0.0.1:9000"


def test_load_given_hostile_symbol_names_file_key_and_symbol(tmp_path):
    bad = {"universes": {"demo": {"symbols": ["AAPL", "../etc"]}}}
    write_configs(tmp_path, universes=bad)

    with pytest.raises(ConfigError) as excinfo:
        AppConfig.load(tmp_path)

    message = str(excinfo.value)
    assert "universes.yaml" in message
    assert "universes.demo.symbols" in message
    assert "'../etc'" in message


def test_load_given_unknown_provider_in_route_names_dataset(tmp_path):
    datasets = yaml.safe_load((REPO_CONFIGS / "datasets.yaml").read_text())
    datasets["datasets"]["bars_1d"]["providers"] = ["synthetic", "nosuchvendor"]
    write_configs(tmp_path, datasets=datasets)

    with pytest.raises(ConfigError, match=r"datasets\.bars_1d\.providers: unknown provider"):
        AppConfig.load(tmp_path)


def test_load_given_literal_secret_in_provider_settings_refuses_it(tmp_path):
    providers = {
        "providers": {
            "synthetic": {"kind": "synthetic"},
            "databento": {"kind": "databento", "settings": {"api_key": "not-a-real-key"}},
        }
    }
    write_configs(tmp_path, providers=providers)

    with pytest.raises(ConfigError) as excinfo:
        AppConfig.load(tmp_path)

    assert "providers.databento.settings" in str(excinfo.value)
    assert "environment" in str(excinfo.value)


def test_load_given_env_name_that_is_not_a_variable_name_refuses_it(tmp_path):
    providers = {"providers": {"alpaca": {"kind": "alpaca", "api_key_env": "PK-live-123"}}}
    write_configs(tmp_path, providers=providers)

    with pytest.raises(ConfigError, match="api_key_env"):
        AppConfig.load(tmp_path)


def test_load_given_bad_yaml_names_the_file(tmp_path):
    write_configs(tmp_path)
    (tmp_path / "datasets.yaml").write_text("datasets: [unclosed\n")

    with pytest.raises(ConfigError, match="datasets.yaml: not valid YAML"):
        AppConfig.load(tmp_path)


def test_load_given_dataset_with_both_providers_and_parent_fails(tmp_path):
    datasets = yaml.safe_load((REPO_CONFIGS / "datasets.yaml").read_text())
    datasets["datasets"]["bars_5m"]["providers"] = ["synthetic"]
    write_configs(tmp_path, datasets=datasets)

    with pytest.raises(ConfigError, match="datasets.bars_5m: Value error, set exactly one"):
        AppConfig.load(tmp_path)


def test_load_given_missing_directory_says_which_file():
    with pytest.raises(ConfigError, match="universes.yaml: file not found"):
        AppConfig.load("/nonexistent/configs")


def test_symbol_partitions_given_bucket_universe_resolves_keys_to_stable_members():
    universes = {
        "focus": UniverseConfig(symbols=["AAPL", "MSFT"]),
        "wide": UniverseConfig(
            symbols=[f"S{i:03d}" for i in range(40)], partitioning="bucket", buckets=4
        ),
    }
    partitions = SymbolPartitions(universes)

    assert partitions.keys == ["AAPL", "MSFT", "wide~000", "wide~001", "wide~002", "wide~003"]
    members = [s for k in partitions.keys[2:] for s in partitions.symbols_for_key(k)]
    assert sorted(members) == [f"S{i:03d}" for i in range(40)]
    assert partitions.symbols_for_key(f"wide~{bucket_of('S007', 4):03d}").count("S007") == 1
    assert partitions.symbols_for_key("AAPL") == ["AAPL"]
    assert partitions.keys_for_symbols(["S007", "AAPL"]) == [
        f"wide~{bucket_of('S007', 4):03d}",
        "AAPL",
    ]


def test_symbol_partitions_given_unknown_bucket_key_raises():
    partitions = SymbolPartitions({"demo": UniverseConfig(symbols=["AAPL"])})

    with pytest.raises(ConfigError, match="bucket no universe defines"):
        partitions.symbols_for_key("gone~001")


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("big|caps", "contains '|'"),
        ("big~caps", "contains '~'"),
        ("big,caps", "contains ','"),
        ("big caps", "contains ' '"),
        ("big\tcaps", "contains '\\t'"),
        ("big...caps", "contains '..'"),
        ("_big", "starts with '_'"),
    ],
)
def test_load_given_universe_name_unfit_for_a_partition_key_names_universe_and_character(
    tmp_path, name, shown
):
    universes = {name: {"symbols": ["AAPL", "MSFT"], "partitioning": "bucket", "buckets": 2}}
    write_configs(tmp_path, universes={"universes": universes})

    with pytest.raises(ConfigError) as raised:
        AppConfig.load(tmp_path)

    message = str(raised.value)
    assert "\n" not in message
    assert "universes.yaml" in message
    assert f"universe name {name!r} {shown}" in message


def test_load_given_universe_names_with_dots_dashes_and_underscores_accepts_them(tmp_path):
    universes = {
        name: {"symbols": ["AAPL"]} for name in ("sp500", "us-large_caps", "v2.1", "2024")
    }
    write_configs(tmp_path, universes={"universes": universes})

    assert sorted(AppConfig.load(tmp_path).universes) == ["2024", "sp500", "us-large_caps", "v2.1"]
